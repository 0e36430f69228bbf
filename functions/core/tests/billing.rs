//! The worker's domain, end to end in memory: stories, MRR, access, order independence.

use proptest::prelude::*;
use serde_json::{json, Value};

use revguard_core::domain::billing::access::{access, Verdict};
use revguard_core::domain::billing::event::{BillingEvent, StateLookup};
use revguard_core::domain::billing::hour_of;
use revguard_core::domain::billing::policy::BillingPolicy;
use revguard_core::domain::billing::stage::Stage;
use revguard_core::domain::billing::state::BillingState;

const T0: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z
const DAY: i64 = 86_400;

fn event(
    id: &str,
    event_type: &str,
    created: i64,
    object: Value,
    previous: Option<Value>,
) -> BillingEvent {
    let mut data = json!({ "object": object });
    if let Some(p) = previous {
        data["previous_attributes"] = p;
    }
    let raw = json!({ "id": id, "object": "event", "type": event_type, "created": created, "livemode": false, "data": data });
    BillingEvent::parse(raw.to_string().as_bytes(), created + 2).unwrap()
}

fn sub_obj(id: &str, status: &str, unit_amount: i64, quantity: i64) -> Value {
    json!({ "id": id, "object": "subscription", "customer": "cus_1", "status": status, "currency": "usd",
        "cancel_at_period_end": false,
        "items": { "data": [{ "id": "si_1", "quantity": quantity, "current_period_end": T0 + 31 * DAY,
            "price": { "id": "price_pro", "unit_amount": unit_amount, "currency": "usd",
                "recurring": { "interval": "month", "interval_count": 1, "usage_type": "licensed" } } }] } })
}

fn invoice_obj(id: &str, sub: &str, attempt: i64, next_attempt: Option<i64>, paid: bool) -> Value {
    json!({ "id": id, "object": "invoice", "customer": "cus_1", "currency": "usd", "amount_due": 2000,
        "amount_paid": if paid { 2000 } else { 0 }, "attempt_count": attempt, "next_payment_attempt": next_attempt,
        "status": if paid { "paid" } else { "open" },
        "hosted_invoice_url": format!("https://invoice.stripe.com/i/acct_1/{id}"),
        "lines": { "data": [{ "period": { "start": T0 + 31 * DAY, "end": T0 + 62 * DAY } }] },
        "parent": { "subscription_details": { "subscription": sub } } })
}

fn failed_renewal_story() -> Vec<BillingEvent> {
    vec![
        event(
            "evt_01",
            "customer.subscription.created",
            T0,
            sub_obj("sub_1", "active", 2000, 1),
            None,
        ),
        event(
            "evt_02",
            "charge.succeeded",
            T0,
            json!({"id":"ch_0","customer":"cus_1","amount":2000,"currency":"usd"}),
            None,
        ),
        event(
            "evt_03",
            "charge.failed",
            T0 + 31 * DAY,
            json!({"id":"ch_1","customer":"cus_1","amount":2000,"currency":"usd",
                "failure_code":"card_declined","outcome":{"reason":"insufficient_funds"}}),
            None,
        ),
        event(
            "evt_04",
            "payment_intent.payment_failed",
            T0 + 31 * DAY,
            json!({"id":"pi_1","customer":"cus_1","amount":2000,"currency":"usd"}),
            None,
        ),
        event(
            "evt_05",
            "invoice.payment_failed",
            T0 + 31 * DAY,
            invoice_obj("in_1", "sub_1", 1, Some(T0 + 34 * DAY), false),
            None,
        ),
        event(
            "evt_06",
            "customer.subscription.updated",
            T0 + 31 * DAY + 1,
            sub_obj("sub_1", "past_due", 2000, 1),
            Some(json!({"status":"active"})),
        ),
        event(
            "evt_07",
            "invoice.payment_failed",
            T0 + 34 * DAY,
            invoice_obj("in_1", "sub_1", 2, Some(T0 + 38 * DAY), false),
            None,
        ),
        event(
            "evt_08",
            "invoice.payment_failed",
            T0 + 38 * DAY,
            invoice_obj("in_1", "sub_1", 3, Some(T0 + 45 * DAY), false),
            None,
        ),
        event(
            "evt_09",
            "charge.succeeded",
            T0 + 40 * DAY,
            json!({"id":"ch_2","customer":"cus_1","amount":2000,"currency":"usd"}),
            None,
        ),
        event(
            "evt_10",
            "invoice.paid",
            T0 + 40 * DAY,
            invoice_obj("in_1", "sub_1", 4, None, true),
            None,
        ),
        event(
            "evt_11",
            "invoice.payment_succeeded",
            T0 + 40 * DAY,
            invoice_obj("in_1", "sub_1", 4, None, true),
            None,
        ),
        event(
            "evt_12",
            "customer.subscription.updated",
            T0 + 40 * DAY + 1,
            sub_obj("sub_1", "active", 2000, 1),
            Some(json!({"status":"past_due"})),
        ),
    ]
}

