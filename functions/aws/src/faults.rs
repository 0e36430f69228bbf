//! A fault injector owned by the project (feature `test-util`): an HTTP client for the
//! AWS SDK that answers in AWS's place, the way a real account pushes back and moto never
//! does, and otherwise passes the request on. Seeded, so a run can be repeated; counted,
//! so a test can say what it survived.
//!
//! It can answer DynamoDB with `ThrottlingException`, `ProvisionedThroughputExceededException`,
//! `TransactionCanceledException` with one `TransactionConflict` among one reason per item
//! (the right count), `TransactionConflictException` (plain writes against an in-flight
//! transaction), and any service with HTTP 500 or 503; it can also delay a call.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::{Response, StatusCode};
use aws_smithy_types::body::SdkBody;

/// What the injector can do to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// DynamoDB `ThrottlingException` (400).
    Throttling,
    /// DynamoDB `ProvisionedThroughputExceededException` (400).
    ProvisionedThroughputExceeded,
    /// On `TransactWriteItems`: `TransactionCanceledException` whose reasons name one item
    /// `TransactionConflict` and the others `None`. On a plain write:
    /// `TransactionConflictException`.
    TransactionConflict,
    /// HTTP 500 (`InternalServerError`).
    Http500,
    /// HTTP 503 (`ServiceUnavailable`).
    Http503,
    /// The call goes through, this much later.
    Latency(Duration),
    /// On `TransactWriteItems`: `TransactionCanceledException` with one `ValidationError`
    /// among the reasons (an item over 400 KB does this).
    ValidationError,
    /// On `TransactWriteItems`: `TransactionCanceledException` with one `ThrottlingError`
    /// among the reasons (an item on a throttled partition).
    ThrottledItem,
    /// On `BatchGetItem`: a 200 that reads nothing and returns every key as unprocessed
    /// (what a throttled partition does).
    UnprocessedKeys,
    /// On an eventually consistent `BatchGetItem` only: a 200 that finds none of the items,
    /// as a read that has not yet seen their writes may. Strong reads pass on untouched.
    StaleRead,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Throttling => "throttling",
            Fault::ProvisionedThroughputExceeded => "provisioned_throughput_exceeded",
            Fault::TransactionConflict => "transaction_conflict",
            Fault::Http500 => "http_500",
            Fault::Http503 => "http_503",
            Fault::Latency(_) => "latency",
            Fault::UnprocessedKeys => "unprocessed_keys",
            Fault::ValidationError => "validation_error",
            Fault::ThrottledItem => "throttled_item",
            Fault::StaleRead => "stale_read",
        }
    }
}

/// One rule: calls of `operation` (`"dynamodb:TransactWriteItems"`, `"sqs:SendMessage"`,
/// `"sns:Publish"`; `"dynamodb:*"` for every call of a service) get `fault` with this
/// probability. Rules are drawn in order; the first that fires answers.
#[derive(Debug, Clone)]
pub struct Rule {
    pub operation: String,
    pub fault: Fault,
    pub probability: f64,
    /// At most this many injections by this rule.
    pub limit: Option<u64>,
}

impl Rule {
    pub fn new(operation: &str, fault: Fault, probability: f64) -> Self {
        Self {
            operation: operation.to_owned(),
            fault,
            probability,
            limit: None,
        }
    }

    /// The first `n` matching calls, and no other.
    pub fn first_calls(operation: &str, fault: Fault, n: u64) -> Self {
        Self {
            limit: Some(n),
            ..Self::new(operation, fault, 1.0)
        }
    }

    fn matches(&self, operation: &str) -> bool {
        match self.operation.strip_suffix('*') {
            Some(prefix) => operation.starts_with(prefix),
            None => self.operation == operation,
        }
    }
}

/// SplitMix64: a small seeded stream, the same on every platform (the injector's, and any
/// test's that must replay the same choices from a seed).
#[derive(Debug, Default, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.unit() * n as f64) as usize).min(n.saturating_sub(1))
    }
}

