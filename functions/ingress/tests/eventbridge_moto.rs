//! The EventBridge door over DynamoDB and SQS in moto: Stripe's documented envelope (the
//! example in `events/eventbridge/`) recorded and enqueued under Stripe's event id, an
//! event that came through the webhook too recorded once, and an outage answered with an
//! error, so that Lambda's retry (then the door's dead-letter queue) keeps the event.

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use http_body_util::BodyExt;
use revguard_aws::testing::{unique_name, unreachable_config, MotoStack};
use revguard_aws::IngressEnv;
use revguard_core::domain::signature::sign;
use revguard_core::{IngestConfig, Payload, QueueMessage, SecretSet, Via, WebhookSecret};
use revguard_ingress::{router_with_clients, BridgeDoor};
use revguard_testkit::fixtures;
use serde_json::Value;
use tower::ServiceExt;

const SECRET: &str = "whsec_eventbridge_test";

/// Stripe's documented example, with a unique event id and the bus's time `time`.
fn example(id: &str, time: &str) -> (Value, String) {
    let mut envelope = fixtures::json("eventbridge/invoice.paid.json");
    envelope["detail"]["id"] = Value::String(id.to_owned());
    envelope["time"] = Value::String(time.to_owned());
    let detail = serde_json::to_string(&envelope["detail"]).unwrap();
    (envelope, detail)
}

struct Stack {
    moto: MotoStack,
    env: IngressEnv,
}

impl Stack {
    async fn new() -> Self {
        let moto = MotoStack::new().await;
        Self {
            env: moto.ingress_env(),
            moto,
        }
    }

    fn door(&self) -> BridgeDoor {
        BridgeDoor::new(self.moto.dynamodb.clone(), self.moto.sqs.clone(), &self.env)
    }

    async fn item(&self, id: &str) -> Option<std::collections::HashMap<String, AttributeValue>> {
        self.moto
            .dynamodb
            .get_item()
            .table_name(&self.env.events_table)
            .key("event_id", AttributeValue::S(id.into()))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
    }

    async fn drain(&self) -> Vec<QueueMessage> {
        revguard_aws::testing::drain_queue(&self.moto.sqs, &self.env.queue_url)
            .await
            .iter()
            .map(|body| QueueMessage::decode(body).unwrap())
            .collect()
    }

    /// The webhook door, signed at `now`.
    async fn webhook(&self, body: &str, now: i64) -> (u16, Value) {
        let router = router_with_clients(
            self.moto.dynamodb.clone(),
            self.moto.sqs.clone(),
            &self.env,
            IngestConfig::new(SecretSet::single(WebhookSecret::new(SECRET).unwrap())),
            Arc::new(move || now),
        );
        let mut request: Value = fixtures::json("apigw/webhook-request.json");
        let headers = request["headers"].as_object_mut().unwrap();
        headers.insert(
            "stripe-signature".into(),
            Value::String(sign(
                &WebhookSecret::new(SECRET).unwrap(),
                now,
                body.as_bytes(),
            )),
        );
        headers.insert("content-length".into(), body.len().to_string().into());
        request["body"] = Value::String(body.to_owned());
        let request = lambda_http::request::from_str(&request.to_string()).unwrap();
        let response = router.oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

#[tokio::test]
async fn stripe_s_eventbridge_example_is_recorded_and_enqueued_under_its_event_id() {
    let stack = Stack::new().await;
    let id = unique_name("evt_eb");
    let (envelope, detail) = example(&id, "2026-01-10T00:00:02Z");
    let bus_time = 1_768_003_202;
    let answer = stack
        .door()
        .handle(envelope.to_string().as_bytes(), bus_time + 75)
        .await
        .unwrap();
    assert_eq!(answer["status"], "accepted", "{answer}");
    assert_eq!(answer["event_id"], Value::String(id.clone()));

    let item = stack.item(&id).await.expect("recorded");
    assert_eq!(item["status"].as_s().unwrap(), "queued");
    assert_eq!(item["event_type"].as_s().unwrap(), "invoice.paid");
    assert_eq!(
        item["received_at"].as_n().unwrap(),
        &bus_time.to_string(),
        "delivered when Stripe put it on the bus, not when the function ran"
    );
    let sent = stack.drain().await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].via, Via::EventBridge);
    assert_eq!(sent[0].event_id, id);
    // The Stripe event, not the envelope, travels to the worker.
    assert_eq!(sent[0].payload, Payload::Inline(detail));
}

