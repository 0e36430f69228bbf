//! `GET /dashboard`: one page of what revguard knows, rendered on the server as HTML with
//! inline SVG charts — no script, no stylesheet or font to fetch, and a Content Security
//! Policy that forbids any request the page could make. Seven days of hourly counters
//! ending at the latest data (so a kept demo database shows its own week), in one mode
//! (`?mode=live|test`): MRR, payments succeeded and failed, refunds and disputes; open and
//! recent alerts with their numbers; open dunning cases by stage with amounts; and the
//! webhook delivery health (last received, p95 lag, rejected signatures).
//!
//! Every chart carries its numbers (`data-values` on each series) and draws each point
//! at `y = top + height × (1 − value / max)`, so a test can check the drawing against the
//! counters the API serves.

use std::collections::BTreeMap;
use std::fmt::Write;

use revguard_core::domain::account::Scope;
use revguard_core::domain::billing::views::{AccountSummary, CaseView, HourCounters};
use revguard_core::domain::detector::alerts::{datetime, AlertState};
use revguard_core::domain::metric::figure;
use revguard_core::domain::metric::{lag_histogram, lag_p95, Metric};
use revguard_core::domain::money::format_minor;
use revguard_core::domain::time::hour_of;

/// Hours the charts cover.
pub const WINDOW_HOURS: i64 = 7 * 24;

/// What the page shows, read from the store.
#[derive(Debug, Clone, Default)]
pub struct DashboardData {
    pub now: i64,
    pub livemode: bool,
    /// The first hour charted, and the end of the last (exclusive).
    pub from: i64,
    pub to: i64,
    /// Hourly counters of the mode over [from, to), and the gauges (hour 0).
    pub hours: Vec<HourCounters>,
    pub alerts: Vec<AlertState>,
    pub cases: Vec<CaseView>,
    /// Rejected deliveries since the server started, by reason (`None`: counted in another
    /// process, as on AWS, where the stack's CloudWatch dashboard shows them).
    pub rejected: Option<BTreeMap<String, u64>>,
    /// Whose billing the page shows: the platform's own account, a connected account, or
    /// the whole platform (its accounts added up).
    pub scope: Scope,
    /// The accounts seen, for the picker (Connect).
    pub accounts: Vec<AccountSummary>,
}

/// Reads what the page shows: the gauges first (the latest receipt sets the window), then
/// the window's counters, the alerts and the open dunning cases.
pub async fn load<R: revguard_core::ports::ReadModel>(
    store: &R,
    policy: &revguard_core::domain::billing::BillingPolicy,
    now: i64,
    livemode: bool,
    scope: Scope,
    rejected: Option<BTreeMap<String, u64>>,
) -> Result<DashboardData, revguard_core::StoreError> {
    let accounts = store.accounts(now).await?;
    let last_received = store
        .metrics(&scope, 0, 0)
        .await?
        .iter()
        .find(|h| h.hour == 0 && h.livemode == livemode)
        .and_then(|h| h.metrics.get("max_received_at").copied());
    let (from, to) = window(now, last_received);
    // The platform's own page shows the platform-wide alerts too; the whole platform's,
    // every alert.
    let asked = matches!(scope, Scope::Account(_)).then_some(&scope);
    let mut alerts = store
        .recent_alerts(
            asked,
            to,
            revguard_core::domain::audience::RECENT_ALERTS_SECS,
        )
        .await?;
    if scope.is_platform() {
        alerts.retain(|a| matches!(a.finding.scope, Scope::Platform | Scope::All));
    }
    let alerts = revguard_core::domain::audience::on_call_alerts(alerts);
    let cases = match scope.account() {
        Some(account) => store.dunning_cases(&account, Some("open"), policy).await?,
        None => {
            let mut all = Vec::new();
            for a in accounts.iter().filter(|a| a.open_dunning_cases > 0) {
                all.extend(
                    store
                        .dunning_cases(&a.account, Some("open"), policy)
                        .await?,
                );
            }
            all
        }
    };
    Ok(DashboardData {
        now,
        livemode,
        from,
        to,
        hours: store.metrics(&scope, from, to).await?,
        alerts,
        cases,
        rejected,
        scope,
        accounts,
    })
}

/// The window ending at the hour of the latest delivery (or now, if later data is absent).
pub fn window(now: i64, last_received: Option<i64>) -> (i64, i64) {
    let end = hour_of(last_received.map_or(now, |t| t.min(now))) + 3600;
    (end - WINDOW_HOURS * 3600, end)
}

