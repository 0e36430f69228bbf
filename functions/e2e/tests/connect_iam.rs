//! Connect's calls under the permissions `template.yaml` gives each function, judged by
//! the IAM evaluator the end-to-end test runs every call through: what a connected account
//! adds (its backfill cursor, its drift finding, the counters' day index) is allowed, and
//! nothing beside it. The end-to-end scenarios exercise the rest (the day index is read on
//! every detector run, backfill and dashboard); these calls only a connected account makes.

use std::collections::BTreeMap;

use revguard_aws::testing::unique_name;
use revguard_e2e::iam::{table_arn, Call, Iam, Resources, ACCOUNT};

fn call(action: &str, resource: String, keys: &[&str]) -> Call {
    let mut context = BTreeMap::new();
    if !keys.is_empty() {
        context.insert(
            "dynamodb:LeadingKeys".to_owned(),
            keys.iter().map(|k| k.to_string()).collect(),
        );
    }
    Call {
        action: action.to_owned(),
        resource,
        context,
    }
}

#[tokio::test]
async fn a_connected_account_s_calls_are_allowed_and_nothing_beside_them() {
    // Named as a deployed stack's are (the permissions boundary allows the stack's own).
    let mut resources = Resources::default();
    let (state, counters, alerts) = (
        unique_name("state"),
        unique_name("counters"),
        unique_name("alerts"),
    );
    resources.table("EventsTable", &unique_name("events"));
    resources.table("StateTable", &state);
    resources.table("CountersTable", &counters);
    resources.table("AlertsTable", &alerts);
    let queue = |name: &str| format!("http://127.0.0.1:5000/{ACCOUNT}/{}", unique_name(name));
    resources.queue("EventsQueue", &queue("events"));
    resources.queue("EventsDeadLetterQueue", &queue("dead-letters"));
    let topic = |name: &str| format!("arn:aws:sns:us-east-1:{ACCOUNT}:{}", unique_name(name));
    resources.topic("AlertsTopic", &topic("alerts"));
    resources.topic("NotificationsTopic", &topic("notifications"));
    resources.topic("DigestTopic", &topic("digest"));
    resources.parameter(
        "ExistingStripeSecretArn",
        &format!("arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:stripe-webhook-AbCdEf"),
    );
    resources.parameter(
        "ExistingStripeApiKeySecretArn",
        &format!("arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:stripe-api-key-AbCdEf"),
    );
    let functions = [
        "WorkerFunction",
        "AnomalyFunction",
        "ApiFunction",
        "BackfillFunction",
        "ReconcileFunction",
    ];
    let iam = Iam::for_template(&functions, resources).await;
    let day_index = format!("{}/index/by_day", table_arn(&counters));
    let cases = [
        // The detector and the operator API read the connected accounts by day.
        (
            "AnomalyFunction",
            call("dynamodb:Query", day_index.clone(), &["live#2026-01-09"]),
            true,
        ),
        (
            "ApiFunction",
            call("dynamodb:Query", day_index.clone(), &["live#seen"]),
            true,
        ),
        (
            "BackfillFunction",
            call("dynamodb:Query", day_index.clone(), &["test#seen"]),
            true,
        ),
        (
            "WorkerFunction",
            call("dynamodb:Query", day_index.clone(), &["live#seen"]),
            false,
        ),
        // The worker marks a connected account's counter items with their day.
        (
            "WorkerFunction",
            call(
                "dynamodb:UpdateItem",
                table_arn(&counters),
                &["acct_1Alpha#live#0"],
            ),
            true,
        ),
        // The backfill: each account's cursor, and nothing else of the state.
        (
            "BackfillFunction",
            call(
                "dynamodb:UpdateItem",
                table_arn(&state),
                &["acct_1Alpha#cursor#backfill"],
            ),
            true,
        ),
        (
            "BackfillFunction",
            call("dynamodb:GetItem", table_arn(&state), &["cursor#backfill"]),
            true,
        ),
        (
            "BackfillFunction",
            call(
                "dynamodb:GetItem",
                table_arn(&state),
                &["acct_1Alpha#sub#sub_1"],
            ),
            false,
        ),
        (
            "BackfillFunction",
            call(
                "dynamodb:UpdateItem",
                table_arn(&state),
                &["acct_1Alpha#cust#cus_1"],
            ),
            false,
        ),
        // The reconciliation: a connected account's drift finding, and no other finding.
        (
            "ReconcileFunction",
            call(
                "dynamodb:PutItem",
                table_arn(&alerts),
                &["pending#live#acct_1Alpha:reconcile_drift"],
            ),
            true,
        ),
        (
            "ReconcileFunction",
            call(
                "dynamodb:PutItem",
                table_arn(&alerts),
                &["pending#live#reconcile_drift"],
            ),
            true,
        ),
        (
            "ReconcileFunction",
            call(
                "dynamodb:PutItem",
                table_arn(&alerts),
                &["pending#live#acct_1Alpha:large_refund:ch_1"],
            ),
            false,
        ),
        (
            "ReconcileFunction",
            call(
                "dynamodb:PutItem",
                table_arn(&alerts),
                &["alert#live:acct_1Alpha:reconcile_drift"],
            ),
            false,
        ),
    ];
    let mut wrong = Vec::new();
    for (function, call, allowed) in &cases {
        let decision = iam.decide(function, call).await;
        if (decision == "Allowed") != *allowed {
            wrong.push(format!(
                "{function} {} on {} with {:?}: {decision}, expected {}",
                call.action,
                call.resource,
                call.context,
                if *allowed { "Allowed" } else { "refused" }
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
