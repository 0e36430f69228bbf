//! The anomaly Lambda's detector against moto: counters written by the real worker, the
//! detector run, and the SNS alert read back from an SQS queue subscribed to the alerts
//! topic, with its email and SMS bodies and its attributes.

use aws_lambda_events::event::sqs::SqsEvent;
use revguard_anomaly::{lambda_detector, LambdaDetector};
use revguard_aws::testing::{drain_queue, MotoStack};
use revguard_core::domain::billing::BillingPolicy;
use revguard_core::domain::detector::DetectConfig;
use revguard_core::ports::AlertStore;
use revguard_core::{Payload, QueueMessage};
use revguard_worker::{handle_batch, lambda_worker, LambdaWorker};
use serde_json::{json, Value};

const NOW: i64 = 1_768_003_200 + 14 * 3600 + 1800; // 2026-01-10 14:30 UTC

struct Stack {
    worker: LambdaWorker,
    anomaly: LambdaDetector,
    sqs: aws_sdk_sqs::Client,
    /// The alerts topic's subscriber (on call).
    subscriber: String,
    /// The notifications topic's subscriber (the team).
    notifications: String,
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
        anomaly: lambda_detector(
            moto.dynamodb.clone(),
            moto.sns.clone(),
            &moto.detector_env(),
            DetectConfig::default(),
        ),
        sqs: moto.sqs.clone(),
        subscriber: moto.alerts_subscriber.clone(),
        notifications: moto.notifications_subscriber.clone(),
    }
}

fn refund(i: usize, created: i64, amount: i64) -> String {
    let raw = json!({ "id": format!("evt_refund_{i}"), "object": "event", "type": "charge.refunded", "created": created,
        "livemode": true, "data": { "object": { "id": format!("ch_{i}"), "object": "charge", "customer": format!("cus_{i}"),
        "amount": amount, "amount_refunded": amount, "currency": "usd" } } })
    .to_string();
    QueueMessage {
        event_id: format!("evt_refund_{i}"),
        event_type: "charge.refunded".into(),
        livemode: true,
        created,
        received_at: created + 1,
        payload: Payload::Inline(raw),
        via: Default::default(),
    }
    .encode()
}

/// Applies the messages through the worker in SQS batches of 10 (ids `<prefix><i>`), and
/// expects each to apply.
async fn apply_all(worker: &LambdaWorker, bodies: &[String], prefix: &str, now: i64) {
    for chunk in bodies.chunks(10) {
        let records: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, b)| json!({ "messageId": format!("{prefix}{i}"), "body": b, "attributes": {}, "messageAttributes": {} }))
            .collect();
        let batch: SqsEvent = serde_json::from_value(json!({ "Records": records })).unwrap();
        assert!(handle_batch(worker, batch, now)
            .await
            .batch_item_failures
            .is_empty());
    }
}

async fn deliveries(stack: &Stack) -> Vec<Value> {
    drain_queue(&stack.sqs, &stack.subscriber)
        .await
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect()
}

