//! End to end: the `revguard` binary as a process, driven over HTTP and through its CLI.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use revguard_core::signature::sign;
use revguard_core::WebhookSecret;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_revguard");

fn events_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events")
}

struct Server {
    child: Child,
    url: String,
    dev_secret: Option<String>,
}

impl Server {
    fn start(db: &Path, secret_env: Option<&str>) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--addr", "127.0.0.1:0", "--db"])
            .arg(db)
            .env_remove("STRIPE_WEBHOOK_SECRET")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(s) = secret_env {
            cmd.env("STRIPE_WEBHOOK_SECRET", s);
        }
        let mut child = cmd.spawn().expect("spawn revguard serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("a first line").unwrap();
        let url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {first:?}"))
            .to_owned();
        let dev_secret = if secret_env.is_none() {
            let _explanation = lines.next().unwrap().unwrap();
            Some(lines.next().unwrap().unwrap().trim().to_owned())
        } else {
            None
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, url, dev_secret }
    }

    /// SIGTERM, then wait: the process must exit cleanly.
    fn stop(mut self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "revguard exited with {exit}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn cli(args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("STRIPE_WEBHOOK_SECRET")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success(), text + &String::from_utf8_lossy(&out.stderr))
}

async fn post(client: &reqwest::Client, url: &str, body: &str, header: Option<String>) -> (u16, Value) {
    let mut req = client.post(url).body(body.to_owned());
    if let Some(h) = header {
        req = req.header("STRIPE-SIGNATURE", h);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test]
async fn serves_webhooks_and_a_restart_keeps_the_secret_and_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("revguard.db");
    let server = Server::start(&db, None);
    let secret_text = server.dev_secret.clone().unwrap();
    assert!(secret_text.starts_with("whsec_"), "{secret_text}");
    let secret = WebhookSecret::new(&secret_text).unwrap();
    let client = reqwest::Client::new();
    let body = std::fs::read_to_string(events_dir().join("invoice.payment_failed.json")).unwrap();

    let (status, json) = post(&client, &server.url, &body, Some(sign(&secret, now(), body.as_bytes()))).await;
    assert_eq!((status, json["status"].as_str()), (200, Some("accepted")), "{json}");
    let (status, json) = post(&client, &server.url, &body, Some(sign(&secret, now(), body.as_bytes()))).await;
    assert_eq!((status, json["status"].as_str()), (200, Some("duplicate")));
    let (status, json) = post(&client, &server.url, &body, Some(format!("t={},v1={}", now(), "ab".repeat(32)))).await;
    assert_eq!((status, json["error"].as_str()), (400, Some("bad_signature")));
    let (status, json) = post(&client, &server.url, &body, None).await;
    assert_eq!((status, json["error"].as_str()), (400, Some("missing_signature")));

    let health = client.get(server.url.replace("/webhook", "/healthz")).send().await.unwrap();
    let health: Value = health.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["rejected"]["bad_signature"], 1);

    // `revguard send` signs with the dev secret it finds in the database.
    let file = events_dir().join("checkout.session.completed.json");
    let (ok, out) = cli(&["send", file.to_str().unwrap(), "--url", &server.url, "--db", db.to_str().unwrap()]);
    assert!(ok && out.contains("\"accepted\""), "{out}");
    let (ok, out) = cli(&["send", file.to_str().unwrap(), "--url", &server.url, "--db", db.to_str().unwrap(), "--fresh-id"]);
    assert!(ok && out.contains("\"accepted\""), "{out}");
    let (ok, out) = cli(&["send", file.to_str().unwrap(), "--url", &server.url, "--secret", "whsec_wrong"]);
    assert!(!ok && out.contains("bad_signature"), "{out}");
    server.stop();

    // After a restart: the same secret, and the queued events are still there.
    let server = Server::start(&db, None);
    assert_eq!(server.dev_secret.as_deref(), Some(secret_text.as_str()));
    let (status, json) = post(&client, &server.url, &body, Some(sign(&secret, now(), body.as_bytes()))).await;
    assert_eq!((status, json["status"].as_str()), (200, Some("duplicate")));
    server.stop();

    let (ok, out) = cli(&["queue", "--db", db.to_str().unwrap()]);
    assert!(ok, "{out}");
    let queued: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(queued.len(), 3, "{out}");
    assert_eq!(queued[0]["event_id"], "evt_RG_invoice_payment_failed");
    assert_eq!(queued[0]["event_type"], "invoice.payment_failed");
    let (ok, out) = cli(&["status", "--db", db.to_str().unwrap()]);
    assert!(ok, "{out}");
    let counts: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(counts["queued"], 3);
    assert_eq!(counts["queue_depth"], 3);
}

#[tokio::test]
async fn configured_secrets_rotate_and_no_dev_secret_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("revguard.db");
    let server = Server::start(&db, Some("whsec_old_one, whsec_new_one"));
    assert!(server.dev_secret.is_none());
    let client = reqwest::Client::new();
    for (i, s) in ["whsec_old_one", "whsec_new_one"].iter().enumerate() {
        let body = format!(r#"{{"id":"evt_rot_{i}","type":"charge.refunded","created":{},"livemode":true,"data":{{"object":{{"id":"ch_1"}}}}}}"#, now());
        let header = sign(&WebhookSecret::new(*s).unwrap(), now(), body.as_bytes());
        let (status, json) = post(&client, &server.url, &body, Some(header)).await;
        assert_eq!((status, json["status"].as_str()), (200, Some("accepted")), "{json}");
    }
    server.stop();
}

#[tokio::test]
async fn sigterm_during_load_loses_no_accepted_event() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("revguard.db");
    let server = Server::start(&db, Some("whsec_shutdown"));
    let secret = WebhookSecret::new("whsec_shutdown").unwrap();
    let client = reqwest::Client::new();
    let url = server.url.clone();
    let senders: Vec<_> = (0..300)
        .map(|i| {
            let (client, url, secret) = (client.clone(), url.clone(), secret.clone());
            tokio::spawn(async move {
                let id = format!("evt_term_{i:04}");
                let body = format!(r#"{{"id":"{id}","type":"invoice.paid","created":{},"livemode":false,"data":{{"object":{{"id":"in_{i}"}}}}}}"#, now());
                let header = sign(&secret, now(), body.as_bytes());
                let answer = client.post(&url).header("stripe-signature", header).body(body).send().await;
                match answer {
                    Ok(r) if r.status() == 200 => Some(id),
                    _ => None,
                }
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    server.stop();
    let mut accepted = Vec::new();
    for s in senders {
        if let Some(id) = s.await.unwrap() {
            accepted.push(id);
        }
    }
    let store = revguard_local::SqliteStore::open(&db).unwrap();
    let queued: std::collections::HashSet<String> =
        store.queued(10_000).unwrap().into_iter().map(|m| m.event_id).collect();
    for id in &accepted {
        assert!(queued.contains(id), "{id} was acknowledged but is not in the queue");
    }
    eprintln!("{} of 300 acknowledged before shutdown, all durable", accepted.len());
}
