//! `revguard replay`: send logged events through the queue again.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use revguard_local::parse_time;

use super::args::{open_existing, ApplyArgs, DbArg};

#[derive(Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub db: DbArg,
    #[arg(long, conflicts_with_all = ["since", "until"], required_unless_present = "since")]
    pub event: Option<String>,
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub until: Option<String>,
    #[arg(long = "type")]
    pub event_type: Option<String>,
    #[command(flatten)]
    pub apply: ApplyArgs,
}

pub async fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let ReplayArgs {
        db,
        event,
        since,
        until,
        event_type,
        apply,
    } = args;
    let store = open_existing(&db)?;
    let time = |t: Option<String>| -> anyhow::Result<Option<i64>> {
        t.map(|t| parse_time(&t).with_context(|| format!("not a time: {t}")))
            .transpose()
    };
    let selection = revguard_core::ports::LogSelection::for_replay(
        event,
        time(since)?,
        time(until)?,
        event_type,
    );
    let summary =
        revguard_core::usecases::recovery::replay(&store, &store, &store, &selection).await?;
    let mut line = serde_json::to_value(&summary)?;
    apply.apply(&store, &db, &mut line).await?;
    println!("{line}");
    Ok(ExitCode::SUCCESS)
}
