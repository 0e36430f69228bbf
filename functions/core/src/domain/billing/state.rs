//! All billing state in memory: the reference for what a store must hold after a history
//! of events. Unit tests, property tests and benchmarks apply events through it.

use std::collections::{BTreeMap, BTreeSet};

use super::counters::{fold, CounterTotals};
use super::customer::CustomerState;
use super::decide::decide;
use super::dunning::DunningCase;
use super::effects::{Effects, Notification};
use super::event::{ApplyError, BillingEvent, StateLookup};
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

impl StateLookup for BillingState {
    fn subscription(&self, id: &str) -> Option<SubscriptionState> {
        self.subscriptions.get(id).cloned()
    }
    fn case(&self, invoice_id: &str) -> Option<DunningCase> {
        self.cases.get(invoice_id).cloned()
    }
    fn customer(&self, id: &str) -> Option<CustomerState> {
        self.customers.get(id).cloned()
    }
    fn charge_customer(&self, charge_id: &str) -> Option<String> {
        self.charge_customers.get(charge_id).cloned()
    }
}

impl BillingState {
    pub fn commit(&mut self, event_id: &str, effects: Effects) {
        self.applied.insert(event_id.to_owned());
        if let Some(s) = effects.subscription {
            self.subscriptions.insert(s.id.clone(), s);
        }
        if let Some(c) = effects.case {
            self.cases.insert(c.invoice_id.clone(), c);
        }
        if let Some(c) = effects.customer {
            self.customers.insert(c.id.clone(), c);
        }
        if let Some((charge, customer)) = effects.charge_link {
            self.charge_customers.insert(charge, customer);
        }
        fold(&mut self.counters, &effects.counters);
        self.notifications.extend(effects.notifications);
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
        let effects = decide(event, &self.current(event), policy)?;
        self.commit(&event.id, effects);
        Ok(true)
    }

    /// A counter's total over all hours, by its stored name.
    pub fn counter(&self, livemode: bool, name: &str) -> i64 {
        let metric = crate::domain::metric::Metric::parse(name)
            .unwrap_or_else(|| panic!("not a metric: {name}"));
        self.counters
            .iter()
            .filter(|((l, _, m), _)| *l == livemode && *m == metric)
            .map(|(_, v)| v)
            .sum()
    }
}
