//! The embedded worker: takes events from the durable SQLite queue and applies each one
//! exactly once — the applied marker, state, case, counters, the notification outbox and
//! the queue row's removal commit in one transaction. Notifications are published from
//! the outbox after the commit (log + JSONL file) and removed once published, so a crash
//! re-publishes rather than forgets, and a redelivered event never adds new ones.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use revguard_core::billing::counters::CounterOp;
use revguard_core::billing::{
    decide, keys_of, BillingEvent, BillingPolicy, Current, CustomerState, DunningCase, Effects, Notification,
    SubscriptionState,
};
use revguard_core::message::{decompress, Payload, QueueMessage};
use revguard_core::StoreError;
use rusqlite::{params, Connection, OptionalExtension};

use crate::sqlite::{from_json, json_err, SqliteStore};

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS applied (
    event_id   TEXT PRIMARY KEY,
    applied_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subscriptions (
    id       TEXT PRIMARY KEY,
    customer TEXT,
    livemode INTEGER NOT NULL,
    status   TEXT NOT NULL,
    state    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS subscriptions_customer ON subscriptions (customer);
CREATE TABLE IF NOT EXISTS dunning_cases (
    invoice_id TEXT PRIMARY KEY,
    customer   TEXT,
    livemode   INTEGER NOT NULL,
    stage      TEXT,
    opened_at  INTEGER,
    state      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS dunning_cases_customer ON dunning_cases (customer);
CREATE INDEX IF NOT EXISTS dunning_cases_stage ON dunning_cases (stage);
CREATE TABLE IF NOT EXISTS customers (
    id    TEXT PRIMARY KEY,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS charge_customers (
    charge_id TEXT PRIMARY KEY,
    customer  TEXT NOT NULL
) WITHOUT ROWID;
-- Hourly counters, also split by the minute their events were received, so that a
-- detection can be replayed as of any past moment (`revguard detect --at`).
CREATE TABLE IF NOT EXISTS counters (
    livemode     INTEGER NOT NULL,
    hour         INTEGER NOT NULL,
    metric       TEXT NOT NULL,
    received_min INTEGER NOT NULL,
    value        INTEGER NOT NULL,
    PRIMARY KEY (livemode, hour, metric, received_min)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    id           TEXT PRIMARY KEY,
    notification TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq           INTEGER PRIMARY KEY,
    event_id      TEXT NOT NULL,
    body          TEXT NOT NULL,
    error         TEXT NOT NULL,
    receive_count INTEGER NOT NULL,
    failed_at     INTEGER NOT NULL
);
";

/// Attempts before a message is moved to `dead_letters` (SQS's maxReceiveCount).
pub const MAX_RECEIVES: i64 = 5;
const BATCH: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageOutcome {
    Applied { notifications: usize },
    Duplicate,
    /// Cannot ever apply: moved to the dead letters at once.
    Poison(String),
}



fn load(c: &Connection, event: &BillingEvent) -> rusqlite::Result<Current> {
    let keys = keys_of(event);
    let get = |sql: &str, key: &Option<String>| -> rusqlite::Result<Option<String>> {
        match key {
            Some(k) => c.prepare_cached(sql)?.query_row([k], |r| r.get(0)).optional(),
            None => Ok(None),
        }
    };
    let charge_customer = get("SELECT customer FROM charge_customers WHERE charge_id = ?1", &keys.charge)?;
    let customer_id = keys.customer.clone().or_else(|| charge_customer.clone());
    Ok(Current {
        subscription: get("SELECT state FROM subscriptions WHERE id = ?1", &keys.subscription)?
            .map(from_json)
            .transpose()?,
        case: get("SELECT state FROM dunning_cases WHERE invoice_id = ?1", &keys.invoice)?.map(from_json).transpose()?,
        customer: get("SELECT state FROM customers WHERE id = ?1", &customer_id)?.map(from_json).transpose()?,
        charge_customer,
    })
}

fn commit(c: &Connection, event: &BillingEvent, fx: &Effects, policy: &BillingPolicy, now: i64) -> rusqlite::Result<()> {
    c.prepare_cached("INSERT INTO applied (event_id, applied_at) VALUES (?1, ?2)")?.execute(params![event.id, now])?;
    if let Some(s) = &fx.subscription {
        c.prepare_cached(
            "INSERT INTO subscriptions (id, customer, livemode, status, state) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(id) DO UPDATE SET customer = excluded.customer, status = excluded.status, state = excluded.state",
        )?
        .execute(params![s.id, s.customer, s.livemode, s.status, serde_json::to_string(s).map_err(json_err)?])?;
    }
    if let Some(case) = &fx.case {
        c.prepare_cached(
            "INSERT INTO dunning_cases (invoice_id, customer, livemode, stage, opened_at, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(invoice_id) DO UPDATE SET customer = excluded.customer, stage = excluded.stage,
                 opened_at = excluded.opened_at, state = excluded.state",
        )?
        .execute(params![
            case.invoice_id,
            case.customer,
            case.livemode,
            case.stage(policy).map(|s| s.as_str()),
            case.opened_at,
            serde_json::to_string(case).map_err(json_err)?
        ])?;
    }
    if let Some(cu) = &fx.customer {
        c.prepare_cached("INSERT INTO customers (id, state) VALUES (?1, ?2) ON CONFLICT(id) DO UPDATE SET state = excluded.state")?
            .execute(params![cu.id, serde_json::to_string(cu).map_err(json_err)?])?;
    }
    if let Some((charge, customer)) = &fx.charge_link {
        c.prepare_cached("INSERT INTO charge_customers (charge_id, customer) VALUES (?1, ?2) ON CONFLICT DO NOTHING")?
            .execute(params![charge, customer])?;
    }
    let received_min = event.received_at.div_euclid(60) * 60;
    for u in &fx.counters {
        let sql = match u.op {
            CounterOp::Add => {
                "INSERT INTO counters (livemode, hour, metric, received_min, value) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT DO UPDATE SET value = value + excluded.value"
            }
            CounterOp::Max => {
                "INSERT INTO counters (livemode, hour, metric, received_min, value) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT DO UPDATE SET value = max(value, excluded.value)"
            }
        };
        c.prepare_cached(sql)?.execute(params![u.livemode, u.hour, u.metric, received_min, u.value])?;
    }
    crate::detector::record_findings(c, &fx.findings)?;
    for n in &fx.notifications {
        c.prepare_cached("INSERT INTO outbox (id, notification) VALUES (?1, ?2) ON CONFLICT DO NOTHING")?
            .execute(params![n.id, serde_json::to_string(n).map_err(json_err)?])?;
    }
    Ok(())
}

/// Where embedded notifications go: the log, and one JSON object per line in a file.
#[derive(Clone)]
pub struct Notifier {
    file: Option<Arc<Mutex<std::fs::File>>>,
    pub path: Option<PathBuf>,
}

impl Notifier {
    pub fn to_file(path: PathBuf) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Self { file: Some(Arc::new(Mutex::new(file))), path: Some(path) })
    }

    pub fn log_only() -> Self {
        Self { file: None, path: None }
    }

    fn write(&self, n: &Notification) -> std::io::Result<()> {
        tracing::info!(kind = %n.kind, stage = n.stage.as_deref().unwrap_or(""), customer = n.customer.as_deref().unwrap_or(""),
            livemode = n.livemode, event_id = %n.event_id, "notification: {}", n.subject);
        if let Some(f) = &self.file {
            let mut line = serde_json::to_vec(n).map_err(std::io::Error::other)?;
            line.push(b'\n');
            let mut f = f.lock().map_err(|_| std::io::Error::other("notifier lock poisoned"))?;
            f.write_all(&line)?;
            f.sync_data()?;
        }
        Ok(())
    }
}

impl revguard_core::ports::Notifier for Notifier {
    async fn publish(&self, n: &Notification) -> Result<(), revguard_core::ports::NotifyError> {
        self.write(n).map_err(|e| revguard_core::ports::NotifyError(Box::new(e)))
    }
}

/// The worker over the embedded store.
#[derive(Clone)]
pub struct EmbeddedWorker {
    pub store: SqliteStore,
    pub policy: BillingPolicy,
    pub notifier: Notifier,
}

struct Queued {
    seq: i64,
    body: String,
    enqueued_at: i64,
    receive_count: i64,
}

impl EmbeddedWorker {
    /// Applies one queued message (by queue sequence number), exactly once in effect.
    async fn apply(&self, msg: Queued, now: i64) -> Result<MessageOutcome, StoreError> {
        let decoded = match QueueMessage::decode(&msg.body) {
            Ok(m) => m,
            Err(e) => return self.dead_letter(msg, e.to_string(), now).await,
        };
        let raw = match &decoded.payload {
            Payload::Inline(raw) => raw.clone().into_bytes(),
            Payload::InEventLog => {
                let stored = revguard_core::EventLog::stored_payload(&self.store, &decoded.event_id).await?;
                match stored.map(|s| decompress(&s)) {
                    Some(Ok(raw)) => raw,
                    Some(Err(e)) => return self.dead_letter(msg, e.to_string(), now).await,
                    None => return self.dead_letter(msg, "payload missing from the event log".into(), now).await,
                }
            }
        };
        let received_at = if decoded.received_at > 0 { decoded.received_at } else { msg.enqueued_at };
        let event = match BillingEvent::parse(&raw, received_at) {
            Ok(e) => e,
            Err(e) => return self.dead_letter(msg, e.to_string(), now).await,
        };
        let policy = self.policy.clone();
        let seq = msg.seq;
        let outcome = self
            .store
            .write(move |c| {
                let done: bool = c
                    .prepare_cached("SELECT 1 FROM applied WHERE event_id = ?1")?
                    .query_row([&event.id], |_| Ok(true))
                    .optional()?
                    .unwrap_or(false);
                let outcome = if done {
                    MessageOutcome::Duplicate
                } else {
                    let current = load(c, &event)?;
                    match decide(&event, &current, &policy) {
                        Ok(fx) => {
                            commit(c, &event, &fx, &policy, now)?;
                            MessageOutcome::Applied { notifications: fx.notifications.len() }
                        }
                        Err(e) => {
                            move_to_dead_letters(c, seq, &e.to_string(), now)?;
                            return Ok(MessageOutcome::Poison(e.to_string()));
                        }
                    }
                };
                c.prepare_cached("DELETE FROM queue WHERE seq = ?1")?.execute([seq])?;
                Ok(outcome)
            })
            .await?;
        Ok(outcome)
    }

    async fn dead_letter(&self, msg: Queued, error: String, now: i64) -> Result<MessageOutcome, StoreError> {
        let seq = msg.seq;
        let e = error.clone();
        self.store.write(move |c| move_to_dead_letters(c, seq, &e, now)).await?;
        tracing::error!(seq, error = %error, "poison message moved to the dead letters");
        Ok(MessageOutcome::Poison(error))
    }

    /// Publishes what the outbox holds, removing each entry once it is out.
    pub async fn flush_outbox(&self) -> Result<usize, StoreError> {
        let pending: Vec<(String, String)> = self
            .store
            .read(|c| {
                let mut stmt = c.prepare("SELECT id, notification FROM outbox ORDER BY rowid")?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect()
            })
            .await?;
        let mut published = Vec::new();
        for (id, json) in pending {
            let n: Notification = serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            match self.notifier.write(&n) {
                Ok(()) => published.push(id),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot publish a notification; it stays in the outbox");
                    break;
                }
            }
        }
        let count = published.len();
        if count > 0 {
            self.store
                .write(move |c| {
                    for id in &published {
                        c.prepare_cached("DELETE FROM outbox WHERE id = ?1")?.execute([id])?;
                    }
                    Ok(())
                })
                .await?;
        }
        Ok(count)
    }

    /// Takes up to one batch of visible messages and applies them concurrently (they share
    /// group commits). Returns how many were taken.
    pub async fn run_once(&self, now: i64) -> Result<usize, StoreError> {
        let batch: Vec<Queued> = self
            .store
            .read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT seq, body, enqueued_at, receive_count FROM queue WHERE visible_at <= ?1 ORDER BY seq LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![now, BATCH as i64], |r| {
                    Ok(Queued { seq: r.get(0)?, body: r.get(1)?, enqueued_at: r.get(2)?, receive_count: r.get(3)? })
                })?;
                rows.collect()
            })
            .await?;
        let taken = batch.len();
        let mut tasks = tokio::task::JoinSet::new();
        for msg in batch {
            let worker = self.clone();
            tasks.spawn(async move {
                let (seq, receive_count) = (msg.seq, msg.receive_count);
                (seq, receive_count, worker.apply(msg, now).await)
            });
        }
        let mut notifications = 0;
        while let Some(joined) = tasks.join_next().await {
            let Ok((seq, receive_count, result)) = joined else { continue };
            match result {
                Ok(MessageOutcome::Applied { notifications: n }) => notifications += n,
                Ok(_) => {}
                Err(e) => {
                    // A storage failure: retry later with backoff, then give up to the dead letters.
                    tracing::warn!(seq, error = %e, "could not apply; will retry");
                    let backoff = 2i64.pow(receive_count.clamp(0, 6) as u32);
                    let _ = self
                        .store
                        .write(move |c| {
                            if receive_count + 1 >= MAX_RECEIVES {
                                move_to_dead_letters(c, seq, &e.to_string(), now)
                            } else {
                                c.execute(
                                    "UPDATE queue SET receive_count = receive_count + 1, visible_at = ?2 WHERE seq = ?1",
                                    params![seq, now + backoff],
                                )
                                .map(|_| ())
                            }
                        })
                        .await;
                }
            }
        }
        if notifications > 0 {
            self.flush_outbox().await?;
        }
        Ok(taken)
    }

    /// Runs until `stop` resolves: wakes on every enqueue, and at least once a second.
    pub async fn run(self, stop: stop::StopSignal) {
        // Notifications left in the outbox by a crash go out first.
        if let Err(e) = self.flush_outbox().await {
            tracing::warn!(error = %e, "cannot flush the notification outbox");
        }
        let signal = self.store.queue_signal();
        loop {
            if stop.is_stopped() {
                return;
            }
            match self.run_once(crate::unix_now()).await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "worker pass failed"),
            }
            tokio::select! {
                _ = signal.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.wait() => return,
            }
        }
    }
}

