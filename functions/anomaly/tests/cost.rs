//! What the pipeline costs per webhook in the configuration a user gets by default,
//! measured: Stripe's renewal mix (Stripe-shaped payloads) goes through the ingress router,
//! the worker handler in the template's default batches and the anomaly detector against
//! moto, with an interceptor logging every AWS call; the webhook arrives through API
//! Gateway (the template's `WebhookUrl`), and every payload is kept for `replay`
//! (`KeepEventPayloads`, on by default). Capacity units are computed from the sizes of the
//! items written (DynamoDB bills a write per started KB, a transaction twice). Run by
//! scripts/test; `scripts/test -p revguard-anomaly --test cost -- --nocapture` prints the
//! table docs/performance.md carries (Cost per million webhooks).

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use revguard_anomaly::lambda_detector;
use revguard_aws::testing::{dynamodb_item_size, Call, CallLog, MotoStack};
use revguard_core::domain::billing::BillingPolicy;
use revguard_core::domain::detector::DetectConfig;
use revguard_core::domain::signature::sign;
use revguard_core::{IngestConfig, SecretSet, WebhookSecret};
use revguard_testkit::fixtures::traffic::Traffic;
use revguard_worker::{handle_batch, lambda_worker};
use serde_json::{json, Value};
use tower::ServiceExt;

const EVENTS: usize = 300;
/// 2026-03-02, a Monday.
const START: i64 = 1_772_409_600;

struct Webhook {
    received_at: i64,
    raw: String,
}

#[derive(Default, Debug)]
struct Tally {
    calls: BTreeMap<String, usize>,
    write_units: f64,
    read_units: f64,
    /// Write units by kind of item (the key's prefix).
    writes_by_item: BTreeMap<String, f64>,
    /// Writes by kind of item: with the units, the average size each is billed at.
    write_count_by_item: BTreeMap<String, usize>,
}

/// The read units of one key read (items under 4 KB): a strongly consistent read costs
/// one, an eventually consistent one (DynamoDB's default) half.
fn read_unit(request: &Value) -> f64 {
    if request["ConsistentRead"].as_bool() == Some(true) {
        1.0
    } else {
        0.5
    }
}

fn key_kind(key: &Value) -> String {
    let k = key
        .get("pk")
        .or_else(|| key.get("event_id"))
        .and_then(|v| v.get("S"))
        .and_then(|s| s.as_str())
        .unwrap_or("");
    match k.split_once('#') {
        Some((p, _)) if p == "live" || p == "test" => "counters".to_owned(),
        Some((p, _)) => p.to_owned(),
        None => "event".to_owned(),
    }
}

