//! The store itself: one SQLite file, a reader connection, and the writer thread that
//! group-commits every write.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use revguard_core::ports::StoreError;
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;

use crate::schema;

/// The embedded queue has no size limit of its own; this keeps messages reasonable and
/// lets the event-log reference path be exercised locally too.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 256 * 1024;
const MAX_BATCH: usize = 1024;

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
    #[error("cannot use the database {path}")]
    Schema {
        path: PathBuf,
        #[source]
        source: schema::SchemaError,
    },
    #[error("cannot start the SQLite writer thread")]
    Thread(#[source] std::io::Error),
}

/// Unix seconds from the wall clock, for the rows' bookkeeping times (`enqueued_at`,
/// `failed_at`); the use cases get their time as a parameter.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[derive(Debug, thiserror::Error)]
#[error("the SQLite writer has stopped")]
struct WriterStopped;

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
    pub(crate) max_message_bytes: usize,
    /// Woken after each enqueue, so the embedded worker applies events at once.
    pub(crate) queue_signal: Arc<tokio::sync::Notify>,
}

fn open_connection(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // 4 MiB of page cache per connection. With payloads kept in the event log, a larger
    // cache only fills with their pages, written once and seldom read (64 MiB took the
    // server to 60-86 MB under scripts/load; 8 MiB to 30-31 MB on the renewal mix), and
    // neither the id lookups nor the mix were faster for it, even at a million stored
    // events: the kernel's page cache holds the hot pages anyway.
    conn.pragma_update(None, "cache_size", -4_096)?;
    Ok(conn)
}

impl SqliteStore {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, OpenError> {
        let path = path.as_ref().to_path_buf();
        let sqlite_err = |source| OpenError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = open_connection(&path).map_err(sqlite_err)?;
        schema::migrate(&conn).map_err(|source| OpenError::Schema {
            path: path.clone(),
            source,
        })?;
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
            let sender = sender
                .as_ref()
                .ok_or_else(|| StoreError::unavailable(WriterStopped))?;
            sender
                .send(job)
                .map_err(|_| StoreError::unavailable(WriterStopped))?;
        }
        rx.await
            .map_err(|_| StoreError::unavailable(WriterStopped))?
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
    pub fn read_now<R>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<R>,
    ) -> Result<R, StoreError> {
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
            c.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
        })
        .await
    }

    /// Stores `value` under `key`, replacing what was there.
    pub async fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(move |c| {
            c.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(|_| ())
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
            c.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
        })
        .await
    }
}

/// A value to store as a JSON column; a failure is the write's error.
pub(crate) fn json_err(e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

/// Every row of a query whose first column is a JSON document, read back.
pub(crate) fn json_rows<T: serde::de::DeserializeOwned>(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<Vec<T>> {
    c.prepare_cached(sql)?
        .query_map(params, |r| r.get::<_, String>(0))?
        .map(|s| s.and_then(from_json))
        .collect()
}

/// A JSON column read back.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(s: String) -> rusqlite::Result<T> {
    serde_json::from_str(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
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

#[cfg(test)]
mod tests {
    use revguard_core::ports::EventLog;
    use revguard_core::QueueMessage;
    use revguard_testkit::contract;

    use super::*;

    fn temp_store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("t.db")).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn keeps_the_billing_and_alert_contracts() {
        let (_dir, store) = temp_store();
        let counters = crate::billing::SqliteCounters {
            store: store.clone(),
            received_before: None,
        };
        contract::billing_store_contract(&store, &counters, "sqlite").await;
        contract::alert_store_contract(&store, &store, || {}, "sqlite").await;
    }

    #[tokio::test]
    async fn keeps_connected_accounts_apart() {
        let (_dir, store) = temp_store();
        let counters = crate::billing::SqliteCounters {
            store: store.clone(),
            received_before: None,
        };
        contract::accounts_contract(&store, &counters, "sqlite").await;
        // The platform's own contract still holds beside them, in the same store.
        contract::billing_store_contract(&store, &counters, "sqlite").await;
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
        let decoded: Vec<_> = bodies
            .iter()
            .map(|b| QueueMessage::decode(b).unwrap())
            .collect();
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
        assert_eq!(
            store.setting("b").await.unwrap(),
            None,
            "the failed write left nothing"
        );
        assert_eq!(store.setting("c").await.unwrap().as_deref(), Some("3"));
    }

    #[tokio::test]
    async fn settings_insert_once_and_expired_events_are_purged() {
        let (_dir, store) = temp_store();
        assert_eq!(
            store.setting_or_insert("k", "first").await.unwrap(),
            "first"
        );
        assert_eq!(
            store.setting_or_insert("k", "second").await.unwrap(),
            "first"
        );
        let mut old = contract::sample_record("evt_old", 1_000);
        old.expires_at = 2_000;
        store.insert_if_absent(&old).await.unwrap();
        store
            .insert_if_absent(&contract::sample_record("evt_new", 1_000_000))
            .await
            .unwrap();
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
