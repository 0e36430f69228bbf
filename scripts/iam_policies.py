#!/usr/bin/env python3
"""What each role of a stack may do, as a real account would see it.

Translates a SAM template with SAM's own transform (aws-sam-translator, so the roles and
managed policies SAM adds are included), evaluates its conditions for the given
parameters, resolves every intrinsic function against the physical names of the
resources a test made, and prints for each function asked for its role's policies:
inline policies, managed policies (AWS's, from the documents below, or the template's
own) and its permissions boundary.

Input (JSON on stdin):
  {"template": "template.yaml", "stack_name": "…", "region": "us-east-1",
   "account": "123456789012", "parameters": {"Name": "value", …},
   "resources": {"EventsTable": {"Ref": "…", "Arn": "…"}, …},
   "functions": ["IngressFunction", …],
   "policies": {"<ARN of a customer managed policy>": {"template": "infra/….yaml",
                 "resource": "LogicalId", "parameters": {…}}}}
Output (JSON on stdout):
  {"IngressFunction": {"role": ARN, "identityPolicies": [{"name", "policy"}],
                       "permissionBoundaryPolicies": [{"name", "policy"}]}, …}

With {"deploy": {"template", "stack_name", "parameters"}} instead, it prints the calls
CloudFormation makes to create each resource of the translated template, named as
CloudFormation names them (`<stack>-<LogicalId>-<suffix>` where the template sets no
name), with the condition keys IAM gives those calls (`iam:PermissionsBoundary`,
`iam:PolicyARN`, `iam:PassedToService`, `lambda:FunctionArn`); and with {"role": {"template",
"resource", "parameters", "resources"}} the policies of one AWS::IAM::Role.

Run with the deploy venv's Python (scripts/test installs aws-sam-cli there). A reference
it cannot resolve, or a managed policy it has no document for, is an error: a policy
silently left out would make the test kinder than AWS.
"""

import copy
import json
import os
import re
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

# AWS managed policies SAM attaches, as AWS publishes them (IAM console, policy version v1
# of each, unchanged since 2015–2021).
AWS_MANAGED = {
    "AWSLambdaBasicExecutionRole": {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": "*",
            }
        ],
    },
    "AWSLambdaSQSQueueExecutionRole": {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                           "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": "*",
            }
        ],
    },
}


class ManagedPolicies:
    """The names SAM may resolve to AWS managed policy ARNs, offline."""

    def load(self):
        return {
            name: f"arn:aws:iam::aws:policy/service-role/{name}" for name in AWS_MANAGED
        }


class Unresolved(Exception):
    pass


