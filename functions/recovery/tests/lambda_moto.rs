//! Recovery on AWS: the recovery function's jobs, the detector's completeness audit and
//! the DLQ commands, with the real SDK clients against moto and Stripe's API served by
//! localstripe (both started by scripts/test).
//! - The outage story: subscriptions created and canceled while no webhook reached
//!   revguard; the audit reports the missing events; the backfill job enqueues them, the
//!   worker applies them, and DynamoDB then holds what Stripe holds. A second run from the
//!   stored cursor accepts nothing.
//! - The drift story: a change no event told; the reconcile job finds it, fixes it, and
//!   leaves a finding from which the detector publishes one alert.

use std::collections::BTreeMap;

use aws_lambda_events::event::sqs::SqsEvent;
use revguard_aws::testing::{drain_queue, receive_as_event_source, subscribed_queue, MotoStack};
use revguard_aws::{Recovery, SqsDeadLetterAdmin, SqsDeadLetters, SqsQueue};
use revguard_core::domain::billing::BillingPolicy;
use revguard_core::domain::detector::DetectConfig;
use revguard_core::ports::{DeadLetterAdmin, DeadLetters, Inbound, ReadModel};
use revguard_recovery::{run, Job};
use revguard_stripe::testing::{localstripe_url, LocalStripe};
use revguard_stripe::{ApiKey, StripeClient};

const KEY: &str = "sk_test_revguard_aws_recovery";

fn localstripe() -> LocalStripe {
    LocalStripe::new(KEY)
}

/// DynamoDB's subscriptions, read through the operator API's read model.
async fn in_dynamodb(
    read: &revguard_aws::DynamoReadModel,
    ids: impl Iterator<Item = String>,
) -> BTreeMap<String, (String, i64)> {
    let mut out = BTreeMap::new();
    for id in ids {
        if let Some(s) = read
            .subscription(&revguard_core::ports::Account::PLATFORM, &id)
            .await
            .unwrap()
        {
            out.insert(id, (s.status, s.items[0].quantity));
        }
    }
    out
}

/// What the SQS event source and the worker function do until the queue is empty.
async fn work_off(stack: &MotoStack) -> usize {
    let worker = revguard_worker::lambda_worker(
        (stack.dynamodb.clone(), stack.sqs.clone()),
        &stack.worker_env(),
        stack.notifier(),
        BillingPolicy::default(),
    );
    let mut applied = 0;
    loop {
        let batch = receive_as_event_source(&stack.sqs, &stack.queue_url, None).await;
        let records = batch["Records"].as_array().unwrap().clone();
        if records.is_empty() {
            return applied;
        }
        let event: SqsEvent = serde_json::from_value(batch).unwrap();
        let response =
            revguard_worker::handle_batch(&worker, event, revguard_core::domain::time::unix_now())
                .await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
        for r in &records {
            stack
                .sqs
                .delete_message()
                .queue_url(&stack.queue_url)
                .receipt_handle(r["receiptHandle"].as_str().unwrap())
                .send()
                .await
                .unwrap();
        }
        applied += records.len();
    }
}

