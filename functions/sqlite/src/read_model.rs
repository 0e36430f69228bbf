//! What operators ask: counts, a customer's view, dunning cases, hourly metrics.

use revguard_core::domain::billing::views::{by_hour, CaseView, CustomerView, HourCounters};
use revguard_core::domain::billing::{
    BillingPolicy, CustomerState, DunningCase, SubscriptionState,
};
use revguard_core::ports::StoreError;
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

impl SqliteStore {
    pub fn subscription(&self, id: &str) -> Result<Option<SubscriptionState>, StoreError> {
        self.read_now(|c| {
            c.query_row("SELECT state FROM subscriptions WHERE id = ?1", [id], |r| {
                r.get::<_, String>(0)
            })
            .optional()?
            .map(from_json)
            .transpose()
        })
    }

    pub fn customer_view(
        &self,
        id: &str,
        now: i64,
        policy: &BillingPolicy,
    ) -> Result<CustomerView, StoreError> {
        let (subs, cases, profile) = self.read_now(|c| {
            let subs: Vec<SubscriptionState> = json_rows(
                c,
                "SELECT state FROM subscriptions WHERE customer = ?1 ORDER BY id",
                [id],
            )?;
            let cases: Vec<DunningCase> = json_rows(
                c,
                "SELECT state FROM dunning_cases WHERE customer = ?1 ORDER BY opened_at",
                [id],
            )?;
            let profile: Option<CustomerState> = c
                .query_row("SELECT state FROM customers WHERE id = ?1", [id], |r| {
                    r.get::<_, String>(0)
                })
                .optional()?
                .map(from_json)
                .transpose()?;
            Ok((subs, cases, profile))
        })?;
        Ok(CustomerView::of(id, subs, cases, profile, now, policy))
    }

    /// Dunning cases by stage filter: `open`, `closed`, a stage name, or all.
    pub fn dunning_cases(
        &self,
        status: Option<&str>,
        policy: &BillingPolicy,
    ) -> Result<Vec<CaseView>, StoreError> {
        let all: Vec<DunningCase> = self.read_now(|c| {
            json_rows(
                c,
                "SELECT state FROM dunning_cases WHERE stage IS NOT NULL ORDER BY opened_at",
                [],
            )
        })?;
        Ok(CaseView::select(all, status, policy))
    }

    /// Hourly counters in [from, to) (hour 0's gauges included).
    pub fn metrics(&self, from: i64, to: i64) -> Result<Vec<HourCounters>, StoreError> {
        Ok(by_hour(&self.counter_totals(None, from, to, None)?))
    }

    pub fn applied_count(&self) -> Result<u64, StoreError> {
        self.read_now(|c| {
            c.query_row("SELECT count(*) FROM applied", [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
        })
    }
}

/// The operator API's port, over the methods above (the reads are short: the reader
/// connection answers them in place).
impl revguard_core::ports::ReadModel for SqliteStore {
    async fn customer_view(
        &self,
        id: &str,
        now: i64,
        policy: &BillingPolicy,
    ) -> Result<CustomerView, StoreError> {
        SqliteStore::customer_view(self, id, now, policy)
    }

    async fn subscription(&self, id: &str) -> Result<Option<SubscriptionState>, StoreError> {
        SqliteStore::subscription(self, id)
    }

    async fn subscription_ids(&self) -> Result<Vec<String>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare("SELECT id FROM subscriptions ORDER BY id")?;
            let ids = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(ids)
        })
        .await
    }

    async fn dunning_cases(
        &self,
        status: Option<&str>,
        policy: &BillingPolicy,
    ) -> Result<Vec<CaseView>, StoreError> {
        SqliteStore::dunning_cases(self, status, policy)
    }

    async fn metrics(&self, from: i64, to: i64) -> Result<Vec<HourCounters>, StoreError> {
        SqliteStore::metrics(self, from, to)
    }

    async fn recent_alerts(
        &self,
        now: i64,
        recent_secs: i64,
    ) -> Result<Vec<revguard_core::domain::detector::alerts::AlertState>, StoreError> {
        SqliteStore::recent_alerts(self, now, recent_secs)
    }
}

impl revguard_core::ports::Comebacks for SqliteStore {
    async fn is_subscribed(&self, customer: &str, livemode: bool) -> Result<bool, StoreError> {
        let customer = customer.to_owned();
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
