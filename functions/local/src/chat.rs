//! Deliveries, embedded: alert transitions posted to Slack and Microsoft Teams incoming
//! webhooks (formatted for the app, `revguard_core::domain::chat`) and paged to PagerDuty
//! (`revguard_core::domain::pager`); alerts, the team's notifications and the digest sent by email
//! (`crate::email`).
//!
//! Publishing a message only records the deliveries it owes, in the same SQLite file as
//! the outbox it comes from, so detection never waits on a chat service, a pager or a
//! mail server. A delivery loop sends what is due, retries timeouts, 429s, 5xx and
//! transient SMTP errors with backoff, and gives up at once on what the far end refuses
//! (a 4xx, a permanent SMTP error). A message published again (a retried detector run)
//! owes nothing new, so each is delivered once per destination; only a crash between the
//! far end's acceptance and its record repeats a delivery (PagerDuty folds a repeat into
//! the same incident by its `dedup_key`).
//!
//! Webhook URLs, the PagerDuty routing key and SMTP credentials are secrets: they are
//! never logged nor stored with the deliveries, and transport errors are reported without
//! them.

use std::sync::Arc;
use std::time::Duration;

use revguard_core::domain::billing::Notification;
use revguard_core::domain::chat::ChatApp;
use revguard_core::domain::detector::alerts::AlertMessage;
use revguard_core::ports::{OwedPost, PostFailure, PostOutbox, Poster, PublishError, Publisher};
use revguard_core::usecases::retry::Backoff;
use revguard_sqlite::chat::OwedDeliveries;
use revguard_sqlite::SqliteStore;
use tokio::sync::Notify;

use crate::publish::JsonlPublisher;
use crate::stop::StopSignal;

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
    #[error("the PagerDuty routing key is empty")]
    EmptyRoutingKey,
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

/// PagerDuty's Events API v2 with a service's routing key. Its `Debug` shows neither.
#[derive(Clone)]
pub struct PagerDuty {
    url: reqwest::Url,
    routing_key: String,
}

impl std::fmt::Debug for PagerDuty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PagerDuty([redacted])")
    }
}

impl PagerDuty {
    /// `url` is the Events API's (PagerDuty's own unless given, e.g. for an EU account
    /// or a test double).
    pub fn new(routing_key: &str, url: Option<&str>) -> Result<Self, ChatConfigError> {
        let routing_key = routing_key.trim();
        if routing_key.is_empty() {
            return Err(ChatConfigError::EmptyRoutingKey);
        }
        let url =
            reqwest::Url::parse(url.unwrap_or(revguard_core::domain::pager::PAGERDUTY_EVENTS_URL))
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                .ok_or(ChatConfigError::NotHttp("PagerDuty events"))?;
        Ok(Self {
            url,
            routing_key: routing_key.to_owned(),
        })
    }
}

/// Where an embedded install is told: chat webhooks, PagerDuty, email (all optional).
#[derive(Debug, Clone, Default)]
pub struct Destinations {
    pub webhooks: Vec<ChatWebhook>,
    pub pagerduty: Option<PagerDuty>,
    pub email: Option<(crate::email::Smtp, crate::email::Recipients)>,
}

impl Destinations {
    /// The outbox that owes these destinations their deliveries; `None` with none.
    pub fn outbox(&self, store: &SqliteStore, link: Option<String>) -> Option<DeliveryOutbox> {
        let apps = self.webhooks.iter().map(|h| h.app).collect();
        let mut outbox = DeliveryOutbox::new(store.clone(), apps, link);
        if self.pagerduty.is_some() {
            outbox = outbox.paging();
        }
        if let Some((_, to)) = &self.email {
            outbox = outbox.emailing(to.clone());
        }
        (!outbox.is_empty()).then_some(outbox)
    }

    /// How the delivery loop reaches them.
    pub fn delivery(&self) -> Delivery {
        Delivery {
            pagerduty: self.pagerduty.clone(),
            smtp: self.email.as_ref().map(|(smtp, _)| smtp.clone()),
            ..Delivery::new(self.webhooks.clone())
        }
    }

    /// What a person starting the server is told (no secret).
    pub fn described(&self) -> String {
        let mut parts: Vec<String> = self
            .webhooks
            .iter()
            .map(|h| format!("alerts are posted to {}", h.app.as_str()))
            .collect();
        if self.pagerduty.is_some() {
            parts.push("alerts page PagerDuty".into());
        }
        if let Some((_, to)) = &self.email {
            for (what, list) in [
                ("alerts", &to.alerts),
                ("notifications", &to.team),
                ("digests", &to.finance),
            ] {
                if !list.is_empty() {
                    parts.push(format!("{what} are emailed to {}", list.join(", ")));
                }
            }
        }
        parts.join("; ")
    }
}

