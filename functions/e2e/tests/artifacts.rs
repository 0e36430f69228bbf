//! The built bootstraps (`ingress`, `worker`, `anomaly`, `api`, `recovery`) as processes
//! under the Lambda Runtime API emulator, with the environment the template gives them;
//! API Gateway, the SQS event source and the schedule in front; moto behind, through IAM
//! and the fault injector. Every AWS call of every function is judged against exactly the
//! permissions the template gives its role, under the permissions boundary `infra/`
//! ships (`revguard_e2e::iam`): a call they refuse is refused as AWS refuses it, and fails
//! the scenario naming the function, the action and the resource.
//!
//! - A renewal burst under throttles, conflicts and 5xx: nothing dead-lettered, every
//!   counter exact, every notification published once.
//! - A DynamoDB outage longer than the old retry budget (time compressed): the ingress
//!   answers 5xx, Stripe-style retries succeed afterwards, nothing lost or dead-lettered.
//! - A renewal story through both doors, the webhook and Amazon EventBridge, each event
//!   through one or both in a seeded order, under throttles, 5xx and refused invokes: every
//!   counter exact and every notification once; then a DynamoDB outage and a spell of
//!   refused invokes fill the door's dead-letter queue, and `revguard-ops
//!   eventbridge-redrive`'s work records what waits there, once.
//! - The signing secret changed while warm, and a payload with U+FFFF: both accepted.
//! - The bootstraps unwind on a panic (`cargo lambda build` would make them abort).
//! - Two detector runs on two instances of the built anomaly function, the second started
//!   while the first publishes: each alert reaches the subscriber once.
//! - The recovery jobs and the operator API in a stack with a Stripe key (localstripe):
//!   missed subscriptions backfilled, drift reconciled (which reads the open dunning
//!   cases through the state table's `by_stage` index), the API and dashboard read.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use revguard_aws::faults::{Fault, FaultInjector, Rule, SplitMix64};
use revguard_aws::testing::{moto_endpoint, MotoStack};
use revguard_aws::DynamoCounters;
use revguard_core::domain::metric::Metric;
use revguard_core::domain::signature::sign;
use revguard_core::ports::CountersReader;
use revguard_core::WebhookSecret;
use revguard_e2e::{
    bootstrap, deliver_webhook, eventbridge_event, poll_queue, template_variables, BridgePolicy,
    BridgeTarget, Bridged, FaultProxy, Front, Function, Iam, Resources, SourceCounts,
};
use serde_json::{json, Value};

const LARGE_EVERY: usize = 5;
/// Concurrent ingress instances in the burst, as Lambda scales the function out: each
/// takes one delivery at a time, and a delivery waits out its SDK retries, so fewer
/// instances leave moto idle.
const INGRESS_INSTANCES: usize = 16;
/// The template's `WorkerMaximumConcurrency` default.
const WORKER_INSTANCES: usize = 5;
/// Renewals in the burst: the full size, 10,000 events (about 8 minutes here,
/// delivered in about 4; bound by moto, one Python process). `REVGUARD_E2E_RENEWALS=N` runs another size.
const DEFAULT_RENEWALS: usize = 5_000;

/// The scenarios share one moto and two cores: one at a time, so that one's load does
/// not stretch another's compressed timings.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const LARGE: i64 = 250_000;
/// The functions' timeouts in template.yaml.
const INGRESS_TIMEOUT: Duration = Duration::from_secs(10);
const WORKER_TIMEOUT: Duration = Duration::from_secs(30);
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(900);
/// The EventBridge door's function (template.yaml: `EventBridgeFunction`).
const DOOR_TIMEOUT: Duration = Duration::from_secs(10);
/// The partner event source every deployment's door is given (`StripeEventSourceName`).
const STRIPE_EVENT_SOURCE: &str = "aws.partner/stripe.com/ed_test_61E2eRevguardDoor";

fn wall() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A secret under the test's unique name; its ARN.
async fn create_secret(
    secrets: &aws_sdk_secretsmanager::Client,
    name: &str,
    value: &str,
) -> String {
    secrets
        .create_secret()
        .name(revguard_aws::testing::unique_name(name))
        .secret_string(value)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap()
}

/// A deployment in moto: the stack, its webhook secret in Secrets Manager, the queue's
/// redrive policy as the template sets it, and the permissions the template gives each
/// function, enforced on every call they make through the proxy.
struct Deployment {
    stack: MotoStack,
    secrets: aws_sdk_secretsmanager::Client,
    secret_arn: String,
    max_receives: u32,
    iam: Arc<Iam>,
    /// The Stripe API key's secret, when the deployment has one (the recovery jobs).
    stripe_key_arn: Option<String>,
    /// The PagerDuty routing key's secret, when the deployment pages.
    pager_key_arn: Option<String>,
    /// The EventBridge door's dead-letter queue (`EventBridgeDeadLetterQueue`).
    door_dead_letter_queue_url: String,
}

impl Deployment {
    async fn new(secret: &str) -> Self {
        Self::with_stripe_key(secret, None).await
    }

    /// A deployment with a Stripe API key (`ExistingStripeApiKeySecretArn`), which adds
    /// the backfill and reconcile functions.
    async fn with_stripe_key(secret: &str, stripe_key: Option<&str>) -> Self {
        Self::with_keys(secret, stripe_key, None).await
    }

