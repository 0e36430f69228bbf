//! The operator API and the dashboard, over any store's [`ReadModel`]: the same routes and
//! answers from `revguard serve` (SQLite) and from the `api` Lambda (DynamoDB).
//!
//! It holds billing data. Embedded, it is open on a loopback address and needs the
//! configured bearer token elsewhere; on AWS, API Gateway authorizes every route with IAM
//! before the function runs, and no token is set here.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use revguard_core::domain::audience::{on_call_alerts, RECENT_ALERTS_SECS};
use revguard_core::domain::billing::BillingPolicy;
use revguard_core::ports::{Account, ReadModel, Scope};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::{error_response, Clock};

/// Rejected webhook deliveries since start, by reason (the dashboard shows them).
pub type Rejections = Arc<dyn Fn() -> BTreeMap<String, u64> + Send + Sync>;

pub struct OperatorApi<R> {
    pub store: R,
    pub policy: BillingPolicy,
    /// Required as `Authorization: Bearer <token>` when set.
    pub token: Option<String>,
    /// Where the webhook's rejections are counted, when it runs in the same process.
    pub rejections: Option<Rejections>,
    pub clock: Clock,
}

/// The longest range `/api/metrics` answers (each hour is a counter item to read).
pub const MAX_METRICS_RANGE_SECS: i64 = 92 * 86_400;

pub fn operator_router<R: ReadModel + 'static>(api: Arc<OperatorApi<R>>) -> Router {
    Router::new()
        .route("/api/subscriptions/{id}", get(subscription::<R>))
        .route("/api/customers/{id}", get(customer::<R>))
        .route("/api/access/{customer}", get(access::<R>))
        .route("/api/dunning", get(dunning::<R>))
        .route("/api/metrics", get(metrics::<R>))
        .route("/api/alerts", get(alerts::<R>))
        .route("/api/accounts", get(accounts::<R>))
        .route("/dashboard", get(dashboard::<R>))
        .route_layer(axum::middleware::from_fn_with_state(
            api.clone(),
            require_token::<R>,
        ))
        .with_state(api)
}

