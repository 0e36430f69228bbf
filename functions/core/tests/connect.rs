//! Connect: a platform's connected accounts, each watched on its own, and the platform as
//! a whole. The worker keeps the accounts' state and counters apart even when their ids
//! collide; the detector alerts a connected account's anomaly under that account, and a
//! signal many accounts raise at once as one platform alert naming them.

use std::collections::BTreeMap;

use revguard_core::domain::billing::{BillingPolicy, Notification};
use revguard_core::domain::detector::alerts::{AlertMessage, Transition};
use revguard_core::domain::detector::{detect_platform, DetectConfig, Series};
use revguard_core::domain::metric::Metric;
use revguard_core::domain::time::hour_of;
use revguard_core::ports::{Account, Comebacks, Inbound, Scope, StoreError};
use revguard_core::usecases::apply_batch::{BatchApplier, ConsumeRules, Consumed};
use revguard_core::usecases::detector_run::Detector;
use revguard_core::usecases::recovery::NoAudit;
use revguard_testkit::fixtures;
use revguard_testkit::memory::{
    CountedPause, MemoryAlerts, MemoryBilling, MemoryDeadLetters, MemoryEventLog, MemoryPublisher,
};

const ACCOUNTS: [Option<&str>; 3] = [None, Some("acct_1Alpha"), Some("acct_1Beta")];
const STORY: [&str; 3] = [
    "customer.subscription.created.json",
    "invoice.payment_failed.json",
    "charge.refunded.json",
];

fn worker() -> BatchApplier<
    MemoryEventLog,
    MemoryBilling,
    MemoryPublisher<Notification>,
    MemoryDeadLetters,
    CountedPause,
> {
    BatchApplier {
        log: MemoryEventLog::default(),
        billing: MemoryBilling::default(),
        notifier: MemoryPublisher::default(),
        dead_letters: MemoryDeadLetters::default(),
        pause: CountedPause::default(),
        policy: BillingPolicy {
            // The story's refund (20.00) is large here, so each account raises one.
            large_refund_minor_units: 1_000,
            ..BillingPolicy::default()
        },
        rules: ConsumeRules::default(),
        requery: revguard_core::usecases::recovery::NoRequery,
    }
}

/// The story in every account, interleaved, as one batch: the same subscription,
/// customer, invoice and charge ids in each.
fn interleaved_batch() -> Vec<Inbound> {
    let mut batch = Vec::new();
    for (i, file) in STORY.iter().enumerate() {
        for account in ACCOUNTS {
            let id = format!("evt_{}_{i}", account.unwrap_or("platform"));
            let raw = fixtures::in_account(file, &id, account);
            batch.push(Inbound {
                id: format!("m{}", batch.len()),
                body: fixtures::queued(&raw).encode(),
                receive_count: 1,
                sent_at: None,
            });
        }
    }
    batch
}

#[tokio::test]
async fn accounts_that_reuse_ids_stay_apart_in_state_counters_findings_and_notifications() {
    let w = worker();
    let outcomes = w.consume(&interleaved_batch(), 1_767_300_000).await;
    assert!(
        outcomes.iter().all(|o| *o == Consumed::Applied),
        "{outcomes:?}"
    );
    let t = w.billing.tables();
    for account in ACCOUNTS {
        let account = Account::of_event(account).unwrap();
        let sub = &t.subscriptions[&account.key("sub_RG1001")].value;
        assert_eq!(sub.id, "sub_RG1001", "the stored state keeps Stripe's id");
        assert!(
            t.cases.contains_key(&account.key("in_RG1001")),
            "{account} has its own dunning case"
        );
        let counted = |metric: Metric| {
            t.counters[&account]
                .iter()
                .filter(|((_, _, m), _)| *m == metric)
                .map(|(_, v)| *v)
                .sum::<i64>()
        };
        assert_eq!(counted(Metric::Events), 3, "{account}: its three events");
        assert_eq!(counted(Metric::Refunds), 1, "{account}: one refund");
        assert_eq!(
            counted(Metric::DunningOpened),
            1,
            "{account}: one case opened"
        );
        let findings: Vec<_> = t
            .findings
            .values()
            .filter(|f| f.scope == Scope::of(&account))
            .collect();
        assert_eq!(findings.len(), 1, "{account}: its large refund");
        assert_eq!(
            findings[0].key,
            format!("{}large_refund:ch_RG1001", Scope::of(&account).key_prefix())
        );
    }
    assert_eq!(t.subscriptions.len(), 3);
    let notified: BTreeMap<String, usize> =
        w.notifier.taken().iter().fold(BTreeMap::new(), |mut m, n| {
            *m.entry(n.account.label().to_owned()).or_default() += 1;
            m
        });
    assert_eq!(
        notified.len(),
        3,
        "each account's notifications say whose: {notified:?}"
    );
    assert!(notified.values().all(|n| *n == notified["platform"]));
}

