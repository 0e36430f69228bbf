//! Hourly counters, per livemode: the only thing the anomaly detector reads. The metrics
//! are [`crate::domain::metric::Metric`]s; `active_period_ends` sits at the hour an active
//! subscription's current period ends (what a renewal must move on).

use serde::{Deserialize, Serialize};

use crate::domain::metric::{Aggregation, Metric};
use crate::domain::time::hour_of;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterUpdate {
    pub livemode: bool,
    /// Start of the UTC hour (0 for the all-time gauges).
    pub hour: i64,
    pub metric: Metric,
    /// Added to the counter, or offered as its new maximum (see [`Metric::aggregation`]).
    pub value: i64,
}

pub use crate::domain::metric::CounterTotals;

#[derive(Debug, Default)]
pub struct CounterSink {
    pub updates: Vec<CounterUpdate>,
}

impl CounterSink {
    pub fn add(&mut self, livemode: bool, at: i64, metric: Metric, value: i64) {
        self.at_hour(livemode, hour_of(at), metric, value);
    }

    /// A counter kept at a fixed hour (hour 0 holds all-time gauges such as `mrr_total`).
    pub fn at_hour(&mut self, livemode: bool, hour: i64, metric: Metric, value: i64) {
        if value != 0 || metric.aggregation() == Aggregation::Max {
            self.updates.push(CounterUpdate {
                livemode,
                hour,
                metric,
                value,
            });
        }
    }

    /// A count that belongs at `after`'s hour now, and at `before`'s hour until now.
    pub fn moved(
        &mut self,
        livemode: bool,
        before: Option<i64>,
        after: Option<i64>,
        metric: Metric,
        amount: i64,
    ) {
        if before == after {
            return;
        }
        if let Some(b) = before {
            self.add(livemode, b, metric.clone(), -amount);
        }
        if let Some(a) = after {
            self.add(livemode, a, metric, amount);
        }
    }

    pub fn lag(&mut self, livemode: bool, received_at: i64, lag_secs: i64) {
        let lag = lag_secs.max(0);
        self.add(livemode, received_at, Metric::lag_bucket(lag), 1);
        self.add(livemode, received_at, Metric::LagSumSecs, lag);
        self.add(livemode, received_at, Metric::LagMaxSecs, lag);
    }
}

/// Folds updates into totals: sums add, maxima keep the largest.
pub fn fold(totals: &mut CounterTotals, updates: &[CounterUpdate]) {
    for u in updates {
        let slot = totals
            .entry((u.livemode, u.hour, u.metric.clone()))
            .or_insert(0);
        *slot = u.metric.aggregation().combine(*slot, u.value);
    }
    totals.retain(|_, v| *v != 0);
}
