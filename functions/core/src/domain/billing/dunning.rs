//! Dunning cases, one per unpaid invoice, kept as facts so that any delivery order ends
//! in the same case: the stage is derived from what is known, never from arrival order.

use serde::{Deserialize, Serialize};

use super::objects::Currency;
use super::policy::BillingPolicy;
use super::stage::Stage;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaidFact {
    pub at: i64,
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DunningCase {
    pub invoice_id: String,
    pub customer: Option<String>,
    pub subscription: Option<String>,
    pub livemode: bool,
    pub currency: Option<Currency>,
    pub amount_due: i64,
    /// The highest attempt count seen on a failure.
    pub attempt_count: i64,
    /// From the latest failure (by event time).
    pub next_payment_attempt: Option<i64>,
    pub last_failure_at: Option<i64>,
    /// The earliest failure or authentication request: when the case opened.
    pub opened_at: Option<i64>,
    pub action_required_at: Option<i64>,
    /// The earliest failure that said no retry is left.
    pub exhausted_at: Option<i64>,
    pub uncollectible_at: Option<i64>,
    pub paid: Option<PaidFact>,
    /// Where the customer pays the invoice or updates the card.
    #[serde(default)]
    pub hosted_invoice_url: Option<String>,
    /// The end of the service period the invoice pays for (access runs until then once
    /// it is paid).
    #[serde(default)]
    pub period_end: Option<i64>,
}

impl DunningCase {
    pub fn new(invoice_id: &str, livemode: bool) -> Self {
        Self {
            invoice_id: invoice_id.to_owned(),
            customer: None,
            subscription: None,
            livemode,
            currency: None,
            amount_due: 0,
            attempt_count: 0,
            next_payment_attempt: None,
            last_failure_at: None,
            opened_at: None,
            action_required_at: None,
            exhausted_at: None,
            uncollectible_at: None,
            paid: None,
            hosted_invoice_url: None,
            period_end: None,
        }
    }

    /// `None` while no failure is known (an invoice paid at the first try is no case).
    pub fn stage(&self, policy: &BillingPolicy) -> Option<Stage> {
        self.opened_at?;
        Some(if self.paid.is_some() {
            Stage::Recovered
        } else if self.lost_at().is_some() {
            Stage::Lost
        } else if self
            .action_required_at
            .is_some_and(|a| self.last_failure_at.is_none_or(|f| a >= f))
        {
            Stage::ActionRequired
        } else if self.attempt_count >= policy.final_warning_attempt {
            Stage::FinalWarning
        } else {
            Stage::Notice
        })
    }

    /// When the invoice became uncollectible, by the earliest fact saying so.
    pub fn lost_at(&self) -> Option<i64> {
        match (self.exhausted_at, self.uncollectible_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Paid after failing: when, and for how much.
    pub fn recovered(&self) -> Option<PaidFact> {
        self.opened_at.and(self.paid)
    }

    pub fn time_to_recover_secs(&self) -> Option<i64> {
        Some(self.paid?.at - self.opened_at?)
    }
}

pub fn min_opt(a: Option<i64>, b: i64) -> Option<i64> {
    Some(a.map_or(b, |a| a.min(b)))
}
