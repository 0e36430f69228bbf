//! `revguard-ops eventbridge-redrive`, the built binary, against moto (scripts/test
//! exports `AWS_ENDPOINT_URL`): the EventBridge door's dead letters, the rule's event and
//! Lambda's record of a failed invocation, recorded in the event log and the queue once,
//! its summary printed as JSON, and the queue left empty.

use revguard_aws::testing::{drain_queue, queue_depth, unique_name, MotoStack};
use revguard_core::QueueMessage;
use serde_json::{json, Value};

const EXAMPLE: &str = include_str!("../../../events/eventbridge/invoice.paid.json");

fn example(id: &str) -> Value {
    let mut envelope: Value = serde_json::from_str(EXAMPLE).unwrap();
    envelope["detail"]["id"] = Value::String(id.to_owned());
    envelope
}

#[tokio::test]
async fn the_operator_s_redrive_records_the_door_s_dead_letters_once() {
    let moto = MotoStack::new().await;
    let dlq = moto
        .sqs
        .create_queue()
        .queue_name(unique_name("revguard-EventBridgeDeadLetterQueue"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let (by_rule, by_lambda) = (unique_name("evt_rule"), unique_name("evt_lambda"));
    let record = json!({
        "version": "1.0",
        "requestContext": { "condition": "RetriesExhausted", "approximateInvokeCount": 3 },
        "requestPayload": example(&by_lambda),
        "responsePayload": { "errorType": "IngestError", "errorMessage": "the event log failed" },
    });
    for body in [example(&by_rule), record] {
        moto.sqs
            .send_message()
            .queue_url(&dlq)
            .message_body(body.to_string())
            .send()
            .await
            .unwrap();
    }

    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_revguard-ops"))
            .args(["eventbridge-redrive", "--dead-letter-queue-url", &dlq])
            .args(["--events-table", &moto.events_table])
            .args(["--queue-url", &moto.queue_url])
            .env("AWS_REGION", "us-east-1")
            .output()
            .expect("revguard-ops runs")
    };
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        summary,
        json!({ "recorded": 2, "duplicates": 0, "refused": 0, "kept": [] })
    );
    let queued: Vec<String> = drain_queue(&moto.sqs, &moto.queue_url)
        .await
        .iter()
        .map(|b| QueueMessage::decode(b).unwrap().event_id)
        .collect();
    assert_eq!(queued.len(), 2);
    assert!(queued.contains(&by_rule) && queued.contains(&by_lambda));
    assert_eq!(queue_depth(&moto.sqs, &dlq).await, 0);
    // Run again on an empty queue: nothing to do.
    let again: Value = serde_json::from_slice(&run().stdout).unwrap();
    assert_eq!(again["recorded"], 0);
}
