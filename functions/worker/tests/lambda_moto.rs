//! The worker Lambda's handler with real SQS batches received from moto server, applying
//! to DynamoDB and publishing to SNS in moto, with the real SDK clients.

use std::collections::BTreeMap;

use aws_lambda_events::event::sqs::SqsEvent;
use revguard_aws::testing::{drain_queue, receive_as_event_source, MotoStack};
use revguard_aws::DynamoBilling;
use revguard_core::domain::billing::state::BillingState;
use revguard_core::domain::billing::{BillingEvent, BillingPolicy};
use revguard_core::domain::message::compress;
use revguard_core::ports::EventLog;
use revguard_core::{EventRecord, EventStatus, Payload, QueueMessage};
use revguard_worker::{handle_batch, lambda_worker, LambdaWorker};
use serde_json::Value;

const NOW: i64 = 1_768_100_000;

struct Stack {
    worker: LambdaWorker,
    sqs: aws_sdk_sqs::Client,
    input_url: String,
    notifications_url: String,
    dead_letters_url: String,
}

async fn stack() -> Stack {
    let moto = MotoStack::new().await;
    let worker = lambda_worker(
        (moto.dynamodb.clone(), moto.sqs.clone()),
        &moto.worker_env(),
        moto.notifier(),
        BillingPolicy::default(),
    );
    Stack {
        worker,
        sqs: moto.sqs.clone(),
        input_url: moto.queue_url.clone(),
        notifications_url: moto.notifications_subscriber.clone(),
        dead_letters_url: moto.dead_letter_queue_url.clone(),
    }
}

/// A payload from `events/` with its own event id.
fn fixture(name: &str) -> (String, String) {
    let v = revguard_testkit::fixtures::json(name);
    (
        v["id"].as_str().unwrap().to_owned(),
        revguard_testkit::fixtures::read(name),
    )
}

fn message(id: &str, raw: &str) -> String {
    QueueMessage {
        event_id: id.to_owned(),
        event_type: "x".into(),
        livemode: false,
        created: 0,
        received_at: 0,
        payload: Payload::Inline(raw.to_owned()),
        via: Default::default(),
    }
    .encode()
}

impl Stack {
    async fn send(&self, bodies: &[String]) {
        for b in bodies {
            self.sqs
                .send_message()
                .queue_url(&self.input_url)
                .message_body(b)
                .send()
                .await
                .unwrap();
        }
    }

    /// Receives up to 10 messages and shapes them as Lambda's SQS event source does.
    async fn receive_batch(&self) -> SqsEvent {
        let records = receive_as_event_source(&self.sqs, &self.input_url, None).await;
        serde_json::from_value(records).unwrap()
    }

    async fn notifications(&self) -> Vec<Value> {
        drain_queue(&self.sqs, &self.notifications_url)
            .await
            .iter()
            .map(|b| serde_json::from_str(b).unwrap())
            .collect()
    }
}

