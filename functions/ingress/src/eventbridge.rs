//! The EventBridge door: the function the partner event bus's rule invokes (asynchronously,
//! one event per invocation) with each Stripe event EventBridge delivers. It records and
//! enqueues the event as the webhook does, through the same event log and queue, so an
//! event that came through both doors is recorded, counted and applied once.
//!
//! What an invocation answers decides what AWS does next:
//! - recorded (or already known): success;
//! - the event log or the queue failed: an error, so Lambda tries again (twice, then the
//!   door's dead-letter queue keeps the event, and its alarm says so);
//! - not a Stripe event, or a thin one: an error too, for the dead-letter queue, since no
//!   retry makes it acceptable and an operator should see it;
//! - a mode the stack refuses (`AcceptedModes`): success, logged, as the webhook's 4xx
//!   tells Stripe to stop.

use aws_sdk_dynamodb::Client as DynamoDb;
use aws_sdk_sqs::Client as Sqs;
use revguard_aws::{DynamoEventLog, IngressEnv, SqsQueue};
use revguard_core::usecases::ingest::{IngestContext, IngestError, IngestOutcome};
use revguard_core::{IngestConfig, Ingress, SecretSet};
use serde_json::{json, Value};
use tracing::Instrument;

/// The door's use case over DynamoDB and SQS, built once per execution environment.
pub struct BridgeDoor {
    ingress: Ingress<DynamoEventLog, SqsQueue>,
}

impl BridgeDoor {
    /// The ingress's settings (`IngressEnv`) without a signing secret: nothing is signed.
    pub fn new(dynamodb: DynamoDb, sqs: Sqs, env: &IngressEnv) -> Self {
        let log = DynamoEventLog::new(dynamodb, env.events_table.clone());
        let queue = SqsQueue::new(sqs, env.queue_url.clone(), env.max_message_bytes);
        let config: IngestConfig = env.ingest_config(SecretSet::none());
        Self {
            ingress: Ingress::new(log, queue, config),
        }
    }

    /// One EventBridge event (its raw JSON) at `now`: what was done, or why not.
    pub async fn handle(&self, event: &[u8], now: i64) -> Result<Value, IngestError> {
        let span = tracing::info_span!(
            "eventbridge",
            event_id = tracing::field::Empty,
            event_type = tracing::field::Empty,
            livemode = tracing::field::Empty
        );
        async move {
            let mut context = IngestContext::default();
            let result = self.ingress.ingest_bridged(event, now, &mut context).await;
            context.record_in_current_span();
            match result {
                Ok(outcome) => {
                    let status = match &outcome {
                        IngestOutcome::Accepted { .. } => "accepted",
                        IngestOutcome::Requeued { .. } => "requeued",
                        IngestOutcome::Duplicate { .. } => "duplicate",
                    };
                    tracing::info!(status, "recorded");
                    Ok(json!({ "status": status, "event_id": outcome.event_id() }))
                }
                Err(e @ IngestError::ModeRefused { .. }) => {
                    tracing::warn!(code = e.code(), "refused by configuration: {e}");
                    Ok(json!({ "status": "refused", "code": e.code() }))
                }
                Err(e) => {
                    let reason = revguard_core::error_chain(&e);
                    if e.is_retryable() {
                        tracing::error!(code = e.code(), error = %reason, "not recorded; Lambda retries, then the dead-letter queue keeps it");
                    } else {
                        tracing::error!(code = e.code(), error = %reason, "not a Stripe snapshot event from EventBridge; the dead-letter queue keeps it");
                    }
                    Err(e)
                }
            }
        }
        .instrument(span)
        .await
    }
}
