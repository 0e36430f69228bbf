//! Signals and the alert lifecycle on hand-made counters.

use revguard_core::domain::detector::alerts::{plan, render, AlertState, Transition};
use revguard_core::domain::detector::*;
use revguard_core::domain::metric::Metric;
use revguard_core::domain::time::hour_of;

const H: i64 = 1_767_916_800; // a midnight, 2026-01-09

/// A week of steady traffic: `per_hour` of `metric` in every hour before `now`'s hour.
fn steady(metric: &str, per_hour: i64, now: i64) -> Series {
    let mut s = Series::new();
    let mut h = hour_of(now) - 8 * 86_400;
    while h < hour_of(now) - 3600 {
        s.entry(h)
            .or_default()
            .insert(Metric::parse(metric).unwrap(), per_hour);
        h += 3600;
    }
    s
}

fn set(s: &mut Series, hour: i64, metric: &str, v: i64) {
    s.entry(hour)
        .or_default()
        .insert(Metric::parse(metric).unwrap(), v);
}

#[test]
fn forty_failed_charges_against_four_pages_and_two_against_a_trickle_does_not() {
    let now = H + 3 * 3600 + 1800; // 03:30
    let c = DetectConfig::default();
    let mut s = steady("payments_failed", 4, now);
    set(&mut s, hour_of(now) - 3600, "payments_failed", 4);
    set(&mut s, hour_of(now), "payments_failed", 40);
    let f = detect(&s, true, now, &c);
    let spike = f
        .iter()
        .find(|f| f.key == "spike:payments_failed")
        .expect("a spike");
    assert_eq!(spike.severity, Severity::Critical);
    assert!(spike.ratio > 5.0, "{spike:?}");
    assert!(spike.explanation.contains("Failed payments"));

    // A baseline of 0.3 an hour: 2 in the window is ordinary.
    let mut quiet = Series::new();
    let mut h = hour_of(now) - 8 * 86_400;
    while h < hour_of(now) {
        if (h / 3600) % 10 < 3 {
            set(&mut quiet, h, "payments_failed", 1);
        }
        h += 3600;
    }
    set(&mut quiet, hour_of(now), "payments_failed", 2);
    assert!(detect(&quiet, true, now, &c)
        .iter()
        .all(|f| f.key != "spike:payments_failed"));
}

#[test]
fn the_seed_rule_is_kept_for_comparison() {
    let now = H + 5 * 3600 + 600;
    let c = DetectConfig {
        rule: Rule::LegacyThreeTimesMean,
        ..DetectConfig::default()
    };
    let mut s = steady("refunds", 1, now);
    set(&mut s, hour_of(now) - 3600, "refunds", 5); // > 3 × 1 + 1
    let f = detect(&s, false, now, &c);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].severity, Severity::Warning);
    // And it is noisier: 2 against 0.3 already fires (> 3 × 0.3 + 1).
    let mut low = Series::new();
    for i in 1..=168 {
        if i % 4 == 0 {
            set(&mut low, hour_of(now) - 3600 - i * 3600, "refunds", 1);
        }
    }
    set(&mut low, hour_of(now) - 3600, "refunds", 2);
    assert_eq!(detect(&low, false, now, &c).len(), 1);
    let default = DetectConfig::default();
    assert!(detect(&low, false, now, &default)
        .iter()
        .all(|f| f.key != "spike:refunds"));
}

#[test]
fn time_of_day_matters() {
    // 30 an hour at 15:00, 3 at 03:00 every day; 30 at 03:00 is a spike, 30 at 15:00 is not.
    let mut s = Series::new();
    let mut h = H - 8 * 86_400;
    while h < H + 86_400 {
        let hour = (h % 86_400) / 3600;
        set(
            &mut s,
            h,
            "subscriptions_canceled",
            if hour == 15 { 30 } else { 3 },
        );
        h += 3600;
    }
    let c = DetectConfig::default();
    let afternoon = H + 15 * 3600 + 3000;
    assert!(detect(&s, true, afternoon, &c)
        .iter()
        .all(|f| f.key != "spike:subscriptions_canceled"));
    set(&mut s, H + 3 * 3600, "subscriptions_canceled", 30);
    let night = H + 3 * 3600 + 3000;
    assert!(detect(&s, true, night, &c)
        .iter()
        .any(|f| f.key == "spike:subscriptions_canceled"));
}

#[test]
fn a_delivery_gap_and_a_drop_are_seen() {
    let now = H + 14 * 3600 + 2700;
    let c = DetectConfig::default();
    let mut s = steady("events_received", 20, now);
    for (m, v) in [("payments_succeeded", 20)] {
        let mut h = hour_of(now) - 8 * 86_400;
        while h < hour_of(now) - 3600 {
            set(&mut s, h, m, v);
            h += 3600;
        }
    }
    // Nothing since 12:58.
    set(&mut s, 0, "max_received_at", hour_of(now) - 3600 - 120);
    let f = detect(&s, true, now, &c);
    let gap = f.iter().find(|f| f.key == "delivery_gap").expect("a gap");
    assert_eq!(gap.severity, Severity::Critical);
    assert_eq!(gap.observed, 0.0);
    assert!(f.iter().any(|f| f.key == "drop:payments_succeeded"));
    // The same window with normal deliveries: quiet.
    set(&mut s, 0, "max_received_at", now - 60);
    assert!(detect(&s, true, now, &c)
        .iter()
        .all(|f| f.key != "delivery_gap"));
}

