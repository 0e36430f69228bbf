//! The operator API answers the same on both backends: one billing story applied by the
//! embedded worker to SQLite and by the worker Lambda to DynamoDB in moto, the detector
//! run on each, then the same requests to `revguard serve`'s router and to the api
//! Lambda's, compared byte for byte. Also measures `GET /api/access/{customer}` against
//! moto: latency and DynamoDB calls per request (printed with `--nocapture`).

use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::event::sqs::SqsEvent;
use axum::body::Body;
use http_body_util::BodyExt;
use revguard_aws::testing::{CallLog, MotoStack};
use revguard_core::domain::billing::BillingPolicy;
use revguard_core::domain::detector::DetectConfig;
use revguard_core::ports::{PublishError, Publisher, Queue};
use revguard_core::usecases::detector_run::Detector;
use revguard_core::QueueMessage;
use revguard_http::operator::{operator_router, OperatorApi};
use revguard_http::Router;
use revguard_sqlite::SqliteStore;
use serde_json::{json, Value};
use tower::ServiceExt;

const T: i64 = 1_768_003_200; // 2026-01-10 00:00 UTC
const H: i64 = 3600;
const DAY: i64 = 86_400;

use revguard_testkit::fixtures::queued_event as event;

fn subscription(
    id: &str,
    customer: &str,
    status: &str,
    amount: i64,
    cancel_at_period_end: bool,
    period_end: i64,
) -> Value {
    json!({ "id": id, "object": "subscription", "customer": customer, "status": status, "currency": "usd",
        "cancel_at_period_end": cancel_at_period_end, "created": T - 40 * DAY,
        "items": { "data": [{ "id": format!("si_{id}"), "quantity": 1, "current_period_end": period_end,
            "price": { "id": "price_pro", "unit_amount": amount, "currency": "usd",
                "recurring": { "interval": "month", "interval_count": 1, "usage_type": "licensed" } } }] } })
}

fn invoice(
    id: &str,
    customer: &str,
    sub: &str,
    amount: i64,
    paid: bool,
    next_attempt: Option<i64>,
    period_end: i64,
) -> Value {
    json!({ "id": id, "object": "invoice", "customer": customer, "currency": "usd", "amount_due": amount,
        "amount_paid": if paid { amount } else { 0 }, "attempt_count": 1, "next_payment_attempt": next_attempt,
        "status": if paid { "paid" } else { "open" }, "hosted_invoice_url": format!("https://invoice.stripe.com/i/{id}"),
        "lines": { "data": [{ "period": { "start": period_end - 30 * DAY, "end": period_end } }] },
        "parent": { "subscription_details": { "subscription": sub } } })
}

fn charge(id: &str, customer: &str, amount: i64, refunded: i64) -> Value {
    json!({ "id": id, "object": "charge", "customer": customer, "amount": amount, "amount_refunded": refunded,
        "currency": "usd", "status": "succeeded", "paid": true })
}