/// One value per charted hour of a metric.
fn series(d: &DashboardData, metric: &str) -> Vec<i64> {
    let mut out = vec![0; WINDOW_HOURS as usize];
    for h in d.hours.iter().filter(|h| h.livemode == d.livemode) {
        if h.hour >= d.from && h.hour < d.to {
            out[((h.hour - d.from) / 3600) as usize] += h.metrics.get(metric).copied().unwrap_or(0);
        }
    }
    out
}

fn gauge(d: &DashboardData, metric: &str) -> Option<i64> {
    d.hours
        .iter()
        .find(|h| h.hour == 0 && h.livemode == d.livemode)
        .and_then(|h| h.metrics.get(metric).copied())
}

/// The currency with the largest MRR (the page charts one), and MRR at the end of each
/// hour: today's total, less what was gained and plus what was lost after that hour.
fn mrr(d: &DashboardData) -> Option<(String, Vec<i64>)> {
    let totals: BTreeMap<String, i64> = d
        .hours
        .iter()
        .filter(|h| h.hour == 0 && h.livemode == d.livemode)
        .flat_map(|h| h.metrics.iter())
        .filter_map(|(name, v)| match Metric::parse(name) {
            Some(Metric::MrrTotal(c)) => Some((c, *v)),
            _ => None,
        })
        .collect();
    let (currency, total) = totals.into_iter().max_by_key(|(_, v)| *v)?;
    let gained = series(d, &Metric::MrrGained(currency.clone()).name());
    let lost = series(d, &Metric::MrrLost(currency.clone()).name());
    let mut values = vec![0; gained.len()];
    let mut at_end = total;
    for i in (0..values.len()).rev() {
        values[i] = at_end;
        at_end -= gained[i] - lost[i];
    }
    Some((currency, values))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 160.0;
const LEFT: f64 = 64.0;
const TOP: f64 = 12.0;
const PLOT_W: f64 = WIDTH - LEFT - 8.0;
const PLOT_H: f64 = HEIGHT - TOP - 24.0;

/// A line chart of hourly series sharing one axis from 0 to their maximum.
fn line_chart(
    id: &str,
    title: &str,
    from: i64,
    lines: &[(&str, &str, Vec<i64>)],
    label: impl Fn(i64) -> String,
) -> String {
    let max = lines
        .iter()
        .flat_map(|(_, _, v)| v.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let n = lines.first().map_or(0, |l| l.2.len()).max(2);
    let x = |i: usize| LEFT + PLOT_W * i as f64 / (n - 1) as f64;
    let y = |v: i64| TOP + PLOT_H * (1.0 - v as f64 / max as f64);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<figure><figcaption>{}</figcaption><svg id="{id}" class="chart" data-max="{max}" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{}">"#,
        escape(title),
        escape(title)
    );
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{b}" stroke="#999"/><line x1="{LEFT}" y1="{b}" x2="{r}" y2="{b}" stroke="#999"/><text x="{lx}" y="{ty}" text-anchor="end" class="axis">{}</text><text x="{lx}" y="{b}" text-anchor="end" class="axis">{}</text>"##,
        escape(&label(max)),
        escape(&label(0)),
        b = TOP + PLOT_H,
        r = LEFT + PLOT_W,
        lx = LEFT - 4.0,
        ty = TOP + 8.0,
    );
    for day in 0..=7 {
        let i = (day * 24) as usize;
        let anchor = if day == 7 { "end" } else { "middle" };
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="{anchor}" class="axis">{}</text>"#,
            x(i.min(n - 1)),
            HEIGHT - 6.0,
            escape(&datetime(from + day * 86_400)[5..10])
        );
    }
    for (name, color, values) in lines {
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.2},{:.2}", x(i), y(*v)))
            .collect();
        let data: Vec<String> = values.iter().map(i64::to_string).collect();
        let _ = write!(
            svg,
            r#"<polyline class="series" data-series="{name}" data-values="{}" points="{}" fill="none" stroke="{color}" stroke-width="1.5"/>"#,
            data.join(","),
            points.join(" ")
        );
    }
    svg.push_str("</svg><div class=\"legend\">");
    for (name, color, values) in lines {
        let total: i64 = values.iter().sum();
        let _ = write!(
            svg,
            r#"<span><i style="background:{color}"></i>{} <b>{}</b></span>"#,
            escape(&name.replace('_', " ")),
            escape(&if id == "mrr" {
                label(values.last().copied().unwrap_or(0))
            } else {
                format!("{} in 7 days", label(total))
            })
        );
    }
    svg.push_str("</div></figure>");
    svg
}

