//! The ingress Lambdas: the shared webhook router over DynamoDB and SQS, and the
//! EventBridge door beside it.

pub mod eventbridge;
pub use eventbridge::BridgeDoor;

use std::sync::Arc;

use aws_config::SdkConfig;
use revguard_aws::{DynamoEventLog, IngressEnv, SqsQueue};
use revguard_core::{IngestConfig, Ingress};
use revguard_http::{router, App, Clock, Router};

/// Builds the webhook router from one SDK configuration (clients are built once, at cold
/// start, and reused by every invocation).
pub fn build_router(
    sdk: &SdkConfig,
    env: &IngressEnv,
    ingest: IngestConfig,
    clock: Clock,
) -> Router {
    let refresh = env
        .webhook_secret_arn
        .as_deref()
        .map(|arn| revguard_aws::webhook_secret_loader(sdk, arn));
    router_with_refresh(
        aws_sdk_dynamodb::Client::new(sdk),
        aws_sdk_sqs::Client::new(sdk),
        env,
        ingest,
        clock,
        refresh,
    )
}

/// How often, at most, a warm function reads the signing secret again after a bad
/// signature.
pub const SECRET_REREAD_SECS: i64 = 60;

/// The same router over given clients (tests point one of them at an outage).
pub fn router_with_clients(
    dynamodb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    env: &IngressEnv,
    ingest: IngestConfig,
    clock: Clock,
) -> Router {
    router_with_refresh(dynamodb, sqs, env, ingest, clock, None)
}

/// The router that reads the secrets again with `refresh` after a bad signature.
pub fn router_with_refresh(
    dynamodb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    env: &IngressEnv,
    ingest: IngestConfig,
    clock: Clock,
    refresh: Option<revguard_core::usecases::ingest::SecretLoader>,
) -> Router {
    let log = DynamoEventLog::new(dynamodb, env.events_table.clone());
    let queue = SqsQueue::new(sqs, env.queue_url.clone(), env.max_message_bytes);
    let mut ingress = Ingress::new(log, queue, ingest);
    if let Some(load) = refresh {
        ingress = ingress.with_secret_refresh(load, SECRET_REREAD_SECS);
    }
    router(Arc::new(App::new(ingress, clock)))
}
