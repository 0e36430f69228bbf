//! The worker Lambda: SQS batch shapes to the core worker use case and back. The use case
//! applies the batch and says, per message, whether SQS may forget it; the others are
//! reported as `batchItemFailures`, so one failure never holds back its neighbours.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use revguard_aws::{DynamoBilling, DynamoEventLog, SnsNotifier, SqsDeadLetters, WorkerEnv};
use revguard_core::billing::BillingPolicy;
use revguard_core::ports::{Inbound, TokioPause};
use revguard_core::worker::{ConsumeRules, Worker};

/// The worker over DynamoDB, SNS and the SQS dead-letter queue.
pub type LambdaWorker<N = SnsNotifier> =
    Worker<DynamoEventLog, DynamoBilling, N, SqsDeadLetters, TokioPause>;

/// An SQS record as the use case sees it.
pub fn inbound(record: &SqsMessage) -> Inbound {
    let attribute = |name: &str| {
        record
            .attributes
            .get(name)
            .and_then(|v| v.parse::<i64>().ok())
    };
    Inbound {
        id: record.message_id.clone().unwrap_or_default(),
        body: record.body.clone().unwrap_or_default(),
        receive_count: attribute("ApproximateReceiveCount").unwrap_or(1).max(1) as u32,
        sent_at: attribute("SentTimestamp").map(|ms| ms / 1000),
    }
}

/// Consumes the batch; the response names the messages to deliver again.
pub async fn handle_batch<N>(
    worker: &LambdaWorker<N>,
    batch: SqsEvent,
    now: i64,
) -> SqsBatchResponse
where
    N: revguard_core::ports::Publisher<revguard_core::billing::Notification>,
{
    let messages: Vec<Inbound> = batch.records.iter().map(inbound).collect();
    let outcomes = worker.consume(&messages, now).await;
    let mut response = SqsBatchResponse::default();
    for (message, outcome) in messages.iter().zip(outcomes) {
        if !outcome.is_done() {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = message.id.clone();
            response.batch_item_failures.push(failure);
        }
    }
    tracing::info!(
        messages = messages.len(),
        failures = response.batch_item_failures.len(),
        "batch consumed"
    );
    response
}

/// The worker as the Lambda builds it from its environment: the same wiring in `main` and
/// in the tests against moto (which pass clients that may log or fault their calls).
pub fn lambda_worker<N>(
    clients: (aws_sdk_dynamodb::Client, aws_sdk_sqs::Client),
    env: &WorkerEnv,
    notifier: N,
    policy: BillingPolicy,
) -> LambdaWorker<N> {
    let (dynamodb, sqs) = clients;
    Worker {
        log: DynamoEventLog::new(dynamodb.clone(), &env.events_table),
        billing: DynamoBilling::new(dynamodb, &env.state_table, &env.counters_table)
            .with_alerts_table(&env.alerts_table),
        notifier,
        dead_letters: SqsDeadLetters::new(sqs, &env.dead_letter_queue_url),
        pause: TokioPause,
        policy,
        rules: ConsumeRules {
            max_receives: env.max_receives,
            ..ConsumeRules::default()
        },
    }
}
