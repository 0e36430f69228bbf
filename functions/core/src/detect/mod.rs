//! Anomaly detection: pure functions of (hourly counters, now, config) → findings.
//!
//! Each window signal compares what was counted in the window being judged with a rolling
//! 7-day baseline *before* it. The default rule respects time of day (the same hour on each
//! of the previous 7 days), tests counts with a Poisson tail against the baseline plus one
//! spread (days differ more than Poisson alone says), and needs a minimum volume and ratio,
//! so that 2 events against 0.3 stays quiet while 40 against 4 pages. The seeds' rule
//! (last hour > 3 × the 7-day hourly mean + 1) is kept for comparison.

pub mod alerts;
pub mod eval;
pub mod scenario;
pub mod stats;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::billing::counters::LAG_BUCKETS;
use crate::billing::hour_of;

/// One livemode's counters: hour → metric → value. Hour 0 holds all-time gauges.
pub type Series = BTreeMap<i64, BTreeMap<String, i64>>;

/// Splits store totals into one series per livemode.
pub fn series_of(totals: &BTreeMap<(bool, i64, String), i64>, livemode: bool) -> Series {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Same hour on the previous 7 days, Poisson tail, minimum volume and ratio.
    TimeOfDay,
    /// The seeds' rule: the last full hour above 3 × the 7-day hourly mean + 1.
    Seed3x,
}

/// Thresholds, with their defaults (see the README's table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DetectConfig {
    pub rule: Rule,
    /// Poisson tail probability below which a count is anomalous (warning / critical).
    pub p_warning: f64,
    pub p_critical: f64,
    /// A spike needs at least this many events in the window, and this ratio to expected.
    pub min_count: i64,
    pub min_ratio: f64,
    /// A drop needs at least this many expected, and at most this share of them observed.
    pub drop_min_expected: f64,
    pub drop_ratio: f64,
    /// A delivery gap: nothing received for a stretch in which the baseline expects at
    /// least this many deliveries, with a Poisson probability of silence below `p_gap`.
    pub gap_min_expected: f64,
    pub p_gap: f64,
    /// …and lasts at least this long: short lulls happen at any volume.
    pub gap_min_secs: i64,
    /// Net MRR fall over 24 h as a share of MRR 24 h ago.
    pub mrr_fall_warning: f64,
    pub mrr_fall_critical: f64,
    /// Delivery lag p95 thresholds (seconds), over at least `lag_min_events` deliveries.
    pub lag_warning_secs: i64,
    pub lag_critical_secs: i64,
    pub lag_min_events: i64,
    /// Payment failure rate (failed ÷ attempts) over the window.
    pub failure_rate_min_attempts: i64,
    pub failure_rate_warning: f64,
    pub failure_rate_critical: f64,
    /// Dispute and early-fraud-warning rates over 7 days (Stripe's and the networks'
    /// thresholds: 0.75 % is "excessive"), over at least `risk_min_payments` payments.
    pub dispute_rate_warning: f64,
    pub dispute_rate_critical: f64,
    pub efw_rate_warning: f64,
    pub risk_min_payments: i64,
    /// Refunds ÷ successful payments over 24 h.
    pub refund_rate_warning: f64,
    pub refund_rate_critical: f64,
    pub refund_rate_min_payments: i64,
    /// Hours after its period end before an unrenewed active subscription is a lapse.
    pub lapse_grace_hours: i64,
    /// An open alert is re-sent at most every this many hours.
    pub reminder_hours: i64,
    /// A window alert resolves once its signal has been quiet this long (no flapping);
    /// rates over days (disputes, fraud warnings, refunds) move slowly and wait longer.
    pub resolve_after_secs: i64,
    pub slow_resolve_after_secs: i64,
    /// Event-level alerts (a duplicate charge, a large refund, a fraud warning) resolve
    /// after this many hours.
    pub event_alert_hours: i64,
}

