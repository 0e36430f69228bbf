use super::audit::*;
use super::*;
use crate::domain::billing::EventKind;
use crate::domain::event::MissingEvent;

fn endpoint(id: &str, url: &str, status: &str, events: &[&str], version: Option<&str>) -> Endpoint {
    Endpoint {
        id: id.into(),
        url: url.into(),
        status: status.into(),
        enabled_events: events.iter().map(|e| e.to_string()).collect(),
        api_version: version.map(str::to_owned),
        livemode: true,
    }
}

fn keys(findings: &[crate::domain::finding::Finding]) -> Vec<(String, &'static str)> {
    findings
        .iter()
        .map(|f| (f.key.clone(), f.severity.as_str()))
        .collect()
}

#[test]
fn an_endpoint_without_dispute_events_is_a_warning_naming_them() {
    let without_disputes: Vec<&str> = HANDLED_EVENT_TYPES
        .iter()
        .copied()
        .filter(|t| !t.starts_with("charge.dispute"))
        .collect();
    let ours = endpoint(
        "we_1",
        "https://rg.example/webhook",
        "enabled",
        &without_disputes,
        None,
    );
    let found = endpoint_findings(
        &[ours],
        Some("https://rg.example/webhook/"),
        None,
        true,
        100,
    );
    assert_eq!(keys(&found), [("endpoint_events".to_owned(), "warning")]);
    assert!(
        found[0]
            .explanation
            .contains("charge.dispute.created, charge.dispute.closed"),
        "{}",
        found[0].explanation
    );
    // Every type ("*"), or the types spread over two endpoints: nothing to say.
    let all = endpoint(
        "we_2",
        "https://rg.example/webhook",
        "enabled",
        &["*"],
        Some("2024-06-20"),
    );
    assert!(endpoint_findings(&[all], None, None, true, 100).is_empty());
    let disputes = endpoint(
        "we_3",
        "https://other.example/hook",
        "enabled",
        &["charge.dispute.created", "charge.dispute.closed"],
        None,
    );
    let ours = endpoint(
        "we_1",
        "https://rg.example/webhook",
        "enabled",
        &without_disputes,
        None,
    );
    assert!(endpoint_findings(&[ours.clone(), disputes.clone()], None, None, true, 100).is_empty());
    // With revguard's URL known, another endpoint's types do not count.
    assert_eq!(
        keys(&endpoint_findings(
            &[ours, disputes],
            Some("https://rg.example/webhook"),
            None,
            true,
            100
        )),
        [("endpoint_events".to_owned(), "warning")]
    );
}

#[test]
fn a_disabled_endpoint_is_critical_and_a_missing_one_too_when_the_url_is_known() {
    let disabled = endpoint(
        "we_1",
        "https://rg.example/webhook",
        "disabled",
        &["*"],
        None,
    );
    assert_eq!(
        keys(&endpoint_findings(&[disabled], None, None, true, 100)),
        [("endpoint_disabled:we_1".to_owned(), "critical")]
    );
    let elsewhere = endpoint(
        "we_2",
        "https://other.example/hook",
        "enabled",
        &["*"],
        None,
    );
    assert_eq!(
        keys(&endpoint_findings(
            std::slice::from_ref(&elsewhere),
            Some("https://rg.example/webhook"),
            None,
            true,
            100
        )),
        [("endpoint_missing".to_owned(), "critical")]
    );
    // Another mode's endpoints are that mode's business.
    assert!(endpoint_findings(&[elsewhere], None, None, false, 100).is_empty());
}

#[test]
fn a_keys_other_mode_is_out_of_sight_not_missing() {
    let outcome = AuditOutcome {
        endpoints: Some(vec![endpoint(
            "we_1",
            "https://rg.example/webhook",
            "enabled",
            &["*"],
            None,
        )]),
        endpoints_livemode: true,
        endpoint_url: Some("https://rg.example/webhook".into()),
        ..Default::default()
    };
    assert!(outcome.findings(true, 100).is_empty());
    assert!(outcome.findings(false, 100).is_empty());
}

