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
             `python scripts/moto_server.py 127.0.0.1 5000` (moto server with DynamoDB's \
             isolation) yourself and set AWS_ENDPOINT_URL=http://127.0.0.1:5000"
        ),
    }
}

async fn config_for(endpoint: &str, retries: u32) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(crate::config::https_client())
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

/// A whole revguard deployment in moto under names of its own: the four tables, the queue
/// and its dead-letter queue, the two topics, and a queue subscribed to each topic that
/// stands for the people and systems reading it. Every Lambda test starts from one.
#[derive(Clone)]
pub struct MotoStack {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub sns: aws_sdk_sns::Client,
    pub events_table: String,
    pub state_table: String,
    pub counters_table: String,
    pub alerts_table: String,
    pub queue_url: String,
    pub dead_letter_queue_url: String,
    pub notifications_topic: String,
    pub alerts_topic: String,
    /// Receives what is published to the notifications topic.
    pub notifications_subscriber: String,
    /// Receives what is published to the alerts topic.
    pub alerts_subscriber: String,
}

impl MotoStack {
    pub async fn new() -> Self {
        Self::with_config(&moto_config().await, None, None).await
    }

    /// The stack with every client recording its calls (after provisioning) in `log`.
    pub async fn logged(log: &CallLog) -> Self {
        let stack = Self::with_config(&moto_config().await, Some(log), None).await;
        log.take();
        stack
    }

    /// The stack with every client's calls (after provisioning) going through a fault
    /// injector with these rules, seeded.
    pub async fn faulted(
        seed: u64,
        rules: Vec<crate::faults::Rule>,
    ) -> (Self, crate::faults::FaultInjector) {
        let sdk = moto_config().await;
        // moto speaks plain HTTP: the SDK's own connector, without TLS.
        let inner = aws_smithy_http_client::Builder::new().build_http();
        let injector = crate::faults::FaultInjector::new(seed, rules, inner);
        let stack = Self::with_config(&sdk, None, Some(&injector)).await;
        (stack, injector)
    }

    async fn with_config(
        sdk: &SdkConfig,
        log: Option<&CallLog>,
        faults: Option<&crate::faults::FaultInjector>,
    ) -> Self {
        macro_rules! client {
            ($sdk_crate:ident, $faulted:expr) => {{
                let mut builder = $sdk_crate::config::Builder::from(sdk);
                if let Some(log) = log {
                    builder = builder.interceptor(log.clone());
                }
                if let (true, Some(faults)) = ($faulted, faults) {
                    builder = builder.http_client(faults.clone());
                }
                $sdk_crate::Client::from_conf(builder.build())
            }};
        }
        // Provisioning is never faulted; the clients the stack hands out may be.
        let (dynamodb, sqs, sns) = (
            client!(aws_sdk_dynamodb, false),
            client!(aws_sdk_sqs, false),
            client!(aws_sdk_sns, false),
        );
        let events_table = unique_name("events");
        crate::provision::create_events_table(&dynamodb, &events_table)
            .await
            .expect("create the events table");
        let [state_table, counters_table, alerts_table] =
            ["state", "counters", "alerts"].map(unique_name);
        crate::provision::create_state_table(&dynamodb, &state_table)
            .await
            .expect("create the state table");
        crate::provision::create_counters_table(&dynamodb, &counters_table)
            .await
            .expect("create the counters table");
        crate::provision::create_alerts_table(&dynamodb, &alerts_table)
            .await
            .expect("create the alerts table");
        let queue_url = crate::provision::create_queue(&sqs, &unique_name("queue"))
            .await
            .expect("create the queue");
        let dead_letter_queue_url =
            crate::provision::create_queue(&sqs, &unique_name("dead-letters"))
                .await
                .expect("create the dead-letter queue");
        let notifications_topic =
            crate::provision::create_topic(&sns, &unique_name("notifications"))
                .await
                .expect("create the notifications topic");
        let alerts_topic = crate::provision::create_topic(&sns, &unique_name("alerts"))
            .await
            .expect("create the alerts topic");
        let notifications_subscriber = subscribed_queue(&sqs, &sns, &notifications_topic).await;
        let alerts_subscriber = subscribed_queue(&sqs, &sns, &alerts_topic).await;
        Self {
            dynamodb: client!(aws_sdk_dynamodb, true),
            sqs: client!(aws_sdk_sqs, true),
            sns: client!(aws_sdk_sns, true),
            events_table,
            state_table,
            counters_table,
            alerts_table,
            queue_url,
            dead_letter_queue_url,
            notifications_topic,
            alerts_topic,
            notifications_subscriber,
            alerts_subscriber,
        }
    }

