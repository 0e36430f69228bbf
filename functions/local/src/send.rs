//! `revguard send`: sign a Stripe event file and POST it, like `stripe trigger` offline.

use revguard_core::domain::signature::sign;
use revguard_core::WebhookSecret;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is not a JSON object")]
    NotJson(String),
    #[error("the request to {url} failed")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
}

pub struct Prepared {
    pub event_id: String,
    pub body: Vec<u8>,
}

/// Reads the event file and, with `fresh_id`, gives it a new unique event id.
pub fn prepare(path: &str, fresh_id: bool) -> Result<Prepared, SendError> {
    let raw = std::fs::read(path).map_err(|source| SendError::Read {
        path: path.into(),
        source,
    })?;
    let mut value: serde_json::Value =
        serde_json::from_slice(&raw).map_err(|_| SendError::NotJson(path.into()))?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| SendError::NotJson(path.into()))?;
    if !fresh_id {
        let event_id = object
            .get("id")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned();
        // The file's bytes go out unchanged.
        return Ok(Prepared {
            event_id,
            body: raw,
        });
    }
    let event_id = format!("evt_{}", crate::serve::random_hex(12));
    object.insert("id".into(), serde_json::Value::String(event_id.clone()));
    let body = serde_json::to_vec(&value).map_err(|_| SendError::NotJson(path.into()))?;
    Ok(Prepared { event_id, body })
}

pub struct Answer {
    pub status: u16,
    pub body: String,
}

pub async fn send(
    client: &reqwest::Client,
    url: &str,
    secret: &WebhookSecret,
    body: Vec<u8>,
    now: i64,
) -> Result<Answer, SendError> {
    let header = sign(secret, now, &body);
    let http_err = |source| SendError::Http {
        url: url.into(),
        source,
    };
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("stripe-signature", header)
        .body(body)
        .send()
        .await
        .map_err(http_err)?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(http_err)?;
    Ok(Answer { status, body })
}
