//! The alert lifecycle: open once, escalate once when severity rises, remind at most every
//! N hours, resolve once when the metric is back to normal. `plan` is pure; stores commit
//! each change with a condition on the version it was planned from, so two detector runs
//! at once publish each transition once.

use serde::{Deserialize, Serialize};

use super::{DetectConfig, Finding, Severity};
use crate::domain::metric::figure;
pub use crate::domain::time::datetime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    Opened,
    Escalated,
    Reminder,
    Resolved,
    /// Bookkeeping only (the signal went quiet or came back): stored, never published.
    Quiet,
}

impl Transition {
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Opened => "opened",
            Transition::Escalated => "escalated",
            Transition::Reminder => "reminder",
            Transition::Resolved => "resolved",
            Transition::Quiet => "quiet",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    /// `<livemode>:<finding key>`: one alert per signal and mode at a time.
    pub id: String,
    pub livemode: bool,
    pub open: bool,
    pub severity: Severity,
    pub opened_at: i64,
    pub last_sent_at: i64,
    pub resolved_at: Option<i64>,
    /// Raised by the worker for one event (resolves by age, not by a metric).
    pub event_level: bool,
    /// Since when the signal has been quiet while the alert is open (it resolves after
    /// `resolve_after_secs` of quiet, so a metric hovering at its threshold does not flap).
    #[serde(default)]
    pub quiet_since: Option<i64>,
    pub finding: Finding,
    /// Incremented on every change; writes are conditioned on it.
    pub version: i64,
    /// `events_missing`: the events it is about, oldest first. The audit lists only the
    /// last half hour, so the alert remembers them until the event log has them (a
    /// backfill) or the Events API no longer lists them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_events: Vec<crate::domain::event::MissingEvent>,
}

impl AlertState {
    /// Open, or resolved at or after `since` (what operators list as recent).
    pub fn open_or_resolved_since(&self, since: i64) -> bool {
        self.open || self.resolved_at.is_some_and(|r| r >= since)
    }
}

/// One planned change: the new state, what it announces, and the version it replaces
/// (`None`: the alert must not exist yet, or be closed at that version).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertChange {
    pub state: AlertState,
    pub transition: Transition,
    pub expected_version: Option<i64>,
}

pub fn alert_id(livemode: bool, key: &str) -> String {
    format!("{}:{key}", if livemode { "live" } else { "test" })
}

/// What to change, given this run's findings (window findings of `livemode`, plus any
/// event-level findings waiting) and the alerts as stored.
pub fn plan(
    window_findings: &[Finding],
    event_findings: &[Finding],
    stored: &[AlertState],
    livemode: bool,
    now: i64,
    config: &DetectConfig,
) -> Vec<AlertChange> {
    let mut changes = Vec::new();
    let find = |id: &str| stored.iter().find(|a| a.id == id);
    let all = window_findings
        .iter()
        .map(|f| (f, false))
        .chain(event_findings.iter().map(|f| (f, true)));
    for (f, event_level) in all {
        let id = alert_id(f.livemode, &f.key);
        match find(&id) {
            Some(a) if a.open => {
                let mut state = a.clone();
                state.quiet_since = None;
                state.finding = f.clone();
                state.version += 1;
                let transition = if f.severity > a.severity {
                    state.severity = f.severity;
                    state.last_sent_at = now;
                    Transition::Escalated
                } else if now - a.last_sent_at
                    >= config.reminder_secs(a.severity, f.window_end - f.window_start)
                    && !a.event_level
                {
                    state.last_sent_at = now;
                    Transition::Reminder
                } else if a.quiet_since.is_some() {
                    // Loud again before it resolved: it stays open, nothing to announce.
                    Transition::Quiet
                } else {
                    continue;
                };
                changes.push(AlertChange {
                    state,
                    transition,
                    expected_version: Some(a.version),
                });
            }
            existing => {
                let state = AlertState {
                    id,
                    livemode: f.livemode,
                    open: true,
                    severity: f.severity,
                    opened_at: now,
                    last_sent_at: now,
                    resolved_at: None,
                    event_level,
                    quiet_since: None,
                    finding: f.clone(),
                    version: existing.map_or(1, |a| a.version + 1),
                    missing_events: Vec::new(),
                };
                changes.push(AlertChange {
                    state,
                    transition: Transition::Opened,
                    expected_version: existing.map(|a| a.version),
                });
            }
        }
    }
    for a in stored.iter().filter(|a| a.open && a.livemode == livemode) {
        let still = window_findings
            .iter()
            .chain(event_findings)
            .any(|f| alert_id(f.livemode, &f.key) == a.id);
        if still {
            continue;
        }
        let resolve = if a.event_level {
            now - a.opened_at >= config.event_alert_hours * 3600
        } else {
            let slow = matches!(
                a.finding.signal.as_str(),
                "dispute_rate" | "efw_rate" | "refund_rate"
            );
            let quiet_for = if slow {
                config.slow_resolve_after_secs
            } else {
                config.resolve_after_secs
            };
            match a.quiet_since {
                Some(since) => now - since >= quiet_for,
                None => {
                    // First quiet run: remember it, announce nothing.
                    let mut state = a.clone();
                    state.quiet_since = Some(now);
                    state.version += 1;
                    changes.push(AlertChange {
                        state,
                        transition: Transition::Quiet,
                        expected_version: Some(a.version),
                    });
                    false
                }
            }
        };
        if resolve {
            let mut state = a.clone();
            state.open = false;
            state.resolved_at = Some(now);
            state.last_sent_at = now;
            state.version += 1;
            changes.push(AlertChange {
                state,
                transition: Transition::Resolved,
                expected_version: Some(a.version),
            });
        }
    }
    changes
}

