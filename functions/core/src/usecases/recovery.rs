//! Recovery through Stripe's API, for what webhooks alone lose: a backfill of missed
//! events, and a reconciliation of subscriptions with Stripe's current objects.
//!
//! Both feed what they fetch through the ingress use case ([`Ingress::ingest_fetched`]),
//! so the worker applies it exactly as it applies a delivery: an event already in the
//! event log is a duplicate, and a reconciliation snapshot is ordered after everything
//! revguard holds, never before.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::domain::billing::objects::Subscription;
use crate::domain::billing::{EventKind, SubscriptionState, Version};
use crate::domain::event::MissingEvent;
use crate::domain::message::Via;
use crate::domain::message::{decompress, Payload, QueueMessage};
use crate::ports::{
    AlertStore, BillingStore, EventHistory, EventKey, EventLog, LogSelection, Queue, QueueError,
    ReadModel, StoreError,
};
use crate::usecases::ingest::{IngestError, IngestOutcome, Ingress};

/// The event types revguard acts on (see [`EventKind::of`]): what a backfill asks for.
pub const HANDLED_EVENT_TYPES: [&str; 25] = [
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "customer.subscription.trial_will_end",
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
    "invoice.payment_action_required",
    "invoice.upcoming",
    "invoice.marked_uncollectible",
    "invoice.finalization_failed",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "charge.succeeded",
    "charge.failed",
    "charge.refunded",
    "charge.dispute.created",
    "charge.dispute.closed",
    "radar.early_fraud_warning.created",
    "checkout.session.completed",
    "customer.updated",
    "customer.deleted",
    "payment_method.attached",
];

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

/// The completeness audit's window: events Stripe created in the half hour before the
/// grace, checked every detector run (15 minutes), so each is checked twice.
pub const AUDIT_WINDOW_SECS: i64 = 30 * 60;
/// Time a webhook has to arrive before its absence counts: Stripe delivers within
/// seconds, and retries a failed attempt within minutes.
pub const AUDIT_GRACE_SECS: i64 = 5 * 60;

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

/// After an important transition, Stripe's current object: the worker names the
/// subscriptions that moved to `past_due`, `unpaid` or `canceled`, or whose snapshots tied
/// on `created` (one-second resolution: which came last is a guess), each with the
/// `created` of what it applied.
pub trait Requery: Send + Sync {
    /// Fetches and enqueues each; how many were enqueued. Best effort: a failure is
    /// logged, and the daily reconciliation catches up.
    fn requery(
        &self,
        subscriptions: &[(String, i64)],
        now: i64,
    ) -> impl Future<Output = usize> + Send;
}

/// Off (the default): nothing is fetched.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRequery;

impl Requery for NoRequery {
    async fn requery(&self, _subscriptions: &[(String, i64)], _now: i64) -> usize {
        0
    }
}

/// A re-query that may be off: `None` fetches nothing.
impl<R: Requery> Requery for Option<R> {
    async fn requery(&self, subscriptions: &[(String, i64)], now: i64) -> usize {
        match self {
            Some(r) => r.requery(subscriptions, now).await,
            None => 0,
        }
    }
}

impl<R: Requery> Requery for Box<R> {
    async fn requery(&self, subscriptions: &[(String, i64)], now: i64) -> usize {
        (**self).requery(subscriptions, now).await
    }
}

/// Re-query through Stripe's API, applied through the ingress like a reconciliation fix.
pub struct StripeRequery<A, L, Q> {
    pub api: A,
    pub ingress: Ingress<L, Q>,
}

