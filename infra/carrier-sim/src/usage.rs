//! Usage the simulated carriers report: every SIM uses a deterministic amount of data and SMS
//! each day (the same ICCID and day always give the same numbers), billing cycles begin on the
//! first of each month, and usage is rated once a day, so a cycle-to-date total covers whole
//! days through yesterday. A test fixes "today" to make the readings it expects.

use std::sync::Mutex;
use time::{Date, OffsetDateTime};

/// Most data one SIM uses in a day: 20 MB.
pub const MAX_DAILY_BYTES: u64 = 20_000_000;
/// Most SMS one SIM sends in a day.
pub const MAX_DAILY_SMS: u64 = 10;

/// A SIM's usage on `day`: (bytes, SMS).
pub fn day_usage(iccid: &str, day: Date) -> (u64, u64) {
    // FNV-1a over the ICCID and the day: stable across runs and platforms.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in iccid.bytes().chain(day.to_julian_day().to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % MAX_DAILY_BYTES, (hash >> 40) % (MAX_DAILY_SMS + 1))
}

/// The first day of the billing cycle `day` is in.
pub fn cycle_start(day: Date) -> Date {
    day.replace_day(1).unwrap_or(day)
}

/// A SIM's totals over the days `from` through `through`, both included: (bytes, SMS).
pub fn usage_between(iccid: &str, from: Date, through: Date) -> (u64, u64) {
    let mut totals = (0, 0);
    let mut day = from;
    while day <= through {
        let (bytes, sms) = day_usage(iccid, day);
        totals = (totals.0 + bytes, totals.1 + sms);
        match day.next_day() {
            Some(next) => day = next,
            None => break,
        }
    }
    totals
}

/// A SIM's cycle-to-date totals through the end of `through`: (cycle start, bytes, SMS).
pub fn cycle_to_date(iccid: &str, through: Date) -> (Date, u64, u64) {
    let start = cycle_start(through);
    let (bytes, sms) = usage_between(iccid, start, through);
    (start, bytes, sms)
}

/// What the simulators take as today: the real UTC date unless a test or demo fixed one.
#[derive(Debug, Default)]
pub struct UsageDay(Mutex<Option<Date>>);

impl UsageDay {
    pub fn today(&self) -> Date {
        let fixed = *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        fixed.unwrap_or_else(|| OffsetDateTime::now_utc().date())
    }

    /// The last day rated: yesterday.
    pub fn rated_through(&self) -> Date {
        let today = self.today();
        today.previous_day().unwrap_or(today)
    }

    pub fn fix(&self, today: Option<Date>) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = today;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn usage_is_the_same_for_the_same_sim_and_day_and_sums_into_the_cycle() {
        let iccid = "8901260000000000017";
        assert_eq!(
            day_usage(iccid, date!(2026 - 12 - 03)),
            day_usage(iccid, date!(2026 - 12 - 03))
        );
        assert_ne!(
            day_usage(iccid, date!(2026 - 12 - 03)),
            day_usage(iccid, date!(2026 - 12 - 04))
        );
        let (start, bytes, sms) = cycle_to_date(iccid, date!(2026 - 12 - 03));
        assert_eq!(start, date!(2026 - 12 - 01));
        let days = [
            date!(2026 - 12 - 01),
            date!(2026 - 12 - 02),
            date!(2026 - 12 - 03),
        ];
        assert_eq!(
            (bytes, sms),
            days.iter().fold((0, 0), |(b, s), d| {
                let (db, ds) = day_usage(iccid, *d);
                (b + db, s + ds)
            })
        );
        let (start, bytes, _) = cycle_to_date(iccid, date!(2026 - 12 - 01));
        assert_eq!(start, date!(2026 - 12 - 01));
        assert_eq!(bytes, day_usage(iccid, date!(2026 - 12 - 01)).0);
    }
}