fn move_to_dead_letters(c: &Connection, seq: i64, error: &str, now: i64) -> rusqlite::Result<()> {
    c.execute(
        "INSERT OR REPLACE INTO dead_letters (seq, event_id, body, error, receive_count, failed_at)
         SELECT seq, event_id, body, ?2, receive_count + 1, ?3 FROM queue WHERE seq = ?1",
        params![seq, error, now],
    )?;
    c.execute("DELETE FROM queue WHERE seq = ?1", [seq])?;
    Ok(())
}

/// A tiny stop flag usable from several tasks.
pub mod stop {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[derive(Clone, Default)]
    pub struct StopSignal {
        stopped: Arc<AtomicBool>,
        notify: Arc<tokio::sync::Notify>,
    }

    impl StopSignal {
        pub fn stop(&self) {
            self.stopped.store(true, Ordering::SeqCst);
            self.notify.notify_waiters();
        }

        pub fn is_stopped(&self) -> bool {
            self.stopped.load(Ordering::SeqCst)
        }

        pub async fn wait(&self) {
            let notified = self.notify.notified();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }
}

// ---- Read side: what operators ask -------------------------------------------------

#[derive(Debug, Clone, serde::Serialize)]
pub struct CustomerView {
    pub customer: String,
    pub access: revguard_core::billing::access::Access,
    pub subscriptions: Vec<SubscriptionState>,
    pub open_dunning_cases: Vec<CaseView>,
    pub profile: Option<CustomerState>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseView {
    pub stage: Option<String>,
    pub recovered_amount: Option<i64>,
    pub time_to_recover_secs: Option<i64>,
    #[serde(flatten)]
    pub case: DunningCase,
}

impl CaseView {
    pub fn of(case: DunningCase, policy: &BillingPolicy) -> Self {
        Self {
            stage: case.stage(policy).map(|s| s.as_str().to_owned()),
            recovered_amount: case.recovered().map(|p| p.amount),
            time_to_recover_secs: case.time_to_recover_secs(),
            case,
        }
    }
}

impl SqliteStore {
    pub fn subscription(&self, id: &str) -> Result<Option<SubscriptionState>, StoreError> {
        self.read_now(|c| {
            c.query_row("SELECT state FROM subscriptions WHERE id = ?1", [id], |r| r.get::<_, String>(0))
                .optional()?
                .map(from_json)
                .transpose()
        })
    }

