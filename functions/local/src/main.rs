//! `revguard`: the embedded server and the operator CLI.

use revguard_core::domain::chat::ChatApp;
use revguard_core::domain::detector::alerts::Transition;
use revguard_local::chat::ChatWebhook;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use revguard_core::domain::billing::BillingPolicy;
use revguard_core::domain::signature::DEFAULT_TOLERANCE_SECS;
use revguard_core::usecases::ingest::{DEFAULT_EVENT_TTL_SECS, DEFAULT_MAX_BODY_BYTES};
use revguard_core::{ModeFilter, SecretSet, WebhookSecret};
use revguard_local::serve::{serve, shutdown_signal, ServeOptions, DEV_SECRET_KEY};
use revguard_local::{parse_time, send, unix_now, SqliteStore};

#[derive(Parser)]
#[command(name = "revguard", version, about = "A watchdog for Stripe billing")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct DbArg {
    /// The SQLite database file.
    #[arg(long, env = "REVGUARD_DB", default_value = "revguard.db")]
    db: PathBuf,
}

#[derive(Subcommand)]
// Parsed once at start-up: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Serve Stripe webhooks at POST /webhook on the embedded SQLite store.
    Serve {
        #[arg(long, env = "REVGUARD_ADDR", default_value = "127.0.0.1:8787")]
        addr: SocketAddr,
        #[command(flatten)]
        db: DbArg,
        /// Signing secrets, comma separated; without one a dev secret is generated and kept.
        #[arg(long = "secret", env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// Seconds a signature timestamp may differ from now.
        #[arg(long, env = "REVGUARD_SIGNATURE_TOLERANCE_SECS", default_value_t = DEFAULT_TOLERANCE_SECS)]
        tolerance_secs: i64,
        /// Largest accepted webhook body, in bytes.
        #[arg(long, env = "REVGUARD_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
        max_body_bytes: usize,
        /// Days an event id is remembered for de-duplication.
        #[arg(long, env = "REVGUARD_EVENT_TTL_DAYS", default_value_t = DEFAULT_EVENT_TTL_SECS / 86_400)]
        event_ttl_days: i64,
        /// Which Stripe modes to accept: both, live or test.
        #[arg(long, env = "REVGUARD_MODES", default_value = "both", value_parser = parse_modes)]
        modes: ModeFilter,
        #[command(flatten)]
        policy: PolicyArgs,
        /// Notifications as JSON lines; defaults to revguard-notifications.jsonl beside --db.
        #[arg(long, env = "REVGUARD_NOTIFICATIONS_FILE")]
        notifications_file: Option<PathBuf>,
        /// Bearer token for the operator API (/api/…); required for it off loopback.
        #[arg(long, env = "REVGUARD_API_TOKEN", hide_env_values = true)]
        api_token: Option<String>,
        /// Alert transitions as JSON lines; defaults to revguard-alerts.jsonl beside --db.
        #[arg(long, env = "REVGUARD_ALERTS_FILE")]
        alerts_file: Option<PathBuf>,
        /// Seconds between anomaly detector runs (0: off).
        #[arg(long, env = "REVGUARD_DETECT_INTERVAL_SECS", default_value_t = 900)]
        detect_interval_secs: u64,
        #[command(flatten)]
        chat: ChatArgs,
        #[command(flatten)]
        deliveries: DeliveryArgs,
        /// Billing digests made on schedule, after each UTC day and each week (from
        /// Monday): `day,week`, one of them, or empty for none.
        #[arg(long, env = "REVGUARD_DIGESTS", default_value = "day,week")]
        digests: String,
        /// Digests as JSON lines; defaults to revguard-digests.jsonl beside --db.
        #[arg(long, env = "REVGUARD_DIGESTS_FILE")]
        digests_file: Option<PathBuf>,
        /// With a key, each detector run compares Stripe's list of recent events with
        /// the event log (the completeness audit).
        #[command(flatten)]
        stripe: StripeArgs,
        /// With a key: after a subscription moves to past_due, unpaid or canceled, or two
        /// of its snapshots tie on `created`, fetch Stripe's current object and apply it.
        #[arg(long, env = "REVGUARD_REQUERY")]
        requery: bool,
    },
    /// A customer's subscriptions, access verdict and open dunning cases, as JSON.
    Customer {
        id: String,
        #[command(flatten)]
        db: DbArg,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Dunning cases as JSON lines: --status open (default), closed, all, or a stage.
    Dunning {
        #[arg(long, default_value = "open")]
        status: String,
        #[command(flatten)]
        db: DbArg,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Hourly counters between two times (RFC 3339 or unix seconds), as JSON lines.
    Metrics {
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        db: DbArg,
    },
    /// Sign a Stripe event file and POST it to a webhook URL.
    Send {
        /// A JSON Stripe event, e.g. events/invoice.paid.json.
        file: String,
        #[arg(long, default_value = "http://127.0.0.1:8787/webhook")]
        url: String,
        /// The signing secret; defaults to STRIPE_WEBHOOK_SECRET, then to the dev secret in --db.
        #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
        secret: Option<String>,
        #[command(flatten)]
        db: DbArg,
        /// Give the event a new unique id, so the same file can be sent again.
        #[arg(long)]
        fresh_id: bool,
    },
    /// List the events waiting in the embedded queue, one JSON object per line.
    Queue {
        #[command(flatten)]
        db: DbArg,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Run the anomaly detector once as of a moment (RFC 3339 or unix seconds), counting
    /// only what had been received by then; print findings and the alert transitions it
    /// would make as JSON lines. Writes nothing.
    Detect {
        #[arg(long)]
        at: String,
        #[command(flatten)]
        db: DbArg,
        /// With a key, the completeness audit compares Stripe's events with the log.
        #[command(flatten)]
        stripe: StripeArgs,
    },
    /// The billing digest for finance: the last complete UTC day or week (from Monday)
    /// before --at (default now), in one mode: MRR and its movements, payments, refunds,
    /// disputes, dunning and the recovery rate (its definition printed with it). Writes
    /// nothing.
    Digest {
        /// day or week.
        #[arg(long, default_value = "day", value_parser = parse_period)]
        period: revguard_core::usecases::digest::Period,
        /// A moment (RFC 3339 or unix seconds); default now.
        #[arg(long)]
        at: Option<String>,
        /// live or test.
        #[arg(long, default_value = "live", value_parser = ["live", "test"])]
        mode: String,
        /// Print the digest as JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArg,
    },
    /// Show a sample alert as Slack, Teams and AWS Chatbot get it; with webhook URLs, post
    /// it to them once, to check the setup.
    ChatTest {
        #[command(flatten)]
        chat: ChatArgs,
        /// The transition shown: opened, escalated, reminder or resolved.
        #[arg(long, default_value = "opened", value_parser = parse_transition)]
        transition: Transition,
    },
    /// The whole pipeline on a simulated clock: 9 days of seeded synthetic traffic with
    /// incidents on the last day, through the real ingress, worker and detector.
    Demo {
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 400)]
        customers: usize,
        /// Keep the demo's database here (for `revguard detect --at` or the API).
        #[arg(long = "keep-db")]
        keep_db: Option<PathBuf>,
        /// Only build the database (with --keep-db): no detection, no timeline.
        #[arg(long)]
        replay_only: bool,
    },
    /// Print the event log's counts by status and the queue depth as JSON.
    Status {
        #[command(flatten)]
        db: DbArg,
    },
    /// Fetch the events Stripe has and revguard missed (GET /v1/events) and apply them as
    /// if they had been delivered; events already seen are duplicates. Prints a JSON line.
    Backfill {
        #[command(flatten)]
        db: DbArg,
        #[command(flatten)]
        stripe: StripeArgs,
        /// Events created from (RFC 3339 or unix seconds); default: where the last backfill
        /// stopped (less 10 minutes), or 3 days ago.
        #[arg(long)]
        since: Option<String>,
        /// Events created before this.
        #[arg(long)]
        until: Option<String>,
        /// Only events a webhook endpoint has not acknowledged (delivery_success=false).
        /// Blind to events never sent to revguard (an endpoint disabled, a type not
        /// enabled), so off by default.
        #[arg(long)]
        undelivered_only: bool,
        #[command(flatten)]
        apply: ApplyArgs,
    },
    /// Compare revguard's subscriptions with Stripe's (GET /v1/subscriptions?status=all):
    /// missing, extra and drifted. Prints a JSON line; --fix applies Stripe's objects.
    Reconcile {
        #[command(flatten)]
        db: DbArg,
        #[command(flatten)]
        stripe: StripeArgs,
        /// Apply Stripe's current object to every missing or drifted subscription.
        #[arg(long)]
        fix: bool,
        /// Subscriptions and dunning cases differing from Stripe from which the run leaves
        /// a `reconcile_drift` finding, which the server's detector raises as an alert on
        /// its next run (0: never), as the scheduled reconciliation on AWS does.
        #[arg(long, env = "REVGUARD_RECONCILE_ALERT_THRESHOLD", default_value_t = 1)]
        alert_threshold: usize,
        /// Also write a readable report (Markdown) here.
        #[arg(long)]
        report: Option<PathBuf>,
        #[command(flatten)]
        apply: ApplyArgs,
    },
    /// Send logged events through the queue again: one (--event) or those created in a
    /// window, optionally of one type. Events already applied are reported, not sent.
    Replay {
        #[command(flatten)]
        db: DbArg,
        #[arg(long, conflicts_with_all = ["since", "until"], required_unless_present = "since")]
        event: Option<String>,
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long = "type")]
        event_type: Option<String>,
        #[command(flatten)]
        apply: ApplyArgs,
    },
    /// Messages the worker could not apply: list, show one, or redrive them to the queue.
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetterAction,
    },
}

