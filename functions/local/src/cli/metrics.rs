//! `revguard metrics`: hourly counters between two times.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use revguard_local::{parse_time, unix_now};

use super::args::{open_existing, AccountArg, DbArg};

#[derive(Args)]
pub struct MetricsArgs {
    #[arg(long)]
    pub from: Option<String>,
    #[arg(long)]
    pub to: Option<String>,
    #[command(flatten)]
    pub db: DbArg,
    #[command(flatten)]
    pub account: AccountArg,
}

pub async fn run(args: MetricsArgs) -> anyhow::Result<ExitCode> {
    let MetricsArgs {
        from,
        to,
        db,
        account,
    } = args;
    let scope = account.scope()?;
    let store = open_existing(&db)?;
    let time = |v: Option<String>, default: i64| -> anyhow::Result<i64> {
        match v {
            None => Ok(default),
            Some(v) => parse_time(&v).with_context(|| format!("not a time: {v}")),
        }
    };
    let now = unix_now();
    for hour in store.metrics(&scope, time(from, now - 24 * 3600)?, time(to, now + 3600)?)? {
        println!("{}", serde_json::to_string(&hour)?);
    }
    Ok(ExitCode::SUCCESS)
}
