//! The queue on SQS. The message body is revguard's queue message (see
//! `revguard_core::message`); attributes let consumers and filters see the event's
//! type and mode without parsing the body.

use aws_sdk_sqs::types::MessageAttributeValue;
use aws_sdk_sqs::Client;
use revguard_core::message::QueueMessage;
use revguard_core::ports::{DeadLetters, Inbound, Queue, QueueError, StoreError};

#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
    max_message_bytes: usize,
}

impl SqsQueue {
    pub fn new(client: Client, queue_url: impl Into<String>, max_message_bytes: usize) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            max_message_bytes,
        }
    }
}

fn string_attr(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("data_type is set")
}

impl Queue for SqsQueue {
    fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    async fn send(&self, message: &QueueMessage) -> Result<(), QueueError> {
        let body = message.encode_within(self.max_message_bytes)?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .message_attributes("event_id", string_attr(&message.event_id))
            .message_attributes("event_type", string_attr(&message.event_type))
            .message_attributes(
                "livemode",
                string_attr(if message.livemode { "true" } else { "false" }),
            )
            .send()
            .await
            .map_err(QueueError::unavailable)?;
        Ok(())
    }
}

/// The worker's dead letters on SQS: the message as received, with the reason as an
/// attribute, in the queue the redrive policy also dead-letters to.
#[derive(Clone, Debug)]
pub struct SqsDeadLetters {
    client: Client,
    queue_url: String,
}

impl SqsDeadLetters {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

impl DeadLetters for SqsDeadLetters {
    async fn dead_letter(&self, message: &Inbound, reason: &str) -> Result<(), StoreError> {
        // Attributes are capped well below SQS's limits; the reason is for people.
        let reason: String = reason.chars().take(1000).collect();
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(&message.body)
            .message_attributes("error", string_attr(&reason))
            .message_attributes("source_message_id", string_attr(&message.id))
            .message_attributes(
                "receive_count",
                string_attr(&message.receive_count.to_string()),
            )
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        Ok(())
    }
}

/// Hides messages that failed transiently for their backoff (`ChangeMessageVisibility`),
/// so that a long outage costs one receive per backoff and not one per visibility
/// timeout: the receive count, not the clock, is what sends a message to the DLQ.
#[derive(Clone, Debug)]
pub struct SqsRedelivery {
    client: Client,
    queue_url: String,
}

/// One message to hide: its id, its receipt handle, and for how long.
pub type Hide = (String, String, std::time::Duration);

impl SqsRedelivery {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }

    /// Hides each message for its delay (SQS caps a visibility at 12 hours). Returns the
    /// ids that could not be hidden: they come back after the queue's visibility timeout
    /// instead, which only spends a receive sooner.
    pub async fn hide(&self, messages: &[Hide]) -> Vec<String> {
        let mut not_hidden = Vec::new();
        for chunk in messages.chunks(10) {
            let entries: Vec<_> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, (_, receipt, delay))| {
                    aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .visibility_timeout(delay.as_secs().min(43_200) as i32)
                        .build()
                        .ok()
                })
                .collect();
            match self
                .client
                .change_message_visibility_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => {
                    for failed in out.failed() {
                        let index: usize = failed.id().parse().unwrap_or(usize::MAX);
                        if let Some((id, _, _)) = chunk.get(index) {
                            tracing::warn!(message = %id, code = failed.code(), "cannot delay the redelivery");
                            not_hidden.push(id.clone());
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %revguard_core::error_chain(&e), "cannot delay the redeliveries");
                    not_hidden.extend(chunk.iter().map(|(id, _, _)| id.clone()));
                }
            }
        }
        not_hidden
    }
}
