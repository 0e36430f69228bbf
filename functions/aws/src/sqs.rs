//! The queue on SQS. The message body is revguard's queue message (see
//! `revguard_core::domain::message`); attributes let consumers and filters see the event's
//! type and mode without parsing the body.

use aws_sdk_sqs::types::MessageAttributeValue;
use aws_sdk_sqs::Client;
use revguard_core::domain::message::QueueMessage;
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

/// The dead-letter queue as an operator sees it: listed without taking anything (each
/// message received is made visible again), and redriven by sending each message back to
/// the main queue before it is deleted from the DLQ (a crash in between sends it twice,
/// which the worker's applied markers absorb).
#[derive(Clone, Debug)]
pub struct SqsDeadLetterAdmin {
    client: Client,
    dlq_url: String,
    queue: SqsQueue,
}

/// A received dead letter and the handle that settles it.
struct Held {
    letter: revguard_core::ports::DeadLetter,
    receipt: String,
}

/// How long a listing holds the messages it has seen, so that it sees each once.
const PEEK_VISIBILITY_SECS: i32 = 30;

impl SqsDeadLetterAdmin {
    pub fn new(client: Client, dlq_url: impl Into<String>, queue: SqsQueue) -> Self {
        Self {
            client,
            dlq_url: dlq_url.into(),
            queue,
        }
    }

    /// Receives up to `limit` distinct messages, held for [`PEEK_VISIBILITY_SECS`].
    async fn receive(&self, limit: usize) -> Result<Vec<Held>, StoreError> {
        let mut held: Vec<Held> = Vec::new();
        while held.len() < limit {
            let out = self
                .client
                .receive_message()
                .queue_url(&self.dlq_url)
                .max_number_of_messages(10)
                .visibility_timeout(PEEK_VISIBILITY_SECS)
                .message_attribute_names("All")
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .send()
                .await
                .map_err(StoreError::unavailable)?;
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                break;
            }
            for m in messages {
                let attr = |name: &str| {
                    m.message_attributes()
                        .and_then(|a| a.get(name))
                        .and_then(|v| v.string_value())
                        .map(str::to_owned)
                };
                let system = |name: aws_sdk_sqs::types::MessageSystemAttributeName| {
                    m.attributes().and_then(|a| a.get(&name)).cloned()
                };
                let body = m.body().unwrap_or_default().to_owned();
                let decoded = QueueMessage::decode(&body).ok();
                let receive_count = attr("receive_count")
                    .or_else(|| {
                        system(
                            aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
                        )
                    })
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                let failed_at =
                    system(aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp)
                        .and_then(|ms| ms.parse::<i64>().ok())
                        .map(|ms| ms / 1000);
                let (Some(id), Some(receipt)) = (m.message_id(), m.receipt_handle()) else {
                    continue;
                };
                if held.iter().any(|h| h.letter.id == id) {
                    continue;
                }
                held.push(Held {
                    letter: revguard_core::ports::DeadLetter {
                        id: id.to_owned(),
                        event_id: decoded.as_ref().map(|d| d.event_id.clone()),
                        event_type: decoded.as_ref().map(|d| d.event_type.clone()),
                        error: attr("error"),
                        receive_count,
                        failed_at,
                        body: Some(body),
                    },
                    receipt: receipt.to_owned(),
                });
            }
        }
        Ok(held)
    }

    /// Makes held messages visible again at once.
    async fn release(&self, held: &[Held]) -> Result<(), StoreError> {
        for h in held {
            self.client
                .change_message_visibility()
                .queue_url(&self.dlq_url)
                .receipt_handle(&h.receipt)
                .visibility_timeout(0)
                .send()
                .await
                .map_err(StoreError::unavailable)?;
        }
        Ok(())
    }
}

/// The most messages a listing or a redrive looks at.
const DLQ_SCAN_LIMIT: usize = 1000;

impl revguard_core::ports::DeadLetterAdmin for SqsDeadLetterAdmin {
    async fn dead_letters(
        &self,
        limit: usize,
    ) -> Result<Vec<revguard_core::ports::DeadLetter>, StoreError> {
        let held = self.receive(limit).await?;
        self.release(&held).await?;
        Ok(held
            .into_iter()
            .map(|h| revguard_core::ports::DeadLetter {
                body: None,
                ..h.letter
            })
            .collect())
    }

    async fn dead_letter_by_id(
        &self,
        id: &str,
    ) -> Result<Option<revguard_core::ports::DeadLetter>, StoreError> {
        let held = self.receive(DLQ_SCAN_LIMIT).await?;
        self.release(&held).await?;
        Ok(held
            .into_iter()
            .find(|h| h.letter.id == id)
            .map(|h| h.letter))
    }

