//! Win-back notices on the embedded store, in every delivery order: a customer who
//! cancels and stays away gets one win-back alert when it comes due; one who subscribes
//! again gets none, whichever of the events arrived first.

use revguard_core::billing::BillingPolicy;
use revguard_core::fixtures::queued_event;
use revguard_core::ports::Queue;
use revguard_core::QueueMessage;
use revguard_local::chat::AlertPublisher;
use revguard_local::consumer;
use revguard_local::publish::JsonlPublisher;
use revguard_sqlite::SqliteStore;
use serde_json::{json, Value};

const T: i64 = 1_768_003_200; // 2026-01-10 00:00 UTC
const DAY: i64 = 86_400;

fn event(id: &str, event_type: &str, created: i64, object: Value) -> QueueMessage {
    queued_event(
        id,
        event_type,
        created,
        object,
        Some(json!({ "status": "active" })),
    )
}

fn subscription(id: &str, status: &str) -> Value {
    json!({ "id": id, "object": "subscription", "customer": "cus_W", "status": status, "currency": "usd",
        "created": T - 90 * DAY, "ended_at": if status == "canceled" { json!(T) } else { json!(null) },
        "cancellation_details": { "reason": "cancellation_requested", "feedback": "too_expensive" },
        "items": { "data": [{ "id": "si_1", "quantity": 1, "current_period_end": T,
            "price": { "unit_amount": 4900, "currency": "usd", "recurring": { "interval": "month", "interval_count": 1 } } }] } })
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for i in 0..=p.len() {
            let mut q = p.clone();
            q.insert(i, n - 1);
            out.push(q);
        }
    }
    out
}

/// Applies `events` in `order`, then runs the detector on the day the win-back is due and
/// again a day later; returns the transitions published.
async fn run(events: &[QueueMessage], order: &[usize]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("w.db")).unwrap();
    let worker = consumer::worker(
        &store,
        BillingPolicy::default(),
        JsonlPublisher::log_only("notification"),
    );
    for i in order {
        store.send(&events[*i]).await.unwrap();
        consumer::run_once(&store, &worker, T + DAY).await.unwrap();
    }
    let detector = consumer::detector(&store, Default::default(), AlertPublisher::log_only());
    let mut published = Vec::new();
    for at in [
        T + 13 * DAY,
        T + 14 * DAY + 60,
        T + 14 * DAY + 3600,
        T + 15 * DAY + 3600,
    ] {
        published.extend(detector.run(at).await.unwrap().published);
    }
    published
}

#[tokio::test]
async fn a_win_back_comes_due_once_unless_the_customer_came_back_in_any_order() {
    let churn = [
        event(
            "evt_w1",
            "customer.subscription.created",
            T - 90 * DAY,
            subscription("sub_W", "active"),
        ),
        event(
            "evt_w2",
            "customer.subscription.deleted",
            T,
            subscription("sub_W", "canceled"),
        ),
    ];
    for order in permutations(2) {
        let published = run(&churn, &order).await;
        assert_eq!(
            published,
            [
                "live:win_back:cus_W:1 opened",
                "live:win_back:cus_W:2 resolved"
            ],
            "order {order:?}: opened once on its day (not before), resolved a day later"
        );
    }
    let mut returned = churn.to_vec();
    returned.push(event(
        "evt_w3",
        "customer.subscription.created",
        T + 5 * DAY,
        subscription("sub_W2", "active"),
    ));
    for order in permutations(3) {
        let published = run(&returned, &order).await;
        assert!(
            published.is_empty(),
            "order {order:?}: the customer came back: {published:?}"
        );
    }
}
