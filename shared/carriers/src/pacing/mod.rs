//! Client-side pacing per carrier account, so calls stay under the carrier's documented limit
//! (Jasper: 5 a second) instead of discovering it through 429s.
//!
//! Pure: the caller passes the time and sleeps for the wait it is given.

use std::time::Duration;

/// A token bucket: `rate` calls a second on average, at most `burst` at once.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    interval: Duration,
    burst: u32,
    /// The earliest time the next call may start, if the bucket were full at `burst`.
    next_free: Duration,
}

impl RateLimiter {
    /// `per_second` calls a second (at least 1), bursts of `burst` (at least 1).
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            // Rounded up, so `per_second` intervals never add up to less than a second.
            interval: Duration::from_nanos(1_000_000_000u64.div_ceil(u64::from(per_second.max(1)))),
            burst: burst.max(1),
            next_free: Duration::ZERO,
        }
    }

    /// Reserves the next call slot at or after `now` (time since any fixed origin) and returns
    /// how long to wait before making the call.
    pub fn reserve(&mut self, now: Duration) -> Duration {
        // Unused capacity accumulates up to a burst, never more.
        let earliest = now.saturating_sub(self.interval * (self.burst - 1));
        let start = self.next_free.max(earliest);
        self.next_free = start + self.interval;
        start.saturating_sub(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn calls_are_spaced_at_the_documented_rate() {
        let mut jasper = RateLimiter::new(5, 1);
        let waits: Vec<Duration> = (0..4).map(|_| jasper.reserve(Duration::ZERO)).collect();
        assert_eq!(waits, vec![Duration::ZERO, 200 * MS, 400 * MS, 600 * MS]);
    }

    #[test]
    fn rates_that_do_not_divide_a_second_still_hold() {
        let mut limiter = RateLimiter::new(3, 1);
        let fourth = (0..4).map(|_| limiter.reserve(Duration::ZERO)).last();
        assert!(fourth >= Some(Duration::from_secs(1)), "{fourth:?}");
    }

    #[test]
    fn idle_capacity_allows_a_burst_and_no_more() {
        let mut limiter = RateLimiter::new(10, 3);
        let at = Duration::from_secs(5);
        let waits: Vec<Duration> = (0..4).map(|_| limiter.reserve(at)).collect();
        assert_eq!(
            waits,
            vec![Duration::ZERO, Duration::ZERO, Duration::ZERO, 100 * MS]
        );
    }

    proptest! {
        /// Whatever the arrival pattern, no window of one second holds more than rate + burst - 1
        /// call starts.
        #[test]
        fn no_second_ever_exceeds_the_limit(
            arrivals in proptest::collection::vec(0u64..3_000, 1..200),
            per_second in 1u32..20,
            burst in 1u32..5,
        ) {
            let mut arrivals = arrivals;
            arrivals.sort_unstable();
            let mut limiter = RateLimiter::new(per_second, burst);
            let starts: Vec<Duration> = arrivals
                .into_iter()
                .map(|ms| {
                    let now = Duration::from_millis(ms);
                    now + limiter.reserve(now)
                })
                .collect();
            for (i, start) in starts.iter().enumerate() {
                let in_window = starts[i..].iter().take_while(|s| **s < *start + Duration::from_secs(1)).count();
                prop_assert!((in_window as u32) < per_second + burst, "{in_window} starts within a second");
            }
        }
    }
}

/// How often a waiter looks again while another caller holds the gate.
pub const GATE_POLL: std::time::Duration = std::time::Duration::from_millis(20);

pub mod dynamodb;
#[cfg(any(test, feature = "test-util"))]
pub mod memory;