/// Write units of one request, from the items it carries (updates: the item's stored size).
fn tally(calls: &[Call], stored_sizes: &BTreeMap<String, usize>) -> Tally {
    let mut t = Tally::default();
    let units = |bytes: usize, per: usize| bytes.div_ceil(per).max(1) as f64;
    let key_size = |key: &Value| -> usize {
        let k = key
            .get("pk")
            .or_else(|| key.get("event_id"))
            .and_then(|v| v.get("S"))
            .and_then(|s| s.as_str())
            .unwrap_or("");
        stored_sizes.get(k).copied().unwrap_or(200)
    };
    for c in calls {
        let service = c.service.to_ascii_lowercase();
        *t.calls
            .entry(format!("{service} {}", c.operation))
            .or_default() += 1;
        let body: Value = serde_json::from_slice(&c.body).unwrap_or(Value::Null);
        match (service.as_str(), c.operation.as_str()) {
            ("dynamodb", "PutItem") => {
                let w = units(dynamodb_item_size(&body["Item"]), 1024);
                t.write_units += w;
                *t.writes_by_item
                    .entry(format!("{} (PutItem)", key_kind(&body["Item"])))
                    .or_default() += w;
                index_write(&mut t, &body, &body["Item"]);
            }
            ("dynamodb", "UpdateItem") | ("dynamodb", "DeleteItem") => {
                let w = units(key_size(&body["Key"]), 1024);
                t.write_units += w;
                *t.writes_by_item
                    .entry(format!("{} ({})", key_kind(&body["Key"]), c.operation))
                    .or_default() += w;
                index_write(&mut t, &body, &body["Key"]);
            }
            // Items under 4 KB: a unit a key read strongly, half a unit eventually.
            ("dynamodb", "GetItem") => t.read_units += read_unit(&body),
            ("dynamodb", "BatchGetItem") => {
                t.read_units += body["RequestItems"].as_object().map_or(0.0, |r| {
                    r.values()
                        .map(|k| k["Keys"].as_array().map_or(0, Vec::len) as f64 * read_unit(k))
                        .sum()
                })
            }
            // The alerts index, eventually consistent: half a unit per 4 KB page.
            ("dynamodb", "Query") => t.read_units += 0.5,
            ("dynamodb", "TransactWriteItems") => {
                for item in body["TransactItems"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                {
                    let (size, kind) = if let Some(put) = item.get("Put") {
                        index_write(&mut t, put, &put["Item"]);
                        (dynamodb_item_size(&put["Item"]), key_kind(&put["Item"]))
                    } else if let Some(u) = item.get("Update") {
                        index_write(&mut t, u, &u["Key"]);
                        (key_size(&u["Key"]), key_kind(&u["Key"]))
                    } else if let Some(d) = item.get("Delete") {
                        index_write(&mut t, d, &d["Key"]);
                        (key_size(&d["Key"]), key_kind(&d["Key"]))
                    } else {
                        (0, String::new())
                    };
                    t.write_units += 2.0 * units(size, 1024);
                    *t.writes_by_item
                        .entry(format!("{kind} (transaction)"))
                        .or_default() += 2.0 * units(size, 1024);
                    *t.write_count_by_item
                        .entry(format!("{kind} (transaction)"))
                        .or_default() += 1;
                }
            }
            _ => {}
        }
    }
    t
}

/// Items of the alerts table are in its sparse index while a detector run reads them:
/// every write of one writes the index too (a unit for items under 1 KB, never doubled).
fn index_write(t: &mut Tally, request: &Value, key: &Value) {
    let table = request["TableName"].as_str().unwrap_or("");
    if table.contains("alerts") {
        t.write_units += 1.0;
        *t.writes_by_item
            .entry(format!("{} (alerts index)", key_kind(key)))
            .or_default() += 1.0;
    }
}

async fn stored_sizes(
    dynamodb: &aws_sdk_dynamodb::Client,
    tables: &[&str],
) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for table in tables {
        let items = dynamodb
            .scan()
            .table_name(*table)
            .send()
            .await
            .unwrap()
            .items
            .unwrap_or_default();
        for item in items {
            let key = item
                .get("pk")
                .or_else(|| item.get("event_id"))
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default();
            // Size from the SDK's view of the item: names plus string/number/binary lengths.
            let size: usize = item
                .iter()
                .map(|(k, v)| {
                    k.len()
                        + match v {
                            aws_sdk_dynamodb::types::AttributeValue::S(s) => s.len(),
                            aws_sdk_dynamodb::types::AttributeValue::N(n) => {
                                n.len().div_ceil(2) + 1
                            }
                            aws_sdk_dynamodb::types::AttributeValue::B(b) => b.as_ref().len(),
                            _ => 1,
                        }
                })
                .sum();
            out.insert(key, size);
        }
    }
    out
}

