//! Alert state on DynamoDB, and alert messages on SNS.
//!
//! Alerts table (`pk`): `alert#<id>` (state JSON and `version`), `pending#<mode>#<key>`
//! (event-level findings from the worker) and `outbox#<message id>` (transitions committed
//! but not yet published). Event-level alerts (one per large refund, fraud warning or
//! charge pair) make it grow with traffic, so a detector run never scans it: what a run
//! reads (open alerts, pending findings, the outbox) carries `active`, the key of the
//! sparse index [`ACTIVE_INDEX`], and one Query reads it. A resolved alert leaves the
//! index and expires [`CLOSED_ALERT_RETENTION_SECS`] later (TTL on `expires_at`); the few
//! a run needs to reopen are read by key.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use aws_sdk_sns::types::MessageAttributeValue;
use revguard_core::domain::detector::alerts::AlertState;
use revguard_core::domain::detector::alerts::{AlertChange, AlertMessage};
use revguard_core::domain::detector::Finding;
use revguard_core::ports::{
    AlertSnapshot, AlertStore, PublishError, Publisher, StoreError, CLOSED_ALERT_RETENTION_SECS,
};

use crate::item::{batch_get, corrupt, s, Read, PK};
pub use crate::item::{pending_pk, ACTIVE, ACTIVE_INDEX, ATTR_ACTIVE};

#[derive(Clone, Debug)]
pub struct DynamoAlerts {
    client: Client,
    table: String,
}

