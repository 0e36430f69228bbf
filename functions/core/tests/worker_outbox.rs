//! The worker's notification outbox under overlapping deliveries: an SQS message can be
//! delivered again while the first worker is still publishing its notifications (its
//! visibility ran out, or a batch was retried). The second worker must neither publish
//! them again nor drop them: it leaves the message for later, and later finds it done.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use revguard_core::domain::billing::{BillingPolicy, Notification};
use revguard_core::ports::{self, Inbound, PublishError, Publisher};
use revguard_core::usecases::apply_batch::{BatchApplier, ConsumeRules, Consumed};
use revguard_core::{Payload, QueueMessage};
use revguard_testkit::fixtures;
use revguard_testkit::memory::{
    CountedPause, MemoryBilling, MemoryDeadLetters, MemoryEventLog, MemoryPublisher,
};
use tokio::sync::Notify;

/// Publishes like a [`MemoryPublisher`], but its first call waits until released.
#[derive(Default)]
struct SlowFirstPublish {
    inner: MemoryPublisher<Notification>,
    calls: AtomicUsize,
    entered: Notify,
    release: Notify,
    order: Mutex<Vec<&'static str>>,
}

impl Publisher<Notification> for SlowFirstPublish {
    async fn publish(&self, n: &Notification) -> Result<(), PublishError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            self.order.lock().unwrap().push("first publish started");
            self.entered.notify_one();
            self.release.notified().await;
        }
        self.inner.publish(n).await
    }
}

fn delivery(id: &str, receive_count: u32) -> Inbound {
    let raw = fixtures::read("invoice.payment_failed.json");
    let event: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let created = event["created"].as_i64().unwrap();
    let body = QueueMessage {
        event_id: event["id"].as_str().unwrap().to_owned(),
        event_type: "invoice.payment_failed".into(),
        livemode: event["livemode"].as_bool().unwrap(),
        created,
        received_at: created + 1,
        payload: Payload::Inline(raw),
        via: Default::default(),
    }
    .encode();
    Inbound {
        id: id.into(),
        body,
        receive_count,
        sent_at: Some(created + 1),
    }
}

type TestWorker =
    BatchApplier<MemoryEventLog, MemoryBilling, SlowFirstPublish, MemoryDeadLetters, CountedPause>;

fn worker() -> TestWorker {
    BatchApplier {
        log: MemoryEventLog::default(),
        billing: MemoryBilling::default(),
        notifier: SlowFirstPublish::default(),
        dead_letters: MemoryDeadLetters::default(),
        pause: CountedPause::default(),
        policy: BillingPolicy::default(),
        rules: ConsumeRules::default(),
        requery: revguard_core::usecases::recovery::NoRequery,
    }
}

#[tokio::test]
async fn a_redelivery_while_the_first_worker_publishes_neither_doubles_nor_drops() {
    let worker = worker();
    let now = 1_800_000_000;
    let batch = [delivery("m1", 1)];
    let first = worker.consume(&batch, now);
    let overlapping = async {
        worker.notifier.entered.notified().await;
        let outcome = worker.consume(&[delivery("m1", 2)], now + 5).await;
        worker
            .notifier
            .order
            .lock()
            .unwrap()
            .push("redelivery done");
        worker.notifier.release.notify_one();
        outcome
    };
    let (first, overlapping) = tokio::join!(first, overlapping);
    assert_eq!(first, [Consumed::Applied]);
    assert!(
        matches!(&overlapping[..], [Consumed::Retry(reason)] if reason.contains("another worker")),
        "the redelivery is retried, not counted done: {overlapping:?}"
    );
    assert_eq!(
        *worker.notifier.order.lock().unwrap(),
        ["first publish started", "redelivery done"],
        "the redelivery ran while the first publish was in flight"
    );
    let sent: Vec<String> = worker
        .notifier
        .inner
        .taken()
        .into_iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(sent.len(), 1, "published once: {sent:?}");
    assert!(worker.billing.tables().outbox.is_empty());

    // The retried delivery, later: done, and nothing goes out again.
    let later = worker.consume(&[delivery("m1", 3)], now + 30).await;
    assert_eq!(later, [Consumed::Duplicate]);
    assert!(worker.notifier.inner.taken().is_empty());
}

#[tokio::test]
async fn notifications_a_crashed_worker_committed_go_out_once_its_lease_ends() {
    // A crash between commit and publish: the commit's lease holds the outbox entry; a
    // redelivery within the lease leaves it alone, one after the lease publishes it.
    let worker = worker();
    let now = 1_800_000_000;
    {
        // Every memory port is ready at once, so one poll runs the attempt up to its first
        // publish, which waits for a release that never comes; dropping it is the crash.
        let batch = [delivery("m1", 1)];
        let attempt = std::pin::pin!(worker.consume(&batch, now));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(attempt.poll(&mut cx).is_pending());
    }
    let tables = worker.billing.tables();
    assert_eq!(tables.applied.len(), 1, "the crashed attempt committed");
    assert!(!tables.outbox.is_empty(), "and published nothing");

    let within = worker.consume(&[delivery("m1", 2)], now + 30).await;
    assert!(matches!(&within[..], [Consumed::Retry(_)]), "{within:?}");
    assert!(worker.notifier.inner.taken().is_empty());

    let after = worker
        .consume(&[delivery("m1", 3)], now + ports::OUTBOX_LEASE_SECS + 1)
        .await;
    assert_eq!(after, [Consumed::Duplicate]);
    let sent = worker.notifier.inner.taken();
    assert_eq!(sent.len(), tables.outbox.len(), "{sent:?}");
    assert!(worker.billing.tables().outbox.is_empty());
}

#[tokio::test]
async fn an_outbox_settlement_that_fails_at_first_is_retried_so_a_later_copy_publishes_nothing() {
    // A throttled delete after the publish: retried with backoff, not left for a later
    // copy of the event (one a retried delivery sent) to publish again after the lease.
    let worker = worker();
    worker.notifier.release.notify_one(); // no slow first publish here
    worker
        .billing
        .settle_failures_to_inject
        .store(3, Ordering::SeqCst);
    let now = 1_800_000_000;
    assert_eq!(
        worker.consume(&[delivery("m1", 1)], now).await,
        [Consumed::Applied]
    );
    assert_eq!(worker.notifier.inner.taken().len(), 1);
    assert!(
        worker.billing.tables().outbox.is_empty(),
        "settled on a retry"
    );
    assert_eq!(
        worker.pause.pauses.lock().unwrap().len(),
        3,
        "three backoffs"
    );

    let copy = worker
        .consume(&[delivery("m2", 1)], now + ports::OUTBOX_LEASE_SECS + 1)
        .await;
    assert_eq!(copy, [Consumed::Duplicate]);
    assert!(
        worker.notifier.inner.taken().is_empty(),
        "nothing goes out twice"
    );
}
