//! When to try a carrier call again, and how: the retry policies of the legacy bulk-change system
//! cellbridge replaces (HTTP errors 3 retries at a fixed interval, transient database errors 3 with
//! exponential back-off, new activations 6), a retry budget per carrier
//! account, and the choice between waiting in the function and going back to SQS with a delay.
//!
//! Pure logic with the clock passed in; the worker's adapters drive it (with backon for the short
//! waits) once the carrier adapters exist.

use std::time::Duration;

/// How one kind of operation backs off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    Fixed(Duration),
    /// `base * 2^(attempt - 1)`, capped.
    Exponential {
        base: Duration,
        max: Duration,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    pub backoff: Backoff,
}

impl RetryPolicy {
    /// Carrier HTTP calls: 3 retries at a fixed interval, as the legacy system retried HTTP errors.
    pub const HTTP: Self = Self {
        max_retries: 3,
        backoff: Backoff::Fixed(Duration::from_secs(2)),
    };
    /// Transient store errors: 3 retries, exponential from 2 s (2, 4, 8), as the legacy system
    /// retried its SQL database.
    pub const STORE_TRANSIENT: Self = Self {
        max_retries: 3,
        backoff: Backoff::Exponential {
            base: Duration::from_secs(2),
            max: Duration::from_secs(8),
        },
    };
    /// New service activations: 6 checks 5 minutes apart (activations take minutes to complete).
    pub const NEW_ACTIVATION: Self = Self {
        max_retries: 6,
        backoff: Backoff::Fixed(Duration::from_secs(300)),
    };

    /// Following up a request a carrier accepted for later (callbacks that never came, batch
    /// activations): every 5 minutes for up to 2 hours.
    pub const ACCEPTED_CHECK: Self = Self {
        max_retries: 24,
        backoff: Backoff::Fixed(Duration::from_secs(300)),
    };

    /// The same policy with another fixed interval (operators and local runs shorten checks).
    pub fn every(self, interval: Duration) -> Self {
        Self {
            backoff: Backoff::Fixed(interval),
            ..self
        }
    }

    /// Every wait of the policy in order, as a backoff schedule (for `backon`).
    pub fn schedule(&self) -> std::vec::IntoIter<Duration> {
        (1..=self.max_retries)
            .filter_map(|retry| self.delay(retry))
            .collect::<Vec<_>>()
            .into_iter()
    }

    /// The wait before retry number `retry` (1-based), or `None` when the policy is spent.
    pub fn delay(&self, retry: u32) -> Option<Duration> {
        if retry == 0 || retry > self.max_retries {
            return None;
        }
        Some(match self.backoff {
            Backoff::Fixed(interval) => interval,
            Backoff::Exponential { base, max } => base
                .checked_mul(1u32.checked_shl(retry - 1).unwrap_or(u32::MAX))
                .map_or(max, |d| d.min(max)),
        })
    }
}

/// Limits retries to a share of first attempts over a sliding window, per carrier account, so a
/// carrier outage never multiplies the load sent to it.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    /// Retries allowed per first attempt (e.g. 0.2: at most one retry for every five calls).
    ratio: f64,
    /// Retries always allowed per window, so a quiet account can still retry.
    floor: u32,
    window: Duration,
    /// (bucket start, first attempts, retries) for the buckets inside the window.
    buckets: Vec<(Duration, u32, u32)>,
}

/// Buckets per window: the window slides in steps of a tenth.
const BUCKETS: u32 = 10;

impl RetryBudget {
    pub fn new(ratio: f64, floor: u32, window: Duration) -> Self {
        Self {
            ratio: ratio.max(0.0),
            floor,
            window: window.max(Duration::from_millis(u64::from(BUCKETS))),
            buckets: Vec::new(),
        }
    }

    /// The default for carrier accounts: retries at most 20 % of calls, 10 a minute at least.
    pub fn for_carrier_account() -> Self {
        Self::new(0.2, 10, Duration::from_secs(60))
    }

