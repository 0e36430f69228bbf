//! Paging on AWS: a small forwarder from the alerts topic to PagerDuty's Events API v2.
//!
//! The alerts topic fans out to the pager queue; this function reads it and pages:
//! - an anomaly's transition (the structured message the anomaly function publishes for
//!   machine subscribers) becomes a trigger or a resolve with the alert id as `dedup_key`,
//!   rendered by `revguard_core::domain::pager` as the embedded backend renders it;
//! - a CloudWatch alarm of the stack's own health (also published to the topic) triggers
//!   on ALARM and resolves on OK, keyed by the alarm's ARN.
//!
//! Why a forwarder and not PagerDuty's SNS integration: that integration reads only the
//! CloudWatch alarm format, so anomalies would arrive without their severity or a
//! resolve, and its URL holds the integration key where anyone who can list the topic's
//! subscriptions reads it. Here the key stays in Secrets Manager, and the queue between
//! the topic and the function rides out a PagerDuty outage (redeliveries, then the dead
//! letter queue and its alarm) where an HTTPS subscription gives up within an hour.

use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use revguard_core::domain::detector::alerts::AlertMessage;
use revguard_core::ports::PostFailure;
use serde::Deserialize;
use serde_json::{json, Value};

/// PagerDuty's limit on a summary.
const SUMMARY_MAX: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum PagerConfigError {
    #[error(transparent)]
    Env(#[from] revguard_aws::ConfigError),
    #[error("the PagerDuty routing key's secret cannot be read: {0}")]
    Secret(String),
    #[error("the PagerDuty routing key's secret is empty")]
    EmptySecret,
    #[error("REVGUARD_PAGERDUTY_EVENTS_URL is not an http(s) URL")]
    Url,
    #[error("the HTTP client cannot be built: {0}")]
    Client(String),
}

/// The pager's configuration, read once.
#[derive(Debug, Clone)]
pub struct PagerEnv {
    /// The secret holding the PagerDuty service's integration (routing) key.
    pub routing_key_secret_arn: String,
    /// PagerDuty's Events API (its own unless set: an EU account, or a test double).
    pub events_url: String,
    /// A link shown in each page (the stack's CloudWatch dashboard).
    pub dashboard_url: Option<String>,
}

impl PagerEnv {
    pub fn from_env() -> Result<Self, PagerConfigError> {
        let optional = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Ok(Self {
            routing_key_secret_arn: revguard_aws::config::required(
                "REVGUARD_PAGERDUTY_SECRET_ARN",
            )?,
            events_url: optional("REVGUARD_PAGERDUTY_EVENTS_URL")
                .unwrap_or_else(|| revguard_core::domain::pager::PAGERDUTY_EVENTS_URL.to_owned()),
            dashboard_url: optional("REVGUARD_DASHBOARD_URL"),
        })
    }
}

/// Sends pages. Its `Debug` shows no key.
pub struct Pager {
    client: reqwest::Client,
    url: reqwest::Url,
    routing_key: String,
    dashboard_url: Option<String>,
}

impl std::fmt::Debug for Pager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pager({}, [redacted])", self.url)
    }
}

impl Pager {
    pub fn new(env: &PagerEnv, routing_key: String) -> Result<Self, PagerConfigError> {
        let url = reqwest::Url::parse(&env.events_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or(PagerConfigError::Url)?;
        let client = reqwest::Client::builder()
            // Ten pages a batch within the function's 30 s, with time to report the rest.
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| PagerConfigError::Client(revguard_core::error_chain(&e)))?;
        Ok(Self {
            client,
            url,
            routing_key,
            dashboard_url: env.dashboard_url.clone(),
        })
    }

    /// Reads the routing key from its secret (failing the cold start, with the reason,
    /// when it cannot).
    pub async fn from_secret(
        secrets: &aws_sdk_secretsmanager::Client,
        env: &PagerEnv,
    ) -> Result<Self, PagerConfigError> {
        let out = secrets
            .get_secret_value()
            .secret_id(&env.routing_key_secret_arn)
            .send()
            .await
            .map_err(|e| PagerConfigError::Secret(revguard_core::error_chain(&e)))?;
        let key = out
            .secret_string
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .ok_or(PagerConfigError::EmptySecret)?;
        Self::new(env, key)
    }

