//! The counters a detection reads: one livemode's hours, and the hours it needs.

use std::collections::BTreeMap;

use crate::domain::metric::Metric;
use crate::domain::time::hour_of;

/// One livemode's counters: hour → metric → value. Hour 0 holds all-time gauges.
pub type Series = BTreeMap<i64, BTreeMap<Metric, i64>>;

/// Splits store totals into one series per livemode.
pub fn series_of(totals: &crate::domain::metric::CounterTotals, livemode: bool) -> Series {
    let mut out = Series::new();
    for ((l, hour, metric), value) in totals {
        if *l == livemode {
            out.entry(*hour).or_default().insert(metric.clone(), *value);
        }
    }
    out
}

/// The hours a detection at `now` needs: the window and the 7 days before it, 8 days in all.
pub fn hours_needed(now: i64) -> (i64, i64) {
    (hour_of(now) - 8 * 24 * 3600, hour_of(now) + 3600)
}
