//! The detector's alert outbox when things fail around a publish: an outbox entry that
//! cannot be published holds back no detection, and one that went out but could not be
//! cleared (a throttled delete in a busy hour) is retried with backoff, so it does not
//! outlive its lease and go out a second time from a later run.

use revguard_core::domain::detector::alerts::{alert_id, AlertMessage};
use revguard_core::domain::detector::DetectConfig;
use revguard_core::ports::{Comebacks, StoreError};
use revguard_core::usecases::detector_run::Detector;
use revguard_core::usecases::recovery::NoAudit;
use revguard_core::usecases::retry::Backoff;
use revguard_testkit::contract::sample_finding;
use revguard_testkit::memory::{CountedPause, MemoryAlerts, MemoryBilling, MemoryPublisher};

use std::sync::atomic::Ordering;

/// Nobody is subscribed again (no win-back finding is in play here).
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

type TestDetector = Detector<
    MemoryBilling,
    MemoryAlerts,
    MemoryPublisher<AlertMessage>,
    NoComebacks,
    NoAudit,
    CountedPause,
>;

fn detector() -> TestDetector {
    Detector {
        counters: MemoryBilling::default(),
        alerts: MemoryAlerts::default(),
        publisher: MemoryPublisher::default(),
        comebacks: NoComebacks,
        config: DetectConfig::default(),
        audit: NoAudit,
        pause: CountedPause::default(),
        wall_clock: revguard_core::domain::time::unix_now,
    }
}

fn pauses(d: &TestDetector) -> usize {
    d.pause.pauses.lock().unwrap().len()
}

const NOW: i64 = 1_764_000_000;

#[tokio::test]
async fn an_outbox_clear_that_fails_at_first_is_retried_and_the_alert_goes_out_once() {
    let d = detector();
    d.alerts
        .raise(sample_finding("large_refund:ch_large", NOW - 60));
    d.alerts.clear_failures_to_inject.store(3, Ordering::SeqCst);

    let summary = d.run(NOW).await.unwrap();

    assert_eq!(summary.published.len(), 1, "{summary:?}");
    assert_eq!(d.publisher.taken().len(), 1);
    assert_eq!(
        pauses(&d),
        3,
        "one backoff pause before each retry of the clear"
    );
    assert!(
        d.alerts.tables().outbox.is_empty(),
        "cleared on a retry: nothing left for a later run to publish again"
    );
}

#[tokio::test]
async fn an_outbox_clear_that_keeps_failing_leaves_the_entry_leased_for_a_later_run() {
    let d = detector();
    d.alerts
        .raise(sample_finding("large_refund:ch_large", NOW - 60));
    d.alerts
        .clear_failures_to_inject
        .store(usize::MAX / 2, Ordering::SeqCst);

    let first = d.run(NOW).await.unwrap();
    assert_eq!(first.published.len(), 1, "{first:?}");
    assert_eq!(
        pauses(&d),
        Backoff::COMMIT.max_attempts as usize - 1,
        "the commit's backoff: a pause before each retry"
    );
    assert_eq!(
        d.alerts.tables().outbox.len(),
        1,
        "an entry that could not be cleared stays for a later run"
    );

    // A run within the lease (one overlapping, or retried at once) leaves it alone. Leases
    // run on the wall clock, and little of it passes here; after the lease, a later run
    // publishes the entry again (subscribers de-duplicate on its id).
    let second = d.run(NOW + 1).await.unwrap();
    assert!(second.published.is_empty(), "{second:?}");
    assert_eq!(d.publisher.taken().len(), 1);
}

#[tokio::test]
async fn an_outbox_entry_that_cannot_be_published_holds_back_no_detection() {
    let d = detector();
    let stuck = format!("{}:1", alert_id(true, "large_refund:ch_stuck"));
    d.publisher.fail_ids.lock().unwrap().insert(stuck.clone());
    d.alerts
        .raise(sample_finding("large_refund:ch_stuck", NOW - 600));
    let first = d.run(NOW - 300).await.unwrap();
    assert_eq!(first.unpublished.len(), 1, "{first:?}");
    assert!(d.alerts.tables().outbox.contains_key(&stuck));

    // The next run, after the lease: the leftover fails again, and a new finding is still
    // detected, committed and published.
    d.alerts.expire_outbox_leases();
    d.alerts
        .raise(sample_finding("large_refund:ch_new", NOW - 60));
    let next = d.run(NOW).await.unwrap();
    let fresh = format!("{}:1", alert_id(true, "large_refund:ch_new"));
    assert_eq!(next.published, [format!("{fresh} opened")], "{next:?}");
    assert_eq!(
        next.unpublished
            .iter()
            .map(|(id, _)| id.as_str())
            .collect::<Vec<_>>(),
        [stuck.as_str()],
        "the leftover was tried and stays for a later run"
    );
    assert!(d.alerts.tables().outbox.contains_key(&stuck));
    assert!(!d.alerts.tables().outbox.contains_key(&fresh));
}
