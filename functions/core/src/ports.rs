//! The ports the use cases need. Adapters live in their own crates (`revguard-aws`,
//! the SQLite store in `revguard-local`); the domain never knows which one it runs on.

use std::future::Future;

use crate::message::QueueMessage;

/// Where an event stands in the event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStatus {
    /// Recorded, but its enqueue has not been confirmed: a redelivery enqueues it again.
    Received,
    /// Recorded and handed to the queue.
    Queued,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Received => "received",
            EventStatus::Queued => "queued",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "received" => Some(EventStatus::Received),
            "queued" => Some(EventStatus::Queued),
            _ => None,
        }
    }
}

/// One event-log entry: metadata, and the payload only when it could not ride in the
/// queue message (then compressed, see [`crate::message`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub event_id: String,
    pub event_type: String,
    pub created: i64,
    pub livemode: bool,
    pub received_at: i64,
    /// Unix seconds after which the entry may be deleted (DynamoDB TTL).
    pub expires_at: i64,
    pub status: EventStatus,
    /// Deflate-compressed raw payload, for payloads too big for a queue message.
    pub stored_payload: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    Inserted,
    AlreadyPresent(EventStatus),
}

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store is unavailable")]
    Unavailable(#[source] BoxError),
    #[error("the store holds a record it cannot read: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub fn unavailable(e: impl Into<BoxError>) -> Self {
        StoreError::Unavailable(e.into())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the queue is unavailable")]
    Unavailable(#[source] BoxError),
    #[error("the queue refused a message of {0} bytes")]
    TooLarge(usize),
}

impl QueueError {
    pub fn unavailable(e: impl Into<BoxError>) -> Self {
        QueueError::Unavailable(e.into())
    }
}

/// The event log: one entry per Stripe event id, written with a conditional insert.
pub trait EventLog: Send + Sync {
    /// Inserts the record unless an entry with its id exists; never overwrites.
    fn insert_if_absent(
        &self,
        record: &EventRecord,
    ) -> impl Future<Output = Result<InsertOutcome, StoreError>> + Send;

    /// Records that the event's enqueue was confirmed.
    fn mark_queued(&self, event_id: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The compressed payload kept for an event whose message carries only a reference.
    fn stored_payload(
        &self,
        event_id: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;
}

/// The queue between ingress and the worker.
pub trait Queue: Send + Sync {
    /// The largest encoded message this queue takes.
    fn max_message_bytes(&self) -> usize;

    fn send(&self, message: &QueueMessage) -> impl Future<Output = Result<(), QueueError>> + Send;
}

#[derive(Debug, thiserror::Error)]
#[error("the notification could not be published")]
pub struct NotifyError(#[source] pub BoxError);

/// Where structured notifications go (SNS on AWS; log + JSONL embedded).
pub trait Notifier: Send + Sync {
    fn publish(
        &self,
        notification: &crate::billing::Notification,
    ) -> impl Future<Output = Result<(), NotifyError>> + Send;
}
