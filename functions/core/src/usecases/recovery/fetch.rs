//! What every recovery use case shares about the events it fetches from Stripe: the
//! types revguard asks for, the ingress they go through, the id of its own snapshot
//! events, and the errors of recovery. A leaf: it imports no sibling.

use serde_json::value::RawValue;
use serde_json::Value;

use crate::ports::{ApiError, EventLog, Queue, QueueError, StoreError};
use crate::usecases::ingest::{IngestError, Ingress};

/// The event types revguard acts on (see [`EventKind::of`](crate::domain::billing::EventKind::of)): what a backfill asks for.
pub const HANDLED_EVENT_TYPES: [&str; 25] = [
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "customer.subscription.trial_will_end",
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
    "invoice.payment_action_required",
    "invoice.upcoming",
    "invoice.marked_uncollectible",
    "invoice.finalization_failed",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "charge.succeeded",
    "charge.failed",
    "charge.refunded",
    "charge.dispute.created",
    "charge.dispute.closed",
    "radar.early_fraud_warning.created",
    "checkout.session.completed",
    "customer.updated",
    "customer.deleted",
    "payment_method.attached",
];

/// The id prefix of revguard's own snapshot events (reconciliation and re-query).
pub const SNAPSHOT_EVENT_PREFIX: &str = "evt_rgreconcile_";

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The ingress for events revguard fetched from Stripe itself: they are never signed, so
/// its secret verifies nothing (one placeholder, here).
pub fn fetched_ingress<L: EventLog, Q: Queue>(log: L, queue: Q) -> Ingress<L, Q> {
    let unused =
        crate::domain::signature::WebhookSecret::new("whsec_fetched_events_are_not_signed")
            .expect("a well-formed secret");
    Ingress::new(
        log,
        queue,
        crate::usecases::ingest::IngestConfig::new(crate::domain::signature::SecretSet::single(
            unused,
        )),
    )
}

pub(super) fn event_type_of(raw: &RawValue) -> String {
    #[derive(serde::Deserialize)]
    struct Typed {
        #[serde(rename = "type", default)]
        event_type: String,
    }
    serde_json::from_str::<Typed>(raw.get()).map_or_else(|_| String::new(), |t| t.event_type)
}

/// Stripe's object as a subscription event: `deleted` for a canceled one (final), else
/// `updated`. Its id is revguard's own, unique per subscription and moment.
pub(super) fn snapshot_event(
    object: &Value,
    id: &str,
    canceled: bool,
    livemode: bool,
    account: &crate::domain::account::Account,
    created: i64,
) -> String {
    let event_type = if canceled {
        "customer.subscription.deleted"
    } else {
        "customer.subscription.updated"
    };
    let mut event = serde_json::json!({
        "id": format!("{SNAPSHOT_EVENT_PREFIX}{id}_{created}"),
        "object": "event",
        "type": event_type,
        "created": created,
        "livemode": livemode,
        "data": { "object": object },
    });
    // A connected account's snapshot is its account's, as its webhooks are.
    if let Some(acct) = account.id() {
        event["account"] = serde_json::Value::String(acct.to_owned());
        event["id"] =
            serde_json::Value::String(format!("{SNAPSHOT_EVENT_PREFIX}{acct}_{id}_{created}"));
    }
    event.to_string()
}