async fn require_token<R: ReadModel>(
    State(api): State<Arc<OperatorApi<R>>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = &api.token {
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

fn unavailable(e: revguard_core::StoreError) -> Response {
    tracing::error!(error = %revguard_core::error_chain(&e), "operator API read failed");
    error_response(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
}

fn answer<T: serde::Serialize>(r: Result<T, revguard_core::StoreError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => unavailable(e),
    }
}

type Params = Query<HashMap<String, String>>;

/// The scope a request asks about (`?account=`): absent or `platform` for the platform's
/// own account, an `acct_…` id for a connected account, `all` for the whole platform.
fn scope_of(q: &HashMap<String, String>) -> Result<Scope, BadAccount> {
    Scope::parse(q.get("account").map(String::as_str)).map_err(|_| BadAccount)
}

/// One account (`?account=`): `all` names no one customer's or case's account.
fn account_of(q: &HashMap<String, String>) -> Result<Account, BadAccount> {
    scope_of(q)?.account().ok_or(BadAccount)
}

/// `?account=` is neither an account id, `platform` nor (where it may be) `all`: 400.
struct BadAccount;

impl IntoResponse for BadAccount {
    fn into_response(self) -> Response {
        error_response(StatusCode::BAD_REQUEST, "bad_account")
    }
}

async fn subscription<R: ReadModel>(
    State(api): State<Arc<OperatorApi<R>>>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Response {
    let account = match account_of(&q) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    match api.store.subscription(&account, &id).await {
        Ok(Some(sub)) => Json(sub).into_response(),
        Ok(None) => error_response(StatusCode::NOT_FOUND, "not_found"),
        Err(e) => unavailable(e),
    }
}

async fn customer<R: ReadModel>(
    State(api): State<Arc<OperatorApi<R>>>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Response {
    let account = match account_of(&q) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    answer(
        api.store
            .customer_view(&account, &id, (api.clock)(), &api.policy)
            .await,
    )
}

/// "May this customer use the product?", small enough to ask on every request of the SaaS.
async fn access<R: ReadModel>(
    State(api): State<Arc<OperatorApi<R>>>,
    Path(customer): Path<String>,
    Query(q): Params,
) -> Response {
    let account = match account_of(&q) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    match api
        .store
        .customer_view(&account, &customer, (api.clock)(), &api.policy)
        .await
    {
        Ok(view) => Json(json!({
            "customer": customer,
            "account": account,
            "verdict": view.access.verdict,
            "reason": view.access.reason,
            "until": view.access.until,
            "disputed": view.access.disputed,
        }))
        .into_response(),
        Err(e) => unavailable(e),
    }
}

async fn dunning<R: ReadModel>(
    State(api): State<Arc<OperatorApi<R>>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let account = match account_of(&q) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let status = q.get("status").map(String::as_str).unwrap_or("open");
    answer(
        api.store
            .dunning_cases(&account, Some(status), &api.policy)
            .await,
    )
}

async fn metrics<R: ReadModel>(
    State(api): State<Arc<OperatorApi<R>>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let scope = match scope_of(&q) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let now = (api.clock)();
    // `None` when the parameter is there but is not a time.
    let parse = |key: &str, default: i64| -> Option<i64> {
        q.get(key).map_or(Some(default), |v| {
            v.parse::<i64>()
                .ok()
                .or_else(|| revguard_core::domain::time::parse_rfc3339(v))
        })
    };
    let (Some(from), Some(to)) = (parse("from", now - 24 * 3600), parse("to", now + 3600)) else {
        return error_response(StatusCode::BAD_REQUEST, "bad_time");
    };
    // Each hour is an item to read: a range is at most 92 days.
    if from > to || to - from > MAX_METRICS_RANGE_SECS {
        return error_response(StatusCode::BAD_REQUEST, "bad_range");
    }
    answer(api.store.metrics(&scope, from, to).await)
}

/// Open alerts, and those resolved in the last 7 days: open first, then the latest. The
/// platform's own (with the platform-wide ones, about all its accounts) by default; one
/// connected account's with `?account=acct_…`; every scope's with `?account=all`.
async fn alerts<R: ReadModel>(
    State(api): State<Arc<OperatorApi<R>>>,
    Query(q): Params,
) -> Response {
    let scope = match scope_of(&q) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let asked = match &scope {
        Scope::Account(_) => Some(&scope),
        Scope::Platform | Scope::All => None,
    };
    match api
        .store
        .recent_alerts(asked, (api.clock)(), RECENT_ALERTS_SECS)
        .await
    {
        Ok(mut alerts) => {
            if scope.is_platform() {
                alerts.retain(|a| matches!(a.finding.scope, Scope::Platform | Scope::All));
            }
            Json(on_call_alerts(alerts)).into_response()
        }
        Err(e) => unavailable(e),
    }
}

/// Every account seen (the platform's own first), with its MRR, open dunning cases and
/// open alerts.
async fn accounts<R: ReadModel>(State(api): State<Arc<OperatorApi<R>>>) -> Response {
    answer(api.store.accounts((api.clock)()).await)
}

/// The dashboard page (see [`crate::dashboard`]): `?mode=live` (default) or `test`, and
/// `?account=` as the API takes it (`all`: the whole platform).
async fn dashboard<R: ReadModel>(
    State(api): State<Arc<OperatorApi<R>>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let scope = match scope_of(&q) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let now = (api.clock)();
    let livemode = q.get("mode").map(String::as_str) != Some("test");
    let rejected = api.rejections.as_ref().map(|r| r());
    match crate::dashboard::load(&api.store, &api.policy, now, livemode, scope, rejected).await {
        Ok(d) => axum::response::Html(crate::dashboard::render(&d)).into_response(),
        Err(e) => unavailable(e),
    }
}
