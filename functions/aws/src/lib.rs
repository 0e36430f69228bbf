//! AWS adapters of revguard's ports: the event log on DynamoDB, the queue on SQS.
//! Every client comes from one `SdkConfig`, which honours `AWS_ENDPOINT_URL` (how the
//! tests point the real SDK clients at moto server).

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub mod alerts;
pub mod billing;
pub mod config;
pub mod dynamo;
#[cfg(feature = "test-util")]
pub mod faults;
pub mod item;
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
    lambda_sdk_config, load_sdk_config, policy_from_env, read_webhook_secrets,
    stripe_client_from_secret, webhook_secret_loader, ApiEnv, ConfigError, DetectorEnv, IngressEnv,
    StripeEnv, WorkerEnv,
};
pub use dynamo::DynamoEventLog;
pub use read_model::DynamoReadModel;
pub use recovery::{AwsAudit, AwsRequery, Recovery, RecoveryEnv};
pub use sns::{SnsDigestPublisher, SnsNotifier};
pub use sqs::{
    BridgeRedrive, SqsBridgeDeadLetters, SqsDeadLetterAdmin, SqsDeadLetters, SqsQueue,
    SqsRedelivery,
};

/// JSON logs for Lambda (CloudWatch stamps each line), filtered by `RUST_LOG` (default
/// `info`), with the current span's fields (event id and type) on every line.
pub fn init_lambda_logging() {
    lambda_subscriber(log_filter_from_env(LevelFilter::INFO)).init();
}

fn lambda_subscriber(filter: Targets) -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .without_time()
        // The builder's own level (INFO unless told) would cap whatever `filter` allows.
        .with_max_level(LevelFilter::TRACE)
        .finish()
        .with(filter)
}

/// The log filter named by `RUST_LOG`: a level (`debug`) and `target=level` pairs
/// (`info,revguard_core=debug`), else `default`. A plain target filter, not
/// `EnvFilter`: its span-field directives need a regex engine that would add most of a
/// megabyte to every bootstrap.
pub fn log_filter_from_env(default: LevelFilter) -> Targets {
    log_filter(std::env::var("RUST_LOG").ok().as_deref(), default)
}

fn log_filter(spec: Option<&str>, default: LevelFilter) -> Targets {
    spec.map(str::trim)
        .filter(|spec| !spec.is_empty())
        .and_then(|spec| spec.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(default))
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::*;

    #[test]
    fn rust_log_names_a_level_and_targets_else_the_default_holds() {
        let f = log_filter(Some("warn,revguard_core=debug"), LevelFilter::INFO);
        assert!(f.would_enable("revguard_core::usecases::apply_batch", &Level::DEBUG));
        assert!(!f.would_enable("aws_smithy_runtime", &Level::INFO));
        assert!(f.would_enable("aws_smithy_runtime", &Level::WARN));
        // What the installed subscriber lets through, not only what the filter says.
        let installed = lambda_subscriber(log_filter(
            Some("info,revguard_core=debug"),
            LevelFilter::INFO,
        ));
        tracing::subscriber::with_default(installed, || {
            assert!(
                tracing::enabled!(target: "revguard_core::usecases::apply_batch", Level::DEBUG)
            );
            assert!(
                !tracing::enabled!(target: "revguard_core::usecases::apply_batch", Level::TRACE)
            );
            assert!(!tracing::enabled!(target: "hyper", Level::DEBUG));
        });
        for unset in [None, Some(""), Some("  "), Some("not a=filter=spec")] {
            let f = log_filter(unset, LevelFilter::INFO);
            assert!(f.would_enable("revguard_worker", &Level::INFO), "{unset:?}");
            assert!(
                !f.would_enable("revguard_worker", &Level::DEBUG),
                "{unset:?}"
            );
        }
    }
}
