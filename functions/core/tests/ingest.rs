//! The ingress use case over the memory adapters: verify, record once, enqueue, and
//! what an outage of either answers.

use std::sync::atomic::Ordering;

use revguard_core::domain::message::decompress;
use revguard_core::domain::message::{Payload, Via};
use revguard_core::domain::signature::SecretSet;
use revguard_core::domain::signature::{sign, WebhookSecret};
use revguard_core::ports::{EventLog, EventStatus};
use revguard_core::usecases::ingest::*;
use revguard_testkit::memory::{MemoryEventLog, MemoryQueue};

const NOW: i64 = 1_700_000_000;

fn secret() -> WebhookSecret {
    WebhookSecret::new("whsec_unit").unwrap()
}

fn ingress(max_msg: usize) -> Ingress<MemoryEventLog, MemoryQueue> {
    Ingress::new(
        MemoryEventLog::default(),
        MemoryQueue::new(max_msg),
        IngestConfig::new(SecretSet::single(secret())),
    )
}

fn event(id: &str, livemode: bool) -> Vec<u8> {
    format!(
        r#"{{"id":"{id}","object":"event","type":"invoice.paid","created":{},"livemode":{livemode},"data":{{"object":{{"id":"in_1","customer":"cus_1"}}}}}}"#,
        NOW - 2
    )
    .into_bytes()
}

async fn deliver(
    ing: &Ingress<MemoryEventLog, MemoryQueue>,
    body: &[u8],
) -> Result<IngestOutcome, IngestError> {
    let header = sign(&secret(), NOW, body);
    ing.ingest(Some(&header), body, NOW, &mut IngestContext::default())
        .await
}

fn big_event(id: &str) -> Vec<u8> {
    let padding = "x".repeat(20_000);
    format!(
        r#"{{"id":"{id}","type":"invoice.paid","created":{NOW},"livemode":true,"data":{{"object":{{"id":"in_1","memo":"{padding}"}}}}}}"#
    )
    .into_bytes()
}

#[tokio::test]
async fn first_delivery_is_accepted_with_one_log_write_then_duplicates_are_reported() {
    let ing = ingress(256 * 1024);
    let body = event("evt_a", false);
    assert_eq!(
        deliver(&ing, &body).await.unwrap(),
        IngestOutcome::Accepted {
            event_id: "evt_a".into()
        }
    );
    // Sent first, then recorded as queued: no confirming write.
    assert_eq!(ing.log.marks(), 0);
    let rec = ing.log.get("evt_a").unwrap();
    assert_eq!(rec.status, EventStatus::Queued);
    assert!(!rec.livemode);
    assert_eq!(rec.expires_at, NOW + DEFAULT_EVENT_TTL_SECS);
    assert_eq!(
        deliver(&ing, &body).await.unwrap(),
        IngestOutcome::Duplicate {
            event_id: "evt_a".into()
        }
    );
    // The redelivery sent a second copy of the same event, which the worker drops.
    let sent = ing.queue.sent();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0], sent[1]);
    assert_eq!(
        sent[0].payload,
        Payload::Inline(String::from_utf8(body).unwrap())
    );
}

#[tokio::test]
async fn fetched_events_already_known_enqueue_nothing() {
    let ing = ingress(256 * 1024);
    let body = event("evt_f", false);
    let fetched = ing.ingest_fetched(&body, Via::Backfill, NOW).await.unwrap();
    assert_eq!(
        fetched,
        IngestOutcome::Accepted {
            event_id: "evt_f".into()
        }
    );
    assert_eq!(ing.log.marks(), 1, "recorded first, then confirmed");
    assert_eq!(
        ing.ingest_fetched(&body, Via::Backfill, NOW).await.unwrap(),
        IngestOutcome::Duplicate {
            event_id: "evt_f".into()
        }
    );
    // A webhook delivery of an event a backfill brought is a duplicate too.
    assert!(matches!(
        deliver(&ing, &body).await,
        Ok(IngestOutcome::Duplicate { .. })
    ));
    assert_eq!(
        ing.queue.sent().len(),
        2,
        "one for the backfill, one for the webhook"
    );
    assert_eq!(ing.queue.sent()[0].via, Via::Backfill);
}

