//! Who hears what. On call (the alerts channel: email, SMS for critical, chat) hears
//! anomalies and the stack's own health, and nothing it cannot act on at 2 AM; the team
//! (the notifications channel) hears customer-success tasks: dunning stages with their
//! drafts, churn notices, and the win-back offer that comes due 14 days after a
//! cancellation.
//!
//! The win-back is decided by the detector, which alone knows when it comes due and
//! whether the customer came back, and goes through the detector's alert outbox, whose
//! lease and version keep it to one message; the detector run's `ByAudience`
//! ([`crate::usecases::detector_run::ByAudience`]) then sends that message to
//! the team as a [`Notification`] instead of to on call.

use serde_json::json;

use crate::domain::billing::Notification;
use crate::domain::detector::alerts::AlertMessage;

/// Signals whose alerts are tasks for the team, not alarms for on call.
pub const TEAM_SIGNALS: [&str; 1] = ["win_back"];

/// Whether an alert's transitions reach on call (the alerts topic, SMS, chat, the alerts
/// table of the dashboard and `/api/alerts`).
pub fn reaches_on_call(signal: &str) -> bool {
    !TEAM_SIGNALS.contains(&signal)
}

/// The team's notice for a win-back that came due: its opening, as a notification with the
/// customer, what they paid and when they left. Its id is the alert transition's, unique
/// per cancellation, so a re-publish is de-duplicated downstream.
pub fn win_back_notice(m: &AlertMessage) -> Notification {
    let f = &m.finding;
    let key = f.unscoped_key();
    let customer = key.strip_prefix("win_back:").unwrap_or(key).to_owned();
    let currency = f
        .metric
        .strip_prefix("mrr_lost.")
        .unwrap_or("xxx")
        .to_owned();
    let mrr_lost = f.observed.round() as i64;
    let mrr_display = crate::domain::money::format_minor(mrr_lost, &currency);
    Notification {
        id: m.id.clone(),
        kind: "win_back".into(),
        stage: None,
        customer: Some(customer.clone()),
        livemode: m.livemode,
        event_id: m.alert_id.clone(),
        created: m.at,
        subject: format!("Win-back due: {customer} has not come back ({mrr_display} a month)"),
        details: json!({
            "mrr_lost": mrr_lost,
            "mrr_lost_display": mrr_display,
            "currency": currency,
            "canceled_at": f.window_start,
            "due_at": f.window_end,
            "explanation": f.explanation,
        }),
        account: f.scope.account().unwrap_or_default(),
    }
}

/// How far back the on-call view (the operator API's `/api/alerts`, the dashboard) lists
/// resolved alerts.
pub const RECENT_ALERTS_SECS: i64 = 7 * 86_400;

/// The alerts on call hears (not the team's win-backs, which are notifications): open
/// first, then the latest change, whatever order a store reads them in.
pub fn on_call_alerts(
    mut alerts: Vec<crate::domain::detector::alerts::AlertState>,
) -> Vec<crate::domain::detector::alerts::AlertState> {
    alerts.retain(|a| reaches_on_call(&a.finding.signal));
    alerts
        .sort_by(|a, b| (!a.open, -a.last_sent_at, &a.id).cmp(&(!b.open, -b.last_sent_at, &b.id)));
    alerts
}