#[derive(Debug, Default)]
struct State {
    rng: SplitMix64,
    /// (operation, fault name) → how many were injected.
    injected: BTreeMap<(String, &'static str), u64>,
    /// Injections per rule (by index), for the rules' limits.
    by_rule: BTreeMap<usize, u64>,
    /// operation → calls seen (injected or passed on).
    calls: BTreeMap<String, u64>,
}

/// The injector: give it to an SDK client's config builder (`.http_client(injector)`).
/// Clones share their plan, their random stream and their counts.
#[derive(Debug, Clone)]
pub struct FaultInjector {
    rules: Arc<Mutex<Vec<Rule>>>,
    /// Refuse SQS message bodies with characters SQS does not allow, as AWS does and moto
    /// does not.
    sqs_characters: bool,
    state: Arc<Mutex<State>>,
    inner: SharedHttpClient,
}

impl FaultInjector {
    /// Faults drawn from `seed` in front of `inner` (the client that really sends: e.g.
    /// `SdkConfig::http_client()`).
    pub fn new(seed: u64, rules: Vec<Rule>, inner: SharedHttpClient) -> Self {
        Self {
            rules: Arc::new(Mutex::new(rules)),
            sqs_characters: true,
            state: Arc::new(Mutex::new(State {
                rng: SplitMix64::new(seed),
                ..State::default()
            })),
            inner,
        }
    }

    /// An injector whose own sending is plain HTTP (moto's), for a proxy that asks it only
    /// through [`FaultInjector::intercept`] and forwards requests itself.
    pub fn for_proxy(seed: u64, rules: Vec<Rule>) -> Self {
        Self::new(
            seed,
            rules,
            aws_smithy_http_client::Builder::new().build_http(),
        )
    }

    /// How many faults of each kind were injected: (operation, fault) → count.
    pub fn injected(&self) -> BTreeMap<(String, &'static str), u64> {
        self.lock().injected.clone()
    }

    /// Injected faults of one kind, over every operation.
    pub fn injected_of(&self, fault: Fault) -> u64 {
        let name = fault.name();
        self.lock()
            .injected
            .iter()
            .filter(|((_, f), _)| *f == name)
            .map(|(_, n)| n)
            .sum()
    }

    /// Calls seen per operation, whether answered here or passed on.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.lock().calls.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the plan from the next call on (an outage that starts or ends); the
    /// random stream and the counts go on.
    pub fn set_rules(&self, rules: Vec<Rule>) {
        *self.rules.lock().unwrap_or_else(|p| p.into_inner()) = rules;
    }

    fn draw(&self, operation: &str, applies: impl Fn(Fault) -> bool) -> Option<Fault> {
        // Lock order: the rules, then the state (set_rules takes only the rules).
        let rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        let mut state = self.lock();
        *state.calls.entry(operation.to_owned()).or_default() += 1;
        for (index, rule) in rules.iter().enumerate() {
            if !rule.matches(operation) || !applies(rule.fault) {
                continue;
            }
            let spent = state.by_rule.get(&index).copied().unwrap_or(0);
            if rule.limit.is_some_and(|limit| spent >= limit) {
                continue;
            }
            if state.rng.unit() < rule.probability {
                *state.by_rule.entry(index).or_default() += 1;
                *state
                    .injected
                    .entry((operation.to_owned(), rule.fault.name()))
                    .or_default() += 1;
                return Some(rule.fault);
            }
        }
        None
    }

    /// A number in [0, n) from the same stream (which item of a transaction conflicts).
    fn pick(&self, n: usize) -> usize {
        self.lock().rng.below(n)
    }
}

impl HttpClient for FaultInjector {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(FaultyConnector {
            injector: self.clone(),
            inner: self.inner.http_connector(settings, components),
        })
    }
}

#[derive(Debug)]
struct FaultyConnector {
    injector: FaultInjector,
    inner: SharedHttpConnector,
}

impl HttpConnector for FaultyConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        match self.injector.intercept(&request) {
            Intercepted::PassOn => self.inner.call(request),
            Intercepted::Delay(delay) => {
                let inner = self.inner.clone();
                HttpConnectorFuture::new(async move {
                    tokio::time::sleep(delay).await;
                    inner.call(request).await
                })
            }
            Intercepted::Answer(response) => HttpConnectorFuture::ready(Ok(*response)),
        }
    }
}

/// What the injector does with one request.
#[derive(Debug)]
pub enum Intercepted {
    /// Send it on, untouched.
    PassOn,
    /// Send it on after this delay.
    Delay(Duration),
    /// Answer it in AWS's place with this response.
    Answer(Box<Response<SdkBody>>),
}