    async fn send(&self, event: Value) -> Result<(), PageFailure> {
        let body = revguard_core::domain::pager::with_routing_key(event, &self.routing_key);
        let response = self
            .client
            .post(self.url.clone())
            .json(&body)
            .send()
            .await
            .map_err(|e| PageFailure::Retry(revguard_core::error_chain(&e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let answer = response.text().await.unwrap_or_default();
        // 429 and 5xx pass; any other 4xx says the page itself is wrong, for ever.
        let failure = PostFailure::http(status.as_u16(), &answer, None);
        Err(if failure.retry {
            PageFailure::Retry(failure.error)
        } else {
            PageFailure::Refused(failure.error)
        })
    }
}

/// Why a page did not go out.
#[derive(Debug)]
enum PageFailure {
    /// PagerDuty is busy or down: the message comes back and is paged later.
    Retry(String),
    /// PagerDuty refused the page, or the message is not one to page: retrying would not
    /// change it, so it is logged as an error and let go.
    Refused(String),
}

#[derive(Debug, Deserialize)]
struct SnsEnvelope {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "Message")]
    message: String,
}

/// The fields of a CloudWatch alarm's notification that a page needs.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AlarmNotification {
    alarm_name: String,
    #[serde(default)]
    alarm_arn: Option<String>,
    #[serde(default)]
    alarm_description: Option<String>,
    new_state_value: String,
    #[serde(default)]
    new_state_reason: Option<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    state_change_time: Option<String>,
}

/// What a message from the alerts topic pages, if anything: `Err` for a message that is
/// neither an anomaly's transition nor a CloudWatch alarm (it never will be).
pub fn page_of(sqs_body: &str, link: Option<&str>) -> Result<Option<Value>, String> {
    Ok(timed_page_of(sqs_body, link)?.map(|(page, _)| page))
}

/// A page and the unix time of the change it pages.
type TimedPage = (Value, i64);

/// The page, with when the change it pages happened: an alert transition's time, or an
/// alarm's `StateChangeTime` (0 when unknown). One parse of the message for both.
fn timed_page_of(sqs_body: &str, link: Option<&str>) -> Result<Option<TimedPage>, String> {
    let envelope: SnsEnvelope =
        serde_json::from_str(sqs_body).map_err(|e| format!("not an SNS notification: {e}"))?;
    if envelope.kind != "Notification" {
        return Ok(None);
    }
    if let Ok(m) = serde_json::from_str::<AlertMessage>(&envelope.message) {
        return Ok(revguard_core::domain::pager::pagerduty_event(&m, link).map(|page| (page, m.at)));
    }
    let alarm: AlarmNotification = serde_json::from_str(&envelope.message)
        .map_err(|e| format!("neither an alert transition nor a CloudWatch alarm: {e}"))?;
    let changed_at = alarm
        .state_change_time
        .as_deref()
        // CloudWatch writes `2026-01-10T00:00:00.000+0000`: the seconds are enough.
        .and_then(|t| t.get(..19).map(|s| format!("{s}Z")))
        .and_then(|t| revguard_core::domain::time::parse_rfc3339(&t))
        .unwrap_or(0);
    let dedup_key = revguard_core::domain::pager::dedup_key(&format!(
        "cloudwatch:{}",
        alarm.alarm_arn.as_deref().unwrap_or(&alarm.alarm_name)
    ));
    let page = match alarm.new_state_value.as_str() {
        "ALARM" => {
            let reason = alarm.new_state_reason.unwrap_or_default();
            let summary: String = format!("CloudWatch alarm {}: {reason}", alarm.alarm_name)
                .chars()
                .take(SUMMARY_MAX)
                .collect();
            let mut event = json!({
                "event_action": "trigger",
                "dedup_key": dedup_key,
                "payload": {
                    "summary": summary,
                    "source": format!("revguard stack ({})", alarm.region.as_deref().unwrap_or("AWS")),
                    // The stack's own alarms are all about losing or delaying billing data.
                    "severity": "critical",
                    "component": alarm.alarm_name,
                    "group": "stack_health",
                    "class": "cloudwatch_alarm",
                    "custom_details": {
                        "Description": alarm.alarm_description,
                        "Reason": reason,
                        "Changed at": alarm.state_change_time,
                    },
                },
            });
            if let Some(href) = link {
                event["links"] = json!([{ "href": href, "text": "revguard dashboard" }]);
            }
            Some(event)
        }
        "OK" => Some(json!({ "event_action": "resolve", "dedup_key": dedup_key })),
        _ => None, // INSUFFICIENT_DATA says nothing either way.
    };
    Ok(page.map(|page| (page, changed_at)))
}

