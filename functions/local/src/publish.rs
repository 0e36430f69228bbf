//! Where embedded notifications and alerts go: the log, and one JSON object per line in a
//! file, synced before the outbox entry is removed. One writer for both kinds.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use revguard_core::ports::{Outgoing, PublishError, Publisher};

#[derive(Clone)]
pub struct JsonlPublisher {
    /// What the log calls these messages ("notification", "alert").
    kind: &'static str,
    file: Option<Arc<Mutex<std::fs::File>>>,
}

impl JsonlPublisher {
    pub fn to_file(kind: &'static str, path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self {
            kind,
            file: Some(Arc::new(Mutex::new(file))),
        })
    }

    pub fn log_only(kind: &'static str) -> Self {
        Self { kind, file: None }
    }

    fn write<M: serde::Serialize + Outgoing>(&self, m: &M) -> std::io::Result<()> {
        tracing::info!(id = m.id(), "{} published", self.kind);
        if let Some(f) = &self.file {
            let mut line = serde_json::to_vec(m).map_err(std::io::Error::other)?;
            line.push(b'\n');
            let mut f = f
                .lock()
                .map_err(|_| std::io::Error::other("publisher lock poisoned"))?;
            f.write_all(&line)?;
            f.sync_data()?;
        }
        Ok(())
    }
}

impl<M: serde::Serialize + Outgoing> Publisher<M> for JsonlPublisher {
    async fn publish(&self, message: &M) -> Result<(), PublishError> {
        self.write(message).map_err(PublishError::new)
    }
}
