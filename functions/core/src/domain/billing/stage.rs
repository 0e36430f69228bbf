//! The stage of a dunning case: what the customer is told, and whether the case is open.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// A renewal failed; Stripe will retry.
    Notice,
    /// The customer must authenticate the payment (3-D Secure).
    ActionRequired,
    /// Repeated failures: the last retries are near.
    FinalWarning,
    /// Paid after failing.
    Recovered,
    /// No retry left, or marked uncollectible: access is revoked.
    Lost,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Notice => "notice",
            Stage::ActionRequired => "action_required",
            Stage::FinalWarning => "final_warning",
            Stage::Recovered => "recovered",
            Stage::Lost => "lost",
        }
    }

    pub fn is_open(self) -> bool {
        !matches!(self, Stage::Recovered | Stage::Lost)
    }
}