impl<A: StripeApi, L: EventLog, Q: Queue> Requery for StripeRequery<A, L, Q> {
    async fn requery(&self, subscriptions: &[(String, i64)], now: i64) -> usize {
        let mut enqueued = 0;
        for (id, applied_created) in subscriptions {
            let raw = match self.api.subscription(id).await {
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
            let event = snapshot_event(&value, id, canceled, livemode, created);
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

/// The id prefix of revguard's own snapshot events (reconciliation and re-query).
pub const SNAPSHOT_EVENT_PREFIX: &str = "evt_rgreconcile_";

/// What one completeness audit found.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct AuditOutcome {
    pub window_start: i64,
    pub window_end: i64,
    /// Events of the types revguard acts on that Stripe listed in the window.
    pub checked: usize,
    pub missing: Vec<MissingEvent>,
    /// The account's webhook endpoints of the key's mode (`None`: they could not be read,
    /// said in the log).
    pub endpoints: Option<Vec<Endpoint>>,
    /// The key's mode: the only one whose endpoints it sees.
    pub endpoints_livemode: bool,
    /// The URL revguard's endpoint delivers to, when known.
    pub endpoint_url: Option<String>,
}

/// How long Stripe's Events API lists an event (`GET /v1/events`: the last 30 days): a
/// missing event not backfilled by then is lost to revguard.
pub const EVENTS_RETENTION_SECS: i64 = 30 * 86_400;
/// Missing events become critical this long before the oldest leaves the Events API.
pub const MISSING_CRITICAL_WITHIN_SECS: i64 = 3 * 86_400;
/// The most missing events an open `events_missing` alert remembers (the oldest): its
/// state stays small (a DynamoDB item holds 400 KB, and each write pays per KB).
pub const MISSING_REMEMBERED: usize = 1_000;

/// The detector's evidence of delivery: Stripe's own list of events, compared with the
/// event log. Silence alone is weak evidence at night; a missing id is certain.
pub trait DeliveryAudit: Send + Sync {
    /// `None` when there is no audit (no Stripe key), or it could not run (then said in
    /// the log, and the detector falls back on silence). `remembered`: events an open
    /// alert found missing in earlier windows, looked up again in the event log; those
    /// still absent are in the outcome's `missing` with the window's.
    fn audit(
        &self,
        now: i64,
        remembered: &[MissingEvent],
    ) -> impl Future<Output = Option<AuditOutcome>> + Send;
}

/// No Stripe key: the detector judges delivery by silence alone.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAudit;

impl DeliveryAudit for NoAudit {
    async fn audit(&self, _now: i64, _remembered: &[MissingEvent]) -> Option<AuditOutcome> {
        None
    }
}

/// An audit that may be off (no Stripe key): `None` judges delivery by silence alone.
impl<A: DeliveryAudit> DeliveryAudit for Option<A> {
    async fn audit(&self, now: i64, remembered: &[MissingEvent]) -> Option<AuditOutcome> {
        match self {
            Some(audit) => audit.audit(now, remembered).await,
            None => None,
        }
    }
}

/// The audit over Stripe's API and the event log.
#[derive(Debug, Clone)]
pub struct StripeAudit<A, H> {
    pub api: A,
    pub log: H,
    /// The URL Stripe delivers revguard's webhooks to, when known: the endpoint audit then
    /// judges the endpoints with that URL (else every endpoint, together).
    pub endpoint_url: Option<String>,
}

/// A webhook endpoint as the audit judges it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Endpoint {
    pub id: String,
    pub url: String,
    /// `enabled` or `disabled` (Stripe disables an endpoint that keeps failing).
    pub status: String,
    /// The types Stripe sends it; `*` is every type.
    pub enabled_events: Vec<String>,
    /// The version its events are rendered at; `None`: the account's default.
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub livemode: bool,
}

/// The newest API version revguard's object types are checked against (Stripe renders
/// an endpoint's events at its `api_version`; a newer one may move what revguard reads).
pub const NEWEST_CHECKED_API_VERSION: &str = "2025-03-31";

/// Whether revguard reads events rendered at `version` (`YYYY-MM-DD`, with or without a
/// release name such as `.basil`): from Stripe's first dated versions up to
/// [`NEWEST_CHECKED_API_VERSION`].
pub fn api_version_is_read(version: &str) -> bool {
    let date = version.split('.').next().unwrap_or_default();
    let well_formed = date.len() == 10
        && date.char_indices().all(|(i, c)| {
            if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }
        });
    well_formed && date <= NEWEST_CHECKED_API_VERSION
}

/// What the webhook endpoints say of revguard's deliveries in one mode: an endpoint
/// Stripe disabled (critical), event types revguard acts on that none of them is sent
/// (a warning naming them: disputes not enabled is how dispute handling goes dead), an
/// `api_version` revguard does not read (a warning), and, with `url` known, no endpoint
/// sending there at all (critical). Each is a state, opened once while it lasts.
pub fn endpoint_findings(
    endpoints: &[Endpoint],
    url: Option<&str>,
    livemode: bool,
    now: i64,
) -> Vec<crate::domain::finding::Finding> {
    use crate::domain::finding::{Finding, Severity};
    let finding = |key: String, severity: Severity, explanation: String| Finding {
        signal: key.split(':').next().unwrap_or_default().to_owned(),
        metric: "webhook_endpoints".into(),
        key,
        livemode,
        window_start: now,
        window_end: now,
        observed: 1.0,
        expected: 0.0,
        spread: 0.0,
        ratio: 1.0,
        severity,
        explanation,
    };
    let normalized = |u: &str| u.trim().trim_end_matches('/').to_owned();
    let ours: Vec<&Endpoint> = endpoints
        .iter()
        .filter(|e| e.livemode == livemode)
        .filter(|e| url.is_none_or(|u| normalized(&e.url) == normalized(u)))
        .collect();
    let mut out = Vec::new();
    if ours.is_empty() {
        // Without a URL, an account with no endpoint in this mode may simply not use it.
        if let Some(url) = url {
            out.push(finding(
                "endpoint_missing".into(),
                Severity::Critical,
                format!("Webhooks: no webhook endpoint sends to {url}: add it in the Stripe Dashboard (Developers > Webhooks) with the events revguard acts on."),
            ));
        }
        return out;
    }
    for e in ours.iter().filter(|e| e.status == "disabled") {
        out.push(finding(
            format!("endpoint_disabled:{}", e.id),
            Severity::Critical,
            format!("Webhooks: Stripe disabled the endpoint {} ({}): nothing reaches revguard through it. Fix what made its deliveries fail, enable it again (Developers > Webhooks), then run a backfill.", e.id, e.url),
        ));
    }
    let enabled: Vec<&&Endpoint> = ours.iter().filter(|e| e.status != "disabled").collect();
    let sent = |t: &str| {
        enabled
            .iter()
            .any(|e| e.enabled_events.iter().any(|s| s == "*" || s == t))
    };
    let unsent: Vec<&str> = HANDLED_EVENT_TYPES
        .iter()
        .copied()
        .filter(|t| !sent(t))
        .collect();
    if !enabled.is_empty() && !unsent.is_empty() {
        out.push(finding(
            "endpoint_events".into(),
            Severity::Warning,
            format!("Webhooks: no enabled endpoint is sent {} (of the {} types revguard acts on): revguard never hears of them. Add them to the endpoint (Developers > Webhooks > Update details).", unsent.join(", "), HANDLED_EVENT_TYPES.len()),
        ));
    }
    for e in &enabled {
        if let Some(version) = e.api_version.as_deref().filter(|v| !api_version_is_read(v)) {
            out.push(finding(
                format!("endpoint_api_version:{}", e.id),
                Severity::Warning,
                format!("Webhooks: the endpoint {} renders its events at API version {version}, newer than revguard has been checked against ({NEWEST_CHECKED_API_VERSION}): objects may have moved. Check revguard's release notes, or pin the endpoint to an older version.", e.id),
            ));
        }
    }
    out
}

impl<A: StripeApi, H: EventHistory> StripeAudit<A, H> {
    async fn run(
        &self,
        now: i64,
        remembered: &[MissingEvent],
    ) -> Result<AuditOutcome, RecoveryError> {
        let (window_start, window_end) = (
            now - AUDIT_GRACE_SECS - AUDIT_WINDOW_SECS,
            now - AUDIT_GRACE_SECS,
        );
        let listed = self
            .api
            .events(&EventsQuery {
                since: window_start,
                until: Some(window_end),
                undelivered_only: false,
                types: HANDLED_EVENT_TYPES.iter().map(|t| t.to_string()).collect(),
            })
            .await?;
        #[derive(serde::Deserialize)]
        struct Head {
            id: String,
            #[serde(rename = "type")]
            event_type: String,
            created: i64,
            #[serde(default)]
            livemode: bool,
        }
        let mut heads = Vec::new();
        for raw in &listed {
            let head: Head =
                serde_json::from_str(raw.get()).map_err(|e| ApiError::Malformed(e.to_string()))?;
            // The API may not have filtered by type (or by time).
            if EventKind::of(&head.event_type) != EventKind::Unknown
                && (window_start..window_end).contains(&head.created)
            {
                heads.push(head);
            }
        }
        let listed: BTreeSet<&str> = heads.iter().map(|h| h.id.as_str()).collect();
        // The window's events, then those earlier windows found missing (the window has
        // moved on from them; only the event log says whether a backfill applied them).
        let candidates: Vec<MissingEvent> = heads
            .iter()
            .map(|h| MissingEvent {
                id: h.id.clone(),
                event_type: h.event_type.clone(),
                created: h.created,
                livemode: h.livemode,
            })
            .chain(
                remembered
                    .iter()
                    .filter(|m| !listed.contains(m.id.as_str()))
                    .filter(|m| m.created > now - EVENTS_RETENTION_SECS)
                    .cloned(),
            )
            .collect();
        let mut missing = Vec::new();
        for chunk in candidates.chunks(100) {
            let ids: Vec<String> = chunk.iter().map(|m| m.id.clone()).collect();
            let known = self.log.known(&ids).await?;
            missing.extend(chunk.iter().filter(|m| !known.contains(&m.id)).cloned());
        }
        Ok(AuditOutcome {
            window_start,
            window_end,
            checked: heads.len(),
            missing,
            endpoints: self.endpoints().await,
            endpoints_livemode: self.api.livemode(),
            endpoint_url: self.endpoint_url.clone(),
        })
    }

