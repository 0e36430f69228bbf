//! Port contracts as test suites: one behaviour, every backend. Each adapter crate runs
//! these against its own store (SQLite, DynamoDB in moto) so the adapters cannot drift.
//! They panic with a message on the first broken promise.

use revguard_core::domain::message::{compress, decompress, Payload, QueueMessage};
use revguard_core::ports::{EventLog, EventRecord, EventStatus, InsertOutcome, Queue};

pub fn sample_record(event_id: &str, now: i64) -> EventRecord {
    EventRecord {
        event_id: event_id.to_owned(),
        event_type: "invoice.paid".to_owned(),
        created: now - 5,
        livemode: false,
        received_at: now,
        expires_at: now + 30 * 24 * 3600,
        status: EventStatus::Received,
        stored_payload: None,
        account: Default::default(),
    }
}

/// The event log's promises. `unique` keeps ids apart when suites share a store.
pub async fn event_log_contract<L: EventLog>(log: &L, unique: &str) {
    let now = 1_700_000_000;
    let id = format!("evt_contract_{unique}");
    let record = sample_record(&id, now);

    assert_eq!(
        log.insert_if_absent(&record).await.unwrap(),
        InsertOutcome::Inserted
    );
    assert_eq!(
        log.insert_if_absent(&record).await.unwrap(),
        InsertOutcome::AlreadyPresent(EventStatus::Received),
        "a second insert of the same id reports the existing entry, still unconfirmed"
    );
    let mut changed = record.clone();
    changed.event_type = "changed".into();
    changed.status = EventStatus::Queued;
    assert_eq!(
        log.insert_if_absent(&changed).await.unwrap(),
        InsertOutcome::AlreadyPresent(EventStatus::Received),
        "an insert never overwrites"
    );

    log.mark_queued(&id).await.unwrap();
    assert_eq!(
        log.insert_if_absent(&record).await.unwrap(),
        InsertOutcome::AlreadyPresent(EventStatus::Queued)
    );
    log.mark_queued(&id)
        .await
        .expect("confirming twice is harmless");
    assert_eq!(log.stored_payload(&id).await.unwrap(), None);

    let big_id = format!("evt_contract_big_{unique}");
    let raw = br#"{"id":"evt","lines":[1,2,3]}"#.repeat(2000);
    let mut big = sample_record(&big_id, now);
    big.stored_payload = Some(compress(&raw));
    assert_eq!(
        log.insert_if_absent(&big).await.unwrap(),
        InsertOutcome::Inserted
    );
    let stored = log
        .stored_payload(&big_id)
        .await
        .unwrap()
        .expect("payload kept");
    assert_eq!(decompress(&stored).unwrap(), raw);
    assert_eq!(log.stored_payload("evt_never_seen").await.unwrap(), None);
}

/// Concurrent inserts of one id: exactly one wins.
pub async fn event_log_race_contract<L: EventLog>(log: &L, unique: &str) {
    let id = format!("evt_race_{unique}");
    let record = sample_record(&id, 1_700_000_000);
    let attempts = (0..8).map(|_| log.insert_if_absent(&record));
    let outcomes = futures_join_all(attempts).await;
    let inserted = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(InsertOutcome::Inserted)))
        .count();
    assert_eq!(
        inserted, 1,
        "exactly one concurrent insert wins: {outcomes:?}"
    );
}

/// The queue's promises: what is sent is what a consumer reads, attributes included.
pub fn sample_messages(unique: &str) -> Vec<QueueMessage> {
    vec![
        QueueMessage {
            event_id: format!("evt_q1_{unique}"),
            event_type: "charge.refunded".into(),
            livemode: true,
            created: 1_700_000_000,
            received_at: 1_700_000_003,
            payload: Payload::Inline(r#"{"id":"evt_q1","amount":1299, "note":"ünïcode"}"#.into()),
            via: Default::default(),
        },
        QueueMessage {
            event_id: format!("evt_q2_{unique}"),
            event_type: "invoice.payment_failed".into(),
            livemode: false,
            created: 1_700_000_001,
            received_at: 1_700_000_004,
            payload: Payload::InEventLog,
            via: Default::default(),
        },
    ]
}

pub async fn queue_send_contract<Q: Queue>(queue: &Q, messages: &[QueueMessage]) {
    assert!(
        queue.max_message_bytes() >= 64 * 1024,
        "a queue takes at least 64 KiB"
    );
    for m in messages {
        queue.send(m).await.unwrap();
    }
}

// A tiny join_all so core needs no futures crate.
async fn futures_join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (fut, out) in pinned.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *out = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("all ready")).collect()
}

