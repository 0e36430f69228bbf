//! The anomaly Lambda: on a schedule, runs the core detector use case over the DynamoDB
//! counters and alerts, publishing to the SNS alerts topic for on call and, for a
//! win-back that comes due, to the notifications topic for the team. Two runs at once
//! publish each transition once.

use revguard_aws::{
    AwsAudit, DetectorEnv, DynamoAlerts, DynamoCounters, DynamoEventLog, DynamoReadModel,
    SnsAlertPublisher, SnsDigestPublisher, SnsNotifier,
};
use revguard_core::domain::detector::DetectConfig;
use revguard_core::ports::TokioPause;
use revguard_core::usecases::detector_run::ByAudience;
use revguard_core::usecases::detector_run::Detector;
use revguard_core::usecases::digest::Period;

pub type LambdaDetector = Detector<
    DynamoCounters,
    DynamoAlerts,
    ByAudience<SnsAlertPublisher, SnsNotifier>,
    DynamoReadModel,
    AwsAudit,
    TokioPause,
>;

/// The detector as the Lambda builds it from its environment, in `main` and in the tests.
pub fn lambda_detector(
    dynamodb: aws_sdk_dynamodb::Client,
    sns: aws_sdk_sns::Client,
    env: &DetectorEnv,
    config: DetectConfig,
) -> LambdaDetector {
    Detector {
        counters: DynamoCounters::new(dynamodb.clone(), &env.counters_table),
        alerts: DynamoAlerts::new(dynamodb.clone(), &env.alerts_table),
        publisher: ByAudience {
            on_call: SnsAlertPublisher::new(sns.clone(), &env.alerts_topic_arn)
                .with_dashboard(env.dashboard_url.clone()),
            team: SnsNotifier::new(sns, &env.notifications_topic_arn),
        },
        comebacks: DynamoReadModel::new(
            dynamodb,
            &env.state_table,
            &env.counters_table,
            &env.alerts_table,
        ),
        config,
        audit: None,
        pause: TokioPause,
        wall_clock: revguard_core::domain::time::unix_now,
    }
}

/// With a Stripe API client and the event log, each run audits delivery (see
/// `revguard_core::usecases::recovery::StripeAudit`).
pub fn with_audit(
    mut detector: LambdaDetector,
    api: Option<revguard_stripe::StripeClient>,
    dynamodb: aws_sdk_dynamodb::Client,
    env: &DetectorEnv,
) -> LambdaDetector {
    if let (Some(api), Some(events_table)) = (api, &env.events_table) {
        detector.audit = Some(revguard_core::usecases::recovery::StripeAudit {
            api,
            log: DynamoEventLog::new(dynamodb, events_table),
            endpoint_url: env.webhook_url.clone(),
            eventbridge_source: env.eventbridge_source.clone(),
        });
    }
    detector
}