fn plain(n: i64) -> String {
    figure("count", n as f64)
}

/// The account picker, once a connected account has been seen: the platform's own
/// account, the whole platform, and each connected account with its open cases and alerts.
fn account_picker(d: &DashboardData, mode: &str) -> String {
    if d.accounts.iter().all(|a| a.account.is_platform()) {
        return String::new();
    }
    let mut out = String::from(r#"<nav id="accounts" aria-label="Accounts"><ul>"#);
    let mut link = |scope: Scope, label: String| {
        let current = if scope == d.scope {
            r#" aria-current="page""#
        } else {
            ""
        };
        let param = match &scope {
            Scope::Platform => String::new(),
            s => format!("&amp;account={}", escape(s.label())),
        };
        let _ = write!(
            out,
            r#"<li><a href="?mode={mode}{param}" data-account="{}"{current}>{}</a></li>"#,
            escape(scope.label()),
            escape(&label)
        );
    };
    link(Scope::Platform, "Platform's own account".to_owned());
    link(Scope::All, "Whole platform".to_owned());
    for a in d.accounts.iter().filter(|a| !a.account.is_platform()) {
        link(
            Scope::of(&a.account),
            format!(
                "{} · {} open cases · {} open alerts",
                a.account, a.open_dunning_cases, a.open_alerts
            ),
        );
    }
    out.push_str("</ul></nav>");
    out
}

pub fn render(d: &DashboardData) -> String {
    let mode = if d.livemode { "live" } else { "test" };
    let other = if d.livemode { "test" } else { "live" };
    // The account rides along in every link, so switching modes keeps the account.
    let account_param = match &d.scope {
        Scope::Platform => String::new(),
        scope => format!("&amp;account={}", escape(scope.label())),
    };
    let mut body = String::new();
    let _ = write!(
        body,
        r#"<header><h1>revguard</h1><p>{mode} mode{} · {} to {} · <a href="?mode={other}{account_param}">{other} mode</a></p>{}</header>"#,
        match &d.scope {
            Scope::Platform => String::new(),
            Scope::All => " · whole platform".to_owned(),
            scope => format!(" · {}", escape(scope.label())),
        },
        datetime(d.from),
        datetime(d.to),
        account_picker(d, mode),
    );

    // Delivery health first: when webhooks stop, nothing else on the page is current.
    let last = gauge(d, &Metric::MaxReceivedAt.name());
    let day = |metric: &Metric| -> i64 {
        d.hours
            .iter()
            .filter(|h| h.livemode == d.livemode && h.hour >= d.to - 24 * 3600 && h.hour < d.to)
            .map(|h| h.metrics.get(&metric.name()).copied().unwrap_or(0))
            .sum()
    };
    let lag = lag_p95(&lag_histogram(day));
    let rejected: Option<u64> = d.rejected.as_ref().map(|r| r.values().sum());
    let _ = write!(
        body,
        r#"<section id="health"><h2>Webhook delivery</h2><dl><dt>Last received</dt><dd id="last-received">{}</dd><dt>p95 delivery lag, last 24 h</dt><dd id="lag-p95">{}</dd><dt>Rejected deliveries since start</dt><dd id="rejected">{}</dd></dl></section>"#,
        last.map_or("never".to_owned(), |t| format!(
            "{} ({} ago)",
            datetime(t),
            figure("ago_secs", (d.now - t).max(0) as f64)
        )),
        match lag {
            Some((i64::MAX, n)) => format!("over 1 h ({} deliveries)", plain(n)),
            Some((bound, n)) => format!(
                "≤ {} ({} deliveries)",
                figure("lag_secs", bound as f64),
                plain(n)
            ),
            None => "no deliveries".to_owned(),
        },
        match (rejected, &d.rejected) {
            (Some(0), _) => "none".to_owned(),
            (Some(_), Some(by_reason)) => by_reason
                .iter()
                .map(|(code, n)| format!("{} {}", plain(*n as i64), escape(code)))
                .collect::<Vec<_>>()
                .join(", "),
            _ => "counted by the webhook function: see the stack's CloudWatch dashboard".to_owned(),
        }
    );

    let _ = write!(
        body,
        r#"<section id="charts" data-from="{}" data-to="{}" data-livemode="{}"><h2>Last 7 days, hourly</h2><div class="grid">"#,
        d.from, d.to, d.livemode
    );
    match mrr(d) {
        Some((currency, values)) => body.push_str(&line_chart(
            "mrr",
            &format!("MRR ({})", currency.to_uppercase()),
            d.from,
            &[("mrr", "#2b6cb0", values)],
            |v| format_minor(v, &currency),
        )),
        None => body.push_str(
            r#"<figure><figcaption>MRR</figcaption><p>No subscriptions yet.</p></figure>"#,
        ),
    }
    body.push_str(&line_chart(
        "payments",
        "Payments",
        d.from,
        &[
            ("succeeded", "#2f855a", series(d, "payments_succeeded")),
            ("failed", "#c53030", series(d, "payments_failed")),
        ],
        plain,
    ));
    body.push_str(&line_chart(
        "refunds-disputes",
        "Refunds and disputes",
        d.from,
        &[
            ("refunds", "#b7791f", series(d, "refunds")),
            ("disputes", "#6b46c1", series(d, "disputes")),
        ],
        plain,
    ));
    body.push_str("</div></section>");

    let alerts: Vec<&AlertState> = d
        .alerts
        .iter()
        .filter(|a| a.livemode == d.livemode)
        .collect();
    body.push_str(r#"<section id="alerts"><h2>Alerts, open and recent</h2>"#);
    if alerts.is_empty() {
        body.push_str("<p>None.</p>");
    } else {
        body.push_str("<table><thead><tr><th>State</th><th>Severity</th><th>What happened</th><th>Observed</th><th>Expected</th><th>Opened</th></tr></thead><tbody>");
        for a in alerts {
            let f = &a.finding;
            let state = match a.resolved_at {
                Some(t) if !a.open => format!("resolved {}", datetime(t)),
                _ => "open".to_owned(),
            };
            let _ = write!(
                body,
                r#"<tr class="alert {}" data-alert-id="{}"><td>{}</td><td class="sev-{}">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                if a.open { "open" } else { "resolved" },
                escape(&a.id),
                escape(&state),
                a.severity.as_str(),
                a.severity.as_str(),
                escape(&f.explanation),
                escape(&figure(&f.metric, f.observed)),
                escape(&figure(&f.metric, f.expected)),
                datetime(a.opened_at)
            );
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("</section>");

    // Open cases by stage, amounts summed per currency.
    let mut stages: BTreeMap<String, (usize, BTreeMap<String, i64>)> = BTreeMap::new();
    for c in d.cases.iter().filter(|c| c.case.livemode == d.livemode) {
        let Some(stage) = &c.stage else { continue };
        let entry = stages.entry(stage.clone()).or_default();
        entry.0 += 1;
        let currency = c
            .case
            .currency
            .map(|c| c.to_string())
            .unwrap_or_else(|| "xxx".into());
        *entry.1.entry(currency).or_default() += c.case.amount_due;
    }
    body.push_str(r#"<section id="dunning"><h2>Open dunning cases</h2>"#);
    if stages.is_empty() {
        body.push_str("<p>None.</p>");
    } else {
        body.push_str(
            "<table><thead><tr><th>Stage</th><th>Cases</th><th>Amount due</th></tr></thead><tbody>",
        );
        for (stage, (count, amounts)) in &stages {
            let money: Vec<String> = amounts.iter().map(|(c, a)| format_minor(*a, c)).collect();
            let _ = write!(
                body,
                r#"<tr data-stage="{}"><td>{}</td><td>{count}</td><td>{}</td></tr>"#,
                escape(stage),
                escape(&stage.replace('_', " ")),
                escape(&money.join(" + "))
            );
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("</section>");

    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'"><meta name="viewport" content="width=device-width"><title>revguard · {mode}</title><style>{STYLE}</style></head><body>{body}</body></html>"#
    )
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:16px 24px;color:#1a202c}h1{margin:0;font-size:20px}h2{font-size:15px;margin:20px 0 8px}header p{margin:2px 0;color:#4a5568}.grid{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0;border:1px solid #e2e8f0;border-radius:6px;padding:8px}figcaption{font-weight:600}.axis{font-size:10px;fill:#4a5568}.legend span{margin-right:14px}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px;margin:0}dt{color:#4a5568}dd{margin:0}table{border-collapse:collapse}td,th{border-bottom:1px solid #e2e8f0;padding:4px 10px;text-align:left;vertical-align:top}.sev-critical{color:#c53030;font-weight:600}.sev-warning{color:#b7791f;font-weight:600}tr.resolved{color:#718096}";
