#!/usr/bin/env python3
"""Asserts the invariants of template.yaml that a later edit must not silently drop.

Run by scripts/test (with the deployment venv, which has cfn-lint's template parser).
Each check names what it protects; the script exits non-zero listing every broken one.
"""
import json
import os
import re
import sys
from pathlib import Path

from cfnlint.decode import cfn_yaml

ROOT = Path(__file__).resolve().parent.parent
t = cfn_yaml.load(str(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "template.yaml"))
res = t["Resources"]
params = t["Parameters"]
glob = t.get("Globals", {}).get("Function", {})
failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)


def of_type(kind):
    return {k: v for k, v in res.items() if v["Type"] == kind}


def ref(v):
    return v.get("Ref") if isinstance(v, dict) else None


def getatt(v):
    return v.get("Fn::GetAtt", [None])[0] if isinstance(v, dict) else None


functions = of_type("AWS::Serverless::Function")


def function_statements(name):
    """A function's policy statements as written (a conditional one as its Fn::If): from its
    Policies, or from the policies of the role it names (Role: !GetAtt <role>.Arn)."""
    p = functions[name]["Properties"]
    role = getatt(p.get("Role"))
    if role:
        return [st for policy in res[role]["Properties"].get("Policies", []) for st in policy["PolicyDocument"]["Statement"]]
    return [st for policy in p.get("Policies", []) if isinstance(policy, dict) for st in policy.get("Statement", [])]


check(set(functions) == {"IngressFunction", "WorkerFunction", "AnomalyFunction", "ApiFunction", "BackfillFunction", "ReconcileFunction",
                         "PagerFunction", "EventBridgeFunction"},
      "eight functions: ingress, worker, anomaly, api, the recovery jobs backfill and reconcile, the pager, and the EventBridge door")
for name, f in functions.items():
    p = f["Properties"]
    check(f.get("Metadata", {}).get("BuildMethod") == "rust-cargolambda", f"{name} is built by SAM with rust-cargolambda")
    check(p.get("CodeUri") == ".", f"{name} builds from the workspace source, not pre-built output")
    check(glob.get("Runtime") == "provided.al2023" and glob.get("Architectures") == [{"Ref": "Architecture"}],
          f"{name} runs on provided.al2023 with the Architecture parameter")
    check(isinstance(p.get("Timeout"), int), f"{name} has a deliberate timeout")
    group = ref(p.get("LoggingConfig", {}).get("LogGroup"))
    check(group in res and "RetentionInDays" in res[group]["Properties"], f"{name} logs to a group with a retention")
    check(glob.get("LoggingConfig", {}).get("LogFormat") == "JSON", f"{name} logs JSON")
    env = p.get("Environment", {}).get("Variables", {})
    check("STRIPE_WEBHOOK_SECRET" not in env and "STRIPE_WEBHOOK_SECRET" not in glob.get("Environment", {}).get("Variables", {}),
          f"{name} has no plain-text signing secret in its configuration")
    check("STRIPE_API_KEY" not in env and "STRIPE_API_KEY" not in glob.get("Environment", {}).get("Variables", {}),
          f"{name} has no plain-text Stripe API key in its configuration")
    for st in function_statements(name):
        if "Fn::If" in st:
            st = st["Fn::If"][1]
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        check(all("*" not in a for a in actions), f"{name}: no wildcard action in {actions}")
        check(all(not (isinstance(r, str) and "*" in r) for r in resources), f"{name}: no wildcard resource in {resources}")

check(params["StripeWebhookSecret"].get("NoEcho") is True, "the signing secret parameter is NoEcho")
check(ref(functions["IngressFunction"]["Properties"]["Environment"]["Variables"].get("STRIPE_WEBHOOK_SECRET_ARN", {}).get("Fn::If", [None, {}])[1]) == "StripeSecret",
      "the ingress reads the secret from Secrets Manager by ARN")

ingress_statements = functions["IngressFunction"]["Properties"]["Policies"][0]["Statement"]
kms = [st["Fn::If"] for st in ingress_statements if "Fn::If" in st and st["Fn::If"][0] == "HasSecretKmsKey"]
check(len(kms) == 1 and kms[0][1]["Action"] == ["kms:Decrypt"] and ref(kms[0][1]["Resource"]) == "StripeSecretKmsKeyArn"
      and "kms:ViaService" in kms[0][1].get("Condition", {}).get("StringEquals", {}),
      "with StripeSecretKmsKeyArn the ingress may decrypt the secret's key, through Secrets Manager only")

q = res["EventsQueue"]["Properties"]
check(getatt(q["RedrivePolicy"]["deadLetterTargetArn"]) == "EventsDeadLetterQueue", "the events queue redrives to its dead-letter queue")
check(ref(q["RedrivePolicy"]["maxReceiveCount"]) == "MaxReceiveCount", "the receive count before the DLQ is a parameter")
check(int(params["MaxReceiveCount"]["Default"]) >= 20,
      "20 receives by default: with the worker's redelivery backoff, at least 2.4 h of outage before a dead letter")
worker = functions["WorkerFunction"]["Properties"]
check(ref(worker["Environment"]["Variables"].get("REVGUARD_QUEUE_URL")) == "EventsQueue",
      "the worker knows its queue, to delay failed messages (ChangeMessageVisibility)")
check(q["VisibilityTimeout"] >= 6 * worker["Timeout"], "visibility timeout is at least 6 × the worker timeout")
sqs_event = worker["Events"]["Queue"]["Properties"]
check("ReportBatchItemFailures" in sqs_event.get("FunctionResponseTypes", []), "the worker reports partial batch failures")
check(all(k in sqs_event for k in ("BatchSize", "MaximumBatchingWindowInSeconds", "ScalingConfig")), "the worker's batch size, window and concurrency are set")

ev = res["EventsTable"]["Properties"]
check(ev.get("TimeToLiveSpecification") == {"AttributeName": "expires_at", "Enabled": True}, "TTL on the event log")
for table in ("StateTable", "CountersTable", "AlertsTable"):
    check(res[table]["Properties"].get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled") is True,
          f"point-in-time recovery on {table}")
for table in of_type("AWS::DynamoDB::Table").values():
    check(table["Properties"].get("BillingMode") == "PAY_PER_REQUEST", "tables are on-demand")
# The dunning state, the counters and the event log outlive a stack deleted or a table
# replaced by mistake: CloudFormation keeps them, and DynamoDB refuses to delete them.
for name, table in of_type("AWS::DynamoDB::Table").items():
    check(table.get("DeletionPolicy") == "Retain" and table.get("UpdateReplacePolicy") == "Retain",
          f"{name} is retained when the stack is deleted or the table replaced")
    check(table["Properties"].get("DeletionProtectionEnabled") is True, f"{name} has deletion protection")

alerts_table = res["AlertsTable"]["Properties"]
check(alerts_table.get("TimeToLiveSpecification") == {"AttributeName": "expires_at", "Enabled": True},
      "TTL on the alerts table (resolved alerts expire)")
