//! Time left to recover: events Stripe has and the event log lacks stay known after the
//! audit's half-hour window has moved on. The alert says how long until the oldest leaves
//! the Events API's 30 days, is a warning while there is time, escalates to critical with
//! 3 days left, stays open while Stripe cannot be asked, and resolves once a backfill
//! put the events in the log. Over the real audit, a Stripe double and memory stores.

use revguard_core::domain::detector::alerts::{AlertMessage, Transition};
use revguard_core::domain::detector::DetectConfig;
use revguard_core::ports::{Comebacks, EventLog, StoreError};
use revguard_core::usecases::detector_run::{Detector, RunSummary};
use revguard_core::usecases::recovery::StripeAudit;
use revguard_testkit::contract::sample_record;
use revguard_testkit::memory::{
    CountedPause, MemoryAlerts, MemoryBilling, MemoryEventLog, MemoryPublisher, MemoryStripe,
};

struct NoComebacks;

impl Comebacks for NoComebacks {
    async fn is_subscribed(
        &self,
        _account: &revguard_core::ports::Account,
        _customer: &str,
        _livemode: bool,
    ) -> Result<bool, StoreError> {
        Ok(false)
    }
}

const NOW: i64 = 1_764_000_000;
const DAY: i64 = 86_400;

type TestDetector = Detector<
    MemoryBilling,
    MemoryAlerts,
    MemoryPublisher<AlertMessage>,
    NoComebacks,
    StripeAudit<MemoryStripe, MemoryEventLog>,
    CountedPause,
>;

fn detector() -> TestDetector {
    Detector {
        counters: MemoryBilling::default(),
        alerts: MemoryAlerts::default(),
        publisher: MemoryPublisher::default(),
        comebacks: NoComebacks,
        config: DetectConfig::default(),
        audit: StripeAudit {
            api: MemoryStripe::new(true),
            log: MemoryEventLog::default(),
            endpoint_url: None,
            eventbridge_source: None,
        },
        pause: CountedPause::default(),
        wall_clock: revguard_core::domain::time::unix_now,
    }
}

fn event(id: &str, created: i64) -> String {
    serde_json::json!({ "id": id, "object": "event", "type": "invoice.paid", "created": created,
        "livemode": true, "data": { "object": { "id": "in_1", "object": "invoice" } } })
    .to_string()
}

/// The transitions of the events_missing alert a run published.
fn heard(summary: RunSummary) -> Vec<(Transition, &'static str, String)> {
    summary
        .transitions
        .into_iter()
        .filter(|m| m.signal == "events_missing")
        .map(|m| (m.transition, m.severity.as_str(), m.finding.explanation))
        .collect()
}

fn remembered(d: &TestDetector) -> Vec<String> {
    d.alerts
        .tables()
        .alerts
        .get("live:events_missing")
        .map(|a| a.missing_events.iter().map(|m| m.id.clone()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn missing_events_say_the_time_left_escalate_with_three_days_left_and_resolve_once_backfilled(
) {
    let d = detector();
    // Three events during an outage, twenty minutes ago; one delivered.
    let oldest = NOW - 20 * 60;
    for (i, id) in ["evt_m1", "evt_m2", "evt_m3", "evt_ok"].iter().enumerate() {
        d.audit.api.created(&event(id, oldest + i as i64));
    }
    d.audit
        .log
        .insert_if_absent(&sample_record("evt_ok", oldest))
        .await
        .unwrap();

    let opened = heard(d.run(NOW).await.unwrap());
    assert_eq!(opened.len(), 1, "{opened:?}");
    let (transition, severity, explanation) = &opened[0];
    assert_eq!((*transition, *severity), (Transition::Opened, "warning"));
    assert!(
        explanation.contains("3 events Stripe created since")
            && explanation.contains("3 of the 4 created between")
            && explanation
                .contains("the oldest leaves the Events API's 30-day window in 29 days 23 h"),
        "{explanation}"
    );

    // The audit's window moves on; the alert keeps them, and more go missing later.
    assert!(heard(d.run(NOW + 3600).await.unwrap()).is_empty());
    d.audit.api.created(&event("evt_m4", NOW + 2 * 3600));
    d.run(NOW + 2 * 3600 + 20 * 60).await.unwrap();
    assert_eq!(remembered(&d), ["evt_m1", "evt_m2", "evt_m3", "evt_m4"]);

    // Stripe cannot be asked for longer than an alert's quiet time: unasked is not
    // backfilled, the alert stays open with what it knows.
    d.audit
        .api
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    for hour in 3..=6 {
        let run = heard(d.run(NOW + hour * 3600).await.unwrap());
        assert!(
            run.iter().all(|(t, _, _)| *t != Transition::Resolved),
            "{run:?}"
        );
    }
    d.audit
        .api
        .down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(remembered(&d).len(), 4);

    // 3 days and 100 s before the oldest leaves the window: still a warning; at 3 days,
    // escalated to critical, once.
    let critical_from = oldest + 27 * DAY;
    let before = heard(d.run(critical_from - 100).await.unwrap());
    assert!(before.iter().all(|(_, s, _)| *s == "warning"), "{before:?}");
    let escalated = heard(d.run(critical_from).await.unwrap());
    assert_eq!(escalated.len(), 1, "{escalated:?}");
    let (transition, severity, explanation) = &escalated[0];
    assert_eq!(
        (*transition, *severity),
        (Transition::Escalated, "critical")
    );
    assert!(
        explanation.contains("4 events Stripe created since")
            && explanation.contains("window in 3 days (")
            && explanation.contains("Backfill now"),
        "{explanation}"
    );
    assert!(heard(d.run(critical_from + 900).await.unwrap()).is_empty());

    // A backfill puts them in the event log: quiet, then resolved once.
    for id in ["evt_m1", "evt_m2", "evt_m3", "evt_m4"] {
        d.audit
            .log
            .insert_if_absent(&sample_record(id, critical_from))
            .await
            .unwrap();
    }
    let mut after = Vec::new();
    for step in 1..=8 {
        after.extend(heard(
            d.run(critical_from + 900 + step * 900).await.unwrap(),
        ));
    }
    let transitions: Vec<Transition> = after.iter().map(|(t, _, _)| *t).collect();
    assert_eq!(transitions, [Transition::Resolved], "{after:?}");
    assert!(remembered(&d).is_empty());
}

#[tokio::test]
async fn events_stripe_no_longer_lists_are_forgotten() {
    let d = detector();
    d.audit.api.created(&event("evt_old", NOW - 20 * 60));
    assert_eq!(heard(d.run(NOW).await.unwrap()).len(), 1);
    // 30 days on, a backfill can no longer fetch it: nothing left to recover.
    let gone = NOW - 20 * 60 + 30 * 86_400;
    d.run(gone).await.unwrap();
    let resolved = heard(d.run(gone + 2 * 3600).await.unwrap());
    assert_eq!(
        resolved.iter().map(|(t, _, _)| *t).collect::<Vec<_>>(),
        [Transition::Resolved]
    );
}