impl Default for DetectConfig {
    fn default() -> Self {
        Self {
            rule: Rule::TimeOfDay,
            p_warning: 1e-4,
            p_critical: 1e-8,
            min_count: 3,
            min_ratio: 2.5,
            drop_min_expected: 12.0,
            drop_ratio: 0.3,
            gap_min_expected: 5.0,
            p_gap: 2e-2,
            gap_min_secs: 90 * 60,
            mrr_fall_warning: 0.03,
            mrr_fall_critical: 0.08,
            lag_warning_secs: 300,
            lag_critical_secs: 1800,
            lag_min_events: 10,
            failure_rate_min_attempts: 20,
            failure_rate_warning: 0.35,
            failure_rate_critical: 0.6,
            dispute_rate_warning: 0.0075,
            dispute_rate_critical: 0.01,
            efw_rate_warning: 0.0075,
            risk_min_payments: 200,
            refund_rate_warning: 0.25,
            refund_rate_critical: 0.5,
            refund_rate_min_payments: 30,
            lapse_grace_hours: 12,
            reminder_hours: 6,
            resolve_after_secs: 3600,
            slow_resolve_after_secs: 24 * 3600,
            event_alert_hours: 24,
        }
    }
}

/// One anomaly, with the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Identifies the alert this finding feeds: `<signal>` or `<signal>:<metric or subject>`.
    pub key: String,
    pub signal: String,
    pub metric: String,
    pub livemode: bool,
    pub window_start: i64,
    pub window_end: i64,
    pub observed: f64,
    pub expected: f64,
    pub spread: f64,
    pub ratio: f64,
    pub severity: Severity,
    pub explanation: String,
}

fn get(series: &Series, hour: i64, metric: &str) -> i64 {
    series.get(&hour).and_then(|m| m.get(metric)).copied().unwrap_or(0)
}

