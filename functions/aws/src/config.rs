//! Typed configuration from the environment, read once at cold start.

use std::time::Duration;

use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::{SharedAsyncSleep, SharedCredentialsProvider};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use revguard_stripe::{ApiKey, KeySource, StripeClient};
use std::future::Future;
use std::pin::Pin;

/// The largest SQS message (256 KiB) less room for the message attributes, which SQS
/// counts toward the size.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 256 * 1024 - 2 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("no Stripe API key: set STRIPE_API_KEY_SECRET_ARN or STRIPE_API_KEY (the template's ExistingStripeApiKeySecretArn or StripeApiKey)")]
    NoStripeKey,
}

pub fn required(name: &'static str) -> Result<String, ConfigError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        _ => Err(ConfigError::Missing(name)),
    }
}

pub fn optional_parsed<T: std::str::FromStr>(
    name: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => {
            v.trim().parse().map_err(|e: T::Err| ConfigError::Invalid {
                name,
                reason: e.to_string(),
            })
        }
        _ => Ok(default),
    }
}

/// The ingress function's configuration, read once at cold start.
#[derive(Debug, Clone)]
pub struct IngressEnv {
    pub events_table: String,
    pub queue_url: String,
    pub max_message_bytes: usize,
    /// `STRIPE_WEBHOOK_SECRET_ARN`: the secret holding the signing secrets (how the
    /// template deploys them), read at cold start and again after a bad signature.
    pub webhook_secret_arn: Option<String>,
    /// `STRIPE_WEBHOOK_SECRET`, when no ARN is given.
    pub webhook_secret: Option<revguard_core::SecretSet>,
    /// `REVGUARD_SIGNATURE_TOLERANCE_SECS`, `REVGUARD_MAX_BODY_BYTES`,
    /// `REVGUARD_EVENT_TTL_DAYS`, `REVGUARD_MODES`, `REVGUARD_KEEP_PAYLOADS`.
    pub tolerance_secs: i64,
    pub max_body_bytes: usize,
    pub event_ttl_secs: i64,
    pub modes: revguard_core::ModeFilter,
    pub keep_payloads: bool,
}

impl IngressEnv {
    /// The webhook's ingress: the settings, and where its signing secrets are.
    pub fn from_env() -> Result<Self, ConfigError> {
        let (webhook_secret_arn, webhook_secret) = webhook_secret_source(
            optional("STRIPE_WEBHOOK_SECRET_ARN"),
            optional("STRIPE_WEBHOOK_SECRET"),
        )?;
        Ok(Self {
            webhook_secret_arn,
            webhook_secret,
            ..Self::unsigned_from_env()?
        })
    }

    /// The EventBridge door: the same settings, and no signing secret (nothing it
    /// receives is signed).
    pub fn unsigned_from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            webhook_secret_arn: None,
            webhook_secret: None,
            events_table: required("REVGUARD_EVENTS_TABLE")?,
            queue_url: required("REVGUARD_QUEUE_URL")?,
            max_message_bytes: optional_parsed(
                "REVGUARD_QUEUE_MAX_MESSAGE_BYTES",
                DEFAULT_MAX_MESSAGE_BYTES,
            )?,
            tolerance_secs: optional_parsed(
                "REVGUARD_SIGNATURE_TOLERANCE_SECS",
                revguard_core::domain::signature::DEFAULT_TOLERANCE_SECS,
            )?,
            max_body_bytes: optional_parsed(
                "REVGUARD_MAX_BODY_BYTES",
                revguard_core::usecases::ingest::DEFAULT_MAX_BODY_BYTES,
            )?,
            event_ttl_secs: optional_parsed(
                "REVGUARD_EVENT_TTL_DAYS",
                revguard_core::usecases::ingest::DEFAULT_EVENT_TTL_SECS / 86_400,
            )? * 86_400,
            modes: {
                let raw = optional_parsed("REVGUARD_MODES", "both".to_owned())?;
                revguard_core::ModeFilter::parse(&raw).ok_or(ConfigError::Invalid {
                    name: "REVGUARD_MODES",
                    reason: "expected both, live or test".into(),
                })?
            },
            keep_payloads: optional_parsed("REVGUARD_KEEP_PAYLOADS", true)?,
        })
    }

    /// The ingress use case's settings, with the signing secrets read.
    pub fn ingest_config(&self, secrets: revguard_core::SecretSet) -> revguard_core::IngestConfig {
        revguard_core::IngestConfig {
            secrets,
            tolerance_secs: self.tolerance_secs,
            max_body_bytes: self.max_body_bytes,
            event_ttl_secs: self.event_ttl_secs,
            modes: self.modes,
            keep_payloads: self.keep_payloads,
        }
    }

    /// The signing secrets: read from the secret named by the ARN, else the variable's.
    pub async fn secrets(&self, sdk: &SdkConfig) -> Result<revguard_core::SecretSet, ConfigError> {
        match (&self.webhook_secret_arn, &self.webhook_secret) {
            (Some(arn), _) => read_webhook_secrets(sdk, arn).await,
            (None, Some(secrets)) => Ok(secrets.clone()),
            (None, None) => Err(ConfigError::Missing("STRIPE_WEBHOOK_SECRET")),
        }
    }
}