impl DynamoAlerts {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

impl AlertStore for DynamoAlerts {
    async fn add_pending(&self, finding: &Finding) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(pending_pk(finding)))
            .item(
                "finding",
                s(serde_json::to_string(finding).map_err(corrupt)?),
            )
            .item(ATTR_ACTIVE, s(ACTIVE))
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        Ok(())
    }

    /// One Query of the sparse index (eventually consistent, as index reads are: a write
    /// of the last second may be seen by the next run instead; alert writes stay
    /// conditioned on versions, so a stale read changes nothing).
    async fn snapshot(&self, until: i64) -> Result<AlertSnapshot, StoreError> {
        let mut out = AlertSnapshot::default();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(ACTIVE_INDEX)
                .key_condition_expression("#active = :active")
                .expression_attribute_names("#active", ATTR_ACTIVE)
                .expression_attribute_values(":active", s(ACTIVE))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(StoreError::unavailable)?;
            for item in page.items() {
                let pk = item
                    .get(PK)
                    .and_then(|v| v.as_s().ok())
                    .map(String::as_str)
                    .unwrap_or("");
                let body = |attr: &str| {
                    item.get(attr)
                        .and_then(|v| v.as_s().ok())
                        .ok_or_else(|| corrupt(format!("{pk} without {attr}")))
                };
                if pk.starts_with("alert#") {
                    out.alerts
                        .push(serde_json::from_str(body("state")?).map_err(corrupt)?);
                } else if pk.starts_with("pending#") {
                    out.pending
                        .push(serde_json::from_str(body("finding")?).map_err(corrupt)?);
                } else if pk.starts_with("outbox#") {
                    out.outbox
                        .push(serde_json::from_str(body("message")?).map_err(corrupt)?);
                }
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => {
                    out.pending.retain(|f| f.window_end <= until);
                    return Ok(out);
                }
            }
        }
    }

    /// Consistent reads by key.
    async fn alerts(&self, ids: &[String]) -> Result<Vec<AlertState>, StoreError> {
        let pks: Vec<String> = ids.iter().map(|id| format!("alert#{id}")).collect();
        let mut out = Vec::new();
        for item in batch_get(&self.client, &self.table, &pks, Read::Strong).await? {
            let json = item
                .get("state")
                .and_then(|v| v.as_s().ok())
                .ok_or_else(|| corrupt("alert without state"))?;
            out.push(serde_json::from_str(json).map_err(corrupt)?);
        }
        Ok(out)
    }

    async fn commit_change(
        &self,
        change: &AlertChange,
        message: Option<&AlertMessage>,
        now: i64,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        let st = &change.state;
        let mut put = Put::builder()
            .table_name(&self.table)
            .item(PK, s(format!("alert#{}", st.id)))
            .item("state", s(serde_json::to_string(st).map_err(corrupt)?))
            .item("version", AttributeValue::N(st.version.to_string()))
            .item("updated_at", AttributeValue::N(now.to_string()));
        put = if st.open {
            put.item(ATTR_ACTIVE, s(ACTIVE))
        } else {
            // Out of the index, into the resolved one (the operator API lists the recent
            // ones), and forgotten after the retention.
            let expires_at = revguard_core::domain::time::unix_now() + CLOSED_ALERT_RETENTION_SECS;
            let resolved_at = st.resolved_at.unwrap_or(now);
            put.item("expires_at", AttributeValue::N(expires_at.to_string()))
                .item("resolved", s("1"))
                .item("resolved_at", AttributeValue::N(resolved_at.to_string()))
        };
        put = match change.expected_version {
            Some(v) => put
                .condition_expression("version = :v")
                .expression_attribute_values(":v", AttributeValue::N(v.to_string())),
            None => put.condition_expression("attribute_not_exists(pk)"),
        };
        let mut items = vec![TransactWriteItem::builder()
            .put(put.build().map_err(corrupt)?)
            .build()];
        if let Some(m) = message {
            let outbox = Put::builder()
                .table_name(&self.table)
                .item(PK, s(format!("outbox#{}", m.id)))
                .item("message", s(serde_json::to_string(m).map_err(corrupt)?))
                .item("leased_until", AttributeValue::N(lease_until.to_string()))
                .item(ATTR_ACTIVE, s(ACTIVE))
                .build()
                .map_err(corrupt)?;
            items.push(TransactWriteItem::builder().put(outbox).build());
        }
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            // The alert's own condition failed: it moved on under us, another run made
            // this change. Any other cancellation (a throttle, a conflict with a write in
            // flight) changed nothing: the run fails, and the finding waits for the next.
            Err(SdkError::ServiceError(e)) if alert_moved_on(e.err()) => Ok(false),
            Err(e) => Err(StoreError::unavailable(e)),
        }
    }

    /// One conditional update per message: it takes the lease only if no one holds it.
    async fn claim_outbox(
        &self,
        message_ids: &[String],
        now: i64,
        lease_until: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut claimed = Vec::new();
        for id in message_ids {
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(PK, s(format!("outbox#{id}")))
                .update_expression("SET leased_until = :until")
                .condition_expression(
                    "attribute_exists(pk) AND (attribute_not_exists(leased_until) OR leased_until <= :now)",
                )
                .expression_attribute_values(":until", AttributeValue::N(lease_until.to_string()))
                .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
                .send()
                .await;
            match result {
                Ok(_) => claimed.push(id.clone()),
                Err(SdkError::ServiceError(e))
                    if e.err().is_conditional_check_failed_exception() => {}
                Err(e) => return Err(StoreError::unavailable(e)),
            }
        }
        Ok(claimed)
    }

    /// Removes the event-level findings a run has judged, unless the worker rewrote one
    /// since it was read.
    async fn consume_findings(&self, findings: &[Finding]) -> Result<(), StoreError> {
        for f in findings {
            let json = serde_json::to_string(f).map_err(corrupt)?;
            let result = self
                .client
                .delete_item()
                .table_name(&self.table)
                .key(PK, s(pending_pk(f)))
                .condition_expression("finding = :f")
                .expression_attribute_values(":f", s(json))
                .send()
                .await;
            match result {
                Ok(_) => {}
                Err(SdkError::ServiceError(e))
                    if e.err().is_conditional_check_failed_exception() => {}
                Err(e) => return Err(StoreError::unavailable(e)),
            }
        }
        Ok(())
    }

    async fn clear_outbox(&self, message_ids: &[String]) -> Result<(), StoreError> {
        for id in message_ids {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key(PK, s(format!("outbox#{id}")))
                .send()
                .await
                .map_err(StoreError::unavailable)?;
        }
        Ok(())
    }
}

