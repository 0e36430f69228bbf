//! A finding: one anomaly with the numbers behind it. Raised by the detector's window
//! signals and by the worker for single events (a duplicate charge, a large refund, a
//! fraud warning); the alert lifecycle turns findings into alerts. A leaf module.

use serde::{Deserialize, Serialize};

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Identifies the alert this finding feeds: `<signal>` or `<signal>:<metric or subject>`.
    pub key: String,
    pub signal: String,
    /// The metric's stored name (see [`crate::domain::metric::Metric`]), or a derived figure
    /// such as `lag_p95_secs`.
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
