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
    let results = publisher.publish_each(messages).await;
    for (m, result) in messages.iter().zip(results) {
        match result {
            Ok(()) => report.published.push(m.id().to_owned()),
            Err(e) => {
                let error = crate::error_chain(&e);
                tracing::warn!(message = m.id(), error = %error, "cannot publish; it stays in the outbox");
                report.failed.push((m.id().to_owned(), error));
            }
        }
    }
    report
}
