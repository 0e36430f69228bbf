//! revguard, the embedded default: the same webhook router and use cases as on AWS,
//! over a SQLite store with an in-process queue.

pub mod api;
pub mod chat;
pub mod consumer;
pub mod demo;
pub mod detector;
pub mod digests;
pub mod email;
pub mod publish;
pub mod recover;
pub mod send;
pub mod serve;
pub mod stop;

pub use revguard_sqlite::SqliteStore;

pub use revguard_core::domain::time::unix_now;

pub use revguard_core::domain::time::parse_time;