/// The billing digest's scheduled runs: `{"digest": "day"}` or `{"digest": "week"}` in
/// the invocation, sent to finance's topic once per period and mode.
pub struct Digests {
    read: DynamoReadModel,
    history: DynamoEventLog,
    ledger: DynamoAlerts,
    publisher: SnsDigestPublisher,
    policy: revguard_core::domain::billing::BillingPolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum DigestRunError {
    #[error("the digest needs REVGUARD_DIGEST_TOPIC_ARN and REVGUARD_EVENTS_TABLE")]
    NotConfigured,
    #[error("{0:?} is not a digest period (day or week)")]
    Period(String),
    #[error(transparent)]
    Digest(#[from] revguard_core::usecases::digest::DigestError),
}

impl Digests {
    pub fn new(
        dynamodb: aws_sdk_dynamodb::Client,
        sns: aws_sdk_sns::Client,
        env: &DetectorEnv,
        policy: revguard_core::domain::billing::BillingPolicy,
    ) -> Result<Self, DigestRunError> {
        let (Some(topic), Some(events_table)) = (&env.digest_topic_arn, &env.events_table) else {
            return Err(DigestRunError::NotConfigured);
        };
        Ok(Self {
            read: DynamoReadModel::new(
                dynamodb.clone(),
                &env.state_table,
                &env.counters_table,
                &env.alerts_table,
            ),
            history: DynamoEventLog::new(dynamodb.clone(), events_table),
            ledger: DynamoAlerts::new(dynamodb, &env.alerts_table),
            publisher: SnsDigestPublisher::new(sns, topic),
            policy,
        })
    }

    /// The period an invocation asks a digest of, if it does.
    pub fn requested(event: &serde_json::Value) -> Option<Result<Period, DigestRunError>> {
        let named = event.get("digest")?.as_str().unwrap_or_default();
        Some(Period::parse(named).ok_or_else(|| DigestRunError::Period(named.to_owned())))
    }

    /// Sends the last complete `period`'s digests before `at`; their ids.
    pub async fn run(&self, period: Period, at: i64) -> Result<Vec<String>, DigestRunError> {
        Ok(revguard_core::usecases::digest::send_due(
            &self.read,
            &self.history,
            &self.publisher,
            &self.ledger,
            &self.policy,
            &[period],
            at,
        )
        .await?)
    }
}

/// The anomaly function (its deployed name): the detector, and the digest when it is
/// configured.
pub struct DetectorFunction {
    pub detector: LambdaDetector,
    pub digests: Option<Digests>,
}

impl DetectorFunction {
    /// As main builds it at cold start: the clients, the delivery audit with a Stripe key
    /// and the event log, the digest with its topic.
    pub async fn from_env(
        sdk: &aws_config::SdkConfig,
        env: &DetectorEnv,
    ) -> Result<Self, revguard_aws::ConfigError> {
        let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
        let sns = aws_sdk_sns::Client::new(sdk);
        // The digest's schedules invoke this function too (`{"digest": "day"}`).
        let digests = Digests::new(dynamodb.clone(), sns.clone(), env, env.policy.clone()).ok();
        let detector = lambda_detector(dynamodb.clone(), sns, env, env.detect.clone());
        let detector = with_audit(detector, env.stripe.client(sdk).await?, dynamodb, env);
        Ok(Self { detector, digests })
    }

    /// One invocation at `now` (the wall clock, read by main): a digest when the event
    /// asks for one, else a detector run at the scheduled time.
    pub async fn handle(
        &self,
        event: serde_json::Value,
        now: i64,
    ) -> Result<serde_json::Value, lambda_runtime::Error> {
        if let Some(period) = Digests::requested(&event) {
            let digests = self.digests.as_ref().ok_or(DigestRunError::NotConfigured)?;
            let sent = digests.run(period?, scheduled_time(&event, now)).await?;
            return Ok(serde_json::json!({ "digests": sent }));
        }
        let summary = self.detector.run(scheduled_time(&event, now)).await?;
        if !summary.unpublished.is_empty() {
            tracing::error!(
                unpublished = summary.unpublished.len(),
                "alerts stay in the outbox for the next run"
            );
        }
        Ok(serde_json::json!({
            "at": summary.at,
            "findings": summary.findings.len(),
            "published": summary.published,
        }))
    }
}

/// The time a scheduled invocation stands for, so that a retried or late invocation judges
/// the same moment: `scheduled_time` (the template's schedule input carries Scheduler's
/// `<aws.scheduler.scheduled-time>`), or an EventBridge event's `time`; else now, said in
/// the log (an invocation by hand).
pub fn scheduled_time(event: &serde_json::Value, now: i64) -> i64 {
    let named = ["scheduled_time", "time"].into_iter().find_map(|key| {
        event
            .get(key)
            .and_then(|t| t.as_str())
            .and_then(revguard_core::domain::time::parse_rfc3339)
    });
    named.unwrap_or_else(|| {
        tracing::warn!("the invocation names no scheduled time; judging now");
        now
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_scheduled_event_names_its_time() {
        let e = serde_json::json!({ "source": "aws.scheduler", "time": "2026-01-01T00:15:00Z" });
        assert_eq!(super::scheduled_time(&e, 5), 1_767_226_500);
        // What the template's schedule input sends.
        let input = serde_json::json!({ "scheduled_time": "2026-01-01T00:30:00Z" });
        assert_eq!(super::scheduled_time(&input, 5), 1_767_227_400);
        assert_eq!(super::scheduled_time(&serde_json::json!({}), 5), 5);
    }
}
