//! Applying a batch of queue messages, once for both backends (the worker Lambda and the
//! embedded server run it): each message is decoded, decided against the state it
//! touches and committed in one transaction with its applied markers; a conflict is decided again on fresh state after a backoff that core owns;
//! notifications go out from the outbox. The consume rule — what is poison, what is
//! transient, when to give up — lives here too, so the embedded queue and SQS agree.

use std::collections::{BTreeMap, BTreeSet};

use crate::domain::billing::{
    decide, keys_of, BillingEvent, BillingPolicy, Effects, Notification, StateLookup,
};
use crate::domain::message::{decompress, Payload, QueueMessage};
use crate::ports::{
    AppliedEvent, BillingCommit, BillingStore, CommitError, DeadLetters, EventKey, Inbound, Pause,
    Publisher, StateKeys, StateSnapshot, StateWrite, StoreError, Versioned, OUTBOX_LEASE_SECS,
};
use crate::usecases::outbox::publish_all;
use crate::usecases::recovery::{requery_candidates, NoRequery, Requery};
use crate::usecases::retry::{seed_of, Backoff};

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consumed {
    /// Its effects are committed (and its notifications published).
    Applied,
    /// Applied before: nothing changed (notifications an earlier attempt left are out now).
    Duplicate,
    /// It can never apply: moved to the dead letters, with the reason.
    DeadLettered(String),
    /// A transient failure: the queue delivers it again later.
    Retry(String),
}

impl Consumed {
    /// Whether the queue may forget the message.
    pub fn is_done(&self) -> bool {
        !matches!(self, Consumed::Retry(_))
    }
}

/// The consume rule's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumeRules {
    /// Deliveries after which a message that keeps failing transiently is dead-lettered
    /// (SQS: the queue's maxReceiveCount).
    pub max_receives: u32,
    /// Backoff between commit attempts of one batch (conflicts, throttles).
    pub commit: Backoff,
    /// Backoff before a failed message is delivered again, by its receive count.
    pub redelivery: Backoff,
}

impl Default for ConsumeRules {
    fn default() -> Self {
        Self {
            max_receives: Backoff::REDELIVERY.max_attempts,
            commit: Backoff::COMMIT,
            redelivery: Backoff::REDELIVERY,
        }
    }
}

impl ConsumeRules {
    /// How long the queue should hide a message that failed transiently on its
    /// `receive_count`-th delivery.
    pub fn redelivery_delay(&self, message: &Inbound) -> std::time::Duration {
        self.redelivery
            .delay_at_least_half(message.receive_count, seed_of(&message.id))
    }
}

/// Why a message failed, classed once for every backend.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    /// The message or its event can never apply (malformed, undecodable, not an event).
    Poison(String),
    /// The store, the queue or a publisher failed, or the state kept moving: try again.
    Transient(String),
}

/// The worker over its ports.
pub struct BatchApplier<L, B, N, D, P, R = NoRequery> {
    pub log: L,
    pub billing: B,
    pub notifier: N,
    pub dead_letters: D,
    pub pause: P,
    pub policy: BillingPolicy,
    pub rules: ConsumeRules,
    /// Stripe's current object after an important transition (off by default).
    pub requery: R,
}

/// A message decoded into its event.
struct Decoded {
    index: usize,
    event: BillingEvent,
}