// ---- Billing, counters and alerts --------------------------------------------------

use revguard_core::domain::billing::{
    CustomerState, DunningCase, Notification, SubscriptionState, Version,
};
use revguard_core::domain::detector::alerts::{render, AlertChange, AlertState, Transition};
use revguard_core::domain::finding::{Finding, Severity};
use revguard_core::domain::metric::Metric;
use revguard_core::ports::{
    Account, AlertStore, AppliedEvent, BillingCommit, BillingStore, Claimed, CommitError,
    CountersReader, EventKey, StateKeys, StateWrite,
};

fn sample_subscription(id: &str, customer: &str) -> SubscriptionState {
    let mut s: SubscriptionState = serde_json::from_value(serde_json::json!({
        "id": id, "customer": customer, "livemode": false, "status": "active", "currency": "usd", "mrr": 4900,
        "items": [], "has_metered": false, "trial_end": null, "current_period_end": null, "canceled_at": null,
        "cancel_at_period_end": false, "deleted": false,
        "version": { "created": 1_700_000_000, "event_id": "evt_v" }
    }))
    .unwrap_or_else(|e| panic!("a sample subscription: {e}"));
    s.version = Version::new(1_700_000_000, "evt_v");
    s
}

pub fn sample_finding(key: &str, at: i64) -> Finding {
    Finding {
        scope: Default::default(),
        accounts: Vec::new(),
        key: key.to_owned(),
        signal: "large_refund".into(),
        metric: "refunds_amount.usd".into(),
        livemode: true,
        window_start: at,
        window_end: at,
        observed: 90_000.0,
        expected: 50_000.0,
        spread: 0.0,
        ratio: 1.8,
        severity: Severity::Warning,
        explanation: format!("A single refund on {key}"),
    }
}

fn sample_event(event_id: &str, hour: i64, finding_key: &str) -> AppliedEvent {
    let n = |kind: &str| Notification {
        account: Default::default(),
        id: format!("{event_id}:{kind}"),
        kind: kind.into(),
        stage: None,
        customer: Some("cus_c".into()),
        livemode: false,
        event_id: event_id.to_owned(),
        created: hour,
        subject: "s".into(),
        details: serde_json::json!({}),
    };
    AppliedEvent {
        event_id: event_id.to_owned(),
        charge: None,
        received_at: hour + 90,
        counters: vec![
            revguard_core::domain::billing::CounterUpdate {
                livemode: false,
                hour,
                metric: Metric::PaymentsFailed,
                value: 2,
            },
            revguard_core::domain::billing::CounterUpdate {
                livemode: false,
                hour,
                metric: Metric::LagMaxSecs,
                value: 30,
            },
            revguard_core::domain::billing::CounterUpdate {
                livemode: false,
                hour: 0,
                metric: Metric::MrrTotal("usd".into()),
                value: 4900,
            },
        ],
        findings: vec![sample_finding(finding_key, hour)],
        notifications: vec![n("dunning"), n("large_payment")],
    }
}

