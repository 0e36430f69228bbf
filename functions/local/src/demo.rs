//! `revguard demo`: the whole product on a simulated clock. Seeded synthetic traffic goes
//! through the real HTTP ingress (validly signed at simulated times), the embedded worker
//! and the detector; incidents are injected on the last day; the timeline shows what was
//! flagged and when, against what was injected.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use revguard_core::domain::billing::BillingPolicy;
use revguard_core::domain::detector::alerts::{datetime, AlertMessage, Transition};
use revguard_core::domain::detector::{hhmm, DetectConfig};
use revguard_core::domain::signature::sign;
use revguard_core::{IngestConfig, Ingress, SecretSet, WebhookSecret};
use revguard_http::{router, App};
use revguard_testkit::simulation::eval::attribution_margin_secs;
use revguard_testkit::simulation::scenario::{generate, Incident, IncidentKind, ScenarioConfig};

use crate::consumer;
use crate::detector;
use crate::publish::JsonlPublisher;
use revguard_sqlite::SqliteStore;

const STEP: i64 = 900;

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub seed: u64,
    pub customers: usize,
    /// Keep the database here (otherwise a temporary one is removed at the end).
    pub db: Option<PathBuf>,
    /// Only replay into the database: no detection, no timeline.
    pub replay_only: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot set up the demo: {0}")]
    Setup(String),
    #[error("the store failed")]
    Store(#[from] revguard_core::StoreError),
    #[error("a webhook was not accepted: {0}")]
    Rejected(String),
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct IncidentOutcome {
    pub incident: Incident,
    pub flagged_after_secs: Option<i64>,
    pub by: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DemoReport {
    pub webhooks: usize,
    pub applied: u64,
    pub incidents: Vec<IncidentOutcome>,
    pub false_alerts: Vec<AlertMessage>,
    pub timeline: Vec<String>,
}

pub async fn run(options: DemoOptions) -> Result<DemoReport, DemoError> {
    let temp = tempdir()?;
    let db = options.db.clone().unwrap_or_else(|| temp.join("demo.db"));
    let _ = std::fs::remove_file(&db);
    let store = SqliteStore::open(&db).map_err(|e| DemoError::Setup(e.to_string()))?;
    let secret =
        WebhookSecret::new("whsec_revguard_demo").map_err(|e| DemoError::Setup(e.to_string()))?;

    // One simulated clock for signatures, ingress and the worker's receipt times.
    let clock = Arc::new(AtomicI64::new(0));
    let read_clock = clock.clone();
    let app = Arc::new(App::new(
        Ingress::new(
            store.clone(),
            store.clone(),
            IngestConfig::new(SecretSet::single(secret.clone())),
        ),
        Arc::new(move || read_clock.load(Ordering::SeqCst)),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| DemoError::Setup(e.to_string()))?;
    let url = format!(
        "http://{}/webhook",
        listener
            .local_addr()
            .map_err(|e| DemoError::Setup(e.to_string()))?
    );
    let server = tokio::spawn(async move { axum::serve(listener, router(app)).await });

    let worker = consumer::worker(
        &store,
        BillingPolicy::default(),
        JsonlPublisher::log_only("notification"),
    );
    let mut detector = detector::detector(
        &store,
        DetectConfig::default(),
        crate::chat::AlertPublisher::log_only(),
        JsonlPublisher::log_only("notification"),
    );
    let mut config = ScenarioConfig::new(options.seed);
    config.customers = options.customers;
    let scenario = generate(config.clone());

    let client = reqwest::Client::new();
    let mut next = 0;
    let mut transitions: Vec<AlertMessage> = Vec::new();
    let mut t = config.start + STEP;
    while t <= config.end() {
        while next < scenario.events.len() && scenario.events[next].received_at <= t {
            let e = &scenario.events[next];
            clock.store(e.received_at, Ordering::SeqCst);
            let header = sign(&secret, e.received_at, e.raw.as_bytes());
            let response = client
                .post(&url)
                .header("stripe-signature", header)
                .body(e.raw.clone())
                .send()
                .await
                .map_err(|err| DemoError::Rejected(err.to_string()))?;
            if !response.status().is_success() {
                return Err(DemoError::Rejected(format!(
                    "{}: {}",
                    e.id,
                    response.status()
                )));
            }
            next += 1;
        }
        while consumer::run_once(&store, &worker, t).await? > 0 {}
        if !options.replay_only && t >= config.monitored_from() {
            // As of `t`: what was received by then, as the live timer would have seen it.
            detector.counters.received_before = Some(t);
            // What on call hears: the team's win-backs are notifications, not alarms.
            transitions.extend(
                detector
                    .run(t)
                    .await?
                    .transitions
                    .into_iter()
                    .filter(|m| revguard_core::domain::audience::reaches_on_call(&m.signal)),
            );
        }
        t += STEP;
    }
    server.abort();
    let applied = store.applied_count()?;
    store.close();
    if options.db.is_none() {
        let _ = std::fs::remove_dir_all(&temp);
    }
    Ok(report(
        &scenario.incidents,
        scenario.events.len(),
        applied,
        transitions,
    ))
}

fn tempdir() -> Result<PathBuf, DemoError> {
    let dir = std::env::temp_dir().join(format!(
        "revguard-demo-{}-{}",
        std::process::id(),
        revguard_core::domain::time::unix_now()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| DemoError::Setup(e.to_string()))?;
    Ok(dir)
}

fn report(
    incidents: &[Incident],
    webhooks: usize,
    applied: u64,
    transitions: Vec<AlertMessage>,
) -> DemoReport {
    // The latest incident begun before the alert, whose margin still covers it.
    let owner = |m: &AlertMessage| {
        incidents.iter().rposition(|i| {
            i.kind.explains(&m.alert_id)
                && m.at >= i.start
                && m.at <= i.end + attribution_margin_secs(&m.alert_id)
        })
    };
    let opened: Vec<&AlertMessage> = transitions
        .iter()
        .filter(|m| m.transition == Transition::Opened)
        .collect();
    let outcomes = incidents
        .iter()
        .enumerate()
        .map(|(i, inc)| {
            let first = opened.iter().find(|m| owner(m) == Some(i));
            IncidentOutcome {
                incident: inc.clone(),
                flagged_after_secs: first.map(|m| m.at - inc.start),
                by: first.map(|m| m.alert_id.clone()),
            }
        })
        .collect();
    let false_alerts = opened
        .iter()
        .filter(|m| owner(m).is_none())
        .map(|m| (*m).clone())
        .collect();

    let mut lines: Vec<(i64, u8, String)> = Vec::new();
    for inc in incidents {
        let what = match inc.kind {
            IncidentKind::FailedChargeBurst => format!("{} failed charges", inc.size),
            IncidentKind::RefundSpike => format!("{} refunds", inc.size),
            IncidentKind::DisputeCluster => format!("{} disputes", inc.size),
            IncidentKind::WebhookOutage => {
                "no webhook reaches revguard (Stripe retries later)".to_owned()
            }
            IncidentKind::CancellationWave => format!("{} cancellations", inc.size),
        };
        lines.push((
            inc.start,
            0,
            format!(
                "INJECTED  {}: {what}, until {}",
                inc.kind.as_str(),
                hhmm(inc.end)
            ),
        ));
    }
    for m in &transitions {
        let label = match m.transition {
            Transition::Opened => format!("ALERT     {}", m.severity.as_str().to_uppercase()),
            Transition::Escalated => "ESCALATED CRITICAL".to_owned(),
            Transition::Reminder => "REMINDER ".to_owned(),
            Transition::Resolved => "resolved ".to_owned(),
            Transition::Quiet => continue,
        };
        let text = if m.transition == Transition::Resolved {
            format!("{label} {}", m.alert_id)
        } else {
            format!("{label} {}", m.finding.explanation)
        };
        lines.push((m.at, 1, text));
    }
    lines.sort();
    let timeline = lines
        .into_iter()
        .map(|(t, _, text)| format!("{}  {text}", &datetime(t)[..16]))
        .collect();
    DemoReport {
        webhooks,
        applied,
        incidents: outcomes,
        false_alerts,
        timeline,
    }
}

pub fn print(report: &DemoReport, options: &DemoOptions) {
    println!(
        "revguard demo (seed {}): {} customers, 10 simulated days (sign-ups, 8 days of baseline, a monitored day); {} signed webhooks replayed through POST /webhook, {} applied by the worker; detector every 15 min on the last day\n",
        options.seed, options.customers, report.webhooks, report.applied
    );
    for line in &report.timeline {
        println!("{line}");
    }
    println!("\nWhat was injected, and when it was flagged:");
    for o in &report.incidents {
        match o.flagged_after_secs {
            Some(s) => println!(
                "  {:<20} flagged after {:>3} min by {} (target {} min)",
                o.incident.kind.as_str(),
                s / 60,
                o.by.as_deref().unwrap_or(""),
                o.incident.kind.detection_target_secs() / 60
            ),
            None => println!("  {:<20} NOT flagged", o.incident.kind.as_str()),
        }
    }
    if report.false_alerts.is_empty() {
        println!("  false alerts: none");
    } else {
        for m in &report.false_alerts {
            println!(
                "  false alert at {}: {}",
                &datetime(m.at)[..16],
                m.finding.explanation
            );
        }
    }
}
