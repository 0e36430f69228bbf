//! Lambda entry: builds the clients once, then applies SQS batches with partial failures.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use revguard_aws::{load_sdk_config, policy_from_env, SnsNotifier, WorkerEnv};
use revguard_worker::{handle_batch_within, lambda_worker, DEADLINE_MARGIN};

#[tokio::main]
async fn main() -> Result<(), Error> {
    revguard_aws::init_lambda_logging();
    let env = WorkerEnv::from_env()?;
    let policy = policy_from_env()?;
    let sdk = load_sdk_config().await;
    let worker = lambda_worker(
        (
            aws_sdk_dynamodb::Client::new(&sdk),
            aws_sdk_sqs::Client::new(&sdk),
        ),
        &env,
        SnsNotifier::new(aws_sdk_sns::Client::new(&sdk), &env.notifications_topic_arn),
        policy,
    );
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
