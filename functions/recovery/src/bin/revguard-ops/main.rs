//! `revguard-ops`: the operator commands of a deployed stack, over the same use cases as
//! the embedded `revguard` — dead letters (the SQS DLQ), replay from the event log, and a
//! backfill or reconciliation run by hand. Resource names come from flags or from the
//! environment variables the functions use (the stack's outputs name them).

mod commands;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    commands::init_logging();
    match commands::run(commands::Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("revguard-ops: {e:#}");
            ExitCode::FAILURE
        }
    }
}