class Stack:
    def __init__(self, template, stack_name, region, account, parameters, resources):
        self.template = template
        self.stack_name = stack_name
        self.region = region
        self.account = account
        self.resources = resources
        self.parameters = {}
        for name, spec in template.get("Parameters", {}).items():
            if name in parameters:
                self.parameters[name] = parameters[name]
            elif "Default" in spec:
                self.parameters[name] = spec["Default"]
        unknown = set(parameters) - set(template.get("Parameters", {}))
        if unknown:
            raise Unresolved(f"no such parameters in the template: {sorted(unknown)}")
        self.conditions = {}

    def pseudo(self, name):
        return {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::StackName": self.stack_name,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{self.account}:stack/{self.stack_name}/e2e",
        }.get(name)

    def condition(self, name):
        if name not in self.conditions:
            self.conditions[name] = bool(self.value(self.template["Conditions"][name]))
        return self.conditions[name]

    def ref(self, name):
        pseudo = self.pseudo(name)
        if pseudo is not None:
            return pseudo
        if name in self.parameters:
            value = self.parameters[name]
            return value if not isinstance(value, list) else ",".join(value)
        if name in self.resources and "Ref" in self.resources[name]:
            return self.resources[name]["Ref"]
        if name in self.template.get("Resources", {}):
            raise Unresolved(f"Ref {name}: the test did not give this resource's name")
        raise Unresolved(f"Ref {name}: no such parameter or resource")

    def get_att(self, name, attribute):
        given = self.resources.get(name, {})
        if attribute in given:
            return given[attribute]
        raise Unresolved(f"Fn::GetAtt {name}.{attribute}: the test did not give it")

    def value(self, node):
        """`node` with every intrinsic resolved; `NoValue` where AWS::NoValue stands."""
        if isinstance(node, list):
            out = [self.value(item) for item in node]
            return [item for item in out if item is not NoValue]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                return NoValue if arg == "AWS::NoValue" else self.ref(arg)
            if key == "Fn::GetAtt":
                name, attribute = arg.split(".", 1) if isinstance(arg, str) else arg
                return self.get_att(name, attribute)
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                variables = {k: self.value(v) for k, v in variables.items()}

                def substitute(match):
                    inner = match.group(1)
                    if inner.startswith("!"):
                        return "${" + inner[1:] + "}"
                    if inner in variables:
                        return str(variables[inner])
                    if "." in inner:
                        return str(self.get_att(*inner.split(".", 1)))
                    return str(self.ref(inner))

                return re.sub(r"\$\{([^}]+)\}", substitute, text)
            if key == "Fn::Join":
                separator, items = arg
                return separator.join(str(i) for i in self.value(items))
            if key == "Fn::Select":
                index, items = arg
                return self.value(items)[int(self.value(index))]
            if key == "Fn::Split":
                separator, text = arg
                return self.value(text).split(separator)
            if key == "Fn::If":
                name, then, otherwise = arg
                return self.value(then if self.condition(name) else otherwise)
            if key == "Fn::Equals":
                a, b = (self.value(x) for x in arg)
                return str(a) == str(b)
            if key == "Fn::Not":
                return not self.value(arg[0])
            if key == "Fn::And":
                return all(self.value(x) for x in arg)
            if key == "Fn::Or":
                return any(self.value(x) for x in arg)
            if key == "Condition":
                return self.condition(arg)
            if key.startswith("Fn::"):
                raise Unresolved(f"{key} is not supported here")
        out = {k: self.value(v) for k, v in node.items()}
        return {k: v for k, v in out.items() if v is not NoValue}

    def present(self, logical_id):
        resource = self.template["Resources"][logical_id]
        return "Condition" not in resource or self.condition(resource["Condition"])


class _NoValue:
    def __repr__(self):
        return "AWS::NoValue"


NoValue = _NoValue()


def translated(path, parameters, region="us-east-1", account="123456789012", stack_name="stack"):
    with open(path) as f:
        template = yaml_parse(f.read())
    if "Transform" in template:
        # As `sam package` leaves it: code in S3, which is all the transform checks.
        for resource in template.get("Resources", {}).values():
            if resource.get("Type") == "AWS::Serverless::Function":
                resource.setdefault("Properties", {})["CodeUri"] = "s3://artifacts/code.zip"
        # SAM reads the region from boto's session: no profile or network needed.
        os.environ["AWS_DEFAULT_REGION"] = region
        values = dict(parameters)
        values.update({"AWS::Region": region, "AWS::AccountId": account,
                       "AWS::StackName": stack_name, "AWS::Partition": "aws"})
        template = transform(copy.deepcopy(template), values, ManagedPolicies())
    return template


def managed_document(arn, policies, stack):
    name = arn.rsplit("/", 1)[-1]
    if ":iam::aws:policy/" in arn:
        if name not in AWS_MANAGED:
            raise Unresolved(f"no document for the AWS managed policy {arn}")
        return AWS_MANAGED[name]
    for logical_id, resource in stack.template["Resources"].items():
        if resource["Type"] == "AWS::IAM::ManagedPolicy" and stack.resources.get(logical_id, {}).get("Ref") == arn:
            return stack.value(resource["Properties"]["PolicyDocument"])
    if arn in policies:
        return policy_of(policies[arn])
    raise Unresolved(f"no document for the managed policy {arn}: give it in \"policies\"")


