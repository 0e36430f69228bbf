//! The pieces of AWS around the built Lambda bootstraps, for the end-to-end test:
//! - a Lambda Runtime API emulator: each function instance is a `bootstrap` process of its
//!   own that asks it for invocations, as in Lambda;
//! - the ingress's two fronts, its function URL and API Gateway's HTTP API (both the v2 payload);
//! - an SQS event source for the workers (batch size, visibility, `batchItemFailures`; the
//!   queue's redrive policy in moto sends a message to the DLQ after its receive count);
//! - Amazon EventBridge's delivery to the EventBridge door: the rule's retries of an invoke
//!   Lambda refuses, Lambda's asynchronous retries of a failed invocation, and the
//!   dead letters each leaves;
//! - a proxy in front of moto with the project's fault injector, because the functions'
//!   SDK clients live in other processes.
//!
//! The bootstraps come from `REVGUARD_LAMBDA_ARTIFACTS` (`sam build`'s `.aws-sam/build`
//! or `cargo lambda build`'s `target/lambda`; `scripts/test` builds the latter).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use revguard_aws::faults::{FaultInjector, Intercepted, SplitMix64};

pub mod iam;
pub use iam::{Iam, Resources};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The built `bootstrap` of a function (`ingress`, `worker`, `anomaly`), in either
/// layout: `<dir>/ingress/bootstrap` (cargo lambda) or `<dir>/IngressFunction/bootstrap`
/// (sam build). Fails, saying how to build them, when it is missing.
pub fn bootstrap(function: &str) -> PathBuf {
    let dir = std::env::var("REVGUARD_LAMBDA_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target/lambda"));
    // sam build names a directory by function, and shares one between the functions
    // built alike (`BackfillFunction-Shared` for the recovery binary).
    let sam_names: Vec<String> = match function {
        "recovery" => [
            "BackfillFunction",
            "ReconcileFunction",
            "BackfillFunction-Shared",
        ]
        .map(str::to_owned)
        .to_vec(),
        _ => vec![logical_id(function)],
    };
    let candidates: Vec<PathBuf> = std::iter::once(dir.join(function).join("bootstrap"))
        .chain(sam_names.iter().map(|n| dir.join(n).join("bootstrap")))
        .collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "no bootstrap for {function} in {}: run the tests with scripts/test, which \
                 builds them (cargo lambda build --release --x86-64 --bin ingress --bin eventbridge --bin worker \
                 --bin anomaly --bin api --bin recovery --bin pager, from the deploy venv), or set REVGUARD_LAMBDA_ARTIFACTS to \
                 sam build's .aws-sam/build",
                dir.display()
            )
        })
}

/// The template's logical id of a function: `ingress` → `IngressFunction`,
/// `eventbridge` → `EventBridgeFunction`.
pub fn logical_id(function: &str) -> String {
    if function == "eventbridge" {
        return "EventBridgeFunction".into();
    }
    let mut name = function.to_owned();
    name[..1].make_ascii_uppercase();
    format!("{name}Function")
}

type Reply = Result<Vec<u8>, Vec<u8>>;

struct Invocation {
    event: Vec<u8>,
    deadline_ms: u64,
    reply: oneshot::Sender<Reply>,
}

#[derive(Clone)]
struct RuntimeApi {
    function: String,
    next: Arc<tokio::sync::Mutex<mpsc::Receiver<Invocation>>>,
    pending: Arc<Mutex<HashMap<String, oneshot::Sender<Reply>>>>,
    first_next: Arc<Mutex<Option<Instant>>>,
    init_error: Arc<Mutex<Option<String>>>,
    requests: Arc<AtomicU64>,
}

