//! The ports the use cases need. Adapters live in their own crates (`revguard-aws`,
//! `revguard-sqlite`, and the in-memory ones in `revguard-testkit`'s `memory`); the use
//! cases never know which one runs.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use serde_json::value::RawValue;

pub use crate::domain::account::{Account, Scope};
use crate::domain::billing::counters::CounterUpdate;
use crate::domain::billing::{CustomerState, DunningCase, Notification, Stage, SubscriptionState};
use crate::domain::detector::alerts::{AlertChange, AlertMessage, AlertState};
use crate::domain::detector::Series;
use crate::domain::finding::Finding;
pub use crate::domain::message::QueueError;
use crate::domain::message::QueueMessage;

/// Where an event stands in the event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStatus {
    /// Recorded, but its enqueue has not been confirmed: a redelivery enqueues it again.
    Received,
    /// Recorded and handed to the queue.
    Queued,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Received => "received",
            EventStatus::Queued => "queued",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "received" => Some(EventStatus::Received),
            "queued" => Some(EventStatus::Queued),
            _ => None,
        }
    }
}

/// One event-log entry: metadata, and the payload only when it could not ride in the
/// queue message (then compressed, see [`crate::domain::message`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub event_id: String,
    pub event_type: String,
    pub created: i64,
    pub livemode: bool,
    pub received_at: i64,
    /// Unix seconds after which the entry may be deleted (DynamoDB TTL).
    pub expires_at: i64,
    pub status: EventStatus,
    /// Deflate-compressed raw payload, for payloads too big for a queue message.
    pub stored_payload: Option<Vec<u8>>,
    /// Whose event it is. The entry stays keyed by Stripe's event id alone: the id is
    /// unique across accounts, and it is what both doors and the backfill de-duplicate on.
    pub account: Account,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    Inserted,
    AlreadyPresent(EventStatus),
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store is unavailable")]
    Unavailable(#[source] BoxError),
    #[error("the store holds a record it cannot read: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub fn unavailable(e: impl Into<BoxError>) -> Self {
        StoreError::Unavailable(e.into())
    }
}

/// The event log: one entry per Stripe event id, written with a conditional insert.
pub trait EventLog: Send + Sync {
    /// Inserts the record unless an entry with its id exists; never overwrites.
    fn insert_if_absent(
        &self,
        record: &EventRecord,
    ) -> impl Future<Output = Result<InsertOutcome, StoreError>> + Send;

