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
