//! What deciding an event produces: the state it changes, its counters, findings and
//! notifications, applied with the event's marker in one transaction.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::counters::CounterUpdate;
use super::customer::CustomerState;
use super::dunning::DunningCase;
use super::event::BillingEvent;
use super::subscription::SubscriptionState;
use crate::domain::account::Account;
use crate::domain::finding::Finding;

/// A structured notification: dunning stages, pre-dunning notices, disputes, purchases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// `<event id>:<kind>`: unique, so subscribers can de-duplicate a re-publish.
    pub id: String,
    pub kind: String,
    pub stage: Option<String>,
    pub customer: Option<String>,
    pub livemode: bool,
    pub event_id: String,
    pub created: i64,
    pub subject: String,
    pub details: Value,
    /// The connected account whose customer it is about (absent: the platform's own).
    #[serde(default, skip_serializing_if = "Account::is_platform")]
    pub account: Account,
}

/// Everything an event changes, committed at once with its applied marker.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects {
    pub subscription: Option<SubscriptionState>,
    pub case: Option<DunningCase>,
    pub customer: Option<CustomerState>,
    /// Remember which customer a charge belongs to (disputes name only the charge).
    pub charge_link: Option<(String, String)>,
    pub counters: Vec<CounterUpdate>,
    pub notifications: Vec<Notification>,
    /// An older snapshot than the stored one: counted, not applied.
    pub stale: bool,
    /// Event-level anomalies (a duplicate charge, a large refund, a fraud warning), for
    /// the alert lifecycle.
    pub findings: Vec<Finding>,
}

impl Effects {
    /// A notification for the team, its amounts also written for people.
    pub(super) fn notify(
        &mut self,
        event: &BillingEvent,
        kind: &str,
        stage: Option<String>,
        customer: Option<String>,
        subject: &str,
        mut details: Value,
    ) {
        let headline = with_money_for_people(&mut details);
        let subject = match headline {
            Some(amount) => format!("{subject}: {amount}"),
            None => subject.to_owned(),
        };
        self.notifications.push(Notification {
            id: format!("{}:{kind}", event.id),
            kind: kind.to_owned(),
            stage,
            customer,
            livemode: event.livemode,
            event_id: event.id.clone(),
            created: event.created,
            subject,
            details,
            account: event.account.clone(),
        });
    }
}

/// The amount fields of a notification's details that people read, in minor units.
const AMOUNT_FIELDS: [&str; 5] = [
    "amount",
    "amount_due",
    "amount_total",
    "recovered_amount",
    "mrr_lost",
];

/// Adds `<field>_display` ("$652.60", "¥5,000") beside each amount in minor units, which
/// machines keep reading. Returns the first one, for the subject.
fn with_money_for_people(details: &mut Value) -> Option<String> {
    let object = details.as_object_mut()?;
    let currency = object.get("currency")?.as_str()?.to_owned();
    let mut headline = None;
    for field in AMOUNT_FIELDS {
        if let Some(minor) = object.get(field).and_then(Value::as_i64) {
            let shown = crate::domain::money::format_minor(minor, &currency);
            headline.get_or_insert_with(|| shown.clone());
            object.insert(format!("{field}_display"), Value::String(shown));
        }
    }
    headline
}
