//! `revguard detect`: one detector run as of a moment, printed, writing nothing.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use revguard_local::parse_time;

use super::args::{open_existing, DbArg, StripeArgs};

#[derive(Args)]
pub struct DetectArgs {
    #[arg(long)]
    pub at: String,
    #[command(flatten)]
    pub db: DbArg,
    /// With a key, the completeness audit compares Stripe's events with the log.
    #[command(flatten)]
    pub stripe: StripeArgs,
}

pub async fn run(args: DetectArgs) -> anyhow::Result<ExitCode> {
    let DetectArgs { at, db, stripe } = args;
    let store = open_existing(&db)?;
    let now = parse_time(&at).with_context(|| format!("not a time: {at}"))?;
    // Counting only what had been received by then; writes nothing.
    let mut detector = revguard_local::detector::detector(
        &store,
        revguard_core::domain::detector::DetectConfig::default(),
        revguard_local::chat::AlertPublisher::log_only(),
        revguard_local::publish::JsonlPublisher::log_only("notification"),
    );
    detector.counters.received_before = Some(now);
    if stripe
        .stripe_key
        .as_deref()
        .is_some_and(|k| !k.trim().is_empty())
    {
        detector.audit = Some(revguard_core::usecases::recovery::StripeAudit {
            api: stripe.client()?,
            log: store.clone(),
            endpoint_url: stripe.webhook_url.clone(),
            eventbridge_source: None,
        });
    }
    let plan = detector.plan(now).await?;
    let (findings, changes) = (plan.findings, plan.changes);
    for f in findings {
        println!("{}", serde_json::json!({ "finding": f }));
    }
    for c in changes.iter().filter(|c| c.transition.is_published()) {
        let m = revguard_core::domain::detector::alerts::render(c);
        if revguard_core::domain::audience::reaches_on_call(&m.signal) {
            println!(
                "{}",
                serde_json::json!({ "transition": m.transition, "alert_id": m.alert_id, "severity": m.severity, "subject": m.subject, "sms": m.sms })
            );
        } else if m.transition == revguard_core::domain::detector::alerts::Transition::Opened {
            // The team's task (the notifications channel), not an alarm.
            let notice = revguard_core::domain::audience::win_back_notice(&m);
            println!("{}", serde_json::json!({ "notification": notice }));
        }
    }
    Ok(ExitCode::SUCCESS)
}