    fn bucket(&mut self, now: Duration) -> &mut (Duration, u32, u32) {
        let width = self.window / BUCKETS;
        let start = Duration::from_nanos(
            (now.as_nanos() / width.as_nanos().max(1) * width.as_nanos()) as u64,
        );
        let oldest = now.saturating_sub(self.window);
        self.buckets.retain(|(at, _, _)| *at + width > oldest);
        if self.buckets.last().is_none_or(|(at, _, _)| *at != start) {
            self.buckets.push((start, 0, 0));
        }
        // Just pushed or found.
        let last = self.buckets.len() - 1;
        &mut self.buckets[last]
    }

    fn totals(&self) -> (u32, u32) {
        self.buckets
            .iter()
            .fold((0, 0), |(firsts, retries), (_, f, r)| {
                (firsts + f, retries + r)
            })
    }

    /// Records a first attempt at `now` (time since any fixed origin).
    pub fn record_attempt(&mut self, now: Duration) {
        self.bucket(now).1 += 1;
    }

    /// Takes one retry from the budget if there is one left at `now`.
    pub fn try_retry(&mut self, now: Duration) -> bool {
        self.bucket(now);
        let (firsts, retries) = self.totals();
        let allowed = (f64::from(firsts) * self.ratio).floor() as u32 + self.floor;
        if retries < allowed {
            self.bucket(now).2 += 1;
            true
        } else {
            false
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryDecision {
    /// Wait this long in the function, then call again.
    RetryAfter(Duration),
    /// Put the work back on its queue, delayed, as retry number `retry_number`.
    Requeue { delay: Duration, retry_number: u32 },
    /// Record the failure; no more attempts.
    GiveUp { reason: String },
}

/// Waits up to this long happen inside the function; longer ones go back to SQS.
pub const MAX_INLINE_WAIT: Duration = Duration::from_secs(5);
/// SQS's longest message delay.
pub const MAX_QUEUE_DELAY: Duration = Duration::from_secs(900);

/// Decides the next step after failed attempt `retry_number` (0 = the first attempt) of a
/// retryable failure. `carrier_wait` is what the carrier asked for (`Retry-After`), if anything.
pub fn decide(
    policy: &RetryPolicy,
    retry_number: u32,
    carrier_wait: Option<Duration>,
    budget: &mut RetryBudget,
    now: Duration,
) -> RetryDecision {
    let next = retry_number + 1;
    let Some(backoff) = policy.delay(next) else {
        return RetryDecision::GiveUp {
            reason: format!("still failing after {} retries", policy.max_retries),
        };
    };
    let wait = carrier_wait.map_or(backoff, |asked| asked.max(backoff));
    // A spent budget does not fail the change: it waits in the queue, off the carrier.
    if wait <= MAX_INLINE_WAIT && budget.try_retry(now) {
        return RetryDecision::RetryAfter(wait);
    }
    RetryDecision::Requeue {
        delay: wait.clamp(Duration::from_secs(1), MAX_QUEUE_DELAY),
        retry_number: next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn the_seed_policies_back_off_as_documented() {
        let http: Vec<_> = (1..=4).map(|n| RetryPolicy::HTTP.delay(n)).collect();
        assert_eq!(
            http,
            vec![Some(2 * SECOND), Some(2 * SECOND), Some(2 * SECOND), None]
        );
        let store: Vec<_> = (1..=4)
            .map(|n| RetryPolicy::STORE_TRANSIENT.delay(n))
            .collect();
        assert_eq!(
            store,
            vec![Some(2 * SECOND), Some(4 * SECOND), Some(8 * SECOND), None]
        );
        assert_eq!(RetryPolicy::NEW_ACTIVATION.delay(6), Some(300 * SECOND));
        assert_eq!(RetryPolicy::NEW_ACTIVATION.delay(7), None);
    }

    #[test]
    fn a_schedule_lists_every_wait_of_the_policy() {
        let waits: Vec<Duration> = RetryPolicy::STORE_TRANSIENT.schedule().collect();
        assert_eq!(waits, vec![2 * SECOND, 4 * SECOND, 8 * SECOND]);
    }

    #[test]
    fn short_waits_retry_inline_and_long_ones_go_back_to_the_queue() {
        let mut budget = RetryBudget::for_carrier_account();
        assert_eq!(
            decide(&RetryPolicy::HTTP, 0, None, &mut budget, SECOND),
            RetryDecision::RetryAfter(2 * SECOND)
        );
        // Retry-After longer than the backoff wins, and is too long to sleep through.
        assert_eq!(
            decide(
                &RetryPolicy::HTTP,
                0,
                Some(30 * SECOND),
                &mut budget,
                SECOND
            ),
            RetryDecision::Requeue {
                delay: 30 * SECOND,
                retry_number: 1
            }
        );
        assert_eq!(
            decide(&RetryPolicy::NEW_ACTIVATION, 2, None, &mut budget, SECOND),
            RetryDecision::Requeue {
                delay: 300 * SECOND,
                retry_number: 3
            }
        );
        assert!(matches!(
            decide(&RetryPolicy::HTTP, 3, None, &mut budget, SECOND),
            RetryDecision::GiveUp { .. }
        ));
    }

    #[test]
    fn a_spent_budget_sends_retries_to_the_queue_until_the_window_passes() {
        let mut budget = RetryBudget::new(0.0, 2, Duration::from_secs(10));
        let inline = |budget: &mut RetryBudget, at| decide(&RetryPolicy::HTTP, 0, None, budget, at);
        assert!(matches!(
            inline(&mut budget, SECOND),
            RetryDecision::RetryAfter(_)
        ));
        assert!(matches!(
            inline(&mut budget, SECOND),
            RetryDecision::RetryAfter(_)
        ));
        assert!(matches!(
            inline(&mut budget, 2 * SECOND),
            RetryDecision::Requeue { .. }
        ));
        assert!(matches!(
            inline(&mut budget, 12 * SECOND),
            RetryDecision::RetryAfter(_)
        ));
    }

    proptest! {
        /// However calls and failures interleave, retries inside any one window never exceed
        /// floor + ratio x first attempts recorded in it.
        #[test]
        fn retries_stay_within_the_budget(
            events in proptest::collection::vec((any::<bool>(), 0u64..50), 1..400),
            ratio in 0.0f64..1.0,
            floor in 0u32..5,
        ) {
            let window = Duration::from_secs(10);
            let mut budget = RetryBudget::new(ratio, floor, window);
            let mut now = Duration::ZERO;
            let mut granted = 0u32;
            let mut firsts = 0u32;
            for (is_retry, step_ms) in events {
                // Stay inside one window so nothing ages out and the bound is exact.
                now = (now + Duration::from_millis(step_ms)).min(window / 2);
                if is_retry {
                    granted += u32::from(budget.try_retry(now));
                } else {
                    budget.record_attempt(now);
                    firsts += 1;
                }
                prop_assert!(granted <= floor + (f64::from(firsts) * ratio).floor() as u32);
            }
        }

        #[test]
        fn decisions_never_exceed_the_policy(retry in 0u32..20, asked in proptest::option::of(0u64..5_000)) {
            let mut budget = RetryBudget::for_carrier_account();
            let decision = decide(&RetryPolicy::HTTP, retry, asked.map(Duration::from_secs), &mut budget, SECOND);
            match decision {
                RetryDecision::RetryAfter(wait) => prop_assert!(retry < 3 && wait <= MAX_INLINE_WAIT),
                RetryDecision::Requeue { delay, retry_number } => {
                    prop_assert!(retry < 3 && delay <= MAX_QUEUE_DELAY);
                    prop_assert_eq!(retry_number, retry + 1);
                }
                RetryDecision::GiveUp { .. } => prop_assert!(retry >= 3),
            }
        }
    }
}
