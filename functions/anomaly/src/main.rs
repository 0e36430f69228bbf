//! Lambda entry: builds the clients once, then runs the detector (or the digest) on each
//! scheduled event.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use revguard_anomaly::DetectorFunction;
use revguard_aws::{lambda_sdk_config, DetectorEnv};

#[tokio::main]
async fn main() -> Result<(), Error> {
    revguard_aws::init_lambda_logging();
    let env = DetectorEnv::from_env()?;
    let sdk = lambda_sdk_config()?;
    let function = &DetectorFunction::from_env(&sdk, &env).await?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        function.handle(event.payload, revguard_core::domain::time::unix_now())
    }))
    .await
}
