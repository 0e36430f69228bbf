//! `revguard reconcile`: compare revguard's subscriptions with Stripe's, and optionally fix them.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use revguard_local::unix_now;

use super::args::{open_existing, ApplyArgs, DbArg, StripeArgs};

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
}

pub async fn run(args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let ReconcileArgs {
        db,
        stripe,
        fix,
        alert_threshold,
        report,
        apply,
    } = args;
    let api = stripe.client()?;
    let store = open_existing(&db)?;
    let now = unix_now();
    let ingress = revguard_local::recover::fetched_ingress(&store);
    let settings = revguard_core::usecases::recovery::ReconcileSettings {
        fix,
        drift_alert_threshold: alert_threshold,
    };
    let result = revguard_core::usecases::recovery::reconcile_and_alert(
        &api,
        &store,
        &ingress,
        &store,
        &apply.policy.policy()?,
        settings,
        now,
    )
    .await?;
    if let Some(path) = report {
        std::fs::write(
            &path,
            revguard_local::recover::report_markdown(&result, now),
        )
        .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let mut line = result.summary(fix);
    if fix {
        apply.apply(&store, &db, &mut line).await?;
    }
    println!("{line}");
    Ok(ExitCode::SUCCESS)
}
