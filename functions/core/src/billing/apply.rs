//! Applying one event: `decide(event, current state, policy) -> effects`, pure.
//!
//! Adapters load the [`Current`] state named by [`keys_of`], call [`decide`], and commit
//! the effects together with the event's "applied" marker in one transaction.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::counters::{CounterSink, CounterUpdate};
use super::customer::{card_expired_at, CustomerState};
use super::dunning::{min_opt, DunningCase, PaidFact, Stage};
use super::objects::{
    money, Charge, CheckoutSession, Currency, Customer, Dispute, Invoice, PaymentMethod, Ref, Subscription,
};
use super::policy::BillingPolicy;
use super::subscription::SubscriptionState;
use super::{EventKind, Version};

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
}

#[derive(Deserialize)]
struct RawEvent {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    created: i64,
    livemode: bool,
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
        let e: RawEvent = serde_json::from_slice(raw).map_err(|e| ApplyError::Malformed(e.to_string()))?;
        Ok(Self {
            kind: EventKind::of(&e.event_type),
            id: e.id,
            event_type: e.event_type,
            created: e.created,
            livemode: e.livemode,
            received_at,
            object: e.data.object,
            previous: e.data.previous_attributes,
        })
    }

    fn object<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApplyError> {
        T::deserialize(&self.object)
            .map_err(|e| ApplyError::Malformed(format!("{}: data.object: {e}", self.event_type)))
    }

    fn version(&self) -> Version {
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
    pub findings: Vec<crate::detect::Finding>,
}

fn obj_str(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("id").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
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
        InvoicePaid | InvoicePaymentFailed | InvoicePaymentActionRequired | InvoiceMarkedUncollectible => {
            keys.invoice = obj_str(o, "id")
        }
        DisputeCreated | DisputeClosed | EarlyFraudWarning => {
            keys.charge = obj_str(o, "charge");
            keys.customer = obj_str(o, "customer");
        }
        ChargeSucceeded => keys.customer = obj_str(o, "customer"),
        CustomerUpdated | CustomerDeleted => keys.customer = obj_str(o, "id"),
        PaymentMethodAttached => keys.customer = obj_str(o, "customer"),
        _ => {}
    }
    keys
}

