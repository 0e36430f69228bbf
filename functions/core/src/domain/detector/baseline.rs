//! What a window is compared with: the windows a rule judges, and the expectation from
//! the 7 days before each (by time of day, or the seeds' hourly mean).

use super::config::Rule;
use super::series::Series;
use crate::domain::metric::Metric;
use crate::domain::time::hour_of;

pub(super) fn get(series: &Series, hour: i64, metric: &Metric) -> i64 {
    series
        .get(&hour)
        .and_then(|m| m.get(metric))
        .copied()
        .unwrap_or(0)
}

/// The currencies of the amounts `of` picks out of the series.
pub(super) fn currencies(
    series: &Series,
    of: impl for<'m> Fn(&'m Metric) -> Option<&'m str>,
) -> Vec<String> {
    let mut out: Vec<String> = series
        .values()
        .flat_map(|m| m.keys())
        .filter_map(|k| of(k).map(str::to_owned))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A window being judged: hours with the weight of their baseline (the current hour is
/// only partly elapsed).
pub(super) struct Window {
    pub(super) hours: Vec<(i64, f64)>,
    pub(super) start: i64,
    pub(super) end: i64,
}

pub(super) fn windows(now: i64, rule: Rule) -> Vec<Window> {
    let h = hour_of(now);
    let frac = (now - h) as f64 / 3600.0;
    match rule {
        Rule::LegacyThreeTimesMean => vec![Window {
            hours: vec![(h - 3600, 1.0)],
            start: h - 3600,
            end: h,
        }],
        Rule::TimeOfDay => {
            let mut w = vec![Window {
                hours: vec![(h - 3600, 1.0), (h, frac)],
                start: h - 3600,
                end: now,
            }];
            if frac >= 0.25 {
                w.push(Window {
                    hours: vec![(h, frac)],
                    start: h,
                    end: now,
                });
            }
            w
        }
    }
}

pub(super) struct Expectation {
    pub(super) observed: i64,
    pub(super) expected: f64,
    pub(super) spread: f64,
}

/// Observed in the window, and expected from the 7 days before it; `floor` is the least
/// expected of any hour (a quiet connected account's: judged on counts, not on ratios
/// to nearly nothing).
pub(super) fn expect(
    series: &Series,
    window: &Window,
    metric: &Metric,
    rule: Rule,
    floor: f64,
) -> Expectation {
    let observed = window
        .hours
        .iter()
        .map(|(h, _)| get(series, *h, metric))
        .sum();
    let first = window.hours.first().map(|(h, _)| *h).unwrap_or(0);
    // The 7 days before the window (168 hours), excluding the window itself.
    let week: Vec<i64> = (1..=168)
        .map(|i| get(series, first - i * 3600, metric))
        .collect();
    let week_mean = week.iter().sum::<i64>() as f64 / 168.0;
    match rule {
        Rule::LegacyThreeTimesMean => Expectation {
            observed,
            expected: week_mean.max(floor),
            spread: 0.0,
        },
        Rule::TimeOfDay => {
            let mut expected = 0.0;
            let mut variance = 0.0;
            for (hour, weight) in &window.hours {
                // The same hour and its neighbours on each of the previous 7 days: 21
                // samples, so that a sparse metric still has a usable baseline.
                let samples: Vec<f64> = (1..=7)
                    .flat_map(|d| {
                        [-3600, 0, 3600].map(|n| get(series, hour - d * 86_400 + n, metric) as f64)
                    })
                    .collect();
                let n = samples.len() as f64;
                let mean = samples.iter().sum::<f64>() / n;
                let var = samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n - 1.0);
                // A quiet hour still has some chance of activity: floor it by the week.
                let floor = (0.5 * week_mean).max(0.02).max(floor);
                expected += weight * mean.max(floor);
                // The spread of a mean over days, not of a single hour's count.
                variance += weight * weight * var / 3.0;
            }
            Expectation {
                observed,
                expected,
                spread: variance.sqrt(),
            }
        }
    }
}

pub(super) fn ratio(observed: f64, expected: f64) -> f64 {
    if expected > 0.0 {
        observed / expected
    } else {
        f64::INFINITY
    }
}