#[tokio::test]
async fn an_event_of_a_malformed_account_is_poison_and_sinks_nothing_else() {
    let w = worker();
    let mut batch = interleaved_batch();
    let raw = fixtures::in_account("charge.refunded.json", "evt_bad", Some("acct_x#sub"));
    batch.push(Inbound {
        id: "bad".into(),
        body: fixtures::queued(&raw).encode(),
        receive_count: 1,
        sent_at: None,
    });
    let outcomes = w.consume(&batch, 1_767_300_000).await;
    assert!(
        matches!(outcomes.last(), Some(Consumed::DeadLettered(reason)) if reason.contains("account"))
    );
    assert!(outcomes[..outcomes.len() - 1]
        .iter()
        .all(|o| *o == Consumed::Applied));
}

struct NoComebacks;
impl Comebacks for NoComebacks {
    async fn is_subscribed(&self, _: &Account, _: &str, _: bool) -> Result<bool, StoreError> {
        Ok(false)
    }
}

#[tokio::test]
async fn a_connected_account_s_large_refund_is_alerted_under_that_account() {
    let w = worker();
    w.consume(&interleaved_batch(), 1_767_300_000).await;
    let alerts = MemoryAlerts::default();
    alerts.fed_by(&w.billing);
    let detector = Detector {
        counters: MemoryBilling::default(),
        alerts,
        publisher: MemoryPublisher::<AlertMessage>::default(),
        comebacks: NoComebacks,
        config: DetectConfig::default(),
        audit: NoAudit,
        pause: CountedPause::default(),
        wall_clock: revguard_core::domain::time::unix_now,
    };
    let summary = detector.run(1_767_300_000).await.unwrap();
    let mut opened: Vec<&str> = summary
        .transitions
        .iter()
        .filter(|m| m.transition == Transition::Opened)
        .map(|m| m.alert_id.as_str())
        .collect();
    opened.sort();
    assert_eq!(
        opened,
        [
            "test:acct_1Alpha:large_refund:ch_RG1001",
            "test:acct_1Beta:large_refund:ch_RG1001",
            "test:large_refund:ch_RG1001",
        ],
        "one alert per account, the platform's under the id it always had"
    );
    let alpha = summary
        .transitions
        .iter()
        .find(|m| m.alert_id.contains("acct_1Alpha"))
        .unwrap();
    assert!(alpha.subject.contains("acct_1Alpha"), "{}", alpha.subject);
    assert_eq!(alpha.finding.scope.label(), "acct_1Alpha");
}

const H: i64 = 1_767_916_800; // a midnight
const NOW: i64 = H + 3 * 3600 + 1800; // 03:30

/// A week of `per_hour` successful payments and `failed_per_hour` failures, then
/// `failed_now` failures in the hour being judged.
fn account_series(per_hour: i64, failed_per_hour: i64, failed_now: i64) -> Series {
    let mut s = Series::new();
    let mut h = hour_of(NOW) - 8 * 86_400;
    while h < hour_of(NOW) {
        let m = s.entry(h).or_default();
        m.insert(Metric::PaymentsSucceeded, per_hour);
        if failed_per_hour > 0 {
            m.insert(Metric::PaymentsFailed, failed_per_hour);
        }
        h += 3600;
    }
    let m = s.entry(hour_of(NOW)).or_default();
    m.insert(Metric::PaymentsSucceeded, per_hour / 2);
    m.insert(Metric::PaymentsFailed, failed_now);
    s
}

