//! What operators ask: counts, a customer's view, dunning cases, hourly metrics.

use std::collections::BTreeMap;

use revguard_core::domain::billing::views::{
    by_hour, AccountSummary, CaseView, CustomerView, HourCounters,
};
use revguard_core::domain::billing::{
    BillingPolicy, CustomerState, DunningCase, SubscriptionState,
};
use revguard_core::ports::{Account, Scope, StoreError};
use rusqlite::OptionalExtension;

use crate::store::{from_json, json_rows, SqliteStore};

/// Counts of the event log by status.
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq, Eq)]
pub struct EventCounts {
    pub received: u64,
    pub queued: u64,
    pub queue_depth: u64,
    pub applied: u64,
    pub dead_letters: u64,
}

impl SqliteStore {
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
                c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| {
                    r.get::<_, i64>(0)
                })
                .map(|n| n as u64)
            };
            counts.queue_depth = count("queue")?;
            counts.applied = count("applied")?;
            counts.dead_letters = count("dead_letters")?;
            Ok(counts)
        })
    }
}

/// The rows of one account's keys: a connected account's begin with `<acct>#`; the
/// platform's hold no `#` (Stripe's ids never do).
const OF_ACCOUNT: &str =
    "CASE WHEN ?9 = '' THEN instr(KEY, '#') = 0 ELSE substr(KEY, 1, length(?9)) = ?9 END";

fn of_account(column: &str) -> String {
    OF_ACCOUNT.replace("KEY", column)
}

impl SqliteStore {
    pub fn subscription(
        &self,
        account: &Account,
        id: &str,
    ) -> Result<Option<SubscriptionState>, StoreError> {
        self.read_now(|c| {
            c.query_row(
                "SELECT state FROM subscriptions WHERE id = ?1",
                [account.key(id)],
                |r| r.get::<_, String>(0),
            )
            .optional()?
            .map(from_json)
            .transpose()
        })
    }

    pub fn customer_view(
        &self,
        account: &Account,
        id: &str,
        now: i64,
        policy: &BillingPolicy,
    ) -> Result<CustomerView, StoreError> {
        let key = account.key(id);
        let (subs, cases, profile) = self.read_now(|c| {
            let subs: Vec<SubscriptionState> = json_rows(
                c,
                "SELECT state FROM subscriptions WHERE customer = ?1 ORDER BY id",
                [&key],
            )?;
            let cases: Vec<DunningCase> = json_rows(
                c,
                "SELECT state FROM dunning_cases WHERE customer = ?1 ORDER BY opened_at",
                [&key],
            )?;
            let profile: Option<CustomerState> = c
                .query_row("SELECT state FROM customers WHERE id = ?1", [&key], |r| {
                    r.get::<_, String>(0)
                })
                .optional()?
                .map(from_json)
                .transpose()?;
            Ok((subs, cases, profile))
        })?;
        Ok(CustomerView::of(id, subs, cases, profile, now, policy))
    }

    /// One account's dunning cases by stage filter: `open`, `closed`, a stage name, or all.
    pub fn dunning_cases(
        &self,
        account: &Account,
        status: Option<&str>,
        policy: &BillingPolicy,
    ) -> Result<Vec<CaseView>, StoreError> {
        let prefix = account.key_prefix();
        let sql = format!(
            "SELECT state FROM dunning_cases WHERE stage IS NOT NULL AND {} ORDER BY opened_at",
            of_account("invoice_id").replace("?9", "?1")
        );
        let all: Vec<DunningCase> = self.read_now(|c| json_rows(c, &sql, [&prefix]))?;
        Ok(CaseView::select(all, status, policy))
    }

    /// Hourly counters in [from, to) (hour 0's gauges included): of one account, or of
    /// the whole platform added up.
    pub fn metrics(
        &self,
        scope: &Scope,
        from: i64,
        to: i64,
    ) -> Result<Vec<HourCounters>, StoreError> {
        Ok(by_hour(&self.counter_totals(
            None,
            scope.account().as_ref(),
            from,
            to,
            None,
        )?))
    }

