//! The worker's configuration, with documented defaults.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingPolicy {
    /// The failed attempt from which a dunning case is at `final_warning` (default 3).
    pub final_warning_attempt: i64,
    /// Days a past-due customer keeps access (`grace`) before it is revoked (default 7).
    pub grace_days: i64,
    /// Whether an open or lost dispute suspends access (default false: flagged only).
    pub suspend_on_dispute: bool,
    /// A successful payment at or above this many minor units is announced (default
    /// 100000, i.e. 1,000.00 in a two-decimal currency); 0 turns it off.
    pub large_payment_minor_units: i64,
    /// A single refund at or above this many minor units raises an alert (default 50000).
    pub large_refund_minor_units: i64,
    /// Two successful charges of one amount to one customer within this many seconds
    /// raise a duplicate-charge alert (default 600).
    pub duplicate_charge_secs: i64,
    /// Days after a cancellation when a customer who has not come back gets a win-back
    /// notice (default 14; 0 turns it off).
    #[serde(default = "default_win_back_days")]
    pub win_back_days: i64,
    /// Replacements for the built-in customer-facing dunning drafts.
    #[serde(default)]
    pub dunning_drafts: super::drafts::DunningDrafts,
}

impl Default for BillingPolicy {
    fn default() -> Self {
        Self {
            final_warning_attempt: 3,
            grace_days: 7,
            suspend_on_dispute: false,
            large_payment_minor_units: 100_000,
            large_refund_minor_units: 50_000,
            duplicate_charge_secs: 600,
            win_back_days: default_win_back_days(),
            dunning_drafts: Default::default(),
        }
    }
}

fn default_win_back_days() -> i64 {
    14
}
