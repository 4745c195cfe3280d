//! Opaque pagination cursors. They carry only the sort-key position; the partition key is always
//! rebuilt from the caller's tenant, so a cursor can never page into another tenant's records.

use crate::store::StoreError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub fn encode<T: Serialize>(position: &T) -> String {
    // Serializing a plain position struct cannot fail.
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(position).unwrap_or_default())
}

pub fn decode<T: DeserializeOwned>(cursor: &str) -> Result<T, StoreError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| StoreError::InvalidCursor)?;
    serde_json::from_slice(&bytes).map_err(|_| StoreError::InvalidCursor)
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AfterId {
    pub after: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AfterSeq {
    pub after: u32,
}

/// A position in a time series, in ms since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AfterMs {
    pub after: i64,
}

/// The `after` of an id cursor, parsed by `parse` (usernames, thing names: each has its own
/// alphabet, and checking it keeps arbitrary text out of key conditions).
pub fn decode_after_parsed<T>(
    cursor: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, StoreError> {
    let position: AfterId = decode(cursor)?;
    parse(&position.after).ok_or(StoreError::InvalidCursor)
}

/// Bulk change ids are UUIDs; checking the shape keeps arbitrary text out of key conditions.
pub fn decode_after_id(cursor: &str) -> Result<AfterId, StoreError> {
    let position: AfterId = decode(cursor)?;
    uuid::Uuid::parse_str(&position.after).map_err(|_| StoreError::InvalidCursor)?;
    Ok(position)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_rejected() {
        let cursor = encode(&AfterSeq { after: 42 });
        assert_eq!(decode::<AfterSeq>(&cursor).unwrap(), AfterSeq { after: 42 });
        assert!(matches!(
            decode::<AfterSeq>("%%%"),
            Err(StoreError::InvalidCursor)
        ));
        assert!(matches!(
            decode_after_id(&encode(&AfterId {
                after: "x#y".into()
            })),
            Err(StoreError::InvalidCursor)
        ));
    }
}