/// Two deliveries a day apart: a large refund whose alert opens and resolves, then a
/// past-due customer, one canceled at period end, and a large refund whose alert stays open.
fn story() -> (Vec<QueueMessage>, Vec<QueueMessage>) {
    let early = vec![
        event(
            "evt_d_refund",
            "charge.refunded",
            T - 30 * H,
            charge("ch_D", "cus_D", 80_000, 80_000),
            None,
        ),
        // Two cancellations 20 days ago: cus_E stays away (a win-back comes due after 14
        // days), cus_F subscribes again (none).
        event(
            "evt_e_sub",
            "customer.subscription.created",
            T - 60 * DAY,
            subscription("sub_E", "cus_E", "active", 2900, false, T - 20 * DAY),
            None,
        ),
        event(
            "evt_e_gone",
            "customer.subscription.deleted",
            T - 20 * DAY,
            subscription("sub_E", "cus_E", "canceled", 2900, false, T - 20 * DAY),
            Some(json!({ "status": "active" })),
        ),
        event(
            "evt_f_sub",
            "customer.subscription.created",
            T - 60 * DAY,
            subscription("sub_F", "cus_F", "active", 2900, false, T - 20 * DAY),
            None,
        ),
        event(
            "evt_f_gone",
            "customer.subscription.deleted",
            T - 20 * DAY,
            subscription("sub_F", "cus_F", "canceled", 2900, false, T - 20 * DAY),
            Some(json!({ "status": "active" })),
        ),
        event(
            "evt_f_back",
            "customer.subscription.created",
            T - 10 * DAY,
            subscription("sub_F2", "cus_F", "active", 2900, false, T + 20 * DAY),
            None,
        ),
    ];
    let later = vec![
        event(
            "evt_a_sub",
            "customer.subscription.created",
            T - 40 * DAY,
            subscription("sub_A", "cus_A", "active", 4900, false, T + 20 * DAY),
            None,
        ),
        event(
            "evt_b_sub",
            "customer.subscription.created",
            T - 30 * DAY,
            subscription("sub_B", "cus_B", "active", 9900, false, T + 10 * DAY),
            None,
        ),
        event(
            "evt_b_paid",
            "invoice.paid",
            T - 29 * DAY,
            invoice("in_B1", "cus_B", "sub_B", 9900, true, None, T + 10 * DAY),
            None,
        ),
        event(
            "evt_a_charge",
            "charge.failed",
            T - 2 * H,
            json!({ "id": "ch_A1", "object": "charge", "customer": "cus_A", "amount": 4900,
            "currency": "usd", "failure_code": "card_declined", "outcome": { "reason": "insufficient_funds" } }),
            None,
        ),
        event(
            "evt_a_failed",
            "invoice.payment_failed",
            T - 2 * H + 5,
            invoice(
                "in_A1",
                "cus_A",
                "sub_A",
                4900,
                false,
                Some(T + 3 * DAY),
                T + 50 * DAY,
            ),
            None,
        ),
        event(
            "evt_a_past_due",
            "customer.subscription.updated",
            T - 2 * H + 10,
            subscription("sub_A", "cus_A", "past_due", 4900, false, T + 20 * DAY),
            Some(json!({ "status": "active" })),
        ),
        event(
            "evt_b_cancel",
            "customer.subscription.updated",
            T - 90 * 60,
            subscription("sub_B", "cus_B", "active", 9900, true, T + 10 * DAY),
            Some(json!({ "cancel_at_period_end": false })),
        ),
        event(
            "evt_c_charge",
            "charge.succeeded",
            T - 40 * 60,
            charge("ch_C", "cus_C", 75_000, 0),
            None,
        ),
        event(
            "evt_c_refund",
            "charge.refunded",
            T - 30 * 60,
            charge("ch_C", "cus_C", 75_000, 75_000),
            None,
        ),
    ];
    // Connect: two connected accounts whose customers, subscriptions, invoices and
    // charges reuse the platform's ids. Alpha has a large refund; Beta a failed renewal.
    let alpha = [
        "evt_a_sub",
        "evt_b_sub",
        "evt_b_paid",
        "evt_c_charge",
        "evt_c_refund",
    ];
    let beta = [
        "evt_a_sub",
        "evt_a_charge",
        "evt_a_failed",
        "evt_a_past_due",
    ];
    let mut connected = Vec::new();
    for (account, ids) in [("acct_1Alpha", &alpha[..]), ("acct_1Beta", &beta[..])] {
        for m in later.iter().filter(|m| ids.contains(&m.event_id.as_str())) {
            connected.push(in_account(m, account));
        }
    }
    let mut later = later;
    later.extend(connected);
    (early, later)
}

/// The platform's event as a connected account's: `account` set, an id of its own.
fn in_account(m: &QueueMessage, account: &str) -> QueueMessage {
    let revguard_core::Payload::Inline(raw) = &m.payload else {
        unreachable!("the story's payloads are inline")
    };
    let mut v: Value = serde_json::from_str(raw).unwrap();
    let id = format!("{}_{account}", m.event_id);
    v["id"] = json!(id);
    v["account"] = json!(account);
    QueueMessage {
        event_id: id,
        payload: revguard_core::Payload::Inline(v.to_string()),
        ..m.clone()
    }
}

