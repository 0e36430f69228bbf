//! Every window signal, one method each, and [`detect`], which runs them all.

use super::baseline::{currencies, expect, get, ratio, windows};
use super::config::{DetectConfig, Rule};
use super::series::Series;
use super::stats;
use crate::domain::finding::{Finding, Severity};
use crate::domain::metric::Metric;
use crate::domain::time::{hhmm, hour_of};

/// A finding's identity and numbers, before rounding.
struct Raised<'a> {
    key: String,
    signal: &'a str,
    metric: String,
    window: (i64, i64),
    observed: f64,
    expected: f64,
    spread: f64,
    severity: Severity,
    explanation: String,
}

/// One detection: the counters of one livemode at one moment, the thresholds, and what
/// has been found so far. Each signal is a method.
struct Signals<'a> {
    series: &'a Series,
    livemode: bool,
    now: i64,
    config: &'a DetectConfig,
    found: Vec<Finding>,
}

impl Signals<'_> {
    fn get(&self, hour: i64, metric: &Metric) -> i64 {
        get(self.series, hour, metric)
    }

    fn sum_hours(&self, metric: &Metric, from: i64, to: i64) -> i64 {
        (0..)
            .map(|i| from + i * 3600)
            .take_while(|h| *h < to)
            .map(|h| self.get(h, metric))
            .sum()
    }

    fn finding(&self, r: Raised<'_>) -> Finding {
        Finding {
            scope: Default::default(),
            accounts: Vec::new(),
            key: r.key,
            signal: r.signal.to_owned(),
            metric: r.metric,
            livemode: self.livemode,
            window_start: r.window.0,
            window_end: r.window.1,
            observed: r.observed,
            expected: (r.expected * 100.0).round() / 100.0,
            spread: (r.spread * 100.0).round() / 100.0,
            ratio: (ratio(r.observed, r.expected) * 100.0).round() / 100.0,
            severity: r.severity,
            explanation: r.explanation,
        }
    }

    fn raise(&mut self, r: Raised<'_>) {
        let f = self.finding(r);
        self.found.push(f);
    }

    /// Keeps the most severe finding per key.
    fn keep_worst(&mut self, f: Finding) {
        match self.found.iter_mut().find(|x| x.key == f.key) {
            Some(x)
                if f.severity > x.severity || (f.severity == x.severity && f.ratio > x.ratio) =>
            {
                *x = f
            }
            Some(_) => {}
            None => self.found.push(f),
        }
    }

    fn spike(&mut self, metric: &Metric, label: &str) {
        let c = self.config;
        for w in windows(self.now, c.rule) {
            let e = expect(self.series, &w, metric, c.rule, c.baseline_floor);
            let severity = match c.rule {
                Rule::LegacyThreeTimesMean => {
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
            if let Some(severity) = severity {
                let explanation = format!(
                    "{label}: {} between {} and {} against {:.1} expected at this time of day",
                    e.observed,
                    hhmm(w.start),
                    hhmm(w.end),
                    e.expected
                );
                let f = self.finding(Raised {
                    key: format!("spike:{metric}"),
                    signal: "spike",
                    metric: metric.name(),
                    window: (w.start, w.end),
                    observed: e.observed as f64,
                    expected: e.expected,
                    spread: e.spread,
                    severity,
                    explanation,
                });
                self.keep_worst(f);
            }
        }
    }

    /// Amount spikes as compound Poisson: amounts in units of the week's average amount per
    /// event, so that one large payment is not a "spike" of thousands.
    fn amount_spike(&mut self, metric: &Metric, count_metric: &Metric, label: &str) {
        let (c, now) = (self.config, self.now);
        let h = hour_of(now);
        let week = (1..=168).map(|i| h - 3600 - i * 3600);
        let amount: i64 = week.clone().map(|hour| self.get(hour, metric)).sum();
        let count: i64 = week.map(|hour| self.get(hour, count_metric)).sum();
        if count == 0 || amount <= 0 {
            return;
        }
        let unit = amount as f64 / count as f64;
        let mut scaled = Series::new();
        for (hour, metrics) in self.series {
            if let Some(v) = metrics.get(metric) {
                scaled
                    .entry(*hour)
                    .or_default()
                    .insert(metric.clone(), (*v as f64 / unit).round() as i64);
            }
        }
        let mut in_units = Signals {
            series: &scaled,
            livemode: self.livemode,
            now,
            config: c,
            found: Vec::new(),
        };
        in_units.spike(metric, label);
        let currency = metric.currency().unwrap_or("xxx");
        for mut f in in_units.found {
            // A few large amounts are not a spike: the number of events must be unusual too.
            let Some(w) = windows(now, c.rule)
                .into_iter()
                .find(|w| w.start == f.window_start)
            else {
                continue;
            };
            let e = expect(self.series, &w, count_metric, c.rule, c.baseline_floor);
            if e.observed < c.min_count
                || stats::upper_tail(e.observed, e.expected + e.spread) >= 1e-2
            {
                continue;
            }
            f.observed = (f.observed * unit).round();
            f.expected = (f.expected * unit).round();
            f.spread = (f.spread * unit).round();
            f.explanation = format!(
                "{label}: {} between {} and {} against {} expected",
                crate::domain::money::format_minor(f.observed as i64, currency),
                hhmm(f.window_start),
                hhmm(f.window_end),
                crate::domain::money::format_minor(f.expected as i64, currency)
            );
            self.keep_worst(f);
        }
    }

    fn drop_signal(&mut self, metric: &Metric, label: &str) {
        let c = self.config;
        if c.rule == Rule::LegacyThreeTimesMean {
            return; // the seeds had no drop rule
        }
        for w in windows(self.now, c.rule) {
            let e = expect(self.series, &w, metric, c.rule, c.baseline_floor);
            if e.expected < c.drop_min_expected
                || ratio(e.observed as f64, e.expected) > c.drop_ratio
            {
                continue;
            }
            let p = stats::lower_tail(e.observed, (e.expected - e.spread).max(e.expected * 0.5));
            let severity = if p < c.p_critical {
                Severity::Critical
            } else if p < c.p_warning {
                Severity::Warning
            } else {
                continue;
            };
            let explanation = format!(
                "{label}: only {} between {} and {} against {:.1} expected",
                e.observed,
                hhmm(w.start),
                hhmm(w.end),
                e.expected
            );
            let f = self.finding(Raised {
                key: format!("drop:{metric}"),
                signal: "drop",
                metric: metric.name(),
                window: (w.start, w.end),
                observed: e.observed as f64,
                expected: e.expected,
                spread: e.spread,
                severity,
                explanation,
            });
            self.keep_worst(f);
        }
    }

    /// Nothing received since the last delivery, for a stretch in which the time-of-day
    /// baseline expects several: the endpoint is disabled, the secret wrong, or Stripe down.
    fn delivery_gap(&mut self) {
        let (c, now) = (self.config, self.now);
        let received = Metric::EventsReceived;
        let last = self.get(0, &Metric::MaxReceivedAt);
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
                .flat_map(|d| {
                    [-3600, 0, 3600].map(|n| self.get(hour - d * 86_400 + n, &received) as f64)
                })
                .collect();
            let n = samples.len() as f64;
            let mean = samples.iter().sum::<f64>() / n;
            // Dispersion from the same hour on each day (neighbouring hours differ by rhythm).
            let same: Vec<f64> = samples.iter().skip(1).step_by(3).copied().collect();
            let same_mean = same.iter().sum::<f64>() / same.len() as f64;
            let var = same.iter().map(|x| (x - same_mean).powi(2)).sum::<f64>()
                / (same.len() as f64 - 1.0);
            let dispersion = if same_mean > 0.0 {
                (var / same_mean).clamp(1.0, 4.0)
            } else {
                1.0
            };
            expected += frac * mean;
            bursts += frac * mean / dispersion;
            t = upto;
        }
        // Today's level against the same hours on the previous days (weekends are quieter,
        // a business grows): the 12 hours before the silence began.
        let level = {
            let end = hour_of(last);
            let today: i64 = (1..=12).map(|i| self.get(end - i * 3600, &received)).sum();
            let before: f64 = (1..=7)
                .map(|d| {
                    (1..=12)
                        .map(|i| self.get(end - d * 86_400 - i * 3600, &received))
                        .sum::<i64>() as f64
                })
                .sum::<f64>()
                / 7.0;
            if before > 0.0 {
                (today as f64 / before).clamp(0.5, 1.5)
            } else {
                1.0
            }
        };
        expected *= level;
        bursts *= level;
        // Renewals are scheduled: those due in the silence that never arrived are evidence too.
        let mut due = 0.0;
        let mut h = hour_of(last);
        while h + 3600 <= hour_of(now) {
            let span = ((h + 3600).min(now) - h.max(last)) as f64 / 3600.0;
            due += span * self.get(h, &Metric::ActivePeriodEnds).max(0) as f64;
            h += 3600;
        }
        let lambda = bursts + due;
        if expected + due < c.gap_min_expected || (-lambda).exp() >= c.p_gap {
            return;
        }
        let severity = if lambda >= 2.0 * c.gap_min_expected {
            Severity::Critical
        } else {
            Severity::Warning
        };
        let explanation = format!(
            "Webhooks: nothing received since {} ({} min) while {:.1} deliveries were expected: is the Stripe endpoint disabled, or the signing secret wrong?",
            hhmm(last),
            (now - last) / 60,
            expected
        );
        self.raise(Raised {
            key: "delivery_gap".into(),
            signal: "delivery_gap",
            metric: received.name(),
            window: (last, now),
            observed: 0.0,
            expected,
            spread: 0.0,
            severity,
            explanation,
        });
    }

    fn mrr_fall(&mut self) {
        let (c, now) = (self.config, self.now);
        let h = hour_of(now);
        let mrr_currencies = currencies(self.series, |m| {
            if let Metric::MrrTotal(c) = m {
                Some(c.as_str())
            } else {
                None
            }
        });
        for cur in mrr_currencies {
            let total = self.get(0, &Metric::MrrTotal(cur.clone()));
            let net: i64 = (0..24)
                .map(|i| {
                    self.get(h - i * 3600, &Metric::MrrGained(cur.clone()))
                        - self.get(h - i * 3600, &Metric::MrrLost(cur.clone()))
                })
                .sum();
            let before = total - net;
            if net >= 0 || before <= 0 {
                continue;
            }
            let share = -net as f64 / before as f64;
            let severity = if share >= c.mrr_fall_critical {
                Severity::Critical
            } else if share >= c.mrr_fall_warning {
                Severity::Warning
            } else {
                continue;
            };
            let money = |v: i64| crate::domain::money::format_minor(v, &cur);
            let explanation = format!(
                "MRR ({}) fell by {} ({:.1} %) over the last 24 h, to {}",
                cur.to_uppercase(),
                money(-net),
                share * 100.0,
                money(total)
            );
            self.raise(Raised {
                key: format!("mrr_fall:{cur}"),
                signal: "mrr_fall",
                metric: Metric::MrrTotal(cur.clone()).name(),
                window: (h - 23 * 3600, now),
                observed: total as f64,
                expected: before as f64,
                spread: 0.0,
                severity,
                explanation,
            });
        }
    }

    fn delivery_lag(&mut self) {
        let (c, now) = (self.config, self.now);
        let h = hour_of(now);
        let hours = [h - 3600, h];
        let in_hours = |m: &Metric| hours.iter().map(|hr| self.get(*hr, m)).sum::<i64>();
        let Some((p95, total)) =
            crate::domain::metric::lag_p95(&crate::domain::metric::lag_histogram(in_hours))
        else {
            return;
        };
        if total < c.lag_min_events {
            return;
        }
        let severity = if p95 > c.lag_critical_secs {
            Severity::Critical
        } else if p95 > c.lag_warning_secs {
            Severity::Warning
        } else {
            return;
        };
        let shown = if p95 == i64::MAX {
            "over 3600 s".to_owned()
        } else {
            format!("up to {p95} s")
        };
        let explanation = format!("Stripe's webhooks arrive late: p95 delivery lag {shown} over {total} deliveries since {}", hhmm(h - 3600));
        self.raise(Raised {
            key: "delivery_lag".into(),
            signal: "delivery_lag",
            metric: "lag_p95_secs".into(),
            window: (h - 3600, now),
            observed: p95.min(7200) as f64,
            expected: c.lag_warning_secs as f64,
            spread: 0.0,
            severity,
            explanation,
        });
    }

    /// A ratio over a window against thresholds (and, when given, a multiple of its baseline).
    fn rate(&mut self, r: Rate<'_>) {
        if r.den < r.min_den {
            return;
        }
        let value = r.num as f64 / r.den as f64;
        let base = r.baseline.unwrap_or(0.0);
        let severity = if value >= r.critical.max(3.0 * base) {
            Severity::Critical
        } else if value >= r.warning.max(2.0 * base) {
            Severity::Warning
        } else {
            return;
        };
        let explanation = format!(
            "{}: {:.2} % ({} of {}) since {}",
            r.label,
            value * 100.0,
            r.num,
            r.den,
            hhmm(r.window.0)
        );
        self.raise(Raised {
            key: r.key.to_owned(),
            signal: r.key,
            metric: r.key.to_owned(),
            window: r.window,
            observed: value,
            expected: base.max(r.warning),
            spread: 0.0,
            severity,
            explanation,
        });
    }

    fn rates(&mut self) {
        let (c, now) = (self.config, self.now);
        let h = hour_of(now);
        let (failed_m, paid_m) = (Metric::PaymentsFailed, Metric::PaymentsSucceeded);
        let week = (h - 7 * 86_400, h - 3600);
        let window = (h - 3600, now);
        let failed = self.sum_hours(&failed_m, window.0, h + 3600);
        let attempts = failed + self.sum_hours(&paid_m, window.0, h + 3600);
        let week_failed = self.sum_hours(&failed_m, week.0, week.1);
        let week_attempts = week_failed + self.sum_hours(&paid_m, week.0, week.1);
        let baseline = (week_attempts > 0).then(|| week_failed as f64 / week_attempts as f64);
        self.rate(Rate {
            key: "failure_rate",
            label: "Payment failure rate",
            num: failed,
            den: attempts,
            warning: c.failure_rate_warning,
            critical: c.failure_rate_critical,
            min_den: c.failure_rate_min_attempts,
            window,
            baseline,
        });

        let week_window = (h - 7 * 86_400, now);
        let paid_week = self.sum_hours(&paid_m, week_window.0, h + 3600);
        let disputes_week = self.sum_hours(&Metric::Disputes, week_window.0, h + 3600);
        let efw_week = self.sum_hours(&Metric::EarlyFraudWarnings, week_window.0, h + 3600);
        self.rate(Rate {
            key: "dispute_rate",
            label: "Dispute rate over 7 days",
            num: disputes_week,
            den: paid_week,
            warning: c.dispute_rate_warning,
            critical: c.dispute_rate_critical,
            min_den: c.risk_min_payments,
            window: week_window,
            baseline: None,
        });
        self.rate(Rate {
            key: "efw_rate",
            label: "Early fraud warning rate over 7 days",
            num: efw_week,
            den: paid_week,
            warning: c.efw_rate_warning,
            critical: c.efw_rate_warning * 4.0 / 3.0,
            min_den: c.risk_min_payments,
            window: week_window,
            baseline: None,
        });
        let day = (h - 23 * 3600, now);
        let refunds_day = self.sum_hours(&Metric::Refunds, day.0, h + 3600);
        let paid_day = self.sum_hours(&paid_m, day.0, h + 3600);
        self.rate(Rate {
            key: "refund_rate",
            label: "Refund rate over 24 h",
            num: refunds_day,
            den: paid_day,
            warning: c.refund_rate_warning,
            critical: c.refund_rate_critical,
            min_den: c.refund_rate_min_payments,
            window: day,
            baseline: None,
        });
    }

    /// Active subscriptions whose period ended over `lapse_grace_hours` ago, never renewed.
    fn silent_lapse(&mut self) {
        let (c, now) = (self.config, self.now);
        let h = hour_of(now);
        let lapse_until = hour_of(now - c.lapse_grace_hours * 3600);
        let lapsed = self.sum_hours(&Metric::ActivePeriodEnds, h - 8 * 86_400, lapse_until);
        if lapsed > 0 {
            let explanation = format!(
                "{lapsed} active subscription(s) passed their period end over {} h ago without a renewal: are renewal webhooks missing?",
                c.lapse_grace_hours
            );
            self.raise(Raised {
                key: "silent_lapse".into(),
                signal: "silent_lapse",
                metric: Metric::ActivePeriodEnds.name(),
                window: (h - 8 * 86_400, lapse_until),
                observed: lapsed as f64,
                expected: 0.0,
                spread: 0.0,
                severity: Severity::Warning,
                explanation,
            });
        }
    }
}

