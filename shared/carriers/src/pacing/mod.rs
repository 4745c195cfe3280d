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

/// The window a carrier counts its calls per second in.
const SECOND: Duration = Duration::from_secs(1);

/// When the next call through a one-at-a-time gate may begin, after a call that began at
/// `started` and ended at `ended`, for an account allowed one call every `spacing`; and the
/// ends to remember for the next (`recent_ends` are the previous calls', oldest first).
///
/// The carrier counts calls when they reach it, which is somewhere between when they began and
/// when they ended: spacing starts alone lets one call that lands late and the next ones that
/// land early crowd one second. So besides `spacing` after this start, the call as many calls
/// on as a second allows begins no earlier than a second after this one ended: however late
/// this call landed and however early the later ones do, no second holds more than the limit.
/// With one call in flight and calls that take a while this costs nothing; with quick calls,
/// a fifth of their duration per call at five a second.
pub fn after_gated_call(
    recent_ends: &[time::OffsetDateTime],
    started: time::OffsetDateTime,
    ended: time::OffsetDateTime,
    spacing: Duration,
) -> (time::OffsetDateTime, Vec<time::OffsetDateTime>) {
    let per_second = (SECOND.as_nanos() / spacing.as_nanos().max(1)).max(1) as usize;
    let mut ends: Vec<time::OffsetDateTime> = recent_ends.to_vec();
    ends.push(ended);
    let keep_from = ends.len().saturating_sub(per_second);
    ends.drain(..keep_from);
    let mut next = started + spacing;
    if ends.len() == per_second {
        next = next.max(ends[0] + SECOND);
    }
    (next, ends)
}

#[cfg(test)]
mod gate_tests {
    use super::*;
    use proptest::prelude::*;
    use time::OffsetDateTime;

    proptest! {
        /// Whatever each call takes and wherever within it the carrier counts it, no second
        /// holds more calls than the limit.
        #[test]
        fn no_second_at_the_carrier_holds_more_than_the_limit(
            calls in proptest::collection::vec((0u64..400, 0.0f64..=1.0), 1..120),
            per_second in 1u32..12,
        ) {
            let spacing = Duration::from_nanos(1_000_000_000u64.div_ceil(u64::from(per_second)));
            let origin = OffsetDateTime::UNIX_EPOCH;
            let (mut next, mut ends) = (origin, Vec::new());
            let mut arrivals = Vec::new();
            for (duration_ms, landing) in calls {
                // One at a time: a call begins when it may and the one before has ended.
                let started = next.max(ends.last().copied().unwrap_or(origin));
                let ended = started + Duration::from_millis(duration_ms);
                arrivals.push(started + (ended - started) * landing);
                (next, ends) = after_gated_call(&ends, started, ended, spacing);
            }
            arrivals.sort();
            for (i, at) in arrivals.iter().enumerate() {
                let within = arrivals[i..].iter().take_while(|a| **a < *at + SECOND).count();
                prop_assert!(within as u32 <= per_second, "{within} calls within a second");
            }
        }
    }

    #[test]
    fn quick_calls_cost_a_share_of_their_time_slow_ones_nothing() {
        let origin = OffsetDateTime::UNIX_EPOCH;
        let spacing = Duration::from_millis(200);
        let run = |duration: Duration| {
            let (mut next, mut ends) = (origin, Vec::new());
            for _ in 0..50 {
                let started = next.max(ends.last().copied().unwrap_or(origin));
                (next, ends) = after_gated_call(&ends, started, started + duration, spacing);
            }
            next - origin
        };
        // 5 ms calls: the 51st may begin at 10.05 s instead of 10 s (one ms a call).
        assert_eq!(
            run(Duration::from_millis(5)),
            time::Duration::milliseconds(10_050)
        );
        // 300 ms calls are 300 ms apart anyway, one at a time: the rule adds nothing to that.
        assert_eq!(
            run(Duration::from_millis(300)),
            time::Duration::milliseconds(49 * 300 + 200)
        );
    }
}

pub mod dynamodb;
#[cfg(any(test, feature = "test-util"))]
pub mod memory;
