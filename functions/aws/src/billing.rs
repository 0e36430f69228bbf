//! The worker's state on DynamoDB, applied exactly once with `TransactWriteItems`.
//!
//! State table (`pk`): `applied#<event>` markers, `sub#<id>`, `case#<invoice>`,
//! `cust#<id>` (JSON state with a `ver` for optimistic concurrency), `charge#<id>`
//! (its customer) and `outbox#<event>` (notifications not yet published).
//! Counters table (`pk` = `live#<hour>` / `test#<hour>`): one numeric attribute per metric.
//!
//! One event = one transaction: the applied marker (condition: absent), each changed state
//! item (condition: the version it was read at), the charge link, the counter increments
//! and the outbox entry. A concurrent change of the same item cancels the transaction and
//! the event is decided again on fresh state; a cancelled marker means it was applied.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use revguard_core::billing::counters::CounterOp;
use revguard_core::billing::{
    decide, keys_of, BillingEvent, BillingPolicy, Current, Effects, Notification,
};
use revguard_core::ports::StoreError;

pub const PK: &str = "pk";
/// Applied markers outlive SQS's longest retention (14 days).
pub const APPLIED_TTL_SECS: i64 = 30 * 86_400;
const MAX_ATTEMPTS: usize = 8;

#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// Applied now; these notifications wait in the outbox.
    Now(Vec<Notification>),
    /// Applied before; these notifications were left unpublished by an earlier attempt.
    Before(Vec<Notification>),
}

#[derive(Debug, thiserror::Error)]
pub enum BillingStoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Poison(#[from] revguard_core::billing::ApplyError),
    #[error("the state kept changing under the event after {0} attempts")]
    Contention(usize),
}

#[derive(Clone, Debug)]
pub struct DynamoBilling {
    client: Client,
    state_table: String,
    counters_table: String,
    policy: BillingPolicy,
    /// Where event-level findings wait for the detector (the alerts table).
    alerts_table: Option<String>,
    /// The largest value this process has written per (counter item, metric): a maximum
    /// that is not larger needs no write. Most events then skip the maxima entirely.
    maxima_written: std::sync::Arc<std::sync::Mutex<HashMap<(String, String), i64>>>,
}

/// `max_received_at` moves with every delivery; writing it once a minute is enough for the
/// delivery-gap signal, which needs an hour or more of silence.
const MAX_RECEIVED_AT_GRANULARITY_SECS: i64 = 60;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// An item as read: its JSON state and the version to condition the write on.
struct Versioned<T> {
    value: Option<T>,
    ver: Option<i64>,
}

impl DynamoBilling {
    pub fn new(
        client: Client,
        state_table: impl Into<String>,
        counters_table: impl Into<String>,
        policy: BillingPolicy,
    ) -> Self {
        Self {
            client,
            state_table: state_table.into(),
            counters_table: counters_table.into(),
            policy,
            alerts_table: None,
            maxima_written: Default::default(),
        }
    }

    pub fn with_alerts_table(mut self, table: impl Into<String>) -> Self {
        self.alerts_table = Some(table.into());
        self
    }