/// Where the signing secrets come from: the secret the ARN names (how the template
/// deploys them) wins; else the variable's value, which must then be set and well formed.
fn webhook_secret_source(
    arn: Option<String>,
    value: Option<String>,
) -> Result<(Option<String>, Option<revguard_core::SecretSet>), ConfigError> {
    match (arn, value) {
        (Some(arn), _) => Ok((Some(arn), None)),
        (None, Some(value)) => Ok((None, Some(parse_secrets("STRIPE_WEBHOOK_SECRET", &value)?))),
        (None, None) => Err(ConfigError::Missing("STRIPE_WEBHOOK_SECRET")),
    }
}

/// A variable that may be unset or empty.
pub fn optional(name: &'static str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Loads the shared SDK configuration (region, credentials, `AWS_ENDPOINT_URL`) with
/// timeouts shorter than a Lambda's, so a hung dependency becomes a 5xx, not a timeout.
pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .timeout_config(default_timeouts())
        .load()
        .await
}

/// The SDK configuration inside a Lambda function, from the environment Lambda gives it:
/// the region from `AWS_REGION`, the execution role's credentials from
/// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`, `AWS_ENDPOINT_URL` if
/// set, `AWS_MAX_ATTEMPTS` (default 3), and [`load_sdk_config`]'s timeouts. The default
/// chain's other sources (profile files, SSO, web identity through STS, IMDS, ECS) can
/// never answer in Lambda; leaving them out keeps their code (STS's whole client among
/// it) out of the bootstraps. The operator CLI, which runs on a laptop or in CI, keeps
/// [`load_sdk_config`].
pub fn lambda_sdk_config() -> Result<SdkConfig, ConfigError> {
    let region = std::env::var("AWS_REGION")
        .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
        .ok()
        .filter(|r| !r.trim().is_empty())
        .ok_or(ConfigError::Missing("AWS_REGION"))?;
    let max_attempts: u32 = optional_parsed("AWS_MAX_ATTEMPTS", 3)?;
    let mut config = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.trim().to_owned()))
        .credentials_provider(SharedCredentialsProvider::new(
            EnvironmentVariableCredentialsProvider::new(),
        ))
        .http_client(https_client())
        .sleep_impl(SharedAsyncSleep::new(
            aws_smithy_async::rt::sleep::TokioSleep::new(),
        ))
        .retry_config(RetryConfig::standard().with_max_attempts(max_attempts.max(1)))
        .timeout_config(default_timeouts());
    if let Ok(url) = std::env::var("AWS_ENDPOINT_URL") {
        if !url.trim().is_empty() {
            config = config.endpoint_url(url.trim());
        }
    }
    Ok(config.build())
}

/// The SDK's HTTP client: rustls over ring with the system's roots (plain HTTP too, for
/// an `AWS_ENDPOINT_URL` such as moto's), and `HTTPS_PROXY`/`NO_PROXY` honoured as the
/// SDK's default client does. That default (rustls over aws-lc) is not compiled in, so
/// every configuration is given this one.
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector = aws_smithy_http_client::ConnectorBuilder::default().tls_provider(
            tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring),
        );
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

pub fn default_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(3))
        .operation_timeout(Duration::from_secs(8))
        .build()
}

/// The signing secrets held in a Secrets Manager secret.
pub async fn read_webhook_secrets(
    sdk: &SdkConfig,
    arn: &str,
) -> Result<revguard_core::SecretSet, ConfigError> {
    let out = aws_sdk_secretsmanager::Client::new(sdk)
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| {
            use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
            let hint = kms_hint(e.code(), e.message()).unwrap_or("");
            ConfigError::Invalid {
                name: "STRIPE_WEBHOOK_SECRET_ARN",
                reason: format!(
                    "cannot read the secret: {}{hint}",
                    revguard_core::error_chain(&e)
                ),
            }
        })?;
    let value = out.secret_string.ok_or(ConfigError::Invalid {
        name: "STRIPE_WEBHOOK_SECRET_ARN",
        reason: "the secret has no string value".into(),
    })?;
    parse_secrets("STRIPE_WEBHOOK_SECRET_ARN", &value)
}