fn apply_all(events: &[BillingEvent]) -> BillingState {
    let mut state = BillingState::default();
    for e in events {
        state.apply(e, &BillingPolicy::default()).unwrap();
    }
    state
}

#[test]
fn a_failed_renewal_opens_a_case_notifies_per_stage_and_recovers() {
    let state = apply_all(&failed_renewal_story());
    let case = &state.cases["in_1"];
    let policy = BillingPolicy::default();
    assert_eq!(case.stage(&policy), Some(Stage::Recovered));
    assert_eq!(case.attempt_count, 3);
    assert_eq!(case.opened_at, Some(T0 + 31 * DAY));
    assert_eq!(case.time_to_recover_secs(), Some(9 * DAY));
    assert_eq!(case.recovered().unwrap().amount, 2000);

    let stages: Vec<_> = state
        .notifications
        .iter()
        .filter(|n| n.kind == "dunning")
        .map(|n| n.stage.clone().unwrap())
        .collect();
    assert_eq!(
        stages,
        ["notice", "final_warning", "recovered"],
        "one notification per stage change"
    );

    // One failed renewal emits three events; the payment failure is counted once.
    assert_eq!(state.counter(false, "payments_failed"), 1);
    assert_eq!(state.counter(false, "payments_failed_amount.usd"), 2000);
    assert_eq!(state.counter(false, "payments_succeeded"), 2);
    assert_eq!(state.counter(false, "dunning_opened"), 1);
    assert_eq!(state.counter(false, "dunning_recovered"), 1);
    assert_eq!(state.counter(false, "dunning_recovered_amount.usd"), 2000);
    assert_eq!(state.counter(false, "dunning_lost"), 0);
    assert_eq!(state.counter(false, "subscriptions_new"), 1);
    assert_eq!(state.counter(false, "mrr_gained.usd"), 2000);
    assert_eq!(state.counter(false, "events"), 12);
    // Counters sit in the hour of the event's creation.
    assert_eq!(
        state.counters.get(&(
            false,
            hour_of(T0 + 31 * DAY),
            revguard_core::domain::metric::Metric::DunningOpened
        )),
        Some(&1)
    );
    assert_eq!(state.subscriptions["sub_1"].status, "active");
}

#[test]
fn access_follows_status_and_grace() {
    let policy = BillingPolicy::default();
    let events = failed_renewal_story();
    let state = apply_all(&events[..6]); // past due after the first failure
    let subs: Vec<_> = state.subscriptions.values().cloned().collect();
    let cases: Vec<_> = state.cases.values().cloned().collect();
    let at = |now| access(None, &subs, &cases, now, &policy);
    assert_eq!(at(T0 + 32 * DAY).verdict, Verdict::Grace);
    assert_eq!(at(T0 + 32 * DAY).grace_until, Some(T0 + 38 * DAY));
    assert_eq!(at(T0 + 39 * DAY).verdict, Verdict::Revoked);

    let state = apply_all(&events);
    let subs: Vec<_> = state.subscriptions.values().cloned().collect();
    assert_eq!(
        access(None, &subs, &[], T0 + 41 * DAY, &policy).verdict,
        Verdict::Granted
    );
    assert_eq!(
        access(None, &[], &[], T0, &policy).verdict,
        Verdict::Revoked
    );
}