#[test]
fn an_api_version_newer_than_revguard_reads_is_a_warning() {
    assert!(api_version_is_read("2017-08-15"));
    assert!(api_version_is_read("2025-03-31.basil"));
    assert!(!api_version_is_read("2025-09-30.clover"));
    assert!(!api_version_is_read("next"));
    let newer = endpoint(
        "we_1",
        "https://rg.example/webhook",
        "enabled",
        &["*"],
        Some("2025-09-30.clover"),
    );
    assert_eq!(
        keys(&endpoint_findings(&[newer], None, None, true, 100)),
        [("endpoint_api_version:we_1".to_owned(), "warning")]
    );
}

#[test]
fn time_left_reads_in_days_and_hours() {
    assert_eq!(time_left(29 * 86_400 + 23 * 3600 + 59), "29 days 23 h");
    assert_eq!(time_left(3 * 86_400), "3 days");
    assert_eq!(time_left(86_400 + 3600), "1 day 1 h");
    assert_eq!(time_left(7 * 3600 + 1), "7 h");
    assert_eq!(time_left(59), "under an hour");
    assert_eq!(time_left(0), "no time");
}

#[test]
fn missing_events_are_critical_with_three_days_left() {
    let missing = |created| MissingEvent {
        id: "evt_1".into(),
        event_type: "invoice.paid".into(),
        created,
        livemode: true,
        account: Default::default(),
    };
    let severity = |left: i64| {
        let now = 1_700_000_000;
        let created = now + left - EVENTS_RETENTION_SECS;
        missing_finding(&[missing(created)], None, true, now).map(|f| f.severity.as_str())
    };
    assert_eq!(severity(3 * 86_400 + 1), Some("warning"));
    assert_eq!(severity(3 * 86_400), Some("critical"));
    assert_eq!(severity(1), Some("critical"));
    assert_eq!(
        severity(0),
        None,
        "no longer listed: nothing a backfill can do"
    );
}

#[test]
fn every_handled_type_is_one_revguard_acts_on() {
    for t in HANDLED_EVENT_TYPES {
        assert_ne!(EventKind::of(t), EventKind::Unknown, "{t}");
    }
    assert_eq!(EventKind::of("customer.created"), EventKind::Unknown);
}

#[test]
fn a_snapshot_event_is_an_event_the_envelope_reads() {
    let object = serde_json::json!({ "id": "sub_1", "status": "canceled" });
    let raw = snapshot_event(
        &object,
        "sub_1",
        true,
        false,
        &crate::domain::account::Account::PLATFORM,
        1_700_000_000,
    );
    let env = crate::domain::event::EventEnvelope::parse(raw.as_bytes()).unwrap();
    assert_eq!(env.event_type, "customer.subscription.deleted");
    assert_eq!(env.created, 1_700_000_000);
    assert_eq!(env.id, "evt_rgreconcile_sub_1_1700000000");
}

#[test]
fn with_the_eventbridge_door_open_a_webhook_endpoint_is_optional() {
    let door = Some("aws.partner/stripe.com/ed_1");
    let url = Some("https://rg.example/webhook");
    // No endpoint at all, or one disabled, or one not sent every type: nothing, since
    // Stripe delivers through EventBridge (and the events audit judges both doors).
    assert!(endpoint_findings(&[], url, door, true, 100).is_empty());
    let disabled = endpoint(
        "we_1",
        "https://rg.example/webhook",
        "disabled",
        &["*"],
        None,
    );
    assert!(endpoint_findings(&[disabled], url, door, true, 100).is_empty());
    let partial = endpoint(
        "we_2",
        "https://rg.example/webhook",
        "enabled",
        &["invoice.paid"],
        None,
    );
    assert!(endpoint_findings(std::slice::from_ref(&partial), url, door, true, 100).is_empty());
    // Without the door, the same is critical, and a warning.
    assert_eq!(
        keys(&endpoint_findings(&[], url, None, true, 100)),
        [("endpoint_missing".to_owned(), "critical")]
    );
    assert_eq!(
        keys(&endpoint_findings(&[partial], url, None, true, 100)),
        [("endpoint_events".to_owned(), "warning")]
    );
    // An API version revguard does not read is still said.
    let newer = endpoint(
        "we_3",
        "https://rg.example/webhook",
        "enabled",
        &["*"],
        Some("2099-01-01"),
    );
    assert_eq!(
        keys(&endpoint_findings(&[newer], url, door, true, 100)),
        [("endpoint_api_version:we_3".to_owned(), "warning")]
    );
}
