//! The embedded store: the event log, the queue and settings in one SQLite file.
//!
//! Durability first: WAL with `synchronous=FULL`, so a write is on disk before its caller
//! hears success (Stripe never resends an event it saw acknowledged). Speed comes from
//! group commit, not from a weaker sync: one writer thread takes every write waiting
//! for it, runs each in its own savepoint inside one transaction, and commits them with
//! one fsync. A write that fails rolls back alone; the others in its batch still commit.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use revguard_core::message::QueueMessage;
use revguard_core::ports::{
    EventLog, EventRecord, EventStatus, InsertOutcome, Queue, QueueError, StoreError,
};
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;

/// The embedded queue has no size limit of its own; this keeps messages reasonable and
/// lets the event-log reference path be exercised locally too.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 256 * 1024;
const MAX_BATCH: usize = 1024;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    event_id       TEXT NOT NULL UNIQUE,
    event_type     TEXT NOT NULL,
    created        INTEGER NOT NULL,
    livemode       INTEGER NOT NULL,
    received_at    INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    status         TEXT NOT NULL,
    stored_payload BLOB
);
CREATE INDEX IF NOT EXISTS events_expires_at ON events (expires_at);
CREATE TABLE IF NOT EXISTS queue (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    livemode    INTEGER NOT NULL,
    body        TEXT NOT NULL,
    enqueued_at INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    visible_at  INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

type Reply = Box<dyn FnOnce(Result<(), Arc<rusqlite::Error>>) + Send>;
/// A write handed to the writer thread: given the connection inside the batch's
/// transaction (or `None` when the transaction could not begin), it runs and returns
/// the reply to send once the commit's fate is known.
type Job = Box<dyn FnOnce(Option<&Connection>) -> Reply + Send>;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the SQLite database {path}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot start the SQLite writer thread")]
    Thread(#[source] std::io::Error),
}

#[derive(Debug, thiserror::Error)]
#[error("the SQLite writer has stopped")]
struct WriterStopped;

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

/// Counts of the event log by status.
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq, Eq)]
pub struct EventCounts {
    pub received: u64,
    pub queued: u64,
    pub queue_depth: u64,
    pub applied: u64,
    pub dead_letters: u64,
}

struct Writer {
    sender: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// A cheap handle to the store; clones share the writer and the reader.
#[derive(Clone)]
pub struct SqliteStore {
    writer: Arc<Writer>,
    reader: Arc<Mutex<Connection>>,
    path: PathBuf,
    max_message_bytes: usize,
    /// Woken after each enqueue, so the embedded worker applies events at once.
    queue_signal: Arc<tokio::sync::Notify>,
}

fn open_connection(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // A larger page cache keeps the event-id index in memory as the log grows.
    conn.pragma_update(None, "cache_size", -65_536)?;
    Ok(conn)
}

impl SqliteStore {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, OpenError> {
        let path = path.as_ref().to_path_buf();
        let sqlite_err = |source| OpenError::Sqlite { path: path.clone(), source };
        let conn = open_connection(&path).map_err(sqlite_err)?;
        conn.execute_batch(SCHEMA).map_err(sqlite_err)?;
        conn.execute_batch(crate::worker::SCHEMA).map_err(sqlite_err)?;
        conn.execute_batch(crate::detector::SCHEMA).map_err(sqlite_err)?;
        let reader = open_connection(&path).map_err(sqlite_err)?;

        let (sender, receiver) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(conn, receiver))
            .map_err(OpenError::Thread)?;
        Ok(Self {
            writer: Arc::new(Writer {
                sender: Mutex::new(Some(sender)),
                thread: Mutex::new(Some(thread)),
            }),
            reader: Arc::new(Mutex::new(reader)),
            path,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            queue_signal: Arc::new(tokio::sync::Notify::new()),
        })
    }

    pub fn with_max_message_bytes(mut self, max: usize) -> Self {
        self.max_message_bytes = max;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn queue_signal(&self) -> Arc<tokio::sync::Notify> {
        self.queue_signal.clone()
    }

    /// Runs `f` in the next group commit; resolves once its effects are on disk.
    pub async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<R, StoreError>>();
        let job: Job = Box::new(move |conn: Option<&Connection>| {
            let result = conn.map(|c| run_in_savepoint(c, f));
            Box::new(move |commit: Result<(), Arc<rusqlite::Error>>| {
                let outcome = match (result, commit) {
                    (Some(Ok(r)), Ok(())) => Ok(r),
                    (Some(Err(e)), _) => Err(StoreError::unavailable(e)),
                    (_, Err(e)) => Err(StoreError::unavailable(e)),
                    (None, Ok(())) => Err(StoreError::unavailable(WriterStopped)),
                };
                // The caller may have gone (client disconnected); the write stands.
                let _ = tx.send(outcome);
            })
        });
        {
            let sender = self.writer.sender.lock().expect("writer lock");
            let sender = sender.as_ref().ok_or_else(|| StoreError::unavailable(WriterStopped))?;
            sender.send(job).map_err(|_| StoreError::unavailable(WriterStopped))?;
        }
        rx.await.map_err(|_| StoreError::unavailable(WriterStopped))?
    }

