//! `revguard backfill`: fetch the events Stripe has and revguard missed, and apply them.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use revguard_local::{parse_time, unix_now, SqliteStore};

use revguard_core::ports::StripeApi;

use super::args::{AccountArg, ApplyArgs, DbArg, StripeArgs};

#[derive(Args)]
pub struct BackfillArgs {
    #[command(flatten)]
    pub db: DbArg,
    #[command(flatten)]
    pub stripe: StripeArgs,
    /// Events created from (RFC 3339 or unix seconds); default: where the last backfill
    /// stopped (less 10 minutes), or 3 days ago.
    #[arg(long)]
    pub since: Option<String>,
    /// Events created before this.
    #[arg(long)]
    pub until: Option<String>,
    /// Only events a webhook endpoint has not acknowledged (delivery_success=false).
    /// Blind to events never sent to revguard (an endpoint disabled, a type not
    /// enabled), so off by default.
    #[arg(long)]
    pub undelivered_only: bool,
    #[command(flatten)]
    pub apply: ApplyArgs,
    /// Only this account's events (`acct_…` through `Stripe-Account`, or `platform`);
    /// without it, the platform's own, then every connected account seen, each from its
    /// own cursor.
    #[command(flatten)]
    pub account: AccountArg,
}

pub async fn run(args: BackfillArgs) -> anyhow::Result<ExitCode> {
    let BackfillArgs {
        db,
        stripe,
        since,
        until,
        undelivered_only,
        apply,
        account,
    } = args;
    let api = stripe.client()?;
    let store = SqliteStore::open(&db.db)?;
    let now = unix_now();
    let parse = |t: String| parse_time(&t).with_context(|| format!("not a time: {t}"));
    let since = since.map(parse).transpose()?;
    let until = until.map(parse).transpose()?;
    let query = revguard_core::ports::EventsQuery {
        since: since.unwrap_or(now),
        until,
        undelivered_only,
        types: revguard_core::usecases::recovery::HANDLED_EVENT_TYPES
            .iter()
            .map(|t| t.to_string())
            .collect(),
    };
    let ingress = revguard_local::recover::fetched_ingress(&store);
    // Up to now: an hour at a time from the cursor, which moves after each; a
    // window of the past (--until) leaves the cursor where it is.
    let cursor = revguard_local::recover::StoreCursor(&store);
    let (since, summary) = match account.account {
        // One account, on its behalf.
        Some(_) => {
            revguard_core::usecases::recovery::backfill_from_cursor(
                &api.for_account(&account.account()?),
                &ingress,
                &cursor,
                &query,
                since,
                now,
                &|| true,
            )
            .await?
        }
        // The platform's own, then every connected account seen.
        None => {
            revguard_core::usecases::recovery::backfill_every_account(
                &api,
                &ingress,
                &cursor,
                &store,
                &query,
                since,
                now,
                &|| true,
            )
            .await?
        }
    };
    let mut line = serde_json::to_value(&summary)?;
    line["since"] = since.into();
    apply.apply(&store, &db, &mut line).await?;
    println!("{line}");
    Ok(ExitCode::SUCCESS)
}
