//! The reconciliation's drift alert on the embedded store: a finding for the detector
//! at or over the threshold, none under it, and never with a threshold of 0.

use revguard_core::ports::{AlertStore, Queue};
use revguard_core::usecases::recovery::{fetched_ingress, reconcile_and_alert, ReconcileSettings};
use revguard_local::SqliteStore;
use revguard_testkit::fixtures::{json, queued_event};
use revguard_testkit::memory::MemoryStripe;

const NOW: i64 = 1_767_225_600;

#[tokio::test]
async fn a_drift_raises_the_alert_only_at_or_over_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("revguard.db")).unwrap();
    let subscription = json("customer.subscription.created.json")["data"]["object"].clone();
    store
        .send(&queued_event(
            "evt_reconcile_sub",
            "customer.subscription.created",
            NOW - 600,
            subscription,
            None,
        ))
        .await
        .unwrap();
    let applied = revguard_local::recover::apply_queued(
        &store,
        Default::default(),
        &dir.path().join("notifications.jsonl"),
    )
    .await
    .unwrap();
    assert_eq!(applied, 1);
    // Stripe (in memory) lists no subscription: the one revguard holds is extra.
    let stripe = MemoryStripe::new(true);
    let ingress = fetched_ingress(store.clone(), store.clone());
    let drift_waiting = || async {
        store
            .snapshot(NOW)
            .await
            .unwrap()
            .pending
            .iter()
            .any(|f| f.signal == "reconcile_drift")
    };
    for (threshold, raised) in [(0, false), (2, false), (1, true)] {
        let settings = ReconcileSettings {
            fix: false,
            drift_alert_threshold: threshold,
        };
        let report = reconcile_and_alert(
            &stripe,
            &store,
            &ingress,
            &store,
            &Default::default(),
            settings,
            &revguard_core::usecases::recovery::Holdings::of(
                &store,
                &revguard_core::ports::Account::PLATFORM,
            )
            .await
            .unwrap(),
            NOW,
        )
        .await
        .unwrap();
        assert_eq!(report.differing(), 1, "{report:?}");
        assert_eq!(drift_waiting().await, raised, "threshold {threshold}");
    }
}
