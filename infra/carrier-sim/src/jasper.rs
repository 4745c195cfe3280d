//! Cisco Control Center (Jasper) REST simulator: `GET`/`PUT /rws/api/v1/devices/{iccid}`.

use crate::random::Random;
use crate::{locked, LoggedRequest, RequestLog};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the simulator says "over the rate limit": both are seen from real Jasper pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RateLimitAnswer {
    /// HTTP 429 with the rate-limit error body.
    Http429,
    /// HTTP 400 with error code 40000029.
    ErrorCode,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JasperConfig {
    /// Username to API key.
    pub accounts: BTreeMap<String, String>,
    /// Calls a second per account (Cisco documents 5).
    pub calls_per_second: u32,
    /// The window `calls_per_second` counts calls in: Cisco's second. A test may widen it, so
    /// that which calls are refused does not depend on how fast they arrive.
    pub rate_limit_window: Duration,
    /// Cisco asks for one call in flight at a time; a second concurrent call is rate limited.
    pub one_call_in_flight: bool,
    pub rate_limit_answer: RateLimitAnswer,
    /// Share of calls answered with a 5xx.
    pub transient_fault_rate: f64,
    /// Share of calls answered after `slow_answer`.
    pub slow_rate: f64,
    pub slow_answer: Duration,
    pub seed: u64,
}

impl Default for JasperConfig {
    fn default() -> Self {
        Self {
            accounts: BTreeMap::from([(
                "cellbridge".to_owned(),
                "local-jasper-api-key".to_owned(),
            )]),
            calls_per_second: 5,
            rate_limit_window: Duration::from_secs(1),
            one_call_in_flight: true,
            rate_limit_answer: RateLimitAnswer::Http429,
            transient_fault_rate: 0.0,
            slow_rate: 0.0,
            slow_answer: Duration::from_secs(2),
            seed: 7,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub iccid: String,
    pub status: String,
    pub rate_plan: String,
    pub communication_plan: String,
    pub customer: Option<String>,
    /// Two of the account's own custom fields (of ten), free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_custom1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_custom2: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Edit {
    status: Option<String>,
    rate_plan: Option<String>,
    communication_plan: Option<String>,
    customer: Option<String>,
    account_custom1: Option<String>,
    account_custom2: Option<String>,
    effective_date: Option<String>,
}

/// Account-level status moves of Control Center's SIM states; PURGED and REPLACED are terminal.
pub fn transition_allowed(from: &str, to: &str) -> bool {
    let allowed: &[&str] = match from {
        "TEST_READY" => &["ACTIVATION_READY", "INVENTORY", "ACTIVATED"],
        "ACTIVATION_READY" => &["ACTIVATED", "DEACTIVATED", "INVENTORY"],
        "INVENTORY" => &["ACTIVATION_READY", "ACTIVATED", "TEST_READY"],
        "ACTIVATED" => &["DEACTIVATED"],
        "DEACTIVATED" => &["ACTIVATED", "RETIRED", "INVENTORY"],
        "RETIRED" => &["PURGED", "DEACTIVATED"],
        _ => &[],
    };
    from == to || allowed.contains(&to)
}

const STATUSES: [&str; 8] = [
    "TEST_READY",
    "ACTIVATION_READY",
    "INVENTORY",
    "ACTIVATED",
    "DEACTIVATED",
    "RETIRED",
    "PURGED",
    "REPLACED",
];

#[derive(Default)]
struct AccountLoad {
    recent: VecDeque<Instant>,
    in_flight: u32,
}

pub struct Jasper {
    config: Mutex<JasperConfig>,
    devices: Mutex<BTreeMap<String, Device>>,
    load: Arc<Mutex<HashMap<String, AccountLoad>>>,
    random: Random,
    log: Arc<RequestLog>,
    started: Instant,
}

/// Releases an account's in-flight slot when the call ends, however it ends.
struct InFlight {
    load: Arc<Mutex<HashMap<String, AccountLoad>>>,
    account: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(load) = locked(&self.load).get_mut(&self.account) {
            load.in_flight = load.in_flight.saturating_sub(1);
        }
    }
}

fn error(status: StatusCode, code: Option<&str>, message: &str) -> Response {
    let body = match code {
        Some(code) => json!({"errorMessage": message, "errorCode": code}),
        None => json!({"errorMessage": message}),
    };
    (status, Json(body)).into_response()
}

impl Jasper {
    pub fn new(config: JasperConfig, log: Arc<RequestLog>) -> Self {
        Self {
            random: Random::new(config.seed),
            config: Mutex::new(config),
            devices: Mutex::new(BTreeMap::new()),
            load: Arc::default(),
            log,
            started: Instant::now(),
        }
    }

    /// Adds devices (or resets them) in `status` on the default plans.
    pub fn seed_devices<'a>(&self, iccids: impl IntoIterator<Item = &'a str>, status: &str) {
        let mut devices = locked(&self.devices);
        for iccid in iccids {
            devices.insert(
                iccid.to_owned(),
                Device {
                    iccid: iccid.to_owned(),
                    status: status.to_owned(),
                    rate_plan: "RP-1GB".to_owned(),
                    communication_plan: "CP_Basic_ON".to_owned(),
                    customer: None,
                    account_custom1: None,
                    account_custom2: None,
                },
            );
        }
    }

    pub fn device(&self, iccid: &str) -> Option<Device> {
        locked(&self.devices).get(iccid).cloned()
    }

    pub fn configure(&self, change: impl FnOnce(&mut JasperConfig)) {
        change(&mut locked(&self.config));
    }

    fn config(&self) -> JasperConfig {
        locked(&self.config).clone()
    }

    /// The account the Basic credentials name, or the 401 Jasper answers.
    fn authenticate(
        &self,
        headers: &HeaderMap,
        config: &JasperConfig,
    ) -> Result<String, Box<Response>> {
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                None,
                "Full authentication is required to access this resource",
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"Jasper\""),
            );
            return Err(Box::new(response));
        };
        let decoded = value
            .strip_prefix("Basic ")
            .and_then(|b64| STANDARD.decode(b64).ok())
            .and_then(|bytes| String::from_utf8(bytes).ok());
        match decoded.as_deref().and_then(|pair| pair.split_once(':')) {
            Some((user, key)) if config.accounts.get(user).is_some_and(|k| k == key) => {
                Ok(user.to_owned())
            }
            _ => Err(Box::new(error(
                StatusCode::UNAUTHORIZED,
                Some("10000001"),
                "Invalid credentials",
            ))),
        }
    }

    /// Admits a call within the account's limits, or answers as Jasper does when over them.
    fn admit(&self, account: &str, config: &JasperConfig) -> Result<InFlight, Box<Response>> {
        let now = Instant::now();
        let mut loads = locked(&self.load);
        let load = loads.entry(account.to_owned()).or_default();
        while load
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= config.rate_limit_window)
        {
            load.recent.pop_front();
        }
        let busy = config.one_call_in_flight && load.in_flight > 0;
        if busy || load.recent.len() >= config.calls_per_second as usize {
            let status = match config.rate_limit_answer {
                RateLimitAnswer::Http429 => StatusCode::TOO_MANY_REQUESTS,
                RateLimitAnswer::ErrorCode => StatusCode::BAD_REQUEST,
            };
            return Err(Box::new(error(
                status,
                Some("40000029"),
                "Rate Limit Exceeded",
            )));
        }
        load.recent.push_back(now);
        load.in_flight += 1;
        Ok(InFlight {
            load: self.load.clone(),
            account: account.to_owned(),
        })
    }

    async fn handle(
        &self,
        method: &Method,
        iccid: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> (Option<String>, Response) {
        let config = self.config();
        let account = match self.authenticate(headers, &config) {
            Ok(account) => account,
            Err(response) => return (None, *response),
        };
        let _slot = match self.admit(&account, &config) {
            Ok(slot) => slot,
            Err(response) => return (Some(account), *response),
        };
        if self.random.chance(config.slow_rate) {
            tokio::time::sleep(config.slow_answer).await;
        }
        if self.random.chance(config.transient_fault_rate) {
            return (
                Some(account),
                (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response(),
            );
        }
        let response = if method == Method::GET {
            match self.device(iccid) {
                Some(device) => Json(device).into_response(),
                None => error(StatusCode::NOT_FOUND, None, "Resource not found"),
            }
        } else {
            self.edit(iccid, body)
        };
        (Some(account), response)
    }

    fn edit(&self, iccid: &str, body: &[u8]) -> Response {
        let edit: Edit = match serde_json::from_slice(body) {
            Ok(edit) => edit,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    Some("10000003"),
                    &format!("Invalid request: {e}"),
                )
            }
        };
        let mut devices = locked(&self.devices);
        let Some(device) = devices.get_mut(iccid) else {
            return error(StatusCode::NOT_FOUND, None, "Resource not found");
        };
        if edit.status.is_none()
            && edit.rate_plan.is_none()
            && edit.communication_plan.is_none()
            && edit.customer.is_none()
            && edit.account_custom1.is_none()
            && edit.account_custom2.is_none()
        {
            return error(
                StatusCode::BAD_REQUEST,
                Some("10000003"),
                "At least one field to edit is required",
            );
        }
        if let Some(status) = &edit.status {
            if !STATUSES.contains(&status.as_str()) {
                return error(
                    StatusCode::BAD_REQUEST,
                    Some("10000003"),
                    &format!("Invalid status {status}"),
                );
            }
            if !transition_allowed(&device.status, status) {
                return error(
                    StatusCode::BAD_REQUEST,
                    Some("10000003"),
                    &format!(
                        "Status change from {} to {status} is not allowed",
                        device.status
                    ),
                );
            }
        }
        // A future-dated edit is accepted (202) and, in this simulator, applied at once.
        let accepted = edit.effective_date.is_some();
        if let Some(status) = edit.status {
            device.status = status;
        }
        if let Some(plan) = edit.rate_plan {
            device.rate_plan = plan;
        }
        if let Some(plan) = edit.communication_plan {
            device.communication_plan = plan;
        }
        if edit.customer.is_some() {
            device.customer = edit.customer;
        }
        if edit.account_custom1.is_some() {
            device.account_custom1 = edit.account_custom1;
        }
        if edit.account_custom2.is_some() {
            device.account_custom2 = edit.account_custom2;
        }
        let status = if accepted {
            StatusCode::ACCEPTED
        } else {
            StatusCode::OK
        };
        (status, Json(json!({"iccid": iccid}))).into_response()
    }
}