impl FaultInjector {
    /// Draws the fate of one request: the same plan, stream and counts whether the
    /// injector sits in an SDK client or in a proxy in front of moto (for functions that
    /// run as processes of their own).
    pub fn intercept(&self, request: &HttpRequest) -> Intercepted {
        let operation = operation_of(request);
        if self.sqs_characters && refused_by_sqs(&operation, request) {
            *self
                .lock()
                .injected
                .entry((operation.clone(), "invalid_message_contents"))
                .or_default() += 1;
            return Intercepted::Answer(Box::new(invalid_message_contents()));
        }
        let eventual_read = operation == "dynamodb:BatchGetItem" && !strong_read(request);
        let Some(fault) = self.draw(&operation, |f| f != Fault::StaleRead || eventual_read) else {
            return Intercepted::PassOn;
        };
        if fault == Fault::StaleRead {
            return Intercepted::Answer(Box::new(nothing_found(request)));
        }
        if let Fault::Latency(delay) = fault {
            return Intercepted::Delay(delay);
        }
        if fault == Fault::UnprocessedKeys {
            return Intercepted::Answer(Box::new(all_unprocessed(request)));
        }
        let items = transact_item_count(request);
        let conflicting = self.pick(items.max(1));
        Intercepted::Answer(Box::new(answer(&operation, fault, items, conflicting)))
    }
}

/// `service:Operation` of a request: DynamoDB and SQS name it in `x-amz-target`
/// (JSON protocols), SNS in the form body (`Action=Publish`).
pub fn operation_of(request: &HttpRequest) -> String {
    if let Some(target) = request.headers().get("x-amz-target") {
        let (prefix, op) = target.split_once('.').unwrap_or(("", target));
        let service = if prefix.starts_with("DynamoDB") {
            "dynamodb"
        } else if prefix.starts_with("AmazonSQS") {
            "sqs"
        } else {
            "other"
        };
        return format!("{service}:{op}");
    }
    let body = request.body().bytes().unwrap_or_default();
    let body = String::from_utf8_lossy(body);
    match body
        .split('&')
        .find_map(|pair| pair.strip_prefix("Action="))
    {
        Some(action) => format!("sns:{action}"),
        None => "other:unknown".to_owned(),
    }
}

fn transact_item_count(request: &HttpRequest) -> usize {
    request
        .body()
        .bytes()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
        .and_then(|v| {
            v.get("TransactItems")
                .and_then(|t| t.as_array())
                .map(Vec::len)
        })
        .unwrap_or(0)
}

/// Whether SQS would refuse this send: a message body may hold only #x9, #xA, #xD,
/// #x20–#xD7FF, #xE000–#xFFFD and #x10000–#x10FFFF (U+FFFE and U+FFFF are valid JSON).
fn refused_by_sqs(operation: &str, request: &HttpRequest) -> bool {
    if !operation.starts_with("sqs:SendMessage") {
        return false;
    }
    let Some(body) = request
        .body()
        .bytes()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
    else {
        return false;
    };
    let bodies: Vec<&str> = match body.get("Entries").and_then(|e| e.as_array()) {
        Some(entries) => entries
            .iter()
            .filter_map(|e| e.get("MessageBody").and_then(|b| b.as_str()))
            .collect(),
        None => body
            .get("MessageBody")
            .and_then(|b| b.as_str())
            .into_iter()
            .collect(),
    };
    bodies.iter().any(|b| {
        b.chars().any(|c| {
            !matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
        })
    })
}

fn invalid_message_contents() -> Response<SdkBody> {
    let body = serde_json::json!({
        "__type": "com.amazonaws.sqs#InvalidMessageContents",
        "message": "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF",
    });
    let mut response = http_response(400, JSON_1_0, body.to_string());
    response.headers_mut().insert(
        "x-amzn-query-error",
        "InvalidMessageContents;Sender".to_owned(),
    );
    response
}

const JSON_1_0: &str = "application/x-amz-json-1.0";

/// An answer as AWS sends it: a status, a content type, a body.
fn http_response(status: u16, content_type: &str, body: String) -> Response<SdkBody> {
    let mut response = Response::new(
        StatusCode::try_from(status).expect("a valid status"),
        SdkBody::from(body),
    );
    response
        .headers_mut()
        .insert("content-type", content_type.to_owned());
    response
        .headers_mut()
        .insert("x-amzn-requestid", "injected".to_owned());
    response
}

/// Whether a `BatchGetItem` asks every table for a strongly consistent read.
fn strong_read(request: &HttpRequest) -> bool {
    let Some(tables) = request_items(request) else {
        return false;
    };
    tables.as_object().is_some_and(|t| {
        !t.is_empty()
            && t.values()
                .all(|k| k.get("ConsistentRead") == Some(&serde_json::Value::Bool(true)))
    })
}

fn request_items(request: &HttpRequest) -> Option<serde_json::Value> {
    request
        .body()
        .bytes()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
        .and_then(|v| v.get("RequestItems").cloned())
}