def policy_of(spec):
    template = translated(spec["template"], spec.get("parameters", {}))
    stack = Stack(template, spec.get("stack_name", "infra"), spec.get("region", "us-east-1"),
                  spec.get("account", "123456789012"), spec.get("parameters", {}), spec.get("resources", {}))
    return stack.value(template["Resources"][spec["resource"]]["Properties"]["PolicyDocument"])


def role_of(stack, function, policies):
    resource = stack.template["Resources"].get(function)
    if resource is None or resource["Type"] != "AWS::Lambda::Function":
        raise Unresolved(f"{function} is not a function of the translated template")
    if not stack.present(function):
        raise Unresolved(f"{function} does not exist with these parameters")
    role_arn = resource["Properties"]["Role"]
    if not (isinstance(role_arn, dict) and "Fn::GetAtt" in role_arn):
        raise Unresolved(f"{function}'s role is not one of the stack's roles: {role_arn}")
    role_id = role_arn["Fn::GetAtt"][0] if isinstance(role_arn["Fn::GetAtt"], list) else role_arn["Fn::GetAtt"].split(".")[0]
    role = stack.value(stack.template["Resources"][role_id]["Properties"])
    identity = [
        {"name": p["PolicyName"], "policy": p["PolicyDocument"]} for p in role.get("Policies", [])
    ]
    for arn in role.get("ManagedPolicyArns", []):
        identity.append({"name": arn, "policy": managed_document(arn, policies, stack)})
    # Policies attached from outside the role (AWS::IAM::Policy naming it).
    for logical_id, other in stack.template["Resources"].items():
        if other["Type"] == "AWS::IAM::Policy" and stack.present(logical_id):
            props = other["Properties"]
            if {"Ref": role_id} in props.get("Roles", []):
                identity.append({"name": props["PolicyName"], "policy": stack.value(props["PolicyDocument"])})
    out = {
        "role": f"arn:aws:iam::{stack.account}:role/{stack.stack_name}-{role_id}",
        "identityPolicies": identity,
    }
    boundary = role.get("PermissionsBoundary")
    if boundary:
        out["permissionBoundaryPolicies"] = [
            {"name": boundary, "policy": managed_document(boundary, policies, stack)}
        ]
    return out


SUFFIX = "1A2B3C4D5E6F7"


