//! revguard, the embedded default: the same webhook router and use cases as on AWS,
//! over a SQLite store with an in-process queue.

pub mod api;
pub mod demo;
pub mod detector;
pub mod send;
pub mod serve;
pub mod sqlite;
pub mod worker;

pub use sqlite::SqliteStore;

/// Unix seconds from the wall clock: the embedded binary is an edge, allowed to read it.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Unix seconds, or an RFC 3339 UTC time such as `2026-01-01T00:00:00Z`.
pub fn parse_time(s: &str) -> Option<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Some(n);
    }
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, min) = (t.next()?.parse::<i64>().ok()?, t.next()?.parse::<i64>().ok()?);
    let sec = t.next().map(|x| x.split('.').next().unwrap_or("0").parse::<i64>()).transpose().ok()?.unwrap_or(0);
    Some(revguard_core::billing::customer::days_from_civil(y, m, day) * 86_400 + h * 3600 + min * 60 + sec)
}
