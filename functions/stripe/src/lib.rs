//! A small typed client for the part of Stripe's API revguard reads: the events list and
//! the subscriptions list, behind core's [`StripeApi`] port.
//!
//! - It pins `Stripe-Version` ([`STRIPE_VERSION`]), so that objects keep one shape
//!   whatever the account's default version.
//! - It follows `has_more` with `starting_after` until the list ends.
//! - It retries 429, 5xx and transport failures with exponential backoff and full
//!   jitter, honours `Retry-After` and `Stripe-Should-Retry`, and gives up after
//!   [`RetryPolicy::attempts`].
//! - A key Stripe refuses (401) is read again from its source (the deployment's secret),
//!   at most once a minute, and the request retried once with the new key: a rotated
//!   key reaches warm instances without a cold start.
//! - The key goes only into the `Authorization` header (marked sensitive); its `Debug`
//!   shows the prefix alone, and no error or log line carries it.
//!
//! Why not `async-stripe`: see docs/recovery.md ("Why a small client of our own"); the
//! figures are there.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

#[cfg(feature = "test-util")]
pub mod testing;

use revguard_core::ports::{
    Account, ApiError, EventsQuery, Page, PageCursor, RawObjects, StripeApi,
};
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

/// Where the key comes from again when Stripe refuses it: the secret it was read from.
pub trait KeySource: Send + Sync + 'static {
    /// The key as the source holds it now.
    fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + '_>>;
}

/// How often a refused key may be read again from its source.
pub const KEY_REREAD_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct KeyRefresh {
    source: Arc<dyn KeySource>,
    last_read: Arc<Mutex<Option<Instant>>>,
}

impl std::fmt::Debug for KeyRefresh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyRefresh")
    }
}

#[derive(Clone, Debug)]
pub struct StripeClient {
    http: reqwest::Client,
    base: String,
    key: Arc<RwLock<ApiKey>>,
    refresh: Option<KeyRefresh>,
    retry: RetryPolicy,
    /// The connected account read on behalf of (`Stripe-Account`); `None`: the platform's own.
    account: Option<String>,
}

fn http_client() -> Result<reqwest::Client, ConfigError> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(80))
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("revguard/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ConfigError::Client(e.to_string()))
}

