//! The ingress Lambda's handler, driven with API Gateway HTTP API (v2) request envelopes
//! from `events/apigw/`, against real DynamoDB and SQS in moto server.

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use http_body_util::BodyExt;
use revguard_aws::testing::{unique_name, unreachable_config, MotoStack};
use revguard_aws::IngressEnv;
use revguard_core::domain::message::decompress;
use revguard_core::domain::signature::sign;
use revguard_core::{IngestConfig, Payload, QueueMessage, SecretSet, WebhookSecret};
use revguard_ingress::router_with_clients;
use revguard_testkit::fixtures;
use serde_json::Value;
use tower::ServiceExt;

const SECRET: &str = "whsec_lambda_test";
const NOW: i64 = 1_767_225_602;

/// An event from `events/` under a unique id, so tests sharing moto never collide.
fn event_body(file: &str, id: &str) -> String {
    let mut v = fixtures::json(file);
    v["id"] = Value::String(id.to_owned());
    serde_json::to_string_pretty(&v).unwrap()
}

fn signed(body: &str) -> String {
    sign(&WebhookSecret::new(SECRET).unwrap(), NOW, body.as_bytes())
}

/// The API Gateway v2 envelope with this body and these headers replaced.
fn envelope(body: &str, signature: Option<&str>, base64_body: bool) -> lambda_http::Request {
    envelope_from("apigw/webhook-request.json", body, signature, base64_body)
}

/// `fixture` (an API Gateway or a function URL request) with this body and these headers.
fn envelope_from(
    fixture: &str,
    body: &str,
    signature: Option<&str>,
    base64_body: bool,
) -> lambda_http::Request {
    let mut env: Value = fixtures::json(fixture);
    let headers = env["headers"].as_object_mut().unwrap();
    headers.remove("stripe-signature");
    if let Some(sig) = signature {
        // API Gateway passes header names through in whatever case the client used.
        headers.insert("Stripe-Signature".into(), Value::String(sig.to_owned()));
    }
    headers.insert(
        "content-length".into(),
        Value::String(body.len().to_string()),
    );
    if base64_body {
        env["body"] = Value::String(base64::engine::general_purpose::STANDARD.encode(body));
        env["isBase64Encoded"] = Value::Bool(true);
    } else {
        env["body"] = Value::String(body.to_owned());
    }
    lambda_http::request::from_str(&env.to_string()).expect("a valid API Gateway v2 envelope")
}

struct Stack {
    dynamodb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    env: IngressEnv,
}

impl Stack {
    async fn new() -> Self {
        let moto = MotoStack::new().await;
        Self {
            env: moto.ingress_env(),
            dynamodb: moto.dynamodb,
            sqs: moto.sqs,
        }
    }

    fn config(&self) -> IngestConfig {
        IngestConfig::new(SecretSet::parse(&format!("whsec_old_rotated,{SECRET}")).unwrap())
    }

    fn router(&self) -> revguard_http::Router {
        self.router_with(self.dynamodb.clone(), self.sqs.clone(), self.config())
    }

    fn router_with(
        &self,
        dynamodb: aws_sdk_dynamodb::Client,
        sqs: aws_sdk_sqs::Client,
        config: IngestConfig,
    ) -> revguard_http::Router {
        router_with_clients(dynamodb, sqs, &self.env, config, Arc::new(|| NOW))
    }

    async fn item(
        &self,
        event_id: &str,
    ) -> Option<std::collections::HashMap<String, AttributeValue>> {
        self.dynamodb
            .get_item()
            .table_name(&self.env.events_table)
            .key("event_id", AttributeValue::S(event_id.into()))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
    }

    async fn status(&self, event_id: &str) -> Option<String> {
        self.item(event_id)
            .await
            .map(|i| i["status"].as_s().unwrap().clone())
    }

    async fn drain(&self) -> Vec<QueueMessage> {
        let mut all = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.env.queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            let batch = out.messages.unwrap_or_default();
            if batch.is_empty() {
                return all;
            }
            for m in batch {
                all.push(QueueMessage::decode(m.body().unwrap()).unwrap());
            }
        }
    }
}

