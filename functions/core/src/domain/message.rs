//! The queue message: the event's metadata and, when it fits, the raw payload itself.
//!
//! Wire format (JSON, version 1):
//! `{"v":1,"event_id":…,"event_type":…,"livemode":…,"created":…,"received_at":…,"payload":<raw event>}` or,
//! for payloads too big for the queue, `…,"payload_ref":"event_log"}` with the payload
//! deflate-compressed in the event log. The raw payload is spliced in byte for byte.

use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// The raw event JSON, unchanged.
    Inline(String),
    /// Kept (compressed) in the event log under the event id.
    InEventLog,
}

/// How an event reached revguard. Only Stripe's deliveries (a webhook, or Amazon
/// EventBridge) say anything about delivery health (receipt counters, lag); an event
/// fetched from Stripe's API later is applied
/// the same way but not counted as delivered, and a reconciliation snapshot is not a
/// Stripe event at all, so it is not counted as one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    #[default]
    Webhook,
    /// Delivered by Amazon EventBridge from Stripe's partner event source.
    EventBridge,
    /// Listed from `GET /v1/events` by a backfill.
    Backfill,
    /// Stripe's current object, applied by `reconcile --fix` or a re-query.
    Reconcile,
    /// Sent again from the event log by `replay`.
    Replay,
}

impl Via {
    /// Whether Stripe delivered it (either door): counted as a delivery.
    pub fn is_delivery(self) -> bool {
        matches!(self, Via::Webhook | Via::EventBridge)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Via::Webhook => "webhook",
            Via::EventBridge => "event_bridge",
            Via::Backfill => "backfill",
            Via::Reconcile => "reconcile",
            Via::Replay => "replay",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    pub event_id: String,
    pub event_type: String,
    pub livemode: bool,
    pub created: i64,
    /// When ingress received the event (unix seconds): the worker's receipt time.
    pub received_at: i64,
    pub payload: Payload,
    /// How it came; absent on the wire for a webhook.
    pub via: Via,
}

#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("not a revguard queue message: {0}")]
    Malformed(String),
    #[error("the stored payload cannot be decompressed: {0}")]
    Corrupt(String),
}

#[derive(Deserialize)]
struct Wire<'a> {
    v: u32,
    event_id: String,
    event_type: String,
    livemode: bool,
    created: i64,
    #[serde(default)]
    received_at: i64,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
    payload_ref: Option<String>,
    #[serde(default)]
    via: Via,
}

impl QueueMessage {
    /// Any valid JSON payload gets through SQS: the two characters JSON allows and SQS
    /// refuses (U+FFFE, U+FFFF) are written as `\u` escapes, which read back as the
    /// same JSON.
    pub fn encode(&self) -> String {
        // Ids and types are plain ASCII in practice, but go through serde to stay valid JSON.
        let mut head = serde_json::json!({
            "v": 1,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "livemode": self.livemode,
            "created": self.created,
            "received_at": self.received_at,
        });
        if self.via != Via::Webhook {
            head["via"] = serde_json::json!(self.via);
        }
        let head = head.to_string();
        let head = &head[..head.len() - 1]; // drop the closing brace
        match &self.payload {
            Payload::Inline(raw) => {
                let mut out = String::with_capacity(head.len() + raw.len() + 16);
                out.push_str(head);
                out.push_str(",\"payload\":");
                push_sqs_safe(&mut out, raw);
                out.push('}');
                out
            }
            Payload::InEventLog => format!("{head},\"payload_ref\":\"event_log\"}}"),
        }
    }

    /// The encoded message, refused when it is over a queue's limit of `max` bytes.
    pub fn encode_within(&self, max: usize) -> Result<String, QueueError> {
        let body = self.encode();
        if body.len() > max {
            return Err(QueueError::TooLarge(body.len()));
        }
        Ok(body)
    }

