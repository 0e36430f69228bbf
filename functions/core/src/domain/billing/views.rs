//! What operators see of the billing state: a customer with its access verdict, dunning
//! cases with their stage, counters by hour. Built the same from any store.

use std::collections::BTreeMap;

use serde::Serialize;

use super::access::{access, Access};
use super::customer::CustomerState;
use super::dunning::DunningCase;
use super::policy::BillingPolicy;
use super::subscription::SubscriptionState;
use crate::domain::metric::CounterTotals;

#[derive(Debug, Clone, Serialize)]
pub struct CustomerView {
    pub customer: String,
    pub access: Access,
    pub subscriptions: Vec<SubscriptionState>,
    pub open_dunning_cases: Vec<CaseView>,
    pub profile: Option<CustomerState>,
}

impl CustomerView {
    pub fn of(
        id: &str,
        subscriptions: Vec<SubscriptionState>,
        cases: Vec<DunningCase>,
        profile: Option<CustomerState>,
        now: i64,
        policy: &BillingPolicy,
    ) -> Self {
        let (mut subscriptions, mut cases) = (subscriptions, cases);
        // The same order whichever store read them.
        subscriptions.sort_by(|a, b| a.id.cmp(&b.id));
        oldest_first(&mut cases);
        let access = access(profile.as_ref(), &subscriptions, &cases, now, policy);
        let open = cases
            .into_iter()
            .filter(|c| c.stage(policy).is_some_and(|s| s.is_open()))
            .map(|c| CaseView::of(c, policy))
            .collect();
        Self {
            customer: id.to_owned(),
            access,
            subscriptions,
            open_dunning_cases: open,
            profile,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseView {
    pub stage: Option<String>,
    pub recovered_amount: Option<i64>,
    /// The amount due for people, e.g. "$49.00".
    pub amount_due_display: Option<String>,
    pub time_to_recover_secs: Option<i64>,
    #[serde(flatten)]
    pub case: DunningCase,
}

/// Cases by when they opened (then by invoice), as operators read them.
pub fn oldest_first(cases: &mut [DunningCase]) {
    cases.sort_by(|a, b| (a.opened_at, &a.invoice_id).cmp(&(b.opened_at, &b.invoice_id)));
}

impl CaseView {
    /// The views of `cases` a status filter selects (see [`CaseView::matches`]), oldest first.
    pub fn select(
        mut cases: Vec<DunningCase>,
        status: Option<&str>,
        policy: &BillingPolicy,
    ) -> Vec<Self> {
        oldest_first(&mut cases);
        cases
            .into_iter()
            .map(|c| CaseView::of(c, policy))
            .filter(|v| v.matches(status))
            .collect()
    }

    pub fn of(case: DunningCase, policy: &BillingPolicy) -> Self {
        Self {
            stage: case.stage(policy).map(|s| s.as_str().to_owned()),
            recovered_amount: case.recovered().map(|p| p.amount),
            amount_due_display: case
                .currency
                .map(|c| crate::domain::money::format_minor(case.amount_due, c.as_str())),
            time_to_recover_secs: case.time_to_recover_secs(),
            case,
        }
    }

    /// Whether it passes an operator's filter: `open`, `closed`, a stage name, or all.
    pub fn matches(&self, filter: Option<&str>) -> bool {
        match filter {
            None | Some("all") => true,
            Some("open") => self
                .stage
                .as_deref()
                .is_some_and(|s| s != "recovered" && s != "lost"),
            Some("closed") => self
                .stage
                .as_deref()
                .is_some_and(|s| s == "recovered" || s == "lost"),
            Some(name) => self.stage.as_deref() == Some(name),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HourCounters {
    pub hour: i64,
    pub livemode: bool,
    pub metrics: BTreeMap<String, i64>,
    /// The amounts among `metrics` for people ("refunds_amount.usd": "$652.60").
    pub display: BTreeMap<String, String>,
}

/// Counter totals by hour and mode, for operators.
pub fn by_hour(totals: &CounterTotals) -> Vec<HourCounters> {
    let mut out: BTreeMap<(i64, bool), BTreeMap<String, i64>> = BTreeMap::new();
    for ((livemode, hour, metric), value) in totals {
        out.entry((*hour, *livemode))
            .or_default()
            .insert(metric.name(), *value);
    }
    out.into_iter()
        .map(|((hour, livemode), metrics)| {
            let display = metrics
                .iter()
                .filter_map(|(name, value)| {
                    let metric = crate::domain::metric::Metric::parse(name)?;
                    let currency = metric.currency()?;
                    Some((
                        name.clone(),
                        crate::domain::money::format_minor(*value, currency),
                    ))
                })
                .collect();
            HourCounters {
                hour,
                livemode,
                metrics,
                display,
            }
        })
        .collect()
}

/// One account as operators list them (`GET /api/accounts`): what it earns, what is at
/// risk, and what is alerting.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AccountSummary {
    /// The connected account's id; `null` for the platform's own.
    pub account: crate::domain::account::Account,
    /// MRR by mode and currency, in minor units (`live.usd`), with a figure for people.
    pub mrr: BTreeMap<String, i64>,
    pub mrr_display: BTreeMap<String, String>,
    pub open_dunning_cases: usize,
    pub open_alerts: usize,
    /// When revguard last received one of its events (unix seconds), if it counted one.
    pub last_received_at: Option<i64>,
}

impl AccountSummary {
    /// An account's summary from its gauges of hour 0 (its MRR and last receipt, both
    /// modes) and its counts of open cases and alerts.
    pub fn of(
        account: crate::domain::account::Account,
        gauges: &CounterTotals,
        open_dunning_cases: usize,
        open_alerts: usize,
    ) -> Self {
        let mut mrr = BTreeMap::new();
        let mut mrr_display = BTreeMap::new();
        let mut last_received_at = None;
        for ((livemode, hour, metric), value) in gauges {
            // A zero is no figure (one store keeps it, another never writes it).
            if *hour != 0 || *value == 0 {
                continue;
            }
            match metric {
                crate::domain::metric::Metric::MrrTotal(currency) => {
                    let key = format!("{}.{currency}", if *livemode { "live" } else { "test" });
                    mrr_display.insert(
                        key.clone(),
                        crate::domain::money::format_minor(*value, currency),
                    );
                    mrr.insert(key, *value);
                }
                crate::domain::metric::Metric::MaxReceivedAt => {
                    last_received_at = last_received_at.max(Some(*value));
                }
                _ => {}
            }
        }
        Self {
            account,
            mrr,
            mrr_display,
            open_dunning_cases,
            open_alerts,
            last_received_at,
        }
    }
}