#[tokio::test]
async fn cost_per_webhook_is_measured() {
    let defaults = TemplateDefaults::read();
    let log = CallLog::default();
    let moto = MotoStack::logged(&log).await;
    let (dynamodb, sqs) = (moto.dynamodb.clone(), moto.sqs.clone());
    let queue_url = moto.queue_url.clone();

    // Stripe's traffic: renewals (six events each, one in twenty failing), Stripe-shaped
    // payloads with unique ids, one a second.
    let traffic = Traffic::new("mix:renewal", START);
    let sample: Vec<Webhook> = (0..EVENTS)
        .map(|i| Webhook {
            received_at: START + i as i64,
            raw: traffic.body(i, "cost"),
        })
        .collect();
    let secret = WebhookSecret::new("whsec_cost").unwrap();
    let now = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let clock_now = now.clone();
    let env = moto.ingress_env();
    let router = revguard_ingress::router_with_clients(
        dynamodb.clone(),
        sqs.clone(),
        &env,
        IngestConfig::new(SecretSet::single(secret.clone())),
        Arc::new(move || clock_now.load(std::sync::atomic::Ordering::SeqCst)),
    );
    for e in &sample {
        now.store(e.received_at, std::sync::atomic::Ordering::SeqCst);
        let request = axum::http::Request::post("/webhook")
            .header(
                "stripe-signature",
                sign(&secret, e.received_at, e.raw.as_bytes()),
            )
            .body(axum::body::Body::from(e.raw.clone()))
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    let ingress_calls = log.take();

    let worker = lambda_worker(
        (dynamodb.clone(), sqs.clone()),
        &moto.worker_env(),
        moto.notifier(),
        BillingPolicy::default(),
    );
    let mut batches = 0;
    loop {
        // As the event source fills a batch within its window: receives of at most 10
        // (SQS's limit) until the template's batch size.
        let mut messages = Vec::new();
        while messages.len() < defaults.worker_batch_size as usize {
            let wanted = (defaults.worker_batch_size as usize - messages.len()).min(10);
            let out = sqs
                .receive_message()
                .queue_url(&queue_url)
                .max_number_of_messages(wanted as i32)
                .send()
                .await
                .unwrap();
            let received = out.messages.unwrap_or_default();
            if received.is_empty() {
                break;
            }
            messages.extend(received);
        }
        if messages.is_empty() {
            break;
        }
        let records: Vec<Value> = messages
            .iter()
            .map(|m| json!({ "messageId": m.message_id, "receiptHandle": m.receipt_handle, "body": m.body, "attributes": {}, "messageAttributes": {} }))
            .collect();
        let batch: SqsEvent = serde_json::from_value(json!({ "Records": records })).unwrap();
        assert!(handle_batch(
            &worker,
            batch,
            now.load(std::sync::atomic::Ordering::SeqCst)
        )
        .await
        .batch_item_failures
        .is_empty());
        for m in &messages {
            // What the Lambda event source does after a successful batch.
            sqs.delete_message()
                .queue_url(&queue_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
        batches += 1;
    }
    let worker_calls: Vec<Call> = log
        .take()
        .into_iter()
        .filter(|c| !c.service.eq_ignore_ascii_case("sqs"))
        .collect();

    let anomaly = lambda_detector(
        dynamodb.clone(),
        moto.sns.clone(),
        &moto.detector_env(),
        DetectConfig::default(),
    );
    anomaly
        .run(now.load(std::sync::atomic::Ordering::SeqCst))
        .await
        .unwrap();
    let anomaly_calls = log.take();

    let sizes = stored_sizes(
        &dynamodb,
        &[
            &moto.events_table,
            &moto.state_table,
            &moto.counters_table,
            &moto.alerts_table,
        ],
    )
    .await;
    let n = sample.len() as f64;
    let ingress = tally(&ingress_calls, &sizes);
    // What keeping every payload in the event log (for `replay`) adds: the same puts
    // without the payload attribute.
    let without_payloads: f64 = ingress_calls
        .iter()
        .filter(|c| c.operation == "PutItem")
        .map(|c| {
            let body: Value = serde_json::from_slice(&c.body).unwrap_or(Value::Null);
            let mut item = body["Item"].clone();
            if let Some(o) = item.as_object_mut() {
                o.remove("payload");
            }
            dynamodb_item_size(&item).div_ceil(1024).max(1) as f64
        })
        .sum();
    let with_payloads: f64 = ingress
        .writes_by_item
        .iter()
        .filter(|(k, _)| k.ends_with("(PutItem)"))
        .map(|(_, v)| v)
        .sum();
    let work = tally(&worker_calls, &sizes);
    let detect = tally(&anomaly_calls, &sizes);

    // Ingress: one send, then one conditional put of an entry already queued; no status
    // update (the payloads travel in the messages).
    assert_eq!(ingress.calls.get("dynamodb PutItem"), Some(&sample.len()));
    assert_eq!(ingress.calls.get("sqs SendMessage"), Some(&sample.len()));
    assert_eq!(
        ingress.calls.get("dynamodb UpdateItem"),
        None,
        "{:?}",
        ingress.calls
    );
    // Worker: one transaction per SQS batch; the detector reads counters, not events.
    assert_eq!(
        work.calls.get("dynamodb TransactWriteItems"),
        Some(&batches)
    );
    assert!(
        detect
            .calls
            .get("dynamodb BatchGetItem")
            .copied()
            .unwrap_or(0)
            <= 8,
        "{:?}",
        detect.calls
    );

    // Prices: us-east-1 list prices (on-demand DynamoDB after the November 2024 cut).
    let (wru, rru, sqs_req, lambda_req, api_req) = (0.625, 0.125, 0.40, 0.20, 1.00); // $ per million
    let per_event = |t: &Tally, op: &str| *t.calls.get(op).unwrap_or(&0) as f64 / n;
    // Maxima are written at most once a minute (last delivery) or once per new hourly
    // maximum (lag), whatever the volume: at the stated volume they are amortised, not
    // per event. So is the detector: 96 runs a day.
    const MONTHLY_WEBHOOKS: f64 = 1_000_000.0;
    let maxima_per_month = 30.0 * 86_400.0
        / revguard_aws::billing::MAX_RECEIVED_AT_GRANULARITY_SECS as f64
        + 2.0 * 30.0 * 24.0;
    let maxima_units = work
        .writes_by_item
        .get("counters (UpdateItem)")
        .copied()
        .unwrap_or(0.0)
        / n;
    let worker_writes = work.write_units / n - maxima_units;
    let detector_runs_per_month = 30.0 * 96.0;
    // Lambda compute at the template's memory size and architecture. Billed durations are
    // not measured here (moto answers in microseconds, DynamoDB in milliseconds): 20 ms a
    // webhook and 30 ms an event in a worker batch, the order the e2e runs show; the
    // detector's runs, 2 s each, are amortised.
    let gb = defaults.memory_mb as f64 / 1024.0;
    let gb_second = defaults.gb_second_price();
    let compute = |seconds: f64| seconds * gb * gb_second * 1e6;
    let rows = [
        (
            "API Gateway HTTP API request (WebhookUrl, the default door)",
            1.0,
            api_req,
        ),
        ("Lambda ingress invocation", 1.0, lambda_req),
        ("Lambda ingress compute (GB-s, 20 ms)", 1.0, compute(0.020)),
        (
            "SQS SendMessage",
            per_event(&ingress, "sqs SendMessage"),
            sqs_req,
        ),
        (
            "DynamoDB write units, ingress (payload kept)",
            ingress.write_units / n,
            wru,
        ),
        ("Lambda worker invocation", batches as f64 / n, lambda_req),
        (
            "Lambda worker compute (GB-s, 30 ms an event)",
            1.0,
            compute(0.030),
        ),
        (
            "SQS receive + delete by the event source",
            2.0 * batches as f64 / n,
            sqs_req,
        ),
        ("DynamoDB read units, worker", work.read_units / n, rru),
        (
            "DynamoDB write units, worker (per event)",
            worker_writes,
            wru,
        ),
        (
            "DynamoDB write units, maxima (amortised)",
            maxima_per_month / MONTHLY_WEBHOOKS,
            wru,
        ),
        (
            "DynamoDB read units, detector (amortised)",
            detector_runs_per_month * detect.read_units / MONTHLY_WEBHOOKS,
            rru,
        ),
        (
            "Lambda detector compute (2 s a run, amortised)",
            detector_runs_per_month / MONTHLY_WEBHOOKS,
            compute(2.0),
        ),
        (
            "SNS publishes (notifications)",
            per_event(&work, "sns Publish"),
            0.50,
        ),
    ];
    println!(
        "\nMeasured over {} webhooks of Stripe's renewal mix (Stripe-shaped payloads, every one kept), \
         through API Gateway, {batches} worker batches of up to {} (the template's default), Lambda at \
         {} MB on {}; amortised at {MONTHLY_WEBHOOKS} webhooks a month:",
        sample.len(),
        defaults.worker_batch_size,
        defaults.memory_mb,
        defaults.architecture
    );
    println!("| per webhook | count | $ per million of them | $ per million webhooks |");
    println!("|---|---|---|---|");
    let mut total = 0.0;
    for (what, count, price) in rows {
        let cost = count * price;
        total += cost;
        println!("| {what} | {count:.2} | {price:.3} | {cost:.3} |");
    }
    println!("| **total (requests, capacity and compute)** | | | **{total:.3}** |");
    println!(
        "through the opt-in function URL instead (WebhookFunctionUrl=true): -{api_req:.3}, total {:.3}",
        total - api_req
    );
    println!(
        "calls per webhook, ingress: {:?}",
        ingress
            .calls
            .iter()
            .map(|(k, v)| (k.as_str(), *v as f64 / n))
            .collect::<Vec<_>>()
    );
    println!(
        "calls per webhook, worker: {:?}",
        work.calls
            .iter()
            .map(|(k, v)| (k.as_str(), (*v as f64 / n * 100.0).round() / 100.0))
            .collect::<Vec<_>>()
    );
    println!(
        "worker write units per webhook by item: {:?}",
        work.writes_by_item
            .iter()
            .map(|(k, v)| (k.as_str(), (v / n * 100.0).round() / 100.0))
            .collect::<Vec<_>>()
    );
    println!(
        "worker writes per webhook by item (in the transaction): {:?}",
        work.write_count_by_item
            .iter()
            .map(|(k, v)| (k.as_str(), (*v as f64 / n * 100.0).round() / 100.0))
            .collect::<Vec<_>>()
    );
    println!(
        "calls per detector run: {:?}; read units {}",
        detect.calls, detect.read_units
    );
    let payload_units = (with_payloads - without_payloads) / n;
    let puts_with_payload = ingress_calls
        .iter()
        .filter(|c| {
            c.operation == "PutItem" && String::from_utf8_lossy(&c.body).contains("\"payload\"")
        })
        .count();
    assert_eq!(
        puts_with_payload,
        sample.len(),
        "the event log keeps every payload"
    );
    println!(
        "keeping every payload in the event log (for replay) adds {payload_units:.2} write units per webhook at ingress with this mix: ${:.3} per million webhooks (included above)",
        payload_units * wru
    );
    // The target: under $5 per million webhooks in the default configuration. The measure
    // is counts and sizes, never time.
    assert!(
        total < 5.0,
        "requests, capacity and compute per million webhooks grew to {total:.3}"
    );
}

/// What `template.yaml` gives a user who changes nothing: the worker's batch size, the
/// functions' memory and architecture.
struct TemplateDefaults {
    worker_batch_size: i32,
    memory_mb: u32,
    architecture: String,
}

impl TemplateDefaults {
    fn read() -> Self {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml");
        let template = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // The `Default:` that follows a parameter's name, or a Globals key's value.
        let after = |key: &str, field: &str| -> String {
            let from = template
                .find(&format!("\n  {key}:"))
                .unwrap_or_else(|| panic!("template.yaml has no {key}"));
            let rest = &template[from..];
            let at = rest
                .find(field)
                .unwrap_or_else(|| panic!("{key} has no {field}"));
            rest[at + field.len()..]
                .lines()
                .next()
                .unwrap()
                .trim()
                .to_owned()
        };
        Self {
            worker_batch_size: after("WorkerBatchSize", "Default:").parse().unwrap(),
            memory_mb: after("Function", "MemorySize:").parse().unwrap(),
            architecture: after("Architecture", "Default:"),
        }
    }

    /// Lambda's price per GB-second in us-east-1.
    fn gb_second_price(&self) -> f64 {
        match self.architecture.as_str() {
            "arm64" => 0.000_013_333_4,
            _ => 0.000_016_666_7,
        }
    }
}

/// The doors Stripe's events can come through, on the same traffic: what it costs to
/// reach the event log and the queue. Past that, the worker and the detector read the same
/// messages whichever door recorded them, so the rest of the table above holds for both.
#[tokio::test]
async fn each_door_s_cost_is_measured() {
    let defaults = TemplateDefaults::read();
    let traffic = Traffic::new("mix:renewal", START);
    let bodies: Vec<String> = (0..EVENTS).map(|i| traffic.body(i, "doors")).collect();
    let n = bodies.len() as f64;

    // The webhook, through API Gateway's route (or the function URL): signed, verified.
    let webhook_log = CallLog::default();
    let webhook_stack = MotoStack::logged(&webhook_log).await;
    let secret = WebhookSecret::new("whsec_cost_doors").unwrap();
    let router = revguard_ingress::router_with_clients(
        webhook_stack.dynamodb.clone(),
        webhook_stack.sqs.clone(),
        &webhook_stack.ingress_env(),
        IngestConfig::new(SecretSet::single(secret.clone())),
        Arc::new(|| START),
    );
    for body in &bodies {
        let request = axum::http::Request::post("/webhook")
            .header("stripe-signature", sign(&secret, START, body.as_bytes()))
            .body(axum::body::Body::from(body.clone()))
            .unwrap();
        assert_eq!(router.clone().oneshot(request).await.unwrap().status(), 200);
    }
    let webhook_calls = webhook_log.take();

    // EventBridge: the same events in Stripe's envelope, to the door's function.
    let door_log = CallLog::default();
    let door_stack = MotoStack::logged(&door_log).await;
    let door = revguard_ingress::BridgeDoor::new(
        door_stack.dynamodb.clone(),
        door_stack.sqs.clone(),
        &door_stack.ingress_env(),
    );
    for (i, body) in bodies.iter().enumerate() {
        let envelope = format!(
            r#"{{"version":"0","id":"cost-{i}","detail-type":{},"source":"aws.partner/stripe.com/ed_cost","account":"123456789012","time":"2026-03-02T00:00:00Z","region":"us-east-1","resources":[],"detail":{body}}}"#,
            serde_json::from_str::<Value>(body).unwrap()["type"]
        );
        let answer = door.handle(envelope.as_bytes(), START + 60).await.unwrap();
        assert_eq!(answer["status"], "accepted", "{answer}");
    }
    let door_calls = door_log.take();

    let webhook = tally(
        &webhook_calls,
        &stored_sizes(&webhook_stack.dynamodb, &[&webhook_stack.events_table]).await,
    );
    let bridged = tally(
        &door_calls,
        &stored_sizes(&door_stack.dynamodb, &[&door_stack.events_table]).await,
    );
    // One send and one conditional put per event at either door, the same item.
    for t in [&webhook, &bridged] {
        assert_eq!(
            t.calls.get("dynamodb PutItem"),
            Some(&bodies.len()),
            "{:?}",
            t.calls
        );
        assert_eq!(
            t.calls.get("sqs SendMessage"),
            Some(&bodies.len()),
            "{:?}",
            t.calls
        );
        assert_eq!(t.calls.len(), 2, "{:?}", t.calls);
    }
    assert_eq!(webhook.write_units, bridged.write_units);

    let (wru, sqs_req, lambda_req, api_req, partner_event) = (0.625, 0.40, 0.20, 1.00, 1.00);
    let gb = defaults.memory_mb as f64 / 1024.0;
    let compute = 0.020 * gb * defaults.gb_second_price() * 1e6;
    // (what, webhook through API Gateway, webhook through the function URL, EventBridge)
    let rows: [(&str, f64, f64, f64); 6] = [
        ("API Gateway HTTP API request", api_req, 0.0, 0.0),
        (
            "EventBridge partner event ingested (each 64 KB; delivery to a target in the account is free)",
            0.0,
            0.0,
            partner_event,
        ),
        ("Lambda invocation (the ingress, or the door's function)", lambda_req, lambda_req, lambda_req),
        ("Lambda compute (GB-s, 20 ms)", compute, compute, compute),
        (
            "SQS SendMessage",
            webhook.calls["sqs SendMessage"] as f64 / n * sqs_req,
            webhook.calls["sqs SendMessage"] as f64 / n * sqs_req,
            bridged.calls["sqs SendMessage"] as f64 / n * sqs_req,
        ),
        (
            "DynamoDB write units (the event log's conditional put, payload kept)",
            webhook.write_units / n * wru,
            webhook.write_units / n * wru,
            bridged.write_units / n * wru,
        ),
    ];
    println!(
        "\nEach door, measured over {} events of Stripe's renewal mix (Stripe-shaped payloads, every one kept), Lambda at {} MB on {}: $ per million events to reach the event log and the queue",
        bodies.len(),
        defaults.memory_mb,
        defaults.architecture
    );
    println!(
        "| per event | webhook, API Gateway (default) | webhook, function URL | EventBridge |"
    );
    println!("|---|---|---|---|");
    let mut totals = [0.0; 3];
    for (what, a, b, c) in rows {
        println!("| {what} | {a:.3} | {b:.3} | {c:.3} |");
        totals[0] += a;
        totals[1] += b;
        totals[2] += c;
    }
    println!(
        "| **the door** | **{:.3}** | **{:.3}** | **{:.3}** |",
        totals[0], totals[1], totals[2]
    );
    println!(
        "write units per event: webhook {:.2}, EventBridge {:.2}",
        webhook.write_units / n,
        bridged.write_units / n
    );
    // The door's calls are the webhook's: EventBridge's door costs what API Gateway's does,
    // a partner event for a request.
    assert!((totals[2] - totals[0]).abs() < 1e-9, "{totals:?}");
}
