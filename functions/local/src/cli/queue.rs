//! `revguard queue`: the events waiting in the embedded queue.

use std::process::ExitCode;

use clap::Args;

use super::args::{open_existing, DbArg};

#[derive(Args)]
pub struct QueueArgs {
    #[command(flatten)]
    pub db: DbArg,
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

pub async fn run(args: QueueArgs) -> anyhow::Result<ExitCode> {
    let QueueArgs { db, limit } = args;
    let store = open_existing(&db)?;
    for m in store.queued(limit)? {
        println!("{}", serde_json::to_string(&m)?);
    }
    Ok(ExitCode::SUCCESS)
}
