//! `revguard`: the embedded server and the operator CLI.

mod allocator;
mod cli;

use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    cli::init_logging();
    cli::run(cli::Cli::parse()).await.unwrap_or_else(|e| {
        eprintln!("revguard: {e:#}");
        ExitCode::FAILURE
    })
}
