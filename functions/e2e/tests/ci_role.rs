//! The CI deploy role (`infra/ci-deploy-role.yaml`) proven with the evaluator that judges
//! the functions' calls in the end-to-end test, not asserted by pattern:
//! - every call CloudFormation makes to create the stack, derived from the translated
//!   template (each resource, named as CloudFormation names it, with the condition keys
//!   IAM gives the call), is allowed, in the default configuration and with every option on;
//! - every way for whoever controls CI to make an administrator is refused.

use std::collections::BTreeMap;

use revguard_e2e::iam::{resolve, Call, PolicyEvaluator};
use serde_json::{json, Value};

const ACCOUNT: &str = "123456789012";
const STACK: &str = "revguard";
/// The boundary as CloudFormation names it in the CI stack (`revguard-ci`).
const BOUNDARY: &str =
    "arn:aws:iam::123456789012:policy/boundaries/revguard-ci-StackBoundary-1A2B3C4D5E6F7";

/// CloudFormation's execution role for the stack, as the CI stack creates it.
async fn execution_role() -> Value {
    resolve(&json!({ "role": {
        "template": "infra/ci-deploy-role.yaml",
        "resource": "ExecutionRole",
        "stack_name": "revguard-ci",
        "parameters": { "StackName": STACK, "ArtifactsBucket": "revguard-artifacts" },
        "resources": { "StackBoundary": { "Ref": BOUNDARY } },
    }}))
    .await
}

fn call(action: &str, resource: &str, context: &[(&str, &str)]) -> Call {
    Call {
        action: action.to_owned(),
        resource: resource.to_owned(),
        context: context
            .iter()
            .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// The calls a deploy of template.yaml with `parameters` makes, through the boundary.
async fn deploy_calls(parameters: Value) -> Vec<(String, Call)> {
    let mut parameters = parameters;
    parameters["PermissionsBoundaryArn"] = json!(BOUNDARY);
    let calls = resolve(&json!({ "deploy": {
        "template": "template.yaml", "stack_name": STACK, "parameters": parameters,
    }}))
    .await;
    calls
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let context = c["context"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), vec![v.as_str().unwrap().to_owned()]))
                .collect();
            (
                c["resource_id"].as_str().unwrap().to_owned(),
                Call {
                    action: c["action"].as_str().unwrap().to_owned(),
                    resource: c["resource"].as_str().unwrap().to_owned(),
                    context,
                },
            )
        })
        .collect()
}

async fn assert_deploy_allowed(parameters: Value, configuration: &str) {
    let role = execution_role().await;
    let evaluator = PolicyEvaluator::start();
    let calls = deploy_calls(parameters).await;
    let mut refused = Vec::new();
    for (resource, call) in &calls {
        let decision = evaluator.decide(&role, call).await;
        if decision != "Allowed" {
            refused.push(format!(
                "  {resource}: {} on {} {:?} ({decision})",
                call.action, call.resource, call.context
            ));
        }
    }
    println!(
        "{configuration}: {} deploy calls evaluated, {} refused",
        calls.len(),
        refused.len()
    );
    assert!(
        refused.is_empty(),
        "the CI role refuses what a deploy of the stack ({configuration}) needs:\n{}",
        refused.join("\n")
    );
}

#[tokio::test]
async fn the_ci_role_allows_what_a_default_deploy_needs() {
    assert_deploy_allowed(json!({}), "default parameters").await;
}

#[tokio::test]
async fn the_ci_role_allows_what_a_deploy_with_every_option_needs() {
    assert_deploy_allowed(
        json!({
            "StripeApiKey": "sk_test_ci", "AlertEmail": "oncall@example.com",
            "AlertSmsNumber": "+15555550100", "NotificationEmail": "team@example.com",
            "SlackWorkspaceId": "T0123", "SlackChannelId": "C0123",
            "TeamsTenantId": "tenant", "TeamsTeamId": "team", "TeamsChannelId": "channel",
            "WebhookFunctionUrl": "true",
            "StripeEventSourceName": "aws.partner/stripe.com/ed_test_ci",
            "PagerDutyRoutingKey": "0123456789abcdef0123456789abcdef",
        }),
        "every option on",
    )
    .await;
}

