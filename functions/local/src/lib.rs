//! revguard, the embedded default: the same webhook router and use cases as on AWS,
//! over a SQLite store with an in-process queue.

pub mod api;
pub mod consumer;
pub mod demo;
pub mod publish;
pub mod send;
pub mod serve;

pub use revguard_sqlite::SqliteStore;

/// Unix seconds from the wall clock: the embedded binary is an edge, allowed to read it.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Unix seconds, or an RFC 3339 UTC time such as `2026-01-01T00:00:00Z`.
pub fn parse_time(s: &str) -> Option<i64> {
    s.parse::<i64>()
        .ok()
        .or_else(|| revguard_core::time::parse_rfc3339(s))
}
