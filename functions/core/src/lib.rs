//! revguard's domain: Stripe signatures and events, the use cases and the ports they need.
//!
//! No AWS, no SQL, no clock, no environment: time comes in as an argument (the entry
//! points read the wall clock, with `time::unix_now`, and pass it in).

pub mod audience;
pub mod billing;
pub mod chat;
pub mod detect;
pub mod detector;
pub mod digest;
pub mod error;
pub mod event;
pub mod finding;
pub mod ingest;
pub mod message;
pub mod metric;
pub mod money;
pub mod outbox;
pub mod pager;
pub mod ports;
pub mod recovery;
pub mod retry;
pub mod signature;
pub mod time;
pub mod worker;

pub use error::error_chain;
pub use event::EventEnvelope;
pub use ingest::{IngestConfig, IngestError, IngestOutcome, Ingress, ModeFilter};
pub use message::{Payload, QueueMessage, Via};
pub use ports::{EventLog, EventRecord, EventStatus, InsertOutcome, Queue, QueueError, StoreError};
pub use signature::{SecretSet, VerifyError, WebhookSecret};
