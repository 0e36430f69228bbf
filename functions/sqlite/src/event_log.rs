//! The event log: one row per Stripe event id, inserted only if absent.

use revguard_core::ports::{
    EventHistory, EventLog, EventRecord, EventStatus, InsertOutcome, LogSelection, StoreError,
    CLOSED_ALERT_RETENTION_SECS,
};
use rusqlite::{params, OptionalExtension};

use crate::store::SqliteStore;

impl SqliteStore {
    /// Deletes expired event-log entries, and alerts resolved longer than
    /// [`CLOSED_ALERT_RETENTION_SECS`] ago (the embedded counterpart of DynamoDB's TTL).
    pub async fn purge_expired(&self, now: i64) -> Result<usize, StoreError> {
        self.write(move |c| {
            let events = c.execute("DELETE FROM events WHERE expires_at < ?1", [now])?;
            let alerts = c.execute(
                "DELETE FROM alerts WHERE open = 0 AND updated_at < ?1",
                [now - CLOSED_ALERT_RETENTION_SECS],
            )?;
            let chats = c.execute(
                "DELETE FROM chat_deliveries WHERE created_at < ?1 AND (delivered_at IS NOT NULL OR given_up_at IS NOT NULL)",
                [now - CLOSED_ALERT_RETENTION_SECS],
            )?;
            Ok(events + alerts + chats)
        })
        .await
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
                                         expires_at, status, stored_payload, account)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT(event_id) DO NOTHING",
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
                    r.account.column(),
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

impl EventHistory for SqliteStore {
    async fn logged(
        &self,
        selection: &LogSelection,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let s = selection.clone();
        self.read(move |c| {
            let mut stmt = c.prepare(
                "SELECT event_id, event_type, created, livemode, received_at, expires_at, status, stored_payload, account
                 FROM events
                 WHERE (?1 IS NULL OR event_id = ?1) AND (?2 IS NULL OR created >= ?2)
                   AND (?3 IS NULL OR created < ?3) AND (?4 IS NULL OR event_type = ?4)
                 ORDER BY created, event_id LIMIT ?5",
            )?;
            let rows = stmt.query_map(
                params![s.event_id, s.since, s.until, s.event_type, limit as i64],
                |r| {
                    Ok(EventRecord {
                        event_id: r.get(0)?,
                        event_type: r.get(1)?,
                        created: r.get(2)?,
                        livemode: r.get(3)?,
                        received_at: r.get(4)?,
                        expires_at: r.get(5)?,
                        status: status_of(&r.get::<_, String>(6)?)?,
                        stored_payload: r.get(7)?,
                        account: revguard_core::ports::Account::from_column(
                            &r.get::<_, String>(8)?,
                        ),
                    })
                },
            )?;
            rows.collect()
        })
        .await
    }

    async fn known(
        &self,
        event_ids: &[String],
    ) -> Result<std::collections::BTreeSet<String>, StoreError> {
        let ids = event_ids.to_vec();
        self.read(move |c| {
            let mut stmt = c.prepare_cached("SELECT 1 FROM events WHERE event_id = ?1")?;
            let mut out = std::collections::BTreeSet::new();
            for id in ids {
                if stmt.exists([&id])? {
                    out.insert(id);
                }
            }
            Ok(out)
        })
        .await
    }
}
