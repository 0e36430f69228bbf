//! The example Stripe payloads in the repository's `events/` directory, for tests,
//! benches and examples (feature `test-util`). One loader, so that every suite reads the
//! same files the same way and fails naming the file.

use std::path::PathBuf;

/// The repository's `events/` directory.
pub fn events_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../events"))
}

/// A file under `events/` (e.g. `"invoice.paid.json"` or `"apigw/webhook-request.json"`).
pub fn read(name: &str) -> String {
    let path = events_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A payload as JSON.
pub fn json(name: &str) -> serde_json::Value {
    serde_json::from_str(&read(name)).unwrap_or_else(|e| panic!("events/{name}: {e}"))
}

/// A payload under another event id, compact, so tests sharing a store never collide.
pub fn with_id(name: &str, id: &str) -> String {
    let mut v = json(name);
    v["id"] = serde_json::Value::String(id.to_owned());
    v.to_string()
}

/// Every `*.json` payload directly in `events/` (not the envelopes in its
/// subdirectories), as (file name, contents), sorted by name.
pub fn all() -> Vec<(String, String)> {
    let dir = events_dir();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    assert!(
        names.len() >= 10,
        "{} holds the example payloads",
        dir.display()
    );
    names
        .into_iter()
        .map(|n| {
            let body = read(&n);
            (n, body)
        })
        .collect()
}

/// Every payload of [`all`], each under an id of its own (`evt_<file stem>`; several files
/// share one id in the fixtures' story), as (event id, compact JSON).
pub fn each_with_own_id() -> Vec<(String, String)> {
    all()
        .into_iter()
        .map(|(name, _)| {
            let id = format!("evt_{}", name.trim_end_matches(".json"));
            let body = with_id(&name, &id);
            (id, body)
        })
        .collect()
}

pub use crate::chat::sample_alert as large_refund_alert;

/// A live-mode Stripe event of `object` as the queue carries it (received 2 s after it was
/// created), with its `previous_attributes` if any.
pub fn queued_event(
    id: &str,
    event_type: &str,
    created: i64,
    object: serde_json::Value,
    previous: Option<serde_json::Value>,
) -> crate::QueueMessage {
    let mut data = serde_json::json!({ "object": object });
    if let Some(p) = previous {
        data["previous_attributes"] = p;
    }
    let raw = serde_json::json!({ "id": id, "object": "event", "type": event_type,
        "created": created, "livemode": true, "data": data })
    .to_string();
    crate::QueueMessage {
        event_id: id.to_owned(),
        event_type: event_type.to_owned(),
        livemode: true,
        created,
        received_at: created + 2,
        payload: crate::Payload::Inline(raw),
        via: Default::default(),
    }
}

/// Validates AWS Chatbot custom notifications against their documented schema, with
/// `scripts/check_chatbot_notification.py` in the test venv (`REVGUARD_PYTHON`, which
/// `scripts/test` sets); panics with every violation.
pub fn check_chatbot_notifications(documents: &[serde_json::Value]) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let python = std::env::var("REVGUARD_PYTHON").unwrap_or_else(|_| {
        panic!(
            "REVGUARD_PYTHON is not set: validating Chatbot notifications needs Python with \
             `jsonschema`. Run scripts/test (it creates .venv with it), or `pip install \
             jsonschema` and set REVGUARD_PYTHON=python3"
        )
    });
    let script = events_dir().join("../scripts/check_chatbot_notification.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    {
        let mut stdin = child.stdin.take().unwrap();
        for d in documents {
            writeln!(stdin, "{d}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "Chatbot notifications off their schema:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