def generated_names(stack):
    """Each resource's physical name and attributes, as CloudFormation would make them."""
    region, account = stack.region, stack.account
    name_property = {
        "AWS::DynamoDB::Table": "TableName", "AWS::SQS::Queue": "QueueName", "AWS::SNS::Topic": "TopicName",
        "AWS::IAM::Role": "RoleName", "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
        "AWS::Lambda::Function": "FunctionName", "AWS::Logs::LogGroup": "LogGroupName",
        "AWS::SecretsManager::Secret": "Name", "AWS::Scheduler::Schedule": "Name",
        "AWS::CloudWatch::Alarm": "AlarmName", "AWS::CloudWatch::Dashboard": "DashboardName",
        "AWS::Chatbot::SlackChannelConfiguration": "ConfigurationName",
        "AWS::Chatbot::MicrosoftTeamsChannelConfiguration": "ConfigurationName",
        "AWS::Events::EventBus": "Name", "AWS::Events::Rule": "Name",
    }
    for logical_id, resource in stack.template["Resources"].items():
        kind = resource["Type"]
        props = resource.get("Properties", {})
        prop = name_property.get(kind)
        name = stack.value(props[prop]) if prop and prop in props else f"{stack.stack_name}-{logical_id}-{SUFFIX}"
        attrs = {"Ref": name}
        if kind == "AWS::DynamoDB::Table":
            attrs["Arn"] = f"arn:aws:dynamodb:{region}:{account}:table/{name}"
        elif kind == "AWS::SQS::Queue":
            attrs = {"Ref": f"https://sqs.{region}.amazonaws.com/{account}/{name}",
                     "Arn": f"arn:aws:sqs:{region}:{account}:{name}", "QueueName": name}
        elif kind == "AWS::SNS::Topic":
            arn = f"arn:aws:sns:{region}:{account}:{name}"
            attrs = {"Ref": arn, "TopicArn": arn, "TopicName": name}
        elif kind == "AWS::IAM::Role":
            attrs["Arn"] = f"arn:aws:iam::{account}:role/{name}"
        elif kind == "AWS::IAM::ManagedPolicy":
            path = props.get("Path", "/")
            attrs = {"Ref": f"arn:aws:iam::{account}:policy{path}{name}"}
        elif kind == "AWS::Lambda::Function":
            attrs["Arn"] = f"arn:aws:lambda:{region}:{account}:function:{name}"
        elif kind == "AWS::Logs::LogGroup":
            attrs["Arn"] = f"arn:aws:logs:{region}:{account}:log-group:{name}:*"
        elif kind == "AWS::SecretsManager::Secret":
            attrs = {"Ref": f"arn:aws:secretsmanager:{region}:{account}:secret:{name}-AbCdEf", "Name": name}
        elif kind == "AWS::Scheduler::Schedule":
            attrs["Arn"] = f"arn:aws:scheduler:{region}:{account}:schedule/default/{name}"
        elif kind == "AWS::CloudWatch::Alarm":
            attrs["Arn"] = f"arn:aws:cloudwatch:{region}:{account}:alarm:{name}"
        elif kind == "AWS::ApiGatewayV2::Api":
            attrs = {"Ref": "a1b2c3d4e5", "ApiEndpoint": f"https://a1b2c3d4e5.execute-api.{region}.amazonaws.com"}
        elif kind == "AWS::Events::EventBus":
            attrs = {"Ref": name, "Name": name, "Arn": f"arn:aws:events:{region}:{account}:event-bus/{name}"}
        elif kind == "AWS::Events::Rule":
            bus = stack.value(props.get("EventBusName", "default"))
            path = name if bus == "default" else f"{bus}/{name}"
            attrs = {"Ref": name if bus == "default" else f"{bus}|{name}",
                     "Arn": f"arn:aws:events:{region}:{account}:rule/{path}"}
        elif kind == "AWS::Lambda::Url":
            attrs = {"Ref": name, "FunctionUrl": f"https://{SUFFIX.lower()}.lambda-url.{region}.on.aws/"}
        elif kind.startswith("AWS::Chatbot::"):
            channel = "slack-channel" if "Slack" in kind else "microsoft-teams-channel"
            attrs = {"Ref": f"arn:aws:chatbot::{account}:chat-configuration/{channel}/{name}"}
            attrs["Arn"] = attrs["Ref"]
        stack.resources.setdefault(logical_id, attrs)


def listed(value):
    return value if isinstance(value, list) else [value]


