//! After repeated wrong passwords an account is locked for a while, so that guessing a password
//! costs days, not minutes.

use time::{Duration, OffsetDateTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failed attempts in a row that lock the account.
    pub max_failures: u32,
    pub lock_for: Duration,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            max_failures: 5,
            lock_for: Duration::minutes(15),
        }
    }
}

impl LockoutPolicy {
    /// Whether the failure that brought the count to `failures` locks the account, and until when.
    pub fn lock_after(&self, failures: u32, now: OffsetDateTime) -> Option<OffsetDateTime> {
        (failures >= self.max_failures).then(|| now + self.lock_for)
    }
}

pub fn is_locked(locked_until: Option<OffsetDateTime>, now: OffsetDateTime) -> bool {
    locked_until.is_some_and(|until| until > now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_fifth_failure_locks_for_fifteen_minutes() {
        let now = datetime!(2026-11-22 08:00 UTC);
        let policy = LockoutPolicy::default();
        assert_eq!(policy.lock_after(4, now), None);
        let until = policy.lock_after(5, now).expect("locked");
        assert_eq!(until, datetime!(2026-11-22 08:15 UTC));
        assert!(is_locked(Some(until), now + Duration::minutes(14)));
        assert!(!is_locked(Some(until), until));
        assert!(!is_locked(None, now));
    }
}
