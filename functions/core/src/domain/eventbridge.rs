//! Stripe's events as Amazon EventBridge delivers them: an event destination of type
//! Amazon EventBridge puts each event on the partner event bus of the AWS account it
//! names, inside EventBridge's envelope.
//!
//! ```json
//! {"version": "0", "id": "<EventBridge's id>", "detail-type": "invoice.paid",
//!  "source": "aws.partner/stripe.com/ed_…", "account": "<AWS account>",
//!  "time": "2026-12-07T10:00:00Z", "region": "us-east-1", "resources": [],
//!  "detail": { <the Stripe event object a webhook carries> }}
//! ```
//!
//! What differs from a webhook: nothing is signed (AWS delivered it from Stripe's partner
//! source into this account, and the function's policy lets only the bus's rule invoke
//! it), and `time` is the time the source gave the event on the bus: the moment of
//! delivery, for the lag signal, whatever AWS's own queueing and retries add afterwards.
//! `detail-type` is the event's type; where they ever differ, the event's own wins.
//! `account` is the AWS account; a connected account's event carries its Stripe account
//! in `detail.account`, as a webhook does.

use serde::Deserialize;
use serde_json::value::RawValue;

/// What every Stripe partner event source is named after: `aws.partner/stripe.com/<destination id>`.
pub const STRIPE_SOURCE_PREFIX: &str = "aws.partner/stripe.com/";

/// One EventBridge event from Stripe's partner source, its Stripe event untouched.
#[derive(Debug)]
pub struct BridgedEvent<'a> {
    /// EventBridge's id of this event (not Stripe's `evt_…`).
    pub bus_event_id: String,
    /// The partner event source: `aws.partner/stripe.com/ed_…`.
    pub source: String,
    /// The Stripe event's type, as EventBridge matches on it.
    pub detail_type: String,
    /// The time the source (Stripe) gave the event on the bus (unix seconds).
    pub time: i64,
    /// The AWS account and region of the bus.
    pub aws_account: Option<String>,
    pub region: Option<String>,
    /// The Stripe event, byte for byte as it came.
    pub detail: &'a RawValue,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BridgeError {
    #[error("not an EventBridge event: {0}")]
    NotJson(String),
    #[error("the EventBridge event has no `{0}`")]
    MissingField(&'static str),
    #[error("the EventBridge event's `time` is not an RFC 3339 time: {0}")]
    BadTime(String),
    #[error("the source {0:?} is not a Stripe partner event source ({STRIPE_SOURCE_PREFIX}…)")]
    NotStripe(String),
    #[error("a thin event ({0}): revguard applies snapshot events; set the event destination's payload to snapshot")]
    ThinEvent(String),
}

#[derive(Deserialize)]
struct Wire<'a> {
    id: Option<String>,
    #[serde(rename = "detail-type")]
    detail_type: Option<String>,
    source: Option<String>,
    time: Option<String>,
    account: Option<String>,
    region: Option<String>,
    #[serde(borrow)]
    detail: Option<&'a RawValue>,
}

/// The one field of the detail read here: a thin event says so in `object`.
#[derive(Deserialize)]
struct DetailKind<'a> {
    #[serde(borrow)]
    object: Option<std::borrow::Cow<'a, str>>,
}

impl<'a> BridgedEvent<'a> {
    /// Parses EventBridge's envelope of a Stripe event; the detail is checked to be a
    /// snapshot event (its own fields are parsed, as a webhook's body is, by the ingress).
    pub fn parse(raw: &'a [u8]) -> Result<Self, BridgeError> {
        let wire: Wire<'a> =
            serde_json::from_slice(raw).map_err(|e| BridgeError::NotJson(e.to_string()))?;
        let source = wire.source.ok_or(BridgeError::MissingField("source"))?;
        if !source.starts_with(STRIPE_SOURCE_PREFIX) {
            return Err(BridgeError::NotStripe(source));
        }
        let detail = wire.detail.ok_or(BridgeError::MissingField("detail"))?;
        let kind: DetailKind<'_> = serde_json::from_str(detail.get())
            .map_err(|e| BridgeError::NotJson(format!("detail: {e}")))?;
        if let Some(object) = kind.object.filter(|o| o.starts_with("v2.")) {
            return Err(BridgeError::ThinEvent(object.into_owned()));
        }
        let time = wire.time.ok_or(BridgeError::MissingField("time"))?;
        Ok(Self {
            bus_event_id: wire.id.ok_or(BridgeError::MissingField("id"))?,
            detail_type: wire
                .detail_type
                .ok_or(BridgeError::MissingField("detail-type"))?,
            time: crate::domain::time::parse_rfc3339(&time).ok_or(BridgeError::BadTime(time))?,
            source,
            aws_account: wire.account,
            region: wire.region,
            detail,
        })
    }

    /// The moment the event counts as delivered: when Stripe put it on the bus, never
    /// before Stripe created it nor after `now` (clocks that disagree by a little).
    pub fn delivered_at(&self, created: i64, now: i64) -> i64 {
        self.time.clamp(created.min(now), now)
    }
}

