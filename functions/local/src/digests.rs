//! The billing digest on a schedule, embedded: after each UTC day (and each week, from
//! Monday), the last complete period's digest per mode with anything to say goes to the
//! digests file, to chat and to finance's email, once (`revguard_core::usecases::digest::send_due`,
//! the store remembering what went out; deliveries are owed once by id).

use std::time::Duration;

use revguard_core::domain::billing::BillingPolicy;
use revguard_core::ports::{PublishError, Publisher};
use revguard_core::usecases::digest::{Digest, DigestError, Period};
use revguard_sqlite::SqliteStore;

use crate::chat::DeliveryOutbox;
use crate::publish::JsonlPublisher;

/// Where an embedded digest goes: the deliveries owed (chat, email), then the file.
#[derive(Clone)]
pub struct DigestPublisher {
    pub file: JsonlPublisher,
    pub deliveries: Option<DeliveryOutbox>,
}

impl Publisher<Digest> for DigestPublisher {
    async fn publish(&self, d: &Digest) -> Result<(), PublishError> {
        if let Some(outbox) = &self.deliveries {
            outbox.owe_digest(d).await?;
        }
        self.file.publish(d).await
    }
}

#[derive(Clone)]
pub struct DigestSchedule {
    pub periods: Vec<Period>,
    pub publisher: DigestPublisher,
    pub policy: BillingPolicy,
}

/// Sends the digests due at `now` that were not sent yet; returns their ids.
pub async fn send_due(
    store: &SqliteStore,
    schedule: &DigestSchedule,
    now: i64,
) -> Result<Vec<String>, DigestError> {
    revguard_core::usecases::digest::send_due(
        store,
        store,
        &schedule.publisher,
        store,
        &schedule.policy,
        &schedule.periods,
        now,
    )
    .await
}

/// Checks every ten minutes for a digest due.
pub async fn every_ten_minutes(store: SqliteStore, schedule: DigestSchedule) {
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    loop {
        tick.tick().await;
        match send_due(&store, &schedule, revguard_core::domain::time::unix_now()).await {
            Ok(sent) if !sent.is_empty() => tracing::info!(digests = ?sent, "digests sent"),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %revguard_core::error_chain(&e), "the digest could not be made; tried again in ten minutes")
            }
        }
    }
}
