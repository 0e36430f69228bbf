//! The detector's rule and thresholds, with their defaults.

use serde::{Deserialize, Serialize};

use crate::domain::finding::Severity;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Same hour on the previous 7 days, Poisson tail, minimum volume and ratio.
    TimeOfDay,
    /// The seeds' rule: the last full hour above 3 × the 7-day hourly mean + 1. Kept for
    /// comparison (`detect-eval`); `seed3x`, its old name, is still read.
    #[serde(alias = "seed3x")]
    LegacyThreeTimesMean,
}

/// Thresholds, with their defaults (see the signals table in docs/detector-and-alerts.md).
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
    /// An open critical alert is re-sent at most every this many hours.
    pub reminder_hours: i64,
    /// An open warning (and any alert on a rate over days), at most every this many hours:
    /// worth a look, not a second page the same day.
    pub warning_reminder_hours: i64,
    /// A window alert resolves once its signal has been quiet this long (no flapping);
    /// rates over days (disputes, fraud warnings, refunds) move slowly and wait longer.
    pub resolve_after_secs: i64,
    pub slow_resolve_after_secs: i64,
    /// Event-level alerts (a duplicate charge, a large refund, a fraud warning) resolve
    /// after this many hours.
    pub event_alert_hours: i64,
    /// The least expected of any hour, per metric (0: the baseline as it is). The
    /// platform's own account is judged without it; see `account_baseline_floor`.
    pub baseline_floor: f64,
    /// Connect: each connected account's hourly floor, so that a quiet account is judged
    /// on counts (4 failed payments in an hour where it expects 1 stay quiet; 10 do not).
    pub account_baseline_floor: f64,
    /// Connect: when at least this many accounts raise the same signal at once, one
    /// alert for the whole platform names them, instead of one alert each.
    pub cluster_min_accounts: usize,
}

impl DetectConfig {
    /// How long an open alert of this severity, over a window this long, waits between
    /// reminders: a rate over days (disputes, fraud warnings) cannot be mended within
    /// hours, so it reminds at the warnings' pace whatever its severity.
    /// The thresholds a connected account is judged with: the platform's, on a floor.
    pub fn for_connected_account(&self) -> Self {
        Self {
            baseline_floor: self.baseline_floor.max(self.account_baseline_floor),
            ..self.clone()
        }
    }

    pub fn reminder_secs(&self, severity: Severity, window_secs: i64) -> i64 {
        match severity {
            Severity::Critical if window_secs < 86_400 => self.reminder_hours * 3600,
            _ => self.warning_reminder_hours * 3600,
        }
    }
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
            warning_reminder_hours: 24,
            resolve_after_secs: 3600,
            slow_resolve_after_secs: 24 * 3600,
            event_alert_hours: 24,
            baseline_floor: 0.0,
            account_baseline_floor: 1.0,
            cluster_min_accounts: 5,
        }
    }
}
