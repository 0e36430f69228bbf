//! Stripe webhook signatures: `Stripe-Signature: t=<unix>,v1=<hex hmac>[,v1=…][,v0=…]`.
//!
//! The signed payload is `"{t}.{raw body}"`, HMAC-SHA256 keyed with the endpoint's
//! `whsec_…` secret (the whole string, prefix included, as Stripe's libraries do).
//! Verification works on the raw bytes, before any JSON parsing, and takes `now` from
//! the caller so that fixtures stay deterministic.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Stripe's default tolerance between the signature timestamp and now.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// One endpoint signing secret. Its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    pub fn new(secret: impl Into<String>) -> Result<Self, SecretError> {
        let secret = secret.into();
        let secret = secret.trim();
        if secret.is_empty() {
            return Err(SecretError::Empty);
        }
        if !secret.starts_with("whsec_") {
            return Err(SecretError::NotWhsec);
        }
        Ok(Self(secret.to_owned()))
    }

    /// The secret itself, for the rare places that must show it (a dev secret printed once).
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length; this cannot fail.
        HmacSha256::new_from_slice(self.0.as_bytes()).expect("hmac accepts any key length")
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("no webhook secret given")]
    Empty,
    #[error("a Stripe webhook secret starts with `whsec_`")]
    NotWhsec,
}

/// The secrets an endpoint accepts: during a rotation, or for several Stripe endpoints
/// pointing at one revguard, any of them may have signed a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretSet(Vec<WebhookSecret>);

impl SecretSet {
    /// Parses `whsec_a,whsec_b` (spaces around commas tolerated).
    pub fn parse(list: &str) -> Result<Self, SecretError> {
        let secrets = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(WebhookSecret::new)
            .collect::<Result<Vec<_>, _>>()?;
        if secrets.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Self(secrets))
    }

    pub fn single(secret: WebhookSecret) -> Self {
        Self(vec![secret])
    }

    /// No secret: for a door where nothing is signed (Amazon EventBridge). Every
    /// signature verified against it fails.
    pub fn none() -> Self {
        Self(Vec::new())
    }

    pub fn iter(&self) -> impl Iterator<Item = &WebhookSecret> {
        self.0.iter()
    }
}

/// Why a delivery's signature was refused. Each has a stable code for the HTTP answer.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VerifyError {
    #[error("the Stripe-Signature header is missing")]
    MissingHeader,
    #[error("the Stripe-Signature header is malformed")]
    MalformedHeader,
    #[error("the Stripe-Signature header has no v1 signature")]
    NoV1Signature,
    #[error("no v1 signature matches any configured secret")]
    BadSignature,
    #[error("the signature timestamp is outside the tolerance")]
    Stale,
}

impl VerifyError {
    pub const ALL: [VerifyError; 5] = [
        VerifyError::MissingHeader,
        VerifyError::MalformedHeader,
        VerifyError::NoV1Signature,
        VerifyError::BadSignature,
        VerifyError::Stale,
    ];

    pub fn code(self) -> &'static str {
        match self {
            VerifyError::MissingHeader => "missing_signature",
            VerifyError::MalformedHeader => "malformed_signature",
            VerifyError::NoV1Signature => "no_v1_signature",
            VerifyError::BadSignature => "bad_signature",
            VerifyError::Stale => "stale_signature",
        }
    }
}

/// A parsed header: the timestamp and the v1 signatures, decoded.
#[derive(Debug, PartialEq, Eq)]
pub struct SignatureHeader {
    pub timestamp: i64,
    pub v1: Vec<[u8; 32]>,
}

