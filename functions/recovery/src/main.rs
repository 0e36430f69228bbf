//! Lambda entry: builds the clients once, then runs its job (`REVGUARD_JOB`) on each
//! scheduled event.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use revguard_aws::lambda_sdk_config;
use revguard_recovery::{handle_invocation, recovery_from_env, RecoveryFunctionEnv};

#[tokio::main]
async fn main() -> Result<(), Error> {
    revguard_aws::init_lambda_logging();
    let env = RecoveryFunctionEnv::from_env()?;
    let sdk = lambda_sdk_config()?;
    let recovery = &recovery_from_env(&sdk, &env.recovery).await?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        // Backfill and reconcile judge Stripe's state now, whatever moment was scheduled.
        let deadline =
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(event.context.deadline);
        handle_invocation(
            recovery,
            env.job,
            revguard_core::domain::time::unix_now(),
            deadline,
        )
    }))
    .await
}
