//! AWS adapters of revguard's ports: the event log on DynamoDB, the queue on SQS.
//! Every client comes from one `SdkConfig`, which honours `AWS_ENDPOINT_URL` (how the
//! tests point the real SDK clients at moto server).

pub mod alerts;
pub mod billing;
pub mod config;
pub mod dynamo;
#[cfg(feature = "test-util")]
pub mod faults;
pub mod provision;
pub mod read_model;
pub mod recovery;
pub mod sns;
pub mod sqs;
#[cfg(feature = "test-util")]
pub mod testing;

pub use alerts::{DynamoAlerts, SnsAlertPublisher};
pub use billing::{DynamoBilling, DynamoCounters};
pub use config::{
    detect_config_from_env, ingest_config_from_env, load_sdk_config, load_webhook_secrets,
    policy_from_env, read_webhook_secrets, webhook_secret_arn, webhook_secret_loader, AnomalyEnv,
    ApiEnv, ConfigError, IngressEnv, WorkerEnv,
};
pub use dynamo::DynamoEventLog;
pub use read_model::DynamoReadModel;
pub use recovery::{stripe_client_from_env, AwsAudit, AwsRequery, Recovery, RecoveryEnv};
pub use sns::SnsNotifier;
pub use sqs::{SqsDeadLetterAdmin, SqsDeadLetters, SqsQueue, SqsRedelivery};

/// JSON logs for Lambda (CloudWatch stamps each line), filtered by `RUST_LOG` (default
/// `info`), with the current span's fields (event id and type) on every line.
pub fn init_lambda_logging() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(true)
        .without_time()
        .init();
}