async fn next_invocation(State(api): State<RuntimeApi>) -> Response {
    api.first_next
        .lock()
        .unwrap()
        .get_or_insert_with(Instant::now);
    let Some(invocation) = api.next.lock().await.recv().await else {
        return (StatusCode::GONE, "the emulator is shutting down").into_response();
    };
    let id = format!(
        "{}-{}",
        api.function,
        api.requests.fetch_add(1, Ordering::SeqCst)
    );
    api.pending
        .lock()
        .unwrap()
        .insert(id.clone(), invocation.reply);
    let headers = [
        ("lambda-runtime-aws-request-id", id),
        (
            "lambda-runtime-deadline-ms",
            invocation.deadline_ms.to_string(),
        ),
        (
            "lambda-runtime-invoked-function-arn",
            format!(
                "arn:aws:lambda:us-east-1:123456789012:function:{}",
                api.function
            ),
        ),
        (
            "lambda-runtime-trace-id",
            "Root=1-00000000-000000000000000000000000;Sampled=0".to_owned(),
        ),
    ];
    (headers, invocation.event).into_response()
}

/// Hands the function's answer to whoever invoked it.
fn reply(api: &RuntimeApi, id: &str, answer: Reply) -> StatusCode {
    if let Some(waiting) = api.pending.lock().unwrap().remove(id) {
        let _ = waiting.send(answer);
    }
    StatusCode::ACCEPTED
}

async fn invocation_response(
    State(api): State<RuntimeApi>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    reply(&api, &id, Ok(body.to_vec()))
}

async fn invocation_error(
    State(api): State<RuntimeApi>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    reply(&api, &id, Err(body.to_vec()))
}

async fn init_error(State(api): State<RuntimeApi>, body: Bytes) -> StatusCode {
    *api.init_error.lock().unwrap() = Some(String::from_utf8_lossy(&body).into_owned());
    StatusCode::ACCEPTED
}

/// One execution environment: a `bootstrap` process and the Runtime API it polls. One
/// invocation at a time, as in Lambda.
pub struct Function {
    pub name: String,
    api: RuntimeApi,
    invocations: mpsc::Sender<Invocation>,
    // Killed when the instance is dropped.
    _process: tokio::process::Child,
    started: Instant,
    timeout: Duration,
    pub log: PathBuf,
    pub bootstrap_bytes: u64,
}

impl Function {
    /// Starts `bootstrap` of `function` with the template's environment for it, its AWS
    /// calls going to `aws_endpoint`, invocations allowed `timeout` (the template's).
    pub async fn start(
        function: &str,
        instance: usize,
        env: &[(&str, String)],
        aws_endpoint: &str,
        timeout: Duration,
    ) -> Function {
        let (invocations, receiver) = mpsc::channel(1);
        let api = RuntimeApi {
            function: function.to_owned(),
            next: Arc::new(tokio::sync::Mutex::new(receiver)),
            pending: Arc::default(),
            first_next: Arc::default(),
            init_error: Arc::default(),
            requests: Arc::default(),
        };
        let router = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(invocation_response),
            )
            .route(
                "/2018-06-01/runtime/invocation/{id}/error",
                post(invocation_error),
            )
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(api.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let runtime_api = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });

        let path = bootstrap(function);
        let logs = workspace_root().join("target/e2e");
        std::fs::create_dir_all(&logs).unwrap();
        let log = logs.join(format!("{function}-{instance}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let started = Instant::now();
        let process = tokio::process::Command::new(&path)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", function)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{function}"),
            )
            .env("AWS_LAMBDA_LOG_STREAM_NAME", format!("instance-{instance}"))
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            // The proxy knows the caller by its key: the function's logical id, whose
            // role's permissions judge the call (`iam`). A test may give another.
            .env("AWS_ACCESS_KEY_ID", logical_id(function))
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_ENDPOINT_URL", aws_endpoint)
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", path.display()));
        Function {
            name: function.to_owned(),
            api,
            invocations,
            _process: process,
            started,
            timeout,
            log,
            bootstrap_bytes: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
        }
    }

    /// From process start to its first `next` call: the cold start without network.
    pub async fn init_time(&self) -> Duration {
        let give_up = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(t) = *self.api.first_next.lock().unwrap() {
                return t - self.started;
            }
            if let Some(e) = self.api.init_error.lock().unwrap().clone() {
                panic!("{} failed to initialise: {e}", self.name);
            }
            assert!(
                Instant::now() < give_up,
                "{} never asked for an invocation; its output: {}",
                self.name,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// One invocation: the function's response, or its error (a function error, or no
    /// answer within the timeout).
    pub async fn invoke(&self, event: &Value) -> Result<Value, String> {
        let (reply, answer) = oneshot::channel();
        let deadline_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
            + self.timeout.as_millis() as u64;
        self.invocations
            .send(Invocation {
                event: serde_json::to_vec(event).unwrap(),
                deadline_ms,
                reply,
            })
            .await
            .map_err(|_| "the runtime emulator is gone".to_owned())?;
        match tokio::time::timeout(self.timeout + Duration::from_secs(5), answer).await {
            Ok(Ok(Ok(body))) => Ok(serde_json::from_slice(&body).unwrap_or(Value::Null)),
            Ok(Ok(Err(body))) => Err(String::from_utf8_lossy(&body).into_owned()),
            Ok(Err(_)) => Err("the invocation was dropped".into()),
            Err(_) => Err(format!("{} timed out", self.name)),
        }
    }
}

/// Which door of the template a webhook comes through. Both give the ingress the v2
/// payload; they differ in the request context and in what a failed invocation becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Front {
    /// The ingress's function URL (`IngressFunctionUrl`, opted in with `WebhookFunctionUrl`).
    FunctionUrl,
    /// API Gateway's HTTP API route `POST /webhook` (the default `WebhookUrl`).
    HttpApi,
}