#[tokio::test]
async fn a_poison_message_is_dead_lettered_at_once_and_its_neighbours_apply() {
    let stack = stack().await;
    let (id_a, raw_a) = fixture("customer.subscription.created.json");
    let (id_b, raw_b) = fixture("invoice.payment_failed.json");
    let bad_sub = r#"{"id":"evt_bad","type":"customer.subscription.updated","created":1,"livemode":false,"data":{"object":{"status":5}}}"#;
    stack
        .send(&[
            message(&id_a, &raw_a),
            "not a revguard message".into(),
            message("evt_bad", bad_sub),
            message(&id_b, &raw_b),
        ])
        .await;
    let batch = stack.receive_batch().await;
    assert_eq!(batch.records.len(), 4);
    let poison: Vec<String> = batch
        .records
        .iter()
        .filter(|r| {
            let body = r.body.as_deref().unwrap();
            body == "not a revguard message" || body.contains("evt_bad")
        })
        .map(|r| r.message_id.clone().unwrap())
        .collect();

    let response = handle_batch(&stack.worker, batch, NOW).await;
    // The consume rule of both backends: poison goes to the dead letters at once (no
    // redelivery can fix it), so nothing is reported for SQS to deliver again.
    assert!(
        response.batch_item_failures.is_empty(),
        "{:?}",
        response.batch_item_failures
    );
    let dead = stack
        .sqs
        .receive_message()
        .queue_url(&stack.dead_letters_url)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    let mut sources: Vec<String> = dead
        .iter()
        .map(|m| {
            m.message_attributes().unwrap()["source_message_id"]
                .string_value()
                .unwrap()
                .to_owned()
        })
        .collect();
    sources.sort();
    let mut expected = poison.clone();
    expected.sort();
    assert_eq!(
        sources, expected,
        "exactly the bad messages are dead-lettered"
    );
    assert!(dead
        .iter()
        .all(|m| !m.message_attributes().unwrap()["error"]
            .string_value()
            .unwrap()
            .is_empty()));

    let sub = stack
        .worker
        .billing
        .subscription(&revguard_core::ports::Account::PLATFORM, "sub_RG1001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sub.status, "active");
    let case = stack
        .worker
        .billing
        .case(&revguard_core::ports::Account::PLATFORM, "in_RG1001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(case.attempt_count, 1);
}

fn history() -> Vec<(String, String)> {
    revguard_testkit::fixtures::each_with_own_id()
}

async fn totals(billing: &DynamoBilling) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    use revguard_core::ports::CountersReader;
    for (hour, metrics) in billing
        .counters_reader()
        .counters(
            false,
            &revguard_core::ports::Account::PLATFORM,
            1_767_000_000,
            1_769_000_000,
        )
        .await
        .unwrap()
    {
        if hour == 0 {
            continue; // all-time gauges
        }
        for (k, v) in metrics {
            let k = k.name();
            if !k.starts_with("lag_") && !k.contains("received") && v != 0 {
                *out.entry(k).or_insert(0) += v;
            }
        }
    }
    out
}

#[tokio::test]
async fn every_message_twice_and_a_retried_batch_apply_once_on_dynamodb() {
    let stack = stack().await;
    let history = history();
    // One event's payload rides by reference and is not in the event log yet: it fails
    // in the middle of its batch, the rest of the batch applies.
    let (ref_id, ref_raw) = history[3].clone();
    let mut bodies: Vec<String> = history.iter().map(|(id, raw)| message(id, raw)).collect();
    bodies[3] = QueueMessage {
        event_id: ref_id.clone(),
        event_type: "x".into(),
        livemode: false,
        created: 0,
        received_at: 0,
        payload: Payload::InEventLog,
        via: Default::default(),
    }
    .encode();
    let mut failures = Vec::new();
    for chunk in bodies.chunks(10) {
        stack.send(chunk).await;
        let batch = stack.receive_batch().await;
        failures.extend(
            handle_batch(&stack.worker, batch, NOW)
                .await
                .batch_item_failures,
        );
    }
    assert_eq!(
        failures.len(),
        1,
        "only the message whose payload is missing failed"
    );

    // The payload lands; SQS redelivers everything (every message a second time).
    stack
        .worker
        .log
        .insert_if_absent(&EventRecord {
            event_id: ref_id.clone(),
            event_type: "x".into(),
            created: 0,
            livemode: false,
            received_at: NOW,
            expires_at: NOW + 86_400,
            status: EventStatus::Queued,
            stored_payload: Some(compress(ref_raw.as_bytes())),
            account: Default::default(),
        })
        .await
        .unwrap();
    for chunk in bodies.chunks(10) {
        stack.send(chunk).await;
        let batch = stack.receive_batch().await;
        assert!(handle_batch(&stack.worker, batch, NOW)
            .await
            .batch_item_failures
            .is_empty());
    }

    let mut reference = BillingState::default();
    for (_, raw) in &history {
        reference
            .apply(
                &BillingEvent::parse(raw.as_bytes(), 0).unwrap(),
                &BillingPolicy::default(),
            )
            .unwrap();
    }
    let mut expected = BTreeMap::new();
    for ((live, _, k), v) in &reference.counters {
        let k = k.name();
        if !live && !k.starts_with("lag_") && !k.contains("received") {
            *expected.entry(k).or_insert(0) += *v;
        }
    }
    assert_eq!(totals(&stack.worker.billing).await, expected);
    assert_eq!(
        stack
            .worker
            .billing
            .case(&revguard_core::ports::Account::PLATFORM, "in_RG1001")
            .await
            .unwrap()
            .unwrap(),
        reference.cases["in_RG1001"]
    );
}

#[tokio::test]
async fn notifications_reach_sns_once_with_filterable_attributes() {
    let stack = stack().await;
    let story: Vec<String> = [
        "customer.subscription.created.json",
        "invoice.payment_failed.json",
        "invoice.payment_failed.attempt-2.json",
        "invoice.payment_failed.attempt-3.json",
        "invoice.paid.json",
    ]
    .iter()
    .map(|n| {
        let (id, raw) = fixture(n);
        message(&id, &raw)
    })
    .collect();
    for _ in 0..2 {
        stack.send(&story).await;
        let batch = stack.receive_batch().await;
        assert!(handle_batch(&stack.worker, batch, NOW)
            .await
            .batch_item_failures
            .is_empty());
    }
    let got = stack.notifications().await;
    let stages: Vec<String> = got
        .iter()
        .map(|envelope| {
            let n: Value = serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
            assert_eq!(envelope["MessageAttributes"]["kind"]["Value"], "dunning");
            assert_eq!(envelope["MessageAttributes"]["livemode"]["Value"], "false");
            assert_eq!(
                envelope["MessageAttributes"]["customer"]["Value"],
                "cus_RG1001"
            );
            assert_eq!(envelope["MessageAttributes"]["stage"]["Value"], n["stage"]);
            n["stage"].as_str().unwrap().to_owned()
        })
        .collect();
    let mut sorted = stages.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["final_warning", "notice", "recovered"],
        "one per stage, none repeated: {stages:?}"
    );
}