#[test]
fn no_retry_left_is_lost_and_revokes() {
    let events = vec![
        event(
            "evt_a",
            "customer.subscription.created",
            T0,
            sub_obj("sub_1", "active", 2000, 1),
            None,
        ),
        event(
            "evt_b",
            "invoice.payment_failed",
            T0 + DAY,
            invoice_obj("in_9", "sub_1", 4, None, false),
            None,
        ),
        event(
            "evt_c",
            "customer.subscription.updated",
            T0 + DAY + 1,
            sub_obj("sub_1", "past_due", 2000, 1),
            Some(json!({"status":"active"})),
        ),
    ];
    let state = apply_all(&events);
    let policy = BillingPolicy::default();
    assert_eq!(state.cases["in_9"].stage(&policy), Some(Stage::Lost));
    assert_eq!(state.counter(false, "dunning_lost"), 1);
    let subs: Vec<_> = state.subscriptions.values().cloned().collect();
    let cases: Vec<_> = state.cases.values().cloned().collect();
    assert_eq!(
        access(None, &subs, &cases, T0 + 2 * DAY, &policy).verdict,
        Verdict::Revoked
    );
}

#[test]
fn action_required_is_its_own_stage_and_uncollectible_is_lost() {
    let events = vec![
        event(
            "evt_a",
            "invoice.payment_action_required",
            T0,
            invoice_obj("in_2", "sub_2", 1, Some(T0 + DAY), false),
            None,
        ),
        event(
            "evt_b",
            "invoice.marked_uncollectible",
            T0 + 9 * DAY,
            invoice_obj("in_2", "sub_2", 1, None, false),
            None,
        ),
    ];
    let policy = BillingPolicy::default();
    let state = apply_all(&events[..1]);
    assert_eq!(
        state.cases["in_2"].stage(&policy),
        Some(Stage::ActionRequired)
    );
    let state = apply_all(&events);
    assert_eq!(state.cases["in_2"].stage(&policy), Some(Stage::Lost));
    let stages: Vec<_> = state
        .notifications
        .iter()
        .filter_map(|n| n.stage.clone())
        .collect();
    assert_eq!(stages, ["action_required", "lost"]);
}

#[test]
fn mrr_moves_with_quantity_and_cancellation() {
    let events = vec![
        event(
            "evt_a",
            "customer.subscription.created",
            T0,
            sub_obj("sub_1", "active", 2000, 1),
            None,
        ),
        event(
            "evt_b",
            "customer.subscription.updated",
            T0 + DAY,
            sub_obj("sub_1", "active", 2000, 3),
            Some(json!({ "items": sub_obj("sub_1", "active", 2000, 1)["items"] })),
        ),
        event(
            "evt_c",
            "customer.subscription.deleted",
            T0 + 2 * DAY,
            sub_obj("sub_1", "canceled", 2000, 3),
            None,
        ),
    ];
    let state = apply_all(&events);
    assert_eq!(state.counter(false, "mrr_gained.usd"), 2000 + 4000);
    assert_eq!(state.counter(false, "mrr_lost.usd"), 6000);
    assert_eq!(state.counter(false, "subscriptions_canceled"), 1);
    assert!(state.subscriptions["sub_1"].deleted);
    assert_eq!(state.subscriptions["sub_1"].contributing_mrr(), 0);
}

#[test]
fn a_deleted_subscription_stays_deleted_and_older_snapshots_do_not_overwrite() {
    let created = event(
        "evt_a",
        "customer.subscription.created",
        T0,
        sub_obj("sub_1", "active", 2000, 1),
        None,
    );
    let updated = event(
        "evt_b",
        "customer.subscription.updated",
        T0 + 10,
        sub_obj("sub_1", "past_due", 2000, 1),
        Some(json!({"status":"active"})),
    );
    let deleted = event(
        "evt_c",
        "customer.subscription.deleted",
        T0 + 5,
        sub_obj("sub_1", "canceled", 2000, 1),
        None,
    );
    let state = apply_all(&[deleted.clone(), updated.clone(), created.clone()]);
    assert!(
        state.subscriptions["sub_1"].deleted,
        "deletion is final even before a newer update"
    );
    let state = apply_all(&[updated, created]);
    assert_eq!(
        state.subscriptions["sub_1"].status, "past_due",
        "the older created does not overwrite"
    );
    assert_eq!(state.counter(false, "events"), 2, "but it is counted");
}

