//! The event log on DynamoDB: one small item per event id, written with a conditional
//! put. Items carry metadata only, plus the compressed payload when it could not ride in
//! the SQS message (DynamoDB bills a write per started KB).

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use revguard_core::ports::{EventLog, EventRecord, EventStatus, InsertOutcome, StoreError};

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