/// A transition as people read it: by email, by SMS, and a default for other protocols.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertMessage {
    /// `<alert id>:<version>`: unique per transition, for de-duplication downstream.
    pub id: String,
    pub alert_id: String,
    pub transition: Transition,
    pub severity: Severity,
    pub metric: String,
    pub signal: String,
    pub livemode: bool,
    pub at: i64,
    /// When the alert opened (0 in messages written before this field).
    #[serde(default)]
    pub opened_at: i64,
    pub subject: String,
    pub email: String,
    pub sms: String,
    pub default: String,
    pub finding: Finding,
}

/// The first thing a person should look at for a signal, in the Stripe Dashboard's words.
pub fn what_to_check(signal: &str, metric: &str) -> &'static str {
    match (signal, metric) {
        ("delivery_gap", _) => "In the Stripe Dashboard (Developers > Webhooks), check that the endpoint is enabled and its recent deliveries succeed; check that revguard's signing secret matches the endpoint's.",
        ("events_missing", _) => "Run `revguard backfill` (on AWS the backfill function runs hourly), then check the endpoint in the Stripe Dashboard (Developers > Webhooks): is it enabled, do its recent deliveries succeed, are these event types enabled?",
        ("reconcile_drift", _) => "Read the reconciliation report (the function's log, or `revguard reconcile --report`): which subscriptions differ, and in what; a missed event type is the usual cause.",
        ("delivery_lag", _) => "Check Stripe's status page and the endpoint's delivery attempts; check revguard's ingress errors and latency.",
        ("mrr_fall", _) | ("spike", "subscriptions_canceled") => "Look at recent cancellations in the Dashboard (Billing > Subscriptions, canceled) for a common reason, plan or coupon; check for a pricing or product change.",
        (_, m) if m.starts_with("mrr_lost") => "Look at recent cancellations and downgrades in the Dashboard for a common reason, plan or coupon.",
        ("failure_rate", _) => "Open Payments > failed in the Dashboard: look for one decline code, card brand or country; check Radar rules changed recently.",
        (_, m) if m.starts_with("payments_failed") => "Open Payments > failed in the Dashboard: look for one decline code, card brand or country; check Radar rules changed recently.",
        (_, m) if m.starts_with("refund") => "Review recent refunds in the Dashboard: who issued them (API key or user), and for which product.",
        ("refund_rate", _) | ("large_refund", _) => "Review recent refunds in the Dashboard: who issued them (API key or user), and for which product.",
        (_, "disputes") | ("dispute_rate", _) => "Open Payments > Disputes: look for a common product, customer or card BIN; respond before the evidence due dates.",
        ("duplicate_charge", _) => "Check the customer's payments for a double charge (a retried checkout or a double-submitted form) and refund the duplicate.",
        ("early_fraud_warning", _) | ("efw_rate", _) | (_, "early_fraud_warnings") => "Review the flagged payments in Radar; refunding before a dispute avoids the dispute fee.",
        ("endpoint_disabled", _) | ("endpoint_missing", _) => "In the Stripe Dashboard (Developers > Webhooks), open the endpoint's recent deliveries for why they failed, fix that, enable the endpoint (or add it), then run `revguard backfill` for what it missed.",
        ("endpoint_events", _) => "In the Stripe Dashboard (Developers > Webhooks > the endpoint > Update details), add the event types the message names.",
        ("endpoint_api_version", _) => "Check revguard's release notes for the API version, or set the endpoint's version back to one revguard reads (a new endpoint at an older version, then delete this one).",
        ("win_back", _) => "Reach out with a win-back offer (a discount, or the feature they missed); their cancellation reason, if Stripe has one, is in the message.",
        ("silent_lapse", _) => "Compare revguard's active subscriptions with the Dashboard: renewal webhooks may be missing (endpoint disabled or events not enabled).",
        ("drop", _) => "Check the checkout and payment flow end to end: a failing deploy, a broken pricing page, or a disabled payment method.",
        _ => "Open the Stripe Dashboard for the window shown and compare with a normal day.",
    }
}

