// A policy evaluator for the tests: AWS's evaluation logic as @cloud-copilot/iam-simulate
// implements it (identity policies, permission boundaries, resource policies, every
// condition operator), over JSON lines.
//
// Each line on stdin is one request:
//   {"principal": ARN, "action": "dynamodb:Query", "resource": ARN,
//    "context": {"dynamodb:LeadingKeys": ["…"]}, "identityPolicies": [{name, policy}],
//    "permissionBoundaryPolicies": [{name, policy}]?, "resourcePolicy": {…}?}
// and the answer on stdout, one line each, in order:
//   {"decision": "Allowed" | "ImplicitlyDenied" | "ExplicitlyDenied" | "Error", "detail": …}
import { createInterface } from 'node:readline'
import { runSimulation, runUnsafeSimulation } from '@cloud-copilot/iam-simulate'

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
for await (const line of lines) {
  if (!line.trim()) continue
  let answer
  try {
    answer = await evaluate(JSON.parse(line))
  } catch (error) {
    answer = { decision: 'Error', detail: String(error?.stack ?? error) }
  }
  process.stdout.write(JSON.stringify(answer) + '\n')
}

async function evaluate(request) {
  const account = request.resource.split(':')[4] || request.principal.split(':')[4]
  const simulation = {
    request: {
      principal: request.principal,
      action: request.action,
      resource: { resource: request.resource, accountId: account },
      contextVariables: request.context ?? {}
    },
    identityPolicies: request.identityPolicies ?? [],
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    resourcePolicy: request.resourcePolicy,
    permissionBoundaryPolicies: request.permissionBoundaryPolicies
  }
  const result = await runSimulation(simulation, {})
  if (result.resultType !== 'error') {
    return { decision: result.overallResult }
  }
  const reason = result.errors?.message
  // An action AWS authorizes only on "*" (its Service Authorization Reference lists no
  // resource type): IAM judges the call against Resource "*", so a statement scoped to
  // an ARN does not match it.
  if (reason === 'must.use.wildcard') {
    return evaluate({ ...request, resource: '*' })
  }
  // The evaluator's data lacks the resource type (API Gateway's HTTP APIs, /apis/…, for
  // apigateway:POST): the policies are judged without checking the ARN's type.
  if (reason === 'no.resource.types') {
    const unchecked = runUnsafeSimulation(simulation, {})
    return { decision: typeof unchecked === 'string' ? unchecked : unchecked.result, detail: 'resource type not in the evaluator\'s data' }
  }
  return { decision: 'Error', detail: result.errors }
}