impl Front {
    fn host(self) -> &'static str {
        match self {
            Front::FunctionUrl => "abc123def4ghi567jkl890mno1pqr2st.lambda-url.us-east-1.on.aws",
            Front::HttpApi => "abc123def4.execute-api.us-east-1.amazonaws.com",
        }
    }
}

/// A webhook delivery through `front` as the v2 payload, and the function's answer as
/// (status, JSON body).
pub async fn deliver_webhook(
    ingress: &Function,
    front: Front,
    body: &str,
    signature: &str,
) -> (u16, Value) {
    let host = front.host();
    let (api_id, route_key) = match front {
        Front::FunctionUrl => (host.split('.').next().unwrap_or(host), "$default"),
        Front::HttpApi => ("abc123def4", "POST /webhook"),
    };
    let request = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": "/webhook",
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json; charset=utf-8",
            "content-length": body.len().to_string(),
            "host": host,
            "stripe-signature": signature,
            "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "x-forwarded-proto": "https",
        },
        "requestContext": {
            "accountId": if front == Front::FunctionUrl { "anonymous" } else { "123456789012" },
            "apiId": api_id,
            "domainName": host,
            "domainPrefix": api_id,
            "http": { "method": "POST", "path": "/webhook", "protocol": "HTTP/1.1",
                      "sourceIp": "3.18.12.63", "userAgent": "Stripe/1.0" },
            "requestId": "e2e",
            "routeKey": route_key,
            "stage": "$default",
            "time": "01/Jan/2026:00:00:02 +0000",
            "timeEpoch": 1_767_225_602_000u64
        },
        "body": body,
        "isBase64Encoded": false
    });
    match ingress.invoke(&request).await {
        Ok(response) => {
            let status = response["statusCode"].as_u64().unwrap_or(0) as u16;
            let body = response["body"]
                .as_str()
                .and_then(|b| serde_json::from_str(b).ok())
                .unwrap_or(Value::Null);
            (status, body)
        }
        // A failed invocation: API Gateway answers 500, a function URL 502.
        Err(e) => (
            match front {
                Front::FunctionUrl => 502,
                Front::HttpApi => 500,
            },
            json!({ "error": "integration_failed", "detail": e }),
        ),
    }
}

/// What an SQS event source did.
#[derive(Debug, Default)]
pub struct SourceCounts {
    pub invocations: AtomicU64,
    pub records: AtomicU64,
    pub reported_failures: AtomicU64,
    pub function_errors: AtomicU64,
}

