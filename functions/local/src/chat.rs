//! Alerts in Slack and Microsoft Teams, embedded: each alert transition is posted to the
//! configured incoming webhooks, formatted for the app (`revguard_core::chat`).
//!
//! Publishing a transition only records the posts it owes, in the same SQLite file as
//! the alert outbox it comes from, so detection never waits on a chat service. A delivery
//! loop posts what is due, retries timeouts, 429s and 5xx with backoff, and gives up at
//! once on a URL the app refuses (4xx). A message published again (a retried detector
//! run) owes nothing new, so each transition is posted once per app; only a crash between
//! an app's 2xx and its record repeats a post.
//!
//! The webhook URLs are secrets (whoever has one can post to the channel): they are
//! never logged, and transport errors are reported without them.

use std::sync::Arc;
use std::time::Duration;

use revguard_core::chat::ChatApp;
use revguard_core::detect::alerts::AlertMessage;
use revguard_core::ports::{PublishError, Publisher};
use revguard_core::retry::{seed_of, Backoff};
use revguard_sqlite::chat::{ChatDelivery, ChatOutcome};
use revguard_sqlite::SqliteStore;
use tokio::sync::Notify;

use crate::consumer::StopSignal;
use crate::publish::JsonlPublisher;

/// Retries of a post: 2 s doubling to 10 min, 28 attempts in all (at least an hour and a
/// half of a chat outage before a post is given up).
pub const CHAT_BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(2),
    cap: Duration::from_secs(600),
    max_attempts: 28,
};

/// One app's incoming-webhook URL. Its `Debug` shows the app only.
#[derive(Clone)]
pub struct ChatWebhook {
    pub app: ChatApp,
    url: reqwest::Url,
}

impl std::fmt::Debug for ChatWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChatWebhook({}, [redacted])", self.app.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChatConfigError {
    // The URL itself is not repeated: it is a secret.
    #[error("the {0} webhook URL is not an http(s) URL")]
    NotHttp(&'static str),
}

