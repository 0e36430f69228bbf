//! End to end: the `revguard` binary as a process, driven over HTTP and through its CLI.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use revguard_core::domain::signature::sign;
use revguard_core::WebhookSecret;
use revguard_testkit::fixtures::{self, events_dir};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_revguard");

struct Server {
    child: Child,
    url: String,
    dev_secret: Option<String>,
}

impl Server {
    fn start(db: &Path, secret_env: Option<&str>) -> Server {
        Self::start_with(db, secret_env, |_| {})
    }

    /// Started with more arguments or environment.
    fn start_with(db: &Path, secret_env: Option<&str>, more: impl FnOnce(&mut Command)) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--addr", "127.0.0.1:0", "--db"])
            .arg(db)
            .arg("--notifications-file")
            .arg(db.with_file_name("notifications.jsonl"))
            .env_remove("STRIPE_WEBHOOK_SECRET")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(s) = secret_env {
            cmd.env("STRIPE_WEBHOOK_SECRET", s);
        }
        more(&mut cmd);
        let mut child = cmd.spawn().expect("spawn revguard serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("a first line").unwrap();
        let url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {first:?}"))
            .to_owned();
        let dev_secret = if secret_env.is_none() {
            let _explanation = lines.next().unwrap().unwrap();
            Some(lines.next().unwrap().unwrap().trim().to_owned())
        } else {
            None
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        // (The line naming the notifications file is among them.)
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            url,
            dev_secret,
        }
    }

    /// SIGTERM, then wait: the process must exit cleanly.
    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "revguard exited with {exit}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn cli(args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("STRIPE_WEBHOOK_SECRET")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        out.status.success(),
        text + &String::from_utf8_lossy(&out.stderr),
    )
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    body: &str,
    header: Option<String>,
) -> (u16, Value) {
    let mut req = client.post(url).body(body.to_owned());
    if let Some(h) = header {
        req = req.header("STRIPE-SIGNATURE", h);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn serves_webhooks_and_a_restart_keeps_the_secret_and_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("revguard.db");
    let server = Server::start(&db, None);
    let secret_text = server.dev_secret.clone().unwrap();
    assert!(secret_text.starts_with("whsec_"), "{secret_text}");
    let secret = WebhookSecret::new(&secret_text).unwrap();
    let client = reqwest::Client::new();
    let body = fixtures::read("invoice.payment_failed.json");

    let (status, json) = post(
        &client,
        &server.url,
        &body,
        Some(sign(&secret, now(), body.as_bytes())),
    )
    .await;
    assert_eq!(
        (status, json["status"].as_str()),
        (200, Some("accepted")),
        "{json}"
    );
    let (status, json) = post(
        &client,
        &server.url,
        &body,
        Some(sign(&secret, now(), body.as_bytes())),
    )
    .await;
    assert_eq!((status, json["status"].as_str()), (200, Some("duplicate")));
    let (status, json) = post(
        &client,
        &server.url,
        &body,
        Some(format!("t={},v1={}", now(), "ab".repeat(32))),
    )
    .await;
    assert_eq!(
        (status, json["error"].as_str()),
        (400, Some("bad_signature"))
    );
    let (status, json) = post(&client, &server.url, &body, None).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (400, Some("missing_signature"))
    );

    let health = client
        .get(server.url.replace("/webhook", "/healthz"))
        .send()
        .await
        .unwrap();
    let health: Value = health.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["rejected"]["bad_signature"], 1);

    // `revguard send` signs with the dev secret it finds in the database.
    let file = events_dir().join("checkout.session.completed.json");
    let (ok, out) = cli(&[
        "send",
        file.to_str().unwrap(),
        "--url",
        &server.url,
        "--db",
        db.to_str().unwrap(),
    ]);
    assert!(ok && out.contains("\"accepted\""), "{out}");
    let (ok, out) = cli(&[
        "send",
        file.to_str().unwrap(),
        "--url",
        &server.url,
        "--db",
        db.to_str().unwrap(),
        "--fresh-id",
    ]);
    assert!(ok && out.contains("\"accepted\""), "{out}");
    let (ok, out) = cli(&[
        "send",
        file.to_str().unwrap(),
        "--url",
        &server.url,
        "--secret",
        "whsec_wrong",
    ]);
    assert!(!ok && out.contains("bad_signature"), "{out}");
    server.stop();

    // After a restart: the same secret, and the queued events are still there.
    let server = Server::start(&db, None);
    assert_eq!(server.dev_secret.as_deref(), Some(secret_text.as_str()));
    let (status, json) = post(
        &client,
        &server.url,
        &body,
        Some(sign(&secret, now(), body.as_bytes())),
    )
    .await;
    assert_eq!((status, json["status"].as_str()), (200, Some("duplicate")));
    // The duplicate's delivery queued a second copy; the worker drops it. Stop once it has.
    let drained = (0..200).any(|_| {
        let (_, out) = cli(&["status", "--db", db.to_str().unwrap()]);
        let counts: Value = serde_json::from_str(out.trim()).unwrap();
        counts["queue_depth"] == 0 || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            false
        }
    });
    assert!(drained, "the duplicate's copy was never consumed");
    server.stop();

    // The worker applied all three; the queue is empty and nothing is dead-lettered.
    let (ok, out) = cli(&["status", "--db", db.to_str().unwrap()]);
    assert!(ok, "{out}");
    let counts: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(counts["queued"], 3, "{counts}");
    assert_eq!(counts["applied"], 3, "{counts}");
    assert_eq!(counts["queue_depth"], 0, "{counts}");
    assert_eq!(counts["dead_letters"], 0, "{counts}");
}

