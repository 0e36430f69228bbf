//! Lambda entry: reads config and the signing secret at cold start (and the secret again
//! after a bad signature, at most once a minute), builds the
//! clients once, and serves API Gateway HTTP API requests with the shared router.

use revguard_aws::{lambda_sdk_config, IngressEnv};
use revguard_http::system_clock;
use revguard_ingress::build_router;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    revguard_aws::init_lambda_logging();
    let env = IngressEnv::from_env()?;
    let sdk = lambda_sdk_config()?;
    let ingest = env.ingest_config(env.secrets(&sdk).await?);
    let app = build_router(&sdk, &env, ingest, system_clock());
    lambda_http::run(app).await
}
