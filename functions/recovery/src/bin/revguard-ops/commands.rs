//! The commands of `revguard-ops`: the parser, and what each does.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use revguard_aws::{load_sdk_config, Recovery, RecoveryEnv, SqsQueue};
use revguard_core::ports::DeadLetterAdmin;

#[derive(Parser)]
#[command(
    name = "revguard-ops",
    version,
    about = "Operator commands for a deployed revguard stack"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Queues {
    #[arg(long, env = "REVGUARD_QUEUE_URL")]
    queue_url: String,
    #[arg(long, env = "REVGUARD_DEAD_LETTER_QUEUE_URL")]
    dead_letter_queue_url: String,
}

#[derive(Subcommand)]
enum Command {
    /// The worker's dead letters in the SQS DLQ: list, show one, or redrive them.
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetterAction,
    },
    /// Send logged events through the queue again (events already applied are reported,
    /// not sent). Reads the events table with a Scan for a window.
    Replay {
        #[arg(long, env = "REVGUARD_EVENTS_TABLE")]
        events_table: String,
        #[arg(long, env = "REVGUARD_STATE_TABLE")]
        state_table: String,
        #[arg(long, env = "REVGUARD_COUNTERS_TABLE")]
        counters_table: String,
        #[arg(long, env = "REVGUARD_QUEUE_URL")]
        queue_url: String,
        #[arg(long, conflicts_with_all = ["since", "until"], required_unless_present = "since")]
        event: Option<String>,
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long = "type")]
        event_type: Option<String>,
    },
    /// The backfill function's job, now (environment as the function's, plus
    /// STRIPE_API_KEY or STRIPE_API_KEY_SECRET_ARN).
    Backfill {
        /// From this time instead of the stored cursor (RFC 3339 or unix seconds).
        #[arg(long)]
        since: Option<String>,
    },
    /// The reconcile function's job, now (REVGUARD_RECONCILE_FIX says whether it fixes).
    Reconcile,
    /// Record the Stripe events waiting in the EventBridge door's dead-letter queue, as
    /// the door would have (events already recorded are counted as duplicates and not
    /// applied twice), and delete each once recorded.
    EventbridgeRedrive {
        /// The stack's EventBridgeDeadLetterQueueUrl output.
        #[arg(long, env = "REVGUARD_EVENTBRIDGE_DEAD_LETTER_QUEUE_URL")]
        dead_letter_queue_url: String,
        #[arg(long, env = "REVGUARD_EVENTS_TABLE")]
        events_table: String,
        #[arg(long, env = "REVGUARD_QUEUE_URL")]
        queue_url: String,
        /// The stack's AcceptedModes: both, live or test.
        #[arg(long, env = "REVGUARD_MODES", default_value = "both")]
        modes: String,
        /// The stack's KeepEventPayloads: keep every payload in the event log for replay.
        #[arg(long, env = "REVGUARD_KEEP_PAYLOADS", default_value_t = true, action = clap::ArgAction::Set)]
        keep_payloads: bool,
    },
}

#[derive(Subcommand)]
enum DeadLetterAction {
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        queues: Queues,
    },
    Show {
        id: String,
        #[command(flatten)]
        queues: Queues,
    },
    /// Back to the main queue: the ids given, or --all.
    Redrive {
        #[arg(required_unless_present = "all")]
        ids: Vec<String>,
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        #[command(flatten)]
        queues: Queues,
    },
}

fn time(t: Option<String>) -> anyhow::Result<Option<i64>> {
    t.map(|t| {
        revguard_core::domain::time::parse_time(&t).with_context(|| format!("not a time: {t}"))
    })
    .transpose()
}

/// Warnings and errors on stderr (`RUST_LOG` to change); stdout carries the answers.
pub fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // The builder's own level (INFO unless told) would cap whatever RUST_LOG allows.
        .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
        .finish()
        .with(revguard_aws::log_filter_from_env(
            tracing_subscriber::filter::LevelFilter::WARN,
        ))
        .init();
}

