//! The hourly counters' metrics as typed values: what billing counts, what the detector
//! reads and what both stores persist, named once. Whether a metric adds up or keeps its
//! largest value is a property of the metric, so a store that splits a counter into parts
//! (by receipt minute, by shard) knows how to put it back together.
//!
//! Amounts are per currency, in minor units. Hour 0 holds all-time gauges
//! (`mrr_total.<cur>`, `max_received_at`).

use std::fmt;

/// Counter totals per (livemode, hour, metric): what a store holds.
pub type CounterTotals = std::collections::BTreeMap<(bool, i64, Metric), i64>;

/// How the parts of one counter combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    Sum,
    /// Keep the largest value: idempotent by nature.
    Max,
}

impl Aggregation {
    /// Two values of one counter row as one.
    pub fn combine(self, a: i64, b: i64) -> i64 {
        match self {
            Aggregation::Sum => a + b,
            Aggregation::Max => a.max(b),
        }
    }
}

/// Upper bounds of the delivery-lag histogram, in seconds.
pub const LAG_BUCKETS: [i64; 11] = [1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];

/// The delivery-lag histogram over some hours: (upper bound, deliveries) for each of
/// [`LAG_BUCKETS`], then (`i64::MAX`, deliveries over an hour), from `count` of a metric.
pub fn lag_histogram(count: impl Fn(&Metric) -> i64) -> Vec<(i64, i64)> {
    let mut buckets: Vec<(i64, i64)> = LAG_BUCKETS
        .iter()
        .map(|b| (*b, count(&Metric::LagAtMost(*b))))
        .collect();
    buckets.push((i64::MAX, count(&Metric::LagOverAnHour)));
    buckets
}

/// The bucket bound under which 95 % of a histogram's deliveries fall (`i64::MAX`: over
/// an hour), and the deliveries counted; `None` for an empty histogram.
pub fn lag_p95(histogram: &[(i64, i64)]) -> Option<(i64, i64)> {
    let total: i64 = histogram.iter().map(|(_, n)| n).sum();
    let mut cumulative = 0;
    for (bound, n) in histogram {
        cumulative += n;
        if total > 0 && cumulative as f64 >= 0.95 * total as f64 {
            return Some((*bound, total));
        }
    }
    None
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    /// Events by event time, all types.
    Events,
    /// Events of one type, by event time.
    EventsOfType(String),
    /// Events by receipt time.
    EventsReceived,
    /// Deliveries whose lag was at most this many seconds (one of [`LAG_BUCKETS`]).
    LagAtMost(i64),
    LagOverAnHour,
    LagSumSecs,
    LagMaxSecs,
    /// The latest receipt time (a gauge at hour 0).
    MaxReceivedAt,
    PaymentsFailed,
    PaymentsFailedAmount(String),
    PaymentsSucceeded,
    PaymentsSucceededAmount(String),
    Refunds,
    RefundsAmount(String),
    RefundMax(String),
    Disputes,
    DisputesAmount(String),
    EarlyFraudWarnings,
    SubscriptionsNew,
    SubscriptionsCanceled,
    MrrGained(String),
    MrrLost(String),
    /// Contributing MRR now (a gauge at hour 0).
    MrrTotal(String),
    /// Active subscriptions whose current period ends in the hour: renewals due.
    ActivePeriodEnds,
    DunningOpened,
    DunningRecovered,
    DunningLost,
    DunningRecoveredAmount(String),
}

impl Metric {
    pub fn aggregation(&self) -> Aggregation {
        match self {
            Metric::LagMaxSecs | Metric::MaxReceivedAt | Metric::RefundMax(_) => Aggregation::Max,
            _ => Aggregation::Sum,
        }
    }

    /// The currency of a per-currency amount.
    pub fn currency(&self) -> Option<&str> {
        use Metric::*;
        match self {
            PaymentsFailedAmount(c)
            | PaymentsSucceededAmount(c)
            | RefundsAmount(c)
            | RefundMax(c)
            | DisputesAmount(c)
            | MrrGained(c)
            | MrrLost(c)
            | MrrTotal(c)
            | DunningRecoveredAmount(c) => Some(c),
            _ => None,
        }
    }

    /// The stored name, e.g. `payments_failed_amount.usd`.
    pub fn name(&self) -> String {
        self.to_string()
    }

    /// The metric a stored name stands for; `None` for a name no version of revguard wrote.
    pub fn parse(name: &str) -> Option<Self> {
        use Metric::*;
        if let Some(t) = name.strip_prefix("events.type.") {
            return Some(EventsOfType(t.to_owned()));
        }
        if let Some(b) = name.strip_prefix("lag_le_") {
            let secs: i64 = b.parse().ok()?;
            return LAG_BUCKETS.contains(&secs).then_some(LagAtMost(secs));
        }
        if let Some((base, cur)) = name.split_once('.') {
            let cur = cur.to_owned();
            return Some(match base {
                "payments_failed_amount" => PaymentsFailedAmount(cur),
                "payments_succeeded_amount" => PaymentsSucceededAmount(cur),
                "refunds_amount" => RefundsAmount(cur),
                "refund_max" => RefundMax(cur),
                "disputes_amount" => DisputesAmount(cur),
                "mrr_gained" => MrrGained(cur),
                "mrr_lost" => MrrLost(cur),
                "mrr_total" => MrrTotal(cur),
                "dunning_recovered_amount" => DunningRecoveredAmount(cur),
                _ => return None,
            });
        }
        Some(match name {
            "events" => Events,
            "events_received" => EventsReceived,
            "lag_gt_3600" => LagOverAnHour,
            "lag_sum_secs" => LagSumSecs,
            "lag_max_secs" => LagMaxSecs,
            "max_received_at" => MaxReceivedAt,
            "payments_failed" => PaymentsFailed,
            "payments_succeeded" => PaymentsSucceeded,
            "refunds" => Refunds,
            "disputes" => Disputes,
            "early_fraud_warnings" => EarlyFraudWarnings,
            "subscriptions_new" => SubscriptionsNew,
            "subscriptions_canceled" => SubscriptionsCanceled,
            "active_period_ends" => ActivePeriodEnds,
            "dunning_opened" => DunningOpened,
            "dunning_recovered" => DunningRecovered,
            "dunning_lost" => DunningLost,
            _ => return None,
        })
    }