fn acct(i: usize) -> Account {
    Account::connected(&format!("acct_{i:04}")).unwrap()
}

#[test]
fn a_failed_payment_spike_across_forty_accounts_is_one_platform_alert_naming_them() {
    let config = DetectConfig::default();
    let own = account_series(200, 4, 4);
    let mut connected: BTreeMap<Account, Series> = BTreeMap::new();
    for i in 0..40 {
        connected.insert(acct(i), account_series(20, 1, 12));
    }
    for i in 40..60 {
        connected.insert(acct(i), account_series(20, 1, 1));
    }
    let found = detect_platform(&own, &connected, true, NOW, &config);
    let spikes: Vec<_> = found
        .iter()
        .filter(|f| f.unscoped_key() == "spike:payments_failed")
        .collect();
    assert_eq!(spikes.len(), 1, "one alert, not 40: {spikes:#?}");
    let platform = spikes[0];
    assert_eq!(platform.scope, Scope::All);
    assert_eq!(platform.key, "all:spike:payments_failed");
    assert_eq!(platform.accounts.len(), 40);
    assert!(platform.accounts.contains(&"acct_0039".to_owned()));
    assert!(!platform.accounts.contains(&"acct_0040".to_owned()));
    assert!(
        platform
            .explanation
            .starts_with("40 accounts at once (acct_0000, acct_0001"),
        "{}",
        platform.explanation
    );
    assert!(platform.explanation.contains("and 20 more"));
}

#[test]
fn a_quiet_account_is_judged_on_counts_and_a_loud_one_alone_under_its_own_name() {
    let config = DetectConfig::default();
    let own = account_series(200, 4, 4);
    // An account that never had a failed payment in the week.
    let quiet = |failed_now| {
        let c = BTreeMap::from([(acct(7), account_series(2, 0, failed_now))]);
        detect_platform(&own, &c, true, NOW, &config)
    };
    assert!(
        quiet(4)
            .iter()
            .all(|f| f.unscoped_key() != "spike:payments_failed"),
        "4 failures at a quiet account stay quiet"
    );
    let loud = quiet(10);
    let spike = loud
        .iter()
        .find(|f| f.unscoped_key() == "spike:payments_failed")
        .expect("10 failures at once page");
    assert_eq!(spike.scope, Scope::Account(acct(7)));
    assert_eq!(spike.key, "acct_0007:spike:payments_failed");
    // Without the floor the same 4 would have paged: the floor is what keeps them quiet.
    let no_floor = DetectConfig {
        account_baseline_floor: 0.0,
        ..DetectConfig::default()
    };
    let c = BTreeMap::from([(acct(7), account_series(2, 0, 4))]);
    assert!(detect_platform(&own, &c, true, NOW, &no_floor)
        .iter()
        .any(|f| f.key == "acct_0007:spike:payments_failed"));
}

#[test]
fn with_no_connected_account_active_the_platform_is_judged_as_before() {
    let config = DetectConfig::default();
    let own = account_series(200, 4, 40);
    let before = revguard_core::domain::detector::detect(&own, true, NOW, &config);
    let now = detect_platform(&own, &BTreeMap::new(), true, NOW, &config);
    assert_eq!(before, now);
    assert!(now.iter().all(|f| f.scope.is_platform()));
    assert!(now.iter().any(|f| f.key == "spike:payments_failed"));
}

