//! The embedded queue: a durable table the in-process consumer takes batches from, with
//! the same delivery semantics as SQS (a receive count, a delayed redelivery, dead letters).

use revguard_core::domain::message::QueueMessage;
use revguard_core::ports::{
    DeadLetter, DeadLetterAdmin, DeadLetters, Inbound, Queue, QueueError, StoreError,
};
use rusqlite::params;

use crate::store::SqliteStore;

/// A queued message as listed by the operator CLI.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QueuedMessage {
    pub seq: i64,
    pub event_id: String,
    pub event_type: String,
    pub livemode: bool,
    pub enqueued_at: i64,
    pub bytes: usize,
}

impl SqliteStore {
    pub fn queued(&self, limit: usize) -> Result<Vec<QueuedMessage>, StoreError> {
        self.read_now(|c| {
            let mut stmt = c.prepare(
                "SELECT seq, event_id, event_type, livemode, enqueued_at, length(body)
                 FROM queue ORDER BY seq LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit as i64], |r| {
                Ok(QueuedMessage {
                    seq: r.get(0)?,
                    event_id: r.get(1)?,
                    event_type: r.get(2)?,
                    livemode: r.get(3)?,
                    enqueued_at: r.get(4)?,
                    bytes: r.get::<_, i64>(5)? as usize,
                })
            })?;
            rows.collect()
        })
    }

    /// The encoded message bodies waiting in the queue, oldest first.
    pub fn queued_bodies(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        self.read_now(|c| {
            let mut stmt = c.prepare("SELECT body FROM queue ORDER BY seq LIMIT ?1")?;
            let rows = stmt.query_map([limit as i64], |r| r.get(0))?;
            rows.collect()
        })
    }
}

impl Queue for SqliteStore {
    fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    async fn send(&self, message: &QueueMessage) -> Result<(), QueueError> {
        let body = message.encode_within(self.max_message_bytes)?;
        let (id, event_type, livemode) = (
            message.event_id.clone(),
            message.event_type.clone(),
            message.livemode,
        );
        let now = crate::store::unix_now();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO queue (event_id, event_type, livemode, body, enqueued_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![id, event_type, livemode, body, now])
            .map(|_| ())
        })
        .await
        .map_err(|e| match e {
            StoreError::Unavailable(source) => QueueError::Unavailable(source),
            other => QueueError::unavailable(other),
        })?;
        self.queue_signal.notify_one();
        Ok(())
    }
}