    pub fn applied_count(&self) -> Result<u64, StoreError> {
        self.read_now(|c| {
            c.query_row("SELECT count(*) FROM applied", [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
        })
    }

    /// Every account seen, the platform's own first: its gauges, open cases and open alerts.
    pub fn accounts(&self, now: i64) -> Result<Vec<AccountSummary>, StoreError> {
        let gauges = self.gauges_by_account()?;
        let open_stages: Vec<(String, String)> = self.read_now(|c| {
            let mut stmt = c.prepare(
                "SELECT invoice_id, stage FROM dunning_cases WHERE stage IS NOT NULL AND stage NOT IN ('recovered', 'lost')",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })?;
        let mut cases: BTreeMap<Account, usize> = BTreeMap::new();
        for (invoice, _) in &open_stages {
            *cases.entry(Account::split_key(invoice).0).or_default() += 1;
        }
        let mut alerts: BTreeMap<Account, usize> = BTreeMap::new();
        for a in self.recent_alerts(now, 0)?.into_iter().filter(|a| a.open) {
            if let Some(account) = a.finding.scope.account() {
                *alerts.entry(account).or_default() += 1;
            }
        }
        Ok(summaries(gauges, cases, alerts))
    }
}

impl SqliteStore {
    /// Every account's gauges of hour 0 (MRR, last receipt), both modes: by the key for
    /// the platform's rows, by the partial index for the connected accounts' (never a scan
    /// of the hours).
    pub fn gauges_by_account(
        &self,
    ) -> Result<BTreeMap<Account, revguard_core::domain::metric::CounterTotals>, StoreError> {
        let rows: Vec<(String, bool, String, i64, i64)> = self.read_now(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT account, livemode, metric, sum(value), max(value) FROM counters
                 WHERE account = '' AND livemode IN (0, 1) AND hour = 0
                 GROUP BY livemode, metric
                 UNION ALL
                 SELECT account, livemode, metric, sum(value), max(value) FROM counters
                 WHERE account != '' AND livemode IN (0, 1) AND hour = 0
                 GROUP BY account, livemode, metric",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?;
            rows.collect()
        })?;
        let mut out: BTreeMap<Account, revguard_core::domain::metric::CounterTotals> =
            BTreeMap::new();
        for (account, livemode, name, sum, max) in rows {
            let Some((metric, value)) = crate::billing::row_value(&name, sum, max) else {
                continue;
            };
            out.entry(Account::from_column(&account))
                .or_default()
                .insert((livemode, 0, metric), value);
        }
        Ok(out)
    }
}

/// The accounts seen in any of the three, the platform's own always, each summarized.
pub(crate) fn summaries(
    gauges: BTreeMap<Account, revguard_core::domain::metric::CounterTotals>,
    cases: BTreeMap<Account, usize>,
    alerts: BTreeMap<Account, usize>,
) -> Vec<AccountSummary> {
    let mut seen: std::collections::BTreeSet<Account> = [Account::PLATFORM].into();
    seen.extend(gauges.keys().cloned());
    seen.extend(cases.keys().cloned());
    seen.extend(alerts.keys().cloned());
    seen.into_iter()
        .map(|account| {
            let g = gauges.get(&account).cloned().unwrap_or_default();
            let (c, a) = (
                cases.get(&account).copied().unwrap_or(0),
                alerts.get(&account).copied().unwrap_or(0),
            );
            AccountSummary::of(account, &g, c, a)
        })
        .collect()
}

/// The operator API's port, over the methods above (the reads are short: the reader
/// connection answers them in place).
impl revguard_core::ports::ReadModel for SqliteStore {
    async fn customer_view(
        &self,
        account: &Account,
        id: &str,
        now: i64,
        policy: &BillingPolicy,
    ) -> Result<CustomerView, StoreError> {
        SqliteStore::customer_view(self, account, id, now, policy)
    }

    async fn subscription(
        &self,
        account: &Account,
        id: &str,
    ) -> Result<Option<SubscriptionState>, StoreError> {
        SqliteStore::subscription(self, account, id)
    }

    async fn subscription_ids(&self) -> Result<Vec<(Account, String)>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare("SELECT id FROM subscriptions ORDER BY id")?;
            let ids = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(ids
                .iter()
                .map(|key| {
                    let (account, id) = Account::split_key(key);
                    (account, id.to_owned())
                })
                .collect())
        })
        .await
    }

    async fn dunning_cases(
        &self,
        account: &Account,
        status: Option<&str>,
        policy: &BillingPolicy,
    ) -> Result<Vec<CaseView>, StoreError> {
        SqliteStore::dunning_cases(self, account, status, policy)
    }

    async fn metrics(
        &self,
        scope: &Scope,
        from: i64,
        to: i64,
    ) -> Result<Vec<HourCounters>, StoreError> {
        SqliteStore::metrics(self, scope, from, to)
    }

    async fn recent_alerts(
        &self,
        scope: Option<&Scope>,
        now: i64,
        recent_secs: i64,
    ) -> Result<Vec<revguard_core::domain::detector::alerts::AlertState>, StoreError> {
        let mut alerts = SqliteStore::recent_alerts(self, now, recent_secs)?;
        if let Some(scope) = scope {
            alerts.retain(|a| &a.finding.scope == scope);
        }
        Ok(alerts)
    }

    async fn accounts(&self, now: i64) -> Result<Vec<AccountSummary>, StoreError> {
        SqliteStore::accounts(self, now)
    }
}

impl revguard_core::ports::Comebacks for SqliteStore {
    async fn is_subscribed(
        &self,
        account: &Account,
        customer: &str,
        livemode: bool,
    ) -> Result<bool, StoreError> {
        let customer = account.key(customer);
        let subs: Vec<SubscriptionState> = self
            .read(move |c| {
                json_rows(
                    c,
                    "SELECT state FROM subscriptions WHERE customer = ?1",
                    [customer],
                )
            })
            .await?;
        Ok(revguard_core::domain::billing::access::is_subscribed(
            &subs, livemode,
        ))
    }
}

/// The digests sent, in the settings table (`sent:<digest id>`).
impl revguard_core::usecases::digest::DigestLedger for SqliteStore {
    async fn was_sent(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.setting(&format!("sent:{id}")).await?.is_some())
    }

    async fn mark_sent(&self, id: &str, at: i64) -> Result<(), StoreError> {
        self.put_setting(&format!("sent:{id}"), &at.to_string())
            .await
    }
}

/// The connected accounts with counters (every account the worker applied an event of).
impl revguard_core::ports::AccountsSeen for SqliteStore {
    async fn accounts_seen(&self) -> Result<Vec<Account>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT DISTINCT account FROM counters WHERE hour = 0 AND account != '' ORDER BY account",
            )?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            rows.map(|r| r.map(|a| Account::from_column(&a))).collect()
        })
        .await
    }
}
