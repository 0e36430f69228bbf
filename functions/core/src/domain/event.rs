//! The Stripe event envelope: the few fields ingress needs, read after verification.
//!
//! Everything else in the payload is ignored here and travels on unchanged. Fields are
//! optional wherever some API version or event kind leaves them out.

use serde::Deserialize;

/// What ingress reads off a verified event. The raw payload is kept separately, as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventEnvelope {
    pub id: String,
    pub event_type: String,
    /// Unix seconds at which Stripe created the event.
    pub created: i64,
    pub livemode: bool,
    pub api_version: Option<String>,
    /// The connected account, for Connect events.
    pub account: Option<String>,
    /// `data.object.id`; absent for some objects (e.g. the invoice of `invoice.upcoming`).
    pub object_id: Option<String>,
    /// `data.object.customer`, whether sent as an id or expanded to an object.
    pub customer: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("the body is not a JSON Stripe event: {0}")]
    NotJson(String),
    #[error("the event has no `{0}`")]
    MissingField(&'static str),
}

#[derive(Deserialize)]
struct RawEnvelope<'a> {
    #[serde(borrow)]
    id: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "type", borrow)]
    event_type: Option<std::borrow::Cow<'a, str>>,
    created: Option<i64>,
    livemode: Option<bool>,
    api_version: Option<String>,
    account: Option<String>,
    data: Option<RawData>,
}

#[derive(Deserialize)]
struct RawData {
    object: Option<RawObject>,
}

#[derive(Deserialize)]
struct RawObject {
    id: Option<String>,
    customer: Option<IdOrObject>,
}

/// Stripe sends a related object as its id, or expanded as an object with an `id`.
#[derive(Deserialize)]
#[serde(untagged)]
enum IdOrObject {
    Id(String),
    Object { id: String },
    Other(serde::de::IgnoredAny),
}

impl IdOrObject {
    fn into_id(self) -> Option<String> {
        match self {
            IdOrObject::Id(id) | IdOrObject::Object { id } => Some(id),
            IdOrObject::Other(_) => None,
        }
    }
}

impl EventEnvelope {
    pub fn parse(raw: &[u8]) -> Result<Self, EnvelopeError> {
        let env: RawEnvelope<'_> =
            serde_json::from_slice(raw).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
        let id = env
            .id
            .filter(|s| !s.is_empty())
            .ok_or(EnvelopeError::MissingField("id"))?;
        let event_type = env
            .event_type
            .filter(|s| !s.is_empty())
            .ok_or(EnvelopeError::MissingField("type"))?;
        let created = env.created.ok_or(EnvelopeError::MissingField("created"))?;
        let livemode = env
            .livemode
            .ok_or(EnvelopeError::MissingField("livemode"))?;
        let (object_id, customer) = match env.data.and_then(|d| d.object) {
            Some(obj) => (obj.id, obj.customer.and_then(IdOrObject::into_id)),
            None => (None, None),
        };
        Ok(Self {
            id: id.into_owned(),
            event_type: event_type.into_owned(),
            created,
            livemode,
            api_version: env.api_version,
            account: env.account,
            object_id,
            customer,
        })
    }
}

/// An event Stripe has and revguard's event log lacks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MissingEvent {
    pub id: String,
    pub event_type: String,
    pub created: i64,
    pub livemode: bool,
    /// The connected account whose event it is (absent: the platform's own).
    #[serde(
        default,
        skip_serializing_if = "crate::domain::account::Account::is_platform"
    )]
    pub account: crate::domain::account::Account,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_envelope_and_ignores_the_rest() {
        let raw = br#"{"id":"evt_1","object":"event","api_version":"2025-03-31.basil","created":1700000000,
            "livemode":false,"pending_webhooks":1,"request":{"id":null,"idempotency_key":null},
            "type":"invoice.paid","data":{"object":{"id":"in_1","object":"invoice","customer":"cus_1",
            "parent":{"subscription_details":{"subscription":"sub_1"}},"new_field":[1,2,3]}}}"#;
        let env = EventEnvelope::parse(raw).unwrap();
        assert_eq!(env.id, "evt_1");
        assert_eq!(env.event_type, "invoice.paid");
        assert_eq!(env.created, 1_700_000_000);
        assert!(!env.livemode);
        assert_eq!(env.api_version.as_deref(), Some("2025-03-31.basil"));
        assert_eq!(env.object_id.as_deref(), Some("in_1"));
        assert_eq!(env.customer.as_deref(), Some("cus_1"));
        assert_eq!(env.account, None);
    }

    #[test]
    fn expanded_customer_connect_account_and_objects_without_id() {
        let raw = br#"{"id":"evt_2","type":"invoice.upcoming","created":1,"livemode":true,
            "account":"acct_9","data":{"object":{"object":"invoice","customer":{"id":"cus_x","object":"customer"}}}}"#;
        let env = EventEnvelope::parse(raw).unwrap();
        assert_eq!(env.object_id, None);
        assert_eq!(env.customer.as_deref(), Some("cus_x"));
        assert_eq!(env.account.as_deref(), Some("acct_9"));
        let no_customer = br#"{"id":"evt_3","type":"x","created":1,"livemode":true,"data":{"object":{"id":"o","customer":null}}}"#;
        assert_eq!(EventEnvelope::parse(no_customer).unwrap().customer, None);
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        assert!(matches!(
            EventEnvelope::parse(b"not json"),
            Err(EnvelopeError::NotJson(_))
        ));
        assert!(matches!(
            EventEnvelope::parse(b"[1,2]"),
            Err(EnvelopeError::NotJson(_))
        ));
        assert_eq!(
            EventEnvelope::parse(br#"{"type":"x","created":1,"livemode":true}"#),
            Err(EnvelopeError::MissingField("id"))
        );
        assert_eq!(
            EventEnvelope::parse(br#"{"id":"evt","created":1,"livemode":true}"#),
            Err(EnvelopeError::MissingField("type"))
        );
        assert_eq!(
            EventEnvelope::parse(br#"{"id":"evt","type":"x","livemode":true}"#),
            Err(EnvelopeError::MissingField("created"))
        );
    }
}