#[tokio::test]
async fn the_ci_role_refuses_every_way_to_make_an_administrator() {
    let role = execution_role().await;
    let evaluator = PolicyEvaluator::start();
    let own_role = format!("arn:aws:iam::{ACCOUNT}:role/{STACK}-WorkerRole-1A2B3C4D5E6F7");
    let other_role = format!("arn:aws:iam::{ACCOUNT}:role/deploy-admin");
    let admin = "arn:aws:iam::aws:policy/AdministratorAccess";
    let other_boundary = format!("arn:aws:iam::{ACCOUNT}:policy/boundaries/anything-goes");
    let own_policy =
        format!("arn:aws:iam::{ACCOUNT}:policy/{STACK}-ChatGuardrailPolicy-1A2B3C4D5E6F7");
    let attacks = [
        (
            "a role without the boundary",
            call("iam:CreateRole", &own_role, &[]),
        ),
        (
            "a role under another boundary",
            call(
                "iam:CreateRole",
                &own_role,
                &[("iam:PermissionsBoundary", &other_boundary)],
            ),
        ),
        (
            "AdministratorAccess attached to a role of the stack",
            call(
                "iam:AttachRolePolicy",
                &own_role,
                &[
                    ("iam:PolicyARN", admin),
                    ("iam:PermissionsBoundary", BOUNDARY),
                ],
            ),
        ),
        (
            "an inline policy on a role outside the stack's prefix",
            call(
                "iam:PutRolePolicy",
                &other_role,
                &[("iam:PermissionsBoundary", BOUNDARY)],
            ),
        ),
        (
            "a role passed to another service",
            call(
                "iam:PassRole",
                &own_role,
                &[("iam:PassedToService", "ec2.amazonaws.com")],
            ),
        ),
        (
            "a new version of the stack's own policy",
            call("iam:CreatePolicyVersion", &own_policy, &[]),
        ),
        (
            "a new version of the boundary",
            call("iam:CreatePolicyVersion", BOUNDARY, &[]),
        ),
        (
            "an older version of a policy made default",
            call("iam:SetDefaultPolicyVersion", &own_policy, &[]),
        ),
        (
            "the boundary removed from a role",
            call(
                "iam:DeleteRolePermissionsBoundary",
                &own_role,
                &[("iam:PermissionsBoundary", BOUNDARY)],
            ),
        ),
        (
            "the boundary swapped for another",
            call(
                "iam:PutRolePermissionsBoundary",
                &own_role,
                &[("iam:PermissionsBoundary", &other_boundary)],
            ),
        ),
        (
            "a user with keys",
            call(
                "iam:CreateUser",
                &format!("arn:aws:iam::{ACCOUNT}:user/{STACK}-ci"),
                &[],
            ),
        ),
        (
            "the boundary deleted",
            call("iam:DeletePolicy", BOUNDARY, &[]),
        ),
    ];
    let mut allowed = Vec::new();
    for (what, attack) in &attacks {
        let decision = evaluator.decide(&role, attack).await;
        println!(
            "{what}: {} on {} → {decision}",
            attack.action, attack.resource
        );
        if decision == "Allowed" || decision.starts_with("evaluator error") {
            allowed.push(format!("  {what}: {decision}"));
        }
    }
    assert!(
        allowed.is_empty(),
        "the CI role lets whoever controls CI make an administrator:\n{}",
        allowed.join("\n")
    );
    // The refusals are the role's, not the evaluator's: the same role may create its roles.
    let legitimate = call(
        "iam:CreateRole",
        &own_role,
        &[("iam:PermissionsBoundary", BOUNDARY)],
    );
    assert_eq!(evaluator.decide(&role, &legitimate).await, "Allowed");
}