    pub fn customer_view(&self, id: &str, now: i64, policy: &BillingPolicy) -> Result<CustomerView, StoreError> {
        let (subs, cases, profile) = self.read_now(|c| {
            let subs: Vec<SubscriptionState> = c
                .prepare("SELECT state FROM subscriptions WHERE customer = ?1 ORDER BY id")?
                .query_map([id], |r| r.get::<_, String>(0))?
                .map(|s| s.and_then(from_json))
                .collect::<rusqlite::Result<_>>()?;
            let cases: Vec<DunningCase> = c
                .prepare("SELECT state FROM dunning_cases WHERE customer = ?1 ORDER BY opened_at")?
                .query_map([id], |r| r.get::<_, String>(0))?
                .map(|s| s.and_then(from_json))
                .collect::<rusqlite::Result<_>>()?;
            let profile: Option<CustomerState> = c
                .query_row("SELECT state FROM customers WHERE id = ?1", [id], |r| r.get::<_, String>(0))
                .optional()?
                .map(from_json)
                .transpose()?;
            Ok((subs, cases, profile))
        })?;
        let access = revguard_core::billing::access::access(profile.as_ref(), &subs, &cases, now, policy);
        let open = cases
            .into_iter()
            .filter(|c| c.stage(policy).is_some_and(|s| s.is_open()))
            .map(|c| CaseView::of(c, policy))
            .collect();
        Ok(CustomerView { customer: id.to_owned(), access, subscriptions: subs, open_dunning_cases: open, profile })
    }