    /// The account's webhook endpoints; `None` (said in the log) when they cannot be read,
    /// for instance with a restricted key without Read on Webhook Endpoints.
    async fn endpoints(&self) -> Option<Vec<Endpoint>> {
        let listed = match self.api.webhook_endpoints().await {
            Ok(listed) => listed,
            Err(e) => {
                tracing::warn!(error = %e, "the webhook endpoints could not be read; their audit is skipped");
                return None;
            }
        };
        let mut out = Vec::with_capacity(listed.len());
        for raw in &listed {
            match serde_json::from_str::<Endpoint>(raw.get()) {
                Ok(e) => out.push(e),
                Err(e) => {
                    tracing::warn!(error = %e, "a webhook endpoint revguard cannot read; their audit is skipped");
                    return None;
                }
            }
        }
        Some(out)
    }
}

impl<A: StripeApi, H: EventHistory> DeliveryAudit for StripeAudit<A, H> {
    async fn audit(&self, now: i64, remembered: &[MissingEvent]) -> Option<AuditOutcome> {
        match self.run(now, remembered).await {
            Ok(outcome) => Some(outcome),
            Err(e) => {
                tracing::warn!(error = %crate::domain::error::error_chain(&e), "the completeness audit could not run; judging delivery by silence");
                None
            }
        }
    }
}

impl AuditOutcome {
    /// Everything the audit found in one mode: missing events, and what the webhook
    /// endpoints say.
    pub fn findings(&self, livemode: bool, now: i64) -> Vec<crate::domain::finding::Finding> {
        let mut out: Vec<crate::domain::finding::Finding> =
            self.finding(livemode, now).into_iter().collect();
        // The other mode's endpoints are out of the key's sight, not missing.
        if let (Some(endpoints), true) = (&self.endpoints, livemode == self.endpoints_livemode) {
            out.extend(endpoint_findings(
                endpoints,
                self.endpoint_url.as_deref(),
                livemode,
                now,
            ));
        }
        out
    }

    /// The finding of one mode's missing events (this window's and those remembered), if
    /// any.
    pub fn finding(&self, livemode: bool, now: i64) -> Option<crate::domain::finding::Finding> {
        let missing: Vec<MissingEvent> = self
            .missing
            .iter()
            .filter(|m| m.livemode == livemode)
            .cloned()
            .collect();
        missing_finding(
            &missing,
            Some(AuditWindow {
                start: self.window_start,
                end: self.window_end,
                checked: self.checked,
            }),
            livemode,
            now,
        )
    }
}

/// The window one audit listed, and how many events of the handled types it held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditWindow {
    pub start: i64,
    pub end: i64,
    pub checked: usize,
}

/// The events an `events_missing` alert remembers: those still within the Events API's
/// retention (a backfill can fetch nothing older), the oldest first, at most
/// [`MISSING_REMEMBERED`].
pub fn to_remember(missing: &[MissingEvent], now: i64) -> Vec<MissingEvent> {
    let mut out: Vec<MissingEvent> = missing
        .iter()
        .filter(|m| m.created > now - EVENTS_RETENTION_SECS)
        .cloned()
        .collect();
    out.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
    out.dedup_by(|a, b| a.id == b.id);
    out.truncate(MISSING_REMEMBERED);
    out
}

/// "4 days 2 h", "7 h", "under an hour": time left, for people.
fn time_left(secs: i64) -> String {
    if secs <= 0 {
        return "no time".to_owned();
    }
    let (days, hours) = (secs / 86_400, (secs % 86_400) / 3600);
    let days = match days {
        0 => String::new(),
        1 => "1 day".to_owned(),
        d => format!("{d} days"),
    };
    match (days.is_empty(), hours) {
        (true, 0) => "under an hour".to_owned(),
        (true, h) => format!("{h} h"),
        (false, 0) => days,
        (false, h) => format!("{days} {h} h"),
    }
}

