//! In-memory adapters of the ports, with switchable outages. They serve unit tests,
//! benchmarks and the simulation of the use cases; real deployments use SQLite or AWS.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use revguard_core::domain::billing::counters::{fold, CounterTotals};
use revguard_core::domain::billing::{CustomerState, DunningCase, Notification, SubscriptionState};
use revguard_core::domain::detector::alerts::{AlertChange, AlertMessage, AlertState};
use revguard_core::domain::detector::Series;
use revguard_core::domain::finding::Finding;
use revguard_core::domain::message::QueueMessage;
use revguard_core::ports::{
    Account, AlertSnapshot, AlertStore, BillingCommit, BillingStore, Claimed, CommitError,
    CountersReader, DeadLetters, EventHistory, EventKey, EventLog, EventRecord, EventStatus,
    Inbound, InsertOutcome, LogSelection, Outgoing, Pause, PublishError, Publisher, Queue,
    QueueError, StateKeys, StateSnapshot, StoreError, Versioned,
};

#[derive(Debug, thiserror::Error)]
#[error("simulated outage")]
pub struct SimulatedOutage;

#[derive(Default)]
pub struct MemoryEventLog {
    records: Mutex<HashMap<String, EventRecord>>,
    pub down: AtomicBool,
    pub mark_down: AtomicBool,
    marks: std::sync::atomic::AtomicUsize,
}

impl MemoryEventLog {
    pub fn get(&self, event_id: &str) -> Option<EventRecord> {
        self.records.lock().unwrap().get(event_id).cloned()
    }

    /// How many confirmations (`mark_queued`) succeeded: writes the ingress paid for.
    pub fn marks(&self) -> usize {
        self.marks.load(Ordering::SeqCst)
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable(SimulatedOutage));
        }
        Ok(())
    }
}

impl EventLog for MemoryEventLog {
    async fn insert_if_absent(&self, record: &EventRecord) -> Result<InsertOutcome, StoreError> {
        self.check()?;
        let mut records = self.records.lock().unwrap();
        if let Some(existing) = records.get(&record.event_id) {
            return Ok(InsertOutcome::AlreadyPresent(existing.status));
        }
        records.insert(record.event_id.clone(), record.clone());
        Ok(InsertOutcome::Inserted)
    }

    async fn mark_queued(&self, event_id: &str) -> Result<(), StoreError> {
        self.check()?;
        if self.mark_down.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable(SimulatedOutage));
        }
        if let Some(r) = self.records.lock().unwrap().get_mut(event_id) {
            r.status = EventStatus::Queued;
        }
        self.marks.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn stored_payload(&self, event_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.check()?;
        Ok(self
            .records
            .lock()
            .unwrap()
            .get(event_id)
            .and_then(|r| r.stored_payload.clone()))
    }
}

impl EventHistory for MemoryEventLog {
    async fn logged(
        &self,
        selection: &LogSelection,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.check()?;
        let s = selection;
        let mut out: Vec<EventRecord> = self
            .records
            .lock()
            .unwrap()
            .values()
            .filter(|r| s.event_id.as_ref().is_none_or(|id| &r.event_id == id))
            .filter(|r| s.since.is_none_or(|t| r.created >= t))
            .filter(|r| s.until.is_none_or(|t| r.created < t))
            .filter(|r| s.event_type.as_ref().is_none_or(|t| &r.event_type == t))
            .cloned()
            .collect();
        out.sort_by(|a, b| (a.created, &a.event_id).cmp(&(b.created, &b.event_id)));
        out.truncate(limit);
        Ok(out)
    }

    async fn known(&self, event_ids: &[String]) -> Result<BTreeSet<String>, StoreError> {
        self.check()?;
        let records = self.records.lock().unwrap();
        Ok(event_ids
            .iter()
            .filter(|id| records.contains_key(*id))
            .cloned()
            .collect())
    }
}

pub struct MemoryQueue {
    pub messages: Mutex<Vec<QueueMessage>>,
    pub down: AtomicBool,
    pub max_bytes: usize,
}

impl MemoryQueue {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            messages: Mutex::new(Vec::new()),
            down: AtomicBool::new(false),
            max_bytes,
        }
    }

    pub fn sent(&self) -> Vec<QueueMessage> {
        self.messages.lock().unwrap().clone()
    }
}