    /// Records that the event's enqueue was confirmed.
    fn mark_queued(&self, event_id: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The compressed payload kept for an event whose message carries only a reference.
    fn stored_payload(
        &self,
        event_id: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;
}

/// The queue between ingress and the worker.
pub trait Queue: Send + Sync {
    /// The largest encoded message this queue takes.
    fn max_message_bytes(&self) -> usize;

    fn send(&self, message: &QueueMessage) -> impl Future<Output = Result<(), QueueError>> + Send;
}

#[derive(Debug, thiserror::Error)]
#[error("the message could not be published")]
pub struct PublishError(#[source] pub BoxError);

impl PublishError {
    pub fn new(e: impl Into<BoxError>) -> Self {
        PublishError(e.into())
    }

    /// One failure for each message of a batch that failed together.
    pub fn for_each<M>(messages: &[M], reason: &str) -> Vec<Result<(), PublishError>> {
        messages
            .iter()
            .map(|_| Err(PublishError::new(reason.to_owned())))
            .collect()
    }
}

/// A message that goes out through a publisher, with an id subscribers de-duplicate on.
pub trait Outgoing: Send + Sync {
    fn id(&self) -> &str;
}

impl Outgoing for Notification {
    fn id(&self) -> &str {
        &self.id
    }
}

impl Outgoing for AlertMessage {
    fn id(&self) -> &str {
        &self.id
    }
}

/// Where messages go: notifications (SNS on AWS; log + JSONL embedded) and alert
/// transitions (SNS with email and SMS bodies; log + JSONL embedded).
pub trait Publisher<M: Outgoing>: Send + Sync {
    fn publish(&self, message: &M) -> impl Future<Output = Result<(), PublishError>> + Send;

    /// Several messages, one result each, in order. One after another unless the
    /// publisher can make them durable together (a file synced once, not once a line).
    fn publish_each(
        &self,
        messages: &[M],
    ) -> impl Future<Output = Vec<Result<(), PublishError>>> + Send {
        async move {
            let mut results = Vec::with_capacity(messages.len());
            for m in messages {
                results.push(self.publish(m).await);
            }
            results
        }
    }
}

/// A message as a queue consumer receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// The queue's id for this delivery (SQS message id, SQLite sequence number).
    pub id: String,
    pub body: String,
    /// How many times the queue has handed it out, this time included.
    pub receive_count: u32,
    /// When the queue took it (unix seconds), if the queue says.
    pub sent_at: Option<i64>,
}

/// Where a message that can never apply goes, with the reason.
pub trait DeadLetters: Send + Sync {
    fn dead_letter(
        &self,
        message: &Inbound,
        reason: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Which logged events to read back (a replay's selection).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSelection {
    pub event_id: Option<String>,
    /// Events created at or after this (unix seconds).
    pub since: Option<i64>,
    /// Events created before this.
    pub until: Option<i64>,
    pub event_type: Option<String>,
    /// The caller accepts a store's day index of subscription events (DynamoDB's
    /// `by_mrr_day`: a Query a day, not a Scan), which lacks events logged before it
    /// existed: the digest does, a replay does not.
    pub by_day_index: bool,
}

impl LogSelection {
    /// A replay's selection: one event, or those created in a window, optionally of one
    /// type. It reads the whole log (never a day index): every event, logged before any
    /// index or after.
    pub fn for_replay(
        event_id: Option<String>,
        since: Option<i64>,
        until: Option<i64>,
        event_type: Option<String>,
    ) -> Self {
        Self {
            event_id,
            since,
            until,
            event_type,
            by_day_index: false,
        }
    }
}

/// Reading the event log back, for a replay.
pub trait EventHistory: Send + Sync {
    /// The selected entries, oldest first, at most `limit`, with their stored payloads.
    fn logged(
        &self,
        selection: &LogSelection,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<EventRecord>, StoreError>> + Send;

    /// Which of these event ids the log holds.
    fn known(
        &self,
        event_ids: &[String],
    ) -> impl Future<Output = Result<BTreeSet<String>, StoreError>> + Send;
}

/// A dead-lettered message, as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetter {
    /// The dead-letter store's id for it (SQLite sequence number, SQS message id).
    pub id: String,
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    /// Why it was dead-lettered, where the store keeps it.
    pub error: Option<String>,
    pub receive_count: u32,
    pub failed_at: Option<i64>,
    /// The queue message, on `show`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// Looking at dead letters and sending them back to the queue.
pub trait DeadLetterAdmin: Send + Sync {
    fn dead_letters(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, StoreError>> + Send;

    fn dead_letter_by_id(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<DeadLetter>, StoreError>> + Send;

    /// Moves the given dead letters (all of them with `None`) back to the queue with a
    /// fresh receive count; how many moved.
    fn redrive(
        &self,
        ids: Option<&[String]>,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;
}

/// A stored item and the version to condition its next write on.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: i64,
}

/// The state items a batch of events touches: all of one account's (a batch is applied
/// per account, and the account scopes every key).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateKeys {
    pub account: Account,
    pub subscriptions: BTreeSet<String>,
    pub invoices: BTreeSet<String>,
    pub customers: BTreeSet<String>,
    /// Charges whose customer must be looked up (disputes, fraud warnings).
    pub charges: BTreeSet<String>,
}

/// The state a batch starts from. Items not in a map do not exist yet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateSnapshot {
    pub subscriptions: BTreeMap<String, Versioned<SubscriptionState>>,
    pub cases: BTreeMap<String, Versioned<DunningCase>>,
    /// The customers named by the keys, and those of the charges found.
    pub customers: BTreeMap<String, Versioned<CustomerState>>,
    pub charge_customers: BTreeMap<String, String>,
}

impl crate::domain::billing::StateLookup for StateSnapshot {
    fn subscription(&self, id: &str) -> Option<SubscriptionState> {
        self.subscriptions.get(id).map(|v| v.value.clone())
    }
    fn case(&self, invoice_id: &str) -> Option<DunningCase> {
        self.cases.get(invoice_id).map(|v| v.value.clone())
    }
    fn customer(&self, id: &str) -> Option<CustomerState> {
        self.customers.get(id).map(|v| v.value.clone())
    }
    fn charge_customer(&self, charge_id: &str) -> Option<String> {
        self.charge_customers.get(charge_id).cloned()
    }
}

/// A state item's new value, written only if the item is still at `expected_version`
/// (`None`: only if it still does not exist).
#[derive(Debug, Clone, PartialEq)]
pub struct StateWrite<T> {
    pub value: T,
    pub expected_version: Option<i64>,
}

/// An event, and where its applied marker lives: on the item of the charge it is about
/// (`charge`, see [`crate::domain::billing::marker_charge`]), or on a marker of its own. Stores
/// with cheap markers may ignore `charge`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventKey {
    pub id: String,
    pub charge: Option<String>,
    /// Whose charge it is (the charge item is the account's).
    pub account: Account,
}

impl EventKey {
    /// An event whose marker is its own.
    pub fn own(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            charge: None,
            account: Account::PLATFORM,
        }
    }

    pub fn of(event: &crate::domain::billing::BillingEvent) -> Self {
        Self {
            id: event.id.clone(),
            charge: crate::domain::billing::marker_charge(event.kind, &event.object),
            account: event.account.clone(),
        }
    }
}

/// One applied event's own effects: its marker, counters, findings and notifications.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedEvent {
    pub event_id: String,
    /// The charge whose item carries the marker (see [`EventKey`]).
    pub charge: Option<String>,
    pub received_at: i64,
    pub counters: Vec<CounterUpdate>,
    pub findings: Vec<Finding>,
    pub notifications: Vec<Notification>,
}

/// Everything a batch changes, committed at once or not at all: one account's, whose
/// keys its state items, markers and counters go under.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BillingCommit {
    pub account: Account,
    pub events: Vec<AppliedEvent>,
    pub subscriptions: Vec<StateWrite<SubscriptionState>>,
    /// Each case with its stage (stores index cases by stage).
    pub cases: Vec<StateWrite<(DunningCase, Option<Stage>)>>,
    pub customers: Vec<StateWrite<CustomerState>>,
    /// Which customer a charge belongs to: written once, never changed.
    pub charge_links: Vec<(String, String)>,
    pub now: i64,
    /// The outbox entries this commit writes are leased to its writer until then (unix
    /// seconds, wall clock; see [`OUTBOX_LEASE_SECS`]).
    pub outbox_lease_until: i64,
}

/// How long an outbox entry stays with whoever wrote or claimed it, so that only one
/// publisher sends it. A holder that crashed lets go when the lease runs out; publishing a
/// handful of messages takes well under this.
pub const OUTBOX_LEASE_SECS: i64 = 60;

/// What a claim on outbox entries got.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed<M> {
    /// The messages now leased to the caller: publish them, then settle.
    pub messages: Vec<M>,
    /// Keys of the entries another holder still leases (event ids for notifications).
    pub held: Vec<String>,
}