/// One mode's missing events as a finding: how many, since when, and how long until the
/// oldest leaves the Events API's 30-day retention, after which no backfill can fetch it.
/// A warning while there is time (the hourly backfill, or Stripe's own retries, usually
/// close the gap unattended); critical with [`MISSING_CRITICAL_WITHIN_SECS`] or less
/// left. `window`: the audit that ran this time (`None`: it could not, and the events are
/// those remembered, not looked up again).
pub fn missing_finding(
    missing: &[MissingEvent],
    window: Option<AuditWindow>,
    livemode: bool,
    now: i64,
) -> Option<crate::domain::finding::Finding> {
    let missing = to_remember(missing, now);
    let oldest = missing.first()?.created;
    let deadline = oldest + EVENTS_RETENTION_SECS;
    let left = deadline - now;
    let severity = if left <= MISSING_CRITICAL_WITHIN_SECS {
        crate::domain::finding::Severity::Critical
    } else {
        crate::domain::finding::Severity::Warning
    };
    let examples: Vec<&str> = missing.iter().take(3).map(|m| m.id.as_str()).collect();
    let recent = match window {
        Some(w) => {
            let n = missing
                .iter()
                .filter(|m| (w.start..w.end).contains(&m.created))
                .count();
            format!(
                "{n} of the {} created between {} and {}",
                w.checked,
                crate::domain::time::hhmm(w.start),
                crate::domain::time::hhmm(w.end)
            )
        }
        None => "Stripe could not be asked this time".to_owned(),
    };
    let urgency = if severity == crate::domain::finding::Severity::Critical {
        " Backfill now: after that only `revguard reconcile --fix` mends the subscriptions, and the events themselves are lost."
    } else {
        ""
    };
    Some(crate::domain::finding::Finding {
        key: "events_missing".into(),
        signal: "events_missing".into(),
        metric: "events_missing".into(),
        livemode,
        window_start: oldest,
        window_end: window.map_or(now, |w| w.end),
        observed: missing.len() as f64,
        expected: 0.0,
        spread: 0.0,
        ratio: missing.len() as f64,
        severity,
        explanation: format!(
            "Webhooks: {} events Stripe created since {} are not in revguard's event log ({recent}; e.g. {}): webhooks are failing or not sent. A backfill applies them while Stripe lists them: the oldest leaves the Events API's 30-day window in {} ({}).{urgency}",
            if missing.len() >= MISSING_REMEMBERED { format!("{MISSING_REMEMBERED} or more") } else { missing.len().to_string() },
            crate::domain::time::datetime(oldest),
            examples.join(", "),
            time_left(left),
            crate::domain::time::datetime(deadline),
        ),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A backfill starts this long before the newest event the last one listed: events of
/// that second may have been listed after it.
pub const CURSOR_OVERLAP_SECS: i64 = 600;
/// The first backfill (no cursor, no `--since`): Stripe's retry window in live mode.
pub const FIRST_BACKFILL_SECS: i64 = 3 * 86_400;

/// Where a backfill starts without an explicit time, from the stored cursor.
pub fn backfill_since(cursor: Option<i64>, now: i64) -> i64 {
    match cursor {
        Some(cursor) => cursor - CURSOR_OVERLAP_SECS,
        None => now - FIRST_BACKFILL_SECS,
    }
}

/// The ingress for events revguard fetched from Stripe itself: they are never signed, so
/// its secret verifies nothing (one placeholder, here).
pub fn fetched_ingress<L: EventLog, Q: Queue>(log: L, queue: Q) -> Ingress<L, Q> {
    let unused =
        crate::domain::signature::WebhookSecret::new("whsec_fetched_events_are_not_signed")
            .expect("a well-formed secret");
    Ingress::new(
        log,
        queue,
        crate::usecases::ingest::IngestConfig::new(crate::domain::signature::SecretSet::single(
            unused,
        )),
    )
}

/// What a backfill did, printed as one JSON line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BackfillSummary {
    /// Events Stripe listed in the window.
    pub listed: usize,
    /// New to revguard: recorded and enqueued.
    pub accepted: usize,
    /// In the event log but never confirmed enqueued: enqueued now.
    pub requeued: usize,
    /// Already in the event log.
    pub duplicates: usize,
    /// Of a type revguard does not act on (listed because the API could not filter).
    pub ignored: usize,
    /// Listed but refused (not an event revguard can read, or of a refused mode).
    pub refused: usize,
    /// The newest `created` listed: where the next run may start.
    pub newest_created: Option<i64>,
    /// Windows of [`BACKFILL_WINDOW_SECS`] gone through (a backfill from the cursor).
    pub windows: usize,
    /// The end of the last window gone through.
    pub reached: Option<i64>,
    /// Whether the run reached now (false: its time ran out; the next resumes).
    pub complete: bool,
}

impl BackfillSummary {
    fn add(&mut self, other: &BackfillSummary) {
        self.listed += other.listed;
        self.accepted += other.accepted;
        self.requeued += other.requeued;
        self.duplicates += other.duplicates;
        self.ignored += other.ignored;
        self.refused += other.refused;
        self.newest_created = self.newest_created.max(other.newest_created);
    }
}

/// Lists the events of the window a page at a time (at most one page held, whatever
/// the window holds) and feeds each through the ingress as it comes: newest first within
/// a page, as Stripe lists them (the worker applies any order). Stops at the first
/// storage or queue failure (nothing is lost: the next run lists the same window again).
pub async fn backfill<A, L, Q>(
    api: &A,
    ingress: &Ingress<L, Q>,
    query: &EventsQuery,
    now: i64,
) -> Result<BackfillSummary, RecoveryError>
where
    A: StripeApi,
    L: EventLog,
    Q: Queue,
{
    let mut summary = backfill_while(api, ingress, query, now, &|| true).await?;
    summary.complete = true;
    Ok(summary)
}

/// [`backfill`], asking `keep_going` before each page: `complete: false` when it stopped
/// before the window's last page.
async fn backfill_while<A, L, Q>(
    api: &A,
    ingress: &Ingress<L, Q>,
    query: &EventsQuery,
    now: i64,
    keep_going: &(dyn Fn() -> bool + Send + Sync),
) -> Result<BackfillSummary, RecoveryError>
where
    A: StripeApi,
    L: EventLog,
    Q: Queue,
{
    let mut summary = BackfillSummary::default();
    let created = |raw: &RawValue| -> i64 {
        #[derive(serde::Deserialize)]
        struct Created {
            #[serde(default)]
            created: i64,
        }
        serde_json::from_str::<Created>(raw.get()).map_or(0, |c| c.created)
    };
    let mut at = PageCursor::default();
    loop {
        let page = api.events_page(query, &at).await?;
        summary.listed += page.data.len();
        for raw in page.data {
            summary.newest_created = summary.newest_created.max(Some(created(&raw)));
            let event_type = event_type_of(&raw);
            if EventKind::of(&event_type) == EventKind::Unknown {
                summary.ignored += 1;
                continue;
            }
            match ingress
                .ingest_fetched(raw.get().as_bytes(), Via::Backfill, now)
                .await
            {
                Ok(IngestOutcome::Accepted { .. }) => summary.accepted += 1,
                Ok(IngestOutcome::Requeued { .. }) => summary.requeued += 1,
                Ok(IngestOutcome::Duplicate { .. }) => summary.duplicates += 1,
                Err(e) if e.is_retryable() => return Err(e.into()),
                Err(e) => {
                    tracing::warn!(error = %e, event_type, "a listed event was refused");
                    summary.refused += 1;
                }
            }
        }
        match page.next {
            Some(next) if keep_going() => at = next,
            Some(_) => return Ok(summary),
            None => {
                summary.complete = true;
                return Ok(summary);
            }
        }
    }
}

/// The windows a backfill from the cursor goes through, an hour each: the cursor moves
/// after each, so a run that stops (out of time, Stripe or the store failing) resumes
/// from the last window it finished instead of listing the whole span again.
pub const BACKFILL_WINDOW_SECS: i64 = 3600;

/// Where the backfill remembers how far it got.
pub trait BackfillCursor: Send + Sync {
    fn cursor(&self) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;
    /// Moves the cursor to `to`, never back (two overlapping runs never move it back).
    fn advance(&self, to: i64) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A backfill from `since` (else where the cursor says) to `now`, a window of
/// [`BACKFILL_WINDOW_SECS`] at a time, each a page at a time. After each window the
/// cursor moves to the newest event it listed. Before each window `keep_going` is asked
/// (the function's time left): a run that stops early says so (`complete: false`), and
/// the next run resumes there. `query` gives the types and delivery filter; its times
/// are the windows'. With `query.until`, a window of the past is listed in one go, and
/// the cursor stays where it is.
pub async fn backfill_from_cursor<A, L, Q, C>(
    api: &A,
    ingress: &Ingress<L, Q>,
    cursor: &C,
    query: &EventsQuery,
    since: Option<i64>,
    now: i64,
    keep_going: &(dyn Fn() -> bool + Send + Sync),
) -> Result<(i64, BackfillSummary), RecoveryError>
where
    A: StripeApi,
    L: EventLog,
    Q: Queue,
    C: BackfillCursor,
{
    let since = match since {
        Some(t) => t,
        None => backfill_since(cursor.cursor().await?, now),
    };
    if query.until.is_some() {
        // A window of the past, in one go: the cursor stays where it is.
        let window = EventsQuery {
            since,
            ..query.clone()
        };
        return Ok((
            since,
            backfill_while(api, ingress, &window, now, keep_going).await?,
        ));
    }
    let mut total = BackfillSummary::default();
    let mut start = since;
    while start < now {
        if !keep_going() {
            return Ok((since, total));
        }
        let end = (start + BACKFILL_WINDOW_SECS).min(now);
        let window = EventsQuery {
            since: start,
            until: (end < now).then_some(end),
            ..query.clone()
        };
        let summary = backfill_while(api, ingress, &window, now, keep_going).await?;
        total.add(&summary);
        if !summary.complete {
            // Stopped within the window: its pages come newest first, so the cursor
            // stays where the window starts, and the next run lists it again.
            return Ok((since, total));
        }
        cursor
            .advance(summary.newest_created.unwrap_or(start).max(start))
            .await?;
        total.windows += 1;
        total.reached = Some(end);
        start = end;
    }
    total.complete = true;
    Ok((since, total))
}

fn event_type_of(raw: &RawValue) -> String {
    #[derive(serde::Deserialize)]
    struct Typed {
        #[serde(rename = "type", default)]
        event_type: String,
    }
    serde_json::from_str::<Typed>(raw.get()).map_or_else(|_| String::new(), |t| t.event_type)
}

/// One field on which revguard and Stripe disagree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldDrift {
    pub field: &'static str,
    pub stripe: Value,
    pub revguard: Value,
}

/// A subscription revguard holds differently from Stripe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drift {
    pub subscription: String,
    pub customer: Option<String>,
    pub fields: Vec<FieldDrift>,
}

/// An open dunning case whose invoice Stripe holds otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseDrift {
    pub invoice: String,
    pub customer: Option<String>,
    /// revguard's stage.
    pub stage: Option<String>,
    /// The invoice's status at Stripe (`paid`, `void`, `uncollectible`), or `missing`.
    pub stripe_status: String,
}

