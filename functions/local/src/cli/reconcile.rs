//! `revguard reconcile`: compare revguard's subscriptions with Stripe's, and optionally fix them.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use revguard_local::unix_now;

use super::args::{open_existing, AccountArg, ApplyArgs, DbArg, StripeArgs};

#[derive(Args)]
pub struct ReconcileArgs {
    #[command(flatten)]
    pub db: DbArg,
    #[command(flatten)]
    pub stripe: StripeArgs,
    /// Apply Stripe's current object to every missing or drifted subscription.
    #[arg(long)]
    pub fix: bool,
    /// Subscriptions and dunning cases differing from Stripe from which the run leaves
    /// a `reconcile_drift` finding, which the server's detector raises as an alert on
    /// its next run (0: never), as the scheduled reconciliation on AWS does.
    #[arg(long, env = "REVGUARD_RECONCILE_ALERT_THRESHOLD", default_value_t = 1)]
    pub alert_threshold: usize,
    /// Also write a readable report (Markdown) here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    #[command(flatten)]
    pub apply: ApplyArgs,
    /// Only this account (`acct_…`, or `platform`); without it, every account revguard
    /// holds subscriptions of, the platform's own first, one summary line each.
    #[command(flatten)]
    pub account: AccountArg,
}

pub async fn run(args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let ReconcileArgs {
        db,
        stripe,
        fix,
        alert_threshold,
        report,
        apply,
        account,
    } = args;
    let api = stripe.client()?;
    let store = open_existing(&db)?;
    let now = unix_now();
    let ingress = revguard_local::recover::fetched_ingress(&store);
    let settings = revguard_core::usecases::recovery::ReconcileSettings {
        fix,
        drift_alert_threshold: alert_threshold,
    };
    let policy = apply.policy.policy()?;
    let results = match account.account {
        Some(_) => {
            let held = revguard_core::usecases::recovery::Holdings::of(&store, &account.account()?)
                .await?;
            let one = revguard_core::usecases::recovery::reconcile_and_alert(
                &api, &store, &ingress, &store, &policy, settings, &held, now,
            )
            .await?;
            vec![(held.account, Ok(one))]
        }
        None => {
            let every = revguard_core::usecases::recovery::reconcile_every_account(
                &api, &store, &ingress, &store, &policy, settings, now,
            )
            .await?;
            every
                .reports
                .into_iter()
                .map(|(a, r)| (a, Ok(r)))
                .chain(every.failed.into_iter().map(|(a, e)| (a, Err(e))))
                .collect()
        }
    };
    if let Some(path) = report {
        let mut all = revguard_core::usecases::recovery::ReconcileReport::default();
        for r in results.iter().filter_map(|(_, r)| r.as_ref().ok()) {
            all.merge(r.clone());
        }
        std::fs::write(&path, revguard_local::recover::report_markdown(&all, now))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    // One line per account, the platform's own first; a connected account that failed
    // says why.
    let mut lines: Vec<serde_json::Value> = results
        .iter()
        .map(|(account, r)| {
            let mut line = match r {
                Ok(r) => r.summary(fix),
                Err(e) => serde_json::json!({ "error": e }),
            };
            if let Some(id) = account.id() {
                line["account"] = id.into();
            }
            line
        })
        .collect();
    if fix {
        // The fixes were enqueued for every account: one apply serves them all.
        if let Some(first) = lines.first_mut() {
            apply.apply(&store, &db, first).await?;
        }
    }
    for line in lines {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
