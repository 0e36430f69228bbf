//! The completeness audit: Stripe's own list of events against the event log, the
//! webhook endpoints' health, and the findings they raise.

use std::collections::BTreeSet;
use std::future::Future;

use serde::Serialize;

use super::fetch::*;
use crate::domain::billing::EventKind;
use crate::domain::event::MissingEvent;
use crate::ports::{Account, ApiError, EventHistory, EventsQuery, StripeApi};

/// The completeness audit's window: events Stripe created in the half hour before the
/// grace, checked every detector run (15 minutes), so each is checked twice.
pub const AUDIT_WINDOW_SECS: i64 = 30 * 60;
/// Time a webhook has to arrive before its absence counts: Stripe delivers within
/// seconds, and retries a failed attempt within minutes.
pub const AUDIT_GRACE_SECS: i64 = 5 * 60;

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
    /// The EventBridge door's partner event source, when that door is open.
    pub eventbridge_source: Option<String>,
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
    /// `accounts`: the connected accounts active lately; the audit lists a bounded,
    /// rotating share of them on their behalf each run ([`AUDITED_ACCOUNTS_PER_RUN`]).
    fn audit(
        &self,
        now: i64,
        accounts: &[Account],
        remembered: &[MissingEvent],
    ) -> impl Future<Output = Option<AuditOutcome>> + Send;
}

/// No Stripe key: the detector judges delivery by silence alone.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAudit;

impl DeliveryAudit for NoAudit {
    async fn audit(
        &self,
        _now: i64,
        _accounts: &[Account],
        _remembered: &[MissingEvent],
    ) -> Option<AuditOutcome> {
        None
    }
}