#[tokio::test]
async fn a_webhook_for_an_entry_a_backfill_left_unconfirmed_enqueues_and_confirms_it() {
    let ing = ingress(256 * 1024);
    let body = event("evt_g", false);
    ing.queue.down.store(true, Ordering::SeqCst);
    let err = ing
        .ingest_fetched(&body, Via::Backfill, NOW)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "queue_unavailable");
    assert_eq!(ing.log.get("evt_g").unwrap().status, EventStatus::Received);
    ing.queue.down.store(false, Ordering::SeqCst);
    assert_eq!(
        deliver(&ing, &body).await.unwrap(),
        IngestOutcome::Requeued {
            event_id: "evt_g".into()
        }
    );
    assert_eq!(ing.log.marks(), 1);
    assert_eq!(ing.log.get("evt_g").unwrap().status, EventStatus::Queued);
    assert_eq!(ing.queue.sent().len(), 1);
}

#[tokio::test]
async fn a_queue_outage_is_retryable_records_nothing_and_the_retry_enqueues() {
    let ing = ingress(256 * 1024);
    let body = event("evt_b", true);
    ing.queue.down.store(true, Ordering::SeqCst);
    let err = deliver(&ing, &body).await.unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(err.code(), "queue_unavailable");
    assert!(ing.log.get("evt_b").is_none());
    ing.queue.down.store(false, Ordering::SeqCst);
    assert_eq!(
        deliver(&ing, &body).await.unwrap(),
        IngestOutcome::Accepted {
            event_id: "evt_b".into()
        }
    );
    assert_eq!(ing.queue.sent().len(), 1);
    assert_eq!(ing.log.get("evt_b").unwrap().status, EventStatus::Queued);
}

#[tokio::test]
async fn a_queue_outage_by_reference_leaves_an_unconfirmed_entry_that_the_retry_enqueues() {
    let ing = ingress(4 * 1024);
    let body = big_event("evt_bb");
    ing.queue.down.store(true, Ordering::SeqCst);
    assert_eq!(
        deliver(&ing, &body).await.unwrap_err().code(),
        "queue_unavailable"
    );
    assert_eq!(ing.log.get("evt_bb").unwrap().status, EventStatus::Received);
    ing.queue.down.store(false, Ordering::SeqCst);
    assert!(matches!(
        deliver(&ing, &body).await,
        Ok(IngestOutcome::Requeued { .. })
    ));
    assert_eq!(ing.queue.sent().len(), 1);
    assert_eq!(ing.log.get("evt_bb").unwrap().status, EventStatus::Queued);
}

#[tokio::test]
async fn a_store_outage_is_retryable_and_the_retry_records_the_event() {
    let ing = ingress(256 * 1024);
    let body = event("evt_c", true);
    ing.log.down.store(true, Ordering::SeqCst);
    let err = deliver(&ing, &body).await.unwrap_err();
    assert_eq!(err.code(), "store_unavailable");
    assert!(err.is_retryable());
    // Already durable in the queue; the retry records it (and sends a copy).
    assert_eq!(ing.queue.sent().len(), 1);
    ing.log.down.store(false, Ordering::SeqCst);
    assert!(matches!(
        deliver(&ing, &body).await,
        Ok(IngestOutcome::Accepted { .. })
    ));
    assert_eq!(ing.log.get("evt_c").unwrap().status, EventStatus::Queued);
    let sent = ing.queue.sent();
    assert_eq!(
        (sent.len(), sent[0].event_id.as_str()),
        (2, sent[1].event_id.as_str())
    );
}

#[tokio::test]
async fn a_store_outage_by_reference_enqueues_nothing() {
    let ing = ingress(4 * 1024);
    ing.log.down.store(true, Ordering::SeqCst);
    let err = deliver(&ing, &big_event("evt_cc")).await.unwrap_err();
    assert_eq!(err.code(), "store_unavailable");
    assert!(ing.queue.sent().is_empty());
}

#[tokio::test]
async fn an_unconfirmed_enqueue_still_answers_success() {
    let ing = ingress(4 * 1024);
    let body = big_event("evt_d");
    ing.log.mark_down.store(true, Ordering::SeqCst);
    assert!(deliver(&ing, &body).await.is_ok());
    assert_eq!(ing.queue.sent().len(), 1);
    // Unconfirmed: a redelivery enqueues again rather than risk a loss.
    ing.log.mark_down.store(false, Ordering::SeqCst);
    assert!(matches!(
        deliver(&ing, &body).await,
        Ok(IngestOutcome::Requeued { .. })
    ));
    assert_eq!(ing.queue.sent().len(), 2);
}