#[tokio::test]
async fn events_left_queued_by_a_crash_are_applied_on_start() {
    use revguard_core::usecases::ingest::IngestContext;
    use revguard_core::{IngestConfig, Ingress, SecretSet};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("revguard.db");
    // Accepted and queued by a server that then died before its worker ran.
    let secret = WebhookSecret::new("whsec_crash").unwrap();
    {
        let store = revguard_local::SqliteStore::open(&db).unwrap();
        let ingress = Ingress::new(
            store.clone(),
            store.clone(),
            IngestConfig::new(SecretSet::single(secret.clone())),
        );
        for name in [
            "customer.subscription.created.json",
            "invoice.payment_failed.json",
        ] {
            let body = fixtures::read(name).into_bytes();
            let header = sign(&secret, now(), &body);
            ingress
                .ingest(Some(&header), &body, now(), &mut IngestContext::default())
                .await
                .unwrap();
        }
        assert_eq!(store.queued(10).unwrap().len(), 2);
        store.close();
    }
    let (ok, out) = cli(&["queue", "--db", db.to_str().unwrap()]);
    assert!(ok && out.lines().count() == 2, "{out}");

    let server = Server::start(&db, Some("whsec_crash"));
    let client = reqwest::Client::new();
    let url = server.url.replace("/webhook", "/api/dunning?status=all");
    let cases = eventually(&client, &url, "the queued failure applied", |v| {
        v.as_array().is_some_and(|a| a.len() == 1)
    })
    .await;
    assert_eq!(cases[0]["stage"], "notice");
    server.stop();
    let (_, out) = cli(&["status", "--db", db.to_str().unwrap()]);
    let counts: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (counts["applied"].as_i64(), counts["queue_depth"].as_i64()),
        (Some(2), Some(0))
    );
}

#[tokio::test]
async fn configured_secrets_rotate_and_no_dev_secret_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("revguard.db");
    let server = Server::start(&db, Some("whsec_old_one, whsec_new_one"));
    assert!(server.dev_secret.is_none());
    let client = reqwest::Client::new();
    for (i, s) in ["whsec_old_one", "whsec_new_one"].iter().enumerate() {
        let body = format!(
            r#"{{"id":"evt_rot_{i}","type":"charge.refunded","created":{},"livemode":true,"data":{{"object":{{"id":"ch_1"}}}}}}"#,
            now()
        );
        let header = sign(&WebhookSecret::new(*s).unwrap(), now(), body.as_bytes());
        let (status, json) = post(&client, &server.url, &body, Some(header)).await;
        assert_eq!(
            (status, json["status"].as_str()),
            (200, Some("accepted")),
            "{json}"
        );
    }
    server.stop();
}

