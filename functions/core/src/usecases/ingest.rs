//! The ingress use case: verify, parse, record once, enqueue.
//!
//! Stripe delivers at least once and only stops once it sees a 2xx, so this answers
//! success only when the event is durable in the queue *and* recorded in the log. The
//! order makes sure no crash or outage between the two writes turns Stripe's retry into a
//! lost event:
//!
//! - **Inline** (the message carries the payload, as nearly every webhook's does): the
//!   message is sent first, then the log entry is put as already `queued`. One write to
//!   the log, not two. A failed put after the send answers 5xx and Stripe's retry sends
//!   the event again.
//! - **By reference** (a payload too big for a message, which the worker reads from the
//!   log) and **fetched** events (a backfill that offers every event of a window again, so
//!   most are known): the entry is put first as `received`, then the message is sent and
//!   the entry confirmed `queued`. An entry whose enqueue was never confirmed is enqueued
//!   again on redelivery; a known, confirmed one sends nothing.
//!
//! The price either way is that a message can be sent twice; the worker applies each event
//! id once.

use crate::domain::event::{EnvelopeError, EventEnvelope};
use crate::domain::eventbridge::{BridgeError, BridgedEvent};
use crate::domain::message::{compress, Payload, QueueMessage, Via};
use crate::domain::signature::{verify, SecretSet, VerifyError, DEFAULT_TOLERANCE_SECS};
use crate::ports::{
    EventLog, EventRecord, EventStatus, InsertOutcome, Queue, QueueError, StoreError,
};

pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// 30 days: well past Stripe's 3-day retry window, so a late redelivery is still a duplicate.
pub const DEFAULT_EVENT_TTL_SECS: i64 = 30 * 24 * 3600;
/// DynamoDB items stop at 400 KB; leave room for the metadata attributes.
pub const MAX_STORED_PAYLOAD_BYTES: usize = 350 * 1024;

/// Which Stripe modes an endpoint takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeFilter {
    Both,
    LiveOnly,
    TestOnly,
}

impl ModeFilter {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "both" | "all" | "" => Some(ModeFilter::Both),
            "live" => Some(ModeFilter::LiveOnly),
            "test" => Some(ModeFilter::TestOnly),
            _ => None,
        }
    }

    fn admits(self, livemode: bool) -> bool {
        match self {
            ModeFilter::Both => true,
            ModeFilter::LiveOnly => livemode,
            ModeFilter::TestOnly => !livemode,
        }
    }
}

#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub secrets: SecretSet,
    pub tolerance_secs: i64,
    pub max_body_bytes: usize,
    pub event_ttl_secs: i64,
    pub modes: ModeFilter,
    /// Keep every payload (compressed) in the event log for its TTL, so that `replay`
    /// can send any event again; otherwise only those too big for a queue message.
    pub keep_payloads: bool,
}

