//! Retry policies, owned by core so that both backends back off alike: exponential
//! backoff with full jitter, as a pure function of the attempt and a jitter seed.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first retry's delay; it doubles with each attempt…
    pub base: Duration,
    /// …up to this ceiling.
    pub cap: Duration,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
}

impl Backoff {
    /// Commit conflicts: concurrent workers on shared items; a few tens of milliseconds
    /// apart, most conflicts clear.
    pub const COMMIT: Backoff = Backoff {
        base: Duration::from_millis(20),
        cap: Duration::from_secs(2),
        max_attempts: 8,
    };

    /// `BatchGetItem` keys left unprocessed (a throttled partition): AWS asks for an
    /// exponential backoff; after the last attempt the read fails and the batch is retried.
    pub const UNPROCESSED_KEYS: Backoff = Backoff {
        base: Duration::from_millis(50),
        cap: Duration::from_secs(1),
        max_attempts: 6,
    };

    /// Redelivery of a message whose failure is transient (a store or publisher outage):
    /// the queue hides it for the delay, so an outage costs a delivery per delay, not per
    /// visibility timeout. With the worker's 20 receives this rides out two hours of
    /// outage before a message is dead-lettered ([`Backoff::survives`]).
    pub const REDELIVERY: Backoff = Backoff {
        base: Duration::from_secs(30),
        cap: Duration::from_secs(1200),
        max_attempts: 20,
    };

    /// Like [`Backoff::delay`], but at least half the ceiling ("equal jitter"): for
    /// redeliveries, where the total time the attempts cover must be known.
    pub fn delay_at_least_half(&self, attempt: u32, seed: u64) -> Duration {
        let half = self.ceiling(attempt) / 2;
        half + self.delay(attempt, seed) / 2
    }

    /// The least time that `max_attempts` attempts spaced by
    /// [`Backoff::delay_at_least_half`] span, from the first to the last.
    pub fn survives(&self) -> Duration {
        (1..self.max_attempts).map(|a| self.ceiling(a) / 2).sum()
    }

    /// How long to wait before attempt `attempt + 1` (attempts count from 1), given a
    /// jitter seed: uniform in [0, min(cap, base × 2^(attempt−1))) ("full jitter"), so
    /// that workers that collided once spread out instead of colliding again.
    pub fn delay(&self, attempt: u32, seed: u64) -> Duration {
        let ceiling = self.ceiling(attempt);
        let unit = (splitmix64(seed ^ u64::from(attempt).wrapping_mul(0x9E37_79B9_7F4A_7C15)) >> 11)
            as f64
            / (1u64 << 53) as f64;
        ceiling.mul_f64(unit)
    }

    /// The largest delay before attempt `attempt + 1`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        self.base.saturating_mul(1u32 << doublings).min(self.cap)
    }

    pub fn gives_up_after(&self, attempt: u32) -> bool {
        attempt >= self.max_attempts
    }

    /// Runs `op` until it succeeds, its error is not `retryable` (asked only while
    /// attempts remain, with the attempt that failed), or the attempts run out, pausing
    /// for [`Backoff::delay`] before each retry. The last result, and the attempts made.
    pub async fn retry<T, E, Fut>(
        &self,
        seed: u64,
        pause: &impl crate::ports::Pause,
        retryable: impl Fn(&E, u32) -> bool,
        mut op: impl FnMut() -> Fut,
    ) -> (Result<T, E>, u32)
    where
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let mut attempt = 1;
        loop {
            match op().await {
                Err(e) if !self.gives_up_after(attempt) && retryable(&e, attempt) => {
                    pause.pause(self.delay(attempt, seed)).await;
                    attempt += 1;
                }
                result => return (result, attempt),
            }
        }
    }
}

/// A seed from a string (a message or event id): a stable FNV-1a hash.
pub fn seed_of(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_stay_under_the_cap_and_spread_out() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
            max_attempts: 6,
        };
        assert_eq!(b.ceiling(1), Duration::from_millis(100));
        assert_eq!(b.ceiling(2), Duration::from_millis(200));
        assert_eq!(b.ceiling(4), Duration::from_millis(800));
        assert_eq!(b.ceiling(5), Duration::from_secs(1));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(1));
        for attempt in 1..10 {
            for seed in 0..200 {
                assert!(b.delay(attempt, seed) < b.ceiling(attempt));
            }
        }
        // The same inputs give the same delay; different seeds spread over the range.
        assert_eq!(b.delay(3, 42), b.delay(3, 42));
        let delays: Vec<Duration> = (0..1000).map(|s| b.delay(3, s)).collect();
        let low = delays
            .iter()
            .filter(|d| **d < Duration::from_millis(200))
            .count();
        assert!(
            (400..600).contains(&low),
            "about half below the middle: {low}"
        );
        assert!(!b.gives_up_after(5) && b.gives_up_after(6));
        for attempt in 1..10 {
            for seed in 0..200 {
                let d = b.delay_at_least_half(attempt, seed);
                assert!(d >= b.ceiling(attempt) / 2 && d < b.ceiling(attempt));
            }
        }
    }

    #[test]
    fn redeliveries_outlast_a_two_hour_outage() {
        // The old budget: 5 receives at a fixed 180 s visibility, 15 minutes.
        assert!(Backoff::REDELIVERY.survives() >= Duration::from_secs(2 * 3600));
        assert!(
            Backoff::REDELIVERY.survives() < Duration::from_secs(4 * 3600),
            "but a message that can never apply is not held for most of a day: {:?}",
            Backoff::REDELIVERY.survives()
        );
    }
}