async fn call(router: revguard_http::Router, request: lambda_http::Request) -> (u16, Value) {
    let response = router.oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn accepted_then_duplicate() {
    let stack = Stack::new().await;
    let id = unique_name("evt_acc");
    let body = event_body("invoice.payment_failed.json", &id);

    let (status, json) = call(stack.router(), envelope(&body, Some(&signed(&body)), false)).await;
    assert_eq!(
        (status, json["status"].as_str()),
        (200, Some("accepted")),
        "{json}"
    );
    assert_eq!(json["event_id"], Value::String(id.clone()));
    let item = stack.item(&id).await.unwrap();
    assert_eq!(item["status"].as_s().unwrap(), "queued");
    assert_eq!(
        item["livemode"],
        AttributeValue::Bool(false),
        "test-mode recorded as such"
    );
    assert_eq!(item["event_type"].as_s().unwrap(), "invoice.payment_failed");
    assert_eq!(
        item["expires_at"].as_n().unwrap(),
        &(NOW + 30 * 86_400).to_string()
    );

    let (status, json) = call(stack.router(), envelope(&body, Some(&signed(&body)), false)).await;
    assert_eq!((status, json["status"].as_str()), (200, Some("duplicate")));

    // Sent before it is recorded, a redelivery sends a second copy of the same event,
    // which the worker drops as already applied.
    let sent = stack.drain().await;
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0], sent[1]);
    assert_eq!(
        sent[0].payload,
        Payload::Inline(body.clone()),
        "the raw payload travels unchanged"
    );
}

/// The opt-in `WebhookUrl`, the ingress's function URL: its request (route `$default`,
/// an anonymous caller) reaches the same route, and a forged one is refused alike.
#[tokio::test]
async fn deliveries_through_the_function_url_are_verified_and_queued() {
    let stack = Stack::new().await;
    let url = "apigw/function-url-request.json";
    let id = unique_name("evt_furl");
    let body = event_body("invoice.paid.json", &id);
    let (status, json) = call(
        stack.router(),
        envelope_from(url, &body, Some(&signed(&body)), false),
    )
    .await;
    assert_eq!(
        (status, json["status"].as_str()),
        (200, Some("accepted")),
        "{json}"
    );
    assert_eq!(
        stack.item(&id).await.unwrap()["status"].as_s().unwrap(),
        "queued"
    );
    let sent = stack.drain().await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].payload, Payload::Inline(body.clone()));

    let forged = sign(
        &WebhookSecret::new("whsec_forged").unwrap(),
        NOW,
        body.as_bytes(),
    );
    let (status, json) = call(
        stack.router(),
        envelope_from(url, &body, Some(&forged), false),
    )
    .await;
    assert_eq!(
        (status, json["error"].as_str()),
        (400, Some("bad_signature")),
        "{json}"
    );
    let (status, _) = call(
        stack.router(),
        envelope_from(url, &body, Some(&signed(&body)), true),
    )
    .await;
    assert_eq!(
        status, 200,
        "a base64 body through the URL is verified on its bytes"
    );
}

#[tokio::test]
async fn base64_encoded_bodies_are_verified_on_their_decoded_bytes() {
    let stack = Stack::new().await;
    let id = unique_name("evt_b64");
    let body = event_body("charge.refunded.json", &id);
    let (status, json) = call(stack.router(), envelope(&body, Some(&signed(&body)), true)).await;
    assert_eq!(
        (status, json["status"].as_str()),
        (200, Some("accepted")),
        "{json}"
    );
}

#[tokio::test]
async fn concurrent_duplicates_are_recorded_once_and_the_consumer_can_tell() {
    let stack = Stack::new().await;
    let id = unique_name("evt_conc");
    let body = event_body("customer.subscription.updated.json", &id);
    let deliveries =
        (0..4).map(|_| call(stack.router(), envelope(&body, Some(&signed(&body)), false)));
    let results = futures_join(deliveries).await;
    for (status, json) in &results {
        assert_eq!(*status, 200, "{json}");
    }
    let accepted = results
        .iter()
        .filter(|(_, j)| j["status"] == "accepted")
        .count();
    assert!(accepted >= 1);
    assert_eq!(stack.status(&id).await.as_deref(), Some("queued"));
    let sent = stack.drain().await;
    // Each delivery sends before it records, so each put a copy in the queue; every copy
    // carries the event id, which the worker applies once.
    assert_eq!(sent.len(), results.len());
    assert!(sent.iter().all(|m| m.event_id == id));
}