#[derive(Subcommand)]
enum DeadLetterAction {
    /// One JSON line per dead letter: id, event, error, receive count, when.
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        db: DbArg,
    },
    /// One dead letter with its message body.
    Show {
        id: String,
        #[command(flatten)]
        db: DbArg,
    },
    /// Move dead letters back to the queue (after the cause is fixed): the ids given, or
    /// --all.
    Redrive {
        #[arg(required_unless_present = "all")]
        ids: Vec<String>,
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        #[command(flatten)]
        db: DbArg,
        #[command(flatten)]
        apply: ApplyArgs,
    },
}

/// Where Stripe's API is, and the key to read it with.
#[derive(Args, Clone)]
struct StripeArgs {
    /// Stripe's API (a test double in tests).
    #[arg(long, env = "STRIPE_API_BASE", default_value = revguard_stripe::DEFAULT_API_BASE)]
    stripe_api_base: String,
    /// A secret or restricted key (read-only suffices: see the README).
    #[arg(long, env = "STRIPE_API_KEY", hide_env_values = true)]
    stripe_key: Option<String>,
    /// The URL Stripe delivers revguard's webhooks to: the endpoint audit then judges the
    /// endpoints with that URL (without it, every endpoint of the account together).
    #[arg(long, env = "REVGUARD_WEBHOOK_URL")]
    webhook_url: Option<String>,
}