/// A `BatchGetItem` answer that found none of the keys.
fn nothing_found(request: &HttpRequest) -> Response<SdkBody> {
    let responses: serde_json::Map<String, serde_json::Value> = request_items(request)
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default()
        .keys()
        .map(|table| (table.clone(), serde_json::json!([])))
        .collect();
    let body = serde_json::json!({ "Responses": responses, "UnprocessedKeys": {} });
    http_response(200, JSON_1_0, body.to_string())
}

/// A `BatchGetItem` answer that read nothing: every requested key comes back unprocessed.
fn all_unprocessed(request: &HttpRequest) -> Response<SdkBody> {
    let requested = request
        .body()
        .bytes()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
        .and_then(|v| v.get("RequestItems").cloned())
        .unwrap_or_else(|| serde_json::json!({}));
    let body = serde_json::json!({ "Responses": {}, "UnprocessedKeys": requested });
    http_response(200, JSON_1_0, body.to_string())
}

fn answer(operation: &str, fault: Fault, items: usize, conflicting: usize) -> Response<SdkBody> {
    const DDB: &str = "com.amazonaws.dynamodb.v20120810#";
    let dynamodb = operation.starts_with("dynamodb:");
    let (status, error_type, body) = match fault {
        Fault::Throttling => (
            400,
            format!("{DDB}ThrottlingException"),
            serde_json::json!({ "message": "Rate of requests exceeds the allowed throughput." }),
        ),
        Fault::ProvisionedThroughputExceeded => (
            400,
            format!("{DDB}ProvisionedThroughputExceededException"),
            serde_json::json!({ "message": "The level of configured provisioned throughput for the table was exceeded." }),
        ),
        Fault::TransactionConflict | Fault::ValidationError | Fault::ThrottledItem
            if operation == "dynamodb:TransactWriteItems" =>
        {
            let (code, message) = match fault {
                Fault::ValidationError => (
                    "ValidationError",
                    "Item size has exceeded the maximum allowed size",
                ),
                Fault::ThrottledItem => {
                    ("ThrottlingError", "Throughput exceeds the current capacity")
                }
                _ => ("TransactionConflict", "Transaction is ongoing for the item"),
            };
            let codes: Vec<&str> = (0..items)
                .map(|i| if i == conflicting { code } else { "None" })
                .collect();
            let reasons: Vec<serde_json::Value> = codes
                .iter()
                .map(|&c| match c {
                    "None" => serde_json::json!({ "Code": "None" }),
                    c => serde_json::json!({ "Code": c, "Message": message }),
                })
                .collect();
            (
                400,
                format!("{DDB}TransactionCanceledException"),
                serde_json::json!({
                    "Message": format!("Transaction cancelled, please refer cancellation reasons for specific reasons [{}]", codes.join(", ")),
                    "CancellationReasons": reasons,
                }),
            )
        }
        Fault::TransactionConflict => (
            400,
            format!("{DDB}TransactionConflictException"),
            serde_json::json!({ "message": "Transaction is ongoing for the item" }),
        ),
        Fault::Http500 => (
            500,
            if dynamodb {
                format!("{DDB}InternalServerError")
            } else {
                "InternalFailure".to_owned()
            },
            serde_json::json!({ "message": "Internal server error (injected)" }),
        ),
        Fault::Http503 => (
            503,
            "ServiceUnavailable".to_owned(),
            serde_json::json!({ "message": "Service unavailable (injected)" }),
        ),
        Fault::ThrottledItem => (
            400,
            format!("{DDB}ThrottlingException"),
            serde_json::json!({ "message": "Rate of requests exceeds the allowed throughput." }),
        ),
        Fault::ValidationError => (
            400,
            format!("{DDB}ValidationException"),
            serde_json::json!({ "message": "Item size has exceeded the maximum allowed size" }),
        ),
        Fault::Latency(_) | Fault::UnprocessedKeys | Fault::StaleRead => {
            unreachable!("answered before: {fault:?}")
        }
    };
    let mut body = body;
    body["__type"] = serde_json::Value::String(error_type.clone());
    let (content_type, text) = if operation.starts_with("sns:") {
        // SNS speaks the query protocol: errors are XML.
        let code = error_type
            .rsplit('#')
            .next()
            .unwrap_or(&error_type)
            .to_owned();
        (
            "text/xml",
            format!(
                "<ErrorResponse><Error><Type>Receiver</Type><Code>{code}</Code><Message>injected</Message></Error><RequestId>injected</RequestId></ErrorResponse>"
            ),
        )
    } else {
        (JSON_1_0, body.to_string())
    };
    http_response(status, content_type, text)
}
