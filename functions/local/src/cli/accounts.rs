//! `revguard accounts`: every account seen (Connect), the platform's own first, as JSON
//! lines: its MRR, open dunning cases and open alerts.

use std::process::ExitCode;

use clap::Args;
use revguard_local::unix_now;

use super::args::{open_existing, DbArg};

#[derive(Args)]
pub struct AccountsArgs {
    #[command(flatten)]
    pub db: DbArg,
}

pub async fn run(args: AccountsArgs) -> anyhow::Result<ExitCode> {
    let store = open_existing(&args.db)?;
    for account in store.accounts(unix_now())? {
        println!("{}", serde_json::to_string(&account)?);
    }
    Ok(ExitCode::SUCCESS)
}
