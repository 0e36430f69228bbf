//! Lambda entry: builds the clients once, then applies SQS batches with partial failures.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use revguard_aws::{lambda_sdk_config, WorkerEnv};

#[tokio::main]
async fn main() -> Result<(), Error> {
    revguard_aws::init_lambda_logging();
    let env = WorkerEnv::from_env()?;
    let sdk = lambda_sdk_config()?;
    let worker = &revguard_worker::from_env(&sdk, &env).await?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        revguard_worker::handle_invocation(worker, event, std::time::SystemTime::now())
    }))
    .await
}
