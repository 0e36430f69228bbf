//! Delivering owed posts (chat messages, pages, mails) with retries, once for every
//! destination: each post that is due is tried, and what its result means (delivered,
//! try again when, or give up) is decided here, so that every destination retries alike.

use crate::ports::{OwedPost, PostFailure, PostOutbox, PostOutcome, Poster, StoreError};
use crate::usecases::retry::{seed_of, Backoff};

/// How many due posts one read of the outbox takes.
const DUE_PER_READ: usize = 32;

/// What the result of attempt number `attempt` means for its post: delivered; given up
/// when the failure is final or the attempts are spent; else tried again after the
/// backoff (at least half its ceiling, jittered by the message id), or later if the far
/// end asked for more (`Retry-After`).
pub fn outcome_of(
    result: Result<(), PostFailure>,
    post: &OwedPost,
    backoff: &Backoff,
    now_ms: i64,
) -> PostOutcome {
    let attempt = post.attempts + 1;
    match result {
        Ok(()) => {
            tracing::info!(id = %post.message_id, destination = %post.destination, attempt, "delivered");
            PostOutcome::Delivered
        }
        Err(f) if !f.retry || backoff.gives_up_after(attempt) => {
            tracing::error!(id = %post.message_id, destination = %post.destination, attempt, error = %f.error, "not delivered: given up");
            PostOutcome::GiveUp { error: f.error }
        }
        Err(f) => {
            let backoff = backoff.delay_at_least_half(attempt, seed_of(&post.message_id));
            let delay = f.retry_after.map_or(backoff, |asked| asked.max(backoff));
            tracing::warn!(id = %post.message_id, destination = %post.destination, attempt, error = %f.error, retry_in_ms = delay.as_millis() as u64, "not delivered yet");
            PostOutcome::RetryAt {
                at_ms: now_ms + delay.as_millis() as i64,
                error: f.error,
            }
        }
    }
}

/// Tries every post due until none is left (those retried wait for their time). The
/// clock is the caller's, read before each post and each record.
pub async fn deliver_due<O: PostOutbox, P: Poster>(
    outbox: &O,
    poster: &P,
    backoff: &Backoff,
    now_ms: impl Fn() -> i64,
) -> Result<(), StoreError> {
    loop {
        let due = outbox.due(now_ms(), DUE_PER_READ).await?;
        if due.is_empty() {
            return Ok(());
        }
        for post in due {
            let result = poster.post(&post).await;
            let outcome = outcome_of(result, &post, backoff, now_ms());
            outbox.record(&post, outcome, now_ms()).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const BACKOFF: Backoff = Backoff {
        base: Duration::from_secs(2),
        cap: Duration::from_secs(600),
        max_attempts: 3,
    };

    fn post(attempts: u32) -> OwedPost {
        OwedPost {
            message_id: "live:spike:refunds:1".into(),
            destination: "slack".into(),
            body: "{}".into(),
            attempts,
        }
    }

    fn failure(retry: bool, retry_after: Option<Duration>) -> Result<(), PostFailure> {
        Err(PostFailure {
            error: "HTTP 503: busy".into(),
            retry,
            retry_after,
        })
    }

    #[test]
    fn a_post_is_retried_after_the_backoff_or_later_when_asked_and_given_up_when_spent() {
        assert_eq!(
            outcome_of(Ok(()), &post(0), &BACKOFF, 1_000),
            PostOutcome::Delivered
        );
        // First failure: at least half of the first ceiling (2 s), at most all of it.
        match outcome_of(failure(true, None), &post(0), &BACKOFF, 1_000) {
            PostOutcome::RetryAt { at_ms, .. } => {
                assert!((2_000..=3_000).contains(&at_ms), "{at_ms}")
            }
            other => panic!("{other:?}"),
        }
        // A Retry-After longer than the backoff wins.
        assert_eq!(
            outcome_of(
                failure(true, Some(Duration::from_secs(30))),
                &post(0),
                &BACKOFF,
                1_000
            ),
            PostOutcome::RetryAt {
                at_ms: 31_000,
                error: "HTTP 503: busy".into()
            }
        );
        // A final failure, or the last attempt, gives up.
        assert!(matches!(
            outcome_of(failure(false, None), &post(0), &BACKOFF, 1_000),
            PostOutcome::GiveUp { .. }
        ));
        assert!(matches!(
            outcome_of(failure(true, None), &post(2), &BACKOFF, 1_000),
            PostOutcome::GiveUp { .. }
        ));
    }
}
