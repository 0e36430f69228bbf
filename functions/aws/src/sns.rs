//! Notifications to an SNS topic, with message attributes subscribers can filter on
//! (`kind`, `stage`, `customer`, `livemode`).

use aws_sdk_sns::types::MessageAttributeValue;
use aws_sdk_sns::Client;
use revguard_core::billing::Notification;
use revguard_core::ports::{PublishError, Publisher};

#[derive(Clone, Debug)]
pub struct SnsNotifier {
    client: Client,
    topic_arn: String,
}

impl SnsNotifier {
    pub fn new(client: Client, topic_arn: impl Into<String>) -> Self {
        Self {
            client,
            topic_arn: topic_arn.into(),
        }
    }
}

fn attr(value: &str) -> Result<MessageAttributeValue, PublishError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(PublishError::new)
}

impl Publisher<Notification> for SnsNotifier {
    async fn publish(&self, n: &Notification) -> Result<(), PublishError> {
        let body = serde_json::to_string(n).map_err(PublishError::new)?;
        // SNS subjects stop at 100 characters.
        let subject: String = format!("revguard: {}", n.subject)
            .chars()
            .take(100)
            .collect();
        let mut req = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(subject)
            .message(body)
            .message_attributes("kind", attr(&n.kind)?)
            .message_attributes("livemode", attr(if n.livemode { "true" } else { "false" })?)
            .message_attributes("notification_id", attr(&n.id)?);
        if let Some(stage) = &n.stage {
            req = req.message_attributes("stage", attr(stage)?);
        }
        if let Some(customer) = &n.customer {
            req = req.message_attributes("customer", attr(customer)?);
        }
        req.send().await.map_err(PublishError::new)?;
        Ok(())
    }
}