pub fn decide(event: &BillingEvent, current: &Current, policy: &BillingPolicy) -> Result<Effects, ApplyError> {
    use EventKind::*;
    let mut fx = Effects::default();
    let mut counters = CounterSink::default();
    let live = event.livemode;
    counters.add(live, event.created, "events", 1);
    counters.add(live, event.created, format!("events.type.{}", event.event_type), 1);
    counters.add(live, event.received_at, "events_received", 1);
    counters.lag(live, event.received_at, event.received_at - event.created);
    counters.max_at_hour(live, 0, "max_received_at", event.received_at);

    match event.kind {
        k if k.is_subscription_snapshot() => subscription_event(event, current, policy, &mut fx, &mut counters)?,
        InvoicePaid | InvoicePaymentFailed | InvoicePaymentActionRequired | InvoiceMarkedUncollectible => {
            invoice_event(event, current, policy, &mut fx, &mut counters)?
        }
        InvoiceUpcoming => upcoming_invoice(event, current, &mut fx)?,
        InvoiceFinalizationFailed => {
            let inv: Invoice = event.object()?;
            notify(&mut fx, event, "invoice_finalization_failed", None, inv.customer_id(), "An invoice could not be finalized", json!({ "invoice": inv.id }));
        }
        ChargeSucceeded | ChargeFailed => {
            let ch: Charge = event.object()?;
            let (metric, amount_metric) = if event.kind == ChargeSucceeded {
                ("payments_succeeded", "payments_succeeded_amount")
            } else {
                ("payments_failed", "payments_failed_amount")
            };
            counters.add(live, event.created, metric, 1);
            if let Some(m) = money(ch.amount, &ch.currency) {
                counters.add(live, event.created, format!("{amount_metric}.{}", m.currency), m.amount);
                let threshold = policy.large_payment_minor_units;
                if event.kind == ChargeSucceeded && threshold > 0 && m.amount >= threshold {
                    notify(&mut fx, event, "large_payment", None, ch.customer_id(), "A large payment succeeded", json!({ "charge": ch.id, "amount": m.amount, "currency": m.currency }));
                }
            }
            if let (Some(id), Some(customer)) = (ch.id.clone(), ch.customer_id()) {
                if event.kind == ChargeSucceeded {
                    if let Some(m) = money(ch.amount, &ch.currency) {
                        duplicate_charge(event, current, policy, &mut fx, &id, &customer, m);
                    }
                }
                fx.charge_link = Some((id, customer));
            }
        }
        ChargeRefunded => {
            let ch: Charge = event.object()?;
            let before = event.previous.as_ref().and_then(|p| p.get("amount_refunded")).and_then(Value::as_i64).unwrap_or(0);
            let refunded = ch.amount_refunded.unwrap_or(0) - before;
            if let Some(m) = money(Some(refunded), &ch.currency) {
                if policy.large_refund_minor_units > 0 && m.amount >= policy.large_refund_minor_units {
                    let subject = ch.id.clone().unwrap_or_else(|| event.id.clone());
                    fx.findings.push(event_finding(event, "large_refund", &format!("refunds_amount.{}", m.currency), &subject, m.amount as f64, policy.large_refund_minor_units as f64,
                        format!("A single refund of {} {} on charge {subject}", m.amount, m.currency)));
                }
                counters.add(live, event.created, "refunds", 1);
                counters.add(live, event.created, format!("refunds_amount.{}", m.currency), m.amount);
                counters.max(live, event.created, format!("refund_max.{}", m.currency), m.amount);
            }
        }
        DisputeCreated | DisputeClosed => {
            let d: Dispute = event.object()?;
            let customer_id = current.charge_customer.clone().or_else(|| obj_str(&event.object, "customer"));
            if event.kind == DisputeCreated {
                counters.add(live, event.created, "disputes", 1);
                if let Some(m) = money(d.amount, &d.currency) {
                    counters.add(live, event.created, format!("disputes_amount.{}", m.currency), m.amount);
                }
            }
            if let (Some(cid), Some(did)) = (customer_id.clone(), d.id.clone()) {
                let mut c = current.customer.clone().unwrap_or_else(|| CustomerState::new(&cid, live));
                let status = if event.kind == DisputeClosed { d.status.clone().unwrap_or_else(|| "closed".into()) } else { "open".into() };
                // A closing is final; an opening never overwrites it.
                if event.kind == DisputeClosed || !c.disputes.contains_key(&did) {
                    c.disputes.insert(did.clone(), status.clone());
                }
                fx.customer = Some(c);
            }
            let (kind, subject) = if event.kind == DisputeCreated {
                ("dispute", "A payment is disputed")
            } else {
                ("dispute_closed", "A dispute was closed")
            };
            notify(&mut fx, event, kind, d.status.clone(), customer_id, subject, json!({ "dispute": d.id, "charge": d.charge.as_ref().map(Ref::id), "amount": d.amount, "currency": d.currency }));
        }
        EarlyFraudWarning => {
            counters.add(live, event.created, "early_fraud_warnings", 1);
            let customer_id = current.charge_customer.clone();
            if let Some(cid) = &customer_id {
                let mut c = current.customer.clone().unwrap_or_else(|| CustomerState::new(cid, live));
                c.early_fraud_warnings += 1;
                fx.customer = Some(c);
            }
            notify(&mut fx, event, "early_fraud_warning", None, customer_id.clone(), "Stripe Radar raised an early fraud warning", json!({ "charge": obj_str(&event.object, "charge") }));
            let subject = obj_str(&event.object, "id").unwrap_or_else(|| event.id.clone());
            fx.findings.push(event_finding(event, "early_fraud_warning", "early_fraud_warnings", &subject, 1.0, 0.0,
                format!("Radar early fraud warning on charge {} (customer {})", obj_str(&event.object, "charge").unwrap_or_default(), customer_id.unwrap_or_else(|| "unknown".into()))));
        }
        CheckoutCompleted => {
            let s: CheckoutSession = event.object()?;
            notify(&mut fx, event, "checkout_completed", s.mode.clone(), s.customer.as_ref().map(|c| c.id().to_owned()), "A checkout was completed", json!({ "session": s.id, "amount_total": s.amount_total, "currency": s.currency }));
        }
        CustomerUpdated | CustomerDeleted => {
            let cu: Customer = event.object()?;
            let mut c = current.customer.clone().unwrap_or_else(|| CustomerState::new(&cu.id, live));
            if event.kind == CustomerDeleted {
                c.deleted = true;
            } else if c.default_pm_version.as_ref().is_none_or(|v| *v < event.version()) {
                c.default_payment_method =
                    cu.invoice_settings.and_then(|s| s.default_payment_method).map(|r| r.id().to_owned());
                c.default_pm_version = Some(event.version());
            }
            fx.customer = Some(c);
        }
        PaymentMethodAttached => {
            let pm: PaymentMethod = event.object()?;
            if let Some(cid) = pm.customer.as_ref().map(|c| c.id().to_owned()) {
                let mut c = current.customer.clone().unwrap_or_else(|| CustomerState::new(&cid, live));
                if let Some(card) = &pm.card {
                    if let (Some(y), Some(m)) = (card.exp_year, card.exp_month) {
                        c.cards.insert(pm.id.clone(), (y, m));
                    }
                }
                fx.customer = Some(c);
            }
        }
        // Payment intents mirror their charges; counting both would count a payment twice.
        PaymentIntentSucceeded | PaymentIntentFailed | Unknown => {}
        _ => {}
    }
    fx.counters = counters.updates;
    Ok(fx)
}

