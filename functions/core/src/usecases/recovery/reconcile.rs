//! The reconciliation: revguard's subscriptions and open dunning cases against Stripe's
//! current objects, mended on request, and an alert when they drifted.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use super::fetch::*;
use crate::domain::billing::objects::Subscription;
use crate::domain::billing::{SubscriptionState, Version};
use crate::domain::message::Via;
use crate::ports::{
    Account, AlertStore, ApiError, EventLog, PageCursor, Queue, ReadModel, Scope, StoreError,
    StripeApi,
};
use crate::usecases::ingest::Ingress;

/// One field on which revguard and Stripe disagree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldDrift {
    pub field: &'static str,
    pub stripe: Value,
    pub revguard: Value,
}

/// A subscription revguard holds differently from Stripe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drift {
    pub subscription: String,
    pub customer: Option<String>,
    pub fields: Vec<FieldDrift>,
}

/// An open dunning case whose invoice Stripe holds otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseDrift {
    pub invoice: String,
    pub customer: Option<String>,
    /// revguard's stage.
    pub stage: Option<String>,
    /// The invoice's status at Stripe (`paid`, `void`, `uncollectible`), or `missing`.
    pub stripe_status: String,
}

/// What a reconciliation found, and fixed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReconcileReport {
    /// Subscriptions Stripe listed.
    pub checked: usize,
    /// At Stripe, unknown to revguard.
    pub missing: Vec<String>,
    /// Known to revguard (and not ended there), absent at Stripe.
    pub extra: Vec<String>,
    pub drifted: Vec<Drift>,
    /// revguard's open dunning cases, each compared with its invoice.
    pub cases_checked: usize,
    /// Open in revguard, settled (or unknown) at Stripe.
    pub cases_drifted: Vec<CaseDrift>,
    /// Snapshots of Stripe's objects enqueued to repair the above.
    pub fixed: usize,
}

impl ReconcileReport {
    /// The one-line summary: counts, and with `--fix` the fixes.
    pub fn summary(&self, fix: bool) -> Value {
        let mut out = serde_json::json!({
            "checked": self.checked,
            "missing": self.missing.len(),
            "extra": self.extra.len(),
            "drifted": self.drifted.len(),
            "cases_checked": self.cases_checked,
            "cases_drifted": self.cases_drifted.len(),
        });
        if fix {
            out["fixed"] = self.fixed.into();
        }
        out
    }
}

/// The fields compared, as revguard keeps them.
fn compared(state: &SubscriptionState) -> Vec<(&'static str, Value)> {
    let items: Vec<Value> = state
        .items
        .iter()
        .map(|i| serde_json::json!({ "price": i.price_id, "quantity": i.quantity }))
        .collect();
    vec![
        ("status", state.status.clone().into()),
        ("items", items.into()),
        ("mrr", state.mrr.into()),
        ("current_period_end", state.current_period_end.into()),
        ("cancel_at_period_end", state.cancel_at_period_end.into()),
    ]
}

impl ReconcileReport {
    /// Subscriptions and cases that differ from Stripe.
    pub fn differing(&self) -> usize {
        self.missing.len() + self.drifted.len() + self.extra.len() + self.cases_drifted.len()
    }
}