/// What to do when Secrets Manager could not decrypt the secret for the function: the
/// case of a secret under a customer-managed KMS key whose ARN the stack was not given.
fn kms_hint(code: Option<&str>, message: Option<&str>) -> Option<&'static str> {
    let kms = message.is_some_and(|m| m.contains("KMS") || m.contains("kms"));
    match code {
        Some("DecryptionFailure") => Some(KMS_HINT),
        Some("AccessDeniedException") if kms => Some(KMS_HINT),
        _ => None,
    }
}

const KMS_HINT: &str = " (the secret is encrypted with a KMS key this function may not use: \
    deploy with StripeSecretKmsKeyArn=<the key's ARN>, which grants kms:Decrypt through \
    Secrets Manager only)";

/// Reads the Secrets Manager secret again when asked: the ingress does so after a
/// signature matches none of its secrets (at most once a minute), so that a deploy that
/// changes the secret's value reaches warm functions.
pub fn webhook_secret_loader(
    sdk: &SdkConfig,
    arn: &str,
) -> revguard_core::usecases::ingest::SecretLoader {
    let (sdk, arn) = (sdk.clone(), arn.to_owned());
    std::sync::Arc::new(move || {
        let (sdk, arn) = (sdk.clone(), arn.clone());
        Box::pin(async move {
            read_webhook_secrets(&sdk, &arn)
                .await
                .map_err(|e| e.to_string())
        })
    })
}

fn parse_secrets(name: &'static str, raw: &str) -> Result<revguard_core::SecretSet, ConfigError> {
    // Never the value itself in an error: only what is wrong with it.
    revguard_core::SecretSet::parse(raw).map_err(|e| ConfigError::Invalid {
        name,
        reason: e.to_string(),
    })
}

/// The worker function's configuration, read once at cold start.
#[derive(Debug, Clone)]
pub struct WorkerEnv {
    pub events_table: String,
    pub state_table: String,
    pub counters_table: String,
    pub notifications_topic_arn: String,
    pub alerts_table: String,
    /// The events queue, whose failed messages the worker hides for their backoff.
    pub queue_url: String,
    /// Where poison messages go at once (the queue's dead-letter queue).
    pub dead_letter_queue_url: String,
    /// Deliveries after which a transiently failing message is dead-lettered (the queue's
    /// maxReceiveCount, so that the worker and the redrive policy agree).
    pub max_receives: u32,
    /// How long a transiently failed message is hidden before its next delivery.
    /// `REVGUARD_REDELIVERY_BASE_SECS` and `REVGUARD_REDELIVERY_CAP_SECS` change it (the
    /// template keeps the defaults; the end-to-end test compresses time with them).
    pub redelivery: revguard_core::usecases::retry::Backoff,
    pub policy: revguard_core::domain::billing::BillingPolicy,
    /// `REVGUARD_REQUERY`: fetch Stripe's object after important transitions (with a key).
    pub requery: bool,
    pub stripe: StripeEnv,
}

impl WorkerEnv {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            events_table: required("REVGUARD_EVENTS_TABLE")?,
            state_table: required("REVGUARD_STATE_TABLE")?,
            counters_table: required("REVGUARD_COUNTERS_TABLE")?,
            notifications_topic_arn: required("REVGUARD_NOTIFICATIONS_TOPIC_ARN")?,
            alerts_table: required("REVGUARD_ALERTS_TABLE")?,
            queue_url: required("REVGUARD_QUEUE_URL")?,
            dead_letter_queue_url: required("REVGUARD_DEAD_LETTER_QUEUE_URL")?,
            max_receives: optional_parsed(
                "REVGUARD_MAX_RECEIVES",
                revguard_core::usecases::apply_batch::ConsumeRules::default().max_receives,
            )?,
            redelivery: {
                let d = revguard_core::usecases::retry::Backoff::REDELIVERY;
                revguard_core::usecases::retry::Backoff {
                    base: std::time::Duration::from_secs(optional_parsed(
                        "REVGUARD_REDELIVERY_BASE_SECS",
                        d.base.as_secs(),
                    )?),
                    cap: std::time::Duration::from_secs(optional_parsed(
                        "REVGUARD_REDELIVERY_CAP_SECS",
                        d.cap.as_secs(),
                    )?),
                    ..d
                }
            },
            policy: policy_from_env()?,
            requery: optional_parsed("REVGUARD_REQUERY", false)?,
            stripe: StripeEnv::from_env()?,
        })
    }
}