impl<L, B, N, D, P, R> BatchApplier<L, B, N, D, P, R>
where
    L: crate::ports::EventLog,
    B: BillingStore,
    N: Publisher<Notification>,
    D: DeadLetters,
    P: Pause,
    R: Requery,
{
    /// Consumes a batch: one outcome per message, in order. Never fails as a whole: one
    /// poison message is isolated, a store outage retries the messages it touched.
    pub async fn consume(&self, batch: &[Inbound], now: i64) -> Vec<Consumed> {
        let mut failures: BTreeMap<usize, Failure> = BTreeMap::new();
        let mut decoded = Vec::new();
        let mut seen = BTreeSet::new();
        let mut duplicates_in_batch = BTreeSet::new();
        for (index, inbound) in batch.iter().enumerate() {
            match self.decode(inbound, now).await {
                Ok(event) if !seen.insert(event.id.clone()) => {
                    duplicates_in_batch.insert(index);
                }
                Ok(event) => decoded.push(Decoded { index, event }),
                Err(f) => {
                    failures.insert(index, f);
                }
            }
        }

        // One account's events commit together (every key is the account's); their order
        // within the account stands.
        decoded.sort_by(|a, b| a.event.account.cmp(&b.event.account));
        let applied = self.apply(&decoded, batch, now).await;
        let mut outcomes: Vec<Consumed> = Vec::with_capacity(batch.len());
        for (index, inbound) in batch.iter().enumerate() {
            let outcome = if duplicates_in_batch.contains(&index) {
                Consumed::Duplicate
            } else if let Some(f) = failures.get(&index) {
                self.settle(inbound, f.clone()).await
            } else {
                match applied.get(&index) {
                    Some(Ok(outcome)) => outcome.clone(),
                    Some(Err(f)) => self.settle(inbound, f.clone()).await,
                    None => Consumed::Retry("not attempted".into()),
                }
            };
            outcomes.push(outcome);
        }
        outcomes
    }

    /// The message's event, or why it cannot be had.
    async fn decode(&self, inbound: &Inbound, now: i64) -> Result<BillingEvent, Failure> {
        let message =
            QueueMessage::decode(&inbound.body).map_err(|e| Failure::Poison(e.to_string()))?;
        let raw = match message.payload {
            Payload::Inline(raw) => raw.into_bytes(),
            Payload::InEventLog => {
                let stored = self
                    .log
                    .stored_payload(&message.event_id)
                    .await
                    .map_err(|e| Failure::Transient(crate::domain::error::error_chain(&e)))?
                    // Ingress writes the event log before it enqueues: a missing payload
                    // is a read that came too early or an expired entry, so try again;
                    // the receive limit dead-letters it if it never appears.
                    .ok_or_else(|| {
                        Failure::Transient("the payload is missing from the event log".into())
                    })?;
                decompress(&stored).map_err(|e| Failure::Poison(e.to_string()))?
            }
        };
        // Receipt time: stamped by ingress; else when the queue took the message; else now.
        let received_at = Some(message.received_at)
            .filter(|t| *t > 0)
            .or(inbound.sent_at)
            .unwrap_or(now);
        let mut event =
            BillingEvent::parse(&raw, received_at).map_err(|e| Failure::Poison(e.to_string()))?;
        event.via = message.via;
        Ok(event)
    }

    /// The consume rule: poison goes to the dead letters at once; a transient failure is
    /// retried until the receive limit, then dead-lettered. A dead-lettering that fails
    /// is itself transient.
    async fn settle(&self, inbound: &Inbound, failure: Failure) -> Consumed {
        let reason = match failure {
            Failure::Poison(reason) => reason,
            Failure::Transient(reason) if inbound.receive_count < self.rules.max_receives => {
                tracing::warn!(message = %inbound.id, error = %reason, "message failed; it will be retried");
                return Consumed::Retry(reason);
            }
            Failure::Transient(reason) => format!(
                "gave up after {} deliveries: {reason}",
                inbound.receive_count
            ),
        };
        match self.dead_letters.dead_letter(inbound, &reason).await {
            Ok(()) => {
                tracing::error!(message = %inbound.id, error = %reason, "message moved to the dead letters");
                Consumed::DeadLettered(reason)
            }
            Err(e) => Consumed::Retry(format!(
                "{reason}; and the dead letters failed: {}",
                crate::domain::error::error_chain(&e)
            )),
        }
    }

    /// Applies the decoded events (sorted by account) in one commit per account (split
    /// when the store says it is too large), and publishes their notifications. By message
    /// index.
    async fn apply(
        &self,
        decoded: &[Decoded],
        batch: &[Inbound],
        now: i64,
    ) -> BTreeMap<usize, Result<Consumed, Failure>> {
        let mut results = BTreeMap::new();
        let mut groups: Vec<&[Decoded]> = decoded
            .chunk_by(|a, b| a.event.account == b.event.account)
            .rev()
            .collect();
        let seed = batch.first().map(|m| seed_of(&m.id)).unwrap_or(0);
        while let Some(group) = groups.pop() {
            match self.apply_group(group, seed, now).await {
                Ok(outcomes) => results.extend(outcomes),
                Err(CommitError::TooLarge | CommitError::Invalid(_)) if group.len() > 1 => {
                    let (a, b) = group.split_at(group.len() / 2);
                    groups.push(b);
                    groups.push(a);
                }
                // One event whose effects the store refuses: poison, never retried.
                Err(e @ CommitError::Invalid(_)) => {
                    let reason = crate::domain::error::error_chain(&e);
                    for d in group {
                        results.insert(d.index, Err(Failure::Poison(reason.clone())));
                    }
                }
                Err(e) => {
                    let reason = crate::domain::error::error_chain(&e);
                    for d in group {
                        results.insert(d.index, Err(Failure::Transient(reason.clone())));
                    }
                }
            }
        }
        results
    }

    /// One group: read, decide, commit; again on a conflict, after a backoff.
    async fn apply_group(
        &self,
        group: &[Decoded],
        seed: u64,
        now: i64,
    ) -> Result<BTreeMap<usize, Result<Consumed, Failure>>, CommitError> {
        let mut attempt = 1;
        loop {
            let keys: Vec<EventKey> = group.iter().map(|d| EventKey::of(&d.event)).collect();
            let done = self.billing.applied(&keys).await?;
            let fresh: Vec<&Decoded> = group
                .iter()
                .filter(|d| !done.contains(&d.event.id))
                .collect();
            let account = group[0].event.account.clone();
            let mut keys = StateKeys {
                account: account.clone(),
                ..StateKeys::default()
            };
            for d in &fresh {
                let k = keys_of(&d.event);
                keys.subscriptions.extend(k.subscription);
                keys.invoices.extend(k.invoice);
                keys.customers.extend(k.customer);
                keys.charges.extend(k.charge);
            }
            let snapshot = self.billing.load(&keys).await?;
            let before: BTreeMap<String, crate::domain::billing::SubscriptionState> = snapshot
                .subscriptions
                .iter()
                .map(|(id, s)| (id.clone(), s.value.clone()))
                .collect();
            let mut decision = BatchDecision::new(snapshot, &self.policy, account.clone(), now);
            let mut outcomes: BTreeMap<usize, Result<Consumed, Failure>> = BTreeMap::new();
            for d in &fresh {
                match decision.decide(&d.event) {
                    Ok(()) => outcomes.insert(d.index, Ok(Consumed::Applied)),
                    Err(reason) => outcomes.insert(d.index, Err(Failure::Poison(reason))),
                };
            }
            let commit = decision.into_commit();
            let committed = if commit.events.is_empty() {
                Ok(())
            } else {
                self.billing.commit(&commit).await
            };
            match committed {
                Ok(()) => {
                    for d in group.iter().filter(|d| done.contains(&d.event.id)) {
                        outcomes.insert(d.index, Ok(Consumed::Duplicate));
                    }
                    self.publish(group, &done, &commit, &mut outcomes).await;
                    let events: Vec<&BillingEvent> = fresh.iter().map(|d| &d.event).collect();
                    let after: Vec<crate::domain::billing::SubscriptionState> =
                        commit.subscriptions.iter().map(|w| w.value.clone()).collect();
                    let candidates = requery_candidates(&before, &events, &after);
                    if !candidates.is_empty() {
                        let n = self.requery.requery(&account, &candidates, now).await;
                        tracing::info!(requeried = n, of = candidates.len(), "re-queried subscriptions after a transition");
                    }
                    return Ok(outcomes);
                }
                Err(e @ (CommitError::Conflict | CommitError::Throttled))
                    if !self.rules.commit.gives_up_after(attempt) =>
                {
                    let delay = self.rules.commit.delay(attempt, seed);
                    // One line per retry, counted by the stack's dashboard (a metric filter
                    // on `message` and `reason`).
                    let reason = match e {
                        CommitError::Throttled => "throttled",
                        _ => "conflict",
                    };
                    tracing::info!(
                        attempt,
                        reason,
                        delay_ms = delay.as_millis() as u64,
                        "commit retried"
                    );
                    self.pause.pause(delay).await;
                    attempt += 1;
                }
                Err(CommitError::Conflict | CommitError::Throttled) => {
                    return Err(CommitError::Store(StoreError::unavailable(format!(
                        "the commit was not taken after {attempt} attempts (conflicts or throttling)"
                    ))))
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Publishes the batch's notifications: the new ones (leased to this worker by its
    /// commit), and those of duplicates that an earlier attempt committed but did not get
    /// out, when this worker can claim them. A message whose notifications are not known
    /// to be out is retried: one that failed to publish (the outbox keeps it, released),
    /// and one whose entry another worker still holds (it may be publishing it now; if it
    /// crashed, its lease runs out). Its effects stand either way.
    async fn publish(
        &self,
        group: &[Decoded],
        done_before: &BTreeSet<String>,
        commit: &BillingCommit,
        outcomes: &mut BTreeMap<usize, Result<Consumed, Failure>>,
    ) {
        let mut pending: Vec<Notification> = commit
            .events
            .iter()
            .flat_map(|e| e.notifications.iter().cloned())
            .collect();
        let mut not_out: BTreeMap<String, String> = BTreeMap::new();
        let before: Vec<String> = done_before.iter().cloned().collect();
        if !before.is_empty() {
            let lease_until = commit.now + OUTBOX_LEASE_SECS;
            match self
                .billing
                .claim_outbox(&before, commit.now, lease_until)
                .await
            {
                Ok(claimed) => {
                    pending.extend(claimed.messages);
                    for event_id in claimed.held {
                        not_out.insert(
                            event_id,
                            "its notifications are being published by another worker".into(),
                        );
                    }
                }
                Err(e) => {
                    let reason = crate::domain::error::error_chain(&e);
                    for id in &before {
                        not_out.insert(id.clone(), reason.clone());
                    }
                }
            }
        }
        if !pending.is_empty() {
            let report = publish_all(&pending, &self.notifier).await;
            let mut unpublished: Vec<Notification> = Vec::new();
            for (id, error) in &report.failed {
                if let Some(n) = pending.iter().find(|n| &n.id == id) {
                    not_out.insert(
                        n.event_id.clone(),
                        format!("publishing a notification failed: {error}"),
                    );
                    unpublished.push(n.clone());
                }
            }
            self.settle_outbox(&report.published, &unpublished).await;
        }
        for d in group {
            if let Some(reason) = not_out.get(d.event.id.as_str()) {
                outcomes.insert(d.index, Err(Failure::Transient(reason.clone())));
            }
        }
    }
}

impl<L, B, N, D, P, R> BatchApplier<L, B, N, D, P, R>
where
    B: BillingStore,
    P: Pause,
{
    /// Clears what went out from the outbox (and releases what did not), retried with the
    /// commit's backoff: an entry left behind after its publish goes out again with the
    /// next copy of its event that comes after the lease, and copies are common (a
    /// delivery that failed after its send, a redelivered batch). Subscribers
    /// de-duplicate on the id if even the retries fail.
    async fn settle_outbox(&self, published: &[String], unpublished: &[Notification]) {
        let seed = seed_of(published.first().map_or("", String::as_str));
        let (result, attempts) = self
            .rules
            .commit
            .retry(
                seed,
                &self.pause,
                |_, _| true,
                || self.billing.settle_outbox(published, unpublished),
            )
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %crate::domain::error::error_chain(&e), attempts, "published notifications stay in the outbox");
        }
    }
}

/// Deciding a batch in order: each event sees the state the events before it left.
struct BatchDecision<'a> {
    state: StateSnapshot,
    /// The versions read, for the commit's conditions.
    read: StateSnapshot,
    touched: Touched,
    events: Vec<AppliedEvent>,
    charge_links: Vec<(String, String)>,
    policy: &'a BillingPolicy,
    /// Whose events these are: the commit's keys, the findings' scope.
    account: crate::domain::account::Account,
    now: i64,
}

#[derive(Default)]
struct Touched {
    subscriptions: BTreeSet<String>,
    cases: BTreeSet<String>,
    customers: BTreeSet<String>,
}

impl<'a> BatchDecision<'a> {
    fn new(
        snapshot: StateSnapshot,
        policy: &'a BillingPolicy,
        account: crate::domain::account::Account,
        now: i64,
    ) -> Self {
        Self {
            read: snapshot.clone(),
            state: snapshot,
            touched: Touched::default(),
            events: Vec::new(),
            charge_links: Vec::new(),
            policy,
            account,
            now,
        }
    }

    /// Decides one event; a malformed one is refused with the reason and changes nothing.
    fn decide(&mut self, event: &BillingEvent) -> Result<(), String> {
        let effects: Effects =
            decide(event, &self.state.current(event), self.policy).map_err(|e| e.to_string())?;
        fn put<T>(
            map: &mut BTreeMap<String, Versioned<T>>,
            touched: &mut BTreeSet<String>,
            key: String,
            value: T,
        ) {
            let version = map.get(&key).map_or(0, |v| v.version);
            touched.insert(key.clone());
            map.insert(key, Versioned { value, version });
        }
        if let Some(s) = effects.subscription {
            put(
                &mut self.state.subscriptions,
                &mut self.touched.subscriptions,
                s.id.clone(),
                s,
            );
        }
        if let Some(c) = effects.case {
            put(
                &mut self.state.cases,
                &mut self.touched.cases,
                c.invoice_id.clone(),
                c,
            );
        }
        if let Some(c) = effects.customer {
            put(
                &mut self.state.customers,
                &mut self.touched.customers,
                c.id.clone(),
                c,
            );
        }
        if let Some((charge, customer)) = effects.charge_link {
            if !self.state.charge_customers.contains_key(&charge) {
                self.state
                    .charge_customers
                    .insert(charge.clone(), customer.clone());
                self.charge_links.push((charge, customer));
            }
        }
        self.events.push(AppliedEvent {
            event_id: event.id.clone(),
            charge: EventKey::of(event).charge,
            received_at: event.received_at,
            counters: effects.counters,
            // A connected account's findings alert under it.
            findings: effects
                .findings
                .into_iter()
                .map(|f| f.in_scope(crate::domain::account::Scope::of(&self.account)))
                .collect(),
            notifications: effects.notifications,
        });
        Ok(())
    }

    fn into_commit(self) -> BillingCommit {
        let mut commit = BillingCommit {
            account: self.account,
            events: self.events,
            charge_links: self.charge_links,
            now: self.now,
            outbox_lease_until: self.now + OUTBOX_LEASE_SECS,
            ..Default::default()
        };
        for key in &self.touched.subscriptions {
            let value = self.state.subscriptions[key].value.clone();
            commit.subscriptions.push(StateWrite {
                value,
                expected_version: expected_version(&self.read.subscriptions, key),
            });
        }
        for key in &self.touched.cases {
            let case = self.state.cases[key].value.clone();
            let stage = case.stage(self.policy);
            commit.cases.push(StateWrite {
                value: (case, stage),
                expected_version: expected_version(&self.read.cases, key),
            });
        }
        for key in &self.touched.customers {
            let value = self.state.customers[key].value.clone();
            commit.customers.push(StateWrite {
                value,
                expected_version: expected_version(&self.read.customers, key),
            });
        }
        commit
    }
}

fn expected_version<T>(read: &BTreeMap<String, Versioned<T>>, key: &str) -> Option<i64> {
    read.get(key).map(|v| v.version)
}
