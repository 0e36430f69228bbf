//! Lambda entry of the EventBridge door: reads the ingress's settings (no signing secret:
//! nothing is signed), builds the clients once, and records each Stripe event the partner
//! event bus's rule delivers.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use revguard_aws::{lambda_sdk_config, IngressEnv};
use revguard_ingress::BridgeDoor;
use serde_json::value::RawValue;

#[tokio::main]
async fn main() -> Result<(), Error> {
    revguard_aws::init_lambda_logging();
    let env = IngressEnv::unsigned_from_env()?;
    let sdk = lambda_sdk_config()?;
    let door = &BridgeDoor::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        aws_sdk_sqs::Client::new(&sdk),
        &env,
    );
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<Box<RawValue>>| async move {
            let now = revguard_core::domain::time::unix_now();
            // Boxed: the SDK futures inside nest deeper than the compiler lays out by default.
            Box::pin(door.handle(event.payload.get().as_bytes(), now))
                .await
                .map_err(Error::from)
        },
    ))
    .await
}