/// The api function's configuration, read once at cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiEnv {
    pub state_table: String,
    pub counters_table: String,
    pub alerts_table: String,
    pub policy: revguard_core::domain::billing::BillingPolicy,
}

impl ApiEnv {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            state_table: required("REVGUARD_STATE_TABLE")?,
            counters_table: required("REVGUARD_COUNTERS_TABLE")?,
            alerts_table: required("REVGUARD_ALERTS_TABLE")?,
            policy: policy_from_env()?,
        })
    }
}

/// The anomaly function's configuration, read once at cold start.
#[derive(Debug, Clone)]
pub struct DetectorEnv {
    /// Read when a win-back comes due: is the customer subscribed again?
    pub state_table: String,
    pub counters_table: String,
    pub alerts_table: String,
    pub alerts_topic_arn: String,
    /// The team's topic: a win-back that comes due is a customer-success task, not an alarm.
    pub notifications_topic_arn: String,
    /// A dashboard link for the alert messages (the stack's CloudWatch dashboard).
    pub dashboard_url: Option<String>,
    /// The event log, for the completeness audit (with a Stripe key).
    pub events_table: Option<String>,
    /// The URL Stripe delivers to (the stack's `WebhookUrl`), for the endpoint audit.
    pub webhook_url: Option<String>,
    /// `REVGUARD_EVENTBRIDGE_SOURCE`: the EventBridge door's partner event source, when
    /// open (a webhook endpoint is then optional to the endpoint audit).
    pub eventbridge_source: Option<String>,
    /// Finance's topic, for the billing digest (its scheduled runs).
    pub digest_topic_arn: Option<String>,
    pub detect: revguard_core::domain::detector::DetectConfig,
    /// For the digest's dunning figures.
    pub policy: revguard_core::domain::billing::BillingPolicy,
    /// With a key, each run audits delivery against Stripe's list of events.
    pub stripe: StripeEnv,
}

impl DetectorEnv {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            state_table: required("REVGUARD_STATE_TABLE")?,
            counters_table: required("REVGUARD_COUNTERS_TABLE")?,
            alerts_table: required("REVGUARD_ALERTS_TABLE")?,
            alerts_topic_arn: required("REVGUARD_ALERTS_TOPIC_ARN")?,
            notifications_topic_arn: required("REVGUARD_NOTIFICATIONS_TOPIC_ARN")?,
            dashboard_url: optional("REVGUARD_DASHBOARD_URL"),
            events_table: optional("REVGUARD_EVENTS_TABLE"),
            digest_topic_arn: optional("REVGUARD_DIGEST_TOPIC_ARN"),
            webhook_url: optional("REVGUARD_WEBHOOK_URL"),
            eventbridge_source: optional("REVGUARD_EVENTBRIDGE_SOURCE"),
            detect: detect_config_from_env()?,
            policy: policy_from_env()?,
            stripe: StripeEnv::from_env()?,
        })
    }
}

/// Detector thresholds from the environment: `REVGUARD_DETECT_CONFIG` may hold a JSON
/// object overriding any of them (names as in the docs), e.g. `{"p_warning":1e-5}`.
fn detect_config_from_env() -> Result<revguard_core::domain::detector::DetectConfig, ConfigError> {
    match std::env::var("REVGUARD_DETECT_CONFIG") {
        Ok(json) if !json.trim().is_empty() => {
            serde_json::from_str(&json).map_err(|e| ConfigError::Invalid {
                name: "REVGUARD_DETECT_CONFIG",
                reason: e.to_string(),
            })
        }
        _ => Ok(revguard_core::domain::detector::DetectConfig::default()),
    }
}

