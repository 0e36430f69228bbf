//! What revguard knows of a customer beyond its subscriptions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Version;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerState {
    pub id: String,
    pub livemode: bool,
    pub default_payment_method: Option<String>,
    /// The version of the snapshot that set `default_payment_method`.
    pub default_pm_version: Option<Version>,
    /// Card expiry (year, month) per attached payment method.
    pub cards: BTreeMap<String, (i64, i64)>,
    /// Dispute id → status (`open` until `charge.dispute.closed` tells the result).
    pub disputes: BTreeMap<String, String>,
    pub early_fraud_warnings: u32,
    pub deleted: bool,
    /// Successful charges of the last few minutes (created, amount, currency, charge id),
    /// to notice a duplicate charge.
    #[serde(default)]
    pub recent_charges: Vec<(i64, i64, String, String)>,
}

impl CustomerState {
    pub fn new(id: &str, livemode: bool) -> Self {
        Self {
            id: id.to_owned(),
            livemode,
            default_payment_method: None,
            default_pm_version: None,
            cards: BTreeMap::new(),
            disputes: BTreeMap::new(),
            early_fraud_warnings: 0,
            deleted: false,
            recent_charges: Vec::new(),
        }
    }

    /// An open dispute, or one the customer lost.
    pub fn disputed(&self) -> bool {
        self.disputes.values().any(|s| s != "won" && s != "warning_closed")
    }

    pub fn has_payment_method(&self) -> bool {
        self.default_payment_method.is_some() || !self.cards.is_empty()
    }

    /// The expiry of the card that will be charged (the default, else the only one).
    pub fn charging_card_expiry(&self) -> Option<(i64, i64)> {
        match &self.default_payment_method {
            Some(pm) => self.cards.get(pm).copied(),
            None if self.cards.len() == 1 => self.cards.values().next().copied(),
            None => None,
        }
    }
}

/// Whether a card expiring at the end of (year, month) has expired at unix time `t`.
pub fn card_expired_at(expiry: (i64, i64), t: i64) -> bool {
    let (year, month) = expiry;
    // The first second after the expiry month.
    let (ny, nm) = if month >= 12 { (year + 1, 1) } else { (year, month + 1) };
    t >= days_from_civil(ny, nm, 1) * 86_400
}

/// Unix seconds of an RFC 3339 UTC time such as `2026-01-01T00:00:00Z` (fractions of a
/// second dropped), or `None`.
pub fn parse_rfc3339_utc(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, min) = (t.next()?.parse::<i64>().ok()?, t.next()?.parse::<i64>().ok()?);
    let sec = match t.next() {
        Some(x) => x.split('.').next()?.parse::<i64>().ok()?,
        None => 0,
    };
    Some(days_from_civil(y, m, day) * 86_400 + h * 3600 + min * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_expiry_is_the_end_of_its_month() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2026, 1, 1) * 86_400, 1_767_225_600);
        let end_of_dec_2025 = 1_767_225_600;
        assert!(!card_expired_at((2025, 12), end_of_dec_2025 - 1));
        assert!(card_expired_at((2025, 12), end_of_dec_2025));
    }

    #[test]
    fn rfc3339_utc_times_parse() {
        assert_eq!(parse_rfc3339_utc("2026-01-01T00:15:00Z"), Some(1_767_226_500));
        assert_eq!(parse_rfc3339_utc("2026-01-01T00:15:00.250+00:00"), Some(1_767_226_500));
        assert_eq!(parse_rfc3339_utc("2026-01-01 00:15"), None);
    }
}