/// The destination names deliveries are recorded under, besides the chat apps': PagerDuty,
/// and `email:<address>`, one delivery per recipient (an address the server refuses holds
/// back no other).
pub const PAGERDUTY: &str = "pagerduty";
pub const EMAIL: &str = "email";

/// One mail per recipient, as owed deliveries.
fn emails(
    recipients: &[String],
    mail: impl Fn(&[String]) -> serde_json::Value,
) -> Vec<(String, String)> {
    recipients
        .iter()
        .map(|to| {
            let body = mail(std::slice::from_ref(to)).to_string();
            (format!("{EMAIL}:{to}"), body)
        })
        .collect()
}

/// What the embedded publishers owe, and to which destinations: recorded in the store and
/// sent by [`deliver`].
#[derive(Clone)]
pub struct DeliveryOutbox {
    store: SqliteStore,
    apps: Vec<ChatApp>,
    paging: bool,
    email: Option<crate::email::Recipients>,
    /// Shown as a button or link in each message.
    link: Option<String>,
    wake: Arc<Notify>,
}

impl DeliveryOutbox {
    pub fn new(store: SqliteStore, apps: Vec<ChatApp>, link: Option<String>) -> Self {
        Self {
            store,
            apps,
            paging: false,
            email: None,
            link,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Alert transitions are paged too.
    pub fn paging(mut self) -> Self {
        self.paging = true;
        self
    }

    /// Alerts, notifications and digests are emailed to these recipients too.
    pub fn emailing(mut self, to: crate::email::Recipients) -> Self {
        self.email = Some(to);
        self
    }

    /// Whether this outbox owes anything to anyone.
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty() && !self.paging && self.email.is_none()
    }

    /// Woken when deliveries are added, so the delivery loop sends at once.
    pub fn wake_signal(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    async fn owe(
        &self,
        id: &str,
        thread: Option<&str>,
        deliveries: Vec<(String, String)>,
    ) -> Result<(), PublishError> {
        self.owe_many(vec![OwedDeliveries {
            message_id: id.to_owned(),
            thread: thread.map(str::to_owned),
            posts: deliveries,
        }])
        .await
    }

    /// Several messages' deliveries in one commit, then the delivery loop woken.
    async fn owe_many(&self, owed: Vec<OwedDeliveries>) -> Result<(), PublishError> {
        let owed: Vec<OwedDeliveries> = owed.into_iter().filter(|o| !o.posts.is_empty()).collect();
        if owed.is_empty() {
            return Ok(());
        }
        self.store
            .add_many_chat_deliveries(owed, now_ms())
            .await
            .map_err(PublishError::new)?;
        self.wake.notify_one();
        Ok(())
    }

    async fn owe_alert(&self, m: &AlertMessage) -> Result<(), PublishError> {
        let link = self.link.as_deref();
        let mut deliveries: Vec<(String, String)> = self
            .apps
            .iter()
            .map(|app| (app.as_str().to_owned(), app.render(m, link).to_string()))
            .collect();
        if self.paging {
            if let Some(event) = revguard_core::domain::pager::pagerduty_event(m, link) {
                deliveries.push((PAGERDUTY.to_owned(), event.to_string()));
            }
        }
        if let Some(to) = &self.email {
            deliveries.extend(emails(&to.alerts, |one| {
                crate::email::alert_mail(one, m, link)
            }));
        }
        self.owe(&m.id, Some(&m.alert_id), deliveries).await
    }

    /// The team's mails for a worker batch's notifications, owed in one commit.
    async fn owe_notifications(&self, notifications: &[Notification]) -> Result<(), PublishError> {
        let Some(to) = &self.email else {
            return Ok(());
        };
        let owed = notifications
            .iter()
            .map(|n| OwedDeliveries {
                message_id: n.id.clone(),
                thread: None,
                posts: emails(&to.team, |one| crate::email::notification_mail(one, n)),
            })
            .collect();
        self.owe_many(owed).await
    }
}

impl DeliveryOutbox {
    /// A digest owes its chat posts and the finance email; owed again, nothing new.
    pub async fn owe_digest(
        &self,
        d: &revguard_core::usecases::digest::Digest,
    ) -> Result<(), PublishError> {
        let mut deliveries: Vec<(String, String)> = self
            .apps
            .iter()
            .map(|app| {
                let body = revguard_core::usecases::digest::chat_message(*app, d).to_string();
                (app.as_str().to_owned(), body)
            })
            .collect();
        if let Some(to) = &self.email {
            let (subject, text) = (d.subject(), d.text());
            deliveries.extend(emails(&to.finance, |one| {
                crate::email::digest_mail(one, &subject, &text)
            }));
        }
        self.owe(&d.id, None, deliveries).await
    }
}

/// Where embedded alert transitions go: the deliveries owed (chat, pager, email), then the
/// log and the JSONL file.
#[derive(Clone)]
pub struct AlertPublisher {
    pub file: JsonlPublisher,
    pub deliveries: Option<DeliveryOutbox>,
}

impl AlertPublisher {
    pub fn log_only() -> Self {
        Self {
            file: JsonlPublisher::log_only("alert"),
            deliveries: None,
        }
    }
}

impl Publisher<AlertMessage> for AlertPublisher {
    async fn publish(&self, m: &AlertMessage) -> Result<(), PublishError> {
        // The deliveries first: owing them again is harmless, writing a JSONL line twice
        // is not.
        if let Some(outbox) = &self.deliveries {
            outbox.owe_alert(m).await?;
        }
        self.file.publish(m).await
    }
}

/// Where embedded notifications go: the team's email if configured, then the log and the
/// JSONL file.
#[derive(Clone)]
pub struct NotificationPublisher {
    pub file: JsonlPublisher,
    pub deliveries: Option<DeliveryOutbox>,
}

impl From<JsonlPublisher> for NotificationPublisher {
    fn from(file: JsonlPublisher) -> Self {
        Self {
            file,
            deliveries: None,
        }
    }
}

impl Publisher<Notification> for NotificationPublisher {
    async fn publish(&self, n: &Notification) -> Result<(), PublishError> {
        self.publish_each(std::slice::from_ref(n))
            .await
            .pop()
            .unwrap_or(Ok(()))
    }

    /// A worker batch's notifications: their mails owed in one commit, then the file
    /// written and synced once.
    async fn publish_each(&self, notifications: &[Notification]) -> Vec<Result<(), PublishError>> {
        if let Some(outbox) = &self.deliveries {
            if let Err(e) = outbox.owe_notifications(notifications).await {
                return PublishError::for_each(notifications, &revguard_core::error_chain(&e));
            }
        }
        self.file.publish_each(notifications).await
    }
}

/// How the delivery loop sends.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub webhooks: Vec<ChatWebhook>,
    pub pagerduty: Option<PagerDuty>,
    pub smtp: Option<crate::email::Smtp>,
    pub backoff: Backoff,
    /// How long one post may take before it counts as failed.
    pub timeout: Duration,
}

impl Delivery {
    pub fn new(webhooks: Vec<ChatWebhook>) -> Self {
        Self {
            webhooks,
            pagerduty: None,
            smtp: None,
            backoff: CHAT_BACKOFF,
            timeout: Duration::from_secs(10),
        }
    }
}

async fn post(client: &reqwest::Client, url: &reqwest::Url, body: &str) -> Result<(), PostFailure> {
    let response = client
        .post(url.clone())
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
    let answer = response.text().await.unwrap_or_default();
    Err(PostFailure::http(status.as_u16(), &answer, retry_after))
}

/// The destinations a delivery loop posts to, over one HTTP client.
struct Posting<'a> {
    delivery: &'a Delivery,
    client: &'a reqwest::Client,
}