/// Pages for one SQS batch, each incident's changes in the order they happened (a batch
/// may hold a trigger after its resolve). A record that cannot be paged now is reported
/// failed (its redelivery pages it later), and so are the later records of the same
/// incident in the batch, so that a resolve never overtakes its trigger.
pub async fn handle_batch(pager: &Pager, event: SqsEvent) -> SqsBatchResponse {
    let link = pager.dashboard_url.as_deref();
    let mut records: Vec<(String, Result<Option<TimedPage>, String>)> = event
        .records
        .into_iter()
        .map(|r| {
            let body = r.body.unwrap_or_default();
            (r.message_id.unwrap_or_default(), timed_page_of(&body, link))
        })
        .collect();
    // Messages not to page (or not pageable) sort first: they hold nothing back.
    records.sort_by_key(|(_, page)| match page {
        Ok(Some((_, at))) => *at,
        _ => 0,
    });
    let mut failures = Vec::new();
    let mut held_back: Vec<String> = Vec::new();
    for (id, page) in records {
        let result = match page {
            Ok(None) => Ok(()),
            Ok(Some((event, _))) => {
                let key = event["dedup_key"].as_str().unwrap_or_default().to_owned();
                if held_back.contains(&key) {
                    Err(PageFailure::Retry(format!(
                        "behind an earlier page of {key} that failed"
                    )))
                } else {
                    let action = event["event_action"].clone();
                    let sent = pager.send(event).await;
                    match &sent {
                        Ok(()) => {
                            tracing::info!(sqs_message = %id, dedup_key = %key, action = %action.as_str().unwrap_or_default(), "paged")
                        }
                        Err(PageFailure::Retry(_)) => held_back.push(key),
                        Err(PageFailure::Refused(_)) => {}
                    }
                    sent
                }
            }
            Err(poison) => Err(PageFailure::Refused(poison)),
        };
        match result {
            Ok(()) => {}
            Err(PageFailure::Refused(error)) => {
                tracing::error!(sqs_message = %id, error = %error, "not paged, and never will be: let go");
            }
            Err(PageFailure::Retry(error)) => {
                tracing::warn!(sqs_message = %id, error = %error, "not paged; redelivered later");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                failures.push(failure);
            }
        }
    }
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures;
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use revguard_core::domain::chat::sample_alert;
    use revguard_core::domain::detector::alerts::Transition;

    fn notification(message: &str) -> String {
        json!({"Type": "Notification", "MessageId": "m-1", "Message": message}).to_string()
    }

    #[test]
    fn an_anomaly_and_an_alarm_page_one_incident_each_and_garbage_is_refused() {
        let opened = sample_alert(Transition::Opened);
        let page = page_of(
            &notification(&serde_json::to_string(&opened).unwrap()),
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(page["event_action"], "trigger");
        assert_eq!(
            page["dedup_key"],
            format!("{}:{}", opened.alert_id, opened.opened_at)
        );

        let alarm = |state: &str| {
            notification(
                &json!({
                    "AlarmName": "revguard-prod-dead-letters",
                    "AlarmArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:revguard-prod-dead-letters",
                    "NewStateValue": state,
                    "NewStateReason": "Threshold Crossed: 1 datapoint [3.0] was greater than 0.0",
                    "Region": "US East (N. Virginia)",
                })
                .to_string(),
            )
        };
        let trigger = page_of(&alarm("ALARM"), Some("https://dash"))
            .unwrap()
            .unwrap();
        assert_eq!(trigger["payload"]["severity"], "critical");
        assert!(trigger["payload"]["summary"]
            .as_str()
            .unwrap()
            .contains("revguard-prod-dead-letters"));
        let resolve = page_of(&alarm("OK"), None).unwrap().unwrap();
        assert_eq!(resolve["event_action"], "resolve");
        assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
        assert_eq!(page_of(&alarm("INSUFFICIENT_DATA"), None).unwrap(), None);

        assert!(page_of(&notification("{\"hello\": 1}"), None).is_err());
        assert!(page_of("not json", None).is_err());
    }
}