check([i["IndexName"] for i in alerts_table.get("GlobalSecondaryIndexes", [])] == ["active", "resolved"],
      "the alerts table has the sparse index `active` that a detector run queries, and `resolved` for the operator API")
state_indexes = [i["Fn::If"][1] if "Fn::If" in i else i for i in res["StateTable"]["Properties"].get("GlobalSecondaryIndexes", [])]
check([i["IndexName"] for i in state_indexes] == ["by_customer", "by_stage"]
      and all(i["Projection"]["ProjectionType"] == "KEYS_ONLY" for i in state_indexes)
      and params["StateTableIndexes"]["Default"] == "all",
      "the state table has the operator API's keys-only indexes (a customer's items, cases by stage), both by default")


def actions_on(function, resource_name):
    out = set()
    for st in function_statements(function):
        if "Fn::If" in st:
            st = st["Fn::If"][1]
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        hits = [r for r in resources if getatt(r) == resource_name
                or (isinstance(r, dict) and resource_name in str(r.get("Fn::Sub", "")))]
        if hits:
            out |= set(st["Action"] if isinstance(st["Action"], list) else [st["Action"]])
    return out


# Recovery through Stripe's API: on only with a key, which lives in Secrets Manager; each
# job touches only what it needs.
check(params["StripeApiKey"].get("NoEcho") is True and params["StripeApiKey"].get("Default") == "",
      "the Stripe API key parameter is NoEcho and empty by default (recovery off)")
check(res["StripeApiKeySecret"].get("Condition") == "CreateStripeApiKeySecret", "the API key's secret exists only when a key is given")
for name, job, schedule in (("BackfillFunction", "backfill", "BackfillSchedule"), ("ReconcileFunction", "reconcile", "ReconcileSchedule")):
    f = functions[name]
    p = f["Properties"]
    env = p["Environment"]["Variables"]
    check(f.get("Condition") == "HasStripeApiKey" and res[ref(p["LoggingConfig"]["LogGroup"])].get("Condition") == "HasStripeApiKey",
          f"{name} and its logs exist only with a Stripe API key")
    check(f["Metadata"]["BuildProperties"]["Binary"] == "recovery" and env.get("REVGUARD_JOB") == job, f"{name} runs the recovery binary's {job} job")
    check("STRIPE_API_KEY_SECRET_ARN" in env, f"{name} reads the key from Secrets Manager by ARN")
    ev = p["Events"]["Schedule"]
    check(ev["Type"] == "ScheduleV2" and ref(ev["Properties"]["ScheduleExpression"]) == schedule
          and "<aws.scheduler.scheduled-time>" in ev["Properties"].get("Input", ""), f"{name} runs on {schedule}")
    check(p["Timeout"] >= 300, f"{name} has time for a long listing")
backfill_state = [st for st in functions["BackfillFunction"]["Properties"]["Policies"][0]["Statement"] if getatt(st["Resource"]) == "StateTable"]
check(len(backfill_state) == 1 and backfill_state[0]["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"] == ["cursor#backfill", "acct_*#cursor#backfill"],
      "the backfill may read and write its cursors (the platform's and each connected account's) and nothing else of the state table")
reconcile_alerts = [st for st in functions["ReconcileFunction"]["Properties"]["Policies"][0]["Statement"] if getatt(st["Resource"]) == "AlertsTable"]
check(len(reconcile_alerts) == 1 and reconcile_alerts[0]["Action"] == ["dynamodb:PutItem"]
      and reconcile_alerts[0]["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"] == ["pending#*#reconcile_drift", "pending#*#acct_*:reconcile_drift"],
      "the reconciliation may only leave its drift findings (the platform's and each connected account's) in the alerts table")
reconcile_stage = [st for st in functions["ReconcileFunction"]["Properties"]["Policies"][0]["Statement"]
                   if "dynamodb:Query" in st["Action"]
                   and "${StateTable.Arn}/index/by_stage" in [r.get("Fn::Sub") for r in (st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]) if isinstance(r, dict)]]
check(len(reconcile_stage) == 1,
      "the reconciliation may Query the state table's by_stage index (it reads the open dunning cases there: aws/src/read_model.rs)")
scanners = sorted(n for n in functions if any("dynamodb:Scan" in actions_on(n, table) for table in of_type("AWS::DynamoDB::Table")))
check(scanners == ["ReconcileFunction"], f"only the daily reconciliation scans (the keys of the state table): {scanners}")
requery = functions["WorkerFunction"]["Properties"]
requery_statements = [st["Fn::If"] for st in function_statements("WorkerFunction") if "Fn::If" in st]
check(params["RequeryOnTransitions"]["Default"] == "false" and requery["Environment"]["Variables"].get("REVGUARD_REQUERY", {}).get("Fn::If", [None])[0] == "Requery"
      and len(requery_statements) == 3 and all(st[0] == "Requery" for st in requery_statements),
      "re-query is off by default, and the worker gets the key and the ingress's writes only with it on")
audit = functions["AnomalyFunction"]["Properties"]["Environment"]["Variables"]
check(audit.get("STRIPE_API_KEY_SECRET_ARN", {}).get("Fn::If", [None])[0] == "HasStripeApiKey" and ref(audit.get("REVGUARD_EVENTS_TABLE")) == "EventsTable",
      "with a key, the detector audits delivery against the event log")

detector_alerts = actions_on("AnomalyFunction", "AlertsTable")
check("dynamodb:Scan" not in detector_alerts and "dynamodb:Query" in detector_alerts,
      "the detector queries the alerts index and may not scan the table")
check({"dynamodb:UpdateItem", "dynamodb:BatchGetItem"} <= detector_alerts,
      "the detector may claim outbox entries (UpdateItem) and read closed alerts by key (BatchGetItem)")
check("dynamodb:UpdateItem" in actions_on("WorkerFunction", "StateTable"),
      "the worker may claim its notification outbox (UpdateItem)")

# The operator API holds billing data: every route but the webhook is IAM-authorized, and
# its function may only read.
check(res["WebhookApi"]["Properties"].get("Auth", {}).get("EnableIamAuthorizer") is True, "the HTTP API can authorize routes with IAM")
for fname, f in functions.items():
    for ename, e in f["Properties"].get("Events", {}).items():
        if e["Type"] != "HttpApi":
            continue
        p = e["Properties"]
        open_route = p.get("Method") == "POST" and p.get("Path") == "/webhook"
        authorizer = p.get("Auth", {}).get("Authorizer")
        check(open_route or authorizer == "AWS_IAM",
              f"{fname}.{ename} ({p.get('Method')} {p.get('Path')}) is the webhook or needs IAM")
api_actions = set()
for st in functions["ApiFunction"]["Properties"]["Policies"][0]["Statement"]:
    api_actions |= set(st["Action"])
