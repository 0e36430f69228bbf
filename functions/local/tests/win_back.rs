//! Win-back notices on the embedded store, in every delivery order: a customer who
//! cancels and stays away gets one win-back notice when it comes due, to the team's
//! notifications file and never to on call's alerts; one who subscribes again gets none,
//! whichever of the events arrived first.

use revguard_core::domain::billing::BillingPolicy;
use revguard_core::ports::Queue;
use revguard_core::QueueMessage;
use revguard_local::chat::AlertPublisher;
use revguard_local::consumer;
use revguard_local::detector;
use revguard_local::publish::JsonlPublisher;
use revguard_sqlite::SqliteStore;
use revguard_testkit::fixtures::queued_event;
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

/// What reached each channel.
struct Heard {
    /// The transitions the detector committed and published (to either channel).
    published: Vec<String>,
    /// Lines of the alerts file (on call).
    alarms: Vec<serde_json::Value>,
    /// Lines of the notifications file (the team) written by the detector.
    notices: Vec<serde_json::Value>,
}

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Applies `events` in `order`, then runs the detector on the day the win-back is due and
/// again a day later, its alarms to an alerts file and the team's notices to a
/// notifications file, as `revguard serve` wires them.
async fn run(events: &[QueueMessage], order: &[usize]) -> Heard {
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
    let (alerts_file, notices_file) = (
        dir.path().join("alerts.jsonl"),
        dir.path().join("notices.jsonl"),
    );
    let on_call = AlertPublisher {
        file: JsonlPublisher::to_file("alert", &alerts_file).unwrap(),
        deliveries: None,
    };
    let team = JsonlPublisher::to_file("notification", &notices_file).unwrap();
    let detector = detector::detector(&store, Default::default(), on_call, team);
    let mut published = Vec::new();
    for at in [
        T + 13 * DAY,
        T + 14 * DAY + 60,
        T + 14 * DAY + 3600,
        T + 15 * DAY + 3600,
    ] {
        published.extend(detector.run(at).await.unwrap().published);
    }
    Heard {
        published,
        alarms: lines(&alerts_file),
        notices: lines(&notices_file),
    }
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
        let heard = run(&churn, &order).await;
        assert_eq!(
            heard.published,
            [
                "live:win_back:cus_W:1 opened",
                "live:win_back:cus_W:2 resolved"
            ],
            "order {order:?}: due once on its day (not before), closed a day later"
        );
        assert!(
            heard.alarms.is_empty(),
            "order {order:?}: a win-back is no alarm: {:?}",
            heard.alarms
        );
        assert_eq!(
            heard.notices.len(),
            1,
            "order {order:?}: {:?}",
            heard.notices
        );
        let notice = &heard.notices[0];
        assert_eq!(
            (&notice["id"], &notice["kind"], &notice["customer"]),
            (
                &"live:win_back:cus_W:1".into(),
                &"win_back".into(),
                &"cus_W".into()
            ),
            "order {order:?}: {notice}"
        );
        assert_eq!(notice["details"]["canceled_at"], T, "{notice}");
    }
    let mut returned = churn.to_vec();
    returned.push(event(
        "evt_w3",
        "customer.subscription.created",
        T + 5 * DAY,
        subscription("sub_W2", "active"),
    ));
    for order in permutations(3) {
        let heard = run(&returned, &order).await;
        assert!(
            heard.published.is_empty() && heard.alarms.is_empty() && heard.notices.is_empty(),
            "order {order:?}: the customer came back: {:?} {:?}",
            heard.published,
            heard.notices
        );
    }
}