/// What a reconciliation found, and fixed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReconcileReport {
    /// Subscriptions Stripe listed.
    pub checked: usize,
    /// At Stripe, unknown to revguard.
    pub missing: Vec<String>,
    /// Known to revguard (and not ended there), absent at Stripe.
    pub extra: Vec<String>,
    pub drifted: Vec<Drift>,
    /// revguard's open dunning cases, each compared with its invoice.
    pub cases_checked: usize,
    /// Open in revguard, settled (or unknown) at Stripe.
    pub cases_drifted: Vec<CaseDrift>,
    /// Snapshots of Stripe's objects enqueued to repair the above.
    pub fixed: usize,
}

impl ReconcileReport {
    /// The one-line summary: counts, and with `--fix` the fixes.
    pub fn summary(&self, fix: bool) -> Value {
        let mut out = serde_json::json!({
            "checked": self.checked,
            "missing": self.missing.len(),
            "extra": self.extra.len(),
            "drifted": self.drifted.len(),
            "cases_checked": self.cases_checked,
            "cases_drifted": self.cases_drifted.len(),
        });
        if fix {
            out["fixed"] = self.fixed.into();
        }
        out
    }
}

/// The fields compared, as revguard keeps them.
fn compared(state: &SubscriptionState) -> Vec<(&'static str, Value)> {
    let items: Vec<Value> = state
        .items
        .iter()
        .map(|i| serde_json::json!({ "price": i.price_id, "quantity": i.quantity }))
        .collect();
    vec![
        ("status", state.status.clone().into()),
        ("items", items.into()),
        ("mrr", state.mrr.into()),
        ("current_period_end", state.current_period_end.into()),
        ("cancel_at_period_end", state.cancel_at_period_end.into()),
    ]
}

