//! The embedded anomaly detector: reads the counters (as of a moment), plans the alert
//! transitions, commits them with a condition on each alert's version together with an
//! outbox entry, then publishes the outbox to the log and an alerts JSONL file.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use revguard_core::detect::alerts::{plan, render, AlertChange, AlertMessage, AlertState};
use revguard_core::detect::{detect, hours_needed, series_of, DetectConfig, Finding};
use revguard_core::StoreError;
use rusqlite::params;

use crate::sqlite::{from_json, json_err, SqliteStore};

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS alerts (
    id         TEXT PRIMARY KEY,
    livemode   INTEGER NOT NULL,
    open       INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    state      TEXT NOT NULL
);
-- Event-level findings from the worker, waiting for the next detector run.
CREATE TABLE IF NOT EXISTS pending_findings (
    key        TEXT NOT NULL,
    livemode   INTEGER NOT NULL,
    created    INTEGER NOT NULL,
    finding    TEXT NOT NULL,
    PRIMARY KEY (livemode, key)
);
CREATE TABLE IF NOT EXISTS alert_outbox (
    id      TEXT PRIMARY KEY,
    message TEXT NOT NULL
);
";

/// What one detector run found and changed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DetectionRun {
    pub at: i64,
    pub findings: Vec<Finding>,
    pub transitions: Vec<AlertMessage>,
}

/// Where alert messages go embedded: the log, and one JSON object per line in a file.
#[derive(Clone)]
pub struct AlertSink {
    file: Option<Arc<Mutex<std::fs::File>>>,
}

impl AlertSink {
    pub fn to_file(path: &PathBuf) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self { file: Some(Arc::new(Mutex::new(file))) })
    }

    pub fn log_only() -> Self {
        Self { file: None }
    }

    fn publish(&self, m: &AlertMessage) -> std::io::Result<()> {
        tracing::warn!(severity = m.severity.as_str(), metric = %m.metric, livemode = m.livemode,
            transition = m.transition.as_str(), "alert: {}", m.finding.explanation);
        if let Some(f) = &self.file {
            let mut line = serde_json::to_vec(m).map_err(std::io::Error::other)?;
            line.push(b'\n');
            let mut f = f.lock().map_err(|_| std::io::Error::other("alert sink lock poisoned"))?;
            f.write_all(&line)?;
            f.sync_data()?;
        }
        Ok(())
    }
}

#[derive(Clone)]
pub struct EmbeddedDetector {
    pub store: SqliteStore,
    pub config: DetectConfig,
    pub sink: AlertSink,
}



impl EmbeddedDetector {
    /// Findings and planned transitions at `now`, counting only what was received by
    /// then. Writes nothing.
    pub fn plan_at(&self, now: i64) -> Result<(Vec<Finding>, Vec<AlertChange>), StoreError> {
        let (findings, changes, _) = self.plan_with_pending(now)?;
        Ok((findings, changes))
    }

    /// As [`Self::plan_at`], with the event-level findings it judged.
    fn plan_with_pending(&self, now: i64) -> Result<(Vec<Finding>, Vec<AlertChange>, Vec<Finding>), StoreError> {
        let (from, to) = hours_needed(now);
        let mut totals = self.store.counter_totals(from, to, Some(now))?;
        // The all-time gauges (MRR, last delivery) live at hour 0.
        totals.extend(self.store.counter_totals(0, 1, Some(now))?);
        let alerts = self.alerts()?;
        let pending: Vec<Finding> = self.store.read_now(|c| {
            c.prepare("SELECT finding FROM pending_findings WHERE created <= ?1 ORDER BY created")?
                .query_map([now], |r| r.get::<_, String>(0))?
                .map(|s| s.and_then(from_json))
                .collect()
        })?;
        let mut findings = Vec::new();
        let mut changes = Vec::new();
        for livemode in [false, true] {
            let found = detect(&series_of(&totals, livemode), livemode, now, &self.config);
            let events: Vec<Finding> = pending.iter().filter(|f| f.livemode == livemode).cloned().collect();
            changes.extend(plan(&found, &events, &alerts, livemode, now, &self.config));
            findings.extend(found);
            findings.extend(events);
        }
        Ok((findings, changes, pending))
    }