#[tokio::test]
async fn signature_failures_are_400_with_a_reason_and_record_nothing() {
    let stack = Stack::new().await;
    let id = unique_name("evt_bad");
    let body = event_body("invoice.paid.json", &id);
    let wrong = sign(
        &WebhookSecret::new("whsec_not_ours").unwrap(),
        NOW,
        body.as_bytes(),
    );
    let stale = sign(
        &WebhookSecret::new(SECRET).unwrap(),
        NOW - 301,
        body.as_bytes(),
    );
    let cases = [
        (None, "missing_signature"),
        (Some("t=abc".to_owned()), "malformed_signature"),
        (Some(format!("t={NOW},v0=abc")), "no_v1_signature"),
        (Some(wrong), "bad_signature"),
        (Some(stale), "stale_signature"),
    ];
    for (header, code) in cases {
        let (status, json) = call(stack.router(), envelope(&body, header.as_deref(), false)).await;
        assert_eq!((status, json["error"].as_str()), (400, Some(code)));
    }
    let junk = "{not json";
    let (status, json) = call(stack.router(), envelope(junk, Some(&signed(junk)), false)).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (400, Some("malformed_body"))
    );
    assert_eq!(stack.item(&id).await, None);
    assert!(stack.drain().await.is_empty());
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let stack = Stack::new().await;
    let mut config = stack.config();
    config.max_body_bytes = 4096;
    let router = stack.router_with(stack.dynamodb.clone(), stack.sqs.clone(), config);
    let body = event_body("invoice.paid.json", &unique_name("evt_big"));
    assert!(body.len() > 4096);
    let (status, json) = call(router, envelope(&body, Some(&signed(&body)), false)).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (413, Some("payload_too_large"))
    );
}

#[tokio::test]
async fn payloads_too_big_for_sqs_go_through_the_event_log() {
    let stack = Stack::new().await;
    let id = unique_name("evt_huge");
    // An invoice with hundreds of line items: ~600 KB, over SQS's 256 KiB.
    let mut v: Value = serde_json::from_str(&event_body("invoice.paid.json", &id)).unwrap();
    let line = v["data"]["object"]["lines"]["data"][0].clone();
    let lines: Vec<Value> = (0..400)
        .map(|i| {
            let mut l = line.clone();
            l["id"] = Value::String(format!("il_{i:06}"));
            l
        })
        .collect();
    v["data"]["object"]["lines"]["data"] = Value::Array(lines);
    let body = serde_json::to_string(&v).unwrap();
    assert!(body.len() > 300 * 1024, "{} bytes", body.len());

    let (status, json) = call(stack.router(), envelope(&body, Some(&signed(&body)), false)).await;
    assert_eq!(
        (status, json["status"].as_str()),
        (200, Some("accepted")),
        "{json}"
    );
    let sent = stack.drain().await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].payload, Payload::InEventLog);
    let item = stack.item(&id).await.unwrap();
    let stored = item["payload"].as_b().unwrap().as_ref().to_vec();
    assert!(stored.len() < 350 * 1024);
    assert_eq!(
        decompress(&stored).unwrap(),
        body.as_bytes(),
        "the payload comes back byte for byte"
    );
}

#[tokio::test]
async fn a_store_outage_is_503_and_stripes_retry_records_it() {
    let stack = Stack::new().await;
    let down = aws_sdk_dynamodb::Client::new(&unreachable_config().await);
    let router = stack.router_with(down, stack.sqs.clone(), stack.config());
    let id = unique_name("evt_store_down");
    let body = event_body("invoice.paid.json", &id);
    let (status, json) = call(router, envelope(&body, Some(&signed(&body)), false)).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (503, Some("store_unavailable"))
    );
    assert_eq!(stack.item(&id).await, None, "nothing recorded");

    // Stripe retries: the event is recorded now. It was enqueued by both deliveries; the
    // worker applies it once.
    stripe_retry_is_accepted_and_queued(&stack, &id, &body, 2).await;
}

/// Stripe's retry after an outage: accepted, recorded as queued, and `copies` messages
/// of the event in the queue.
async fn stripe_retry_is_accepted_and_queued(stack: &Stack, id: &str, body: &str, copies: usize) {
    let (status, json) = call(stack.router(), envelope(body, Some(&signed(body)), false)).await;
    assert_eq!(
        (status, json["status"].as_str()),
        (200, Some("accepted")),
        "{json}"
    );
    assert_eq!(stack.status(id).await.as_deref(), Some("queued"));
    let sent = stack.drain().await;
    assert_eq!(sent.len(), copies);
    assert!(sent.iter().all(|m| m.event_id == id));
}

#[tokio::test]
async fn a_queue_outage_is_503_records_nothing_and_stripes_retry_enqueues() {
    let stack = Stack::new().await;
    let down = aws_sdk_sqs::Client::new(&unreachable_config().await);
    let id = unique_name("evt_queue_down");
    let body = event_body("invoice.paid.json", &id);

    let router = stack.router_with(stack.dynamodb.clone(), down, stack.config());
    let (status, json) = call(router, envelope(&body, Some(&signed(&body)), false)).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (503, Some("queue_unavailable"))
    );
    assert_eq!(
        stack.item(&id).await,
        None,
        "not recorded before it is enqueued"
    );
    stripe_retry_is_accepted_and_queued(&stack, &id, &body, 1).await;
}

