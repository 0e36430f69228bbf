//! The event log on DynamoDB: one item per event id, written with a conditional put.
//! Items carry the metadata and the compressed payload: always when payloads are kept
//! (`REVGUARD_KEEP_PAYLOADS`, the default, for replay), otherwise only when it could not
//! ride in the SQS message (DynamoDB bills a write per started KB).

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use revguard_core::ports::{
    EventHistory, EventLog, EventRecord, EventStatus, InsertOutcome, LogSelection, StoreError,
};

pub const ATTR_ID: &str = "event_id";
pub const ATTR_TTL: &str = "expires_at";

#[derive(Clone, Debug)]
pub struct DynamoEventLog {
    client: Client,
    table: String,
}

impl DynamoEventLog {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn item(record: &EventRecord) -> HashMap<String, AttributeValue> {
        let mut item = HashMap::from([
            (
                ATTR_ID.to_owned(),
                AttributeValue::S(record.event_id.clone()),
            ),
            (
                "event_type".to_owned(),
                AttributeValue::S(record.event_type.clone()),
            ),
            (
                "created".to_owned(),
                AttributeValue::N(record.created.to_string()),
            ),
            ("livemode".to_owned(), AttributeValue::Bool(record.livemode)),
            (
                "received_at".to_owned(),
                AttributeValue::N(record.received_at.to_string()),
            ),
            (
                ATTR_TTL.to_owned(),
                AttributeValue::N(record.expires_at.to_string()),
            ),
            (
                "status".to_owned(),
                AttributeValue::S(record.status.as_str().to_owned()),
            ),
        ]);
        if let Some(day) = mrr_day(&record.event_type, record.created) {
            item.insert(ATTR_MRR_DAY.to_owned(), AttributeValue::S(day));
        }
        // Only a connected account's entry says whose it is: the platform's stay the size
        // they always were.
        if let Some(account) = record.account.id() {
            item.insert("account".to_owned(), AttributeValue::S(account.to_owned()));
        }
        if let Some(p) = &record.stored_payload {
            item.insert(
                "payload".to_owned(),
                AttributeValue::B(Blob::new(p.clone())),
            );
        }
        item
    }

    async fn status_of(&self, event_id: &str) -> Result<EventStatus, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(ATTR_ID, AttributeValue::S(event_id.to_owned()))
            .projection_expression("#s")
            .expression_attribute_names("#s", "status")
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        let item = out
            .item
            .ok_or_else(|| StoreError::Corrupt(format!("{event_id} vanished after a conflict")))?;
        parse_status(&item)
    }
}

fn parse_status(item: &HashMap<String, AttributeValue>) -> Result<EventStatus, StoreError> {
    item.get("status")
        .and_then(|v| v.as_s().ok())
        .and_then(|s| EventStatus::parse(s))
        .ok_or_else(|| StoreError::Corrupt("event item without a known status".into()))
}

impl EventLog for DynamoEventLog {
    async fn insert_if_absent(&self, record: &EventRecord) -> Result<InsertOutcome, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::item(record)))
            .condition_expression("attribute_not_exists(#id)")
            .expression_attribute_names("#id", ATTR_ID)
            // The existing item comes back with the refusal: no second read.
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(InsertOutcome::Inserted),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), PutItemError::ConditionalCheckFailedException(_)) =>
            {
                let existing = match e.err() {
                    PutItemError::ConditionalCheckFailedException(c) => c.item().map(parse_status),
                    _ => None,
                };
                let status = match existing {
                    Some(status) => status?,
                    // Emulators (and older endpoints) may not return the item.
                    None => self.status_of(&record.event_id).await?,
                };
                Ok(InsertOutcome::AlreadyPresent(status))
            }
            Err(e) => Err(StoreError::unavailable(e)),
        }
    }

    async fn mark_queued(&self, event_id: &str) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(ATTR_ID, AttributeValue::S(event_id.to_owned()))
            .update_expression("SET #s = :queued")
            .condition_expression("attribute_exists(#id)")
            .expression_attribute_names("#s", "status")
            .expression_attribute_names("#id", ATTR_ID)
            .expression_attribute_values(
                ":queued",
                AttributeValue::S(EventStatus::Queued.as_str().into()),
            )
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        Ok(())
    }

    async fn stored_payload(&self, event_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(ATTR_ID, AttributeValue::S(event_id.to_owned()))
            .projection_expression("payload")
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        Ok(out
            .item
            .and_then(|mut item| item.remove("payload"))
            .and_then(|v| v.as_b().ok().map(|b| b.as_ref().to_vec())))
    }
}

fn record_of(item: &HashMap<String, AttributeValue>) -> Result<EventRecord, StoreError> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let number = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<i64>().ok())
    };
    Ok(EventRecord {
        event_id: text(ATTR_ID).ok_or_else(|| StoreError::Corrupt("event without id".into()))?,
        event_type: text("event_type").unwrap_or_default(),
        created: number("created").unwrap_or(0),
        livemode: item
            .get("livemode")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
        received_at: number("received_at").unwrap_or(0),
        expires_at: number(ATTR_TTL).unwrap_or(0),
        status: parse_status(item)?,
        stored_payload: item
            .get("payload")
            .and_then(|v| v.as_b().ok())
            .map(|b| b.as_ref().to_vec()),
        account: revguard_core::ports::Account::of_event(text("account").as_deref())
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
    })
}

