//! In-memory adapters of the ports, with switchable outages. They serve unit tests and
//! benchmarks of the use cases; real deployments use SQLite or DynamoDB/SQS.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::message::QueueMessage;
use crate::ports::{EventLog, EventRecord, EventStatus, InsertOutcome, Queue, QueueError, StoreError};

#[derive(Debug, thiserror::Error)]
#[error("simulated outage")]
pub struct SimulatedOutage;

#[derive(Default)]
pub struct MemoryEventLog {
    records: Mutex<HashMap<String, EventRecord>>,
    pub down: AtomicBool,
    pub mark_down: AtomicBool,
}

impl MemoryEventLog {
    pub fn get(&self, event_id: &str) -> Option<EventRecord> {
        self.records.lock().unwrap().get(event_id).cloned()
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable(SimulatedOutage));
        }
        Ok(())
    }
}

impl EventLog for MemoryEventLog {
    async fn insert_if_absent(&self, record: &EventRecord) -> Result<InsertOutcome, StoreError> {
        self.check()?;
        let mut records = self.records.lock().unwrap();
        if let Some(existing) = records.get(&record.event_id) {
            return Ok(InsertOutcome::AlreadyPresent(existing.status));
        }
        records.insert(record.event_id.clone(), record.clone());
        Ok(InsertOutcome::Inserted)
    }

    async fn mark_queued(&self, event_id: &str) -> Result<(), StoreError> {
        self.check()?;
        if self.mark_down.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable(SimulatedOutage));
        }
        if let Some(r) = self.records.lock().unwrap().get_mut(event_id) {
            r.status = EventStatus::Queued;
        }
        Ok(())
    }

    async fn stored_payload(&self, event_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.check()?;
        Ok(self.records.lock().unwrap().get(event_id).and_then(|r| r.stored_payload.clone()))
    }
}

pub struct MemoryQueue {
    pub messages: Mutex<Vec<QueueMessage>>,
    pub down: AtomicBool,
    pub max_bytes: usize,
}

impl MemoryQueue {
    pub fn new(max_bytes: usize) -> Self {
        Self { messages: Mutex::new(Vec::new()), down: AtomicBool::new(false), max_bytes }
    }

    pub fn sent(&self) -> Vec<QueueMessage> {
        self.messages.lock().unwrap().clone()
    }
}

impl Default for MemoryQueue {
    fn default() -> Self {
        Self::new(256 * 1024)
    }
}

impl Queue for MemoryQueue {
    fn max_message_bytes(&self) -> usize {
        self.max_bytes
    }

    async fn send(&self, message: &QueueMessage) -> Result<(), QueueError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(QueueError::unavailable(SimulatedOutage));
        }
        self.messages.lock().unwrap().push(message.clone());
        Ok(())
    }
}
