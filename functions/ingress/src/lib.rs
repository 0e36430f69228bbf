//! The ingress Lambda: the shared webhook router over DynamoDB and SQS.

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
    router_with_clients(
        aws_sdk_dynamodb::Client::new(sdk),
        aws_sdk_sqs::Client::new(sdk),
        env,
        ingest,
        clock,
    )
}

/// The same router over given clients (tests point one of them at an outage).
pub fn router_with_clients(
    dynamodb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    env: &IngressEnv,
    ingest: IngestConfig,
    clock: Clock,
) -> Router {
    let log = DynamoEventLog::new(dynamodb, env.events_table.clone());
    let queue = SqsQueue::new(sqs, env.queue_url.clone(), env.max_message_bytes);
    router(Arc::new(App::new(Ingress::new(log, queue, ingest), clock)))
}