impl IngestConfig {
    pub fn new(secrets: SecretSet) -> Self {
        Self {
            secrets,
            tolerance_secs: DEFAULT_TOLERANCE_SECS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            event_ttl_secs: DEFAULT_EVENT_TTL_SECS,
            modes: ModeFilter::Both,
            keep_payloads: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    /// First delivery: recorded and enqueued.
    Accepted { event_id: String },
    /// A redelivery whose first enqueue was never confirmed: enqueued now.
    Requeued { event_id: String },
    /// Recorded and enqueued before. An inline webhook's redelivery has sent a second copy
    /// (the worker drops it); otherwise nothing was done.
    Duplicate { event_id: String },
}

impl IngestOutcome {
    pub fn event_id(&self) -> &str {
        match self {
            IngestOutcome::Accepted { event_id }
            | IngestOutcome::Requeued { event_id }
            | IngestOutcome::Duplicate { event_id } => event_id,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("body of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error(transparent)]
    Signature(#[from] VerifyError),
    #[error(transparent)]
    Malformed(#[from] EnvelopeError),
    #[error(transparent)]
    NotBridged(#[from] BridgeError),
    #[error("{} events are refused by configuration", if *livemode { "live-mode" } else { "test-mode" })]
    ModeRefused { livemode: bool },
    #[error("the payload is too big to queue or store, even compressed ({0} bytes)")]
    Unstorable(usize),
    #[error("the event log failed")]
    Store(#[from] StoreError),
    #[error("the queue failed")]
    Queue(#[from] QueueError),
}

impl IngestError {
    /// A stable code for the HTTP answer and for counting rejections.
    pub fn code(&self) -> &'static str {
        match self {
            IngestError::TooLarge(_) => "payload_too_large",
            IngestError::Signature(e) => e.code(),
            IngestError::Malformed(_) => "malformed_body",
            IngestError::NotBridged(BridgeError::ThinEvent(_)) => "thin_event",
            IngestError::NotBridged(_) => "not_a_stripe_eventbridge_event",
            IngestError::ModeRefused { livemode: true } => "live_mode_refused",
            IngestError::ModeRefused { livemode: false } => "test_mode_refused",
            IngestError::Unstorable(_) => "payload_too_large",
            IngestError::Store(_) => "store_unavailable",
            IngestError::Queue(_) => "queue_unavailable",
        }
    }

    /// Whether the fault is ours (Stripe should retry) rather than the request's.
    pub fn is_retryable(&self) -> bool {
        matches!(self, IngestError::Store(_) | IngestError::Queue(_))
    }
}

/// The ingress use case over an event log and a queue.
pub struct Ingress<L, Q> {
    pub log: L,
    pub queue: Q,
    pub config: IngestConfig,
    /// Reads the secrets again after a signature matched none of them.
    refresh: Option<SecretRefresh>,
}

/// Reads the signing secrets from where they are kept (a secret store): a deployment may
/// change them while a process runs, and `config.secrets` is only what it started with.
pub type SecretLoader = std::sync::Arc<
    dyn Fn()
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<SecretSet, String>> + Send>>
        + Send
        + Sync,
>;

/// At most one re-read per interval, whatever the rate of bad signatures: a flood of
/// forged requests costs one read a minute, not one per request.
struct SecretRefresh {
    load: SecretLoader,
    min_interval_secs: i64,
    last_read: std::sync::Mutex<Option<i64>>,
    current: std::sync::RwLock<SecretSet>,
}

/// What a door's handler learnt, for its log line, whatever the outcome.
#[derive(Debug, Default, Clone)]
pub struct IngestContext {
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub livemode: Option<bool>,
}

impl IngestContext {
    /// What the parsed event says of itself.
    fn learn(&mut self, envelope: &EventEnvelope) {
        self.event_id = Some(envelope.id.clone());
        self.event_type = Some(envelope.event_type.clone());
        self.livemode = Some(envelope.livemode);
    }

    /// Fills the current span's `event_id`, `event_type` and `livemode` with what is known.
    pub fn record_in_current_span(&self) {
        let span = tracing::Span::current();
        if let Some(id) = &self.event_id {
            span.record("event_id", id.as_str());
        }
        if let Some(t) = &self.event_type {
            span.record("event_type", t.as_str());
        }
        if let Some(l) = self.livemode {
            span.record("livemode", l);
        }
    }
}

impl<L: EventLog, Q: Queue> Ingress<L, Q> {
    pub fn new(log: L, queue: Q, config: IngestConfig) -> Self {
        Self {
            log,
            queue,
            config,
            refresh: None,
        }
    }

    /// After a signature that matches no secret, reads the secrets again with `load`, at
    /// most once per `min_interval_secs`, and verifies again if they changed.
    pub fn with_secret_refresh(mut self, load: SecretLoader, min_interval_secs: i64) -> Self {
        self.refresh = Some(SecretRefresh {
            load,
            min_interval_secs,
            last_read: std::sync::Mutex::new(None),
            current: std::sync::RwLock::new(self.config.secrets.clone()),
        });
        self
    }

    /// Reads the secrets again if the interval allows; whether they changed.
    async fn reread_secrets(&self, now: i64) -> bool {
        let Some(refresh) = &self.refresh else {
            return false;
        };
        {
            let mut last = refresh.last_read.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| now - t < refresh.min_interval_secs) {
                return false;
            }
            *last = Some(now);
        }
        match (refresh.load)().await {
            Ok(secrets) => {
                let mut current = refresh.current.write().unwrap_or_else(|p| p.into_inner());
                if *current == secrets {
                    return false;
                }
                *current = secrets;
                tracing::info!("the signing secrets changed; using the new ones");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the signing secrets again");
                false
            }
        }
    }

    /// Verifies and parses a delivery without touching storage: the CPU-only hot path.
    pub fn verify_and_parse(
        &self,
        signature: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<EventEnvelope, IngestError> {
        match &self.refresh {
            None => verify_and_parse(&self.config, signature, body, now),
            Some(refresh) => {
                let secrets = refresh.current.read().unwrap_or_else(|p| p.into_inner());
                verify_and_parse_with(&self.config, &secrets, signature, body, now)
            }
        }
    }

    pub async fn ingest(
        &self,
        signature: Option<&str>,
        body: &[u8],
        now: i64,
        context: &mut IngestContext,
    ) -> Result<IngestOutcome, IngestError> {
        let envelope = match self.verify_and_parse(signature, body, now) {
            // The secret may have changed since it was read (a deploy that sets it).
            Err(IngestError::Signature(VerifyError::BadSignature))
                if self.reread_secrets(now).await =>
            {
                self.verify_and_parse(signature, body, now)?
            }
            other => other?,
        };
        context.learn(&envelope);
        self.record_and_enqueue(envelope, body, Via::Webhook, now)
            .await
    }

    /// An event revguard fetched from Stripe's API itself (a backfill, or a
    /// reconciliation's snapshot): trusted without a signature, since it came from Stripe
    /// over TLS with revguard's key, then recorded and enqueued exactly as a delivery is.
    /// An id already in the event log is a duplicate, so a backfill applies only what the
    /// webhooks missed.
    pub async fn ingest_fetched(
        &self,
        body: &[u8],
        via: Via,
        now: i64,
    ) -> Result<IngestOutcome, IngestError> {
        if body.len() > self.config.max_body_bytes {
            return Err(IngestError::TooLarge(body.len()));
        }
        let envelope = EventEnvelope::parse(body)?;
        self.record_and_enqueue(envelope, body, via, now).await
    }

    /// An event Amazon EventBridge delivered from Stripe's partner event source. Nothing
    /// is signed: AWS carried it from Stripe into this account, and only the bus's rule
    /// may invoke the function that calls this. Recorded and enqueued as a webhook is,
    /// under Stripe's event id, so an event that came through both doors is recorded,
    /// counted and applied once; its delivery moment is the envelope's `time`.
    pub async fn ingest_bridged(
        &self,
        body: &[u8],
        now: i64,
        context: &mut IngestContext,
    ) -> Result<IngestOutcome, IngestError> {
        let bridged = BridgedEvent::parse(body)?;
        let detail = bridged.detail.get().as_bytes();
        if detail.len() > self.config.max_body_bytes {
            return Err(IngestError::TooLarge(detail.len()));
        }
        let envelope = EventEnvelope::parse(detail)?;
        context.learn(&envelope);
        if envelope.event_type != bridged.detail_type {
            // Not seen in Stripe's deliveries; the event's own type is what is applied.
            tracing::warn!(detail_type = %bridged.detail_type, event_type = %envelope.event_type, "EventBridge's detail-type is not the event's type; applying the event's");
        }
        let delivered_at = bridged.delivered_at(envelope.created, now);
        self.record_and_enqueue(envelope, detail, Via::EventBridge, delivered_at)
            .await
    }

    async fn record_and_enqueue(
        &self,
        envelope: EventEnvelope,
        body: &[u8],
        via: Via,
        now: i64,
    ) -> Result<IngestOutcome, IngestError> {
        if !self.config.modes.admits(envelope.livemode) {
            return Err(IngestError::ModeRefused {
                livemode: envelope.livemode,
            });
        }

        let fits_inline = QueueMessage::inline_size(&envelope.id, &envelope.event_type, body.len())
            <= self.queue.max_message_bytes();
        let stored_payload = if fits_inline && !self.config.keep_payloads {
            None
        } else {
            let packed = compress(body);
            match packed.len() > MAX_STORED_PAYLOAD_BYTES {
                true if !fits_inline => return Err(IngestError::Unstorable(body.len())),
                // It travels in the message; only a replay would miss it.
                true => None,
                false => Some(packed),
            }
        };
        let payload = if fits_inline {
            // Verified bytes that parsed as a JSON object are valid UTF-8.
            Payload::Inline(String::from_utf8_lossy(body).into_owned())
        } else {
            Payload::InEventLog
        };
        let send_first = fits_inline && via.is_delivery();
        let record = EventRecord {
            event_id: envelope.id.clone(),
            event_type: envelope.event_type.clone(),
            created: envelope.created,
            livemode: envelope.livemode,
            received_at: now,
            expires_at: now + self.config.event_ttl_secs,
            status: if send_first {
                EventStatus::Queued
            } else {
                EventStatus::Received
            },
            stored_payload,
            // A malformed account is the worker's to dead-letter, with its reason: the
            // log only notes whose event it is.
            account: crate::domain::account::Account::of_event(envelope.account.as_deref())
                .unwrap_or_default(),
        };
        let message = QueueMessage {
            event_id: envelope.id.clone(),
            event_type: envelope.event_type,
            livemode: envelope.livemode,
            created: envelope.created,
            received_at: now,
            payload,
            via,
        };
        let event_id = envelope.id;

        if send_first {
            self.queue.send(&message).await?;
            return match self.log.insert_if_absent(&record).await {
                Ok(InsertOutcome::Inserted) => Ok(IngestOutcome::Accepted { event_id }),
                // A redelivery: the message just sent is a second copy, which the worker
                // drops as already applied.
                Ok(InsertOutcome::AlreadyPresent(EventStatus::Queued)) => {
                    Ok(IngestOutcome::Duplicate { event_id })
                }
                Ok(InsertOutcome::AlreadyPresent(EventStatus::Received)) => {
                    self.confirm(&event_id).await;
                    Ok(IngestOutcome::Requeued { event_id })
                }
                Err(e) => {
                    tracing::warn!(event_id = %event_id, error = %e, "enqueued, but the event log did not record it; answering 5xx so that Stripe's retry records it");
                    Err(e.into())
                }
            };
        }

        let requeue = match self.log.insert_if_absent(&record).await? {
            InsertOutcome::Inserted => false,
            InsertOutcome::AlreadyPresent(EventStatus::Queued) => {
                return Ok(IngestOutcome::Duplicate { event_id });
            }
            InsertOutcome::AlreadyPresent(EventStatus::Received) => true,
        };
        self.queue.send(&message).await?;
        self.confirm(&event_id).await;
        Ok(if requeue {
            IngestOutcome::Requeued { event_id }
        } else {
            IngestOutcome::Accepted { event_id }
        })
    }

    /// The event is durable in the queue: a failure to confirm only means a later
    /// redelivery enqueues it again, which the worker tolerates. Stripe gets its 2xx.
    async fn confirm(&self, event_id: &str) {
        if let Err(e) = self.log.mark_queued(event_id).await {
            tracing::warn!(event_id = %event_id, error = %e, "enqueued, but the event log did not record it; a redelivery will enqueue it again");
        }
    }
}

/// Verification and parsing, in the order that keeps untrusted bytes away from the parser.
pub fn verify_and_parse(
    config: &IngestConfig,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<EventEnvelope, IngestError> {
    verify_and_parse_with(config, &config.secrets, signature, body, now)
}

fn verify_and_parse_with(
    config: &IngestConfig,
    secrets: &SecretSet,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<EventEnvelope, IngestError> {
    if body.len() > config.max_body_bytes {
        return Err(IngestError::TooLarge(body.len()));
    }
    verify(signature, body, secrets, now, config.tolerance_secs)?;
    Ok(EventEnvelope::parse(body)?)
}