impl Transition {
    /// Whether people hear of it.
    pub fn is_published(self) -> bool {
        self != Transition::Quiet
    }
}

pub fn render(change: &AlertChange) -> AlertMessage {
    let a = &change.state;
    let f = &a.finding;
    let mode = if a.livemode { "live" } else { "test" };
    let sev = a.severity.as_str().to_uppercase();
    let verb = match change.transition {
        Transition::Opened => "",
        Transition::Escalated => " (escalated)",
        Transition::Reminder => " (still open)",
        Transition::Resolved => " (resolved)",
        Transition::Quiet => " (quiet)",
    };
    let head = match change.transition {
        Transition::Resolved => format!("RESOLVED {}", f.signal.replace('_', " ")),
        _ => format!("{sev}{verb}"),
    };
    // Whose it is, for a connected account or the whole platform (the platform's own
    // account reads as it always did).
    let whose = match &f.scope {
        crate::domain::account::Scope::Platform => String::new(),
        crate::domain::account::Scope::All => " [all accounts]".to_owned(),
        scope => format!(" [{}]", scope.label()),
    };
    let subject = format!("revguard {mode}{whose}: {head}: {}", f.metric);
    // Figures for people: money in its currency, rates in percent, seconds as durations.
    let (observed, expected, spread) = (
        figure(&f.metric, f.observed),
        figure(&f.metric, f.expected),
        figure(&f.metric, f.spread),
    );
    let email = match change.transition {
        Transition::Resolved => format!(
            "Resolved: {}\n\nThe {} alert on {} ({mode} mode), open since {}, is back to normal as of {}.\nLast numbers: observed {}, expected {}.\n",
            f.explanation,
            a.severity.as_str(),
            f.metric,
            datetime(a.opened_at),
            datetime(a.resolved_at.unwrap_or(a.last_sent_at)),
            observed,
            expected
        ),
        _ => format!(
            "{sev}{verb}: {}\n\nMetric:    {} ({mode} mode)\nWindow:    {} to {}\nObserved:  {}\nExpected:  {} (spread {})\nRatio:     {:.2}\nOpen since {}\n\nWhat to check first:\n{}\n",
            f.explanation,
            f.metric,
            datetime(f.window_start),
            datetime(f.window_end),
            observed,
            expected,
            spread,
            f.ratio,
            datetime(a.opened_at),
            what_to_check(&f.signal, &f.metric)
        ),
    };
    let sms_full = match change.transition {
        Transition::Resolved => format!("revguard {mode}{whose} OK: {} back to normal", f.metric),
        _ => format!(
            "revguard {mode}{whose} {sev}{verb}: {} {} vs {} expected",
            f.metric, observed, expected
        ),
    };
    let sms: String = sms_full.chars().take(140).collect();
    AlertMessage {
        id: format!("{}:{}", a.id, a.version),
        alert_id: a.id.clone(),
        transition: change.transition,
        severity: a.severity,
        metric: f.metric.clone(),
        signal: f.signal.clone(),
        livemode: a.livemode,
        at: a.last_sent_at,
        opened_at: a.opened_at,
        subject: subject.chars().take(100).collect(),
        default: format!("{subject}\n{}", f.explanation),
        email,
        sms,
        finding: f.clone(),
    }
}