    /// Runs a read on the reader connection, off the async threads.
    pub async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().expect("reader lock");
            f(&conn)
        })
        .await
        .map_err(StoreError::unavailable)?
        .map_err(StoreError::unavailable)
    }

    /// Synchronous read, for the CLI and start-up.
    pub fn read_now<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R, StoreError> {
        let conn = self.reader.lock().expect("reader lock");
        f(&conn).map_err(StoreError::unavailable)
    }

    /// Stops the writer after every write already handed to it has committed.
    pub fn close(&self) {
        self.writer.sender.lock().expect("writer lock").take();
        if let Some(thread) = self.writer.thread.lock().expect("writer lock").take() {
            let _ = thread.join();
        }
    }

    pub async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_owned();
        self.read(move |c| {
            c.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| r.get(0))
                .optional()
        })
        .await
    }

    /// Stores `value` under `key` unless a value is there; returns the value that stands.
    pub async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(move |c| {
            c.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO NOTHING",
                params![key, value],
            )?;
            c.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| r.get(0))
        })
        .await
    }

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

    pub fn counts(&self) -> Result<EventCounts, StoreError> {
        self.read_now(|c| {
            let mut counts = EventCounts::default();
            let mut stmt = c.prepare("SELECT status, count(*) FROM events GROUP BY status")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let n: i64 = row.get(1)?;
                match row.get::<_, String>(0)?.as_str() {
                    "received" => counts.received = n as u64,
                    "queued" => counts.queued = n as u64,
                    _ => {}
                }
            }
            let count = |table: &str| -> rusqlite::Result<u64> {
                c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get::<_, i64>(0)).map(|n| n as u64)
            };
            counts.queue_depth = count("queue")?;
            counts.applied = count("applied")?;
            counts.dead_letters = count("dead_letters")?;
            Ok(counts)
        })
    }

    /// Deletes event-log entries past their expiry (the embedded TTL).
    pub async fn purge_expired(&self, now: i64) -> Result<usize, StoreError> {
        self.write(move |c| c.execute("DELETE FROM events WHERE expires_at < ?1", [now])).await
    }

    /// Fills the event log with `n` synthetic, already-queued entries in one transaction,
    /// for measuring throughput against a large log.
    pub async fn prefill_events(&self, n: usize, now: i64) -> Result<(), StoreError> {
        self.write(move |c| {
            let mut stmt = c.prepare(
                "INSERT INTO events (event_id, event_type, created, livemode, received_at, expires_at, status)
                 VALUES (?1, 'invoice.paid', ?2, 0, ?2, ?3, 'queued') ON CONFLICT(event_id) DO NOTHING",
            )?;
            for i in 0..n {
                // Pseudo-random ids spread inserts over the whole index, as real ids do.
                let id = format!("evt_prefill_{:016x}", (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                stmt.execute(params![id, now, now + 30 * 86_400])?;
            }
            Ok(())
        })
        .await
    }
}

/// A value to store as a JSON column; a failure is the write's error.
pub(crate) fn json_err(e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

/// A JSON column read back.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(s: String) -> rusqlite::Result<T> {
    serde_json::from_str(&s)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

fn run_in_savepoint<R>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> rusqlite::Result<R>,
) -> rusqlite::Result<R> {
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    match f(conn) {
        Ok(r) => {
            conn.prepare_cached("RELEASE job")?.execute([])?;
            Ok(r)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
            Err(e)
        }
    }
}

fn writer_loop(conn: Connection, jobs: mpsc::Receiver<Job>) {
    // Ends when every sender is gone, after draining what was sent.
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let e = Arc::new(e);
            for job in batch {
                job(None)(Err(e.clone()));
            }
            continue;
        }
        let replies: Vec<Reply> = batch.into_iter().map(|job| job(Some(&conn))).collect();
        let commit = conn.execute_batch("COMMIT").map_err(Arc::new);
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for reply in replies {
            reply(commit.clone());
        }
    }
}

fn status_of(s: &str) -> Result<EventStatus, rusqlite::Error> {
    EventStatus::parse(s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("unknown event status {s:?}").into(),
        )
    })
}