/// Compares Stripe's subscriptions with revguard's, and revguard's open dunning cases
/// with their invoices. With `fix`, every missing or drifted subscription gets Stripe's
/// current object as a snapshot newer than anything revguard holds, and a case whose
/// invoice Stripe holds as paid (or uncollectible) gets that invoice as `invoice.paid`
/// (or `invoice.marked_uncollectible`), so that once the worker has applied them revguard
/// answers what Stripe says. A voided invoice is reported only: revguard has no event
/// for it. One account's (`held`): a connected account's objects are read on its behalf.
pub async fn reconcile<A, R, L, Q>(
    api: &A,
    read: &R,
    fix: Option<&Ingress<L, Q>>,
    policy: &crate::domain::billing::BillingPolicy,
    held: &Holdings,
    now: i64,
) -> Result<ReconcileReport, RecoveryError>
where
    A: StripeApi,
    R: ReadModel,
    L: EventLog,
    Q: Queue,
{
    let account = &held.account;
    let api = &api.for_account(account);
    let mut report = ReconcileReport::default();
    // Only the ids are kept across pages (to find what revguard has and Stripe has not).
    let mut at_stripe = BTreeSet::new();
    let mut at = PageCursor::default();
    loop {
        let page = api.subscriptions_page(&at).await?;
        report.checked += page.data.len();
        for raw in &page.data {
            let value: Value =
                serde_json::from_str(raw.get()).map_err(|e| ApiError::Malformed(e.to_string()))?;
            let sub: Subscription = serde_json::from_value(value.clone())
                .map_err(|e| ApiError::Malformed(e.to_string()))?;
            let livemode = value["livemode"].as_bool().unwrap_or(false);
            let canceled = sub.status.as_deref() == Some("canceled");
            let expected =
                SubscriptionState::from_stripe(&sub, livemode, Version::new(0, ""), canceled);
            let stored = read.subscription(account, &sub.id).await?;
            let needs_fix = match &stored {
                None => {
                    report.missing.push(sub.id.clone());
                    true
                }
                Some(ours) => {
                    let fields: Vec<FieldDrift> = compared(&expected)
                        .into_iter()
                        .zip(compared(ours))
                        .filter(|((_, theirs), (_, mine))| theirs != mine)
                        .map(|((field, stripe), (_, revguard))| FieldDrift {
                            field,
                            stripe,
                            revguard,
                        })
                        .collect();
                    let drifted = !fields.is_empty();
                    if drifted {
                        report.drifted.push(Drift {
                            subscription: sub.id.clone(),
                            customer: expected.customer.clone(),
                            fields,
                        });
                    }
                    drifted
                }
            };
            at_stripe.insert(sub.id.clone());
            if let (true, Some(ingress)) = (needs_fix, fix) {
                // Newer than what revguard holds, and than any event delivered so far.
                let created = stored
                    .as_ref()
                    .map_or(now, |s| now.max(s.version.created + 1));
                let event = snapshot_event(&value, &sub.id, canceled, livemode, account, created);
                ingress
                    .ingest_fetched(event.as_bytes(), Via::Reconcile, now)
                    .await?;
                report.fixed += 1;
            }
        }
        match page.next {
            Some(next) => at = next,
            None => break,
        }
    }
    for id in &held.subscriptions {
        if at_stripe.contains(id) {
            continue;
        }
        if let Some(ours) = read.subscription(account, id).await? {
            if !ours.deleted && ours.status != "canceled" {
                report.extra.push(id.clone());
            }
        }
    }
    let open = read.dunning_cases(account, Some("open"), policy).await?;
    report.cases_checked = open.len();
    for view in open {
        let case = &view.case;
        let invoice = api.invoice(&case.invoice_id).await?;
        let value: Option<Value> = invoice
            .map(|raw| serde_json::from_str(raw.get()))
            .transpose()
            .map_err(|e| ApiError::Malformed(e.to_string()))?;
        let status = value
            .as_ref()
            .map_or("missing", |v| v["status"].as_str().unwrap_or("unknown"))
            .to_owned();
        let event_type = match status.as_str() {
            "open" | "draft" | "unknown" => continue,
            "paid" => Some("invoice.paid"),
            "uncollectible" => Some("invoice.marked_uncollectible"),
            _ => None,
        };
        report.cases_drifted.push(CaseDrift {
            invoice: case.invoice_id.clone(),
            customer: case.customer.clone(),
            stage: view.stage.clone(),
            stripe_status: status,
        });
        if let (Some(ingress), Some(event_type), Some(object)) = (fix, event_type, &value) {
            // The account is in the id, as in `snapshot_event`: two accounts' invoices
            // of one id are two fixes.
            let whose = account.id().map(|a| format!("{a}_")).unwrap_or_default();
            let mut event = serde_json::json!({
                "id": format!("{SNAPSHOT_EVENT_PREFIX}{whose}{}_{now}", case.invoice_id),
                "object": "event",
                "type": event_type,
                "created": now,
                "livemode": case.livemode,
                "data": { "object": object },
            });
            if let Some(acct) = account.id() {
                event["account"] = acct.into();
            }
            let event = event.to_string();
            ingress
                .ingest_fetched(event.as_bytes(), Via::Reconcile, now)
                .await?;
            report.fixed += 1;
        }
    }
    Ok(report)
}

/// How a scheduled or operator reconciliation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileSettings {
    /// Apply Stripe's objects to what drifted.
    pub fix: bool,
    /// Subscriptions and cases differing from Stripe from which the run raises an alert
    /// (0: never).
    pub drift_alert_threshold: usize,
}

/// A reconciliation (see [`reconcile`]) whose drift, at or over the threshold, leaves a
/// `reconcile_drift` finding for the detector's next run, which opens the alert and
/// publishes it once, as it does the worker's event-level findings. Both backends run
/// this: the recovery function on AWS and `revguard reconcile`.
// The ports it runs over, the policy, the settings, whose and when: each is needed.
#[allow(clippy::too_many_arguments)]
pub async fn reconcile_and_alert<A, R, L, Q, S>(
    api: &A,
    read: &R,
    ingress: &Ingress<L, Q>,
    alerts: &S,
    policy: &crate::domain::billing::BillingPolicy,
    settings: ReconcileSettings,
    held: &Holdings,
    now: i64,
) -> Result<ReconcileReport, RecoveryError>
where
    A: StripeApi,
    R: ReadModel,
    L: EventLog,
    Q: Queue,
    S: AlertStore,
{
    let fix = settings.fix.then_some(ingress);
    let report = reconcile(api, read, fix, policy, held, now).await?;
    for d in &report.drifted {
        tracing::warn!(subscription = %d.subscription, fields = ?d.fields.iter().map(|f| f.field).collect::<Vec<_>>(), "drift from Stripe");
    }
    let differing = report.differing();
    if settings.drift_alert_threshold > 0 && differing >= settings.drift_alert_threshold {
        alerts
            .add_pending(
                &drift_finding(&report, api.livemode(), now).in_scope(Scope::of(&held.account)),
            )
            .await?;
    }
    Ok(report)
}