impl ReconcileReport {
    /// Subscriptions and cases that differ from Stripe.
    pub fn differing(&self) -> usize {
        self.missing.len() + self.drifted.len() + self.extra.len() + self.cases_drifted.len()
    }
}

/// Compares Stripe's subscriptions with revguard's, and revguard's open dunning cases
/// with their invoices. With `fix`, every missing or drifted subscription gets Stripe's
/// current object as a snapshot newer than anything revguard holds, and a case whose
/// invoice Stripe holds as paid (or uncollectible) gets that invoice as `invoice.paid`
/// (or `invoice.marked_uncollectible`), so that once the worker has applied them revguard
/// answers what Stripe says. A voided invoice is reported only: revguard has no event
/// for it.
pub async fn reconcile<A, R, L, Q>(
    api: &A,
    read: &R,
    fix: Option<&Ingress<L, Q>>,
    policy: &crate::domain::billing::BillingPolicy,
    now: i64,
) -> Result<ReconcileReport, RecoveryError>
where
    A: StripeApi,
    R: ReadModel,
    L: EventLog,
    Q: Queue,
{
    let mut report = ReconcileReport::default();
    // Only the ids are kept across pages (to find what revguard has and Stripe has not).
    let mut at_stripe = BTreeSet::new();
    let mut at = PageCursor::default();
    loop {
        let page = api.subscriptions_page(&at).await?;
        report.checked += page.data.len();
        for raw in &page.data {
            let value: Value =
                serde_json::from_str(raw.get()).map_err(|e| ApiError::Malformed(e.to_string()))?;
            let sub: Subscription = serde_json::from_value(value.clone())
                .map_err(|e| ApiError::Malformed(e.to_string()))?;
            let livemode = value["livemode"].as_bool().unwrap_or(false);
            let canceled = sub.status.as_deref() == Some("canceled");
            let expected =
                SubscriptionState::from_stripe(&sub, livemode, Version::new(0, ""), canceled);
            let stored = read.subscription(&sub.id).await?;
            let needs_fix = match &stored {
                None => {
                    report.missing.push(sub.id.clone());
                    true
                }
                Some(ours) => {
                    let fields: Vec<FieldDrift> = compared(&expected)
                        .into_iter()
                        .zip(compared(ours))
                        .filter(|((_, theirs), (_, mine))| theirs != mine)
                        .map(|((field, stripe), (_, revguard))| FieldDrift {
                            field,
                            stripe,
                            revguard,
                        })
                        .collect();
                    let drifted = !fields.is_empty();
                    if drifted {
                        report.drifted.push(Drift {
                            subscription: sub.id.clone(),
                            customer: expected.customer.clone(),
                            fields,
                        });
                    }
                    drifted
                }
            };
            at_stripe.insert(sub.id.clone());
            if let (true, Some(ingress)) = (needs_fix, fix) {
                // Newer than what revguard holds, and than any event delivered so far.
                let created = stored
                    .as_ref()
                    .map_or(now, |s| now.max(s.version.created + 1));
                let event = snapshot_event(&value, &sub.id, canceled, livemode, created);
                ingress
                    .ingest_fetched(event.as_bytes(), Via::Reconcile, now)
                    .await?;
                report.fixed += 1;
            }
        }
        match page.next {
            Some(next) => at = next,
            None => break,
        }
    }
    for id in read.subscription_ids().await? {
        if at_stripe.contains(&id) {
            continue;
        }
        if let Some(ours) = read.subscription(&id).await? {
            if !ours.deleted && ours.status != "canceled" {
                report.extra.push(id);
            }
        }
    }
    let open = read.dunning_cases(Some("open"), policy).await?;
    report.cases_checked = open.len();
    for view in open {
        let case = &view.case;
        let invoice = api.invoice(&case.invoice_id).await?;
        let value: Option<Value> = invoice
            .map(|raw| serde_json::from_str(raw.get()))
            .transpose()
            .map_err(|e| ApiError::Malformed(e.to_string()))?;
        let status = value
            .as_ref()
            .map_or("missing", |v| v["status"].as_str().unwrap_or("unknown"))
            .to_owned();
        let event_type = match status.as_str() {
            "open" | "draft" | "unknown" => continue,
            "paid" => Some("invoice.paid"),
            "uncollectible" => Some("invoice.marked_uncollectible"),
            _ => None,
        };
        report.cases_drifted.push(CaseDrift {
            invoice: case.invoice_id.clone(),
            customer: case.customer.clone(),
            stage: view.stage.clone(),
            stripe_status: status,
        });
        if let (Some(ingress), Some(event_type), Some(object)) = (fix, event_type, &value) {
            let event = serde_json::json!({
                "id": format!("{SNAPSHOT_EVENT_PREFIX}{}_{now}", case.invoice_id),
                "object": "event",
                "type": event_type,
                "created": now,
                "livemode": case.livemode,
                "data": { "object": object },
            })
            .to_string();
            ingress
                .ingest_fetched(event.as_bytes(), Via::Reconcile, now)
                .await?;
            report.fixed += 1;
        }
    }
    Ok(report)
}

/// Stripe's object as a subscription event: `deleted` for a canceled one (final), else
/// `updated`. Its id is revguard's own, unique per subscription and moment.
fn snapshot_event(
    object: &Value,
    id: &str,
    canceled: bool,
    livemode: bool,
    created: i64,
) -> String {
    let event_type = if canceled {
        "customer.subscription.deleted"
    } else {
        "customer.subscription.updated"
    };
    serde_json::json!({
        "id": format!("{SNAPSHOT_EVENT_PREFIX}{id}_{created}"),
        "object": "event",
        "type": event_type,
        "created": created,
        "livemode": livemode,
        "data": { "object": object },
    })
    .to_string()
}

/// How a scheduled or operator reconciliation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileSettings {
    /// Apply Stripe's objects to what drifted.
    pub fix: bool,
    /// Subscriptions and cases differing from Stripe from which the run raises an alert
    /// (0: never).
    pub drift_alert_threshold: usize,
}

