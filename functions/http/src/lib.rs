//! The HTTP face of revguard: `POST /webhook` and `GET /healthz`, generic over the ports,
//! served by the ingress Lambda (through `lambda_http`) and by the local `revguard serve`.

pub mod dashboard;
pub mod operator;
mod rejections;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use revguard_core::usecases::ingest::IngestContext;
use revguard_core::{EventLog, IngestError, IngestOutcome, Ingress, Queue};
use serde_json::json;
use tracing::field::Empty;
use tracing::Instrument;

pub use axum::Router;
pub use rejections::RejectionStats;

/// Unix seconds. Injected so tests can replay deliveries at any time.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    })
}

pub struct App<L, Q> {
    pub ingress: Ingress<L, Q>,
    pub clock: Clock,
    pub rejections: RejectionStats,
}

impl<L: EventLog, Q: Queue> App<L, Q> {
    pub fn new(ingress: Ingress<L, Q>, clock: Clock) -> Self {
        Self {
            ingress,
            clock,
            rejections: RejectionStats::default(),
        }
    }
}

/// The webhook router over any event log and queue.
pub fn router<L, Q>(app: Arc<App<L, Q>>) -> Router
where
    L: EventLog + 'static,
    Q: Queue + 'static,
{
    Router::new()
        .route("/webhook", post(webhook::<L, Q>))
        .route("/healthz", get(healthz::<L, Q>))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app)
}

pub fn error_response(status: StatusCode, code: &str) -> Response {
    (status, Json(json!({ "error": code }))).into_response()
}

async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "not_found")
}

async fn method_not_allowed() -> Response {
    error_response(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
}

async fn healthz<L: EventLog, Q: Queue>(State(app): State<Arc<App<L, Q>>>) -> Response {
    Json(json!({ "status": "ok", "rejected": app.rejections.snapshot() })).into_response()
}

async fn webhook<L: EventLog, Q: Queue>(
    State(app): State<Arc<App<L, Q>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let span = tracing::info_span!(
        "webhook",
        event_id = Empty,
        event_type = Empty,
        livemode = Empty
    );
    async move {
        let now = (app.clock)();
        let limit = app.ingress.config.max_body_bytes;
        let bytes = match Limited::new(body, limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<LengthLimitError>() => {
                app.rejections.record("payload_too_large", now);
                return error_response(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
            }
            Err(_) => {
                app.rejections.record("unreadable_body", now);
                return error_response(StatusCode::BAD_REQUEST, "unreadable_body");
            }
        };
        // Header names arrive in any case; HeaderMap lookups are case-insensitive.
        // A header that is not visible ASCII is as good as malformed.
        let signature = headers
            .get("stripe-signature")
            .map(|v| v.to_str().unwrap_or(""));

        let mut context = IngestContext::default();
        let result = app
            .ingress
            .ingest(signature, &bytes, now, &mut context)
            .await;
        context.record_in_current_span();
        match result {
            Ok(outcome) => accepted(outcome),
            Err(e) => refused(&app.rejections, e, now),
        }
    }
    .instrument(span)
    .await
}

fn accepted(outcome: IngestOutcome) -> Response {
    let status = match &outcome {
        IngestOutcome::Accepted { .. } => {
            tracing::info!("accepted");
            "accepted"
        }
        IngestOutcome::Requeued { .. } => {
            tracing::info!("accepted again: its earlier enqueue was never confirmed");
            "accepted"
        }
        IngestOutcome::Duplicate { .. } => {
            tracing::info!("duplicate");
            "duplicate"
        }
    };
    Json(json!({ "status": status, "event_id": outcome.event_id() })).into_response()
}

fn refused(stats: &RejectionStats, error: IngestError, now: i64) -> Response {
    let code = error.code();
    if error.is_retryable() {
        // Our fault: the log gets the whole chain, the client an opaque code; Stripe retries.
        tracing::error!(error = %revguard_core::error_chain(&error), "webhook not accepted, Stripe will retry");
        return error_response(StatusCode::SERVICE_UNAVAILABLE, code);
    }
    // The request's fault: counted, and logged at a bounded rate (a flood of forged
    // requests must not flood the logs).
    stats.record(code, now);
    let status = match error {
        IngestError::TooLarge(_) | IngestError::Unstorable(_) => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    error_response(status, code)
}