#[tokio::test]
async fn a_refund_spike_reaches_the_alerts_topic_once_with_email_and_sms_bodies() {
    let stack = stack().await;
    // A refund spike in the last hour (12 refunds, one of them large), applied by the worker.
    let bodies: Vec<String> = (0..12)
        .map(|i| {
            refund(
                i,
                NOW - 3000 + i as i64 * 200,
                if i == 5 { 75_000 } else { 2_000 },
            )
        })
        .collect();
    apply_all(&stack.worker, &bodies, "m", NOW).await;

    // Two detector runs at once for the same moment: each transition is published once.
    let (a, b) = tokio::join!(stack.anomaly.run(NOW), stack.anomaly.run(NOW));
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut published: Vec<String> = a.published.iter().chain(&b.published).cloned().collect();
    published.sort();
    assert_eq!(
        published,
        [
            "live:large_refund:ch_5:1 opened",
            "live:spike:refunds:1 opened"
        ],
        "{a:?} {b:?}"
    );
    // Retried for the same period: nothing new.
    assert!(stack.anomaly.run(NOW).await.unwrap().published.is_empty());

    let got = deliveries(&stack).await;
    assert_eq!(got.len(), 2, "{got:#?}");
    let spike = got
        .iter()
        .find(|d| d["MessageAttributes"]["metric"]["Value"] == "refunds")
        .expect("the spike alert");
    assert_eq!(spike["MessageAttributes"]["severity"]["Value"], "critical");
    assert_eq!(spike["MessageAttributes"]["livemode"]["Value"], "true");
    assert!(spike["Subject"]
        .as_str()
        .unwrap()
        .starts_with("revguard live: CRITICAL"));
    let full: Value = serde_json::from_str(spike["Message"].as_str().unwrap()).unwrap();
    let email = full["email"].as_str().unwrap();
    assert!(
        email.contains("Metric:    refunds (live mode)")
            && email.contains("Observed:")
            && email.contains("Expected:"),
        "{email}"
    );
    assert!(email.contains("What to check first"), "{email}");
    assert!(
        email.contains("2026-01-10 14:00 UTC") || email.contains("2026-01-10 13:00 UTC"),
        "{email}"
    );
    let sms = full["sms"].as_str().unwrap();
    assert!(
        sms.chars().count() <= 140 && sms.contains("CRITICAL") && sms.contains("refunds"),
        "{sms}"
    );
    let large = got
        .iter()
        .find(|d| d["MessageAttributes"]["signal"]["Value"] == "large_refund")
        .expect("the large refund");
    assert!(large["Message"].as_str().unwrap().contains("75000"));

    // Hours later the spike is quiet: after an hour of quiet it resolves, once.
    assert!(stack
        .anomaly
        .run(NOW + 3 * 3600)
        .await
        .unwrap()
        .published
        .is_empty());
    let later = stack.anomaly.run(NOW + 4 * 3600 + 60).await.unwrap();
    assert_eq!(later.published, ["live:spike:refunds:3 resolved"]);
    let resolved = deliveries(&stack).await;
    assert_eq!(resolved.len(), 1);
    assert_eq!(
        resolved[0]["MessageAttributes"]["transition"]["Value"],
        "resolved"
    );

    // A new spike hours later reopens the same alert at its next version, although a
    // run's read of the alerts table (the sparse index) no longer holds the closed alert.
    let again = NOW + 8 * 3600;
    let bodies: Vec<String> = (100..112)
        .map(|i| refund(i, again - 1500 + i as i64, 2_000))
        .collect();
    apply_all(&stack.worker, &bodies, "n", again).await;
    assert!(stack
        .anomaly
        .alerts
        .snapshot(again)
        .await
        .unwrap()
        .alerts
        .iter()
        .all(|a| a.id != "live:spike:refunds"));
    let reopened = stack.anomaly.run(again).await.unwrap();
    assert!(
        reopened
            .published
            .contains(&"live:spike:refunds:4 opened".to_owned()),
        "{reopened:?}"
    );
}

#[tokio::test]
async fn an_event_level_alert_opens_once_and_resolves_even_when_its_finding_recurs() {
    let stack = stack().await;
    // Two large refunds on one charge: the same finding key twice.
    let body = |id: &str, created: i64, refunded: i64, before: i64| {
        let raw = json!({ "id": id, "object": "event", "type": "charge.refunded", "created": created, "livemode": true,
            "data": { "object": { "id": "ch_big", "object": "charge", "customer": "cus_big", "amount": 200_000,
            "amount_refunded": refunded, "currency": "usd" }, "previous_attributes": { "amount_refunded": before } } })
        .to_string();
        QueueMessage {
            event_id: id.into(),
            event_type: "charge.refunded".into(),
            livemode: true,
            created,
            received_at: created,
            payload: Payload::Inline(raw),
            via: Default::default(),
        }
        .encode()
    };
    async fn apply(stack: &Stack, b: String) {
        let batch: SqsEvent = serde_json::from_value(json!({ "Records": [{ "messageId": "m", "body": b, "attributes": {}, "messageAttributes": {} }] })).unwrap();
        assert!(handle_batch(&stack.worker, batch, NOW)
            .await
            .batch_item_failures
            .is_empty());
    }
    apply(&stack, body("evt_big_1", NOW - 600, 60_000, 0)).await;
    let first = stack.anomaly.run(NOW).await.unwrap();
    assert_eq!(first.published, ["live:large_refund:ch_big:1 opened"]);
    apply(&stack, body("evt_big_2", NOW - 300, 130_000, 60_000)).await;
    assert!(
        stack
            .anomaly
            .run(NOW + 900)
            .await
            .unwrap()
            .published
            .is_empty(),
        "open already: no second alert"
    );
    let later = stack.anomaly.run(NOW + 25 * 3600).await.unwrap();
    assert_eq!(later.published, ["live:large_refund:ch_big:2 resolved"]);
    assert!(
        stack
            .anomaly
            .alerts
            .snapshot(i64::MAX)
            .await
            .unwrap()
            .pending
            .is_empty(),
        "every finding judged and removed"
    );
}

