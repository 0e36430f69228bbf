//! `revguard dunning`: dunning cases as JSON lines.

use std::process::ExitCode;

use clap::Args;

use super::args::{open_existing, AccountArg, DbArg, PolicyArgs};

#[derive(Args)]
pub struct DunningArgs {
    #[arg(long, default_value = "open")]
    pub status: String,
    #[command(flatten)]
    pub db: DbArg,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub account: AccountArg,
}

pub async fn run(args: DunningArgs) -> anyhow::Result<ExitCode> {
    let DunningArgs {
        status,
        db,
        policy,
        account,
    } = args;
    let store = open_existing(&db)?;
    for case in store.dunning_cases(&account.account()?, Some(&status), &policy.policy()?)? {
        println!("{}", serde_json::to_string(&case)?);
    }
    Ok(ExitCode::SUCCESS)
}