fn event_finding(event: &BillingEvent, signal: &str, metric: &str, subject: &str, observed: f64, expected: f64, explanation: String) -> crate::detect::Finding {
    crate::detect::Finding {
        key: format!("{signal}:{subject}"),
        signal: signal.to_owned(),
        metric: metric.to_owned(),
        livemode: event.livemode,
        window_start: event.created,
        window_end: event.created,
        observed,
        expected,
        spread: 0.0,
        ratio: if expected > 0.0 { ((observed / expected) * 100.0).round() / 100.0 } else { 0.0 },
        severity: crate::detect::Severity::Warning,
        explanation,
    }
}

/// Two successful charges of one amount to one customer within minutes.
fn duplicate_charge(
    event: &BillingEvent,
    current: &Current,
    policy: &BillingPolicy,
    fx: &mut Effects,
    charge_id: &str,
    customer_id: &str,
    m: super::objects::Money,
) {
    let window = policy.duplicate_charge_secs;
    let mut c = current.customer.clone().unwrap_or_else(|| CustomerState::new(customer_id, event.livemode));
    let newest = c.recent_charges.iter().map(|r| r.0).max().unwrap_or(event.created).max(event.created);
    // Keep what is within the window of the newest charge seen: the same set, in any order.
    if event.created >= newest - window && !c.recent_charges.iter().any(|r| r.3 == charge_id) {
        if let Some(twin) = c.recent_charges.iter().find(|r| {
            r.1 == m.amount && r.2 == m.currency.as_str() && (r.0 - event.created).abs() <= window
        }) {
            let (a, b) = if twin.3.as_str() < charge_id { (twin.3.clone(), charge_id.to_owned()) } else { (charge_id.to_owned(), twin.3.clone()) };
            fx.findings.push(event_finding(event, "duplicate_charge", &format!("payments_succeeded_amount.{}", m.currency), &format!("{a}+{b}"), m.amount as f64, 0.0,
                format!("Customer {customer_id} was charged {} {} twice within {} s ({a}, {b})", m.amount, m.currency, (twin.0 - event.created).abs())));
        }
        c.recent_charges.push((event.created, m.amount, m.currency.to_string(), charge_id.to_owned()));
    }
    c.recent_charges.retain(|r| r.0 >= newest - window);
    c.recent_charges.sort();
    fx.customer = Some(c);
}

fn notify(
    fx: &mut Effects,
    event: &BillingEvent,
    kind: &str,
    stage: Option<String>,
    customer: Option<String>,
    subject: &str,
    details: Value,
) {
    fx.notifications.push(Notification {
        id: format!("{}:{kind}", event.id),
        kind: kind.to_owned(),
        stage,
        customer,
        livemode: event.livemode,
        event_id: event.id.clone(),
        created: event.created,
        subject: subject.to_owned(),
        details,
    });
}

