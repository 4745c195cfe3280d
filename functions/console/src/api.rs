//! The console reads and acts through the same HTTP API as every other client, with the signed-in
//! user's token: the API stays the one authority on what a user may see and do, and the console
//! needs no access to any table.

use async_trait::async_trait;
use lambda_http::http::Method;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

/// One field the API found at fault, as its RFC 9457 problems name them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// An API refusal (RFC 9457 problem details), shown to the user where it applies.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
pub struct ApiProblem {
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub status: u16,
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub errors: Vec<FieldError>,
}

impl ApiProblem {
    /// What the API said about `field`, if anything.
    pub fn about(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.message.as_str())
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The token is missing, expired or revoked (or, signing in, the password is wrong): the
    /// user must sign in again.
    #[error("{}", .0.detail)]
    Unauthorized(ApiProblem),
    /// The API refused the request (4xx): its problem says why; asking again will not help.
    #[error("{}", .0.detail)]
    Refused(ApiProblem),
    /// The API or the way to it failed (5xx, timeout, connection): asking again may help.
    #[error("the API is unavailable: {0}")]
    Unavailable(String),
    /// An answer the console cannot read: a bug on one side.
    #[error("the API answered in an unexpected way: {0}")]
    Unexpected(String),
}

impl ApiError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, ApiError::Unavailable(_))
    }

    /// What a form shows for this failure: the API's problem, or one saying the API could not be
    /// reached (502). `None` when the session ended, which no form can show.
    pub fn into_form_problem(self) -> Option<ApiProblem> {
        match self {
            ApiError::Unauthorized(_) => None,
            ApiError::Refused(problem) => Some(problem),
            other => Some(ApiProblem {
                status: 502,
                detail: other.to_string(),
                ..ApiProblem::default()
            }),
        }
    }
}

/// A request to the API: the path with its query, the user's token, and a JSON body.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: Method,
    pub path_and_query: String,
    pub token: Option<String>,
    pub body: Option<Value>,
    /// Makes a create safe to send twice (a double click, a resent form).
    pub idempotency_key: Option<String>,
}

impl ApiRequest {
    pub fn get(path_and_query: impl Into<String>, token: &str) -> Self {
        Self {
            method: Method::GET,
            path_and_query: path_and_query.into(),
            token: Some(token.to_owned()),
            body: None,
            idempotency_key: None,
        }
    }

    pub fn post(path: impl Into<String>, token: Option<&str>, body: Value) -> Self {
        Self {
            method: Method::POST,
            path_and_query: path.into(),
            token: token.map(str::to_owned),
            body: Some(body),
            idempotency_key: None,
        }
    }
}

/// The portal API, as the console calls it.
#[async_trait]
pub trait PortalApi: Send + Sync {
    /// The JSON answer of a 2xx, or why there is none.
    async fn call(&self, request: ApiRequest) -> Result<Value, ApiError>;
}

/// The API as one request's pages call it, timing the calls: how long the page waited on the
/// API (overlapping calls counted once), for the `Server-Timing` header.
pub struct TimedApi {
    inner: std::sync::Arc<dyn PortalApi>,
    calls: std::sync::Mutex<Vec<(std::time::Instant, std::time::Instant)>>,
}

impl TimedApi {
    pub fn new(inner: std::sync::Arc<dyn PortalApi>) -> Self {
        Self {
            inner,
            calls: std::sync::Mutex::default(),
        }
    }

    /// The time during which at least one call was waiting.
    pub fn waited(&self) -> Duration {
        let mut calls = self
            .calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        calls.sort();
        let mut total = Duration::ZERO;
        let mut current: Option<(std::time::Instant, std::time::Instant)> = None;
        for (start, end) in calls {
            current = match current {
                Some((s, e)) if start <= e => Some((s, e.max(end))),
                Some((s, e)) => {
                    total += e - s;
                    Some((start, end))
                }
                None => Some((start, end)),
            };
        }
        if let Some((s, e)) = current {
            total += e - s;
        }
        total
    }
}

#[async_trait]
impl PortalApi for TimedApi {
    async fn call(&self, request: ApiRequest) -> Result<Value, ApiError> {
        let started = std::time::Instant::now();
        let answer = self.inner.call(request).await;
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((started, std::time::Instant::now()));
        answer
    }
}

/// `GET` a path with the user's token, read into `T`.
pub async fn get<T: DeserializeOwned>(
    api: &dyn PortalApi,
    token: &str,
    path_and_query: &str,
) -> Result<T, ApiError> {
    let value = api.call(ApiRequest::get(path_and_query, token)).await?;
    serde_json::from_value(value)
        .map_err(|e| ApiError::Unexpected(format!("GET {path_and_query}: {e}")))
}