/// Publishes nowhere: the comparison is of what the stores hold.
struct Nowhere;
impl<M: revguard_core::ports::Outgoing> Publisher<M> for Nowhere {
    async fn publish(&self, _: &M) -> Result<(), PublishError> {
        Ok(())
    }
}

fn clock() -> revguard_http::Clock {
    Arc::new(|| T + 5 * 60)
}

async fn embedded(dir: &std::path::Path) -> Router {
    let store = SqliteStore::open(dir.join("contract.db")).unwrap();
    let worker = revguard_core::usecases::apply_batch::BatchApplier {
        log: store.clone(),
        billing: store.clone(),
        notifier: Nowhere,
        dead_letters: store.clone(),
        pause: revguard_core::ports::TokioPause,
        policy: BillingPolicy::default(),
        rules: Default::default(),
        requery: revguard_core::usecases::recovery::NoRequery,
    };
    let detector = Detector {
        counters: revguard_sqlite::billing::SqliteCounters {
            store: store.clone(),
            received_before: None,
        },
        alerts: store.clone(),
        publisher: Nowhere,
        comebacks: store.clone(),
        config: DetectConfig::default(),
        audit: revguard_core::usecases::recovery::NoAudit,
        pause: revguard_core::ports::TokioPause,
        wall_clock: revguard_core::domain::time::unix_now,
    };
    let (early, later) = story();
    for (batch, at) in [(early, T - 29 * H), (later, T)] {
        for m in &batch {
            store.send(m).await.unwrap();
        }
        let taken = store.take(at, 256).await.unwrap();
        let outcomes = worker.consume(&taken, at).await;
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, revguard_core::usecases::apply_batch::Consumed::Applied)),
            "{outcomes:?}"
        );
        store
            .settle(taken.iter().map(|m| m.id.clone()).collect(), vec![])
            .await
            .unwrap();
        detector.run(at).await.unwrap();
    }
    operator_router(Arc::new(OperatorApi {
        store,
        policy: BillingPolicy::default(),
        token: None,
        rejections: None,
        clock: clock(),
    }))
}

async fn on_aws(stack: &MotoStack) -> Router {
    let worker = revguard_worker::lambda_worker(
        (stack.dynamodb.clone(), stack.sqs.clone()),
        &stack.worker_env(),
        stack.notifier(),
        BillingPolicy::default(),
    );
    let detector = revguard_anomaly_like(stack);
    let (early, later) = story();
    for (batch, at) in [(early, T - 29 * H), (later, T)] {
        let records: Vec<Value> = batch
            .iter()
            .enumerate()
            .map(|(i, m)| json!({ "messageId": format!("{}-{i}", m.event_id), "body": m.encode(), "attributes": {}, "messageAttributes": {} }))
            .collect();
        let sqs: SqsEvent = serde_json::from_value(json!({ "Records": records })).unwrap();
        let response = revguard_worker::handle_batch(&worker, sqs, at).await;
        assert!(response.batch_item_failures.is_empty());
        detector.run(at).await.unwrap();
    }
    revguard_api::build_router(
        stack.dynamodb.clone(),
        &stack.api_env(),
        BillingPolicy::default(),
        clock(),
    )
}

fn revguard_anomaly_like(
    stack: &MotoStack,
) -> Detector<
    revguard_aws::DynamoCounters,
    revguard_aws::DynamoAlerts,
    Nowhere,
    revguard_aws::DynamoReadModel,
    revguard_core::usecases::recovery::NoAudit,
    revguard_core::ports::TokioPause,
> {
    Detector {
        counters: revguard_aws::DynamoCounters::new(stack.dynamodb.clone(), &stack.counters_table),
        alerts: revguard_aws::DynamoAlerts::new(stack.dynamodb.clone(), &stack.alerts_table),
        publisher: Nowhere,
        comebacks: revguard_aws::DynamoReadModel::new(
            stack.dynamodb.clone(),
            &stack.state_table,
            &stack.counters_table,
            &stack.alerts_table,
        ),
        config: DetectConfig::default(),
        audit: revguard_core::usecases::recovery::NoAudit,
        pause: revguard_core::ports::TokioPause,
        wall_clock: revguard_core::domain::time::unix_now,
    }
}