/// What revguard holds of one account, for its reconciliation: the account, and the ids
/// of its subscriptions (one read of the store — a Scan on DynamoDB — serves every
/// account's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holdings {
    pub account: Account,
    pub subscriptions: Vec<String>,
}

impl Holdings {
    /// One account's.
    pub async fn of<R: ReadModel>(read: &R, account: &Account) -> Result<Self, StoreError> {
        Ok(Self::every(read)
            .await?
            .into_iter()
            .find(|h| &h.account == account)
            .unwrap_or_else(|| Holdings {
                account: account.clone(),
                subscriptions: Vec::new(),
            }))
    }

    /// Every account revguard holds subscriptions of, the platform's own first (always).
    pub async fn every<R: ReadModel>(read: &R) -> Result<Vec<Self>, StoreError> {
        let mut by_account: BTreeMap<Account, Vec<String>> =
            BTreeMap::from([(Account::PLATFORM, Vec::new())]);
        for (account, id) in read.subscription_ids().await? {
            by_account.entry(account).or_default().push(id);
        }
        Ok(by_account
            .into_iter()
            .map(|(account, subscriptions)| Holdings {
                account,
                subscriptions,
            })
            .collect())
    }
}

/// What a reconciliation of every account came to.
#[derive(Debug, Default)]
pub struct EveryAccount {
    /// Each account reconciled, the platform's own first.
    pub reports: Vec<(Account, ReconcileReport)>,
    /// Connected accounts whose reconciliation failed (Stripe refusing a disconnected
    /// account, say), with the error: they hold back no other account.
    pub failed: Vec<(Account, String)>,
}

/// [`reconcile_and_alert`] for each account revguard holds subscriptions of, the
/// platform's own first, each read on its own behalf (`Stripe-Account`) and alerted under
/// its own name. The platform's failure fails the run; a connected account's is logged and
/// listed, and the others go on.
pub async fn reconcile_every_account<A, R, L, Q, S>(
    api: &A,
    read: &R,
    ingress: &Ingress<L, Q>,
    alerts: &S,
    policy: &crate::domain::billing::BillingPolicy,
    settings: ReconcileSettings,
    now: i64,
) -> Result<EveryAccount, RecoveryError>
where
    A: StripeApi,
    R: ReadModel,
    L: EventLog,
    Q: Queue,
    S: AlertStore,
{
    let mut out = EveryAccount::default();
    for held in Holdings::every(read).await? {
        match reconcile_and_alert(api, read, ingress, alerts, policy, settings, &held, now).await {
            Ok(report) => out.reports.push((held.account, report)),
            Err(e) if !held.account.is_platform() => {
                let error = crate::domain::error::error_chain(&e);
                tracing::warn!(account = %held.account, error, "a connected account's reconciliation failed; the others go on");
                out.failed.push((held.account, error));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

impl ReconcileReport {
    /// Another account's report added to this one (a run's summary over every account).
    pub fn merge(&mut self, other: ReconcileReport) {
        self.checked += other.checked;
        self.missing.extend(other.missing);
        self.extra.extend(other.extra);
        self.drifted.extend(other.drifted);
        self.cases_checked += other.cases_checked;
        self.cases_drifted.extend(other.cases_drifted);
        self.fixed += other.fixed;
    }
}

/// The finding a drifted reconciliation leaves.
pub fn drift_finding(
    report: &ReconcileReport,
    livemode: bool,
    now: i64,
) -> crate::domain::finding::Finding {
    let differing = report.differing();
    let examples: Vec<&str> = report
        .missing
        .iter()
        .chain(report.drifted.iter().map(|d| &d.subscription))
        .chain(&report.extra)
        .chain(report.cases_drifted.iter().map(|c| &c.invoice))
        .take(3)
        .map(String::as_str)
        .collect();
    crate::domain::finding::Finding {
        scope: Default::default(), accounts: Vec::new(),
        key: "reconcile_drift".into(),
        signal: "reconcile_drift".into(),
        metric: "subscriptions_drifted".into(),
        livemode,
        window_start: now,
        window_end: now,
        observed: differing as f64,
        expected: 0.0,
        spread: 0.0,
        ratio: differing as f64,
        severity: crate::domain::finding::Severity::Warning,
        explanation: format!(
            "Reconciliation: {differing} differed from Stripe ({} of {} subscriptions missing, {} drifted, {} only in revguard; {} of {} open dunning cases settled at Stripe; e.g. {}); {} fixed.",
            report.missing.len(),
            report.checked,
            report.drifted.len(),
            report.extra.len(),
            report.cases_drifted.len(),
            report.cases_checked,
            examples.join(", "),
            report.fixed
        ),
    }
}
