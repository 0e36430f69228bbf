//! `revguard backfill | reconcile | replay | dead-letters` on the embedded store: core's
//! recovery use cases over SQLite, then (unless told to leave it to a running server)
//! the worker applies what they enqueued before the command exits.

use std::path::Path;

use revguard_core::domain::billing::BillingPolicy;
use revguard_core::ports::{Account, BackfillCursor};
use revguard_core::Ingress;
use revguard_core::StoreError;
use revguard_sqlite::SqliteStore;

use crate::consumer;
use crate::publish::JsonlPublisher;

/// Where the backfill remembers the newest event it listed.
pub const BACKFILL_CURSOR_KEY: &str = "backfill_cursor";

/// The ingress over the store, for events fetched from Stripe.
pub fn fetched_ingress(store: &SqliteStore) -> Ingress<SqliteStore, SqliteStore> {
    revguard_core::usecases::recovery::fetched_ingress(store.clone(), store.clone())
}

/// Applies what is visible in the queue, as `serve`'s worker would, until none is left
/// (messages delayed for a retry stay for the server). Returns how many were consumed.
pub async fn apply_queued(
    store: &SqliteStore,
    policy: BillingPolicy,
    notifications_file: &Path,
) -> anyhow::Result<usize> {
    let notifier = JsonlPublisher::to_file("notification", notifications_file)?;
    let worker = consumer::worker(store, policy, notifier);
    let mut consumed = 0;
    loop {
        let n = consumer::run_once(store, &worker, revguard_core::domain::time::unix_now()).await?;
        if n == 0 {
            return Ok(consumed);
        }
        consumed += n;
    }
}

/// The backfill's cursor in the store's settings.
pub struct StoreCursor<'a>(pub &'a SqliteStore);

/// Each account's cursor: `backfill_cursor` for the platform's own (as before Connect),
/// `backfill_cursor:<acct>` for a connected account.
fn cursor_key(account: &Account) -> String {
    match account.id() {
        None => BACKFILL_CURSOR_KEY.to_owned(),
        Some(id) => format!("{BACKFILL_CURSOR_KEY}:{id}"),
    }
}

impl BackfillCursor for StoreCursor<'_> {
    async fn cursor(&self, account: &Account) -> Result<Option<i64>, StoreError> {
        Ok(self
            .0
            .setting(&cursor_key(account))
            .await?
            .and_then(|c| c.parse::<i64>().ok()))
    }

    async fn advance(&self, account: &Account, to: i64) -> Result<(), StoreError> {
        // One writer: the command that runs the backfill.
        if self.cursor(account).await?.is_none_or(|at| to > at) {
            self.0
                .put_setting(&cursor_key(account), &to.to_string())
                .await?;
        }
        Ok(())
    }
}
/// A readable reconciliation report (Markdown).
pub fn report_markdown(
    report: &revguard_core::usecases::recovery::ReconcileReport,
    at: i64,
) -> String {
    let mut out = format!(
        "# revguard reconciliation, {}\n\n{} subscriptions at Stripe: {} missing in revguard, {} drifted, {} only in revguard. {} open dunning cases: {} settled at Stripe. {} fixed.\n",
        revguard_core::domain::time::datetime(at),
        report.checked,
        report.missing.len(),
        report.drifted.len(),
        report.extra.len(),
        report.cases_checked,
        report.cases_drifted.len(),
        report.fixed,
    );
    if !report.missing.is_empty() {
        out.push_str("\n## Missing in revguard\n\n");
        for id in &report.missing {
            out.push_str(&format!("- {id}\n"));
        }
    }
    if !report.drifted.is_empty() {
        out.push_str("\n## Drifted\n\n| subscription | customer | field | Stripe | revguard |\n|---|---|---|---|---|\n");
        for d in &report.drifted {
            for f in &d.fields {
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {} |\n",
                    d.subscription,
                    d.customer.as_deref().unwrap_or(""),
                    f.field,
                    f.stripe,
                    f.revguard
                ));
            }
        }
    }
    if !report.cases_drifted.is_empty() {
        out.push_str("\n## Open dunning cases Stripe holds otherwise\n\n| invoice | customer | revguard's stage | invoice at Stripe |\n|---|---|---|---|\n");
        for c in &report.cases_drifted {
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                c.invoice,
                c.customer.as_deref().unwrap_or(""),
                c.stage.as_deref().unwrap_or(""),
                c.stripe_status
            ));
        }
    }
    if !report.extra.is_empty() {
        out.push_str("\n## Only in revguard (not listed by Stripe)\n\n");
        for id in &report.extra {
            out.push_str(&format!("- {id}\n"));
        }
    }
    out
}
