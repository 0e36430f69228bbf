//! A Stripe event as billing reads it: parsed, its object typed on demand, the state
//! keys it touches, and the state it is decided against.

use serde::Deserialize;
use serde_json::Value;

use super::customer::CustomerState;
use super::dunning::DunningCase;
use super::kind::{EventKind, Version};
use super::subscription::SubscriptionState;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApplyError {
    /// The payload cannot be applied however often it is retried: a poison message.
    #[error("malformed event: {0}")]
    Malformed(String),
}

/// A verified Stripe event as the worker sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct BillingEvent {
    pub id: String,
    pub event_type: String,
    pub kind: EventKind,
    pub created: i64,
    pub livemode: bool,
    pub received_at: i64,
    pub object: Value,
    pub previous: Option<Value>,
    /// How it came: only webhook deliveries count as deliveries.
    pub via: crate::domain::message::Via,
    /// Whose billing it is: the platform's own, or a connected account's (Connect).
    pub account: crate::domain::account::Account,
}

#[derive(Deserialize)]
struct RawEvent {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    created: i64,
    livemode: bool,
    #[serde(default)]
    account: Option<String>,
    data: RawData,
}

#[derive(Deserialize)]
struct RawData {
    object: Value,
    #[serde(default)]
    previous_attributes: Option<Value>,
}

impl BillingEvent {
    pub fn parse(raw: &[u8], received_at: i64) -> Result<Self, ApplyError> {
        let e: RawEvent =
            serde_json::from_slice(raw).map_err(|e| ApplyError::Malformed(e.to_string()))?;
        // An account that is no Stripe account id never reaches a key.
        let account = crate::domain::account::Account::of_event(e.account.as_deref())
            .map_err(|err| ApplyError::Malformed(format!("account: {err}")))?;
        Ok(Self {
            account,
            kind: EventKind::of(&e.event_type),
            id: e.id,
            event_type: e.event_type,
            created: e.created,
            livemode: e.livemode,
            received_at,
            object: e.data.object,
            previous: e.data.previous_attributes,
            via: crate::domain::message::Via::Webhook,
        })
    }

    pub(super) fn object<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApplyError> {
        T::deserialize(&self.object)
            .map_err(|e| ApplyError::Malformed(format!("{}: data.object: {e}", self.event_type)))
    }

    pub(super) fn version(&self) -> Version {
        Version::new(self.created, &self.id)
    }
}

/// The state an event touches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys {
    pub subscription: Option<String>,
    pub invoice: Option<String>,
    pub customer: Option<String>,
    /// A charge whose customer must be looked up (disputes, fraud warnings).
    pub charge: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Current {
    pub subscription: Option<SubscriptionState>,
    pub case: Option<DunningCase>,
    pub customer: Option<CustomerState>,
    pub charge_customer: Option<String>,
}

/// Where the state an event's decision reads is found: the in-memory reference state, or
/// a batch's snapshot read from a store. `current` is the one place that says which
/// items an event reads (its keys, and the customer of a charge it names).
pub trait StateLookup {
    fn subscription(&self, id: &str) -> Option<SubscriptionState>;
    fn case(&self, invoice_id: &str) -> Option<DunningCase>;
    fn customer(&self, id: &str) -> Option<CustomerState>;
    fn charge_customer(&self, charge_id: &str) -> Option<String>;

    fn current(&self, event: &BillingEvent) -> Current {
        let keys = keys_of(event);
        let charge_customer = keys.charge.as_deref().and_then(|c| self.charge_customer(c));
        let customer_id = keys.customer.or_else(|| charge_customer.clone());
        Current {
            subscription: keys.subscription.and_then(|k| self.subscription(&k)),
            case: keys.invoice.and_then(|k| self.case(&k)),
            customer: customer_id.and_then(|k| self.customer(&k)),
            charge_customer,
        }
    }
}

pub(super) fn obj_str(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("id").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// The charge an event is about, for the events whose applied marker lives on the charge's
/// item (the item that keeps the charge's customer anyway): a charge has few events in its
/// life, so the set of them stays small.
pub fn marker_charge(kind: EventKind, object: &Value) -> Option<String> {
    if !marks_its_charge(kind) {
        return None;
    }
    obj_str(object, "id").filter(|id| !id.is_empty())
}

fn marks_its_charge(kind: EventKind) -> bool {
    use EventKind::*;
    matches!(kind, ChargeSucceeded | ChargeFailed | ChargeRefunded)
}

/// [`marker_charge`] from a raw Stripe event (its `data.object`), as the event log keeps it.
pub fn marker_charge_of_payload(event_type: &str, raw: &[u8]) -> Option<String> {
    let kind = EventKind::of(event_type);
    if !marks_its_charge(kind) {
        return None; // not worth parsing
    }
    let event: Value = serde_json::from_slice(raw).ok()?;
    marker_charge(kind, event.get("data")?.get("object")?)
}

pub fn keys_of(event: &BillingEvent) -> Keys {
    use EventKind::*;
    let o = &event.object;
    let mut keys = Keys::default();
    match event.kind {
        k if k.is_subscription_snapshot() => {
            keys.subscription = obj_str(o, "id");
            if k == SubscriptionTrialWillEnd {
                keys.customer = obj_str(o, "customer");
            }
        }
        InvoiceUpcoming => keys.customer = obj_str(o, "customer"),
        InvoicePaid | InvoiceMarkedUncollectible => keys.invoice = obj_str(o, "id"),
        // A failure's draft is worded for the customer's latest decline reason.
        InvoicePaymentFailed | InvoicePaymentActionRequired => {
            keys.invoice = obj_str(o, "id");
            keys.customer = obj_str(o, "customer");
        }
        DisputeCreated | DisputeClosed | EarlyFraudWarning => {
            keys.charge = obj_str(o, "charge");
            keys.customer = obj_str(o, "customer");
        }
        ChargeSucceeded | ChargeFailed | PaymentIntentFailed => {
            keys.customer = obj_str(o, "customer")
        }
        CustomerUpdated | CustomerDeleted => keys.customer = obj_str(o, "id"),
        PaymentMethodAttached => keys.customer = obj_str(o, "customer"),
        _ => {}
    }
    keys
}