/// A reconciliation (see [`reconcile`]) whose drift, at or over the threshold, leaves a
/// `reconcile_drift` finding for the detector's next run, which opens the alert and
/// publishes it once, as it does the worker's event-level findings. Both backends run
/// this: the recovery function on AWS and `revguard reconcile`.
pub async fn reconcile_and_alert<A, R, L, Q, S>(
    api: &A,
    read: &R,
    ingress: &Ingress<L, Q>,
    alerts: &S,
    policy: &crate::domain::billing::BillingPolicy,
    settings: ReconcileSettings,
    now: i64,
) -> Result<ReconcileReport, RecoveryError>
where
    A: StripeApi,
    R: ReadModel,
    L: EventLog,
    Q: Queue,
    S: AlertStore,
{
    let fix = settings.fix.then_some(ingress);
    let report = reconcile(api, read, fix, policy, now).await?;
    for d in &report.drifted {
        tracing::warn!(subscription = %d.subscription, fields = ?d.fields.iter().map(|f| f.field).collect::<Vec<_>>(), "drift from Stripe");
    }
    let differing = report.differing();
    if settings.drift_alert_threshold > 0 && differing >= settings.drift_alert_threshold {
        alerts
            .add_pending(&drift_finding(&report, api.livemode(), now))
            .await?;
    }
    Ok(report)
}

