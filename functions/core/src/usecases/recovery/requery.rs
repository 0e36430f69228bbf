//! Re-query after important transitions: Stripe's current subscription, fetched and
//! fed through the ingress like a reconciliation fix.

use std::collections::BTreeMap;
use std::future::Future;

use serde_json::Value;

use super::fetch::*;
use crate::domain::billing::{SubscriptionState, Version};
use crate::domain::message::Via;
use crate::ports::{Account, EventLog, Queue, StripeApi};
use crate::usecases::ingest::Ingress;

/// After an important transition, Stripe's current object: the worker names the
/// subscriptions that moved to `past_due`, `unpaid` or `canceled`, or whose snapshots tied
/// on `created` (one-second resolution: which came last is a guess), each with the
/// `created` of what it applied.
pub trait Requery: Send + Sync {
    /// Fetches and enqueues each; how many were enqueued. Best effort: a failure is
    /// logged, and the daily reconciliation catches up.
    fn requery(
        &self,
        account: &Account,
        subscriptions: &[(String, i64)],
        now: i64,
    ) -> impl Future<Output = usize> + Send;
}

/// Off (the default): nothing is fetched.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRequery;

impl Requery for NoRequery {
    async fn requery(
        &self,
        _account: &Account,
        _subscriptions: &[(String, i64)],
        _now: i64,
    ) -> usize {
        0
    }
}

/// A re-query that may be off: `None` fetches nothing.
impl<R: Requery> Requery for Option<R> {
    async fn requery(&self, account: &Account, subscriptions: &[(String, i64)], now: i64) -> usize {
        match self {
            Some(r) => r.requery(account, subscriptions, now).await,
            None => 0,
        }
    }
}

impl<R: Requery> Requery for Box<R> {
    async fn requery(&self, account: &Account, subscriptions: &[(String, i64)], now: i64) -> usize {
        (**self).requery(account, subscriptions, now).await
    }
}

/// Re-query through Stripe's API, applied through the ingress like a reconciliation fix.
pub struct StripeRequery<A, L, Q> {
    pub api: A,
    pub ingress: Ingress<L, Q>,
}

impl<A: StripeApi, L: EventLog, Q: Queue> Requery for StripeRequery<A, L, Q> {
    async fn requery(&self, account: &Account, subscriptions: &[(String, i64)], now: i64) -> usize {
        let mut enqueued = 0;
        // A connected account's objects are read on its behalf (`Stripe-Account`).
        let api = self.api.for_account(account);
        for (id, applied_created) in subscriptions {
            let raw = match api.subscription(id).await {
                Ok(Some(raw)) => raw,
                Ok(None) => {
                    tracing::warn!(subscription = %id, "re-query: Stripe does not know the subscription");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(subscription = %id, error = %e, "re-query failed; the reconciliation will catch up");
                    continue;
                }
            };
            let Ok(value) = serde_json::from_str::<Value>(raw.get()) else {
                continue;
            };
            let canceled = value["status"] == "canceled";
            let livemode = value["livemode"].as_bool().unwrap_or(false);
            // Ordered after what was just applied, and after anything delivered so far.
            let created = now.max(applied_created + 1);
            let event = snapshot_event(&value, id, canceled, livemode, account, created);
            match self
                .ingress
                .ingest_fetched(event.as_bytes(), Via::Reconcile, now)
                .await
            {
                Ok(_) => enqueued += 1,
                Err(e) => {
                    tracing::warn!(subscription = %id, error = %crate::domain::error::error_chain(&e), "re-query: cannot enqueue Stripe's object")
                }
            }
        }
        enqueued
    }
}

/// Which subscriptions a committed batch should re-query: those that moved to
/// `past_due`, `unpaid` or `canceled` (not by a reconciliation snapshot), and those whose
/// snapshots tied on `created`, with the `created` of what was applied.
pub fn requery_candidates(
    before: &BTreeMap<String, SubscriptionState>,
    events: &[&crate::domain::billing::BillingEvent],
    after: &[SubscriptionState],
) -> Vec<(String, i64)> {
    let mut out: BTreeMap<String, i64> = BTreeMap::new();
    for state in after {
        let moved = matches!(state.status.as_str(), "past_due" | "unpaid" | "canceled")
            && before.get(&state.id).map(|b| b.status.as_str()) != Some(state.status.as_str());
        if moved && !state.version.event_id.starts_with(SNAPSHOT_EVENT_PREFIX) {
            out.insert(state.id.clone(), state.version.created);
        }
    }
    let mut seen: BTreeMap<String, Version> = before
        .iter()
        .map(|(id, s)| (id.clone(), s.version.clone()))
        .collect();
    for e in events.iter().filter(|e| e.kind.is_subscription_snapshot()) {
        let Some(id) = crate::domain::billing::keys_of(e).subscription else {
            continue;
        };
        let version = Version::new(e.created, &e.id);
        if let Some(other) = seen.get(&id) {
            if other.created == version.created && other.event_id != version.event_id {
                out.insert(id.clone(), version.created.max(other.created));
            }
        }
        let newer = seen.get(&id).is_none_or(|v| *v < version);
        if newer {
            seen.insert(id, version);
        }
    }
    out.into_iter().collect()
}
