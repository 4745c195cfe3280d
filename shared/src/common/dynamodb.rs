//! DynamoDB helpers every table adapter shares: attribute values (times as epoch milliseconds,
//! `N`, so conditions and indexes compare them as numbers), item (de)serialization through
//! serde_dynamo, and the mapping of SDK failures and failed conditions.

use crate::common::aws::sdk_failure;
use crate::common::store::StoreError;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::de::DeserializeOwned;
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

/// The full cause chain of an SDK error; the plain Display of `SdkError` says only "service error".
pub(crate) fn sdk_message<E: std::error::Error>(error: E) -> String {
    aws_sdk_dynamodb::error::DisplayErrorContext(error).to_string()
}

pub(crate) fn to_item<T: serde::Serialize>(value: &T) -> Result<Item, StoreError> {
    serde_dynamo::to_item(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn from_item<T: DeserializeOwned>(item: Item) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A failed DynamoDB call as a [`StoreError`] that says whether trying again can help.
pub(crate) fn backend<E>(error: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    sdk_failure(error, StoreError::Unavailable, StoreError::Rejected)
}

/// A request the SDK refused to build fails the same way every time.
pub(crate) fn unbuildable(error: impl std::error::Error) -> StoreError {
    StoreError::Rejected(error.to_string())
}

/// `Ok(true)` when a conditional write happened, `Ok(false)` when its condition did not hold.
pub(crate) fn written_unless_condition_failed<T, E>(
    result: Result<T, SdkError<E, HttpResponse>>,
    condition_failed: impl Fn(&E) -> bool,
) -> Result<bool, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(error) if error.as_service_error().is_some_and(&condition_failed) => Ok(false),
        Err(error) => Err(backend(error)),
    }
}

/// [`written_unless_condition_failed`] for conditional `UpdateItem` calls.
pub(crate) fn updated_unless_condition_failed<T>(
    result: Result<T, SdkError<UpdateItemError, HttpResponse>>,
) -> Result<bool, StoreError> {
    written_unless_condition_failed(result, |e| {
        matches!(e, UpdateItemError::ConditionalCheckFailedException(_))
    })
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