#[test]
fn mrr_fall_lag_rates_and_lapses() {
    let now = H + 12 * 3600 + 600;
    let c = DetectConfig::default();
    let mut s = Series::new();
    set(&mut s, 0, "mrr_total.usd", 90_000);
    set(&mut s, hour_of(now) - 3600, "mrr_lost.usd", 10_000); // from 100k to 90k: 10 %
    set(&mut s, hour_of(now), "lag_gt_3600", 30);
    set(&mut s, hour_of(now), "lag_le_2", 5);
    set(&mut s, hour_of(now), "payments_failed", 30);
    set(&mut s, hour_of(now), "payments_succeeded", 20);
    set(&mut s, hour_of(now) - 2 * 86_400, "active_period_ends", 2);
    let f = detect(&s, false, now, &c);
    let key = |k: &str| {
        f.iter()
            .find(|f| f.key == k)
            .unwrap_or_else(|| panic!("{k} in {f:#?}"))
    };
    assert_eq!(key("mrr_fall:usd").severity, Severity::Critical);
    assert_eq!(key("delivery_lag").severity, Severity::Critical);
    assert_eq!(key("failure_rate").severity, Severity::Critical); // 60 %
    assert_eq!(key("silent_lapse").observed, 2.0);
    assert!(!f[0].livemode);
}

fn finding(key: &str, sev: Severity) -> Finding {
    Finding {
        scope: Default::default(),
        accounts: Vec::new(),
        key: key.into(),
        signal: "spike".into(),
        metric: "refunds".into(),
        livemode: true,
        window_start: H,
        window_end: H + 3600,
        observed: 20.0,
        expected: 2.0,
        spread: 1.0,
        ratio: 10.0,
        severity: sev,
        explanation: "Refunds: 20 between 00:00 and 01:00 against 2.0 expected at this time of day"
            .into(),
    }
}

fn apply(stored: &mut Vec<AlertState>, changes: &[alerts::AlertChange]) {
    for c in changes {
        match stored.iter_mut().find(|a| a.id == c.state.id) {
            Some(a) => *a = c.state.clone(),
            None => stored.push(c.state.clone()),
        }
    }
}

#[test]
fn an_alert_opens_escalates_reminds_and_resolves_once_each() {
    let c = DetectConfig::default();
    let mut stored = Vec::new();
    let mut seen = Vec::new();
    let runs: Vec<(i64, Vec<Finding>)> = vec![
        (H, vec![finding("spike:refunds", Severity::Warning)]),
        (H + 900, vec![finding("spike:refunds", Severity::Warning)]),
        (H + 1800, vec![finding("spike:refunds", Severity::Critical)]),
        (H + 2700, vec![finding("spike:refunds", Severity::Warning)]),
        (
            H + 7 * 3600,
            vec![finding("spike:refunds", Severity::Critical)],
        ),
        (H + 7 * 3600 + 900, vec![]),
        // Back above the threshold for a moment: no flapping, it stays open.
        (
            H + 7 * 3600 + 1800,
            vec![finding("spike:refunds", Severity::Warning)],
        ),
        (H + 7 * 3600 + 2700, vec![]),
        (H + 8 * 3600, vec![]),
        (H + 8 * 3600 + 2700, vec![]),
    ];
    for (now, findings) in runs {
        let changes = plan(&findings, &[], &stored, true, now, &c);
        seen.extend(
            changes
                .iter()
                .map(|c| c.transition)
                .filter(|t| t.is_published()),
        );
        apply(&mut stored, &changes);
    }
    assert_eq!(
        seen,
        [
            Transition::Opened,
            Transition::Escalated,
            Transition::Reminder,
            Transition::Resolved
        ]
    );
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].open);
}

#[test]
fn two_concurrent_runs_plan_the_same_change_from_the_same_version() {
    // Both runs read the same state; the store accepts the first write conditioned on
    // that version and refuses the second, so the transition is published once.
    let c = DetectConfig::default();
    let f = [finding("spike:refunds", Severity::Warning)];
    let a = plan(&f, &[], &[], true, H, &c);
    let b = plan(&f, &[], &[], true, H, &c);
    assert_eq!(a, b);
    assert_eq!(a[0].expected_version, None);
}

#[test]
fn event_level_alerts_open_once_and_resolve_by_age() {
    let c = DetectConfig::default();
    let mut stored = Vec::new();
    let mut dup = finding("duplicate_charge:ch_1+ch_2", Severity::Warning);
    dup.signal = "duplicate_charge".into();
    let opened = plan(&[], &[dup.clone()], &stored, true, H, &c);
    assert_eq!(opened[0].transition, Transition::Opened);
    assert!(opened[0].state.event_level);
    apply(&mut stored, &opened);
    assert!(plan(&[], &[], &stored, true, H + 3600, &c).is_empty());
    let later = plan(&[], &[], &stored, true, H + 25 * 3600, &c);
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].transition, Transition::Resolved);
}

#[test]
fn messages_fit_email_and_sms() {
    let c = DetectConfig::default();
    let changes = plan(
        &[finding("spike:refunds", Severity::Critical)],
        &[],
        &[],
        true,
        H + 1800,
        &c,
    );
    let m = render(&changes[0]);
    assert!(m.sms.chars().count() <= 140, "{}", m.sms);
    assert!(m.sms.contains("CRITICAL"));
    assert!(m.email.contains("Observed:  20"));
    assert!(m.email.contains("What to check first"));
    assert!(m.email.contains("2026-01-09 00:00 UTC"));
    assert_eq!(m.id, "live:spike:refunds:1");
}