impl Default for MemoryQueue {
    fn default() -> Self {
        Self::new(256 * 1024)
    }
}

impl Queue for MemoryQueue {
    fn max_message_bytes(&self) -> usize {
        self.max_bytes
    }

    async fn send(&self, message: &QueueMessage) -> Result<(), QueueError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(QueueError::unavailable(SimulatedOutage));
        }
        self.messages.lock().unwrap().push(message.clone());
        Ok(())
    }
}

/// Billing state in memory, with versions, under one lock: the reference store.
#[derive(Default)]
pub struct MemoryBilling {
    inner: Mutex<BillingTables>,
    pub down: AtomicBool,
    /// Commits to refuse with a conflict before accepting one (to exercise retries).
    pub conflicts_to_inject: AtomicUsize,
    /// Largest number of events one commit may carry (0: no limit).
    pub max_events_per_commit: AtomicUsize,
    /// Outbox settlements to fail before one succeeds (a throttled delete).
    pub settle_failures_to_inject: AtomicUsize,
}

#[derive(Default, Clone)]
pub struct BillingTables {
    pub applied: BTreeSet<String>,
    pub subscriptions: BTreeMap<String, Versioned<SubscriptionState>>,
    pub cases: BTreeMap<String, Versioned<DunningCase>>,
    pub customers: BTreeMap<String, Versioned<CustomerState>>,
    pub charge_customers: BTreeMap<String, String>,
    /// Per account (state keys above are the account's: see [`Account::key`]).
    pub counters: BTreeMap<Account, CounterTotals>,
    pub findings: BTreeMap<(bool, String), Finding>,
    pub outbox: BTreeMap<String, Notification>,
    /// Lease end of each event's outbox entry (absent: not leased).
    pub outbox_leases: BTreeMap<String, i64>,
}

impl MemoryBilling {
    pub fn tables(&self) -> BillingTables {
        self.inner.lock().unwrap().clone()
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable(SimulatedOutage));
        }
        Ok(())
    }
}

fn version_matches<T>(
    map: &BTreeMap<String, Versioned<T>>,
    key: &str,
    expected: Option<i64>,
) -> bool {
    map.get(key).map(|v| v.version) == expected
}

impl BillingStore for MemoryBilling {
    async fn applied(&self, events: &[EventKey]) -> Result<BTreeSet<String>, StoreError> {
        self.check()?;
        let t = self.inner.lock().unwrap();
        Ok(events
            .iter()
            .filter(|e| t.applied.contains(&e.id))
            .map(|e| e.id.clone())
            .collect())
    }

    async fn load(&self, keys: &StateKeys) -> Result<StateSnapshot, StoreError> {
        self.check()?;
        let t = self.inner.lock().unwrap();
        let key = |k: &str| keys.account.key(k);
        let mut out = StateSnapshot::default();
        for c in &keys.charges {
            if let Some(customer) = t.charge_customers.get(&key(c)) {
                out.charge_customers.insert(c.clone(), customer.clone());
            }
        }
        for k in &keys.subscriptions {
            out.subscriptions
                .extend(t.subscriptions.get(&key(k)).map(|v| (k.clone(), v.clone())));
        }
        for k in &keys.invoices {
            out.cases
                .extend(t.cases.get(&key(k)).map(|v| (k.clone(), v.clone())));
        }
        for k in keys.customers.iter().chain(out.charge_customers.values()) {
            out.customers
                .extend(t.customers.get(&key(k)).map(|v| (k.clone(), v.clone())));
        }
        Ok(out)
    }