    pub fn alerts(&self) -> Result<Vec<AlertState>, StoreError> {
        self.store.read_now(|c| {
            c.prepare("SELECT state FROM alerts ORDER BY updated_at DESC")?
                .query_map([], |r| r.get::<_, String>(0))?
                .map(|s| s.and_then(from_json))
                .collect()
        })
    }

    /// One detector run at `now`: each transition is committed at most once (a second
    /// run planning from the same version finds it changed and drops it), then published.
    pub async fn run(&self, now: i64) -> Result<DetectionRun, StoreError> {
        let (findings, changes, judged) = self.plan_with_pending(now)?;
        let committed: Vec<AlertMessage> = self
            .store
            .write(move |c| {
                let mut published = Vec::new();
                for change in &changes {
                    let state = serde_json::to_string(&change.state).map_err(json_err)?;
                    let s = &change.state;
                    let written = match change.expected_version {
                        None => c.execute(
                            "INSERT INTO alerts (id, livemode, open, updated_at, version, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                             ON CONFLICT(id) DO NOTHING",
                            params![s.id, s.livemode, s.open, now, s.version, state],
                        )?,
                        Some(v) => c.execute(
                            "UPDATE alerts SET open = ?2, updated_at = ?3, version = ?4, state = ?5 WHERE id = ?1 AND version = ?6",
                            params![s.id, s.open, now, s.version, state, v],
                        )?,
                    };
                    if written == 1 && change.transition.is_published() {
                        let m = render(change);
                        c.execute(
                            "INSERT INTO alert_outbox (id, message) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                            params![m.id, serde_json::to_string(&m).map_err(json_err)?],
                        )?;
                        published.push(m);
                    }
                }
                // Judged: each event-level finding opened its alert or found it open
                // (unless the worker rewrote it since it was read).
                for f in &judged {
                    c.execute(
                        "DELETE FROM pending_findings WHERE key = ?1 AND livemode = ?2 AND finding = ?3",
                        params![f.key, f.livemode, serde_json::to_string(f).map_err(json_err)?],
                    )?;
                }
                Ok(published)
            })
            .await?;
        self.flush_outbox().await?;
        Ok(DetectionRun { at: now, findings, transitions: committed })
    }

    /// Publishes what the alert outbox holds (also what a crash left behind).
    pub async fn flush_outbox(&self) -> Result<usize, StoreError> {
        let pending: Vec<(String, String)> = self.store.read_now(|c| {
            c.prepare("SELECT id, message FROM alert_outbox ORDER BY rowid")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })?;
        let mut done = Vec::new();
        for (id, json) in pending {
            let m: AlertMessage = serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if let Err(e) = self.sink.publish(&m) {
                tracing::warn!(error = %e, "cannot publish an alert; it stays in the outbox");
                break;
            }
            done.push(id);
        }
        let n = done.len();
        if n > 0 {
            self.store
                .write(move |c| {
                    for id in &done {
                        c.execute("DELETE FROM alert_outbox WHERE id = ?1", [id])?;
                    }
                    Ok(())
                })
                .await?;
        }
        Ok(n)
    }

    /// Open alerts, and those resolved in the last `recent_secs`.
    pub fn recent_alerts(&self, now: i64, recent_secs: i64) -> Result<Vec<AlertState>, StoreError> {
        Ok(self
            .alerts()?
            .into_iter()
            .filter(|a| a.open || a.resolved_at.is_some_and(|r| now - r <= recent_secs))
            .collect())
    }
}

/// The worker's half: event-level findings recorded with the event's effects.
pub fn record_findings(c: &rusqlite::Connection, findings: &[Finding]) -> rusqlite::Result<()> {
    for f in findings {
        c.prepare_cached(
            "INSERT INTO pending_findings (key, livemode, created, finding) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        )?
        .execute(params![f.key, f.livemode, f.window_end, serde_json::to_string(f).map_err(json_err)?])?;
    }
    Ok(())
}
