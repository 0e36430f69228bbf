//! Replays a scenario through the real worker logic and detector, in memory and in
//! delivery order, and scores every message on call got against what was injected.

use serde::Serialize;

use super::scenario::{Incident, Scenario};
use crate::memory::{CountedPause, MemoryAlerts, MemoryEventLog, MemoryPublisher, MemoryStripe};
use revguard_core::domain::billing::state::BillingState;
use revguard_core::domain::billing::{decide, BillingEvent, BillingPolicy, StateLookup};
use revguard_core::domain::detector::alerts::{AlertMessage, Transition};
use revguard_core::domain::detector::{DetectConfig, Series};
use revguard_core::domain::event::MissingEvent;
use revguard_core::ports::{
    Account, Comebacks, CountersReader, EventLog, EventRecord, EventStatus, StoreError,
};
use revguard_core::usecases::detector_run::Detector;
use revguard_core::usecases::recovery::{AuditOutcome, DeliveryAudit, StripeAudit};

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

/// One message on call got: an alert's opening, escalation, reminder or resolution.
#[derive(Debug, Clone, Serialize)]
pub struct Heard {
    pub at: i64,
    /// When its alert opened: what it is attributed by.
    pub opened_at: i64,
    pub alert_id: String,
    pub signal: String,
    pub transition: Transition,
    pub severity: String,
    pub explanation: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalResult {
    pub incidents: Vec<IncidentResult>,
    /// Openings no injected incident explains.
    pub false_alerts: Vec<Opened>,
    pub opened: Vec<Opened>,
    /// Every message on call got.
    pub heard: Vec<Heard>,
    /// Those of an alert no injected incident explains.
    pub false_messages: Vec<Heard>,
    pub monitored_days: i64,
}

/// The simulation's counters: the replayed state's.
pub struct SimCounters(pub BillingState);

/// The simulation's platform has no connected accounts.
impl CountersReader for SimCounters {
    async fn counters(
        &self,
        livemode: bool,
        account: &Account,
        from: i64,
        to: i64,
    ) -> Result<Series, StoreError> {
        let mut out = Series::new();
        if !account.is_platform() {
            return Ok(out);
        }
        for ((l, hour, metric), value) in &self.0.counters {
            if *l == livemode && (*hour == 0 || (*hour >= from && *hour < to)) {
                out.entry(*hour).or_default().insert(metric.clone(), *value);
            }
        }
        Ok(out)
    }

    async fn connected(
        &self,
        _livemode: bool,
        _from: i64,
        _to: i64,
    ) -> Result<std::collections::BTreeMap<Account, Series>, StoreError> {
        Ok(Default::default())
    }
}

/// Who is subscribed again: nobody is asked about it here (win-backs are the team's, and
/// not counted).
pub struct NoComebacks;

impl Comebacks for NoComebacks {
    async fn is_subscribed(
        &self,
        _account: &Account,
        _customer: &str,
        _livemode: bool,
    ) -> Result<bool, StoreError> {
        Ok(false)
    }
}

/// The detector's audit in the simulation: none (no Stripe key: silence alone), or the
/// real one over a Stripe double that knows every event the scenario created and the
/// event log of what was delivered.
pub struct SimAudit(pub Option<StripeAudit<MemoryStripe, MemoryEventLog>>);

impl DeliveryAudit for SimAudit {
    async fn audit(
        &self,
        now: i64,
        accounts: &[Account],
        remembered: &[MissingEvent],
    ) -> Option<AuditOutcome> {
        match &self.0 {
            Some(audit) => audit.audit(now, accounts, remembered).await,
            None => None,
        }
    }
}

pub type SimDetector = Detector<
    SimCounters,
    MemoryAlerts,
    MemoryPublisher<AlertMessage>,
    NoComebacks,
    SimAudit,
    CountedPause,
>;

/// Runs a future of the in-memory stores, which never wait.
fn ready<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => unreachable!("the simulation's stores never wait"),
    }
}

/// The worker's effects and the real detector over memory stores, as the scenario plays.
pub struct Replay<'a> {
    pub detector: SimDetector,
    policy: &'a BillingPolicy,
}