    /// Dunning cases by stage filter: `open`, `closed`, a stage name, or all.
    pub fn dunning_cases(&self, status: Option<&str>, policy: &BillingPolicy) -> Result<Vec<CaseView>, StoreError> {
        let all: Vec<DunningCase> = self.read_now(|c| {
            c.prepare("SELECT state FROM dunning_cases WHERE stage IS NOT NULL ORDER BY opened_at")?
                .query_map([], |r| r.get::<_, String>(0))?
                .map(|s| s.and_then(from_json))
                .collect()
        })?;
        Ok(all
            .into_iter()
            .filter(|c| {
                let stage = c.stage(policy);
                match status {
                    None | Some("all") => true,
                    Some("open") => stage.is_some_and(|s| s.is_open()),
                    Some("closed") => stage.is_some_and(|s| !s.is_open()),
                    Some(name) => stage.is_some_and(|s| s.as_str() == name),
                }
            })
            .map(|c| CaseView::of(c, policy))
            .collect())
    }

    /// Counter totals for hours in [from, to), counting only what was received before
    /// `as_of` (all of it when `None`): (livemode, hour, metric) → value.
    pub fn counter_totals(
        &self,
        from: i64,
        to: i64,
        as_of: Option<i64>,
    ) -> Result<BTreeMap<(bool, i64, String), i64>, StoreError> {
        self.read_now(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT livemode, hour, metric,
                        CASE WHEN metric LIKE '%max%' THEN max(value) ELSE sum(value) END
                 FROM counters WHERE hour >= ?1 AND hour < ?2 AND received_min < ?3
                 GROUP BY livemode, hour, metric",
            )?;
            let rows = stmt.query_map(params![from, to, as_of.unwrap_or(i64::MAX)], |r| {
                Ok(((r.get(0)?, r.get(1)?, r.get(2)?), r.get(3)?))
            })?;
            let mut out: BTreeMap<(bool, i64, String), i64> = rows.collect::<rusqlite::Result<_>>()?;
            out.retain(|_, v| *v != 0);
            Ok(out)
        })
    }

