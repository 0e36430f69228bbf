//! Applying one event in core, no IO: parse the payload, decide the effects against the
//! current state, and fold them into the in-memory state.
//! Run: cargo bench -p revguard-core --bench apply

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use revguard_core::domain::billing::state::BillingState;
use revguard_core::domain::billing::{decide, BillingEvent, BillingPolicy, StateLookup};

fn fixture(name: &str) -> Vec<u8> {
    revguard_testkit::fixtures::read(name).into_bytes()
}

fn apply(c: &mut Criterion) {
    let policy = BillingPolicy::default();
    let mut group = c.benchmark_group("apply");
    for name in [
        "customer.subscription.updated.json",
        "invoice.payment_failed.json",
        "charge.refunded.json",
    ] {
        let raw = fixture(name);
        let event = BillingEvent::parse(&raw, 1_767_225_700).unwrap();
        let mut seeded = BillingState::default();
        for seed in [
            "customer.subscription.created.json",
            "invoice.payment_failed.attempt-2.json",
        ] {
            let mut e = BillingEvent::parse(&fixture(seed), 1_767_225_700).unwrap();
            e.id = format!("seed_{seed}");
            seeded.apply(&e, &policy).unwrap();
        }
        let current = seeded.current(&event);
        group.bench_function(format!("parse/{name}"), |b| {
            b.iter(|| BillingEvent::parse(black_box(&raw), 0).unwrap())
        });
        group.bench_function(format!("decide/{name}"), |b| {
            b.iter(|| decide(black_box(&event), &current, &policy).unwrap())
        });
        group.bench_function(format!("parse_decide_commit/{name}"), |b| {
            b.iter_batched(
                || seeded.clone(),
                |mut state| {
                    let e = BillingEvent::parse(&raw, 1_767_225_700).unwrap();
                    state.apply(&e, &policy).unwrap()
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, apply);
criterion_main!(benches);
