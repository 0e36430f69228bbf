//! The argument groups several subcommands share, and the helpers over them.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use revguard_core::domain::billing::BillingPolicy;
use revguard_core::domain::chat::ChatApp;
use revguard_local::chat::ChatWebhook;
use revguard_local::SqliteStore;

#[derive(Args, Clone)]
pub struct DbArg {
    /// The SQLite database file.
    #[arg(long, env = "REVGUARD_DB", default_value = "revguard.db")]
    pub db: PathBuf,
}

/// Whose billing a command is about (Connect).
#[derive(Args, Clone)]
pub struct AccountArg {
    /// A connected account (`acct_…`); the platform's own account if absent (`all`: the
    /// whole platform, where the command adds accounts up).
    #[arg(long)]
    pub account: Option<String>,
}

impl AccountArg {
    pub fn scope(&self) -> anyhow::Result<revguard_core::ports::Scope> {
        Ok(revguard_core::ports::Scope::parse(self.account.as_deref())?)
    }

    /// One account: `all` is refused where a command reads one account's items.
    pub fn account(&self) -> anyhow::Result<revguard_core::ports::Account> {
        self.scope()?
            .account()
            .context("--account all names no one account here: give an acct_… id")
    }
}

/// Opens the database at `--db`, which must exist already.
pub fn open_existing(db: &DbArg) -> anyhow::Result<SqliteStore> {
    if !db.db.exists() {
        bail!(
            "no database at {} (start `revguard serve` first, or pass --db)",
            db.db.display()
        );
    }
    Ok(SqliteStore::open(&db.db)?)
}

/// Where Stripe's API is, and the key to read it with.
#[derive(Args, Clone)]
pub struct StripeArgs {
    /// Stripe's API (a test double in tests).
    #[arg(long, env = "STRIPE_API_BASE", default_value = revguard_stripe::DEFAULT_API_BASE)]
    pub stripe_api_base: String,
    /// A secret or restricted key (read-only suffices: see docs/recovery.md).
    #[arg(long, env = "STRIPE_API_KEY", hide_env_values = true)]
    pub stripe_key: Option<String>,
    /// The URL Stripe delivers revguard's webhooks to: the endpoint audit then judges the
    /// endpoints with that URL (without it, every endpoint of the account together).
    #[arg(long, env = "REVGUARD_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
}

impl StripeArgs {
    pub fn client(&self) -> anyhow::Result<revguard_stripe::StripeClient> {
        Ok(revguard_stripe::StripeClient::from_env(
            Some(&self.stripe_api_base),
            self.stripe_key.as_deref(),
        )?)
    }
}

/// Who applies what a recovery command enqueued.
#[derive(Args, Clone)]
pub struct ApplyArgs {
    /// Leave what was enqueued to the worker of a running `revguard serve` on the same
    /// database; by default this command applies it before it exits.
    #[arg(long)]
    pub enqueue_only: bool,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Notifications as JSON lines; defaults to revguard-notifications.jsonl beside --db.
    #[arg(long, env = "REVGUARD_NOTIFICATIONS_FILE")]
    pub notifications_file: Option<PathBuf>,
}

impl ApplyArgs {
    /// Applies what is queued unless told not to; adds `consumed` to the summary.
    pub async fn apply(
        &self,
        store: &SqliteStore,
        db: &DbArg,
        summary: &mut serde_json::Value,
    ) -> anyhow::Result<()> {
        if self.enqueue_only {
            return Ok(());
        }
        let file = self
            .notifications_file
            .clone()
            .unwrap_or_else(|| db.db.with_file_name("revguard-notifications.jsonl"));
        let consumed =
            revguard_local::recover::apply_queued(store, self.policy.policy()?, &file).await?;
        summary["consumed"] = consumed.into();
        Ok(())
    }
}

#[derive(Args, Clone)]
pub struct PolicyArgs {
    /// Days a past-due customer keeps access.
    #[arg(long, env = "REVGUARD_GRACE_DAYS", default_value_t = 7)]
    pub grace_days: i64,
    /// The failed attempt from which a dunning case is at final_warning.
    #[arg(long, env = "REVGUARD_FINAL_WARNING_ATTEMPT", default_value_t = 3)]
    pub final_warning_attempt: i64,
    /// Suspend access on an open or lost dispute (otherwise: flagged only).
    #[arg(long, env = "REVGUARD_SUSPEND_ON_DISPUTE")]
    pub suspend_on_dispute: bool,
    /// Announce successful payments of at least this many minor units (0: off).
    #[arg(
        long,
        env = "REVGUARD_LARGE_PAYMENT_MINOR_UNITS",
        default_value_t = 100_000
    )]
    pub large_payment_minor_units: i64,
    /// Alert on a single refund of at least this many minor units (0: off).
    #[arg(
        long,
        env = "REVGUARD_LARGE_REFUND_MINOR_UNITS",
        default_value_t = 50_000
    )]
    pub large_refund_minor_units: i64,
    /// Alert on two equal charges to one customer within this many seconds.
    #[arg(long, env = "REVGUARD_DUPLICATE_CHARGE_SECS", default_value_t = 600)]
    pub duplicate_charge_secs: i64,
    /// Days after a cancellation when a customer not subscribed again gets a win-back
    /// notice (0: off).
    #[arg(long, env = "REVGUARD_WIN_BACK_DAYS", default_value_t = 14)]
    pub win_back_days: i64,
    /// A JSON file replacing the built-in customer-facing dunning drafts (see
    /// docs/state-and-dunning.md).
    #[arg(long, env = "REVGUARD_DUNNING_TEMPLATES")]
    pub dunning_templates: Option<PathBuf>,
}

