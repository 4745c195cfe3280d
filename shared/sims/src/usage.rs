//! SIM usage: data and SMS per day, kept for a retention period, and the cycle-to-date total on
//! each SIM. Jasper and Telegence tell only a SIM's cycle-to-date total, so a day's usage is the
//! difference between two readings a day apart; a reading lower than the one before means the
//! billing cycle began again.

use crate::sim::CycleUsage;
use serde::{Deserialize, Serialize};
use time::Date;

/// One day of a SIM's usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DailyUsage {
    #[serde(with = "cellbridge_core::clock::iso_date")]
    pub day: Date,
    pub data_bytes: u64,
    pub sms: u64,
}

/// A carrier's cycle-to-date reading of one SIM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CycleReading {
    /// When the carrier tells it (Telegence); Jasper does not.
    pub cycle_start: Option<Date>,
    pub data_bytes: u64,
    pub sms: u64,
}

/// What one reading records for a SIM: the day's usage when it can be told, and the SIM's new
/// cycle-to-date total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    pub iccid: String,
    pub day: Option<DailyUsage>,
    pub cycle: CycleUsage,
}

/// What `reading`, covering usage through the end of `through`, records for a SIM whose stored
/// cycle-to-date is `stored`; `None` when that day is recorded already (a run repeated after a
/// crash writes nothing twice).
///
/// The first reading of a SIM sets its cycle-to-date and tells no day, except when the cycle
/// began that very day. Readings more than a day apart give the whole difference to `through`.
pub fn record_reading(
    iccid: &str,
    stored: &CycleUsage,
    reading: CycleReading,
    through: Date,
) -> Option<UsageRecord> {
    if stored.through.is_some_and(|last| last >= through) {
        return None;
    }
    let cycle = |cycle_start| CycleUsage {
        cycle_start,
        through: Some(through),
        data_bytes: reading.data_bytes,
        sms: reading.sms,
    };
    let whole_reading = DailyUsage {
        day: through,
        data_bytes: reading.data_bytes,
        sms: reading.sms,
    };
    let same_cycle = match (stored.cycle_start, reading.cycle_start) {
        (Some(before), Some(now)) => before == now,
        // Without the carrier's cycle dates, totals that went down mean a new cycle.
        _ => reading.data_bytes >= stored.data_bytes && reading.sms >= stored.sms,
    };
    let Some(_) = stored.through else {
        let day = (reading.cycle_start == Some(through)).then_some(whole_reading);
        return Some(UsageRecord {
            iccid: iccid.to_owned(),
            day,
            cycle: cycle(reading.cycle_start),
        });
    };
    if same_cycle {
        return Some(UsageRecord {
            iccid: iccid.to_owned(),
            day: Some(DailyUsage {
                day: through,
                data_bytes: reading.data_bytes.saturating_sub(stored.data_bytes),
                sms: reading.sms.saturating_sub(stored.sms),
            }),
            cycle: cycle(reading.cycle_start.or(stored.cycle_start)),
        });
    }
    // A new cycle: everything it counts so far is since the last reading.
    Some(UsageRecord {
        iccid: iccid.to_owned(),
        day: Some(whole_reading),
        cycle: cycle(reading.cycle_start),
    })
}

/// What a carrier's own day of usage (ThingSpace's daily history) records for a SIM whose stored
/// cycle-to-date is `stored`: the day, and the cycle total with the day added (a day in another
/// month than the stored total's cycle begins a new cycle: bill cycles are taken as calendar
/// months). `None` when that day is recorded already.
pub fn record_day(iccid: &str, stored: &CycleUsage, day: DailyUsage) -> Option<UsageRecord> {
    if stored.through.is_some_and(|last| last >= day.day) {
        return None;
    }
    let cycle_start = day.day.replace_day(1).unwrap_or(day.day);
    let (data_bytes, sms) = if stored.cycle_start == Some(cycle_start) {
        (stored.data_bytes + day.data_bytes, stored.sms + day.sms)
    } else {
        (day.data_bytes, day.sms)
    };
    Some(UsageRecord {
        iccid: iccid.to_owned(),
        day: Some(day),
        cycle: CycleUsage {
            cycle_start: Some(cycle_start),
            through: Some(day.day),
            data_bytes,
            sms,
        },
    })
}