def deploy_calls(stack):
    """What CloudFormation asks of IAM to create each resource present with these parameters."""
    generated_names(stack)
    region, account = stack.region, stack.account
    calls = []

    def call(logical_id, action, resource, **context):
        calls.append({"resource_id": logical_id, "action": action, "resource": resource,
                      "context": {k.replace("__", ":"): v for k, v in context.items()}})

    function_of_role = {}
    for logical_id, resource in stack.template["Resources"].items():
        if resource["Type"] == "AWS::Lambda::Function" and stack.present(logical_id):
            role = resource["Properties"]["Role"]
            function_of_role[role["Fn::GetAtt"][0] if isinstance(role["Fn::GetAtt"], list) else role["Fn::GetAtt"].split(".")[0]] = logical_id
    for logical_id, resource in sorted(stack.template["Resources"].items()):
        if not stack.present(logical_id):
            continue
        kind = resource["Type"]
        props = stack.value(resource.get("Properties", {}))
        attrs = stack.resources[logical_id]
        if kind == "AWS::DynamoDB::Table":
            for action in ["CreateTable", "DescribeTable", "UpdateTimeToLive", "UpdateContinuousBackups"]:
                call(logical_id, f"dynamodb:{action}", attrs["Arn"])
        elif kind == "AWS::SQS::Queue":
            for action in ["CreateQueue", "GetQueueAttributes", "SetQueueAttributes"]:
                call(logical_id, f"sqs:{action}", attrs["Arn"])
        elif kind == "AWS::SQS::QueuePolicy":
            for url in props["Queues"]:
                call(logical_id, "sqs:SetQueueAttributes", f"arn:aws:sqs:{region}:{account}:{url.rsplit('/', 1)[-1]}")
        elif kind == "AWS::SNS::Topic":
            for action in ["CreateTopic", "GetTopicAttributes", "SetTopicAttributes"]:
                call(logical_id, f"sns:{action}", attrs["TopicArn"])
        elif kind == "AWS::SNS::Subscription":
            call(logical_id, "sns:Subscribe", props["TopicArn"])
        elif kind == "AWS::Logs::LogGroup":
            name = attrs["Ref"]
            for action in ["CreateLogGroup", "PutRetentionPolicy"]:
                call(logical_id, f"logs:{action}", f"arn:aws:logs:{region}:{account}:log-group:{name}")
        elif kind == "AWS::Logs::MetricFilter":
            call(logical_id, "logs:PutMetricFilter", f"arn:aws:logs:{region}:{account}:log-group:{props['LogGroupName']}")
        elif kind == "AWS::IAM::Role":
            arn = attrs["Arn"]
            boundary = {"iam__PermissionsBoundary": props["PermissionsBoundary"]} if "PermissionsBoundary" in props else {}
            call(logical_id, "iam:CreateRole", arn, **boundary)
            call(logical_id, "iam:GetRole", arn)
            for policy in props.get("Policies", []):
                call(logical_id, "iam:PutRolePolicy", arn, **boundary)
            for policy_arn in props.get("ManagedPolicyArns", []):
                call(logical_id, "iam:AttachRolePolicy", arn, iam__PolicyARN=policy_arn, **boundary)
            services = [svc for st in props["AssumeRolePolicyDocument"]["Statement"]
                        for svc in listed(st.get("Principal", {}).get("Service", []))]
            for service in services:
                call(logical_id, "iam:PassRole", arn, iam__PassedToService=service)
        elif kind == "AWS::IAM::ManagedPolicy":
            call(logical_id, "iam:CreatePolicy", attrs["Ref"])
        elif kind == "AWS::Lambda::Function":
            for action in ["CreateFunction", "GetFunction", "TagResource"]:
                call(logical_id, f"lambda:{action}", attrs["Arn"])
            if "ReservedConcurrentExecutions" in props:
                call(logical_id, "lambda:PutFunctionConcurrency", attrs["Arn"])
        elif kind == "AWS::Lambda::Permission":
            function = props["FunctionName"]
            arn = function if function.startswith("arn:") else f"arn:aws:lambda:{region}:{account}:function:{function}"
            call(logical_id, "lambda:AddPermission", arn)
        elif kind == "AWS::Lambda::Url":
            call(logical_id, "lambda:CreateFunctionUrlConfig", props["TargetFunctionArn"])
        elif kind == "AWS::Lambda::EventInvokeConfig":
            function = props["FunctionName"]
            arn = function if function.startswith("arn:") else f"arn:aws:lambda:{region}:{account}:function:{function}"
            call(logical_id, "lambda:PutFunctionEventInvokeConfig", arn)
        elif kind == "AWS::Events::EventBus":
            for action in ["CreateEventBus", "DescribeEventBus", "TagResource"]:
                call(logical_id, f"events:{action}", attrs["Arn"])
        elif kind == "AWS::Events::Rule":
            for action in ["PutRule", "DescribeRule", "PutTargets"]:
                call(logical_id, f"events:{action}", attrs["Arn"])
        elif kind == "AWS::Lambda::EventSourceMapping":
            function = props["FunctionName"]
            arn = function if function.startswith("arn:") else f"arn:aws:lambda:{region}:{account}:function:{function}"
            call(logical_id, "lambda:CreateEventSourceMapping", "*", lambda__FunctionArn=arn)
        elif kind == "AWS::Scheduler::Schedule":
            call(logical_id, "scheduler:CreateSchedule", attrs["Arn"])
        elif kind == "AWS::CloudWatch::Alarm":
            call(logical_id, "cloudwatch:PutMetricAlarm", attrs["Arn"])
        elif kind == "AWS::CloudWatch::Dashboard":
            call(logical_id, "cloudwatch:PutDashboard", f"arn:aws:cloudwatch::{account}:dashboard/{attrs['Ref']}")
        elif kind == "AWS::SecretsManager::Secret":
            call(logical_id, "secretsmanager:CreateSecret", attrs["Ref"])
        elif kind == "AWS::ApiGatewayV2::Api":
            call(logical_id, "apigateway:POST", f"arn:aws:apigateway:{region}::/apis")
        elif kind == "AWS::ApiGatewayV2::Stage":
            call(logical_id, "apigateway:POST", f"arn:aws:apigateway:{region}::/apis/{props['ApiId']}/stages")
        elif kind == "AWS::Chatbot::SlackChannelConfiguration":
            call(logical_id, "chatbot:CreateSlackChannelConfiguration", attrs["Arn"])
        elif kind == "AWS::Chatbot::MicrosoftTeamsChannelConfiguration":
            call(logical_id, "chatbot:CreateMicrosoftTeamsChannelConfiguration", attrs["Arn"])
        else:
            raise Unresolved(f"{logical_id}: no deploy calls known for {kind}; add them here")
    return calls


