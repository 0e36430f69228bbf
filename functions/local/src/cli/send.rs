//! `revguard send`: sign a Stripe event file and POST it to a webhook URL.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use revguard_core::{SecretSet, WebhookSecret};
use revguard_local::serve::DEV_SECRET_KEY;
use revguard_local::{send, unix_now};

use super::args::{open_existing, DbArg};

#[derive(Args)]
pub struct SendArgs {
    /// A JSON Stripe event, e.g. events/invoice.paid.json.
    pub file: String,
    #[arg(long, default_value = "http://127.0.0.1:8787/webhook")]
    pub url: String,
    /// The signing secret; defaults to STRIPE_WEBHOOK_SECRET, then to the dev secret in --db.
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    #[command(flatten)]
    pub db: DbArg,
    /// Give the event a new unique id, so the same file can be sent again.
    #[arg(long)]
    pub fresh_id: bool,
}

pub async fn run(args: SendArgs) -> anyhow::Result<ExitCode> {
    let SendArgs {
        file,
        url,
        secret,
        db,
        fresh_id,
    } = args;
    let secret = match secret {
        // With several configured secrets, the first one signs.
        Some(list) => SecretSet::parse(&list)
            .context("--secret")?
            .iter()
            .next()
            .cloned()
            .context("--secret")?,
        None => {
            let store = open_existing(&db).context(
                "no --secret or STRIPE_WEBHOOK_SECRET, and no dev secret to fall back on",
            )?;
            let stored = store
                .setting(DEV_SECRET_KEY)
                .await?
                .context("the database has no dev secret: pass --secret")?;
            WebhookSecret::new(stored)?
        }
    };
    let prepared = send::prepare(&file, fresh_id)?;
    let client = reqwest::Client::new();
    let answer = send::send(&client, &url, &secret, prepared.body, unix_now()).await?;
    println!("{} {} {}", prepared.event_id, answer.status, answer.body);
    Ok(if (200..300).contains(&answer.status) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
