//! What operators ask, on DynamoDB, behind the [`ReadModel`] port — the same views as the
//! embedded store, built in core from the same stored state.
//!
//! Two sparse, keys-only indexes make the reads Queries, never Scans: [`CUSTOMER_INDEX`]
//! (hash `customer`, range `pk`) holds a customer's `sub#`, `case#` and `cust#` items, and
//! [`STAGE_INDEX`] (hash `stage`, range `pk`) the dunning cases by stage. Their keys change
//! only when an item is created or its stage moves, so they add an index write then and
//! none on other writes. Resolved alerts carry `resolved` and `resolved_at`, the keys of
//! [`RESOLVED_INDEX`] on the alerts table, so the recent ones are one Query too.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use std::collections::BTreeMap;

use revguard_core::domain::billing::views::{
    by_hour, AccountSummary, CaseView, CustomerView, HourCounters,
};
use revguard_core::domain::billing::{
    BillingPolicy, CustomerState, DunningCase, Stage, SubscriptionState,
};
use revguard_core::domain::detector::alerts::AlertState;
use revguard_core::domain::metric::CounterTotals;
use revguard_core::ports::{Account, AlertStore, CountersReader, ReadModel, Scope, StoreError};

use crate::alerts::DynamoAlerts;
use crate::billing::{DynamoBilling, DynamoCounters};
use crate::item::{batch_get, corrupt, Read, PK};

/// State table: a customer's items.
pub const CUSTOMER_INDEX: &str = "by_customer";
/// State table: dunning cases by stage.
pub const STAGE_INDEX: &str = "by_stage";
/// Alerts table: resolved alerts by the time they resolved.
pub const RESOLVED_INDEX: &str = "resolved";

#[derive(Clone, Debug)]
pub struct DynamoReadModel {
    client: Client,
    state_table: String,
    billing: DynamoBilling,
    counters: DynamoCounters,
    alerts: DynamoAlerts,
    alerts_table: String,
}

impl DynamoReadModel {
    pub fn new(
        client: Client,
        state_table: &str,
        counters_table: &str,
        alerts_table: &str,
    ) -> Self {
        Self {
            billing: DynamoBilling::new(client.clone(), state_table, counters_table),
            counters: DynamoCounters::new(client.clone(), counters_table),
            alerts: DynamoAlerts::new(client.clone(), alerts_table),
            client,
            state_table: state_table.to_owned(),
            alerts_table: alerts_table.to_owned(),
        }
    }

    /// The `pk`s an index holds under one hash key, those beginning with `pk_prefix` if
    /// given (eventually consistent, as index reads are).
    async fn index_keys(
        &self,
        index: &str,
        attr: &str,
        value: &str,
        pk_prefix: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        crate::item::index_pks(
            &self.client,
            &self.state_table,
            index,
            (attr, value),
            pk_prefix,
        )
        .await
    }

    /// The states of the items `pks` (prefix stripped by type), read 100 at a time.
    async fn states<T: serde::de::DeserializeOwned>(
        &self,
        pks: &[String],
    ) -> Result<Vec<T>, StoreError> {
        if pks.is_empty() {
            return Ok(Vec::new());
        }
        batch_get(&self.client, &self.state_table, pks, Read::Strong)
            .await?
            .iter()
            .map(|item| {
                let json = item
                    .get("state")
                    .and_then(|v| v.as_s().ok())
                    .ok_or_else(|| corrupt("item without state"))?;
                serde_json::from_str(json).map_err(corrupt)
            })
            .collect()
    }
}

impl ReadModel for DynamoReadModel {
    /// One Query of the customer index and one BatchGetItem of what it names.
    async fn customer_view(
        &self,
        account: &Account,
        id: &str,
        now: i64,
        policy: &BillingPolicy,
    ) -> Result<CustomerView, StoreError> {
        // The index's hash is the account's customer key, so one account's customer
        // never reads another's items.
        let pks = self
            .index_keys(CUSTOMER_INDEX, "customer", &account.key(id), None)
            .await?;
        let of = |prefix: &str| -> Vec<String> {
            let prefix = account.key(prefix);
            pks.iter()
                .filter(|p| p.starts_with(&prefix))
                .cloned()
                .collect()
        };
        let (sub_keys, case_keys, cust_keys) = (of("sub#"), of("case#"), of("cust#"));
        let mut keys = sub_keys.clone();
        keys.extend(case_keys.iter().cloned());
        keys.extend(cust_keys.iter().cloned());
        let items = if keys.is_empty() {
            Vec::new()
        } else {
            batch_get(&self.client, &self.state_table, &keys, Read::Strong).await?
        };
        let mut subs: Vec<SubscriptionState> = Vec::new();
        let mut cases: Vec<DunningCase> = Vec::new();
        let mut profile: Option<CustomerState> = None;
        for item in &items {
            let pk = item
                .get(PK)
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
                .unwrap_or("");
            let json = item
                .get("state")
                .and_then(|v| v.as_s().ok())
                .ok_or_else(|| corrupt(format!("{pk} without state")))?;
            let (_, pk) = Account::split_key(pk);
            if pk.starts_with("sub#") {
                subs.push(serde_json::from_str(json).map_err(corrupt)?);
            } else if pk.starts_with("case#") {
                cases.push(serde_json::from_str(json).map_err(corrupt)?);
            } else if pk.starts_with("cust#") {
                profile = Some(serde_json::from_str(json).map_err(corrupt)?);
            }
        }
        Ok(CustomerView::of(id, subs, cases, profile, now, policy))
    }