/// The billing store's promises, with its counters read back through `counters`. Keys
/// carry `unique`, so suites may share a store.
pub async fn billing_store_contract<B: BillingStore, C: CountersReader>(
    store: &B,
    counters: &C,
    unique: &str,
) {
    let hour = 1_700_002_800 + 3600 * (unique.len() as i64 % 24);
    let (e1, e2) = (format!("evt_b1_{unique}"), format!("evt_b2_{unique}"));
    let (sub_id, cus_id, inv_id, ch_id) = (
        format!("sub_{unique}"),
        format!("cus_{unique}"),
        format!("in_{unique}"),
        format!("ch_{unique}"),
    );
    assert!(store
        .applied(&[EventKey::own(&e1)])
        .await
        .unwrap()
        .is_empty());

    let mut case = DunningCase::new(&inv_id, false);
    case.customer = Some(cus_id.clone());
    case.opened_at = Some(hour);
    let first = BillingCommit {
        account: Account::PLATFORM,
        events: vec![sample_event(&e1, hour, &format!("large_refund:{unique}"))],
        subscriptions: vec![StateWrite {
            value: sample_subscription(&sub_id, &cus_id),
            expected_version: None,
        }],
        cases: vec![StateWrite {
            value: (
                case.clone(),
                Some(revguard_core::domain::billing::Stage::Notice),
            ),
            expected_version: None,
        }],
        customers: vec![StateWrite {
            value: CustomerState::new(&cus_id, false),
            expected_version: None,
        }],
        charge_links: vec![(ch_id.clone(), cus_id.clone())],
        now: hour + 100,
        outbox_lease_until: hour + 160,
    };
    store.commit(&first).await.unwrap();
    assert_eq!(
        store
            .applied(&[EventKey::own(&e1), EventKey::own(&e2)])
            .await
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        vec![e1.clone()]
    );

    // Reading by a charge finds its customer too.
    let keys = StateKeys {
        account: Account::PLATFORM,
        subscriptions: [sub_id.clone()].into(),
        invoices: [inv_id.clone()].into(),
        customers: Default::default(),
        charges: [ch_id.clone()].into(),
    };
    let snapshot = store.load(&keys).await.unwrap();
    assert_eq!(snapshot.charge_customers.get(&ch_id), Some(&cus_id));
    let sub_version = snapshot.subscriptions[&sub_id].version;
    assert_eq!(
        snapshot.subscriptions[&sub_id].value,
        sample_subscription(&sub_id, &cus_id)
    );
    assert_eq!(snapshot.cases[&inv_id].value, case);
    let cus_version = snapshot
        .customers
        .get(&cus_id)
        .expect("the charge's customer is loaded")
        .version;

    // A write from a stale read, or a marker that exists, changes nothing.
    let mut moved = sample_subscription(&sub_id, &cus_id);
    moved.status = "past_due".into();
    let stale = BillingCommit {
        events: vec![sample_event(&e2, hour, "x")],
        subscriptions: vec![StateWrite {
            value: moved.clone(),
            expected_version: Some(sub_version + 7),
        }],
        now: hour + 200,
        ..Default::default()
    };
    assert!(
        matches!(store.commit(&stale).await, Err(CommitError::Conflict)),
        "a stale version conflicts"
    );
    let again = BillingCommit {
        events: vec![sample_event(&e1, hour, "x")],
        now: hour + 200,
        ..Default::default()
    };
    assert!(
        matches!(store.commit(&again).await, Err(CommitError::Conflict)),
        "an applied marker conflicts"
    );
    assert_eq!(
        store.applied(&[EventKey::own(&e2)]).await.unwrap().len(),
        0,
        "nothing of a conflicting commit stands"
    );
    let not_there = BillingCommit {
        customers: vec![StateWrite {
            value: CustomerState::new(&cus_id, false),
            expected_version: None,
        }],
        events: vec![sample_event(&e2, hour, "x")],
        now: hour + 200,
        ..Default::default()
    };
    assert!(
        matches!(store.commit(&not_there).await, Err(CommitError::Conflict)),
        "creating an existing item conflicts"
    );

    let second = BillingCommit {
        events: vec![sample_event(&e2, hour, &format!("large_refund:{unique}"))],
        subscriptions: vec![StateWrite {
            value: moved.clone(),
            expected_version: Some(sub_version),
        }],
        customers: vec![StateWrite {
            value: CustomerState::new(&cus_id, false),
            expected_version: Some(cus_version),
        }],
        now: hour + 300,
        outbox_lease_until: hour + 360,
        ..Default::default()
    };
    store.commit(&second).await.unwrap();

    // Events about a charge, whose markers may live on the charge's item with its
    // customer: applied once each, a second time conflicts, and the link reads back.
    let (c1, c2, ch2) = (
        format!("evt_c1_{unique}"),
        format!("evt_c2_{unique}"),
        format!("ch2_{unique}"),
    );
    // (No counters, findings or notifications: the checks below count e1's and e2's.)
    let about_charge = |id: &str| AppliedEvent {
        charge: Some(ch2.clone()),
        counters: vec![],
        findings: vec![],
        notifications: vec![],
        ..sample_event(id, hour, "x")
    };
    let key = |id: &str| EventKey {
        id: id.to_owned(),
        charge: Some(ch2.clone()),
        account: Account::PLATFORM,
    };
    let succeeded = BillingCommit {
        events: vec![about_charge(&c1)],
        charge_links: vec![(ch2.clone(), cus_id.clone())],
        now: hour + 300,
        ..Default::default()
    };
    store.commit(&succeeded).await.unwrap();
    assert_eq!(
        store.applied(&[key(&c1), key(&c2)]).await.unwrap(),
        [c1.clone()].into()
    );
    assert!(
        matches!(store.commit(&succeeded).await, Err(CommitError::Conflict)),
        "an event about a charge applies once"
    );
    let refunded = BillingCommit {
        events: vec![about_charge(&c2)],
        now: hour + 300,
        ..Default::default()
    };
    store.commit(&refunded).await.unwrap();
    assert_eq!(
        store.applied(&[key(&c1), key(&c2)]).await.unwrap(),
        [c1.clone(), c2.clone()].into()
    );
    let links = StateKeys {
        charges: [ch2.clone()].into(),
        ..Default::default()
    };
    assert_eq!(
        store.load(&links).await.unwrap().charge_customers.get(&ch2),
        Some(&cus_id),
        "the charge's customer, for its disputes"
    );
    for late in [&succeeded, &refunded] {
        assert!(matches!(
            store.commit(late).await,
            Err(CommitError::Conflict)
        ));
    }

    let after = store.load(&keys).await.unwrap();
    assert_eq!(after.subscriptions[&sub_id].value.status, "past_due");
    assert!(after.subscriptions[&sub_id].version > sub_version);

    // Counters: sums add, maxima keep the largest, hour 0 holds the gauges.
    let series = counters
        .counters(false, &Account::PLATFORM, hour, hour + 3600)
        .await
        .unwrap();
    assert_eq!(series[&hour][&Metric::PaymentsFailed], 4);
    assert_eq!(series[&hour][&Metric::LagMaxSecs], 30);
    assert!(series[&0][&Metric::MrrTotal("usd".into())] >= 9800);
    assert!(
        !counters
            .counters(true, &Account::PLATFORM, hour, hour + 3600)
            .await
            .unwrap()
            .contains_key(&hour),
        "modes apart"
    );

    // The outbox: leased to the commit that wrote it; claimed by event once the lease
    // ended, and by one claimer only; settled by notification id.
    let claim = |ids: Vec<String>, now: i64| {
        let store = &store;
        async move {
            let mut c = store.claim_outbox(&ids, now, now + 60).await.unwrap();
            c.messages.sort_by(|a, b| a.id.cmp(&b.id));
            c
        }
    };
    let held = claim(vec![e1.clone(), e2.clone()], hour + 150).await;
    assert!(
        held.messages.is_empty(),
        "leased to their writers: {held:?}"
    );
    let mut held_ids = held.held.clone();
    held_ids.sort();
    assert_eq!(held_ids, [e1.clone(), e2.clone()]);
    let first_claim = claim(vec![e1.clone(), e2.clone()], hour + 200).await;
    let ids: Vec<&str> = first_claim.messages.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(
        ids,
        [format!("{e1}:dunning"), format!("{e1}:large_payment")],
        "e1's lease ended at hour + 160, e2's runs to hour + 360"
    );
    assert_eq!(first_claim.held, std::slice::from_ref(&e2));
    let rival = claim(vec![e1.clone()], hour + 201).await;
    assert!(rival.messages.is_empty(), "claimed once: {rival:?}");
    assert_eq!(rival.held, std::slice::from_ref(&e1));

    // One published, one not: the unpublished one is released at once.
    let unpublished: Vec<_> = first_claim
        .messages
        .iter()
        .filter(|n| n.id.ends_with(":large_payment"))
        .cloned()
        .collect();
    store
        .settle_outbox(&[format!("{e1}:dunning")], &unpublished)
        .await
        .unwrap();
    let retry = claim(vec![e1.clone()], hour + 202).await;
    let ids: Vec<&str> = retry.messages.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(
        ids,
        [format!("{e1}:large_payment")],
        "released, not published twice"
    );
    store
        .settle_outbox(&[format!("{e1}:large_payment")], &[])
        .await
        .unwrap();
    let gone = claim(vec![e1.clone()], hour + 10_000).await;
    assert_eq!(gone, Claimed::default(), "settled: nothing left of e1");
    let left = claim(vec![e2.clone()], hour + 400).await;
    assert_eq!(left.messages.len(), 2, "{left:?}");
}

