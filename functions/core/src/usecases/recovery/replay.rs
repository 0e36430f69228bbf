//! Replay: logged events sent through the queue again.

use serde::Serialize;

use super::fetch::*;
use crate::domain::message::{decompress, Payload, QueueMessage, Via};
use crate::ports::{BillingStore, EventHistory, EventKey, LogSelection, Queue, StoreError};

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplaySummary {
    /// Entries of the event log the selection matched.
    pub matched: usize,
    /// Sent to the queue again.
    pub enqueued: usize,
    /// Applied already: the worker would count them as duplicates, so they are not sent.
    pub already_applied: usize,
    /// Logged before payloads were kept, or whose payload is gone: cannot be sent.
    pub without_payload: usize,
}

/// The most entries one replay reads.
pub const REPLAY_LIMIT: usize = 100_000;

/// Sends logged events through the queue again, as they were received. An event the
/// worker applied already would be a duplicate (its effects are counted once, ever), so
/// it is reported and not sent: a replay applies what never was (a dead letter, a lost
/// message). A subscription applied wrongly is mended by `reconcile --fix`.
pub async fn replay<H, B, Q>(
    history: &H,
    billing: &B,
    queue: &Q,
    selection: &LogSelection,
) -> Result<ReplaySummary, RecoveryError>
where
    H: EventHistory,
    B: BillingStore,
    Q: Queue,
{
    let logged = history.logged(selection, REPLAY_LIMIT).await?;
    let mut summary = ReplaySummary {
        matched: logged.len(),
        ..Default::default()
    };
    for chunk in logged.chunks(100) {
        // The payloads first: an event about a charge keeps its marker on the charge.
        // (A payload that does not decompress is an error if the event is to be sent; such an
        // event about a charge is looked for by its marker item only.)
        let raws: Vec<Option<Result<Vec<u8>, String>>> = chunk
            .iter()
            .map(|r| {
                r.stored_payload
                    .as_ref()
                    .map(|stored| decompress(stored).map_err(|e| e.to_string()))
            })
            .collect();
        let keys: Vec<EventKey> = chunk
            .iter()
            .zip(&raws)
            .map(|(r, raw)| EventKey {
                id: r.event_id.clone(),
                charge: match raw {
                    Some(Ok(raw)) => {
                        crate::domain::billing::marker_charge_of_payload(&r.event_type, raw)
                    }
                    _ => None,
                },
                account: r.account.clone(),
            })
            .collect();
        let applied = billing.applied(&keys).await?;
        for (record, raw) in chunk.iter().zip(raws) {
            if applied.contains(&record.event_id) {
                summary.already_applied += 1;
                continue;
            }
            let Some(raw) = raw else {
                summary.without_payload += 1;
                continue;
            };
            let raw = raw.map_err(StoreError::Corrupt)?;
            let fits = QueueMessage::inline_size(&record.event_id, &record.event_type, raw.len())
                <= queue.max_message_bytes();
            let payload = if fits {
                Payload::Inline(String::from_utf8_lossy(&raw).into_owned())
            } else {
                Payload::InEventLog
            };
            queue
                .send(&QueueMessage {
                    event_id: record.event_id.clone(),
                    event_type: record.event_type.clone(),
                    livemode: record.livemode,
                    created: record.created,
                    received_at: record.received_at,
                    payload,
                    via: Via::Replay,
                })
                .await?;
            summary.enqueued += 1;
        }
    }
    Ok(summary)
}
