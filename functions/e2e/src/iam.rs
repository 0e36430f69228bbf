//! IAM in the loop: each function's AWS calls judged against exactly the permissions the
//! template gives it, and refused as AWS would refuse them.
//!
//! - `scripts/iam_policies.py` translates `template.yaml` with SAM's own transform (so the
//!   roles and managed policies SAM adds count), resolves its references to the test's
//!   tables, queues, topics and secrets, and gives each function's role policies and
//!   permissions boundary.
//! - `scripts/iam/evaluate.mjs` evaluates a request as IAM does (`@cloud-copilot/iam-simulate`:
//!   identity policies, boundaries, every condition operator), one process for the test.
//! - The proxy in front of moto knows the caller by its access key id (each function
//!   process signs with its logical id), turns the request into IAM's terms (action,
//!   resource ARN, `dynamodb:LeadingKeys`), and answers a refused call with AWS's
//!   access-denied error instead of passing it on. Every refusal is recorded, so that a
//!   scenario fails naming the function, the action and the resource.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;

use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "123456789012";

/// One call in IAM's terms.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Call {
    pub action: String,
    pub resource: String,
    /// Condition keys with their values (`dynamodb:LeadingKeys`), sorted.
    pub context: BTreeMap<String, Vec<String>>,
}

/// A call the permissions did not allow.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Refusal {
    pub function: String,
    pub call: Call,
    pub decision: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} may not {} on {}",
            self.function, self.call.action, self.call.resource
        )?;
        if !self.call.context.is_empty() {
            write!(f, " with {:?}", self.call.context)?;
        }
        write!(f, " ({})", self.decision)
    }
}

/// The resources of one deployment in moto, by the template's logical ids.
#[derive(Default)]
pub struct Resources {
    /// Logical id → its attributes as CloudFormation gives them (`Ref`, `Arn`, …).
    pub by_logical_id: Map<String, Value>,
    /// Template parameters the deployment sets (e.g. `ExistingStripeSecretArn`).
    pub parameters: Map<String, Value>,
    /// Table name → (hash key of the table, hash key of each index by name).
    pub hash_keys: HashMap<String, (String, HashMap<String, String>)>,
}

impl Resources {
    pub fn table(&mut self, logical_id: &str, name: &str) {
        self.by_logical_id.insert(
            logical_id.to_owned(),
            json!({ "Ref": name, "Arn": table_arn(name) }),
        );
    }

    pub fn queue(&mut self, logical_id: &str, url: &str) {
        let name = url.rsplit('/').next().unwrap_or_default();
        self.by_logical_id.insert(
            logical_id.to_owned(),
            json!({ "Ref": url, "Arn": queue_arn(name), "QueueName": name }),
        );
    }

    pub fn topic(&mut self, logical_id: &str, arn: &str) {
        let name = arn.rsplit(':').next().unwrap_or_default();
        self.by_logical_id.insert(
            logical_id.to_owned(),
            json!({ "Ref": arn, "TopicArn": arn, "TopicName": name }),
        );
    }

    pub fn parameter(&mut self, name: &str, value: &str) {
        self.parameters.insert(name.to_owned(), json!(value));
    }

    /// Reads each table's key schema (the partition key is `dynamodb:LeadingKeys`).
    pub async fn read_key_schemas(&mut self, dynamodb: &aws_sdk_dynamodb::Client) {
        let tables: Vec<String> = self
            .by_logical_id
            .values()
            .filter_map(|v| v["Arn"].as_str())
            .filter_map(|arn| arn.split_once(":table/").map(|(_, name)| name.to_owned()))
            .collect();
        for table in tables {
            let described = dynamodb
                .describe_table()
                .table_name(&table)
                .send()
                .await
                .unwrap_or_else(|e| panic!("describe {table}: {e:?}"))
                .table
                .unwrap();
            let hash = |schema: &[aws_sdk_dynamodb::types::KeySchemaElement]| {
                schema
                    .iter()
                    .find(|k| k.key_type == aws_sdk_dynamodb::types::KeyType::Hash)
                    .map(|k| k.attribute_name.clone())
                    .unwrap_or_default()
            };
            let indexes = described
                .global_secondary_indexes()
                .iter()
                .map(|i| {
                    (
                        i.index_name().unwrap_or_default().to_owned(),
                        hash(i.key_schema()),
                    )
                })
                .collect();
            self.hash_keys
                .insert(table, (hash(described.key_schema()), indexes));
        }
    }
}

