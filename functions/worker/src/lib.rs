//! The worker Lambda: SQS batch shapes to the core worker use case and back. The use case
//! applies the batch and says, per message, whether SQS may forget it; the others are
//! reported as `batchItemFailures`, so one failure never holds back its neighbours, and
//! hidden for their backoff (`ChangeMessageVisibility`), so that an outage spends the
//! receive count slowly. The invocation watches its deadline: what is not done shortly
//! before the function's timeout is reported failed, never cut off mid-answer.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use std::time::Duration;

use revguard_aws::{
    DynamoBilling, DynamoEventLog, SnsNotifier, SqsDeadLetters, SqsRedelivery, WorkerEnv,
};
use revguard_core::domain::billing::BillingPolicy;
use revguard_core::ports::{Inbound, TokioPause};
use revguard_core::usecases::apply_batch::{BatchApplier, ConsumeRules, Consumed};

/// The worker use case over DynamoDB, SNS and the SQS dead-letter queue.
pub type CoreWorker<N = SnsNotifier> = BatchApplier<
    DynamoEventLog,
    DynamoBilling,
    N,
    SqsDeadLetters,
    TokioPause,
    revguard_aws::AwsRequery,
>;

/// The worker function: the use case, and the queue whose failed messages it delays.
pub struct LambdaWorker<N = SnsNotifier> {
    pub worker: CoreWorker<N>,
    pub redelivery: SqsRedelivery,
}

impl<N> std::ops::Deref for LambdaWorker<N> {
    type Target = CoreWorker<N>;
    fn deref(&self) -> &Self::Target {
        &self.worker
    }
}

/// The worker function as its main builds it at cold start: the clients, the notifier,
/// and re-query when `REVGUARD_REQUERY` is on and a Stripe key is configured.
pub async fn from_env(
    sdk: &aws_config::SdkConfig,
    env: &WorkerEnv,
) -> Result<LambdaWorker, revguard_aws::ConfigError> {
    let (dynamodb, sqs) = (
        aws_sdk_dynamodb::Client::new(sdk),
        aws_sdk_sqs::Client::new(sdk),
    );
    let notifier = SnsNotifier::new(aws_sdk_sns::Client::new(sdk), &env.notifications_topic_arn);
    let mut worker = lambda_worker(
        (dynamodb.clone(), sqs.clone()),
        env,
        notifier,
        env.policy.clone(),
    );
    if env.requery {
        match env.stripe.client(sdk).await? {
            Some(api) => {
                worker.worker.requery =
                    Some(Box::new(revguard_core::usecases::recovery::StripeRequery {
                        api,
                        ingress: revguard_aws::recovery::fetched_ingress(
                            dynamodb,
                            sqs,
                            &env.events_table,
                            &env.queue_url,
                            revguard_aws::config::DEFAULT_MAX_MESSAGE_BYTES,
                        ),
                    }))
            }
            None => tracing::warn!(
                "REVGUARD_REQUERY is set but there is no Stripe key: re-query is off"
            ),
        }
    }
    Ok(worker)
}

/// One invocation at `clock` (the wall clock, read by main): the batch, within the time
/// its deadline leaves.
pub async fn handle_invocation<
    N: revguard_core::ports::Publisher<revguard_core::domain::billing::Notification>,
>(
    worker: &LambdaWorker<N>,
    event: lambda_runtime::LambdaEvent<SqsEvent>,
    clock: std::time::SystemTime,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    let since_epoch = clock.duration_since(std::time::UNIX_EPOCH)?;
    let deadline = Duration::from_millis(event.context.deadline);
    let budget = deadline
        .saturating_sub(since_epoch)
        .saturating_sub(DEADLINE_MARGIN);
    let now = since_epoch.as_secs() as i64;
    Ok(handle_batch_within(worker, event.payload, now, Some(budget)).await)
}

/// Time kept back from the function's deadline for answering and delaying redeliveries.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(3);

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

/// Consumes the batch with no deadline; the response names the messages to deliver again.
pub async fn handle_batch<N>(
    worker: &LambdaWorker<N>,
    batch: SqsEvent,
    now: i64,
) -> SqsBatchResponse
where
    N: revguard_core::ports::Publisher<revguard_core::domain::billing::Notification>,
{
    handle_batch_within(worker, batch, now, None).await
}

/// Consumes the batch within `budget` (the time left before the function's deadline,
/// less [`DEADLINE_MARGIN`]): if the budget runs out first, every message of the batch is
/// reported failed (what was committed is applied once when they come back). Failed
/// messages are hidden for their redelivery backoff.
pub async fn handle_batch_within<N>(
    worker: &LambdaWorker<N>,
    batch: SqsEvent,
    now: i64,
    budget: Option<Duration>,
) -> SqsBatchResponse
where
    N: revguard_core::ports::Publisher<revguard_core::domain::billing::Notification>,
{
    let messages: Vec<Inbound> = batch.records.iter().map(inbound).collect();
    let consume = worker.consume(&messages, now);
    let outcomes = match budget {
        None => consume.await,
        Some(budget) => match tokio::time::timeout(budget, consume).await {
            Ok(outcomes) => outcomes,
            Err(_) => {
                tracing::warn!(
                    messages = messages.len(),
                    budget_ms = budget.as_millis() as u64,
                    "the invocation's deadline is near: the batch goes back to the queue"
                );
                vec![Consumed::Retry("the invocation's deadline came first".into()); messages.len()]
            }
        },
    };
    let mut response = SqsBatchResponse::default();
    let mut hide = Vec::new();
    for ((message, record), outcome) in messages.iter().zip(&batch.records).zip(outcomes) {
        if !outcome.is_done() {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = message.id.clone();
            response.batch_item_failures.push(failure);
            if let Some(receipt) = &record.receipt_handle {
                hide.push((
                    message.id.clone(),
                    receipt.clone(),
                    worker.rules.redelivery_delay(message),
                ));
            }
        }
    }
    let not_hidden = if hide.is_empty() {
        Vec::new()
    } else {
        worker.redelivery.hide(&hide).await
    };
    tracing::info!(
        messages = messages.len(),
        failures = response.batch_item_failures.len(),
        delayed = hide.len() - not_hidden.len(),
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
    LambdaWorker {
        worker: BatchApplier {
            log: DynamoEventLog::new(dynamodb.clone(), &env.events_table),
            billing: DynamoBilling::new(dynamodb, &env.state_table, &env.counters_table)
                .with_alerts_table(&env.alerts_table),
            notifier,
            dead_letters: SqsDeadLetters::new(sqs.clone(), &env.dead_letter_queue_url),
            pause: TokioPause,
            policy,
            rules: ConsumeRules {
                max_receives: env.max_receives,
                redelivery: env.redelivery,
                ..ConsumeRules::default()
            },
            requery: None,
        },
        redelivery: SqsRedelivery::new(sqs, &env.queue_url),
    }
}
