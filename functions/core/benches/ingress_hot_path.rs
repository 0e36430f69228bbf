//! The in-process ingress hot path for a ~3 KB event (events/charge.refunded.json,
//! compacted): signature verification, envelope parsing, and both together.
//! Run: cargo bench -p revguard-core --bench ingress_hot_path

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use revguard_core::domain::event::EventEnvelope;
use revguard_core::domain::signature::{sign, verify, SecretSet, WebhookSecret};
use revguard_core::usecases::ingest::{verify_and_parse, IngestConfig};

fn body() -> Vec<u8> {
    revguard_testkit::fixtures::json("charge.refunded.json")
        .to_string()
        .into_bytes()
}

fn hot_path(c: &mut Criterion) {
    let body = body();
    let now = 1_767_225_600;
    let secret = WebhookSecret::new("whsec_bench_secret").unwrap();
    let header = sign(&secret, now, &body);
    let one = SecretSet::single(secret.clone());
    // During a rotation the matching secret may be the second one tried.
    let rotating = SecretSet::parse("whsec_old_secret,whsec_bench_secret").unwrap();
    let config = IngestConfig::new(one.clone());

    let mut group = c.benchmark_group("ingress_hot_path");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function(format!("verify/{}B", body.len()), |b| {
        b.iter(|| verify(Some(black_box(&header)), black_box(&body), &one, now, 300).unwrap())
    });
    group.bench_function(format!("verify_two_secrets/{}B", body.len()), |b| {
        b.iter(|| {
            verify(
                Some(black_box(&header)),
                black_box(&body),
                &rotating,
                now,
                300,
            )
            .unwrap()
        })
    });
    group.bench_function(format!("parse_envelope/{}B", body.len()), |b| {
        b.iter(|| EventEnvelope::parse(black_box(&body)).unwrap())
    });
    group.bench_function(format!("verify_and_parse/{}B", body.len()), |b| {
        b.iter(|| {
            verify_and_parse(&config, Some(black_box(&header)), black_box(&body), now).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