    /// A deployment with a Stripe API key and a PagerDuty routing key
    /// (`ExistingPagerDutySecretArn`, which adds the pager; its queue is the alerts
    /// topic's SQS subscriber).
    async fn with_keys(secret: &str, stripe_key: Option<&str>, pager_key: Option<&str>) -> Self {
        let stack = MotoStack::new().await;
        let sdk = revguard_aws::testing::moto_config().await;
        let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
        let secret_arn = create_secret(&secrets, "webhook-secret", secret).await;
        let max_receives = 20; // the template's MaxReceiveCount
        let dlq_arn = stack
            .sqs
            .get_queue_attributes()
            .queue_url(&stack.dead_letter_queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
            .clone();
        stack
            .sqs
            .set_queue_attributes()
            .queue_url(&stack.queue_url)
            .attributes(
                aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
                json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives })
                    .to_string(),
            )
            .send()
            .await
            .unwrap();
        let mut resources = Resources::default();
        resources.table("EventsTable", &stack.events_table);
        resources.table("StateTable", &stack.state_table);
        resources.table("CountersTable", &stack.counters_table);
        resources.table("AlertsTable", &stack.alerts_table);
        resources.queue("EventsQueue", &stack.queue_url);
        resources.queue("EventsDeadLetterQueue", &stack.dead_letter_queue_url);
        resources.topic("AlertsTopic", &stack.alerts_topic);
        resources.topic("NotificationsTopic", &stack.notifications_topic);
        // The test's digest topic is the notifications topic: its subscriber sees both.
        resources.topic("DigestTopic", &stack.notifications_topic);
        resources.parameter("ExistingStripeSecretArn", &secret_arn);
        // Every deployment opens the EventBridge door (StripeEventSourceName).
        let door_dead_letter_queue_url = stack
            .sqs
            .create_queue()
            .queue_name(revguard_aws::testing::unique_name(
                "revguard-EventBridgeDeadLetterQueue",
            ))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        resources.parameter("StripeEventSourceName", STRIPE_EVENT_SOURCE);
        resources.queue("EventBridgeDeadLetterQueue", &door_dead_letter_queue_url);
        let mut functions = vec![
            "IngressFunction",
            "EventBridgeFunction",
            "WorkerFunction",
            "AnomalyFunction",
            "ApiFunction",
        ];
        let mut stripe_key_arn = None;
        if let Some(key) = stripe_key {
            let arn = create_secret(&secrets, "stripe-api-key", key).await;
            resources.parameter("ExistingStripeApiKeySecretArn", &arn);
            functions.extend(["BackfillFunction", "ReconcileFunction"]);
            stripe_key_arn = Some(arn);
        }
        let mut pager_key_arn = None;
        if let Some(key) = pager_key {
            let arn = create_secret(&secrets, "pagerduty-key", key).await;
            resources.parameter("ExistingPagerDutySecretArn", &arn);
            resources.queue("PagerQueue", &stack.alerts_subscriber);
            functions.push("PagerFunction");
            pager_key_arn = Some(arn);
        }
        resources.read_key_schemas(&stack.dynamodb).await;
        let iam = Iam::for_template(&functions, resources).await;
        Self {
            stack,
            secrets,
            secret_arn,
            max_receives,
            iam: Arc::new(iam),
            stripe_key_arn,
            pager_key_arn,
            door_dead_letter_queue_url,
        }
    }

    /// A recovery function (`BackfillFunction` or `ReconcileFunction`, one binary) with
    /// the template's environment, Stripe's API at `stripe_api`.
    async fn start_recovery(
        &self,
        resource: &str,
        stripe_api: &str,
        proxy: &FaultProxy,
    ) -> Function {
        let s = &self.stack;
        let mut env = vec![
            ("REVGUARD_EVENTS_TABLE", s.events_table.clone()),
            ("REVGUARD_STATE_TABLE", s.state_table.clone()),
            ("REVGUARD_COUNTERS_TABLE", s.counters_table.clone()),
            ("REVGUARD_ALERTS_TABLE", s.alerts_table.clone()),
            ("REVGUARD_QUEUE_URL", s.queue_url.clone()),
            (
                "STRIPE_API_KEY_SECRET_ARN",
                self.stripe_key_arn
                    .clone()
                    .expect("a deployment with a Stripe key"),
            ),
        ];
        if resource == "ReconcileFunction" {
            env.push(("REVGUARD_JOB", "reconcile".to_owned()));
            env.push(("REVGUARD_RECONCILE_FIX", "true".to_owned()));
            env.push(("REVGUARD_RECONCILE_ALERT_THRESHOLD", "1".to_owned()));
        } else {
            env.push(("REVGUARD_JOB", "backfill".to_owned()));
        }
        same_names_as_template(resource, &env, &[]);
        // Test only: Stripe's API is localstripe, and the process signs as `resource`.
        env.push(("STRIPE_API_BASE", stripe_api.to_owned()));
        env.push(("AWS_ACCESS_KEY_ID", resource.to_owned()));
        Function::start("recovery", 0, &env, &proxy.url, RECOVERY_TIMEOUT).await
    }

    /// The pager, PagerDuty's Events API at `events_url`.
    async fn start_pager(&self, events_url: &str, proxy: &FaultProxy) -> Arc<Function> {
        let env = vec![
            (
                "REVGUARD_PAGERDUTY_SECRET_ARN",
                self.pager_key_arn.clone().expect("a deployment that pages"),
            ),
            (
                "REVGUARD_DASHBOARD_URL",
                "https://us-east-1.console.aws.amazon.com/cloudwatch/home".to_owned(),
            ),
        ];
        same_names_as_template("PagerFunction", &env, &[]);
        let mut env = env;
        // Test only: PagerDuty is a double.
        env.push(("REVGUARD_PAGERDUTY_EVENTS_URL", events_url.to_owned()));
        Arc::new(Function::start("pager", 0, &env, &proxy.url, Duration::from_secs(10)).await)
    }

    async fn start_api(&self, proxy: &FaultProxy) -> Function {
        let s = &self.stack;
        let env = vec![
            ("REVGUARD_STATE_TABLE", s.state_table.clone()),
            ("REVGUARD_COUNTERS_TABLE", s.counters_table.clone()),
            ("REVGUARD_ALERTS_TABLE", s.alerts_table.clone()),
        ];
        same_names_as_template("ApiFunction", &env, &[]);
        Function::start("api", 0, &env, &proxy.url, INGRESS_TIMEOUT).await
    }

    /// The proxy the functions reach AWS through: IAM, then the injector's faults.
    async fn proxy(&self, injector: &FaultInjector) -> FaultProxy {
        FaultProxy::start(self.iam.clone(), injector.clone(), &moto_endpoint()).await
    }

    fn ingress_env(&self) -> Vec<(&'static str, String)> {
        let env = vec![
            ("REVGUARD_EVENTS_TABLE", self.stack.events_table.clone()),
            ("REVGUARD_QUEUE_URL", self.stack.queue_url.clone()),
            ("REVGUARD_MODES", "both".to_owned()),
            ("REVGUARD_KEEP_PAYLOADS", "true".to_owned()),
            ("STRIPE_WEBHOOK_SECRET_ARN", self.secret_arn.clone()),
        ];
        same_names_as_template("IngressFunction", &env, &[]);
        env
    }

    /// The worker's environment; `redelivery` (base, cap seconds) compresses its backoff.
    fn worker_env(&self, redelivery: (u64, u64)) -> Vec<(&'static str, String)> {
        let s = &self.stack;
        let env = vec![
            ("REVGUARD_EVENTS_TABLE", s.events_table.clone()),
            ("REVGUARD_STATE_TABLE", s.state_table.clone()),
            ("REVGUARD_COUNTERS_TABLE", s.counters_table.clone()),
            ("REVGUARD_ALERTS_TABLE", s.alerts_table.clone()),
            (
                "REVGUARD_NOTIFICATIONS_TOPIC_ARN",
                s.notifications_topic.clone(),
            ),
            ("REVGUARD_QUEUE_URL", s.queue_url.clone()),
            (
                "REVGUARD_DEAD_LETTER_QUEUE_URL",
                s.dead_letter_queue_url.clone(),
            ),
            ("REVGUARD_MAX_RECEIVES", self.max_receives.to_string()),
            ("REVGUARD_REQUERY", "false".to_owned()),
            ("REVGUARD_REDELIVERY_BASE_SECS", redelivery.0.to_string()),
            ("REVGUARD_REDELIVERY_CAP_SECS", redelivery.1.to_string()),
        ];
        same_names_as_template(
            "WorkerFunction",
            &env,
            &["STRIPE_API_KEY_SECRET_ARN"], // only with re-query on
        );
        env
    }

    fn detector_env(&self) -> Vec<(&'static str, String)> {
        let s = &self.stack;
        let env = vec![
            ("REVGUARD_STATE_TABLE", s.state_table.clone()),
            ("REVGUARD_COUNTERS_TABLE", s.counters_table.clone()),
            ("REVGUARD_ALERTS_TABLE", s.alerts_table.clone()),
            ("REVGUARD_ALERTS_TOPIC_ARN", s.alerts_topic.clone()),
            (
                "REVGUARD_NOTIFICATIONS_TOPIC_ARN",
                s.notifications_topic.clone(),
            ),
            (
                "REVGUARD_DASHBOARD_URL",
                "https://us-east-1.console.aws.amazon.com/cloudwatch/home".to_owned(),
            ),
            ("REVGUARD_EVENTS_TABLE", s.events_table.clone()),
            (
                "REVGUARD_WEBHOOK_URL",
                "https://abc123def4.execute-api.us-east-1.amazonaws.com/webhook".to_owned(),
            ),
            ("REVGUARD_DIGEST_TOPIC_ARN", s.notifications_topic.clone()),
            (
                "REVGUARD_EVENTBRIDGE_SOURCE",
                STRIPE_EVENT_SOURCE.to_owned(),
            ),
        ];
        same_names_as_template(
            "AnomalyFunction",
            &env,
            &["STRIPE_API_KEY_SECRET_ARN"], // only with a Stripe API key
        );
        env
    }

    /// `n` ingress instances with the template's 10 s timeout.
    async fn start_ingress(&self, n: usize, proxy: &FaultProxy) -> Vec<Arc<Function>> {
        start_all(
            "ingress",
            n,
            &self.ingress_env(),
            &proxy.url,
            INGRESS_TIMEOUT,
        )
        .await
    }

    /// `n` worker instances with the template's 30 s timeout.
    async fn start_workers(
        &self,
        n: usize,
        redelivery: (u64, u64),
        proxy: &FaultProxy,
    ) -> Vec<Arc<Function>> {
        start_all(
            "worker",
            n,
            &self.worker_env(redelivery),
            &proxy.url,
            WORKER_TIMEOUT,
        )
        .await
    }

    async fn dead_letters(&self) -> usize {
        revguard_aws::testing::drain_queue(&self.stack.sqs, &self.stack.dead_letter_queue_url)
            .await
            .len()
    }

    /// The EventBridge door's environment: the ingress's, without a signing secret.
    fn door_env(&self) -> Vec<(&'static str, String)> {
        let env: Vec<_> = self
            .ingress_env()
            .into_iter()
            .filter(|(k, _)| !k.starts_with("STRIPE_WEBHOOK"))
            .collect();
        same_names_as_template("EventBridgeFunction", &env, &[]);
        env
    }

    /// `n` instances of the EventBridge door's function.
    async fn start_doors(&self, n: usize, proxy: &FaultProxy) -> Vec<Arc<Function>> {
        start_all("eventbridge", n, &self.door_env(), &proxy.url, DOOR_TIMEOUT).await
    }

    /// Messages waiting in the door's dead-letter queue, visible or held.
    async fn door_dead_letters(&self) -> u64 {
        revguard_aws::testing::queue_depth(&self.stack.sqs, &self.door_dead_letter_queue_url).await
    }

    /// Messages in the events queue, visible or in flight.
    async fn queued(&self) -> u64 {
        revguard_aws::testing::queue_depth(&self.stack.sqs, &self.stack.queue_url).await
    }

    /// Sums of the hourly counters over [from, to).
    async fn counted(&self, from: i64, to: i64) -> BTreeMap<String, i64> {
        let totals = DynamoCounters::new(self.stack.dynamodb.clone(), &self.stack.counters_table)
            .counters(true, &revguard_core::ports::Account::PLATFORM, from, to)
            .await
            .unwrap();
        let mut out = BTreeMap::new();
        for metrics in totals.values() {
            for (metric, value) in metrics {
                *out.entry(metric.name()).or_default() += value;
            }
        }
        out
    }

    /// Notification ids published to the notifications topic, with how often each came.
    async fn published(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for body in revguard_aws::testing::drain_queue(
            &self.stack.sqs,
            &self.stack.notifications_subscriber,
        )
        .await
        {
            let envelope: Value = serde_json::from_str(&body).unwrap();
            let n: Value = serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
            *out.entry(n["id"].as_str().unwrap().to_owned()).or_default() += 1;
        }
        out
    }
}