/// An audit that may be off (no Stripe key): `None` judges delivery by silence alone.
impl<A: DeliveryAudit> DeliveryAudit for Option<A> {
    async fn audit(
        &self,
        now: i64,
        accounts: &[Account],
        remembered: &[MissingEvent],
    ) -> Option<AuditOutcome> {
        match self {
            Some(audit) => audit.audit(now, accounts, remembered).await,
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
    /// The partner event source of the EventBridge door, when it is open: Stripe then
    /// delivers through it, and a webhook endpoint is optional.
    pub eventbridge_source: Option<String>,
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
///
/// With the EventBridge door open (`eventbridge`), a webhook endpoint is optional: none,
/// one disabled (after a migration to the door) or one not sent some types says nothing
/// of what reaches revguard, which the events audit judges for both doors at once (an
/// event of Stripe's list missing from the one event log). Only an `api_version` revguard
/// does not read is still said.
pub fn endpoint_findings(
    endpoints: &[Endpoint],
    url: Option<&str>,
    eventbridge: Option<&str>,
    livemode: bool,
    now: i64,
) -> Vec<crate::domain::finding::Finding> {
    use crate::domain::finding::{Finding, Severity};
    let finding = |key: String, severity: Severity, explanation: String| Finding {
        scope: Default::default(),
        accounts: Vec::new(),
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
    if eventbridge.is_some() {
        out.extend(api_version_findings(&ours, &finding));
        return out;
    }
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
    let enabled: Vec<&Endpoint> = enabled.into_iter().copied().collect();
    out.extend(api_version_findings(&enabled, &finding));
    out
}

/// An `api_version` revguard does not read, per endpoint (a warning).
fn api_version_findings(
    endpoints: &[&Endpoint],
    finding: &dyn Fn(
        String,
        crate::domain::finding::Severity,
        String,
    ) -> crate::domain::finding::Finding,
) -> Vec<crate::domain::finding::Finding> {
    endpoints
        .iter()
        .filter(|e| e.status != "disabled")
        .filter_map(|e| {
            let version = e.api_version.as_deref().filter(|v| !api_version_is_read(v))?;
            Some(finding(
                format!("endpoint_api_version:{}", e.id),
                crate::domain::finding::Severity::Warning,
                format!("Webhooks: the endpoint {} renders its events at API version {version}, newer than revguard has been checked against ({NEWEST_CHECKED_API_VERSION}): objects may have moved. Check revguard's release notes, or pin the endpoint to an older version.", e.id),
            ))
        })
        .collect()
}

impl<A: StripeApi, H: EventHistory> StripeAudit<A, H> {
    async fn run(
        &self,
        now: i64,
        accounts: &[Account],
        remembered: &[MissingEvent],
    ) -> Result<AuditOutcome, RecoveryError> {
        let (window_start, window_end) = (
            now - AUDIT_GRACE_SECS - AUDIT_WINDOW_SECS,
            now - AUDIT_GRACE_SECS,
        );
        let query = EventsQuery {
            since: window_start,
            until: Some(window_end),
            undelivered_only: false,
            types: HANDLED_EVENT_TYPES.iter().map(|t| t.to_string()).collect(),
        };
        // The platform's own list, then this run's share of the connected accounts',
        // each listed on its behalf.
        let mut listed: Vec<(Account, Box<serde_json::value::RawValue>)> = self
            .api
            .events(&query)
            .await?
            .into_iter()
            .map(|raw| (Account::PLATFORM, raw))
            .collect();
        for account in audited_this_run(accounts, now) {
            // A connected account Stripe will not list for (disconnected, say) holds back
            // neither the platform's audit nor the other accounts'.
            match self.api.for_account(account).events(&query).await {
                Ok(theirs) => listed.extend(theirs.into_iter().map(|raw| (account.clone(), raw))),
                Err(e) => {
                    tracing::warn!(account = %account, error = %e, "a connected account's events could not be listed; its audit waits for its next turn")
                }
            }
        }
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
        for (account, raw) in &listed {
            let head: Head =
                serde_json::from_str(raw.get()).map_err(|e| ApiError::Malformed(e.to_string()))?;
            // The API may not have filtered by type (or by time).
            if EventKind::of(&head.event_type) != EventKind::Unknown
                && (window_start..window_end).contains(&head.created)
            {
                heads.push((account, head));
            }
        }
        let listed: BTreeSet<&str> = heads.iter().map(|(_, h)| h.id.as_str()).collect();
        // The window's events, then those earlier windows found missing (the window has
        // moved on from them; only the event log says whether a backfill applied them).
        let candidates: Vec<MissingEvent> = heads
            .iter()
            .map(|(account, h)| MissingEvent {
                id: h.id.clone(),
                event_type: h.event_type.clone(),
                created: h.created,
                livemode: h.livemode,
                account: (*account).clone(),
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
            eventbridge_source: self.eventbridge_source.clone(),
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

/// How many connected accounts one audit lists on their behalf (one request each, every
/// detector run): the accounts take turns, so with more of them each is audited every few
/// runs, and Stripe's rate limit is never near.
pub const AUDITED_ACCOUNTS_PER_RUN: usize = 20;

/// This run's share of the accounts: a window of [`AUDITED_ACCOUNTS_PER_RUN`] that moves
/// on each quarter hour, so every account is listed in turn.
fn audited_this_run(accounts: &[Account], now: i64) -> impl Iterator<Item = &Account> {
    let n = accounts.len();
    let take = n.min(AUDITED_ACCOUNTS_PER_RUN);
    let turn = if n == 0 {
        0
    } else {
        (now.div_euclid(15 * 60) as usize).wrapping_mul(take) % n
    };
    accounts.iter().cycle().skip(turn).take(take)
}

impl<A: StripeApi, H: EventHistory> DeliveryAudit for StripeAudit<A, H> {
    async fn audit(
        &self,
        now: i64,
        accounts: &[Account],
        remembered: &[MissingEvent],
    ) -> Option<AuditOutcome> {
        match self.run(now, accounts, remembered).await {
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
                self.eventbridge_source.as_deref(),
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
pub(super) fn time_left(secs: i64) -> String {
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
        scope: Default::default(), accounts: Vec::new(),
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
