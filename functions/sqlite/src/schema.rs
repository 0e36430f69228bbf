//! The embedded store's schema and its migrations, in one place. The version lives in
//! SQLite's `user_version`: a database is upgraded on open, one migration at a time in one
//! transaction, and one written by a newer revguard is refused rather than misread.
//!
//! Version 1 is the schema revguard wrote before it was versioned (`user_version` 0 with
//! the tables present): its statements are all `IF NOT EXISTS`, so it also creates a fresh
//! database's tables.

use rusqlite::Connection;

/// The version this build reads and writes.
pub const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("the database is at schema version {found}, newer than this revguard's {CURRENT_VERSION}: upgrade revguard")]
    TooNew { found: i64 },
    #[error("the schema could not be migrated to version {version}")]
    Migration {
        version: i64,
        #[source]
        source: rusqlite::Error,
    },
}

const V1: &str = "
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
CREATE TABLE IF NOT EXISTS alerts (
    id         TEXT PRIMARY KEY,
    livemode   INTEGER NOT NULL,
    open       INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    state      TEXT NOT NULL
);
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

/// Version 2: versions on the state rows (the billing store's optimistic concurrency,
/// as on DynamoDB), and the notification outbox keyed by event as well.
const V2: &str = "
ALTER TABLE subscriptions ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE dunning_cases ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE customers ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE outbox ADD COLUMN event_id TEXT;
UPDATE outbox SET event_id = json_extract(notification, '$.event_id');
CREATE INDEX outbox_event ON outbox (event_id);
";

/// Version 3: leases on outbox entries, so that one publisher sends each message.
const V3: &str = "
ALTER TABLE outbox ADD COLUMN leased_until INTEGER NOT NULL DEFAULT 0;
ALTER TABLE alert_outbox ADD COLUMN leased_until INTEGER NOT NULL DEFAULT 0;
";

/// Version 4: chat deliveries (Slack and Teams incoming webhooks), one row per alert
/// message and app, kept after delivery so that a message published again posts nothing.
const V4: &str = "
CREATE TABLE chat_deliveries (
    message_id      TEXT NOT NULL,
    app             TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    delivered_at    INTEGER,
    given_up_at     INTEGER,
    last_error      TEXT,
    PRIMARY KEY (message_id, app)
) WITHOUT ROWID;
CREATE INDEX chat_deliveries_due ON chat_deliveries (next_attempt_ms)
    WHERE delivered_at IS NULL AND given_up_at IS NULL;
";

/// Version 5: deliveries beyond chat (PagerDuty, email) keep each alert's transitions in
/// order per destination: a `thread` (the alert id) and an insertion `seq`, so that a
/// resolve never goes out before the trigger it resolves.
const V5: &str = "
ALTER TABLE chat_deliveries ADD COLUMN thread TEXT;
ALTER TABLE chat_deliveries ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
CREATE INDEX chat_deliveries_thread ON chat_deliveries (app, thread, seq)
    WHERE delivered_at IS NULL AND given_up_at IS NULL;
";

/// Version 6: Connect. The counters gain the account (`''`: the platform's own), in their
/// key, so that each connected account counts apart; a SQLite key cannot be altered, so
/// the table is rebuilt with what it held as the platform's; a partial index finds the
/// connected accounts' rows by hour (the platform's rows stay out of it, so a platform
/// without connected accounts writes no more than before). The event log notes whose
/// event each entry is. State rows need no change: a connected account's keys are the
/// platform's behind `<acct>#` (the rule DynamoDB's keys follow too), so what the
/// database holds is the platform's as it stands.
const V6: &str = "
CREATE TABLE counters_v6 (
    account      TEXT NOT NULL DEFAULT '',
    livemode     INTEGER NOT NULL,
    hour         INTEGER NOT NULL,
    metric       TEXT NOT NULL,
    received_min INTEGER NOT NULL,
    value        INTEGER NOT NULL,
    PRIMARY KEY (account, livemode, hour, metric, received_min)
) WITHOUT ROWID;
INSERT INTO counters_v6 (account, livemode, hour, metric, received_min, value)
    SELECT '', livemode, hour, metric, received_min, value FROM counters;
