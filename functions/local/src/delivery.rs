//! What a failed delivery (a chat post, a page, a mail) says, for the retries.

use std::time::Duration;

/// Why a delivery failed, said without its URL, key or credentials.
pub(crate) struct PostFailure {
    pub(crate) error: String,
    pub(crate) retry: bool,
    /// What the far end asked for (a 429's `Retry-After`).
    pub(crate) retry_after: Option<Duration>,
}
