//! Alerts posted to Slack and Teams incoming webhooks, embedded: receivers in the test
//! that fail, hang or answer; the posts go through the SQLite store and the delivery loop
//! that `revguard serve` runs.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use revguard_core::domain::billing::BillingPolicy;
use revguard_core::domain::chat::ChatApp;
use revguard_core::domain::detector::alerts::Transition;
use revguard_core::ports::{Publisher, Queue};
use revguard_core::usecases::retry::Backoff;
use revguard_core::{Payload, QueueMessage};
use revguard_local::chat::{self, AlertPublisher, ChatWebhook, Delivery, DeliveryOutbox};
use revguard_local::consumer;
use revguard_local::detector;
use revguard_local::publish::JsonlPublisher;
use revguard_local::stop::StopSignal;
use revguard_sqlite::SqliteStore;
use revguard_testkit::fixtures;
use serde_json::Value;

/// (path, body, the status answered)
type Posts = Arc<Mutex<Vec<(String, String, u16)>>>;

#[derive(Clone, Default)]
struct Receiver {
    posts: Posts,
    /// Statuses to answer first, in order; 200 after them.
    script: Arc<Mutex<VecDeque<u16>>>,
}

async fn answer(State(r): State<Receiver>, uri: Uri, body: String) -> (StatusCode, &'static str) {
    let status = r.script.lock().unwrap().pop_front().unwrap_or(200);
    r.posts
        .lock()
        .unwrap()
        .push((uri.path().to_owned(), body, status));
    (StatusCode::from_u16(status).unwrap(), "ok")
}

/// A webhook receiver on loopback answering `script` first; its base URL.
async fn receiver(script: &[u16]) -> (String, Receiver) {
    let r = Receiver::default();
    r.script.lock().unwrap().extend(script);
    let app = axum::Router::new().fallback(answer).with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, r)
}

/// A receiver that takes connections and never answers.
async fn silent_receiver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    url
}

fn fast(webhooks: Vec<ChatWebhook>, timeout: Duration) -> Delivery {
    Delivery {
        backoff: Backoff {
            base: Duration::from_millis(50),
            cap: Duration::from_millis(200),
            max_attempts: 50,
        },
        timeout,
        ..Delivery::new(webhooks)
    }
}

fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("chat.db")).unwrap();
    (dir, store)
}

fn publisher(store: &SqliteStore, apps: Vec<ChatApp>) -> (AlertPublisher, DeliveryOutbox) {
    let outbox = DeliveryOutbox::new(
        store.clone(),
        apps,
        Some("http://127.0.0.1:8787/dashboard".into()),
    );
    let publisher = AlertPublisher {
        file: JsonlPublisher::log_only("alert"),
        deliveries: Some(outbox.clone()),
    };
    (publisher, outbox)
}

/// Polls the store until `check` holds on its deliveries, or fails after 20 s.
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

/// The team's channel, which these alarms never reach.
fn team() -> revguard_local::publish::JsonlPublisher {
    revguard_local::publish::JsonlPublisher::log_only("notification")
}