impl<M> Default for Claimed<M> {
    fn default() -> Self {
        Self {
            messages: Vec::new(),
            held: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// An applied marker already exists or a state item moved since it was read: nothing
    /// was written; read again and decide again.
    #[error("the state changed under the batch")]
    Conflict,
    /// The commit is larger than one transaction may be: nothing was written; commit
    /// the batch in smaller parts.
    #[error("the batch is too large for one transaction")]
    TooLarge,
    /// The store is shedding load (throttled): nothing was written; try again after a
    /// backoff.
    #[error("the store throttled the commit")]
    Throttled,
    /// The store refused what the batch would write (e.g. an item over its size limit):
    /// nothing was written, and the same write will never pass. Commit the batch in
    /// smaller parts to find the event that cannot be stored.
    #[error("the store refused the commit: {0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Subscription state, dunning cases, customers, counters and the notification outbox.
pub trait BillingStore: Send + Sync {
    /// Which of these events (by id) have been applied.
    fn applied(
        &self,
        events: &[EventKey],
    ) -> impl Future<Output = Result<BTreeSet<String>, StoreError>> + Send;

    /// The current state under the keys, with versions. Reads the charge links first, so
    /// that the customers of the charges found are included.
    fn load(
        &self,
        keys: &StateKeys,
    ) -> impl Future<Output = Result<StateSnapshot, StoreError>> + Send;

    /// Writes the applied markers, state items, counter increments, findings and
    /// outbox entries atomically, under optimistic concurrency.
    fn commit(
        &self,
        commit: &BillingCommit,
    ) -> impl Future<Output = Result<(), CommitError>> + Send;

    /// Leases the outbox entries of these events that no one holds (never leased, or whose
    /// lease ended by `now`) until `lease_until`, and returns their notifications.
    fn claim_outbox(
        &self,
        event_ids: &[String],
        now: i64,
        lease_until: i64,
    ) -> impl Future<Output = Result<Claimed<Notification>, StoreError>> + Send;

    /// After publishing what the caller held: removes the published notifications, and
    /// releases the unpublished ones so that the next attempt may claim them at once.
    fn settle_outbox(
        &self,
        published: &[String],
        unpublished: &[Notification],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The hourly counters, as the detector reads them.
pub trait CountersReader: Send + Sync {
    /// One account's counters of one mode for hours in [from, to), plus its all-time
    /// gauges of hour 0.
    fn counters(
        &self,
        livemode: bool,
        account: &Account,
        from: i64,
        to: i64,
    ) -> impl Future<Output = Result<Series, StoreError>> + Send;

    /// The counters of every connected account with counts in [from, to), each with its
    /// gauges of hour 0: what a Connect platform's detector judges. Its cost grows with the
    /// accounts active in the window, never with every account ever seen.
    fn connected(
        &self,
        livemode: bool,
        from: i64,
        to: i64,
    ) -> impl Future<Output = Result<BTreeMap<Account, Series>, StoreError>> + Send;
}

/// What the alert store holds, as a detector run reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertSnapshot {
    /// The open alerts.
    pub alerts: Vec<AlertState>,
    /// Event-level findings waiting to be judged.
    pub pending: Vec<Finding>,
    /// Alert messages committed but not yet published (leased or not).
    pub outbox: Vec<AlertMessage>,
}

/// Alert state, event-level findings waiting to be judged, and the alert outbox.
pub trait AlertStore: Send + Sync {
    /// Leaves a finding for the detector's next run, as the worker's commits leave
    /// event-level ones (a reconciliation's drift): the run opens or refreshes its alert
    /// and publishes it once. A finding of the same key and mode replaces the one waiting.
    fn add_pending(&self, finding: &Finding)
        -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Everything a detector run reads, in one go: the open alerts, the event-level
    /// findings raised at or before `until`, and the alert outbox. Never closed alerts:
    /// their number grows with every charge that once raised one.
    fn snapshot(
        &self,
        until: i64,
    ) -> impl Future<Output = Result<AlertSnapshot, StoreError>> + Send;

    /// The stored alerts among `ids`, open or closed (a closed one reopens at its next
    /// version). Closed alerts may be forgotten some time after they resolved.
    fn alerts(
        &self,
        ids: &[String],
    ) -> impl Future<Output = Result<Vec<AlertState>, StoreError>> + Send;

    /// Commits one planned change (and its message, into the outbox, leased to the caller
    /// until `lease_until`) unless the alert moved since it was planned. Returns whether
    /// this call made the change.
    fn commit_change(
        &self,
        change: &AlertChange,
        message: Option<&AlertMessage>,
        now: i64,
        lease_until: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Leases the outbox messages among `message_ids` that no one holds at `now` until
    /// `lease_until`; returns the ids this call leased.
    fn claim_outbox(
        &self,
        message_ids: &[String],
        now: i64,
        lease_until: i64,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Removes judged findings, unless one was raised again since it was read.
    fn consume_findings(
        &self,
        findings: &[Finding],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn clear_outbox(
        &self,
        message_ids: &[String],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Whether a customer is subscribed now (the win-back notice is for those who are not).
pub trait Comebacks: Send + Sync {
    /// A live subscription of the customer in this mode: active, trialing or past due.
    fn is_subscribed(
        &self,
        account: &Account,
        customer: &str,
        livemode: bool,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// What operators ask, read the same from every store: the operator API and the dashboard
/// over it. Reads only; views are built in core from the stored state.
pub trait ReadModel: Send + Sync {
    /// A customer's subscriptions, open dunning cases and access verdict at `now`.
    fn customer_view(
        &self,
        account: &Account,
        id: &str,
        now: i64,
        policy: &crate::domain::billing::BillingPolicy,
    ) -> impl Future<Output = Result<crate::domain::billing::views::CustomerView, StoreError>> + Send;

    fn subscription(
        &self,
        account: &Account,
        id: &str,
    ) -> impl Future<Output = Result<Option<crate::domain::billing::SubscriptionState>, StoreError>> + Send;

    /// The id of every subscription held, with its account (for a reconciliation: what
    /// Stripe lacks).
    fn subscription_ids(
        &self,
    ) -> impl Future<Output = Result<Vec<(Account, String)>, StoreError>> + Send;

    /// Dunning cases by `open` (the default), `closed`, `all` or a stage name, oldest first.
    fn dunning_cases(
        &self,
        account: &Account,
        status: Option<&str>,
        policy: &crate::domain::billing::BillingPolicy,
    ) -> impl Future<Output = Result<Vec<crate::domain::billing::views::CaseView>, StoreError>> + Send;

    /// Hourly counters of both modes in [from, to), with the gauges of hour 0: of one
    /// account, or of the whole platform added up ([`Scope::All`]).
    fn metrics(
        &self,
        scope: &Scope,
        from: i64,
        to: i64,
    ) -> impl Future<Output = Result<Vec<crate::domain::billing::views::HourCounters>, StoreError>> + Send;

    /// Open alerts, and those resolved in the `recent_secs` before `now`, latest change
    /// first: of one scope, or every scope's with `None`.
    fn recent_alerts(
        &self,
        scope: Option<&Scope>,
        now: i64,
        recent_secs: i64,
    ) -> impl Future<Output = Result<Vec<AlertState>, StoreError>> + Send;

    /// Every account seen (the platform's own first, then the connected ones), each with
    /// its MRR, open dunning cases and open alerts at `now`.
    fn accounts(
        &self,
        now: i64,
    ) -> impl Future<Output = Result<Vec<crate::domain::billing::views::AccountSummary>, StoreError>>
           + Send;
}

/// How long a resolved alert (and its state) is kept before the store may forget it:
/// long enough that a signal recurring within it reopens the same alert at its next
/// version, so message ids never repeat within a subscriber's memory.
pub const CLOSED_ALERT_RETENTION_SECS: i64 = 90 * 86_400;

/// Waiting, for retries: `tokio::time::sleep` in production, nothing in unit tests.
pub trait Pause: Send + Sync {
    fn pause(&self, duration: Duration) -> impl Future<Output = ()> + Send;
}

/// Waiting on the tokio timer: what both entry points run on (feature `tokio`).
#[cfg(feature = "tokio")]
pub struct TokioPause;

#[cfg(feature = "tokio")]
impl Pause for TokioPause {
    async fn pause(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// What Stripe's API answered, when it was not what was asked for.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Stripe refused the request (4xx other than 429): retrying will not help.
    #[error("Stripe answered {status}: {message}")]
    Refused { status: u16, message: String },
    /// 429, 5xx or no answer, still so after the client's retries.
    #[error("Stripe's API is unavailable: {0}")]
    Unavailable(String),
    #[error("Stripe's answer could not be read: {0}")]
    Malformed(String),
}

/// Which events to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsQuery {
    /// `created[gte]`, unix seconds.
    pub since: i64,
    /// `created[lt]`, if any.
    pub until: Option<i64>,
    /// `delivery_success=false`: only events a webhook endpoint has not acknowledged.
    /// Cheaper, but blind to events that were never sent to revguard's endpoint (an
    /// endpoint disabled, a type not enabled): the default lists every event.
    pub undelivered_only: bool,
    /// `types[]`; empty: every type.
    pub types: Vec<String>,
}

/// A page of events, newest first as Stripe lists them.
pub type RawObjects = Vec<Box<RawValue>>;

/// Where the next page of a list starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageCursor {
    /// Which of the adapter's requests the page belongs to: a list too long for one
    /// request (more than 20 `types[]`) is several.
    pub part: usize,
    /// The last object listed: the next page starts after it.
    pub starting_after: Option<String>,
    /// Filters the API refused on an earlier page, so that every page lists alike.
    pub dropped_filters: Vec<String>,
}

/// One page of a list (newest first, as Stripe lists), and where the next starts.
#[derive(Debug, Default)]
pub struct Page {
    pub data: RawObjects,
    /// `None`: the list is done.
    pub next: Option<PageCursor>,
}

/// The part of Stripe's API that recovery reads.
pub trait StripeApi: Send + Sync {
    /// The same API, read on behalf of `account` (Stripe's `Stripe-Account` header for
    /// a connected account; itself for the platform).
    fn for_account(&self, account: &Account) -> Self
    where
        Self: Sized;

    /// Whose objects it reads (see [`StripeApi::for_account`]).
    fn account(&self) -> Account {
        Account::PLATFORM
    }

    /// One page of the events the query matches, each as Stripe's raw JSON.
    fn events_page(
        &self,
        query: &EventsQuery,
        at: &PageCursor,
    ) -> impl Future<Output = Result<Page, ApiError>> + Send;

    /// One page of every subscription, whatever its status (`status=all`).
    fn subscriptions_page(
        &self,
        at: &PageCursor,
    ) -> impl Future<Output = Result<Page, ApiError>> + Send;

    /// Every event the query matches (all pages, held together): for short windows.
    fn events(
        &self,
        query: &EventsQuery,
    ) -> impl Future<Output = Result<RawObjects, ApiError>> + Send {
        async move {
            let mut out = Vec::new();
            let mut at = PageCursor::default();
            loop {
                let page = self.events_page(query, &at).await?;
                out.extend(page.data);
                match page.next {
                    Some(next) => at = next,
                    None => return Ok(out),
                }
            }
        }
    }

    /// Every subscription (all pages, held together): for tests and small accounts.
    fn subscriptions(&self) -> impl Future<Output = Result<RawObjects, ApiError>> + Send {
        async move {
            let mut out = Vec::new();
            let mut at = PageCursor::default();
            loop {
                let page = self.subscriptions_page(&at).await?;
                out.extend(page.data);
                match page.next {
                    Some(next) => at = next,
                    None => return Ok(out),
                }
            }
        }
    }

    /// One subscription as Stripe holds it now; `None` if Stripe does not know it.
    fn subscription(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<Box<RawValue>>, ApiError>> + Send;

    /// Every webhook endpoint of the account (`GET /v1/webhook_endpoints`, all pages), of
    /// the key's mode: a key lists only its own mode's endpoints.
    fn webhook_endpoints(&self) -> impl Future<Output = Result<RawObjects, ApiError>> + Send;

    /// Whether the key reads live data (else test mode).
    fn livemode(&self) -> bool;

    /// One invoice as Stripe holds it now; `None` if Stripe does not know it.
    fn invoice(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<Box<RawValue>>, ApiError>> + Send;
}

/// Where the backfill remembers how far it got: one cursor per account.
pub trait BackfillCursor: Send + Sync {
    fn cursor(
        &self,
        account: &Account,
    ) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;
    /// Moves the cursor to `to`, never back (two overlapping runs never move it back).
    fn advance(
        &self,
        account: &Account,
        to: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The connected accounts revguard has seen (Connect): those a backfill goes through.
pub trait AccountsSeen: Send + Sync {
    fn accounts_seen(&self) -> impl Future<Output = Result<Vec<Account>, StoreError>> + Send;
}

/// A post owed to an outside destination (a chat app, PagerDuty, one mail address), as
/// the delivery outbox holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwedPost {
    pub message_id: String,
    /// `slack`, `teams`, `pagerduty`, `email:<address>`…
    pub destination: String,
    /// What to post, as stored when it was owed.
    pub body: String,
    /// Attempts made so far.
    pub attempts: u32,
}

/// What one attempt at a post came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostOutcome {
    Delivered,
    /// Try again at this time (unix milliseconds).
    RetryAt {
        at_ms: i64,
        error: String,
    },
    /// Never again (a rejected URL, or the attempts are spent).
    GiveUp {
        error: String,
    },
}

/// Why a post failed, said without its URL, key or credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostFailure {
    pub error: String,
    /// Whether trying again may help (a timeout, 408, 429, 5xx).
    pub retry: bool,
    /// What the far end asked for (a 429's `Retry-After`).
    pub retry_after: Option<Duration>,
}

impl PostFailure {
    /// A destination's refusal, from its HTTP status and its answer (the first 200
    /// characters: Slack and Teams answer a short reason, PagerDuty a JSON one). Worth
    /// trying again on 408, 429 and 5xx; any other status says the post itself is wrong.
    pub fn http(status: u16, answer: &str, retry_after: Option<Duration>) -> Self {
        let reason: String = answer.chars().take(200).collect();
        Self {
            error: format!("HTTP {status}: {}", reason.trim()),
            retry: status == 408 || status == 429 || (500..600).contains(&status),
            retry_after,
        }
    }
}

/// The delivery outbox: posts owed to outside destinations, each tried until it is
/// delivered or given up.
pub trait PostOutbox: Send + Sync {
    /// Posts due at `now_ms`, oldest first, at most `limit`.
    fn due(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<OwedPost>, StoreError>> + Send;

    /// Records one attempt at a post.
    fn record(
        &self,
        post: &OwedPost,
        outcome: PostOutcome,
        now_ms: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The earliest next attempt of a post still owed, if any.
    fn next_attempt_ms(&self) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;
}

/// Posts to the outside world: one attempt at one owed post.
pub trait Poster: Send + Sync {
    fn post(&self, post: &OwedPost) -> impl Future<Output = Result<(), PostFailure>> + Send;
}
