//! The dashboard in headless Chromium: `revguard demo --keep-db` then `revguard serve
//! --db`, and `scripts/browser/check-dashboard.mjs` (playwright-core driving Debian's
//! chromium, both installed by scripts/test) loads /dashboard and checks it against the
//! operator API: no console error, nothing fetched from elsewhere, every chart drawn from
//! the counters, every open alert shown. The screenshot lands in target/dashboard.png.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_revguard");

fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[test]
fn the_dashboard_draws_the_demo_in_chromium() {
    let browser = repo().join("scripts/browser");
    assert!(
        browser.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run scripts/test (it runs `npm ci` in scripts/browser)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: run scripts/test (it installs Debian's chromium), or `apt-get install chromium`"
    );

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let demo = Command::new(BIN)
        .args(["demo", "--seed", "1", "--keep-db"])
        .arg(&db)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );

    let mut server = Command::new(BIN)
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--detect-interval-secs",
            "0",
            "--db",
        ])
        .arg(&db)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let webhook = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {first:?}"));
    let base = webhook.trim_end_matches("/webhook").to_owned();
    std::thread::spawn(move || for _ in lines {});

    let screenshot = repo().join("target/dashboard.png");
    let check = Command::new("node")
        .arg(browser.join("check-dashboard.mjs"))
        .arg(&base)
        .arg(&screenshot)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs (Node.js 20 is needed for the browser tests)");
    let _ = server.kill();
    let _ = server.wait();
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let summary: Value = serde_json::from_str(out.trim()).unwrap();
    eprintln!("{summary}");
    assert!(summary["open_alerts"].as_u64().unwrap() >= 1, "{summary}");
    for chart in ["mrr", "payments", "refunds-disputes"] {
        assert!(summary["charts"][chart].is_object(), "{summary}");
    }
    assert_eq!(summary["console_errors"], 0);
    assert_eq!(summary["requests_outside"], 0);
    assert!(screenshot.exists());
}
