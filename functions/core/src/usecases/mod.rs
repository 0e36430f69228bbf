//! What revguard does, each once for both backends, over the ports.

pub mod apply_batch;
pub mod delivery;
pub mod detector_run;
pub mod digest;
pub mod ingest;
pub mod outbox;
pub mod recovery;
pub mod retry;
