//! The worker's state on DynamoDB, behind the [`BillingStore`] port.
//!
//! State table (`pk`): `applied#<event>` markers, `sub#<id>`, `case#<invoice>`,
//! `cust#<id>` (JSON state with a `ver` for optimistic concurrency), `charge#<id>`
//! (its customer, and in `applied` the ids of the events about it: their markers) and
//! `outbox#<event>` (notifications not yet published).
//! Counters table (`pk` = `live#<hour>` / `test#<hour>`): one numeric attribute per metric.
//!
//! A batch commits in one `TransactWriteItems`: the applied markers (condition: absent;
//! for an event about a charge, its id added to the charge item's `applied` set, condition:
//! not in it, which spares the event a marker item and the charge link a write of its own),
//! each changed state item (condition: the version it was read at), the counter
//! increments summed per item, the findings and the outbox entries. A cancelled
//! transaction is a conflict: the use case reads and decides again. Maxima, and a charge
//! link no event of the batch marks (none today: every link comes from an event about
//! its charge), are idempotent, so they are written before the transaction, outside it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::item::{batch_get, corrupt, n, pending_pk, s, Read, ACTIVE, ATTR_ACTIVE, PK};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use revguard_core::domain::billing::Notification;
use revguard_core::domain::detector::Series;
use revguard_core::domain::metric::{Aggregation, CounterTotals, Metric};
use revguard_core::ports::{
    Account, BillingCommit, BillingStore, Claimed, CommitError, CountersReader, EventKey,
    StateKeys, StateSnapshot, StoreError, Versioned,
};

/// Applied marker items outlive SQS's longest retention (14 days). The `applied` sets of
/// charge items never expire: a charge has few events, and its item stays for disputes.
pub const APPLIED_TTL_SECS: i64 = 30 * 86_400;
/// DynamoDB's limit of items per transaction.
const MAX_TRANSACTION_ITEMS: usize = 100;

#[derive(Clone, Debug)]
pub struct DynamoBilling {
    client: Client,
    state_table: String,
    counters_table: String,
    /// Where event-level findings wait for the detector (the alerts table).
    alerts_table: Option<String>,
    /// The largest value this process has written per (counter item, metric): a maximum
    /// that is not larger needs no write. Most events then skip the maxima entirely.
    maxima_written: std::sync::Arc<std::sync::Mutex<HashMap<(String, String), i64>>>,
    /// The counter shard this process adds to (0: the hour's own item); moved on after a
    /// conflict or a throttle.
    shard: std::sync::Arc<std::sync::atomic::AtomicU32>,
    /// What this process registered: shards on their hour's item, and connected
    /// accounts' `seen` marks.
    registered: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// Until when a batch's marker reads are strongly consistent: for a while after a
    /// commit of this process conflicted, so that its retry does not read the same stale
    /// marker again.
    strong_reads_until: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

/// How long a conflict keeps a process's batch reads strongly consistent.
const STRONG_READS_AFTER_CONFLICT: std::time::Duration = std::time::Duration::from_secs(10);

/// How many items an hour's sum counters may be spread over: the hour's own item
/// (`live#<hour>`, shard 0) and up to 7 more (`live#<hour>#<k>`). A process adds to one of
/// them, starting with the hour's item, and moves to another when its commit conflicts
/// or is throttled, so concurrent workers stop queueing on one hot item. Before it first
/// adds to shard k of an hour it records k in that hour's item (`shards`), and the detector
/// reads the hour items, then only the shards they name: at low volume nothing is
/// sharded and reads cost what they did. docs/operations.md (Scaling) gives the numbers.
pub const COUNTER_SHARDS: u32 = 8;

/// `max_received_at` moves with every delivery; a worker process writing it once in five
/// minutes is enough for the delivery-gap signal, which needs 90 minutes of silence (a
/// gap then looks at most five minutes longer than it is).
pub const MAX_RECEIVED_AT_GRANULARITY_SECS: i64 = 300;

fn state_of<T: serde::de::DeserializeOwned>(
    item: &HashMap<String, AttributeValue>,
) -> Result<Versioned<T>, StoreError> {
    let json = item
        .get("state")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| corrupt("item without state"))?;
    let version = item
        .get("ver")
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(Versioned {
        value: serde_json::from_str(json).map_err(corrupt)?,
        version,
    })
}

impl DynamoBilling {
    pub fn new(
        client: Client,
        state_table: impl Into<String>,
        counters_table: impl Into<String>,
    ) -> Self {
        Self {
            client,
            state_table: state_table.into(),
            counters_table: counters_table.into(),
            alerts_table: None,
            maxima_written: Default::default(),
            shard: Default::default(),
            registered: Default::default(),
            strong_reads_until: Default::default(),
        }
    }

    /// How a batch reads its applied markers. Eventually consistent (half the price): the
    /// commit writes every marker on the condition that it is absent, so a marker a stale
    /// read missed can only make the commit conflict, and the retry reads strongly.
    fn batch_read(&self) -> Read {
        let until = *self
            .strong_reads_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match until {
            Some(t) if std::time::Instant::now() < t => Read::Strong,
            _ => Read::Eventual,
        }
    }

