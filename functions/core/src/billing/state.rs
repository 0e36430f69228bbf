//! All billing state in memory: the reference for what a store must hold after a history
//! of events. Unit tests, property tests and benchmarks apply events through it.

use std::collections::{BTreeMap, BTreeSet};

use super::apply::{decide, keys_of, ApplyError, BillingEvent, Current, Effects, Notification};
use super::counters::{fold, CounterTotals};
use super::customer::CustomerState;
use super::dunning::DunningCase;
use super::policy::BillingPolicy;
use super::subscription::SubscriptionState;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct BillingState {
    pub subscriptions: BTreeMap<String, SubscriptionState>,
    pub cases: BTreeMap<String, DunningCase>,
    pub customers: BTreeMap<String, CustomerState>,
    pub charge_customers: BTreeMap<String, String>,
    pub counters: CounterTotals,
    pub applied: BTreeSet<String>,
    pub notifications: Vec<Notification>,
}

impl BillingState {
    pub fn load(&self, event: &BillingEvent) -> Current {
        let keys = keys_of(event);
        let charge_customer = keys
            .charge
            .as_ref()
            .and_then(|c| self.charge_customers.get(c).cloned());
        let customer_id = keys.customer.clone().or_else(|| charge_customer.clone());
        Current {
            subscription: keys
                .subscription
                .as_ref()
                .and_then(|k| self.subscriptions.get(k).cloned()),
            case: keys
                .invoice
                .as_ref()
                .and_then(|k| self.cases.get(k).cloned()),
            customer: customer_id
                .as_ref()
                .and_then(|k| self.customers.get(k).cloned()),
            charge_customer,
        }
    }

    pub fn commit(&mut self, event_id: &str, fx: Effects) {
        self.applied.insert(event_id.to_owned());
        if let Some(s) = fx.subscription {
            self.subscriptions.insert(s.id.clone(), s);
        }
        if let Some(c) = fx.case {
            self.cases.insert(c.invoice_id.clone(), c);
        }
        if let Some(c) = fx.customer {
            self.customers.insert(c.id.clone(), c);
        }
        if let Some((charge, customer)) = fx.charge_link {
            self.charge_customers.insert(charge, customer);
        }
        fold(&mut self.counters, &fx.counters);
        self.notifications.extend(fx.notifications);
    }

    /// Applies an event once: a second time changes nothing. Returns whether it applied.
    pub fn apply(
        &mut self,
        event: &BillingEvent,
        policy: &BillingPolicy,
    ) -> Result<bool, ApplyError> {
        if self.applied.contains(&event.id) {
            return Ok(false);
        }
        let fx = decide(event, &self.load(event), policy)?;
        self.commit(&event.id, fx);
        Ok(true)
    }

    /// A counter's total over all hours, by its stored name.
    pub fn counter(&self, livemode: bool, name: &str) -> i64 {
        let metric =
            crate::metric::Metric::parse(name).unwrap_or_else(|| panic!("not a metric: {name}"));
        self.counters
            .iter()
            .filter(|((l, _, m), _)| *l == livemode && *m == metric)
            .map(|(_, v)| v)
            .sum()
    }
}
