//! The `Idempotency-Key` header of the routes that create something: a retry with the same key
//! returns what the first request created instead of creating it twice.

use crate::http::json_response;
use crate::http::problem::Problem;
use lambda_http::http::{header, StatusCode};
use lambda_http::{Body, Request, Response};

pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// Set (`true`) on the answer to a retry, which created nothing new.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
const MAX_KEY_LEN: usize = 128;

/// The caller's key, if it sent one; a key that is empty, too long or has characters outside
/// letters, digits and `-_.:` is a bad parameter (it is stored as part of a DynamoDB key).
pub fn idempotency_key(request: &Request) -> Result<Option<String>, Problem> {
    let Some(value) = request.headers().get(IDEMPOTENCY_HEADER) else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or("");
    let valid = (1..=MAX_KEY_LEN).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if !valid {
        return Err(Problem::bad_parameter(
            "Idempotency-Key",
            &format!("must be 1 to {MAX_KEY_LEN} characters of letters, digits, '-', '_', '.', ':' (a UUID is ideal)"),
        ));
    }
    Ok(Some(key.to_owned()))
}

/// 202 with the created (or, for a retry, the earlier) resource's view and its `Location`.
pub fn accepted<T: serde::Serialize>(view: &T, location: &str, replayed: bool) -> Response<Body> {
    let mut response = json_response(StatusCode::ACCEPTED, view);
    let headers = response.headers_mut();
    if let Ok(location) = location.parse() {
        headers.insert(header::LOCATION, location);
    }
    if replayed {
        headers.insert(REPLAYED_HEADER, header::HeaderValue::from_static("true"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_key(key: Option<&str>) -> Request {
        let mut builder = lambda_http::http::Request::builder();
        if let Some(key) = key {
            builder = builder.header(IDEMPOTENCY_HEADER, key);
        }
        builder
            .body(lambda_http::Body::Empty)
            .expect("a valid request")
    }

    #[test]
    fn a_uuid_is_a_key_and_no_header_is_none() {
        let uuid = "3f1c2a9e-7b4d-4e0a-9c51-2d8e6f0a1b7c";
        assert_eq!(
            idempotency_key(&with_key(Some(uuid))).ok(),
            Some(Some(uuid.to_owned()))
        );
        assert_eq!(idempotency_key(&with_key(None)).ok(), Some(None));
    }

    #[test]
    fn empty_long_or_odd_keys_are_bad_parameters() {
        let long = "k".repeat(MAX_KEY_LEN + 1);
        for key in ["", "has space", "semi;colon", long.as_str()] {
            let problem = idempotency_key(&with_key(Some(key))).expect_err(key);
            assert_eq!(problem.errors[0].field, "Idempotency-Key", "{key:?}");
        }
    }
}