async fn get(router: &Router, path: &str) -> (u16, String) {
    let response = router
        .clone()
        .oneshot(http::Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn both_backends_answer_the_operator_api_alike() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = embedded(dir.path()).await;
    let stack = MotoStack::new().await;
    let dynamo = on_aws(&stack).await;

    let from = T - 48 * H;
    let paths = [
        "/api/customers/cus_A".to_owned(),
        "/api/customers/cus_B".to_owned(),
        "/api/customers/cus_nobody".to_owned(),
        "/api/access/cus_A".to_owned(),
        "/api/access/cus_B".to_owned(),
        "/api/access/cus_C".to_owned(),
        "/api/subscriptions/sub_A".to_owned(),
        "/api/subscriptions/sub_missing".to_owned(),
        "/api/dunning".to_owned(),
        "/api/dunning?status=all".to_owned(),
        "/api/dunning?status=notice".to_owned(),
        "/api/dunning?status=closed".to_owned(),
        format!("/api/metrics?from={from}&to={}", T + H),
        "/api/alerts".to_owned(),
        "/dashboard".to_owned(),
        // Connect: every route of each connected account, and of the whole platform.
        "/api/accounts".to_owned(),
        "/api/customers/cus_A?account=acct_1Alpha".to_owned(),
        "/api/customers/cus_A?account=acct_1Beta".to_owned(),
        "/api/access/cus_A?account=acct_1Beta".to_owned(),
        "/api/access/cus_C?account=acct_1Alpha".to_owned(),
        "/api/subscriptions/sub_A?account=acct_1Beta".to_owned(),
        "/api/subscriptions/sub_B?account=acct_1Beta".to_owned(),
        "/api/dunning?account=acct_1Beta".to_owned(),
        "/api/dunning?status=all&account=acct_1Alpha".to_owned(),
        format!("/api/metrics?from={from}&to={}&account=acct_1Alpha", T + H),
        format!("/api/metrics?from={from}&to={}&account=all", T + H),
        "/api/alerts?account=acct_1Alpha".to_owned(),
        "/api/alerts?account=acct_1Beta".to_owned(),
        "/api/alerts?account=all".to_owned(),
        "/dashboard?account=acct_1Alpha".to_owned(),
        "/dashboard?account=all&mode=live".to_owned(),
        "/api/customers/cus_A?account=acct_x%23y".to_owned(),
        "/api/dunning?account=all".to_owned(),
    ];
    for path in &paths {
        let (a, b) = (get(&sqlite, path).await, get(&dynamo, path).await);
        assert_eq!(a.0, b.0, "{path}: status");
        if a.1 != b.1 {
            let at =
                a.1.bytes()
                    .zip(b.1.bytes())
                    .take_while(|(x, y)| x == y)
                    .count();
            let around = |s: &str| {
                s.get(at.saturating_sub(80)..(at + 120).min(s.len()))
                    .unwrap_or("")
                    .to_owned()
            };
            panic!(
                "{path}: the backends differ at byte {at}:\n SQLite: …{}…\n DynamoDB: …{}…",
                around(&a.1),
                around(&b.1)
            );
        }
    }

    // And the answers are the story's, not two equal mistakes.
    let access = |body: &str| serde_json::from_str::<Value>(body).unwrap();
    let a = access(&get(&dynamo, "/api/access/cus_A").await.1);
    assert_eq!(a["verdict"], "grace");
    assert_eq!(a["until"], json!(T - 2 * H + 5 + 7 * DAY));
    let b = access(&get(&dynamo, "/api/access/cus_B").await.1);
    assert_eq!(
        (b["verdict"].clone(), b["until"].clone()),
        (json!("granted"), json!(T + 10 * DAY))
    );
    assert!(b["reason"].as_str().unwrap().contains("period end"));
    assert_eq!(
        access(&get(&dynamo, "/api/access/cus_C").await.1)["verdict"],
        "revoked"
    );
    let dunning = access(&get(&dynamo, "/api/dunning").await.1);
    assert_eq!(dunning.as_array().unwrap().len(), 1);
    assert_eq!(dunning[0]["invoice_id"], "in_A1");
    let alerts = access(&get(&dynamo, "/api/alerts").await.1);
    let states: Vec<(String, bool)> = alerts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap().to_owned(),
                a["open"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("live:large_refund:ch_C".to_owned(), true),
            ("live:large_refund:ch_D".to_owned(), false),
        ],
        "one open, one resolved in the last 7 days; no win-back (cus_E's is the team's notification; none for cus_F, who came back)"
    );
    assert_eq!(get(&dynamo, "/api/subscriptions/sub_missing").await.0, 404);

    // Connect: each account answers its own story, though the ids are the platform's.
    let json_of = |body: String| serde_json::from_str::<Value>(&body).unwrap();
    let beta_a = json_of(get(&dynamo, "/api/access/cus_A?account=acct_1Beta").await.1);
    assert_eq!(beta_a["verdict"], "grace", "Beta's cus_A is past due");
    assert_eq!(beta_a["account"], "acct_1Beta");
    let alpha_a = json_of(
        get(&dynamo, "/api/access/cus_A?account=acct_1Alpha")
            .await
            .1,
    );
    assert_eq!(alpha_a["verdict"], "granted", "Alpha's cus_A never failed");
    let beta_dunning = json_of(get(&dynamo, "/api/dunning?account=acct_1Beta").await.1);
    assert_eq!(beta_dunning.as_array().unwrap().len(), 1);
    assert_eq!(
        json_of(get(&dynamo, "/api/dunning?account=acct_1Alpha").await.1),
        json!([])
    );
    assert_eq!(
        get(&dynamo, "/api/subscriptions/sub_B?account=acct_1Beta")
            .await
            .0,
        404,
        "Beta has no sub_B; the platform and Alpha do"
    );
    let alpha_alerts = json_of(get(&dynamo, "/api/alerts?account=acct_1Alpha").await.1);
    let ids: Vec<&str> = alpha_alerts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["live:acct_1Alpha:large_refund:ch_C"],
        "Alpha's large refund, under Alpha"
    );
    assert_eq!(
        json_of(get(&dynamo, "/api/alerts?account=acct_1Beta").await.1),
        json!([])
    );
    let all_alerts = json_of(get(&dynamo, "/api/alerts?account=all").await.1);
    assert_eq!(all_alerts.as_array().unwrap().len(), 3);
    let accounts = json_of(get(&dynamo, "/api/accounts").await.1);
    let listed: Vec<(Value, Value, Value)> = accounts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["account"].clone(),
                a["open_dunning_cases"].clone(),
                a["open_alerts"].clone(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (Value::Null, json!(1), json!(1)),
            (json!("acct_1Alpha"), json!(0), json!(1)),
            (json!("acct_1Beta"), json!(1), json!(0)),
        ]
    );
    assert_eq!(accounts[1]["mrr"]["live.usd"], 4900 + 9900);
    assert_eq!(accounts[2]["mrr"]["live.usd"], 4900);
    let metrics_of = |body: String| -> i64 {
        json_of(body)
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["hour"] != 0)
            .map(|h| h["metrics"]["refunds"].as_i64().unwrap_or(0))
            .sum()
    };
    let refunds = |account: &'static str| {
        let dynamo = &dynamo;
        async move {
            metrics_of(
                get(
                    dynamo,
                    &format!("/api/metrics?from={from}&to={}&account={account}", T + H),
                )
                .await
                .1,
            )
        }
    };
    assert_eq!(refunds("platform").await, 2, "ch_D's and ch_C's");
    assert_eq!(refunds("acct_1Alpha").await, 1);
    assert_eq!(refunds("acct_1Beta").await, 0);
    assert_eq!(
        refunds("all").await,
        3,
        "the whole platform adds its accounts up"
    );
    assert_eq!(
        get(&dynamo, "/api/customers/cus_A?account=acct_x%23y").await,
        (400, r#"{"error":"bad_account"}"#.to_owned())
    );
}

