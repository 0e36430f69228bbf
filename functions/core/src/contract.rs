//! Port contracts as test suites: one behaviour, every backend. Each adapter crate runs
//! these against its own store (SQLite, DynamoDB in moto) so the adapters cannot drift.
//! They panic with a message on the first broken promise.

use crate::message::{compress, decompress, Payload, QueueMessage};
use crate::ports::{EventLog, EventRecord, EventStatus, InsertOutcome, Queue};

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
    }
}

/// The event log's promises. `unique` keeps ids apart when suites share a store.
pub async fn event_log_contract<L: EventLog>(log: &L, unique: &str) {
    let now = 1_700_000_000;
    let id = format!("evt_contract_{unique}");
    let record = sample_record(&id, now);

    assert_eq!(log.insert_if_absent(&record).await.unwrap(), InsertOutcome::Inserted);
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
    log.mark_queued(&id).await.expect("confirming twice is harmless");
    assert_eq!(log.stored_payload(&id).await.unwrap(), None);

    let big_id = format!("evt_contract_big_{unique}");
    let raw = br#"{"id":"evt","lines":[1,2,3]}"#.repeat(2000);
    let mut big = sample_record(&big_id, now);
    big.stored_payload = Some(compress(&raw));
    assert_eq!(log.insert_if_absent(&big).await.unwrap(), InsertOutcome::Inserted);
    let stored = log.stored_payload(&big_id).await.unwrap().expect("payload kept");
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
    assert_eq!(inserted, 1, "exactly one concurrent insert wins: {outcomes:?}");
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
        },
        QueueMessage {
            event_id: format!("evt_q2_{unique}"),
            event_type: "invoice.payment_failed".into(),
            livemode: false,
            created: 1_700_000_001,
            received_at: 1_700_000_004,
            payload: Payload::InEventLog,
        },
    ]
}

pub async fn queue_send_contract<Q: Queue>(queue: &Q, messages: &[QueueMessage]) {
    assert!(queue.max_message_bytes() >= 64 * 1024, "a queue takes at least 64 KiB");
    for m in messages {
        queue.send(m).await.unwrap();
    }
}

// A tiny join_all so core needs no futures crate.
async fn futures_join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemoryEventLog, MemoryQueue};

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