/// A stack whose detector's clients go through a fault injector with these rules, a
/// worker that writes through clean clients, and the detector.
async fn faulted_detector(
    seed: u64,
    rules: Vec<revguard_aws::faults::Rule>,
) -> (
    MotoStack,
    revguard_aws::faults::FaultInjector,
    LambdaWorker,
    LambdaDetector,
) {
    let (moto, injector) = MotoStack::faulted(seed, rules).await;
    let clean = revguard_aws::testing::moto_config().await;
    let worker = lambda_worker(
        (
            aws_sdk_dynamodb::Client::new(&clean),
            aws_sdk_sqs::Client::new(&clean),
        ),
        &moto.worker_env(),
        revguard_aws::SnsNotifier::new(aws_sdk_sns::Client::new(&clean), &moto.notifications_topic),
        BillingPolicy::default(),
    );
    let detector = lambda_detector(
        moto.dynamodb.clone(),
        moto.sns.clone(),
        &moto.detector_env(),
        DetectConfig::default(),
    );
    (moto, injector, worker, detector)
}

#[tokio::test]
async fn a_throttled_alert_transaction_is_not_read_as_another_runs_work() {
    // The worker writes through clean clients; the detector's calls go through the fault
    // injector, which cancels its alert transaction for a throttled item (the SDK does not
    // retry a cancelled transaction).
    let (_, injector, worker, detector) = faulted_detector(
        11,
        vec![revguard_aws::faults::Rule::first_calls(
            "dynamodb:TransactWriteItems",
            revguard_aws::faults::Fault::ThrottledItem,
            1,
        )],
    )
    .await;
    let batch: SqsEvent = serde_json::from_value(json!({ "Records": [
        { "messageId": "m1", "receiptHandle": "r1", "body": refund(1, NOW - 600, 90_000), "attributes": {}, "messageAttributes": {} }
    ] }))
    .unwrap();
    assert!(handle_batch(&worker, batch, NOW)
        .await
        .batch_item_failures
        .is_empty());

    // Throttled: the run fails and leaves the finding pending, not consumed.
    assert!(detector.run(NOW).await.is_err());
    assert_eq!(
        injector.injected_of(revguard_aws::faults::Fault::ThrottledItem),
        1
    );
    // The next run opens the alert and publishes it.
    let next = detector.run(NOW + 60).await.unwrap();
    assert_eq!(
        next.published,
        ["live:large_refund:ch_1:1 opened"],
        "{next:?}"
    );
}

#[tokio::test]
async fn overlapping_runs_started_apart_publish_each_transition_once() {
    // Every SNS Publish of the detector takes 600 ms, so the second run, started 200 ms
    // after the first, reads the alert store while the first run's committed messages are
    // still in the outbox, being published. Before outbox entries were leased, the second
    // run published them again.
    let (moto, injector, worker, detector) = faulted_detector(
        12,
        vec![revguard_aws::faults::Rule::new(
            "sns:Publish",
            revguard_aws::faults::Fault::Latency(std::time::Duration::from_millis(600)),
            1.0,
        )],
    )
    .await;
    let records: Vec<Value> = (0..3)
        .map(|i| json!({ "messageId": format!("m{i}"), "receiptHandle": format!("r{i}"),
            "body": refund(i, NOW - 600 + i as i64, 90_000), "attributes": {}, "messageAttributes": {} }))
        .collect();
    let batch: SqsEvent = serde_json::from_value(json!({ "Records": records })).unwrap();
    assert!(handle_batch(&worker, batch, NOW)
        .await
        .batch_item_failures
        .is_empty());

    let first = detector.run(NOW);
    let second = async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        detector.run(NOW).await
    };
    let (a, b) = tokio::join!(first, second);
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut published: Vec<String> = a.published.iter().chain(&b.published).cloned().collect();
    published.sort();
    assert_eq!(
        published,
        [
            "live:large_refund:ch_0:1 opened",
            "live:large_refund:ch_1:1 opened",
            "live:large_refund:ch_2:1 opened",
            "live:spike:refunds:1 opened",
        ],
        "{a:?} {b:?}"
    );
    let publishes = injector.calls().get("sns:Publish").copied().unwrap_or(0);
    assert_eq!(publishes, 4, "SNS counted one Publish per transition");
    let subscriber = drain_queue(&moto.sqs, &moto.alerts_subscriber).await;
    assert_eq!(subscriber.len(), 4, "{subscriber:#?}");
    // Nothing is left behind for a later run either.
    assert!(detector.run(NOW + 60).await.unwrap().published.is_empty());
}