    /// The ingress function's environment as the template sets it for this stack.
    pub fn ingress_env(&self) -> crate::IngressEnv {
        crate::IngressEnv {
            events_table: self.events_table.clone(),
            queue_url: self.queue_url.clone(),
            max_message_bytes: 250_000,
            webhook_secret_arn: None,
            webhook_secret: None,
            tolerance_secs: revguard_core::domain::signature::DEFAULT_TOLERANCE_SECS,
            max_body_bytes: revguard_core::usecases::ingest::DEFAULT_MAX_BODY_BYTES,
            event_ttl_secs: revguard_core::usecases::ingest::DEFAULT_EVENT_TTL_SECS,
            modes: revguard_core::ModeFilter::Both,
            keep_payloads: true,
        }
    }

    /// The api function's environment as the template sets it for this stack.
    pub fn api_env(&self) -> crate::ApiEnv {
        crate::ApiEnv {
            state_table: self.state_table.clone(),
            counters_table: self.counters_table.clone(),
            alerts_table: self.alerts_table.clone(),
            policy: Default::default(),
        }
    }

    /// The worker function's environment as the template sets it for this stack.
    pub fn worker_env(&self) -> crate::WorkerEnv {
        crate::WorkerEnv {
            events_table: self.events_table.clone(),
            state_table: self.state_table.clone(),
            counters_table: self.counters_table.clone(),
            notifications_topic_arn: self.notifications_topic.clone(),
            alerts_table: self.alerts_table.clone(),
            queue_url: self.queue_url.clone(),
            dead_letter_queue_url: self.dead_letter_queue_url.clone(),
            max_receives: revguard_core::usecases::apply_batch::ConsumeRules::default()
                .max_receives,
            redelivery: revguard_core::usecases::retry::Backoff::REDELIVERY,
            policy: Default::default(),
            requery: false,
            stripe: no_stripe_key(),
        }
    }

    /// The anomaly function's environment as the template sets it for this stack.
    pub fn detector_env(&self) -> crate::DetectorEnv {
        crate::DetectorEnv {
            state_table: self.state_table.clone(),
            counters_table: self.counters_table.clone(),
            alerts_table: self.alerts_table.clone(),
            alerts_topic_arn: self.alerts_topic.clone(),
            notifications_topic_arn: self.notifications_topic.clone(),
            dashboard_url: Some("https://console.aws.amazon.com/cloudwatch/home#dashboards".into()),
            events_table: Some(self.events_table.clone()),
            webhook_url: None,
            eventbridge_source: None,
            digest_topic_arn: None,
            detect: Default::default(),
            policy: Default::default(),
            stripe: no_stripe_key(),
        }
    }

    /// The recovery function's environment as the template sets it for this stack.
    pub fn recovery_env(&self) -> crate::RecoveryEnv {
        crate::RecoveryEnv {
            events_table: self.events_table.clone(),
            state_table: self.state_table.clone(),
            counters_table: self.counters_table.clone(),
            alerts_table: self.alerts_table.clone(),
            queue_url: self.queue_url.clone(),
            max_message_bytes: 250_000,
            undelivered_only: false,
            fix: true,
            drift_alert_threshold: 1,
            policy: Default::default(),
            stripe: no_stripe_key(),
        }
    }

    /// The notifier the worker function builds for this stack.
    pub fn notifier(&self) -> crate::SnsNotifier {
        crate::SnsNotifier::new(self.sns.clone(), &self.notifications_topic)
    }
}

/// A function's Stripe settings without a key (the tests give their clients directly).
pub fn no_stripe_key() -> crate::StripeEnv {
    crate::StripeEnv {
        api_base: revguard_stripe::DEFAULT_API_BASE.to_owned(),
        key_secret_arn: None,
        key: None,
    }
}

/// The stack name test resources are named under, as CloudFormation names a stack's
/// resources (`<stack>-<logical id>-<suffix>`): the permissions boundary in `infra/`
/// allows a role only the names that start with its stack's.
pub const TEST_STACK_NAME: &str = "revguard-test";

/// A name no other test in this run (or a concurrent run) uses, under [`TEST_STACK_NAME`].
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{TEST_STACK_NAME}-{prefix}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Records every AWS call a client makes (service, operation, request body), to count the
/// calls and capacity a use case costs.
#[derive(Debug, Clone, Default)]
pub struct CallLog(std::sync::Arc<std::sync::Mutex<Vec<Call>>>);

#[derive(Debug, Clone)]
pub struct Call {
    pub service: String,
    pub operation: String,
    pub body: Vec<u8>,
}

