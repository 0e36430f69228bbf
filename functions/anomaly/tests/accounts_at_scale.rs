//! Connect at scale: a platform with 1,000 connected accounts active in the detector's
//! window (50 busy every hour, 950 a couple of hours a day) and 500 more seen but quiet
//! for weeks. One detector run on each backend: DynamoDB in moto (calls and read units
//! from every request the run makes) and SQLite (queries, counter rows, time). The reads
//! must name only the accounts active in the window, never the dormant ones; one account's
//! failed-payment spike is alerted under that account. With `--nocapture`
//! (`scripts/test -p revguard-anomaly --test accounts_at_scale -- --nocapture`) it prints
//! the figures docs/performance.md and the README carry.

use std::collections::BTreeMap;
use std::time::Instant;

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use revguard_anomaly::lambda_detector;
use revguard_aws::testing::{Call, CallLog, MotoStack};
use revguard_core::domain::detector::alerts::AlertMessage;
use revguard_core::domain::detector::{hours_needed, DetectConfig};
use revguard_core::ports::{Account, CountersReader};
use revguard_core::usecases::detector_run::Detector;
use revguard_testkit::memory::{CountedPause, MemoryPublisher};
use serde_json::Value;

/// 2026-03-02 00:00 UTC, a Monday.
const START: i64 = 1_772_409_600;
const ACTIVE: usize = 1_000;
const BUSY: usize = 50;
const DORMANT: usize = 500;
/// The account whose failed payments spike in the hour being judged.
const SPIKING: usize = 7;

fn now() -> i64 {
    START + 8 * 86_400 + 1_800
}

