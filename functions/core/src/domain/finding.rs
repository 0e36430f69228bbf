//! A finding: one anomaly with the numbers behind it. Raised by the detector's window
//! signals and by the worker for single events (a duplicate charge, a large refund, a
//! fraud warning); the alert lifecycle turns findings into alerts. A leaf module.

use serde::{Deserialize, Serialize};

pub use crate::domain::account::Scope;

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
    /// Whose billing it is about: absent for the platform's own account (as findings
    /// always read), a connected account's id, or `all` for the whole platform.
    #[serde(
        default,
        rename = "account",
        skip_serializing_if = "Scope::is_platform"
    )]
    pub scope: Scope,
    /// For a platform finding that many accounts raised at once: those accounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<String>,
}

impl Finding {
    /// This finding as one of `scope`: its key behind the scope's prefix, so that each
    /// scope's alert is its own (`<acct>:<key>`, `all:<key>`; the platform's unchanged).
    pub fn in_scope(mut self, scope: Scope) -> Self {
        self.key = format!("{}{}", scope.key_prefix(), self.unscoped_key());
        self.scope = scope;
        self
    }

    /// The key without its scope's prefix: `<signal>` or `<signal>:<subject>`.
    pub fn unscoped_key(&self) -> &str {
        let prefix = self.scope.key_prefix();
        self.key.strip_prefix(prefix.as_str()).unwrap_or(&self.key)
    }
}
