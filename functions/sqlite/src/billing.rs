//! Billing state, counters and the notification outbox on SQLite, behind the
//! [`BillingStore`] port. A commit is one write of the group-commit writer: it checks
//! every applied marker and state version first (the writer is the only one writing, so
//! checking then writing is atomic) and writes nothing on a conflict.

use std::collections::{BTreeMap, BTreeSet};

use revguard_core::domain::billing::Notification;
use revguard_core::domain::detector::Series;
use revguard_core::domain::metric::{Aggregation, Metric};
use revguard_core::ports::{
    Account, BillingCommit, BillingStore, Claimed, CommitError, CountersReader, EventKey,
    StateKeys, StateSnapshot, StoreError, Versioned,
};
use rusqlite::{params, Connection, OptionalExtension};

use crate::store::{from_json, json_err, json_rows, SqliteStore};

fn versioned<T: serde::de::DeserializeOwned>(
    c: &Connection,
    sql: &str,
    key: &str,
) -> rusqlite::Result<Option<Versioned<T>>> {
    c.prepare_cached(sql)?
        .query_row([key], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .optional()?
        .map(|(state, version)| {
            Ok(Versioned {
                value: from_json(state)?,
                version,
            })
        })
        .transpose()
}

fn version_of(c: &Connection, sql: &str, key: &str) -> rusqlite::Result<Option<i64>> {
    c.prepare_cached(sql)?
        .query_row([key], |r| r.get(0))
        .optional()
}

/// Whether the commit still applies to what is stored.
fn still_consistent(c: &Connection, commit: &BillingCommit) -> rusqlite::Result<bool> {
    for e in &commit.events {
        if version_of(c, "SELECT 1 FROM applied WHERE event_id = ?1", &e.event_id)?.is_some() {
            return Ok(false);
        }
    }
    let key = |k: &str| commit.account.key(k);
    for w in &commit.subscriptions {
        if version_of(
            c,
            "SELECT version FROM subscriptions WHERE id = ?1",
            &key(&w.value.id),
        )? != w.expected_version
        {
            return Ok(false);
        }
    }
    for w in &commit.cases {
        if version_of(
            c,
            "SELECT version FROM dunning_cases WHERE invoice_id = ?1",
            &key(&w.value.0.invoice_id),
        )? != w.expected_version
        {
            return Ok(false);
        }
    }
    for w in &commit.customers {
        if version_of(
            c,
            "SELECT version FROM customers WHERE id = ?1",
            &key(&w.value.id),
        )? != w.expected_version
        {
            return Ok(false);
        }
    }
    Ok(true)
}

fn write_commit(c: &Connection, commit: &BillingCommit) -> rusqlite::Result<bool> {
    if !still_consistent(c, commit)? {
        return Ok(false);
    }
    let next = |v: Option<i64>| v.unwrap_or(0) + 1;
    // Every state key is the account's (see `Account::key`), its customer link too.
    let key = |k: &str| commit.account.key(k);
    let account = commit.account.column();
    // Counter increments summed (or maximised) per row first: a batch of events in one
    // hour touches a handful of rows, not a few per event.
    let mut counters: BTreeMap<(bool, i64, &Metric, i64), i64> = BTreeMap::new();
    for e in &commit.events {
        // Counters are split by the minute their event was received, so that detection
        // can be replayed as of any past moment (`revguard detect --at`).
        let received_min = e.received_at.div_euclid(60) * 60;
        for u in &e.counters {
            let aggregation = u.metric.aggregation();
            counters
                .entry((u.livemode, u.hour, &u.metric, received_min))
                .and_modify(|value| *value = aggregation.combine(*value, u.value))
                .or_insert(u.value);
        }
    }
    for ((livemode, hour, metric, received_min), value) in &counters {
        let sql = match metric.aggregation() {
            Aggregation::Sum => {
                "INSERT INTO counters (livemode, hour, metric, received_min, value, account) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT DO UPDATE SET value = value + excluded.value"
            }
            Aggregation::Max => {
                "INSERT INTO counters (livemode, hour, metric, received_min, value, account) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT DO UPDATE SET value = max(value, excluded.value)"
            }
        };
        c.prepare_cached(sql)?.execute(params![
            livemode,
            hour,
            metric.name(),
            received_min,
            value,
            account
        ])?;
    }
    for e in &commit.events {
        c.prepare_cached("INSERT INTO applied (event_id, applied_at) VALUES (?1, ?2)")?
            .execute(params![e.event_id, commit.now])?;
        for f in &e.findings {
            crate::alerts::put_pending(c, f)?;
        }
        for n in &e.notifications {
            c.prepare_cached("INSERT INTO outbox (id, event_id, notification, leased_until) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING")?
                .execute(params![n.id, n.event_id, serde_json::to_string(n).map_err(json_err)?, commit.outbox_lease_until])?;
        }
    }
    for w in &commit.subscriptions {
        let s = &w.value;
        c.prepare_cached(
            "INSERT INTO subscriptions (id, customer, livemode, status, state, version) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(id) DO UPDATE SET customer = excluded.customer, status = excluded.status,
                 state = excluded.state, version = excluded.version",
        )?
        .execute(params![key(&s.id), s.customer.as_deref().map(key), s.livemode, s.status, serde_json::to_string(s).map_err(json_err)?, next(w.expected_version)])?;
    }
    for w in &commit.cases {
        let (case, stage) = &w.value;
        c.prepare_cached(
            "INSERT INTO dunning_cases (invoice_id, customer, livemode, stage, opened_at, state, version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(invoice_id) DO UPDATE SET customer = excluded.customer, stage = excluded.stage,
                 opened_at = excluded.opened_at, state = excluded.state, version = excluded.version",
        )?
        .execute(params![
            key(&case.invoice_id),
            case.customer.as_deref().map(key),
            case.livemode,
            stage.map(|s| s.as_str()),
            case.opened_at,
            serde_json::to_string(case).map_err(json_err)?,
            next(w.expected_version)
        ])?;
    }
    for w in &commit.customers {
        c.prepare_cached(
            "INSERT INTO customers (id, state, version) VALUES (?1, ?2, ?3)
             ON CONFLICT(id) DO UPDATE SET state = excluded.state, version = excluded.version",
        )?
        .execute(params![
            key(&w.value.id),
            serde_json::to_string(&w.value).map_err(json_err)?,
            next(w.expected_version)
        ])?;
    }
    for (charge, customer) in &commit.charge_links {
        c.prepare_cached("INSERT INTO charge_customers (charge_id, customer) VALUES (?1, ?2) ON CONFLICT DO NOTHING")?
            .execute(params![key(charge), customer])?;
    }
    Ok(true)
}

impl BillingStore for SqliteStore {
    async fn applied(&self, events: &[EventKey]) -> Result<BTreeSet<String>, StoreError> {
        // One table of markers: where a marker lives is no concern here.
        let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
        self.read(move |c| {
            let mut out = BTreeSet::new();
            for id in ids {
                if version_of(c, "SELECT 1 FROM applied WHERE event_id = ?1", &id)?.is_some() {
                    out.insert(id);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn load(&self, keys: &StateKeys) -> Result<StateSnapshot, StoreError> {
        let keys = keys.clone();
        self.read(move |c| {
            let key = |k: &str| keys.account.key(k);
            let mut out = StateSnapshot::default();
            for charge in &keys.charges {
                let customer: Option<String> = c
                    .prepare_cached("SELECT customer FROM charge_customers WHERE charge_id = ?1")?
                    .query_row([key(charge)], |r| r.get(0))
                    .optional()?;
                out.charge_customers
                    .extend(customer.map(|cu| (charge.clone(), cu)));
            }
            for id in &keys.subscriptions {
                let v = versioned(
                    c,
                    "SELECT state, version FROM subscriptions WHERE id = ?1",
                    &key(id),
                )?;
                out.subscriptions.extend(v.map(|v| (id.clone(), v)));
            }
            for id in &keys.invoices {
                let v = versioned(
                    c,
                    "SELECT state, version FROM dunning_cases WHERE invoice_id = ?1",
                    &key(id),
                )?;
                out.cases.extend(v.map(|v| (id.clone(), v)));
            }
            let customers: BTreeSet<&String> = keys
                .customers
                .iter()
                .chain(out.charge_customers.values())
                .collect();
            let mut found = Vec::new();
            for id in customers {
                let v = versioned(
                    c,
                    "SELECT state, version FROM customers WHERE id = ?1",
                    &key(id),
                )?;
                found.extend(v.map(|v| (id.clone(), v)));
            }
            out.customers.extend(found);
            Ok(out)
        })
        .await
    }

    async fn commit(&self, commit: &BillingCommit) -> Result<(), CommitError> {
        let commit = commit.clone();
        match self.write(move |c| write_commit(c, &commit)).await? {
            true => Ok(()),
            false => Err(CommitError::Conflict),
        }
    }

    async fn claim_outbox(
        &self,
        event_ids: &[String],
        now: i64,
        lease_until: i64,
    ) -> Result<Claimed<Notification>, StoreError> {
        let ids = event_ids.to_vec();
        self.write(move |c| {
            let mut out = Claimed::default();
            for id in ids {
                let held: bool = c
                    .prepare_cached(
                        "SELECT EXISTS (SELECT 1 FROM outbox WHERE event_id = ?1 AND leased_until > ?2)",
                    )?
                    .query_row(params![id, now], |r| r.get(0))?;
                if held {
                    out.held.push(id);
                    continue;
                }
                c.prepare_cached("UPDATE outbox SET leased_until = ?2 WHERE event_id = ?1")?
                    .execute(params![id, lease_until])?;
                out.messages.extend(json_rows::<Notification>(
                    c,
                    "SELECT notification FROM outbox WHERE event_id = ?1 ORDER BY rowid",
                    [id],
                )?);
            }
            Ok(out)
        })
        .await
    }

    async fn settle_outbox(
        &self,
        published: &[String],
        unpublished: &[Notification],
    ) -> Result<(), StoreError> {
        if published.is_empty() && unpublished.is_empty() {
            return Ok(());
        }
        let published = published.to_vec();
        let released: Vec<String> = unpublished.iter().map(|n| n.id.clone()).collect();
        self.write(move |c| {
            for id in &published {
                c.prepare_cached("DELETE FROM outbox WHERE id = ?1")?
                    .execute([id])?;
            }
            for id in &released {
                c.prepare_cached("UPDATE outbox SET leased_until = 0 WHERE id = ?1")?
                    .execute([id])?;
            }
            Ok(())
        })
        .await
    }
}

/// The counters as the detector reads them: all of them, or only what had been received
/// by a moment (`revguard detect --at` replays a detection as of then).
#[derive(Clone)]
pub struct SqliteCounters {
    pub store: SqliteStore,
    pub received_before: Option<i64>,
}

impl SqliteStore {
    /// Counter totals for hours in [from, to) and the gauges of hour 0, of one mode or
    /// both, counting only what was received before `received_before`: (livemode, hour,
    /// metric) → value. A name this build does not know is skipped, never misread.
    pub fn counter_totals(
        &self,
        livemode: Option<bool>,
        account: Option<&Account>,
        from: i64,
        to: i64,
        received_before: Option<i64>,
    ) -> Result<revguard_core::domain::metric::CounterTotals, StoreError> {
        Ok(self
            .counter_totals_by_account(livemode, account, from, to, received_before)?
            .into_values()
            .fold(Default::default(), |mut all, totals| {
                for (k, v) in totals {
                    let aggregation = k.2.aggregation();
                    all.entry(k)
                        .and_modify(|x| *x = aggregation.combine(*x, v))
                        .or_insert(v);
                }
                all
            }))
    }

    /// [`SqliteStore::counter_totals`] per account: of one account, or of every one with
    /// `None`.
    pub fn counter_totals_by_account(
        &self,
        livemode: Option<bool>,
        account: Option<&Account>,
        from: i64,
        to: i64,
        received_before: Option<i64>,
    ) -> Result<BTreeMap<Account, revguard_core::domain::metric::CounterTotals>, StoreError> {
        // Only the filters given, so that with an account the key (account, livemode,
        // hour, …) serves the read: a `?5 IS NULL OR …` would make SQLite read every
        // account's rows for each one.
        use rusqlite::types::Value;
        let mut filters = vec![
            "((hour >= ?1 AND hour < ?2) OR hour = 0)",
            "received_min < ?3",
        ];
        let mut values = vec![
            Value::Integer(from),
            Value::Integer(to),
            Value::Integer(received_before.unwrap_or(i64::MAX)),
        ];
        if let Some(livemode) = livemode {
            filters.push("livemode = ?4");
            values.push(Value::Integer(livemode.into()));
        }
        if let Some(account) = account {
            filters.push(if values.len() == 4 {
                "account = ?5"
            } else {
                "account = ?4"
            });
            values.push(Value::Text(account.column().to_owned()));
        }
        let sql = format!(
            "SELECT livemode, hour, metric, sum(value), max(value), account
             FROM counters WHERE {}
             GROUP BY account, livemode, hour, metric",
            filters.join(" AND ")
        );
        self.read_now(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(values), |r| {
                Ok((
                    r.get::<_, bool>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })?;
            let mut by_account: BTreeMap<Account, revguard_core::domain::metric::CounterTotals> =
                BTreeMap::new();
            for row in rows {
                let (livemode, hour, name, sum, max, account) = row?;
                let out = by_account
                    .entry(Account::from_column(&account))
                    .or_default();
                if let Some((metric, value)) = row_value(&name, sum, max) {
                    out.insert((livemode, hour, metric), value);
                }
            }
            Ok(by_account)
        })
    }
}

impl CountersReader for SqliteCounters {
    async fn counters(
        &self,
        livemode: bool,
        account: &Account,
        from: i64,
        to: i64,
    ) -> Result<Series, StoreError> {
        let totals = self.store.counter_totals(
            Some(livemode),
            Some(account),
            from,
            to,
            self.received_before,
        )?;
        Ok(revguard_core::domain::detector::series_of(
            &totals, livemode,
        ))
    }

    /// One query: the window's rows of every connected account with counts in it (the
    /// (livemode, hour, account) index), and those accounts' gauges of hour 0.
    async fn connected(
        &self,
        livemode: bool,
        from: i64,
        to: i64,
    ) -> Result<BTreeMap<Account, Series>, StoreError> {
        let received_before = self.received_before.unwrap_or(i64::MAX);
        let rows: Vec<(String, i64, String, i64, i64)> = self.store.read_now(|c| {
            // The window's rows by the (livemode, hour, account) index, then the hour-0
            // gauges of exactly the accounts found there, by the key.
            let mut stmt = c.prepare_cached(
                "WITH active AS (
                     SELECT DISTINCT account FROM counters
                     WHERE livemode = ?1 AND hour >= ?2 AND hour < ?3 AND account != '' AND received_min < ?4)
                 SELECT account, hour, metric, sum(value), max(value) FROM counters
                 WHERE livemode = ?1 AND hour >= ?2 AND hour < ?3 AND account != '' AND received_min < ?4
                 GROUP BY account, hour, metric
                 UNION ALL
                 SELECT c.account, c.hour, c.metric, sum(c.value), max(c.value)
                 FROM active JOIN counters c ON c.account = active.account AND c.livemode = ?1 AND c.hour = 0
                 WHERE c.received_min < ?4
                 GROUP BY c.account, c.metric",
            )?;
            let rows = stmt.query_map(params![livemode, from, to, received_before], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?;
            rows.collect()
        })?;
        let mut out: BTreeMap<Account, Series> = BTreeMap::new();
        for (account, hour, name, sum, max) in rows {
            if let Some((metric, value)) = row_value(&name, sum, max) {
                out.entry(Account::from_column(&account))
                    .or_default()
                    .entry(hour)
                    .or_default()
                    .insert(metric, value);
            }
        }
        Ok(out)
    }
}

/// A grouped counter row's metric and value (its sum or its maximum, as the metric
/// aggregates); `None` for a zero, or a name this build does not know (skipped, never
/// misread).
pub(crate) fn row_value(name: &str, sum: i64, max: i64) -> Option<(Metric, i64)> {
    let Some(metric) = Metric::parse(name) else {
        tracing::warn!(metric = %name, "unknown metric in the counters table; skipped");
        return None;
    };
    let value = match metric.aggregation() {
        Aggregation::Sum => sum,
        Aggregation::Max => max,
    };
    (value != 0).then_some((metric, value))
}