/// The currencies that appear under `<prefix>.` in the series.
fn currencies(series: &Series, prefix: &str) -> Vec<String> {
    let mut out: Vec<String> = series
        .values()
        .flat_map(|m| m.keys())
        .filter_map(|k| k.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')))
        .map(str::to_owned)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A window being judged: hours with the weight of their baseline (the current hour is
/// only partly elapsed).
struct Window {
    hours: Vec<(i64, f64)>,
    start: i64,
    end: i64,
}

fn windows(now: i64, rule: Rule) -> Vec<Window> {
    let h = hour_of(now);
    let frac = (now - h) as f64 / 3600.0;
    match rule {
        Rule::Seed3x => vec![Window { hours: vec![(h - 3600, 1.0)], start: h - 3600, end: h }],
        Rule::TimeOfDay => {
            let mut w = vec![Window { hours: vec![(h - 3600, 1.0), (h, frac)], start: h - 3600, end: now }];
            if frac >= 0.25 {
                w.push(Window { hours: vec![(h, frac)], start: h, end: now });
            }
            w
        }
    }
}

struct Expectation {
    observed: i64,
    expected: f64,
    spread: f64,
}

/// Observed in the window, and expected from the 7 days before it.
fn expect(series: &Series, window: &Window, metric: &str, rule: Rule) -> Expectation {
    let observed = window.hours.iter().map(|(h, _)| get(series, *h, metric)).sum();
    let first = window.hours.first().map(|(h, _)| *h).unwrap_or(0);
    // The 7 days before the window (168 hours), excluding the window itself.
    let week: Vec<i64> = (1..=168).map(|i| get(series, first - i * 3600, metric)).collect();
    let week_mean = week.iter().sum::<i64>() as f64 / 168.0;
    match rule {
        Rule::Seed3x => Expectation { observed, expected: week_mean, spread: 0.0 },
        Rule::TimeOfDay => {
            let mut expected = 0.0;
            let mut variance = 0.0;
            for (hour, weight) in &window.hours {
                // The same hour and its neighbours on each of the previous 7 days: 21
                // samples, so that a sparse metric still has a usable baseline.
                let samples: Vec<f64> = (1..=7)
                    .flat_map(|d| [-3600, 0, 3600].map(|n| get(series, hour - d * 86_400 + n, metric) as f64))
                    .collect();
                let n = samples.len() as f64;
                let mean = samples.iter().sum::<f64>() / n;
                let var = samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n - 1.0);
                // A quiet hour still has some chance of activity: floor it by the week.
                let floor = (0.5 * week_mean).max(0.02);
                expected += weight * mean.max(floor);
                // The spread of a mean over days, not of a single hour's count.
                variance += weight * weight * var / 3.0;
            }
            Expectation { observed, expected, spread: variance.sqrt() }
        }
    }
}

fn ratio(observed: f64, expected: f64) -> f64 {
    if expected > 0.0 {
        observed / expected
    } else {
        f64::INFINITY
    }
}

fn finding(
    key: String,
    signal: &str,
    metric: &str,
    livemode: bool,
    window: (i64, i64),
    numbers: (f64, f64, f64),
    severity: Severity,
    explanation: String,
) -> Finding {
    let (observed, expected, spread) = numbers;
    Finding {
        key,
        signal: signal.to_owned(),
        metric: metric.to_owned(),
        livemode,
        window_start: window.0,
        window_end: window.1,
        observed,
        expected: (expected * 100.0).round() / 100.0,
        spread: (spread * 100.0).round() / 100.0,
        ratio: (ratio(observed, expected) * 100.0).round() / 100.0,
        severity,
        explanation,
    }
}

/// Keeps the most severe finding per key.
fn keep_worst(findings: &mut Vec<Finding>, f: Finding) {
    match findings.iter_mut().find(|x| x.key == f.key) {
        Some(x) if f.severity > x.severity || (f.severity == x.severity && f.ratio > x.ratio) => *x = f,
        Some(_) => {}
        None => findings.push(f),
    }
}

fn spike(series: &Series, metric: &str, label: &str, livemode: bool, now: i64, c: &DetectConfig, out: &mut Vec<Finding>) {
    for w in windows(now, c.rule) {
        let e = expect(series, &w, metric, c.rule);
        let severity = match c.rule {
            Rule::Seed3x => {
                let obs = e.observed as f64;
                if obs > 6.0 * e.expected + 2.0 {
                    Some(Severity::Critical)
                } else if obs > 3.0 * e.expected + 1.0 {
                    Some(Severity::Warning)
                } else {
                    None
                }
            }
            Rule::TimeOfDay => {
                let r = ratio(e.observed as f64, e.expected);
                if e.observed < c.min_count || r < c.min_ratio {
                    None
                } else {
                    let p = stats::upper_tail(e.observed, e.expected + e.spread);
                    if p < c.p_critical && r >= 2.0 * c.min_ratio {
                        Some(Severity::Critical)
                    } else if p < c.p_warning {
                        Some(Severity::Warning)
                    } else {
                        None
                    }
                }
            }
        };
        if let Some(sev) = severity {
            let text = format!(
                "{label}: {} between {} and {} against {:.1} expected at this time of day",
                e.observed,
                hhmm(w.start),
                hhmm(w.end),
                e.expected
            );
            keep_worst(
                out,
                finding(format!("spike:{metric}"), "spike", metric, livemode, (w.start, w.end), (e.observed as f64, e.expected, e.spread), sev, text),
            );
        }
    }
}

/// Amount spikes as compound Poisson: amounts in units of the week's average amount per
/// event, so that one large payment is not a "spike" of thousands.
#[allow(clippy::too_many_arguments)]
fn amount_spike(series: &Series, metric: &str, count_metric: &str, label: &str, livemode: bool, now: i64, c: &DetectConfig, out: &mut Vec<Finding>) {
    let h = hour_of(now);
    let (mut amount, mut count) = (0i64, 0i64);
    for i in 1..=168 {
        amount += get(series, h - 3600 - i * 3600, metric);
        count += get(series, h - 3600 - i * 3600, count_metric);
    }
    if count == 0 || amount <= 0 {
        return;
    }
    let unit = amount as f64 / count as f64;
    let mut scaled = Series::new();
    for (hour, metrics) in series {
        if let Some(v) = metrics.get(metric) {
            scaled.entry(*hour).or_default().insert(metric.to_owned(), (*v as f64 / unit).round() as i64);
        }
    }
    let mut found = Vec::new();
    spike(&scaled, metric, label, livemode, now, c, &mut found);
    // A few large amounts are not a spike: the number of events must be unusual too.
    found.retain(|f| {
        let hours: Vec<i64> = windows(now, c.rule).iter().filter(|w| w.start == f.window_start).flat_map(|w| w.hours.iter().map(|(h, _)| *h)).collect();
        let count: i64 = hours.iter().map(|h| get(series, *h, count_metric)).sum();
        let e = windows(now, c.rule)
            .into_iter()
            .find(|w| w.start == f.window_start)
            .map(|w| expect(series, &w, count_metric, c.rule));
        count >= c.min_count && e.is_some_and(|e| stats::upper_tail(count, e.expected + e.spread) < 1e-2)
    });
    for mut f in found {
        f.observed = (f.observed * unit).round();
        f.expected = (f.expected * unit).round();
        f.spread = (f.spread * unit).round();
        f.explanation = format!(
            "{label}: {} between {} and {} against {} expected (minor units)",
            f.observed,
            hhmm(f.window_start),
            hhmm(f.window_end),
            f.expected
        );
        keep_worst(out, f);
    }
}

fn drop_signal(series: &Series, metric: &str, label: &str, livemode: bool, now: i64, c: &DetectConfig, out: &mut Vec<Finding>) {
    if c.rule == Rule::Seed3x {
        return; // the seeds had no drop rule
    }
    for w in windows(now, c.rule) {
        let e = expect(series, &w, metric, c.rule);
        if e.expected < c.drop_min_expected || ratio(e.observed as f64, e.expected) > c.drop_ratio {
            continue;
        }
        let p = stats::lower_tail(e.observed, (e.expected - e.spread).max(e.expected * 0.5));
        let sev = if p < c.p_critical { Severity::Critical } else if p < c.p_warning { Severity::Warning } else { continue };
        let text = format!(
            "{label}: only {} between {} and {} against {:.1} expected",
            e.observed,
            hhmm(w.start),
            hhmm(w.end),
            e.expected
        );
        keep_worst(out, finding(format!("drop:{metric}"), "drop", metric, livemode, (w.start, w.end), (e.observed as f64, e.expected, e.spread), sev, text));
    }
}

/// Nothing received since the last delivery, for a stretch in which the time-of-day
/// baseline expects several: the endpoint is disabled, the secret wrong, or Stripe down.
fn delivery_gap(series: &Series, livemode: bool, now: i64, c: &DetectConfig, out: &mut Vec<Finding>) {
    let last = get(series, 0, "max_received_at");
    if last <= 0 || now - last < c.gap_min_secs {
        return;
    }
    // Expected deliveries over (last, now], hour by hour at each hour's usual rate; and
    // expected *bursts*: deliveries come in bunches (a sign-up brings four events at
    // once), so silence is likelier than independent arrivals suggest. The index of
    // dispersion of the hourly counts (variance ÷ mean) estimates the bunch size.
    let (mut expected, mut bursts) = (0.0, 0.0);
    let mut t = last;
    while t < now {
        let hour = hour_of(t);
        let upto = (hour + 3600).min(now);
        let frac = (upto - t) as f64 / 3600.0;
        let samples: Vec<f64> = (1..=7)
            .flat_map(|d| [-3600, 0, 3600].map(|n| get(series, hour - d * 86_400 + n, "events_received") as f64))
            .collect();
        let n = samples.len() as f64;
        let mean = samples.iter().sum::<f64>() / n;
        // Dispersion from the same hour on each day (neighbouring hours differ by rhythm).
        let same: Vec<f64> = samples.iter().skip(1).step_by(3).copied().collect();
        let same_mean = same.iter().sum::<f64>() / same.len() as f64;
        let var = same.iter().map(|x| (x - same_mean).powi(2)).sum::<f64>() / (same.len() as f64 - 1.0);
        let dispersion = if same_mean > 0.0 { (var / same_mean).clamp(1.0, 4.0) } else { 1.0 };
        expected += frac * mean;
        bursts += frac * mean / dispersion;
        t = upto;
    }
    // Today's level against the same hours on the previous days (weekends are quieter,
    // a business grows): the 12 hours before the silence began.
    let level = {
        let end = hour_of(last);
        let today: i64 = (1..=12).map(|i| get(series, end - i * 3600, "events_received")).sum();
        let before: f64 = (1..=7)
            .map(|d| (1..=12).map(|i| get(series, end - d * 86_400 - i * 3600, "events_received")).sum::<i64>() as f64)
            .sum::<f64>()
            / 7.0;
        if before > 0.0 { (today as f64 / before).clamp(0.5, 1.5) } else { 1.0 }
    };
    expected *= level;
    bursts *= level;
    // Renewals are scheduled: those due in the silence that never arrived are evidence too.
    let mut due = 0.0;
    let mut h = hour_of(last);
    while h + 3600 <= hour_of(now) {
        let span = ((h + 3600).min(now) - h.max(last)) as f64 / 3600.0;
        due += span * get(series, h, "active_period_ends").max(0) as f64;
        h += 3600;
    }
    let lambda = bursts + due;
    if expected + due < c.gap_min_expected || (-lambda).exp() >= c.p_gap {
        return;
    }
    let spread = 0.0;
    let sev = if lambda >= 2.0 * c.gap_min_expected { Severity::Critical } else { Severity::Warning };
    let text = format!(
        "Webhooks: nothing received since {} ({} min) while {:.1} deliveries were expected: is the Stripe endpoint disabled, or the signing secret wrong?",
        hhmm(last),
        (now - last) / 60,
        expected
    );
    out.push(finding("delivery_gap".into(), "delivery_gap", "events_received", livemode, (last, now), (0.0, expected, spread), sev, text));
}

fn mrr_fall(series: &Series, livemode: bool, now: i64, c: &DetectConfig, out: &mut Vec<Finding>) {
    let h = hour_of(now);
    for cur in currencies(series, "mrr_total") {
        let total = get(series, 0, &format!("mrr_total.{cur}"));
        let net: i64 = (0..24)
            .map(|i| get(series, h - i * 3600, &format!("mrr_gained.{cur}")) - get(series, h - i * 3600, &format!("mrr_lost.{cur}")))
            .sum();
        let before = total - net;
        if net >= 0 || before <= 0 {
            continue;
        }
        let share = -net as f64 / before as f64;
        let sev = if share >= c.mrr_fall_critical {
            Severity::Critical
        } else if share >= c.mrr_fall_warning {
            Severity::Warning
        } else {
            continue;
        };
        let text = format!("MRR ({cur}) fell by {} ({:.1} %) over the last 24 h, to {}", -net, share * 100.0, total);
        out.push(finding(format!("mrr_fall:{cur}"), "mrr_fall", &format!("mrr_total.{cur}"), livemode, (h - 23 * 3600, now), (total as f64, before as f64, 0.0), sev, text));
    }
}

fn delivery_lag(series: &Series, livemode: bool, now: i64, c: &DetectConfig, out: &mut Vec<Finding>) {
    let h = hour_of(now);
    let hours = [h - 3600, h];
    let mut buckets: Vec<(i64, i64)> = LAG_BUCKETS
        .iter()
        .map(|b| (*b, hours.iter().map(|hr| get(series, *hr, &format!("lag_le_{b}"))).sum()))
        .collect();
    buckets.push((i64::MAX, hours.iter().map(|hr| get(series, *hr, "lag_gt_3600")).sum()));
    let total: i64 = buckets.iter().map(|(_, n)| n).sum();
    if total < c.lag_min_events {
        return;
    }
    let mut cumulative = 0;
    let mut p95 = 0;
    for (bound, n) in &buckets {
        cumulative += n;
        if cumulative as f64 >= 0.95 * total as f64 {
            p95 = *bound;
            break;
        }
    }
    let sev = if p95 > c.lag_critical_secs {
        Severity::Critical
    } else if p95 > c.lag_warning_secs {
        Severity::Warning
    } else {
        return;
    };
    let shown = if p95 == i64::MAX { "over 3600 s".to_owned() } else { format!("up to {p95} s") };
    let text = format!("Stripe's webhooks arrive late: p95 delivery lag {shown} over {total} deliveries since {}", hhmm(h - 3600));
    out.push(finding("delivery_lag".into(), "delivery_lag", "lag_p95_secs", livemode, (h - 3600, now), (p95.min(7200) as f64, c.lag_warning_secs as f64, 0.0), sev, text));
}

#[allow(clippy::too_many_arguments)]
fn rate(
    key: &str,
    label: &str,
    num: i64,
    den: i64,
    thresholds: (f64, f64),
    min_den: i64,
    window: (i64, i64),
    baseline: Option<f64>,
    livemode: bool,
    out: &mut Vec<Finding>,
) {
    if den < min_den {
        return;
    }
    let r = num as f64 / den as f64;
    let base = baseline.unwrap_or(0.0);
    let sev = if r >= thresholds.1.max(3.0 * base) {
        Severity::Critical
    } else if r >= thresholds.0.max(2.0 * base) {
        Severity::Warning
    } else {
        return;
    };
    let text = format!("{label}: {:.2} % ({num} of {den}) since {}", r * 100.0, hhmm(window.0));
    out.push(finding(key.to_owned(), key, key, livemode, window, (r, base.max(thresholds.0), 0.0), sev, text));
}

fn sum_hours(series: &Series, metric: &str, from: i64, to: i64) -> i64 {
    let mut h = from;
    let mut total = 0;
    while h < to {
        total += get(series, h, metric);
        h += 3600;
    }
    total
}

/// All window signals for one livemode at `now`.
pub fn detect(series: &Series, livemode: bool, now: i64, c: &DetectConfig) -> Vec<Finding> {
    let mut out = Vec::new();
    for (metric, label) in [
        ("payments_failed", "Failed payments"),
        ("refunds", "Refunds"),
        ("disputes", "Disputes"),
        ("subscriptions_canceled", "Cancellations"),
        ("dunning_lost", "Dunning cases lost"),
        ("early_fraud_warnings", "Early fraud warnings"),
    ] {
        spike(series, metric, label, livemode, now, c, &mut out);
    }
    for cur in currencies(series, "payments_failed_amount") {
        amount_spike(series, &format!("payments_failed_amount.{cur}"), "payments_failed", &format!("Failed payment amount ({cur})"), livemode, now, c, &mut out);
    }
    for cur in currencies(series, "refunds_amount") {
        amount_spike(series, &format!("refunds_amount.{cur}"), "refunds", &format!("Refunded amount ({cur})"), livemode, now, c, &mut out);
    }
    for cur in currencies(series, "mrr_lost") {
        amount_spike(series, &format!("mrr_lost.{cur}"), "subscriptions_canceled", &format!("MRR lost ({cur})"), livemode, now, c, &mut out);
    }
    drop_signal(series, "payments_succeeded", "Successful payments", livemode, now, c, &mut out);
    drop_signal(series, "subscriptions_new", "New subscriptions", livemode, now, c, &mut out);
    if c.rule == Rule::Seed3x {
        return out;
    }
    delivery_gap(series, livemode, now, c, &mut out);
    mrr_fall(series, livemode, now, c, &mut out);
    delivery_lag(series, livemode, now, c, &mut out);

    let h = hour_of(now);
    let week = (h - 7 * 86_400, h - 3600);
    let window = (h - 3600, now);
    let failed = sum_hours(series, "payments_failed", window.0, h + 3600);
    let attempts = failed + sum_hours(series, "payments_succeeded", window.0, h + 3600);
    let wf = sum_hours(series, "payments_failed", week.0, week.1);
    let wa = wf + sum_hours(series, "payments_succeeded", week.0, week.1);
    let base = (wa > 0).then(|| wf as f64 / wa as f64);
    rate("failure_rate", "Payment failure rate", failed, attempts, (c.failure_rate_warning, c.failure_rate_critical), c.failure_rate_min_attempts, window, base, livemode, &mut out);

    let paid_week = sum_hours(series, "payments_succeeded", h - 7 * 86_400, h + 3600);
    let disputes_week = sum_hours(series, "disputes", h - 7 * 86_400, h + 3600);
    let efw_week = sum_hours(series, "early_fraud_warnings", h - 7 * 86_400, h + 3600);
    let week_window = (h - 7 * 86_400, now);
    rate("dispute_rate", "Dispute rate over 7 days", disputes_week, paid_week, (c.dispute_rate_warning, c.dispute_rate_critical), c.risk_min_payments, week_window, None, livemode, &mut out);
    rate("efw_rate", "Early fraud warning rate over 7 days", efw_week, paid_week, (c.efw_rate_warning, c.efw_rate_warning * 4.0 / 3.0), c.risk_min_payments, week_window, None, livemode, &mut out);
    let day = (h - 23 * 3600, now);
    let refunds_day = sum_hours(series, "refunds", day.0, h + 3600);
    let paid_day = sum_hours(series, "payments_succeeded", day.0, h + 3600);
    rate("refund_rate", "Refund rate over 24 h", refunds_day, paid_day, (c.refund_rate_warning, c.refund_rate_critical), c.refund_rate_min_payments, day, None, livemode, &mut out);

    // Active subscriptions whose period ended over `lapse_grace_hours` ago, never renewed.
    let lapse_until = hour_of(now - c.lapse_grace_hours * 3600);
    let lapsed = sum_hours(series, "active_period_ends", h - 8 * 86_400, lapse_until);
    if lapsed > 0 {
        let text = format!(
            "{lapsed} active subscription(s) passed their period end over {} h ago without a renewal: are renewal webhooks missing?",
            c.lapse_grace_hours
        );
        out.push(finding("silent_lapse".into(), "silent_lapse", "active_period_ends", livemode, (h - 8 * 86_400, lapse_until), (lapsed as f64, 0.0, 0.0), Severity::Warning, text));
    }
    out
}

/// `HH:MM` UTC of a unix time.
pub fn hhmm(t: i64) -> String {
    let s = t.rem_euclid(86_400);
    format!("{:02}:{:02}", s / 3600, (s % 3600) / 60)
}

#[cfg(test)]
mod tests;
