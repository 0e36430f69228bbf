//! `revguard serve`: the webhook server on the embedded SQLite store, with its worker,
//! detector, digests and deliveries.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use revguard_core::domain::signature::DEFAULT_TOLERANCE_SECS;
use revguard_core::usecases::ingest::{DEFAULT_EVENT_TTL_SECS, DEFAULT_MAX_BODY_BYTES};
use revguard_core::{ModeFilter, SecretSet};
use revguard_local::serve::{serve, shutdown_signal, ServeOptions};
use revguard_local::SqliteStore;

use super::args::{parse_period, ChatArgs, DbArg, DeliveryArgs, PolicyArgs, StripeArgs};

#[derive(Args)]
pub struct ServeArgs {
    #[arg(long, env = "REVGUARD_ADDR", default_value = "127.0.0.1:8787")]
    pub addr: SocketAddr,
    #[command(flatten)]
    pub db: DbArg,
    /// Signing secrets, comma separated; without one a dev secret is generated and kept.
    #[arg(long = "secret", env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Seconds a signature timestamp may differ from now.
    #[arg(long, env = "REVGUARD_SIGNATURE_TOLERANCE_SECS", default_value_t = DEFAULT_TOLERANCE_SECS)]
    pub tolerance_secs: i64,
    /// Largest accepted webhook body, in bytes.
    #[arg(long, env = "REVGUARD_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Days an event id is remembered for de-duplication.
    #[arg(long, env = "REVGUARD_EVENT_TTL_DAYS", default_value_t = DEFAULT_EVENT_TTL_SECS / 86_400)]
    pub event_ttl_days: i64,
    /// Which Stripe modes to accept: both, live or test.
    #[arg(long, env = "REVGUARD_MODES", default_value = "both", value_parser = parse_modes)]
    pub modes: ModeFilter,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Notifications as JSON lines; defaults to revguard-notifications.jsonl beside --db.
    #[arg(long, env = "REVGUARD_NOTIFICATIONS_FILE")]
    pub notifications_file: Option<PathBuf>,
    /// Bearer token for the operator API (/api/…); required for it off loopback.
    #[arg(long, env = "REVGUARD_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Alert transitions as JSON lines; defaults to revguard-alerts.jsonl beside --db.
    #[arg(long, env = "REVGUARD_ALERTS_FILE")]
    pub alerts_file: Option<PathBuf>,
    /// Seconds between anomaly detector runs (0: off).
    #[arg(long, env = "REVGUARD_DETECT_INTERVAL_SECS", default_value_t = 900)]
    pub detect_interval_secs: u64,
    #[command(flatten)]
    pub chat: ChatArgs,
    #[command(flatten)]
    pub deliveries: DeliveryArgs,
    /// Billing digests made on schedule, after each UTC day and each week (from
    /// Monday): `day,week`, one of them, or empty for none.
    #[arg(long, env = "REVGUARD_DIGESTS", default_value = "day,week")]
    pub digests: String,
    /// Digests as JSON lines; defaults to revguard-digests.jsonl beside --db.
    #[arg(long, env = "REVGUARD_DIGESTS_FILE")]
    pub digests_file: Option<PathBuf>,
    /// With a key, each detector run compares Stripe's list of recent events with
    /// the event log (the completeness audit).
    #[command(flatten)]
    pub stripe: StripeArgs,
    /// With a key: after a subscription moves to past_due, unpaid or canceled, or two
    /// of its snapshots tie on `created`, fetch Stripe's current object and apply it.
    #[arg(long, env = "REVGUARD_REQUERY")]
    pub requery: bool,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let ServeArgs {
        addr,
        db,
        secret,
        tolerance_secs,
        max_body_bytes,
        event_ttl_days,
        modes,
        policy,
        notifications_file,
        api_token,
        alerts_file,
        detect_interval_secs,
        chat,
        deliveries,
        digests,
        digests_file,
        stripe,
        requery,
    } = args;
    let destinations = deliveries.destinations(chat.webhooks()?)?;
    let dashboard_url = chat.dashboard_url;
    let secrets = secret
        .map(|s| SecretSet::parse(&s))
        .transpose()
        .context("STRIPE_WEBHOOK_SECRET")?;
    let store = SqliteStore::open(&db.db)?;
    let options = ServeOptions {
        addr,
        secrets,
        tolerance_secs,
        max_body_bytes,
        event_ttl_secs: event_ttl_days * 86_400,
        modes,
        policy: policy.policy()?,
        notifications_file: notifications_file
            .unwrap_or_else(|| db.db.with_file_name("revguard-notifications.jsonl")),
        api_token: api_token.filter(|t| !t.is_empty()),
        alerts_file: alerts_file.unwrap_or_else(|| db.db.with_file_name("revguard-alerts.jsonl")),
        detect_interval_secs,
        detect: revguard_core::domain::detector::DetectConfig::default(),
        destinations,
        digests: parse_periods(&digests)?,
        digests_file: digests_file
            .unwrap_or_else(|| db.db.with_file_name("revguard-digests.jsonl")),
        dashboard_url: dashboard_url.filter(|u| !u.trim().is_empty()),
        stripe: stripe
            .stripe_key
            .as_deref()
            .filter(|k| !k.trim().is_empty())
            .map(|_| stripe.client())
            .transpose()?,
        webhook_url: stripe.webhook_url.clone().filter(|u| !u.trim().is_empty()),
        requery,
    };
    serve(store, options, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

fn parse_modes(s: &str) -> Result<ModeFilter, String> {
    ModeFilter::parse(s).ok_or_else(|| format!("expected both, live or test, got {s:?}"))
}

fn parse_periods(s: &str) -> anyhow::Result<Vec<revguard_core::usecases::digest::Period>> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| parse_period(p).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()
        .context("REVGUARD_DIGESTS")
}
