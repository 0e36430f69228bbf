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

    /// Appends one line a message and syncs the file once: the outbox entries are
    /// removed only after this returns. The write and the sync run off the async
    /// threads, which keep taking webhooks meanwhile.
    async fn write<M: serde::Serialize + Outgoing>(&self, messages: &[M]) -> std::io::Result<()> {
        for m in messages {
            tracing::info!(id = m.id(), "{} published", self.kind);
        }
        let Some(file) = &self.file else {
            return Ok(());
        };
        let mut lines = Vec::new();
        for m in messages {
            serde_json::to_writer(&mut lines, m).map_err(std::io::Error::other)?;
            lines.push(b'\n');
        }
        let file = file.clone();
        tokio::task::spawn_blocking(move || {
            let mut f = file
                .lock()
                .map_err(|_| std::io::Error::other("publisher lock poisoned"))?;
            // A batch that fails is retried whole: take back what part of it was written,
            // so that no line is written twice and no torn line joins the next write.
            let start = f.metadata()?.len();
            let written = f.write_all(&lines).and_then(|()| f.sync_data());
            if written.is_err() {
                let _ = f.set_len(start);
            }
            written
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

impl<M: serde::Serialize + Outgoing> Publisher<M> for JsonlPublisher {
    async fn publish(&self, message: &M) -> Result<(), PublishError> {
        self.write(std::slice::from_ref(message))
            .await
            .map_err(PublishError::new)
    }

    async fn publish_each(&self, messages: &[M]) -> Vec<Result<(), PublishError>> {
        match self.write(messages).await {
            Ok(()) => messages.iter().map(|_| Ok(())).collect(),
            Err(e) => PublishError::for_each(messages, &e.to_string()),
        }
    }
}