    /// Hourly counters in [from, to): hour → livemode → metric → value.
    pub fn metrics(&self, from: i64, to: i64) -> Result<Vec<HourCounters>, StoreError> {
        let mut out: BTreeMap<(i64, bool), BTreeMap<String, i64>> = BTreeMap::new();
        for ((livemode, hour, metric), value) in self.counter_totals(from, to, None)? {
            out.entry((hour, livemode)).or_default().insert(metric, value);
        }
        Ok(out.into_iter().map(|((hour, livemode), metrics)| HourCounters { hour, livemode, metrics }).collect())
    }

    pub fn dead_letter_count(&self) -> Result<u64, StoreError> {
        self.read_now(|c| c.query_row("SELECT count(*) FROM dead_letters", [], |r| r.get::<_, i64>(0)).map(|n| n as u64))
    }

    pub fn applied_count(&self) -> Result<u64, StoreError> {
        self.read_now(|c| c.query_row("SELECT count(*) FROM applied", [], |r| r.get::<_, i64>(0)).map(|n| n as u64))
    }
}

#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct HourCounters {
    pub hour: i64,
    pub livemode: bool,
    pub metrics: BTreeMap<String, i64>,
}

#[cfg(test)]
mod tests {
    use revguard_core::billing::state::BillingState;
    use revguard_core::billing::BillingEvent;
    use revguard_core::ports::Queue;
    use revguard_core::{Payload, QueueMessage};