impl CallLog {
    pub fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// How many keys the BatchGetItem calls among `calls` asked for (each a small item read).
pub fn batch_get_keys(calls: &[Call]) -> usize {
    calls
        .iter()
        .filter(|c| c.operation == "BatchGetItem")
        .filter_map(|c| serde_json::from_slice::<serde_json::Value>(&c.body).ok())
        .map(|body| {
            body["RequestItems"].as_object().map_or(0, |tables| {
                tables
                    .values()
                    .map(|t| t["Keys"].as_array().map_or(0, Vec::len))
                    .sum()
            })
        })
        .sum()
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for CallLog {
    fn name(&self) -> &'static str {
        "CallLog"
    }

    fn read_before_transmit(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let (service, operation) = cfg
            .load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
            .map(|m| (m.service().to_owned(), m.name().to_owned()))
            .unwrap_or_default();
        let body = context
            .request()
            .body()
            .bytes()
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        self.0.lock().unwrap().push(Call {
            service,
            operation,
            body,
        });
        Ok(())
    }
}

/// The size DynamoDB bills for an item given as its JSON wire form
/// (`{"name": {"S": "…"}, …}`): names plus values, numbers at about half their digits.
pub fn dynamodb_item_size(item: &serde_json::Value) -> usize {
    fn value(v: &serde_json::Value) -> usize {
        let Some((kind, inner)) = v.as_object().and_then(|o| o.iter().next()) else {
            return 0;
        };
        match kind.as_str() {
            "S" => inner.as_str().map_or(0, str::len),
            "N" => inner.as_str().map_or(0, |n| n.len().div_ceil(2) + 1),
            "B" => inner.as_str().map_or(0, |b| b.len() * 3 / 4),
            "BOOL" | "NULL" => 1,
            "M" => {
                3 + inner
                    .as_object()
                    .map_or(0, |m| m.iter().map(|(k, v)| k.len() + value(v)).sum())
            }
            "L" => {
                3 + inner
                    .as_array()
                    .map_or(0, |l| l.iter().map(|v| 1 + value(v)).sum())
            }
            _ => inner.to_string().len(),
        }
    }
    item.as_object()
        .map_or(0, |o| o.iter().map(|(k, v)| k.len() + value(v)).sum())
}

/// A new queue subscribed to `topic_arn`: it stands for the people and systems that
/// subscribe, so tests can read what was published. Returns the queue URL.
pub async fn subscribed_queue(
    sqs: &aws_sdk_sqs::Client,
    sns: &aws_sdk_sns::Client,
    topic_arn: &str,
) -> String {
    let url = crate::provision::create_queue(sqs, &unique_name("subscriber"))
        .await
        .expect("create queue");
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .and_then(|mut a| a.remove(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .expect("queue arn");
    sns.subscribe()
        .topic_arn(topic_arn)
        .protocol("sqs")
        .endpoint(arn)
        .send()
        .await
        .expect("subscribe");
    url
}

/// Every message waiting in the queue, with its message attributes, receiving until it
/// is empty.
pub async fn drain_messages(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
) -> Vec<aws_sdk_sqs::types::Message> {
    let mut all = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .send()
            .await
            .expect("receive");
        let batch = out.messages.unwrap_or_default();
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

/// Messages in a queue, visible, in flight or delayed (SQS's approximate counts).
pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> u64 {
    use aws_sdk_sqs::types::QueueAttributeName as Name;
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(Name::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default();
    [
        Name::ApproximateNumberOfMessages,
        Name::ApproximateNumberOfMessagesNotVisible,
        Name::ApproximateNumberOfMessagesDelayed,
    ]
    .iter()
    .filter_map(|k| attributes.get(k)?.parse::<u64>().ok())
    .sum()
}

/// Every message body waiting in the queue, receiving until it is empty.
pub async fn drain_queue(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<String> {
    drain_messages(sqs, url)
        .await
        .into_iter()
        .filter_map(|m| m.body)
        .collect()
}

/// Receives up to 10 messages of the queue and shapes them as Lambda's SQS event source
/// does (`{"Records": [...]}` with real receipt handles and system attributes), for a
/// test to deserialize into its event type. `visibility`, if given, is the receive's
/// visibility timeout (0 leaves them visible unless the worker hides them).
pub async fn receive_as_event_source(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    visibility: Option<i32>,
) -> serde_json::Value {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .set_visibility_timeout(visibility)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .expect("receive");
    let records: Vec<serde_json::Value> = out
        .messages()
        .iter()
        .map(|m| {
            let attributes: std::collections::BTreeMap<&str, &str> = m
                .attributes()
                .map(|a| a.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect())
                .unwrap_or_default();
            serde_json::json!({
                "messageId": m.message_id(), "receiptHandle": m.receipt_handle(), "body": m.body(),
                "attributes": attributes, "messageAttributes": {}, "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:input",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    serde_json::json!({ "Records": records })
}

/// The `pk` of every item of a table (one Scan page: tests' tables are small).
pub async fn table_keys(dynamodb: &aws_sdk_dynamodb::Client, table: &str) -> Vec<String> {
    let mut keys: Vec<String> = dynamodb
        .scan()
        .table_name(table)
        .send()
        .await
        .expect("scan")
        .items()
        .iter()
        .filter_map(|i| i.get("pk")?.as_s().ok().cloned())
        .collect();
    keys.sort();
    keys
}