/// One counter item: its account, hour, and metrics.
struct Item {
    account: String,
    hour: i64,
    metrics: Vec<(&'static str, i64)>,
}

/// The counters of the platform and its accounts, as the worker would have written them.
fn seeded() -> Vec<Item> {
    let (from, to) = hours_needed(now());
    let mut out = Vec::new();
    let mut hour = from;
    while hour < to {
        out.push(Item {
            account: String::new(),
            hour,
            metrics: vec![
                ("payments_succeeded", 200),
                ("events", 260),
                ("events_received", 260),
            ],
        });
        hour += 3600;
    }
    for i in 0..ACTIVE + DORMANT {
        let account = format!("acct_{i:05}");
        let dormant = i >= ACTIVE;
        out.push(Item {
            account: account.clone(),
            hour: 0,
            metrics: vec![
                ("mrr_total.usd", 100_000 + i as i64),
                (
                    "max_received_at",
                    if dormant {
                        START - 30 * 86_400
                    } else {
                        now() - 60
                    },
                ),
            ],
        });
        if dormant {
            // Last active a month before the window.
            out.push(Item {
                account,
                hour: START - 30 * 86_400,
                metrics: vec![("payments_succeeded", 3), ("events", 4)],
            });
            continue;
        }
        let mut hour = from;
        while hour < to {
            let busy = i < BUSY;
            let active = busy || (hour / 3600 + i as i64) % 12 == 0;
            if active {
                let current = hour >= now() - 3600;
                let failed = if i == SPIKING && current { 30 } else { 1 };
                out.push(Item {
                    account: account.clone(),
                    hour,
                    metrics: vec![
                        ("payments_succeeded", if busy { 20 } else { 2 }),
                        ("payments_failed", failed),
                        ("events", if busy { 25 } else { 3 }),
                    ],
                });
            }
            hour += 3600;
        }
    }
    out
}

fn pk_of(item: &Item) -> String {
    let own = format!("live#{}", item.hour);
    if item.account.is_empty() {
        own
    } else {
        format!("{}#{own}", item.account)
    }
}

/// The `day` the worker sets on a connected account's items (the sparse index's key).
fn day_of(item: &Item) -> Option<String> {
    if item.account.is_empty() {
        return None;
    }
    Some(if item.hour == 0 {
        "live#seen".to_owned()
    } else {
        format!(
            "live#{}",
            &revguard_core::domain::time::rfc3339(item.hour)[..10]
        )
    })
}

async fn seed_dynamodb(stack: &MotoStack, items: &[Item]) {
    for chunk in items.chunks(25) {
        let mut requests: Vec<WriteRequest> = chunk
            .iter()
            .map(|item| {
                let mut put = PutRequest::builder().item("pk", AttributeValue::S(pk_of(item)));
                if let Some(day) = day_of(item) {
                    put = put.item("day", AttributeValue::S(day));
                }
                for (metric, value) in &item.metrics {
                    put = put.item(*metric, AttributeValue::N(value.to_string()));
                }
                WriteRequest::builder()
                    .put_request(put.build().unwrap())
                    .build()
            })
            .collect();
        while !requests.is_empty() {
            let out = stack
                .dynamodb
                .batch_write_item()
                .request_items(&stack.counters_table, requests)
                .send()
                .await
                .expect("seed the counters");
            requests = out
                .unprocessed_items
                .and_then(|mut u| u.remove(&stack.counters_table))
                .unwrap_or_default();
        }
    }
}

/// Calls and read units of a run: a key read eventually half a unit (items under 4 KB); a
/// Query half a unit per started 4 KB of the keys it returns, from the seeded index.
fn read_units(
    calls: &[Call],
    index_bytes: &BTreeMap<String, usize>,
) -> (BTreeMap<String, usize>, f64) {
    let mut by_call = BTreeMap::new();
    let mut units = 0.0;
    for c in calls {
        *by_call
            .entry(format!(
                "{} {}",
                c.service.to_ascii_lowercase(),
                c.operation
            ))
            .or_default() += 1;
        let body: Value = serde_json::from_slice(&c.body).unwrap_or(Value::Null);
        let eventual = |v: &Value| {
            if v["ConsistentRead"].as_bool() == Some(true) {
                1.0
            } else {
                0.5
            }
        };
        match c.operation.as_str() {
            "BatchGetItem" => {
                units += body["RequestItems"].as_object().map_or(0.0, |r| {
                    r.values()
                        .map(|k| k["Keys"].as_array().map_or(0, Vec::len) as f64 * eventual(k))
                        .sum()
                })
            }
            "GetItem" => units += eventual(&body),
            "Query" => {
                // The index key the Query names (`:v` in revguard-aws's `index_pks`; `:d`
                // in the single-key Query of `seen`).
                let values = &body["ExpressionAttributeValues"];
                let key = values[":v"]["S"]
                    .as_str()
                    .or(values[":d"]["S"].as_str())
                    .unwrap_or("");
                let bytes = index_bytes.get(key).copied().unwrap_or(0);
                let bytes = if body["Limit"].as_i64() == Some(1) {
                    bytes.min(1)
                } else {
                    bytes
                };
                units += 0.5 * bytes.div_ceil(4096).max(1) as f64;
            }
            _ => {}
        }
    }
    (by_call, units)
}

#[tokio::test]
async fn a_thousand_accounts_are_judged_reading_only_those_active_in_the_window() {
    let items = seeded();
    let active_items = items
        .iter()
        .filter(|i| !i.account.is_empty() && i.hour != 0 && i.hour >= hours_needed(now()).0)
        .count();
    let mut index_bytes: BTreeMap<String, usize> = BTreeMap::new();
    for item in &items {
        if let Some(day) = day_of(item) {
            // A keys-only index entry: its key attributes' names and values.
            *index_bytes.entry(day.clone()).or_default() +=
                "pk".len() + pk_of(item).len() + "day".len() + day.len();
        }
    }

    // DynamoDB in moto.
    let log = CallLog::default();
    let stack = MotoStack::logged(&log).await;
    let seeding = Instant::now();
    seed_dynamodb(&stack, &items).await;
    let seeded_in = seeding.elapsed();
    log.take();
    let detector = lambda_detector(
        stack.dynamodb.clone(),
        stack.sns.clone(),
        &stack.detector_env(),
        DetectConfig::default(),
    );
    let started = Instant::now();
    let summary = detector.run(now()).await.expect("a detector run");
    let dynamo_run = started.elapsed();
    let calls = log.take();
    let (by_call, units) = read_units(&calls, &index_bytes);
    let spiking = format!("live:acct_{SPIKING:05}:spike:payments_failed");
    assert!(
        summary.transitions.iter().any(|m| m.alert_id == spiking),
        "the spiking account's alert opens under it: {:?}",
        summary
            .transitions
            .iter()
            .map(|m| &m.alert_id)
            .collect::<Vec<_>>()
    );
    let keys_read = revguard_aws::testing::batch_get_keys(&calls);
    let dormant_read = calls
        .iter()
        .any(|c| String::from_utf8_lossy(&c.body).contains(&format!("acct_{:05}#", ACTIVE + 1)));
    assert!(!dormant_read, "an account quiet all window is never read");
    let platform_keys = 8 * 24 + 2 + 1; // its hours, and hour 0 (read as before Connect)
    assert!(
        keys_read <= platform_keys + active_items + ACTIVE + 2 * 193,
        "{keys_read} keys read for {active_items} active items"
    );

    // The same platform without connected accounts: what a run read before Connect.
    let quiet_log = CallLog::default();
    let quiet = MotoStack::logged(&quiet_log).await;
    let platform_only: Vec<Item> = items.into_iter().filter(|i| i.account.is_empty()).collect();
    seed_dynamodb(&quiet, &platform_only).await;
    quiet_log.take();
    lambda_detector(
        quiet.dynamodb.clone(),
        quiet.sns.clone(),
        &quiet.detector_env(),
        DetectConfig::default(),
    )
    .run(now())
    .await
    .unwrap();
    let (quiet_calls, quiet_units) = read_units(&quiet_log.take(), &BTreeMap::new());

    // SQLite: the same counters, one detector run of `revguard serve`'s.
    let dir = tempfile::tempdir().unwrap();
    let store = revguard_sqlite::SqliteStore::open(dir.path().join("scale.db")).unwrap();
    let rows: Vec<(String, i64, &'static str, i64)> = seeded()
        .into_iter()
        .flat_map(|i| {
            let (account, hour) = (i.account, i.hour);
            i.metrics
                .into_iter()
                .map(move |(m, v)| (account.clone(), hour, m, v))
        })
        .collect();
    let row_count = rows.len();
    store
        .write(move |c| {
            let mut stmt = c.prepare(
                "INSERT INTO counters (account, livemode, hour, metric, received_min, value) VALUES (?1, 1, ?2, ?3, 0, ?4)",
            )?;
            for (account, hour, metric, value) in &rows {
                stmt.execute(rusqlite::params![account, hour, metric, value])?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let counters = revguard_sqlite::billing::SqliteCounters {
        store: store.clone(),
        received_before: None,
    };
    let (from, to) = hours_needed(now());
    let read_started = Instant::now();
    let connected = counters.connected(true, from, to).await.unwrap();
    let sqlite_read = read_started.elapsed();
    assert_eq!(
        connected.len(),
        ACTIVE,
        "the accounts active in the window, not the dormant ones"
    );
    assert!(
        !connected.contains_key(&Account::connected(&format!("acct_{:05}", ACTIVE + 1)).unwrap())
    );
    let sqlite_detector = Detector {
        counters,
        alerts: store.clone(),
        publisher: MemoryPublisher::<AlertMessage>::default(),
        comebacks: store.clone(),
        config: DetectConfig::default(),
        audit: revguard_core::usecases::recovery::NoAudit,
        pause: CountedPause::default(),
        wall_clock: revguard_core::domain::time::unix_now,
    };
    let started = Instant::now();
    let sqlite_summary = sqlite_detector.run(now()).await.unwrap();
    let sqlite_run = started.elapsed();
    assert!(sqlite_summary
        .transitions
        .iter()
        .any(|m| m.alert_id == spiking));

    // Read units a month at the template's schedule (every 15 minutes), at $0.125 per
    // million (on demand, us-east-1).
    let runs_a_month = 4.0 * 24.0 * 30.0;
    let dollars = |rru: f64| rru * runs_a_month * 0.125 / 1e6;
    println!("Connect at scale: {ACTIVE} accounts active in the 8-day window ({BUSY} every hour, the rest 2 hours a day), {DORMANT} more seen and dormant");
    println!(
        "| backend | reads per run | read units per run | run time | per month (every 15 min) |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| DynamoDB (moto), 1,000 accounts | {} calls ({}), {keys_read} keys | {units:.0} | {:.1} s | ${:.2} |",
        by_call.values().sum::<usize>(),
        by_call.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", "),
        dynamo_run.as_secs_f64(),
        dollars(units)
    );
    println!(
        "| DynamoDB (moto), no connected account | {} calls ({}) | {quiet_units:.1} | | ${:.3} |",
        quiet_calls.values().sum::<usize>(),
        quiet_calls
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", "),
        dollars(quiet_units)
    );
    println!(
        "| SQLite, 1,000 accounts | 3 counter queries over {row_count} counter rows | | {:.2} s (reads {:.2} s) | |",
        sqlite_run.as_secs_f64(),
        sqlite_read.as_secs_f64()
    );
    println!(
        "(seeding moto took {:.1} s; {active_items} active account-hours)",
        seeded_in.as_secs_f64()
    );
}
