//! The billing digest over the embedded store: a day of dunning whose recovery rate is
//! worked out by hand below, MRR movements with their customers, the largest open case.

use revguard_core::domain::billing::BillingPolicy;
use revguard_core::ports::{EventLog, Queue};
use revguard_core::usecases::digest::{digest, Period};
use revguard_core::{EventRecord, EventStatus};
use revguard_core::{Payload, QueueMessage};
use revguard_local::consumer;
use revguard_local::publish::JsonlPublisher;
use revguard_sqlite::SqliteStore;
use revguard_testkit::fixtures;
use serde_json::{json, Value};

const JAN_10: i64 = 1_768_003_200; // 2026-01-10 00:00 UTC, a Saturday
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

/// A fixture event, renamed and moved in time, with `edit` applied to its object.
fn event(fixture: &str, id: &str, created: i64, edit: Value) -> String {
    let mut e: Value = serde_json::from_str(&fixtures::with_id(fixture, id)).unwrap();
    e["created"] = json!(created);
    for (k, v) in edit.as_object().unwrap() {
        e["data"]["object"][k] = v.clone();
    }
    e.to_string()
}

fn failed_charge(customer: &str, reason: &str, at: i64) -> String {
    event(
        "charge.failed.json",
        &format!("evt_ch_{customer}_{at}"),
        at,
        json!({"id": format!("ch_{customer}_{at}"), "customer": customer,
               "failure_code": "card_declined", "outcome": {"reason": reason}}),
    )
}

fn failed_invoice(customer: &str, amount: i64, at: i64, retry_at: Option<i64>) -> String {
    event(
        "invoice.payment_failed.json",
        &format!("evt_inf_{customer}_{at}"),
        at,
        json!({"id": format!("in_{customer}"), "customer": customer, "amount_due": amount,
               "amount_remaining": amount, "next_payment_attempt": retry_at,
               "attempt_count": if retry_at.is_some() { 1 } else { 4 }}),
    )
}

fn paid_invoice(customer: &str, amount: i64, at: i64) -> String {
    event(
        "invoice.paid.json",
        &format!("evt_inp_{customer}_{at}"),
        at,
        json!({"id": format!("in_{customer}"), "customer": customer, "amount_due": amount,
               "amount_paid": amount, "amount_remaining": 0}),
    )
}