/// Lambda's SQS event source for one worker instance: receives up to `batch_size`
/// messages with the queue's visibility timeout, invokes the worker, deletes what it did
/// not report failed, and leaves the rest to reappear (the worker hides failed messages
/// for their backoff itself). Runs until `stop` is set.
pub async fn poll_queue(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    worker: Arc<Function>,
    batch_size: i32,
    visibility_secs: i32,
    stop: Arc<AtomicBool>,
    counts: Arc<SourceCounts>,
) {
    let queue_arn = iam::queue_arn(queue_url.rsplit('/').next().unwrap_or_default());
    while !stop.load(Ordering::SeqCst) {
        let received = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(batch_size)
            .visibility_timeout(visibility_secs)
            .wait_time_seconds(1)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await;
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                let attributes: serde_json::Map<String, Value> = m
                    .attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| (k.as_str().to_owned(), Value::String(v.clone())))
                            .collect()
                    })
                    .unwrap_or_default();
                json!({
                    "messageId": m.message_id(),
                    "receiptHandle": m.receipt_handle(),
                    "body": m.body(),
                    "attributes": attributes,
                    "messageAttributes": {},
                    "md5OfBody": m.md5_of_body(),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": queue_arn,
                    "awsRegion": "us-east-1",
                })
            })
            .collect();
        counts.invocations.fetch_add(1, Ordering::SeqCst);
        counts
            .records
            .fetch_add(records.len() as u64, Ordering::SeqCst);
        let failed: Vec<String> = match worker.invoke(&json!({ "Records": records })).await {
            Ok(response) => response["batchItemFailures"]
                .as_array()
                .map(|f| {
                    f.iter()
                        .filter_map(|i| i["itemIdentifier"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            Err(_) => {
                // A function error: the whole batch comes back after its visibility.
                counts.function_errors.fetch_add(1, Ordering::SeqCst);
                continue;
            }
        };
        counts
            .reported_failures
            .fetch_add(failed.len() as u64, Ordering::SeqCst);
        let done: Vec<_> = messages
            .iter()
            .filter(|m| !failed.iter().any(|f| Some(f.as_str()) == m.message_id()))
            .enumerate()
            .map(|(i, m)| {
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
                    .unwrap()
            })
            .collect();
        if !done.is_empty() {
            // The event source deletes what succeeded; a failed delete means a redelivery,
            // which the worker takes as a duplicate.
            let _ = sqs
                .delete_message_batch()
                .queue_url(&queue_url)
                .set_entries(Some(done))
                .send()
                .await;
        }
    }
}

/// Stripe's event `body` as Stripe's event destination puts it on the partner event bus
/// (`source`) at `time` (unix seconds): EventBridge's envelope, the event as `detail`.
pub fn eventbridge_event(source: &str, body: &str, time: i64, n: u64) -> Value {
    let detail: Value = serde_json::from_str(body).expect("a Stripe event");
    json!({
        "version": "0",
        "id": format!("{:08x}-0000-4000-8000-{:012x}", n as u32, n),
        "detail-type": detail["type"],
        "source": source,
        "account": iam::ACCOUNT,
        "time": revguard_core::domain::time::rfc3339(time),
        "region": iam::REGION,
        "resources": [format!("arn:aws:events:{}::event-source/{source}", iam::REGION)],
        "detail": detail,
    })
}

/// How the rule's target and Lambda's asynchronous invocation treat one event (times
/// compressed): the template's `RetryPolicy` and `EventBridgeInvokeConfig`.
#[derive(Debug, Clone)]
pub struct BridgePolicy {
    /// Invoke attempts the rule makes while Lambda refuses them (185 in the template).
    pub rule_attempts: u32,
    /// The rule's first retry after a refused invoke, doubling up to `rule_backoff_cap`.
    pub rule_backoff: Duration,
    pub rule_backoff_cap: Duration,
    /// Lambda's own retries of an invocation that failed (`MaximumRetryAttempts`, 2).
    pub lambda_retries: u32,
    /// Lambda's delay before its first retry (a minute in AWS), doubled for the second.
    pub lambda_retry_delay: Duration,
}

/// What became of one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Bridged {
    /// The function recorded it: its answer.
    Delivered(Value),
    /// Lambda refused every invoke the rule made: the rule's dead letter, the event itself.
    RuleDeadLetter(Value),
    /// The function failed every attempt: Lambda's record for the on-failure destination.
    RetriesExhausted(Value),
}

/// What the bus did, counted.
#[derive(Debug, Default)]
pub struct BridgeCounts {
    pub invokes_refused: AtomicU64,
    pub invocations: AtomicU64,
    pub function_errors: AtomicU64,
    pub rule_dead_letters: AtomicU64,
    pub lambda_dead_letters: AtomicU64,
}

/// Amazon EventBridge's rule target for the door's function, with Lambda refusing a
/// seeded share of invokes (`refuse_rate`: the function's concurrency exhausted).
pub struct BridgeTarget {
    pub policy: BridgePolicy,
    pub refuse_rate: Mutex<f64>,
    /// Which invokes Lambda refuses, drawn from the target's seed.
    pub seeded: Mutex<SplitMix64>,
    pub counts: BridgeCounts,
}

impl BridgeTarget {
    pub fn new(policy: BridgePolicy, refuse_rate: f64, seed: u64) -> Self {
        Self {
            policy,
            refuse_rate: Mutex::new(refuse_rate),
            seeded: Mutex::new(SplitMix64::new(seed)),
            counts: BridgeCounts::default(),
        }
    }

    /// Delivers `event` to `function` as EventBridge and Lambda would.
    pub async fn deliver(&self, function: &Function, event: &Value) -> Bridged {
        // The rule: an invoke Lambda refuses is retried with backoff, then dead-lettered.
        let mut wait = self.policy.rule_backoff;
        let mut accepted = false;
        for _ in 0..self.policy.rule_attempts {
            let refuse = *self.refuse_rate.lock().unwrap();
            if self.seeded.lock().unwrap().unit() >= refuse {
                accepted = true;
                break;
            }
            self.counts.invokes_refused.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(self.policy.rule_backoff_cap);
        }
        if !accepted {
            self.counts.rule_dead_letters.fetch_add(1, Ordering::SeqCst);
            return Bridged::RuleDeadLetter(event.clone());
        }
        // Lambda's asynchronous invocation: the first attempt and its retries.
        let mut delay = self.policy.lambda_retry_delay;
        let mut last_error = String::new();
        for attempt in 0..=self.policy.lambda_retries {
            if attempt > 0 {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            self.counts.invocations.fetch_add(1, Ordering::SeqCst);
            match function.invoke(event).await {
                Ok(answer) => return Bridged::Delivered(answer),
                Err(e) => {
                    self.counts.function_errors.fetch_add(1, Ordering::SeqCst);
                    last_error = e;
                }
            }
        }
        self.counts
            .lambda_dead_letters
            .fetch_add(1, Ordering::SeqCst);
        let error: Value = serde_json::from_str(&last_error)
            .unwrap_or_else(|_| json!({ "errorMessage": last_error }));
        Bridged::RetriesExhausted(json!({
            "version": "1.0",
            "timestamp": revguard_core::domain::time::rfc3339(revguard_core::domain::time::unix_now()),
            "requestContext": {
                "requestId": format!("{}-failed", function.name),
                "functionArn": format!("arn:aws:lambda:{}:{}:function:{}:$LATEST", iam::REGION, iam::ACCOUNT, function.name),
                "condition": "RetriesExhausted",
                "approximateInvokeCount": self.policy.lambda_retries + 1,
            },
            "requestPayload": event,
            "responseContext": { "statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled" },
            "responsePayload": error,
        }))
    }
}

/// A proxy in front of moto that puts IAM and the fault injector between the functions
/// (other processes) and AWS: a call the function's permissions refuse is answered with
/// AWS's access-denied error; otherwise the injector answers in AWS's place or passes the
/// request on.
pub struct FaultProxy {
    pub url: String,
}

#[derive(Clone)]
struct ProxyState {
    iam: Arc<Iam>,
    injector: FaultInjector,
    upstream: String,
    client: reqwest::Client,
}

impl FaultProxy {
    pub async fn start(iam: Arc<Iam>, injector: FaultInjector, upstream: &str) -> FaultProxy {
        let state = ProxyState {
            iam,
            injector,
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
        };
        let router = Router::new()
            .route("/", any(proxy))
            .route("/{*path}", any(proxy))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        FaultProxy { url }
    }
}

async fn proxy(
    State(state): State<ProxyState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // IAM first, as in AWS: a refused call never reaches the service (nor its faults).
    // The test's own clients sign with another key and are not judged.
    let signer = headers
        .get("authorization")
        .and_then(|a| a.to_str().ok())
        .and_then(iam::access_key_of)
        .map(str::to_owned);
    if let Some(function) = signer.filter(|f| f.ends_with("Function")) {
        let operation = headers.get("x-amz-target").and_then(|t| t.to_str().ok());
        if let Some(refusal) = state.iam.judge(&function, operation, &body).await {
            let (status, content_type, text) = iam::access_denied(&refusal, operation);
            return Response::builder()
                .status(status)
                .header("content-type", content_type)
                .body(axum::body::Body::from(text))
                .unwrap();
        }
    }
    let target = format!(
        "{}{}",
        state.upstream,
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let mut request = aws_smithy_runtime_api::http::Request::new(
        aws_smithy_types::body::SdkBody::from(body.to_vec()),
    );
    request.set_method(method.as_str()).unwrap();
    let _ = request.set_uri(target.as_str());
    for (name, value) in &headers {
        if let Ok(v) = value.to_str() {
            request
                .headers_mut()
                .insert(name.as_str().to_owned(), v.to_owned());
        }
    }
    match state.injector.intercept(&request) {
        Intercepted::Answer(answer) => {
            let mut response = Response::builder().status(answer.status().as_u16());
            for (name, value) in answer.headers().iter() {
                response = response.header(name, value);
            }
            response
                .body(axum::body::Body::from(
                    answer.body().bytes().unwrap_or_default().to_vec(),
                ))
                .unwrap()
        }
        Intercepted::Delay(delay) => {
            tokio::time::sleep(delay).await;
            forward(&state, method, &target, headers, body).await
        }
        Intercepted::PassOn => forward(&state, method, &target, headers, body).await,
    }
}

async fn forward(
    state: &ProxyState,
    method: Method,
    target: &str,
    mut headers: HeaderMap,
    body: Bytes,
) -> Response {
    headers.remove("host");
    headers.remove("content-length");
    match state
        .client
        .request(method, target)
        .headers(headers)
        .body(body)
        .send()
        .await
    {
        Ok(upstream) => {
            let mut response = Response::builder().status(upstream.status());
            for (name, value) in upstream.headers() {
                if name != "content-length" && name != "transfer-encoding" {
                    response = response.header(name, value);
                }
            }
            let bytes = upstream.bytes().await.unwrap_or_default();
            response.body(axum::body::Body::from(bytes)).unwrap()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

/// The keys of a function's `Environment.Variables` in template.yaml, read line by line
/// (the test sets the same names, so a variable the template adds or renames is noticed).
pub fn template_variables(function_resource: &str) -> Vec<String> {
    let template = std::fs::read_to_string(workspace_root().join("template.yaml")).unwrap();
    let mut lines = template
        .lines()
        .skip_while(|l| l.trim_end() != format!("  {function_resource}:"));
    assert!(
        lines.next().is_some(),
        "{function_resource} is not in template.yaml"
    );
    let mut in_variables = false;
    // The variables' own indent: deeper lines are a value spread over lines (`!If`).
    let mut key_indent = None;
    let mut out = Vec::new();
    for line in lines {
        let indent = line.len() - line.trim_start().len();
        if !line.trim().is_empty() && indent <= 2 {
            break;
        }
        if line.trim() == "Variables:" {
            in_variables = true;
            continue;
        }
        if in_variables && !line.trim().starts_with('#') && !line.trim().is_empty() {
            if indent <= 8 {
                break;
            }
            if *key_indent.get_or_insert(indent) != indent {
                continue;
            }
            if let Some((key, _)) = line.trim().split_once(':') {
                out.push(key.to_owned());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::template_variables;

    #[test]
    fn a_variable_whose_value_spans_lines_is_one_variable() {
        let names = template_variables("AnomalyFunction");
        assert!(
            names.iter().any(|n| n == "REVGUARD_WEBHOOK_URL"),
            "{names:?}"
        );
        assert!(
            names
                .iter()
                .all(|n| n.starts_with("REVGUARD_") || n.starts_with("STRIPE_")),
            "{names:?}"
        );
    }
}