#[tokio::test]
async fn an_event_through_the_webhook_and_eventbridge_is_recorded_once_in_either_order() {
    let stack = Stack::new().await;
    for webhook_first in [true, false] {
        let id = unique_name("evt_doors");
        let (envelope, detail) = example(&id, "2026-01-10T00:00:02Z");
        let now = 1_768_003_210;
        let bridged = || async {
            stack
                .door()
                .handle(envelope.to_string().as_bytes(), now)
                .await
                .unwrap()["status"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let answers = if webhook_first {
            let (status, json) = stack.webhook(&detail, now).await;
            assert_eq!(status, 200, "{json}");
            [json["status"].as_str().unwrap().to_owned(), bridged().await]
        } else {
            let first = bridged().await;
            let (status, json) = stack.webhook(&detail, now).await;
            assert_eq!(status, 200, "{json}");
            [first, json["status"].as_str().unwrap().to_owned()]
        };
        assert_eq!(
            answers,
            ["accepted", "duplicate"],
            "webhook first: {webhook_first}"
        );
        assert_eq!(
            stack.item(&id).await.unwrap()["status"].as_s().unwrap(),
            "queued"
        );
        // Each door sent before it recorded: the second copy is the worker's to drop.
        let sent = stack.drain().await;
        assert!(!sent.is_empty() && sent.iter().all(|m| m.event_id == id));
    }
}

#[tokio::test]
async fn an_outage_is_an_error_for_lambda_to_retry_and_the_retry_records_the_event() {
    let stack = Stack::new().await;
    let id = unique_name("evt_eb_down");
    let (envelope, _) = example(&id, "2026-01-10T00:00:02Z");
    let body = envelope.to_string();
    let unreachable = unreachable_config().await;
    for (dynamodb, sqs, code) in [
        (
            aws_sdk_dynamodb::Client::new(&unreachable),
            stack.moto.sqs.clone(),
            "store_unavailable",
        ),
        (
            stack.moto.dynamodb.clone(),
            aws_sdk_sqs::Client::new(&unreachable),
            "queue_unavailable",
        ),
    ] {
        let door = BridgeDoor::new(dynamodb, sqs, &stack.env);
        let err = door
            .handle(body.as_bytes(), 1_768_003_210)
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{err}");
        assert!(err.is_retryable());
    }
    // Lambda's retry, once DynamoDB and SQS answer again.
    let answer = stack
        .door()
        .handle(body.as_bytes(), 1_768_003_300)
        .await
        .unwrap();
    assert_eq!(answer["status"], "accepted", "{answer}");
    assert_eq!(
        stack.item(&id).await.unwrap()["status"].as_s().unwrap(),
        "queued"
    );
    assert!(stack.drain().await.iter().any(|m| m.event_id == id));
}

#[tokio::test]
async fn a_refused_mode_is_acknowledged_and_a_stranger_is_an_error_for_the_dead_letter_queue() {
    let mut stack = Stack::new().await;
    stack.env.modes = revguard_core::ModeFilter::LiveOnly;
    let id = unique_name("evt_eb_test_mode");
    let (envelope, _) = example(&id, "2026-01-10T00:00:02Z");
    let answer = stack
        .door()
        .handle(envelope.to_string().as_bytes(), 1_768_003_210)
        .await
        .unwrap();
    assert_eq!(answer["status"], "refused");
    assert_eq!(answer["code"], "test_mode_refused");
    assert!(stack.item(&id).await.is_none());

    let mut stranger = envelope.clone();
    stranger["source"] = Value::String("aws.partner/example.com/x".into());
    let err = stack
        .door()
        .handle(stranger.to_string().as_bytes(), 1_768_003_210)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "not_a_stripe_eventbridge_event");
    assert!(!err.is_retryable());
    assert!(stack.drain().await.is_empty());
}

/// `revguard-ops eventbridge-redrive`'s work: the door's dead letters (the event as the
/// rule dead-letters it, and Lambda's record of an invocation that failed every attempt)
/// recorded and deleted; what is no Stripe event kept, with its reason.
#[tokio::test]
async fn the_door_s_dead_letters_are_redriven_once_and_strangers_are_kept() {
    let stack = Stack::new().await;
    let sqs = &stack.moto.sqs;
    let dlq = sqs
        .create_queue()
        .queue_name(unique_name("eventbridge-dlq"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let (by_rule, _) = example(&unique_name("evt_rule_dl"), "2026-01-10T00:00:02Z");
    let failed_id = unique_name("evt_lambda_dl");
    let (failed, _) = example(&failed_id, "2026-01-10T00:00:03Z");
    let record = serde_json::json!({
        "version": "1.0", "timestamp": "2026-01-10T00:03:05.000Z",
        "requestContext": { "requestId": "r-1", "condition": "RetriesExhausted", "approximateInvokeCount": 3,
                            "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:revguard-EventBridgeFunction-x:$LATEST" },
        "requestPayload": failed,
        "responseContext": { "statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled" },
        "responsePayload": { "errorType": "IngestError", "errorMessage": "the event log failed" },
    });
    let mut stranger = failed.clone();
    stranger["source"] = Value::String("aws.partner/example.com/x".into());
    for body in [
        by_rule.to_string(),
        record.to_string(),
        record.to_string(),
        stranger.to_string(),
    ] {
        sqs.send_message()
            .queue_url(&dlq)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let ingress = revguard_core::Ingress::new(
        revguard_aws::DynamoEventLog::new(
            stack.moto.dynamodb.clone(),
            stack.env.events_table.clone(),
        ),
        revguard_aws::SqsQueue::new(
            sqs.clone(),
            stack.env.queue_url.clone(),
            stack.env.max_message_bytes,
        ),
        IngestConfig::new(SecretSet::none()),
    );
    let done = revguard_aws::SqsBridgeDeadLetters::new(sqs.clone(), &dlq)
        .redrive(&ingress, 1_768_010_000)
        .await
        .unwrap();
    assert_eq!(
        (done.recorded, done.duplicates, done.refused),
        (2, 1, 0),
        "{done:?}"
    );
    assert_eq!(done.kept.len(), 1);
    assert!(
        done.kept[0].1.contains("not a Stripe partner event source"),
        "{done:?}"
    );
    assert_eq!(
        stack.item(&failed_id).await.unwrap()["received_at"]
            .as_n()
            .unwrap(),
        "1768003203",
        "delivered when it reached the bus, hours before the redrive"
    );
    let queued: Vec<String> = stack
        .drain()
        .await
        .into_iter()
        .map(|m| m.event_id)
        .collect();
    assert_eq!(
        queued.len(),
        3,
        "the duplicate is a second copy, dropped by the worker"
    );
    // Only the stranger is left (held out of sight for a while by the redrive).
    assert_eq!(revguard_aws::testing::queue_depth(sqs, &dlq).await, 1);
}