async fn apply(store: &SqliteStore, worker: &consumer::EmbeddedWorker, raw: String) {
    let e: Value = serde_json::from_str(&raw).unwrap();
    let created = e["created"].as_i64().unwrap();
    // Logged with its payload, as the ingress keeps it.
    store
        .insert_if_absent(&EventRecord {
            event_id: e["id"].as_str().unwrap().into(),
            event_type: e["type"].as_str().unwrap().into(),
            created,
            livemode: false,
            received_at: created + 1,
            expires_at: created + 30 * DAY,
            status: EventStatus::Queued,
            stored_payload: Some(revguard_core::domain::message::compress(raw.as_bytes())),
            account: revguard_core::ports::Account::of_event(e["account"].as_str()).unwrap(),
        })
        .await
        .unwrap();
    store
        .send(&QueueMessage {
            event_id: e["id"].as_str().unwrap().into(),
            event_type: e["type"].as_str().unwrap().into(),
            livemode: false,
            created,
            received_at: created + 1,
            payload: Payload::Inline(raw),
            via: Default::default(),
        })
        .await
        .unwrap();
    assert_eq!(
        consumer::run_once(store, worker, created + 1)
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn a_day_of_dunning_gives_the_recovery_rate_worked_out_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("digest.db")).unwrap();
    let worker = consumer::worker(
        &store,
        BillingPolicy::default(),
        JsonlPublisher::log_only("notification"),
    );
    let retry = Some(JAN_10 + 5 * DAY);
    for raw in [
        // A: opened two days before, recovered in the day ($20.00, after 2 days 3 hours).
        failed_charge("cus_A", "insufficient_funds", JAN_10 - 2 * DAY),
        failed_invoice("cus_A", 2_000, JAN_10 - 2 * DAY, retry),
        paid_invoice("cus_A", 2_000, JAN_10 + 3 * HOUR),
        // B: opened the day before, lost in the day (no retry left, $50.00).
        failed_charge("cus_B", "expired_card", JAN_10 - DAY),
        failed_invoice("cus_B", 5_000, JAN_10 - DAY, retry),
        failed_invoice("cus_B", 5_000, JAN_10 + 5 * HOUR, None),
        // C: opened and recovered in the day ($30.00, after 9 hours).
        failed_charge("cus_C", "insufficient_funds", JAN_10 + HOUR),
        failed_invoice("cus_C", 3_000, JAN_10 + HOUR, retry),
        paid_invoice("cus_C", 3_000, JAN_10 + 10 * HOUR),
        // D: opened in the day, still open ($90.00): the largest open case.
        failed_invoice("cus_D", 9_000, JAN_10 + 2 * HOUR, retry),
        // E: recovered the day after: not in this day.
        failed_invoice("cus_E", 7_000, JAN_10 + 4 * HOUR, retry),
        paid_invoice("cus_E", 7_000, JAN_10 + DAY + HOUR),
        // MRR: a new subscription and a cancellation in the day.
        event(
            "customer.subscription.created.json",
            "evt_sub_new",
            JAN_10 + 6 * HOUR,
            json!({"id": "sub_new", "customer": "cus_NEW"}),
        ),
        event(
            "customer.subscription.deleted.json",
            "evt_sub_gone",
            JAN_10 + 7 * HOUR,
            json!({"id": "sub_gone", "customer": "cus_GONE"}),
        ),
    ] {
        apply(&store, &worker, raw).await;
    }

    let d = digest(
        &store,
        &store,
        &BillingPolicy::default(),
        Period::Day,
        JAN_10 + DAY + 8 * HOUR,
        false,
    )
    .await
    .unwrap();
    println!("{}", d.text());
    assert_eq!((d.from, d.to), (JAN_10, JAN_10 + DAY));

    // By hand: closed in the day are A (recovered $20), C (recovered $30) and B (lost
    // $50); D and E are not closed in it. By count 2 / (2 + 1); by amount
    // (20 + 30) / (20 + 30 + 50).
    assert_eq!(
        (d.dunning.opened, d.dunning.recovered, d.dunning.lost),
        (3, 2, 1)
    );
    assert_eq!(d.recovery_rate.closed, 3);
    assert_eq!(d.recovery_rate.by_count, Some(2.0 / 3.0));
    assert_eq!(d.recovery_rate.by_amount["usd"], 0.5);
    assert_eq!(d.dunning.recovered_amount["usd"], 5_000);
    assert_eq!(d.dunning.lost_amount["usd"], 5_000);
    // Times to recover: 9 h (C) and 51 h (A).
    assert_eq!(d.dunning.longest_time_to_recover_secs, Some(51 * HOUR));
    assert_eq!(d.dunning.median_time_to_recover_secs, Some(30 * HOUR));
    let codes: Vec<(&str, usize, usize)> = d
        .recovery_rate
        .by_decline_code
        .iter()
        .map(|c| (c.decline_code.as_str(), c.recovered, c.lost))
        .collect();
    assert_eq!(
        codes,
        [("insufficient_funds", 2, 0), ("expired_card", 0, 1)]
    );

    let top = &d.top_open_cases[0];
    assert_eq!(
        (top.customer.as_deref(), top.amount_due),
        (Some("cus_D"), 9_000)
    );
    // Open cases are as they stand when the digest is made: E was recovered since.
    assert_eq!(d.top_open_cases.len(), 1);

    let usd = d.mrr.iter().find(|c| c.currency == "usd").unwrap();
    assert!(usd.new > 0 && usd.churn > 0, "{usd:?}");
    assert_eq!(usd.net, usd.new - usd.churn);
    let movers: Vec<(&str, Option<&str>)> = d
        .largest_movements
        .iter()
        .map(|m| (m.kind, m.customer.as_deref()))
        .collect();
    assert!(movers.contains(&("new", Some("cus_NEW"))), "{movers:?}");
    assert!(movers.contains(&("churn", Some("cus_GONE"))), "{movers:?}");

    let text = d.text();
    assert!(text.contains("66.7 % by count (2 of 3 closed)"), "{text}");
    assert!(text.contains("50.0 % in USD"), "{text}");
    assert!(text.contains("$90.00"), "{text}");
    assert!(
        text.contains(revguard_core::usecases::digest::RECOVERY_RATE_DEFINITION),
        "{text}"
    );
}

#[tokio::test]
async fn a_scheduled_digest_is_sent_once_to_the_file_and_finance() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("digest.db")).unwrap();
    let worker = consumer::worker(
        &store,
        BillingPolicy::default(),
        JsonlPublisher::log_only("notification"),
    );
    apply(
        &store,
        &worker,
        failed_invoice("cus_A", 2_000, JAN_10 + HOUR, Some(JAN_10 + 5 * DAY)),
    )
    .await;
    let smtp = revguard_local::email::Smtp::new(
        "smtp://127.0.0.1:2525",
        "revguard@example.com",
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let to = revguard_local::email::Recipients::parse("", "", "cfo@example.com").unwrap();
    let destinations = revguard_local::chat::Destinations {
        email: Some((smtp, to)),
        ..Default::default()
    };
    let file = dir.path().join("digests.jsonl");
    let schedule = revguard_local::digests::DigestSchedule {
        periods: vec![Period::Day, Period::Week],
        publisher: revguard_local::digests::DigestPublisher {
            file: JsonlPublisher::to_file("digest", &file).unwrap(),
            deliveries: destinations.outbox(&store, None),
        },
        policy: BillingPolicy::default(),
    };
    let now = JAN_10 + DAY + 8 * HOUR;
    let sent = revguard_local::digests::send_due(&store, &schedule, now)
        .await
        .unwrap();
    // The day had a case opened; the week before Monday 2026-01-05 has the open case.
    assert!(
        sent.contains(&"digest:test:day:2026-01-10T00:00:00Z".to_owned()),
        "{sent:?}"
    );
    assert!(
        sent.iter().all(|id| id.starts_with("digest:test:")),
        "live mode is quiet"
    );
    let again = revguard_local::digests::send_due(&store, &schedule, now + 600)
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
    let lines = std::fs::read_to_string(&file).unwrap();
    assert_eq!(lines.lines().count(), sent.len());
    let owed = store.chat_deliveries().unwrap();
    assert_eq!(owed.len(), sent.len());
    assert!(owed.iter().all(|d| d.app == "email:cfo@example.com"));
}