#[test]
fn older_api_shapes_and_fixture_payloads_apply() {
    let mut state = BillingState::default();
    let files = revguard_testkit::fixtures::all();
    for (name, raw) in &files {
        let e = BillingEvent::parse(raw.as_bytes(), 1_767_225_700)
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        // Give each file its own id (several share one in the fixtures' story).
        let mut e = e;
        e.id = name.clone();
        state
            .apply(&e, &BillingPolicy::default())
            .unwrap_or_else(|err| panic!("{name}: {err}"));
    }
    let case = &state.cases["in_RG1001"];
    assert_eq!(
        case.subscription.as_deref(),
        Some("sub_RG1001"),
        "found in the newer and the older shape"
    );
    assert_eq!(state.counter(false, "events"), files.len() as i64);
    assert_eq!(state.counter(false, "disputes"), 1);
    assert_eq!(state.counter(false, "refunds"), 1);
    assert!(state
        .notifications
        .iter()
        .any(|n| n.kind == "checkout_completed"));
    assert!(state.notifications.iter().any(|n| n.kind == "dispute"));
}

#[test]
fn notifications_show_money_for_people_and_keep_minor_units() {
    let charge = |id: &str, amount: i64, currency: &str| {
        event(
            id,
            "charge.succeeded",
            T0,
            json!({ "id": format!("ch_{id}"), "object": "charge", "customer": "cus_m",
            "amount": amount, "currency": currency, "status": "succeeded" }),
            None,
        )
    };
    let state = apply_all(&[
        charge("evt_usd", 6_526_000, "usd"),
        charge("evt_jpy", 5_000_000, "jpy"),
    ]);
    let large: Vec<_> = state
        .notifications
        .iter()
        .filter(|n| n.kind == "large_payment")
        .collect();
    assert_eq!(large.len(), 2);
    assert_eq!(large[0].subject, "A large payment succeeded: $65,260.00");
    assert_eq!(
        large[0].details["amount"], 6_526_000,
        "machines keep minor units"
    );
    assert_eq!(large[0].details["amount_display"], "$65,260.00");
    assert_eq!(
        large[1].subject, "A large payment succeeded: ¥5,000,000",
        "JPY has no minor unit"
    );
}

#[test]
fn unknown_types_are_counted_and_acknowledged() {
    let e = event("evt_u", "product.created", T0, json!({"id":"prod_1"}), None);
    let state = apply_all(&[e]);
    assert_eq!(state.counter(false, "events.type.product.created"), 1);
    assert!(state.applied.contains("evt_u"));
}

#[test]
fn a_malformed_object_is_an_error_not_a_panic() {
    let e = event(
        "evt_m",
        "customer.subscription.updated",
        T0,
        json!({"status": 5}),
        None,
    );
    assert!(BillingState::default()
        .apply(&e, &BillingPolicy::default())
        .is_err());
}

fn comparable(s: &BillingState) -> impl PartialEq + std::fmt::Debug + '_ {
    (
        &s.subscriptions,
        &s.cases,
        &s.customers,
        &s.counters,
        &s.applied,
    )
}

