//! The worker against DynamoDB and SNS in moto behind the project's fault injector:
//! throttles, transaction conflicts, 5xx and unprocessed keys, seeded and counted, with
//! five workers consuming one renewal burst at once. Nothing may be lost, doubled or
//! dead-lettered, and every counter must be exact.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use aws_lambda_events::event::sqs::SqsEvent;
use revguard_aws::faults::{Fault, Rule};
use revguard_aws::testing::{
    drain_messages, drain_queue, moto_config, receive_as_event_source, table_keys, MotoStack,
};
use revguard_aws::DynamoCounters;
use revguard_core::domain::billing::BillingPolicy;
use revguard_core::domain::metric::Metric;
use revguard_core::ports::CountersReader;
use revguard_core::{Payload, QueueMessage};
use revguard_worker::{handle_batch, lambda_worker};
use serde_json::{json, Value};

const HOUR: i64 = 1_768_003_200; // 2026-01-10 00:00 UTC
const RENEWALS: usize = 150;
const WORKERS: usize = 5;
const LARGE_EVERY: usize = 5;

fn message(id: &str, event_type: &str, created: i64, object: Value) -> String {
    let raw = json!({ "id": id, "object": "event", "type": event_type, "created": created,
        "livemode": true, "data": { "object": object } })
    .to_string();
    QueueMessage {
        event_id: id.to_owned(),
        event_type: event_type.to_owned(),
        livemode: true,
        created,
        received_at: created + 2,
        payload: Payload::Inline(raw),
        via: Default::default(),
    }
    .encode()
}

/// Renewals sharing a billing anchor: `invoice.paid` and `charge.succeeded` for each
/// subscription within one hour; every fifth payment is large (a notification).
fn burst() -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..RENEWALS {
        let created = HOUR + (i as i64 * 3600) / RENEWALS as i64;
        let amount = if i % LARGE_EVERY == 0 { 250_000 } else { 4_900 };
        out.push(message(
            &format!("evt_paid_{i}"),
            "invoice.paid",
            created,
            json!({
            "id": format!("in_{i}"), "object": "invoice", "customer": format!("cus_{i}"),
            "subscription": format!("sub_{i}"), "amount_paid": amount, "amount_due": amount,
            "currency": "usd", "paid": true, "status": "paid", "attempt_count": 1,
            "billing_reason": "subscription_cycle" }),
        ));
        out.push(message(
            &format!("evt_charge_{i}"),
            "charge.succeeded",
            created + 1,
            json!({
            "id": format!("ch_{i}"), "object": "charge", "customer": format!("cus_{i}"),
            "amount": amount, "currency": "usd", "status": "succeeded", "paid": true }),
        ));
    }
    out
}

/// One queued message as the SQS event source keeps it.
struct Queued {
    id: String,
    body: String,
    receives: u32,
}

