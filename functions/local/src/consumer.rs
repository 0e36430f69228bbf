//! The embedded consumer: takes batches from the SQLite queue and hands them to the
//! worker use case in core (one SQLite transaction per batch), then settles each message
//! as the consume rule said: done, dead-lettered, or delayed for a retry.

use std::time::Duration;

use revguard_core::billing::BillingPolicy;
use revguard_core::ports::Pause;
use revguard_core::worker::{ConsumeRules, Consumed, Worker};
use revguard_sqlite::SqliteStore;

use crate::publish::JsonlPublisher;

/// Messages per batch: one commit each.
pub const BATCH: usize = 256;

pub struct TokioPause;

impl Pause for TokioPause {
    async fn pause(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

pub type EmbeddedWorker = Worker<SqliteStore, SqliteStore, JsonlPublisher, SqliteStore, TokioPause>;

pub fn worker(
    store: &SqliteStore,
    policy: BillingPolicy,
    notifier: JsonlPublisher,
) -> EmbeddedWorker {
    Worker {
        log: store.clone(),
        billing: store.clone(),
        notifier,
        dead_letters: store.clone(),
        pause: TokioPause,
        policy,
        rules: ConsumeRules::default(),
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
                let delay = worker.rules.redelivery.delay(
                    message.receive_count,
                    revguard_core::retry::seed_of(&message.id),
                );
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
        match run_once(&store, &worker, crate::unix_now()).await {
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

/// A tiny stop flag usable from several tasks.
#[derive(Clone, Default)]
pub struct StopSignal {
    stopped: std::sync::Arc<std::sync::atomic::AtomicBool>,
    notify: std::sync::Arc<tokio::sync::Notify>,
}

impl StopSignal {
    pub fn stop(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub async fn wait(&self) {
        let notified = self.notify.notified();
        if self.is_stopped() {
            return;
        }
        notified.await;
    }
}

pub type EmbeddedDetector = revguard_core::detector::Detector<
    revguard_sqlite::billing::SqliteCounters,
    SqliteStore,
    JsonlPublisher,
>;

pub fn detector(
    store: &SqliteStore,
    config: revguard_core::detect::DetectConfig,
    sink: JsonlPublisher,
) -> EmbeddedDetector {
    revguard_core::detector::Detector {
        counters: revguard_sqlite::billing::SqliteCounters {
            store: store.clone(),
            received_before: None,
        },
        alerts: store.clone(),
        publisher: sink,
        config,
    }
}
