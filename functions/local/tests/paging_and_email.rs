//! Paging and email, embedded: a PagerDuty double sees one alert's life as one incident
//! (trigger, then resolve, each delivered once although the first attempt fails); a real
//! SMTP server (aiosmtpd, from the test venv) receives the alert for on call and the
//! dunning notice for the team, after a transient refusal, and a refused recipient is
//! given up at once.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use revguard_core::domain::billing::BillingPolicy;
use revguard_core::ports::Queue;
use revguard_core::usecases::retry::Backoff;
use revguard_core::{Payload, QueueMessage};
use revguard_local::chat::{
    self, AlertPublisher, Delivery, Destinations, NotificationPublisher, PagerDuty,
};
use revguard_local::consumer;
use revguard_local::detector;
use revguard_local::email::{Recipients, Smtp};
use revguard_local::publish::JsonlPublisher;
use revguard_local::stop::StopSignal;
use revguard_sqlite::SqliteStore;
use revguard_testkit::fixtures;
use serde_json::Value;

const ROUTING_KEY: &str = "R0UTINGKEY0123456789abcdef012345";

/// What PagerDuty's double received: (body, status answered).
#[derive(Clone, Default)]
struct EventsApi {
    received: Arc<Mutex<Vec<(Value, u16)>>>,
    /// Statuses to answer first; 202 after them.
    script: Arc<Mutex<Vec<u16>>>,
}

async fn enqueue(State(api): State<EventsApi>, body: String) -> (StatusCode, String) {
    let status = {
        let mut script = api.script.lock().unwrap();
        if script.is_empty() {
            202
        } else {
            script.remove(0)
        }
    };
    let event: Value = serde_json::from_str(&body).unwrap();
    let answer = serde_json::json!({
        "status": if status == 202 { "success" } else { "error" },
        "dedup_key": event["dedup_key"],
    });
    api.received.lock().unwrap().push((event, status));
    (StatusCode::from_u16(status).unwrap(), answer.to_string())
}

async fn events_api(script: &[u16]) -> (String, EventsApi) {
    let api = EventsApi::default();
    api.script.lock().unwrap().extend(script);
    let app = axum::Router::new()
        .route("/v2/enqueue", axum::routing::post(enqueue))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v2/enqueue", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, api)
}

fn fast(delivery: Delivery) -> Delivery {
    Delivery {
        backoff: Backoff {
            base: Duration::from_millis(50),
            cap: Duration::from_millis(200),
            max_attempts: 50,
        },
        ..delivery
    }
}

fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("deliveries.db")).unwrap();
    (dir, store)
}

