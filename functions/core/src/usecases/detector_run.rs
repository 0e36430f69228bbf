//! One detector run, once for both backends: read the counters (never events, so its
//! cost does not grow with volume) and the alerts, plan the transitions, commit each with
//! a condition on the alert's version together with its outbox entry, then publish.
//! Two runs at once commit each transition once, and publish it once: an outbox entry is
//! leased to the run that committed it, and a later run publishes only what it claimed
//! (what a failed or crashed run left, once that run's lease ended).

use serde::Serialize;

use std::collections::BTreeSet;

use crate::domain::audience::{reaches_on_call, win_back_notice};
use crate::domain::billing::Notification;
use crate::domain::detector::alerts::{
    alert_id, plan, render, AlertChange, AlertMessage, Transition,
};
use crate::domain::detector::{detect_platform, hours_needed, DetectConfig, Finding};
use crate::domain::event::MissingEvent;
use crate::ports::{
    Account, AlertSnapshot, AlertStore, Comebacks, CountersReader, Pause, PublishError, Publisher,
    StoreError, OUTBOX_LEASE_SECS,
};
use crate::usecases::outbox::publish_all;
use crate::usecases::recovery::{missing_finding, to_remember, DeliveryAudit};
use crate::usecases::retry::{seed_of, Backoff};

/// The detector's publisher, by audience: transitions of on-call signals go to
/// `on_call`; a win-back's opening goes to `team` as its notice, and its later
/// transitions (resolved a day on) go nowhere.
#[derive(Debug, Clone)]
pub struct ByAudience<P, N> {
    pub on_call: P,
    pub team: N,
}

impl<P, N> Publisher<AlertMessage> for ByAudience<P, N>
where
    P: Publisher<AlertMessage>,
    N: Publisher<Notification>,
{
    async fn publish(&self, m: &AlertMessage) -> Result<(), PublishError> {
        if reaches_on_call(&m.signal) {
            return self.on_call.publish(m).await;
        }
        match m.transition {
            Transition::Opened => self.team.publish(&win_back_notice(m)).await,
            _ => Ok(()),
        }
    }
}

pub struct Detector<C, A, P, W, E, Pa> {
    pub counters: C,
    pub alerts: A,
    pub publisher: P,
    /// Who is subscribed again, for the win-back notices that come due.
    pub comebacks: W,
    pub config: DetectConfig,
    /// Stripe's list of events against the event log, when a Stripe key is configured.
    pub audit: E,
    /// Waits between attempts to clear the outbox after a publish.
    pub pause: Pa,
    /// The wall clock, for the outbox's leases (given by the entry point: core reads no
    /// clock of its own).
    pub wall_clock: fn() -> i64,
}

/// What a run would do at a moment: the findings, and the transitions it plans.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub findings: Vec<Finding>,
    pub changes: Vec<AlertChange>,
    /// The event-level findings it judged (consumed once the changes are committed).
    pub judged: Vec<Finding>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    pub at: i64,
    pub findings: Vec<Finding>,
    /// The transitions this run committed (and published, unless listed in `unpublished`).
    pub transitions: Vec<AlertMessage>,
    /// `<alert id>:<version> <transition>` for each transition this run published.
    pub published: Vec<String>,
    /// Messages left in the outbox for the next run, with the error.
    pub unpublished: Vec<(String, String)>,
}

