//! Lambda entry: builds the clients once, then runs its job (`REVGUARD_JOB`) on each
//! scheduled event.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use revguard_aws::{lambda_sdk_config, stripe_client_from_env, Recovery, RecoveryEnv};
use revguard_recovery::{run_while, Job, BACKFILL_RESERVE};

#[tokio::main]
async fn main() -> Result<(), Error> {
    revguard_aws::init_lambda_logging();
    let job = Job::from_env()?;
    let env = RecoveryEnv::from_env()?;
    let sdk = lambda_sdk_config()?;
    let api = stripe_client_from_env(&sdk)
        .await?
        .ok_or("no Stripe API key: set StripeApiKey or ExistingStripeApiKeySecretArn")?;
    let mut recovery = Recovery::new(
        api,
        aws_sdk_dynamodb::Client::new(&sdk),
        aws_sdk_sqs::Client::new(&sdk),
        &env,
    );
    recovery.policy = revguard_aws::policy_from_env()?;
    let recovery = &recovery;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            // Backfill and reconcile judge Stripe's state now, whatever moment was scheduled.
            let now = revguard_core::time::unix_now();
            let deadline =
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(event.context.deadline);
            let keep_going = move || {
                deadline
                    .duration_since(std::time::SystemTime::now())
                    .is_ok_and(|left| left > BACKFILL_RESERVE)
            };
            let summary = run_while(recovery, job, now, &keep_going).await?;
            tracing::info!(job = ?job, summary = %summary, "recovery run");
            Ok::<serde_json::Value, Error>(summary)
        },
    ))
    .await
}