#[tokio::test]
async fn concurrent_workers_apply_an_event_once_and_retry_on_conflicts() {
    use revguard_core::ports::Inbound;
    use revguard_core::usecases::apply_batch::Consumed;
    let stack = stack().await;
    let billing = &stack.worker.billing;
    let one = |name: &str| {
        let (id, raw) = fixture(name);
        vec![Inbound {
            id: format!("m-{name}"),
            body: message(&id, &raw),
            receive_count: 1,
            sent_at: None,
        }]
    };
    // The same event twice at once, in two batches: one applies it, the other finds it
    // applied (directly, or after its commit conflicted on the marker).
    let created = one("customer.subscription.created.json");
    let (a, b) = tokio::join!(
        stack.worker.consume(&created, NOW),
        stack.worker.consume(&created, NOW)
    );
    let outcomes = [a[0].clone(), b[0].clone()];
    assert_eq!(
        outcomes.iter().filter(|o| **o == Consumed::Applied).count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == Consumed::Duplicate)
            .count(),
        1,
        "{outcomes:?}"
    );
    // Different events on one invoice at once: all apply, the later ones after a retry.
    let (f1, f2, f3) = (
        one("invoice.payment_failed.json"),
        one("invoice.payment_failed.attempt-2.json"),
        one("invoice.payment_failed.attempt-3.json"),
    );
    let (r1, r2, r3) = tokio::join!(
        stack.worker.consume(&f1, NOW),
        stack.worker.consume(&f2, NOW),
        stack.worker.consume(&f3, NOW)
    );
    for r in [r1, r2, r3] {
        assert_eq!(r, [Consumed::Applied]);
    }
    let case = billing
        .case(&revguard_core::ports::Account::PLATFORM, "in_RG1001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(case.attempt_count, 3);
    let totals = totals(billing).await;
    assert_eq!(totals["subscriptions_new"], 1);
    assert_eq!(totals["dunning_opened"], 1);
    assert_eq!(totals["events"], 4);
}

#[tokio::test]
async fn the_sqs_envelope_in_events_applies() {
    // The same file serves `cargo lambda invoke worker --data-file events/sqs/worker-batch.json`.
    let stack = stack().await;
    let raw = revguard_testkit::fixtures::read("sqs/worker-batch.json");
    let batch: SqsEvent = serde_json::from_str(&raw).unwrap();
    let response = handle_batch(&stack.worker, batch, NOW).await;
    assert!(response.batch_item_failures.is_empty());
    let case = stack
        .worker
        .billing
        .case(&revguard_core::ports::Account::PLATFORM, "in_RG1001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(case.amount_due, 2000);
}

#[tokio::test]
async fn a_count_moved_within_its_hour_is_one_update_not_two() {
    // An earlier failure arriving after a later one moves `dunning_opened` within the same
    // hour: −1 and +1 of one metric, which one DynamoDB update expression cannot name twice.
    let stack = stack().await;
    let billing = &stack.worker.billing;
    let at = |name: &str, id: &str, created: i64| {
        let (_, raw) = fixture(name);
        let mut v: Value = serde_json::from_str(&raw).unwrap();
        v["id"] = Value::String(id.into());
        v["created"] = Value::from(created);
        let raw = v.to_string();
        vec![revguard_core::ports::Inbound {
            id: id.into(),
            body: message(id, &raw),
            receive_count: 1,
            sent_at: None,
        }]
    };
    let hour = 1_767_225_600;
    let late = at(
        "invoice.payment_failed.attempt-2.json",
        "evt_late_2",
        hour + 1_200,
    );
    assert_eq!(
        stack.worker.consume(&late, NOW).await,
        [revguard_core::usecases::apply_batch::Consumed::Applied]
    );
    let early = at("invoice.payment_failed.json", "evt_early_1", hour + 60);
    assert_eq!(
        stack.worker.consume(&early, NOW).await,
        [revguard_core::usecases::apply_batch::Consumed::Applied]
    );
    let case = billing
        .case(&revguard_core::ports::Account::PLATFORM, "in_RG1001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(case.opened_at, Some(hour + 60));
    assert_eq!(totals(billing).await["dunning_opened"], 1);
}