/// The api function's router over the story on DynamoDB, with every AWS call from now on
/// recorded in the log.
async fn logged_api() -> (CallLog, Router) {
    let log = CallLog::default();
    let stack = MotoStack::logged(&log).await;
    let router = on_aws(&stack).await;
    log.take();
    (log, router)
}

#[tokio::test]
async fn the_access_endpoint_against_moto_latency_and_reads() {
    let (log, router) = logged_api().await;
    let mut times = Vec::new();
    for i in 0..200 {
        let customer = ["cus_A", "cus_B", "cus_C"][i % 3];
        let start = Instant::now();
        let (status, body) = get(&router, &format!("/api/access/{customer}")).await;
        times.push(start.elapsed());
        assert_eq!(status, 200, "{body}");
    }
    let calls = log.take();
    let per_request = calls.len() as f64 / 200.0;
    let queries = calls.iter().filter(|c| c.operation == "Query").count();
    let batch_gets = calls
        .iter()
        .filter(|c| c.operation == "BatchGetItem")
        .count();
    assert_eq!(queries, 200, "one index Query per request");
    assert_eq!(batch_gets, 200, "one BatchGetItem per request");
    times.sort();
    eprintln!(
        "GET /api/access/{{customer}} against moto, 200 requests: p50 {:.2} ms, p99 {:.2} ms; \
         DynamoDB calls per request {per_request:.1} (1 Query of by_customer, 1 BatchGetItem)",
        times[100].as_secs_f64() * 1e3,
        times[197].as_secs_f64() * 1e3
    );
}