    async fn commit(&self, commit: &BillingCommit) -> Result<(), CommitError> {
        self.check()?;
        let limit = self.max_events_per_commit.load(Ordering::SeqCst);
        if limit > 0 && commit.events.len() > limit {
            return Err(CommitError::TooLarge);
        }
        if self.conflicts_to_inject.load(Ordering::SeqCst) > 0 {
            self.conflicts_to_inject.fetch_sub(1, Ordering::SeqCst);
            return Err(CommitError::Conflict);
        }
        let mut t = self.inner.lock().unwrap();
        let key = |k: &str| commit.account.key(k);
        let consistent = commit
            .events
            .iter()
            .all(|e| !t.applied.contains(&e.event_id))
            && commit
                .subscriptions
                .iter()
                .all(|w| version_matches(&t.subscriptions, &key(&w.value.id), w.expected_version))
            && commit.cases.iter().all(|w| {
                version_matches(&t.cases, &key(&w.value.0.invoice_id), w.expected_version)
            })
            && commit
                .customers
                .iter()
                .all(|w| version_matches(&t.customers, &key(&w.value.id), w.expected_version));
        if !consistent {
            return Err(CommitError::Conflict);
        }
        for e in &commit.events {
            t.applied.insert(e.event_id.clone());
            fold(
                t.counters.entry(commit.account.clone()).or_default(),
                &e.counters,
            );
            for f in &e.findings {
                t.findings.insert((f.livemode, f.key.clone()), f.clone());
            }
            for n in &e.notifications {
                t.outbox.insert(n.id.clone(), n.clone());
            }
            if !e.notifications.is_empty() {
                t.outbox_leases
                    .insert(e.event_id.clone(), commit.outbox_lease_until);
            }
        }
        let next = |v: Option<i64>| v.unwrap_or(0) + 1;
        for w in &commit.subscriptions {
            t.subscriptions.insert(
                key(&w.value.id),
                Versioned {
                    value: w.value.clone(),
                    version: next(w.expected_version),
                },
            );
        }
        for w in &commit.cases {
            t.cases.insert(
                key(&w.value.0.invoice_id),
                Versioned {
                    value: w.value.0.clone(),
                    version: next(w.expected_version),
                },
            );
        }
        for w in &commit.customers {
            t.customers.insert(
                key(&w.value.id),
                Versioned {
                    value: w.value.clone(),
                    version: next(w.expected_version),
                },
            );
        }
        for (charge, customer) in &commit.charge_links {
            t.charge_customers
                .entry(key(charge))
                .or_insert_with(|| customer.clone());
        }
        Ok(())
    }

    async fn claim_outbox(
        &self,
        event_ids: &[String],
        now: i64,
        lease_until: i64,
    ) -> Result<Claimed<Notification>, StoreError> {
        self.check()?;
        let mut t = self.inner.lock().unwrap();
        let mut out = Claimed::default();
        for id in event_ids {
            if !t.outbox.values().any(|n| &n.event_id == id) {
                continue;
            }
            if t.outbox_leases.get(id).is_some_and(|until| *until > now) {
                out.held.push(id.clone());
                continue;
            }
            t.outbox_leases.insert(id.clone(), lease_until);
            let mine = t.outbox.values().filter(|n| &n.event_id == id).cloned();
            out.messages.extend(mine.collect::<Vec<_>>());
        }
        Ok(out)
    }

    async fn settle_outbox(
        &self,
        published: &[String],
        unpublished: &[Notification],
    ) -> Result<(), StoreError> {
        self.check()?;
        if self.settle_failures_to_inject.load(Ordering::SeqCst) > 0 {
            self.settle_failures_to_inject
                .fetch_sub(1, Ordering::SeqCst);
            return Err(StoreError::unavailable(SimulatedOutage));
        }
        let mut t = self.inner.lock().unwrap();
        for id in published {
            if let Some(n) = t.outbox.remove(id) {
                if !t.outbox.values().any(|m| m.event_id == n.event_id) {
                    t.outbox_leases.remove(&n.event_id);
                }
            }
        }
        for n in unpublished {
            t.outbox_leases.remove(&n.event_id);
        }
        Ok(())
    }
}

fn series_in(totals: &CounterTotals, livemode: bool, from: i64, to: i64) -> Series {
    let mut out = Series::new();
    for ((l, hour, metric), value) in totals {
        if *l == livemode && (*hour == 0 || (*hour >= from && *hour < to)) {
            out.entry(*hour).or_default().insert(metric.clone(), *value);
        }
    }
    out
}

impl CountersReader for MemoryBilling {
    async fn counters(
        &self,
        livemode: bool,
        account: &Account,
        from: i64,
        to: i64,
    ) -> Result<Series, StoreError> {
        self.check()?;
        let t = self.inner.lock().unwrap();
        Ok(t.counters
            .get(account)
            .map(|totals| series_in(totals, livemode, from, to))
            .unwrap_or_default())
    }