#[test]
fn the_endpoint_is_judged_on_every_account_s_deliveries_under_the_platform_s_ids() {
    let config = DetectConfig::default();
    // The platform's own account is quiet; its accounts deliver steadily, then nothing.
    let own = Series::new();
    let mut connected = BTreeMap::new();
    for i in 0..3 {
        let mut s = Series::new();
        let mut h = hour_of(NOW) - 8 * 86_400;
        while h < hour_of(NOW) - 3 * 3600 {
            s.entry(h).or_default().insert(Metric::EventsReceived, 30);
            s.entry(0)
                .or_default()
                .insert(Metric::MaxReceivedAt, h + 3000);
            h += 3600;
        }
        connected.insert(acct(i), s);
    }
    let found = detect_platform(&own, &connected, true, NOW, &config);
    let gap = found
        .iter()
        .find(|f| f.signal == "delivery_gap")
        .expect("the endpoint went silent for every account");
    assert_eq!(gap.key, "delivery_gap", "under the platform's id");
    assert!(found.iter().filter(|f| f.signal == "delivery_gap").count() == 1);
}

/// The backfill's cursors, one per account, in memory.
#[derive(Default)]
struct Cursors(std::sync::Mutex<BTreeMap<Account, i64>>);

impl revguard_core::ports::BackfillCursor for Cursors {
    async fn cursor(&self, account: &Account) -> Result<Option<i64>, StoreError> {
        Ok(self.0.lock().unwrap().get(account).copied())
    }
    async fn advance(&self, account: &Account, to: i64) -> Result<(), StoreError> {
        let mut c = self.0.lock().unwrap();
        let at = c.entry(account.clone()).or_insert(to);
        *at = (*at).max(to);
        Ok(())
    }
}

#[tokio::test]
async fn a_connected_account_is_backfilled_on_its_behalf_from_its_own_cursor() {
    use revguard_core::ports::{EventsQuery, StripeApi};
    use revguard_core::usecases::recovery::{backfill_from_cursor, fetched_ingress};
    let now = 1_767_300_000;
    let stripe = revguard_testkit::memory::MemoryStripe::new(false);
    let alpha = Account::connected("acct_1Alpha").unwrap();
    let mut platform_event: serde_json::Value =
        serde_json::from_str(&fixtures::read("charge.refunded.json")).unwrap();
    platform_event["id"] = "evt_platform_missed".into();
    platform_event["created"] = (now - 600).into();
    stripe.created(&platform_event.to_string());
    let mut alpha_event = platform_event.clone();
    alpha_event["id"] = "evt_alpha_missed".into();
    stripe.created_for(&alpha, &alpha_event.to_string());

    let ingress = fetched_ingress(
        MemoryEventLog::default(),
        revguard_testkit::memory::MemoryQueue::default(),
    );
    let (log, queue) = (&ingress.log, &ingress.queue);
    let cursors = Cursors::default();
    let query = EventsQuery {
        since: now,
        until: None,
        undelivered_only: false,
        types: Vec::new(),
    };
    let (_, platform) = backfill_from_cursor(
        &stripe,
        &ingress,
        &cursors,
        &query,
        Some(now - 3600),
        now,
        &|| true,
    )
    .await
    .unwrap();
    assert_eq!(
        platform.accepted, 1,
        "the platform's listing holds only its own event"
    );
    assert!(log.get("evt_alpha_missed").is_none());
    let (_, connected) = backfill_from_cursor(
        &stripe.for_account(&alpha),
        &ingress,
        &cursors,
        &query,
        None,
        now,
        &|| true,
    )
    .await
    .unwrap();
    assert_eq!(connected.accepted, 1);
    assert_eq!(
        log.get("evt_alpha_missed").unwrap().account,
        alpha,
        "listed on Alpha's behalf, recorded as Alpha's"
    );
    let sent = queue.sent();
    let alpha_message = sent
        .iter()
        .find(|m| m.event_id == "evt_alpha_missed")
        .unwrap();
    let revguard_core::Payload::Inline(raw) = &alpha_message.payload else {
        panic!("inline")
    };
    assert!(
        raw.contains("\"account\":\"acct_1Alpha\""),
        "the worker applies it to Alpha's keys"
    );
    let c = cursors.0.lock().unwrap();
    assert_eq!(c.len(), 2, "a cursor per account: {c:?}");
    assert!(c.contains_key(&alpha) && c.contains_key(&Account::PLATFORM));
}