impl StripeClient {
    pub fn new(base: &str, key: ApiKey) -> Result<Self, ConfigError> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(ConfigError::BadBase);
        }
        Ok(Self {
            http: http_client()?,
            base,
            key: Arc::new(RwLock::new(key)),
            refresh: None,
            retry: RetryPolicy::default(),
            account: None,
        })
    }

    /// The same client (base, key, retries) with connections of its own, for use on another
    /// tokio runtime: a pooled connection is driven by the runtime that opened it, so one
    /// shared across runtimes stalls while its runtime is busy and fails once it is gone.
    pub fn with_own_connections(&self) -> Result<Self, ConfigError> {
        Ok(Self {
            http: http_client()?,
            ..self.clone()
        })
    }

    /// The client reads its key again from `source` when Stripe refuses it (401), at most
    /// once per [`KEY_REREAD_INTERVAL`] (the first refusal reads it at once).
    pub fn with_key_source(mut self, source: impl KeySource) -> Self {
        self.refresh = Some(KeyRefresh {
            source: Arc::new(source),
            last_read: Arc::new(Mutex::new(None)),
        });
        self
    }

    /// Reads the key again after a 401: whether a different, valid key replaced it.
    async fn reread_key(&self) -> bool {
        let Some(refresh) = &self.refresh else {
            return false;
        };
        {
            let mut last = refresh.last_read.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < KEY_REREAD_INTERVAL) {
                return false;
            }
            *last = Some(Instant::now());
        }
        let fresh = match refresh.source.fetch().await.map(ApiKey::new) {
            Ok(Ok(key)) => key,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the Stripe key's secret holds no key");
                return false;
            }
            Err(e) => {
                tracing::warn!(error = %e, "the Stripe key's secret could not be read again");
                return false;
            }
        };
        let mut key = self.key.write().unwrap_or_else(|e| e.into_inner());
        if key.0 == fresh.0 {
            return false;
        }
        *key = fresh;
        tracing::info!("Stripe refused the key; a new one was read from its secret");
        true
    }

    fn current_key(&self) -> String {
        self.key.read().unwrap_or_else(|e| e.into_inner()).0.clone()
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
        let key = self.current_key();
        key.starts_with("sk_live_") || key.starts_with("rk_live_")
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// One GET, retried as the policy says. Returns the body of a 2xx.
    pub async fn get(&self, path: &str, params: &[(String, String)]) -> Result<String, ApiError> {
        let url = format!("{}{path}", self.base);
        let mut attempt = 1;
        let mut reread = false;
        loop {
            let key = self.current_key();
            let mut request = self
                .http
                .get(&url)
                .bearer_auth(&key)
                .header("Stripe-Version", STRIPE_VERSION);
            if let Some(account) = &self.account {
                request = request.header("Stripe-Account", account);
            }
            let sent = request.query(params).send().await;
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
                    // A revoked key: once, with the key its secret holds now.
                    // (Another request may have read it already: then retry with that.)
                    if status.as_u16() == 401
                        && !reread
                        && (self.current_key() != key || self.reread_key().await)
                    {
                        reread = true;
                        continue;
                    }
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

    /// One page of a list: its objects, and the last one's id when more follow.
    async fn page(
        &self,
        path: &str,
        params: &[(String, String)],
        starting_after: Option<&str>,
    ) -> Result<(RawObjects, Option<String>), ApiError> {
        #[derive(Deserialize)]
        struct Listed {
            data: Vec<Box<RawValue>>,
            #[serde(default)]
            has_more: bool,
        }
        #[derive(Deserialize)]
        struct Id {
            id: String,
        }
        let mut query = params.to_vec();
        query.push(("limit".into(), PAGE_LIMIT.into()));
        if let Some(after) = starting_after {
            query.push(("starting_after".into(), after.to_owned()));
        }
        let body = self.get(path, &query).await?;
        let page: Listed =
            serde_json::from_str(&body).map_err(|e| ApiError::Malformed(format!("{path}: {e}")))?;
        let next = match (page.has_more, page.data.last()) {
            (true, Some(raw)) => Some(
                serde_json::from_str::<Id>(raw.get())
                    .map_err(|e| ApiError::Malformed(format!("{path}: {e}")))?
                    .id,
            ),
            _ => None,
        };
        Ok((page.data, next))
    }

    /// One page of the events of a query: `types[]` go 20 to a request, each request a
    /// part of the list. Where the API refuses `delivery_success` (400), the list goes on
    /// without it; where it refuses `types[]`, without them (the backfill then skips the
    /// types it does not act on itself). A filter dropped stays dropped for the pages after.
    async fn events_page_of(&self, query: &EventsQuery, at: &PageCursor) -> Result<Page, ApiError> {
        let mut dropped = at.dropped_filters.clone();
        loop {
            let undelivered_only =
                query.undelivered_only && !dropped.iter().any(|f| f == "delivery_success");
            let types: &[String] = if dropped.iter().any(|f| f == "types") {
                &[]
            } else {
                &query.types
            };
            let groups: Vec<&[String]> = if types.is_empty() {
                vec![&[]]
            } else {
                types.chunks(MAX_TYPES_PER_REQUEST).collect()
            };
            let part = at.part.min(groups.len() - 1);
            let mut params = vec![("created[gte]".to_owned(), query.since.to_string())];
            if let Some(until) = query.until {
                params.push(("created[lt]".into(), until.to_string()));
            }
            if undelivered_only {
                params.push(("delivery_success".into(), "false".into()));
            }
            params.extend(
                groups[part]
                    .iter()
                    .map(|t| ("types[]".to_owned(), t.clone())),
            );
            match self
                .page("/v1/events", &params, at.starting_after.as_deref())
                .await
            {
                Ok((data, last)) => {
                    let next = match last {
                        Some(last) => Some(PageCursor {
                            part,
                            starting_after: Some(last),
                            dropped_filters: dropped,
                        }),
                        None if part + 1 < groups.len() => Some(PageCursor {
                            part: part + 1,
                            starting_after: None,
                            dropped_filters: dropped,
                        }),
                        None => None,
                    };
                    return Ok(Page { data, next });
                }
                Err(ApiError::Refused {
                    status: 400,
                    message,
                }) if undelivered_only => {
                    tracing::warn!(
                        message,
                        "the API refused delivery_success; listing every event of the window"
                    );
                    dropped.push("delivery_success".into());
                }
                Err(ApiError::Refused {
                    status: 400,
                    message,
                }) if !types.is_empty() => {
                    tracing::warn!(message, "the API refused types[]; listing every type");
                    dropped.push("types".into());
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl StripeApi for StripeClient {
    /// The same client (key, retries, connections), sending `Stripe-Account` for a
    /// connected account: Stripe answers with that account's objects and events.
    fn for_account(&self, account: &Account) -> Self {
        Self {
            account: account.id().map(str::to_owned),
            ..self.clone()
        }
    }

    fn account(&self) -> Account {
        Account::of_event(self.account.as_deref()).unwrap_or_default()
    }

    async fn events_page(&self, query: &EventsQuery, at: &PageCursor) -> Result<Page, ApiError> {
        self.events_page_of(query, at).await
    }

    async fn subscriptions_page(&self, at: &PageCursor) -> Result<Page, ApiError> {
        let (data, last) = self
            .page(
                "/v1/subscriptions",
                &[("status".into(), "all".into())],
                at.starting_after.as_deref(),
            )
            .await?;
        let next = last.map(|last| PageCursor {
            starting_after: Some(last),
            ..PageCursor::default()
        });
        Ok(Page { data, next })
    }

    fn livemode(&self) -> bool {
        StripeClient::livemode(self)
    }

    async fn webhook_endpoints(&self) -> Result<RawObjects, ApiError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let (data, last) = self
                .page("/v1/webhook_endpoints", &[], after.as_deref())
                .await?;
            out.extend(data);
            match last {
                Some(last) => after = Some(last),
                None => return Ok(out),
            }
        }
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