async fn device_route(
    State(jasper): State<Arc<Jasper>>,
    method: Method,
    Path(iccid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (account, response) = jasper.handle(&method, &iccid, &headers, &body).await;
    jasper.log.push(LoggedRequest {
        carrier: "jasper",
        method: method.to_string(),
        path: format!("/rws/api/v1/devices/{iccid}"),
        account,
        status: response.status().as_u16(),
        at_ms: jasper.started.elapsed().as_millis() as u64,
    });
    response
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedRequest {
    iccids: Vec<String>,
    status: String,
}

/// Test and demo hook: adds (or resets) devices.
async fn seed_route(State(jasper): State<Arc<Jasper>>, Json(seed): Json<SeedRequest>) -> Response {
    if !STATUSES.contains(&seed.status.as_str()) {
        return error(
            StatusCode::BAD_REQUEST,
            None,
            &format!("unknown status {}", seed.status),
        );
    }
    jasper.seed_devices(seed.iccids.iter().map(String::as_str), &seed.status);
    (StatusCode::OK, Json(json!({"seeded": seed.iccids.len()}))).into_response()
}

pub fn router(jasper: Arc<Jasper>) -> Router {
    Router::new()
        .route(
            "/rws/api/v1/devices/{iccid}",
            get(device_route).put(device_route),
        )
        .route("/_sim/devices", axum::routing::post(seed_route))
        .with_state(jasper)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transition_matrix_keeps_terminal_states_terminal() {
        assert!(transition_allowed("ACTIVATED", "DEACTIVATED"));
        assert!(transition_allowed("DEACTIVATED", "ACTIVATED"));
        assert!(
            transition_allowed("ACTIVATED", "ACTIVATED"),
            "a repeated edit is a no-op"
        );
        assert!(!transition_allowed("ACTIVATED", "PURGED"));
        for to in STATUSES
            .iter()
            .filter(|s| !["PURGED", "REPLACED"].contains(s))
        {
            assert!(!transition_allowed("PURGED", to));
            assert!(!transition_allowed("REPLACED", to));
        }
    }
}