/// The subscription before this event, from its own `previous_attributes`, so that MRR
/// movements depend on the event alone and not on what arrived before it.
fn mrr_before(event: &BillingEvent, after: &SubscriptionState) -> i64 {
    match event.kind {
        EventKind::SubscriptionCreated => 0,
        EventKind::SubscriptionDeleted => {
            let mut before = after.clone();
            before.deleted = false;
            let prev_status = event.previous.as_ref().and_then(|p| p.get("status")).and_then(Value::as_str);
            before.status = match prev_status {
                Some(s) => s.to_owned(),
                // Canceled during its trial: it never paid.
                None if after.trial_end.zip(after.canceled_at).is_some_and(|(t, c)| c < t) => "trialing".into(),
                None => "active".into(),
            };
            before.contributing_mrr()
        }
        _ => match &event.previous {
            Some(Value::Object(prev)) if !prev.is_empty() => {
                let mut obj = event.object.clone();
                if let Value::Object(o) = &mut obj {
                    for (k, v) in prev {
                        o.insert(k.clone(), v.clone());
                    }
                }
                match Subscription::deserialize(&obj) {
                    Ok(sub) => SubscriptionState::from_stripe(&sub, after.livemode, after.version.clone(), false).contributing_mrr(),
                    Err(_) => after.contributing_mrr(),
                }
            }
            _ => after.contributing_mrr(),
        },
    }
}

fn subscription_event(
    event: &BillingEvent,
    current: &Current,
    _policy: &BillingPolicy,
    fx: &mut Effects,
    counters: &mut CounterSink,
) -> Result<(), ApplyError> {
    let sub: Subscription = event.object()?;
    let deleted = event.kind == EventKind::SubscriptionDeleted;
    let next = SubscriptionState::from_stripe(&sub, event.livemode, event.version(), deleted);
    let live = event.livemode;

    let delta = next.contributing_mrr() - mrr_before(event, &next);
    let cur = next.currency.map(|c| c.to_string()).unwrap_or_else(|| "xxx".into());
    if delta > 0 {
        counters.add(live, event.created, format!("mrr_gained.{cur}"), delta);
    } else if delta < 0 {
        counters.add(live, event.created, format!("mrr_lost.{cur}"), -delta);
    }
    counters.add_at_hour(live, 0, format!("mrr_total.{cur}"), delta);
    match event.kind {
        EventKind::SubscriptionCreated => counters.add(live, event.created, "subscriptions_new", 1),
        EventKind::SubscriptionDeleted => counters.add(live, event.created, "subscriptions_canceled", 1),
        _ => {}
    }

    if event.kind == EventKind::SubscriptionTrialWillEnd && sub.default_payment_method.is_none() {
        let has_pm = current.customer.as_ref().is_some_and(CustomerState::has_payment_method);
        if !has_pm {
            notify(fx, event, "pre_dunning", Some("trial_ending_without_payment_method".into()), next.customer.clone(),
                "A trial ends soon and no payment method is on file",
                json!({ "subscription": next.id, "trial_end": next.trial_end, "mrr": next.mrr, "currency": next.currency }));
        }
    }

    let apply = match &current.subscription {
        None => true,
        Some(stored) if stored.deleted => false, // deletion is final
        Some(_) if deleted => true,
        Some(stored) => next.version > stored.version,
    };
    if apply {
        // Where renewals are due: the stored state's period end moves to the new one.
        let due = |s: &SubscriptionState| {
            (s.status == "active" && !s.deleted && !s.cancel_at_period_end)
                .then_some(s.current_period_end)
                .flatten()
                .map(super::hour_of)
        };
        counters.moved(live, current.subscription.as_ref().and_then(due), due(&next), "active_period_ends", 1);
        fx.subscription = Some(next);
    } else {
        fx.stale = true;
    }
    Ok(())
}