impl SignatureHeader {
    pub fn parse(header: &str) -> Result<Self, VerifyError> {
        let mut timestamp = None;
        let mut v1 = Vec::new();
        let mut saw_v1_key = false;
        for part in header.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (key, value) = part.split_once('=').ok_or(VerifyError::MalformedHeader)?;
            match key.trim() {
                "t" => {
                    let t = value
                        .trim()
                        .parse::<i64>()
                        .map_err(|_| VerifyError::MalformedHeader)?;
                    timestamp = Some(t);
                }
                "v1" => {
                    saw_v1_key = true;
                    // A v1 that is not 64 hex digits can never match; skip it like Stripe's
                    // libraries do, another v1 in the header may still be good.
                    let mut sig = [0u8; 32];
                    if hex::decode_to_slice(value.trim(), &mut sig).is_ok() {
                        v1.push(sig);
                    }
                }
                // v0 (test-mode legacy scheme) and unknown keys are ignored.
                _ => {}
            }
        }
        let timestamp = timestamp.ok_or(VerifyError::MalformedHeader)?;
        if v1.is_empty() {
            return Err(if saw_v1_key {
                VerifyError::BadSignature
            } else {
                VerifyError::NoV1Signature
            });
        }
        Ok(Self { timestamp, v1 })
    }
}

/// Verifies a delivery. Returns the signature timestamp on success.
///
/// Order matters for clear errors: the header must parse, a signature must match one of
/// the secrets, and only then is the timestamp judged (a stale but authentic delivery is
/// `Stale`, a forged one is `BadSignature` whatever its timestamp).
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &SecretSet,
    now: i64,
    tolerance_secs: i64,
) -> Result<i64, VerifyError> {
    let header = header.ok_or(VerifyError::MissingHeader)?;
    let parsed = SignatureHeader::parse(header)?;
    let t = parsed.timestamp.to_string();
    let matched = secrets.iter().any(|secret| {
        let mut mac = secret.mac();
        mac.update(t.as_bytes());
        mac.update(b".");
        mac.update(body);
        let expected = mac.finalize().into_bytes();
        // Every candidate is compared in constant time; `any` over secrets only leaks which
        // secret index matched, not how many bytes did.
        parsed
            .v1
            .iter()
            .fold(subtle::Choice::from(0), |acc, sig| {
                acc | expected.ct_eq(sig)
            })
            .into()
    });
    if !matched {
        return Err(VerifyError::BadSignature);
    }
    if (now - parsed.timestamp).abs() > tolerance_secs {
        return Err(VerifyError::Stale);
    }
    Ok(parsed.timestamp)
}

