//! A small typed client for the part of Stripe's API revguard reads: the events list and
//! the subscriptions list, behind core's [`StripeApi`] port.
//!
//! - It pins `Stripe-Version` ([`STRIPE_VERSION`]), so that objects keep one shape
//!   whatever the account's default version.
//! - It follows `has_more` with `starting_after` until the list ends.
//! - It retries 429, 5xx and transport failures with exponential backoff and full
//!   jitter, honours `Retry-After` and `Stripe-Should-Retry`, and gives up after
//!   [`RetryPolicy::attempts`].
//! - The key goes only into the `Authorization` header (marked sensitive); its `Debug`
//!   shows the prefix alone, and no error or log line carries it.
//!
//! Why not `async-stripe`: see the README ("When webhooks were missed"); the figures
//! are there.

use std::time::Duration;

#[cfg(feature = "test-util")]
pub mod testing;

use revguard_core::recovery::{ApiError, EventsQuery, RawObjects, StripeApi};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The API version revguard reads objects at (subscriptions carry
/// `current_period_end` at their top level; later versions moved it to the items, which
/// revguard also reads).
pub const STRIPE_VERSION: &str = "2024-06-20";
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";
/// Stripe's largest page.
const PAGE_LIMIT: &str = "100";
/// Stripe takes at most 20 `types[]` per request.
const MAX_TYPES_PER_REQUEST: usize = 20;

/// A secret or restricted Stripe key. Never printed.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Result<Self, ConfigError> {
        let key = key.into().trim().to_owned();
        if !(key.starts_with("sk_") || key.starts_with("rk_")) {
            return Err(ConfigError::NotAKey);
        }
        Ok(Self(key))
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The mode prefix helps; the rest is secret.
        let prefix: String = self.0.chars().take(8).collect();
        write!(f, "ApiKey({prefix}…)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("a Stripe key starts with sk_ (secret) or rk_ (restricted)")]
    NotAKey,
    #[error("no Stripe key: set STRIPE_API_KEY or pass --stripe-key")]
    Missing,
    #[error("STRIPE_API_BASE is not an http(s) URL")]
    BadBase,
    #[error("the HTTP client could not be built: {0}")]
    Client(String),
}

/// Backoff for 429, 5xx and transport failures.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// About 1.5 minutes of trying: 0.5 s doubling to 30 s, 7 tries.
    fn default() -> Self {
        Self {
            attempts: 7,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Full jitter: uniform in [0, min(max, first·2^(n-1))].
    fn delay(&self, retry: u32) -> Duration {
        let cap = self
            .first_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16))
            .min(self.max_delay);
        cap.mul_f64(rand::random::<f64>())
    }
}

#[derive(Clone, Debug)]
pub struct StripeClient {
    http: reqwest::Client,
    base: String,
    key: ApiKey,
    retry: RetryPolicy,
}

