//! The client against a small Stripe double that fails the way Stripe's API does: 429 with
//! `Retry-After`, 5xx, 400 to parameters it does not know, and lists in pages.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use revguard_core::ports::{ApiError, EventsQuery, StripeApi};
use revguard_stripe::{ApiKey, RetryPolicy, StripeClient, STRIPE_VERSION};

const KEY: &str = "sk_test_secret_do_not_log";

#[derive(Default)]
struct Double {
    calls: AtomicUsize,
    /// Answers to give first, in order: (status, Retry-After).
    failures: Mutex<Vec<(u16, Option<u64>)>>,
    queries: Mutex<Vec<String>>,
    headers: Mutex<Vec<HeaderMap>>,
}

/// 250 events, `evt_0`…`evt_249`, newest first as Stripe lists them; `delivery_success`
/// and `types[]` refused as localstripe refuses them.
async fn events(
    State(d): State<Arc<Double>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> axum::response::Response {
    d.calls.fetch_add(1, Ordering::SeqCst);
    let q = q.unwrap_or_default();
    d.queries.lock().unwrap().push(q.clone());
    d.headers.lock().unwrap().push(headers);
    if let Some((status, retry_after)) = {
        let mut f = d.failures.lock().unwrap();
        (!f.is_empty()).then(|| f.remove(0))
    } {
        let mut response = (
            StatusCode::from_u16(status).unwrap(),
            r#"{"error":{"message":"slow down"}}"#,
        )
            .into_response();
        if let Some(s) = retry_after {
            response
                .headers_mut()
                .insert("retry-after", s.to_string().parse().unwrap());
        }
        return response;
    }
    if q.contains("delivery_success") || q.contains("types") {
        return (
            StatusCode::BAD_REQUEST,
            r#"{"error":{"message":"Unexpected parameter","type":"invalid_request_error"}}"#,
        )
            .into_response();
    }
    let after: Option<usize> = q
        .split('&')
        .find_map(|kv| kv.strip_prefix("starting_after=evt_"))
        .map(|n| n.parse().unwrap());
    let start = after.map_or(249, |n| n as i64 - 1);
    let ids: Vec<i64> = (0..=start).rev().take(100).collect();
    let data: Vec<serde_json::Value> = ids
        .iter()
        .map(|n| serde_json::json!({ "id": format!("evt_{n}"), "object": "event", "type": "invoice.paid", "created": 1_700_000_000 + n }))
        .collect();
    let has_more = ids.last().is_some_and(|n| *n > 0);
    axum::Json(serde_json::json!({ "object": "list", "data": data, "has_more": has_more }))
        .into_response()
}

/// Two endpoints, one a page, shaped as Stripe's API returns them: revguard's, without
/// the dispute events, and another application's.
async fn webhook_endpoints(RawQuery(q): RawQuery) -> axum::response::Response {
    let second = q.unwrap_or_default().contains("starting_after=we_1");
    let endpoint = if second {
        serde_json::json!({ "id": "we_2", "object": "webhook_endpoint", "api_version": null,
            "application": null, "created": 1_700_000_000, "description": "CRM sync",
            "enabled_events": ["customer.created"], "livemode": false, "metadata": {},
            "status": "enabled", "url": "https://crm.example/stripe" })
    } else {
        serde_json::json!({ "id": "we_1", "object": "webhook_endpoint", "api_version": "2024-06-20",
            "application": null, "created": 1_700_000_000, "description": "revguard",
            "enabled_events": revguard_core::usecases::recovery::HANDLED_EVENT_TYPES.iter()
                .filter(|t| !t.starts_with("charge.dispute")).collect::<Vec<_>>(),
            "livemode": false, "metadata": {}, "status": "enabled",
            "url": "https://abc.execute-api.us-east-1.amazonaws.com/webhook" })
    };
    axum::Json(
        serde_json::json!({ "object": "list", "url": "/v1/webhook_endpoints",
        "data": [endpoint], "has_more": !second }),
    )
    .into_response()
}

async fn double() -> (Arc<Double>, String) {
    let d = Arc::new(Double::default());
    let app = Router::new()
        .route("/v1/events", get(events))
        .route("/v1/webhook_endpoints", get(webhook_endpoints))
        .with_state(d.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (d, format!("http://{addr}"))
}

fn client(base: &str) -> StripeClient {
    StripeClient::new(base, ApiKey::new(KEY).unwrap())
        .unwrap()
        .with_retry(RetryPolicy {
            attempts: 4,
            first_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        })
}

fn query() -> EventsQuery {
    EventsQuery {
        since: 1_700_000_000,
        until: None,
        undelivered_only: true,
        types: vec!["invoice.paid".into()],
    }
}

#[tokio::test]
async fn pages_are_followed_and_refused_filters_fall_back() {
    let (d, base) = double().await;
    let events = client(&base).events(&query()).await.unwrap();
    assert_eq!(events.len(), 250);
    let queries = d.queries.lock().unwrap().clone();
    // With both filters (refused), without delivery_success (refused), without types
    // (three pages).
    assert_eq!(queries.len(), 5, "{queries:#?}");
    assert!(
        queries[0].contains("delivery_success=false")
            && queries[0].contains("types%5B%5D=invoice.paid")
    );
    assert!(!queries[1].contains("delivery_success") && queries[1].contains("types"));
    assert!(queries[2..]
        .iter()
        .all(|q| q.contains("created%5Bgte%5D=1700000000") && q.contains("limit=100")));
    assert!(
        queries[3].contains("starting_after=evt_150")
            && queries[4].contains("starting_after=evt_50")
    );
    for h in d.headers.lock().unwrap().iter() {
        assert_eq!(h["stripe-version"], STRIPE_VERSION);
        assert_eq!(h["authorization"], format!("Bearer {KEY}").as_str());
        assert!(
            h.get("stripe-account").is_none(),
            "the platform's own requests name no account"
        );
    }
}

#[tokio::test]
async fn a_connected_account_is_read_on_its_behalf() {
    use revguard_core::ports::{Account, StripeApi};
    let (d, base) = double().await;
    let platform = client(&base);
    let acct = Account::connected("acct_1Conn").unwrap();
    let connected = platform.for_account(&acct);
    assert_eq!(connected.account(), acct);
    assert_eq!(platform.account(), Account::PLATFORM);
    connected.events(&query()).await.unwrap();
    let headers = d.headers.lock().unwrap().clone();
    assert!(!headers.is_empty());
    for h in &headers {
        assert_eq!(h["stripe-account"], "acct_1Conn");
        assert_eq!(h["authorization"], format!("Bearer {KEY}").as_str());
    }
}

#[tokio::test]
async fn a_429_waits_as_retry_after_says_and_5xx_are_retried() {
    let (d, base) = double().await;
    *d.failures.lock().unwrap() = vec![(429, Some(1)), (500, None), (503, None)];
    let mut q = query();
    q.undelivered_only = false;
    q.types.clear();
    let started = std::time::Instant::now();
    let events = client(&base).events(&q).await.unwrap();
    assert_eq!(events.len(), 250);
    // Three failures, then three pages.
    assert_eq!(d.calls.load(Ordering::SeqCst), 6);
    // Retry-After: 1 was honoured (the backoff alone is at most 50 ms a try).
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn giving_up_says_why_and_never_shows_the_key() {
    let (d, base) = double().await;
    *d.failures.lock().unwrap() = vec![(500, None); 10];
    let mut q = query();
    q.undelivered_only = false;
    q.types.clear();
    let err = client(&base).events(&q).await.unwrap_err();
    assert!(matches!(err, ApiError::Unavailable(_)), "{err:?}");
    assert_eq!(d.calls.load(Ordering::SeqCst), 4);
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("after 4 attempts"), "{shown}");
    assert!(!shown.contains(KEY), "{shown}");
    let debug = format!("{:?}", client(&base));
    assert!(
        !debug.contains(KEY) && debug.contains("sk_test_"),
        "{debug}"
    );
    // Nothing listens here: a transport failure is retried, then reported without the URL.
    let err = client("http://127.0.0.1:9").events(&q).await.unwrap_err();
    assert!(format!("{err}").contains("could not connect"), "{err}");
    assert!(ApiKey::new("pk_test_123").is_err());
}

#[tokio::test]
async fn webhook_endpoints_are_listed_and_an_endpoint_without_disputes_is_found() {
    let (_d, base) = double().await;
    let listed = client(&base).webhook_endpoints().await.unwrap();
    let endpoints: Vec<revguard_core::usecases::recovery::Endpoint> = listed
        .iter()
        .map(|raw| serde_json::from_str(raw.get()).unwrap())
        .collect();
    assert_eq!(
        endpoints.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["we_1", "we_2"]
    );
    let found = revguard_core::usecases::recovery::endpoint_findings(
        &endpoints,
        Some("https://abc.execute-api.us-east-1.amazonaws.com/webhook"),
        None,
        false,
        1_700_000_000,
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].key, "endpoint_events");
    assert!(found[0].explanation.contains("charge.dispute.created"));
}