#[tokio::test]
async fn a_receiver_that_fails_twice_gets_the_transition_once() {
    let (_dir, store) = store();
    let (url, received) = receiver(&[500, 503]).await;
    let hook = ChatWebhook::parse(ChatApp::Slack, &format!("{url}/services/T0/B0/secret")).unwrap();
    let (publisher, outbox) = publisher(&store, vec![ChatApp::Slack]);
    let stop = StopSignal::default();
    let loop_task = tokio::spawn(chat::deliver(
        store.clone(),
        fast(vec![hook], Duration::from_secs(5)),
        outbox.wake_signal(),
        stop.clone(),
    ));

    let message = fixtures::large_refund_alert(Transition::Opened);
    // Published twice, as a detector run does when it could not clear its outbox entry.
    publisher.publish(&message).await.unwrap();
    publisher.publish(&message).await.unwrap();
    until_deliveries(&store, "delivered", |d| d.iter().all(|d| d.delivered)).await;
    // Published again after delivery: nothing more is owed.
    publisher.publish(&message).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.stop();
    loop_task.await.unwrap();

    let posts = received.posts.lock().unwrap().clone();
    let statuses: Vec<u16> = posts.iter().map(|p| p.2).collect();
    assert_eq!(statuses, vec![500, 503, 200], "{posts:?}");
    assert!(posts.iter().all(|p| p.0 == "/services/T0/B0/secret"));
    let delivered: Value = serde_json::from_str(&posts[2].1).unwrap();
    assert!(delivered["text"].as_str().unwrap().contains("Large refund"));
    assert!(delivered.to_string().contains("$6,500.00"), "{delivered}");
    let status = store.chat_deliveries().unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!((status[0].attempts, status[0].delivered), (3, true));
}

#[tokio::test]
async fn a_url_the_app_refuses_is_given_up_at_once() {
    let (_dir, store) = store();
    let (url, received) = receiver(&[404]).await;
    let hook = ChatWebhook::parse(ChatApp::Teams, &format!("{url}/webhookb2/gone")).unwrap();
    let (publisher, _outbox) = publisher(&store, vec![ChatApp::Teams]);
    publisher
        .publish(&fixtures::large_refund_alert(Transition::Opened))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    chat::deliver_due(&store, &fast(vec![hook], Duration::from_secs(5)), &client)
        .await
        .unwrap();
    let status = &store.chat_deliveries().unwrap()[0];
    assert!(status.given_up && !status.delivered, "{status:?}");
    assert_eq!(status.last_error.as_deref(), Some("HTTP 404: ok"));
    assert_eq!(received.posts.lock().unwrap().len(), 1);
}

/// The embedded worker applies a refund over the threshold: a pending large-refund finding.
async fn a_large_refund_waiting(store: &SqliteStore) -> i64 {
    let raw = fixtures::with_id("charge.refunded.json", "evt_large_refund");
    let event: Value = serde_json::from_str(&raw).unwrap();
    let created = event["created"].as_i64().unwrap();
    let message = QueueMessage {
        event_id: "evt_large_refund".into(),
        event_type: "charge.refunded".into(),
        livemode: event["livemode"].as_bool().unwrap(),
        created,
        received_at: created + 1,
        payload: Payload::Inline(raw),
        via: Default::default(),
    };
    store.send(&message).await.unwrap();
    let policy = BillingPolicy {
        large_refund_minor_units: 1_000,
        ..BillingPolicy::default()
    };
    let worker = consumer::worker(store, policy, JsonlPublisher::log_only("notification"));
    assert_eq!(
        consumer::run_once(store, &worker, created + 1)
            .await
            .unwrap(),
        1
    );
    created + 60
}

#[tokio::test]
async fn a_receiver_that_never_answers_holds_back_no_detection() {
    let (_dir, store) = store();
    let now = a_large_refund_waiting(&store).await;
    let url = silent_receiver().await;
    let hook = ChatWebhook::parse(ChatApp::Slack, &format!("{url}/services/T0/B0/secret")).unwrap();
    let (publisher, outbox) = publisher(&store, vec![ChatApp::Slack]);
    let stop = StopSignal::default();
    let loop_task = tokio::spawn(chat::deliver(
        store.clone(),
        fast(vec![hook], Duration::from_millis(300)),
        outbox.wake_signal(),
        stop.clone(),
    ));

    let detector = detector::detector(&store, Default::default(), publisher, team());
    let run = tokio::time::timeout(Duration::from_secs(5), detector.run(now))
        .await
        .expect("the detector run finished while the receiver hangs")
        .unwrap();
    assert_eq!(run.published.len(), 1, "{:?}", run.published);
    assert!(run.published[0].ends_with("opened"));
    // A second run finds the alert open: nothing new to post.
    let again = detector.run(now + 900).await.unwrap();
    assert!(again.transitions.is_empty(), "{:?}", again.transitions);

    until_deliveries(&store, "retried after timeouts", |d| {
        d.len() == 1 && d[0].attempts >= 2
    })
    .await;
    stop.stop();
    loop_task.await.unwrap();
    let status = &store.chat_deliveries().unwrap()[0];
    assert!(!status.delivered && !status.given_up, "{status:?}");
    let error = status.last_error.clone().unwrap();
    assert!(error.contains("timed out"), "{error}");
    assert!(
        !error.contains("secret") && !error.contains(&url),
        "{error}"
    );
}

