//! Lambda entry: reads the routing key once, then pages for each SQS batch of the alerts
//! topic's messages, with partial failures.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use revguard_pager::{handle_batch, Pager, PagerEnv};

#[tokio::main]
async fn main() -> Result<(), Error> {
    revguard_aws::init_lambda_logging();
    let env = PagerEnv::from_env()?;
    let sdk = revguard_aws::lambda_sdk_config()?;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let pager = Pager::from_secret(&secrets, &env).await?;
    let pager = &pager;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, Error>(handle_batch(pager, event.payload).await)
    }))
    .await
}
