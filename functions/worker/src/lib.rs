//! The worker Lambda: applies an SQS batch of queued Stripe events and reports the
//! messages that failed, so one poison message never holds back its neighbours.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use revguard_aws::billing::{Applied, BillingStoreError};
use revguard_aws::{DynamoBilling, DynamoEventLog, SnsNotifier};
use revguard_core::billing::BillingEvent;
use revguard_core::message::{decompress, MessageError, Payload, QueueMessage};
use revguard_core::ports::{EventLog, Notifier, NotifyError, StoreError};
use tracing::Instrument;

pub struct Worker<N = SnsNotifier> {
    pub log: DynamoEventLog,
    pub billing: DynamoBilling,
    pub notifier: N,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("malformed message")]
    Malformed(#[from] MessageError),
    #[error("the event cannot be applied")]
    Apply(#[from] BillingStoreError),
    #[error("the event log failed")]
    Store(#[from] StoreError),
    #[error("the payload is missing from the event log")]
    PayloadMissing,
    #[error("publishing a notification failed")]
    Notify(#[from] NotifyError),
}

impl<N: Notifier> Worker<N> {
    /// Processes every record; the response names the ones to retry (and, after the
    /// queue's maxReceiveCount, to dead-letter).
    pub async fn handle_batch(&self, batch: SqsEvent, now: i64) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for record in batch.records {
            let id = record.message_id.clone().unwrap_or_default();
            let span = tracing::info_span!("message", message_id = %id, event_id = tracing::field::Empty, event_type = tracing::field::Empty);
            let result = self
                .handle_record(&record, now)
                .instrument(span.clone())
                .await;
            if let Err(e) = result {
                let _guard = span.enter();
                tracing::error!(error = %revguard_core::error_chain(&e), "message failed; SQS will retry it");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    async fn handle_record(&self, record: &SqsMessage, now: i64) -> Result<(), RecordError> {
        let body = record.body.as_deref().unwrap_or("");
        let message = QueueMessage::decode(body)?;
        let span = tracing::Span::current();
        span.record("event_id", message.event_id.as_str());
        span.record("event_type", message.event_type.as_str());
        let received_stamp = message.received_at;
        let raw = match message.payload {
            Payload::Inline(raw) => raw.into_bytes(),
            Payload::InEventLog => {
                let stored = self
                    .log
                    .stored_payload(&message.event_id)
                    .await?
                    .ok_or(RecordError::PayloadMissing)?;
                decompress(&stored)?
            }
        };
        // Receipt time: stamped by ingress; else when SQS took the message.
        let received_at = Some(received_stamp).filter(|t| *t > 0).unwrap_or_else(|| {
            record
                .attributes
                .get("SentTimestamp")
                .and_then(|t| t.parse::<i64>().ok())
                .map(|ms| ms / 1000)
                .unwrap_or(now)
        });
        let event = BillingEvent::parse(&raw, received_at).map_err(BillingStoreError::from)?;
        let notifications = match self.billing.apply(&event, now).await? {
            Applied::Now(n) => n,
            Applied::Before(n) => n,
        };
        if !notifications.is_empty() {
            for n in &notifications {
                self.notifier.publish(n).await?;
            }
            self.billing.clear_outbox(&event.id).await?;
        }
        tracing::info!(notifications = notifications.len(), "applied");
        Ok(())
    }
}