fn sample_change(id: &str, version: i64, expected_version: Option<i64>, now: i64) -> AlertChange {
    let finding = sample_finding(id, now);
    let state = AlertState {
        id: revguard_core::domain::detector::alerts::alert_id(true, id),
        livemode: true,
        open: true,
        severity: Severity::Warning,
        opened_at: now,
        last_sent_at: now,
        resolved_at: None,
        event_level: true,
        quiet_since: None,
        finding,
        version,
        missing_events: Vec::new(),
    };
    AlertChange {
        state,
        transition: Transition::Opened,
        expected_version,
    }
}

/// The alert store's promises. Findings are raised through the billing store's commits
/// (the worker's path); `handover` is whatever moves them from one to the other (nothing
/// where both share tables).
pub async fn alert_store_contract<A: AlertStore, B: BillingStore>(
    alerts: &A,
    billing: &B,
    handover: impl Fn(),
    unique: &str,
) {
    let now = 1_700_000_000;
    let key = format!("large_refund:ch_{unique}");
    let event = AppliedEvent {
        findings: vec![sample_finding(&key, now - 10)],
        ..sample_event(&format!("evt_a_{unique}"), now - 10, "k")
    };
    let commit = BillingCommit {
        events: vec![AppliedEvent {
            findings: event.findings.clone(),
            counters: vec![],
            notifications: vec![],
            ..event
        }],
        now,
        ..Default::default()
    };
    billing.commit(&commit).await.unwrap();
    handover();
    let pending = alerts.snapshot(now).await.unwrap().pending;
    let mine: Vec<&Finding> = pending.iter().filter(|f| f.key == key).collect();
    assert_eq!(mine.len(), 1, "{pending:?}");
    assert!(
        alerts
            .snapshot(now - 11)
            .await
            .unwrap()
            .pending
            .iter()
            .all(|f| f.key != key),
        "not before it was raised"
    );

    // A finding left outside a commit (a reconciliation's drift) waits the same way; one
    // left again under its key replaces the first.
    let drift_key = format!("reconcile_drift_{unique}");
    let mut drift = sample_finding(&drift_key, now - 5);
    alerts.add_pending(&drift).await.unwrap();
    drift.observed += 1.0;
    alerts.add_pending(&drift).await.unwrap();
    let waiting: Vec<Finding> = alerts
        .snapshot(now)
        .await
        .unwrap()
        .pending
        .into_iter()
        .filter(|f| f.key == drift_key)
        .collect();
    assert_eq!(
        waiting,
        vec![drift.clone()],
        "one finding per key, the latest"
    );
    alerts.consume_findings(&[drift]).await.unwrap();

    let mut opened = sample_change(&key, 1, None, now);
    // What an events_missing alert remembers comes back as written.
    opened.state.missing_events = vec![revguard_core::domain::event::MissingEvent {
        id: format!("evt_m_{unique}"),
        event_type: "invoice.paid".into(),
        created: now - 3_000,
        livemode: true,
        account: Default::default(),
    }];
    let message = render(&opened);
    assert!(alerts
        .commit_change(&opened, Some(&message), now, now + 60)
        .await
        .unwrap());
    assert!(
        !alerts
            .commit_change(&opened, Some(&message), now, now + 60)
            .await
            .unwrap(),
        "a second open of the same alert is refused"
    );
    let stored = alerts.snapshot(now).await.unwrap().alerts;
    assert_eq!(
        stored
            .iter()
            .find(|a| a.id == opened.state.id)
            .map(|a| (a.version, &a.missing_events)),
        Some((1, &opened.state.missing_events))
    );
    let mut resolved = sample_change(&key, 2, Some(1), now + 60);
    resolved.state.open = false;
    resolved.transition = Transition::Resolved;
    assert!(alerts
        .commit_change(&resolved, None, now + 60, now + 120)
        .await
        .unwrap());
    assert!(
        !alerts
            .commit_change(&resolved, None, now + 60, now + 120)
            .await
            .unwrap(),
        "a change planned from an old version is refused"
    );
    assert!(
        alerts
            .snapshot(now + 60)
            .await
            .unwrap()
            .alerts
            .iter()
            .all(|a| a.id != resolved.state.id),
        "a run reads open alerts only"
    );
    let by_key = alerts
        .alerts(&[resolved.state.id.clone(), "live:never-raised".into()])
        .await
        .unwrap();
    assert_eq!(
        by_key
            .iter()
            .map(|a| (a.version, a.open))
            .collect::<Vec<_>>(),
        [(2, false)],
        "a closed alert is read by key, to reopen at its next version"
    );

    let outbox: Vec<String> = alerts
        .snapshot(now)
        .await
        .unwrap()
        .outbox
        .into_iter()
        .map(|m| m.id)
        .filter(|id| id == &message.id)
        .collect();
    assert_eq!(outbox, vec![message.id.clone()]);
    let mine_only = std::slice::from_ref(&message.id);
    assert!(
        alerts
            .claim_outbox(mine_only, now + 59, now + 120)
            .await
            .unwrap()
            .is_empty(),
        "leased to the run that committed it"
    );
    assert_eq!(
        alerts
            .claim_outbox(mine_only, now + 61, now + 120)
            .await
            .unwrap(),
        mine_only,
        "claimable once the lease ended"
    );
    assert!(
        alerts
            .claim_outbox(mine_only, now + 62, now + 120)
            .await
            .unwrap()
            .is_empty(),
        "and by one claimer"
    );
    alerts
        .clear_outbox(std::slice::from_ref(&message.id))
        .await
        .unwrap();
    assert!(alerts
        .snapshot(now)
        .await
        .unwrap()
        .outbox
        .iter()
        .all(|m| m.id != message.id));

    // Consumed only if unchanged since read.
    let mut rewritten = mine[0].clone();
    rewritten.explanation.push_str(" (again)");
    alerts.consume_findings(&[rewritten]).await.unwrap();
    assert!(
        alerts
            .snapshot(now)
            .await
            .unwrap()
            .pending
            .iter()
            .any(|f| f.key == key),
        "a finding changed since read stays"
    );
    alerts.consume_findings(&[mine[0].clone()]).await.unwrap();
    assert!(alerts
        .snapshot(now)
        .await
        .unwrap()
        .pending
        .iter()
        .all(|f| f.key != key));
}

