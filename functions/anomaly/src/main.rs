//! Lambda entry: builds the clients once, then runs the detector on each scheduled event.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use revguard_anomaly::{anomaly, scheduled_time, with_audit, Digests};
use revguard_aws::{
    detect_config_from_env, lambda_sdk_config, policy_from_env, stripe_client_from_env, AnomalyEnv,
};

#[tokio::main]
async fn main() -> Result<(), Error> {
    revguard_aws::init_lambda_logging();
    let env = AnomalyEnv::from_env()?;
    let config = detect_config_from_env()?;
    let sdk = lambda_sdk_config()?;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    // The digest's schedules invoke this function too (`{"digest": "day"}`).
    let digests = Digests::new(
        dynamodb.clone(),
        aws_sdk_sns::Client::new(&sdk),
        &env,
        policy_from_env()?,
    )
    .ok();
    let anomaly = with_audit(
        anomaly(
            dynamodb.clone(),
            aws_sdk_sns::Client::new(&sdk),
            &env,
            config,
        ),
        stripe_client_from_env(&sdk).await?,
        dynamodb,
        &env,
    );
    let (anomaly, digests) = (&anomaly, &digests);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
        if let Some(period) = Digests::requested(&event.payload) {
            let digests = digests.as_ref().ok_or(revguard_anomaly::DigestRunError::NotConfigured)?;
            let sent = digests.run(period?, scheduled_time(&event.payload, now)).await?;
            return Ok(serde_json::json!({ "digests": sent }));
        }
        let summary = anomaly.run(scheduled_time(&event.payload, now)).await?;
        if !summary.unpublished.is_empty() {
            tracing::error!(unpublished = summary.unpublished.len(), "alerts stay in the outbox for the next run");
        }
        Ok::<serde_json::Value, Error>(serde_json::json!({ "at": summary.at, "findings": summary.findings.len(), "published": summary.published }))
    }))
    .await
}
