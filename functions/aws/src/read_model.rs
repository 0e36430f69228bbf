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
use revguard_core::domain::billing::views::{by_hour, CaseView, CustomerView, HourCounters};
use revguard_core::domain::billing::{
    BillingPolicy, CustomerState, DunningCase, Stage, SubscriptionState,
};
use revguard_core::domain::detector::alerts::AlertState;
use revguard_core::domain::metric::CounterTotals;
use revguard_core::ports::{AlertStore, CountersReader, ReadModel, StoreError};

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

    /// The `pk`s an index holds under one hash key (eventually consistent, as index reads
    /// are).
    async fn index_keys(
        &self,
        index: &str,
        attr: &str,
        value: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.state_table)
                .index_name(index)
                .key_condition_expression("#k = :v")
                .expression_attribute_names("#k", attr)
                .expression_attribute_values(":v", AttributeValue::S(value.to_owned()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(StoreError::unavailable)?;
            out.extend(
                page.items()
                    .iter()
                    .filter_map(|i| i.get(PK)?.as_s().ok().cloned()),
            );
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
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
        id: &str,
        now: i64,
        policy: &BillingPolicy,
    ) -> Result<CustomerView, StoreError> {
        let pks = self.index_keys(CUSTOMER_INDEX, "customer", id).await?;
        let of = |prefix: &str| -> Vec<String> {
            pks.iter()
                .filter(|p| p.starts_with(prefix))
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

    async fn subscription(&self, id: &str) -> Result<Option<SubscriptionState>, StoreError> {
        self.billing.subscription(id).await
    }

    /// A Scan of the state table's keys (a reconciliation's, once a day; never the
    /// operator API's, whose role may not Scan).
    async fn subscription_ids(&self) -> Result<Vec<String>, StoreError> {
        let mut ids = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.state_table)
                .projection_expression("pk")
                .filter_expression("begins_with(pk, :sub)")
                .expression_attribute_values(":sub", AttributeValue::S("sub#".into()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(StoreError::unavailable)?;
            ids.extend(page.items().iter().filter_map(|item| {
                item.get(PK)?
                    .as_s()
                    .ok()?
                    .strip_prefix("sub#")
                    .map(str::to_owned)
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
        for stage in stages {
            keys.extend(
                self.index_keys(STAGE_INDEX, "stage", stage.as_str())
                    .await?,
            );
        }
        let keys: Vec<String> = keys.into_iter().collect();
        let cases: Vec<DunningCase> = self.states(&keys).await?;
        Ok(CaseView::select(cases, status, policy))
    }

    async fn metrics(&self, from: i64, to: i64) -> Result<Vec<HourCounters>, StoreError> {
        let mut totals = CounterTotals::new();
        for livemode in [false, true] {
            let series = self.counters.counters(livemode, from, to).await?;
            for (hour, metrics) in series {
                for (metric, value) in metrics {
                    totals.insert((livemode, hour, metric), value);
                }
            }
        }
        Ok(by_hour(&totals))
    }

    /// The open alerts (the detector's index) and the recently resolved ones (one Query of
    /// the resolved index, by resolution time).
    async fn recent_alerts(
        &self,
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
            .collect())
    }
}

/// One Query of the customer index and one BatchGetItem of its subscriptions, only for a
/// win-back that came due.
impl revguard_core::ports::Comebacks for DynamoReadModel {
    async fn is_subscribed(&self, customer: &str, livemode: bool) -> Result<bool, StoreError> {
        let subs: Vec<String> = self
            .index_keys(CUSTOMER_INDEX, "customer", customer)
            .await?
            .into_iter()
            .filter(|pk| pk.starts_with("sub#"))
            .collect();
        let subs: Vec<SubscriptionState> = self.states(&subs).await?;
        Ok(revguard_core::domain::billing::access::is_subscribed(
            &subs, livemode,
        ))
    }
}
