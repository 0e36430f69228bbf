//! Notifications to an SNS topic, with message attributes subscribers can filter on
//! (`kind`, `stage`, `customer`, `livemode`).

use aws_sdk_sns::types::MessageAttributeValue;
use aws_sdk_sns::Client;
use revguard_core::domain::billing::Notification;
use revguard_core::ports::{PublishError, Publisher};

/// SNS's limits on a subject: "UTF-8 text with no line breaks or control characters,
/// and less than 100 characters long". Publish refuses any other, and would refuse it
/// again on every retry, so the subject is made to fit: control characters become
/// spaces, and a longer one is cut to 98 characters and an ellipsis.
pub const MAX_SUBJECT_CHARS: usize = 99;

pub fn sns_subject(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let clean = clean.trim();
    if clean.chars().count() <= MAX_SUBJECT_CHARS {
        return clean.to_owned();
    }
    let mut cut: String = clean.chars().take(MAX_SUBJECT_CHARS - 1).collect();
    cut.push('…');
    cut
}

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
        let subject = sns_subject(&format!("revguard: {}", n.subject));
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
        // Subscribers filter a connected account's notifications on it (Connect).
        if let Some(account) = n.account.id() {
            req = req.message_attributes("account", attr(account)?);
        }
        req.send().await.map_err(PublishError::new)?;
        Ok(())
    }
}

/// The billing digest to its topic (finance's email; chat through AWS Chatbot when the
/// topic is given to a channel): plain text for email, a Chatbot custom notification for
/// the https protocol, the whole digest as JSON for queues and functions.
#[derive(Clone, Debug)]
pub struct SnsDigestPublisher {
    client: Client,
    topic_arn: String,
}

impl SnsDigestPublisher {
    pub fn new(client: Client, topic_arn: impl Into<String>) -> Self {
        Self {
            client,
            topic_arn: topic_arn.into(),
        }
    }
}

/// Chatbot shows at most 8,000 characters of a description.
const CHATBOT_DESCRIPTION_MAX: usize = 7_900;

impl Publisher<revguard_core::usecases::digest::Digest> for SnsDigestPublisher {
    async fn publish(
        &self,
        d: &revguard_core::usecases::digest::Digest,
    ) -> Result<(), PublishError> {
        let text = d.text();
        let full = serde_json::to_string(d).map_err(PublishError::new)?;
        let chat = serde_json::json!({
            "version": "1.0",
            "source": "custom",
            "id": d.id,
            "content": {
                "textType": "client-markdown",
                "title": d.subject(),
                "description": text.chars().take(CHATBOT_DESCRIPTION_MAX).collect::<String>(),
            },
            "metadata": { "threadId": d.id, "summary": d.subject(), "eventType": "revguard.digest" },
        })
        .to_string();
        let body = serde_json::json!({
            "default": text, "email": text, "sqs": full, "lambda": full, "https": chat, "http": chat,
        })
        .to_string();
        self.client
            .publish()
            .topic_arn(&self.topic_arn)
            .message_structure("json")
            .subject(sns_subject(&d.subject()))
            .message(body)
            .message_attributes("kind", attr("digest")?)
            .message_attributes("period", attr(d.period.as_str())?)
            .message_attributes("livemode", attr(if d.livemode { "true" } else { "false" })?)
            .send()
            .await
            .map_err(PublishError::new)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_is_made_to_fit_what_sns_accepts() {
        let long = format!("Refunds: {}\nsecond line", "é".repeat(150));
        let subject = sns_subject(&long);
        assert!(subject.chars().count() < 100, "{}", subject.chars().count());
        assert!(subject.ends_with('…'));
        assert!(!subject.chars().any(char::is_control), "{subject:?}");
        let exactly_100 = "x".repeat(100);
        assert_eq!(sns_subject(&exactly_100).chars().count(), 99);
        assert_eq!(sns_subject("Disputes\tspike"), "Disputes spike");
    }
}
