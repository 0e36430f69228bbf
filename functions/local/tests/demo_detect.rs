//! `revguard demo` and `revguard detect --at` as processes, over a generated scenario.

use std::process::Command;

use revguard_testkit::simulation::scenario::{generate, IncidentKind, ScenarioConfig};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_revguard");

fn signals_of(kind: IncidentKind) -> &'static [&'static str] {
    match kind {
        IncidentKind::FailedChargeBurst => &[
            "spike:payments_failed",
            "spike:payments_failed_amount",
            "failure_rate",
        ],
        IncidentKind::RefundSpike => &["spike:refunds", "spike:refunds_amount", "refund_rate"],
        IncidentKind::DisputeCluster => &["spike:disputes", "dispute_rate"],
        IncidentKind::WebhookOutage => &["delivery_gap", "delivery_lag", "drop:"],
        IncidentKind::CancellationWave => {
            &["spike:subscriptions_canceled", "spike:mrr_lost", "mrr_fall"]
        }
    }
}

fn detect_at(db: &std::path::Path, at: i64) -> Vec<Value> {
    let out = Command::new(BIN)
        .args(["detect", "--at", &at.to_string(), "--db"])
        .arg(db)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter_map(|v| v.get("finding").cloned())
        .collect()
}

#[test]
fn the_demo_flags_every_incident_and_detect_at_replays_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let out = Command::new(BIN)
        .args(["demo", "--seed", "1", "--keep-db"])
        .arg(&db)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("NOT flagged"), "{text}");
    assert!(text.contains("false alerts: none"), "{text}");
    for kind in IncidentKind::ALL {
        assert!(
            text.contains(&format!("INJECTED  {}", kind.as_str())),
            "{text}"
        );
    }

    // Replay the first incident as of 50 minutes into it (the outage: 110): it is found,
    // and nothing unrelated is.
    let scenario = generate(ScenarioConfig::new(1));
    let first = scenario.incidents.iter().min_by_key(|i| i.start).unwrap();
    let into = if first.kind == IncidentKind::WebhookOutage {
        110 * 60
    } else {
        50 * 60
    };
    let findings = detect_at(&db, first.start + into);
    assert!(!findings.is_empty(), "{:?} not found", first.kind);
    for f in &findings {
        let key = f["key"].as_str().unwrap();
        assert!(
            signals_of(first.kind).iter().any(|s| key.starts_with(s)),
            "{key} is not about {:?}",
            first.kind
        );
    }
    // Before anything was injected, the same command finds nothing.
    let quiet = scenario.config.monitored_from() + 1800;
    assert!(first.start > quiet, "the scenario starts quiet");
    assert_eq!(detect_at(&db, quiet), Vec::<Value>::new());
}