/// What an HTTP subscriber of the alerts topic receives: SNS's envelopes, as posted.
async fn http_subscriber() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = received.clone();
    let app = axum::Router::new().fallback(move |body: String| {
        let sink = sink.clone();
        async move {
            sink.lock().unwrap().push(body);
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/chatbot", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

#[tokio::test]
async fn an_alert_reaches_an_https_subscriber_as_a_chatbot_custom_notification() {
    let moto = MotoStack::new().await;
    let (endpoint, received) = http_subscriber().await;
    // Chatbot subscribes to the topic over HTTPS; moto delivers to HTTP endpoints the same
    // way, and the publisher gives both protocols the custom notification.
    moto.sns
        .subscribe()
        .topic_arn(&moto.alerts_topic)
        .protocol("http")
        .endpoint(&endpoint)
        .send()
        .await
        .unwrap();
    let worker = lambda_worker(
        (moto.dynamodb.clone(), moto.sqs.clone()),
        &moto.worker_env(),
        moto.notifier(),
        BillingPolicy::default(),
    );
    let detector = lambda_detector(
        moto.dynamodb.clone(),
        moto.sns.clone(),
        &moto.detector_env(),
        DetectConfig::default(),
    );
    let records = vec![
        json!({ "messageId": "m0", "body": refund(0, NOW - 600, 75_000), "attributes": {}, "messageAttributes": {} }),
    ];
    let batch: SqsEvent = serde_json::from_value(json!({ "Records": records })).unwrap();
    assert!(handle_batch(&worker, batch, NOW)
        .await
        .batch_item_failures
        .is_empty());
    let run = detector.run(NOW).await.unwrap();
    assert_eq!(run.published, ["live:large_refund:ch_0:1 opened"]);

    let posts = received.lock().unwrap().clone();
    assert_eq!(posts.len(), 1, "{posts:?}");
    let envelope: Value = serde_json::from_str(&posts[0]).unwrap();
    assert_eq!(envelope["Type"], "Notification");
    let chat: Value = serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
    revguard_testkit::fixtures::check_chatbot_notifications(std::slice::from_ref(&chat));
    let content = &chat["content"];
    assert!(
        content["title"]
            .as_str()
            .unwrap()
            .contains("Large refund (live)"),
        "{chat}"
    );
    assert!(
        content["description"].as_str().unwrap().contains("$750.00"),
        "{chat}"
    );
    assert_eq!(chat["metadata"]["threadId"], "live:large_refund:ch_0");
    let steps = content["nextSteps"].to_string();
    assert!(
        steps.contains("Review recent refunds") && steps.contains("cloudwatch"),
        "{steps}"
    );
    // Email and SMS subscribers still get their own bodies (the SQS subscriber, the whole).
    let queued = drain_queue(&moto.sqs, &moto.alerts_subscriber).await;
    assert_eq!(queued.len(), 1);
    assert!(queued[0].contains("\\\"email\\\""), "{}", queued[0]);
}

#[tokio::test]
async fn resolved_alerts_leave_the_index_and_expire_and_no_run_scans_the_table() {
    let (moto, injector, worker, detector) = faulted_detector(21, Vec::new()).await;
    let bodies: Vec<String> = (0..12)
        .map(|i| {
            let amount = if i == 5 { 75_000 } else { 2_000 };
            refund(i, NOW - 3000 + i as i64 * 200, amount)
        })
        .collect();
    apply_all(&worker, &bodies, "m", NOW).await;
    let opened = detector.run(NOW).await.unwrap();
    assert_eq!(opened.published.len(), 2, "{opened:?}");
    // The spike resolves after its quiet hours; the large refund (an event-level alert)
    // after `event_alert_hours`.
    detector.run(NOW + 3 * 3600).await.unwrap();
    detector.run(NOW + 4 * 3600 + 60).await.unwrap();
    let later = detector.run(NOW + 25 * 3600).await.unwrap();
    assert_eq!(
        later.published,
        ["live:large_refund:ch_5:2 resolved"],
        "{later:?}"
    );

    let wall = revguard_core::domain::time::unix_now();
    let retention = revguard_core::ports::CLOSED_ALERT_RETENTION_SECS;
    for id in ["live:spike:refunds", "live:large_refund:ch_5"] {
        let item = moto
            .dynamodb
            .get_item()
            .table_name(&moto.alerts_table)
            .key(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("alert#{id}")),
            )
            .send()
            .await
            .unwrap()
            .item
            .unwrap_or_else(|| panic!("{id} is stored"));
        assert!(
            !item.contains_key(revguard_aws::alerts::ATTR_ACTIVE),
            "{id} left the index of what runs read: {item:?}"
        );
        let expires_at: i64 = item["expires_at"].as_n().unwrap().parse().unwrap();
        assert!(
            (wall + retention - 120..=wall + retention).contains(&expires_at),
            "{id} expires {retention} s after it resolved: {expires_at} (now {wall})"
        );
    }
    let calls = injector.calls();
    assert!(
        calls.keys().all(|op| op != "dynamodb:Scan"),
        "a detector run scanned the alerts table: {calls:?}"
    );
    assert_eq!(
        calls.get("dynamodb:Query").copied(),
        Some(4 * 3),
        "a run: one Query of the active index, and one of a single key per mode of the counters' day index (no connected account was ever seen, so no day is read): {calls:?}"
    );
}

/// A customer who canceled and stayed away: their win-back comes due 14 days on and is
/// the team's task. It reaches the notifications topic once, as a `win_back`
/// notification, and the alerts topic (on call's email, SMS and chat) never.
#[tokio::test]
async fn a_win_back_that_comes_due_reaches_the_team_not_on_call() {
    const DAY: i64 = 86_400;
    let stack = stack().await;
    let subscription = |status: &str| {
        json!({ "id": "sub_WB", "object": "subscription", "customer": "cus_WB", "status": status,
            "currency": "usd", "created": NOW - 90 * DAY,
            "ended_at": if status == "canceled" { json!(NOW) } else { json!(null) },
            "items": { "data": [{ "id": "si_WB", "quantity": 1, "current_period_end": NOW,
                "price": { "unit_amount": 4900, "currency": "usd",
                           "recurring": { "interval": "month", "interval_count": 1 } } }] } })
    };
    let story = [
        revguard_testkit::fixtures::queued_event(
            "evt_wb_created",
            "customer.subscription.created",
            NOW - 90 * DAY,
            subscription("active"),
            None,
        ),
        revguard_testkit::fixtures::queued_event(
            "evt_wb_deleted",
            "customer.subscription.deleted",
            NOW,
            subscription("canceled"),
            Some(json!({ "status": "active" })),
        ),
    ];
    let bodies: Vec<String> = story.iter().map(|m| m.encode()).collect();
    apply_all(&stack.worker, &bodies, "wb-", NOW + 60).await;
    for at in [NOW + 13 * DAY, NOW + 14 * DAY + 60, NOW + 15 * DAY + 3600] {
        stack.anomaly.run(at).await.unwrap();
    }

    let mut kinds = Vec::new();
    for body in drain_queue(&stack.sqs, &stack.notifications).await {
        let envelope: Value = serde_json::from_str(&body).unwrap();
        let n: Value = serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
        if n["kind"] == "win_back" {
            assert_eq!(n["customer"], "cus_WB", "{n}");
            assert_eq!(n["details"]["mrr_lost"], 4900, "{n}");
            assert_eq!(
                envelope["MessageAttributes"]["kind"]["Value"], "win_back",
                "subscribers filter on the kind: {envelope}"
            );
        }
        kinds.push(n["kind"].as_str().unwrap_or_default().to_owned());
    }
    kinds.sort();
    assert_eq!(
        kinds,
        ["churn", "win_back"],
        "the churn notice at once, the win-back on its day"
    );
    let on_call = deliveries(&stack).await;
    assert!(on_call.is_empty(), "on call heard a win-back: {on_call:?}");
}
