//! The api Lambda: revguard-http's operator router (the operator API and the dashboard)
//! over DynamoDB's read model. API Gateway authorizes every route with IAM before the
//! function runs, so the router asks for no token of its own.

use std::sync::Arc;

use revguard_aws::{ApiEnv, DynamoReadModel};
use revguard_core::domain::billing::BillingPolicy;
use revguard_http::operator::{operator_router, OperatorApi};
use revguard_http::{Clock, Router};

/// The router as the function builds it, in `main` and in the tests.
pub fn build_router(
    dynamodb: aws_sdk_dynamodb::Client,
    env: &ApiEnv,
    policy: BillingPolicy,
    clock: Clock,
) -> Router {
    let store = DynamoReadModel::new(
        dynamodb,
        &env.state_table,
        &env.counters_table,
        &env.alerts_table,
    );
    operator_router(Arc::new(OperatorApi {
        store,
        policy,
        token: None,
        // The webhook's rejections are counted by the ingress function (CloudWatch).
        rejections: None,
        clock,
    }))
}
