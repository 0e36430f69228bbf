//! Hourly counters, per livemode: the only thing the anomaly detector reads.
//!
//! Metric names (amounts are per currency, in minor units, suffixed `.<currency>`):
//! `events`, `events.type.<type>` (by event time), `events_received` (by receipt time),
//! `lag_le_<secs>` / `lag_gt_3600` / `lag_sum_secs` / `lag_max_secs` (delivery lag
//! histogram by receipt time), `payments_failed`, `payments_failed_amount.<cur>`,
//! `payments_succeeded`, `payments_succeeded_amount.<cur>` (from `charge.*`: one per
//! attempt, the single source of truth), `refunds`, `refunds_amount.<cur>`,
//! `refund_max.<cur>`, `disputes`, `disputes_amount.<cur>`, `early_fraud_warnings`,
//! `subscriptions_new`, `subscriptions_canceled`, `mrr_gained.<cur>`, `mrr_lost.<cur>`,
//! `dunning_opened`, `dunning_recovered`, `dunning_lost`, `dunning_recovered_amount.<cur>`.
//! Gauges: `mrr_total.<cur>` and `max_received_at` at hour 0 (all-time), and `active_period_ends` at the hour
//! an active subscription's current period ends (what a renewal must move on).

use serde::{Deserialize, Serialize};

use super::hour_of;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CounterOp {
    Add,
    /// Keep the larger value (idempotent by nature).
    Max,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterUpdate {
    pub livemode: bool,
    /// Start of the UTC hour.
    pub hour: i64,
    pub metric: String,
    pub op: CounterOp,
    pub value: i64,
}

/// Metrics kept as maxima have `max` in their name (stores that split a counter into
/// parts take the largest part, not the sum).
pub fn is_maximum(metric: &str) -> bool {
    metric.contains("max")
}

/// Upper bounds of the lag histogram, in seconds.
pub const LAG_BUCKETS: [i64; 11] = [1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];

#[derive(Debug, Default)]
pub struct CounterSink {
    pub updates: Vec<CounterUpdate>,
}

impl CounterSink {
    pub fn add(&mut self, livemode: bool, at: i64, metric: impl Into<String>, value: i64) {
        if value != 0 {
            self.updates.push(CounterUpdate { livemode, hour: hour_of(at), metric: metric.into(), op: CounterOp::Add, value });
        }
    }

    /// A gauge kept at a fixed hour (hour 0 holds all-time totals such as `mrr_total`).
    pub fn add_at_hour(&mut self, livemode: bool, hour: i64, metric: impl Into<String>, value: i64) {
        if value != 0 {
            self.updates.push(CounterUpdate { livemode, hour, metric: metric.into(), op: CounterOp::Add, value });
        }
    }

    pub fn max_at_hour(&mut self, livemode: bool, hour: i64, metric: impl Into<String>, value: i64) {
        self.updates.push(CounterUpdate { livemode, hour, metric: metric.into(), op: CounterOp::Max, value });
    }

    pub fn max(&mut self, livemode: bool, at: i64, metric: impl Into<String>, value: i64) {
        self.updates.push(CounterUpdate { livemode, hour: hour_of(at), metric: metric.into(), op: CounterOp::Max, value });
    }

    /// A count that belongs at `after`'s hour now, and at `before`'s hour until now.
    pub fn moved(&mut self, livemode: bool, before: Option<i64>, after: Option<i64>, metric: &str, amount: i64) {
        if before == after {
            return;
        }
        if let Some(b) = before {
            self.add(livemode, b, metric, -amount);
        }
        if let Some(a) = after {
            self.add(livemode, a, metric, amount);
        }
    }

    pub fn lag(&mut self, livemode: bool, received_at: i64, lag_secs: i64) {
        let lag = lag_secs.max(0);
        let metric = match LAG_BUCKETS.iter().find(|b| lag <= **b) {
            Some(b) => format!("lag_le_{b}"),
            None => "lag_gt_3600".to_owned(),
        };
        self.add(livemode, received_at, metric, 1);
        self.add(livemode, received_at, "lag_sum_secs", lag);
        self.max(livemode, received_at, "lag_max_secs", lag);
    }
}

/// Folds updates into totals per (livemode, hour, metric): what a store holds.
pub fn fold(
    totals: &mut std::collections::BTreeMap<(bool, i64, String), i64>,
    updates: &[CounterUpdate],
) {
    for u in updates {
        let slot = totals.entry((u.livemode, u.hour, u.metric.clone())).or_insert(0);
        match u.op {
            CounterOp::Add => *slot += u.value,
            CounterOp::Max => *slot = (*slot).max(u.value),
        }
    }
    totals.retain(|_, v| *v != 0);
}