check(api_actions <= {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"},
      f"the api function only reads: {sorted(api_actions)}")
check("dynamodb:Scan" not in api_actions, "the api function never scans")

sms = res["AlertSmsSubscription"]
check(sms.get("Condition") == "HasAlertSms" and sms["Properties"]["Protocol"] == "sms", "the SMS subscription exists only when a number is given")
check(sms["Properties"].get("FilterPolicy") == {"severity": ["critical"]} and sms["Properties"].get("FilterPolicyScope") == "MessageAttributes",
      "SMS is filtered to critical alerts")
check(res["AlertEmailSubscription"].get("Condition") == "HasAlertEmail", "the email subscription exists only when an address is given")

# Alerts in chat: on only when the ids are given, subscribed to the alerts topic, and
# capped by a guardrail (without one, Chatbot applies AdministratorAccess).
for name, kind, condition, ids in (
        ("SlackAlertsChannel", "AWS::Chatbot::SlackChannelConfiguration", "HasSlack", ("SlackWorkspaceId", "SlackChannelId")),
        ("TeamsAlertsChannel", "AWS::Chatbot::MicrosoftTeamsChannelConfiguration", "HasTeams", ("TeamsTenantId", "TeamsTeamId", "TeamsChannelId"))):
    channel = res.get(name, {})
    p = channel.get("Properties", {})
    check(channel.get("Type") == kind and channel.get("Condition") == condition, f"{name} exists only when its ids are given")
    check(all(params[i].get("Default") == "" for i in ids), f"{name}: its ids default to empty (off)")
    check(p.get("SnsTopicArns") in ([{"Ref": "AlertsTopic"}],
                                   {"Fn::If": ["DigestInChat", [{"Ref": "AlertsTopic"}, {"Ref": "DigestTopic"}], [{"Ref": "AlertsTopic"}]]}),
          f"{name} shows the alerts topic (and the digest's with DigestInChat)")
    check(p.get("GuardrailPolicies") == [{"Ref": "ChatGuardrailPolicy"}], f"{name} is capped by the stack's guardrail")
    check(getatt(p.get("IamRoleArn")) == "ChatChannelRole" and p.get("UserRoleRequired") is False, f"{name} uses the channel role")
guard = res["ChatGuardrailPolicy"]["Properties"]["PolicyDocument"]["Statement"]
check(all(st["Effect"] == "Allow" and all(a.startswith("cloudwatch:") and "*" not in a for a in st["Action"]) for st in guard),
      "the chat guardrail allows named CloudWatch reads and nothing else")
check(res["ChatChannelRole"]["Properties"].get("ManagedPolicyArns") == [{"Ref": "ChatGuardrailPolicy"}]
      and "Policies" not in res["ChatChannelRole"]["Properties"], "the chat channel role holds the guardrail's permissions only")
link = functions["AnomalyFunction"]["Properties"]["Environment"]["Variables"].get("REVGUARD_DASHBOARD_URL", {})
check("-health" in str(link) and "HealthDashboard" not in str(link)
      and res["HealthDashboard"]["Properties"].get("DashboardName") == {"Fn::Sub": "${AWS::StackName}-${AWS::Region}-health"}
      and "${AWS::StackName}-${AWS::Region}-health" in str(link),
      "alert messages link to the stack's dashboard by its name (a reference would be a cycle: the dashboard names the function)")

anomaly = functions["AnomalyFunction"]["Properties"]["Events"]["Schedule"]
check(anomaly["Type"] in ("Schedule", "ScheduleV2") and ref(anomaly["Properties"]["ScheduleExpression"]) == "AnomalySchedule",
      "the anomaly function runs on the AnomalySchedule parameter")
check(anomaly["Type"] == "ScheduleV2"
      and "<aws.scheduler.scheduled-time>" in anomaly["Properties"].get("Input", ""),
      "the schedule's input carries Scheduler's scheduled time, so a retried run judges the same moment")
# The function URL: an opt-in second door (API Gateway's route is the default, as the
# design card says), public only for the ingress, with both permissions a public URL needs
# (lambda:InvokeFunctionUrl, and since October 2025 lambda:InvokeFunction restricted to
# calls through the URL).
urls = of_type("AWS::Lambda::Url")
check(list(urls) == ["IngressFunctionUrl"] and getatt(urls["IngressFunctionUrl"]["Properties"]["TargetFunctionArn"]) == "IngressFunction"
      and urls["IngressFunctionUrl"]["Properties"]["AuthType"] == "NONE",
      "only the ingress has a function URL (public: Stripe signs its deliveries)")
permissions = {k: v for k, v in of_type("AWS::Lambda::Permission").items() if ref(v["Properties"].get("FunctionName")) == "IngressFunction"}
check({(p["Properties"]["Action"], p["Properties"].get("FunctionUrlAuthType"), p["Properties"].get("InvokedViaFunctionUrl")) for p in permissions.values()}
      >= {("lambda:InvokeFunctionUrl", "NONE", None), ("lambda:InvokeFunction", None, True)},
      "the function URL has both public permissions, the second only through the URL")
check(params["WebhookFunctionUrl"]["Default"] == "false"
      and all(r.get("Condition") == "HasWebhookFunctionUrl" for r in [*urls.values(), *permissions.values()]),
      "the function URL is off by default and comes with WebhookFunctionUrl=true")


def evaluate(node, values):
    """A value as CloudFormation resolves it for these parameter values (Fn::If and the
    condition functions; Ref of a parameter; None for AWS::NoValue)."""
    if isinstance(node, list):
        return [evaluate(v, values) for v in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        (fn, arg), = node.items()
        if fn == "Ref":
            return None if arg == "AWS::NoValue" else str(values[arg]) if arg in values else node
        if fn == "Condition":
            return evaluate(t["Conditions"][arg], values)
        if fn == "Fn::Equals":
            a, b = evaluate(arg, values)
            return str(a) == str(b)
        if fn == "Fn::Not":
            return not evaluate(arg[0], values)
        if fn == "Fn::And":
            return all(evaluate(arg, values))
        if fn == "Fn::Or":
            return any(evaluate(arg, values))
        if fn == "Fn::If":
            return evaluate(arg[1] if evaluate(t["Conditions"][arg[0]], values) else arg[2], values)
    return {k: evaluate(v, values) for k, v in node.items()}


defaults = {k: v.get("Default") for k, v in params.items()}
url_out = t["Outputs"]["WebhookUrl"]["Value"]
check("WebhookApi" in str(evaluate(url_out, defaults)) and "IngressFunctionUrl" not in str(evaluate(url_out, defaults))
      and "IngressFunctionUrl" in str(evaluate(url_out, {**defaults, "WebhookFunctionUrl": "true"}))
      and "WebhookApi" in str(t["Outputs"]["WebhookApiGatewayUrl"]["Value"]),
      "WebhookUrl is API Gateway's route by default and the function URL when it is opted in")
# A public function URL has no throttle of its own: opted in, the ingress gets a
# reservation unless one is set explicitly (0: none), so that a flood cannot take the
# account's concurrency from the worker. Without the URL, API Gateway's throttle is the
# guard and no reservation is needed (new accounts cannot reserve any).
reserved = functions["IngressFunction"]["Properties"].get("ReservedConcurrentExecutions")
with_url = evaluate(reserved, {**defaults, "WebhookFunctionUrl": "true"})
check(isinstance(with_url, (int, str)) and int(with_url) > 0,
      f"with the function URL the ingress has a reserved concurrency by default: {with_url}")
check(evaluate(reserved, defaults) is None, "through API Gateway (the default) the ingress reserves no concurrency")
check(evaluate(reserved, {**defaults, "WebhookFunctionUrl": "true", "IngressReservedConcurrency": "0"}) is None
      and str(evaluate(reserved, {**defaults, "IngressReservedConcurrency": "7"})) == "7",
      "IngressReservedConcurrency 0 reserves none; a number reserves that many")
api = res["WebhookApi"]["Properties"]
check(all(k in api["DefaultRouteSettings"] for k in ("ThrottlingRateLimit", "ThrottlingBurstLimit")), "the API is throttled")
check("AccessLogSettings" in api, "the API writes access logs")

check(int(params["WorkerBatchSize"].get("MaxValue", 10)) <= 10
      or int(params["WorkerBatchingWindowSeconds"].get("MinValue", 0)) >= 1,
      "no deployable batch size needs a batching window the parameters allow to be 0")
alarms = {getattr_name: a for getattr_name, a in of_type("AWS::CloudWatch::Alarm").items()}
for name in ("DeadLetterQueueNotEmpty", "SubscriptionDeadLettersWaiting", "IngressServerErrors", "WorkerErrors", "OldestEventAge", "AnomalyErrors", "AnomalyNotRunning", "RecoveryErrors", "ReconcileErrors",
             "IngressFunctionUrlFlood", "SmsSpendNearLimit"):
    check(name in alarms and {"Ref": "AlertsTopic"} in alarms[name]["Properties"].get("AlarmActions", []), f"alarm {name} goes to the alerts topic")



def alarm_metrics(alarm):
    """(namespace, metric, {dimension: value}) of every metric an alarm reads, plain or in metric math."""
    p = alarm["Properties"]
    if "MetricName" in p:
        return [(p["Namespace"], p["MetricName"], {d["Name"]: d["Value"] for d in p.get("Dimensions", [])})]
    out = []
    for m in p.get("Metrics", []):
        if "MetricStat" in m:
            metric = m["MetricStat"]["Metric"]
            out.append((metric["Namespace"], metric["MetricName"], {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}))
    return out


def alarms_on(namespace, metric, dimension=None, value=None):
    return sorted(name for name, a in alarms.items() for ns, m, dims in alarm_metrics(a)
                  if ns == namespace and m == metric and (dimension is None or dims.get(dimension) == value))


# The function URL, when opted in, is watched for a flood: its 4xx and the ingress's throttles.
for metric in ("Url4xxCount", "Throttles"):
    watching = [a for a in alarms_on("AWS/Lambda", metric, "FunctionName", {"Ref": "IngressFunction"})
                if alarms[a].get("Condition") == "HasWebhookFunctionUrl"
                and {"Ref": "AlertsTopic"} in alarms[a]["Properties"].get("AlarmActions", [])]
    check(bool(watching), f"with the function URL, an alarm on the ingress's {metric} goes to the alerts topic: {watching}")

# SMS stops silently once the account's monthly SMS spend limit ($1 by default) is reached:
# with an SMS number, an alarm on the month's spend (it goes to email: alarms carry no
# severity, so the SMS filter passes none of them).
sms_spend = [a for a in alarms_on("AWS/SNS", "SMSMonthToDateSpentUSD")
             if alarms[a].get("Condition") == "HasAlertSms" and not alarm_metrics(alarms[a])[0][2]
             and {"Ref": "AlertsTopic"} in alarms[a]["Properties"].get("AlarmActions", [])]
check(bool(sms_spend), f"with an SMS number, an alarm on the account's SMS spend this month goes to the alerts topic: {sms_spend}")

# With a Stripe API key both recovery jobs are watched: a failing reconciliation leaves
# drift unreported, and nothing else would say so.
for job in ("BackfillFunction", "ReconcileFunction"):
    watching = [a for a in alarms_on("AWS/Lambda", "Errors", "FunctionName", {"Ref": job})
                if alarms[a].get("Condition") == "HasStripeApiKey"
                and {"Ref": "AlertsTopic"} in alarms[a]["Properties"].get("AlarmActions", [])]
    check(bool(watching), f"an alarm on {job}'s errors goes to the alerts topic (with a Stripe API key): {watching}")

body, names = res["HealthDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
known = set(res) | set(names) | {"AWS::Region", "AWS::StackName"}
referenced = set(re.findall(r"\$\{([^}]+)\}", body))
check(referenced <= known, f"the dashboard names only the stack's resources: {sorted(referenced - known)}")
# The EventBridge door's widgets join when it is on: checked as JSON with them.
door_widgets = names.get("EventBridgeWidgets", {}).get("Fn::If", [None, {"Fn::Sub": ["", {}]}, ""])[1]["Fn::Sub"][0]
body = body.replace("${EventBridgeWidgets}", door_widgets)
try:
    widgets = json.loads(re.sub(r"\$\{[^}]+\}", "x", body))["widgets"]
except ValueError as e:
    widgets = []
    check(False, f"the dashboard body is JSON: {e}")
text = json.dumps(widgets)
for what, needle in (("webhooks accepted and rejected", '"4xx"'), ("queue depth", "ApproximateNumberOfMessagesVisible"),
                     ("oldest age", "ApproximateAgeOfOldestMessage"), ("dead letters", "\"dead letters\""),
                     ("commit retries", "CommitRetries"), ("DynamoDB conflicts", "TransactionConflict"),
                     ("throttles", "ThrottledRequests"), ("write units", "ConsumedWriteCapacityUnits"),
                     ("Lambda errors", '"Errors"'), ("durations", '"Duration"'), ("cold starts", "initDurationMs")):
    check(needle in text, f"the dashboard shows {what}")
retries = res["CommitRetriesMetric"]["Properties"]
check(ref(retries["LogGroupName"]) == "WorkerLogs" and "commit retried" in retries["FilterPattern"],
      "commit retries are counted from the worker's log line (core/src/usecases/apply_batch.rs: \"commit retried\")")

for kind, prop in (("AWS::DynamoDB::Table", "TableName"), ("AWS::SQS::Queue", "QueueName"), ("AWS::SNS::Topic", "TopicName")):
    check(all(prop not in r["Properties"] for r in of_type(kind).values()), f"no hard-coded {prop}")
check(all("FunctionName" not in f["Properties"] for f in functions.values()), "no hard-coded FunctionName")

outputs = t["Outputs"]
for name in ("WebhookUrl", "ApiUrl", "AlertsTopicArn", "NotificationsTopicArn", "DeadLetterQueueUrl", "EventsTableName", "StateTableName", "CountersTableName", "AlertsTableName"):
    check(name in outputs, f"output {name}")

# infra/ci-deploy-role.yaml: CloudFormation's execution role must cover every resource
# type template.yaml declares, or a CI deploy fails halfway.
ci = cfn_yaml.load(str(ROOT / "infra" / "ci-deploy-role.yaml"))
ci_statements = ci["Resources"]["ExecutionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
ci_actions = set()
for st in ci_statements:
    if st["Effect"] == "Allow":
        ci_actions |= set(st["Action"] if isinstance(st["Action"], list) else [st["Action"]])
needs = {
    "AWS::Serverless::Function": ["lambda:CreateFunction", "iam:CreateRole", "iam:PassRole"],
    "AWS::Serverless::HttpApi": ["apigateway:POST"],
    "AWS::DynamoDB::Table": ["dynamodb:CreateTable", "dynamodb:UpdateTimeToLive"],
    "AWS::SQS::Queue": ["sqs:CreateQueue"],
    "AWS::SQS::QueuePolicy": ["sqs:SetQueueAttributes"],
    "AWS::SNS::Topic": ["sns:CreateTopic"],
    "AWS::SNS::Subscription": ["sns:Subscribe"],
    "AWS::SecretsManager::Secret": ["secretsmanager:CreateSecret"],
    "AWS::Lambda::Url": ["lambda:CreateFunctionUrlConfig", "lambda:DeleteFunctionUrlConfig", "lambda:GetFunctionUrlConfig"],
    "AWS::Lambda::Permission": ["lambda:AddPermission", "lambda:RemovePermission"],
    "AWS::Logs::LogGroup": ["logs:CreateLogGroup"],
    "AWS::Logs::MetricFilter": ["logs:PutMetricFilter"],
    "AWS::CloudWatch::Alarm": ["cloudwatch:PutMetricAlarm"],
    "AWS::CloudWatch::Dashboard": ["cloudwatch:PutDashboard"],
    "AWS::IAM::Role": ["iam:CreateRole", "iam:AttachRolePolicy", "iam:PassRole", "iam:PutRolePermissionsBoundary"],
    # Created and replaced, never versioned: CI may not create policy versions.
    "AWS::IAM::ManagedPolicy": ["iam:CreatePolicy", "iam:DeletePolicy"],
    "AWS::Chatbot::SlackChannelConfiguration": ["chatbot:CreateSlackChannelConfiguration"],
    "AWS::Chatbot::MicrosoftTeamsChannelConfiguration": ["chatbot:CreateMicrosoftTeamsChannelConfiguration"],
    "AWS::Events::EventBus": ["events:CreateEventBus", "events:DeleteEventBus"],
    "AWS::Events::Rule": ["events:PutRule", "events:PutTargets", "events:DeleteRule", "events:RemoveTargets"],
    "AWS::Lambda::EventInvokeConfig": ["lambda:PutFunctionEventInvokeConfig", "lambda:DeleteFunctionEventInvokeConfig"],
}
for kind in sorted({r["Type"] for r in res.values()}):
    check(kind in needs and set(needs[kind]) <= ci_actions,
          f"infra/ci-deploy-role.yaml lets CloudFormation create {kind}")
check("scheduler:CreateSchedule" in ci_actions and "lambda:CreateEventSourceMapping" in ci_actions,
      "infra/ci-deploy-role.yaml covers the schedule and the queue trigger the functions' events make")

# ---- The template as CloudFormation receives it: SAM's own transform, offline ----------
# (what `sam deploy` sends is translated by the same aws-sam-translator), so that the
# roles, schedules and names SAM generates are checked too.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # the transform wants a region for ARNs
from samtranslator.translator.transform import transform as sam_transform


class NoManagedPolicyNames:
    """The transform asks IAM for AWS's managed policy ARNs only to resolve policy names
    given in a function's Policies; this template gives statements, never names."""

    def load(self):
        return {}


def translate(region):
    sam = json.loads(json.dumps(t))
    for r in sam["Resources"].values():
        if r["Type"] == "AWS::Serverless::Function":
            r["Properties"]["CodeUri"] = "s3://bucket/key"  # as `sam validate` does: no local paths
    return sam_transform(sam, {"AWS::Region": region}, NoManagedPolicyNames())


try:
    cfn = translate("us-east-1")
except Exception as e:  # noqa: BLE001 - any refusal of the transform is a broken template
    cfn = {"Resources": {}}
    check(False, f"SAM's transform accepts the template: {e}")
cfn_res = cfn["Resources"]

PSEUDO = {"AWS::AccountId": "123456789012", "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com"}


def resolve(v, stack, region):
    """A physical name as CloudFormation would make it in this stack and region; None if
    it depends on anything else (a parameter, another resource)."""
    pseudo = {**PSEUDO, "AWS::StackName": stack, "AWS::Region": region}
    if isinstance(v, str):
        return v
    if isinstance(v, dict) and len(v) == 1:
        (fn, arg), = v.items()
        if fn == "Ref":
            return pseudo.get(arg)
        if fn == "Fn::Sub":
            text, names = (arg[0], arg[1]) if isinstance(arg, list) else (arg, {})
            parts = {}
            for name in re.findall(r"\$\{([^}!]+)\}", text):
                parts[name] = resolve(names[name], stack, region) if name in names else pseudo.get(name)
                if parts[name] is None:
                    return None
            return re.sub(r"\$\{([^}!]+)\}", lambda m: parts[m.group(1)], text)
        if fn == "Fn::Join":
            pieces = [resolve(x, stack, region) for x in arg[1]]
            return None if None in pieces else arg[0].join(pieces)
    return None


# Where each resource type takes its physical name, and where that name must be unique:
# in a region of the account, or in the whole account. A type the stack gains must be
# classified here before the check passes.
PHYSICAL_NAMES = {
    "AWS::SecretsManager::Secret": ("Name", "region"),
    "AWS::DynamoDB::Table": ("TableName", "region"),
    "AWS::SQS::Queue": ("QueueName", "region"),
    "AWS::SNS::Topic": ("TopicName", "region"),
    "AWS::Lambda::Function": ("FunctionName", "region"),
    "AWS::Logs::LogGroup": ("LogGroupName", "region"),
    "AWS::CloudWatch::Alarm": ("AlarmName", "region"),
    "AWS::Scheduler::Schedule": ("Name", "region"),
    "AWS::IAM::Role": ("RoleName", "account"),
    "AWS::IAM::ManagedPolicy": ("ManagedPolicyName", "account"),
    "AWS::CloudWatch::Dashboard": ("DashboardName", "account"),
    "AWS::Chatbot::SlackChannelConfiguration": ("ConfigurationName", "account"),
    "AWS::Chatbot::MicrosoftTeamsChannelConfiguration": ("ConfigurationName", "account"),
    # Unique on its bus; the bus is the stack's own partner bus, so the region stands in.
    "AWS::Events::Rule": ("Name", "region"),
}
# Types whose names are not unique or are scoped inside another resource of the stack.
NAMELESS = {"AWS::SQS::QueuePolicy", "AWS::SNS::Subscription", "AWS::Lambda::Url", "AWS::Lambda::Permission",
            "AWS::Lambda::EventSourceMapping", "AWS::Logs::MetricFilter", "AWS::ApiGatewayV2::Api",
            "AWS::ApiGatewayV2::Stage", "AWS::Lambda::EventInvokeConfig",
            # Named by Stripe: the partner event source's own name, one per event destination.
            "AWS::Events::EventBus"}
unclassified = sorted({r["Type"] for r in cfn_res.values()} - set(PHYSICAL_NAMES) - NAMELESS)
check(not unclassified, f"every resource type of the translated template is classified by where its name is unique: {unclassified}")


def physical_names(stack, region):
    """{(scope, type): {name: logical id}} of the names the template sets; unresolvable names as None."""
    out = {}
    for logical, r in cfn_res.items():
        prop, scope = PHYSICAL_NAMES.get(r["Type"], (None, None))
        if prop and prop in r.get("Properties", {}):
            key = (scope if scope == "account" else region, r["Type"])
            out.setdefault(key, []).append((resolve(r["Properties"][prop], stack, region), logical))
    return out


named = physical_names("revguard", "us-east-1")
for (scope, kind), names in sorted(named.items()):
    for name, logical in names:
        check(name is not None, f"{logical}'s name is made of the stack name and region only")
        if name is None:
            continue
        check("revguard" in name, f"{logical}'s name includes the stack's: {name}")
        if scope == "account":
            check("us-east-1" in name, f"{logical}'s name is unique in the account, so it includes the region: {name}")
    check(len({n for n, _ in names}) == len(names), f"no two {kind} of one stack share a name: {names}")
for name, logical in named.get(("us-east-1", "AWS::SecretsManager::Secret"), []):
    check(name is not None and not re.search(r"-[^-]{6}$", name),
          f"{logical}'s name does not end in a hyphen and six characters, like Secrets Manager's own suffix: {name}")
# Test beside live in one region, and one stack name in two regions.
for other in (("revguard-test", "us-east-1"), ("revguard", "eu-west-1")):
    theirs = physical_names(*other)
    for key, names in named.items():
        clash = {n for n, _ in names} & {n for n, _ in theirs.get(key, [])} - {None}
        check(not clash, f"{key[1]} names of stacks revguard (us-east-1) and {other[0]} ({other[1]}) do not collide: {sorted(clash)}")

# The roles the functions run under, as deployed.
def function_role(function):
    role = getatt(cfn_res.get(function, {}).get("Properties", {}).get("Role"))
    return role, cfn_res.get(role, {}).get("Properties", {})


def role_statements(role_props):
    out = []
    for policy in role_props.get("Policies", []):
        for st in policy["PolicyDocument"]["Statement"]:
            out.append(st["Fn::If"][1] if isinstance(st, dict) and "Fn::If" in st else st)
    return out


# SAM gives a function with an SQS event and a generated role AWSLambdaSQSQueueExecutionRole:
# ReceiveMessage and DeleteMessage on every queue of the account. The worker needs them on
# its own queue only.
worker_role, worker_role_props = function_role("WorkerFunction")
check(worker_role is not None and not any("AWSLambdaSQSQueueExecutionRole" in json.dumps(a) for a in worker_role_props.get("ManagedPolicyArns", [])),
      f"the worker's role ({worker_role}) has no AWSLambdaSQSQueueExecutionRole (sqs:ReceiveMessage and DeleteMessage on *)")
worker_sqs_anywhere = [st for st in role_statements(worker_role_props)
                       if any(str(a).startswith("sqs:") for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]]))
                       and any(r == "*" for r in (st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]))]