    /// Adds to this counter shard (tests place writers on chosen shards).
    pub fn with_counter_shard(self, shard: u32) -> Self {
        self.shard
            .store(shard % COUNTER_SHARDS, std::sync::atomic::Ordering::Relaxed);
        self
    }

    fn counter_shard(&self) -> u32 {
        self.shard.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// After a conflict or a throttle, the next attempt adds to another shard (never the
    /// hour's own item again: that is the one everybody starts on).
    fn next_counter_shard(&self) {
        let _ = self.shard.fetch_update(
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
            |s| Some(1 + (s + spread()) % (COUNTER_SHARDS - 1)),
        );
    }

    /// Records the shards this commit adds to on their hours' items, once per process,
    /// before anything is added to them: the detector finds every shard with counts (its reads
    /// are eventually consistent, so a shard named in the last second may wait for its next run).
    async fn register_shards(&self, commit: &BillingCommit, shard: u32) -> Result<(), CommitError> {
        if shard == 0 {
            return Ok(());
        }
        let hours: BTreeSet<(bool, i64)> = commit
            .events
            .iter()
            .flat_map(|e| &e.counters)
            .filter(|u| u.metric.aggregation() == Aggregation::Sum)
            .map(|u| (u.livemode, u.hour))
            .collect();
        for (livemode, hour) in hours {
            let shard_pk = counter_shard_pk(&commit.account, livemode, hour, shard);
            if self.is_registered(&shard_pk) {
                continue;
            }
            self.client
                .update_item()
                .table_name(&self.counters_table)
                .key(PK, s(counter_pk(&commit.account, livemode, hour)))
                .update_expression("ADD shards :k")
                .expression_attribute_values(":k", AttributeValue::Ns(vec![shard.to_string()]))
                .send()
                .await
                .map_err(write_error)?;
            self.remember_registered(shard_pk);
        }
        Ok(())
    }

    /// Whether this process wrote `pk`'s registration already (a shard on its hour, an
    /// account's `seen` mark): each is written once per process.
    fn is_registered(&self, pk: &str) -> bool {
        self.registered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(pk)
    }

    fn remember_registered(&self, pk: String) {
        self.registered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(pk);
    }

    pub fn with_alerts_table(mut self, table: impl Into<String>) -> Self {
        self.alerts_table = Some(table.into());
        self
    }

    /// Reads of state-table items by key, 100 at a time; unprocessed keys are asked again.
    /// Returns pk → item.
    async fn get_many(
        &self,
        pks: BTreeSet<String>,
        read: Read,
    ) -> Result<HashMap<String, HashMap<String, AttributeValue>>, StoreError> {
        let keys: Vec<String> = pks.into_iter().collect();
        let items = batch_get(&self.client, &self.state_table, &keys, read).await?;
        Ok(items
            .into_iter()
            .filter_map(|item| Some((item.get(PK)?.as_s().ok()?.clone(), item)))
            .collect())
    }

    fn put_state<T: serde::Serialize>(
        &self,
        pk: String,
        value: &T,
        expected: Option<i64>,
        extra: &[(&str, AttributeValue)],
    ) -> Result<TransactWriteItem, StoreError> {
        let mut put = Put::builder()
            .table_name(&self.state_table)
            .item(PK, s(pk))
            .item("state", s(serde_json::to_string(value).map_err(corrupt)?))
            .item("ver", n(expected.unwrap_or(0) + 1));
        for (k, v) in extra {
            put = put.item(*k, v.clone());
        }
        put = match expected {
            Some(v) => put
                .condition_expression("ver = :ver")
                .expression_attribute_values(":ver", n(v)),
            None => put.condition_expression("attribute_not_exists(pk)"),
        };
        Ok(TransactWriteItem::builder()
            .put(put.build().map_err(corrupt)?)
            .build())
    }

    fn transaction(
        &self,
        commit: &BillingCommit,
        shard: u32,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let now = commit.now;
        // Every state key is the account's (the platform's as it always was).
        let key = |k: String| commit.account.key(&k);
        let mut items = Vec::new();
        for (charge, events) in events_by_charge(commit) {
            let mut update = Update::builder()
                .table_name(&self.state_table)
                .key(PK, s(key(format!("charge#{charge}"))))
                .expression_attribute_values(
                    ":ids",
                    AttributeValue::Ss(events.iter().map(|e| e.to_string()).collect()),
                );
            let mut not_yet = Vec::new();
            for (i, e) in events.iter().enumerate() {
                update = update.expression_attribute_values(format!(":e{i}"), s(*e));
                not_yet.push(format!("NOT contains(applied, :e{i})"));
            }
            let link = commit.charge_links.iter().find(|(c, _)| *c == charge);
            let expression = match link {
                Some((_, customer)) => {
                    // The account's customer key: `customer` is the customer index's hash,
                    // so a connected account's charge stays out of the platform's customer.
                    update = update
                        .expression_attribute_values(":customer", s(commit.account.key(customer)));
                    "ADD applied :ids SET customer = if_not_exists(customer, :customer)"
                }
                None => "ADD applied :ids",
            };
            let update = update
                .update_expression(expression)
                .condition_expression(format!(
                    "attribute_not_exists(applied) OR ({})",
                    not_yet.join(" AND ")
                ))
                .build()
                .map_err(corrupt)?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        for e in commit.events.iter().filter(|e| e.charge.is_none()) {
            let marker = Put::builder()
                .table_name(&self.state_table)
                .item(PK, s(format!("applied#{}", e.event_id)))
                .item("applied_at", n(now))
                .item("expires_at", n(now + APPLIED_TTL_SECS))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(corrupt)?;
            items.push(TransactWriteItem::builder().put(marker).build());
        }
        // `customer` and `stage` key the read model's sparse indexes (see
        // `read_model`): present only when known, as an index key must be a string.
        // The customer index's hash is the account's customer key too.
        for w in &commit.subscriptions {
            let customer = w
                .value
                .customer
                .as_ref()
                .map(|c| ("customer", s(key(c.clone()))));
            items.push(self.put_state(
                key(format!("sub#{}", w.value.id)),
                &w.value,
                w.expected_version,
                &Vec::from_iter(customer),
            )?);
        }
        for w in &commit.cases {
            let (case, stage) = &w.value;
            let mut extra = Vec::new();
            extra.extend(stage.map(|st| ("stage", s(st.as_str()))));
            extra.extend(case.customer.clone().map(|c| ("customer", s(key(c)))));
            items.push(self.put_state(
                key(format!("case#{}", case.invoice_id)),
                case,
                w.expected_version,
                &extra,
            )?);
        }
        for w in &commit.customers {
            items.push(self.put_state(
                key(format!("cust#{}", w.value.id)),
                &w.value,
                w.expected_version,
                &[("customer", s(key(w.value.id.clone())))],
            )?);
        }
        // Counter increments summed per item and metric: one expression may name an
        // attribute once, and a zero is no write.
        let mut by_item: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        for u in commit
            .events
            .iter()
            .flat_map(|e| &e.counters)
            .filter(|u| u.metric.aggregation() == Aggregation::Sum)
        {
            *by_item
                .entry(counter_shard_pk(&commit.account, u.livemode, u.hour, shard))
                .or_default()
                .entry(u.metric.name())
                .or_default() += u.value;
        }
        for (pk, adds) in by_item {
            let adds: Vec<(String, i64)> = adds.into_iter().filter(|(_, v)| *v != 0).collect();
            if adds.is_empty() {
                continue;
            }
            let mut update = Update::builder()
                .table_name(&self.counters_table)
                .key(PK, s(pk.clone()));
            let mut clauses = Vec::new();
            for (i, (metric, value)) in adds.iter().enumerate() {
                update = update
                    .expression_attribute_names(format!("#m{i}"), metric)
                    .expression_attribute_values(format!(":v{i}"), n(*value));
                clauses.push(format!("#m{i} :v{i}"));
            }
            // A connected account's counter items carry their day, the key of the sparse
            // index the detector finds the active accounts by (set once: no index write after).
            let expression = match active_day(&commit.account, &pk) {
                Some(day) => {
                    update = update
                        .expression_attribute_names("#day", ATTR_DAY)
                        .expression_attribute_values(":day", s(day));
                    format!(
                        "ADD {} SET #day = if_not_exists(#day, :day)",
                        clauses.join(", ")
                    )
                }
                None => format!("ADD {}", clauses.join(", ")),
            };
            let update = update
                .update_expression(expression)
                .build()
                .map_err(corrupt)?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        if let Some(table) = &self.alerts_table {
            // One item per finding key: the last one of the batch stands.
            let mut findings = BTreeMap::new();
            for f in commit.events.iter().flat_map(|e| &e.findings) {
                findings.insert(pending_pk(f), f);
            }
            for (pk, f) in findings {
                let put = Put::builder()
                    .table_name(table)
                    .item(PK, s(pk))
                    .item("finding", s(serde_json::to_string(f).map_err(corrupt)?))
                    .item(ATTR_ACTIVE, s(ACTIVE))
                    .build()
                    .map_err(corrupt)?;
                items.push(TransactWriteItem::builder().put(put).build());
            }
        }
        for e in commit.events.iter().filter(|e| !e.notifications.is_empty()) {
            let put = Put::builder()
                .table_name(&self.state_table)
                .item(PK, s(format!("outbox#{}", e.event_id)))
                .item(
                    "notifications",
                    s(serde_json::to_string(&e.notifications).map_err(corrupt)?),
                )
                .item("expires_at", n(now + APPLIED_TTL_SECS))
                .item("leased_until", n(commit.outbox_lease_until))
                .build()
                .map_err(corrupt)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        Ok(items)
    }

    /// Which customer a charge belongs to (disputes name only the charge), for the links
    /// the transaction does not write. Idempotent, so outside it, at half the cost; an
    /// update, so that the charge item's `applied` set stays.
    async fn link_charges(&self, commit: &BillingCommit) -> Result<(), CommitError> {
        let in_transaction = events_by_charge(commit);
        for (charge, customer) in commit
            .charge_links
            .iter()
            .filter(|(c, _)| !in_transaction.contains_key(c.as_str()))
        {
            self.client
                .update_item()
                .table_name(&self.state_table)
                .key(PK, s(commit.account.key(&format!("charge#{charge}"))))
                .update_expression("SET customer = if_not_exists(customer, :customer)")
                .expression_attribute_values(":customer", s(commit.account.key(customer)))
                .send()
                .await
                .map_err(write_error)?;
        }
        Ok(())
    }

    /// A connected account's hour-0 item, once per process and mode: marked seen (the
    /// sparse index's `<mode>#seen`), so that `/api/accounts` lists every account with a
    /// Query, never a Scan. Idempotent, outside the transaction; the platform's items are
    /// never marked.
    async fn mark_seen(&self, commit: &BillingCommit) -> Result<(), CommitError> {
        if commit.account.is_platform() {
            return Ok(());
        }
        let modes: BTreeSet<bool> = commit
            .events
            .iter()
            .flat_map(|e| &e.counters)
            .map(|u| u.livemode)
            .collect();
        for livemode in modes {
            let pk = counter_pk(&commit.account, livemode, 0);
            if self.is_registered(&pk) {
                continue;
            }
            self.client
                .update_item()
                .table_name(&self.counters_table)
                .key(PK, s(pk.clone()))
                .update_expression("SET #day = if_not_exists(#day, :seen)")
                .expression_attribute_names("#day", ATTR_DAY)
                .expression_attribute_values(":seen", s(seen_day(livemode)))
                .send()
                .await
                .map_err(write_error)?;
            self.remember_registered(pk);
        }
        Ok(())
    }

    /// Largest-value counters: idempotent by nature, so they need no transaction; and only
    /// written when larger than what this process last wrote (a cache, never a source of
    /// truth: the conditional update keeps the stored value the maximum).
    async fn apply_maxima(&self, commit: &BillingCommit) -> Result<(), CommitError> {
        let mut maxima: BTreeMap<(String, String), i64> = BTreeMap::new();
        for u in commit
            .events
            .iter()
            .flat_map(|e| &e.counters)
            .filter(|u| u.metric.aggregation() == Aggregation::Max)
        {
            let slot = maxima
                .entry((
                    counter_pk(&commit.account, u.livemode, u.hour),
                    u.metric.name(),
                ))
                .or_insert(u.value);
            *slot = (*slot).max(u.value);
        }
        for (slot, value) in maxima {
            let margin = if slot.1 == Metric::MaxReceivedAt.name() {
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
            if written.is_some_and(|prev| value <= prev + margin) {
                continue;
            }
            let mut update = self
                .client
                .update_item()
                .table_name(&self.counters_table)
                .key(PK, s(slot.0.clone()))
                .condition_expression("attribute_not_exists(#m) OR #m < :v")
                .expression_attribute_names("#m", &slot.1)
                .expression_attribute_values(":v", n(value));
            update = match active_day(&commit.account, &slot.0) {
                Some(day) => update
                    .update_expression("SET #m = :v, #day = if_not_exists(#day, :day)")
                    .expression_attribute_names("#day", ATTR_DAY)
                    .expression_attribute_values(":day", s(day)),
                None => update.update_expression("SET #m = :v"),
            };
            let result = update.send().await;
            match result {
                Ok(_) => {}
                // A larger value is stored already: nothing to do.
                Err(SdkError::ServiceError(se))
                    if se.err().is_conditional_check_failed_exception() => {}
                Err(e) => return Err(write_error(e)),
            }
            // Remembered only once stored, so a failed write is tried again.
            self.maxima_written
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(slot, value);
        }
        Ok(())
    }

    /// The counters table, for reading.
    pub fn counters_reader(&self) -> DynamoCounters {
        DynamoCounters {
            client: self.client.clone(),
            table: self.counters_table.clone(),
        }
    }

    pub async fn subscription(
        &self,
        account: &Account,
        id: &str,
    ) -> Result<Option<revguard_core::domain::billing::SubscriptionState>, StoreError> {
        self.state_item(account.key(&format!("sub#{id}"))).await
    }

    pub async fn case(
        &self,
        account: &Account,
        invoice_id: &str,
    ) -> Result<Option<revguard_core::domain::billing::DunningCase>, StoreError> {
        self.state_item(account.key(&format!("case#{invoice_id}")))
            .await
    }

    /// One state item's value, by its key.
    async fn state_item<T: serde::de::DeserializeOwned>(
        &self,
        pk: String,
    ) -> Result<Option<T>, StoreError> {
        self.get_many([pk.clone()].into(), Read::Strong)
            .await?
            .get(&pk)
            .map(state_of)
            .transpose()
            .map(|v| v.map(|v| v.value))
    }
}

impl BillingStore for DynamoBilling {
    /// An event is applied if its id is in its charge's `applied` set, or it has a marker
    /// item of its own (every event applied before markers moved to charges has one).
    async fn applied(&self, events: &[EventKey]) -> Result<BTreeSet<String>, StoreError> {
        // Markers of their own are keyed by Stripe's event id alone (unique across
        // accounts); a charge's item is its account's.
        let charge_pk = |e: &EventKey, c: &str| e.account.key(&format!("charge#{c}"));
        let mut pks: BTreeSet<String> =
            events.iter().map(|e| format!("applied#{}", e.id)).collect();
        pks.extend(
            events
                .iter()
                .filter_map(|e| Some(charge_pk(e, e.charge.as_ref()?))),
        );
        let found = self.get_many(pks, self.batch_read()).await?;
        let on_charge = |e: &EventKey| -> bool {
            e.charge
                .as_ref()
                .and_then(|c| found.get(&charge_pk(e, c)))
                .and_then(|item| item.get("applied"))
                .and_then(|v| v.as_ss().ok())
                .is_some_and(|ids| ids.contains(&e.id))
        };
        Ok(events
            .iter()
            .filter(|e| found.contains_key(&format!("applied#{}", e.id)) || on_charge(e))
            .map(|e| e.id.clone())
            .collect())
    }

    async fn load(&self, keys: &StateKeys) -> Result<StateSnapshot, StoreError> {
        let mut out = StateSnapshot::default();
        let key = |k: String| keys.account.key(&k);
        let links = self
            .get_many(
                keys.charges
                    .iter()
                    .map(|c| key(format!("charge#{c}")))
                    .collect(),
                // Nothing conditions on a link's absence: read it as it is.
                Read::Strong,
            )
            .await?;
        for c in &keys.charges {
            if let Some(customer) = links
                .get(&key(format!("charge#{c}")))
                .and_then(|i| i.get("customer"))
                .and_then(|v| v.as_s().ok())
            {
                let (_, customer) = Account::split_key(customer);
                out.charge_customers.insert(c.clone(), customer.to_owned());
            }
        }
        let customers: BTreeSet<&String> = keys
            .customers
            .iter()
            .chain(out.charge_customers.values())
            .collect();
        let mut pks: BTreeSet<String> = keys
            .subscriptions
            .iter()
            .map(|k| key(format!("sub#{k}")))
            .collect();
        pks.extend(keys.invoices.iter().map(|k| key(format!("case#{k}"))));
        pks.extend(customers.iter().map(|k| key(format!("cust#{k}"))));
        // Strongly: a decision may rest on an item the commit does not change (a customer's
        // payment method for a trial's notice), so no condition would catch a stale read.
        let items = self.get_many(pks, Read::Strong).await?;
        for k in &keys.subscriptions {
            if let Some(item) = items.get(&key(format!("sub#{k}"))) {
                out.subscriptions.insert(k.clone(), state_of(item)?);
            }
        }
        for k in &keys.invoices {
            if let Some(item) = items.get(&key(format!("case#{k}"))) {
                out.cases.insert(k.clone(), state_of(item)?);
            }
        }
        for k in customers {
            if let Some(item) = items.get(&key(format!("cust#{k}"))) {
                out.customers.insert(k.clone(), state_of(item)?);
            }
        }
        Ok(out)
    }

    async fn commit(&self, commit: &BillingCommit) -> Result<(), CommitError> {
        // One shard for the whole commit: the one it registers is the one it adds to.
        let shard = self.counter_shard();
        let items = self.transaction(commit, shard)?;
        if items.len() > MAX_TRANSACTION_ITEMS {
            return Err(CommitError::TooLarge);
        }
        // The idempotent writes go first: if they fail, the batch is retried; if the
        // transaction then conflicts, writing them again does no harm.
        self.apply_maxima(commit).await?;
        self.mark_seen(commit).await?;
        self.link_charges(commit).await?;
        self.register_shards(commit, shard).await?;
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map(|_| ())
            .map_err(transaction_error);
        if matches!(result, Err(CommitError::Conflict | CommitError::Throttled)) {
            self.next_counter_shard();
        }
        if matches!(result, Err(CommitError::Conflict)) {
            *self
                .strong_reads_until
                .lock()
                .unwrap_or_else(|p| p.into_inner()) =
                Some(std::time::Instant::now() + STRONG_READS_AFTER_CONFLICT);
        }
        result
    }

    /// One conditional update per waiting entry: it takes the lease only if no one holds
    /// it, so two workers never both get an event's notifications.
    async fn claim_outbox(
        &self,
        event_ids: &[String],
        now: i64,
        lease_until: i64,
    ) -> Result<Claimed<Notification>, StoreError> {
        let waiting = self
            .get_many(
                event_ids.iter().map(|id| format!("outbox#{id}")).collect(),
                Read::Strong,
            )
            .await?;
        let mut out = Claimed::default();
        for id in event_ids {
            let pk = format!("outbox#{id}");
            if !waiting.contains_key(&pk) {
                continue;
            }
            let claimed = self
                .client
                .update_item()
                .table_name(&self.state_table)
                .key(PK, s(pk))
                .update_expression("SET leased_until = :until")
                .condition_expression(
                    "attribute_exists(pk) AND (attribute_not_exists(leased_until) OR leased_until <= :now)",
                )
                .expression_attribute_values(":until", n(lease_until))
                .expression_attribute_values(":now", n(now))
                .return_values(ReturnValue::AllNew)
                .send()
                .await;
            match claimed {
                Ok(answer) => {
                    let json = answer
                        .attributes()
                        .and_then(|item| item.get("notifications"))
                        .and_then(|v| v.as_s().ok())
                        .ok_or_else(|| corrupt("outbox"))?;
                    out.messages
                        .extend(serde_json::from_str::<Vec<Notification>>(json).map_err(corrupt)?);
                }
                Err(SdkError::ServiceError(e))
                    if e.err().is_conditional_check_failed_exception() =>
                {
                    out.held.push(id.clone())
                }
                Err(e) => return Err(StoreError::unavailable(e)),
            }
        }
        Ok(out)
    }

    /// An event's outbox item goes when all of its notifications are out; otherwise it
    /// keeps the unpublished ones, released.
    async fn settle_outbox(
        &self,
        published: &[String],
        unpublished: &[Notification],
    ) -> Result<(), StoreError> {
        let mut events: BTreeMap<String, Vec<&Notification>> = published
            .iter()
            .filter_map(|id| {
                id.rsplit_once(':')
                    .map(|(event, _)| (event.to_owned(), Vec::new()))
            })
            .collect();
        for n in unpublished {
            events.entry(n.event_id.clone()).or_default().push(n);
        }
        for (event_id, left) in events {
            let pk = format!("outbox#{event_id}");
            let result = if left.is_empty() {
                self.client
                    .delete_item()
                    .table_name(&self.state_table)
                    .key(PK, s(pk))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(StoreError::unavailable)
            } else {
                self.client
                    .update_item()
                    .table_name(&self.state_table)
                    .key(PK, s(pk))
                    .update_expression("SET notifications = :n REMOVE leased_until")
                    .expression_attribute_values(
                        ":n",
                        s(serde_json::to_string(&left).map_err(corrupt)?),
                    )
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(StoreError::unavailable)
            };
            result?;
        }
        Ok(())
    }
}

/// The commit's events whose markers go on their charge's item, by charge.
fn events_by_charge(commit: &BillingCommit) -> BTreeMap<&str, Vec<&str>> {
    let mut out: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for e in &commit.events {
        if let Some(charge) = &e.charge {
            out.entry(charge.as_str())
                .or_default()
                .push(e.event_id.as_str());
        }
    }
    out
}

/// What a failed `TransactWriteItems` means for the batch, from its cancellation reasons
/// (one per item): a refused item (`ValidationError`) can never pass, a throttled one
/// passes later, and a moved item or marker (`ConditionalCheckFailed`,
/// `TransactionConflict`) means reading and deciding again.
pub fn transaction_error<R: std::fmt::Debug + Send + Sync + 'static>(
    e: SdkError<TransactWriteItemsError, R>,
) -> CommitError {
    if let SdkError::ServiceError(service) = &e {
        if let TransactWriteItemsError::TransactionCanceledException(cancelled) = service.err() {
            let codes: Vec<&str> = cancelled
                .cancellation_reasons()
                .iter()
                .filter_map(|r| r.code())
                .collect();
            return if codes.contains(&"ValidationError") {
                CommitError::Invalid(cancelled.message().unwrap_or("ValidationError").to_owned())
            } else if codes.iter().any(|c| THROTTLED.contains(c)) {
                CommitError::Throttled
            } else {
                CommitError::Conflict
            };
        }
    }
    write_error(e)
}

/// Error codes with which DynamoDB sheds load.
const THROTTLED: [&str; 5] = [
    "ThrottlingException",
    "ThrottlingError",
    "ProvisionedThroughputExceededException",
    "ProvisionedThroughputExceeded",
    "RequestLimitExceeded",
];

/// What a failed DynamoDB write means for the batch, by its error code. The SDK retries
/// throttles a few times itself but never `TransactionConflictException` (a plain write
/// against an item in an in-flight transaction): both come back to the use case's backoff.
pub fn write_error<E, R>(e: SdkError<E, R>) -> CommitError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match e.code() {
        Some("TransactionConflictException" | "TransactionInProgressException") => {
            CommitError::Conflict
        }
        Some(code) if THROTTLED.contains(&code) => CommitError::Throttled,
        Some("ValidationException") => {
            CommitError::Invalid(e.message().unwrap_or("ValidationException").to_owned())
        }
        _ => CommitError::Store(StoreError::unavailable(e)),
    }
}

/// The counter item of an account's hour: its maxima, and the sums written before
/// sharding (`live#<hour>` for the platform, `<acct>#live#<hour>` for a connected account).
pub fn counter_pk(account: &Account, livemode: bool, hour: i64) -> String {
    account.key(&format!("{}#{hour}", mode_word(livemode)))
}

/// The item of one shard of an account's hour's sums (shard 0 is the hour's own item).
pub fn counter_shard_pk(account: &Account, livemode: bool, hour: i64, shard: u32) -> String {
    match shard {
        0 => counter_pk(account, livemode, hour),
        k => format!("{}#{k}", counter_pk(account, livemode, hour)),
    }
}

fn mode_word(livemode: bool) -> &'static str {
    if livemode {
        "live"
    } else {
        "test"
    }
}

/// The counters table's sparse index of connected accounts' items: hash `day`
/// (`<mode>#<yyyy-mm-dd>` on an hour's items, `<mode>#seen` on hour 0's), range `pk`,
/// keys only. The platform's items never carry `day`, so a platform without connected
/// accounts writes and reads what it always did.
pub const DAY_INDEX: &str = "by_day";
pub const ATTR_DAY: &str = "day";

/// The `day` of a connected account's counter item (`None` for the platform's, and for
/// hour 0, whose mark is [`seen_day`]).
fn active_day(account: &Account, pk: &str) -> Option<String> {
    if account.is_platform() {
        return None;
    }
    let (_, own) = Account::split_key(pk);
    let mut parts = own.split('#');
    let mode = parts.next()?;
    let hour: i64 = parts.next()?.parse().ok()?;
    (hour != 0).then(|| format!("{mode}#{}", day_of(hour)))
}

/// The index key every connected account's hour-0 item carries.
fn seen_day(livemode: bool) -> String {
    format!("{}#seen", mode_word(livemode))
}

fn day_of(hour: i64) -> String {
    revguard_core::domain::time::rfc3339(hour)[..10].to_owned()
}

/// A step to the next shard that differs between processes (time and pid), so that
/// workers that conflicted with each other do not move to the same shard. Not a secret.
fn spread() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    1 + (nanos ^ std::process::id().wrapping_mul(0x9E37_79B9)) % (COUNTER_SHARDS - 1)
}

/// The account, mode and hour of a counter item (`[<acct>#]live#<hour>[#<shard>]`).
fn hour_of_item(item: &HashMap<String, AttributeValue>) -> Option<(Account, bool, i64)> {
    let (account, own) = Account::split_key(item.get(PK)?.as_s().ok()?);
    let mut parts = own.split('#');
    let livemode = parts.next()? == "live";
    Some((account, livemode, parts.next()?.parse().ok()?))
}

/// Reads the hourly counters (the anomaly detector needs nothing else of the worker's state).
#[derive(Clone, Debug)]
pub struct DynamoCounters {
    client: Client,
    table: String,
}

impl DynamoCounters {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

impl DynamoCounters {
    /// The counter items `keys` and the shards their hour items name (only under
    /// contention), combined per account and hour: sums add, maxima take the largest.
    async fn read_items(&self, keys: &[String]) -> Result<BTreeMap<Account, Series>, StoreError> {
        // Eventually consistent: the detector judges hours, and a second's lag is nothing.
        let mut items = batch_get(&self.client, &self.table, keys, Read::Eventual).await?;
        let shard_keys: Vec<String> = items
            .iter()
            .filter_map(|item| {
                let (account, livemode, hour) = hour_of_item(item)?;
                let shards = item.get("shards")?.as_ns().ok()?;
                Some((account, livemode, hour, shards.clone()))
            })
            .flat_map(|(account, livemode, hour, shards)| {
                shards
                    .into_iter()
                    .filter_map(|k| k.parse::<u32>().ok())
                    .filter(|k| (1..COUNTER_SHARDS).contains(k))
                    .map(move |k| counter_shard_pk(&account, livemode, hour, k))
            })
            // A connected account's shards are in the day index already.
            .filter(|pk| !keys.contains(pk))
            .collect::<BTreeSet<String>>()
            .into_iter()
            .collect();
        if !shard_keys.is_empty() {
            items.extend(batch_get(&self.client, &self.table, &shard_keys, Read::Eventual).await?);
        }
        let mut out: BTreeMap<Account, Series> = BTreeMap::new();
        for item in items {
            let Some((account, _, hour)) = hour_of_item(&item) else {
                continue;
            };
            let combined = out.entry(account).or_default().entry(hour).or_default();
            // A name this build does not know is skipped, never misread.
            for (name, value) in item.into_iter().filter(|(k, _)| k != PK) {
                let (Some(metric), Some(value)) = (
                    Metric::parse(&name),
                    value.as_n().ok().and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    continue;
                };
                let aggregation = metric.aggregation();
                combined
                    .entry(metric)
                    .and_modify(|v| *v = aggregation.combine(*v, value))
                    .or_insert(value);
            }
        }
        for series in out.values_mut() {
            series.retain(|_, metrics| !metrics.is_empty());
        }
        Ok(out)
    }

