//! The embedded consumer: takes batches from the SQLite queue and hands them to the
//! worker use case in core (one SQLite transaction per batch), then settles each message
//! as the consume rule said: done, dead-lettered, or delayed for a retry.

use crate::stop::StopSignal;
use std::time::Duration;

use revguard_core::domain::billing::BillingPolicy;
use revguard_core::ports::TokioPause;
use revguard_core::usecases::apply_batch::{BatchApplier, ConsumeRules, Consumed};
use revguard_sqlite::SqliteStore;

/// Messages per batch: one commit each. 128 keeps up with the renewal mix at 7k/s on
/// one core; 256 held twice the parsed payloads at once (+4 MB of peak memory), 64 fell
/// behind the webhooks.
pub const BATCH: usize = 128;

pub type EmbeddedWorker = BatchApplier<
    SqliteStore,
    SqliteStore,
    crate::chat::NotificationPublisher,
    SqliteStore,
    TokioPause,
    EmbeddedRequery,
>;

/// Re-query after important transitions (`serve --requery` with a Stripe key); `None`:
/// off.
pub type EmbeddedRequery = Option<
    Box<
        revguard_core::usecases::recovery::StripeRequery<
            revguard_stripe::StripeClient,
            SqliteStore,
            SqliteStore,
        >,
    >,
>;

pub fn worker(
    store: &SqliteStore,
    policy: BillingPolicy,
    notifier: impl Into<crate::chat::NotificationPublisher>,
) -> EmbeddedWorker {
    BatchApplier {
        log: store.clone(),
        billing: store.clone(),
        notifier: notifier.into(),
        dead_letters: store.clone(),
        pause: TokioPause,
        policy,
        rules: ConsumeRules::default(),
        requery: None,
    }
}

/// Takes one batch of visible messages and consumes it. Returns how many were taken.
pub async fn run_once(
    store: &SqliteStore,
    worker: &EmbeddedWorker,
    now: i64,
) -> Result<usize, revguard_core::StoreError> {
    let batch = store.take(now, BATCH).await?;
    if batch.is_empty() {
        return Ok(0);
    }
    let outcomes = worker.consume(&batch, now).await;
    let (mut done, mut retry) = (Vec::new(), Vec::new());
    for (message, outcome) in batch.iter().zip(&outcomes) {
        match outcome {
            Consumed::Retry(_) => {
                let delay = worker.rules.redelivery_delay(message);
                retry.push((message.id.clone(), now + delay.as_secs().max(1) as i64));
            }
            // Dead letters left the queue already.
            Consumed::DeadLettered(_) => {}
            Consumed::Applied | Consumed::Duplicate => done.push(message.id.clone()),
        }
    }
    store.settle(done, retry).await?;
    Ok(batch.len())
}

/// Runs until `stop` resolves: wakes on every enqueue, and at least once a second.
pub async fn run(store: SqliteStore, worker: EmbeddedWorker, stop: StopSignal) {
    let signal = store.queue_signal();
    loop {
        if stop.is_stopped() {
            return;
        }
        match run_once(&store, &worker, revguard_core::domain::time::unix_now()).await {
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "worker pass failed"),
        }
        tokio::select! {
            _ = signal.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait() => return,
        }
    }
}

/// Runs the consumer on a thread of its own, with its own single-threaded runtime,
/// until `stop`. Deciding a batch of events is some milliseconds of work without an
/// await: on the server's runtime it held up every webhook that arrived meanwhile. On
/// its own thread the kernel shares the CPU between the two.
pub fn run_on_own_thread(
    store: SqliteStore,
    worker: EmbeddedWorker,
    stop: StopSignal,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("worker".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(run(store, worker, stop)),
                Err(e) => tracing::error!(error = %e, "cannot start the worker's runtime: events are recorded, not applied"),
            }
        })
}

#[cfg(test)]
mod tests {
    use revguard_core::domain::billing::state::BillingState;
    use revguard_core::domain::billing::BillingEvent;
    use revguard_core::ports::Queue;
    use revguard_core::{Payload, QueueMessage};

    use std::collections::BTreeMap;

    use revguard_core::domain::billing::BillingPolicy;
    use revguard_core::domain::metric::CounterTotals;

    use super::*;
    use crate::publish::JsonlPublisher;

    fn history() -> Vec<(String, Vec<u8>)> {
        revguard_testkit::fixtures::each_with_own_id()
            .into_iter()
            .map(|(id, body)| (id, body.into_bytes()))
            .collect()
    }

    const RECEIVED_AT: i64 = 1_767_225_700;

    fn message(id: &str, raw: &[u8]) -> QueueMessage {
        QueueMessage {
            event_id: id.to_owned(),
            event_type: "x".into(),
            livemode: false,
            created: 0,
            // Stamped, as ingress does: without it the receipt time falls back to the
            // second the queue took the message, and two stores filled a second apart
            // would differ in `max_received_at`.
            received_at: RECEIVED_AT,
            payload: Payload::Inline(String::from_utf8(raw.to_vec()).unwrap()),
            via: Default::default(),
        }
    }

    /// The embedded store and the worker over it, as `revguard serve` wires them.
    struct Embedded {
        store: SqliteStore,
        worker: EmbeddedWorker,
    }