fn sqs_event(batch: &[Queued]) -> SqsEvent {
    let records: Vec<Value> = batch
        .iter()
        .map(|m| json!({ "messageId": m.id, "receiptHandle": m.id, "body": m.body,
            "attributes": { "ApproximateReceiveCount": m.receives.to_string(), "SentTimestamp": (HOUR * 1000).to_string() },
            "messageAttributes": {} }))
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_burst_under_throttles_conflicts_and_5xx_loses_and_doubles_nothing() {
    let rules = [
        Rule::new(
            "dynamodb:TransactWriteItems",
            Fault::TransactionConflict,
            0.20,
        ),
        Rule::new("dynamodb:TransactWriteItems", Fault::ThrottledItem, 0.10),
        Rule::new("dynamodb:*", Fault::Throttling, 0.10),
        Rule::new("dynamodb:*", Fault::ProvisionedThroughputExceeded, 0.10),
        Rule::new("dynamodb:UpdateItem", Fault::TransactionConflict, 0.10),
        Rule::new("dynamodb:BatchGetItem", Fault::UnprocessedKeys, 0.10),
        Rule::new("dynamodb:*", Fault::Http500, 0.05),
        Rule::new("sns:Publish", Fault::Http503, 0.20),
    ];
    // Each kind of fault once for certain, whatever order the workers' calls draw in
    // (the random stream is shared, so how many of each the probabilities give depends
    // on scheduling; a run once drew no throttled item in 50 transactions).
    let rules: Vec<Rule> = rules
        .iter()
        .map(|r| Rule::first_calls(&r.operation, r.fault, 1))
        .chain(rules.iter().cloned())
        .collect();
    let (stack, injector) = MotoStack::faulted(20_261_123, rules).await;
    let env = stack.worker_env();

    let queue: Arc<Mutex<VecDeque<Queued>>> = Arc::new(Mutex::new(
        burst()
            .into_iter()
            .enumerate()
            .map(|(i, body)| Queued {
                id: format!("m{i}"),
                body,
                receives: 0,
            })
            .collect(),
    ));
    let deliveries = Arc::new(Mutex::new(0u64));
    let redeliveries = Arc::new(Mutex::new(0u64));
    // The workers' clock: each batch takes the shortest redelivery delay (15 s), so that a
    // message comes back no sooner than SQS would return it, and an outbox lease left by
    // a worker whose release failed runs out as it would in an account. (A clock that
    // stood still kept such an entry leased forever, and its message was dead-lettered.)
    let clock = Arc::new(std::sync::atomic::AtomicI64::new(HOUR + 3600));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let worker = lambda_worker(
            (stack.dynamodb.clone(), stack.sqs.clone()),
            &env,
            stack.notifier(),
            BillingPolicy::default(),
        );
        let (queue, deliveries, redeliveries, clock) = (
            queue.clone(),
            deliveries.clone(),
            redeliveries.clone(),
            clock.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let mut batch: Vec<Queued> = {
                    let mut q = queue.lock().unwrap();
                    let n = q.len().min(10);
                    q.drain(..n).collect()
                };
                if batch.is_empty() {
                    return;
                }
                for m in &mut batch {
                    m.receives += 1;
                }
                *deliveries.lock().unwrap() += batch.len() as u64;
                let now = clock.fetch_add(15, std::sync::atomic::Ordering::SeqCst);
                let response = handle_batch(&worker, sqs_event(&batch), now).await;
                let failed: Vec<String> = response
                    .batch_item_failures
                    .into_iter()
                    .map(|f| f.item_identifier)
                    .collect();
                let mut q = queue.lock().unwrap();
                for m in batch {
                    if failed.contains(&m.id) {
                        // What the event source does: the message comes back later, until
                        // maxReceiveCount sends it to the DLQ.
                        assert!(
                            m.receives < env.max_receives,
                            "{} failed on its last receive: it would be dead-lettered",
                            m.id
                        );
                        *redeliveries.lock().unwrap() += 1;
                        q.push_back(m);
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }

    // Read back with clients the injector does not touch.
    let clean = moto_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&clean);
    let sqs = aws_sdk_sqs::Client::new(&clean);
    let shard_items: Vec<String> = table_keys(&dynamodb, &env.counters_table)
        .await
        .into_iter()
        .filter(|pk| pk.matches('#').count() == 2)
        .collect();
    assert!(
        !shard_items.is_empty(),
        "conflicts and throttles moved workers off the hour's own counter item"
    );
    let totals = DynamoCounters::new(dynamodb, &env.counters_table)
        .counters(
            true,
            &revguard_core::ports::Account::PLATFORM,
            HOUR,
            HOUR + 2 * 3600,
        )
        .await
        .unwrap();
    let sum = |metric: Metric| -> i64 { totals.values().filter_map(|m| m.get(&metric)).sum() };
    assert_eq!(
        sum(Metric::PaymentsSucceeded),
        RENEWALS as i64,
        "{totals:?}"
    );
    assert_eq!(
        sum(Metric::EventsOfType("invoice.paid".into())),
        RENEWALS as i64
    );
    assert_eq!(sum(Metric::Events), 2 * RENEWALS as i64);

    let dead = dead_letter_reasons(&sqs, &env.dead_letter_queue_url).await;
    assert!(dead.is_empty(), "dead-lettered: {dead:?}");

    let mut published: BTreeMap<String, usize> = BTreeMap::new();
    for body in drain_queue(&sqs, &stack.notifications_subscriber).await {
        let envelope: Value = serde_json::from_str(&body).unwrap();
        let n: Value = serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
        *published
            .entry(n["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let large = RENEWALS.div_ceil(LARGE_EVERY);
    assert_eq!(
        published.len(),
        large,
        "every large payment announced: {published:?}"
    );
    let doubled: Vec<_> = published.iter().filter(|(_, n)| **n > 1).collect();

    let injected = injector.injected();
    eprintln!(
        "{} events, {WORKERS} workers: {} deliveries, {} redeliveries, 0 dead letters; \
         counter shard items {}; injected {:?}; calls {:?}; notifications published more than once: {}",
        2 * RENEWALS,
        deliveries.lock().unwrap(),
        redeliveries.lock().unwrap(),
        shard_items.len(),
        injected,
        injector.calls(),
        doubled.len()
    );
    for fault in [
        Fault::TransactionConflict,
        Fault::ThrottledItem,
        Fault::Throttling,
        Fault::ProvisionedThroughputExceeded,
        Fault::UnprocessedKeys,
        Fault::Http500,
        Fault::Http503,
    ] {
        assert!(injector.injected_of(fault) > 0, "no {fault:?} was injected");
    }
    assert!(doubled.is_empty(), "published more than once: {doubled:?}");
}

/// The dead letters' event ids and the reasons the worker gave.
async fn dead_letter_reasons(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<(String, String)> {
    drain_messages(sqs, url)
        .await
        .into_iter()
        .map(|m| {
            let id = QueueMessage::decode(m.body().unwrap_or_default())
                .map(|q| q.event_id)
                .unwrap_or_else(|e| format!("undecodable: {e}"));
            let reason = m
                .message_attributes()
                .and_then(|a| a.get("error"))
                .and_then(|v| v.string_value())
                .unwrap_or("no reason given")
                .to_owned();
            (id, reason)
        })
        .collect()
}

/// A stack whose clients go through a fault injector with these rules, and the worker
/// function over it.
async fn faulted_worker(
    seed: u64,
    rules: Vec<Rule>,
) -> (
    MotoStack,
    revguard_aws::faults::FaultInjector,
    revguard_worker::LambdaWorker,
) {
    let (stack, injector) = MotoStack::faulted(seed, rules).await;
    let worker = lambda_worker(
        (stack.dynamodb.clone(), stack.sqs.clone()),
        &stack.worker_env(),
        stack.notifier(),
        BillingPolicy::default(),
    );
    (stack, injector, worker)
}

/// One delivery of `bodies` to a fresh worker over a stack with these faults.
async fn deliver_once(
    rules: Vec<Rule>,
    bodies: Vec<String>,
) -> (
    aws_lambda_events::event::sqs::SqsBatchResponse,
    revguard_aws::faults::FaultInjector,
    MotoStack,
) {
    let (stack, injector, worker) = faulted_worker(7, rules).await;
    let batch: Vec<Queued> = bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| Queued {
            id: format!("m{i}"),
            body,
            receives: 1,
        })
        .collect();
    let response = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        handle_batch(&worker, sqs_event(&batch), HOUR + 3600),
    )
    .await
    .expect("the batch ends: no retry loop without a cap");
    (response, injector, stack)
}

/// The worker reads its applied markers eventually consistently, at half the price. A read
/// that has not seen the latest markers (here: every eventually consistent read finds
/// nothing) can only make the commit conflict, since each marker is written on the
/// condition that it is absent; the retry reads strongly, and nothing is applied or
/// announced twice.
#[tokio::test]
async fn a_stale_read_costs_a_retry_never_a_second_application() {
    let (stack, injector, worker) = faulted_worker(
        11,
        vec![Rule::new("dynamodb:BatchGetItem", Fault::StaleRead, 1.0)],
    )
    .await;
    // invoice.paid and a large charge.succeeded (a notification), delivered twice, as a
    // retried webhook's copy is.
    let bodies: Vec<String> = burst().into_iter().take(2).collect();
    let batch: Vec<Queued> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| Queued {
            id: format!("m{i}"),
            body: body.clone(),
            receives: 1,
        })
        .collect();
    let mut stale_reads = Vec::new();
    for delivery in ["first", "copy"] {
        let response = handle_batch(&worker, sqs_event(&batch), HOUR + 3600).await;
        assert!(
            response.batch_item_failures.is_empty(),
            "{delivery}: {:?}",
            response.batch_item_failures
        );
        stale_reads.push(injector.injected_of(Fault::StaleRead));
    }
    assert!(
        stale_reads[0] >= 1 && stale_reads[1] > stale_reads[0],
        "each delivery read its markers eventually first: {stale_reads:?}"
    );

    let clean = moto_config().await;
    let env = stack.worker_env();
    let totals = DynamoCounters::new(aws_sdk_dynamodb::Client::new(&clean), &env.counters_table)
        .counters(
            true,
            &revguard_core::ports::Account::PLATFORM,
            HOUR,
            HOUR + 3600,
        )
        .await
        .unwrap();
    let sum = |metric: Metric| -> i64 { totals.values().filter_map(|m| m.get(&metric)).sum() };
    assert_eq!(sum(Metric::Events), 2, "{totals:?}");
    assert_eq!(sum(Metric::PaymentsSucceeded), 1, "{totals:?}");
    let published = drain_queue(
        &aws_sdk_sqs::Client::new(&clean),
        &stack.notifications_subscriber,
    )
    .await;
    assert_eq!(
        published.len(),
        1,
        "the large payment announced once: {published:?}"
    );
}

#[tokio::test]
async fn a_throttled_commit_is_retried_in_place_after_a_backoff() {
    // More throttles than the SDK's own attempts (3): the use case's backoff takes over,
    // and the batch applies in its first delivery.
    let (response, injector, _) = deliver_once(
        vec![Rule::first_calls(
            "dynamodb:TransactWriteItems",
            Fault::Throttling,
            4,
        )],
        burst().into_iter().take(2).collect(),
    )
    .await;
    assert_eq!(injector.injected_of(Fault::Throttling), 4);
    assert!(
        response.batch_item_failures.is_empty(),
        "applied in one delivery: {:?}",
        response.batch_item_failures
    );
}

#[tokio::test]
async fn a_write_against_an_in_flight_transaction_is_retried_not_failed() {
    // `TransactionConflictException` on a plain UpdateItem (the maxima): the SDK does not
    // retry it; the use case does.
    let (response, injector, _) = deliver_once(
        vec![Rule::first_calls(
            "dynamodb:UpdateItem",
            Fault::TransactionConflict,
            1,
        )],
        burst().into_iter().take(2).collect(),
    )
    .await;
    assert_eq!(injector.injected_of(Fault::TransactionConflict), 1);
    assert!(response.batch_item_failures.is_empty());
}

#[tokio::test]
async fn unprocessed_keys_back_off_and_give_up() {
    let (response, injector, _) = deliver_once(
        vec![Rule::new(
            "dynamodb:BatchGetItem",
            Fault::UnprocessedKeys,
            1.0,
        )],
        burst().into_iter().take(2).collect(),
    )
    .await;
    // Bounded: a few attempts per read, then the batch fails for SQS to deliver again.
    let calls = injector.calls()["dynamodb:BatchGetItem"];
    assert!((2..=20).contains(&calls), "{calls} BatchGetItem calls");
    assert_eq!(response.batch_item_failures.len(), 2);
}

#[tokio::test]
async fn an_item_the_store_refuses_is_poison_and_its_neighbours_apply() {
    // The whole batch is refused, then its first half: that event is dead-lettered with
    // the reason; the other applies in the same delivery.
    let (response, injector, stack) = deliver_once(
        vec![Rule::first_calls(
            "dynamodb:TransactWriteItems",
            Fault::ValidationError,
            2,
        )],
        burst().into_iter().take(2).collect(),
    )
    .await;
    assert_eq!(injector.injected_of(Fault::ValidationError), 2);
    assert!(response.batch_item_failures.is_empty());
    let sqs = aws_sdk_sqs::Client::new(&moto_config().await);
    let dead = drain_queue(&sqs, &stack.dead_letter_queue_url).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].contains("evt_paid_0"), "{}", dead[0]);
}

/// Sends `bodies` to the stack's events queue and receives them as the event source would,
/// with real receipt handles, leaving them visible unless the worker hides them.
async fn received(stack: &MotoStack, bodies: &[String]) -> SqsEvent {
    for body in bodies {
        stack
            .sqs
            .send_message()
            .queue_url(&stack.queue_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let records = receive_as_event_source(&stack.sqs, &stack.queue_url, Some(0)).await;
    let event: SqsEvent = serde_json::from_value(records).unwrap();
    assert_eq!(event.records.len(), bodies.len());
    event
}

async fn visible(stack: &MotoStack) -> usize {
    stack
        .sqs
        .receive_message()
        .queue_url(&stack.queue_url)
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .send()
        .await
        .unwrap()
        .messages()
        .len()
}

#[tokio::test]
async fn an_outage_hides_failed_messages_for_their_backoff_instead_of_spending_receives() {
    // DynamoDB answers 503 to everything. Before, a failed message came back after the
    // visibility timeout (here 0 s, as received): an outage spent a receive per timeout.
    let (stack, injector, worker) =
        faulted_worker(21, vec![Rule::new("dynamodb:*", Fault::Http503, 1.0)]).await;
    let bodies: Vec<String> = burst().into_iter().take(2).collect();
    let event = received(&stack, &bodies).await;
    let response = handle_batch(&worker, event, HOUR + 3600).await;
    assert_eq!(
        response.batch_item_failures.len(),
        2,
        "nothing applies in an outage"
    );
    assert_eq!(
        injector.calls().get("sqs:ChangeMessageVisibilityBatch"),
        Some(&1)
    );
    assert_eq!(visible(&stack).await, 0, "both hidden for their backoff");
    // The first redelivery waits 15–30 s; from the seventh on, 10–20 min (Backoff::REDELIVERY).
    let rules = revguard_core::usecases::apply_batch::ConsumeRules::default();
    assert_eq!(rules.max_receives, 20);
}

#[tokio::test]
async fn a_batch_that_outlives_its_budget_goes_back_whole_before_the_timeout() {
    // Every DynamoDB call takes 2 s: the batch would apply, long after the invocation's
    // time. Within a budget of 0.5 s the batch is reported failed and hidden instead.
    let (stack, injector, worker) = faulted_worker(
        22,
        vec![Rule::new(
            "dynamodb:*",
            Fault::Latency(std::time::Duration::from_secs(2)),
            1.0,
        )],
    )
    .await;
    let bodies: Vec<String> = burst().into_iter().take(2).collect();
    let event = received(&stack, &bodies).await;
    let response = revguard_worker::handle_batch_within(
        &worker,
        event,
        HOUR + 3600,
        Some(std::time::Duration::from_millis(500)),
    )
    .await;
    assert_eq!(response.batch_item_failures.len(), 2);
    assert_eq!(
        injector.calls().get("sqs:ChangeMessageVisibilityBatch"),
        Some(&1)
    );
    assert_eq!(visible(&stack).await, 0);
}
