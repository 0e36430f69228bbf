//! The ingress Lambda: the shared webhook router over DynamoDB and SQS.

use std::sync::Arc;

use aws_config::SdkConfig;
use revguard_aws::{DynamoEventLog, IngressEnv, SqsQueue};
use revguard_core::{IngestConfig, Ingress};
use revguard_http::{router, App, Clock, Router};

/// Builds the webhook router from one SDK configuration (clients are built once, at cold
/// start, and reused by every invocation).
pub fn build_router(sdk: &SdkConfig, env: &IngressEnv, ingest: IngestConfig, clock: Clock) -> Router {
    let log = DynamoEventLog::new(aws_sdk_dynamodb::Client::new(sdk), env.events_table.clone());
    let queue = SqsQueue::new(aws_sdk_sqs::Client::new(sdk), env.queue_url.clone(), env.max_message_bytes);
    router(Arc::new(App::new(Ingress::new(log, queue, ingest), clock)))
}
