//! Recovery on the embedded backend, through the CLI, against localstripe (a stateful
//! emulator of Stripe's API that nobody here wrote, started by scripts/test):
//! - the outage story: webhooks flow, revguard goes down while subscriptions are created
//!   and canceled, then a backfill (with the server running, and with none) brings
//!   revguard's state to Stripe's;
//! - the drift story: a change Stripe made that no event told (localstripe sends no
//!   `customer.subscription.updated`), found by reconcile, raised as an alert by the
//!   detector, and mended by `--fix`;
//! - replay and dead letters on the same database.
//!
//! One test, because the stories share one localstripe and each starts by emptying it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use revguard_stripe::testing::{localstripe_url, LocalStripe};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_revguard");
const KEY: &str = "sk_test_revguard_recovery";
const SECRET: &str = "whsec_recovery_test";

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(db: &Path) -> Server {
        let mut child = Command::new(BIN)
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--detect-interval-secs",
                "0",
                "--db",
            ])
            .arg(db)
            .env("STRIPE_WEBHOOK_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn revguard serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("a first line").unwrap();
        let url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {first:?}"))
            .trim_end_matches("/webhook")
            .to_owned();
        std::thread::spawn(move || for _ in lines {});
        Server { child, url }
    }

    fn stop(mut self) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(self.child.wait().unwrap().success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Runs the CLI; stdout's last line as JSON (the commands' summary).
fn revguard(db: &Path, args: &[&str]) -> Value {
    let out = Command::new(BIN)
        .args(args)
        .arg("--db")
        .arg(db)
        .env("STRIPE_API_BASE", localstripe_url())
        .env("STRIPE_API_KEY", KEY)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "revguard {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A pretty-printed document, or a summary line after other output.
    serde_json::from_str(&stdout)
        .or_else(|_| serde_json::from_str(stdout.lines().last().unwrap_or("null")))
        .unwrap_or_else(|_| Value::String(stdout.into_owned()))
}

/// revguard's view of subscriptions: id → (status, quantity of the first item).
fn held(db: &Path, customers: &[String]) -> BTreeMap<String, (String, i64)> {
    let mut out = BTreeMap::new();
    for c in customers {
        let view = revguard(db, &["customer", c]);
        for s in view["subscriptions"].as_array().unwrap() {
            out.insert(
                s["id"].as_str().unwrap().to_owned(),
                (
                    s["status"].as_str().unwrap().to_owned(),
                    s["items"][0]["quantity"].as_i64().unwrap_or(0),
                ),
            );
        }
    }
    out
}

