//! Carrier adapters over reqwest. Each maps its carrier's answers to [`CarrierError`] and records
//! every HTTP exchange, secrets removed, in the caller's [`CallJournal`].

use crate::error::CarrierError;
use crate::port::{CallJournal, CarrierExchange};
use cellbridge_core::redact::redact;
use std::time::{Duration, Instant};

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

/// A carrier's answer, read whole so it can be both audited and parsed.
#[derive(Debug)]
pub struct CarrierResponse {
    pub status: reqwest::StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: bytes::Bytes,
}

impl CarrierResponse {
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// Sends `request` and records the exchange in `journal` with `secrets` (and every secret-named
/// field or header value) removed from the URL and both bodies. Headers are not recorded: that is
/// where credentials travel.
pub async fn send_recorded(
    http: &reqwest::Client,
    request: reqwest::Request,
    secrets: &[&str],
    journal: &CallJournal,
) -> Result<CarrierResponse, CarrierError> {
    let method = request.method().to_string();
    let url = redact(request.url().as_str(), secrets);
    let request_body = request
        .body()
        .and_then(reqwest::Body::as_bytes)
        .map(|bytes| redact(&String::from_utf8_lossy(bytes), secrets));
    let started = Instant::now();
    let answer = async {
        let response = http.execute(request).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?;
        Ok::<_, reqwest::Error>(CarrierResponse {
            status,
            headers,
            body,
        })
    }
    .await;
    let (status, response_body) = match &answer {
        Ok(response) => (
            Some(response.status.as_u16()),
            Some(redact(&String::from_utf8_lossy(&response.body), secrets)),
        ),
        Err(error) => (None, Some(redact(&error.to_string(), secrets))),
    };
    journal.record(CarrierExchange {
        method,
        url,
        request_body,
        status,
        response_body,
        duration: started.elapsed(),
    });
    answer.map_err(transport)
}
