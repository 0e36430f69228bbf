//! The endpoint audit through the detector: an endpoint Stripe disabled opens one critical
//! alert; while the endpoints cannot be read (Stripe down, a key without the
//! permission) the alert stays open instead of resolving and reopening; once the endpoint
//! is enabled again it resolves. A key's other mode is out of its sight, not missing.

use std::sync::Mutex;

use revguard_core::domain::detector::alerts::{AlertMessage, Transition};
use revguard_core::domain::detector::DetectConfig;
use revguard_core::domain::event::MissingEvent;
use revguard_core::ports::{Comebacks, StoreError};
use revguard_core::usecases::detector_run::Detector;
use revguard_core::usecases::recovery::{AuditOutcome, DeliveryAudit, Endpoint};
use revguard_testkit::memory::{CountedPause, MemoryAlerts, MemoryBilling, MemoryPublisher};

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

/// What the audit reads each run: the endpoints, or `None` when they cannot be read.
#[derive(Default)]
struct Endpoints(Mutex<Option<Vec<Endpoint>>>);

impl DeliveryAudit for Endpoints {
    async fn audit(
        &self,
        now: i64,
        _accounts: &[revguard_core::ports::Account],
        _remembered: &[MissingEvent],
    ) -> Option<AuditOutcome> {
        Some(AuditOutcome {
            window_start: now - 2100,
            window_end: now - 300,
            endpoints: self.0.lock().unwrap().clone(),
            endpoints_livemode: true,
            endpoint_url: Some("https://rg.example/webhook".into()),
            ..Default::default()
        })
    }
}

fn ours(status: &str) -> Endpoint {
    Endpoint {
        id: "we_1".into(),
        url: "https://rg.example/webhook".into(),
        status: status.into(),
        enabled_events: vec!["*".into()],
        api_version: None,
        livemode: true,
    }
}

const NOW: i64 = 1_764_000_000;
const RUN: i64 = 15 * 60;

#[tokio::test]
async fn a_disabled_endpoint_stays_open_while_unread_and_resolves_once_enabled() {
    let d = Detector {
        counters: MemoryBilling::default(),
        alerts: MemoryAlerts::default(),
        publisher: MemoryPublisher::<AlertMessage>::default(),
        comebacks: NoComebacks,
        config: DetectConfig::default(),
        audit: Endpoints::default(),
        pause: CountedPause::default(),
        wall_clock: revguard_core::domain::time::unix_now,
    };
    let mut heard: Vec<(String, Transition, i64)> = Vec::new();
    let mut run = |summary: revguard_core::usecases::detector_run::RunSummary| {
        heard.extend(
            summary
                .transitions
                .into_iter()
                .filter(|m| m.signal.starts_with("endpoint_"))
                .map(|m| (m.alert_id, m.transition, m.at)),
        )
    };
    *d.audit.0.lock().unwrap() = Some(vec![ours("disabled")]);
    run(d.run(NOW).await.unwrap());
    // Three hours the list cannot be read: more than an alert's quiet time to resolve.
    *d.audit.0.lock().unwrap() = None;
    for i in 1..=12 {
        run(d.run(NOW + i * RUN).await.unwrap());
    }
    *d.audit.0.lock().unwrap() = Some(vec![ours("enabled")]);
    for i in 13..=24 {
        run(d.run(NOW + i * RUN).await.unwrap());
    }
    let opened: Vec<_> = heard
        .iter()
        .filter(|(_, t, _)| *t == Transition::Opened)
        .collect();
    let resolved: Vec<_> = heard
        .iter()
        .filter(|(_, t, _)| *t == Transition::Resolved)
        .collect();
    assert_eq!(opened.len(), 1, "{heard:?}");
    assert_eq!(opened[0].0, "live:endpoint_disabled:we_1");
    assert_eq!(resolved.len(), 1, "{heard:?}");
    assert!(
        resolved[0].2 >= NOW + 13 * RUN,
        "resolved only once the endpoint was enabled again, not while unread: {heard:?}"
    );
    // No endpoint_missing for test mode, whose endpoints the live key cannot see.
    assert!(
        heard.iter().all(|(id, _, _)| id.starts_with("live:")),
        "{heard:?}"
    );
}