    async fn drain(w: &Embedded) {
        while run_once(&w.store, &w.worker, 2_000_000_000).await.unwrap() > 0 {}
    }

    fn worker(dir: &tempfile::TempDir) -> Embedded {
        let store = SqliteStore::open(dir.path().join("w.db")).unwrap();
        let worker = super::worker(
            &store,
            BillingPolicy::default(),
            JsonlPublisher::log_only("notification"),
        );
        Embedded { store, worker }
    }

    /// What the store holds, in the in-memory reference's shape.
    fn totals(store: &SqliteStore) -> CounterTotals {
        store
            .counter_totals(None, None, i64::MIN, i64::MAX, None)
            .unwrap()
    }

    #[tokio::test]
    async fn every_message_twice_applies_once_and_matches_the_reference() {
        let dir = tempfile::tempdir().unwrap();
        let w = worker(&dir);
        let history = history();
        for (id, raw) in history.iter().chain(history.iter()) {
            w.store.send(&message(id, raw)).await.unwrap();
        }
        drain(&w).await;

        let mut reference = BillingState::default();
        for (_, raw) in &history {
            // Receipt time differs (the worker takes it from the queue row); it only
            // affects receipt-time counters, which are compared apart below.
            let e = BillingEvent::parse(raw, 0).unwrap();
            reference.apply(&e, &BillingPolicy::default()).unwrap();
        }
        let ours = totals(&w.store);
        let strip_receipt = |m: &CounterTotals| -> CounterTotals {
            // Receipt-time counters depend on when the queue row was written; compare the rest.
            m.iter()
                .filter(|((_, _, k), _)| {
                    !k.name().starts_with("lag_") && !k.name().contains("received")
                })
                .map(|(k, v)| (k.clone(), *v))
                .collect()
        };
        assert_eq!(strip_receipt(&ours), strip_receipt(&reference.counters));
        assert_eq!(w.store.applied_count().unwrap(), history.len() as u64);
        let received: i64 = ours
            .iter()
            .filter(|((_, _, k), _)| *k == revguard_core::domain::metric::Metric::EventsReceived)
            .map(|(_, v)| v)
            .sum();
        assert_eq!(received, history.len() as i64);
        let sub = w
            .store
            .subscription(&revguard_core::ports::Account::PLATFORM, "sub_RG1001")
            .unwrap()
            .unwrap();
        assert_eq!(sub, reference.subscriptions["sub_RG1001"]);
        let cases = w
            .store
            .dunning_cases(
                &revguard_core::ports::Account::PLATFORM,
                Some("all"),
                &BillingPolicy::default(),
            )
            .unwrap();
        assert_eq!(cases[0].case, reference.cases["in_RG1001"]);
        assert_eq!(w.store.counts().unwrap().queue_depth, 0);
    }

    #[tokio::test]
    async fn a_poison_message_is_isolated_and_its_neighbours_apply() {
        let dir = tempfile::tempdir().unwrap();
        let w = worker(&dir);
        let history = history();
        let (good_a, good_b) = (&history[0], &history[1]);
        w.store.send(&message(&good_a.0, &good_a.1)).await.unwrap();
        // Valid JSON, but not an event; and a subscription event whose object is not one.
        w.store
            .send(&message("evt_poison_1", br#"{"hello":"world"}"#))
            .await
            .unwrap();
        let bad_sub = br#"{"id":"evt_poison_2","type":"customer.subscription.updated","created":1,"livemode":false,"data":{"object":{"status":5}}}"#;
        w.store
            .send(&message("evt_poison_2", bad_sub))
            .await
            .unwrap();
        w.store.send(&message(&good_b.0, &good_b.1)).await.unwrap();
        drain(&w).await;
        let counts = w.store.counts().unwrap();
        assert_eq!(counts.applied, 2);
        assert_eq!(counts.dead_letters, 2);
        assert_eq!(counts.queue_depth, 0);
    }

    #[tokio::test]
    async fn a_retried_batch_after_a_failure_in_its_middle_counts_once() {
        let dir = tempfile::tempdir().unwrap();
        let w = worker(&dir);
        let history = history();
        // First pass: half the history applied, then "the process died".
        for (id, raw) in &history[..history.len() / 2] {
            w.store.send(&message(id, raw)).await.unwrap();
        }
        drain(&w).await;
        let after_half = totals(&w.store);
        // The whole batch comes again (SQS redelivers a failed batch), plus the rest.
        for (id, raw) in &history {
            w.store.send(&message(id, raw)).await.unwrap();
        }
        drain(&w).await;
        let fresh_dir = tempfile::tempdir().unwrap();
        let fresh = worker(&fresh_dir);
        for (id, raw) in &history {
            fresh.store.send(&message(id, raw)).await.unwrap();
        }
        drain(&fresh).await;
        let strip = |m: CounterTotals| -> BTreeMap<String, i64> {
            let mut out = BTreeMap::new();
            for ((_, _, k), v) in m {
                *out.entry(k.name()).or_insert(0) += v;
            }
            out.retain(|k, _| !k.starts_with("lag_"));
            out
        };
        assert_ne!(strip(after_half), strip(totals(&fresh.store)));
        assert_eq!(strip(totals(&w.store)), strip(totals(&fresh.store)));
    }
}