async fn until_deliveries(
    store: &SqliteStore,
    what: &str,
    check: impl Fn(&[revguard_sqlite::chat::ChatDeliveryStatus]) -> bool,
) {
    for _ in 0..400 {
        if check(&store.chat_deliveries().unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: {:?}", store.chat_deliveries().unwrap());
}

/// Applies one fixture event through the embedded worker, at `received_at`.
async fn apply(
    store: &SqliteStore,
    worker: &consumer::EmbeddedWorker,
    fixture: &str,
    id: &str,
) -> i64 {
    let raw = fixtures::with_id(fixture, id);
    let event: Value = serde_json::from_str(&raw).unwrap();
    let created = event["created"].as_i64().unwrap();
    store
        .send(&QueueMessage {
            event_id: id.into(),
            event_type: event["type"].as_str().unwrap().into(),
            livemode: event["livemode"].as_bool().unwrap(),
            created,
            received_at: created + 1,
            payload: Payload::Inline(raw),
            via: Default::default(),
        })
        .await
        .unwrap();
    assert_eq!(
        consumer::run_once(store, worker, created + 1)
            .await
            .unwrap(),
        1
    );
    created
}

fn policy() -> BillingPolicy {
    BillingPolicy {
        large_refund_minor_units: 1_000,
        ..BillingPolicy::default()
    }
}

#[tokio::test]
async fn one_alert_is_one_incident_triggered_then_resolved_once_each() {
    let (_dir, store) = store();
    let (url, api) = events_api(&[500]).await;
    let destinations = Destinations {
        pagerduty: Some(PagerDuty::new(ROUTING_KEY, Some(&url)).unwrap()),
        ..Destinations::default()
    };
    let outbox = destinations.outbox(&store, None).unwrap();
    let worker = consumer::worker(&store, policy(), JsonlPublisher::log_only("notification"));
    let refunded = apply(&store, &worker, "charge.refunded.json", "evt_big_refund").await;
    let detector = detector::detector(
        &store,
        Default::default(),
        AlertPublisher {
            file: JsonlPublisher::log_only("alert"),
            deliveries: Some(outbox.clone()),
        },
        JsonlPublisher::log_only("notification"),
    );
    let stop = StopSignal::default();
    let loop_task = tokio::spawn(chat::deliver(
        store.clone(),
        fast(destinations.delivery()),
        outbox.wake_signal(),
        stop.clone(),
    ));

    let opened = detector.run(refunded + 60).await.unwrap();
    assert_eq!(opened.published.len(), 1, "{:?}", opened.published);
    // A run that finds the alert open owes nothing new.
    assert!(detector
        .run(refunded + 960)
        .await
        .unwrap()
        .published
        .is_empty());
    // An event-level alert resolves a day on.
    let resolved = detector.run(refunded + 25 * 3600).await.unwrap();
    assert_eq!(resolved.published.len(), 1, "{:?}", resolved.published);

    until_deliveries(&store, "both delivered", |d| {
        d.len() == 2 && d.iter().all(|d| d.delivered)
    })
    .await;
    stop.stop();
    loop_task.await.unwrap();

    let received = api.received.lock().unwrap().clone();
    let accepted: Vec<&Value> = received
        .iter()
        .filter(|(_, status)| *status == 202)
        .map(|(e, _)| e)
        .collect();
    let actions: Vec<&str> = accepted
        .iter()
        .map(|e| e["event_action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["trigger", "resolve"], "{received:?}");
    assert_eq!(received.len(), 3, "the 500 was retried once: {received:?}");
    // The fixture's refund is in test mode, on charge ch_RG1001.
    let incident = received[0].0["dedup_key"].as_str().unwrap().to_owned();
    assert!(
        incident.starts_with("test:large_refund:ch_RG1001:"),
        "{incident}"
    );
    for (event, _) in &received {
        assert_eq!(event["routing_key"], ROUTING_KEY);
        assert_eq!(event["dedup_key"], incident.as_str());
    }
    assert_eq!(accepted[0]["dedup_key"], accepted[1]["dedup_key"]);
    assert_eq!(accepted[0]["payload"]["severity"], "warning");
    assert!(accepted[0]["payload"]["summary"]
        .as_str()
        .unwrap()
        .contains("refund"));
    // The routing key is a secret: never stored with the deliveries.
    let stored = rusqlite::Connection::open(store.path())
        .unwrap()
        .query_row(
            "SELECT group_concat(body, ' ') FROM chat_deliveries",
            [],
            |r| r.get::<_, String>(0),
        )
        .unwrap();
    assert!(!stored.contains(ROUTING_KEY));
}

/// aiosmtpd on loopback, appending what it accepts to `file`.
struct SmtpSink {
    child: Child,
    port: u16,
    file: std::path::PathBuf,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SmtpSink {
    fn start(dir: &std::path::Path, fail_first: u32) -> Self {
        let python = std::env::var("REVGUARD_PYTHON").expect(
            "REVGUARD_PYTHON is not set: the email tests run a real SMTP server (aiosmtpd); \
             run them through scripts/test, which installs it",
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let file = dir.join("mail.jsonl");
        let script = fixtures::events_dir().join("../scripts/smtp_sink.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(port.to_string())
            .arg(&file)
            .arg("--fail-first")
            .arg(fail_first.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start scripts/smtp_sink.py");
        let mut ready = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready.trim(), "ready", "the SMTP sink did not start");
        Self { child, port, file }
    }

    /// Destinations that email `to` from `from` through this server.
    fn emailing(&self, from: &str, to: Recipients) -> Destinations {
        let smtp = Smtp::new(
            &format!("smtp://127.0.0.1:{}", self.port),
            from,
            Duration::from_secs(10),
        )
        .unwrap();
        Destinations {
            email: Some((smtp, to)),
            ..Destinations::default()
        }
    }

    fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.file)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

#[tokio::test]
async fn alerts_reach_on_call_and_notices_the_team_by_email_once_each() {
    let (dir, store) = store();
    let sink = SmtpSink::start(dir.path(), 1);
    let destinations = sink.emailing(
        "revguard <revguard@example.com>",
        Recipients::parse("oncall@example.com", "success@example.com", "").unwrap(),
    );
    let outbox = destinations.outbox(&store, None).unwrap();
    let team = NotificationPublisher {
        file: JsonlPublisher::log_only("notification"),
        deliveries: Some(outbox.clone()),
    };
    let worker = consumer::worker(&store, policy(), team.clone());
    apply(
        &store,
        &worker,
        "invoice.payment_failed.json",
        "evt_failed_1",
    )
    .await;
    let refunded = apply(&store, &worker, "charge.refunded.json", "evt_big_refund").await;
    let detector = detector::detector(
        &store,
        Default::default(),
        AlertPublisher {
            file: JsonlPublisher::log_only("alert"),
            deliveries: Some(outbox.clone()),
        },
        team,
    );
    assert_eq!(
        detector.run(refunded + 60).await.unwrap().published.len(),
        1
    );

    let stop = StopSignal::default();
    let loop_task = tokio::spawn(chat::deliver(
        store.clone(),
        fast(destinations.delivery()),
        outbox.wake_signal(),
        stop.clone(),
    ));
    until_deliveries(&store, "both mails delivered", |d| {
        d.len() == 2 && d.iter().all(|d| d.delivered)
    })
    .await;
    stop.stop();
    loop_task.await.unwrap();

    let mails = sink.received();
    assert_eq!(mails.len(), 2, "{mails:?}");
    let to_team = mails
        .iter()
        .find(|m| m["to"][0] == "success@example.com")
        .expect("the dunning notice went to the team");
    assert!(
        to_team["data"].as_str().unwrap().contains("Stage: notice"),
        "{to_team}"
    );
    let to_on_call = mails
        .iter()
        .find(|m| m["to"][0] == "oncall@example.com")
        .expect("the alert went to on call");
    let data = to_on_call["data"].as_str().unwrap();
    assert!(data.contains("Subject: "), "{data}");
    assert!(data.to_lowercase().contains("refund"), "{data}");
    assert_eq!(to_on_call["from"], "revguard@example.com");
    let attempts: u32 = store
        .chat_deliveries()
        .unwrap()
        .iter()
        .map(|d| d.attempts)
        .sum();
    assert_eq!(attempts, 3, "the 451 was retried once");
}

#[tokio::test]
async fn a_recipient_the_server_refuses_is_given_up_at_once() {
    let (dir, store) = store();
    let sink = SmtpSink::start(dir.path(), 0);
    let destinations = sink.emailing(
        "revguard@example.com",
        Recipients::parse("bounce@example.com", "", "").unwrap(),
    );
    let outbox = destinations.outbox(&store, None).unwrap();
    use revguard_core::ports::Publisher;
    AlertPublisher {
        file: JsonlPublisher::log_only("alert"),
        deliveries: Some(outbox),
    }
    .publish(&fixtures::large_refund_alert(
        revguard_core::domain::detector::alerts::Transition::Opened,
    ))
    .await
    .unwrap();
    chat::deliver_due(
        &store,
        &fast(destinations.delivery()),
        &reqwest::Client::new(),
    )
    .await
    .unwrap();
    let status = &store.chat_deliveries().unwrap()[0];
    assert!(status.given_up && !status.delivered, "{status:?}");
    assert_eq!(status.attempts, 1);
    let error = status.last_error.clone().unwrap();
    assert!(error.contains("550"), "{error}");
    assert!(sink.received().is_empty());
}
