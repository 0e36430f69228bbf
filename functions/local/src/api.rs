//! Read-only operator API over the embedded store. It holds billing data: on a loopback
//! address it is open, on any other address every request needs the configured bearer token.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use revguard_core::billing::BillingPolicy;
use revguard_http::error_response;
use subtle::ConstantTimeEq;

use revguard_sqlite::SqliteStore;

pub struct ApiState {
    pub store: SqliteStore,
    pub policy: BillingPolicy,
    /// Required as `Authorization: Bearer <token>` when set.
    pub token: Option<String>,
    /// Rejected webhook deliveries since start, by reason (for the dashboard).
    pub rejections: Rejections,
}

pub type Rejections = Arc<dyn Fn() -> std::collections::BTreeMap<String, u64> + Send + Sync>;

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/api/subscriptions/{id}", get(subscription))
        .route("/api/customers/{id}", get(customer))
        .route("/api/dunning", get(dunning))
        .route("/api/metrics", get(metrics))
        .route("/api/alerts", get(alerts))
        .route("/dashboard", get(dashboard))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
        .with_state(state)
}

async fn require_token(
    State(state): State<Arc<ApiState>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = &state.token {
        let given = request
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
            return error_response(StatusCode::UNAUTHORIZED, "unauthorized");
        }
    }
    next.run(request).await
}

fn internal(e: revguard_core::StoreError) -> Response {
    tracing::error!(error = %e, "operator API read failed");
    error_response(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
}

async fn subscription(State(s): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    match s.store.subscription(&id) {
        Ok(Some(sub)) => Json(sub).into_response(),
        Ok(None) => error_response(StatusCode::NOT_FOUND, "not_found"),
        Err(e) => internal(e),
    }
}

async fn customer(State(s): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    match s.store.customer_view(&id, crate::unix_now(), &s.policy) {
        Ok(view) => Json(view).into_response(),
        Err(e) => internal(e),
    }
}

async fn dunning(
    State(s): State<Arc<ApiState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match s
        .store
        .dunning_cases(q.get("status").map(String::as_str), &s.policy)
    {
        Ok(cases) => Json(cases).into_response(),
        Err(e) => internal(e),
    }
}

async fn metrics(
    State(s): State<Arc<ApiState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let now = crate::unix_now();
    // `None` when the parameter is there but is not a time.
    let parse = |key: &str, default: i64| -> Option<i64> {
        q.get(key).map_or(Some(default), |v| crate::parse_time(v))
    };
    let (Some(from), Some(to)) = (parse("from", now - 24 * 3600), parse("to", now + 3600)) else {
        return error_response(StatusCode::BAD_REQUEST, "bad_time");
    };
    match s.store.metrics(from, to) {
        Ok(m) => Json(m).into_response(),
        Err(e) => internal(e),
    }
}

/// Open alerts, and those resolved in the last 7 days.
async fn alerts(State(s): State<Arc<ApiState>>) -> Response {
    match s.store.recent_alerts(crate::unix_now(), 7 * 86_400) {
        Ok(a) => Json(a).into_response(),
        Err(e) => internal(e),
    }
}

/// The dashboard page (see [`crate::dashboard`]): `?mode=live` (default) or `test`.
async fn dashboard(
    State(s): State<Arc<ApiState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let now = crate::unix_now();
    let livemode = q.get("mode").map(String::as_str) != Some("test");
    let data = (|| -> Result<crate::dashboard::DashboardData, revguard_core::StoreError> {
        // The gauges (hour 0) come with every read; the latest receipt sets the window.
        let last_received = s
            .store
            .metrics(0, 0)?
            .iter()
            .find(|h| h.hour == 0 && h.livemode == livemode)
            .and_then(|h| h.metrics.get("max_received_at").copied());
        let (from, to) = crate::dashboard::window(now, last_received);
        let hours = s.store.metrics(from, to)?;
        Ok(crate::dashboard::DashboardData {
            now,
            livemode,
            from,
            to,
            hours,
            alerts: s.store.recent_alerts(to, 7 * 86_400)?,
            cases: s.store.dunning_cases(Some("open"), &s.policy)?,
            rejected: (s.rejections)(),
        })
    })();
    match data {
        Ok(d) => axum::response::Html(crate::dashboard::render(&d)).into_response(),
        Err(e) => internal(e),
    }
}
