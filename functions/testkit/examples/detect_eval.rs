//! Runs many seeded scenarios through the worker logic and the real detector: for the
//! default rule without a Stripe key (delivery judged by silence) and with one (the
//! completeness audit against a Stripe double that knows every event the scenario
//! created), and for the seeds' 3×+1 rule without a key. Scores incidents detected, time
//! to detect, and every message on call got (openings, escalations, reminders,
//! resolutions; event-level alerts included; the team's win-backs not), false when no
//! injected incident explains its alert. Used by `scripts/detect-eval`.
//!
//!   detect_eval [--seeds 50] [--days 28] [--first-seed 1] [--verbose]

use std::collections::BTreeMap;

use revguard_core::domain::billing::BillingPolicy;
use revguard_core::domain::detector::{DetectConfig, Rule};
use revguard_testkit::simulation::eval::{evaluate, EvalResult, IncidentResult};
use revguard_testkit::simulation::scenario::{generate, IncidentKind, ScenarioConfig};

struct Setup {
    name: &'static str,
    rule: Rule,
    audit: bool,
}

const SETUPS: [Setup; 3] = [
    Setup {
        name: "default, no key (silence)",
        rule: Rule::TimeOfDay,
        audit: false,
    },
    Setup {
        name: "default, Stripe key (audit)",
        rule: Rule::TimeOfDay,
        audit: true,
    },
    Setup {
        name: "seeds' 3x+1, no key",
        rule: Rule::LegacyThreeTimesMean,
        audit: false,
    },
];

fn minutes(mut t: Vec<i64>) -> (usize, i64, i64) {
    t.sort();
    (
        t.len(),
        t.get(t.len() / 2).copied().unwrap_or(0) / 60,
        t.last().copied().unwrap_or(0) / 60,
    )
}