/// `path?query` with the pairs whose values are not empty, encoded.
pub fn with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    let present: Vec<(&str, &str)> = pairs
        .iter()
        .copied()
        .filter(|(_, v)| !v.is_empty())
        .collect();
    match serde_urlencoded::to_string(&present) {
        Ok(query) if !query.is_empty() => format!("{path}?{query}"),
        _ => path.to_owned(),
    }
}

/// The API over HTTPS (HTTP locally).
pub struct HttpPortalApi {
    http: reqwest::Client,
    base_url: String,
}

/// A page waits on the API; beyond this the user is better served by an error they can retry.
pub const API_TIMEOUT: Duration = Duration::from_secs(10);

impl HttpPortalApi {
    pub fn new(base_url: &str) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(API_TIMEOUT)
            .connect_timeout(Duration::from_secs(3))
            .build()?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
        })
    }
}

#[async_trait]
impl PortalApi for HttpPortalApi {
    async fn call(&self, request: ApiRequest) -> Result<Value, ApiError> {
        let url = format!("{}{}", self.base_url, request.path_and_query);
        let mut builder = self.http.request(request.method.clone(), &url);
        if let Some(token) = &request.token {
            builder = builder.bearer_auth(token);
        }
        if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        if let Some(key) = &request.idempotency_key {
            builder = builder.header("idempotency-key", key);
        }
        let what = format!("{} {}", request.method, request.path_and_query);
        let response = builder
            .send()
            .await
            .map_err(|e| ApiError::Unavailable(format!("{what}: {e}")))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ApiError::Unavailable(format!("{what}: reading the answer: {e}")))?;
        read_answer(status.as_u16(), &bytes).map_err(|e| match e {
            ApiError::Unavailable(why) => ApiError::Unavailable(format!("{what}: {why}")),
            other => other,
        })
    }
}

/// An answer's status and body as the console's result.
pub fn read_answer(status: u16, body: &[u8]) -> Result<Value, ApiError> {
    match status {
        200..=299 if body.is_empty() => Ok(Value::Null),
        200..=299 => serde_json::from_slice(body)
            .map_err(|e| ApiError::Unexpected(format!("a {status} answer is not JSON: {e}"))),
        400..=499 => {
            let mut problem: ApiProblem = serde_json::from_slice(body).unwrap_or_default();
            problem.status = status;
            if problem.detail.is_empty() {
                problem.detail = match status {
                    401 => "your session has ended; sign in again".to_owned(),
                    _ => format!("the API refused the request ({status})"),
                };
            }
            Err(match status {
                401 => ApiError::Unauthorized(problem),
                _ => ApiError::Refused(problem),
            })
        }
        _ => Err(ApiError::Unavailable(format!("the API answered {status}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_told_apart_by_what_helps_next() {
        assert_eq!(
            read_answer(200, br#"{"items":[]}"#).ok(),
            Some(serde_json::json!({"items": []}))
        );
        assert!(matches!(
            read_answer(401, b""),
            Err(ApiError::Unauthorized(_))
        ));
        let refused = read_answer(
            400,
            br#"{"type":"about:blank","title":"Bad parameter","status":400,"detail":"iccidPrefix must be digits","errors":[{"field":"iccidPrefix","message":"must be digits"}]}"#,
        );
        match refused {
            Err(ApiError::Refused(problem)) => {
                assert_eq!(problem.about("iccidPrefix"), Some("must be digits"));
                assert_eq!(problem.about("status"), None);
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        let forbidden = read_answer(403, b"not json");
        assert!(
            matches!(&forbidden, Err(ApiError::Refused(p)) if p.status == 403 && !p.detail.is_empty())
        );
        let down = read_answer(503, b"Service Unavailable");
        assert!(down.as_ref().is_err_and(ApiError::is_retryable));
        assert!(!forbidden.is_err_and(|e| e.is_retryable()));
    }

    #[test]
    fn overlapping_calls_are_waited_on_once() {
        let timed = TimedApi::new(std::sync::Arc::new(
            HttpPortalApi::new("http://127.0.0.1:9").expect("client"),
        ));
        let base = std::time::Instant::now();
        let at = |ms: u64| base + Duration::from_millis(ms);
        *timed.calls.lock().expect("calls") =
            vec![(at(20), at(25)), (at(0), at(10)), (at(5), at(15))];
        assert_eq!(timed.waited(), Duration::from_millis(20));
        assert_eq!(
            TimedApi::new(std::sync::Arc::new(
                HttpPortalApi::new("http://127.0.0.1:9").expect("client")
            ))
            .waited(),
            Duration::ZERO
        );
    }

    #[test]
    fn queries_leave_out_empty_values_and_encode_the_rest() {
        assert_eq!(
            with_query("/sims", &[("status", "active"), ("carrier", "")]),
            "/sims?status=active"
        );
        assert_eq!(with_query("/sims", &[("carrier", "")]), "/sims");
        assert_eq!(
            with_query("/sims", &[("cursor", "a+b/c=")]),
            "/sims?cursor=a%2Bb%2Fc%3D"
        );
    }
}
