//! Building and reading DynamoDB attribute values, shared by every table adapter. Times are
//! stored as epoch milliseconds (`N`) so conditions and indexes compare them as numbers.

use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;
use time::OffsetDateTime;

pub(crate) type Item = HashMap<String, AttributeValue>;

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn epoch_ms(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

/// `None` when the attribute is absent, not a number, or out of range.
pub(crate) fn time_from_epoch_ms(value: Option<&AttributeValue>) -> Option<OffsetDateTime> {
    let ms: i64 = value?.as_n().ok()?.parse().ok()?;
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_milliseconds_round_trip_and_bad_values_read_as_none() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_795_354_917_080_000_000).unwrap();
        assert_eq!(epoch_ms(at), 1_795_354_917_080);
        assert_eq!(time_from_epoch_ms(Some(&n(epoch_ms(at)))), Some(at));
        assert_eq!(time_from_epoch_ms(Some(&s("1795354917080"))), None);
        assert_eq!(time_from_epoch_ms(Some(&n("soon"))), None);
        assert_eq!(time_from_epoch_ms(None), None);
    }
}
