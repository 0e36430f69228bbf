//! The scheduled recovery function: `REVGUARD_JOB=backfill` (hourly by default) lists the
//! events Stripe has since the last run and feeds what revguard lacks through the
//! ingress; `REVGUARD_JOB=reconcile` (daily) compares subscriptions with Stripe's and
//! mends the drift. Both are core's use cases over the DynamoDB and SQS adapters.

use revguard_aws::{ConfigError, Recovery, RecoveryEnv};

/// Which job a function runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Backfill,
    Reconcile,
}

/// The recovery function's configuration, read once at cold start.
#[derive(Debug, Clone)]
pub struct RecoveryFunctionEnv {
    /// `REVGUARD_JOB`: backfill or reconcile.
    pub job: Job,
    pub recovery: RecoveryEnv,
}

impl RecoveryFunctionEnv {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            job: Job::from_env()?,
            recovery: RecoveryEnv::from_env()?,
        })
    }
}

/// The stack's recovery jobs, with the Stripe key the environment names (required).
pub async fn recovery_from_env(
    sdk: &aws_config::SdkConfig,
    env: &RecoveryEnv,
) -> Result<Recovery, ConfigError> {
    let api = env.stripe.required_client(sdk).await?;
    Ok(Recovery::new(
        api,
        aws_sdk_dynamodb::Client::new(sdk),
        aws_sdk_sqs::Client::new(sdk),
        env,
    ))
}

/// One invocation of the function: the job, at `now`, until `deadline` (both from main)
/// less [`BACKFILL_RESERVE`].
pub async fn handle_invocation(
    recovery: &Recovery,
    job: Job,
    now: i64,
    deadline: std::time::SystemTime,
) -> Result<serde_json::Value, lambda_runtime::Error> {
    let keep_going = move || {
        deadline
            .duration_since(std::time::SystemTime::now())
            .is_ok_and(|left| left > BACKFILL_RESERVE)
    };
    let summary = run_while(recovery, job, now, &keep_going).await?;
    tracing::info!(job = ?job, summary = %summary, "recovery run");
    Ok(summary)
}

impl Job {
    fn from_env() -> Result<Self, ConfigError> {
        match revguard_aws::config::required("REVGUARD_JOB")?.as_str() {
            "backfill" => Ok(Job::Backfill),
            "reconcile" => Ok(Job::Reconcile),
            other => Err(ConfigError::Invalid {
                name: "REVGUARD_JOB",
                reason: format!("expected backfill or reconcile, got {other:?}"),
            }),
        }
    }
}

/// One run of a job at `now`, with all the time it needs; its summary.
pub async fn run(
    recovery: &Recovery,
    job: Job,
    now: i64,
) -> Result<serde_json::Value, revguard_core::usecases::recovery::RecoveryError> {
    run_while(recovery, job, now, &|| true).await
}

/// Time a backfill keeps in hand at the end of an invocation: it starts no window of
/// events with less than this left (a busy hour takes a minute or two to feed through).
pub const BACKFILL_RESERVE: std::time::Duration = std::time::Duration::from_secs(120);

/// One run of a job at `now`, as the function returns and logs its summary. A backfill
/// starts a new window only while `keep_going` says so (the invocation's time left): it
/// resumes next run from where its cursor got to.
pub async fn run_while(
    recovery: &Recovery,
    job: Job,
    now: i64,
    keep_going: &(dyn Fn() -> bool + Send + Sync),
) -> Result<serde_json::Value, revguard_core::usecases::recovery::RecoveryError> {
    Ok(match job {
        Job::Backfill => {
            let (since, summary) = recovery.backfill(now, None, keep_going).await?;
            let mut out = serde_json::to_value(&summary).expect("a summary serialises");
            out["since"] = since.into();
            out
        }
        Job::Reconcile => recovery.reconcile(now).await?.summary(true),
    })
}
