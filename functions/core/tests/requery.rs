//! Re-query on important transitions, through the worker use case: a subscription that
//! moves to past_due (or whose snapshots tie on `created`) gets Stripe's current object
//! fetched and enqueued as a snapshot ordered after what was applied; nothing else does,
//! and a reconciliation snapshot never triggers another. Stripe's API is a trait double
//! here (the client itself is tested against localstripe and an HTTP double).

use std::sync::Mutex;

use revguard_core::domain::billing::{BillingPolicy, Notification};
use revguard_core::ports::Inbound;
use revguard_core::ports::{ApiError, EventsQuery, Page, PageCursor, RawObjects, StripeApi};
use revguard_core::usecases::apply_batch::{BatchApplier, ConsumeRules};
use revguard_core::usecases::recovery::StripeRequery;
use revguard_core::{Payload, QueueMessage, Via};
use revguard_testkit::memory::{
    CountedPause, MemoryBilling, MemoryDeadLetters, MemoryEventLog, MemoryPublisher, MemoryQueue,
};
use serde_json::{json, value::RawValue};

/// Stripe, holding each subscription as `canceled` now, and counting the fetches.
#[derive(Default, Clone)]
struct Stripe {
    fetched: std::sync::Arc<Mutex<Vec<String>>>,
}

impl StripeApi for Stripe {
    fn for_account(&self, _account: &revguard_core::ports::Account) -> Self {
        self.clone()
    }
    async fn events_page(&self, _query: &EventsQuery, _at: &PageCursor) -> Result<Page, ApiError> {
        Ok(Page::default())
    }
    async fn subscriptions_page(&self, _at: &PageCursor) -> Result<Page, ApiError> {
        Ok(Page::default())
    }
    async fn webhook_endpoints(&self) -> Result<RawObjects, ApiError> {
        Ok(Vec::new())
    }
    fn livemode(&self) -> bool {
        false
    }
    async fn invoice(&self, _id: &str) -> Result<Option<Box<RawValue>>, ApiError> {
        Ok(None)
    }
    async fn subscription(&self, id: &str) -> Result<Option<Box<RawValue>>, ApiError> {
        self.fetched.lock().unwrap().push(id.to_owned());
        Ok(Some(
            RawValue::from_string(subscription(id, "canceled").to_string()).unwrap(),
        ))
    }
}

fn subscription(id: &str, status: &str) -> serde_json::Value {
    json!({ "id": id, "object": "subscription", "customer": "cus_R", "status": status, "livemode": false,
        "currency": "usd", "items": { "data": [{ "id": "si_1", "quantity": 1, "current_period_end": 1_800_000_000,
        "price": { "unit_amount": 1000, "currency": "usd", "recurring": { "interval": "month", "interval_count": 1 } } }] } })
}

fn delivery(n: usize, event_id: &str, created: i64, status: &str) -> Inbound {
    let raw = json!({ "id": event_id, "object": "event", "type": "customer.subscription.updated",
        "created": created, "livemode": false, "data": { "object": subscription("sub_R", status) } })
    .to_string();
    Inbound {
        id: format!("m{n}"),
        body: QueueMessage {
            event_id: event_id.into(),
            event_type: "customer.subscription.updated".into(),
            livemode: false,
            created,
            received_at: created + 1,
            payload: Payload::Inline(raw),
            via: Via::Webhook,
        }
        .encode(),
        receive_count: 1,
        sent_at: None,
    }
}

type RequeryWorker = BatchApplier<
    MemoryEventLog,
    MemoryBilling,
    MemoryPublisher<Notification>,
    MemoryDeadLetters,
    CountedPause,
    StripeRequery<Stripe, MemoryEventLog, MemoryQueue>,
>;

fn worker() -> RequeryWorker {
    BatchApplier {
        log: MemoryEventLog::default(),
        billing: MemoryBilling::default(),
        notifier: MemoryPublisher::default(),
        dead_letters: MemoryDeadLetters::default(),
        pause: CountedPause::default(),
        policy: BillingPolicy::default(),
        rules: ConsumeRules::default(),
        requery: StripeRequery {
            api: Stripe::default(),
            ingress: revguard_core::usecases::recovery::fetched_ingress(
                MemoryEventLog::default(),
                MemoryQueue::default(),
            ),
        },
    }
}

const NOW: i64 = 1_800_000_500;

#[tokio::test]
async fn a_move_to_past_due_fetches_stripes_object_and_enqueues_it_after_what_was_applied() {
    let w = worker();
    w.consume(&[delivery(0, "evt_1", 1_800_000_000, "active")], NOW)
        .await;
    assert!(
        w.requery.api.fetched.lock().unwrap().is_empty(),
        "active is no important transition"
    );

    w.consume(&[delivery(1, "evt_2", 1_800_000_100, "past_due")], NOW)
        .await;
    assert_eq!(*w.requery.api.fetched.lock().unwrap(), ["sub_R"]);
    let sent = w.requery.ingress.queue.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].via, Via::Reconcile);
    assert_eq!(sent[0].event_type, "customer.subscription.deleted");
    // Ordered after what was applied (1_800_000_100) and after anything delivered by now.
    assert_eq!(sent[0].created, NOW);

    // Applying the fetched snapshot (a move to canceled) fetches nothing again.
    let snapshot = Inbound {
        id: "m2".into(),
        body: sent[0].encode(),
        receive_count: 1,
        sent_at: None,
    };
    w.consume(&[snapshot], NOW).await;
    assert_eq!(w.requery.api.fetched.lock().unwrap().len(), 1);
    // Still past_due again later: no move, no fetch.
    w.consume(&[delivery(3, "evt_0", 1_799_999_000, "past_due")], NOW)
        .await;
    assert_eq!(w.requery.api.fetched.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn snapshots_that_tie_on_created_are_settled_by_stripe() {
    let w = worker();
    w.consume(&[delivery(0, "evt_a", 1_800_000_000, "active")], NOW)
        .await;
    assert!(w.requery.api.fetched.lock().unwrap().is_empty());
    // Another snapshot of the same second: which is the latest is a guess.
    w.consume(&[delivery(1, "evt_b", 1_800_000_000, "trialing")], NOW)
        .await;
    assert_eq!(*w.requery.api.fetched.lock().unwrap(), ["sub_R"]);
    assert_eq!(w.requery.ingress.queue.sent().len(), 1);
}