/// The billing policy from the environment (the same variables as `revguard serve`).
pub fn policy_from_env() -> Result<revguard_core::domain::billing::BillingPolicy, ConfigError> {
    let d = revguard_core::domain::billing::BillingPolicy::default();
    Ok(revguard_core::domain::billing::BillingPolicy {
        final_warning_attempt: optional_parsed(
            "REVGUARD_FINAL_WARNING_ATTEMPT",
            d.final_warning_attempt,
        )?,
        grace_days: optional_parsed("REVGUARD_GRACE_DAYS", d.grace_days)?,
        win_back_days: optional_parsed("REVGUARD_WIN_BACK_DAYS", d.win_back_days)?,
        suspend_on_dispute: optional_parsed("REVGUARD_SUSPEND_ON_DISPUTE", d.suspend_on_dispute)?,
        large_payment_minor_units: optional_parsed(
            "REVGUARD_LARGE_PAYMENT_MINOR_UNITS",
            d.large_payment_minor_units,
        )?,
        large_refund_minor_units: optional_parsed(
            "REVGUARD_LARGE_REFUND_MINOR_UNITS",
            d.large_refund_minor_units,
        )?,
        duplicate_charge_secs: optional_parsed(
            "REVGUARD_DUPLICATE_CHARGE_SECS",
            d.duplicate_charge_secs,
        )?,
        // The templates as JSON in the variable itself: a function has no file of yours.
        dunning_drafts: match std::env::var("REVGUARD_DUNNING_TEMPLATES") {
            Ok(json) if !json.trim().is_empty() => {
                revguard_core::domain::billing::drafts::DunningDrafts::from_json(&json).map_err(
                    |e| ConfigError::Invalid {
                        name: "REVGUARD_DUNNING_TEMPLATES",
                        reason: revguard_core::error_chain(&e),
                    },
                )?
            }
            _ => Default::default(),
        },
    })
}

/// Where the Stripe API key comes from, read once: the Secrets Manager secret named by
/// `STRIPE_API_KEY_SECRET_ARN` (how the template deploys it), else `STRIPE_API_KEY`;
/// `STRIPE_API_BASE` as the client reads it. No key: the features that need one are off.
#[derive(Debug, Clone)]
pub struct StripeEnv {
    pub api_base: String,
    pub key_secret_arn: Option<String>,
    /// Checked for its shape when read; never printed.
    pub key: Option<ApiKey>,
}

impl StripeEnv {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::parse(
            optional("STRIPE_API_BASE"),
            optional("STRIPE_API_KEY_SECRET_ARN"),
            optional("STRIPE_API_KEY"),
        )
    }

    /// The settings from the variables' values: the ARN wins over a key; a key is checked
    /// for its shape now, so that a malformed one fails the cold start naming the variable
    /// (and never showing the value).
    pub fn parse(
        api_base: Option<String>,
        key_secret_arn: Option<String>,
        key: Option<String>,
    ) -> Result<Self, ConfigError> {
        let key = match (&key_secret_arn, key) {
            (None, Some(key)) => Some(api_key(key)?),
            _ => None,
        };
        Ok(Self {
            api_base: api_base.unwrap_or_else(|| revguard_stripe::DEFAULT_API_BASE.to_owned()),
            key_secret_arn,
            key,
        })
    }

    /// The Stripe API client, for a job that cannot run without one: an error that says
    /// which setting is missing, or that the secret named is empty.
    pub async fn required_client(&self, sdk: &SdkConfig) -> Result<StripeClient, ConfigError> {
        match self.client(sdk).await? {
            Some(client) => Ok(client),
            None if self.key_secret_arn.is_some() => Err(ConfigError::Invalid {
                name: "STRIPE_API_KEY_SECRET_ARN",
                reason: "the secret is empty".into(),
            }),
            None => Err(ConfigError::NoStripeKey),
        }
    }

    /// The Stripe API client: with the key in the secret, read now and again whenever
    /// Stripe refuses it, so that a rotated key reaches warm instances; else with the
    /// variable's key. `None` without a key (or with an empty secret).
    pub async fn client(&self, sdk: &SdkConfig) -> Result<Option<StripeClient>, ConfigError> {
        match (&self.key_secret_arn, &self.key) {
            (Some(arn), _) => {
                stripe_client_from_secret(
                    aws_sdk_secretsmanager::Client::new(sdk),
                    arn,
                    &self.api_base,
                )
                .await
            }
            (None, Some(key)) => stripe_client(&self.api_base, key.clone()).map(Some),
            (None, None) => Ok(None),
        }
    }
}

/// The Stripe API client with the key in the secret `arn`, read now and again whenever
/// Stripe refuses it (at most once a minute). `None` when the secret is empty.
pub async fn stripe_client_from_secret(
    secrets: aws_sdk_secretsmanager::Client,
    arn: &str,
    base: &str,
) -> Result<Option<StripeClient>, ConfigError> {
    let source = SecretKey {
        secrets,
        arn: arn.to_owned(),
    };
    let key = source.read().await.map_err(|reason| ConfigError::Invalid {
        name: "STRIPE_API_KEY_SECRET_ARN",
        reason,
    })?;
    match key {
        Some(key) => Ok(Some(
            stripe_client(base, api_key(key)?)?.with_key_source(source),
        )),
        None => Ok(None),
    }
}