#[derive(Deserialize)]
struct InvocationRecord<'a> {
    #[serde(borrow, rename = "requestPayload")]
    request_payload: Option<&'a RawValue>,
}

/// The EventBridge event a dead letter of the door holds: the event itself (what the rule
/// could not deliver) or, inside Lambda's record of an invocation that failed every
/// attempt, its `requestPayload`.
pub fn event_of_dead_letter(body: &str) -> &str {
    match serde_json::from_str::<InvocationRecord<'_>>(body) {
        Ok(InvocationRecord {
            request_payload: Some(payload),
        }) => payload.get(),
        _ => body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../../events/eventbridge/invoice.paid.json");

    #[test]
    fn the_documented_example_parses_with_its_stripe_event_untouched() {
        let bridged = BridgedEvent::parse(EXAMPLE.as_bytes()).unwrap();
        assert!(bridged.source.starts_with(STRIPE_SOURCE_PREFIX));
        assert_eq!(bridged.detail_type, "invoice.paid");
        let detail: serde_json::Value = serde_json::from_str(bridged.detail.get()).unwrap();
        assert_eq!(detail["type"], "invoice.paid");
        assert_eq!(detail["object"], "event");
        // Byte for byte: the detail is a slice of the body.
        assert!(EXAMPLE.contains(bridged.detail.get()));
        let created = detail["created"].as_i64().unwrap();
        assert!(bridged.time >= created, "{} < {created}", bridged.time);
    }

    fn envelope(source: &str, time: &str, detail: &str) -> String {
        format!(
            r#"{{"version":"0","id":"eb-1","detail-type":"invoice.paid","source":"{source}","account":"123456789012","time":"{time}","region":"us-east-1","resources":[],"detail":{detail}}}"#
        )
    }

    #[test]
    fn what_is_not_a_stripe_snapshot_event_is_refused_with_its_reason() {
        let detail =
            r#"{"id":"evt_1","object":"event","type":"invoice.paid","created":1,"livemode":false}"#;
        let other = envelope("aws.partner/example.com/x", "2026-01-01T00:00:00Z", detail);
        assert!(matches!(
            BridgedEvent::parse(other.as_bytes()),
            Err(BridgeError::NotStripe(_))
        ));
        let thin = envelope(
            "aws.partner/stripe.com/ed_1",
            "2026-01-01T00:00:00Z",
            r#"{"id":"evt_1","object":"v2.core.event","type":"v1.invoice.paid","created":"2026-01-01T00:00:00Z"}"#,
        );
        let e = BridgedEvent::parse(thin.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("snapshot"), "{e}");
        let bad_time = envelope("aws.partner/stripe.com/ed_1", "yesterday", detail);
        assert_eq!(
            BridgedEvent::parse(bad_time.as_bytes()).unwrap_err(),
            BridgeError::BadTime("yesterday".into())
        );
        assert!(matches!(
            BridgedEvent::parse(b"[]"),
            Err(BridgeError::NotJson(_))
        ));
        assert_eq!(
            BridgedEvent::parse(br#"{"source":"aws.partner/stripe.com/ed_1"}"#).unwrap_err(),
            BridgeError::MissingField("detail")
        );
    }

    #[test]
    fn a_dead_letter_holds_the_event_or_lambda_s_record_of_it() {
        let record = format!(
            r#"{{"version":"1.0","timestamp":"2026-01-10T00:03:05.000Z","requestContext":{{"requestId":"r-1","functionArn":"arn:aws:lambda:us-east-1:123456789012:function:revguard-EventBridgeFunction-x:$LATEST","condition":"RetriesExhausted","approximateInvokeCount":3}},"requestPayload":{EXAMPLE},"responseContext":{{"statusCode":200,"executedVersion":"$LATEST","functionError":"Unhandled"}},"responsePayload":{{"errorType":"IngestError","errorMessage":"the event log failed"}}}}"#
        );
        assert_eq!(event_of_dead_letter(&record), EXAMPLE.trim_end());
        assert_eq!(event_of_dead_letter(EXAMPLE), EXAMPLE);
        assert_eq!(event_of_dead_letter("not json"), "not json");
    }

    #[test]
    fn delivery_is_the_bus_time_within_creation_and_now() {
        let detail =
            r#"{"id":"evt_1","object":"event","type":"invoice.paid","created":1,"livemode":false}"#;
        let body = envelope(
            "aws.partner/stripe.com/ed_1",
            "2026-01-01T00:00:10Z",
            detail,
        );
        let bridged = BridgedEvent::parse(body.as_bytes()).unwrap();
        let t = bridged.time;
        assert_eq!(bridged.delivered_at(t - 5, t + 60), t);
        // A bus clock ahead of ours, or behind Stripe's.
        assert_eq!(bridged.delivered_at(t - 5, t - 2), t - 2);
        assert_eq!(bridged.delivered_at(t + 3, t + 60), t + 3);
        // Stripe's clock ahead of ours: never after now.
        assert_eq!(bridged.delivered_at(t + 90, t + 60), t + 60);
    }
}