/// Connect: the same subscription, invoice, customer and charge ids, and the same hour,
/// in the platform's own account and in two connected accounts stay apart in every
/// state item, marker and counter; the connected accounts' counters are listed as active
/// in their window, the platform's are not among them. `unique` keeps ids apart when
/// suites share a store.
pub async fn accounts_contract<B: BillingStore, C: CountersReader>(
    store: &B,
    counters: &C,
    unique: &str,
) {
    let hour = 1_700_600_400 + 3600 * (unique.len() as i64 % 24);
    let a = Account::connected(&format!("acct_A{}", unique.replace(['_', '-'], "")))
        .expect("an account id");
    let b = Account::connected(&format!("acct_B{}", unique.replace(['_', '-'], "")))
        .expect("an account id");
    let (sub_id, cus_id, inv_id, ch_id) = (
        format!("sub_x{unique}"),
        format!("cus_x{unique}"),
        format!("in_x{unique}"),
        format!("ch_x{unique}"),
    );
    for (i, account) in [Account::PLATFORM, a.clone(), b.clone()].iter().enumerate() {
        let mut sub = sample_subscription(&sub_id, &cus_id);
        sub.mrr = 1000 * (i as i64 + 1);
        let mut case = DunningCase::new(&inv_id, false);
        case.customer = Some(cus_id.clone());
        case.amount_due = 100 * (i as i64 + 1);
        let event_id = format!("evt_acct{i}_{unique}");
        let mut event = sample_event(&event_id, hour, "x");
        event.findings = vec![];
        event.notifications = vec![];
        for u in &mut event.counters {
            u.value *= i as i64 + 1;
        }
        let commit = BillingCommit {
            account: account.clone(),
            events: vec![event],
            subscriptions: vec![StateWrite {
                value: sub,
                expected_version: None,
            }],
            cases: vec![StateWrite {
                value: (case, Some(revguard_core::domain::billing::Stage::Notice)),
                expected_version: None,
            }],
            customers: vec![StateWrite {
                value: CustomerState::new(&cus_id, false),
                expected_version: None,
            }],
            charge_links: vec![(ch_id.clone(), format!("{cus_id}_{i}"))],
            now: hour + 100,
            outbox_lease_until: hour + 160,
        };
        store
            .commit(&commit)
            .await
            .unwrap_or_else(|e| panic!("{account}'s items are its own, not the others': {e}"));
    }
    for (i, account) in [Account::PLATFORM, a.clone(), b.clone()].iter().enumerate() {
        let keys = StateKeys {
            account: account.clone(),
            subscriptions: [sub_id.clone()].into(),
            invoices: [inv_id.clone()].into(),
            customers: [cus_id.clone()].into(),
            charges: [ch_id.clone()].into(),
        };
        let snapshot = store.load(&keys).await.unwrap();
        assert_eq!(
            snapshot.subscriptions[&sub_id].value.mrr,
            1000 * (i as i64 + 1),
            "{account} reads its own subscription"
        );
        assert_eq!(
            snapshot.cases[&inv_id].value.amount_due,
            100 * (i as i64 + 1)
        );
        assert_eq!(snapshot.subscriptions[&sub_id].version, 1);
        assert_eq!(
            snapshot.charge_customers.get(&ch_id),
            Some(&format!("{cus_id}_{i}")),
            "{account} reads its own charge link"
        );
        let series = counters
            .counters(false, account, hour, hour + 3600)
            .await
            .unwrap();
        assert_eq!(
            series[&hour][&Metric::PaymentsFailed],
            2 * (i as i64 + 1),
            "{account} counts its own"
        );
        assert_eq!(
            series[&0][&Metric::MrrTotal("usd".into())],
            4900 * (i as i64 + 1)
        );
    }
    // A charge marker is the account's: the same charge id elsewhere is another charge.
    let about = |account: &Account, id: &str| EventKey {
        id: id.to_owned(),
        charge: Some(ch_id.clone()),
        account: account.clone(),
    };
    let charge_event = format!("evt_charge_{unique}");
    let marked = BillingCommit {
        account: a.clone(),
        events: vec![AppliedEvent {
            charge: Some(ch_id.clone()),
            counters: vec![],
            findings: vec![],
            notifications: vec![],
            ..sample_event(&charge_event, hour, "x")
        }],
        now: hour + 200,
        ..Default::default()
    };
    store.commit(&marked).await.unwrap();
    assert_eq!(
        store.applied(&[about(&a, &charge_event)]).await.unwrap(),
        [charge_event.clone()].into()
    );
    let connected = counters.connected(false, hour, hour + 3600).await.unwrap();
    for (i, account) in [(1, &a), (2, &b)] {
        let series = connected
            .get(account)
            .unwrap_or_else(|| panic!("{account} is active in its hour"));
        assert_eq!(series[&hour][&Metric::PaymentsFailed], 2 * (i + 1));
        assert_eq!(series[&0][&Metric::MrrTotal("usd".into())], 4900 * (i + 1));
    }
    assert!(
        !connected.contains_key(&Account::PLATFORM),
        "the platform's own account is not a connected one"
    );
    assert!(
        counters
            .connected(false, hour + 7200, hour + 10_800)
            .await
            .unwrap()
            .keys()
            .all(|acct| acct != &a && acct != &b),
        "an account with no counts in the window is not read"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemoryEventLog, MemoryQueue};

    #[tokio::test]
    async fn memory_billing_and_alerts_keep_the_contracts() {
        let billing = crate::memory::MemoryBilling::default();
        billing_store_contract(&billing, &billing, "mem").await;
        let alerts = crate::memory::MemoryAlerts::default();
        alert_store_contract(&alerts, &billing, || alerts.fed_by(&billing), "mem").await;
    }

    #[tokio::test]
    async fn memory_billing_keeps_connected_accounts_apart() {
        let billing = crate::memory::MemoryBilling::default();
        accounts_contract(&billing, &billing, "mem").await;
    }

    #[tokio::test]
    async fn memory_adapters_keep_the_contracts() {
        let log = MemoryEventLog::default();
        event_log_contract(&log, "mem").await;
        event_log_race_contract(&log, "mem").await;
        let queue = MemoryQueue::default();
        let msgs = sample_messages("mem");
        queue_send_contract(&queue, &msgs).await;
        assert_eq!(queue.sent(), msgs);
    }
}