impl ChatWebhook {
    pub fn parse(app: ChatApp, url: &str) -> Result<Self, ChatConfigError> {
        let url = reqwest::Url::parse(url.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or(ChatConfigError::NotHttp(app.as_str()))?;
        Ok(Self { app, url })
    }
}

/// The chat side of the embedded alert publisher: what it owes to which apps.
#[derive(Clone)]
pub struct ChatOutbox {
    store: SqliteStore,
    apps: Vec<ChatApp>,
    /// Shown as a button or link in each message.
    link: Option<String>,
    wake: Arc<Notify>,
}

impl ChatOutbox {
    pub fn new(store: SqliteStore, apps: Vec<ChatApp>, link: Option<String>) -> Self {
        Self {
            store,
            apps,
            link,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Woken when posts are added, so the delivery loop posts at once.
    pub fn wake_signal(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    async fn owe(&self, m: &AlertMessage) -> Result<(), PublishError> {
        let posts = self
            .apps
            .iter()
            .map(|app| {
                let body = app.render(m, self.link.as_deref()).to_string();
                (app.as_str().to_owned(), body)
            })
            .collect();
        self.store
            .add_chat_deliveries(&m.id, posts, now_ms())
            .await
            .map_err(PublishError::new)?;
        self.wake.notify_one();
        Ok(())
    }
}

/// Where embedded alert transitions go: the posts owed to chat apps, then the log and the
/// JSONL file.
#[derive(Clone)]
pub struct AlertPublisher {
    pub file: JsonlPublisher,
    pub chat: Option<ChatOutbox>,
}

impl AlertPublisher {
    pub fn log_only() -> Self {
        Self {
            file: JsonlPublisher::log_only("alert"),
            chat: None,
        }
    }
}

impl Publisher<AlertMessage> for AlertPublisher {
    async fn publish(&self, m: &AlertMessage) -> Result<(), PublishError> {
        // The posts first: owing them again is harmless, writing a JSONL line twice is not.
        if let Some(chat) = &self.chat {
            chat.owe(m).await?;
        }
        self.file.publish(m).await
    }
}

/// How the delivery loop posts.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub webhooks: Vec<ChatWebhook>,
    pub backoff: Backoff,
    /// How long one post may take before it counts as failed.
    pub timeout: Duration,
}

impl Delivery {
    pub fn new(webhooks: Vec<ChatWebhook>) -> Self {
        Self {
            webhooks,
            backoff: CHAT_BACKOFF,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Why a post failed, said without its URL.
struct PostFailure {
    error: String,
    retry: bool,
    /// What the app asked for (a 429's `Retry-After`).
    retry_after: Option<Duration>,
}

async fn post(client: &reqwest::Client, hook: &ChatWebhook, body: &str) -> Result<(), PostFailure> {
    let response = client
        .post(hook.url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_owned())
        .send()
        .await
        .map_err(|e| PostFailure {
            error: revguard_core::error_chain(&e.without_url()),
            retry: true,
            retry_after: None,
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    // Slack and Teams answer a short reason ("no_service", "invalid_payload").
    let reason: String = response
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect();
    Err(PostFailure {
        error: format!("HTTP {}: {}", status.as_u16(), reason.trim()),
        retry: status.as_u16() == 408 || status.as_u16() == 429 || status.is_server_error(),
        retry_after,
    })
}

/// Posts what is due until `stop`: woken by new posts, else when the next retry is due
/// (or every minute).
pub async fn deliver(store: SqliteStore, delivery: Delivery, wake: Arc<Notify>, stop: StopSignal) {
    // A webhook URL answers itself: a redirect is not followed (it could carry the post,
    // and the URL's secret path in its Referer, elsewhere).
    let client = match reqwest::Client::builder()
        .timeout(delivery.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %revguard_core::error_chain(&e), "chat delivery cannot start");
            return;
        }
    };
    while !stop.is_stopped() {
        // A stop does not wait for posts in flight: one cut short is posted again later.
        let delivered = tokio::select! {
            r = deliver_due(&store, &delivery, &client) => r,
            _ = stop.wait() => return,
        };
        let wait = match delivered {
            Ok(()) => match store.next_chat_attempt_ms().await {
                Ok(Some(at)) => Duration::from_millis((at - now_ms()).clamp(0, 60_000) as u64),
                Ok(None) => Duration::from_secs(60),
                Err(_) => Duration::from_secs(5),
            },
            Err(e) => {
                tracing::warn!(error = %revguard_core::error_chain(&e), "chat delivery cannot read its posts");
                Duration::from_secs(5)
            }
        };
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait() => {}
        }
    }
}

/// Posts everything due now, one at a time, and records each outcome.
pub async fn deliver_due(
    store: &SqliteStore,
    delivery: &Delivery,
    client: &reqwest::Client,
) -> Result<(), revguard_core::StoreError> {
    loop {
        let due = store.due_chat_deliveries(now_ms(), 32).await?;
        if due.is_empty() {
            return Ok(());
        }
        for d in due {
            let outcome = attempt(delivery, client, &d).await;
            store.record_chat_attempt(&d, outcome, now_ms()).await?;
        }
    }
}

async fn attempt(delivery: &Delivery, client: &reqwest::Client, d: &ChatDelivery) -> ChatOutcome {
    let attempt = d.attempts + 1;
    let Some(hook) = delivery.webhooks.iter().find(|h| h.app.as_str() == d.app) else {
        let error = format!("no {} webhook is configured", d.app);
        tracing::warn!(message = %d.message_id, app = %d.app, "{error}: the post is given up");
        return ChatOutcome::GiveUp { error };
    };
    match post(client, hook, &d.body).await {
        Ok(()) => {
            tracing::info!(message = %d.message_id, app = %d.app, attempt, "alert posted to chat");
            ChatOutcome::Delivered
        }
        Err(f) if !f.retry || delivery.backoff.gives_up_after(attempt) => {
            tracing::error!(message = %d.message_id, app = %d.app, attempt, error = %f.error, "alert not posted to chat: given up");
            ChatOutcome::GiveUp { error: f.error }
        }
        Err(f) => {
            let backoff = delivery
                .backoff
                .delay_at_least_half(attempt, seed_of(&d.message_id));
            let delay = f.retry_after.map_or(backoff, |asked| asked.max(backoff));
            tracing::warn!(message = %d.message_id, app = %d.app, attempt, error = %f.error, retry_in_ms = delay.as_millis() as u64, "alert not posted to chat yet");
            ChatOutcome::RetryAt {
                at_ms: now_ms() + delay.as_millis() as i64,
                error: f.error,
            }
        }
    }
}

/// Posts `m` once to each webhook, with no retry (`revguard chat-test`): what each app
/// answered.
pub async fn post_once(
    webhooks: &[ChatWebhook],
    m: &AlertMessage,
    link: Option<&str>,
) -> Vec<(ChatApp, Result<(), String>)> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let mut out = Vec::new();
    for hook in webhooks {
        let body = hook.app.render(m, link).to_string();
        let result = post(&client, hook, &body).await.map_err(|f| f.error);
        out.push((hook.app, result));
    }
    out
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_url_is_never_shown() {
        let hook = ChatWebhook::parse(
            ChatApp::Slack,
            "https://hooks.slack.com/services/T000/B000/secretpart",
        )
        .unwrap();
        assert!(!format!("{hook:?}").contains("secretpart"));
        let err = ChatWebhook::parse(ChatApp::Teams, "ftp://x/secretpart").unwrap_err();
        assert!(!err.to_string().contains("secretpart"), "{err}");
    }

    #[test]
    fn the_backoff_rides_out_an_hour_and_a_half_of_chat_outage() {
        assert!(CHAT_BACKOFF.survives() >= Duration::from_secs(90 * 60));
    }
}