fn invoice_event(
    event: &BillingEvent,
    current: &Current,
    policy: &BillingPolicy,
    fx: &mut Effects,
    counters: &mut CounterSink,
) -> Result<(), ApplyError> {
    use EventKind::*;
    let inv: Invoice = event.object()?;
    let Some(invoice_id) = inv.id.clone() else {
        return Err(ApplyError::Malformed(format!("{} without an invoice id", event.event_type)));
    };
    let before = current.case.clone();
    let mut case = before.clone().unwrap_or_else(|| DunningCase::new(&invoice_id, event.livemode));
    case.customer = case.customer.or_else(|| inv.customer_id());
    case.subscription = case.subscription.or_else(|| inv.subscription_id());
    case.currency = case.currency.or_else(|| inv.currency.as_deref().and_then(Currency::parse));
    if let Some(due) = inv.amount_due {
        case.amount_due = case.amount_due.max(due);
    }
    let t = event.created;
    match event.kind {
        InvoicePaymentFailed => {
            case.attempt_count = case.attempt_count.max(inv.attempt_count.unwrap_or(1));
            if case.last_failure_at.is_none_or(|f| t >= f) {
                case.last_failure_at = Some(t);
                case.next_payment_attempt = inv.next_payment_attempt;
            }
            case.opened_at = min_opt(case.opened_at, t);
            if inv.next_payment_attempt.is_none() {
                case.exhausted_at = min_opt(case.exhausted_at, t);
            }
        }
        InvoicePaymentActionRequired => {
            case.action_required_at = Some(case.action_required_at.map_or(t, |a| a.max(t)));
            case.opened_at = min_opt(case.opened_at, t);
        }
        InvoicePaid => {
            let amount = inv.amount_paid.unwrap_or(case.amount_due);
            case.paid = Some(match case.paid {
                Some(p) if p.at <= t => p,
                _ => PaidFact { at: t, amount },
            });
        }
        InvoiceMarkedUncollectible => case.uncollectible_at = min_opt(case.uncollectible_at, t),
        _ => {}
    }

    // Counters follow the facts: each lands once, at the hour of the fact that defines it.
    let live = event.livemode;
    let opened = |c: &Option<DunningCase>| c.as_ref().and_then(|c| c.opened_at);
    let recovered = |c: &Option<DunningCase>| c.as_ref().and_then(DunningCase::recovered);
    let lost = |c: &Option<DunningCase>| c.as_ref().filter(|c| c.opened_at.is_some()).and_then(DunningCase::lost_at);
    let after = Some(case.clone());
    counters.moved(live, opened(&before), opened(&after), "dunning_opened", 1);
    counters.moved(live, lost(&before), lost(&after), "dunning_lost", 1);
    let (rb, ra) = (recovered(&before), recovered(&after));
    if rb != ra {
        counters.moved(live, rb.map(|p| p.at), ra.map(|p| p.at), "dunning_recovered", 1);
        let cur = case.currency.map(|c| c.to_string()).unwrap_or_else(|| "xxx".into());
        let metric = format!("dunning_recovered_amount.{cur}");
        if let Some(p) = rb {
            counters.add(live, p.at, metric.clone(), -p.amount);
        }
        if let Some(p) = ra {
            counters.add(live, p.at, metric, p.amount);
        }
    }

    let stage_before = before.as_ref().and_then(|c| c.stage(policy));
    let stage_after = case.stage(policy);
    if stage_after != stage_before {
        if let Some(stage) = stage_after {
            let subject = match stage {
                Stage::Notice => "A renewal payment failed",
                Stage::ActionRequired => "A payment needs the customer to authenticate",
                Stage::FinalWarning => "A renewal keeps failing: final warning",
                Stage::Recovered => "A failed renewal was recovered",
                Stage::Lost => "A failed renewal is lost",
            };
            notify(fx, event, "dunning", Some(stage.as_str().into()), case.customer.clone(), subject, json!({
                "invoice": case.invoice_id,
                "subscription": case.subscription,
                "amount_due": case.amount_due,
                "currency": case.currency,
                "attempt_count": case.attempt_count,
                "next_payment_attempt": case.next_payment_attempt,
                "recovered_amount": case.recovered().map(|p| p.amount),
                "time_to_recover_secs": case.time_to_recover_secs(),
            }));
        }
    }
    fx.case = Some(case);
    Ok(())
}

fn upcoming_invoice(event: &BillingEvent, current: &Current, fx: &mut Effects) -> Result<(), ApplyError> {
    let inv: Invoice = event.object()?;
    let charge_at = inv.next_payment_attempt.or(inv.period_end);
    let card = current.customer.as_ref().and_then(CustomerState::charging_card_expiry);
    if let (Some(at), Some(expiry)) = (charge_at, card) {
        if card_expired_at(expiry, at) {
            notify(fx, event, "pre_dunning", Some("card_expires_before_renewal".into()), inv.customer_id(),
                "The card on file expires before the next renewal",
                json!({ "subscription": inv.subscription_id(), "charge_at": at, "card_expiry": format!("{:04}-{:02}", expiry.0, expiry.1), "amount_due": inv.amount_due, "currency": inv.currency }));
        }
    }
    Ok(())
}