def standalone_role(spec):
    template = translated(spec["template"], spec.get("parameters", {}), stack_name=spec.get("stack_name", "stack"))
    stack = Stack(template, spec.get("stack_name", "stack"), spec.get("region", "us-east-1"),
                  spec.get("account", "123456789012"), spec.get("parameters", {}), spec.get("resources", {}))
    role = stack.value(template["Resources"][spec["resource"]]["Properties"])
    out = [{"name": p["PolicyName"], "policy": p["PolicyDocument"]} for p in role.get("Policies", [])]
    for arn in role.get("ManagedPolicyArns", []):
        out.append({"name": arn, "policy": managed_document(arn, {}, stack)})
    return {"role": f"arn:aws:iam::{stack.account}:role/{stack.stack_name}-{spec['resource']}", "identityPolicies": out}


def main():
    request = json.load(sys.stdin)
    if "deploy" in request:
        spec = request["deploy"]
        template = translated(spec["template"], spec.get("parameters", {}), stack_name=spec["stack_name"])
        stack = Stack(template, spec["stack_name"], spec.get("region", "us-east-1"),
                      spec.get("account", "123456789012"), spec.get("parameters", {}), {})
        json.dump(deploy_calls(stack), sys.stdout, indent=1)
        return
    if "role" in request:
        json.dump(standalone_role(request["role"]), sys.stdout, indent=1)
        return
    parameters = request.get("parameters", {})
    template = translated(request["template"], parameters, request.get("region", "us-east-1"),
                          request.get("account", "123456789012"), request["stack_name"])
    stack = Stack(template, request["stack_name"], request.get("region", "us-east-1"),
                  request.get("account", "123456789012"), parameters, request.get("resources", {}))
    out = {f: role_of(stack, f, request.get("policies", {})) for f in request["functions"]}
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    try:
        main()
    except Unresolved as e:
        sys.exit(f"iam_policies: {e}")
