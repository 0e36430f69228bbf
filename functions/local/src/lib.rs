//! revguard, the embedded default: the same webhook router and use cases as on AWS,
//! over a SQLite store with an in-process queue.

pub mod send;
pub mod serve;
pub mod sqlite;

pub use sqlite::SqliteStore;

/// Unix seconds from the wall clock: the embedded binary is an edge, allowed to read it.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