#[tokio::test]
async fn what_a_dashboard_load_reads_from_dynamodb() {
    let (log, router) = logged_api().await;
    let (status, page) = get(&router, "/dashboard").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("live:large_refund:ch_C"),
        "the open alert is on the page"
    );
    let calls = log.take();
    let count = |op: &str| calls.iter().filter(|c| c.operation == op).count();
    // Every key a BatchGetItem asks for is one small item: one read unit (strongly
    // consistent, under 4 KB); a Query of a sparse index reads a few small items.
    let keys = revguard_aws::testing::batch_get_keys(&calls);
    assert!(count("Scan") == 0, "a dashboard load never scans");
    eprintln!(
        "GET /dashboard on DynamoDB: {} calls ({} BatchGetItem asking {keys} keys, {} Query), about {} read units",
        calls.len(),
        count("BatchGetItem"),
        count("Query"),
        keys + count("Query")
    );
}

/// A stack deployed before the operator API has state items without the `customer` key of
/// the customer index; `scripts/backfill-index-keys` tags them, and the answers are whole.
#[tokio::test]
async fn the_backfill_script_makes_older_items_findable() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = embedded(dir.path()).await;
    let stack = MotoStack::new().await;
    let dynamo = on_aws(&stack).await;
    // As an older worker wrote them: no `customer` on dunning cases and customer items.
    for pk in ["case#in_A1", "cust#cus_A"] {
        stack
            .dynamodb
            .update_item()
            .table_name(&stack.state_table)
            .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(pk.into()))
            .update_expression("REMOVE customer")
            .send()
            .await
            .unwrap();
    }
    let path = "/api/customers/cus_A";
    let before: Value = serde_json::from_str(&get(&dynamo, path).await.1).unwrap();
    assert_eq!(
        before["open_dunning_cases"],
        json!([]),
        "the case is not found: {before}"
    );

    let python = std::env::var("REVGUARD_PYTHON").expect("REVGUARD_PYTHON (scripts/test sets it)");
    let script = revguard_testkit::fixtures::events_dir().join("../scripts/backfill-index-keys");
    let out = std::process::Command::new(python)
        .arg(script)
        .args(["--table", &stack.state_table, "--region", "us-east-1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["tagged"], 2, "{summary}");
    assert_eq!(get(&dynamo, path).await.1, get(&sqlite, path).await.1);
}