check(worker_role is not None and not worker_sqs_anywhere, f"no statement of the worker's role allows sqs:* actions on every queue: {worker_sqs_anywhere}")
worker_queue = [st for st in role_statements(worker_role_props) if getatt(st["Resource"]) == "EventsQueue"
                and {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"} <= set(st["Action"])]
check(len(worker_queue) == 1, "the worker may receive and delete messages of its events queue (what its event source needs)")

# CloudFormation's execution role for CI (infra/ci-deploy-role.yaml) may manage only what
# is named after the stack: each named resource's ARN, for stack revguard, must match the
# resources of the statement that allows its creation. A secret without a Name is named
# `<LogicalId>-<random>` by CloudFormation, without the stack's name.
import fnmatch

ci_pseudo = {**PSEUDO, "AWS::Region": "us-east-1", "StackName": "revguard", "ArtifactsBucket": "bucket"}


def ci_resources(statement):
    rs = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
    out = []
    for r in rs:
        text = r.get("Fn::Sub") if isinstance(r, dict) else r
        if isinstance(text, str):
            out.append(re.sub(r"\$\{([^}!]+)\}", lambda m: ci_pseudo.get(m.group(1), "?unresolved?"), text))
    return out


def ci_allows(action, arn):
    return any(st["Effect"] == "Allow" and action in st["Action"] and "Condition" not in st
               and any(fnmatch.fnmatchcase(arn, pattern) for pattern in ci_resources(st))
               for st in ci_statements)


CREATE = {
    "AWS::SecretsManager::Secret": ("secretsmanager:CreateSecret", "arn:aws:secretsmanager:us-east-1:123456789012:secret:{}-AbCdEf"),
    "AWS::Scheduler::Schedule": ("scheduler:CreateSchedule", "arn:aws:scheduler:us-east-1:123456789012:schedule/default/{}"),
    "AWS::CloudWatch::Dashboard": ("cloudwatch:PutDashboard", "arn:aws:cloudwatch::123456789012:dashboard/{}"),
    "AWS::Chatbot::SlackChannelConfiguration": ("chatbot:CreateSlackChannelConfiguration",
                                                "arn:aws:chatbot::123456789012:chat-configuration/slack-channel/{}"),
    "AWS::Chatbot::MicrosoftTeamsChannelConfiguration": ("chatbot:CreateMicrosoftTeamsChannelConfiguration",
                                                         "arn:aws:chatbot::123456789012:chat-configuration/microsoft-teams-channel/{}"),
}
for logical, r in sorted(cfn_res.items()):
    if r["Type"] not in CREATE:
        continue
    prop = PHYSICAL_NAMES[r["Type"]][0]
    name = resolve(r["Properties"][prop], "revguard", "us-east-1") if prop in r["Properties"] else logical
    action, arn = CREATE[r["Type"]]
    check(name is not None and ci_allows(action, arn.format(name)),
          f"infra/ci-deploy-role.yaml lets CloudFormation create {logical} ({arn.format(name)})")

# ---- A permissions boundary on every role of the stack --------------------------------
# infra/ci-deploy-role.yaml ships StackBoundary, the most any role of the stack may do;
# template.yaml sets it (PermissionsBoundaryArn) on every role it creates, SAM's included,
# and CloudFormation's execution role may create or change a role only with it.
BOUNDARY_IF = {"Fn::If": ["HasPermissionsBoundary", {"Ref": "PermissionsBoundaryArn"}, {"Ref": "AWS::NoValue"}]}
check(params.get("PermissionsBoundaryArn", {}).get("Default") == "", "PermissionsBoundaryArn is a parameter, empty (no boundary) by default")
roles = {k: v for k, v in cfn_res.items() if v["Type"] == "AWS::IAM::Role"}
for name, role in sorted(roles.items()):
    check(role["Properties"].get("PermissionsBoundary") == BOUNDARY_IF, f"{name} carries PermissionsBoundaryArn when one is given")

boundary = ci["Resources"].get("StackBoundary", {})
check(boundary.get("Type") == "AWS::IAM::ManagedPolicy", "infra/ci-deploy-role.yaml ships the permissions boundary StackBoundary")
boundary_statements = boundary.get("Properties", {}).get("PolicyDocument", {}).get("Statement", [])
boundary_actions = set()
for st in boundary_statements:
    acts = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
    if st["Effect"] == "Allow":
        boundary_actions |= set(acts)
check(boundary_actions and all(not a.startswith("iam:") and not a.startswith("sts:") and "*" not in a for a in boundary_actions),
      f"the boundary names its actions, and none of IAM or STS: {sorted(a for a in boundary_actions if a.startswith(('iam:', 'sts:')) or '*' in a)}")
# What AWS's managed policies the stack attaches allow (their documents are not in the template).
AWS_MANAGED = {"service-role/AWSLambdaBasicExecutionRole": {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}}
granted = {}
for name, role in roles.items():
    for st in role_statements(role["Properties"]):
        if st.get("Effect") == "Allow":
            for a in st["Action"] if isinstance(st["Action"], list) else [st["Action"]]:
                granted.setdefault(a, set()).add(name)
    for arn in role["Properties"].get("ManagedPolicyArns", []):
        text = resolve(arn, "revguard", "us-east-1")
        managed = text.split(":policy/", 1)[1] if text and ":iam::aws:policy/" in text else None
        for a in AWS_MANAGED.get(managed, set()):
            granted.setdefault(a, set()).add(name)
for name in ("ChatGuardrailPolicy",):
    for st in cfn_res.get(name, {}).get("Properties", {}).get("PolicyDocument", {}).get("Statement", []):
        for a in st["Action"]:
            granted.setdefault(a, set()).add("ChatChannelRole")
missing = {a: sorted(r) for a, r in granted.items() if a not in boundary_actions}
check(not missing, f"the boundary allows every action the stack's roles are given (or they would fail at run time): {missing}")

attached = set()
for role in roles.values():
    for arn in role["Properties"].get("ManagedPolicyArns", []):
        text = resolve(arn, "revguard", "us-east-1")
        attached.add(text.split(":policy/", 1)[1] if text and ":iam::aws:policy/" in text else json.dumps(arn))
aws_attached = {a for a in attached if not a.startswith("{")}
check(aws_attached <= set(AWS_MANAGED), f"the stack attaches only AWS managed policies whose actions this check knows: {sorted(aws_attached)}")

# CloudFormation's execution role for CI cannot make an administrator.
ROLE_WRITES = {"iam:CreateRole", "iam:PutRolePolicy", "iam:AttachRolePolicy", "iam:DetachRolePolicy", "iam:DeleteRolePolicy",
               "iam:PutRolePermissionsBoundary"}
boundary_ref = {"Ref": "StackBoundary"}


def condition(st, operator, key):
    return st.get("Condition", {}).get(operator, {}).get(key)


ci_allow = [st for st in ci_statements if st["Effect"] == "Allow"]
ci_allow_actions = lambda st: st["Action"] if isinstance(st["Action"], list) else [st["Action"]]  # noqa: E731
check(not any("*" in a for st in ci_allow for a in ci_allow_actions(st) if a.startswith("iam:")), "the execution role names its IAM actions")
for st in ci_allow:
    writes = ROLE_WRITES & set(ci_allow_actions(st))
    if writes:
        check(condition(st, "StringEquals", "iam:PermissionsBoundary") == boundary_ref,
              f"the execution role may {sorted(writes)} only on a role that carries StackBoundary ({st.get('Sid')})")
check(ROLE_WRITES <= {a for st in ci_allow for a in ci_allow_actions(st)}, "the execution role may create and change the stack's roles (with the boundary)")
for st in ci_allow:
    if "iam:AttachRolePolicy" in ci_allow_actions(st):
        allowed = condition(st, "ArnLike", "iam:PolicyARN") or condition(st, "ArnEquals", "iam:PolicyARN") or []
        texts = [re.sub(r"\$\{([^}!]+)\}", lambda m: ci_pseudo.get(m.group(1), "?"), a.get("Fn::Sub", "") if isinstance(a, dict) else a)
                 for a in allowed]
        aws = {x.split(":iam::aws:policy/", 1)[1] for x in texts if ":iam::aws:policy/" in x}
        own = [x for x in texts if ":iam::aws:policy/" not in x]
        check(bool(allowed) and aws == aws_attached and own == ["arn:aws:iam::123456789012:policy/revguard-*"],
              f"AttachRolePolicy is limited to the AWS managed policies the stack attaches and the stack's own: {texts}")
never = {"iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion", "iam:DeleteRolePermissionsBoundary", "iam:UpdateAssumeRolePolicy"}
check(not never & {a for st in ci_allow for a in ci_allow_actions(st)},
      f"the execution role may not rewrite a policy, drop a boundary or change who assumes a role: {sorted(never & {a for st in ci_allow for a in ci_allow_actions(st)})}")
check(not any(re.search(r"iam:.*(User|Group)", a) for st in ci_allow for a in ci_allow_actions(st)), "the execution role touches no IAM user or group")
trusted = set()
for role in roles.values():
    for st in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]:
        svc = st["Principal"]["Service"]
        trusted |= set(svc if isinstance(svc, list) else [svc])
for st in ci_allow:
    if "iam:PassRole" in ci_allow_actions(st):
        services = condition(st, "StringEquals", "iam:PassedToService")
        services = set(services if isinstance(services, list) else [services] if services else [])
        check(bool(services) and services == trusted,
              f"the execution role passes roles only to the services the stack's roles trust ({sorted(trusted)}): {sorted(services)}")

# The runbook's redrive: a message the worker dead-lettered itself has no source queue
# for SQS to return it to, so every move task names its destination.
for doc in (ROOT / "README.md", ROOT / "infra" / "README.md", *sorted((ROOT / "docs").glob("*.md"))):
    for command in re.findall(r"start-message-move-task[^`]*", doc.read_text()):
        check("--destination-arn" in command, f"{doc.relative_to(ROOT)}: the DLQ redrive names its destination: {command}")

# No dependency cycle between resources (cfn-lint does not see one through a Sub inside a
# SAM function; CloudFormation refuses the stack): Ref, GetAtt, Sub names, DependsOn.
def references(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "Ref" and isinstance(v, str):
                yield v
            elif k == "Fn::GetAtt":
                yield (v[0] if isinstance(v, list) else v.split(".")[0])
            elif k == "Fn::Sub":
                text, names = (v[0], v[1]) if isinstance(v, list) else (v, {})
                for name in re.findall(r"\$\{([^}!]+)\}", text):
                    if name not in names:
                        yield name.split(".")[0]
                yield from references(names)
            else:
                yield from references(v)
    elif isinstance(node, list):
        for v in node:
            yield from references(v)


graph = {}
for name, r in res.items():
    deps = set(references(r.get("Properties", {}))) | set(references(r.get("Condition", [])))
    depends = r.get("DependsOn", [])
    deps |= set([depends] if isinstance(depends, str) else depends)
    graph[name] = {d for d in deps if d in res}


def cycle_from(start):
    path, seen = [], set()

    def visit(n):
        if n in path:
            return path[path.index(n):] + [n]
        if n in seen:
            return None
        seen.add(n)
        path.append(n)
        for d in sorted(graph[n]):
            found = visit(d)
            if found:
                return found
        path.pop()
        return None
    return visit(start)


cycles = [c for c in (cycle_from(n) for n in sorted(graph)) if c]
check(not cycles, f"no dependency cycle between resources: {' -> '.join(cycles[0]) if cycles else ''}")

# ---- The EventBridge door --------------------------------------------------------------
door = functions["EventBridgeFunction"]
door_p = door["Properties"]
check(door.get("Condition") == "HasStripeEventSource" and params["StripeEventSourceName"].get("Default") == "",
      "the EventBridge door is off unless a partner event source is named")
for name in ("StripeEventsRule", "EventBridgeDeadLetterQueue", "EventBridgeDeadLetterQueuePolicy", "EventBridgeInvokePermission",
             "EventBridgeDeadLettersWaiting", "EventBridgeLogs"):
    check(res[name].get("Condition") == "HasStripeEventSource", f"{name} exists only with the door")
bus = res["StripeEventBus"]
check(bus.get("DeletionPolicy") == "Retain" and bus.get("UpdateReplacePolicy") == "Retain",
      "the partner event bus outlives the door and the stack (deleting it would detach Stripe's source for good)")
check(bus.get("Condition") == "CreateStripeEventBus" and ref(bus["Properties"]["Name"]) == "StripeEventSourceName"
      and ref(bus["Properties"]["EventSourceName"]) == "StripeEventSourceName",
      "the partner event bus is named after its source (which associates it), unless it already exists")
rule = res["StripeEventsRule"]["Properties"]
bus_name = rule["EventBusName"].get("Fn::If", [])
check(bus_name[:1] == ["CreateStripeEventBus"] and ref(bus_name[1]) == "StripeEventBus" and ref(bus_name[2]) == "StripeEventSourceName",
      "the rule is on the partner event bus")
check(rule["EventPattern"] == {"source": [{"prefix": "aws.partner/stripe.com/"}]}, "the rule matches Stripe's partner events")
targets = rule["Targets"]
check(len(targets) == 1 and getatt(targets[0]["Arn"]) == "EventBridgeFunction", "the rule has one target: the EventBridge function")
check(getatt(targets[0].get("DeadLetterConfig", {}).get("Arn")) == "EventBridgeDeadLetterQueue"
      and targets[0].get("RetryPolicy", {}).get("MaximumEventAgeInSeconds") == 86400,
      "the rule's target retries for a day, then dead-letters to the door's queue")
perm = res["EventBridgeInvokePermission"]["Properties"]
check(perm["Principal"] == "events.amazonaws.com" and getatt(perm["SourceArn"]) == "StripeEventsRule"
      and ref(perm["FunctionName"]) == "EventBridgeFunction" and perm["Action"] == "lambda:InvokeFunction",
      "least privilege: only the rule may invoke the EventBridge function")
check(not any(getatt(p["Properties"].get("FunctionName")) == "EventBridgeFunction" or ref(p["Properties"].get("FunctionName")) == "EventBridgeFunction"
              for k, p in of_type("AWS::Lambda::Permission").items() if k != "EventBridgeInvokePermission"),
      "no other permission invokes the EventBridge function")
check("Events" not in door_p, "the EventBridge function has no other event source")
dlq_statements = res["EventBridgeDeadLetterQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
check(len(dlq_statements) == 1 and dlq_statements[0]["Principal"] == {"Service": "events.amazonaws.com"}
      and dlq_statements[0]["Action"] == "sqs:SendMessage"
      and getatt(dlq_statements[0]["Condition"]["ArnEquals"]["aws:SourceArn"]) == "StripeEventsRule",
      "least privilege: EventBridge may send to the door's dead-letter queue for this rule only")
invoke_config = res["EventBridgeInvokeConfig"]
check(getatt(invoke_config["Properties"].get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")) == "EventBridgeDeadLetterQueue"
      and invoke_config.get("Condition") == "HasStripeEventSource" and ref(invoke_config["Properties"]["FunctionName"]) == "EventBridgeFunction"
      and invoke_config["Properties"]["MaximumRetryAttempts"] == 2,
      "a function failure is retried twice by Lambda, then dead-lettered to the same queue")
alarm = res["EventBridgeDeadLettersWaiting"]["Properties"]
check(getatt(alarm["Dimensions"][0]["Value"]) == "EventBridgeDeadLetterQueue" and alarm["Threshold"] == 0
      and ref(alarm["AlarmActions"][0]) == "AlertsTopic", "a dead letter of the door alarms the alerts topic")
lost = {m: alarms_on(ns, m) for ns, m in (("AWS/Events", "InvocationsFailedToBeSentToDlq"), ("AWS/Lambda", "DestinationDeliveryFailures"))}
check(all(names and all(alarms[a].get("Condition") == "HasStripeEventSource" and ref(alarms[a]["Properties"]["AlarmActions"][0]) == "AlertsTopic"
                        for a in names) for names in lost.values()),
      f"an event neither recorded nor dead-lettered (the rule's or Lambda's failure to send there) alarms the alerts topic: {lost}")
door_env = door_p["Environment"]["Variables"]
ingress_env = functions["IngressFunction"]["Properties"]["Environment"]["Variables"]
check({k: v for k, v in ingress_env.items() if not k.startswith("STRIPE_WEBHOOK")} == door_env,
      "the door records into the ingress's event log and queue, with the ingress's modes and payload settings, and no secret")
door_actions = sorted(a for st in function_statements("EventBridgeFunction") for a in st["Action"])
check(door_actions == ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "sqs:SendMessage", "sqs:SendMessage"]
      and sorted(getatt(st["Resource"]) for st in function_statements("EventBridgeFunction")) == ["EventBridgeDeadLetterQueue", "EventsQueue", "EventsTable"],
      f"the door may only record in the event log, enqueue, and dead-letter: {door_actions}")
dash = json.dumps(res["HealthDashboard"]["Properties"]["DashboardBody"])
check("FailedInvocations" in dash and "InvocationsSentToDlq" in dash and "EventBridgeWidgets" in dash and "RuleName" in dash,
      "the health dashboard shows the rule's invocations, failures and dead letters when the door is on")

if failures:
    sys.exit(f"{len(failures)} template invariant(s) broken")
print("template invariants hold")
