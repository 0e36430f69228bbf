//! The billing digest, for finance and founders: a day's or a week's MRR and its
//! movements, payments, refunds and disputes, and dunning with a recovery rate whose
//! definition is stated. Read from what both stores already keep: the hourly counters,
//! the dunning cases, the customers' last declines and the event log's subscription
//! events (MRR movements are computed per event, as the MRR counters are).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::domain::billing::{mrr_movement, BillingEvent, BillingPolicy, MrrMovement};
use crate::domain::money::format_minor;
use crate::ports::{Account, EventHistory, LogSelection, ReadModel, Scope, StoreError};

/// What the recovery rate counts, said with every figure.
pub const RECOVERY_RATE_DEFINITION: &str = "Recovery rate: among dunning cases closed in the period (paid after a failed renewal = recovered; no retry left or marked uncollectible = lost), recovered / (recovered + lost), by count and by amount (amount due, per currency). Cases still open are not counted. A case's decline code is its customer's latest decline, when that came before the case closed (else unknown).";

/// Subscription events read per type for one digest; more is said in its notes.
const EVENTS_PER_TYPE: usize = 20_000;
/// How many of the largest MRR movements and open cases are named.
const NAMED: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    Week,
}

impl Period {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "day" | "daily" => Some(Self::Day),
            "week" | "weekly" => Some(Self::Week),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
        }
    }

    /// The last complete period before `at` (UTC days; weeks from Monday): [from, to).
    pub fn last_complete(self, at: i64) -> (i64, i64) {
        let day = at.div_euclid(86_400);
        match self {
            Self::Day => ((day - 1) * 86_400, day * 86_400),
            Self::Week => {
                // 1970-01-01 was a Thursday: Monday is 3 days before it in the week.
                let monday = day - (day + 3).rem_euclid(7);
                ((monday - 7) * 86_400, monday * 86_400)
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CurrencyMrr {
    pub currency: String,
    /// Contributing MRR now (when the digest was made).
    pub total_now: i64,
    pub new: i64,
    pub expansion: i64,
    pub contraction: i64,
    pub churn: i64,
    pub reactivation: i64,
    pub net: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Activity {
    pub payments_succeeded: i64,
    pub payments_succeeded_amount: BTreeMap<String, i64>,
    pub payments_failed: i64,
    pub payments_failed_amount: BTreeMap<String, i64>,
    pub refunds: i64,
    pub refunds_amount: BTreeMap<String, i64>,
    pub disputes: i64,
    pub disputes_amount: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DunningSummary {
    pub opened: usize,
    pub recovered: usize,
    pub recovered_amount: BTreeMap<String, i64>,
    pub lost: usize,
    pub lost_amount: BTreeMap<String, i64>,
    pub median_time_to_recover_secs: Option<i64>,
    pub longest_time_to_recover_secs: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeclineRate {
    pub decline_code: String,
    pub recovered: usize,
    pub lost: usize,
    /// recovered / (recovered + lost), by count.
    pub rate: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RecoveryRate {
    pub definition: &'static str,
    pub closed: usize,
    /// `None` when no case closed.
    pub by_count: Option<f64>,
    /// Per currency.
    pub by_amount: BTreeMap<String, f64>,
    pub by_decline_code: Vec<DeclineRate>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenCase {
    pub invoice: String,
    pub customer: Option<String>,
    pub amount_due: i64,
    pub currency: String,
    pub stage: String,
    pub opened_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Digest {
    /// `digest:<mode>:<period>:<from>`: unique per digest, so a delivery is owed once.
    pub id: String,
    pub period: Period,
    pub from: i64,
    pub to: i64,
    pub livemode: bool,
    pub mrr: Vec<CurrencyMrr>,
    /// The largest movements of the period, with their customers.
    pub largest_movements: Vec<MrrMovement>,
    pub activity: Activity,
    pub dunning: DunningSummary,
    pub recovery_rate: RecoveryRate,
    /// The largest open cases by amount due, now.
    pub top_open_cases: Vec<OpenCase>,
    /// What the figures could not include, if anything.
    pub notes: Vec<String>,
}

/// `digest:<mode>:<period>:<from>`.
fn digest_id(period: Period, from: i64, livemode: bool) -> String {
    let mode = if livemode { "live" } else { "test" };
    format!(
        "digest:{mode}:{}:{}",
        period.as_str(),
        crate::domain::time::rfc3339(from)
    )
}

/// The digest of the last complete `period` before `at`, in one mode.
pub async fn digest<R: ReadModel, H: EventHistory>(
    read: &R,
    history: &H,
    policy: &BillingPolicy,
    period: Period,
    at: i64,
    livemode: bool,
) -> Result<Digest, StoreError> {
    let (from, to) = period.last_complete(at);
    let mut notes = Vec::new();

    // Counters: activity and MRR now.
    let mut activity = Activity::default();
    let mut mrr_now: BTreeMap<String, i64> = BTreeMap::new();
    for hour in read.metrics(&Scope::Platform, from, to).await? {
        if hour.livemode != livemode {
            continue;
        }
        for (name, value) in &hour.metrics {
            let (base, currency) = match name.split_once('.') {
                Some((b, c)) => (b, Some(c.to_owned())),
                None => (name.as_str(), None),
            };
            let add = |map: &mut BTreeMap<String, i64>| {
                if let Some(c) = &currency {
                    *map.entry(c.clone()).or_default() += value;
                }
            };
            match (hour.hour, base) {
                (0, "mrr_total") => add(&mut mrr_now),
                (0, _) => {}
                (_, "payments_succeeded") => activity.payments_succeeded += value,
                (_, "payments_succeeded_amount") => add(&mut activity.payments_succeeded_amount),
                (_, "payments_failed") => activity.payments_failed += value,
                (_, "payments_failed_amount") => add(&mut activity.payments_failed_amount),
                (_, "refunds") => activity.refunds += value,
                (_, "refunds_amount") => add(&mut activity.refunds_amount),
                (_, "disputes") => activity.disputes += value,
                (_, "disputes_amount") => add(&mut activity.disputes_amount),
                _ => {}
            }
        }
    }

    // MRR movements, per subscription event of the period.
    let mut movements = Vec::new();
    for event_type in [
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "customer.subscription.paused",
        "customer.subscription.resumed",
    ] {
        let selection = LogSelection {
            since: Some(from),
            until: Some(to),
            event_type: Some(event_type.into()),
            by_day_index: true,
            ..LogSelection::default()
        };
        let logged = history.logged(&selection, EVENTS_PER_TYPE).await?;
        if logged.len() == EVENTS_PER_TYPE {
            notes.push(format!(
                "Only the first {EVENTS_PER_TYPE} {event_type} events of the period are in the MRR movements."
            ));
        }
        let mut without_payload = 0;
        // The platform's own: a connected account's subscriptions are its account's revenue.
        for record in logged
            .iter()
            .filter(|r| r.livemode == livemode && r.account.is_platform())
        {
            let Some(raw) = record
                .stored_payload
                .as_deref()
                .and_then(|p| crate::domain::message::decompress(p).ok())
            else {
                without_payload += 1;
                continue;
            };
            if let Some(m) = BillingEvent::parse(&raw, record.received_at)
                .ok()
                .as_ref()
                .and_then(mrr_movement)
            {
                movements.push(m);
            }
        }
        if without_payload > 0 {
            notes.push(format!(
                "{without_payload} {event_type} events have no kept payload (replay off): their MRR movements are not counted."
            ));
        }
    }
    let mut by_currency: BTreeMap<String, CurrencyMrr> = BTreeMap::new();
    for (currency, total) in &mrr_now {
        by_currency.entry(currency.clone()).or_default().total_now = *total;
    }
    for m in &movements {
        let c = by_currency.entry(m.currency.clone()).or_default();
        let delta = m.after - m.before;
        match m.kind {
            "new" => c.new += delta,
            "expansion" => c.expansion += delta,
            "contraction" => c.contraction += -delta,
            "churn" => c.churn += -delta,
            _ => c.reactivation += delta,
        }
        c.net += delta;
    }
    let mrr = by_currency
        .into_iter()
        .map(|(currency, c)| CurrencyMrr { currency, ..c })
        .filter(|c| c.total_now != 0 || c.net != 0 || c.new != 0 || c.churn != 0)
        .collect();
    movements.sort_by_key(|m| (std::cmp::Reverse((m.after - m.before).abs()), m.created));
    movements.truncate(NAMED);

    // Dunning, from the cases.
    let cases = read
        .dunning_cases(&Account::PLATFORM, Some("all"), policy)
        .await?;
    let mut dunning = DunningSummary::default();
    let mut recover_times = Vec::new();
    let mut closed: Vec<(bool, i64, String, Option<String>, i64)> = Vec::new();
    let mut open = Vec::new();
    for view in cases.iter().filter(|v| v.case.livemode == livemode) {
        let case = &view.case;
        let currency = case
            .currency
            .map(|c| c.to_string())
            .unwrap_or_else(|| "xxx".into());
        let within = |t: i64| from <= t && t < to;
        if case.opened_at.is_some_and(within) {
            dunning.opened += 1;
        }
        if let Some(paid) = case.recovered().filter(|p| within(p.at)) {
            dunning.recovered += 1;
            *dunning
                .recovered_amount
                .entry(currency.clone())
                .or_default() += paid.amount;
            recover_times.extend(case.time_to_recover_secs());
            // The rate by amount weighs both outcomes by what was due.
            closed.push((
                true,
                paid.at,
                currency.clone(),
                case.customer.clone(),
                case.amount_due,
            ));
        } else if let Some(lost_at) = case
            .lost_at()
            .filter(|t| case.opened_at.is_some() && case.paid.is_none() && within(*t))
        {
            dunning.lost += 1;
            *dunning.lost_amount.entry(currency.clone()).or_default() += case.amount_due;
            closed.push((
                false,
                lost_at,
                currency.clone(),
                case.customer.clone(),
                case.amount_due,
            ));
        }
        if let Some(stage) = case.stage(policy).filter(|s| s.is_open()) {
            open.push(OpenCase {
                invoice: case.invoice_id.clone(),
                customer: case.customer.clone(),
                amount_due: case.amount_due,
                currency,
                stage: stage.as_str().to_owned(),
                opened_at: case.opened_at.unwrap_or_default(),
            });
        }
    }
    recover_times.sort_unstable();
    dunning.median_time_to_recover_secs = match recover_times.len() {
        0 => None,
        n if n % 2 == 1 => Some(recover_times[n / 2]),
        n => Some((recover_times[n / 2 - 1] + recover_times[n / 2]) / 2),
    };
    dunning.longest_time_to_recover_secs = recover_times.last().copied();
    open.sort_by_key(|c| (std::cmp::Reverse(c.amount_due), c.opened_at));
    open.truncate(NAMED);

    // The recovery rate, with its decline codes.
    let mut by_code: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut amounts: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for (recovered, closed_at, currency, customer, amount) in &closed {
        let code = match customer {
            Some(id) => read
                .customer_view(&Account::PLATFORM, id, to, policy)
                .await?
                .profile
                .and_then(|p| p.last_decline)
                .filter(|(at, _)| at <= closed_at)
                .map(|(_, code)| code),
            None => None,
        }
        .unwrap_or_else(|| "unknown".into());
        let entry = by_code.entry(code).or_default();
        let sums = amounts.entry(currency.clone()).or_default();
        if *recovered {
            entry.0 += 1;
            sums.0 += amount;
        } else {
            entry.1 += 1;
            sums.1 += amount;
        }
    }
    let ratio = |r: usize, l: usize| (r + l > 0).then(|| r as f64 / (r + l) as f64);
    let mut by_decline_code: Vec<DeclineRate> = by_code
        .into_iter()
        .map(|(decline_code, (recovered, lost))| DeclineRate {
            rate: ratio(recovered, lost).unwrap_or_default(),
            decline_code,
            recovered,
            lost,
        })
        .collect();
    by_decline_code.sort_by_key(|d| std::cmp::Reverse(d.recovered + d.lost));
    let recovery_rate = RecoveryRate {
        definition: RECOVERY_RATE_DEFINITION,
        closed: closed.len(),
        by_count: ratio(dunning.recovered, dunning.lost),
        by_amount: amounts
            .into_iter()
            .filter(|(_, (r, l))| r + l > 0)
            .map(|(c, (r, l))| (c, r as f64 / (r + l) as f64))
            .collect(),
        by_decline_code,
    };

    Ok(Digest {
        id: digest_id(period, from, livemode),
        period,
        from,
        to,
        livemode,
        mrr,
        largest_movements: movements,
        activity,
        dunning,
        recovery_rate,
        top_open_cases: open,
        notes,
    })
}

fn amounts(map: &BTreeMap<String, i64>) -> String {
    if map.is_empty() {
        return "-".into();
    }
    map.iter()
        .map(|(c, a)| format_minor(*a, c))
        .collect::<Vec<_>>()
        .join(" + ")
}

fn percent(r: f64) -> String {
    format!("{:.1} %", r * 100.0)
}

fn duration(secs: i64) -> String {
    if secs >= 86_400 {
        format!("{:.1} days", secs as f64 / 86_400.0)
    } else {
        format!("{:.1} hours", secs as f64 / 3_600.0)
    }
}

impl Digest {
    /// The subject line.
    pub fn subject(&self) -> String {
        let mode = if self.livemode { "" } else { " (test mode)" };
        let which = match self.period {
            Period::Day => format!("daily, {}", &crate::domain::time::rfc3339(self.from)[..10]),
            Period::Week => format!(
                "weekly, {} to {}",
                &crate::domain::time::rfc3339(self.from)[..10],
                &crate::domain::time::rfc3339(self.to - 86_400)[..10]
            ),
        };
        format!("revguard billing digest{mode}: {which}")
    }

    /// The digest as plain text, for email and chat.
    pub fn text(&self) -> String {
        let mut t = String::new();
        let mut line = |s: String| {
            t.push_str(&s);
            t.push('\n');
        };
        line(self.subject());
        line(format!(
            "{} to {}\n",
            crate::domain::time::datetime(self.from),
            crate::domain::time::datetime(self.to)
        ));
        line("MRR".into());
        if self.mrr.is_empty() {
            line("  no MRR yet".into());
        }
        for c in &self.mrr {
            let f = |a: i64| format_minor(a, &c.currency);
            line(format!(
                "  {} now; net {}{}: new {}, expansion {}, reactivation {}, contraction -{}, churn -{}",
                f(c.total_now),
                if c.net >= 0 { "+" } else { "" },
                f(c.net),
                f(c.new),
                f(c.expansion),
                f(c.reactivation),
                f(c.contraction),
                f(c.churn)
            ));
        }
        for m in &self.largest_movements {
            line(format!(
                "  {} {}: {} ({} a month to {})",
                m.kind,
                m.customer.as_deref().unwrap_or(&m.subscription),
                format_minor(m.after - m.before, &m.currency),
                format_minor(m.before, &m.currency),
                format_minor(m.after, &m.currency)
            ));
        }
        let a = &self.activity;
        line("\nPayments".into());
        line(format!(
            "  succeeded {} ({}); failed {} ({})",
            a.payments_succeeded,
            amounts(&a.payments_succeeded_amount),
            a.payments_failed,
            amounts(&a.payments_failed_amount)
        ));
        line(format!(
            "  refunds {} ({}); disputes {} ({})",
            a.refunds,
            amounts(&a.refunds_amount),
            a.disputes,
            amounts(&a.disputes_amount)
        ));
        let d = &self.dunning;
        line("\nDunning".into());
        line(format!(
            "  opened {}; recovered {} ({}); lost {} ({})",
            d.opened,
            d.recovered,
            amounts(&d.recovered_amount),
            d.lost,
            amounts(&d.lost_amount)
        ));
        if let (Some(median), Some(longest)) = (
            d.median_time_to_recover_secs,
            d.longest_time_to_recover_secs,
        ) {
            line(format!(
                "  time to recover: median {}, longest {}",
                duration(median),
                duration(longest)
            ));
        }
        let r = &self.recovery_rate;
        match r.by_count {
            Some(rate) => {
                let by_amount: Vec<String> = r
                    .by_amount
                    .iter()
                    .map(|(c, v)| format!("{} in {}", percent(*v), c.to_uppercase()))
                    .collect();
                line(format!(
                    "  recovery rate: {} by count ({} of {} closed), {} by amount",
                    percent(rate),
                    d.recovered,
                    r.closed,
                    by_amount.join(", ")
                ));
                for code in &r.by_decline_code {
                    line(format!(
                        "    {}: {} ({} recovered, {} lost)",
                        code.decline_code,
                        percent(code.rate),
                        code.recovered,
                        code.lost
                    ));
                }
            }
            None => line("  recovery rate: no case closed in the period".into()),
        }
        line(format!("  ({})", r.definition));
        if !self.top_open_cases.is_empty() {
            line("\nLargest open cases".into());
            for c in &self.top_open_cases {
                line(format!(
                    "  {} {} ({}), {}, open since {}",
                    c.customer.as_deref().unwrap_or("-"),
                    format_minor(c.amount_due, &c.currency),
                    c.invoice,
                    c.stage,
                    crate::domain::time::datetime(c.opened_at)
                ));
            }
        }
        for note in &self.notes {
            line(format!("\nNote: {note}"));
        }
        t
    }
}

/// The digest as a chat message: its text, monospaced (Slack's section text holds 3,000
/// characters, so a longer digest is cut with a mark).
pub fn chat_message(app: crate::domain::chat::ChatApp, d: &Digest) -> serde_json::Value {
    let mut text = d.text();
    if text.chars().count() > 2_900 {
        text = text.chars().take(2_880).collect::<String>() + "\n…(cut)";
    }
    match app {
        crate::domain::chat::ChatApp::Slack => serde_json::json!({
            "text": d.subject(),
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": format!("```{text}```")}}],
        }),
        crate::domain::chat::ChatApp::Teams => serde_json::json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [{"type": "TextBlock", "text": text, "wrap": true, "fontType": "Monospace"}],
                },
            }],
        }),
    }
}

impl crate::ports::Outgoing for Digest {
    fn id(&self) -> &str {
        &self.id
    }
}

impl Digest {
    /// Nothing happened in the period: not worth a message (cases left open long ago, or
    /// MRR standing still, say nothing new every day).
    pub fn is_quiet(&self) -> bool {
        let a = &self.activity;
        self.mrr
            .iter()
            .all(|c| c.net == 0 && c.new == 0 && c.churn == 0)
            && a.payments_succeeded == 0
            && a.payments_failed == 0
            && a.refunds == 0
            && a.disputes == 0
            && self.dunning.opened == 0
            && self.recovery_rate.closed == 0
    }
}

/// Which digests went out, so that each goes out once (embedded: the settings table; AWS:
/// an item in the alerts table).
pub trait DigestLedger: Send + Sync {
    fn was_sent(
        &self,
        id: &str,
    ) -> impl std::future::Future<Output = Result<bool, StoreError>> + Send;
    fn mark_sent(
        &self,
        id: &str,
        at: i64,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send;
}

#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Publish(#[from] crate::ports::PublishError),
}

/// Sends the digests of `periods` due at `at` (the last complete ones), per mode, unless
/// quiet or sent already; returns the ids sent. Published, then marked: a failure between
/// the two sends a digest again on the next try rather than never.
pub async fn send_due<R, H, P, L>(
    read: &R,
    history: &H,
    publisher: &P,
    ledger: &L,
    policy: &BillingPolicy,
    periods: &[Period],
    at: i64,
) -> Result<Vec<String>, DigestError>
where
    R: ReadModel,
    H: EventHistory,
    P: crate::ports::Publisher<Digest>,
    L: DigestLedger,
{
    let mut sent = Vec::new();
    for period in periods {
        for livemode in [true, false] {
            // The ledger first: a digest sent already is not made again every check.
            let (from, _) = period.last_complete(at);
            if ledger.was_sent(&digest_id(*period, from, livemode)).await? {
                continue;
            }
            let d = digest(read, history, policy, *period, at, livemode).await?;
            if d.is_quiet() {
                continue;
            }
            publisher.publish(&d).await?;
            ledger.mark_sent(&d.id, at).await?;
            sent.push(d.id);
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_the_last_complete_utc_day_and_monday_week() {
        // 2026-12-09 is a Wednesday.
        let wednesday_noon = crate::domain::time::parse_rfc3339("2026-12-09T12:00:00Z").unwrap();
        let (from, to) = Period::Day.last_complete(wednesday_noon);
        assert_eq!(crate::domain::time::rfc3339(from), "2026-12-08T00:00:00Z");
        assert_eq!(crate::domain::time::rfc3339(to), "2026-12-09T00:00:00Z");
        let (from, to) = Period::Week.last_complete(wednesday_noon);
        assert_eq!(crate::domain::time::rfc3339(from), "2026-11-30T00:00:00Z");
        assert_eq!(crate::domain::time::rfc3339(to), "2026-12-07T00:00:00Z");
        let monday = crate::domain::time::parse_rfc3339("2026-12-07T00:00:00Z").unwrap();
        assert_eq!(Period::Week.last_complete(monday).1, monday);
    }
}