    /// The `pk`s the day index holds under one key (keys only, eventually consistent).
    async fn day_keys(&self, day: &str) -> Result<Vec<String>, StoreError> {
        crate::item::index_pks(&self.client, &self.table, DAY_INDEX, (ATTR_DAY, day), None).await
    }

    /// Whether any connected account was ever seen in a mode (a Query of one key).
    async fn any_seen(&self, livemode: bool) -> Result<bool, StoreError> {
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(DAY_INDEX)
            .key_condition_expression("#d = :d")
            .expression_attribute_names("#d", ATTR_DAY)
            .expression_attribute_values(":d", s(seen_day(livemode)))
            .limit(1)
            .send()
            .await;
        match page {
            Ok(page) => Ok(!page.items().is_empty()),
            // Just added by a stack update and still being built: nothing to read yet.
            Err(e) if crate::item::is_index_being_built(&e) => Ok(false),
            Err(e) => Err(StoreError::unavailable(e)),
        }
    }

    /// Every connected account seen in a mode (one Query of the day index's `seen` key).
    pub async fn accounts_seen_in(&self, livemode: bool) -> Result<Vec<Account>, StoreError> {
        let mut out: Vec<Account> = self
            .day_keys(&seen_day(livemode))
            .await?
            .iter()
            .map(|pk| Account::split_key(pk).0)
            .filter(|a| !a.is_platform())
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Each account's gauges of hour 0, both modes (one BatchGetItem per 100 items).
    pub async fn gauges(
        &self,
        accounts: &[Account],
    ) -> Result<BTreeMap<Account, CounterTotals>, StoreError> {
        let keys: Vec<String> = accounts
            .iter()
            .flat_map(|a| [counter_pk(a, false, 0), counter_pk(a, true, 0)])
            .collect();
        let items = batch_get(&self.client, &self.table, &keys, Read::Eventual).await?;
        let mut out: BTreeMap<Account, CounterTotals> = BTreeMap::new();
        for item in items {
            let Some(pk) = item.get(PK).and_then(|v| v.as_s().ok()) else {
                continue;
            };
            let (account, own) = Account::split_key(pk);
            let livemode = own.starts_with("live#");
            let totals = out.entry(account).or_default();
            for (name, value) in &item {
                if let (Some(metric), Some(value)) = (
                    Metric::parse(name),
                    value.as_n().ok().and_then(|v| v.parse::<i64>().ok()),
                ) {
                    totals.insert((livemode, 0, metric), value);
                }
            }
        }
        Ok(out)
    }
}

fn hours_in(from: i64, to: i64) -> Vec<i64> {
    let mut hours = vec![0];
    let mut hour = revguard_core::domain::billing::hour_of(from);
    while hour < to {
        hours.push(hour);
        hour += 3600;
    }
    hours
}

impl CountersReader for DynamoCounters {
    /// Hourly counters for one account and mode over [from, to), plus its all-time
    /// gauges of hour 0: hour → metric → value. Per hour, its item and its shards (a few
    /// small items), read 100 at a time and combined, whatever the event volume.
    async fn counters(
        &self,
        livemode: bool,
        account: &Account,
        from: i64,
        to: i64,
    ) -> Result<Series, StoreError> {
        let keys: Vec<String> = hours_in(from, to)
            .iter()
            .map(|h| counter_pk(account, livemode, *h))
            .collect();
        Ok(self
            .read_items(&keys)
            .await?
            .remove(account)
            .unwrap_or_default())
    }

