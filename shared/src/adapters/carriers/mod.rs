//! Carrier adapters over reqwest. Each maps its carrier's answers to [`CarrierError`].

pub mod jasper;

use crate::domain::carrier_error::CarrierError;
use std::time::Duration;

/// Connection and whole-call limits: a carrier that does not answer in time is a transient failure,
/// retried under the retry budget rather than holding the function.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// One HTTP client per cold start, shared by the adapters.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .user_agent(concat!("cellbridge/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Transport failures: all worth another try.
pub(crate) fn transport(error: reqwest::Error) -> CarrierError {
    // Display of reqwest errors names the URL but never the credentials, which travel in headers.
    CarrierError::Transient(error.to_string())
}

/// `Retry-After` in seconds (the HTTP-date form is not used by these carriers).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}