    async fn connected(
        &self,
        livemode: bool,
        from: i64,
        to: i64,
    ) -> Result<BTreeMap<Account, Series>, StoreError> {
        self.check()?;
        let t = self.inner.lock().unwrap();
        Ok(t.counters
            .iter()
            .filter(|(account, totals)| {
                !account.is_platform()
                    && totals
                        .keys()
                        .any(|(l, hour, _)| *l == livemode && *hour >= from && *hour < to)
            })
            .map(|(account, totals)| (account.clone(), series_in(totals, livemode, from, to)))
            .collect())
    }
}

/// Alert state in memory. Event-level findings come from a [`MemoryBilling`]'s commits
/// when linked with [`MemoryAlerts::fed_by`]; otherwise through [`MemoryAlerts::raise`].
#[derive(Default)]
pub struct MemoryAlerts {
    inner: Mutex<AlertTables>,
    pub down: AtomicBool,
    /// Outbox clears to fail before one succeeds (a throttled delete).
    pub clear_failures_to_inject: AtomicUsize,
}

#[derive(Default, Clone)]
pub struct AlertTables {
    pub alerts: BTreeMap<String, AlertState>,
    pub pending: BTreeMap<(bool, String), Finding>,
    pub outbox: BTreeMap<String, AlertMessage>,
    /// Lease end of each outbox message (absent: not leased).
    pub outbox_leases: BTreeMap<String, i64>,
}

impl MemoryAlerts {
    pub fn tables(&self) -> AlertTables {
        self.inner.lock().unwrap().clone()
    }

    pub fn raise(&self, finding: Finding) {
        self.inner
            .lock()
            .unwrap()
            .pending
            .insert((finding.livemode, finding.key.clone()), finding);
    }

    /// Ends every outbox lease, as time passing would: what a crashed or failed run left
    /// becomes claimable by the next run.
    pub fn expire_outbox_leases(&self) {
        for until in self.inner.lock().unwrap().outbox_leases.values_mut() {
            *until = 0;
        }
    }

    /// Takes the findings a billing store recorded, as the worker's commit hands them over.
    pub fn fed_by(&self, billing: &MemoryBilling) {
        let findings = std::mem::take(&mut billing.inner.lock().unwrap().findings);
        for f in findings.into_values() {
            self.raise(f);
        }
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable(SimulatedOutage));
        }
        Ok(())
    }
}

impl AlertStore for MemoryAlerts {
    async fn add_pending(&self, finding: &Finding) -> Result<(), StoreError> {
        self.check()?;
        self.raise(finding.clone());
        Ok(())
    }

    async fn snapshot(&self, until: i64) -> Result<AlertSnapshot, StoreError> {
        self.check()?;
        let t = self.inner.lock().unwrap();
        Ok(AlertSnapshot {
            alerts: t.alerts.values().filter(|a| a.open).cloned().collect(),
            pending: t
                .pending
                .values()
                .filter(|f| f.window_end <= until)
                .cloned()
                .collect(),
            outbox: t.outbox.values().cloned().collect(),
        })
    }

    async fn alerts(&self, ids: &[String]) -> Result<Vec<AlertState>, StoreError> {
        self.check()?;
        let t = self.inner.lock().unwrap();
        Ok(ids
            .iter()
            .filter_map(|id| t.alerts.get(id).cloned())
            .collect())
    }

    async fn commit_change(
        &self,
        change: &AlertChange,
        message: Option<&AlertMessage>,
        _now: i64,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        self.check()?;
        let mut t = self.inner.lock().unwrap();
        let stored = t.alerts.get(&change.state.id).map(|a| a.version);
        if stored != change.expected_version {
            return Ok(false);
        }
        t.alerts
            .insert(change.state.id.clone(), change.state.clone());
        if let Some(m) = message {
            t.outbox.insert(m.id.clone(), m.clone());
            t.outbox_leases.insert(m.id.clone(), lease_until);
        }
        Ok(true)
    }

