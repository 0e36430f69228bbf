//! The forwarder against a PagerDuty double: a failed trigger holds back its resolve in
//! the same batch (both redelivered, then paged in order) and holds back nothing else.

use std::sync::{Arc, Mutex};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use axum::extract::State;
use axum::http::StatusCode;
use revguard_core::domain::chat::sample_alert;
use revguard_core::domain::detector::alerts::Transition;
use revguard_pager::{handle_batch, Pager, PagerEnv};
use serde_json::{json, Value};

#[derive(Clone, Default)]
struct Double {
    received: Arc<Mutex<Vec<(Value, u16)>>>,
    script: Arc<Mutex<Vec<u16>>>,
}

async fn enqueue(State(d): State<Double>, body: String) -> StatusCode {
    let status = {
        let mut s = d.script.lock().unwrap();
        if s.is_empty() {
            202
        } else {
            s.remove(0)
        }
    };
    d.received
        .lock()
        .unwrap()
        .push((serde_json::from_str(&body).unwrap(), status));
    StatusCode::from_u16(status).unwrap()
}

fn record(id: &str, message: &Value) -> SqsMessage {
    let mut m = SqsMessage::default();
    m.message_id = Some(id.to_owned());
    m.body = Some(json!({"Type": "Notification", "Message": message.to_string()}).to_string());
    m
}

fn batch(records: Vec<SqsMessage>) -> SqsEvent {
    let mut e = SqsEvent::default();
    e.records = records;
    e
}

/// A pager whose PagerDuty is a double answering `first`, then 202.
async fn pager_and_double(first: u16) -> (Pager, Double) {
    let double = Double::default();
    double.script.lock().unwrap().push(first);
    let app = axum::Router::new()
        .route("/v2/enqueue", axum::routing::post(enqueue))
        .with_state(double.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v2/enqueue", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let pager = Pager::new(
        &PagerEnv {
            routing_key_secret_arn: "unused".into(),
            events_url: url,
            dashboard_url: None,
        },
        "R0UT1NG".into(),
    )
    .unwrap();
    (pager, double)
}

#[tokio::test]
async fn a_failed_trigger_holds_back_its_resolve_and_nothing_else() {
    let (pager, double) = pager_and_double(503).await;

    let opened = serde_json::to_value(sample_alert(Transition::Opened)).unwrap();
    let mut resolved = serde_json::to_value(sample_alert(Transition::Resolved)).unwrap();
    // A day after the opening, as an event-level alert resolves.
    resolved["at"] = json!(opened["at"].as_i64().unwrap() + 86_400);
    let mut other = opened.clone();
    other["alert_id"] = json!("live:spike:refunds");
    let response = handle_batch(
        &pager,
        batch(vec![
            record("1", &opened),
            record("2", &resolved),
            record("3", &other),
        ]),
    )
    .await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["1", "2"]);

    let again = handle_batch(
        &pager,
        // Redelivered out of order: paged in the order they happened.
        batch(vec![record("2", &resolved), record("1", &opened)]),
    )
    .await;
    assert!(again.batch_item_failures.is_empty());
    let received = double.received.lock().unwrap().clone();
    let sent: Vec<(String, String, u16)> = received
        .iter()
        .map(|(e, s)| {
            (
                e["dedup_key"].as_str().unwrap().to_owned(),
                e["event_action"].as_str().unwrap().to_owned(),
                *s,
            )
        })
        .collect();
    let opened_at = opened["opened_at"].as_i64().unwrap();
    let alert = format!("live:large_refund:ch_1:{opened_at}");
    assert_eq!(
        sent,
        [
            (alert.clone(), "trigger".to_owned(), 503),
            (
                format!("live:spike:refunds:{opened_at}"),
                "trigger".to_owned(),
                202
            ),
            (alert.clone(), "trigger".to_owned(), 202),
            (alert, "resolve".to_owned(), 202),
        ]
    );
    assert!(received.iter().all(|(e, _)| e["routing_key"] == "R0UT1NG"));
}

#[tokio::test]
async fn a_page_pagerduty_refuses_and_a_message_not_to_page_are_let_go() {
    let (pager, double) = pager_and_double(400).await;
    let opened = serde_json::to_value(sample_alert(Transition::Opened)).unwrap();
    let mut garbage = SqsMessage::default();
    garbage.message_id = Some("2".into());
    garbage.body = Some("not an SNS notification".into());
    let response = handle_batch(&pager, batch(vec![record("1", &opened), garbage])).await;
    // Neither would go through on a retry: no redelivery, no dead letter, an error log.
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(double.received.lock().unwrap().len(), 1);
}