    async fn get(&self, pk: String) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.state_table)
            .key(PK, s(pk))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        Ok(out.item)
    }

    async fn get_state<T: serde::de::DeserializeOwned>(
        &self,
        pk: Option<String>,
    ) -> Result<Versioned<T>, StoreError> {
        let Some(pk) = pk else {
            return Ok(Versioned {
                value: None,
                ver: None,
            });
        };
        match self.get(pk).await? {
            None => Ok(Versioned {
                value: None,
                ver: None,
            }),
            Some(item) => {
                let json = item
                    .get("state")
                    .and_then(|v| v.as_s().ok())
                    .ok_or_else(|| corrupt("item without state"))?;
                let ver = item
                    .get("ver")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse().ok());
                Ok(Versioned {
                    value: Some(serde_json::from_str(json).map_err(corrupt)?),
                    ver,
                })
            }
        }
    }

    async fn outbox(&self, event_id: &str) -> Result<Vec<Notification>, StoreError> {
        match self.get(format!("outbox#{event_id}")).await? {
            None => Ok(Vec::new()),
            Some(item) => {
                let json = item
                    .get("notifications")
                    .and_then(|v| v.as_s().ok())
                    .ok_or_else(|| corrupt("outbox"))?;
                serde_json::from_str(json).map_err(corrupt)
            }
        }
    }

    /// Removes an event's outbox entry once its notifications are published.
    pub async fn clear_outbox(&self, event_id: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.state_table)
            .key(PK, s(format!("outbox#{event_id}")))
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        Ok(())
    }

    /// Applies the event exactly once in effect.
    pub async fn apply(
        &self,
        event: &BillingEvent,
        now: i64,
    ) -> Result<Applied, BillingStoreError> {
        for _ in 0..MAX_ATTEMPTS {
            if self.get(format!("applied#{}", event.id)).await?.is_some() {
                return Ok(Applied::Before(self.outbox(&event.id).await?));
            }
            let keys = keys_of(event);
            let charge_customer = match &keys.charge {
                Some(c) => self
                    .get(format!("charge#{c}"))
                    .await?
                    .and_then(|i| i.get("customer").and_then(|v| v.as_s().ok()).cloned()),
                None => None,
            };
            let customer_id = keys.customer.clone().or_else(|| charge_customer.clone());
            let sub = self
                .get_state(keys.subscription.as_ref().map(|k| format!("sub#{k}")))
                .await?;
            let case = self
                .get_state(keys.invoice.as_ref().map(|k| format!("case#{k}")))
                .await?;
            let customer = self
                .get_state(customer_id.as_ref().map(|k| format!("cust#{k}")))
                .await?;
            let current = Current {
                subscription: sub.value,
                case: case.value,
                customer: customer.value,
                charge_customer,
            };
            let fx = decide(event, &current, &self.policy)?;
            // The idempotent writes go first: if they fail, the message is retried; if the
            // transaction then finds the event applied, writing them again did no harm.
            self.apply_maxima(&fx).await?;
            self.link_charge(&fx).await?;
            let versions = [sub.ver, case.ver, customer.ver];
            match self.commit(event, &fx, versions, now).await {
                Ok(()) => return Ok(Applied::Now(fx.notifications)),
                Err(CommitError::AlreadyApplied) => {
                    return Ok(Applied::Before(self.outbox(&event.id).await?))
                }
                Err(CommitError::Conflict) => continue,
                Err(CommitError::Store(e)) => return Err(e.into()),
            }
        }
        Err(BillingStoreError::Contention(MAX_ATTEMPTS))
    }

    fn put_state<T: serde::Serialize>(
        &self,
        pk: String,
        value: &T,
        ver: Option<i64>,
        extra: &[(&str, AttributeValue)],
    ) -> Result<TransactWriteItem, StoreError> {
        let mut put = Put::builder()
            .table_name(&self.state_table)
            .item(PK, s(pk))
            .item("state", s(serde_json::to_string(value).map_err(corrupt)?))
            .item("ver", n(ver.unwrap_or(0) + 1));
        for (k, v) in extra {
            put = put.item(*k, v.clone());
        }
        put = match ver {
            Some(v) => put
                .condition_expression("ver = :ver")
                .expression_attribute_values(":ver", n(v)),
            None => put.condition_expression("attribute_not_exists(pk)"),
        };
        Ok(TransactWriteItem::builder()
            .put(put.build().map_err(corrupt)?)
            .build())
    }

    async fn commit(
        &self,
        event: &BillingEvent,
        fx: &Effects,
        vers: [Option<i64>; 3],
        now: i64,
    ) -> Result<(), CommitError> {
        let mut items = vec![TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&self.state_table)
                    .item(PK, s(format!("applied#{}", event.id)))
                    .item("applied_at", n(now))
                    .item("expires_at", n(now + APPLIED_TTL_SECS))
                    .condition_expression("attribute_not_exists(pk)")
                    .build()
                    .map_err(|e| CommitError::Store(corrupt(e)))?,
            )
            .build()];
        let [sub_ver, case_ver, cust_ver] = vers;
        if let Some(sub) = &fx.subscription {
            let customer = sub
                .customer
                .clone()
                .map(s)
                .unwrap_or(AttributeValue::Null(true));
            items.push(self.put_state(
                format!("sub#{}", sub.id),
                sub,
                sub_ver,
                &[("customer", customer)],
            )?);
        }
        if let Some(case) = &fx.case {
            let stage = case
                .stage(&self.policy)
                .map(|st| s(st.as_str()))
                .unwrap_or(AttributeValue::Null(true));
            items.push(self.put_state(
                format!("case#{}", case.invoice_id),
                case,
                case_ver,
                &[("stage", stage)],
            )?);
        }
        if let Some(c) = &fx.customer {
            items.push(self.put_state(format!("cust#{}", c.id), c, cust_ver, &[])?);
        }
        // Counter increments, one update per (mode, hour) item.
        // Summed per metric: one expression may name an attribute once (a count moved
        // within one hour is a −1 and a +1 of the same metric), and zeros are no write.
        let mut by_item: BTreeMap<String, BTreeMap<&str, i64>> = BTreeMap::new();
        for u in fx.counters.iter().filter(|u| u.op == CounterOp::Add) {
            *by_item
                .entry(counter_pk(u.livemode, u.hour))
                .or_default()
                .entry(&u.metric)
                .or_default() += u.value;
        }
        for (pk, adds) in by_item {
            let adds: Vec<(&str, i64)> = adds.into_iter().filter(|(_, v)| *v != 0).collect();
            if adds.is_empty() {
                continue;
            }
            let mut update = Update::builder()
                .table_name(&self.counters_table)
                .key(PK, s(pk));
            let mut clauses = Vec::new();
            for (i, (metric, value)) in adds.iter().enumerate() {
                update = update
                    .expression_attribute_names(format!("#m{i}"), *metric)
                    .expression_attribute_values(format!(":v{i}"), n(*value));
                clauses.push(format!("#m{i} :v{i}"));
            }
            let update = update
                .update_expression(format!("ADD {}", clauses.join(", ")))
                .build()
                .map_err(|e| CommitError::Store(corrupt(e)))?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        if let Some(table) = &self.alerts_table {
            for f in &fx.findings {
                let put = Put::builder()
                    .table_name(table)
                    .item(PK, s(crate::alerts::pending_pk(f)))
                    .item(
                        "finding",
                        s(serde_json::to_string(f).map_err(|e| CommitError::Store(corrupt(e)))?),
                    )
                    .build()
                    .map_err(|e| CommitError::Store(corrupt(e)))?;
                items.push(TransactWriteItem::builder().put(put).build());
            }
        }
        if !fx.notifications.is_empty() {
            let json = serde_json::to_string(&fx.notifications)
                .map_err(|e| CommitError::Store(corrupt(e)))?;
            let put = Put::builder()
                .table_name(&self.state_table)
                .item(PK, s(format!("outbox#{}", event.id)))
                .item("notifications", s(json))
                .item("expires_at", n(now + APPLIED_TTL_SECS))
                .build()
                .map_err(|e| CommitError::Store(corrupt(e)))?;
            items.push(TransactWriteItem::builder().put(put).build());
        }

        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) => match e.err() {
                TransactWriteItemsError::TransactionCanceledException(t) => {
                    let reasons = t.cancellation_reasons();
                    let marker_failed =
                        reasons.first().and_then(|r| r.code()) == Some("ConditionalCheckFailed");
                    if marker_failed {
                        Err(CommitError::AlreadyApplied)
                    } else {
                        Err(CommitError::Conflict)
                    }
                }
                TransactWriteItemsError::TransactionInProgressException(_) => {
                    Err(CommitError::Conflict)
                }
                _ => Err(CommitError::Store(StoreError::unavailable(
                    SdkError::ServiceError(e),
                ))),
            },
            Err(e) => Err(CommitError::Store(StoreError::unavailable(e))),
        }
    }

    /// Which customer a charge belongs to (disputes name only the charge). Idempotent, so
    /// outside the transaction, which halves the write's cost.
    async fn link_charge(&self, fx: &Effects) -> Result<(), StoreError> {
        let Some((charge, customer)) = &fx.charge_link else {
            return Ok(());
        };
        self.client
            .put_item()
            .table_name(&self.state_table)
            .item(PK, s(format!("charge#{charge}")))
            .item("customer", s(customer.clone()))
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        Ok(())
    }

    /// Largest-value counters: idempotent by nature, so they need no transaction; and only
    /// written when larger than what this process last wrote (a cache, never a source of
    /// truth: the conditional update keeps the stored value the maximum).
    async fn apply_maxima(&self, fx: &Effects) -> Result<(), StoreError> {
        for u in fx.counters.iter().filter(|u| u.op == CounterOp::Max) {
            let slot = (counter_pk(u.livemode, u.hour), u.metric.clone());
            let margin = if u.metric == "max_received_at" {
                MAX_RECEIVED_AT_GRANULARITY_SECS
            } else {
                0
            };
            let written = self
                .maxima_written
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&slot)
                .copied();
            if written.is_some_and(|prev| u.value <= prev + margin) {
                continue;
            }
            let result = self
                .client
                .update_item()
                .table_name(&self.counters_table)
                .key(PK, s(slot.0.clone()))
                .update_expression("SET #m = :v")
                .condition_expression("attribute_not_exists(#m) OR #m < :v")
                .expression_attribute_names("#m", &u.metric)
                .expression_attribute_values(":v", n(u.value))
                .send()
                .await;
            match result {
                Ok(_) => {}
                // A larger value is stored already: nothing to do.
                Err(SdkError::ServiceError(se))
                    if se.err().is_conditional_check_failed_exception() => {}
                Err(e) => return Err(StoreError::unavailable(e)),
            }
            // Remembered only once stored, so a failed write is tried again.
            self.maxima_written
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(slot, u.value);
        }
        Ok(())
    }

    /// The counters table, for reading.
    pub fn counters_reader(&self) -> CountersReader {
        CountersReader {
            client: self.client.clone(),
            table: self.counters_table.clone(),
        }
    }

    /// See [`CountersReader::counters`].
    pub async fn counters(
        &self,
        livemode: bool,
        from: i64,
        to: i64,
    ) -> Result<revguard_core::detect::Series, StoreError> {
        self.counters_reader().counters(livemode, from, to).await
    }

    pub async fn subscription(
        &self,
        id: &str,
    ) -> Result<Option<revguard_core::billing::SubscriptionState>, StoreError> {
        Ok(self.get_state(Some(format!("sub#{id}"))).await?.value)
    }

    pub async fn case(
        &self,
        invoice_id: &str,
    ) -> Result<Option<revguard_core::billing::DunningCase>, StoreError> {
        Ok(self
            .get_state(Some(format!("case#{invoice_id}")))
            .await?
            .value)
    }
}

