//! Lambda entry: reads config, builds the DynamoDB client once, and serves the operator
//! API and the dashboard to IAM-authorized API Gateway requests.

use revguard_aws::{lambda_sdk_config, ApiEnv};
use revguard_http::system_clock;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    revguard_aws::init_lambda_logging();
    let env = ApiEnv::from_env()?;
    let sdk = lambda_sdk_config()?;
    let app = revguard_api::build_router(
        aws_sdk_dynamodb::Client::new(&sdk),
        &env,
        env.policy.clone(),
        system_clock(),
    );
    lambda_http::run(app).await
}
