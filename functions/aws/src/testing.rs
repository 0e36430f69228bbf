//! Helpers for tests against moto server (feature `test-util`, dev-dependencies only).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

/// The moto server endpoint that `scripts/test` started. Fails loudly without one.
pub fn moto_endpoint() -> String {
    match std::env::var("AWS_ENDPOINT_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "AWS_ENDPOINT_URL is not set: these tests need moto server. Run them with \
             scripts/test (which installs `moto[server]` in a venv and starts it), or start \
             `moto_server -p 5000` yourself and set AWS_ENDPOINT_URL=http://127.0.0.1:5000"
        ),
    }
}

async fn config_for(endpoint: &str, retries: u32) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .test_credentials()
        .endpoint_url(endpoint)
        .retry_config(RetryConfig::standard().with_max_attempts(retries))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_timeout(Duration::from_secs(10))
                .build(),
        )
        .load()
        .await
}

/// SDK configuration pointed at moto.
pub async fn moto_config() -> SdkConfig {
    config_for(&moto_endpoint(), 3).await
}

/// SDK configuration pointed at a closed port: every call fails as in an outage.
pub async fn unreachable_config() -> SdkConfig {
    config_for("http://127.0.0.1:9", 1).await
}

/// A name no other test in this run (or a concurrent run) uses.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