/// The test sets what the template sets: every variable of the function in template.yaml
/// is given here (or named as absent in this deployment's configuration), and no other.
fn same_names_as_template(resource: &str, env: &[(&str, String)], absent: &[&str]) {
    let mut template = template_variables(resource);
    template.retain(|k| !absent.contains(&k.as_str()));
    template.sort();
    let mut given: Vec<String> = env
        .iter()
        .map(|(k, _)| k.to_string())
        .filter(|k| !k.starts_with("REVGUARD_REDELIVERY_")) // time compression, test only
        .collect();
    given.sort();
    assert_eq!(given, template, "{resource}'s environment in template.yaml");
}

/// A Stripe event in the shape the fixtures have.
fn event(id: &str, event_type: &str, created: i64, object: Value) -> String {
    json!({ "id": id, "object": "event", "api_version": "2024-06-20", "type": event_type,
            "created": created, "livemode": true, "pending_webhooks": 1,
            "request": { "id": null, "idempotency_key": null }, "data": { "object": object } })
    .to_string()
}

/// Renewals sharing a billing anchor: `invoice.paid` and `charge.succeeded` per
/// subscription, created within the hour before `end`; every fifth payment is large.
fn renewals(prefix: &str, count: usize, end: i64) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(2 * count);
    for i in 0..count {
        let created = end - 3600 + (i as i64 * 3600) / count as i64;
        let amount = if i % LARGE_EVERY == 0 { LARGE } else { 4_900 };
        let paid = format!("evt_{prefix}_paid_{i}");
        out.push((paid.clone(), event(&paid, "invoice.paid", created, json!({
            "id": format!("in_{prefix}_{i}"), "object": "invoice", "customer": format!("cus_{prefix}_{i}"),
            "subscription": format!("sub_{prefix}_{i}"), "amount_paid": amount, "amount_due": amount,
            "currency": "usd", "paid": true, "status": "paid", "attempt_count": 1,
            "billing_reason": "subscription_cycle" }))));
        let charge = format!("evt_{prefix}_charge_{i}");
        out.push((charge.clone(), event(&charge, "charge.succeeded", created + 1, json!({
            "id": format!("ch_{prefix}_{i}"), "object": "charge", "customer": format!("cus_{prefix}_{i}"),
            "amount": amount, "currency": "usd", "status": "succeeded", "paid": true }))));
    }
    out
}

/// What the senders saw.
#[derive(Debug, Default)]
struct Delivery {
    attempts: AtomicU64,
    server_errors: AtomicU64,
    refused: Mutex<Vec<String>>,
}

/// One webhook as Stripe delivers it: signed by `sign_now` at each attempt, and retried
/// with backoff (`first_retry` doubling up to `max_retry`) until it gets a 2xx (its
/// answer) or a 4xx (refused, noted in `delivery`).
#[allow(clippy::too_many_arguments)]
async fn stripe_delivers(
    ingress: &Function,
    front: Front,
    id: &str,
    body: &str,
    sign_now: impl Fn(&str) -> String,
    first_retry: Duration,
    max_retry: Duration,
    delivery: &Delivery,
) -> Option<Value> {
    let mut wait = first_retry;
    for attempt in 1.. {
        delivery.attempts.fetch_add(1, Ordering::SeqCst);
        let (status, answer) = deliver_webhook(ingress, front, body, &sign_now(body)).await;
        if (200..300).contains(&status) {
            return Some(answer);
        }
        if status < 500 {
            delivery
                .refused
                .lock()
                .unwrap()
                .push(format!("{id}: {status} {answer}"));
            return None;
        }
        delivery.server_errors.fetch_add(1, Ordering::SeqCst);
        assert!(attempt < 60, "{id} was never accepted: {status} {answer}");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(max_retry);
    }
    unreachable!("the loop ends by returning")
}