pub fn table_arn(name: &str) -> String {
    format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}")
}

pub fn queue_arn(name: &str) -> String {
    format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}")
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What `scripts/iam_policies.py` answers `request` (see its doc): each role's policies,
/// or the calls a deploy makes. Fails, saying what to install, without the deploy venv.
pub async fn resolve(request: &Value) -> Value {
    let root = workspace_root();
    let python = std::env::var("REVGUARD_DEPLOY_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join(".venv-deploy/bin/python"));
    let mut resolver = tokio::process::Command::new(&python)
        .arg(root.join("scripts/iam_policies.py"))
        .current_dir(&root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "starting {} (the deploy venv with aws-sam-cli, which scripts/test \
                 installs): {e}",
                python.display()
            )
        });
    let mut stdin = resolver.stdin.take().unwrap();
    stdin
        .write_all(request.to_string().as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let output = resolver.wait_with_output().await.unwrap();
    assert!(
        output.status.success(),
        "scripts/iam_policies.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// IAM's evaluation logic (`scripts/iam/evaluate.mjs`), one process, one request at a time.
pub struct PolicyEvaluator {
    process: tokio::sync::Mutex<Evaluator>,
}

impl PolicyEvaluator {
    /// Fails, saying what to install, when the evaluator is missing.
    pub fn start() -> Self {
        let dir = workspace_root().join("scripts/iam");
        assert!(
            dir.join("node_modules/@cloud-copilot/iam-simulate")
                .is_dir(),
            "the policy evaluator is not installed: run scripts/test, which runs `npm ci` in \
             scripts/iam (Node.js 20 and npm needed)"
        );
        let mut process = tokio::process::Command::new("node")
            .arg("evaluate.mjs")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting node for scripts/iam/evaluate.mjs: {e}"));
        let evaluator = Evaluator {
            stdin: process.stdin.take().unwrap(),
            stdout: BufReader::new(process.stdout.take().unwrap()).lines(),
            _process: process,
        };
        PolicyEvaluator {
            process: tokio::sync::Mutex::new(evaluator),
        }
    }

    /// IAM's decision on `call` by `role` (`{"role", "identityPolicies",
    /// "permissionBoundaryPolicies"}` as the resolver gives it): `Allowed`,
    /// `ImplicitlyDenied`, `ExplicitlyDenied`, or why it could not be evaluated.
    pub async fn decide(&self, role: &Value, call: &Call) -> String {
        let context: Map<String, Value> = call
            .context
            .iter()
            .map(|(k, v)| {
                let value = if v.len() == 1 && !k.starts_with("dynamodb:") {
                    json!(v[0])
                } else {
                    json!(v)
                };
                (k.clone(), value)
            })
            .collect();
        let request = json!({
            "principal": role["role"],
            "action": call.action,
            "resource": call.resource,
            "context": context,
            "identityPolicies": role["identityPolicies"],
            "permissionBoundaryPolicies": role.get("permissionBoundaryPolicies"),
        });
        let answer = {
            let mut evaluator = self.process.lock().await;
            let line = format!("{request}\n");
            evaluator.stdin.write_all(line.as_bytes()).await.unwrap();
            evaluator
                .stdout
                .next_line()
                .await
                .unwrap()
                .expect("the policy evaluator exited")
        };
        let answer: Value = serde_json::from_str(&answer).unwrap();
        match answer["decision"].as_str() {
            Some("Error") => format!("evaluator error: {}", answer["detail"]),
            Some(d) => d.to_owned(),
            None => format!("evaluator answered {answer}"),
        }
    }
}

struct Evaluator {
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    _process: tokio::process::Child,
}

/// The permissions of a deployment's functions, and the evaluator that applies them.
pub struct Iam {
    /// Access key id (the function's logical id) → its role's policies, as the resolver gave them.
    roles: HashMap<String, Value>,
    hash_keys: HashMap<String, (String, HashMap<String, String>)>,
    evaluator: PolicyEvaluator,
    decisions: Mutex<HashMap<(String, Call), String>>,
    refusals: Mutex<Vec<Refusal>>,
}

impl Iam {
    /// The permissions `template.yaml` gives `functions` (logical ids), over `resources`.
    /// Fails, saying what to install, when the resolver or the evaluator is missing.
    ///
    /// Every role carries the permissions boundary `infra/ci-deploy-role.yaml` ships, as
    /// a stack deployed through the CI role does. `REVGUARD_E2E_TEMPLATE` names another
    /// template to judge by (an older one, to see what it would refuse).
    pub async fn for_template(functions: &[&str], resources: Resources) -> Iam {
        let template = std::env::var("REVGUARD_E2E_TEMPLATE")
            .map(PathBuf::from)
            .unwrap_or_else(|_| workspace_root().join("template.yaml"));
        Self::for_template_file(&template, functions, resources).await
    }

    pub async fn for_template_file(
        template: &Path,
        functions: &[&str],
        mut resources: Resources,
    ) -> Iam {
        let root = workspace_root();
        let stack = revguard_aws::testing::TEST_STACK_NAME;
        let boundary = format!("arn:aws:iam::{ACCOUNT}:policy/boundaries/{stack}-StackBoundary");
        let template_text = std::fs::read_to_string(template).unwrap_or_default();
        let mut policies = Map::new();
        if template_text.contains("PermissionsBoundaryArn:") {
            resources.parameter("PermissionsBoundaryArn", &boundary);
            policies.insert(
                boundary,
                json!({
                    "template": root.join("infra/ci-deploy-role.yaml"),
                    "resource": "StackBoundary",
                    "stack_name": "revguard-ci",
                    "parameters": { "StackName": stack, "ArtifactsBucket": "revguard-artifacts" },
                }),
            );
        }
        let request = json!({
            "template": template,
            "stack_name": stack,
            "region": REGION,
            "account": ACCOUNT,
            "parameters": resources.parameters,
            "resources": resources.by_logical_id,
            "functions": functions,
            "policies": policies,
        });
        let roles: HashMap<String, Value> =
            serde_json::from_value(resolve(&request).await).unwrap();
        Iam {
            roles,
            hash_keys: resources.hash_keys,
            evaluator: PolicyEvaluator::start(),
            decisions: Mutex::default(),
            refusals: Mutex::default(),
        }
    }

    /// The policies of `function`'s role, as resolved (for assertions on the template).
    pub fn role(&self, function: &str) -> &Value {
        &self.roles[function]
    }

    /// IAM's decision on `call` by `function`: `Allowed`, `ImplicitlyDenied` or
    /// `ExplicitlyDenied`. Decisions are cached: the same call is judged once.
    pub async fn decide(&self, function: &str, call: &Call) -> String {
        let key = (function.to_owned(), call.clone());
        if let Some(decision) = self.decisions.lock().unwrap().get(&key) {
            return decision.clone();
        }
        let Some(role) = self.roles.get(function) else {
            return format!("no role: {function} is not a function the test declared");
        };
        let decision = self.evaluator.decide(role, call).await;
        self.decisions.lock().unwrap().insert(key, decision.clone());
        decision
    }

    /// Judges a request by `function`: `None` to pass it on, or the refusal.
    pub async fn judge(
        &self,
        function: &str,
        target: Option<&str>,
        body: &[u8],
    ) -> Option<Refusal> {
        let calls = match calls_of(target, body, &self.hash_keys) {
            Ok(calls) => calls,
            Err(unknown) => {
                let refusal = Refusal {
                    function: function.to_owned(),
                    call: Call {
                        action: unknown,
                        resource: String::new(),
                        context: BTreeMap::new(),
                    },
                    decision: "a call the test cannot put in IAM's terms".to_owned(),
                };
                self.refusals.lock().unwrap().push(refusal.clone());
                return Some(refusal);
            }
        };
        for call in calls {
            let decision = self.decide(function, &call).await;
            if decision != "Allowed" {
                let refusal = Refusal {
                    function: function.to_owned(),
                    call,
                    decision,
                };
                self.refusals.lock().unwrap().push(refusal.clone());
                return Some(refusal);
            }
        }
        None
    }

    /// Every refusal so far, each distinct one once.
    pub fn refusals(&self) -> Vec<Refusal> {
        let mut all = self.refusals.lock().unwrap().clone();
        all.sort();
        all.dedup();
        all
    }

    /// Distinct calls judged so far (each function, action, resource and context once).
    pub fn judged(&self) -> u64 {
        self.decisions.lock().unwrap().len() as u64
    }

    /// Fails naming every refused call.
    pub fn assert_nothing_refused(&self) {
        let refusals = self.refusals();
        assert!(
            refusals.is_empty(),
            "calls the template's permissions refuse:\n{}",
            refusals
                .iter()
                .map(|r| format!("  {r}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// The access key id a request was signed with (SigV4's `Credential=<id>/…`).
pub fn access_key_of(authorization: &str) -> Option<&str> {
    let credential = authorization.split("Credential=").nth(1)?;
    credential.split('/').next()
}

/// What AWS answers a refused call, in the request's protocol: (status, content type, body).
pub fn access_denied(refusal: &Refusal, target: Option<&str>) -> (u16, &'static str, String) {
    let message = format!(
        "User: arn:aws:sts::{ACCOUNT}:assumed-role/{}/e2e is not authorized to perform: {} on \
         resource: {} because no identity-based policy allows the {} action",
        refusal.function, refusal.call.action, refusal.call.resource, refusal.call.action
    );
    match target {
        Some(t) if t.starts_with("DynamoDB") => (
            400,
            "application/x-amz-json-1.0",
            json!({ "__type": "com.amazon.coral.service#AccessDeniedException", "message": message })
                .to_string(),
        ),
        Some(_) => (
            400,
            "application/x-amz-json-1.1",
            json!({ "__type": "AccessDeniedException", "message": message }).to_string(),
        ),
        // SNS speaks the query protocol.
        None => (
            403,
            "text/xml",
            format!(
                "<ErrorResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\"><Error>\
                 <Type>Sender</Type><Code>AuthorizationError</Code><Message>{message}</Message>\
                 </Error><RequestId>e2e</RequestId></ErrorResponse>"
            ),
        ),
    }
}

/// A request in IAM's terms: one call per action and resource it needs. DynamoDB and
/// SQS name their operation in `x-amz-target` (JSON); SNS in its form body.
pub fn calls_of(
    target: Option<&str>,
    body: &[u8],
    hash_keys: &HashMap<String, (String, HashMap<String, String>)>,
) -> Result<Vec<Call>, String> {
    let Some(target) = target else {
        return sns_calls(body);
    };
    let (prefix, operation) = target.split_once('.').unwrap_or(("", target));
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let call = |action: &str, resource: String| Call {
        action: action.to_owned(),
        resource,
        context: BTreeMap::new(),
    };
    if prefix.starts_with("DynamoDB") {
        return dynamodb_calls(operation, &json, hash_keys);
    }
    if prefix.starts_with("AmazonSQS") {
        let queue = json["QueueUrl"]
            .as_str()
            .and_then(|u| u.rsplit('/').next())
            .or_else(|| json["QueueName"].as_str())
            .ok_or_else(|| format!("sqs:{operation} without a queue"))?;
        let action = match operation {
            "SendMessageBatch" => "SendMessage",
            "DeleteMessageBatch" => "DeleteMessage",
            "ChangeMessageVisibilityBatch" => "ChangeMessageVisibility",
            other => other,
        };
        return Ok(vec![call(&format!("sqs:{action}"), queue_arn(queue))]);
    }
    if prefix == "secretsmanager" {
        let secret = json["SecretId"]
            .as_str()
            .ok_or_else(|| format!("secretsmanager:{operation} without a SecretId"))?;
        return Ok(vec![call(
            &format!("secretsmanager:{operation}"),
            secret.to_owned(),
        )]);
    }
    Err(format!("{target} (an unknown service)"))
}

fn sns_calls(body: &[u8]) -> Result<Vec<Call>, String> {
    let form: HashMap<String, String> = String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), percent_decode(v)))
        .collect();
    let action = form
        .get("Action")
        .ok_or("a request with neither x-amz-target nor Action")?;
    let action = if action == "PublishBatch" {
        "Publish"
    } else {
        action
    };
    let topic = form
        .get("TopicArn")
        .ok_or_else(|| format!("sns:{action} without a TopicArn"))?;
    Ok(vec![Call {
        action: format!("sns:{action}"),
        resource: topic.clone(),
        context: BTreeMap::new(),
    }])
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The string value of a DynamoDB attribute (`{"S": …}` or `{"N": …}`).
fn scalar(value: &Value) -> Option<String> {
    value["S"]
        .as_str()
        .or_else(|| value["N"].as_str())
        .map(str::to_owned)
}

fn dynamodb_calls(
    operation: &str,
    json: &Value,
    hash_keys: &HashMap<String, (String, HashMap<String, String>)>,
) -> Result<Vec<Call>, String> {
    let hash_of = |table: &str| hash_keys.get(table).map(|(h, _)| h.as_str());
    // The condition key of an item's request: its partition key's value.
    let leading = |table: &str, item: &Value| -> BTreeMap<String, Vec<String>> {
        hash_of(table)
            .and_then(|h| scalar(&item[h]))
            .map(|v| BTreeMap::from([("dynamodb:LeadingKeys".to_owned(), vec![v])]))
            .unwrap_or_default()
    };
    let item_call = |action: &str, table: &str, key: &Value| Call {
        action: format!("dynamodb:{action}"),
        resource: table_arn(table),
        context: leading(table, key),
    };
    let table = || {
        json["TableName"]
            .as_str()
            .ok_or_else(|| format!("dynamodb:{operation} without a TableName"))
    };
    match operation {
        "GetItem" | "UpdateItem" | "DeleteItem" => {
            Ok(vec![item_call(operation, table()?, &json["Key"])])
        }
        "PutItem" => Ok(vec![item_call(operation, table()?, &json["Item"])]),
        "Query" | "Scan" => {
            let table = table()?;
            let (resource, hash) = match json["IndexName"].as_str() {
                Some(index) => (
                    format!("{}/index/{index}", table_arn(table)),
                    hash_keys
                        .get(table)
                        .and_then(|(_, i)| i.get(index))
                        .cloned(),
                ),
                None => (table_arn(table), hash_of(table).map(str::to_owned)),
            };
            // A Scan names no partition; a Query names the one its key condition gives.
            let mut context = BTreeMap::new();
            if let (Some(_), Some(value)) = (hash, query_partition_value(json)) {
                context.insert("dynamodb:LeadingKeys".to_owned(), vec![value]);
            }
            Ok(vec![Call {
                action: format!("dynamodb:{operation}"),
                resource,
                context,
            }])
        }
        "BatchGetItem" | "BatchWriteItem" => {
            let requests = json["RequestItems"]
                .as_object()
                .ok_or_else(|| format!("dynamodb:{operation} without RequestItems"))?;
            Ok(requests
                .iter()
                .map(|(table, request)| {
                    let keys: Vec<String> = match operation {
                        "BatchGetItem" => request["Keys"].as_array().cloned().unwrap_or_default(),
                        _ => request
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                            .iter()
                            .map(|w| {
                                if w["PutRequest"].is_object() {
                                    w["PutRequest"]["Item"].clone()
                                } else {
                                    w["DeleteRequest"]["Key"].clone()
                                }
                            })
                            .collect(),
                    }
                    .iter()
                    .filter_map(|k| hash_of(table).and_then(|h| scalar(&k[h])))
                    .collect();
                    let mut keys = keys;
                    keys.sort();
                    keys.dedup();
                    Call {
                        action: format!("dynamodb:{operation}"),
                        resource: table_arn(table),
                        context: BTreeMap::from([("dynamodb:LeadingKeys".to_owned(), keys)]),
                    }
                })
                .collect())
        }
        // A transaction needs the permission of each action it holds, on each table.
        "TransactWriteItems" | "TransactGetItems" => {
            let items = json["TransactItems"]
                .as_array()
                .ok_or_else(|| format!("dynamodb:{operation} without TransactItems"))?;
            let mut calls = Vec::new();
            for item in items {
                let (kind, inner) = item
                    .as_object()
                    .and_then(|o| o.iter().next())
                    .ok_or("an empty transaction item")?;
                let action = match kind.as_str() {
                    "Put" => "PutItem",
                    "Update" => "UpdateItem",
                    "Delete" => "DeleteItem",
                    "ConditionCheck" => "ConditionCheckItem",
                    "Get" => "GetItem",
                    other => return Err(format!("dynamodb:{operation} item {other}")),
                };
                let table = inner["TableName"]
                    .as_str()
                    .ok_or("a transaction item without a TableName")?;
                let key = if kind == "Put" {
                    &inner["Item"]
                } else {
                    &inner["Key"]
                };
                calls.push(item_call(action, table, key));
            }
            calls.sort();
            calls.dedup();
            Ok(calls)
        }
        "DescribeTable" | "DescribeTimeToLive" => Ok(vec![Call {
            action: format!("dynamodb:{operation}"),
            resource: table_arn(table()?),
            context: BTreeMap::new(),
        }]),
        other => Err(format!("dynamodb:{other} (not mapped to IAM by the test)")),
    }
}

/// The value a Query's key condition gives its partition key (`#k = :v` or `k = :v`).
fn query_partition_value(json: &Value) -> Option<String> {
    let expression = json["KeyConditionExpression"].as_str()?;
    let first = expression.split(" AND ").next()?.split(" and ").next()?;
    let (_, value) = first.split_once('=')?;
    scalar(&json["ExpressionAttributeValues"][value.trim()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_needs_each_action_it_holds_with_each_items_leading_key() {
        let hash_keys = HashMap::from([("state".to_owned(), ("pk".to_owned(), HashMap::new()))]);
        let body = json!({ "TransactItems": [
            { "Put": { "TableName": "state", "Item": { "pk": { "S": "sub#1" } } } },
            { "Update": { "TableName": "state", "Key": { "pk": { "S": "cus#1" } } } },
            { "ConditionCheck": { "TableName": "state", "Key": { "pk": { "S": "evt#1" } } } },
        ]});
        let calls = calls_of(
            Some("DynamoDB_20120810.TransactWriteItems"),
            body.to_string().as_bytes(),
            &hash_keys,
        )
        .unwrap();
        let actions: Vec<_> = calls.iter().map(|c| c.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                "dynamodb:ConditionCheckItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem"
            ]
        );
        assert_eq!(calls[1].context["dynamodb:LeadingKeys"], ["sub#1"]);
    }

    #[test]
    fn a_query_on_an_index_is_a_call_on_the_index() {
        let hash_keys = HashMap::from([(
            "state".to_owned(),
            (
                "pk".to_owned(),
                HashMap::from([("by_stage".to_owned(), "stage".to_owned())]),
            ),
        )]);
        let body = json!({ "TableName": "state", "IndexName": "by_stage",
            "KeyConditionExpression": "#s = :s",
            "ExpressionAttributeValues": { ":s": { "S": "open" } } });
        let calls = calls_of(
            Some("DynamoDB_20120810.Query"),
            body.to_string().as_bytes(),
            &hash_keys,
        )
        .unwrap();
        assert_eq!(
            calls[0].resource,
            "arn:aws:dynamodb:us-east-1:123456789012:table/state/index/by_stage"
        );
    }

    #[test]
    fn sqs_batches_and_sns_publishes_are_named_as_iam_names_them() {
        let none = HashMap::new();
        let send = json!({ "QueueUrl": "http://127.0.0.1:5000/123456789012/q", "Entries": [] });
        let calls = calls_of(
            Some("AmazonSQS.SendMessageBatch"),
            send.to_string().as_bytes(),
            &none,
        )
        .unwrap();
        assert_eq!(calls[0].action, "sqs:SendMessage");
        assert_eq!(calls[0].resource, queue_arn("q"));
        let publish =
            b"Action=Publish&TopicArn=arn%3Aaws%3Asns%3Aus-east-1%3A123456789012%3At&Message=x";
        let calls = calls_of(None, publish, &none).unwrap();
        assert_eq!(calls[0].action, "sns:Publish");
        assert_eq!(calls[0].resource, "arn:aws:sns:us-east-1:123456789012:t");
    }

    #[test]
    fn an_unknown_call_is_not_let_through() {
        assert!(calls_of(Some("AWSKMS.Decrypt"), b"{}", &HashMap::new()).is_err());
        assert!(calls_of(
            Some("DynamoDB_20120810.DeleteTable"),
            b"{}",
            &HashMap::new()
        )
        .is_err());
    }
}