    /// The connected accounts with counts in [from, to): one keys-only Query of the day
    /// index per day of the window, then one read of exactly the items it names (their
    /// shards included) and each active account's hour-0 gauges. A platform that never
    /// saw a connected account pays one Query that finds nothing (half a read unit).
    async fn connected(
        &self,
        livemode: bool,
        from: i64,
        to: i64,
    ) -> Result<BTreeMap<Account, Series>, StoreError> {
        if !self.any_seen(livemode).await? {
            return Ok(BTreeMap::new());
        }
        let mut days: BTreeSet<String> = BTreeSet::new();
        let mut hour = revguard_core::domain::billing::hour_of(from);
        while hour < to {
            days.insert(format!("{}#{}", mode_word(livemode), day_of(hour)));
            hour += 3600;
        }
        let mut keys: BTreeSet<String> = BTreeSet::new();
        for day in &days {
            for pk in self.day_keys(day).await? {
                let (account, own) = Account::split_key(&pk);
                let hour: Option<i64> = own.split('#').nth(1).and_then(|h| h.parse().ok());
                if account.is_platform() || !hour.is_some_and(|h| h >= from && h < to) {
                    continue;
                }
                keys.insert(counter_pk(&account, livemode, 0));
                keys.insert(pk);
            }
        }
        if keys.is_empty() {
            return Ok(BTreeMap::new());
        }
        let keys: Vec<String> = keys.into_iter().collect();
        let mut out = self.read_items(&keys).await?;
        out.retain(|account, _| !account.is_platform());
        Ok(out)
    }
}

/// The connected accounts seen in either mode: two Queries of the day index.
impl revguard_core::ports::AccountsSeen for DynamoCounters {
    async fn accounts_seen(&self) -> Result<Vec<Account>, StoreError> {
        let mut out = self.accounts_seen_in(false).await?;
        out.extend(self.accounts_seen_in(true).await?);
        out.sort();
        out.dedup();
        Ok(out)
    }
}
