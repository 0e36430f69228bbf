//! Alert state, pending event-level findings and the alert outbox on SQLite, behind the
//! [`AlertStore`] port. A change is written only if the alert is still at the version it
//! was planned from, together with its outbox entry.

use revguard_core::domain::detector::alerts::{AlertChange, AlertMessage, AlertState};
use revguard_core::domain::detector::Finding;
use revguard_core::ports::{AlertSnapshot, AlertStore, StoreError};
use rusqlite::params;

use crate::store::{json_err, json_rows, SqliteStore};

impl SqliteStore {
    /// Open alerts, and those resolved in the last `recent_secs`.
    pub fn recent_alerts(&self, now: i64, recent_secs: i64) -> Result<Vec<AlertState>, StoreError> {
        let all: Vec<AlertState> = self
            .read_now(|c| json_rows(c, "SELECT state FROM alerts ORDER BY updated_at DESC", []))?;
        Ok(all
            .into_iter()
            .filter(|a| a.open_or_resolved_since(now - recent_secs))
            .collect())
    }
}

/// A finding waiting for the detector; one per key and mode, the latest raised winning.
pub(crate) fn put_pending(c: &rusqlite::Connection, f: &Finding) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO pending_findings (key, livemode, created, finding) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT DO UPDATE SET created = excluded.created, finding = excluded.finding",
    )?
    .execute(params![
        f.key,
        f.livemode,
        f.window_end,
        serde_json::to_string(f).map_err(json_err)?
    ])?;
    Ok(())
}

impl AlertStore for SqliteStore {
    async fn add_pending(&self, finding: &Finding) -> Result<(), StoreError> {
        let finding = finding.clone();
        self.write(move |c| put_pending(c, &finding)).await
    }

    async fn snapshot(&self, until: i64) -> Result<AlertSnapshot, StoreError> {
        self.read(move |c| {
            Ok(AlertSnapshot {
                alerts: json_rows(c, "SELECT state FROM alerts WHERE open = 1 ORDER BY id", [])?,
                pending: json_rows(
                    c,
                    "SELECT finding FROM pending_findings WHERE created <= ?1 ORDER BY created, key",
                    [until],
                )?,
                outbox: json_rows(c, "SELECT message FROM alert_outbox ORDER BY rowid", [])?,
            })
        })
        .await
    }

    async fn alerts(&self, ids: &[String]) -> Result<Vec<AlertState>, StoreError> {
        let ids = ids.to_vec();
        self.read(move |c| {
            let mut out = Vec::new();
            for id in ids {
                out.extend(json_rows::<AlertState>(
                    c,
                    "SELECT state FROM alerts WHERE id = ?1",
                    [id],
                )?);
            }
            Ok(out)
        })
        .await
    }

    async fn commit_change(
        &self,
        change: &AlertChange,
        message: Option<&AlertMessage>,
        now: i64,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        let (change, message) = (change.clone(), message.cloned());
        self.write(move |c| {
            let s = &change.state;
            let state = serde_json::to_string(s).map_err(json_err)?;
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
            if written == 1 {
                if let Some(m) = &message {
                    c.execute(
                        "INSERT INTO alert_outbox (id, message, leased_until) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                        params![m.id, serde_json::to_string(m).map_err(json_err)?, lease_until],
                    )?;
                }
            }
            Ok(written == 1)
        })
        .await
    }

    async fn claim_outbox(
        &self,
        message_ids: &[String],
        now: i64,
        lease_until: i64,
    ) -> Result<Vec<String>, StoreError> {
        let ids = message_ids.to_vec();
        self.write(move |c| {
            let mut claimed = Vec::new();
            for id in ids {
                let taken = c.execute(
                    "UPDATE alert_outbox SET leased_until = ?3 WHERE id = ?1 AND leased_until <= ?2",
                    params![id, now, lease_until],
                )?;
                if taken == 1 {
                    claimed.push(id);
                }
            }
            Ok(claimed)
        })
        .await
    }

    async fn consume_findings(&self, findings: &[Finding]) -> Result<(), StoreError> {
        if findings.is_empty() {
            return Ok(());
        }
        let findings = findings.to_vec();
        self.write(move |c| {
            for f in &findings {
                c.execute(
                    "DELETE FROM pending_findings WHERE key = ?1 AND livemode = ?2 AND finding = ?3",
                    params![f.key, f.livemode, serde_json::to_string(f).map_err(json_err)?],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn clear_outbox(&self, message_ids: &[String]) -> Result<(), StoreError> {
        if message_ids.is_empty() {
            return Ok(());
        }
        let ids = message_ids.to_vec();
        self.write(move |c| {
            for id in &ids {
                c.execute("DELETE FROM alert_outbox WHERE id = ?1", [id])?;
            }
            Ok(())
        })
        .await
    }
}