/// What a carrier's total for the days `from` through `through` (ThingSpace's aggregate usage)
/// records for a SIM whose stored cycle-to-date is `stored`. A single day is recorded as that
/// day; a longer span (a SIM not read before, or days missed) only sets the cycle total: from
/// the month's first day it is the whole cycle so far, right after the stored total it adds to
/// it. `None` when `through` is recorded already, or when the span neither starts the month
/// nor continues the stored total (its days are asked again with the next collection).
pub fn record_span(
    iccid: &str,
    stored: &CycleUsage,
    span: UsageSpan,
    data_bytes: u64,
    sms: u64,
) -> Option<UsageRecord> {
    let UsageSpan { from, through } = span;
    if from == through {
        let day = DailyUsage {
            day: through,
            data_bytes,
            sms,
        };
        return record_day(iccid, stored, day);
    }
    if from > through || stored.through.is_some_and(|last| last >= through) {
        return None;
    }
    let cycle_start = through.replace_day(1).unwrap_or(through);
    let continues = stored.cycle_start == Some(cycle_start)
        && stored.through.and_then(Date::next_day) == Some(from);
    let (data_bytes, sms) = if from == cycle_start {
        (data_bytes, sms)
    } else if continues {
        (stored.data_bytes + data_bytes, stored.sms + sms)
    } else {
        return None;
    };
    Some(UsageRecord {
        iccid: iccid.to_owned(),
        day: None,
        cycle: CycleUsage {
            cycle_start: Some(cycle_start),
            through: Some(through),
            data_bytes,
            sms,
        },
    })
}

/// Days `from` through `through`, both included, within one calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageSpan {
    #[serde(with = "cellbridge_core::clock::iso_date")]
    pub from: Date,
    #[serde(with = "cellbridge_core::clock::iso_date")]
    pub through: Date,
}

impl UsageSpan {
    /// The days a SIM whose stored cycle-to-date is `stored` still needs through `through`:
    /// from the day after the stored total when that total is this month's, else from the
    /// month's first day (so the cycle total is whole at once); `None` when nothing is missing.
    pub fn missing(stored: &CycleUsage, through: Date) -> Option<Self> {
        let month_start = through.replace_day(1).unwrap_or(through);
        let from = match stored.through {
            Some(last) if last >= through => return None,
            Some(last) if stored.cycle_start == Some(month_start) => {
                last.next_day().unwrap_or(through)
            }
            _ => month_start,
        };
        Some(Self { from, through })
    }
}

/// Usage asked of a carrier for many SIMs at once and sent back later SIM by SIM (ThingSpace's
/// aggregate usage comes by callback naming only the request): what a callback needs to record
/// it for the right tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageRequest {
    pub request_id: String,
    pub tenant_id: String,
    pub service_provider_id: String,
    pub span: UsageSpan,
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: time::OffsetDateTime,
    /// How long the day a callback records is kept (the collection's retention).
    #[serde(with = "time::serde::rfc3339")]
    pub keep_days_until: time::OffsetDateTime,
}

