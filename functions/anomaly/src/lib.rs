//! The anomaly Lambda: on a schedule, reads the last 8 days of hourly counters and the
//! alert state (never events: its cost does not grow with volume), plans the alert
//! transitions, commits each with a condition on the alert's version, and publishes the
//! committed ones to the alerts topic. Two runs at once publish each transition once.

use revguard_aws::billing::CountersReader;
use revguard_aws::{DynamoAlerts, SnsAlertPublisher};
use revguard_core::detect::alerts::{plan, render};
use revguard_core::detect::{detect, hours_needed, DetectConfig, Finding};
use revguard_core::ports::{NotifyError, StoreError};
use serde::Serialize;

pub struct Anomaly {
    pub counters: CountersReader,
    pub alerts: DynamoAlerts,
    pub publisher: SnsAlertPublisher,
    pub config: DetectConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum AnomalyError {
    #[error("a table could not be read or written")]
    Store(#[from] StoreError),
    #[error("an alert could not be published; it stays in the outbox for the next run")]
    Publish(#[from] NotifyError),
}

#[derive(Debug, Default, Serialize)]
pub struct RunSummary {
    pub at: i64,
    pub findings: Vec<Finding>,
    /// `<alert id>:<version> <transition>` for each transition this run published.
    pub published: Vec<String>,
}

impl Anomaly {
    pub async fn run(&self, now: i64) -> Result<RunSummary, AnomalyError> {
        let snapshot = self.alerts.snapshot().await?;
        // Messages a failed run committed but did not publish go out first.
        for m in &snapshot.outbox {
            self.publisher.publish(m).await?;
            self.alerts.delete_outbox(&m.id).await?;
        }
        let (from, to) = hours_needed(now);
        let mut summary = RunSummary {
            at: now,
            ..RunSummary::default()
        };
        for livemode in [false, true] {
            let series = self.counters.counters(livemode, from, to).await?;
            let found = detect(&series, livemode, now, &self.config);
            let events: Vec<Finding> = snapshot
                .pending
                .iter()
                .filter(|f| f.livemode == livemode && f.window_end <= now)
                .cloned()
                .collect();
            for change in plan(
                &found,
                &events,
                &snapshot.alerts,
                livemode,
                now,
                &self.config,
            ) {
                let message = change.transition.is_published().then(|| render(&change));
                if !self.alerts.commit(&change, message.as_ref(), now).await? {
                    continue; // another run got there first
                }
                if let Some(m) = message {
                    self.publisher.publish(&m).await?;
                    self.alerts.delete_outbox(&m.id).await?;
                    tracing::warn!(alert = %m.id, transition = m.transition.as_str(), severity = m.severity.as_str(), "{}", m.finding.explanation);
                    summary
                        .published
                        .push(format!("{} {}", m.id, m.transition.as_str()));
                }
            }
            // Judged: an event-level finding opened its alert, or its alert was open already.
            self.alerts.consume_pending(&events).await?;
            summary.findings.extend(found);
            summary.findings.extend(events);
        }
        Ok(summary)
    }
}

/// The time a scheduled invocation stands for: the EventBridge event's `time`, so that a
/// retried invocation judges the same moment; else now.
pub fn scheduled_time(event: &serde_json::Value, now: i64) -> i64 {
    event
        .get("time")
        .and_then(|t| t.as_str())
        .and_then(revguard_core::billing::customer::parse_rfc3339_utc)
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_scheduled_event_names_its_time() {
        let e = serde_json::json!({ "source": "aws.scheduler", "time": "2026-01-01T00:15:00Z" });
        assert_eq!(super::scheduled_time(&e, 5), 1_767_226_500);
        assert_eq!(super::scheduled_time(&serde_json::json!({}), 5), 5);
    }
}