    use super::*;

    fn history() -> Vec<(String, Vec<u8>)> {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events");
        let mut files: Vec<_> = std::fs::read_dir(root)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| {
                let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
                let id = format!("evt_{}", p.file_stem().unwrap().to_string_lossy());
                v["id"] = serde_json::Value::String(id.clone());
                (id, serde_json::to_vec(&v).unwrap())
            })
            .collect()
    }

    fn message(id: &str, raw: &[u8]) -> QueueMessage {
        QueueMessage {
            event_id: id.to_owned(),
            event_type: "x".into(),
            livemode: false,
            created: 0,
            received_at: 0,
            payload: Payload::Inline(String::from_utf8(raw.to_vec()).unwrap()),
        }
    }

    async fn drain(worker: &EmbeddedWorker) {
        while worker.run_once(2_000_000_000).await.unwrap() > 0 {}
    }

    fn worker(dir: &tempfile::TempDir) -> EmbeddedWorker {
        let store = SqliteStore::open(dir.path().join("w.db")).unwrap();
        EmbeddedWorker { store, policy: BillingPolicy::default(), notifier: Notifier::log_only() }
    }

    /// What the store holds, in the in-memory reference's shape.
    fn totals(store: &SqliteStore) -> BTreeMap<(bool, i64, String), i64> {
        store.counter_totals(i64::MIN, i64::MAX, None).unwrap()
    }

    #[tokio::test]
    async fn every_message_twice_applies_once_and_matches_the_reference() {
        let dir = tempfile::tempdir().unwrap();
        let w = worker(&dir);
        let history = history();
        for (id, raw) in history.iter().chain(history.iter()) {
            w.store.send(&message(id, raw)).await.unwrap();
        }
        drain(&w).await;

        let mut reference = BillingState::default();
        for (_, raw) in &history {
            // Receipt time differs (the worker takes it from the queue row); it only
            // affects receipt-time counters, which are compared apart below.
            let e = BillingEvent::parse(raw, 0).unwrap();
            reference.apply(&e, &BillingPolicy::default()).unwrap();
        }
        let ours = totals(&w.store);
        let strip_receipt = |m: &BTreeMap<(bool, i64, String), i64>| -> BTreeMap<(bool, i64, String), i64> {
            // Receipt-time counters depend on when the queue row was written; compare the rest.
            m.iter()
                .filter(|((_, _, k), _)| !k.starts_with("lag_") && !k.contains("received"))
                .map(|(k, v)| (k.clone(), *v))
                .collect()
        };
        assert_eq!(strip_receipt(&ours), strip_receipt(&reference.counters));
        assert_eq!(w.store.applied_count().unwrap(), history.len() as u64);
        let received: i64 = ours.iter().filter(|((_, _, k), _)| k == "events_received").map(|(_, v)| v).sum();
        assert_eq!(received, history.len() as i64);
        let sub = w.store.subscription("sub_RG1001").unwrap().unwrap();
        assert_eq!(sub, reference.subscriptions["sub_RG1001"]);
        let cases = w.store.dunning_cases(Some("all"), &BillingPolicy::default()).unwrap();
        assert_eq!(cases[0].case, reference.cases["in_RG1001"]);
        assert_eq!(w.store.counts().unwrap().queue_depth, 0);
    }

    #[tokio::test]
    async fn a_poison_message_is_isolated_and_its_neighbours_apply() {
        let dir = tempfile::tempdir().unwrap();
        let w = worker(&dir);
        let history = history();
        let (good_a, good_b) = (&history[0], &history[1]);
        w.store.send(&message(&good_a.0, &good_a.1)).await.unwrap();
        // Valid JSON, but not an event; and a subscription event whose object is not one.
        w.store.send(&message("evt_poison_1", br#"{"hello":"world"}"#)).await.unwrap();
        let bad_sub = br#"{"id":"evt_poison_2","type":"customer.subscription.updated","created":1,"livemode":false,"data":{"object":{"status":5}}}"#;
        w.store.send(&message("evt_poison_2", bad_sub)).await.unwrap();
        w.store.send(&message(&good_b.0, &good_b.1)).await.unwrap();
        drain(&w).await;
        let counts = w.store.counts().unwrap();
        assert_eq!(counts.applied, 2);
        assert_eq!(counts.dead_letters, 2);
        assert_eq!(counts.queue_depth, 0);
    }

    #[tokio::test]
    async fn a_retried_batch_after_a_failure_in_its_middle_counts_once() {
        let dir = tempfile::tempdir().unwrap();
        let w = worker(&dir);
        let history = history();
        // First pass: half the history applied, then "the process died".
        for (id, raw) in &history[..history.len() / 2] {
            w.store.send(&message(id, raw)).await.unwrap();
        }
        drain(&w).await;
        let after_half = totals(&w.store);
        // The whole batch comes again (SQS redelivers a failed batch), plus the rest.
        for (id, raw) in &history {
            w.store.send(&message(id, raw)).await.unwrap();
        }
        drain(&w).await;
        let fresh_dir = tempfile::tempdir().unwrap();
        let fresh = worker(&fresh_dir);
        for (id, raw) in &history {
            fresh.store.send(&message(id, raw)).await.unwrap();
        }
        drain(&fresh).await;
        let strip = |m: BTreeMap<(bool, i64, String), i64>| -> BTreeMap<String, i64> {
            let mut out = BTreeMap::new();
            for ((_, _, k), v) in m {
                *out.entry(k).or_insert(0) += v;
            }
            out.retain(|k, _| !k.starts_with("lag_"));
            out
        };
        assert_ne!(strip(after_half), strip(totals(&fresh.store)));
        assert_eq!(strip(totals(&w.store)), strip(totals(&fresh.store)));
    }
}