#[tokio::test]
async fn concurrent_detector_runs_post_a_transition_once_to_each_app() {
    let (_dir, store) = store();
    let now = a_large_refund_waiting(&store).await;
    let (url, received) = receiver(&[]).await;
    let hooks = vec![
        ChatWebhook::parse(ChatApp::Slack, &format!("{url}/slack")).unwrap(),
        ChatWebhook::parse(ChatApp::Teams, &format!("{url}/teams")).unwrap(),
    ];
    let apps = vec![ChatApp::Slack, ChatApp::Teams];
    let first = detector::detector(
        &store,
        Default::default(),
        publisher(&store, apps.clone()).0,
        team(),
    );
    let second = detector::detector(
        &store,
        Default::default(),
        publisher(&store, apps).0,
        team(),
    );
    let (a, b) = tokio::join!(first.run(now), second.run(now));
    let published = a.unwrap().published.len() + b.unwrap().published.len();
    assert_eq!(published, 1, "one of the two runs publishes the opening");

    chat::deliver_due(
        &store,
        &fast(hooks, Duration::from_secs(5)),
        &reqwest::Client::new(),
    )
    .await
    .unwrap();
    let posts = received.posts.lock().unwrap().clone();
    let mut paths: Vec<&str> = posts.iter().map(|p| p.0.as_str()).collect();
    paths.sort();
    assert_eq!(paths, vec!["/slack", "/teams"], "{posts:?}");
    let teams: Value =
        serde_json::from_str(&posts.iter().find(|p| p.0 == "/teams").unwrap().1).unwrap();
    let card = &teams["attachments"][0]["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert!(card.to_string().contains("Large refund"), "{card}");
}

#[test]
fn the_docs_show_what_the_code_renders() {
    // The README and docs/ together: the samples live in the detector's page.
    let root = fixtures::events_dir().join("..");
    let mut readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut pages: Vec<_> = std::fs::read_dir(root.join("docs"))
        .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    pages.sort();
    for page in pages
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
    {
        readme.push_str(&std::fs::read_to_string(page).unwrap());
    }
    let link = "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#dashboards:name=revguard-health";
    let sample = revguard_core::domain::chat::sample_alert(Transition::Opened);
    for (summary, rendered) in [
        (
            "<summary>Slack (Block Kit)</summary>",
            revguard_core::domain::chat::slack_message(&sample, Some(link)),
        ),
        (
            "<summary>Microsoft Teams (Adaptive Card 1.4)</summary>",
            revguard_core::domain::chat::teams_message(&sample, Some(link)),
        ),
        (
            "<summary>AWS Chatbot custom notification",
            revguard_core::domain::chat::chatbot_notification(&sample, Some(link)),
        ),
    ] {
        let after = &readme[readme
            .find(summary)
            .unwrap_or_else(|| panic!("neither the README nor docs/ shows {summary}"))..];
        let start = after.find("```json\n").unwrap() + "```json\n".len();
        let end = start + after[start..].find("```").unwrap();
        let shown: Value =
            serde_json::from_str(&after[start..end]).unwrap_or_else(|e| panic!("{summary}: {e}"));
        assert_eq!(
            shown, rendered,
            "the docs' {summary} sample is stale: `revguard chat-test` prints the current one"
        );
    }
}