fn big_history() -> Vec<BillingEvent> {
    let mut events = failed_renewal_story();
    events.extend([
        event("evt_20", "customer.subscription.created", T0 + 100, sub_obj("sub_2", "trialing", 5000, 2), None),
        event("evt_21", "customer.subscription.updated", T0 + 14 * DAY, sub_obj("sub_2", "active", 5000, 2), Some(json!({"status":"trialing"}))),
        event("evt_22", "invoice.payment_failed", T0 + 44 * DAY, invoice_obj("in_2", "sub_2", 1, None, false), None),
        event("evt_23", "invoice.marked_uncollectible", T0 + 45 * DAY, invoice_obj("in_2", "sub_2", 1, None, false), None),
        event("evt_24", "customer.subscription.deleted", T0 + 45 * DAY + 5, sub_obj("sub_2", "canceled", 5000, 2), Some(json!({"status":"past_due"}))),
        event("evt_25", "charge.refunded", T0 + 3 * DAY, json!({"id":"ch_0","customer":"cus_1","amount":2000,"amount_refunded":500,"currency":"usd"}), None),
        event("evt_26", "charge.dispute.created", T0 + 5 * DAY, json!({"id":"dp_1","charge":"ch_0","amount":1500,"currency":"usd","status":"needs_response"}), None),
        event("evt_27", "charge.dispute.closed", T0 + 20 * DAY, json!({"id":"dp_1","charge":"ch_0","amount":1500,"currency":"usd","status":"won"}), None),
        event("evt_28", "customer.updated", T0 + 6 * DAY, json!({"id":"cus_1","invoice_settings":{"default_payment_method":"pm_1"}}), None),
        event("evt_29", "customer.updated", T0 + 7 * DAY, json!({"id":"cus_1","invoice_settings":{"default_payment_method":"pm_2"}}), None),
        event("evt_30", "payment_method.attached", T0 + 7 * DAY, json!({"id":"pm_2","customer":"cus_1","card":{"exp_month":3,"exp_year":2026}}), None),
    ]);
    events
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_delivery_order_ends_in_the_same_state_and_counters(order in Just((0..23usize).collect::<Vec<_>>()).prop_shuffle()) {
        let history = big_history();
        prop_assert_eq!(history.len(), 23);
        let in_order = apply_all(&history);
        let shuffled: Vec<_> = order.iter().map(|i| history[*i].clone()).collect();
        let state = apply_all(&shuffled);
        // The charge→customer link a dispute needs may arrive after the dispute; the
        // dispute is counted either way, the customer flag only once the link is known.
        let mut a = in_order.clone();
        let mut b = state.clone();
        for s in [&mut a, &mut b] {
            for c in s.customers.values_mut() { c.disputes.clear(); }
            s.customers.retain(|_, c| c.default_payment_method.is_some() || !c.cards.is_empty() || c.deleted);
        }
        prop_assert_eq!(comparable(&a), comparable(&b));
    }

    #[test]
    fn every_event_delivered_twice_counts_once(order in Just((0..23usize).collect::<Vec<_>>()).prop_shuffle()) {
        let history = big_history();
        let once = apply_all(&history);
        let twice: Vec<_> = order.iter().flat_map(|i| [history[*i].clone(), history[*i].clone()]).collect();
        let mut state = apply_all(&twice);
        let mut once_cmp = once.clone();
        for s in [&mut state, &mut once_cmp] {
            for c in s.customers.values_mut() { c.disputes.clear(); }
            s.customers.retain(|_, c| c.default_payment_method.is_some() || !c.cards.is_empty() || c.deleted);
        }
        prop_assert_eq!(comparable(&state), comparable(&once_cmp));
    }
}

/// Event-level findings of a history: the probe's three equal charges (t1, t1 + 120 s,
/// t1 + 1 day), a fourth equal charge 60 s after the first, a large refund and a fraud
/// warning whose charge's own event may come before or after it.
fn findings_history() -> Vec<BillingEvent> {
    let charge = |id: &str, ch: &str, created: i64| {
        event(
            id,
            "charge.succeeded",
            created,
            json!({ "id": ch, "object": "charge", "customer": "cus_dup", "amount": 4900, "currency": "usd", "status": "succeeded" }),
            None,
        )
    };
    let t1 = T0 + 5 * DAY;
    vec![
        charge("evt_c1", "ch_1", t1),
        charge("evt_c2", "ch_2", t1 + 120),
        charge("evt_c3", "ch_3", t1 + DAY),
        charge("evt_c4", "ch_4", t1 + 60),
        event(
            "evt_refund",
            "charge.refunded",
            t1 + 300,
            json!({ "id": "ch_2", "object": "charge", "customer": "cus_dup", "amount": 90_000, "amount_refunded": 90_000, "currency": "usd" }),
            Some(json!({ "amount_refunded": 0 })),
        ),
        event(
            "evt_efw",
            "radar.early_fraud_warning.created",
            t1 + 400,
            json!({ "id": "issfr_1", "object": "radar.early_fraud_warning", "charge": "ch_3", "fraud_type": "made_with_stolen_card" }),
            None,
        ),
    ]
}

fn findings_of(events: &[BillingEvent]) -> Vec<revguard_core::domain::finding::Finding> {
    let policy = BillingPolicy::default();
    let mut state = BillingState::default();
    let mut found = Vec::new();
    for e in events {
        if state.applied.contains(&e.id) {
            continue;
        }
        let effects =
            revguard_core::domain::billing::decide(e, &state.current(e), &policy).unwrap();
        found.extend(effects.findings.iter().cloned());
        state.commit(&e.id, effects);
    }
    found.sort_by(|a, b| a.key.cmp(&b.key));
    found
}