#[tokio::test]
async fn missed_events_are_backfilled_and_drift_is_reconciled_on_aws() {
    let stripe = localstripe();
    stripe.flush().await;
    let stack = MotoStack::new().await;
    let api = StripeClient::new(&localstripe_url(), ApiKey::new(KEY).unwrap()).unwrap();
    let recovery = Recovery::new(
        api.clone(),
        stack.dynamodb.clone(),
        stack.sqs.clone(),
        &stack.recovery_env(),
    );
    stripe
        .post(
            "/v1/plans",
            &[
                ("id", "team"),
                ("amount", "9900"),
                ("currency", "usd"),
                ("interval", "month"),
                ("product[name]", "Team"),
            ],
        )
        .await;
    // The outage: no webhook endpoint at all while this happens.
    let mut subs = Vec::new();
    for _ in 0..3 {
        let customer = stripe.customer().await;
        subs.push(stripe.subscribe(&customer, "team").await);
    }
    stripe.cancel(&subs[0]).await;

    // The detector's audit (judged past its grace) knows the events are missing.
    let now = revguard_core::domain::time::unix_now();
    let alerts_queue = subscribed_queue(&stack.sqs, &stack.sns, &stack.alerts_topic).await;
    let anomaly = revguard_anomaly::with_audit(
        revguard_anomaly::lambda_detector(
            stack.dynamodb.clone(),
            stack.sns.clone(),
            &stack.detector_env(),
            DetectConfig::default(),
        ),
        Some(api.clone()),
        stack.dynamodb.clone(),
        &stack.detector_env(),
    );
    let plan = anomaly.plan(now + 360).await.unwrap();
    let missing = plan
        .findings
        .iter()
        .find(|f| f.signal == "events_missing")
        .expect("an events_missing finding");
    assert_eq!(missing.observed, 3.0 * 3.0 + 1.0, "{missing:?}");

    // The backfill job, as the scheduled function runs it.
    let first = run(&recovery, Job::Backfill, now).await.unwrap();
    println!("backfill job against moto and localstripe: {first}");
    assert_eq!(first["accepted"], 3 * 3 + 1, "{first}");
    assert_eq!(first["duplicates"], 0, "{first}");
    assert_eq!(work_off(&stack).await, 10);
    let ids = || subs.clone().into_iter();
    assert_eq!(
        in_dynamodb(&recovery.read, ids()).await,
        stripe.subscriptions().await
    );
    let plan = anomaly.plan(now + 360).await.unwrap();
    assert!(plan.findings.iter().all(|f| f.signal != "events_missing"));
    // The cursor is remembered: the next run starts there and finds nothing new.
    let second = run(&recovery, Job::Backfill, now + 3600).await.unwrap();
    assert_eq!(second["accepted"], 0, "{second}");
    assert!(second["since"].as_i64().unwrap() > now - 3600, "{second}");

    // Drift: a quantity changed at Stripe, and no event said so.
    stripe
        .post(
            &format!("/v1/subscriptions/{}", subs[1]),
            &[("items[0][plan]", "team"), ("items[0][quantity]", "4")],
        )
        .await;
    let found = run(&recovery, Job::Reconcile, now + 60).await.unwrap();
    assert_eq!(
        (
            &found["checked"],
            &found["drifted"],
            &found["missing"],
            &found["fixed"]
        ),
        (&3.into(), &1.into(), &0.into(), &1.into()),
        "{found}"
    );
    assert_eq!(work_off(&stack).await, 1);
    assert_eq!(
        in_dynamodb(&recovery.read, ids()).await,
        stripe.subscriptions().await
    );
    let mended = recovery
        .read
        .subscription(&revguard_core::ports::Account::PLATFORM, &subs[1])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mended.mrr, 4 * 9900);
    let again = run(&recovery, Job::Reconcile, now + 120).await.unwrap();
    assert_eq!(
        (&again["drifted"], &again["missing"]),
        (&0.into(), &0.into()),
        "{again}"
    );
    // The drift left a finding: the detector's next run publishes one alert for it.
    let summary = anomaly.run(now + 180).await.unwrap();
    let published: Vec<&String> = summary
        .published
        .iter()
        .filter(|p| p.contains("reconcile_drift"))
        .collect();
    assert_eq!(published.len(), 1, "{:?}", summary.published);
    let bodies = drain_queue(&stack.sqs, &alerts_queue).await;
    assert!(
        bodies.iter().any(|b| b.contains("reconcile_drift")),
        "{bodies:?}"
    );
}

#[tokio::test]
async fn dead_letters_in_the_dlq_are_listed_shown_and_redriven() {
    let stack = MotoStack::new().await;
    let dead = SqsDeadLetters::new(stack.sqs.clone(), &stack.dead_letter_queue_url);
    for n in 0..3 {
        let body = revguard_core::QueueMessage {
            event_id: format!("evt_dead_{n}"),
            event_type: "invoice.paid".into(),
            livemode: false,
            created: 1,
            received_at: 2,
            payload: revguard_core::Payload::Inline(format!(r#"{{"id":"evt_dead_{n}"}}"#)),
            via: Default::default(),
        }
        .encode();
        dead.dead_letter(
            &Inbound {
                id: format!("m{n}"),
                body,
                receive_count: 5,
                sent_at: None,
            },
            "malformed event: data.object",
        )
        .await
        .unwrap();
    }
    let admin = SqsDeadLetterAdmin::new(
        stack.sqs.clone(),
        &stack.dead_letter_queue_url,
        SqsQueue::new(stack.sqs.clone(), &stack.queue_url, 250_000),
    );
    let listed = admin.dead_letters(100).await.unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(listed.iter().all(
        |d| d.error.as_deref() == Some("malformed event: data.object")
            && d.receive_count == 5
            && d.event_type.as_deref() == Some("invoice.paid")
            && d.body.is_none()
    ));
    // Listing took nothing: a second listing sees the same three.
    assert_eq!(admin.dead_letters(100).await.unwrap().len(), 3);
    let one = admin
        .dead_letter_by_id(&listed[0].id)
        .await
        .unwrap()
        .unwrap();
    assert!(one
        .body
        .unwrap()
        .contains(listed[0].event_id.as_deref().unwrap()));
    // One redriven by id, then the rest.
    assert_eq!(
        admin.redrive(Some(&[listed[0].id.clone()])).await.unwrap(),
        1
    );
    assert_eq!(admin.dead_letters(100).await.unwrap().len(), 2);
    assert_eq!(admin.redrive(None).await.unwrap(), 2);
    assert!(admin.dead_letters(100).await.unwrap().is_empty());
    let queued = drain_queue(&stack.sqs, &stack.queue_url).await;
    let mut events: Vec<String> = queued
        .iter()
        .map(|b| revguard_core::QueueMessage::decode(b).unwrap().event_id)
        .collect();
    events.sort();
    assert_eq!(events, ["evt_dead_0", "evt_dead_1", "evt_dead_2"]);
}