/// The totals of `days`.
pub fn total(days: &[DailyUsage]) -> (u64, u64) {
    days.iter().fold((0, 0), |(data, sms), day| {
        (data + day.data_bytes, sms + day.sms)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn reading(cycle_start: Option<Date>, data_bytes: u64, sms: u64) -> CycleReading {
        CycleReading {
            cycle_start,
            data_bytes,
            sms,
        }
    }

    #[test]
    fn a_day_is_the_difference_between_two_readings() {
        let first = record_reading(
            "8901",
            &CycleUsage::default(),
            reading(Some(date!(2026 - 12 - 01)), 5_000, 3),
            date!(2026 - 12 - 03),
        )
        .expect("a first reading");
        assert_eq!(first.day, None, "the first reading tells no single day");
        assert_eq!(first.cycle.through, Some(date!(2026 - 12 - 03)));

        let second = record_reading(
            "8901",
            &first.cycle,
            reading(Some(date!(2026 - 12 - 01)), 7_500, 4),
            date!(2026 - 12 - 04),
        )
        .expect("the next day");
        assert_eq!(
            second.day,
            Some(DailyUsage {
                day: date!(2026 - 12 - 04),
                data_bytes: 2_500,
                sms: 1
            })
        );
        assert_eq!(second.cycle.data_bytes, 7_500);
        assert_eq!(
            record_reading(
                "8901",
                &second.cycle,
                reading(Some(date!(2026 - 12 - 01)), 9_000, 4),
                date!(2026 - 12 - 04)
            ),
            None,
            "a day recorded already is not recorded again"
        );
    }

    #[test]
    fn a_carriers_days_add_up_within_the_month() {
        let day = |d: Date, data_bytes: u64| DailyUsage {
            day: d,
            data_bytes,
            sms: 1,
        };
        let first = record_day(
            "8901",
            &CycleUsage::default(),
            day(date!(2026 - 11 - 30), 900),
        )
        .expect("a day");
        assert_eq!(first.cycle.cycle_start, Some(date!(2026 - 11 - 01)));
        assert_eq!(first.cycle.data_bytes, 900);
        let next =
            record_day("8901", &first.cycle, day(date!(2026 - 12 - 01), 100)).expect("a day");
        assert_eq!(
            (
                next.cycle.cycle_start,
                next.cycle.data_bytes,
                next.cycle.sms
            ),
            (Some(date!(2026 - 12 - 01)), 100, 1),
            "December begins a new cycle"
        );
        let after = record_day("8901", &next.cycle, day(date!(2026 - 12 - 02), 50)).expect("a day");
        assert_eq!((after.cycle.data_bytes, after.cycle.sms), (150, 2));
        assert_eq!(
            record_day("8901", &after.cycle, day(date!(2026 - 12 - 02), 50)),
            None,
            "recorded already"
        );
    }

    #[test]
    fn a_span_sets_or_continues_the_cycle_total() {
        let span = |from, through| UsageSpan { from, through };
        // A SIM not read before: its whole month so far, no single day.
        let missing = UsageSpan::missing(&CycleUsage::default(), date!(2026 - 12 - 04));
        assert_eq!(
            missing,
            Some(span(date!(2026 - 12 - 01), date!(2026 - 12 - 04)))
        );
        let first = record_span("8901", &CycleUsage::default(), missing.unwrap(), 4_000, 4)
            .expect("the month so far");
        assert_eq!(first.day, None);
        assert_eq!(
            (
                first.cycle.cycle_start,
                first.cycle.through,
                first.cycle.data_bytes
            ),
            (
                Some(date!(2026 - 12 - 01)),
                Some(date!(2026 - 12 - 04)),
                4_000
            )
        );
        // The next day is a day, added to the total.
        let next_span = UsageSpan::missing(&first.cycle, date!(2026 - 12 - 05)).unwrap();
        assert_eq!(
            next_span,
            span(date!(2026 - 12 - 05), date!(2026 - 12 - 05))
        );
        let next = record_span("8901", &first.cycle, next_span, 500, 1).expect("a day");
        assert_eq!(
            next.day.map(|d| (d.day, d.data_bytes)),
            Some((date!(2026 - 12 - 05), 500))
        );
        assert_eq!((next.cycle.data_bytes, next.cycle.sms), (4_500, 5));
        // Days missed: the span continues the total without telling single days.
        let gap = UsageSpan::missing(&next.cycle, date!(2026 - 12 - 08)).unwrap();
        assert_eq!(gap, span(date!(2026 - 12 - 06), date!(2026 - 12 - 08)));
        let after = record_span("8901", &next.cycle, gap, 1_500, 0).expect("the gap");
        assert_eq!((after.day, after.cycle.data_bytes), (None, 6_000));
        // Repeated (a duplicated callback), or not continuing what is stored: nothing.
        assert_eq!(record_span("8901", &after.cycle, gap, 1_500, 0), None);
        let stale = span(date!(2026 - 12 - 03), date!(2026 - 12 - 09));
        assert_eq!(record_span("8901", &after.cycle, stale, 9, 9), None);
        // A new month starts again from its first day.
        let december = UsageSpan::missing(&after.cycle, date!(2027 - 01 - 02)).unwrap();
        assert_eq!(december.from, date!(2027 - 01 - 01));
        assert_eq!(
            UsageSpan::missing(&after.cycle, date!(2026 - 12 - 08)),
            None
        );
    }

    #[test]
    fn a_new_cycle_counts_from_its_start() {
        let stored = CycleUsage {
            cycle_start: None,
            through: Some(date!(2026 - 11 - 30)),
            data_bytes: 90_000,
            sms: 40,
        };
        // Jasper gives no cycle dates: totals that went down began again.
        let record = record_reading(
            "8901",
            &stored,
            reading(None, 1_200, 2),
            date!(2026 - 12 - 01),
        )
        .expect("a new cycle");
        assert_eq!(record.day.map(|d| (d.data_bytes, d.sms)), Some((1_200, 2)));
        assert_eq!(record.cycle.data_bytes, 1_200);

        // With the carrier's dates, a new cycle start says so even when totals grew.
        let stored = CycleUsage {
            cycle_start: Some(date!(2026 - 11 - 01)),
            through: Some(date!(2026 - 11 - 30)),
            data_bytes: 100,
            sms: 0,
        };
        let record = record_reading(
            "8901",
            &stored,
            reading(Some(date!(2026 - 12 - 01)), 400, 1),
            date!(2026 - 12 - 01),
        )
        .expect("a new cycle");
        assert_eq!(record.day.map(|d| d.data_bytes), Some(400));
        assert_eq!(record.cycle.cycle_start, Some(date!(2026 - 12 - 01)));

        // A first reading on the cycle's first day is that day.
        let first = record_reading(
            "8901",
            &CycleUsage::default(),
            reading(Some(date!(2026 - 12 - 01)), 700, 0),
            date!(2026 - 12 - 01),
        )
        .expect("a first reading");
        assert_eq!(first.day.map(|d| d.data_bytes), Some(700));
    }
}