impl Poster for Posting<'_> {
    async fn post(&self, d: &OwedPost) -> Result<(), PostFailure> {
        send(self.delivery, self.client, d).await
    }
}

/// Sends one owed delivery to its destination.
async fn send(
    delivery: &Delivery,
    client: &reqwest::Client,
    d: &OwedPost,
) -> Result<(), PostFailure> {
    let not_configured = || PostFailure {
        error: format!("no {} destination is configured", d.destination),
        retry: false,
        retry_after: None,
    };
    match d.destination.as_str() {
        PAGERDUTY => {
            let pd = delivery.pagerduty.as_ref().ok_or_else(not_configured)?;
            let event = serde_json::from_str(&d.body).map_err(|e| PostFailure {
                error: format!("a stored page is not JSON: {e}"),
                retry: false,
                retry_after: None,
            })?;
            let body = revguard_core::domain::pager::with_routing_key(event, &pd.routing_key);
            post(client, &pd.url, &body.to_string()).await
        }
        app if app.starts_with("email:") => {
            let smtp = delivery.smtp.as_ref().ok_or_else(not_configured)?;
            smtp.send_stored(&d.body).await
        }
        app => {
            let hook = delivery
                .webhooks
                .iter()
                .find(|h| h.app.as_str() == app)
                .ok_or_else(not_configured)?;
            post(client, &hook.url, &d.body).await
        }
    }
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
            Ok(()) => match store.next_attempt_ms().await {
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

/// Tries every post due now (core's delivery use case over the store and these
/// destinations).
pub async fn deliver_due(
    store: &SqliteStore,
    delivery: &Delivery,
    client: &reqwest::Client,
) -> Result<(), revguard_core::StoreError> {
    let posting = Posting { delivery, client };
    revguard_core::usecases::delivery::deliver_due(store, &posting, &delivery.backoff, now_ms).await
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
        let result = post(&client, &hook.url, &body).await.map_err(|f| f.error);
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
