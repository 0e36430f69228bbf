//! AWS adapters of revguard's ports: the event log on DynamoDB, the queue on SQS.
//! Every client comes from one `SdkConfig`, which honours `AWS_ENDPOINT_URL` (how the
//! tests point the real SDK clients at moto server).

pub mod billing;
pub mod config;
pub mod dynamo;
pub mod provision;
pub mod sns;
pub mod sqs;
#[cfg(feature = "test-util")]
pub mod testing;

pub use config::{ingest_config_from_env, load_sdk_config, policy_from_env, ConfigError, IngressEnv, WorkerEnv};
pub use billing::DynamoBilling;
pub use dynamo::DynamoEventLog;
pub use sns::SnsNotifier;
pub use sqs::SqsQueue;