    async fn redrive(&self, ids: Option<&[String]>) -> Result<usize, StoreError> {
        let held = self.receive(DLQ_SCAN_LIMIT).await?;
        let (chosen, others): (Vec<Held>, Vec<Held>) = held
            .into_iter()
            .partition(|h| ids.is_none_or(|ids| ids.contains(&h.letter.id)));
        self.release(&others).await?;
        let mut moved = 0;
        for h in chosen {
            let body = h.letter.body.clone().unwrap_or_default();
            match QueueMessage::decode(&body) {
                Ok(message) => self
                    .queue
                    .send(&message)
                    .await
                    .map_err(StoreError::unavailable)?,
                // Not revguard's message: sent back as it is, for the worker to judge.
                Err(_) => {
                    self.client
                        .send_message()
                        .queue_url(&self.queue.queue_url)
                        .message_body(body)
                        .send()
                        .await
                        .map_err(StoreError::unavailable)?;
                }
            }
            self.client
                .delete_message()
                .queue_url(&self.dlq_url)
                .receipt_handle(&h.receipt)
                .send()
                .await
                .map_err(StoreError::unavailable)?;
            moved += 1;
        }
        Ok(moved)
    }
}

/// The EventBridge door's dead-letter queue: Stripe events EventBridge could not deliver
/// to the door's function (the rule's dead letters, the event itself) and events the
/// function failed on every attempt (Lambda's records, the event in `requestPayload`).
pub struct SqsBridgeDeadLetters {
    client: Client,
    dlq_url: String,
}

/// What a redrive of the door's dead letters did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BridgeRedrive {
    /// Recorded and enqueued now.
    pub recorded: usize,
    /// Recorded before (through the webhook, a backfill, or an earlier redrive).
    pub duplicates: usize,
    /// In a mode the stack refuses.
    pub refused: usize,
    /// Left in the queue, with why: not a Stripe event revguard can record.
    pub kept: Vec<(String, String)>,
}

/// How long a redrive holds a message it could not record, so that it sees each once.
const REDRIVE_HOLD_SECS: i32 = 300;
/// How long a receive waits for a message before the redrive takes the queue for empty.
const REDRIVE_WAIT_SECS: i32 = 2;

impl SqsBridgeDeadLetters {
    pub fn new(client: Client, dlq_url: impl Into<String>) -> Self {
        Self {
            client,
            dlq_url: dlq_url.into(),
        }
    }

    /// Records every dead letter through `ingress` as the door would have, and deletes
    /// it once recorded (or known). Stops at the first outage of the event log or the
    /// queue: what is left stays for the next redrive. Receives with a short long poll,
    /// so that an empty answer means an empty queue, not an unlucky sample of its servers.
    pub async fn redrive<L, Q>(
        &self,
        ingress: &revguard_core::Ingress<L, Q>,
        now: i64,
    ) -> Result<BridgeRedrive, revguard_core::IngestError>
    where
        L: revguard_core::EventLog,
        Q: revguard_core::Queue,
    {
        use revguard_core::{IngestError, IngestOutcome};
        let mut done = BridgeRedrive::default();
        let mut seen = std::collections::HashSet::new();
        loop {
            let out = self
                .client
                .receive_message()
                .queue_url(&self.dlq_url)
                .max_number_of_messages(10)
                .visibility_timeout(REDRIVE_HOLD_SECS)
                .wait_time_seconds(REDRIVE_WAIT_SECS)
                .send()
                .await
                .map_err(|e| IngestError::Queue(QueueError::unavailable(e)))?;
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                return Ok(done);
            }
            for m in messages {
                let (Some(id), Some(receipt)) = (m.message_id(), m.receipt_handle()) else {
                    continue;
                };
                // A kept message seen again (a redrive longer than its hold): done with it.
                if !seen.insert(id.to_owned()) {
                    continue;
                }
                let event = revguard_core::domain::eventbridge::event_of_dead_letter(
                    m.body().unwrap_or(""),
                );
                let mut context = revguard_core::usecases::ingest::IngestContext::default();
                match ingress
                    .ingest_bridged(event.as_bytes(), now, &mut context)
                    .await
                {
                    Ok(IngestOutcome::Duplicate { .. }) => done.duplicates += 1,
                    Ok(_) => done.recorded += 1,
                    Err(IngestError::ModeRefused { .. }) => done.refused += 1,
                    Err(e) if e.is_retryable() => return Err(e),
                    Err(e) => {
                        done.kept
                            .push((id.to_owned(), revguard_core::error_chain(&e)));
                        continue;
                    }
                }
                self.client
                    .delete_message()
                    .queue_url(&self.dlq_url)
                    .receipt_handle(receipt)
                    .send()
                    .await
                    .map_err(|e| IngestError::Queue(QueueError::unavailable(e)))?;
            }
        }
    }
}