#[tokio::test]
async fn the_completeness_audit_lists_connected_accounts_on_their_behalf_in_turn() {
    use revguard_core::usecases::recovery::{DeliveryAudit, StripeAudit, AUDITED_ACCOUNTS_PER_RUN};
    let now = 1_767_300_000;
    let stripe = revguard_testkit::memory::MemoryStripe::new(false);
    let accounts: Vec<Account> = (0..30)
        .map(|i| Account::connected(&format!("acct_{i:03}")).unwrap())
        .collect();
    // Every account has one event in the audit's window that never arrived.
    for (i, account) in accounts.iter().enumerate() {
        let mut e: serde_json::Value =
            serde_json::from_str(&fixtures::read("invoice.paid.json")).unwrap();
        e["id"] = format!("evt_missed_{i:03}").into();
        e["created"] = (now - 20 * 60).into();
        stripe.created_for(account, &e.to_string());
    }
    let audit = StripeAudit {
        api: stripe,
        log: MemoryEventLog::default(),
        endpoint_url: None,
        eventbridge_source: None,
    };
    let mut seen = std::collections::BTreeSet::new();
    for run in 0..2 {
        let outcome = audit
            .audit(now + run * 15 * 60, &accounts, &[])
            .await
            .expect("the audit runs");
        let missing: Vec<_> = outcome
            .missing
            .iter()
            .filter(|m| m.created == now - 20 * 60)
            .collect();
        if run == 0 {
            assert_eq!(
                missing.len(),
                AUDITED_ACCOUNTS_PER_RUN,
                "a bounded share a run"
            );
        }
        for m in missing {
            assert_eq!(m.id, format!("evt_missed_{}", &m.account.label()[5..]));
            seen.insert(m.account.clone());
        }
    }
    assert_eq!(seen.len(), 30, "in two runs every account took its turn");
}

/// The accounts a store has seen, as given.
struct Seen(Vec<Account>);
impl revguard_core::ports::AccountsSeen for Seen {
    async fn accounts_seen(&self) -> Result<Vec<Account>, StoreError> {
        Ok(self.0.clone())
    }
}

#[tokio::test]
async fn an_account_stripe_refuses_holds_back_no_other_s_backfill() {
    use revguard_core::ports::EventsQuery;
    use revguard_core::usecases::recovery::{backfill_every_account, fetched_ingress};
    let now = 1_767_300_000;
    let stripe = revguard_testkit::memory::MemoryStripe::new(false);
    let accounts: Vec<Account> = ["acct_1A", "acct_1Gone", "acct_1C"]
        .iter()
        .map(|a| Account::connected(a).unwrap())
        .collect();
    for (i, account) in accounts.iter().enumerate() {
        let mut e: serde_json::Value =
            serde_json::from_str(&fixtures::read("invoice.paid.json")).unwrap();
        e["id"] = format!("evt_each_{i}").into();
        e["created"] = (now - 600).into();
        stripe.created_for(account, &e.to_string());
    }
    stripe.refused.lock().unwrap().insert(accounts[1].clone());
    let ingress = fetched_ingress(
        MemoryEventLog::default(),
        revguard_testkit::memory::MemoryQueue::default(),
    );
    let query = EventsQuery {
        since: now,
        until: None,
        undelivered_only: false,
        types: Vec::new(),
    };
    let (_, summary) = backfill_every_account(
        &stripe,
        &ingress,
        &Cursors::default(),
        &Seen(accounts.clone()),
        &query,
        Some(now - 3600),
        now,
        &|| true,
    )
    .await
    .expect("one account's refusal fails no run");
    assert_eq!(summary.connected_accounts, 2);
    assert_eq!(summary.connected_accounts_failed, 1);
    assert_eq!(summary.accepted, 2);
    assert!(ingress.log.get("evt_each_0").is_some() && ingress.log.get("evt_each_2").is_some());
    assert!(ingress.log.get("evt_each_1").is_none());
}
