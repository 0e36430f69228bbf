//! Runs many seeded scenarios through the worker logic and the detector, for the default
//! rule and the seeds' 3×+1 rule side by side: incidents detected, time to detect, false
//! alerts per simulated week. Used by `scripts/detect-eval`.
//!
//!   detect_eval [--seeds 50] [--days 7] [--first-seed 1] [--verbose]

use std::collections::BTreeMap;

use revguard_core::billing::BillingPolicy;
use revguard_core::detect::{DetectConfig, Rule};
use revguard_core::simulation::eval::{evaluate, EvalResult};
use revguard_core::simulation::scenario::{generate, IncidentKind, ScenarioConfig};

fn main() {
    let mut seeds = 50u64;
    let mut days = 7i64;
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
    let rules = [
        ("default (time of day, Poisson)", Rule::TimeOfDay),
        ("seeds' 3x+1", Rule::Seed3x),
    ];
    let mut results: Vec<Vec<EvalResult>> = vec![Vec::new(), Vec::new()];
    for seed in first..first + seeds {
        let mut sc = ScenarioConfig::new(seed);
        sc.monitored_days = days;
        let scenario = generate(sc);
        for (i, (_, rule)) in rules.iter().enumerate() {
            let config = DetectConfig {
                rule: *rule,
                ..DetectConfig::default()
            };
            let r = evaluate(&scenario, &config, &policy, 900);
            if verbose && i == 0 {
                for f in &r.false_alerts {
                    eprintln!(
                        "seed {seed}: false alert at {} {}: {}",
                        f.at, f.alert_id, f.explanation
                    );
                }
                for inc in r.incidents.iter().filter(|x| {
                    x.time_to_detect()
                        .is_none_or(|t| t > x.incident.kind.detection_target_secs())
                }) {
                    eprintln!(
                        "seed {seed}: {:?} at {} (day {}) detected after {:?} min by {:?}",
                        inc.incident.kind,
                        revguard_core::detect::hhmm(inc.incident.start),
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
    println!("| rule | incidents caught | within target | time to detect: median | max | false alerts per week |");
    println!("|---|---|---|---|---|---|");
    for (i, (name, _)) in rules.iter().enumerate() {
        let all: Vec<_> = results[i].iter().flat_map(|r| r.incidents.iter()).collect();
        let caught = all.iter().filter(|x| x.detected_at.is_some()).count();
        let on_time = all
            .iter()
            .filter(|x| {
                x.time_to_detect()
                    .is_some_and(|t| t <= x.incident.kind.detection_target_secs())
            })
            .count();
        let mut ttd: Vec<i64> = all.iter().filter_map(|x| x.time_to_detect()).collect();
        ttd.sort();
        let median = ttd.get(ttd.len() / 2).copied().unwrap_or(0);
        let max = ttd.last().copied().unwrap_or(0);
        let false_alerts: usize = results[i].iter().map(|r| r.false_alerts.len()).sum();
        println!(
            "| {name} | {caught}/{} | {on_time}/{} | {} min | {} min | {:.2} |",
            all.len(),
            all.len(),
            median / 60,
            max / 60,
            false_alerts as f64 / weeks
        );
    }
    println!("\nBy incident (default rule): caught within target / injected, median and max minutes to detect");
    let mut by_kind: BTreeMap<&str, (usize, usize, Vec<i64>)> = BTreeMap::new();
    for r in &results[0] {
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
        if let Some((ok, n, mut t)) = by_kind.remove(kind.as_str()) {
            t.sort();
            println!(
                "  {:<20} {ok}/{n}  median {} min, max {} min (target {} min)",
                kind.as_str(),
                t.get(t.len() / 2).copied().unwrap_or(0) / 60,
                t.last().copied().unwrap_or(0) / 60,
                kind.detection_target_secs() / 60
            );
        }
    }
}