/// A key checked for its shape; what is wrong is said, never the value.
fn api_key(key: String) -> Result<ApiKey, ConfigError> {
    ApiKey::new(key).map_err(|e| ConfigError::Invalid {
        name: "STRIPE_API_KEY",
        reason: e.to_string(),
    })
}

/// The client for a checked key; a malformed base URL names its variable.
fn stripe_client(base: &str, key: ApiKey) -> Result<StripeClient, ConfigError> {
    StripeClient::new(base, key).map_err(|e| ConfigError::Invalid {
        name: "STRIPE_API_BASE",
        reason: e.to_string(),
    })
}

/// The Stripe key's secret in Secrets Manager.
struct SecretKey {
    secrets: aws_sdk_secretsmanager::Client,
    arn: String,
}

impl SecretKey {
    async fn read(&self) -> Result<Option<String>, String> {
        let out = self
            .secrets
            .get_secret_value()
            .secret_id(&self.arn)
            .send()
            .await
            .map_err(|e| format!("cannot read the secret: {}", revguard_core::error_chain(&e)))?;
        Ok(out.secret_string.filter(|k| !k.trim().is_empty()))
    }
}

impl KeySource for SecretKey {
    fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + '_>> {
        Box::pin(async move {
            self.read()
                .await?
                .ok_or_else(|| "the secret is empty".to_owned())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_stripe_key_fails_naming_the_variable_and_never_showing_the_value() {
        let err = StripeEnv::parse(None, None, Some("pk_test_publishable_is_not_enough".into()))
            .unwrap_err();
        assert!(err.to_string().contains("STRIPE_API_KEY"), "{err}");
        assert!(!err.to_string().contains("publishable_is"), "{err}");
        // The ARN wins: the key variable is then not read at all.
        let env = StripeEnv::parse(
            None,
            Some("arn:aws:secretsmanager:x".into()),
            Some("junk".into()),
        )
        .unwrap();
        assert!(env.key.is_none() && env.key_secret_arn.is_some());
        let env = StripeEnv::parse(None, None, Some("sk_test_fine".into())).unwrap();
        assert!(env.key.is_some());
        assert_eq!(env.api_base, revguard_stripe::DEFAULT_API_BASE);
        assert!(!format!("{env:?}").contains("sk_test_fine"));
    }

    #[test]
    fn the_webhook_secret_arn_wins_over_the_variable() {
        let (arn, secrets) = webhook_secret_source(
            Some("arn:aws:secretsmanager:x".into()),
            Some("whsec_a".into()),
        )
        .unwrap();
        assert_eq!(
            (arn.as_deref(), secrets),
            (Some("arn:aws:secretsmanager:x"), None)
        );
        let (arn, secrets) = webhook_secret_source(None, Some("whsec_a,whsec_b".into())).unwrap();
        assert!(arn.is_none());
        assert_eq!(secrets.map(|s| s.iter().count()), Some(2));
        assert_eq!(
            webhook_secret_source(None, None).unwrap_err(),
            ConfigError::Missing("STRIPE_WEBHOOK_SECRET")
        );
        let bad = webhook_secret_source(None, Some("not_a_secret".into())).unwrap_err();
        assert!(bad.to_string().contains("STRIPE_WEBHOOK_SECRET"), "{bad}");
    }

    #[test]
    fn a_secret_the_function_may_not_decrypt_names_the_parameter_that_fixes_it() {
        // The messages Secrets Manager gives when the role lacks kms:Decrypt on the key.
        let denied = kms_hint(
            Some("AccessDeniedException"),
            Some("Access to KMS is not allowed"),
        );
        assert!(denied.is_some_and(|h| h.contains("StripeSecretKmsKeyArn")));
        assert!(kms_hint(
            Some("DecryptionFailure"),
            Some("Secrets Manager can't decrypt the protected secret text using the provided KMS key.")
        )
        .is_some());
        // A missing secret or a plain permission error is not a KMS matter.
        assert!(kms_hint(Some("ResourceNotFoundException"), Some("not found")).is_none());
        assert!(kms_hint(
            Some("AccessDeniedException"),
            Some("not authorized to perform: secretsmanager:GetSecretValue")
        )
        .is_none());
    }
}