/// Stripe's side: `senders` concurrent deliveries, each through an ingress instance of
/// its own, half of them through the function URL and half through API Gateway; a delivery that gets no 2xx is retried with exponential backoff (Stripe's
/// schedule, compressed: `first_retry` doubling up to `max_retry`) until it is accepted.
async fn deliver_all(
    ingress: Vec<Arc<Function>>,
    events: Vec<(String, String)>,
    secret: Arc<Mutex<WebhookSecret>>,
    first_retry: Duration,
    max_retry: Duration,
    delivery: Arc<Delivery>,
) {
    let queue = Arc::new(Mutex::new(VecDeque::from(events)));
    let mut senders = Vec::new();
    for (i, function) in ingress.into_iter().enumerate() {
        let front = if i % 2 == 0 {
            Front::FunctionUrl
        } else {
            Front::HttpApi
        };
        let (queue, secret, delivery) = (queue.clone(), secret.clone(), delivery.clone());
        senders.push(tokio::spawn(async move {
            loop {
                let Some((id, body)) = queue.lock().unwrap().pop_front() else {
                    return;
                };
                let sign_now = |body: &str| sign(&secret.lock().unwrap(), wall(), body.as_bytes());
                stripe_delivers(
                    &function,
                    front,
                    &id,
                    &body,
                    sign_now,
                    first_retry,
                    max_retry,
                    &delivery,
                )
                .await;
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
}

/// Worker instances, each behind an event source of its own, until `stop`.
fn start_event_sources(
    deployment: &Deployment,
    workers: &[Arc<Function>],
    visibility_secs: i32,
    stop: &Arc<AtomicBool>,
    counts: &Arc<SourceCounts>,
) -> Vec<tokio::task::JoinHandle<()>> {
    workers
        .iter()
        .map(|w| {
            tokio::spawn(poll_queue(
                deployment.stack.sqs.clone(),
                deployment.stack.queue_url.clone(),
                w.clone(),
                10,
                visibility_secs,
                stop.clone(),
                counts.clone(),
            ))
        })
        .collect()
}

/// Waits until the events queue is empty (nothing visible, in flight or delayed) a few
/// times in a row.
async fn drained(deployment: &Deployment, give_up: Duration) {
    let until = Instant::now() + give_up;
    let mut empty_reads = 0;
    while empty_reads < 3 {
        assert!(
            Instant::now() < until,
            "the queue did not drain in {give_up:?}"
        );
        empty_reads = if deployment.queued().await == 0 {
            empty_reads + 1
        } else {
            0
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One worker instance consumes the queue until it is drained (a minute at most).
async fn consume_until_drained(deployment: &Deployment, worker: Arc<Function>) {
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(SourceCounts::default());
    let sources = start_event_sources(deployment, &[worker], 30, &stop, &counts);
    drained(deployment, Duration::from_secs(60)).await;
    stop.store(true, Ordering::SeqCst);
    for s in sources {
        s.await.unwrap();
    }
}

async fn start_all(
    function: &str,
    n: usize,
    env: &[(&str, String)],
    endpoint: &str,
    timeout: Duration,
) -> Vec<Arc<Function>> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(Arc::new(
            Function::start(function, i, env, endpoint, timeout).await,
        ));
    }
    out
}

/// The in-place commit retries the workers logged ("commit retried", one line each, what
/// the stack's dashboard counts), by reason.
fn commit_retries(workers: &[Arc<Function>]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for w in workers {
        let log = std::fs::read_to_string(&w.log).unwrap_or_default();
        // The JSON shape the dashboard's metric filter reads: `fields.message`, `fields.reason`.
        for line in log.lines().filter(|l| l.contains("commit retried")) {
            let v: Value = serde_json::from_str(line).unwrap_or_default();
            let reason = match (
                v["fields"]["message"].as_str(),
                v["fields"]["reason"].as_str(),
            ) {
                (Some("commit retried"), Some(reason)) => reason.to_owned(),
                _ => format!("unparsed: {line}"),
            };
            *out.entry(reason).or_default() += 1;
        }
    }
    out
}

fn rfc3339(t: i64) -> String {
    revguard_core::domain::time::rfc3339(t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_renewal_burst_through_the_built_functions_loses_and_doubles_nothing_under_faults() {
    let _serial = SERIAL.lock().await;
    let renewals_n: usize = std::env::var("REVGUARD_E2E_RENEWALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_RENEWALS);
    let secret = "whsec_e2e_burst_secret";
    let deployment = Deployment::new(secret).await;
    let rules = vec![
        Rule::new(
            "dynamodb:TransactWriteItems",
            Fault::TransactionConflict,
            0.20,
        ),
        Rule::new("dynamodb:*", Fault::Throttling, 0.10),
        Rule::new("dynamodb:*", Fault::ProvisionedThroughputExceeded, 0.10),
        Rule::new("dynamodb:*", Fault::Http500, 0.05),
        Rule::new("sqs:SendMessage", Fault::Http500, 0.05),
        Rule::new("sns:Publish", Fault::Http503, 0.05),
    ];
    let injector = FaultInjector::for_proxy(20_261_203, rules);
    let proxy = deployment.proxy(&injector).await;

    let ingress = deployment.start_ingress(INGRESS_INSTANCES, &proxy).await;
    let workers = deployment
        .start_workers(WORKER_INSTANCES, (2, 16), &proxy)
        .await;
    let anomaly = Function::start(
        "anomaly",
        0,
        &deployment.detector_env(),
        &proxy.url,
        Duration::from_secs(60),
    )
    .await;
    let mut cold_starts = Vec::new();
    for f in [&ingress[0], &workers[0]] {
        cold_starts.push((f.name.clone(), f.bootstrap_bytes, f.init_time().await));
    }
    cold_starts.push((
        anomaly.name.clone(),
        anomaly.bootstrap_bytes,
        anomaly.init_time().await,
    ));

    let end = wall();
    let events = renewals("burst", renewals_n, end);
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(SourceCounts::default());
    let sources = start_event_sources(&deployment, &workers, 30, &stop, &counts);
    let delivery = Arc::new(Delivery::default());
    deliver_all(
        ingress.clone(),
        events.clone(),
        Arc::new(Mutex::new(WebhookSecret::new(secret).unwrap())),
        Duration::from_millis(200),
        Duration::from_secs(5),
        delivery.clone(),
    )
    .await;
    let delivered_in = started.elapsed();
    drained(&deployment, Duration::from_secs(900)).await;
    let drained_in = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    for s in sources {
        s.await.unwrap();
    }

    // The schedule, after the storm (a detector run that meets a conflict fails and the
    // schedule retries it; the faulted detector is the anomaly crate's test): the run
    // judges the moment it was scheduled for, not the clock.
    injector.set_rules(Vec::new());
    let scheduled = wall() - wall() % 900;
    let run = anomaly
        .invoke(&json!({ "scheduled_time": rfc3339(scheduled) }))
        .await
        .expect("the detector run");
    assert_eq!(run["at"].as_i64(), Some(scheduled), "{run}");

    assert!(
        delivery.refused.lock().unwrap().is_empty(),
        "refused: {:?}",
        delivery.refused.lock().unwrap()
    );
    assert_eq!(deployment.dead_letters().await, 0, "dead-lettered");
    let counted = deployment.counted(end - 2 * 3600, end + 3600).await;
    let n = renewals_n as i64;
    assert_eq!(
        counted.get(&Metric::PaymentsSucceeded.name()),
        Some(&n),
        "{counted:?}"
    );
    assert_eq!(
        counted.get(&Metric::EventsOfType("invoice.paid".into()).name()),
        Some(&n)
    );
    assert_eq!(counted.get(&Metric::Events.name()), Some(&(2 * n)));
    let published = deployment.published().await;
    let doubled: Vec<_> = published.iter().filter(|(_, c)| **c > 1).collect();
    let large = renewals_n.div_ceil(LARGE_EVERY);
    let retried = commit_retries(&workers);

    eprintln!(
        "renewal burst through the built bootstraps: {} events ({renewals_n} renewals), {INGRESS_INSTANCES} ingress and {WORKER_INSTANCES} worker instances; \
         webhook deliveries {} (5xx answered {}), delivered in {:.1} s, drained in {:.1} s \
         ({:.1} events/s, {:.1} per worker instance); \
         worker invocations {}, records {}, reported for redelivery {}, function errors {}; dead letters 0; \
         notifications {} (more than once: {}); commits retried in place {retried:?}; injected {:?}; calls {:?}",
        events.len(),
        delivery.attempts.load(Ordering::SeqCst),
        delivery.server_errors.load(Ordering::SeqCst),
        delivered_in.as_secs_f64(),
        drained_in.as_secs_f64(),
        events.len() as f64 / drained_in.as_secs_f64(),
        events.len() as f64 / drained_in.as_secs_f64() / WORKER_INSTANCES as f64,
        counts.invocations.load(Ordering::SeqCst),
        counts.records.load(Ordering::SeqCst),
        counts.reported_failures.load(Ordering::SeqCst),
        counts.function_errors.load(Ordering::SeqCst),
        published.len(),
        doubled.len(),
        injector.injected(),
        injector.calls(),
    );
    for (name, bytes, init) in &cold_starts {
        eprintln!(
            "cold start: {name} bootstrap {:.1} MB, init {:.1} ms (process start to first next call)",
            *bytes as f64 / 1e6,
            init.as_secs_f64() * 1000.0
        );
    }
    assert_eq!(published.len(), large, "every large payment announced");
    assert!(
        retried
            .keys()
            .all(|reason| reason == "conflict" || reason == "throttled"),
        "{retried:?}"
    );
    // A fifth of the transactions conflict: the workers back off and retry in place. (A
    // throttle reaches the backoff only after the SDK's own retries, a dozen times in a
    // full burst: too few to expect in a smaller one.)
    assert!(
        retried.get("conflict").is_some_and(|n| *n > 0),
        "no commit retried after a conflict: {retried:?}"
    );
    assert!(doubled.is_empty(), "published more than once: {doubled:?}");
    for fault in [
        Fault::TransactionConflict,
        Fault::Throttling,
        Fault::ProvisionedThroughputExceeded,
        Fault::Http500,
    ] {
        assert!(injector.injected_of(fault) > 0, "no {fault:?} was injected");
    }
    deployment.iam.assert_nothing_refused();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dynamodb_outage_longer_than_the_old_retry_budget_loses_nothing() {
    let _serial = SERIAL.lock().await;
    // Time compressed: the queue's 180 s visibility becomes 5 s, so the old budget (5
    // receives at a fixed visibility: 15 minutes) becomes 25 s; the outage lasts 40 s. The
    // worker's redelivery backoff, compressed alike (1 s doubling to 8 s over 20
    // receives), spans more than a minute.
    const VISIBILITY: i32 = 5;
    const OLD_BUDGET: Duration = Duration::from_secs(5 * VISIBILITY as u64);
    const OUTAGE: Duration = Duration::from_secs(40);
    let secret = "whsec_e2e_outage_secret";
    let deployment = Deployment::new(secret).await;
    let injector = FaultInjector::for_proxy(7, Vec::new());
    let proxy = deployment.proxy(&injector).await;
    let ingress = deployment.start_ingress(2, &proxy).await;
    let workers = deployment.start_workers(2, (1, 8), &proxy).await;
    for f in ingress.iter().chain(&workers) {
        f.init_time().await;
    }

    let renewals_n = 150;
    let end = wall();
    let events = renewals("outage", renewals_n, end);
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(SourceCounts::default());
    let sources = start_event_sources(&deployment, &workers, VISIBILITY, &stop, &counts);
    let delivery = Arc::new(Delivery::default());
    let sending = tokio::spawn(deliver_all(
        ingress.clone(),
        events,
        Arc::new(Mutex::new(WebhookSecret::new(secret).unwrap())),
        Duration::from_millis(500),
        Duration::from_secs(8),
        delivery.clone(),
    ));
    // Let traffic flow, then take DynamoDB away for longer than the old budget.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let outage_started = Instant::now();
    injector.set_rules(vec![Rule::new("dynamodb:*", Fault::Http500, 1.0)]);
    tokio::time::sleep(OUTAGE).await;
    injector.set_rules(Vec::new());
    let outage = outage_started.elapsed();
    sending.await.unwrap();
    drained(&deployment, Duration::from_secs(300)).await;
    stop.store(true, Ordering::SeqCst);
    for s in sources {
        s.await.unwrap();
    }

    let server_errors = delivery.server_errors.load(Ordering::SeqCst);
    let redelivered = counts.reported_failures.load(Ordering::SeqCst);
    eprintln!(
        "DynamoDB outage of {:.0} s (old budget, compressed: {:.0} s): webhook deliveries {} of which 5xx {server_errors}; \
         worker invocations {}, reported for redelivery {redelivered}, function errors {}; injected {:?}",
        outage.as_secs_f64(),
        OLD_BUDGET.as_secs_f64(),
        delivery.attempts.load(Ordering::SeqCst),
        counts.invocations.load(Ordering::SeqCst),
        counts.function_errors.load(Ordering::SeqCst),
        injector.injected()
    );
    assert!(outage > OLD_BUDGET);
    assert!(
        server_errors > 0,
        "the ingress answered 5xx during the outage"
    );
    assert!(
        redelivered > 0,
        "the workers met the outage and asked for redelivery"
    );
    assert!(delivery.refused.lock().unwrap().is_empty());
    assert_eq!(deployment.dead_letters().await, 0, "dead-lettered");
    let counted = deployment.counted(end - 2 * 3600, end + 3600).await;
    assert_eq!(
        counted.get(&Metric::Events.name()),
        Some(&(2 * renewals_n as i64)),
        "{counted:?}"
    );
    assert_eq!(
        counted.get(&Metric::PaymentsSucceeded.name()),
        Some(&(renewals_n as i64))
    );
    deployment.iam.assert_nothing_refused();
}

/// Which door a delivery takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Door {
    Webhook,
    EventBridge,
}

/// What the senders of both doors saw: the webhook's attempts, and each door's answers.
#[derive(Debug, Default)]
struct DoorsDelivery {
    webhook: Delivery,
    /// "<door> <status>" → how many deliveries were answered so.
    answers: Mutex<BTreeMap<String, usize>>,
    /// What EventBridge and Lambda gave up on, for the door's dead-letter queue.
    gave_up: Mutex<Vec<Bridged>>,
}

impl DoorsDelivery {
    fn answered(&self, door: Door, status: &str) {
        *self
            .answers
            .lock()
            .unwrap()
            .entry(format!("{door:?} {status}"))
            .or_default() += 1;
    }

    fn count(&self, door: Door, status: &str) -> usize {
        self.answers
            .lock()
            .unwrap()
            .get(&format!("{door:?} {status}"))
            .copied()
            .unwrap_or(0)
    }
}

/// Stripe on both doors: each delivery through the webhook (signed, retried with Stripe's
/// backoff, compressed, until accepted; half through each front) or put on the partner
/// bus for EventBridge to deliver to the door's function (`target`), as many senders at
/// once as there are instances of the busier door.
async fn deliver_through_doors(
    ingress: &[Arc<Function>],
    doors: &[Arc<Function>],
    target: &Arc<BridgeTarget>,
    deliveries: Vec<(Door, String, String)>,
    secret: &str,
    seen: &Arc<DoorsDelivery>,
) {
    let queue = Arc::new(Mutex::new(VecDeque::from(deliveries)));
    let mut senders = Vec::new();
    for i in 0..ingress.len().max(doors.len()) {
        let (queue, seen, target) = (queue.clone(), seen.clone(), target.clone());
        let (webhook, door) = (
            ingress[i % ingress.len()].clone(),
            doors[i % doors.len()].clone(),
        );
        let secret = WebhookSecret::new(secret).unwrap();
        let front = if i % 2 == 0 {
            Front::FunctionUrl
        } else {
            Front::HttpApi
        };
        senders.push(tokio::spawn(async move {
            let mut n = i as u64 * 1_000_000;
            loop {
                let Some((route, id, body)) = queue.lock().unwrap().pop_front() else {
                    return;
                };
                n += 1;
                match route {
                    Door::EventBridge => {
                        let created: Value = serde_json::from_str(&body).unwrap();
                        let on_bus = created["created"].as_i64().unwrap() + 1;
                        let event = eventbridge_event(STRIPE_EVENT_SOURCE, &body, on_bus, n);
                        match target.deliver(&door, &event).await {
                            Bridged::Delivered(answer) => {
                                seen.answered(route, answer["status"].as_str().unwrap_or("?"))
                            }
                            gave_up => seen.gave_up.lock().unwrap().push(gave_up),
                        }
                    }
                    Door::Webhook => {
                        let sign_now = |body: &str| sign(&secret, wall(), body.as_bytes());
                        let answer = stripe_delivers(
                            &webhook,
                            front,
                            &id,
                            &body,
                            sign_now,
                            Duration::from_millis(200),
                            Duration::from_secs(5),
                            &seen.webhook,
                        )
                        .await;
                        if let Some(answer) = answer {
                            seen.answered(route, answer["status"].as_str().unwrap_or("?"));
                        }
                    }
                }
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
}

impl Deployment {
    /// What EventBridge and Lambda send to the door's dead-letter queue when they give up:
    /// the rule sends the event (its queue policy allows the rule), Lambda sends its record
    /// with the function's role, judged here as IAM would judge it.
    async fn dead_letter(&self, gave_up: &Bridged) {
        let body = match gave_up {
            Bridged::RuleDeadLetter(event) => event.to_string(),
            Bridged::RetriesExhausted(record) => {
                let queue = self.door_dead_letter_queue_url.rsplit('/').next().unwrap();
                let call = revguard_e2e::iam::Call {
                    action: "sqs:SendMessage".into(),
                    resource: revguard_e2e::iam::queue_arn(queue),
                    context: BTreeMap::new(),
                };
                assert_eq!(
                    self.iam.decide("EventBridgeFunction", &call).await,
                    "Allowed",
                    "Lambda sends the on-failure record with the door's role"
                );
                record.to_string()
            }
            Bridged::Delivered(_) => unreachable!("a delivered event is no dead letter"),
        };
        self.stack
            .sqs
            .send_message()
            .queue_url(&self.door_dead_letter_queue_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_story_through_the_webhook_and_eventbridge_is_applied_once_in_any_order_under_faults() {
    let _serial = SERIAL.lock().await;
    let secret = "whsec_e2e_doors_secret";
    let deployment = Deployment::new(secret).await;
    let seed = 20_261_207;
    let injector = FaultInjector::for_proxy(
        seed,
        vec![
            Rule::new(
                "dynamodb:TransactWriteItems",
                Fault::TransactionConflict,
                0.10,
            ),
            Rule::new("dynamodb:PutItem", Fault::Http500, 0.10),
            Rule::new("dynamodb:*", Fault::Throttling, 0.05),
            Rule::new("sqs:SendMessage", Fault::Http500, 0.10),
        ],
    );
    let proxy = deployment.proxy(&injector).await;
    let ingress = deployment.start_ingress(3, &proxy).await;
    let doors = deployment.start_doors(3, &proxy).await;
    let workers = deployment.start_workers(3, (1, 8), &proxy).await;
    for f in ingress.iter().chain(&doors).chain(&workers) {
        f.init_time().await;
    }
    // The template's policies, compressed: the rule's backoff in tens of milliseconds,
    // Lambda's minute before a retry in a fifth of a second. A fifth of invokes refused.
    let policy = BridgePolicy {
        rule_attempts: 185,
        rule_backoff: Duration::from_millis(20),
        rule_backoff_cap: Duration::from_millis(200),
        lambda_retries: 2,
        lambda_retry_delay: Duration::from_millis(200),
    };
    let target = Arc::new(BridgeTarget::new(policy.clone(), 0.2, seed));

    // The story: renewals, each event through the webhook, EventBridge or both, the
    // deliveries in a seeded order (so an event's two copies come in either order, or at
    // once on two instances).
    let renewals_n = 150;
    let end = wall();
    let events = renewals("doors", renewals_n, end);
    let mut choice = SplitMix64::new(seed);
    let mut deliveries = Vec::new();
    let mut routes: BTreeMap<&str, usize> = BTreeMap::new();
    for (id, body) in &events {
        let route = ["webhook", "eventbridge", "both"][choice.below(3)];
        *routes.entry(route).or_default() += 1;
        if route != "eventbridge" {
            deliveries.push((Door::Webhook, id.clone(), body.clone()));
        }
        if route != "webhook" {
            deliveries.push((Door::EventBridge, id.clone(), body.clone()));
        }
    }
    for i in (1..deliveries.len()).rev() {
        deliveries.swap(i, choice.below(i + 1));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(SourceCounts::default());
    let sources = start_event_sources(&deployment, &workers, 30, &stop, &counts);
    let seen = Arc::new(DoorsDelivery::default());
    let started = Instant::now();
    deliver_through_doors(&ingress, &doors, &target, deliveries, secret, &seen).await;
    let delivered_in = started.elapsed();
    let gave_up_in_the_storm: Vec<Bridged> = std::mem::take(&mut *seen.gave_up.lock().unwrap());
    for g in &gave_up_in_the_storm {
        deployment.dead_letter(g).await;
    }

    // Then what the door's dead-letter queue is for: a DynamoDB outage longer than
    // Lambda's three attempts, and a spell in which Lambda refuses every invoke (a rule
    // that gives up sooner, so that the test does not wait out 185 attempts).
    let late_renewals = 4;
    let late = renewals("doors_late", late_renewals, end);
    injector.set_rules(vec![Rule::new("dynamodb:*", Fault::Http500, 1.0)]);
    let (in_outage, refused) = late.split_at(late.len() / 2);
    let outage_target = Arc::new(BridgeTarget::new(policy.clone(), 0.0, seed + 1));
    deliver_through_doors(
        &ingress,
        &doors,
        &outage_target,
        in_outage
            .iter()
            .map(|(id, b)| (Door::EventBridge, id.clone(), b.clone()))
            .collect(),
        secret,
        &seen,
    )
    .await;
    injector.set_rules(Vec::new());
    let refusing = Arc::new(BridgeTarget::new(
        BridgePolicy {
            rule_attempts: 6,
            ..policy.clone()
        },
        1.0,
        seed + 2,
    ));
    deliver_through_doors(
        &ingress,
        &doors,
        &refusing,
        refused
            .iter()
            .map(|(id, b)| (Door::EventBridge, id.clone(), b.clone()))
            .collect(),
        secret,
        &seen,
    )
    .await;
    let gave_up: Vec<Bridged> = std::mem::take(&mut *seen.gave_up.lock().unwrap());
    assert_eq!(
        gave_up
            .iter()
            .filter(|g| matches!(g, Bridged::RetriesExhausted(_)))
            .count(),
        in_outage.len(),
        "every event of the outage failed Lambda's three attempts: {gave_up:?}"
    );
    assert_eq!(
        gave_up
            .iter()
            .filter(|g| matches!(g, Bridged::RuleDeadLetter(_)))
            .count(),
        refused.len()
    );
    for g in &gave_up {
        deployment.dead_letter(g).await;
    }
    let waiting = deployment.door_dead_letters().await;
    assert_eq!(waiting as usize, late.len() + gave_up_in_the_storm.len());

    // The operator's `revguard-ops eventbridge-redrive`, with the operator's credentials.
    let s = &deployment.stack;
    let operator = revguard_core::Ingress::new(
        revguard_aws::DynamoEventLog::new(s.dynamodb.clone(), s.events_table.clone()),
        revguard_aws::SqsQueue::new(
            s.sqs.clone(),
            s.queue_url.clone(),
            revguard_aws::config::DEFAULT_MAX_MESSAGE_BYTES,
        ),
        revguard_core::IngestConfig::new(revguard_core::SecretSet::none()),
    );
    let redriven = revguard_aws::SqsBridgeDeadLetters::new(
        s.sqs.clone(),
        deployment.door_dead_letter_queue_url.clone(),
    )
    .redrive(&operator, wall())
    .await
    .unwrap();
    assert!(redriven.kept.is_empty(), "{redriven:?}");
    assert_eq!(
        redriven.recorded + redriven.duplicates,
        waiting as usize,
        "{redriven:?}"
    );
    assert_eq!(deployment.door_dead_letters().await, 0);
    // Stripe's webhook brings one of them later still: a duplicate.
    deliver_through_doors(
        &ingress,
        &doors,
        &target,
        vec![(Door::Webhook, late[0].0.clone(), late[0].1.clone())],
        secret,
        &seen,
    )
    .await;

    drained(&deployment, Duration::from_secs(600)).await;
    let drained_in = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    for s in sources {
        s.await.unwrap();
    }

    let n = (renewals_n + late_renewals) as i64;
    let counted = deployment.counted(end - 2 * 3600, end + 3600).await;
    let published = deployment.published().await;
    let doubled: Vec<_> = published.iter().filter(|(_, c)| **c > 1).collect();
    let bus = &target.counts;
    let count = |c: &AtomicU64| c.load(Ordering::SeqCst);
    eprintln!(
        "a story through both doors: {} events ({renewals_n} renewals; by route {routes:?}) and {} late ones; \
         answers {:?}; webhook deliveries {} (5xx {}); in the storm, EventBridge invokes refused {} and retried by the rule, \
         invocations {}, function errors {} retried by Lambda, {} dead letters; \
         in the outage, invocations {} of which failed {}, then {} invokes refused: {} dead letters, redriven {redriven:?}; \
         delivered in {:.1} s, drained in {:.1} s; worker invocations {}, reported for redelivery {}; injected {:?}",
        events.len(),
        late.len(),
        seen.answers.lock().unwrap(),
        count(&seen.webhook.attempts),
        count(&seen.webhook.server_errors),
        count(&bus.invokes_refused),
        count(&bus.invocations),
        count(&bus.function_errors),
        gave_up_in_the_storm.len(),
        count(&outage_target.counts.invocations),
        count(&outage_target.counts.function_errors),
        count(&refusing.counts.invokes_refused),
        gave_up.len(),
        delivered_in.as_secs_f64(),
        drained_in.as_secs_f64(),
        counts.invocations.load(Ordering::SeqCst),
        counts.reported_failures.load(Ordering::SeqCst),
        injector.injected(),
    );
    assert!(seen.webhook.refused.lock().unwrap().is_empty());
    assert_eq!(
        deployment.dead_letters().await,
        0,
        "dead-lettered by the worker"
    );
    // Each event counted once, and received once, whichever doors it came through.
    assert_eq!(
        counted.get(&Metric::Events.name()),
        Some(&(2 * n)),
        "{counted:?}"
    );
    assert_eq!(
        counted.get(&Metric::EventsReceived.name()),
        Some(&(2 * n)),
        "{counted:?}"
    );
    assert_eq!(counted.get(&Metric::PaymentsSucceeded.name()), Some(&n));
    assert!(doubled.is_empty(), "published more than once: {doubled:?}");
    let large = renewals_n.div_ceil(LARGE_EVERY) + late_renewals.div_ceil(LARGE_EVERY);
    assert_eq!(published.len(), large, "every large payment announced once");
    // Both orders happened, and the faults did.
    for door in [Door::Webhook, Door::EventBridge] {
        assert!(
            seen.count(door, "accepted") > 0,
            "{door:?}: {:?}",
            seen.answers
        );
        assert!(
            seen.count(door, "duplicate") > 0,
            "{door:?} never came second: {:?}",
            seen.answers
        );
    }
    assert!(bus.invokes_refused.load(Ordering::SeqCst) > 0);
    assert!(injector.injected_of(Fault::Http500) > 0);
    deployment.iam.assert_nothing_refused();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_changed_while_warm_and_a_payload_with_u_ffff_are_accepted() {
    let _serial = SERIAL.lock().await;
    let placeholder = "whsec_placeholder_until_the_first_deploy";
    let deployment = Deployment::new(placeholder).await;
    let injector = FaultInjector::for_proxy(11, Vec::new());
    let proxy = deployment.proxy(&injector).await;
    let ingress = deployment.start_ingress(1, &proxy).await.remove(0);
    let now = wall();
    let first = event(
        "evt_warm_first",
        "charge.succeeded",
        now,
        json!({ "id": "ch_warm_1", "object": "charge", "customer": "cus_warm", "amount": 1000,
                "currency": "usd", "status": "succeeded", "paid": true }),
    );
    let old = WebhookSecret::new(placeholder).unwrap();
    let (status, answer) = deliver_webhook(
        &ingress,
        Front::FunctionUrl,
        &first,
        &sign(&old, wall(), first.as_bytes()),
    )
    .await;
    assert_eq!(status, 200, "warm with the first secret: {answer}");

    // `sam deploy --parameter-overrides StripeWebhookSecret=…` changes only the value.
    let real = "whsec_the_endpoint_secret_from_the_dashboard";
    deployment
        .secrets
        .put_secret_value()
        .secret_id(&deployment.secret_arn)
        .secret_string(real)
        .send()
        .await
        .unwrap();
    // U+FFFF is valid JSON and SQS refuses it raw (the proxy refuses it as SQS does).
    let second = event(
        "evt_warm_second",
        "charge.succeeded",
        now + 1,
        json!({ "id": "ch_warm_2", "object": "charge", "customer": "cus_warm", "amount": 2000,
                "currency": "usd", "status": "succeeded", "paid": true,
                "description": "noncharacter \u{FFFF} and \u{FFFE} kept" }),
    );
    assert!(second.contains('\u{FFFF}'));
    let new = WebhookSecret::new(real).unwrap();
    let (status, answer) = deliver_webhook(
        &ingress,
        Front::FunctionUrl,
        &second,
        &sign(&new, wall(), second.as_bytes()),
    )
    .await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("accepted")),
        "signed with the new secret, to a warm instance: {answer}"
    );

    let worker = deployment.start_workers(1, (1, 8), &proxy).await.remove(0);
    consume_until_drained(&deployment, worker).await;
    assert_eq!(deployment.dead_letters().await, 0);
    let counted = deployment.counted(now - 3600, now + 3600).await;
    assert_eq!(
        counted.get(&Metric::PaymentsSucceeded.name()),
        Some(&2),
        "{counted:?}"
    );
    assert_eq!(
        injector.injected_of(Fault::Http500),
        0,
        "no fault was planned: {:?}",
        injector.injected()
    );
    deployment.iam.assert_nothing_refused();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_detector_runs_of_the_built_function_publish_each_alert_once() {
    let _serial = SERIAL.lock().await;
    let secret = "whsec_e2e_overlap_secret";
    let deployment = Deployment::new(secret).await;
    let injector = FaultInjector::for_proxy(13, Vec::new());
    let proxy = deployment.proxy(&injector).await;
    let ingress = deployment.start_ingress(1, &proxy).await.remove(0);
    let worker = deployment.start_workers(1, (1, 8), &proxy).await.remove(0);

    // Three large refunds, through the ingress and the worker: three event-level findings
    // (and, together, a refund spike) waiting for the detector.
    let now = wall();
    let key = WebhookSecret::new(secret).unwrap();
    for i in 0..3 {
        let id = format!("evt_overlap_refund_{i}");
        let body = event(
            &id,
            "charge.refunded",
            now - 600 + i,
            json!({
            "id": format!("ch_overlap_{i}"), "object": "charge", "customer": format!("cus_overlap_{i}"),
            "amount": 90_000, "amount_refunded": 90_000, "currency": "usd", "refunded": true }),
        );
        let (status, answer) = deliver_webhook(
            &ingress,
            Front::FunctionUrl,
            &body,
            &sign(&key, wall(), body.as_bytes()),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
    }
    consume_until_drained(&deployment, worker).await;

    // Every Publish takes 600 ms, so the second run, started on another instance 200 ms
    // after the first run's first Publish began, reads the alerts while the first run's
    // are in the outbox, being published (the order a held-out run found publishing twice).
    let anomalies = start_all(
        "anomaly",
        2,
        &deployment.detector_env(),
        &proxy.url,
        Duration::from_secs(60),
    )
    .await;
    for f in &anomalies {
        f.init_time().await;
    }
    injector.set_rules(vec![Rule::new(
        "sns:Publish",
        Fault::Latency(Duration::from_millis(600)),
        1.0,
    )]);
    let publishes_before = sns_publishes(&injector);
    let scheduled = json!({ "scheduled_time": rfc3339(now + 60) });
    let first = anomalies[0].invoke(&scheduled);
    let second = async {
        // Once the first run's first Publish is under way: its transitions are committed
        // and in the outbox, and the rest of its publishing takes another ~1.8 s.
        let until = Instant::now() + Duration::from_secs(30);
        while sns_publishes(&injector) == publishes_before {
            assert!(Instant::now() < until, "the first run never published");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        anomalies[1].invoke(&scheduled).await
    };
    let (a, b) = tokio::join!(first, second);
    let (a, b) = (a.expect("the first run"), b.expect("the second run"));

    let mut received: BTreeMap<String, usize> = BTreeMap::new();
    for body in revguard_aws::testing::drain_queue(
        &deployment.stack.sqs,
        &deployment.stack.alerts_subscriber,
    )
    .await
    {
        let envelope: Value = serde_json::from_str(&body).unwrap();
        let id = envelope["MessageAttributes"]["alert_id"]["Value"]
            .as_str()
            .unwrap_or_else(|| panic!("an alert id in {envelope}"))
            .to_owned();
        *received.entry(id).or_default() += 1;
    }
    let publishes = sns_publishes(&injector) - publishes_before;
    eprintln!(
        "overlapping detector runs of the built anomaly function: first published {}, second {}; \
         subscriber received {received:?}; SNS Publish calls {publishes}",
        a["published"], b["published"]
    );
    for i in 0..3 {
        let id = format!("live:large_refund:ch_overlap_{i}:1");
        assert_eq!(received.get(&id), Some(&1), "{id}: {received:?}");
    }
    assert!(
        received.values().all(|n| *n == 1),
        "an alert reached the subscriber twice: {received:?}"
    );
    assert_eq!(
        publishes as usize,
        received.len(),
        "SNS counted one Publish per alert"
    );
    deployment.iam.assert_nothing_refused();
}

fn sns_publishes(injector: &FaultInjector) -> u64 {
    injector.calls().get("sns:Publish").copied().unwrap_or(0)
}

/// Whether `haystack` holds `needle` (the bootstraps are stripped: what is left of the
/// panic runtime is its messages and source paths).
fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn the_built_bootstraps_unwind_on_a_panic() {
    // `cargo lambda build` (what `sam build` runs) adds `panic="abort"` unless the release
    // profile names a strategy; Cargo.toml names `unwind`, so that the runtime reports a
    // panicking invocation as that invocation's error and the environment stays warm.
    // The bootstraps are stripped, so the check reads their bytes: std's message for a
    // panic dropped while unwinding is linked only with the unwinding runtime (which
    // calls it), and a build with panic=abort carries panic_abort's source path instead
    // (both seen on a scratch build of each kind).
    for function in ["ingress", "worker", "anomaly", "pager"] {
        let path = bootstrap(function);
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            contains(&bytes, "Rust panics must be rethrown"),
            "{} links no unwinding panic runtime",
            path.display()
        );
        assert!(
            !contains(&bytes, "library/panic_abort/"),
            "{} was built with panic=abort",
            path.display()
        );
    }
}

/// One scheduled run of a recovery function: its summary, or a failure naming what IAM
/// refused.
async fn run_job(deployment: &Deployment, job: &Function, what: &str, scheduled: &Value) -> Value {
    let summary = job.invoke(scheduled).await;
    println!("{what}: {summary:?}");
    summary.unwrap_or_else(|e| {
        let refused: Vec<String> = deployment
            .iam
            .refusals()
            .iter()
            .map(|r| r.to_string())
            .collect();
        panic!("{what} failed: {e}\n{}", refused.join("\n"))
    })
}

/// An operator's GET through API Gateway's IAM-authorized route, as the v2 payload; the
/// function's answer as (status, body).
async fn operator_get(api: &Function, path: &str, query: &str) -> (u16, String) {
    let route = if path == "/dashboard" {
        "GET /dashboard"
    } else {
        "GET /api/{proxy+}"
    };
    let request = json!({
        "version": "2.0", "routeKey": route, "rawPath": path, "rawQueryString": query,
        "headers": { "host": "abc123def4.execute-api.us-east-1.amazonaws.com" },
        "queryStringParameters": query.split('&').filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
            .collect::<serde_json::Map<_, _>>(),
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123def4",
            "authorizer": { "iam": { "accessKey": "AKIAOPERATOR", "accountId": "123456789012",
                                     "userArn": "arn:aws:iam::123456789012:user/operator" } },
            "domainName": "abc123def4.execute-api.us-east-1.amazonaws.com",
            "http": { "method": "GET", "path": path, "protocol": "HTTP/1.1",
                      "sourceIp": "10.0.0.1", "userAgent": "e2e" },
            "requestId": "e2e-operator", "routeKey": route, "stage": "$default",
            "time": "01/Jan/2026:00:00:02 +0000", "timeEpoch": 1_767_225_602_000u64
        },
        "isBase64Encoded": false
    });
    let response = api
        .invoke(&request)
        .await
        .expect("the api function answers");
    (
        response["statusCode"].as_u64().unwrap_or(0) as u16,
        response["body"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Recovery and the operator API as they run in a stack with a Stripe key, each function
/// under exactly the permissions the template gives it: subscriptions Stripe made while no
/// webhook arrived are backfilled and applied, a change no event told is reconciled (which
/// reads the open dunning cases), and the operator API and dashboard read the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recovery_and_the_operator_api_run_under_their_own_permissions() {
    let _serial = SERIAL.lock().await;
    const KEY: &str = "sk_test_revguard_e2e_recovery";
    let stripe = revguard_stripe::testing::LocalStripe::new(KEY);
    stripe.flush().await;
    stripe
        .post(
            "/v1/plans",
            &[
                ("id", "team"),
                ("amount", "9900"),
                ("currency", "usd"),
                ("interval", "month"),
                ("product[name]", "Team"),
            ],
        )
        .await;
    let mut subs = Vec::new();
    for _ in 0..2 {
        let customer = stripe.customer().await;
        subs.push(stripe.subscribe(&customer, "team").await);
    }

    let deployment = Deployment::with_stripe_key("whsec_e2e_recovery", Some(KEY)).await;
    let injector = FaultInjector::for_proxy(17, Vec::new());
    let proxy = deployment.proxy(&injector).await;
    let stripe_api = revguard_stripe::testing::localstripe_url();
    let worker = deployment.start_workers(1, (1, 8), &proxy).await.remove(0);

    let backfill = deployment
        .start_recovery("BackfillFunction", &stripe_api, &proxy)
        .await;
    let scheduled = json!({ "scheduled_time": rfc3339(wall()) });
    let summary = run_job(&deployment, &backfill, "the backfill", &scheduled).await;
    assert!(summary["accepted"].as_u64().unwrap_or(0) >= 2, "{summary}");
    consume_until_drained(&deployment, worker.clone()).await;

    stripe
        .post(
            &format!("/v1/subscriptions/{}", subs[1]),
            &[("items[0][plan]", "team"), ("items[0][quantity]", "4")],
        )
        .await;
    let reconcile = deployment
        .start_recovery("ReconcileFunction", &stripe_api, &proxy)
        .await;
    let found = run_job(&deployment, &reconcile, "the reconciliation", &scheduled).await;
    assert_eq!(
        (&found["checked"], &found["drifted"], &found["fixed"]),
        (&2.into(), &1.into(), &1.into()),
        "{found}"
    );
    consume_until_drained(&deployment, worker.clone()).await;

    let api = deployment.start_api(&proxy).await;
    let (status, body) = operator_get(&api, &format!("/api/subscriptions/{}", subs[1]), "").await;
    assert_eq!(status, 200, "{body}");
    let subscription: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(subscription["mrr"], 4 * 9900, "{subscription}");
    let (status, body) = operator_get(&api, "/api/dunning", "status=open").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = operator_get(&api, "/api/alerts", "").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = operator_get(&api, "/dashboard", "").await;
    assert_eq!(status, 200, "{body}");

    println!(
        "IAM: {} distinct calls judged, {} refused",
        deployment.iam.judged(),
        deployment.iam.refusals().len()
    );
    deployment.iam.assert_nothing_refused();
}

/// PagerDuty's Events API, as a double: what it accepted (202) or refused, in order.
#[derive(Clone, Default)]
struct EventsApiDouble {
    received: Arc<Mutex<Vec<(Value, u16)>>>,
    /// Statuses to answer first; 202 after them.
    script: Arc<Mutex<VecDeque<u16>>>,
}

async fn events_api_double(script: &[u16]) -> (String, EventsApiDouble) {
    async fn enqueue(
        axum::extract::State(d): axum::extract::State<EventsApiDouble>,
        body: String,
    ) -> axum::http::StatusCode {
        let status = d.script.lock().unwrap().pop_front().unwrap_or(202);
        d.received
            .lock()
            .unwrap()
            .push((serde_json::from_str(&body).unwrap_or(Value::Null), status));
        axum::http::StatusCode::from_u16(status).unwrap()
    }
    let double = EventsApiDouble::default();
    double.script.lock().unwrap().extend(script);
    let app = axum::Router::new()
        .route("/v2/enqueue", axum::routing::post(enqueue))
        .with_state(double.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v2/enqueue", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, double)
}

/// Runs the pager's SQS event source until the double has accepted `accepted` pages.
async fn page_until(
    deployment: &Deployment,
    pager: Arc<Function>,
    double: &EventsApiDouble,
    accepted: usize,
) -> Arc<SourceCounts> {
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(SourceCounts::default());
    let source = tokio::spawn(poll_queue(
        deployment.stack.sqs.clone(),
        deployment.stack.alerts_subscriber.clone(),
        pager,
        10,
        2, // a short visibility: a refused page comes back within the test
        stop.clone(),
        counts.clone(),
    ));
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let n = double
            .received
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| *s == 202)
            .count();
        if n >= accepted {
            break;
        }
        assert!(
            Instant::now() < until,
            "{n} of {accepted} pages accepted: {:?}",
            double.received.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // One more poll, to see nothing else comes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    source.await.unwrap();
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_and_a_stack_alarm_each_page_one_incident_through_the_built_pager() {
    let _serial = SERIAL.lock().await;
    let secret = "whsec_e2e_pager_secret";
    let routing_key = "0123456789abcdef0123456789abcdef";
    let deployment = Deployment::with_keys(secret, None, Some(routing_key)).await;
    let injector = FaultInjector::for_proxy(17, Vec::new());
    let proxy = deployment.proxy(&injector).await;
    let ingress = deployment.start_ingress(1, &proxy).await.remove(0);
    let worker = deployment.start_workers(1, (1, 8), &proxy).await.remove(0);

    // A large refund, through the ingress and the worker: an event-level alert.
    let now = wall();
    let key = WebhookSecret::new(secret).unwrap();
    let body = event(
        "evt_pager_refund",
        "charge.refunded",
        now - 600,
        json!({
        "id": "ch_pager", "object": "charge", "customer": "cus_pager",
        "amount": 90_000, "amount_refunded": 90_000, "currency": "usd", "refunded": true }),
    );
    let (status, answer) = deliver_webhook(
        &ingress,
        Front::FunctionUrl,
        &body,
        &sign(&key, wall(), body.as_bytes()),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    consume_until_drained(&deployment, worker).await;

    // PagerDuty refuses the first page (a 500): it comes back and goes through.
    let (events_url, double) = events_api_double(&[500]).await;
    let pager = deployment.start_pager(&events_url, &proxy).await;
    let anomaly = Function::start(
        "anomaly",
        0,
        &deployment.detector_env(),
        &proxy.url,
        Duration::from_secs(60),
    )
    .await;
    let opened = anomaly
        .invoke(&json!({ "scheduled_time": rfc3339(now + 60) }))
        .await
        .expect("the detector run that opens the alert");
    assert_eq!(
        opened["published"].as_array().map(Vec::len),
        Some(1),
        "{opened}"
    );
    page_until(&deployment, pager.clone(), &double, 1).await;

    // A day on, the event-level alert resolves; the stack's own alarm fires and clears.
    let resolved = anomaly
        .invoke(&json!({ "scheduled_time": rfc3339(now + 25 * 3600) }))
        .await
        .expect("the detector run that resolves the alert");
    assert!(
        resolved["published"].as_array().is_some_and(|p| p
            .iter()
            .any(|id| id.as_str().unwrap().ends_with(":2 resolved"))),
        "{resolved}"
    );
    for state in ["ALARM", "OK"] {
        let alarm = json!({
            "AlarmName": "revguard-test-dead-letters",
            "AlarmArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:revguard-test-dead-letters",
            "NewStateValue": state,
            "NewStateReason": "Threshold Crossed: 1 datapoint [2.0] was greater than the threshold (0.0).",
            "Region": "US East (N. Virginia)",
            "StateChangeTime": rfc3339(now + 25 * 3600),
        });
        deployment
            .stack
            .sns
            .publish()
            .topic_arn(&deployment.stack.alerts_topic)
            .message(alarm.to_string())
            .send()
            .await
            .unwrap();
        // CloudWatch's notifications are minutes apart; the pager sees them in order.
        page_until(
            &deployment,
            pager.clone(),
            &double,
            if state == "ALARM" { 3 } else { 4 },
        )
        .await;
    }

    let received = double.received.lock().unwrap().clone();
    let pages: Vec<(String, String, u16)> = received
        .iter()
        .map(|(e, s)| {
            (
                e["dedup_key"].as_str().unwrap_or_default().to_owned(),
                e["event_action"].as_str().unwrap_or_default().to_owned(),
                *s,
            )
        })
        .collect();
    eprintln!("the built pager sent: {pages:?}");
    // One incident per opening: the alert id and when it opened.
    let alert = pages[0].0.clone();
    assert!(alert.starts_with("live:large_refund:ch_pager:"), "{alert}");
    let alarm =
        "cloudwatch:arn:aws:cloudwatch:us-east-1:123456789012:alarm:revguard-test-dead-letters"
            .to_owned();
    assert_eq!(
        pages,
        [
            (alert.clone(), "trigger".to_owned(), 500),
            (alert.clone(), "trigger".to_owned(), 202),
            (alert, "resolve".to_owned(), 202),
            (alarm.clone(), "trigger".to_owned(), 202),
            (alarm, "resolve".to_owned(), 202),
        ]
    );
    assert!(received
        .iter()
        .all(|(e, _)| e["routing_key"] == routing_key));
    assert_eq!(received[1].0["payload"]["severity"], "warning");
    assert_eq!(received[3].0["payload"]["severity"], "critical");
    deployment.iam.assert_nothing_refused();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_anomaly_function_sends_the_day_s_digest_once() {
    let _serial = SERIAL.lock().await;
    let secret = "whsec_e2e_digest_secret";
    let deployment = Deployment::new(secret).await;
    let injector = FaultInjector::for_proxy(19, Vec::new());
    let proxy = deployment.proxy(&injector).await;
    let ingress = deployment.start_ingress(1, &proxy).await.remove(0);
    let worker = deployment.start_workers(1, (1, 8), &proxy).await.remove(0);

    // Yesterday: a new subscription ($49.00 a month), and a renewal that failed and was
    // paid after four hours.
    let today = wall().div_euclid(86_400) * 86_400;
    let yesterday = today - 86_400;
    let key = WebhookSecret::new(secret).unwrap();
    let invoice = |paid: bool| {
        json!({ "id": "in_digest", "object": "invoice", "customer": "cus_digest_renewal",
                "amount_due": 4_900, "amount_paid": if paid { 4_900 } else { 0 }, "currency": "usd",
                "attempt_count": 1, "status": if paid { "paid" } else { "open" },
                "next_payment_attempt": if paid { Value::Null } else { json!(yesterday + 3 * 86_400) },
                "billing_reason": "subscription_cycle" })
    };
    let events = [
        event(
            "evt_digest_sub",
            "customer.subscription.created",
            yesterday + 3_600,
            json!({
            "id": "sub_digest_new", "object": "subscription", "customer": "cus_digest_new",
            "status": "active", "currency": "usd", "created": yesterday + 3_600,
            "items": { "object": "list", "data": [{ "id": "si_digest", "quantity": 1,
                "price": { "id": "price_digest", "currency": "usd", "unit_amount": 4_900,
                           "recurring": { "interval": "month", "interval_count": 1 } } }] } }),
        ),
        event(
            "evt_digest_failed",
            "invoice.payment_failed",
            yesterday + 7_200,
            invoice(false),
        ),
        event(
            "evt_digest_paid",
            "invoice.paid",
            yesterday + 6 * 3_600,
            invoice(true),
        ),
    ];
    for body in &events {
        let (status, answer) = deliver_webhook(
            &ingress,
            Front::FunctionUrl,
            body,
            &sign(&key, wall(), body.as_bytes()),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
    }
    consume_until_drained(&deployment, worker).await;
    // The worker's own notifications (the dunning notice, its recovery) are not the digest.
    deployment.published().await;

    let anomaly = Function::start(
        "anomaly",
        0,
        &deployment.detector_env(),
        &proxy.url,
        Duration::from_secs(60),
    )
    .await;
    let run = json!({ "digest": "day", "scheduled_time": rfc3339(today + 7 * 3_600) });
    let first = anomaly.invoke(&run).await.expect("the digest run");
    let again = anomaly.invoke(&run).await.expect("the digest run, retried");
    eprintln!("digest runs of the built anomaly function: {first} then {again}");
    let day = &rfc3339(yesterday)[..10];
    assert_eq!(
        first["digests"],
        json!([format!("digest:live:day:{day}T00:00:00Z")])
    );
    assert_eq!(
        again["digests"],
        json!([]),
        "a retried run sends nothing again"
    );

    let bodies = revguard_aws::testing::drain_queue(
        &deployment.stack.sqs,
        &deployment.stack.notifications_subscriber,
    )
    .await;
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let envelope: Value = serde_json::from_str(&bodies[0]).unwrap();
    assert!(envelope["Subject"]
        .as_str()
        .unwrap()
        .contains("billing digest"));
    let digest: Value = serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
    assert_eq!(digest["dunning"]["opened"], 1, "{digest}");
    assert_eq!(digest["dunning"]["recovered"], 1, "{digest}");
    assert_eq!(digest["recovery_rate"]["by_count"], 1.0, "{digest}");
    assert_eq!(digest["dunning"]["median_time_to_recover_secs"], 4 * 3_600);
    let usd = &digest["mrr"][0];
    assert_eq!(
        (usd["currency"].as_str(), usd["new"].as_i64()),
        (Some("usd"), Some(4_900))
    );
    assert_eq!(digest["largest_movements"][0]["customer"], "cus_digest_new");
    deployment.iam.assert_nothing_refused();
}