#[tokio::test]
async fn sigterm_during_load_loses_no_accepted_event() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("revguard.db");
    let server = Server::start(&db, Some("whsec_shutdown"));
    let secret = WebhookSecret::new("whsec_shutdown").unwrap();
    let client = reqwest::Client::new();
    let url = server.url.clone();
    let senders: Vec<_> = (0..300)
        .map(|i| {
            let (client, url, secret) = (client.clone(), url.clone(), secret.clone());
            tokio::spawn(async move {
                let id = format!("evt_term_{i:04}");
                let body = format!(r#"{{"id":"{id}","type":"invoice.paid","created":{},"livemode":false,"data":{{"object":{{"id":"in_{i}"}}}}}}"#, now());
                let header = sign(&secret, now(), body.as_bytes());
                let answer = client.post(&url).header("stripe-signature", header).body(body).send().await;
                match answer {
                    Ok(r) if r.status() == 200 => Some(id),
                    _ => None,
                }
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    server.stop();
    let mut accepted = Vec::new();
    for s in senders {
        if let Some(id) = s.await.unwrap() {
            accepted.push(id);
        }
    }
    let store = revguard_local::SqliteStore::open(&db).unwrap();
    let queued: std::collections::HashSet<String> = store
        .queued(10_000)
        .unwrap()
        .into_iter()
        .map(|m| m.event_id)
        .collect();
    // The consumer may have applied some before the signal: durable means queued or applied.
    let keys: Vec<revguard_core::ports::EventKey> = accepted
        .iter()
        .map(revguard_core::ports::EventKey::own)
        .collect();
    let applied = revguard_core::ports::BillingStore::applied(&store, &keys)
        .await
        .unwrap();
    for id in &accepted {
        assert!(
            queued.contains(id) || applied.contains(id),
            "{id} was acknowledged but is neither in the queue nor applied"
        );
        // An insert finds the entry there: the acknowledged event is in the event log.
        assert!(
            revguard_core::ports::EventLog::insert_if_absent(
                &store,
                &revguard_testkit::contract::sample_record(id, now())
            )
            .await
            .unwrap()
                != revguard_core::ports::InsertOutcome::Inserted,
            "{id} was acknowledged but is not in the event log"
        );
    }
    eprintln!(
        "{} of 300 acknowledged before shutdown, all durable",
        accepted.len()
    );
}

fn fixture_at(name: &str, created: i64) -> String {
    let mut v = fixtures::json(name);
    v["created"] = Value::from(created);
    serde_json::to_string(&v).unwrap()
}

async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// Polls until `check` holds (the worker applies within a second), or fails after 10 s.
async fn eventually(
    client: &reqwest::Client,
    url: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    for _ in 0..100 {
        let v = get_json(client, url).await;
        if check(&v) {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!(
        "{what}: never happened; last answer {}",
        get_json(client, url).await
    );
}

fn dunning_stages(db: &Path) -> Vec<String> {
    let text =
        std::fs::read_to_string(db.with_file_name("notifications.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|n| n["kind"] == "dunning")
        .map(|n| n["stage"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_dunning_story_end_to_end_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("revguard.db");
    let server = Server::start(&db, Some("whsec_story"));
    let secret = WebhookSecret::new("whsec_story").unwrap();
    let client = reqwest::Client::new();
    let api = server.url.replace("/webhook", "/api");
    let customer_url = format!("{api}/customers/cus_RG1001");
    let t = now();
    let (failed_at, paid_at) = (t - 86_400, t - 600);
    let story = [
        ("customer.subscription.created.json", t - 40 * 86_400),
        ("invoice.payment_failed.json", failed_at),
        ("customer.subscription.updated.json", failed_at + 1),
        ("invoice.payment_failed.attempt-2.json", t - 43_200),
        ("invoice.payment_failed.attempt-3.json", t - 3_600),
        ("invoice.paid.json", paid_at),
        ("customer.subscription.updated.recovered.json", paid_at + 1),
    ];
    let send = |i: usize| {
        let (name, created) = story[i];
        let body = fixture_at(name, created);
        let header = sign(&secret, now(), body.as_bytes());
        let (client, url) = (client.clone(), server.url.clone());
        async move {
            let (status, json) = post(&client, &url, &body, Some(header)).await;
            assert_eq!(status, 200, "{name}: {json}");
        }
    };

    for i in 0..3 {
        send(i).await;
    }
    let view = eventually(
        &client,
        &customer_url,
        "a case at notice, customer in grace",
        |v| v["open_dunning_cases"][0]["stage"] == "notice" && v["access"]["verdict"] == "grace",
    )
    .await;
    assert_eq!(view["open_dunning_cases"][0]["amount_due"], 2000);
    assert_eq!(view["access"]["grace_until"], failed_at + 7 * 86_400);

    send(3).await;
    send(4).await;
    eventually(&client, &customer_url, "final warning", |v| {
        v["open_dunning_cases"][0]["stage"] == "final_warning"
    })
    .await;

    send(5).await;
    send(6).await;
    let view = eventually(&client, &customer_url, "recovered and granted", |v| {
        v["access"]["verdict"] == "granted"
            && v["open_dunning_cases"]
                .as_array()
                .is_some_and(|a| a.is_empty())
    })
    .await;
    assert_eq!(view["subscriptions"][0]["status"], "active");
    let closed = get_json(&client, &format!("{api}/dunning?status=closed")).await;
    assert_eq!(closed[0]["stage"], "recovered");
    assert_eq!(closed[0]["recovered_amount"], 2000);
    assert_eq!(closed[0]["time_to_recover_secs"], paid_at - failed_at);
    assert_eq!(
        dunning_stages(&db),
        ["notice", "final_warning", "recovered"],
        "one notification per stage"
    );

    // Stripe redelivers the whole story: nothing changes, nothing is announced again.
    for i in 0..story.len() {
        send(i).await;
    }
    let metrics_url = format!("{api}/metrics?from={}&to={}", t - 41 * 86_400, t + 3_600);
    let total = |metrics: &Value, name: &str| -> i64 {
        metrics
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|h| h["metrics"][name].as_i64())
            .sum()
    };
    let metrics = eventually(&client, &metrics_url, "all applied", |m| {
        total(m, "events") == story.len() as i64
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(total(&metrics, "dunning_opened"), 1);
    assert_eq!(total(&metrics, "dunning_recovered"), 1);
    assert_eq!(total(&metrics, "dunning_recovered_amount.usd"), 2000);
    assert_eq!(total(&metrics, "subscriptions_new"), 1);
    assert_eq!(
        dunning_stages(&db),
        ["notice", "final_warning", "recovered"]
    );
    server.stop();
}

/// Connect through the built `revguard`: a connected account's failed renewal, reusing the
/// platform's ids, is its own in every route and command.
#[tokio::test]
async fn a_connected_account_is_kept_apart_over_http_and_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("revguard.db");
    let server = Server::start(&db, Some("whsec_connect"));
    let secret = WebhookSecret::new("whsec_connect").unwrap();
    let client = reqwest::Client::new();
    let api = server.url.replace("/webhook", "/api");
    let t = now();
    let story = [
        ("customer.subscription.created.json", t - 40 * 86_400),
        ("invoice.payment_failed.json", t - 600),
        ("customer.subscription.updated.json", t - 599),
    ];
    for (i, (name, created)) in story.iter().enumerate() {
        let mut v = fixtures::json(name);
        v["created"] = Value::from(*created);
        v["id"] = Value::from(format!("evt_connect_{i}"));
        v["account"] = Value::from("acct_1Story");
        let body = v.to_string();
        let (status, json) = post(
            &client,
            &server.url,
            &body,
            Some(sign(&secret, now(), body.as_bytes())),
        )
        .await;
        assert_eq!(status, 200, "{name}: {json}");
    }
    let view = eventually(
        &client,
        &format!("{api}/customers/cus_RG1001?account=acct_1Story"),
        "the account's customer in grace",
        |v| v["access"]["verdict"] == "grace",
    )
    .await;
    assert_eq!(view["open_dunning_cases"][0]["stage"], "notice");
    let platform = get_json(&client, &format!("{api}/customers/cus_RG1001")).await;
    assert_eq!(
        platform["subscriptions"],
        serde_json::json!([]),
        "the platform's own cus_RG1001 has nothing: {platform}"
    );
    let accounts = get_json(&client, &format!("{api}/accounts")).await;
    assert_eq!(accounts[1]["account"], "acct_1Story");
    assert_eq!(accounts[1]["open_dunning_cases"], 1);
    assert_eq!(accounts[0]["open_dunning_cases"], 0);
    let (bad, _) = (
        client
            .get(format!("{api}/dunning?account=not-an-account"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        (),
    );
    assert_eq!(bad, 400);
    let page = client
        .get(
            server
                .url
                .replace("/webhook", "/dashboard?account=acct_1Story"),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(r#"data-account="acct_1Story" aria-current="page""#),
        "the picker names the account shown"
    );
    server.stop();

    let db_arg = db.to_str().unwrap();
    let (ok, out) = cli(&["accounts", "--db", db_arg]);
    assert!(ok, "{out}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["account"], "acct_1Story");
    let (ok, out) = cli(&["dunning", "--db", db_arg, "--account", "acct_1Story"]);
    assert!(ok && out.contains("in_RG1001"), "{out}");
    let (ok, out) = cli(&["dunning", "--db", db_arg]);
    assert!(
        ok && out.trim().is_empty(),
        "the platform's own has no case: {out}"
    );
    let (ok, out) = cli(&[
        "customer",
        "cus_RG1001",
        "--db",
        db_arg,
        "--account",
        "acct_x#1",
    ]);
    assert!(!ok && out.contains("not a Stripe account id"), "{out}");
}

#[tokio::test]
async fn the_operator_api_needs_its_token_when_one_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("revguard.db");
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--api-token",
        "s3cret",
        "--db",
    ])
    .arg(&db);
    cmd.env("STRIPE_WEBHOOK_SECRET", "whsec_api")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .replace("/webhook", "/api/dunning");
    let server = Server {
        child,
        url: String::new(),
        dev_secret: None,
    };
    let client = reqwest::Client::new();
    assert_eq!(client.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(
        client
            .get(&url)
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        client
            .get(&url)
            .bearer_auth("s3cret")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    server.stop();
}

#[tokio::test]
async fn alerts_reach_a_slack_webhook_once_and_its_url_stays_out_of_the_log() {
    use std::sync::{Arc, Mutex};
    // A Slack stand-in that fails the first post.
    let posts: Arc<Mutex<Vec<(String, String, u16)>>> = Arc::default();
    let seen = posts.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, body: String| {
        let seen = seen.clone();
        async move {
            let mut seen = seen.lock().unwrap();
            let status = if seen.is_empty() { 500 } else { 200 };
            seen.push((uri.path().to_owned(), body, status));
            (axum::http::StatusCode::from_u16(status).unwrap(), "ok")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!(
        "http://{}/services/T0001/B0001/topsecrettoken",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("revguard.db");
    let log = dir.path().join("serve.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let server = Server::start_with(&db, Some("whsec_chat"), |cmd| {
        cmd.args([
            "--detect-interval-secs",
            "1",
            "--large-refund-minor-units",
            "1000",
        ])
        .env("REVGUARD_SLACK_WEBHOOK_URL", &hook)
        .env("REVGUARD_DASHBOARD_URL", "http://127.0.0.1:8787/api/alerts")
        .env("RUST_LOG", "info")
        .stderr(Stdio::from(log_file));
    });
    let secret = WebhookSecret::new("whsec_chat").unwrap();
    let body = fixture_at("charge.refunded.json", now() - 5);
    let (status, json) = post(
        &reqwest::Client::new(),
        &server.url,
        &body,
        Some(sign(&secret, now(), body.as_bytes())),
    )
    .await;
    assert_eq!(status, 200, "{json}");

    let mut delivered = false;
    for _ in 0..200 {
        if posts.lock().unwrap().iter().any(|p| p.2 == 200) {
            delivered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Detector runs go on every second; none posts the open alert again.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    server.stop();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        delivered,
        "no post went through: {:?}\n{log}",
        posts.lock().unwrap()
    );
    let posts = posts.lock().unwrap().clone();
    assert_eq!(
        posts.iter().map(|p| p.2).collect::<Vec<_>>(),
        [500, 200],
        "one failure, then the one delivery: {posts:?}"
    );
    assert_eq!(posts[1].0, "/services/T0001/B0001/topsecrettoken");
    let message: Value = serde_json::from_str(&posts[1].1).unwrap();
    assert!(
        message["text"].as_str().unwrap().contains("Large refund"),
        "{message}"
    );
    assert!(
        message
            .to_string()
            .contains("http://127.0.0.1:8787/api/alerts"),
        "{message}"
    );
    assert!(
        log.contains("not delivered yet")
            && log.lines().any(|l| l.contains("delivered")
                && !l.contains("not delivered")
                && l.contains("slack")),
        "{log}"
    );
    assert!(
        !log.contains("topsecrettoken"),
        "the webhook URL reached the log:\n{log}"
    );
}