/// Alert messages on the alerts topic: `MessageStructure=json` with an `email` body, a
/// short `sms` body, the whole message for SQS and Lambda subscribers, an AWS Chatbot
/// custom notification for HTTPS and HTTP subscribers (Chatbot subscribes over HTTPS),
/// a `default`, and attributes subscriptions filter on. One publish serves every
/// protocol, so the outbox's once-per-transition holds for chat as for email.
#[derive(Clone, Debug)]
pub struct SnsAlertPublisher {
    client: aws_sdk_sns::Client,
    topic_arn: String,
    dashboard_url: Option<String>,
}

fn attr(value: &str) -> Result<MessageAttributeValue, PublishError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(PublishError::new)
}

impl SnsAlertPublisher {
    pub fn new(client: aws_sdk_sns::Client, topic_arn: impl Into<String>) -> Self {
        Self {
            client,
            topic_arn: topic_arn.into(),
            dashboard_url: None,
        }
    }

    /// A link shown in chat messages.
    pub fn with_dashboard(mut self, url: Option<String>) -> Self {
        self.dashboard_url = url;
        self
    }
}

impl Publisher<AlertMessage> for SnsAlertPublisher {
    async fn publish(&self, m: &AlertMessage) -> Result<(), PublishError> {
        // Email and SMS subscribers get their own bodies; machine subscribers (SQS, HTTPS,
        // Lambda) get the whole structured message.
        let full = serde_json::to_string(m).map_err(PublishError::new)?;
        let chat =
            revguard_core::domain::chat::chatbot_notification(m, self.dashboard_url.as_deref())
                .to_string();
        let body = serde_json::json!({
            "default": m.default, "email": m.email, "sms": m.sms, "sqs": full, "lambda": full,
            "https": chat, "http": chat,
        })
        .to_string();
        let mut request = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .message_structure("json")
            .subject(crate::sns::sns_subject(&m.subject))
            .message(body)
            .message_attributes("severity", attr(m.severity.as_str())?)
            .message_attributes("metric", attr(&m.metric)?)
            .message_attributes("signal", attr(&m.signal)?)
            .message_attributes("livemode", attr(if m.livemode { "true" } else { "false" })?)
            .message_attributes("transition", attr(m.transition.as_str())?)
            .message_attributes("alert_id", attr(&m.id)?);
        // Whose it is, for subscription filters (Connect): an account id, or `all`.
        if !m.finding.scope.is_platform() {
            request = request.message_attributes("account", attr(m.finding.scope.label())?);
        }
        request.send().await.map_err(PublishError::new)?;
        Ok(())
    }
}

/// The digests sent: one item each in the alerts table (`digest#<id>`), expiring after
/// the closed alerts' retention.
impl revguard_core::usecases::digest::DigestLedger for DynamoAlerts {
    async fn was_sent(&self, id: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(format!("digest#{id}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        Ok(out.item.is_some())
    }

    async fn mark_sent(&self, id: &str, at: i64) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(format!("digest#{id}")))
            .item("sent_at", AttributeValue::N(at.to_string()))
            .item(
                "expires_at",
                AttributeValue::N(
                    (at + revguard_core::ports::CLOSED_ALERT_RETENTION_SECS).to_string(),
                ),
            )
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        Ok(())
    }
}

/// Whether a cancelled alert transaction was cancelled by the alert item's own condition
/// (its first item), and not by a throttle or a conflict with a write in flight.
fn alert_moved_on(e: &TransactWriteItemsError) -> bool {
    match e {
        TransactWriteItemsError::TransactionCanceledException(c) => c
            .cancellation_reasons()
            .first()
            .and_then(|r| r.code())
            .is_some_and(|code| code == "ConditionalCheckFailed"),
        _ => false,
    }
}
