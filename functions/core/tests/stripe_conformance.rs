//! Conformance with the official Stripe library (Python `stripe`): headers it makes
//! verify here, and headers made here verify there.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use revguard_core::domain::signature::{sign, verify, SecretSet, VerifyError, WebhookSecret};
use serde_json::{json, Value};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs the Stripe peer; fails loudly, naming what to install, when it cannot.
fn stripe_peer(request: Value) -> Value {
    let python = std::env::var("REVGUARD_PYTHON").unwrap_or_else(|_| {
        panic!(
            "REVGUARD_PYTHON is not set: the conformance tests need Python with the `stripe` \
             package. Run scripts/test (it creates .venv with it), or \
             `pip install stripe` and set REVGUARD_PYTHON=python3"
        )
    });
    let mut child = Command::new(&python)
        .arg(repo_root().join("scripts/stripe_peer.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Stripe peer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn bodies() -> Vec<String> {
    let mut bodies: Vec<String> = revguard_testkit::fixtures::all()
        .into_iter()
        .map(|(_, body)| body)
        .collect();
    bodies.push(r#"{"id":"evt_unicode","object":"event","note":"Zürich — 東京 ✓"}"#.to_owned());
    bodies
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn headers_made_by_stripe_verify_in_revguard() {
    let secret = "whsec_conformance_peer_secret";
    let t = now();
    let bodies = bodies();
    let cases: Vec<Value> = bodies
        .iter()
        .map(|b| json!({"body": b, "secret": secret, "timestamp": t}))
        .collect();
    let headers = stripe_peer(json!({"op": "sign", "cases": cases}));
    let headers = headers.as_array().unwrap();
    assert_eq!(headers.len(), bodies.len());
    let secrets = SecretSet::parse(&format!("whsec_rotated_out,{secret}")).unwrap();
    for (body, header) in bodies.iter().zip(headers) {
        let header = header.as_str().unwrap();
        assert_eq!(
            verify(Some(header), body.as_bytes(), &secrets, t, 300),
            Ok(t)
        );
        // And the same header over a changed body is refused.
        let changed = body.replacen('{', "{ ", 1);
        assert_eq!(
            verify(Some(header), changed.as_bytes(), &secrets, t, 300),
            Err(VerifyError::BadSignature)
        );
    }
}

#[test]
fn headers_made_by_revguard_verify_in_stripe() {
    let secret = WebhookSecret::new("whsec_conformance_revguard_secret").unwrap();
    let t = now();
    let bodies = bodies();
    let mut cases: Vec<Value> = bodies
        .iter()
        .map(|b| json!({"body": b, "secret": secret.expose(), "header": sign(&secret, t, b.as_bytes())}))
        .collect();
    // Controls: the peer must refuse a wrong secret and a stale timestamp.
    cases.push(json!({"body": bodies[0], "secret": "whsec_other", "header": sign(&secret, t, bodies[0].as_bytes())}));
    cases.push(json!({"body": bodies[0], "secret": secret.expose(), "header": sign(&secret, t - 3600, bodies[0].as_bytes())}));
    let results = stripe_peer(json!({"op": "verify", "cases": cases}));
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), bodies.len() + 2);
    for (i, r) in results.iter().take(bodies.len()).enumerate() {
        assert_eq!(r["ok"], json!(true), "body {i}: {r}");
    }
    assert_eq!(
        results[bodies.len()]["ok"],
        json!(false),
        "wrong secret refused by stripe"
    );
    assert_eq!(
        results[bodies.len() + 1]["ok"],
        json!(false),
        "stale timestamp refused by stripe"
    );
}