DROP TABLE counters;
ALTER TABLE counters_v6 RENAME TO counters;
CREATE INDEX counters_by_hour ON counters (livemode, hour, account) WHERE account != '';
ALTER TABLE events ADD COLUMN account TEXT NOT NULL DEFAULT '';
";

const MIGRATIONS: [&str; 6] = [V1, V2, V3, V4, V5, V6];

/// The database's schema version.
pub fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Brings the database to [`CURRENT_VERSION`]; returns the version it was at.
pub fn migrate(conn: &Connection) -> Result<i64, SchemaError> {
    let found = version(conn).map_err(|source| SchemaError::Migration { version: 0, source })?;
    if found > CURRENT_VERSION {
        return Err(SchemaError::TooNew { found });
    }
    // A new file has no tables; one written before versions has version 0 and the v1 tables.
    let fresh = found == 0
        && conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(|source| SchemaError::Migration { version: 0, source })?
            == 0;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let to = i as i64 + 1;
        let step = || -> rusqlite::Result<()> {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            let applied = conn
                .execute_batch(sql)
                .and_then(|_| conn.execute_batch(&format!("PRAGMA user_version = {to}")));
            match applied {
                Ok(()) => conn.execute_batch("COMMIT"),
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    Err(e)
                }
            }
        };
        step().map_err(|source| SchemaError::Migration {
            version: to,
            source,
        })?;
    }
    if !fresh && found < CURRENT_VERSION {
        tracing::info!(
            from = found.max(1),
            to = CURRENT_VERSION,
            "database schema upgraded"
        );
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unversioned_database_is_upgraded_and_a_newer_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let old = Connection::open(&path).unwrap();
        // What revguard wrote before versions: the v1 tables, user_version 0, data in them.
        old.execute_batch(V1).unwrap();
        old.execute(
            "INSERT INTO outbox (id, notification) VALUES ('evt_1:dunning', '{\"id\":\"evt_1:dunning\",\"event_id\":\"evt_1\"}')",
            [],
        )
        .unwrap();
        old.execute(
            "INSERT INTO customers (id, state) VALUES ('cus_1', '{}')",
            [],
        )
        .unwrap();
        old.execute(
            "INSERT INTO counters (livemode, hour, metric, received_min, value) VALUES (1, 3600, 'refunds', 60, 7)",
            [],
        )
        .unwrap();
        old.execute(
            "INSERT INTO events (event_id, event_type, created, livemode, received_at, expires_at, status)
             VALUES ('evt_old', 'invoice.paid', 1, 1, 2, 3, 'queued')",
            [],
        )
        .unwrap();
        assert_eq!(version(&old).unwrap(), 0);
        assert_eq!(migrate(&old).unwrap(), 0);
        assert_eq!(version(&old).unwrap(), CURRENT_VERSION);
        let event_id: String = old
            .query_row("SELECT event_id FROM outbox", [], |r| r.get(0))
            .unwrap();
        assert_eq!(event_id, "evt_1");
        let v: i64 = old
            .query_row(
                "SELECT version FROM customers WHERE id = 'cus_1'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(v, 1);
        let (account, value): (String, i64) = old
            .query_row(
                "SELECT account, value FROM counters WHERE metric = 'refunds'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(
            (account.as_str(), value),
            ("", 7),
            "the counters held are the platform's"
        );
        let account: String = old
            .query_row(
                "SELECT account FROM events WHERE event_id = 'evt_old'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(account, "", "the events logged are the platform's");
        assert_eq!(
            migrate(&old).unwrap(),
            CURRENT_VERSION,
            "a second open changes nothing"
        );

        old.execute_batch("PRAGMA user_version = 99").unwrap();
        assert!(matches!(
            migrate(&old),
            Err(SchemaError::TooNew { found: 99 })
        ));
    }
}
