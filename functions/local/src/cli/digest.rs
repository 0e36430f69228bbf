//! `revguard digest`: the billing digest of the last complete day or week.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use revguard_local::{parse_time, unix_now};

use super::args::{open_existing, parse_period, DbArg};

#[derive(Args)]
pub struct DigestArgs {
    /// day or week.
    #[arg(long, default_value = "day", value_parser = parse_period)]
    pub period: revguard_core::usecases::digest::Period,
    /// A moment (RFC 3339 or unix seconds); default now.
    #[arg(long)]
    pub at: Option<String>,
    /// live or test.
    #[arg(long, default_value = "live", value_parser = ["live", "test"])]
    pub mode: String,
    /// Print the digest as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub db: DbArg,
}

pub async fn run(args: DigestArgs) -> anyhow::Result<ExitCode> {
    let DigestArgs {
        period,
        at,
        mode,
        json,
        db,
    } = args;
    let store = open_existing(&db)?;
    let at = match at {
        Some(at) => parse_time(&at).with_context(|| format!("not a time: {at}"))?,
        None => unix_now(),
    };
    let d = revguard_core::usecases::digest::digest(
        &store,
        &store,
        &revguard_core::domain::billing::BillingPolicy::default(),
        period,
        at,
        mode == "live",
    )
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        print!("{}", d.text());
    }
    Ok(ExitCode::SUCCESS)
}