impl StripeArgs {
    fn client(&self) -> anyhow::Result<revguard_stripe::StripeClient> {
        Ok(revguard_stripe::StripeClient::from_env(
            Some(&self.stripe_api_base),
            self.stripe_key.as_deref(),
        )?)
    }
}

/// Who applies what a recovery command enqueued.
#[derive(Args, Clone)]
struct ApplyArgs {
    /// Leave what was enqueued to the worker of a running `revguard serve` on the same
    /// database; by default this command applies it before it exits.
    #[arg(long)]
    enqueue_only: bool,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Notifications as JSON lines; defaults to revguard-notifications.jsonl beside --db.
    #[arg(long, env = "REVGUARD_NOTIFICATIONS_FILE")]
    notifications_file: Option<PathBuf>,
}

impl ApplyArgs {
    /// Applies what is queued unless told not to; adds `consumed` to the summary.
    async fn apply(
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
struct PolicyArgs {
    /// Days a past-due customer keeps access.
    #[arg(long, env = "REVGUARD_GRACE_DAYS", default_value_t = 7)]
    grace_days: i64,
    /// The failed attempt from which a dunning case is at final_warning.
    #[arg(long, env = "REVGUARD_FINAL_WARNING_ATTEMPT", default_value_t = 3)]
    final_warning_attempt: i64,
    /// Suspend access on an open or lost dispute (otherwise: flagged only).
    #[arg(long, env = "REVGUARD_SUSPEND_ON_DISPUTE")]
    suspend_on_dispute: bool,
    /// Announce successful payments of at least this many minor units (0: off).
    #[arg(
        long,
        env = "REVGUARD_LARGE_PAYMENT_MINOR_UNITS",
        default_value_t = 100_000
    )]
    large_payment_minor_units: i64,
    /// Alert on a single refund of at least this many minor units (0: off).
    #[arg(
        long,
        env = "REVGUARD_LARGE_REFUND_MINOR_UNITS",
        default_value_t = 50_000
    )]
    large_refund_minor_units: i64,
    /// Alert on two equal charges to one customer within this many seconds.
    #[arg(long, env = "REVGUARD_DUPLICATE_CHARGE_SECS", default_value_t = 600)]
    duplicate_charge_secs: i64,
    /// Days after a cancellation when a customer not subscribed again gets a win-back
    /// notice (0: off).
    #[arg(long, env = "REVGUARD_WIN_BACK_DAYS", default_value_t = 14)]
    win_back_days: i64,
    /// A JSON file replacing the built-in customer-facing dunning drafts (see the README).
    #[arg(long, env = "REVGUARD_DUNNING_TEMPLATES")]
    dunning_templates: Option<PathBuf>,
}

