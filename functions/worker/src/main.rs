//! Lambda entry: builds the clients once, then applies SQS batches with partial failures.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use revguard_aws::{
    config::optional_parsed, lambda_sdk_config, policy_from_env, stripe_client_from_env,
    SnsNotifier, WorkerEnv,
};
use revguard_worker::{handle_batch_within, lambda_worker, DEADLINE_MARGIN};

#[tokio::main]
async fn main() -> Result<(), Error> {
    revguard_aws::init_lambda_logging();
    let env = WorkerEnv::from_env()?;
    let policy = policy_from_env()?;
    let sdk = lambda_sdk_config()?;
    let mut worker = lambda_worker(
        (
            aws_sdk_dynamodb::Client::new(&sdk),
            aws_sdk_sqs::Client::new(&sdk),
        ),
        &env,
        SnsNotifier::new(aws_sdk_sns::Client::new(&sdk), &env.notifications_topic_arn),
        policy,
    );
    // Re-query after important transitions: off unless REVGUARD_REQUERY and a key.
    if optional_parsed("REVGUARD_REQUERY", false)? {
        match stripe_client_from_env(&sdk).await? {
            Some(api) => {
                worker.worker.requery = Some(Box::new(revguard_core::recovery::StripeRequery {
                    api,
                    ingress: revguard_aws::recovery::fetched_ingress(
                        aws_sdk_dynamodb::Client::new(&sdk),
                        aws_sdk_sqs::Client::new(&sdk),
                        &env.events_table,
                        &env.queue_url,
                        revguard_aws::config::DEFAULT_MAX_MESSAGE_BYTES,
                    ),
                }))
            }
            None => tracing::warn!(
                "REVGUARD_REQUERY is set but there is no Stripe key: re-query is off"
            ),
        }
    }
    let worker = &worker;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let clock = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
        let deadline = std::time::Duration::from_millis(event.context.deadline);
        let budget = deadline
            .saturating_sub(clock)
            .saturating_sub(DEADLINE_MARGIN);
        let now = clock.as_secs() as i64;
        Ok::<SqsBatchResponse, Error>(
            handle_batch_within(worker, event.payload, now, Some(budget)).await,
        )
    }))
    .await
}
