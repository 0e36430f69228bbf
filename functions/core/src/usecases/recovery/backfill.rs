//! The backfill: the events Stripe has and revguard missed, listed a window at a time
//! from a cursor and fed through the ingress.

use serde::Serialize;
use serde_json::value::RawValue;

use super::fetch::*;
use crate::domain::billing::EventKind;
use crate::domain::message::Via;
use crate::ports::{BackfillCursor, EventLog, EventsQuery, PageCursor, Queue, StripeApi};
use crate::usecases::ingest::{IngestOutcome, Ingress};

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
    /// Connected accounts backfilled after the platform's own events (Connect), each on
    /// its behalf from its own cursor; their events are counted above.
    #[serde(skip_serializing_if = "is_zero")]
    pub connected_accounts: usize,
    /// Connected accounts whose backfill failed (Stripe refusing a disconnected account,
    /// say): logged, each resumes from its cursor on the next run.
    #[serde(skip_serializing_if = "is_zero")]
    pub connected_accounts_failed: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
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

    /// A connected account's backfill added to the platform's: its events counted, and
    /// the run complete only if every account's was.
    pub fn merge_account(&mut self, other: &BackfillSummary) {
        self.add(other);
        self.connected_accounts += 1;
        self.complete &= other.complete;
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
            // A connected account's event as its webhook carries it: with `account`, so
            // that it lands in that account's keys.
            let raw = with_account(raw, &api.account());
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

/// A listed event as its account's: `account` set when it was listed on a connected
/// account's behalf and Stripe's listing left it out.
fn with_account(
    raw: Box<serde_json::value::RawValue>,
    account: &crate::domain::account::Account,
) -> Box<serde_json::value::RawValue> {
    let Some(id) = account.id() else {
        return raw;
    };
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(raw.get()) else {
        return raw;
    };
    if value.get("account").is_some_and(|a| !a.is_null()) {
        return raw;
    }
    value["account"] = serde_json::Value::String(id.to_owned());
    serde_json::value::to_raw_value(&value).unwrap_or(raw)
}

/// The windows a backfill from the cursor goes through, an hour each: the cursor moves
/// after each, so a run that stops (out of time, Stripe or the store failing) resumes
/// from the last window it finished instead of listing the whole span again.
pub const BACKFILL_WINDOW_SECS: i64 = 3600;

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
        None => backfill_since(cursor.cursor(&api.account()).await?, now),
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
            .advance(
                &api.account(),
                summary.newest_created.unwrap_or(start).max(start),
            )
            .await?;
        total.windows += 1;
        total.reached = Some(end);
        start = end;
    }
    total.complete = true;
    Ok((since, total))
}

/// [`backfill_from_cursor`] for the platform's own events, then for each connected account
/// `seen` lists, on its behalf, from its own cursor: the platform's summary, with the
/// accounts' events added ([`BackfillSummary::merge_account`]). The platform's failure
/// fails the run; a connected account's is logged and counted, and the others go on. No
/// account is started once `keep_going` says no (the run is then incomplete).
// The ports it runs over, the query, the window and the clock: each is needed.
#[allow(clippy::too_many_arguments)]
pub async fn backfill_every_account<A, L, Q, C, S>(
    api: &A,
    ingress: &Ingress<L, Q>,
    cursor: &C,
    seen: &S,
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
    S: crate::ports::AccountsSeen,
{
    let (from, mut total) =
        backfill_from_cursor(api, ingress, cursor, query, since, now, keep_going).await?;
    // Read after the platform's own backfill, so that nothing here can cost it.
    let accounts = match seen.accounts_seen().await {
        Ok(accounts) => accounts,
        Err(e) => {
            tracing::warn!(error = %crate::domain::error::error_chain(&e), "the connected accounts could not be read; they wait for the next run");
            return Ok((from, total));
        }
    };
    for account in accounts {
        if !keep_going() {
            total.complete = false;
            break;
        }
        let api = api.for_account(&account);
        match backfill_from_cursor(&api, ingress, cursor, query, since, now, keep_going).await {
            Ok((_, summary)) => {
                tracing::info!(account = %account, listed = summary.listed, accepted = summary.accepted, "connected account backfilled");
                total.merge_account(&summary);
            }
            Err(e) => {
                tracing::warn!(account = %account, error = %crate::domain::error::error_chain(&e), "a connected account's backfill failed; the others go on");
                total.connected_accounts_failed += 1;
            }
        }
    }
    Ok((from, total))
}