fn main() {
    let mut seeds = 50u64;
    let mut days = 28i64;
    let mut verbose = false;
    let mut first = 1u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seeds" => seeds = args.next().and_then(|v| v.parse().ok()).expect("--seeds N"),
            "--days" => days = args.next().and_then(|v| v.parse().ok()).expect("--days N"),
            "--verbose" => verbose = true,
            "--first-seed" => {
                first = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--first-seed N")
            }
            other => panic!("unknown argument {other}"),
        }
    }
    let policy = BillingPolicy::default();
    let mut results: Vec<Vec<EvalResult>> = SETUPS.iter().map(|_| Vec::new()).collect();
    // Per outage (seed order): when Stripe created the first event it withheld, from
    // which on there is something to miss.
    let mut first_withheld: Vec<Option<i64>> = Vec::new();
    for seed in first..first + seeds {
        let mut sc = ScenarioConfig::new(seed);
        sc.monitored_days = days;
        let scenario = generate(sc);
        for outage in scenario
            .incidents
            .iter()
            .filter(|i| i.kind == IncidentKind::WebhookOutage)
        {
            first_withheld.push(
                scenario
                    .events
                    .iter()
                    .filter(|e| e.created >= outage.start && e.created < outage.end)
                    .map(|e| e.created)
                    .min(),
            );
        }
        for (i, setup) in SETUPS.iter().enumerate() {
            let config = DetectConfig {
                rule: setup.rule,
                ..DetectConfig::default()
            };
            let r = evaluate(&scenario, &config, &policy, 900, setup.audit);
            if verbose && setup.rule == Rule::TimeOfDay {
                for m in &r.false_messages {
                    eprintln!(
                        "seed {seed} [{}]: false {} at {} {}: {}",
                        setup.name,
                        m.transition.as_str(),
                        m.at,
                        m.alert_id,
                        m.explanation
                    );
                }
                for inc in r.incidents.iter().filter(|x| {
                    x.time_to_detect()
                        .is_none_or(|t| t > x.incident.kind.detection_target_secs())
                }) {
                    eprintln!(
                        "seed {seed} [{}]: {:?} at {} (day {}) detected after {:?} min by {:?}",
                        setup.name,
                        inc.incident.kind,
                        revguard_core::domain::detector::hhmm(inc.incident.start),
                        (inc.incident.start.div_euclid(86_400) + 4).rem_euclid(7),
                        inc.time_to_detect().map(|t| t / 60),
                        inc.first_alert
                    );
                }
            }
            results[i].push(r);
        }
    }

    let weeks = (seeds as f64 * days as f64) / 7.0;
    println!("{seeds} seeded scenarios (seeds {first} to {}), {days} monitored days each ({weeks:.0} simulated weeks), detector every 15 min\n", first + seeds - 1);
    println!("| setup | incidents caught | within target | time to detect: median | max | false alerts per week | false on-call messages per week |");
    println!("|---|---|---|---|---|---|---|");
    for (i, setup) in SETUPS.iter().enumerate() {
        let all: Vec<&IncidentResult> =
            results[i].iter().flat_map(|r| r.incidents.iter()).collect();
        let caught = all.iter().filter(|x| x.detected_at.is_some()).count();
        let on_time = all
            .iter()
            .filter(|x| {
                x.time_to_detect()
                    .is_some_and(|t| t <= x.incident.kind.detection_target_secs())
            })
            .count();
        let (_, median, max) = minutes(all.iter().filter_map(|x| x.time_to_detect()).collect());
        let false_alerts: usize = results[i].iter().map(|r| r.false_alerts.len()).sum();
        let false_messages: usize = results[i].iter().map(|r| r.false_messages.len()).sum();
        println!(
            "| {} | {caught}/{} | {on_time}/{} | {median} min | {max} min | {:.2} | {:.2} |",
            setup.name,
            all.len(),
            all.len(),
            false_alerts as f64 / weeks,
            false_messages as f64 / weeks
        );
    }

    // Per signal: false messages on call got, a week (every transition counted).
    println!("\nFalse on-call messages per week, by signal (openings, escalations, reminders and resolutions of alerts no injected incident explains; all messages in brackets)");
    let mut by_signal: BTreeMap<String, Vec<(usize, usize)>> = BTreeMap::new();
    for (i, _) in SETUPS.iter().enumerate() {
        for r in &results[i] {
            for h in &r.heard {
                by_signal
                    .entry(h.signal.clone())
                    .or_insert_with(|| vec![(0, 0); SETUPS.len()])[i]
                    .1 += 1;
            }
            for h in &r.false_messages {
                by_signal
                    .entry(h.signal.clone())
                    .or_insert_with(|| vec![(0, 0); SETUPS.len()])[i]
                    .0 += 1;
            }
        }
    }
    println!(
        "| signal | {} |",
        SETUPS
            .iter()
            .map(|s| s.name)
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---|".repeat(SETUPS.len()));
    for (signal, counts) in &by_signal {
        let cells: Vec<String> = counts
            .iter()
            .map(|(f, all)| format!("{:.2} ({:.2})", *f as f64 / weeks, *all as f64 / weeks))
            .collect();
        println!("| {signal} | {} |", cells.join(" | "));
    }
    let totals: Vec<String> = (0..SETUPS.len())
        .map(|i| {
            let f: usize = results[i].iter().map(|r| r.false_messages.len()).sum();
            let all: usize = results[i].iter().map(|r| r.heard.len()).sum();
            format!("**{:.2}** ({:.2})", f as f64 / weeks, all as f64 / weeks)
        })
        .collect();
    println!("| all | {} |", totals.join(" | "));

    for (i, setup) in SETUPS.iter().enumerate().take(2) {
        println!(
            "\nBy incident ({}): caught within target / injected, median and max minutes to detect",
            setup.name
        );
        let mut by_kind: BTreeMap<&str, (usize, usize, Vec<i64>)> = BTreeMap::new();
        for r in &results[i] {
            for x in &r.incidents {
                let e = by_kind.entry(x.incident.kind.as_str()).or_default();
                e.1 += 1;
                if let Some(t) = x.time_to_detect() {
                    if t <= x.incident.kind.detection_target_secs() {
                        e.0 += 1;
                    }
                    e.2.push(t);
                }
            }
        }
        for kind in IncidentKind::ALL {
            if let Some((ok, n, t)) = by_kind.remove(kind.as_str()) {
                let (_, median, max) = minutes(t);
                println!(
                    "  {:<20} {ok}/{n}  median {median} min, max {max} min (target {} min)",
                    kind.as_str(),
                    kind.detection_target_secs() / 60
                );
            }
        }
    }

    println!("\nWebhook outage: minutes to the first on-call message, from the outage's start and from the first event it withheld");
    println!("| setup | caught | from start: within 30 min | median | max | night (00-06 UTC) max | from first withheld: within 30 min | median | max |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (i, setup) in SETUPS.iter().enumerate().take(2) {
        let outages: Vec<&IncidentResult> = results[i]
            .iter()
            .flat_map(|r| r.incidents.iter())
            .filter(|x| x.incident.kind == IncidentKind::WebhookOutage)
            .collect();
        let ttd: Vec<i64> = outages.iter().filter_map(|x| x.time_to_detect()).collect();
        let within = ttd.iter().filter(|t| **t <= 30 * 60).count();
        let night: Vec<i64> = outages
            .iter()
            .filter(|x| x.incident.start.rem_euclid(86_400) < 6 * 3600)
            .filter_map(|x| x.time_to_detect())
            .collect();
        let from_withheld: Vec<i64> = outages
            .iter()
            .zip(&first_withheld)
            .filter_map(|(x, w)| Some(x.detected_at? - (*w)?))
            .collect();
        let within_withheld = from_withheld.iter().filter(|t| **t <= 30 * 60).count();
        let (caught, median, max) = minutes(ttd);
        let (nights, _, night_max) = minutes(night);
        let (_, w_median, w_max) = minutes(from_withheld);
        println!(
            "| {} | {caught}/{} | {within}/{} | {median} min | {max} min | {night_max} min ({nights} at night) | {within_withheld}/{} | {w_median} min | {w_max} min |",
            setup.name,
            outages.len(),
            outages.len(),
            outages.len(),
        );
    }
}