    async fn claim_outbox(
        &self,
        message_ids: &[String],
        now: i64,
        lease_until: i64,
    ) -> Result<Vec<String>, StoreError> {
        self.check()?;
        let mut t = self.inner.lock().unwrap();
        let mut claimed = Vec::new();
        for id in message_ids {
            let free = t.outbox_leases.get(id).is_none_or(|until| *until <= now);
            if t.outbox.contains_key(id) && free {
                t.outbox_leases.insert(id.clone(), lease_until);
                claimed.push(id.clone());
            }
        }
        Ok(claimed)
    }

    async fn consume_findings(&self, findings: &[Finding]) -> Result<(), StoreError> {
        self.check()?;
        let mut t = self.inner.lock().unwrap();
        for f in findings {
            let key = (f.livemode, f.key.clone());
            if t.pending.get(&key) == Some(f) {
                t.pending.remove(&key);
            }
        }
        Ok(())
    }

    async fn clear_outbox(&self, message_ids: &[String]) -> Result<(), StoreError> {
        self.check()?;
        let injected =
            self.clear_failures_to_inject
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if injected.is_ok() {
            return Err(StoreError::unavailable(SimulatedOutage));
        }
        let mut t = self.inner.lock().unwrap();
        for id in message_ids {
            t.outbox.remove(id);
            t.outbox_leases.remove(id);
        }
        Ok(())
    }
}

/// A publisher that keeps what it was given, and can fail on chosen ids.
pub struct MemoryPublisher<M> {
    pub published: Mutex<Vec<M>>,
    pub fail_ids: Mutex<BTreeSet<String>>,
}

impl<M> Default for MemoryPublisher<M> {
    fn default() -> Self {
        Self {
            published: Mutex::new(Vec::new()),
            fail_ids: Mutex::new(BTreeSet::new()),
        }
    }
}

impl<M: Clone> MemoryPublisher<M> {
    pub fn taken(&self) -> Vec<M> {
        std::mem::take(&mut *self.published.lock().unwrap())
    }
}

impl<M: Outgoing + Clone> Publisher<M> for MemoryPublisher<M> {
    async fn publish(&self, message: &M) -> Result<(), PublishError> {
        if self.fail_ids.lock().unwrap().contains(message.id()) {
            return Err(PublishError::new(SimulatedOutage));
        }
        self.published.lock().unwrap().push(message.clone());
        Ok(())
    }
}

#[derive(Default)]
pub struct MemoryDeadLetters {
    pub letters: Mutex<Vec<(Inbound, String)>>,
}

impl DeadLetters for MemoryDeadLetters {
    async fn dead_letter(&self, message: &Inbound, reason: &str) -> Result<(), StoreError> {
        self.letters
            .lock()
            .unwrap()
            .push((message.clone(), reason.to_owned()));
        Ok(())
    }
}

/// Pauses that only count: time in tests is a parameter, not a wait.
#[derive(Default)]
pub struct CountedPause {
    pub pauses: Mutex<Vec<Duration>>,
}

impl Pause for CountedPause {
    async fn pause(&self, duration: Duration) {
        self.pauses.lock().unwrap().push(duration);
    }
}

/// Stripe's API in memory, knowing the events it created: it lists them as Stripe does
/// (newest first, 100 a page, filtered by time and type), so a [`revguard_core::usecases::recovery::StripeAudit`]
/// or a backfill over it finds what the event log lacks. No subscriptions or invoices;
/// webhook endpoints as set.
#[derive(Default, Clone)]
pub struct MemoryStripe {
    /// `(created, id, type, raw, account)`, in `(created, id)` order: every account's.
    events: std::sync::Arc<Mutex<Vec<MemoryStripeEvent>>>,
    pub endpoints: std::sync::Arc<Mutex<Vec<String>>>,
    pub livemode: bool,
    /// Every request fails as unavailable.
    pub down: std::sync::Arc<AtomicBool>,
    /// Whose events it lists (`Stripe-Account`): the platform's own by default.
    pub account: Account,
    /// Accounts Stripe refuses to act for (disconnected from the platform): 403.
    pub refused: std::sync::Arc<Mutex<BTreeSet<Account>>>,
}

type MemoryStripeEvent = (i64, String, String, String, Account);

impl MemoryStripe {
    pub fn new(livemode: bool) -> Self {
        Self {
            livemode,
            ..Self::default()
        }
    }

