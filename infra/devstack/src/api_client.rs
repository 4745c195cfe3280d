//! A typed client of the cellbridge HTTP API, as a portal user calls it. Responses are read into
//! the same view types the functions serialize (`BulkChangeView`, `DeviceView`, ...), so the
//! client and the API cannot drift apart unnoticed. The end-to-end scenarios, the
//! `cargo xtask dev` demonstration and the benchmarks all go through it; only checks of raw HTTP
//! behaviour (status codes of malformed requests, headers) use an HTTP client directly.

use cellbridge::bulk_changes::views::{BulkChangeView, DeviceChangeView};
use cellbridge::carriers::provider::{ProviderView, TestResult};
use cellbridge::devices::views::{CommandView, DeviceView, TelemetryView};
use cellbridge::edge::http::page_view::PageView;
use cellbridge::edge::http::problem::Problem;
use cellbridge::identity::views::{LoginView, UserView};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::{Duration, Instant};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Why a call did not give the expected answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The API answered with an error status and its RFC 9457 problem.
    #[error("{method} {path} answered {status}: {} ({})", problem.title, problem.detail)]
    Refused {
        method: Method,
        path: String,
        status: StatusCode,
        problem: Box<Problem>,
    },
    /// The answer did not have the shape the API documents.
    #[error("{method} {path} answered {status} with a body that does not read as expected ({reason}): {body}")]
    Unexpected {
        method: Method,
        path: String,
        status: StatusCode,
        reason: String,
        body: String,
    },
    #[error("{method} {path} failed before an answer: {source}")]
    Transport {
        method: Method,
        path: String,
        source: reqwest::Error,
    },
    #[error("{what} still not done after {waited:?}; last seen: {last}")]
    TimedOut {
        what: String,
        waited: Duration,
        last: String,
    },
    #[error("the bearer token cannot be sent as a header: {0}")]
    InvalidToken(#[from] reqwest::header::InvalidHeaderValue),
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
}

impl ApiError {
    /// The HTTP status the API answered, when it answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ApiError::Refused { status, .. } | ApiError::Unexpected { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The problem the API answered with, when it refused.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            ApiError::Refused { problem, .. } => Some(problem),
            _ => None,
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// A client of one API, signed in as one user (or not signed in at all).
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl std::fmt::Debug for ApiClient {
    // Derived Debug would print the bearer token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("base", &self.base)
            .field("signed_in", &self.token.is_some())
            .finish()
    }
}

impl ApiClient {
    /// A client that sends no token: what an anonymous caller gets.
    pub fn anonymous(base: &str) -> ApiResult<Self> {
        Self::build(base, None)
    }

    /// A client that sends `token` as the bearer token of every request.
    pub fn with_token(base: &str, token: &str) -> ApiResult<Self> {
        Self::build(base, Some(token.to_owned()))
    }

    /// Signs in through `POST /auth/login`; the client then calls as that user.
    pub async fn sign_in(base: &str, username: &str, password: &str) -> ApiResult<Self> {
        let login = Self::anonymous(base)?.login(username, password).await?;
        Self::with_token(base, &login.token)
    }

    fn build(base: &str, token: Option<String>) -> ApiResult<Self> {
        let mut headers = HeaderMap::new();
        if let Some(token) = &token {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(ApiError::Client)?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// The bearer token this client sends, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    // ---------------------------------------------------------------------------------------
    // Identity

    /// `POST /auth/login`.
    pub async fn login(&self, username: &str, password: &str) -> ApiResult<LoginView> {
        let body = serde_json::json!({"username": username, "password": password});
        self.call(
            Method::POST,
            "/auth/login",
            |r| r.json(&body),
            StatusCode::OK,
        )
        .await
    }

    /// `GET /users`, every page.
    pub async fn users(&self) -> ApiResult<Vec<UserView<'static>>> {
        self.all_pages("/users").await
    }

    // ---------------------------------------------------------------------------------------
    // Bulk changes

    /// `POST /bulk-changes` with `body` (the documented request document); the accepted bulk
    /// change.
    pub async fn create_bulk_change(
        &self,
        body: &Value,
        idempotency_key: Option<&str>,
    ) -> ApiResult<BulkChangeView<'static>> {
        self.call(
            Method::POST,
            "/bulk-changes",
            |request| {
                let request = request.json(body);
                match idempotency_key {
                    Some(key) => request.header("idempotency-key", key),
                    None => request,
                }
            },
            StatusCode::ACCEPTED,
        )
        .await
    }

