//! revguard's core, laid out by role: `domain` (Stripe signatures and events, billing
//! state and dunning, the detector's maths, metrics, money, time: pure functions),
//! `usecases` (ingest, apply a batch, a detector run, the outbox, the digest, and the
//! recovery through Stripe's API: each once, for both backends) and `ports` (the traits
//! the use cases need; adapters live in their own crates).
//!
//! No AWS, no SQL, no clock, no environment: time comes in as an argument (the entry
//! points read the wall clock, with `domain::time::unix_now`, and pass it in).

pub mod domain;
pub mod ports;
pub mod usecases;

pub use domain::error::error_chain;
pub use domain::event::EventEnvelope;
pub use domain::message::{Payload, QueueMessage, Via};
pub use domain::signature::{SecretSet, VerifyError, WebhookSecret};
pub use ports::{EventLog, EventRecord, EventStatus, InsertOutcome, Queue, QueueError, StoreError};
pub use usecases::ingest::{IngestConfig, IngestError, IngestOutcome, Ingress, ModeFilter};