    /// Stripe created this event (its raw JSON, with `id`, `type` and `created`; a
    /// connected account's with its `account`).
    pub fn created(&self, raw: &str) {
        let v: serde_json::Value = serde_json::from_str(raw).expect("an event's JSON");
        let account = Account::of_event(v["account"].as_str()).expect("a Stripe account id");
        self.created_for(&account, raw);
    }

    /// An event of `account`, listed only on its behalf, as `raw` (a connected account's
    /// as Stripe's listing gives it, without `account`: the backfill adds it).
    pub fn created_for(&self, account: &Account, raw: &str) {
        let v: serde_json::Value = serde_json::from_str(raw).expect("an event's JSON");
        let entry = (
            v["created"].as_i64().unwrap_or_default(),
            v["id"].as_str().unwrap_or_default().to_owned(),
            v["type"].as_str().unwrap_or_default().to_owned(),
            raw.to_owned(),
            account.clone(),
        );
        let mut events = self.events.lock().unwrap();
        let at = events.partition_point(|e| (e.0, &e.1) < (entry.0, &entry.1));
        events.insert(at, entry);
    }

    fn check(&self) -> Result<(), revguard_core::ports::ApiError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(revguard_core::ports::ApiError::Unavailable(
                "simulated outage".into(),
            ));
        }
        if self.refused.lock().unwrap().contains(&self.account) {
            return Err(revguard_core::ports::ApiError::Refused {
                status: 403,
                message: "The provided key does not have access to account".into(),
            });
        }
        Ok(())
    }
}

fn raw_value(raw: &str) -> Box<serde_json::value::RawValue> {
    serde_json::value::RawValue::from_string(raw.to_owned()).expect("valid JSON")
}

impl revguard_core::ports::StripeApi for MemoryStripe {
    fn for_account(&self, account: &Account) -> Self {
        Self {
            account: account.clone(),
            ..self.clone()
        }
    }

    fn account(&self) -> Account {
        self.account.clone()
    }

    async fn events_page(
        &self,
        query: &revguard_core::ports::EventsQuery,
        at: &revguard_core::ports::PageCursor,
    ) -> Result<revguard_core::ports::Page, revguard_core::ports::ApiError> {
        self.check()?;
        const PAGE: usize = 100;
        let events = self.events.lock().unwrap();
        let from = events.partition_point(|e| e.0 < query.since);
        let to = query.until.map_or(events.len(), |until| {
            events.partition_point(|e| e.0 < until)
        });
        let mut listed = events[from..to.max(from)]
            .iter()
            .rev()
            .filter(|e| e.4 == self.account)
            .filter(|e| query.types.is_empty() || query.types.contains(&e.2));
        if let Some(after) = &at.starting_after {
            for e in listed.by_ref() {
                if &e.1 == after {
                    break;
                }
            }
        }
        let data: Vec<&MemoryStripeEvent> = listed.by_ref().take(PAGE).collect();
        let more = listed.next().is_some();
        Ok(revguard_core::ports::Page {
            next: more.then(|| revguard_core::ports::PageCursor {
                starting_after: data.last().map(|e| e.1.clone()),
                ..at.clone()
            }),
            data: data.into_iter().map(|e| raw_value(&e.3)).collect(),
        })
    }

    async fn subscriptions_page(
        &self,
        _at: &revguard_core::ports::PageCursor,
    ) -> Result<revguard_core::ports::Page, revguard_core::ports::ApiError> {
        self.check()?;
        Ok(revguard_core::ports::Page::default())
    }

    async fn subscription(
        &self,
        _id: &str,
    ) -> Result<Option<Box<serde_json::value::RawValue>>, revguard_core::ports::ApiError> {
        self.check()?;
        Ok(None)
    }

    async fn webhook_endpoints(
        &self,
    ) -> Result<revguard_core::ports::RawObjects, revguard_core::ports::ApiError> {
        self.check()?;
        Ok(self
            .endpoints
            .lock()
            .unwrap()
            .iter()
            .map(|e| raw_value(e))
            .collect())
    }

    fn livemode(&self) -> bool {
        self.livemode
    }

    async fn invoice(
        &self,
        _id: &str,
    ) -> Result<Option<Box<serde_json::value::RawValue>>, revguard_core::ports::ApiError> {
        self.check()?;
        Ok(None)
    }
}
