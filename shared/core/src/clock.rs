//! Time formatting shared by records and responses.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub fn rfc3339(at: OffsetDateTime) -> String {
    // Formatting a valid OffsetDateTime as RFC 3339 fails only for years beyond 9999.
    at.format(&Rfc3339).unwrap_or_default()
}

/// Milliseconds since the Unix epoch, as devices and the stores count time.
pub fn epoch_ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The time `ms` milliseconds after the Unix epoch (the epoch itself for a time `time` cannot
/// hold).
pub fn from_epoch_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

// Days as `YYYY-MM-DD` in records and responses (`#[serde(with = "iso_date")]`), which also
// orders them as strings, rather than serde's default tuple of year and day of the year.
time::serde::format_description!(pub iso_date, Date, "[year]-[month]-[day]");

/// `day` as `YYYY-MM-DD`.
pub fn format_day(day: time::Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

/// A `YYYY-MM-DD` day; `None` for anything else.
pub fn parse_day(text: &str) -> Option<time::Date> {
    time::Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()
}