/// A rate signal's inputs.
struct Rate<'a> {
    key: &'a str,
    label: &'a str,
    num: i64,
    den: i64,
    warning: f64,
    critical: f64,
    min_den: i64,
    window: (i64, i64),
    baseline: Option<f64>,
}

/// All window signals for one livemode at `now`.
pub fn detect(series: &Series, livemode: bool, now: i64, config: &DetectConfig) -> Vec<Finding> {
    let mut s = Signals {
        series,
        livemode,
        now,
        config,
        found: Vec::new(),
    };
    for (metric, label) in [
        (Metric::PaymentsFailed, "Failed payments"),
        (Metric::Refunds, "Refunds"),
        (Metric::Disputes, "Disputes"),
        (Metric::SubscriptionsCanceled, "Cancellations"),
        (Metric::DunningLost, "Dunning cases lost"),
        (Metric::EarlyFraudWarnings, "Early fraud warnings"),
    ] {
        s.spike(&metric, label);
    }
    // An amount metric (built from its currency), the count it goes with, a label.
    type AmountSignal = (fn(String) -> Metric, Metric, &'static str);
    let amounts: [AmountSignal; 3] = [
        (
            Metric::PaymentsFailedAmount,
            Metric::PaymentsFailed,
            "Failed payment amount",
        ),
        (Metric::RefundsAmount, Metric::Refunds, "Refunded amount"),
        (Metric::MrrLost, Metric::SubscriptionsCanceled, "MRR lost"),
    ];
    for (amount, count, label) in amounts {
        let kind = std::mem::discriminant(&amount(String::new()));
        for cur in currencies(series, |m| {
            if std::mem::discriminant(m) == kind {
                m.currency()
            } else {
                None
            }
        }) {
            s.amount_spike(
                &amount(cur.clone()),
                &count,
                &format!("{label} ({})", cur.to_uppercase()),
            );
        }
    }
    s.drop_signal(&Metric::PaymentsSucceeded, "Successful payments");
    s.drop_signal(&Metric::SubscriptionsNew, "New subscriptions");
    if config.rule == Rule::LegacyThreeTimesMean {
        return s.found;
    }
    s.delivery_gap();
    s.mrr_fall();
    s.delivery_lag();
    s.rates();
    s.silent_lapse();
    s.found
}