#[tokio::test]
async fn big_payloads_go_by_reference_through_the_event_log() {
    let ing = ingress(4 * 1024);
    let body = big_event("evt_big");
    assert!(matches!(
        deliver(&ing, &body).await,
        Ok(IngestOutcome::Accepted { .. })
    ));
    assert_eq!(ing.queue.sent()[0].payload, Payload::InEventLog);
    let stored = ing.log.stored_payload("evt_big").await.unwrap().unwrap();
    assert_eq!(decompress(&stored).unwrap(), body);
}

#[tokio::test]
async fn refusals_have_codes_and_touch_nothing() {
    let mut ing = ingress(256 * 1024);
    let body = event("evt_e", false);
    let err = ing
        .ingest(None, &body, NOW, &mut IngestContext::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "missing_signature");
    let header = sign(&secret(), NOW, &body);
    let err = ing
        .ingest(
            Some(&header),
            &body,
            NOW + 1000,
            &mut IngestContext::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "stale_signature");
    let junk = b"not json".to_vec();
    let header = sign(&secret(), NOW, &junk);
    let err = ing
        .ingest(Some(&header), &junk, NOW, &mut IngestContext::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "malformed_body");
    ing.config.modes = ModeFilter::LiveOnly;
    assert_eq!(
        deliver(&ing, &body).await.unwrap_err().code(),
        "test_mode_refused"
    );
    ing.config.max_body_bytes = 10;
    assert_eq!(
        deliver(&ing, &body).await.unwrap_err().code(),
        "payload_too_large"
    );
    assert!(ing.queue.sent().is_empty());
    assert!(ing.log.get("evt_e").is_none());
}

/// `body` inside EventBridge's envelope, as Stripe's event destination puts it on the bus
/// at `time` (unix seconds).
fn bridged(body: &[u8], detail_type: &str, time: i64) -> Vec<u8> {
    let time = time::OffsetDateTime::from_unix_timestamp(time)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    format!(
        r#"{{"version":"0","id":"eb-{time}","detail-type":"{detail_type}","source":"aws.partner/stripe.com/ed_test_1","account":"123456789012","time":"{time}","region":"us-east-1","resources":[],"detail":{}}}"#,
        String::from_utf8_lossy(body)
    )
    .into_bytes()
}

async fn bridge(
    ing: &Ingress<MemoryEventLog, MemoryQueue>,
    body: &[u8],
    now: i64,
) -> Result<IngestOutcome, IngestError> {
    ing.ingest_bridged(body, now, &mut IngestContext::default())
        .await
}

#[tokio::test]
async fn an_eventbridge_delivery_is_recorded_under_stripe_s_id_with_the_bus_time() {
    let ing = ingress(256 * 1024);
    let body = event("evt_eb", true);
    // On the bus 1 s after Stripe created it; the function ran 40 s later (a retry).
    let outcome = bridge(&ing, &bridged(&body, "invoice.paid", NOW - 1), NOW + 40)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        IngestOutcome::Accepted {
            event_id: "evt_eb".into()
        }
    );
    let rec = ing.log.get("evt_eb").unwrap();
    assert_eq!(rec.status, EventStatus::Queued);
    assert_eq!(
        rec.received_at,
        NOW - 1,
        "delivered when it reached the bus"
    );
    let sent = ing.queue.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].via, Via::EventBridge);
    assert_eq!(sent[0].received_at, NOW - 1);
    // The Stripe event travels as it came, not the envelope.
    assert_eq!(
        sent[0].payload,
        Payload::Inline(String::from_utf8(body).unwrap())
    );
}