impl PolicyArgs {
    pub fn policy(&self) -> anyhow::Result<BillingPolicy> {
        let dunning_drafts = match &self.dunning_templates {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                revguard_core::domain::billing::drafts::DunningDrafts::from_json(&text)
                    .with_context(|| format!("in {}", path.display()))?
            }
            None => Default::default(),
        };
        Ok(BillingPolicy {
            final_warning_attempt: self.final_warning_attempt,
            grace_days: self.grace_days,
            suspend_on_dispute: self.suspend_on_dispute,
            large_payment_minor_units: self.large_payment_minor_units,
            large_refund_minor_units: self.large_refund_minor_units,
            duplicate_charge_secs: self.duplicate_charge_secs,
            win_back_days: self.win_back_days,
            dunning_drafts,
        })
    }
}

/// Where alert transitions are posted in chat (`serve`, `chat-test`).
#[derive(Args)]
pub struct ChatArgs {
    /// A Slack incoming-webhook URL: alert transitions are posted there (a secret).
    #[arg(long, env = "REVGUARD_SLACK_WEBHOOK_URL", hide_env_values = true)]
    pub slack_webhook_url: Option<String>,
    /// A Microsoft Teams incoming-webhook (or Workflows webhook) URL, likewise.
    #[arg(long, env = "REVGUARD_TEAMS_WEBHOOK_URL", hide_env_values = true)]
    pub teams_webhook_url: Option<String>,
    /// A link to a dashboard, shown in chat messages.
    #[arg(long, env = "REVGUARD_DASHBOARD_URL")]
    pub dashboard_url: Option<String>,
}

/// Paging and email (`serve`).
#[derive(Args)]
pub struct DeliveryArgs {
    /// A PagerDuty service's Events API v2 integration key: alert transitions page it,
    /// one incident per alert (a secret).
    #[arg(long, env = "REVGUARD_PAGERDUTY_ROUTING_KEY", hide_env_values = true)]
    pub pagerduty_routing_key: Option<String>,
    /// PagerDuty's Events API URL (PagerDuty's own by default).
    #[arg(long, env = "REVGUARD_PAGERDUTY_EVENTS_URL")]
    pub pagerduty_events_url: Option<String>,
    /// The SMTP server: smtps://user:password@host, or smtp://user:password@host:587?tls=required
    /// for STARTTLS; plain smtp:// only to a relay on this machine (a secret).
    #[arg(long, env = "REVGUARD_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// The sender of revguard's email.
    #[arg(long, env = "REVGUARD_EMAIL_FROM", default_value = "")]
    pub email_from: String,
    /// Who is emailed alert transitions (on call), comma-separated.
    #[arg(long, env = "REVGUARD_ALERTS_EMAIL_TO", default_value = "")]
    pub alerts_email_to: String,
    /// Who is emailed notifications (dunning stages, churn, win-backs), comma-separated.
    #[arg(long, env = "REVGUARD_TEAM_EMAIL_TO", default_value = "")]
    pub team_email_to: String,
    /// Who is emailed the billing digest (finance, founders), comma-separated.
    #[arg(long, env = "REVGUARD_DIGEST_EMAIL_TO", default_value = "")]
    pub digest_email_to: String,
}

impl DeliveryArgs {
    pub fn destinations(
        &self,
        webhooks: Vec<ChatWebhook>,
    ) -> anyhow::Result<revguard_local::chat::Destinations> {
        use revguard_local::email::{EmailConfigError, Recipients, Smtp};
        let pagerduty = self
            .pagerduty_routing_key
            .as_deref()
            .filter(|k| !k.trim().is_empty())
            .map(|key| {
                revguard_local::chat::PagerDuty::new(
                    key,
                    self.pagerduty_events_url
                        .as_deref()
                        .filter(|u| !u.trim().is_empty()),
                )
            })
            .transpose()?;
        let email = match self.smtp_url.as_deref().filter(|u| !u.trim().is_empty()) {
            None => None,
            Some(url) => {
                let to = Recipients::parse(
                    &self.alerts_email_to,
                    &self.team_email_to,
                    &self.digest_email_to,
                )?;
                if to.is_empty() || self.email_from.trim().is_empty() {
                    return Err(EmailConfigError::Incomplete.into());
                }
                let smtp = Smtp::new(url, &self.email_from, std::time::Duration::from_secs(30))?;
                Some((smtp, to))
            }
        };
        Ok(revguard_local::chat::Destinations {
            webhooks,
            pagerduty,
            email,
        })
    }
}

impl ChatArgs {
    /// The configured incoming webhooks (an empty value is none).
    pub fn webhooks(&self) -> Result<Vec<ChatWebhook>, revguard_local::chat::ChatConfigError> {
        let mut out = Vec::new();
        for (app, url) in [
            (ChatApp::Slack, &self.slack_webhook_url),
            (ChatApp::Teams, &self.teams_webhook_url),
        ] {
            if let Some(url) = url.as_deref().filter(|u| !u.trim().is_empty()) {
                out.push(ChatWebhook::parse(app, url)?);
            }
        }
        Ok(out)
    }
}

pub fn parse_period(s: &str) -> Result<revguard_core::usecases::digest::Period, String> {
    revguard_core::usecases::digest::Period::parse(s)
        .ok_or_else(|| format!("expected day or week, got {s:?}"))
}
