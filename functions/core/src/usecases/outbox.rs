//! Publishing an outbox, once for notifications and alerts on both backends: every
//! message is tried (one that cannot go out holds back no other), and the caller removes
//! from its outbox exactly the ones that went out.

use crate::ports::{Outgoing, Publisher};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PublishReport {
    /// Ids of the messages published, in order.
    pub published: Vec<String>,
    /// Ids of those that could not be, with the error.
    pub failed: Vec<(String, String)>,
}

pub async fn publish_all<M: Outgoing, P: Publisher<M>>(
    messages: &[M],
    publisher: &P,
) -> PublishReport {
    let mut report = PublishReport::default();
    let mut results = publisher.publish_each(messages).await.into_iter();
    for m in messages {
        // A publisher that answers for fewer messages than it was given did not publish
        // the rest.
        let result = results.next().unwrap_or_else(|| {
            Err(crate::ports::PublishError::new(
                "the publisher gave no result for it",
            ))
        });
        match result {
            Ok(()) => report.published.push(m.id().to_owned()),
            Err(e) => {
                let error = crate::domain::error::error_chain(&e);
                tracing::warn!(message = m.id(), error = %error, "cannot publish; it stays in the outbox");
                report.failed.push((m.id().to_owned(), error));
            }
        }
    }
    report
}