/// The finding a drifted reconciliation leaves.
pub fn drift_finding(
    report: &ReconcileReport,
    livemode: bool,
    now: i64,
) -> crate::domain::finding::Finding {
    let differing = report.differing();
    let examples: Vec<&str> = report
        .missing
        .iter()
        .chain(report.drifted.iter().map(|d| &d.subscription))
        .chain(&report.extra)
        .chain(report.cases_drifted.iter().map(|c| &c.invoice))
        .take(3)
        .map(String::as_str)
        .collect();
    crate::domain::finding::Finding {
        key: "reconcile_drift".into(),
        signal: "reconcile_drift".into(),
        metric: "subscriptions_drifted".into(),
        livemode,
        window_start: now,
        window_end: now,
        observed: differing as f64,
        expected: 0.0,
        spread: 0.0,
        ratio: differing as f64,
        severity: crate::domain::finding::Severity::Warning,
        explanation: format!(
            "Reconciliation: {differing} differed from Stripe ({} of {} subscriptions missing, {} drifted, {} only in revguard; {} of {} open dunning cases settled at Stripe; e.g. {}); {} fixed.",
            report.missing.len(),
            report.checked,
            report.drifted.len(),
            report.extra.len(),
            report.cases_drifted.len(),
            report.cases_checked,
            examples.join(", "),
            report.fixed
        ),
    }
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplaySummary {
    /// Entries of the event log the selection matched.
    pub matched: usize,
    /// Sent to the queue again.
    pub enqueued: usize,
    /// Applied already: the worker would count them as duplicates, so they are not sent.
    pub already_applied: usize,
    /// Logged before payloads were kept, or whose payload is gone: cannot be sent.
    pub without_payload: usize,
}

/// The most entries one replay reads.
pub const REPLAY_LIMIT: usize = 100_000;

/// Sends logged events through the queue again, as they were received. An event the
/// worker applied already would be a duplicate (its effects are counted once, ever), so
/// it is reported and not sent: a replay applies what never was (a dead letter, a lost
/// message). A subscription applied wrongly is mended by `reconcile --fix`.
pub async fn replay<H, B, Q>(
    history: &H,
    billing: &B,
    queue: &Q,
    selection: &LogSelection,
) -> Result<ReplaySummary, RecoveryError>
where
    H: EventHistory,
    B: BillingStore,
    Q: Queue,
{
    let logged = history.logged(selection, REPLAY_LIMIT).await?;
    let mut summary = ReplaySummary {
        matched: logged.len(),
        ..Default::default()
    };
    for chunk in logged.chunks(100) {
        // The payloads first: an event about a charge keeps its marker on the charge.
        // (A payload that does not decompress is an error if the event is to be sent; such an
        // event about a charge is looked for by its marker item only.)
        let raws: Vec<Option<Result<Vec<u8>, String>>> = chunk
            .iter()
            .map(|r| {
                r.stored_payload
                    .as_ref()
                    .map(|stored| decompress(stored).map_err(|e| e.to_string()))
            })
            .collect();
        let keys: Vec<EventKey> = chunk
            .iter()
            .zip(&raws)
            .map(|(r, raw)| EventKey {
                id: r.event_id.clone(),
                charge: match raw {
                    Some(Ok(raw)) => {
                        crate::domain::billing::marker_charge_of_payload(&r.event_type, raw)
                    }
                    _ => None,
                },
            })
            .collect();
        let applied = billing.applied(&keys).await?;
        for (record, raw) in chunk.iter().zip(raws) {
            if applied.contains(&record.event_id) {
                summary.already_applied += 1;
                continue;
            }
            let Some(raw) = raw else {
                summary.without_payload += 1;
                continue;
            };
            let raw = raw.map_err(StoreError::Corrupt)?;
            let fits = QueueMessage::inline_size(&record.event_id, &record.event_type, raw.len())
                <= queue.max_message_bytes();
            let payload = if fits {
                Payload::Inline(String::from_utf8_lossy(&raw).into_owned())
            } else {
                Payload::InEventLog
            };
            queue
                .send(&QueueMessage {
                    event_id: record.event_id.clone(),
                    event_type: record.event_type.clone(),
                    livemode: record.livemode,
                    created: record.created,
                    received_at: record.received_at,
                    payload,
                    via: Via::Replay,
                })
                .await?;
            summary.enqueued += 1;
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(
        id: &str,
        url: &str,
        status: &str,
        events: &[&str],
        version: Option<&str>,
    ) -> Endpoint {
        Endpoint {
            id: id.into(),
            url: url.into(),
            status: status.into(),
            enabled_events: events.iter().map(|e| e.to_string()).collect(),
            api_version: version.map(str::to_owned),
            livemode: true,
        }
    }

    fn keys(findings: &[crate::domain::finding::Finding]) -> Vec<(String, &'static str)> {
        findings
            .iter()
            .map(|f| (f.key.clone(), f.severity.as_str()))
            .collect()
    }

    #[test]
    fn an_endpoint_without_dispute_events_is_a_warning_naming_them() {
        let without_disputes: Vec<&str> = HANDLED_EVENT_TYPES
            .iter()
            .copied()
            .filter(|t| !t.starts_with("charge.dispute"))
            .collect();
        let ours = endpoint(
            "we_1",
            "https://rg.example/webhook",
            "enabled",
            &without_disputes,
            None,
        );
        let found = endpoint_findings(&[ours], Some("https://rg.example/webhook/"), true, 100);
        assert_eq!(keys(&found), [("endpoint_events".to_owned(), "warning")]);
        assert!(
            found[0]
                .explanation
                .contains("charge.dispute.created, charge.dispute.closed"),
            "{}",
            found[0].explanation
        );
        // Every type ("*"), or the types spread over two endpoints: nothing to say.
        let all = endpoint(
            "we_2",
            "https://rg.example/webhook",
            "enabled",
            &["*"],
            Some("2024-06-20"),
        );
        assert!(endpoint_findings(&[all], None, true, 100).is_empty());
        let disputes = endpoint(
            "we_3",
            "https://other.example/hook",
            "enabled",
            &["charge.dispute.created", "charge.dispute.closed"],
            None,
        );
        let ours = endpoint(
            "we_1",
            "https://rg.example/webhook",
            "enabled",
            &without_disputes,
            None,
        );
        assert!(endpoint_findings(&[ours.clone(), disputes.clone()], None, true, 100).is_empty());
        // With revguard's URL known, another endpoint's types do not count.
        assert_eq!(
            keys(&endpoint_findings(
                &[ours, disputes],
                Some("https://rg.example/webhook"),
                true,
                100
            )),
            [("endpoint_events".to_owned(), "warning")]
        );
    }

    #[test]
    fn a_disabled_endpoint_is_critical_and_a_missing_one_too_when_the_url_is_known() {
        let disabled = endpoint(
            "we_1",
            "https://rg.example/webhook",
            "disabled",
            &["*"],
            None,
        );
        assert_eq!(
            keys(&endpoint_findings(&[disabled], None, true, 100)),
            [("endpoint_disabled:we_1".to_owned(), "critical")]
        );
        let elsewhere = endpoint(
            "we_2",
            "https://other.example/hook",
            "enabled",
            &["*"],
            None,
        );
        assert_eq!(
            keys(&endpoint_findings(
                std::slice::from_ref(&elsewhere),
                Some("https://rg.example/webhook"),
                true,
                100
            )),
            [("endpoint_missing".to_owned(), "critical")]
        );
        // Another mode's endpoints are that mode's business.
        assert!(endpoint_findings(&[elsewhere], None, false, 100).is_empty());
    }

    #[test]
    fn a_keys_other_mode_is_out_of_sight_not_missing() {
        let outcome = AuditOutcome {
            endpoints: Some(vec![endpoint(
                "we_1",
                "https://rg.example/webhook",
                "enabled",
                &["*"],
                None,
            )]),
            endpoints_livemode: true,
            endpoint_url: Some("https://rg.example/webhook".into()),
            ..Default::default()
        };
        assert!(outcome.findings(true, 100).is_empty());
        assert!(outcome.findings(false, 100).is_empty());
    }

    #[test]
    fn an_api_version_newer_than_revguard_reads_is_a_warning() {
        assert!(api_version_is_read("2017-08-15"));
        assert!(api_version_is_read("2025-03-31.basil"));
        assert!(!api_version_is_read("2025-09-30.clover"));
        assert!(!api_version_is_read("next"));
        let newer = endpoint(
            "we_1",
            "https://rg.example/webhook",
            "enabled",
            &["*"],
            Some("2025-09-30.clover"),
        );
        assert_eq!(
            keys(&endpoint_findings(&[newer], None, true, 100)),
            [("endpoint_api_version:we_1".to_owned(), "warning")]
        );
    }

    #[test]
    fn time_left_reads_in_days_and_hours() {
        assert_eq!(time_left(29 * 86_400 + 23 * 3600 + 59), "29 days 23 h");
        assert_eq!(time_left(3 * 86_400), "3 days");
        assert_eq!(time_left(86_400 + 3600), "1 day 1 h");
        assert_eq!(time_left(7 * 3600 + 1), "7 h");
        assert_eq!(time_left(59), "under an hour");
        assert_eq!(time_left(0), "no time");
    }

    #[test]
    fn missing_events_are_critical_with_three_days_left() {
        let missing = |created| MissingEvent {
            id: "evt_1".into(),
            event_type: "invoice.paid".into(),
            created,
            livemode: true,
        };
        let severity = |left: i64| {
            let now = 1_700_000_000;
            let created = now + left - EVENTS_RETENTION_SECS;
            missing_finding(&[missing(created)], None, true, now).map(|f| f.severity.as_str())
        };
        assert_eq!(severity(3 * 86_400 + 1), Some("warning"));
        assert_eq!(severity(3 * 86_400), Some("critical"));
        assert_eq!(severity(1), Some("critical"));
        assert_eq!(
            severity(0),
            None,
            "no longer listed: nothing a backfill can do"
        );
    }

    #[test]
    fn every_handled_type_is_one_revguard_acts_on() {
        for t in HANDLED_EVENT_TYPES {
            assert_ne!(EventKind::of(t), EventKind::Unknown, "{t}");
        }
        assert_eq!(EventKind::of("customer.created"), EventKind::Unknown);
    }

    #[test]
    fn a_snapshot_event_is_an_event_the_envelope_reads() {
        let object = serde_json::json!({ "id": "sub_1", "status": "canceled" });
        let raw = snapshot_event(&object, "sub_1", true, false, 1_700_000_000);
        let env = crate::domain::event::EventEnvelope::parse(raw.as_bytes()).unwrap();
        assert_eq!(env.event_type, "customer.subscription.deleted");
        assert_eq!(env.created, 1_700_000_000);
        assert_eq!(env.id, "evt_rgreconcile_sub_1_1700000000");
    }
}
