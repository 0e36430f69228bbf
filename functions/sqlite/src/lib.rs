//! The embedded store: revguard's ports on one SQLite file — the event log, the queue,
//! billing state and counters, alerts, and the operators' read model, one module each;
//! the schema and its migrations in [`schema`].
//!
//! Durability first: WAL with `synchronous=FULL`, so a write is on disk before its caller
//! hears success (Stripe never resends an event it saw acknowledged). Speed comes from
//! group commit, not from a weaker sync: one writer thread takes every write waiting
//! for it, runs each in its own savepoint inside one transaction, and commits them with
//! one fsync. A write that fails rolls back alone; the others in its batch still commit.

pub mod alerts;
pub mod billing;
pub mod chat;
pub mod event_log;
pub mod queue;
pub mod read_model;
pub mod schema;
mod store;

pub use queue::QueuedMessage;
pub use read_model::EventCounts;
pub use store::{OpenError, SqliteStore, DEFAULT_MAX_MESSAGE_BYTES};
