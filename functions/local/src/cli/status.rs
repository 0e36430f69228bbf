//! `revguard status`: the event log's counts by status and the queue depth.

use std::process::ExitCode;

use clap::Args;

use super::args::{open_existing, DbArg};

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub db: DbArg,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let StatusArgs { db } = args;
    let store = open_existing(&db)?;
    println!("{}", serde_json::to_string(&store.counts()?)?);
    Ok(ExitCode::SUCCESS)
}
