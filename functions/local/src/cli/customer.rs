//! `revguard customer`: one customer's subscriptions, access verdict and open dunning
//! cases.

use std::process::ExitCode;

use clap::Args;
use revguard_local::unix_now;

use super::args::{open_existing, AccountArg, DbArg, PolicyArgs};

#[derive(Args)]
pub struct CustomerArgs {
    pub id: String,
    #[command(flatten)]
    pub db: DbArg,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub account: AccountArg,
}

pub async fn run(args: CustomerArgs) -> anyhow::Result<ExitCode> {
    let CustomerArgs {
        id,
        db,
        policy,
        account,
    } = args;
    let store = open_existing(&db)?;
    let view = store.customer_view(&account.account()?, &id, unix_now(), &policy.policy()?)?;
    println!("{}", serde_json::to_string_pretty(&view)?);
    Ok(ExitCode::SUCCESS)
}
