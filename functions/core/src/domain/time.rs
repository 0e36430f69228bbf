//! Times as revguard reads and writes them: unix seconds inside, RFC 3339 and UTC civil
//! dates at the edges, through the `time` crate. A leaf module: nothing of the crate.

use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime};

/// Unix seconds from the wall clock (0 if it reads before 1970): for leases and at the
/// edges; the use cases take the moment they judge as an argument.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The start of the UTC hour holding `t`.
pub fn hour_of(t: i64) -> i64 {
    t.div_euclid(3600) * 3600
}

/// Unix seconds of an RFC 3339 time such as `2026-01-01T00:00:00Z` or with an offset
/// (fractions of a second dropped), or `None`.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

fn utc(t: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(t).ok()
}

/// Unix seconds, or an RFC 3339 UTC time such as `2026-01-01T00:00:00Z` (what the CLIs take).
pub fn parse_time(s: &str) -> Option<i64> {
    s.parse::<i64>().ok().or_else(|| parse_rfc3339(s))
}

/// `HH:MM` UTC of a unix time.
pub fn hhmm(t: i64) -> String {
    let s = t.rem_euclid(86_400);
    format!("{:02}:{:02}", s / 3600, (s % 3600) / 60)
}

/// `YYYY-MM-DDTHH:MM:SSZ`, the form of EventBridge Scheduler's
/// `<aws.scheduler.scheduled-time>`.
pub fn rfc3339(t: i64) -> String {
    match utc(t) {
        Some(d) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute(),
            d.second()
        ),
        None => format!("{t}"),
    }
}

/// `YYYY-MM-DD HH:MM UTC`.
pub fn datetime(t: i64) -> String {
    match utc(t) {
        Some(d) => format!(
            "{:04}-{:02}-{:02} {} UTC",
            d.year(),
            u8::from(d.month()),
            d.day(),
            hhmm(t)
        ),
        None => format!("{t} (unix)"),
    }
}

/// Whether a card expiring at the end of (year, month) has expired at unix time `t`.
pub fn card_expired_at(expiry: (i64, i64), t: i64) -> bool {
    let (year, month) = expiry;
    // The first second after the expiry month.
    let (ny, nm) = if month >= 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    let first = i32::try_from(ny)
        .ok()
        .zip(u8::try_from(nm).ok().and_then(|m| Month::try_from(m).ok()));
    match first.and_then(|(y, m)| Date::from_calendar_date(y, m, 1).ok()) {
        Some(d) => t >= d.midnight().assume_utc().unix_timestamp(),
        // An expiry no calendar has: treat it as expired rather than trust it.
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_and_print() {
        assert_eq!(parse_rfc3339("2026-01-01T00:15:00Z"), Some(1_767_226_500));
        assert_eq!(
            parse_rfc3339("2026-01-01T00:15:00.250+00:00"),
            Some(1_767_226_500)
        );
        assert_eq!(
            parse_rfc3339("2026-01-01T01:15:00+01:00"),
            Some(1_767_226_500)
        );
        assert_eq!(parse_rfc3339("2026-01-01 00:15"), None);
        assert_eq!(datetime(1_767_226_500), "2026-01-01 00:15 UTC");
        assert_eq!(rfc3339(1_767_226_507), "2026-01-01T00:15:07Z");
        assert_eq!(parse_rfc3339(&rfc3339(1_767_226_507)), Some(1_767_226_507));
        assert_eq!(datetime(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(hour_of(1_767_226_500), 1_767_225_600);
        assert_eq!(hour_of(-1), -3600);
    }

    #[test]
    fn a_card_expires_after_its_month() {
        let jan_2026 = 1_767_225_600;
        assert!(!card_expired_at((2025, 12), jan_2026 - 1));
        assert!(card_expired_at((2025, 12), jan_2026));
        assert!(
            card_expired_at((2025, -3), 0),
            "an impossible month is not trusted"
        );
    }
}