    /// The encoded size of an inline message for a payload of `payload_len` bytes, without
    /// building it.
    pub fn inline_size(event_id: &str, event_type: &str, payload_len: usize) -> usize {
        // {"created":<=20,"event_id":"…","event_type":"…","livemode":false,"received_at":<=20,"v":1,"via":"reconcile","payload":…}
        144 + event_id.len() + event_type.len() + payload_len
    }

    pub fn decode(body: &str) -> Result<Self, MessageError> {
        let wire: Wire<'_> =
            serde_json::from_str(body).map_err(|e| MessageError::Malformed(e.to_string()))?;
        if wire.v != 1 {
            return Err(MessageError::Malformed(format!(
                "unknown version {}",
                wire.v
            )));
        }
        let payload = match (wire.payload, wire.payload_ref.as_deref()) {
            (Some(raw), None) => Payload::Inline(raw.get().to_owned()),
            (None, Some("event_log")) => Payload::InEventLog,
            _ => return Err(MessageError::Malformed("no payload or payload_ref".into())),
        };
        Ok(Self {
            event_id: wire.event_id,
            event_type: wire.event_type,
            livemode: wire.livemode,
            created: wire.created,
            received_at: wire.received_at,
            payload,
            via: wire.via,
        })
    }
}

/// What a stored payload begins with when it is zstd with dictionary v1. A raw deflate
/// stream cannot begin with 0xFF (block type 3 does not exist), so payloads stored as
/// deflate before (the event log keeps them 30 days on AWS, for ever embedded) still read.
const ZSTD_V1: [u8; 2] = [0xFF, 0x01];
/// Kept payloads are capped by the webhook body limit; a stored size beyond this is corrupt.
const MAX_PAYLOAD_BYTES: u64 = 16 << 20;
const ZSTD_LEVEL: i32 = 3;

/// The shape of Stripe's objects with every value blanked (`scripts/payload-dictionary`):
/// a 3–4 KB event compresses to 0.5–0.6 KB with it, 1.4–1.7 KB with deflate, so the
/// event log's item stays under DynamoDB's 1 KB write unit.
pub const PAYLOAD_DICTIONARY_V1: &[u8] = include_bytes!("payload-dictionary-v1.json");

fn encoder_dictionary() -> &'static zstd::dict::EncoderDictionary<'static> {
    static DICT: std::sync::OnceLock<zstd::dict::EncoderDictionary<'static>> =
        std::sync::OnceLock::new();
    DICT.get_or_init(|| zstd::dict::EncoderDictionary::copy(PAYLOAD_DICTIONARY_V1, ZSTD_LEVEL))
}

fn decoder_dictionary() -> &'static zstd::dict::DecoderDictionary<'static> {
    static DICT: std::sync::OnceLock<zstd::dict::DecoderDictionary<'static>> =
        std::sync::OnceLock::new();
    DICT.get_or_init(|| zstd::dict::DecoderDictionary::copy(PAYLOAD_DICTIONARY_V1))
}