/// The hex v1 signature of `body` at `timestamp`.
pub fn compute_v1(secret: &WebhookSecret, timestamp: i64, body: &[u8]) -> String {
    let mut mac = secret.mac();
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A `Stripe-Signature` header value, as Stripe would send it.
pub fn sign(secret: &WebhookSecret, timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", compute_v1(secret, timestamp, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_700_000_000;

    fn secret(s: &str) -> WebhookSecret {
        WebhookSecret::new(s).unwrap()
    }

    fn set(s: &str) -> SecretSet {
        SecretSet::parse(s).unwrap()
    }

    #[test]
    fn fixed_vector_matches_an_independent_hmac() {
        // Computed with: printf '1700000000.{"id":"evt_1"}' | openssl dgst -sha256 -hmac whsec_test
        let sig = compute_v1(&secret("whsec_test"), NOW, br#"{"id":"evt_1"}"#);
        assert_eq!(
            sig,
            "c89214b5b5da833daed6f0b8c5bb6bd58cea9022bd80ccc78230f3942d632925"
        );
    }

    #[test]
    fn accepts_a_valid_signature() {
        let body = br#"{"id":"evt_1"}"#;
        let header = sign(&secret("whsec_test"), NOW, body);
        assert_eq!(
            verify(Some(&header), body, &set("whsec_test"), NOW, 300),
            Ok(NOW)
        );
    }

    #[test]
    fn each_failure_has_its_own_error() {
        let body = b"{}";
        let good = sign(&secret("whsec_a"), NOW, body);
        let secrets = set("whsec_a");
        assert_eq!(
            verify(None, body, &secrets, NOW, 300),
            Err(VerifyError::MissingHeader)
        );
        assert_eq!(
            verify(Some("garbage"), body, &secrets, NOW, 300),
            Err(VerifyError::MalformedHeader)
        );
        assert_eq!(
            verify(Some("v1=abcd"), body, &secrets, NOW, 300),
            Err(VerifyError::MalformedHeader)
        );
        assert_eq!(
            verify(Some("t=notanumber,v1=00"), body, &secrets, NOW, 300),
            Err(VerifyError::MalformedHeader)
        );
        assert_eq!(
            verify(Some(&format!("t={NOW},v0=abc")), body, &secrets, NOW, 300),
            Err(VerifyError::NoV1Signature)
        );
        assert_eq!(
            verify(Some(&good), b"{ }", &secrets, NOW, 300),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            verify(Some(&good), body, &secrets, NOW + 301, 300),
            Err(VerifyError::Stale)
        );
        // A timestamp too far in the future is refused as well.
        assert_eq!(
            verify(Some(&good), body, &secrets, NOW - 301, 300),
            Err(VerifyError::Stale)
        );
        assert_eq!(verify(Some(&good), body, &secrets, NOW + 300, 300), Ok(NOW));
    }

    #[test]
    fn any_v1_and_any_secret_may_match() {
        let body = b"{\"x\":1}";
        let real = compute_v1(&secret("whsec_new"), NOW, body);
        let header = format!(
            " t={NOW}, v1={} , v1={real},v0=deadbeef,scheme=ignored",
            "0".repeat(64)
        );
        assert_eq!(
            verify(Some(&header), body, &set("whsec_old, whsec_new"), NOW, 300),
            Ok(NOW)
        );
        assert_eq!(
            verify(Some(&header), body, &set("whsec_old"), NOW, 300),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn malformed_v1_values_are_bad_signatures_not_crashes() {
        let header = format!("t={NOW},v1=zz,v1=123");
        assert_eq!(
            verify(Some(&header), b"{}", &set("whsec_a"), NOW, 300),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn secret_list_parsing_and_redaction() {
        assert_eq!(SecretSet::parse(""), Err(SecretError::Empty));
        assert_eq!(SecretSet::parse(" , "), Err(SecretError::Empty));
        assert_eq!(SecretSet::parse("sk_live_x"), Err(SecretError::NotWhsec));
        assert_eq!(set("whsec_a,whsec_b").iter().count(), 2);
        let shown = format!("{:?}", set("whsec_supersecret"));
        assert!(!shown.contains("supersecret"), "{shown}");
    }

    proptest! {
        #[test]
        fn a_tampered_byte_fails(body in proptest::collection::vec(any::<u8>(), 1..512), idx in any::<usize>(), flip in 1u8..=255) {
            let s = secret("whsec_prop");
            let header = sign(&s, NOW, &body);
            let mut tampered = body.clone();
            let i = idx % tampered.len();
            tampered[i] ^= flip;
            prop_assert_eq!(verify(Some(&header), &tampered, &SecretSet::single(s.clone()), NOW, 300), Err(VerifyError::BadSignature));
            prop_assert_eq!(verify(Some(&header), &body, &SecretSet::single(s), NOW, 300), Ok(NOW));
        }

        #[test]
        fn a_shifted_timestamp_fails(body in proptest::collection::vec(any::<u8>(), 0..256), shift in 1i64..1_000_000) {
            let s = secret("whsec_prop");
            let sig = compute_v1(&s, NOW, &body);
            // The signature was made for NOW; claiming another time must not verify.
            let header = format!("t={},v1={sig}", NOW + shift);
            prop_assert_eq!(verify(Some(&header), &body, &SecretSet::single(s), NOW + shift, 300), Err(VerifyError::BadSignature));
        }

        #[test]
        fn a_wrong_secret_fails(body in proptest::collection::vec(any::<u8>(), 0..256), a in "[a-zA-Z0-9]{1,32}", b in "[a-zA-Z0-9]{1,32}") {
            prop_assume!(a != b);
            let header = sign(&secret(&format!("whsec_{a}")), NOW, &body);
            prop_assert_eq!(verify(Some(&header), &body, &set(&format!("whsec_{b}")), NOW, 300), Err(VerifyError::BadSignature));
        }
    }
}