    /// The lag bucket a delivery lag falls in.
    pub fn lag_bucket(lag_secs: i64) -> Self {
        match LAG_BUCKETS.iter().find(|b| lag_secs <= **b) {
            Some(b) => Metric::LagAtMost(*b),
            None => Metric::LagOverAnHour,
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Metric::*;
        match self {
            Events => f.write_str("events"),
            EventsOfType(t) => write!(f, "events.type.{t}"),
            EventsReceived => f.write_str("events_received"),
            LagAtMost(b) => write!(f, "lag_le_{b}"),
            LagOverAnHour => f.write_str("lag_gt_3600"),
            LagSumSecs => f.write_str("lag_sum_secs"),
            LagMaxSecs => f.write_str("lag_max_secs"),
            MaxReceivedAt => f.write_str("max_received_at"),
            PaymentsFailed => f.write_str("payments_failed"),
            PaymentsFailedAmount(c) => write!(f, "payments_failed_amount.{c}"),
            PaymentsSucceeded => f.write_str("payments_succeeded"),
            PaymentsSucceededAmount(c) => write!(f, "payments_succeeded_amount.{c}"),
            Refunds => f.write_str("refunds"),
            RefundsAmount(c) => write!(f, "refunds_amount.{c}"),
            RefundMax(c) => write!(f, "refund_max.{c}"),
            Disputes => f.write_str("disputes"),
            DisputesAmount(c) => write!(f, "disputes_amount.{c}"),
            EarlyFraudWarnings => f.write_str("early_fraud_warnings"),
            SubscriptionsNew => f.write_str("subscriptions_new"),
            SubscriptionsCanceled => f.write_str("subscriptions_canceled"),
            MrrGained(c) => write!(f, "mrr_gained.{c}"),
            MrrLost(c) => write!(f, "mrr_lost.{c}"),
            MrrTotal(c) => write!(f, "mrr_total.{c}"),
            ActivePeriodEnds => f.write_str("active_period_ends"),
            DunningOpened => f.write_str("dunning_opened"),
            DunningRecovered => f.write_str("dunning_recovered"),
            DunningLost => f.write_str("dunning_lost"),
            DunningRecoveredAmount(c) => write!(f, "dunning_recovered_amount.{c}"),
        }
    }
}

impl serde::Serialize for Metric {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Metric {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Metric::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown metric {name:?}")))
    }
}

/// A value of `metric` for people: money with its currency, seconds as a duration,
/// counts as whole numbers, rates with two decimals.
pub fn figure(metric: &str, value: f64) -> String {
    if let Some(currency) = Metric::parse(metric).as_ref().and_then(Metric::currency) {
        return crate::domain::money::format_minor(value.round() as i64, currency);
    }
    if metric.ends_with("_rate") {
        return format!("{:.2} %", value * 100.0);
    }
    if metric.ends_with("_secs") {
        let secs = value.round() as i64;
        return match secs {
            s if s < 120 => format!("{s} s"),
            s if s < 7200 => format!("{} min", s / 60),
            s if s < 172_800 => format!("{:.1} h", s as f64 / 3600.0),
            s => format!("{:.1} d", s as f64 / 86_400.0),
        };
    }
    if value.fract() == 0.0 && value.abs() < 1e15 {
        return group(value as i64);
    }
    format!("{value:.2}")
}

fn group(n: i64) -> String {
    let sign = if n < 0 { "-" } else { "" };
    format!(
        "{sign}{}",
        crate::domain::money::group_digits(&n.unsigned_abs().to_string())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_only_maxima_keep_the_largest() {
        let all = [
            Metric::Events,
            Metric::EventsOfType("invoice.paid".into()),
            Metric::EventsReceived,
            Metric::LagAtMost(5),
            Metric::LagOverAnHour,
            Metric::LagSumSecs,
            Metric::LagMaxSecs,
            Metric::MaxReceivedAt,
            Metric::PaymentsFailedAmount("usd".into()),
            Metric::RefundMax("jpy".into()),
            Metric::MrrTotal("eur".into()),
            Metric::DunningRecoveredAmount("usd".into()),
            Metric::ActivePeriodEnds,
        ];
        for m in &all {
            assert_eq!(Metric::parse(&m.name()).as_ref(), Some(m), "{m}");
        }
        let maxima: Vec<_> = all
            .iter()
            .filter(|m| m.aggregation() == Aggregation::Max)
            .map(Metric::name)
            .collect();
        assert_eq!(
            maxima,
            ["lag_max_secs", "max_received_at", "refund_max.jpy"]
        );
        assert_eq!(Metric::parse("lag_le_7"), None, "not a bucket");
        assert_eq!(Metric::parse("something_else"), None);
        assert_eq!(Metric::lag_bucket(0), Metric::LagAtMost(1));
        assert_eq!(Metric::lag_bucket(4000), Metric::LagOverAnHour);
    }
}
