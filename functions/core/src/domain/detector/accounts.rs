//! Connect: a platform's detection over its own account and its connected accounts.
//!
//! Each connected account is judged on its own counters, on a volume floor
//! ([`DetectConfig::account_baseline_floor`]), so that a refund spike at one small account
//! does not drown in the platform's volume, and a quiet account is judged on counts. The
//! endpoint's signals (deliveries, lag) are judged once, on every account's deliveries
//! added up, under the platform's alert ids: one endpoint receives them all. When many
//! accounts raise the same signal at once (a processor incident), one alert for the whole
//! platform names them instead of one alert each; and a signal that only the accounts
//! added up show is the whole platform's too.

use std::collections::BTreeMap;

use super::series::Series;
use super::signals::detect;
use super::DetectConfig;
use crate::domain::account::{Account, Scope};
use crate::domain::finding::Finding;

/// How many accounts a platform alert names before "and N more".
const NAMED_ACCOUNTS: usize = 20;

/// Signals about the endpoint and the deliveries rather than about one account's billing:
/// judged on the whole platform's traffic, under the platform's own alert ids.
pub fn is_endpoint_signal(signal: &str) -> bool {
    matches!(
        signal,
        "delivery_gap" | "delivery_lag" | "events_missing" | "reconcile_drift"
    ) || signal.starts_with("endpoint_")
}

/// Every account's series added up, hour by hour: sums add, maxima take the largest.
pub fn added_up<'a>(series: impl IntoIterator<Item = &'a Series>) -> Series {
    let mut out = Series::new();
    for s in series {
        for (hour, metrics) in s {
            let slot = out.entry(*hour).or_default();
            for (metric, value) in metrics {
                let aggregation = metric.aggregation();
                slot.entry(metric.clone())
                    .and_modify(|v| *v = aggregation.combine(*v, *value))
                    .or_insert(*value);
            }
        }
    }
    out
}

/// The window findings of one mode for a platform: its own account's, each active
/// connected account's, and the whole platform's. With no connected account active it is
/// [`detect`] on the platform's own counters, as before Connect.
pub fn detect_platform(
    own: &Series,
    connected: &BTreeMap<Account, Series>,
    livemode: bool,
    now: i64,
    config: &DetectConfig,
) -> Vec<Finding> {
    if connected.is_empty() {
        return detect(own, livemode, now, config);
    }
    let whole = added_up(std::iter::once(own).chain(connected.values()));
    let whole_found = detect(&whole, livemode, now, config);
    // The endpoint's signals, on every delivery, under the platform's ids.
    let mut out: Vec<Finding> = whole_found
        .iter()
        .filter(|f| is_endpoint_signal(&f.signal))
        .cloned()
        .collect();
    out.extend(
        detect(own, livemode, now, config)
            .into_iter()
            .filter(|f| !is_endpoint_signal(&f.signal)),
    );
    let account_config = config.for_connected_account();
    let mut by_account: Vec<Finding> = Vec::new();
    for (account, series) in connected {
        by_account.extend(
            detect(series, livemode, now, &account_config)
                .into_iter()
                .filter(|f| !is_endpoint_signal(&f.signal))
                .map(|f| f.in_scope(Scope::of(account))),
        );
    }
    // Signals many accounts raise at once: one platform finding each.
    let mut raised_by: BTreeMap<String, Vec<&Finding>> = BTreeMap::new();
    for f in &by_account {
        raised_by
            .entry(f.unscoped_key().to_owned())
            .or_default()
            .push(f);
    }
    let clustered: BTreeMap<String, Finding> = raised_by
        .iter()
        .filter(|(_, fs)| fs.len() >= config.cluster_min_accounts.max(2))
        .map(|(key, fs)| {
            let base = whole_found.iter().find(|f| &f.key == key);
            (key.clone(), cluster(base, fs))
        })
        .collect();
    out.extend(
        by_account
            .iter()
            .filter(|f| !clustered.contains_key(f.unscoped_key()))
            .cloned(),
    );
    // What only the accounts added up show is the whole platform's.
    let raised_anywhere =
        |key: &str| raised_by.contains_key(key) || out.iter().any(|f| f.key == key);
    let spread_thin: Vec<Finding> = whole_found
        .iter()
        .filter(|f| !is_endpoint_signal(&f.signal))
        .filter(|f| !clustered.contains_key(&f.key) && !raised_anywhere(&f.key))
        .map(|f| {
            let mut f = f.clone();
            f.explanation = format!("Across the platform's accounts: {}", f.explanation);
            f.in_scope(Scope::All)
        })
        .collect();
    out.extend(spread_thin);
    out.extend(clustered.into_values());
    out
}

/// One platform finding for a signal raised by several accounts: the accounts added up
/// when they raise it too (else the worst account's numbers), at the worst severity, naming
/// the accounts.
fn cluster(whole: Option<&Finding>, raised: &[&Finding]) -> Finding {
    let worst = raised
        .iter()
        .max_by(|a, b| {
            a.severity
                .cmp(&b.severity)
                .then(a.ratio.total_cmp(&b.ratio))
        })
        .expect("a cluster has findings");
    let mut accounts: Vec<String> = raised.iter().map(|f| f.scope.label().to_owned()).collect();
    accounts.sort();
    let mut named = accounts
        .iter()
        .take(NAMED_ACCOUNTS)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if accounts.len() > NAMED_ACCOUNTS {
        named.push_str(&format!(" and {} more", accounts.len() - NAMED_ACCOUNTS));
    }
    let mut f = match whole {
        Some(w) => w.clone(),
        None => {
            let mut w = (*worst).clone();
            w.key = w.unscoped_key().to_owned();
            w.scope = Scope::Platform;
            w
        }
    };
    f.severity = f.severity.max(worst.severity);
    f.explanation = format!(
        "{} accounts at once ({named}). {}",
        accounts.len(),
        f.explanation
    );
    f.accounts = accounts;
    f.in_scope(Scope::All)
}