/// Reading the log back. A window is a Scan (the log has no index by time): an
/// operator's replay, not a hot path.
/// The sparse index of subscription events by day (`mrr_day`, `event_id`): what the
/// digest reads for a period's MRR movements, a Query per day instead of a Scan of the log.
pub const MRR_DAY_INDEX: &str = "by_mrr_day";
pub const ATTR_MRR_DAY: &str = "mrr_day";
const SUBSCRIPTION_EVENTS: &str = "customer.subscription.";

/// The UTC day (`2026-01-10`) a subscription event is indexed under; none for others.
fn mrr_day(event_type: &str, created: i64) -> Option<String> {
    event_type
        .starts_with(SUBSCRIPTION_EVENTS)
        .then(|| revguard_core::domain::time::rfc3339(created)[..10].to_owned())
}

impl DynamoEventLog {
    /// One type of subscription events created in [since, until), through the day index.
    async fn subscription_events(
        &self,
        event_type: &str,
        since: i64,
        until: i64,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let mut out = Vec::new();
        let mut day = since.div_euclid(86_400) * 86_400;
        while day < until {
            let mut start = None;
            loop {
                let page = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(MRR_DAY_INDEX)
                    .key_condition_expression("#day = :day")
                    .filter_expression(
                        "event_type = :type AND created >= :since AND created < :until",
                    )
                    .expression_attribute_names("#day", ATTR_MRR_DAY)
                    .expression_attribute_values(
                        ":day",
                        AttributeValue::S(
                            revguard_core::domain::time::rfc3339(day)[..10].to_owned(),
                        ),
                    )
                    .expression_attribute_values(":type", AttributeValue::S(event_type.to_owned()))
                    .expression_attribute_values(":since", AttributeValue::N(since.to_string()))
                    .expression_attribute_values(":until", AttributeValue::N(until.to_string()))
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(StoreError::unavailable)?;
                for item in page.items() {
                    out.push(record_of(item)?);
                }
                start = page.last_evaluated_key;
                if start.is_none() {
                    break;
                }
            }
            day += 86_400;
        }
        Ok(out)
    }
}

impl EventHistory for DynamoEventLog {
    async fn logged(
        &self,
        selection: &LogSelection,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        if let Some(id) = &selection.event_id {
            let out = self
                .client
                .get_item()
                .table_name(&self.table)
                .key(ATTR_ID, AttributeValue::S(id.clone()))
                .consistent_read(true)
                .send()
                .await
                .map_err(StoreError::unavailable)?;
            return out
                .item
                .as_ref()
                .map(record_of)
                .transpose()
                .map(Vec::from_iter);
        }
        if let (Some(t), Some(since), Some(until), true) = (
            &selection.event_type,
            selection.since,
            selection.until,
            selection.by_day_index,
        ) {
            if t.starts_with(SUBSCRIPTION_EVENTS) {
                let mut out = self.subscription_events(t, since, until).await?;
                out.sort_by(|a, b| (a.created, &a.event_id).cmp(&(b.created, &b.event_id)));
                out.truncate(limit);
                return Ok(out);
            }
        }
        let mut filters = vec!["attribute_exists(#id)".to_owned()];
        let mut values = HashMap::new();
        if let Some(since) = selection.since {
            filters.push("created >= :since".into());
            values.insert(":since".to_owned(), AttributeValue::N(since.to_string()));
        }
        if let Some(until) = selection.until {
            filters.push("created < :until".into());
            values.insert(":until".to_owned(), AttributeValue::N(until.to_string()));
        }
        if let Some(t) = &selection.event_type {
            filters.push("event_type = :type".into());
            values.insert(":type".to_owned(), AttributeValue::S(t.clone()));
        }
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression(filters.join(" AND "))
                .expression_attribute_names("#id", ATTR_ID)
                .set_expression_attribute_values((!values.is_empty()).then(|| values.clone()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(StoreError::unavailable)?;
            for item in page.items() {
                out.push(record_of(item)?);
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        out.sort_by(|a, b| (a.created, &a.event_id).cmp(&(b.created, &b.event_id)));
        out.truncate(limit);
        Ok(out)
    }

    async fn known(
        &self,
        event_ids: &[String],
    ) -> Result<std::collections::BTreeSet<String>, StoreError> {
        let items = crate::item::batch_get_by(
            &self.client,
            &self.table,
            ATTR_ID,
            event_ids,
            crate::item::Read::Strong,
        )
        .await?;
        Ok(items
            .iter()
            .filter_map(|item| item.get(ATTR_ID)?.as_s().ok().cloned())
            .collect())
    }
}