impl<'a> Replay<'a> {
    /// With `stripe`, the detector audits delivery against it (a Stripe key); without,
    /// it judges delivery by silence.
    pub fn new(
        policy: &'a BillingPolicy,
        config: &DetectConfig,
        stripe: Option<MemoryStripe>,
    ) -> Self {
        Self {
            detector: Detector {
                counters: SimCounters(BillingState::default()),
                alerts: MemoryAlerts::default(),
                publisher: MemoryPublisher::default(),
                comebacks: NoComebacks,
                config: config.clone(),
                audit: SimAudit(stripe.map(|api| StripeAudit {
                    api,
                    log: MemoryEventLog::default(),
                    endpoint_url: None,
                    eventbridge_source: None,
                })),
                pause: CountedPause::default(),
                wall_clock: revguard_core::domain::time::unix_now,
            },
            policy,
        }
    }

    pub fn state(&self) -> &BillingState {
        &self.detector.counters.0
    }

    pub fn apply(&mut self, raw: &str, received_at: i64) {
        let Ok(event) = BillingEvent::parse(raw.as_bytes(), received_at) else {
            return;
        };
        if let Some(audit) = &self.detector.audit.0 {
            let record = EventRecord {
                event_id: event.id.clone(),
                event_type: event.event_type.clone(),
                created: event.created,
                livemode: event.livemode,
                received_at,
                expires_at: received_at + 30 * 86_400,
                status: EventStatus::Queued,
                stored_payload: None,
                account: event.account.clone(),
            };
            let _ = ready(audit.log.insert_if_absent(&record));
        }
        let state = &mut self.detector.counters.0;
        if state.applied.contains(&event.id) {
            return;
        }
        let Ok(fx) = decide(&event, &state.current(&event), self.policy) else {
            return;
        };
        for f in &fx.findings {
            self.detector.alerts.raise(f.clone());
        }
        state.commit(&event.id, fx);
    }

    /// One detector run at `now` over both modes; returns the transitions it published.
    pub fn detect(&mut self, now: i64) -> Vec<AlertMessage> {
        ready(self.detector.run(now))
            .expect("memory stores do not fail")
            .transitions
    }
}

/// Replays the scenario with the detector every `step_secs` over the monitored days;
/// with `stripe`, the detector audits delivery against it.
pub fn evaluate(
    scenario: &Scenario,
    config: &DetectConfig,
    policy: &BillingPolicy,
    step_secs: i64,
    audit: bool,
) -> EvalResult {
    let stripe = audit.then(|| {
        let stripe = MemoryStripe::new(scenario.config.livemode);
        for e in &scenario.events {
            stripe.created(&e.raw);
        }
        stripe
    });
    let mut replay = Replay::new(policy, config, stripe);
    let mut next = 0;
    let from = scenario.config.monitored_from();
    let end = scenario.config.end();
    let mut heard = Vec::new();
    let mut t = from;
    while t <= end {
        while next < scenario.events.len() && scenario.events[next].received_at <= t {
            let e = &scenario.events[next];
            replay.apply(&e.raw, e.received_at);
            next += 1;
        }
        for m in replay.detect(t) {
            // What on call hears: the team's win-backs are notifications, not alarms.
            if revguard_core::domain::audience::reaches_on_call(&m.signal) {
                heard.push(Heard {
                    at: t,
                    opened_at: m.opened_at,
                    alert_id: m.alert_id.clone(),
                    signal: m.signal.clone(),
                    transition: m.transition,
                    severity: m.severity.as_str().to_owned(),
                    explanation: m.finding.explanation.clone(),
                });
            }
        }
        t += step_secs;
    }
    score(scenario, heard)
}

fn score(scenario: &Scenario, heard: Vec<Heard>) -> EvalResult {
    // The latest incident begun before the alert opened, whose margin still covers it.
    let owner_at = |alert_id: &str, at: i64| {
        scenario.incidents.iter().rposition(|i| {
            i.kind.explains(alert_id)
                && at >= i.start
                && at <= i.end + attribution_margin_secs(alert_id)
        })
    };
    let owner = |o: &Opened| owner_at(&o.alert_id, o.at);
    let opened: Vec<Opened> = heard
        .iter()
        .filter(|h| h.transition == Transition::Opened)
        .map(|h| Opened {
            at: h.at,
            alert_id: h.alert_id.clone(),
            severity: h.severity.clone(),
            explanation: h.explanation.clone(),
        })
        .collect();
    // A message is the incident's if its alert's opening was.
    let false_messages = heard
        .iter()
        .filter(|h| owner_at(&h.alert_id, h.opened_at).is_none())
        .cloned()
        .collect();
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
        heard,
        false_messages,
        monitored_days: scenario.config.monitored_days,
    }
}