impl EventLog for SqliteStore {
    async fn insert_if_absent(&self, record: &EventRecord) -> Result<InsertOutcome, StoreError> {
        let r = record.clone();
        self.write(move |c| {
            let inserted = c
                .prepare_cached(
                    "INSERT INTO events (event_id, event_type, created, livemode, received_at,
                                         expires_at, status, stored_payload)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(event_id) DO NOTHING",
                )?
                .execute(params![
                    r.event_id,
                    r.event_type,
                    r.created,
                    r.livemode,
                    r.received_at,
                    r.expires_at,
                    r.status.as_str(),
                    r.stored_payload,
                ])?;
            if inserted == 1 {
                return Ok(InsertOutcome::Inserted);
            }
            let status: String = c
                .prepare_cached("SELECT status FROM events WHERE event_id = ?1")?
                .query_row([&r.event_id], |row| row.get(0))?;
            Ok(InsertOutcome::AlreadyPresent(status_of(&status)?))
        })
        .await
    }

    async fn mark_queued(&self, event_id: &str) -> Result<(), StoreError> {
        let id = event_id.to_owned();
        self.write(move |c| {
            c.prepare_cached("UPDATE events SET status = 'queued' WHERE event_id = ?1")?
                .execute([id])
                .map(|_| ())
        })
        .await
    }

    async fn stored_payload(&self, event_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let id = event_id.to_owned();
        self.read(move |c| {
            c.prepare_cached("SELECT stored_payload FROM events WHERE event_id = ?1")?
                .query_row([id], |r| r.get::<_, Option<Vec<u8>>>(0))
                .optional()
                .map(Option::flatten)
        })
        .await
    }
}

impl Queue for SqliteStore {
    fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    async fn send(&self, message: &QueueMessage) -> Result<(), QueueError> {
        let body = message.encode_within(self.max_message_bytes)?;
        let (id, event_type, livemode) =
            (message.event_id.clone(), message.event_type.clone(), message.livemode);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
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

#[cfg(test)]
mod tests {
    use revguard_core::contract;

    use super::*;

    fn temp_store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("t.db")).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn keeps_the_event_log_contract() {
        let (_dir, store) = temp_store();
        contract::event_log_contract(&store, "sqlite").await;
        contract::event_log_race_contract(&store, "sqlite").await;
    }

    #[tokio::test]
    async fn keeps_the_queue_contract_and_messages_survive_a_reopen() {
        let (dir, store) = temp_store();
        let messages = contract::sample_messages("sqlite");
        contract::queue_send_contract(&store, &messages).await;
        store.close();
        let reopened = SqliteStore::open(dir.path().join("t.db")).unwrap();
        let bodies = reopened.queued_bodies(10).unwrap();
        let decoded: Vec<_> = bodies.iter().map(|b| QueueMessage::decode(b).unwrap()).collect();
        assert_eq!(decoded, messages);
        let listed = reopened.queued(10).unwrap();
        assert_eq!(listed[0].event_type, "charge.refunded");
        assert!(listed[0].livemode);
    }

    #[tokio::test]
    async fn a_failing_write_rolls_back_alone_in_its_group() {
        let (_dir, store) = temp_store();
        let good = store.write(|c| c.execute("INSERT INTO settings VALUES ('a', '1')", []));
        let bad = store.write(|c| {
            c.execute("INSERT INTO settings VALUES ('b', '2')", [])?;
            c.execute("INSERT INTO no_such_table VALUES (1)", [])
        });
        let good2 = store.write(|c| c.execute("INSERT INTO settings VALUES ('c', '3')", []));
        let (good, bad, good2) = tokio::join!(good, bad, good2);
        assert!(good.is_ok() && good2.is_ok());
        assert!(bad.is_err());
        assert_eq!(store.setting("a").await.unwrap().as_deref(), Some("1"));
        assert_eq!(store.setting("b").await.unwrap(), None, "the failed write left nothing");
        assert_eq!(store.setting("c").await.unwrap().as_deref(), Some("3"));
    }

    #[tokio::test]
    async fn settings_insert_once_and_expired_events_are_purged() {
        let (_dir, store) = temp_store();
        assert_eq!(store.setting_or_insert("k", "first").await.unwrap(), "first");
        assert_eq!(store.setting_or_insert("k", "second").await.unwrap(), "first");
        let mut old = contract::sample_record("evt_old", 1_000);
        old.expires_at = 2_000;
        store.insert_if_absent(&old).await.unwrap();
        store.insert_if_absent(&contract::sample_record("evt_new", 1_000_000)).await.unwrap();
        assert_eq!(store.purge_expired(3_000).await.unwrap(), 1);
        assert_eq!(store.counts().unwrap().received, 1);
    }

    #[tokio::test]
    async fn writes_after_close_fail_cleanly() {
        let (_dir, store) = temp_store();
        store.close();
        assert!(store.setting_or_insert("k", "v").await.is_err());
    }
}