/// Waits until revguard holds what Stripe holds for these customers.
async fn converges(stripe: &LocalStripe, db: &Path, customers: &[String]) {
    let want = stripe.subscriptions().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let have = held(db, customers);
        if have == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "revguard never caught up:\nStripe:   {want:?}\nrevguard: {have:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn missed_webhooks_are_backfilled_and_drift_is_reconciled() {
    let stripe = LocalStripe::new(KEY);
    stripe.flush().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("revguard.db");
    let started = revguard_core::domain::time::unix_now() - 1;

    // 1. Webhooks flow: three subscriptions reach revguard as localstripe delivers them.
    let server = Server::start(&db);
    stripe
        .webhook_to(&format!("{}/webhook", server.url), SECRET)
        .await;
    stripe
        .post(
            "/v1/plans",
            &[
                ("id", "pro"),
                ("amount", "4900"),
                ("currency", "usd"),
                ("interval", "month"),
                ("product[name]", "Pro"),
            ],
        )
        .await;
    let mut customers = Vec::new();
    let mut subs = Vec::new();
    for _ in 0..3 {
        let c = stripe.customer().await;
        subs.push(stripe.subscribe(&c, "pro").await);
        customers.push(c);
    }
    converges(&stripe, &db, &customers).await;
    // The last deliveries of the story may still be on their way.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let delivered = revguard(&db, &["status"])["queued"].as_u64().unwrap();
    assert!(delivered >= 6, "webhooks delivered: {delivered}");

    // 2. revguard is down: four more subscriptions, and two cancellations, all unseen.
    server.stop();
    for _ in 0..4 {
        let c = stripe.customer().await;
        subs.push(stripe.subscribe(&c, "pro").await);
        customers.push(c);
    }
    stripe.cancel(&subs[0]).await;
    stripe.cancel(&subs[4]).await;
    // localstripe delivers a second after each event; let its attempts fail.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_ne!(held(&db, &customers), stripe.subscriptions().await);

    // The completeness audit (the detector's, with a key) knows it for certain: Stripe
    // lists events the log lacks. Judged six minutes on, past the audit's grace.
    let later = (revguard_core::domain::time::unix_now() + 360).to_string();
    let audit = revguard_lines(&db, &["detect", "--at", &later]);
    let missing = audit
        .iter()
        .find(|l| l["finding"]["signal"] == "events_missing")
        .unwrap_or_else(|| panic!("no events_missing finding in {audit:?}"));
    assert!(
        missing["finding"]["observed"].as_f64().unwrap() >= 14.0,
        "{missing}"
    );
    // Days left before Stripe stops listing them: a warning, critical with 3 days left.
    assert_eq!(missing["finding"]["severity"], "warning");
    assert!(
        missing["finding"]["explanation"]
            .as_str()
            .unwrap()
            .contains("30-day window in 29 days"),
        "{missing}"
    );
    assert!(audit
        .iter()
        .all(|l| l["finding"]["signal"] != "delivery_gap"));

    // 3. Back up; the backfill only enqueues, and the server's worker applies.
    let server = Server::start(&db);
    let since = started.to_string();
    let first = revguard(&db, &["backfill", "--since", &since, "--enqueue-only"]);
    println!("backfill with the server running: {first}");
    let listed = first["listed"].as_u64().unwrap();
    let accepted = first["accepted"].as_u64().unwrap();
    // Four subscriptions (a payment, an invoice paid and the subscription each) and two
    // cancellations were missed; what was delivered is a duplicate.
    assert!(accepted >= 4 * 3 + 2, "{first}");
    let duplicates = first["duplicates"].as_u64().unwrap();
    assert!(duplicates >= 3 * 3, "{first}");
    assert_eq!(
        accepted + duplicates + first["ignored"].as_u64().unwrap(),
        listed,
        "{first}"
    );
    assert!(first.get("consumed").is_none(), "{first}");
    converges(&stripe, &db, &customers).await;
    let audit = revguard_lines(&db, &["detect", "--at", &later]);
    assert!(
        audit
            .iter()
            .all(|l| l["finding"]["signal"] != "events_missing"),
        "the backfill closes the gap: {audit:?}"
    );
    let again = revguard(&db, &["backfill", "--since", &since, "--enqueue-only"]);
    assert_eq!(again["accepted"], 0, "{again}");
    assert_eq!(again["listed"].as_u64().unwrap(), listed, "{again}");
    // Backfilled events are not deliveries: receipt counters hold the webhooks only.
    let hour_before = (started - 3600).to_string();
    let received: i64 = revguard_lines(&db, &["metrics", "--from", &hour_before])
        .iter()
        .map(|h| h["metrics"]["events_received"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(received as u64, delivered);

    // A message the worker can never apply (a subscription whose object is not one) goes
    // to the dead letters, where the CLI shows it.
    let poison = format!(
        r#"{{"id":"evt_poison_1","object":"event","type":"customer.subscription.updated","created":{},"livemode":false,"data":{{"object":{{"id":"sub_x","status":5}}}}}}"#,
        revguard_core::domain::time::unix_now()
    );
    let secret = revguard_core::WebhookSecret::new(SECRET).unwrap();
    let header = revguard_core::domain::signature::sign(
        &secret,
        revguard_core::domain::time::unix_now(),
        poison.as_bytes(),
    );
    let answer = stripe
        .http
        .post(format!("{}/webhook", server.url))
        .header("stripe-signature", header)
        .body(poison)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while revguard(&db, &["status"])["dead_letters"] != 1 {
        assert!(
            Instant::now() < deadline,
            "the poison message was never dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.stop();
    let listed_dead = revguard_lines(&db, &["dead-letters", "list"]);
    assert_eq!(listed_dead.len(), 1);
    assert_eq!(listed_dead[0]["event_id"], "evt_poison_1");
    assert_eq!(
        listed_dead[0]["event_type"],
        "customer.subscription.updated"
    );
    assert!(
        listed_dead[0]["error"]
            .as_str()
            .unwrap()
            .contains("data.object"),
        "{}",
        listed_dead[0]
    );
    let id = listed_dead[0]["id"].as_str().unwrap().to_owned();
    let shown = revguard(&db, &["dead-letters", "show", &id]);
    assert!(shown.to_string().contains("evt_poison_1"), "{shown}");
    // Redriven, and still poison: back in the dead letters, nothing else touched.
    let redriven = revguard(&db, &["dead-letters", "redrive", "--all"]);
    assert_eq!(
        (&redriven["redriven"], &redriven["consumed"]),
        (&1.into(), &1.into()),
        "{redriven}"
    );
    assert_eq!(revguard(&db, &["status"])["dead_letters"], 1);
    // Never applied, so a replay sends it again (its payload is kept in the log).
    let one = revguard(&db, &["replay", "--event", "evt_poison_1"]);
    assert_eq!(
        (&one["matched"], &one["enqueued"]),
        (&1.into(), &1.into()),
        "{one}"
    );

    // 4. No server at all: the backfill applies what it enqueued before it exits. The
    //    cursor of the last run is the default start.
    let c = stripe.customer().await;
    subs.push(stripe.subscribe(&c, "pro").await);
    customers.push(c);
    stripe.cancel(&subs[1]).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let alone = revguard(&db, &["backfill"]);
    println!("backfill with no server: {alone}");
    assert!(alone["accepted"].as_u64().unwrap() >= 3, "{alone}");
    assert_eq!(
        alone["consumed"].as_u64().unwrap(),
        alone["accepted"].as_u64().unwrap()
    );
    converges(&stripe, &db, &customers).await;
    assert_eq!(revguard(&db, &["backfill"])["accepted"], 0);
    let clean = revguard(&db, &["reconcile"]);
    assert_eq!(
        (&clean["missing"], &clean["drifted"], &clean["extra"]),
        (&0.into(), &0.into(), &0.into()),
        "{clean}"
    );
    assert_eq!(clean["checked"].as_u64().unwrap(), subs.len() as u64);

    // 5. Drift: Stripe changes a quantity and tells nobody (localstripe sends no event).
    let changed = &subs[2];
    stripe
        .post(
            &format!("/v1/subscriptions/{changed}"),
            &[("items[0][plan]", "pro"), ("items[0][quantity]", "3")],
        )
        .await;
    // And a dunning case whose recovery was missed: revguard heard of a failed payment of
    // an invoice that Stripe holds as paid (the `invoice.paid` never arrived).
    // (A one-off invoice, paid while revguard was not listening.)
    stripe
        .post(
            "/v1/invoiceitems",
            &[
                ("customer", &customers[3]),
                ("amount", "2500"),
                ("currency", "usd"),
            ],
        )
        .await;
    let draft = stripe
        .post("/v1/invoices", &[("customer", &customers[3])])
        .await;
    let paid_invoice = stripe
        .post(
            &format!("/v1/invoices/{}/pay", draft["id"].as_str().unwrap()),
            &[],
        )
        .await;
    assert_eq!(paid_invoice["status"], "paid", "{paid_invoice}");
    let mut failed = paid_invoice.clone();
    failed["status"] = "open".into();
    failed["paid"] = false.into();
    failed["attempt_count"] = 1.into();
    failed["next_payment_attempt"] = (revguard_core::domain::time::unix_now() + 3 * 86_400).into();
    let failure = serde_json::json!({ "id": "evt_failed_then_missed", "object": "event",
        "type": "invoice.payment_failed", "created": revguard_core::domain::time::unix_now(), "livemode": false,
        "data": { "object": failed } })
    .to_string();
    let server = Server::start(&db);
    let secret = revguard_core::WebhookSecret::new(SECRET).unwrap();
    let answer = stripe
        .http
        .post(format!("{}/webhook", server.url))
        .header(
            "stripe-signature",
            revguard_core::domain::signature::sign(
                &secret,
                revguard_core::domain::time::unix_now(),
                failure.as_bytes(),
            ),
        )
        .body(failure)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let invoice_id = paid_invoice["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !revguard_lines(&db, &["dunning"])
        .iter()
        .any(|c| c["invoice_id"] == invoice_id.as_str())
    {
        assert!(Instant::now() < deadline, "no dunning case opened");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.stop();

    let report_path = dir.path().join("reconcile.md");
    let found = revguard(
        &db,
        &["reconcile", "--report", report_path.to_str().unwrap()],
    );
    assert_eq!(found["drifted"], 1, "{found}");
    assert_eq!(found["missing"], 0, "{found}");
    assert_eq!(
        (&found["cases_checked"], &found["cases_drifted"]),
        (&1.into(), &1.into()),
        "{found}"
    );
    let report = std::fs::read_to_string(&report_path).unwrap();
    assert!(
        report.contains(changed.as_str())
            && report.contains("| mrr |")
            && report.contains(&format!("| {invoice_id} |")),
        "{report}"
    );
    // The drift (2 differences, over the default threshold of 1) leaves a finding that
    // the detector opens as an alert on its next run, as the scheduled reconciliation
    // does on AWS.
    let at = revguard_core::domain::time::unix_now().to_string();
    let planned = revguard_lines(&db, &["detect", "--at", &at]);
    assert!(
        planned.iter().any(|l| l["finding"]["signal"] == "reconcile_drift"
            && l["finding"]["observed"] == 2.0),
        "{planned:?}"
    );
    assert!(
        planned.iter().any(|l| l["transition"] == "opened"
            && l["alert_id"]
                .as_str()
                .is_some_and(|id| id.contains("reconcile_drift"))),
        "{planned:?}"
    );
    let fixed = revguard(&db, &["reconcile", "--fix"]);
    assert_eq!(
        (&fixed["drifted"], &fixed["cases_drifted"], &fixed["fixed"]),
        (&1.into(), &1.into(), &2.into()),
        "{fixed}"
    );
    assert!(
        revguard_lines(&db, &["dunning"]).is_empty(),
        "the case is closed"
    );
    let recovered = revguard_lines(&db, &["dunning", "--status", "all"]);
    assert_eq!(recovered[0]["stage"], "recovered", "{recovered:?}");
    let after = revguard(&db, &["reconcile"]);
    assert_eq!(
        (
            &after["drifted"],
            &after["missing"],
            &after["cases_drifted"]
        ),
        (&0.into(), &0.into(), &0.into()),
        "{after}"
    );
    let view = revguard(&db, &["customer", &customers[2]]);
    assert_eq!(view["subscriptions"][0]["items"][0]["quantity"], 3);
    assert_eq!(view["subscriptions"][0]["mrr"], 3 * 4900);
    converges(&stripe, &db, &customers).await;

    // 6. Replay of everything: every payload is kept, and what was applied is reported,
    //    not applied twice (the poison message is the one never applied).
    let replayed = revguard(&db, &["replay", "--since", &since, "--enqueue-only"]);
    assert_eq!(replayed["without_payload"], 0, "{replayed}");
    assert_eq!(replayed["enqueued"], 1, "{replayed}");
    assert_eq!(
        replayed["already_applied"].as_u64().unwrap() + 1,
        replayed["matched"].as_u64().unwrap(),
        "{replayed}"
    );
}

fn revguard_lines(db: &Path, args: &[&str]) -> Vec<Value> {
    let out = Command::new(BIN)
        .args(args)
        .arg("--db")
        .arg(db)
        .env("STRIPE_API_BASE", localstripe_url())
        .env("STRIPE_API_KEY", KEY)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "revguard {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
