//! Replays a scenario through the real worker logic and detector, in memory and in
//! delivery order, and scores what was flagged against what was injected.

use serde::Serialize;

use super::scenario::{Incident, Scenario};
use crate::billing::state::BillingState;
use crate::billing::{decide, BillingEvent, BillingPolicy, StateLookup};
use crate::detect::alerts::{plan, AlertState, Transition};
use crate::detect::{series_of, DetectConfig, Finding};

/// An alert belongs to an incident it could have been raised by (see
/// [`super::scenario::IncidentKind::explains`]), opened from its start until a margin after
/// its end: 3 hours
/// for window signals (late deliveries after an outage, a window straddling the end), and
/// the signal's own lookback for rates over days (a dispute cluster keeps the 7-day
/// dispute rate above Stripe's threshold for up to a week: a real risk, not noise).
pub fn attribution_margin_secs(alert_id: &str) -> i64 {
    let signal = alert_id.split(':').nth(1).unwrap_or("");
    match signal {
        "dispute_rate" | "efw_rate" => 7 * 86_400,
        "refund_rate" | "mrr_fall" => 86_400,
        _ => 3 * 3600,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct IncidentResult {
    pub incident: Incident,
    pub detected_at: Option<i64>,
    pub first_alert: Option<String>,
}

impl IncidentResult {
    pub fn time_to_detect(&self) -> Option<i64> {
        self.detected_at.map(|t| t - self.incident.start)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Opened {
    pub at: i64,
    pub alert_id: String,
    pub severity: String,
    pub explanation: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalResult {
    pub incidents: Vec<IncidentResult>,
    pub false_alerts: Vec<Opened>,
    pub opened: Vec<Opened>,
    pub monitored_days: i64,
}

/// Counters and alert state kept while the scenario plays.
pub struct Replay<'a> {
    pub state: BillingState,
    pub alerts: Vec<AlertState>,
    pub pending: Vec<Finding>,
    policy: &'a BillingPolicy,
}

impl<'a> Replay<'a> {
    pub fn new(policy: &'a BillingPolicy) -> Self {
        Self {
            state: BillingState::default(),
            alerts: Vec::new(),
            pending: Vec::new(),
            policy,
        }
    }

    pub fn apply(&mut self, raw: &str, received_at: i64) {
        let Ok(event) = BillingEvent::parse(raw.as_bytes(), received_at) else {
            return;
        };
        if self.state.applied.contains(&event.id) {
            return;
        }
        let Ok(fx) = decide(&event, &self.state.current(&event), self.policy) else {
            return;
        };
        self.pending.extend(fx.findings.iter().cloned());
        self.state.commit(&event.id, fx);
    }

    /// One detector run at `now` over both modes; returns the transitions made.
    pub fn detect(&mut self, now: i64, config: &DetectConfig) -> Vec<(Transition, AlertState)> {
        let mut out = Vec::new();
        let pending = std::mem::take(&mut self.pending);
        for livemode in [false, true] {
            let findings = crate::detect::detect(
                &series_of(&self.state.counters, livemode),
                livemode,
                now,
                config,
            );
            let events: Vec<Finding> = pending
                .iter()
                .filter(|f| f.livemode == livemode)
                .cloned()
                .collect();
            for change in plan(&findings, &events, &self.alerts, livemode, now, config) {
                match self.alerts.iter_mut().find(|a| a.id == change.state.id) {
                    Some(a) => *a = change.state.clone(),
                    None => self.alerts.push(change.state.clone()),
                }
                out.push((change.transition, change.state));
            }
        }
        out
    }
}

/// Replays the scenario with the detector every `step_secs` over the monitored days.
pub fn evaluate(
    scenario: &Scenario,
    config: &DetectConfig,
    policy: &BillingPolicy,
    step_secs: i64,
) -> EvalResult {
    let mut replay = Replay::new(policy);
    let mut next = 0;
    let from = scenario.config.monitored_from();
    let end = scenario.config.end();
    let mut opened = Vec::new();
    let mut t = from;
    while t <= end {
        while next < scenario.events.len() && scenario.events[next].received_at <= t {
            let e = &scenario.events[next];
            replay.apply(&e.raw, e.received_at);
            next += 1;
        }
        for (transition, state) in replay.detect(t, config) {
            // What on call hears: the team's win-backs are notifications, not alarms.
            if transition == Transition::Opened
                && crate::audience::reaches_on_call(&state.finding.signal)
            {
                opened.push(Opened {
                    at: t,
                    alert_id: state.id.clone(),
                    severity: state.severity.as_str().to_owned(),
                    explanation: state.finding.explanation.clone(),
                });
            }
        }
        t += step_secs;
    }
    score(scenario, opened)
}

fn score(scenario: &Scenario, opened: Vec<Opened>) -> EvalResult {
    // The latest incident begun before the alert, whose margin still covers it.
    let owner = |o: &Opened| {
        scenario.incidents.iter().rposition(|i| {
            i.kind.explains(&o.alert_id)
                && o.at >= i.start
                && o.at <= i.end + attribution_margin_secs(&o.alert_id)
        })
    };
    let incidents = scenario
        .incidents
        .iter()
        .enumerate()
        .map(|(i, inc)| {
            let first = opened.iter().find(|o| owner(o) == Some(i));
            IncidentResult {
                incident: inc.clone(),
                detected_at: first.map(|o| o.at),
                first_alert: first.map(|o| o.alert_id.clone()),
            }
        })
        .collect();
    let false_alerts = opened
        .iter()
        .filter(|o| owner(o).is_none())
        .cloned()
        .collect();
    EvalResult {
        incidents,
        false_alerts,
        opened,
        monitored_days: scenario.config.monitored_days,
    }
}
