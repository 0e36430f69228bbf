//! Lambda entry: builds the clients once, then applies SQS batches with partial failures.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use revguard_aws::{
    load_sdk_config, policy_from_env, DynamoBilling, DynamoEventLog, SnsNotifier, SqsDeadLetters,
    WorkerEnv,
};
use revguard_core::worker::{ConsumeRules, Worker};
use revguard_worker::{handle_batch, TokioPause};

#[tokio::main]
async fn main() -> Result<(), Error> {
    revguard_aws::init_lambda_logging();
    let env = WorkerEnv::from_env()?;
    let policy = policy_from_env()?;
    let sdk = load_sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let worker = Worker {
        log: DynamoEventLog::new(dynamodb.clone(), env.events_table),
        billing: DynamoBilling::new(dynamodb, env.state_table, env.counters_table)
            .with_alerts_table(env.alerts_table),
        notifier: SnsNotifier::new(aws_sdk_sns::Client::new(&sdk), env.notifications_topic_arn),
        dead_letters: SqsDeadLetters::new(
            aws_sdk_sqs::Client::new(&sdk),
            env.dead_letter_queue_url,
        ),
        pause: TokioPause,
        policy,
        rules: ConsumeRules {
            max_receives: env.max_receives,
            ..ConsumeRules::default()
        },
    };
    let worker = &worker;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs() as i64;
        Ok::<SqsBatchResponse, Error>(handle_batch(worker, event.payload, now).await)
    }))
    .await
}
