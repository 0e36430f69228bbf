//! Chat deliveries: the posts to Slack and Teams incoming webhooks that alert transitions
//! owe, one row per message and app. Publishing an alert adds its rows (a message
//! published again adds nothing: the row stays after delivery); a delivery loop posts what
//! is due, and records each outcome with the next attempt's time.

use revguard_core::ports::{OwedPost, PostOutbox, PostOutcome, StoreError};
use rusqlite::params;

use crate::store::SqliteStore;

/// Where a delivery stands, for the operator and the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatDeliveryStatus {
    pub message_id: String,
    pub app: String,
    pub attempts: u32,
    pub delivered: bool,
    pub given_up: bool,
    pub last_error: Option<String>,
}

/// A delivery waits behind an earlier one of its thread to the same app that is still
/// owed (a resolve behind its trigger's retries); it is due once that one is delivered or
/// given up.
const NOT_BEHIND: &str = "NOT EXISTS (
    SELECT 1 FROM chat_deliveries e
    WHERE d.thread IS NOT NULL AND e.app = d.app AND e.thread = d.thread AND e.seq < d.seq
      AND e.delivered_at IS NULL AND e.given_up_at IS NULL)";

/// What one message owes: a body for each destination (`slack`, `pagerduty`,
/// `email:<address>`…), in order behind earlier messages of its thread.
#[derive(Debug, Clone)]
pub struct OwedDeliveries {
    pub message_id: String,
    pub thread: Option<String>,
    pub posts: Vec<(String, String)>,
}

impl SqliteStore {
    /// Owes `posts` (app, JSON body) for `message_id`; those already owed or made stay as
    /// they are. Deliveries of one `thread` (an alert's transitions) go out to each app in
    /// the order they were owed.
    pub async fn add_chat_deliveries(
        &self,
        message_id: &str,
        thread: Option<&str>,
        posts: Vec<(String, String)>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let owed = OwedDeliveries {
            message_id: message_id.to_owned(),
            thread: thread.map(str::to_owned),
            posts,
        };
        self.add_many_chat_deliveries(vec![owed], now_ms).await
    }

    /// The deliveries of several messages, in one commit.
    pub async fn add_many_chat_deliveries(
        &self,
        owed: Vec<OwedDeliveries>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.write(move |c| {
            let mut insert = c.prepare_cached(
                "INSERT INTO chat_deliveries (message_id, app, body, created_at, next_attempt_ms, thread, seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6,
                         (SELECT coalesce(max(seq), 0) + 1 FROM chat_deliveries))
                 ON CONFLICT(message_id, app) DO NOTHING",
            )?;
            for message in owed {
                for (app, body) in message.posts {
                    insert.execute(params![
                        message.message_id,
                        app,
                        body,
                        now_ms / 1000,
                        now_ms,
                        message.thread
                    ])?;
                }
            }
            Ok(())
        })
        .await
    }
}

