//! Rejected deliveries are counted, and summarised in the log at most once a second.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

const CODES: [&str; 10] = [
    "missing_signature",
    "malformed_signature",
    "no_v1_signature",
    "bad_signature",
    "stale_signature",
    "malformed_body",
    "payload_too_large",
    "unreadable_body",
    "live_mode_refused",
    "test_mode_refused",
];

#[derive(Default)]
pub struct RejectionStats {
    total: [AtomicU64; CODES.len()],
    since_log: [AtomicU64; CODES.len()],
    last_logged_sec: AtomicI64,
}

impl RejectionStats {
    pub fn record(&self, code: &str, now: i64) {
        let Some(i) = CODES.iter().position(|c| *c == code) else {
            return;
        };
        self.total[i].fetch_add(1, Ordering::Relaxed);
        self.since_log[i].fetch_add(1, Ordering::Relaxed);
        let last = self.last_logged_sec.load(Ordering::Relaxed);
        if now > last
            && self
                .last_logged_sec
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            let counts: BTreeMap<&str, u64> = CODES
                .iter()
                .zip(&self.since_log)
                .filter_map(|(c, n)| {
                    let n = n.swap(0, Ordering::Relaxed);
                    (n > 0).then_some((*c, n))
                })
                .collect();
            tracing::warn!(rejected = ?counts, "webhook deliveries rejected since the last report");
        }
    }

    /// Totals since start, by code.
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        CODES
            .iter()
            .zip(&self.total)
            .map(|(c, n)| (*c, n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_rejection_but_reports_once_a_second() {
        let stats = RejectionStats::default();
        for _ in 0..1000 {
            stats.record("bad_signature", 100);
        }
        stats.record("stale_signature", 100);
        stats.record("nonsense", 100);
        let snap = stats.snapshot();
        assert_eq!(snap.get("bad_signature"), Some(&1000));
        assert_eq!(snap.get("stale_signature"), Some(&1));
        assert_eq!(snap.len(), 2);
        // One report at second 100 took the first rejection; the rest wait for the next.
        assert_eq!(stats.last_logged_sec.load(Ordering::Relaxed), 100);
        let pending: u64 = stats
            .since_log
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .sum();
        assert_eq!(pending, 1000);
        stats.record("bad_signature", 101);
        let pending: u64 = stats
            .since_log
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .sum();
        assert_eq!(pending, 0);
    }
}
