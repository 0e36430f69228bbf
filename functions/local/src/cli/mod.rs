//! The `revguard` command line: the parser, one module per subcommand over the argument
//! groups they share (`args`), and the dispatch to them.

mod accounts;
mod args;
mod backfill;
mod chat_test;
mod customer;
mod dead_letters;
mod demo;
mod detect;
mod digest;
mod dunning;
mod metrics;
mod queue;
mod reconcile;
mod replay;
mod send;
mod serve;
mod status;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "revguard", version, about = "A watchdog for Stripe billing")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
// Parsed once at start-up: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Serve Stripe webhooks at POST /webhook on the embedded SQLite store.
    Serve(serve::ServeArgs),
    /// A customer's subscriptions, access verdict and open dunning cases, as JSON.
    Customer(customer::CustomerArgs),
    /// Dunning cases as JSON lines: --status open (default), closed, all, or a stage.
    Dunning(dunning::DunningArgs),
    /// Hourly counters between two times (RFC 3339 or unix seconds), as JSON lines.
    Metrics(metrics::MetricsArgs),
    /// Sign a Stripe event file and POST it to a webhook URL.
    Send(send::SendArgs),
    /// List the events waiting in the embedded queue, one JSON object per line.
    Queue(queue::QueueArgs),
    /// Run the anomaly detector once as of a moment (RFC 3339 or unix seconds), counting
    /// only what had been received by then; print findings and the alert transitions it
    /// would make as JSON lines. Writes nothing.
    Detect(detect::DetectArgs),
    /// The billing digest for finance: the last complete UTC day or week (from Monday)
    /// before --at (default now), in one mode: MRR and its movements, payments, refunds,
    /// disputes, dunning and the recovery rate (its definition printed with it). Writes
    /// nothing.
    Digest(digest::DigestArgs),
    /// Show a sample alert as Slack, Teams and AWS Chatbot get it; with webhook URLs, post
    /// it to them once, to check the setup.
    ChatTest(chat_test::ChatTestArgs),
    /// The whole pipeline on a simulated clock: 10 days of seeded synthetic traffic with
    /// incidents on the last day, through the real ingress, worker and detector.
    Demo(demo::DemoArgs),
    /// Print the event log's counts by status and the queue depth as JSON.
    Status(status::StatusArgs),
    /// Every account seen, the platform's own first (Connect), as JSON lines: MRR, open
    /// dunning cases, open alerts.
    Accounts(accounts::AccountsArgs),
    /// Fetch the events Stripe has and revguard missed (GET /v1/events) and apply them as
    /// if they had been delivered; events already seen are duplicates. Prints a JSON line.
    Backfill(backfill::BackfillArgs),
    /// Compare revguard's subscriptions with Stripe's (GET /v1/subscriptions?status=all):
    /// missing, extra and drifted. Prints a JSON line; --fix applies Stripe's objects.
    Reconcile(reconcile::ReconcileArgs),
    /// Send logged events through the queue again: one (--event) or those created in a
    /// window, optionally of one type. Events already applied are reported, not sent.
    Replay(replay::ReplayArgs),
    /// Messages the worker could not apply: list, show one, or redrive them to the queue.
    DeadLetters(dead_letters::DeadLettersArgs),
}

/// Runs the subcommand given.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Customer(args) => customer::run(args).await,
        Command::Dunning(args) => dunning::run(args).await,
        Command::Metrics(args) => metrics::run(args).await,
        Command::Send(args) => send::run(args).await,
        Command::Queue(args) => queue::run(args).await,
        Command::Detect(args) => detect::run(args).await,
        Command::Digest(args) => digest::run(args).await,
        Command::ChatTest(args) => chat_test::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Status(args) => status::run(args).await,
        Command::Accounts(args) => accounts::run(args).await,
        Command::Backfill(args) => backfill::run(args).await,
        Command::Reconcile(args) => reconcile::run(args).await,
        Command::Replay(args) => replay::run(args).await,
        Command::DeadLetters(args) => dead_letters::run(args).await,
    }
}

/// Logs to stderr, filtered by RUST_LOG (default: info); as JSON with
/// REVGUARD_LOG_FORMAT=json.
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("REVGUARD_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