/// A queued message is taken by the consumer and settled after the use case ran.
impl SqliteStore {
    /// Up to `limit` visible messages, oldest first, as deliveries (the receive count
    /// includes this one). Nothing is written: the single consumer settles each one.
    pub async fn take(&self, now: i64, limit: usize) -> Result<Vec<Inbound>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, body, enqueued_at, receive_count FROM queue WHERE visible_at <= ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![now, limit as i64], |r| {
                Ok(Inbound {
                    id: r.get::<_, i64>(0)?.to_string(),
                    body: r.get(1)?,
                    sent_at: Some(r.get(2)?),
                    receive_count: r.get::<_, i64>(3)? as u32 + 1,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Removes the messages done with, and delays each one to retry by its own delay
    /// (counting the delivery), in one write.
    pub async fn settle(
        &self,
        done: Vec<String>,
        retry: Vec<(String, i64)>,
    ) -> Result<(), StoreError> {
        if done.is_empty() && retry.is_empty() {
            return Ok(());
        }
        self.write(move |c| {
            for id in &done {
                c.prepare_cached("DELETE FROM queue WHERE seq = ?1")?.execute([id])?;
            }
            for (id, visible_at) in &retry {
                c.prepare_cached("UPDATE queue SET receive_count = receive_count + 1, visible_at = ?2 WHERE seq = ?1")?
                    .execute(params![id, visible_at])?;
            }
            Ok(())
        })
        .await
    }

    pub fn dead_letter_count(&self) -> Result<u64, StoreError> {
        self.read_now(|c| {
            c.query_row("SELECT count(*) FROM dead_letters", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
        })
    }
}

impl DeadLetters for SqliteStore {
    /// Moves the message from the queue to `dead_letters`, with the reason.
    async fn dead_letter(&self, message: &Inbound, reason: &str) -> Result<(), StoreError> {
        let (id, reason, receive_count) =
            (message.id.clone(), reason.to_owned(), message.receive_count);
        let now = crate::store::unix_now();
        self.write(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO dead_letters (seq, event_id, body, error, receive_count, failed_at)
                 SELECT seq, event_id, body, ?2, ?3, ?4 FROM queue WHERE seq = ?1",
                params![id, reason, receive_count, now],
            )?;
            c.execute("DELETE FROM queue WHERE seq = ?1", [&id])?;
            Ok(())
        })
        .await
    }
}

fn dead_letter_row(r: &rusqlite::Row<'_>, with_body: bool) -> rusqlite::Result<DeadLetter> {
    let body: String = r.get(2)?;
    let message = QueueMessage::decode(&body).ok();
    Ok(DeadLetter {
        id: r.get::<_, i64>(0)?.to_string(),
        event_id: Some(r.get(1)?),
        event_type: message.map(|m| m.event_type),
        error: Some(r.get(3)?),
        receive_count: r.get::<_, i64>(4)? as u32,
        failed_at: Some(r.get(5)?),
        body: with_body.then_some(body),
    })
}

impl DeadLetterAdmin for SqliteStore {
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare(
                "SELECT seq, event_id, body, error, receive_count, failed_at FROM dead_letters ORDER BY seq LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit as i64], |r| dead_letter_row(r, false))?;
            rows.collect()
        })
        .await
    }

    async fn dead_letter_by_id(&self, id: &str) -> Result<Option<DeadLetter>, StoreError> {
        let Ok(seq) = id.parse::<i64>() else {
            return Ok(None);
        };
        self.read(move |c| {
            use rusqlite::OptionalExtension;
            c.query_row(
                "SELECT seq, event_id, body, error, receive_count, failed_at FROM dead_letters WHERE seq = ?1",
                [seq],
                |r| dead_letter_row(r, true),
            )
            .optional()
        })
        .await
    }

    /// Back to the queue in one transaction, visible at once, with a fresh receive count.
    async fn redrive(&self, ids: Option<&[String]>) -> Result<usize, StoreError> {
        let ids: Option<Vec<i64>> =
            ids.map(|ids| ids.iter().filter_map(|i| i.parse().ok()).collect());
        let now = crate::store::unix_now();
        let moved = self
            .write(move |c| {
                let seqs: Vec<i64> = match ids {
                    Some(ids) => ids,
                    None => {
                        let mut stmt = c.prepare("SELECT seq FROM dead_letters ORDER BY seq")?;
                        let rows = stmt.query_map([], |r| r.get(0))?;
                        rows.collect::<rusqlite::Result<_>>()?
                    }
                };
                let mut moved = 0;
                for seq in seqs {
                    let row: Option<(String, String)> = {
                        use rusqlite::OptionalExtension;
                        c.query_row(
                            "SELECT event_id, body FROM dead_letters WHERE seq = ?1",
                            [seq],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .optional()?
                    };
                    let Some((event_id, body)) = row else { continue };
                    let (event_type, livemode) = QueueMessage::decode(&body)
                        .map(|m| (m.event_type, m.livemode))
                        .unwrap_or_else(|_| ("unknown".into(), false));
                    c.execute(
                        "INSERT INTO queue (event_id, event_type, livemode, body, enqueued_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![event_id, event_type, livemode, body, now],
                    )?;
                    c.execute("DELETE FROM dead_letters WHERE seq = ?1", [seq])?;
                    moved += 1;
                }
                Ok(moved)
            })
            .await?;
        if moved > 0 {
            self.queue_signal.notify_one();
        }
        Ok(moved)
    }
}
