//! Load generator for `scripts/load`: validly signed, Stripe-shaped events (the payloads
//! in `events/`, compact, 1.4–4.3 KB) with unique event, object and customer ids, against
//! a webhook URL at a given concurrency; prints one JSON line of figures.
//!
//!   load --url URL --secret whsec_… --concurrency 64 --requests 20000
//!        [--kind charge.refunded | --mix renewal | --mix thirds] [--bad-signature]
//!   load --prefill N --db PATH        (fills an event log with N entries, then exits)
//!
//! The traffic (`--kind`, `--mix renewal`, `--mix thirds`) is
//! `revguard_testkit::fixtures::traffic`, which says where the renewal mix comes from.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use revguard_core::domain::signature::sign;
use revguard_core::WebhookSecret;
use revguard_testkit::fixtures::traffic::Traffic;

struct Args {
    url: String,
    secret: String,
    concurrency: usize,
    requests: usize,
    bad_signature: bool,
    prefill: Option<usize>,
    db: Option<String>,
    tag: String,
    /// Watch the worker apply what was accepted (embedded backend only).
    watch_db: Option<String>,
    /// One event type, or a mix (`mix:renewal`, `mix:thirds`).
    traffic: String,
}

fn parse_args() -> Args {
    let mut a = Args {
        url: String::new(),
        secret: String::new(),
        concurrency: 1,
        requests: 1000,
        bad_signature: false,
        prefill: None,
        db: None,
        watch_db: None,
        tag: format!("{:x}", std::process::id()),
        traffic: "charge.refunded".to_owned(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => a.url = value(),
            "--secret" => a.secret = value(),
            "--concurrency" => a.concurrency = value().parse().unwrap(),
            "--requests" => a.requests = value().parse().unwrap(),
            "--bad-signature" => a.bad_signature = true,
            "--prefill" => a.prefill = Some(value().parse().unwrap()),
            "--db" => a.db = Some(value()),
            "--tag" => a.tag = value(),
            "--watch-db" => a.watch_db = Some(value()),
            "--kind" => a.traffic = value(),
            "--mix" => a.traffic = format!("mix:{}", value()),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    if let Some(n) = args.prefill {
        let store = revguard_local::SqliteStore::open(args.db.expect("--db")).unwrap();
        let started = Instant::now();
        store.prefill_events(n, now()).await.unwrap();
        store.close();
        eprintln!(
            "prefilled {n} events in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        return;
    }

    let watcher = args.watch_db.as_ref().map(|db| {
        let store = revguard_local::SqliteStore::open(db).unwrap();
        let base = store.applied_count().unwrap();
        (store, base)
    });
    let traffic = Arc::new(Traffic::new(&args.traffic, now()));
    let secret = WebhookSecret::new(&args.secret).unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (client, next, traffic, secret, url, tag) = (
                client.clone(),
                next.clone(),
                traffic.clone(),
                secret.clone(),
                args.url.clone(),
                args.tag.clone(),
            );
            let (total, bad) = (args.requests, args.bad_signature);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let (mut accepted, mut rejected, mut errors) = (0u64, 0u64, 0u64);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let body = traffic.body(i, &tag);
                    let header = if bad {
                        format!("t={},v1={}", now(), "0".repeat(64))
                    } else {
                        sign(&secret, now(), body.as_bytes())
                    };
                    let t0 = Instant::now();
                    let answer = client
                        .post(&url)
                        .header("stripe-signature", header)
                        .body(body)
                        .send()
                        .await;
                    match answer {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let _ = r.bytes().await;
                            latencies.push(t0.elapsed());
                            match status {
                                200 => accepted += 1,
                                400..=499 => rejected += 1,
                                _ => errors += 1,
                            }
                        }
                        Err(_) => errors += 1,
                    }
                }
                (latencies, accepted, rejected, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let (mut accepted, mut rejected, mut errors) = (0, 0, 0);
    for w in workers {
        let (l, a, r, e) = w.await.unwrap();
        latencies.extend(l);
        accepted += a;
        rejected += r;
        errors += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut applied_figures = serde_json::Value::Null;
    if let Some((store, base)) = &watcher {
        // The worker runs behind the acknowledgements: wait until it caught up.
        let mut drain_ms = 0u64;
        loop {
            let applied = store.applied_count().unwrap() - base;
            if applied >= accepted || drain_ms > 120_000 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            drain_ms += 10;
        }
        let all_applied = started.elapsed().as_secs_f64();
        let applied = store.applied_count().unwrap() - base;
        let refunds: i64 = store
            .metrics(&revguard_core::ports::Scope::Platform, 0, i64::MAX)
            .unwrap()
            .iter()
            .filter_map(|h| h.metrics.get("refunds"))
            .sum();
        applied_figures = serde_json::json!({
            "applied": applied,
            "applied_per_sec": (applied as f64 / all_applied).round(),
            "drain_after_last_ack_ms": drain_ms,
            "refunds_counted": refunds,
            "dead_letters": store.dead_letter_count().unwrap(),
        });
    }
    latencies.sort();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let idx = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[idx].as_secs_f64() * 1000.0
    };
    println!(
        "{}",
        serde_json::json!({
            "traffic": args.traffic,
            "concurrency": args.concurrency,
            "requests": args.requests,
            "accepted": accepted,
            "rejected": rejected,
            "errors": errors,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "per_sec": (latencies.len() as f64 / seconds).round(),
            "p50_ms": (pct(0.50) * 100.0).round() / 100.0,
            "p99_ms": (pct(0.99) * 100.0).round() / 100.0,
            "worker": applied_figures,
        })
    );
}