    async fn subscription(
        &self,
        account: &Account,
        id: &str,
    ) -> Result<Option<SubscriptionState>, StoreError> {
        self.billing.subscription(account, id).await
    }

    /// A Scan of the state table's keys (a reconciliation's, once a day; never the
    /// operator API's, whose role may not Scan): every account's subscriptions.
    async fn subscription_ids(&self) -> Result<Vec<(Account, String)>, StoreError> {
        let mut ids = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.state_table)
                .projection_expression("pk")
                .filter_expression("begins_with(pk, :sub) OR contains(pk, :acct_sub)")
                .expression_attribute_values(":sub", AttributeValue::S("sub#".into()))
                .expression_attribute_values(":acct_sub", AttributeValue::S("#sub#".into()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(StoreError::unavailable)?;
            ids.extend(page.items().iter().filter_map(|item| {
                let (account, own) = Account::split_key(item.get(PK)?.as_s().ok()?);
                Some((account, own.strip_prefix("sub#")?.to_owned()))
            }));
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// One Query of the stage index per stage the filter names.
    async fn dunning_cases(
        &self,
        account: &Account,
        status: Option<&str>,
        policy: &BillingPolicy,
    ) -> Result<Vec<CaseView>, StoreError> {
        let open = [Stage::Notice, Stage::ActionRequired, Stage::FinalWarning];
        let closed = [Stage::Recovered, Stage::Lost];
        let stages: Vec<Stage> = match status {
            Some("open") => open.to_vec(),
            Some("closed") => closed.to_vec(),
            None | Some("all") => open.iter().chain(&closed).copied().collect(),
            Some(name) => open
                .iter()
                .chain(&closed)
                .copied()
                .filter(|s| s.as_str() == name)
                .collect(),
        };
        // A case that moves stage between two Queries is named twice; BatchGetItem refuses
        // a key twice.
        let mut keys = std::collections::BTreeSet::new();
        let of_account = account.key("case#");
        for stage in stages {
            keys.extend(
                self.index_keys(STAGE_INDEX, "stage", stage.as_str(), Some(&of_account))
                    .await?,
            );
        }
        let keys: Vec<String> = keys.into_iter().collect();
        let cases: Vec<DunningCase> = self.states(&keys).await?;
        Ok(CaseView::select(cases, status, policy))
    }

    /// One account's counters; or, for the whole platform, the platform's own and every
    /// connected account's with counts in the window, added up.
    async fn metrics(
        &self,
        scope: &Scope,
        from: i64,
        to: i64,
    ) -> Result<Vec<HourCounters>, StoreError> {
        // The whole platform's gauges are every account's seen, quiet ones too (a
        // dormant account still has its MRR); its hours, those of the accounts active.
        let gauges_of_all = match scope {
            Scope::All => {
                let mut seen = vec![Account::PLATFORM];
                for livemode in [false, true] {
                    seen.extend(self.counters.accounts_seen_in(livemode).await?);
                }
                seen.sort();
                seen.dedup();
                Some(self.counters.gauges(&seen).await?)
            }
            _ => None,
        };
        let mut totals = CounterTotals::new();
        for livemode in [false, true] {
            let mut series = Vec::new();
            match scope.account() {
                Some(account) => {
                    series.push(self.counters.counters(livemode, &account, from, to).await?)
                }
                None => {
                    series.push(
                        self.counters
                            .counters(livemode, &Account::PLATFORM, from, to)
                            .await?,
                    );
                    series.extend(
                        self.counters
                            .connected(livemode, from, to)
                            .await?
                            .into_values(),
                    );
                    for s in &mut series {
                        s.remove(&0);
                    }
                }
            }
            let whole = revguard_core::domain::detector::accounts::added_up(&series);
            for (hour, metrics) in whole {
                for (metric, value) in metrics {
                    totals.insert((livemode, hour, metric), value);
                }
            }
        }
        for (key, value) in gauges_of_all
            .into_iter()
            .flat_map(|g| g.into_values())
            .flatten()
        {
            if value == 0 {
                continue;
            }
            let aggregation = key.2.aggregation();
            totals
                .entry(key)
                .and_modify(|v| *v = aggregation.combine(*v, value))
                .or_insert(value);
        }
        Ok(by_hour(&totals))
    }

    /// The open alerts (the detector's index) and the recently resolved ones (one Query of
    /// the resolved index, by resolution time).
    async fn recent_alerts(
        &self,
        scope: Option<&Scope>,
        now: i64,
        recent_secs: i64,
    ) -> Result<Vec<AlertState>, StoreError> {
        let mut out: Vec<AlertState> = self.alerts.snapshot(now).await?.alerts;
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.alerts_table)
                .index_name(RESOLVED_INDEX)
                .key_condition_expression("resolved = :r AND resolved_at >= :since")
                .expression_attribute_values(":r", AttributeValue::S("1".into()))
                .expression_attribute_values(
                    ":since",
                    AttributeValue::N((now - recent_secs).to_string()),
                )
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(StoreError::unavailable)?;
            for item in page.items() {
                let json = item
                    .get("state")
                    .and_then(|v| v.as_s().ok())
                    .ok_or_else(|| corrupt("alert without state"))?;
                let alert: AlertState = serde_json::from_str(json).map_err(corrupt)?;
                // Reopened since: the open one is already in.
                if !alert.open && !out.iter().any(|a| a.id == alert.id) {
                    out.push(alert);
                }
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(out
            .into_iter()
            .filter(|a| a.open_or_resolved_since(now - recent_secs))
            .filter(|a| scope.is_none_or(|s| &a.finding.scope == s))
            .collect())
    }

    /// One Query of the day index per mode (every connected account seen), one
    /// BatchGetItem of their hour-0 gauges, one Query of the stage index per open stage and
    /// the open alerts: a handful of requests, whatever the number of accounts.
    async fn accounts(&self, now: i64) -> Result<Vec<AccountSummary>, StoreError> {
        let mut seen: Vec<Account> = vec![Account::PLATFORM];
        for livemode in [false, true] {
            seen.extend(self.counters.accounts_seen_in(livemode).await?);
        }
        seen.sort();
        seen.dedup();
        let gauges = self.counters.gauges(&seen).await?;
        let mut cases: BTreeMap<Account, usize> = BTreeMap::new();
        for stage in [Stage::Notice, Stage::ActionRequired, Stage::FinalWarning] {
            for pk in self
                .index_keys(STAGE_INDEX, "stage", stage.as_str(), None)
                .await?
            {
                *cases.entry(Account::split_key(&pk).0).or_default() += 1;
            }
        }
        let mut alerts: BTreeMap<Account, usize> = BTreeMap::new();
        for a in self
            .alerts
            .snapshot(now)
            .await?
            .alerts
            .iter()
            .filter(|a| a.open)
        {
            if let Some(account) = a.finding.scope.account() {
                *alerts.entry(account).or_default() += 1;
            }
        }
        let mut all: std::collections::BTreeSet<Account> = seen.into_iter().collect();
        all.extend(cases.keys().cloned());
        all.extend(alerts.keys().cloned());
        Ok(all
            .into_iter()
            .map(|account| {
                let g = gauges.get(&account).cloned().unwrap_or_default();
                let c = cases.get(&account).copied().unwrap_or(0);
                let a = alerts.get(&account).copied().unwrap_or(0);
                AccountSummary::of(account, &g, c, a)
            })
            .collect())
    }
}

/// One Query of the customer index and one BatchGetItem of its subscriptions, only for a
/// win-back that came due.
impl revguard_core::ports::Comebacks for DynamoReadModel {
    async fn is_subscribed(
        &self,
        account: &Account,
        customer: &str,
        livemode: bool,
    ) -> Result<bool, StoreError> {
        let subs: Vec<String> = self
            .index_keys(
                CUSTOMER_INDEX,
                "customer",
                &account.key(customer),
                Some(&account.key("sub#")),
            )
            .await?;
        let subs: Vec<SubscriptionState> = self.states(&subs).await?;
        Ok(revguard_core::domain::billing::access::is_subscribed(
            &subs, livemode,
        ))
    }
}