/// The delivery outbox of core's delivery use case, over the `chat_deliveries` table.
impl PostOutbox for SqliteStore {
    async fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<OwedPost>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT message_id, app, body, attempts FROM chat_deliveries d
                     WHERE delivered_at IS NULL AND given_up_at IS NULL AND next_attempt_ms <= ?1
                     AND {NOT_BEHIND} ORDER BY next_attempt_ms, seq LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![now_ms, limit as i64], |r| {
                Ok(OwedPost {
                    message_id: r.get(0)?,
                    destination: r.get(1)?,
                    body: r.get(2)?,
                    attempts: r.get(3)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn next_attempt_ms(&self) -> Result<Option<i64>, StoreError> {
        self.read(|c| {
            c.query_row(
                &format!(
                    "SELECT MIN(next_attempt_ms) FROM chat_deliveries d
                     WHERE delivered_at IS NULL AND given_up_at IS NULL AND {NOT_BEHIND}"
                ),
                [],
                |r| r.get(0),
            )
        })
        .await
    }

    async fn record(
        &self,
        post: &OwedPost,
        outcome: PostOutcome,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (message_id, app) = (post.message_id.clone(), post.destination.clone());
        let now = now_ms / 1000;
        self.write(move |c| {
            match outcome {
                PostOutcome::Delivered => c.execute(
                    "UPDATE chat_deliveries SET attempts = attempts + 1, delivered_at = ?3, last_error = NULL
                     WHERE message_id = ?1 AND app = ?2",
                    params![message_id, app, now],
                )?,
                PostOutcome::RetryAt { at_ms, error } => c.execute(
                    "UPDATE chat_deliveries SET attempts = attempts + 1, next_attempt_ms = ?3, last_error = ?4
                     WHERE message_id = ?1 AND app = ?2",
                    params![message_id, app, at_ms, error],
                )?,
                PostOutcome::GiveUp { error } => c.execute(
                    "UPDATE chat_deliveries SET attempts = attempts + 1, given_up_at = ?3, last_error = ?4
                     WHERE message_id = ?1 AND app = ?2",
                    params![message_id, app, now, error],
                )?,
            };
            Ok(())
        })
        .await
    }
}

impl SqliteStore {
    /// Every delivery, newest first.
    pub fn chat_deliveries(&self) -> Result<Vec<ChatDeliveryStatus>, StoreError> {
        self.read_now(|c| {
            let mut stmt = c.prepare(
                "SELECT message_id, app, attempts, delivered_at IS NOT NULL, given_up_at IS NOT NULL, last_error
                 FROM chat_deliveries ORDER BY created_at DESC, message_id, app",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(ChatDeliveryStatus {
                    message_id: r.get(0)?,
                    app: r.get(1)?,
                    attempts: r.get(2)?,
                    delivered: r.get(3)?,
                    given_up: r.get(4)?,
                    last_error: r.get(5)?,
                })
            })?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_message_owed_again_adds_nothing_even_once_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("chat.db")).unwrap();
        let posts = || vec![("slack".to_owned(), "{}".to_owned())];
        store
            .add_chat_deliveries("a:1", Some("a"), posts(), 1_000)
            .await
            .unwrap();
        store
            .add_chat_deliveries("a:1", Some("a"), posts(), 2_000)
            .await
            .unwrap();
        let due = store.due(5_000, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        store
            .record(&due[0], PostOutcome::Delivered, 5_000)
            .await
            .unwrap();
        store
            .add_chat_deliveries("a:1", Some("a"), posts(), 6_000)
            .await
            .unwrap();
        assert!(store.due(9_000, 10).await.unwrap().is_empty());
        assert_eq!(store.next_attempt_ms().await.unwrap(), None);
        let status = store.chat_deliveries().unwrap();
        assert_eq!(
            (status.len(), status[0].attempts, status[0].delivered),
            (1, 1, true)
        );
    }

    #[tokio::test]
    async fn a_resolve_waits_behind_its_triggers_retries_for_the_same_app_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("chat.db")).unwrap();
        let to = |app: &str| vec![(app.to_owned(), "{}".to_owned())];
        store
            .add_chat_deliveries("a:1", Some("a"), to("pagerduty"), 1_000)
            .await
            .unwrap();
        let first = store.due(1_000, 10).await.unwrap();
        let retry = PostOutcome::RetryAt {
            at_ms: 9_000,
            error: "HTTP 500".into(),
        };
        store.record(&first[0], retry, 1_000).await.unwrap();
        store
            .add_chat_deliveries("a:2", Some("a"), to("pagerduty"), 2_000)
            .await
            .unwrap();
        store
            .add_chat_deliveries("b:1", Some("b"), to("pagerduty"), 2_000)
            .await
            .unwrap();
        store
            .add_chat_deliveries("a:2", Some("a"), to("slack"), 2_000)
            .await
            .unwrap();
        let due: Vec<(String, String)> = store
            .due(2_000, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|d| (d.message_id, d.destination))
            .collect();
        assert_eq!(
            due,
            [
                ("b:1".to_owned(), "pagerduty".to_owned()),
                ("a:2".to_owned(), "slack".to_owned())
            ]
        );
        // Nothing blocked counts as due: the loop sleeps until the trigger's retry.
        let b = store.due(2_000, 10).await.unwrap();
        for d in &b {
            store
                .record(d, PostOutcome::Delivered, 2_000)
                .await
                .unwrap();
        }
        assert_eq!(store.next_attempt_ms().await.unwrap(), Some(9_000));
        let retried = store.due(9_000, 10).await.unwrap();
        assert_eq!(retried.len(), 1);
        assert_eq!(retried[0].message_id, "a:1");
        store
            .record(&retried[0], PostOutcome::Delivered, 9_000)
            .await
            .unwrap();
        let resolve = store.due(9_000, 10).await.unwrap();
        assert_eq!(resolve[0].message_id, "a:2");
    }

    #[tokio::test]
    async fn a_retry_waits_for_its_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("chat.db")).unwrap();
        store
            .add_chat_deliveries("a:1", Some("a"), vec![("teams".into(), "{}".into())], 1_000)
            .await
            .unwrap();
        let due = store.due(1_000, 10).await.unwrap();
        let retry = PostOutcome::RetryAt {
            at_ms: 4_000,
            error: "HTTP 503".into(),
        };
        store.record(&due[0], retry, 1_000).await.unwrap();
        assert!(store.due(3_999, 10).await.unwrap().is_empty());
        assert_eq!(store.next_attempt_ms().await.unwrap(), Some(4_000));
        let again = store.due(4_000, 10).await.unwrap();
        assert_eq!(again[0].attempts, 1);
        let give_up = PostOutcome::GiveUp {
            error: "HTTP 404".into(),
        };
        store.record(&again[0], give_up, 4_000).await.unwrap();
        assert!(store.due(i64::MAX, 10).await.unwrap().is_empty());
        let status = &store.chat_deliveries().unwrap()[0];
        assert!(status.given_up && !status.delivered);
        assert_eq!(status.last_error.as_deref(), Some("HTTP 404"));
    }
}