thread_local! {
    // One compression context per thread, with the prepared dictionary: a context and
    // its tables are made once, not for every webhook.
    static ZSTD: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    static UNZSTD: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// What the event log keeps of a payload: zstd with the dictionary of Stripe's shapes.
pub fn compress(raw: &[u8]) -> Vec<u8> {
    ZSTD.with_borrow_mut(|slot| {
        let zstd = match slot {
            Some(z) => z,
            None => slot.insert(
                zstd::bulk::Compressor::with_prepared_dictionary(encoder_dictionary())
                    // Only an allocation failure makes a context fail.
                    .expect("a zstd context"),
            ),
        };
        let frame = zstd
            .compress(raw)
            .expect("zstd into a buffer of the bound's size");
        [&ZSTD_V1[..], &frame].concat()
    })
}

/// A kept payload, whichever way it was stored.
pub fn decompress(stored: &[u8]) -> Result<Vec<u8>, MessageError> {
    match stored.strip_prefix(&ZSTD_V1) {
        Some(frame) => unzstd(frame),
        None => inflate(stored),
    }
}

fn unzstd(frame: &[u8]) -> Result<Vec<u8>, MessageError> {
    let corrupt = |e: &dyn std::fmt::Display| MessageError::Corrupt(e.to_string());
    let size = zstd::zstd_safe::get_frame_content_size(frame)
        .map_err(|_| MessageError::Corrupt("not a zstd frame".into()))?
        .ok_or_else(|| MessageError::Corrupt("the zstd frame does not say its size".into()))?;
    if size > MAX_PAYLOAD_BYTES {
        return Err(MessageError::Corrupt(format!(
            "the zstd frame says {size} bytes, more than a payload can be"
        )));
    }
    UNZSTD.with_borrow_mut(|slot| {
        let unzstd = match slot {
            Some(z) => z,
            None => slot.insert(
                zstd::bulk::Decompressor::with_prepared_dictionary(decoder_dictionary())
                    .map_err(|e| corrupt(&e))?,
            ),
        };
        let out = unzstd
            .decompress(frame, size as usize)
            .map_err(|e| corrupt(&e))?;
        if out.len() as u64 != size {
            return Err(MessageError::Corrupt("the zstd frame ends early".into()));
        }
        Ok(out)
    })
}

thread_local! {
    static INFLATE: std::cell::RefCell<flate2::Decompress> =
        std::cell::RefCell::new(flate2::Decompress::new(false));
}

/// Payloads stored before zstd: raw deflate.
fn inflate(stored: &[u8]) -> Result<Vec<u8>, MessageError> {
    INFLATE.with_borrow_mut(|inflate| {
        inflate.reset(false);
        let mut out = Vec::with_capacity(stored.len() * 4);
        loop {
            let (read, written) = (inflate.total_in(), inflate.total_out());
            let status = inflate
                .decompress_vec(
                    &stored[read as usize..],
                    &mut out,
                    flate2::FlushDecompress::None,
                )
                .map_err(|e| MessageError::Corrupt(e.to_string()))?;
            if status == flate2::Status::StreamEnd {
                return Ok(out);
            }
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(64));
            } else if (inflate.total_in(), inflate.total_out()) == (read, written) {
                // Room to write, and nothing read or written: the stream stops short.
                return Err(MessageError::Corrupt(
                    "the deflate stream ends early".into(),
                ));
            }
        }
    })
}

/// Appends a JSON text, with U+FFFE and U+FFFF as escapes. In valid JSON they can only
/// stand inside strings, where an escape means the same character.
fn push_sqs_safe(out: &mut String, json: &str) {
    if !json.contains(['\u{FFFE}', '\u{FFFF}']) {
        out.push_str(json);
        return;
    }
    for c in json.chars() {
        match c {
            '\u{FFFE}' => out.push_str("\\ufffe"),
            '\u{FFFF}' => out.push_str("\\uffff"),
            c => out.push(c),
        }
    }
}

/// Why the queue took no message.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the queue is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    #[error("the queue refused a message of {0} bytes")]
    TooLarge(usize),
}

