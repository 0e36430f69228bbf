//! What revguard knows of a customer beyond its subscriptions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::kind::Version;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerState {
    pub id: String,
    pub livemode: bool,
    pub default_payment_method: Option<String>,
    /// The version of the snapshot that set `default_payment_method`.
    pub default_pm_version: Option<Version>,
    /// Card expiry (year, month) per attached payment method.
    pub cards: BTreeMap<String, (i64, i64)>,
    /// Dispute id → status (`open` until `charge.dispute.closed` tells the result).
    pub disputes: BTreeMap<String, String>,
    pub early_fraud_warnings: u32,
    pub deleted: bool,
    /// Successful charges of the last few minutes (created, amount, currency, charge id),
    /// to notice a duplicate charge.
    #[serde(default)]
    pub recent_charges: Vec<(i64, i64, String, String)>,
    /// The latest failed payment's reason (event time, Stripe's code), for the wording of
    /// the dunning drafts.
    #[serde(default)]
    pub last_decline: Option<(i64, String)>,
}

impl CustomerState {
    pub fn new(id: &str, livemode: bool) -> Self {
        Self {
            id: id.to_owned(),
            livemode,
            default_payment_method: None,
            default_pm_version: None,
            cards: BTreeMap::new(),
            disputes: BTreeMap::new(),
            early_fraud_warnings: 0,
            deleted: false,
            recent_charges: Vec::new(),
            last_decline: None,
        }
    }

    /// An open dispute, or one the customer lost.
    pub fn disputed(&self) -> bool {
        self.disputes
            .values()
            .any(|s| s != "won" && s != "warning_closed")
    }

    pub fn has_payment_method(&self) -> bool {
        self.default_payment_method.is_some() || !self.cards.is_empty()
    }

    /// The expiry of the card that will be charged (the default, else the only one).
    pub fn charging_card_expiry(&self) -> Option<(i64, i64)> {
        match &self.default_payment_method {
            Some(pm) => self.cards.get(pm).copied(),
            None if self.cards.len() == 1 => self.cards.values().next().copied(),
            None => None,
        }
    }
}