    /// `GET /bulk-changes/{id}`.
    pub async fn bulk_change(&self, id: &str) -> ApiResult<BulkChangeView<'static>> {
        self.get(&format!("/bulk-changes/{id}")).await
    }

    /// `GET /bulk-changes` with `query` (e.g. `status=completed`), every page.
    pub async fn bulk_changes(&self, query: &str) -> ApiResult<Vec<BulkChangeView<'static>>> {
        self.all_pages(&with_query("/bulk-changes", query)).await
    }

    /// One page of `GET /bulk-changes` with `query` (`limit`, `cursor`, `status`).
    pub async fn bulk_changes_page(
        &self,
        query: &str,
    ) -> ApiResult<PageView<BulkChangeView<'static>>> {
        self.get(&with_query("/bulk-changes", query)).await
    }

    /// `GET /bulk-changes/{id}/devices`, every page.
    pub async fn bulk_change_devices(&self, id: &str) -> ApiResult<Vec<DeviceChangeView<'static>>> {
        self.all_pages(&format!("/bulk-changes/{id}/devices")).await
    }

    /// Polls bulk changes until each is final; `progress` sees every round of views.
    /// `POST /bulk-changes/preview`: what `body`'s filter selects from the inventory.
    pub async fn preview_bulk_change(&self, body: &Value) -> ApiResult<Value> {
        self.call(
            Method::POST,
            "/bulk-changes/preview",
            |r| r.json(body),
            StatusCode::OK,
        )
        .await
    }

    pub async fn wait_bulk_changes_final(
        &self,
        ids: &[String],
        timeout: Duration,
        mut progress: impl FnMut(&[BulkChangeView<'static>]),
    ) -> ApiResult<Vec<BulkChangeView<'static>>> {
        let started = Instant::now();
        loop {
            let mut views = Vec::with_capacity(ids.len());
            for id in ids {
                views.push(self.bulk_change(id).await?);
            }
            progress(&views);
            if views.iter().all(|v| v.status.is_final()) {
                return Ok(views);
            }
            if started.elapsed() > timeout {
                return Err(ApiError::TimedOut {
                    what: format!("bulk changes {ids:?}"),
                    waited: timeout,
                    last: format!("{views:?}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Polls one bulk change until it is final.
    pub async fn wait_bulk_change_final(
        &self,
        id: &str,
        timeout: Duration,
    ) -> ApiResult<BulkChangeView<'static>> {
        let mut views = self
            .wait_bulk_changes_final(&[id.to_owned()], timeout, |_| {})
            .await?;
        views.pop().ok_or_else(|| ApiError::TimedOut {
            what: format!("bulk change {id}"),
            waited: timeout,
            last: "no view".to_owned(),
        })
    }

    // ---------------------------------------------------------------------------------------
    // Service providers

    /// `GET /service-providers`, every page.
    pub async fn service_providers(&self) -> ApiResult<Vec<ProviderView>> {
        self.all_pages("/service-providers").await
    }

    /// `POST /service-providers` with `body`; the created provider.
    pub async fn create_service_provider(&self, body: &Value) -> ApiResult<ProviderView> {
        self.call(
            Method::POST,
            "/service-providers",
            |request| request.json(body),
            StatusCode::CREATED,
        )
        .await
    }

    /// `POST /service-providers/{id}/test`: how the carrier took the stored credentials.
    pub async fn test_service_provider(&self, id: &str) -> ApiResult<TestResult> {
        self.call(
            Method::POST,
            &format!("/service-providers/{id}/test"),
            |request| request,
            StatusCode::OK,
        )
        .await
    }

    // ---------------------------------------------------------------------------------------
    // Devices and commands

    /// `GET /devices`, every page.
    pub async fn devices(&self) -> ApiResult<Vec<DeviceView<'static>>> {
        self.all_pages("/devices").await
    }

    /// `GET /devices/{id}`.
    pub async fn device(&self, id: &str) -> ApiResult<DeviceView<'static>> {
        self.get(&format!("/devices/{id}")).await
    }

    /// `GET /devices/{id}/telemetry?from=`, the first page (up to 1,000 points).
    pub async fn telemetry_since(
        &self,
        id: &str,
        from: OffsetDateTime,
    ) -> ApiResult<Vec<TelemetryView<'static>>> {
        let from = from.format(&Rfc3339).unwrap_or_default();
        let page: PageView<TelemetryView<'static>> = self
            .get(&format!(
                "/devices/{id}/telemetry?limit=1000&from={}",
                from.replace('+', "%2B")
            ))
            .await?;
        Ok(page.items)
    }

    /// The hourly summaries of `id`'s telemetry from `from` on.
    pub async fn telemetry_hours_since(
        &self,
        id: &str,
        from: OffsetDateTime,
    ) -> ApiResult<Vec<cellbridge::devices::views::HourView>> {
        let from = from.format(&Rfc3339).unwrap_or_default();
        let page: PageView<cellbridge::devices::views::HourView> = self
            .get(&format!(
                "/devices/{id}/telemetry?resolution=hour&from={}",
                from.replace('+', "%2B")
            ))
            .await?;
        Ok(page.items)
    }

    /// How many of `things` the API shows online.
    pub async fn online_among(
        &self,
        things: &std::collections::HashSet<String>,
    ) -> ApiResult<usize> {
        use cellbridge::devices::views::DeviceStatus;
        Ok(self
            .devices()
            .await?
            .iter()
            .filter(|d| d.status == DeviceStatus::Online && things.contains(d.id.as_ref()))
            .count())
    }

    /// Polls until every one of `things` is online or `timeout` passes; returns how many are.
    pub async fn wait_online(
        &self,
        things: &std::collections::HashSet<String>,
        timeout: Duration,
        mut progress: impl FnMut(usize),
    ) -> ApiResult<usize> {
        let started = Instant::now();
        loop {
            let online = self.online_among(things).await?;
            progress(online);
            if online == things.len() || started.elapsed() > timeout {
                return Ok(online);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// `POST /devices/{id}/commands`; the queued command.
    pub async fn send_command(
        &self,
        thing: &str,
        name: &str,
        params: Option<&Value>,
    ) -> ApiResult<CommandView<'static>> {
        let mut body = serde_json::json!({ "name": name });
        if let Some(params) = params {
            body["params"] = params.clone();
        }
        self.call(
            Method::POST,
            &format!("/devices/{thing}/commands"),
            |r| r.json(&body),
            StatusCode::ACCEPTED,
        )
        .await
    }

    /// `GET /devices/{id}/commands/{commandId}`.
    pub async fn command(&self, thing: &str, id: &str) -> ApiResult<CommandView<'static>> {
        self.get(&format!("/devices/{thing}/commands/{id}")).await
    }

    /// Polls a command until its status is final.
    pub async fn wait_command_final(
        &self,
        thing: &str,
        id: &str,
        timeout: Duration,
    ) -> ApiResult<CommandView<'static>> {
        let started = Instant::now();
        loop {
            let view = self.command(thing, id).await?;
            if view.status.is_final() {
                return Ok(view);
            }
            if started.elapsed() > timeout {
                return Err(ApiError::TimedOut {
                    what: format!("command {id}"),
                    waited: timeout,
                    last: view.status.as_str().to_owned(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `POST /fleet/summary/recount` (admins): the tenant's numbers counted afresh.
    pub async fn recount_fleet_summary(&self) -> ApiResult<Value> {
        self.call(
            Method::POST,
            "/fleet/summary/recount",
            |r| r,
            StatusCode::OK,
        )
        .await
    }

    // ---------------------------------------------------------------------------------------
    // The calls underneath

    /// `GET path` (with its query), the body decoded as `T`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> ApiResult<T> {
        self.call(Method::GET, path, |r| r, StatusCode::OK).await
    }

    /// `GET path` (with its query), every page, following `nextCursor` (1,000 items a page).
    pub async fn all_pages<T: DeserializeOwned>(&self, path: &str) -> ApiResult<Vec<T>> {
        let first = with_query(path, "limit=1000");
        let mut page: PageView<T> = self.get(&first).await?;
        let mut all = std::mem::take(&mut page.items);
        while let Some(cursor) = page.next_cursor.take() {
            page = self
                .get(&with_query(&first, &format!("cursor={cursor}")))
                .await?;
            all.append(&mut page.items);
        }
        Ok(all)
    }

    /// Sends one request and reads the answer: `expected` gives a `T`, an error status its
    /// problem.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
        expected: StatusCode,
    ) -> ApiResult<T> {
        let request = build(
            self.http
                .request(method.clone(), format!("{}{path}", self.base)),
        );
        let transport = |source| ApiError::Transport {
            method: method.clone(),
            path: path.to_owned(),
            source,
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let body = response.bytes().await.map_err(transport)?;
        let unexpected = |reason: String| ApiError::Unexpected {
            method: method.clone(),
            path: path.to_owned(),
            status,
            reason,
            body: String::from_utf8_lossy(&body).chars().take(2_000).collect(),
        };
        if status == expected {
            return serde_json::from_slice(&body).map_err(|e| unexpected(e.to_string()));
        }
        if status.is_client_error() || status.is_server_error() {
            if let Ok(problem) = serde_json::from_slice::<Problem>(&body) {
                return Err(ApiError::Refused {
                    method,
                    path: path.to_owned(),
                    status,
                    problem: Box::new(problem),
                });
            }
        }
        Err(unexpected(format!("expected {expected}")))
    }
}

fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_owned()
    } else if path.contains('?') {
        format!("{path}&{query}")
    } else {
        format!("{path}?{query}")
    }
}

/// From the API call (the command's creation) to the recorded final acknowledgement, as the
/// command's own history has it, so polling does not add to it.
pub fn command_round_trip(view: &CommandView) -> Option<Duration> {
    let acked = view.history.iter().find(|h| {
        matches!(
            h.status,
            cellbridge::devices::command::CommandStatus::Successful
                | cellbridge::devices::command::CommandStatus::Failed
        )
    })?;
    (acked.at - view.created_at).try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_round_trip_runs_from_creation_to_the_final_ack() -> anyhow::Result<()> {
        let view: CommandView<'static> = serde_json::from_value(serde_json::json!({
            "id": "019aa8e4-6f2a-7c3d-9b1e-2f4a5c6d7e80",
            "deviceId": "trk-1",
            "name": "ping",
            "params": {},
            "status": "SUCCESSFUL",
            "createdAt": "2026-11-22T10:00:00.000Z",
            "expiresAt": "2026-11-22T10:05:00.000Z",
            "ackTimeoutSeconds": 30,
            "updatedAt": "2026-11-22T10:00:00.045Z",
            "history": [
                {"status": "QUEUED", "at": "2026-11-22T10:00:00.000Z"},
                {"status": "SENT", "at": "2026-11-22T10:00:00.010Z"},
                {"status": "DELIVERED", "at": "2026-11-22T10:00:00.030Z"},
                {"status": "SUCCESSFUL", "at": "2026-11-22T10:00:00.045Z"},
            ],
            "links": {"self": "/devices/trk-1/commands/019aa8e4-6f2a-7c3d-9b1e-2f4a5c6d7e80"},
        }))?;
        assert_eq!(command_round_trip(&view), Some(Duration::from_millis(45)));
        let mut unanswered = view;
        unanswered.history.truncate(2);
        assert_eq!(command_round_trip(&unanswered), None);
        Ok(())
    }

    #[test]
    fn queries_join_the_path_once() {
        assert_eq!(with_query("/users", "limit=1000"), "/users?limit=1000");
        assert_eq!(
            with_query("/bulk-changes?status=completed", "limit=1000"),
            "/bulk-changes?status=completed&limit=1000"
        );
        assert_eq!(with_query("/devices", ""), "/devices");
    }
}