impl QueueError {
    pub fn unavailable(e: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        QueueError::Unavailable(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(payload: Payload) -> QueueMessage {
        QueueMessage {
            event_id: "evt_1".into(),
            event_type: "invoice.paid".into(),
            livemode: false,
            created: 1_700_000_000,
            received_at: 1_700_000_002,
            payload,
            via: Via::Webhook,
        }
    }

    #[test]
    fn inline_payload_round_trips_byte_for_byte() {
        let raw = "{ \"id\" : \"evt_1\",\n \"x\": [1, 2.50, \"é\"] }";
        let m = msg(Payload::Inline(raw.into()));
        let encoded = m.encode();
        assert!(encoded.contains(raw));
        assert!(encoded.len() <= QueueMessage::inline_size("evt_1", "invoice.paid", raw.len()));
        assert_eq!(QueueMessage::decode(&encoded).unwrap(), m);
    }

    #[test]
    fn how_an_event_came_round_trips_and_a_webhook_says_nothing() {
        let webhook = msg(Payload::Inline("{}".into()));
        assert!(!webhook.encode().contains("via"));
        let backfilled = QueueMessage {
            via: Via::Backfill,
            ..webhook
        };
        assert!(backfilled.encode().contains(r#""via":"backfill""#));
        assert_eq!(
            QueueMessage::decode(&backfilled.encode()).unwrap(),
            backfilled
        );
    }

    #[test]
    fn reference_round_trips_and_garbage_is_an_error() {
        let m = msg(Payload::InEventLog);
        assert_eq!(QueueMessage::decode(&m.encode()).unwrap(), m);
        assert!(QueueMessage::decode("{}").is_err());
        assert!(QueueMessage::decode("nope").is_err());
    }

    #[test]
    fn compression_round_trips() {
        let raw =
            br#"{"id":"evt_1","data":{"object":{"lines":[1,1,1,1,1,1,1,1,1,1,1,1]}}}"#.repeat(100);
        let packed = compress(&raw);
        assert!(packed.starts_with(&ZSTD_V1));
        assert!(packed.len() < raw.len() / 5);
        assert_eq!(decompress(&packed).unwrap(), raw);
        assert!(decompress(b"\xff\xff not deflate").is_err());
        assert!(decompress(b"\xff\x01 not zstd").is_err());
        assert!(
            decompress(&packed[..packed.len() / 2]).is_err(),
            "a cut frame"
        );
        // The per-thread contexts are reused between payloads.
        assert_eq!(decompress(&compress(b"second")).unwrap(), b"second");
        assert_eq!(decompress(&compress(b"")).unwrap(), b"");
        let big: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        assert_eq!(decompress(&compress(&big)).unwrap(), big);
    }

    #[test]
    fn payloads_stored_as_deflate_before_still_read() {
        use std::io::Write;
        let raw = revguard_testkit::fixtures::read("invoice.paid.json");
        let mut deflate =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        deflate.write_all(raw.as_bytes()).unwrap();
        let stored = deflate.finish().unwrap();
        assert_eq!(decompress(&stored).unwrap(), raw.as_bytes());
        assert!(
            decompress(&stored[..stored.len() / 2]).is_err(),
            "a cut stream"
        );
    }

    #[test]
    fn stripe_payloads_keep_under_a_kilobyte_with_the_dictionary() {
        for (name, raw) in revguard_testkit::fixtures::each_with_own_id() {
            let packed = compress(raw.as_bytes());
            // The event log item adds about 200 bytes of metadata.
            assert!(packed.len() < 800, "{name}: {} bytes", packed.len());
            assert_eq!(decompress(&packed).unwrap(), raw.as_bytes());
        }
    }

    #[test]
    fn the_v1_dictionary_never_changes() {
        // Payloads stored with it read only with these bytes: a new one is v2.
        use sha2::Digest;
        assert_eq!(
            hex::encode(sha2::Sha256::digest(PAYLOAD_DICTIONARY_V1)),
            "76169ae56f68fffbd26c5b061e6ad013ae9767681c91ddaebd74c564d9dcb310"
        );
    }

    #[test]
    fn characters_sqs_refuses_travel_as_escapes_and_read_back_the_same() {
        let raw = "{\"id\":\"evt_1\",\"note\":\"a\u{FFFF}b\u{FFFE}c \u{e9}\"}";
        let message = QueueMessage {
            event_id: "evt_1".into(),
            event_type: "x".into(),
            livemode: false,
            created: 1,
            received_at: 2,
            payload: Payload::Inline(raw.into()),
            via: Via::Webhook,
        };
        let body = message.encode();
        assert!(!body.contains(['\u{FFFE}', '\u{FFFF}']), "{body}");
        let Payload::Inline(back) = QueueMessage::decode(&body).unwrap().payload else {
            panic!("inline")
        };
        let (a, b): (serde_json::Value, serde_json::Value) = (
            serde_json::from_str(raw).unwrap(),
            serde_json::from_str(&back).unwrap(),
        );
        assert_eq!(a, b);
    }
}