impl StripeClient {
    pub fn new(base: &str, key: ApiKey) -> Result<Self, ConfigError> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(ConfigError::BadBase);
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(80))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("revguard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::Client(e.to_string()))?;
        Ok(Self {
            http,
            base,
            key,
            retry: RetryPolicy::default(),
        })
    }

    /// `STRIPE_API_BASE` (default [`DEFAULT_API_BASE`]) and `STRIPE_API_KEY`, each
    /// overridden by an explicit value.
    pub fn from_env(base: Option<&str>, key: Option<&str>) -> Result<Self, ConfigError> {
        let base = base
            .map(str::to_owned)
            .or_else(|| std::env::var("STRIPE_API_BASE").ok())
            .filter(|b| !b.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_API_BASE.to_owned());
        let key = key
            .map(str::to_owned)
            .or_else(|| std::env::var("STRIPE_API_KEY").ok())
            .filter(|k| !k.trim().is_empty())
            .ok_or(ConfigError::Missing)?;
        Self::new(&base, ApiKey::new(key)?)
    }

    /// Whether the key is a live-mode one (what it reads is live data).
    pub fn livemode(&self) -> bool {
        self.key.0.starts_with("sk_live_") || self.key.0.starts_with("rk_live_")
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// One GET, retried as the policy says. Returns the body of a 2xx.
    pub async fn get(&self, path: &str, params: &[(String, String)]) -> Result<String, ApiError> {
        let url = format!("{}{path}", self.base);
        let mut attempt = 1;
        loop {
            let sent = self
                .http
                .get(&url)
                .bearer_auth(&self.key.0)
                .header("Stripe-Version", STRIPE_VERSION)
                .query(params)
                .send()
                .await;
            let (wait, error) = match sent {
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    let body = response
                        .text()
                        .await
                        .map_err(|e| ApiError::Unavailable(without_url(&e)))?;
                    if status.is_success() {
                        return Ok(body);
                    }
                    let message = stripe_message(&body).unwrap_or_else(|| status.to_string());
                    let should_retry = headers
                        .get("stripe-should-retry")
                        .and_then(|v| v.to_str().ok())
                        .map(|v| v == "true");
                    let retryable =
                        should_retry.unwrap_or(status.as_u16() == 429 || status.is_server_error());
                    if !retryable {
                        return Err(ApiError::Refused {
                            status: status.as_u16(),
                            message,
                        });
                    }
                    let wait = headers
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s.min(60)));
                    (wait, format!("{} {message}", status.as_u16()))
                }
                Err(e) => (None, without_url(&e)),
            };
            if attempt >= self.retry.attempts {
                return Err(ApiError::Unavailable(format!(
                    "{path}: {error} (after {attempt} attempts)"
                )));
            }
            let delay = wait.unwrap_or_else(|| self.retry.delay(attempt));
            tracing::warn!(
                path,
                attempt,
                error,
                delay_ms = delay.as_millis() as u64,
                "Stripe's API failed; retrying"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// Every object of a list, following `has_more` with `starting_after`.
    pub async fn list(
        &self,
        path: &str,
        params: &[(String, String)],
    ) -> Result<RawObjects, ApiError> {
        #[derive(Deserialize)]
        struct Page {
            data: Vec<Box<RawValue>>,
            #[serde(default)]
            has_more: bool,
        }
        #[derive(Deserialize)]
        struct Id {
            id: String,
        }
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut query = params.to_vec();
            query.push(("limit".into(), PAGE_LIMIT.into()));
            if let Some(after) = &after {
                query.push(("starting_after".into(), after.clone()));
            }
            let body = self.get(path, &query).await?;
            let page: Page = serde_json::from_str(&body)
                .map_err(|e| ApiError::Malformed(format!("{path}: {e}")))?;
            let last = match page.data.last() {
                Some(raw) => Some(
                    serde_json::from_str::<Id>(raw.get())
                        .map_err(|e| ApiError::Malformed(format!("{path}: {e}")))?
                        .id,
                ),
                None => None,
            };
            out.extend(page.data);
            match (page.has_more, last) {
                (true, Some(last)) => after = Some(last),
                _ => return Ok(out),
            }
        }
    }

    /// The events of a query. Where the API refuses `delivery_success` (400), the query
    /// goes again without it; where it refuses `types[]`, without them (the backfill
    /// then skips the types it does not act on itself).
    async fn list_events(&self, query: &EventsQuery) -> Result<RawObjects, ApiError> {
        let mut base = vec![("created[gte]".to_owned(), query.since.to_string())];
        if let Some(until) = query.until {
            base.push(("created[lt]".into(), until.to_string()));
        }
        let mut undelivered_only = query.undelivered_only;
        let mut types = query.types.clone();
        loop {
            let mut params = base.clone();
            if undelivered_only {
                params.push(("delivery_success".into(), "false".into()));
            }
            let result = if types.is_empty() {
                self.list("/v1/events", &params).await
            } else {
                self.list_by_types(&params, &types).await
            };
            match result {
                Err(ApiError::Refused {
                    status: 400,
                    message,
                }) if undelivered_only => {
                    tracing::warn!(
                        message,
                        "the API refused delivery_success; listing every event of the window"
                    );
                    undelivered_only = false;
                }
                Err(ApiError::Refused {
                    status: 400,
                    message,
                }) if !types.is_empty() => {
                    tracing::warn!(message, "the API refused types[]; listing every type");
                    types.clear();
                }
                other => return other,
            }
        }
    }

    /// `types[]` in groups of 20, merged (an event has one type, so none repeats).
    async fn list_by_types(
        &self,
        params: &[(String, String)],
        types: &[String],
    ) -> Result<RawObjects, ApiError> {
        let mut out = Vec::new();
        for group in types.chunks(MAX_TYPES_PER_REQUEST) {
            let mut query = params.to_vec();
            query.extend(group.iter().map(|t| ("types[]".to_owned(), t.clone())));
            out.extend(self.list("/v1/events", &query).await?);
        }
        Ok(out)
    }
}

impl StripeApi for StripeClient {
    async fn events(&self, query: &EventsQuery) -> Result<RawObjects, ApiError> {
        self.list_events(query).await
    }

    async fn subscriptions(&self) -> Result<RawObjects, ApiError> {
        self.list("/v1/subscriptions", &[("status".into(), "all".into())])
            .await
    }

    async fn subscription(&self, id: &str) -> Result<Option<Box<RawValue>>, ApiError> {
        self.retrieve("/v1/subscriptions", id).await
    }

    async fn invoice(&self, id: &str) -> Result<Option<Box<RawValue>>, ApiError> {
        self.retrieve("/v1/invoices", id).await
    }
}

impl StripeClient {
    /// One object by id; `None` on 404.
    async fn retrieve(&self, path: &str, id: &str) -> Result<Option<Box<RawValue>>, ApiError> {
        // An id goes into the path: only the characters Stripe's ids have.
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ApiError::Malformed(format!("not a Stripe id: {id:?}")));
        }
        match self.get(&format!("{path}/{id}"), &[]).await {
            Ok(body) => RawValue::from_string(body)
                .map(Some)
                .map_err(|e| ApiError::Malformed(e.to_string())),
            Err(ApiError::Refused { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Stripe's own words for a refusal (`error.message`).
fn stripe_message(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v["error"]["message"].as_str().map(str::to_owned)
}

/// A transport error without its URL (the query may name customers).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_decode() || e.is_body() {
        "the body could not be read"
    } else {
        "the request failed"
    };
    kind.to_owned()
}