#[test]
fn the_probe_finds_each_duplicate_pair_once() {
    let found = findings_of(&findings_history());
    let keys: Vec<&str> = found.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "duplicate_charge:ch_1+ch_2",
            "duplicate_charge:ch_1+ch_4",
            "duplicate_charge:ch_2+ch_4",
            "early_fraud_warning:issfr_1",
            "large_refund:ch_2",
        ]
    );
    let large = found.iter().find(|f| f.signal == "large_refund").unwrap();
    assert!(
        large.explanation.contains("$900.00"),
        "{}",
        large.explanation
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Every event-level finding, with its numbers and text, is the same in any delivery
    /// order (the probe's orders 3-1-2 and 3-2-1 among them), and with every event twice.
    #[test]
    fn event_level_findings_do_not_depend_on_delivery_order(
        order in Just((0..6usize).collect::<Vec<_>>()).prop_shuffle(),
        twice in any::<bool>(),
    ) {
        let history = findings_history();
        let reference = findings_of(&history);
        let mut shuffled: Vec<_> = order.iter().map(|i| history[*i].clone()).collect();
        if twice {
            shuffled.extend(order.iter().rev().map(|i| history[*i].clone()));
        }
        prop_assert_eq!(findings_of(&shuffled), reference);
    }
}

/// The dunning notifications of a delivery order: (stage, draft reason, draft subject, body).
fn drafts_of(state: &BillingState) -> Vec<(String, String, String, String)> {
    state
        .notifications
        .iter()
        .filter(|n| n.kind == "dunning")
        .map(|n| {
            let d = &n.details["customer_draft"];
            (
                n.stage.clone().unwrap(),
                d["reason"].as_str().unwrap().to_owned(),
                d["subject"].as_str().unwrap().to_owned(),
                d["body"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn each_dunning_notification_carries_a_draft_for_its_reason_and_the_pay_link() {
    let state = apply_all(&failed_renewal_story());
    let drafts = drafts_of(&state);
    let stages: Vec<&str> = drafts.iter().map(|d| d.0.as_str()).collect();
    assert_eq!(stages, ["notice", "final_warning", "recovered"]);
    let (_, reason, subject, body) = &drafts[0];
    assert_eq!(reason, "insufficient_funds");
    assert_eq!(subject, "Your payment of $20.00 didn't go through");
    assert!(
        body.contains("insufficient funds")
            && body.contains("https://invoice.stripe.com/i/acct_1/in_1"),
        "{body}"
    );
    assert!(body.contains("2026-02-04"), "the next retry's date: {body}");
    let (_, _, subject, body) = &drafts[1];
    assert!(subject.starts_with("Action needed"), "{subject}");
    assert!(body.contains("tried 3 times"), "{body}");
    assert!(drafts[2].2.starts_with("Thank you"));
    let n = &state
        .notifications
        .iter()
        .find(|n| n.kind == "dunning")
        .unwrap()
        .details;
    assert_eq!(
        n["hosted_invoice_url"],
        "https://invoice.stripe.com/i/acct_1/in_1"
    );
}

fn churn_story() -> Vec<BillingEvent> {
    // Canceled at period end: Stripe deletes it when the period ends.
    let mut deleted = sub_obj("sub_9", "canceled", 4900, 1);
    deleted["customer"] = json!("cus_9");
    deleted["created"] = json!(T0);
    deleted["cancel_at_period_end"] = json!(true);
    deleted["canceled_at"] = json!(T0 + 10 * DAY);
    deleted["ended_at"] = json!(T0 + 31 * DAY);
    deleted["cancellation_details"] = json!({ "reason": "cancellation_requested", "feedback": "too_expensive", "comment": "Budget cuts" });
    let mut created = sub_obj("sub_9", "active", 4900, 1);
    created["customer"] = json!("cus_9");
    let mut updated = created.clone();
    updated["cancel_at_period_end"] = json!(true);
    vec![
        event("evt_c1", "customer.subscription.created", T0, created, None),
        event(
            "evt_c2",
            "customer.subscription.updated",
            T0 + 10 * DAY,
            updated,
            Some(json!({"cancel_at_period_end": false})),
        ),
        event(
            "evt_c3",
            "customer.subscription.deleted",
            T0 + 31 * DAY,
            deleted,
            Some(json!({"status": "active"})),
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    #[test]
    fn dunning_drafts_are_worded_for_what_was_known_in_any_order(order in Just((0..12usize).collect::<Vec<_>>()).prop_shuffle()) {
        let story = failed_renewal_story();
        let shuffled: Vec<_> = order.iter().map(|i| story[*i].clone()).collect();
        let state = apply_all(&shuffled);
        let drafts = drafts_of(&state);
        prop_assert!(!drafts.is_empty());
        let mut stages: Vec<&str> = drafts.iter().map(|d| d.0.as_str()).collect();
        stages.dedup();
        prop_assert_eq!(stages.len(), drafts.len(), "one notification per stage: {:?}", drafts);
        // The notice is worded for the decline when the failed charge came before the
        // failure that opened the case and that failure is the charge's own (the first
        // attempt; the later ones carry no decline of their own in this story).
        let pos = |e: usize| order.iter().position(|i| *i == e).unwrap();
        let opener = [4, 6, 7].into_iter().min_by_key(|e| pos(*e)).unwrap();
        let charge_first = opener == 4 && pos(2) < pos(4);
        for (stage, reason, subject, body) in &drafts {
            prop_assert!(!subject.is_empty() && !body.contains('{'), "{}: {}", stage, body);
            if stage != "recovered" {
                prop_assert!(body.contains("https://invoice.stripe.com/i/acct_1/in_1"), "{}", body);
            }
            if stage == "notice" {
                let want = if charge_first { "insufficient_funds" } else { "generic" };
                prop_assert_eq!(reason.as_str(), want);
            }
        }
        prop_assert_eq!(state.customers["cus_1"].last_decline.clone(), Some((T0 + 31 * DAY, "insufficient_funds".to_owned())));
    }

    #[test]
    fn a_cancellation_is_announced_once_with_its_numbers_in_any_order(order in Just((0..3usize).collect::<Vec<_>>()).prop_shuffle(), twice in any::<bool>()) {
        let story = churn_story();
        let shuffled: Vec<_> = order.iter().flat_map(|i| vec![story[*i].clone(); if twice { 2 } else { 1 }]).collect();
        let state = apply_all(&shuffled);
        let churn: Vec<_> = state.notifications.iter().filter(|n| n.kind == "churn").collect();
        prop_assert_eq!(churn.len(), 1, "{:?}", churn);
        let n = churn[0];
        prop_assert_eq!(n.customer.as_deref(), Some("cus_9"));
        prop_assert_eq!(&n.subject, "A customer canceled (too expensive): $49.00");
        prop_assert_eq!(&n.details["mrr_lost"], &json!(4900));
        prop_assert_eq!(&n.details["tenure_days"], &json!(31));
        prop_assert_eq!(&n.details["cancellation_comment"], &json!("Budget cuts"));
        prop_assert_eq!(&n.details["cancellation_reason"], &json!("cancellation_requested"));

        // Canceled at period end: access runs until the period paid for ends, then stops.
        let subs: Vec<_> = state.subscriptions.values().cloned().collect();
        let policy = BillingPolicy::default();
        let during = access(None, &subs, &[], T0 + 20 * DAY, &policy);
        prop_assert_eq!(during.verdict, Verdict::Granted);
        prop_assert_eq!(during.until, Some(T0 + 31 * DAY));
        prop_assert_eq!(access(None, &subs, &[], T0 + 32 * DAY, &policy).verdict, Verdict::Revoked);
    }

    #[test]
    fn a_paid_invoice_grants_access_until_its_period_ends_in_any_order(order in Just((0..12usize).collect::<Vec<_>>()).prop_shuffle()) {
        let story = failed_renewal_story();
        let shuffled: Vec<_> = order.iter().map(|i| story[*i].clone()).collect();
        let state = apply_all(&shuffled);
        let cases: Vec<_> = state.cases.values().cloned().collect();
        let policy = BillingPolicy::default();
        // The subscription's own state aside (say its events were never enabled), the
        // paid invoice grants access until the end of the period it paid for.
        let paid = access(None, &[], &cases, T0 + 50 * DAY, &policy);
        prop_assert_eq!(paid.verdict, Verdict::Granted);
        prop_assert_eq!(paid.until, Some(T0 + 62 * DAY));
        prop_assert_eq!(access(None, &[], &cases, T0 + 63 * DAY, &policy).verdict, Verdict::Revoked);
        // With the subscription active, the verdict says until when it is paid.
        let subs: Vec<_> = state.subscriptions.values().cloned().collect();
        prop_assert_eq!(access(None, &subs, &cases, T0 + 50 * DAY, &policy).until, Some(T0 + 62 * DAY));
    }
}

#[test]
fn an_immediate_cancellation_ends_access_though_the_period_was_paid() {
    let policy = BillingPolicy::default();
    let story = |cancel_at_period_end: bool| {
        let mut deleted = sub_obj("sub_1", "canceled", 2000, 1);
        deleted["cancel_at_period_end"] = json!(cancel_at_period_end);
        apply_all(&[
            event(
                "evt_i1",
                "customer.subscription.created",
                T0,
                sub_obj("sub_1", "active", 2000, 1),
                None,
            ),
            event(
                "evt_i2",
                "invoice.paid",
                T0 + 31 * DAY,
                invoice_obj("in_1", "sub_1", 1, None, true),
                None,
            ),
            event(
                "evt_i3",
                "customer.subscription.deleted",
                T0 + 40 * DAY,
                deleted,
                Some(json!({"status": "active"})),
            ),
        ])
    };
    let at = |state: &BillingState| {
        let subs: Vec<_> = state.subscriptions.values().cloned().collect();
        let cases: Vec<_> = state.cases.values().cloned().collect();
        access(None, &subs, &cases, T0 + 41 * DAY, &policy)
    };
    assert_eq!(
        at(&story(false)).verdict,
        Verdict::Revoked,
        "canceled at once"
    );
    let ending = at(&story(true));
    assert_eq!(
        (ending.verdict, ending.until),
        (Verdict::Granted, Some(T0 + 62 * DAY)),
        "canceled at period end"
    );
}

#[test]
fn events_about_a_charge_name_it_for_their_marker_and_others_do_not() {
    use revguard_core::domain::billing::{marker_charge, marker_charge_of_payload, EventKind};
    for (file, event_type) in [
        ("charge.succeeded.json", "charge.succeeded"),
        ("charge.refunded.json", "charge.refunded"),
    ] {
        let raw = revguard_testkit::fixtures::read(file);
        let v: Value = serde_json::from_str(&raw).unwrap();
        let id = v["data"]["object"]["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("ch_"), "{file}: {id}");
        assert_eq!(
            marker_charge_of_payload(event_type, raw.as_bytes()),
            Some(id.clone())
        );
        assert_eq!(
            marker_charge(EventKind::of(event_type), &v["data"]["object"]),
            Some(id)
        );
    }
    // A dispute names a charge, but its own object is the dispute: a marker of its own.
    let dispute = revguard_testkit::fixtures::read("charge.dispute.created.json");
    assert_eq!(
        marker_charge_of_payload("charge.dispute.created", dispute.as_bytes()),
        None
    );
    let paid = revguard_testkit::fixtures::read("invoice.paid.json");
    assert_eq!(
        marker_charge_of_payload("invoice.paid", paid.as_bytes()),
        None
    );
    assert_eq!(
        marker_charge_of_payload("charge.succeeded", b"not json"),
        None
    );
    assert_eq!(
        marker_charge(EventKind::ChargeSucceeded, &json!({ "id": "" })),
        None
    );
}

#[test]
fn an_eventbridge_delivery_counts_as_delivered_and_a_second_door_adds_nothing() {
    use revguard_core::domain::message::Via;
    let mut by_bus = event(
        "evt_door",
        "product.created",
        T0,
        json!({"id":"prod_1"}),
        None,
    );
    by_bus.via = Via::EventBridge;
    by_bus.received_at = T0 + 30;
    let mut by_webhook = by_bus.clone();
    by_webhook.via = Via::Webhook;
    by_webhook.received_at = T0 + 90;
    let mut backfilled = event(
        "evt_old",
        "product.created",
        T0,
        json!({"id":"prod_2"}),
        None,
    );
    backfilled.via = Via::Backfill;
    let state = apply_all(&[by_bus, by_webhook, backfilled]);
    assert_eq!(state.counter(false, "events"), 2);
    // Received once, through the door that came first, with its lag: the backfilled
    // event is no delivery.
    assert_eq!(state.counter(false, "events_received"), 1);
    assert_eq!(state.counter(false, "lag_sum_secs"), 30);
}