#[tokio::test]
async fn an_event_through_both_doors_is_recorded_once_in_either_order() {
    for webhook_first in [true, false] {
        let ing = ingress(256 * 1024);
        let body = event("evt_both", false);
        let envelope = bridged(&body, "invoice.paid", NOW);
        let (first, second) = if webhook_first {
            (
                deliver(&ing, &body).await.unwrap(),
                bridge(&ing, &envelope, NOW).await.unwrap(),
            )
        } else {
            (
                bridge(&ing, &envelope, NOW).await.unwrap(),
                deliver(&ing, &body).await.unwrap(),
            )
        };
        assert!(matches!(first, IngestOutcome::Accepted { .. }), "{first:?}");
        assert!(
            matches!(second, IngestOutcome::Duplicate { .. }),
            "{second:?}"
        );
        // One entry; a second copy of the message at most, which the worker drops as applied.
        let sent = ing.queue.sent();
        assert!(sent.iter().all(|m| m.event_id == "evt_both"));
        assert_eq!(ing.log.get("evt_both").unwrap().status, EventStatus::Queued);
    }
}

#[tokio::test]
async fn what_eventbridge_cannot_vouch_for_is_refused_with_a_code_and_touches_nothing() {
    let ing = ingress(256 * 1024);
    let body = event("evt_x", true);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            String::from_utf8(bridged(&body, "invoice.paid", NOW))
                .unwrap()
                .replace("aws.partner/stripe.com/", "aws.partner/example.com/")
                .into_bytes(),
            "not_a_stripe_eventbridge_event",
        ),
        (
            bridged(
                br#"{"id":"evt_thin","object":"v2.core.event","type":"v1.invoice.paid","created":"2026-01-01T00:00:00Z","livemode":false}"#,
                "v1.invoice.paid",
                NOW,
            ),
            "thin_event",
        ),
        (
            bridged(br#"{"object":"event","type":"invoice.paid"}"#, "invoice.paid", NOW),
            "malformed_body",
        ),
        (body.clone(), "not_a_stripe_eventbridge_event"),
    ];
    for (envelope, code) in cases {
        let err = bridge(&ing, &envelope, NOW).await.unwrap_err();
        assert_eq!(err.code(), code, "{err}");
        assert!(!err.is_retryable());
    }
    assert!(ing.queue.sent().is_empty());
    assert!(ing.log.get("evt_x").is_none());
}

#[tokio::test]
async fn an_eventbridge_delivery_during_an_outage_is_retryable_and_its_retry_records_it() {
    let ing = ingress(256 * 1024);
    let envelope = bridged(&event("evt_eb_out", true), "invoice.paid", NOW);
    ing.queue.down.store(true, Ordering::SeqCst);
    let err = bridge(&ing, &envelope, NOW).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(ing.log.get("evt_eb_out").is_none());
    ing.queue.down.store(false, Ordering::SeqCst);
    assert!(matches!(
        bridge(&ing, &envelope, NOW + 60).await.unwrap(),
        IngestOutcome::Accepted { .. }
    ));
    assert_eq!(ing.queue.sent().len(), 1);
}

#[tokio::test]
async fn a_detail_type_that_is_not_the_event_s_type_gives_way_to_the_event_s() {
    let ing = ingress(256 * 1024);
    let envelope = bridged(&event("evt_dt", true), "invoice.payment_failed", NOW);
    assert!(matches!(
        bridge(&ing, &envelope, NOW).await.unwrap(),
        IngestOutcome::Accepted { .. }
    ));
    assert_eq!(ing.queue.sent()[0].event_type, "invoice.paid");
}

#[tokio::test]
async fn a_connected_account_s_event_through_eventbridge_keeps_its_account() {
    let ing = ingress(256 * 1024);
    let body = format!(
        r#"{{"id":"evt_connect","object":"event","account":"acct_1Connected","type":"invoice.paid","created":{},"livemode":true,"data":{{"object":{{"id":"in_1","customer":"cus_1"}}}}}}"#,
        NOW - 2
    );
    bridge(&ing, &bridged(body.as_bytes(), "invoice.paid", NOW), NOW)
        .await
        .unwrap();
    let sent = ing.queue.sent();
    let Payload::Inline(payload) = &sent[0].payload else {
        panic!("inline");
    };
    // The envelope's `account` is the AWS account; Stripe's stays in the event, as a
    // webhook carries it.
    let envelope = revguard_core::EventEnvelope::parse(payload.as_bytes()).unwrap();
    assert_eq!(envelope.account.as_deref(), Some("acct_1Connected"));
}