fn admin(sdk: &aws_config::SdkConfig, queues: &Queues) -> revguard_aws::SqsDeadLetterAdmin {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    revguard_aws::SqsDeadLetterAdmin::new(
        sqs.clone(),
        &queues.dead_letter_queue_url,
        SqsQueue::new(
            sqs,
            &queues.queue_url,
            revguard_aws::config::DEFAULT_MAX_MESSAGE_BYTES,
        ),
    )
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let sdk = load_sdk_config().await;
    match cli.command {
        Command::DeadLetters { action } => match action {
            DeadLetterAction::List { limit, queues } => {
                for d in admin(&sdk, &queues).dead_letters(limit).await? {
                    println!("{}", serde_json::to_string(&d)?);
                }
            }
            DeadLetterAction::Show { id, queues } => {
                let found = admin(&sdk, &queues)
                    .dead_letter_by_id(&id)
                    .await?
                    .with_context(|| format!("no dead letter {id}"))?;
                println!("{}", serde_json::to_string_pretty(&found)?);
            }
            DeadLetterAction::Redrive { ids, all, queues } => {
                let moved = admin(&sdk, &queues)
                    .redrive((!all).then_some(ids.as_slice()))
                    .await?;
                println!("{}", serde_json::json!({ "redriven": moved }));
            }
        },
        Command::Replay {
            events_table,
            state_table,
            counters_table,
            queue_url,
            event,
            since,
            until,
            event_type,
        } => {
            let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
            let selection = revguard_core::ports::LogSelection::for_replay(
                event,
                time(since)?,
                time(until)?,
                event_type,
            );
            let summary = revguard_core::usecases::recovery::replay(
                &revguard_aws::DynamoEventLog::new(dynamodb.clone(), events_table),
                &revguard_aws::DynamoBilling::new(dynamodb, state_table, counters_table),
                &SqsQueue::new(
                    aws_sdk_sqs::Client::new(&sdk),
                    queue_url,
                    revguard_aws::config::DEFAULT_MAX_MESSAGE_BYTES,
                ),
                &selection,
            )
            .await?;
            println!("{}", serde_json::to_string(&summary)?);
        }
        Command::Backfill { since } => {
            let recovery = recovery(&sdk).await?;
            let (since, summary) = recovery
                .backfill(
                    revguard_core::domain::time::unix_now(),
                    time(since)?,
                    &|| true,
                )
                .await?;
            let mut out = serde_json::to_value(&summary)?;
            out["since"] = since.into();
            println!("{out}");
        }
        Command::EventbridgeRedrive {
            dead_letter_queue_url,
            events_table,
            queue_url,
            modes,
            keep_payloads,
        } => {
            let sqs = aws_sdk_sqs::Client::new(&sdk);
            let mut config = revguard_core::IngestConfig::new(revguard_core::SecretSet::none());
            config.modes = revguard_core::ModeFilter::parse(&modes)
                .with_context(|| format!("--modes: expected both, live or test, not {modes}"))?;
            config.keep_payloads = keep_payloads;
            let ingress = revguard_core::Ingress::new(
                revguard_aws::DynamoEventLog::new(
                    aws_sdk_dynamodb::Client::new(&sdk),
                    events_table,
                ),
                SqsQueue::new(
                    sqs.clone(),
                    queue_url,
                    revguard_aws::config::DEFAULT_MAX_MESSAGE_BYTES,
                ),
                config,
            );
            let done = revguard_aws::SqsBridgeDeadLetters::new(sqs, dead_letter_queue_url)
                .redrive(&ingress, revguard_core::domain::time::unix_now())
                .await?;
            println!("{}", serde_json::to_string(&done)?);
        }
        Command::Reconcile => {
            let recovery = recovery(&sdk).await?;
            let report = recovery
                .reconcile(revguard_core::domain::time::unix_now())
                .await?;
            println!("{}", report.summary(true));
        }
    }
    Ok(())
}

async fn recovery(sdk: &aws_config::SdkConfig) -> anyhow::Result<Recovery> {
    Ok(revguard_recovery::recovery_from_env(sdk, &RecoveryEnv::from_env()?).await?)
}