impl PolicyArgs {
    fn policy(&self) -> anyhow::Result<BillingPolicy> {
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
struct ChatArgs {
    /// A Slack incoming-webhook URL: alert transitions are posted there (a secret).
    #[arg(long, env = "REVGUARD_SLACK_WEBHOOK_URL", hide_env_values = true)]
    slack_webhook_url: Option<String>,
    /// A Microsoft Teams incoming-webhook (or Workflows webhook) URL, likewise.
    #[arg(long, env = "REVGUARD_TEAMS_WEBHOOK_URL", hide_env_values = true)]
    teams_webhook_url: Option<String>,
    /// A link to a dashboard, shown in chat messages.
    #[arg(long, env = "REVGUARD_DASHBOARD_URL")]
    dashboard_url: Option<String>,
}

/// Paging and email (`serve`).
#[derive(Args)]
struct DeliveryArgs {
    /// A PagerDuty service's Events API v2 integration key: alert transitions page it,
    /// one incident per alert (a secret).
    #[arg(long, env = "REVGUARD_PAGERDUTY_ROUTING_KEY", hide_env_values = true)]
    pagerduty_routing_key: Option<String>,
    /// PagerDuty's Events API URL (PagerDuty's own by default).
    #[arg(long, env = "REVGUARD_PAGERDUTY_EVENTS_URL")]
    pagerduty_events_url: Option<String>,
    /// The SMTP server: smtps://user:password@host, or smtp://user:password@host:587?tls=required
    /// for STARTTLS; plain smtp:// only to a relay on this machine (a secret).
    #[arg(long, env = "REVGUARD_SMTP_URL", hide_env_values = true)]
    smtp_url: Option<String>,
    /// The sender of revguard's email.
    #[arg(long, env = "REVGUARD_EMAIL_FROM", default_value = "")]
    email_from: String,
    /// Who is emailed alert transitions (on call), comma-separated.
    #[arg(long, env = "REVGUARD_ALERTS_EMAIL_TO", default_value = "")]
    alerts_email_to: String,
    /// Who is emailed notifications (dunning stages, churn, win-backs), comma-separated.
    #[arg(long, env = "REVGUARD_TEAM_EMAIL_TO", default_value = "")]
    team_email_to: String,
    /// Who is emailed the billing digest (finance, founders), comma-separated.
    #[arg(long, env = "REVGUARD_DIGEST_EMAIL_TO", default_value = "")]
    digest_email_to: String,
}

impl DeliveryArgs {
    fn destinations(
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
    fn webhooks(&self) -> Result<Vec<ChatWebhook>, revguard_local::chat::ChatConfigError> {
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

fn parse_transition(s: &str) -> Result<Transition, String> {
    serde_json::from_value::<Transition>(serde_json::Value::String(s.to_owned()))
        .ok()
        .filter(|t| t.is_published())
        .ok_or_else(|| format!("expected opened, escalated, reminder or resolved, got {s:?}"))
}

fn parse_period(s: &str) -> Result<revguard_core::usecases::digest::Period, String> {
    revguard_core::usecases::digest::Period::parse(s)
        .ok_or_else(|| format!("expected day or week, got {s:?}"))
}

fn parse_periods(s: &str) -> anyhow::Result<Vec<revguard_core::usecases::digest::Period>> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| parse_period(p).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()
        .context("REVGUARD_DIGESTS")
}

fn parse_modes(s: &str) -> Result<ModeFilter, String> {
    ModeFilter::parse(s).ok_or_else(|| format!("expected both, live or test, got {s:?}"))
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("REVGUARD_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

// jemalloc: glibc's malloc spent a sixth of the server's time under Stripe's renewal mix
// consolidating and splitting chunks (payload-sized buffers among small ones). With it
// the mix runs about 9 % faster at the same peak memory.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// Peak memory, measured on the renewal mix (28.7–30.4 MB with jemalloc's defaults, 26.5–27.2
// with these, at the same speed): one arena, since the server's threads share a core or
// two and each arena keeps dirty pages of its own; a thread cache for small sizes only;
// freed pages returned within half a second.
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: Option<&'static std::ffi::c_char> =
    // SAFETY: a pointer to the first byte of a static, NUL-terminated string.
    Some(unsafe {
        &*c"narenas:1,tcache_max:4096,dirty_decay_ms:500,muzzy_decay_ms:0".as_ptr()
    });

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("revguard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn open_existing(db: &DbArg) -> anyhow::Result<SqliteStore> {
    if !db.db.exists() {
        bail!(
            "no database at {} (start `revguard serve` first, or pass --db)",
            db.db.display()
        );
    }
    Ok(SqliteStore::open(&db.db)?)
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve {
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
        } => {
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
                alerts_file: alerts_file
                    .unwrap_or_else(|| db.db.with_file_name("revguard-alerts.jsonl")),
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
        Command::ChatTest { chat, transition } => {
            let webhooks = chat.webhooks()?;
            let sample = revguard_core::domain::chat::sample_alert(transition);
            let link = chat
                .dashboard_url
                .as_deref()
                .filter(|u| !u.trim().is_empty());
            if webhooks.is_empty() {
                for (app, body) in [
                    (
                        "slack",
                        revguard_core::domain::chat::slack_message(&sample, link),
                    ),
                    (
                        "teams",
                        revguard_core::domain::chat::teams_message(&sample, link),
                    ),
                    (
                        "chatbot",
                        revguard_core::domain::chat::chatbot_notification(&sample, link),
                    ),
                ] {
                    println!("{}", serde_json::json!({ "app": app, "body": body }));
                }
                return Ok(ExitCode::SUCCESS);
            }
            let mut ok = true;
            for (app, result) in revguard_local::chat::post_once(&webhooks, &sample, link).await {
                let line = match result {
                    Ok(()) => serde_json::json!({ "app": app.as_str(), "posted": true }),
                    Err(error) => {
                        ok = false;
                        serde_json::json!({ "app": app.as_str(), "posted": false, "error": error })
                    }
                };
                println!("{line}");
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Send {
            file,
            url,
            secret,
            db,
            fresh_id,
        } => {
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
        Command::Queue { db, limit } => {
            let store = open_existing(&db)?;
            for m in store.queued(limit)? {
                println!("{}", serde_json::to_string(&m)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Customer { id, db, policy } => {
            let store = open_existing(&db)?;
            let view = store.customer_view(&id, unix_now(), &policy.policy()?)?;
            println!("{}", serde_json::to_string_pretty(&view)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Dunning { status, db, policy } => {
            let store = open_existing(&db)?;
            for case in store.dunning_cases(Some(&status), &policy.policy()?)? {
                println!("{}", serde_json::to_string(&case)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Metrics { from, to, db } => {
            let store = open_existing(&db)?;
            let time = |v: Option<String>, default: i64| -> anyhow::Result<i64> {
                match v {
                    None => Ok(default),
                    Some(v) => parse_time(&v).with_context(|| format!("not a time: {v}")),
                }
            };
            let now = unix_now();
            for hour in store.metrics(time(from, now - 24 * 3600)?, time(to, now + 3600)?)? {
                println!("{}", serde_json::to_string(&hour)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Digest {
            period,
            at,
            mode,
            json,
            db,
        } => {
            let store = open_existing(&db)?;
            let at = match at {
                Some(at) => parse_time(&at).with_context(|| format!("not a time: {at}"))?,
                None => unix_now(),
            };
            let d = revguard_core::usecases::digest::digest(
                &store,
                &store,
                &revguard_core::domain::billing::BillingPolicy::default(),
                period,
                at,
                mode == "live",
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                print!("{}", d.text());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Detect { at, db, stripe } => {
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
                } else if m.transition
                    == revguard_core::domain::detector::alerts::Transition::Opened
                {
                    // The team's task (the notifications channel), not an alarm.
                    let notice = revguard_core::domain::audience::win_back_notice(&m);
                    println!("{}", serde_json::json!({ "notification": notice }));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            seed,
            customers,
            keep_db,
            replay_only,
        } => {
            let options = revguard_local::demo::DemoOptions {
                seed,
                customers,
                db: keep_db,
                replay_only,
            };
            let started = std::time::Instant::now();
            let report = revguard_local::demo::run(options.clone()).await?;
            if !replay_only {
                revguard_local::demo::print(&report, &options);
                println!(
                    "
(ran in {:.1} s)",
                    started.elapsed().as_secs_f64()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { db } => {
            let store = open_existing(&db)?;
            println!("{}", serde_json::to_string(&store.counts()?)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Backfill {
            db,
            stripe,
            since,
            until,
            undelivered_only,
            apply,
        } => {
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
            let (since, summary) = revguard_core::usecases::recovery::backfill_from_cursor(
                &api,
                &ingress,
                &revguard_local::recover::StoreCursor(&store),
                &query,
                since,
                now,
                &|| true,
            )
            .await?;
            let mut line = serde_json::to_value(&summary)?;
            line["since"] = since.into();
            apply.apply(&store, &db, &mut line).await?;
            println!("{line}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Reconcile {
            db,
            stripe,
            fix,
            alert_threshold,
            report,
            apply,
        } => {
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
        Command::Replay {
            db,
            event,
            since,
            until,
            event_type,
            apply,
        } => {
            let store = open_existing(&db)?;
            let time = |t: Option<String>| -> anyhow::Result<Option<i64>> {
                t.map(|t| parse_time(&t).with_context(|| format!("not a time: {t}")))
                    .transpose()
            };
            let selection = revguard_core::ports::LogSelection {
                event_id: event,
                since: time(since)?,
                until: time(until)?,
                event_type,
                // A replay reads the whole log: every event, logged before any index or after.
                by_day_index: false,
            };
            let summary =
                revguard_core::usecases::recovery::replay(&store, &store, &store, &selection)
                    .await?;
            let mut line = serde_json::to_value(&summary)?;
            apply.apply(&store, &db, &mut line).await?;
            println!("{line}");
            Ok(ExitCode::SUCCESS)
        }
        Command::DeadLetters { action } => {
            use revguard_core::ports::DeadLetterAdmin;
            let db = match &action {
                DeadLetterAction::List { db, .. }
                | DeadLetterAction::Show { db, .. }
                | DeadLetterAction::Redrive { db, .. } => db.clone(),
            };
            let store = open_existing(&db)?;
            match action {
                DeadLetterAction::List { limit, .. } => {
                    for d in store.dead_letters(limit).await? {
                        println!("{}", serde_json::to_string(&d)?);
                    }
                }
                DeadLetterAction::Show { id, .. } => match store.dead_letter_by_id(&id).await? {
                    Some(d) => println!("{}", serde_json::to_string_pretty(&d)?),
                    None => bail!("no dead letter {id}"),
                },
                DeadLetterAction::Redrive {
                    ids, all, apply, ..
                } => {
                    let moved = store.redrive((!all).then_some(ids.as_slice())).await?;
                    let mut line = serde_json::json!({ "redriven": moved });
                    apply.apply(&store, &db, &mut line).await?;
                    println!("{line}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
