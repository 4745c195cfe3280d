//! DynamoDB helpers every table adapter shares: attribute values (times as epoch milliseconds,
//! `N`, so conditions and indexes compare them as numbers), item (de)serialization through
//! serde_dynamo, and the mapping of SDK failures and failed conditions.

use crate::aws::sdk_failure;
use crate::store::StoreError;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::de::value::{MapAccessDeserializer, StrDeserializer};
use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess};
use std::collections::HashMap;

pub type Item = HashMap<String, AttributeValue>;

pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub use crate::clock::epoch_ms;

/// The full cause chain of an SDK error; the plain Display of `SdkError` says only "service error".
pub fn sdk_message<E: std::error::Error>(error: E) -> String {
    aws_sdk_dynamodb::error::DisplayErrorContext(error).to_string()
}

pub fn to_item<T: serde::Serialize>(value: &T) -> Result<Item, StoreError> {
    serde_dynamo::to_item(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// `item` as a `T`; a corrupt item's error names the attribute at fault (serde_dynamo's own
/// message says only what kind of value it expected, e.g. "Expected string").
pub fn from_item<T: DeserializeOwned>(item: Item) -> Result<T, StoreError> {
    deserialize(item).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// [`from_item`] with the kind of item (`what`, e.g. "command item") leading its errors.
pub fn from_item_named<T: DeserializeOwned>(what: &str, item: Item) -> Result<T, StoreError> {
    deserialize(item).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn deserialize<T: DeserializeOwned>(item: Item) -> Result<T, serde_dynamo::Error> {
    T::deserialize(MapAccessDeserializer::new(Attributes {
        entries: item.into_iter(),
        pending: None,
    }))
}

/// An item's attributes handed to serde one by one, each value through serde_dynamo.
struct Attributes {
    entries: std::collections::hash_map::IntoIter<String, AttributeValue>,
    /// The attribute whose name was just handed out and whose value comes next.
    pending: Option<(String, AttributeValue)>,
}

impl<'de> MapAccess<'de> for Attributes {
    type Error = serde_dynamo::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let Some((name, value)) = self.entries.next() else {
            return Ok(None);
        };
        let key = seed.deserialize(StrDeserializer::<Self::Error>::new(&name))?;
        self.pending = Some((name, value));
        Ok(Some(key))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let (name, value) = self
            .pending
            .take()
            .ok_or_else(|| de::Error::custom("a value asked for before its attribute"))?;
        seed.deserialize(serde_dynamo::Deserializer::from_attribute_value(
            value.into(),
        ))
        .map_err(|e| de::Error::custom(format!("{name}: {e}")))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// A failed DynamoDB call as a [`StoreError`] that says whether trying again can help.
pub fn backend<E>(error: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    sdk_failure(error, StoreError::Unavailable, StoreError::Rejected)
}

/// A request the SDK refused to build fails the same way every time.
pub fn unbuildable(error: impl std::error::Error) -> StoreError {
    StoreError::Rejected(error.to_string())
}

/// `Ok(true)` when a conditional write happened, `Ok(false)` when its condition did not hold.
pub fn written_unless_condition_failed<T, E>(
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

/// Whether a `TransactWriteItems` was cancelled because a condition of one of its items did not
/// hold (another writer came first), rather than for a reason trying again cannot mend.
pub fn transaction_cancelled_on_condition(error: &TransactWriteItemsError) -> bool {
    match error {
        TransactWriteItemsError::TransactionCanceledException(cancelled) => cancelled
            .cancellation_reasons()
            .iter()
            .any(|reason| reason.code() == Some("ConditionalCheckFailed")),
        _ => false,
    }
}

/// [`written_unless_condition_failed`] for conditional `UpdateItem` calls.
pub fn updated_unless_condition_failed<T>(
    result: Result<T, SdkError<UpdateItemError, HttpResponse>>,
) -> Result<bool, StoreError> {
    written_unless_condition_failed(result, |e| {
        matches!(e, UpdateItemError::ConditionalCheckFailedException(_))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};
    use time::OffsetDateTime;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Sample {
        name: String,
        #[serde(flatten)]
        counts: Counts,
        shape: Shape,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Counts {
        total: u32,
        done: u32,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type", rename_all = "camelCase")]
    enum Shape {
        Square { side: i64 },
        Dot,
    }

    fn sample() -> Sample {
        Sample {
            name: "a".into(),
            counts: Counts { total: 3, done: 1 },
            shape: Shape::Square { side: -2 },
            note: None,
        }
    }

    #[test]
    fn items_read_back_as_serde_dynamo_reads_them() {
        let item = to_item(&sample()).expect("item");
        assert_eq!(item.get("total"), Some(&n(3)));
        assert!(!item.contains_key("note"));
        let plain: Sample = serde_dynamo::from_item(item.clone()).expect("serde_dynamo");
        assert_eq!(plain, sample());
        assert_eq!(from_item::<Sample>(item).expect("read"), sample());
        let dot = Sample {
            shape: Shape::Dot,
            note: Some("n".into()),
            ..sample()
        };
        let item = to_item(&dot).expect("item");
        assert_eq!(from_item::<Sample>(item).expect("read"), dot);
    }

    #[test]
    fn corrupt_items_name_the_attribute_at_fault() {
        let why = |change: &dyn Fn(&mut Item)| {
            let mut item = to_item(&sample()).expect("item");
            change(&mut item);
            match from_item::<Sample>(item) {
                Err(StoreError::Corrupt(why)) => why,
                other => panic!("expected a corrupt item, got {other:?}"),
            }
        };
        let wrong_kind = why(&|i| {
            i.insert("name".into(), n(7));
        });
        assert!(wrong_kind.starts_with("name: "), "{wrong_kind}");
        let missing = why(&|i| {
            i.remove("name");
        });
        assert!(missing.contains("`name`"), "{missing}");
        let bad_note = why(&|i| {
            i.insert("note".into(), AttributeValue::Bool(true));
        });
        assert!(bad_note.starts_with("note: "), "{bad_note}");
        let named = from_item_named::<Sample>("sample item", Item::new())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(named.contains("sample item: missing field"), "{named}");
    }

    /// Update expressions write times with `epoch_ms`, item structs with time's
    /// `milliseconds_i64`: both must give the same number.
    #[test]
    fn epoch_milliseconds_agree_with_item_structs_and_bad_values_are_corrupt() {
        #[derive(Debug, Serialize, Deserialize)]
        struct Stamp {
            #[serde(with = "time::serde::timestamp::milliseconds_i64")]
            at: OffsetDateTime,
        }
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_795_354_917_080_700_000).unwrap();
        assert_eq!(epoch_ms(at), 1_795_354_917_080);
        let item = to_item(&Stamp { at }).expect("item");
        assert_eq!(item, HashMap::from([("at".to_owned(), n(epoch_ms(at)))]));
        let whole_ms =
            OffsetDateTime::from_unix_timestamp_nanos(1_795_354_917_080_000_000).unwrap();
        assert_eq!(from_item::<Stamp>(item).expect("read").at, whole_ms);
        for bad in [s("1795354917080"), n("soon")] {
            match from_item::<Stamp>(HashMap::from([("at".to_owned(), bad)])) {
                Err(StoreError::Corrupt(why)) => assert!(why.starts_with("at: "), "{why}"),
                other => panic!("expected a corrupt item, got {other:?}"),
            }
        }
    }
}