impl<
        C: CountersReader,
        A: AlertStore,
        P: Publisher<AlertMessage>,
        W: Comebacks,
        E: DeliveryAudit,
        Pa: Pause,
    > Detector<C, A, P, W, E, Pa>
{
    /// The findings and transitions at `now`. Writes nothing.
    pub async fn plan(&self, now: i64) -> Result<Plan, StoreError> {
        let snapshot = self.alerts.snapshot(now).await?;
        self.plan_from(&snapshot, now).await
    }

    async fn plan_from(&self, snapshot: &AlertSnapshot, now: i64) -> Result<Plan, StoreError> {
        let (from, to) = hours_needed(now);
        // What open alerts found missing in earlier windows: looked up again until the
        // event log has them.
        let remembered: Vec<MissingEvent> = snapshot
            .alerts
            .iter()
            .filter(|a| a.open && a.finding.signal == "events_missing")
            .flat_map(|a| a.missing_events.iter().cloned())
            .collect();
        // The connected accounts active in the window, both modes (read once per run).
        let mut connected_by_mode = Vec::new();
        for livemode in [false, true] {
            connected_by_mode.push(self.counters.connected(livemode, from, to).await?);
        }
        let active: Vec<Account> = connected_by_mode
            .iter()
            .flat_map(|c| c.keys().cloned())
            .collect::<BTreeSet<Account>>()
            .into_iter()
            .collect();
        let audit = self.audit.audit(now, &active, &remembered).await;
        let endpoints_read = audit.as_ref().is_some_and(|a| a.endpoints.is_some());
        let mut found_by_mode = Vec::new();
        let mut missing_by_mode = Vec::new();
        for (livemode, connected) in [false, true].into_iter().zip(connected_by_mode) {
            // The platform's own account, and each connected account active in the window.
            let own = self
                .counters
                .counters(livemode, &Account::PLATFORM, from, to)
                .await?;
            let mut found = detect_platform(&own, &connected, livemode, now, &self.config);
            let missing: Vec<MissingEvent> = match &audit {
                Some(audit) => audit.missing.clone(),
                // Unasked is not backfilled: what was missing stays so.
                None => remembered.clone(),
            };
            let missing: Vec<MissingEvent> = missing
                .into_iter()
                .filter(|m| m.livemode == livemode)
                .collect();
            if let Some(audit) = &audit {
                // Stripe's own list says whether events went missing: that replaces the
                // guess from silence (a quiet night is no outage; a missing id is one).
                found.retain(|f| f.signal != "delivery_gap");
                found.extend(audit.findings(livemode, now));
            } else {
                found.extend(missing_finding(&missing, None, livemode, now));
            }
            missing_by_mode.push((livemode, to_remember(&missing, now)));
            if !endpoints_read {
                // Unread is not fixed: what the endpoints last said stays open.
                found.extend(
                    snapshot
                        .alerts
                        .iter()
                        .filter(|a| a.open && a.livemode == livemode)
                        .filter(|a| a.finding.signal.starts_with("endpoint_"))
                        .map(|a| a.finding.clone()),
                );
            }
            found_by_mode.push((livemode, found));
        }
        // The snapshot holds open alerts; a finding whose alert is closed reopens it at its
        // next version, so read those few by key.
        let mut stored = snapshot.alerts.clone();
        let missing: BTreeSet<String> = found_by_mode
            .iter()
            .flat_map(|(_, found)| found.iter())
            .chain(&snapshot.pending)
            .map(|f| alert_id(f.livemode, &f.key))
            .filter(|id| !stored.iter().any(|a| &a.id == id))
            .collect();
        if !missing.is_empty() {
            let ids: Vec<String> = missing.into_iter().collect();
            stored.extend(self.alerts.alerts(&ids).await?);
        }
        let mut out = Plan::default();
        for (livemode, found) in found_by_mode {
            let mut events = Vec::new();
            for f in snapshot.pending.iter().filter(|f| f.livemode == livemode) {
                // A win-back that came due for a customer subscribed again is judged
                // (and consumed) without a word.
                if f.signal == "win_back" {
                    let key = f.unscoped_key();
                    let customer = key.strip_prefix("win_back:").unwrap_or(key);
                    let account = f.scope.account().unwrap_or_default();
                    if self
                        .comebacks
                        .is_subscribed(&account, customer, livemode)
                        .await?
                    {
                        out.judged.push(f.clone());
                        continue;
                    }
                }
                events.push(f.clone());
            }
            let mut changes = plan(&found, &events, &stored, livemode, now, &self.config);
            if let Some((_, missing)) = missing_by_mode.iter().find(|(l, _)| *l == livemode) {
                let current = found.iter().find(|f| f.signal == "events_missing");
                remember_missing(&mut changes, &stored, livemode, missing, current);
            }
            out.changes.extend(changes);
            out.findings.extend(found);
            out.findings.extend(events.iter().cloned());
            out.judged.extend(events);
        }
        Ok(out)
    }

    /// One run at `now`. Fails only when the stores fail; a message that cannot be
    /// published stays in the outbox and holds back nothing.
    pub async fn run(&self, now: i64) -> Result<RunSummary, StoreError> {
        let mut summary = RunSummary {
            at: now,
            ..RunSummary::default()
        };
        // Leases run on the wall clock: `now` is the moment judged, which a late or
        // retried invocation passes from the past.
        let wall = (self.wall_clock)();
        let lease_until = wall + OUTBOX_LEASE_SECS;
        // One read of the alert store serves the whole run. Messages a failed or crashed
        // run committed but did not publish go out first, if this run can claim them
        // (another run may be publishing them right now).
        let snapshot = self.alerts.snapshot(now).await?;
        if !snapshot.outbox.is_empty() {
            let ids: Vec<String> = snapshot.outbox.iter().map(|m| m.id.clone()).collect();
            let claimed = match self.alerts.claim_outbox(&ids, wall, lease_until).await {
                Ok(claimed) => claimed,
                Err(e) => {
                    // The leftovers wait for the next run; detection goes on.
                    tracing::warn!(error = %crate::domain::error::error_chain(&e), "cannot claim the alert outbox");
                    Vec::new()
                }
            };
            let leftovers: Vec<AlertMessage> = snapshot
                .outbox
                .iter()
                .filter(|m| claimed.contains(&m.id))
                .cloned()
                .collect();
            self.publish(&leftovers, &mut summary).await;
        }

        let planned = self.plan_from(&snapshot, now).await?;
        let mut committed = Vec::new();
        for change in &planned.changes {
            let message = change.transition.is_published().then(|| render(change));
            if !self
                .alerts
                .commit_change(change, message.as_ref(), now, lease_until)
                .await?
            {
                continue; // another run got there first
            }
            committed.extend(message);
        }
        // Judged: an event-level finding opened its alert, or its alert was open already.
        self.alerts.consume_findings(&planned.judged).await?;
        self.publish(&committed, &mut summary).await;
        for m in &committed {
            tracing::warn!(alert = %m.id, transition = m.transition.as_str(), severity = m.severity.as_str(), "{}", m.finding.explanation);
        }
        summary.findings = planned.findings;
        summary.transitions = committed;
        Ok(summary)
    }

    /// Publishes what this run holds. Nothing here stops the run: a message that cannot
    /// go out stays in the outbox for the next run. Clearing what went out is retried
    /// with the commit's backoff (a throttled delete is common in a busy hour): an entry
    /// left behind goes out again from the run after its lease, and subscribers see it
    /// twice unless they de-duplicate on its id.
    async fn publish(&self, messages: &[AlertMessage], summary: &mut RunSummary) {
        if messages.is_empty() {
            return;
        }
        let report = publish_all(messages, &self.publisher).await;
        self.clear_outbox(&report.published).await;
        for id in &report.published {
            if let Some(m) = messages.iter().find(|m| &m.id == id) {
                summary
                    .published
                    .push(format!("{} {}", m.id, m.transition.as_str()));
            }
        }
        summary.unpublished.extend(report.failed);
    }

    /// Deletes the published entries, retrying an unavailable store with the commit's
    /// backoff: at most about 2.5 s of pauses (plus the SDK's own retries), well inside
    /// the entries' lease ([`OUTBOX_LEASE_SECS`]), so no other run claims them meanwhile.
    /// The deletes are idempotent, so each retry sends the whole list again.
    async fn clear_outbox(&self, published: &[String]) {
        if published.is_empty() {
            return;
        }
        let unavailable = |e: &StoreError, attempt: u32| {
            let retry = matches!(e, StoreError::Unavailable(_));
            if retry {
                tracing::info!(attempt, error = %crate::domain::error::error_chain(e), "alert outbox clear retried");
            }
            retry
        };
        let (result, attempts) = Backoff::COMMIT
            .retry(seed_of(&published[0]), &self.pause, unavailable, || {
                self.alerts.clear_outbox(published)
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %crate::domain::error::error_chain(&e), attempts, "published alert messages stay in the outbox");
        }
    }
}

/// Keeps the events an open `events_missing` alert is about in its state, through
/// whatever change the run planned for it, or through a quiet change of its own when only
/// the events changed (a few more missing, a few backfilled): the next run looks them up
/// again, long after the audit's window has moved on.
fn remember_missing(
    changes: &mut Vec<AlertChange>,
    stored: &[crate::domain::detector::alerts::AlertState],
    livemode: bool,
    missing: &[MissingEvent],
    current: Option<&Finding>,
) {
    let id = alert_id(livemode, "events_missing");
    let mut planned = false;
    for change in changes.iter_mut().filter(|c| c.state.id == id) {
        change.state.missing_events = if change.state.open {
            missing.to_vec()
        } else {
            Vec::new()
        };
        planned = true;
    }
    if planned {
        return;
    }
    if let Some(a) = stored.iter().find(|a| a.id == id && a.open) {
        if a.missing_events != missing {
            let mut state = a.clone();
            state.missing_events = missing.to_vec();
            if let Some(f) = current {
                state.finding = f.clone();
            }
            state.version += 1;
            changes.push(AlertChange {
                state,
                transition: crate::domain::detector::alerts::Transition::Quiet,
                expected_version: Some(a.version),
            });
        }
    }
}
