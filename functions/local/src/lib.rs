//! revguard, the embedded default: the same webhook router and use cases as on AWS,
//! over a SQLite store with an in-process queue.

pub mod api;
pub mod chat;
pub mod consumer;
pub mod demo;
pub mod publish;
pub mod recover;
pub mod send;
pub mod serve;

pub use revguard_sqlite::SqliteStore;

pub use revguard_core::time::unix_now;

/// Unix seconds, or an RFC 3339 UTC time such as `2026-01-01T00:00:00Z`.
pub fn parse_time(s: &str) -> Option<i64> {
    s.parse::<i64>()
        .ok()
        .or_else(|| revguard_core::time::parse_rfc3339(s))
}