#[tokio::test]
async fn wrong_method_and_path() {
    let stack = Stack::new().await;
    let mut req = envelope("{}", None, false);
    *req.method_mut() = lambda_http::http::Method::GET;
    let (status, _) = call(stack.router(), req).await;
    assert_eq!(status, 405);
    let mut req = envelope("{}", None, false);
    *req.uri_mut() = "/elsewhere".parse().unwrap();
    let (status, json) = call(stack.router(), req).await;
    assert_eq!((status, json["error"].as_str()), (404, Some("not_found")));
}

async fn futures_join<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn a_payload_with_characters_sqs_refuses_is_still_enqueued() {
    // JSON allows a raw U+FFFF; SQS refuses it (InvalidMessageContents), and the fault
    // injector refuses it as AWS does (moto would not).
    let (moto, injector) = MotoStack::faulted(3, Vec::new()).await;
    let stack = Stack {
        env: moto.ingress_env(),
        dynamodb: moto.dynamodb,
        sqs: moto.sqs,
    };
    let id = unique_name("evt_ffff");
    let mut event = fixtures::json("invoice.payment_failed.json");
    event["id"] = Value::String(id.clone());
    event["data"]["object"]["description"] = Value::String("plan \u{FFFF} \u{FFFE} ✓".into());
    let body = serde_json::to_string(&event).unwrap();
    assert!(body.contains('\u{FFFF}'));

    let (status, json) = call(stack.router(), envelope(&body, Some(&signed(&body)), false)).await;
    assert_eq!(
        (status, json["status"].as_str()),
        (200, Some("accepted")),
        "{json}"
    );
    assert!(injector.injected().is_empty(), "{:?}", injector.injected());
    let sent = stack.drain().await;
    assert_eq!(sent.len(), 1);
    let Payload::Inline(payload) = &sent[0].payload else {
        panic!("inline payload")
    };
    let received: Value = serde_json::from_str(payload).unwrap();
    assert_eq!(received, event, "the same JSON arrives");
}

#[tokio::test]
async fn a_secret_changed_while_warm_is_read_again_at_most_once_a_minute() {
    // The first deploy's order of things: the function starts with the placeholder, then
    // the secret's value is set. A warm function must pick it up without a restart.
    let moto = MotoStack::new().await;
    let sdk = revguard_aws::testing::moto_config().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let arn = secrets
        .create_secret()
        .name(unique_name("stripe-webhook-secret"))
        .secret_string("whsec_placeholder")
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let started_with = revguard_aws::read_webhook_secrets(&sdk, &arn)
        .await
        .unwrap();
    let clock = Arc::new(std::sync::atomic::AtomicI64::new(NOW));
    let router = {
        let clock = clock.clone();
        revguard_ingress::router_with_refresh(
            moto.dynamodb.clone(),
            moto.sqs.clone(),
            &moto.ingress_env(),
            IngestConfig::new(started_with),
            Arc::new(move || clock.load(std::sync::atomic::Ordering::SeqCst)),
            Some(revguard_aws::webhook_secret_loader(&sdk, &arn)),
        )
    };
    let deliver = |id: &str, at: i64| {
        let body = event_body("invoice.paid.json", id);
        let header = sign(&WebhookSecret::new(SECRET).unwrap(), at, body.as_bytes());
        envelope(&body, Some(&header), false)
    };

    // Still the placeholder: a 400, and the re-read found nothing new.
    let (status, json) = call(router.clone(), deliver(&unique_name("evt_s1"), NOW)).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (400, Some("bad_signature"))
    );

    secrets
        .put_secret_value()
        .secret_id(&arn)
        .secret_string(SECRET)
        .send()
        .await
        .unwrap();
    // Within the minute: not read again (a flood of forgeries costs one read a minute).
    clock.store(NOW + 30, std::sync::atomic::Ordering::SeqCst);
    let (status, _) = call(router.clone(), deliver(&unique_name("evt_s2"), NOW + 30)).await;
    assert_eq!(status, 400);
    // A minute on: read again, and the delivery is accepted.
    clock.store(NOW + 61, std::sync::atomic::Ordering::SeqCst);
    let id = unique_name("evt_s3");
    let (status, json) = call(router.clone(), deliver(&id, NOW + 61)).await;
    assert_eq!(
        (status, json["status"].as_str()),
        (200, Some("accepted")),
        "{json}"
    );
    // And from then on without reading again.
    let (status, _) = call(router, deliver(&unique_name("evt_s4"), NOW + 62)).await;
    assert_eq!(status, 200);
}