pub fn counter_pk(livemode: bool, hour: i64) -> String {
    format!("{}#{hour}", if livemode { "live" } else { "test" })
}

enum CommitError {
    AlreadyApplied,
    Conflict,
    Store(StoreError),
}

impl From<StoreError> for CommitError {
    fn from(e: StoreError) -> Self {
        CommitError::Store(e)
    }
}

/// Reads the hourly counters (the anomaly detector needs nothing else of the worker's state).
#[derive(Clone, Debug)]
pub struct CountersReader {
    client: Client,
    table: String,
}

impl CountersReader {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Hourly counters for one mode over [from, to), plus the all-time gauges of hour 0:
    /// hour → metric → value. One small item per hour, read 100 at a time, whatever the
    /// event volume.
    pub async fn counters(
        &self,
        livemode: bool,
        from: i64,
        to: i64,
    ) -> Result<revguard_core::detect::Series, StoreError> {
        let mut hours = vec![0];
        let mut hour = revguard_core::billing::hour_of(from);
        while hour < to {
            hours.push(hour);
            hour += 3600;
        }
        let mut out = revguard_core::detect::Series::new();
        for chunk in hours.chunks(100) {
            let mut keys: Vec<HashMap<String, AttributeValue>> = chunk
                .iter()
                .map(|h| HashMap::from([(PK.to_owned(), s(counter_pk(livemode, *h)))]))
                .collect();
            while !keys.is_empty() {
                let request = aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .map_err(corrupt)?;
                let response = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(StoreError::unavailable)?;
                for item in response
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    let Some(hour) = item
                        .get(PK)
                        .and_then(|v| v.as_s().ok())
                        .and_then(|pk| pk.split_once('#'))
                        .and_then(|(_, h)| h.parse::<i64>().ok())
                    else {
                        continue;
                    };
                    let metrics = item
                        .into_iter()
                        .filter(|(k, _)| k != PK)
                        .filter_map(|(k, v)| Some((k, v.as_n().ok()?.parse().ok()?)))
                        .collect();
                    out.insert(hour, metrics);
                }
                keys = response
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
            }
        }
        Ok(out)
    }
}
