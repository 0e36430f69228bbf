//! The billing digest on a schedule, embedded: after each UTC day (and each week, from
//! Monday), the last complete period's digest per mode with anything to say goes to the
//! digests file, to chat and to finance's email. Each is sent once: the store remembers
//! it, and its deliveries are owed once by id.

use std::time::Duration;

use revguard_core::billing::BillingPolicy;
use revguard_core::digest::{digest, Period};
use revguard_core::ports::{PublishError, Publisher};
use revguard_sqlite::SqliteStore;

use crate::chat::DeliveryOutbox;
use crate::publish::JsonlPublisher;

#[derive(Clone)]
pub struct DigestSchedule {
    pub periods: Vec<Period>,
    pub file: JsonlPublisher,
    pub deliveries: Option<DeliveryOutbox>,
    pub policy: BillingPolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error(transparent)]
    Store(#[from] revguard_core::StoreError),
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// Sends the digests due at `now` that were not sent yet; returns their ids.
pub async fn send_due(
    store: &SqliteStore,
    schedule: &DigestSchedule,
    now: i64,
) -> Result<Vec<String>, DigestError> {
    let mut sent = Vec::new();
    for period in &schedule.periods {
        for livemode in [true, false] {
            let d = digest(store, store, &schedule.policy, *period, now, livemode).await?;
            let key = format!("sent:{}", d.id);
            if d.is_quiet() || store.setting(&key).await?.is_some() {
                continue;
            }
            // Owed first, then the file, then remembered: a crash in between owes nothing
            // twice (deliveries are owed once by id) and at worst writes a line again.
            if let Some(outbox) = &schedule.deliveries {
                outbox.owe_digest(&d).await?;
            }
            schedule.file.publish(&d).await?;
            store.put_setting(&key, &now.to_string()).await?;
            sent.push(d.id);
        }
    }
    Ok(sent)
}

/// Checks every ten minutes for a digest due.
pub async fn every_ten_minutes(store: SqliteStore, schedule: DigestSchedule) {
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    loop {
        tick.tick().await;
        match send_due(&store, &schedule, crate::unix_now()).await {
            Ok(sent) if !sent.is_empty() => tracing::info!(digests = ?sent, "digests sent"),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %revguard_core::error_chain(&e), "the digest could not be made; tried again in ten minutes")
            }
        }
    }
}
