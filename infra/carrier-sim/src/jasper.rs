//! Cisco Control Center (Jasper) REST simulator: `GET`/`PUT /rws/api/v1/devices/{iccid}` and
//! Search Devices (`GET /rws/api/v1/devices?modifiedSince=...`, 50 a page, oldest change first).

use crate::random::Random;
use crate::{locked, LoggedRequest, RequestLog};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
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
    #[serde(default)]
    pub msisdn: String,
    #[serde(default)]
    pub imsi: String,
    /// When anything about the device last changed, as Jasper writes it
    /// (`2016-07-06 22:04:04.380+0000`).
    #[serde(default)]
    pub date_updated: String,
    /// The same instant in milliseconds since the epoch: the order of `modifiedSince` searches.
    #[serde(skip)]
    pub updated_ms: i64,
}

/// Jasper's date format in answers: `yyyy-MM-dd HH:mm:ss.SSS+0000`, always UTC.
fn jasper_date(ms: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}+0000",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

/// Most devices one search page returns (Jasper's documented `pageSize` limit).
pub const MAX_PAGE_SIZE: usize = 50;

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
    /// The last `updated_ms` handed out: every change gets a later one, so changes made in one
    /// millisecond still sort, and a search from a change's time finds every later one.
    clock_ms: Mutex<i64>,
    load: Arc<Mutex<HashMap<String, AccountLoad>>>,
    random: Random,
    log: Arc<RequestLog>,
    started: Instant,
    /// The day usage is rated through (see [`crate::usage`]).
    pub usage_day: crate::usage::UsageDay,
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
            clock_ms: Mutex::new(0),
            load: Arc::default(),
            log,
            started: Instant::now(),
            usage_day: crate::usage::UsageDay::default(),
        }
    }

    /// Get Device Usage: the device's cycle-to-date usage, rated through yesterday.
    fn cycle_usage(&self, iccid: &str) -> Response {
        if !locked(&self.devices).contains_key(iccid) {
            return error(StatusCode::NOT_FOUND, None, "Resource not found");
        }
        let (_, bytes, sms) = crate::usage::cycle_to_date(iccid, self.usage_day.rated_through());
        Json(json!({
            "iccid": iccid,
            "ctdDataUsage": bytes,
            "ctdSMSUsage": sms,
            "ctdVoiceUsage": 0,
            "ctdSessionCount": u64::from(bytes > 0),
            "overageLimitReached": false,
            "overageLimitOverride": "DEFAULT",
        }))
        .into_response()
    }

    /// A change's time: now, or just after the previous change when that is later.
    fn stamp(&self) -> i64 {
        let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        let mut clock = locked(&self.clock_ms);
        *clock = now.max(*clock + 1);
        *clock
    }

    /// Adds devices (or resets them) in `status` on the default plans. MSISDN and IMSI follow
    /// from the ICCID's last ten digits.
    pub fn seed_devices<'a>(&self, iccids: impl IntoIterator<Item = &'a str>, status: &str) {
        for iccid in iccids {
            let at = self.stamp();
            let tail = &iccid[iccid.len().saturating_sub(10)..];
            locked(&self.devices).insert(
                iccid.to_owned(),
                Device {
                    iccid: iccid.to_owned(),
                    status: status.to_owned(),
                    rate_plan: "RP-1GB".to_owned(),
                    communication_plan: "CP_Basic_ON".to_owned(),
                    customer: None,
                    account_custom1: None,
                    account_custom2: None,
                    msisdn: format!("88235{tail}"),
                    imsi: format!("90116{tail}"),
                    date_updated: jasper_date(at),
                    updated_ms: at,
                },
            );
        }
    }

    /// Changes `count` devices' rate plans as someone in Control Center would, outside
    /// cellbridge; returns their ICCIDs (a carrier sync must find exactly these).
    pub fn change_outside(&self, count: usize, rate_plan: &str) -> Vec<String> {
        let iccids: Vec<String> = {
            let devices = locked(&self.devices);
            let all: Vec<&String> = devices.keys().collect();
            let step = (all.len() / count.max(1)).max(1);
            all.into_iter().step_by(step).take(count).cloned().collect()
        };
        self.change_plan_outside(&iccids, rate_plan);
        iccids
    }

    /// Moves `iccids` to `rate_plan` as someone in Control Center would, outside cellbridge.
    pub fn change_plan_outside(&self, iccids: &[String], rate_plan: &str) {
        for iccid in iccids {
            let at = self.stamp();
            if let Some(device) = locked(&self.devices).get_mut(iccid) {
                device.rate_plan = rate_plan.to_owned();
                device.date_updated = jasper_date(at);
                device.updated_ms = at;
            }
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

    /// Runs `work` as Jasper serves a call: authenticated, within the account's limits, with the
    /// configured slow answers and faults. Returns the account (when known) and the answer.
    async fn serve(
        &self,
        headers: &HeaderMap,
        work: impl FnOnce() -> Response,
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
        (Some(account), work())
    }

    async fn handle(
        &self,
        method: &Method,
        iccid: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> (Option<String>, Response) {
        self.serve(headers, || {
            if method == Method::GET {
                match self.device(iccid) {
                    Some(device) => Json(device).into_response(),
                    None => error(StatusCode::NOT_FOUND, None, "Resource not found"),
                }
            } else {
                self.edit(iccid, body)
            }
        })
        .await
    }

    /// Search Devices: devices changed at or after `modifiedSince` (and before `modifiedTill`),
    /// oldest change first, `pageSize` (at most 50) a page.
    fn search(&self, query: &HashMap<String, String>) -> Response {
        let bad = |message: &str| error(StatusCode::BAD_REQUEST, Some("10000003"), message);
        let Some(since) = query.get("modifiedSince").and_then(|v| parse_iso_ms(v)) else {
            return bad("modifiedSince is required, as an ISO-8601 date and time");
        };
        let till = match query.get("modifiedTill") {
            None => i64::MAX,
            Some(v) => match parse_iso_ms(v) {
                Some(ms) => ms,
                None => return bad("modifiedTill must be an ISO-8601 date and time"),
            },
        };
        let page_size = match query.get("pageSize").map(|v| v.parse::<usize>()) {
            None => MAX_PAGE_SIZE,
            Some(Ok(n)) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
            Some(_) => return bad("pageSize must be 1 to 50"),
        };
        let page_number = match query.get("pageNumber").map(|v| v.parse::<usize>()) {
            None => 1,
            Some(Ok(n)) if n >= 1 => n,
            Some(_) => return bad("pageNumber must be 1 or more"),
        };
        let devices = locked(&self.devices);
        // References, not copies: an account of 100,000 devices is filtered and ordered on
        // every page, which must stay cheaper than the pace a sync keeps.
        let mut changed: Vec<&Device> = devices
            .values()
            .filter(|d| d.updated_ms >= since && d.updated_ms < till)
            .collect();
        changed
            .sort_unstable_by(|a, b| a.updated_ms.cmp(&b.updated_ms).then(a.iccid.cmp(&b.iccid)));
        let start = (page_number - 1).saturating_mul(page_size);
        if start > 0 && start >= changed.len() {
            return bad("pageNumber is past the last page");
        }
        let page: Vec<Value> = changed
            .iter()
            .skip(start)
            .take(page_size)
            .map(|d| {
                json!({
                    "iccid": d.iccid, "status": d.status, "ratePlan": d.rate_plan,
                    "communicationPlan": d.communication_plan, "dateUpdated": d.date_updated,
                })
            })
            .collect();
        let last_page = start + page_size >= changed.len();
        Json(json!({"devices": page, "pageNumber": page_number, "lastPage": last_page}))
            .into_response()
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
        let at = self.stamp();
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
        device.updated_ms = at;
        device.date_updated = jasper_date(at);
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

/// `2024-01-01T00:00:00+00:00` (or `Z`) in milliseconds since the epoch.
fn parse_iso_ms(value: &str) -> Option<i64> {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|at| (at.unix_timestamp_nanos() / 1_000_000) as i64)
}

async fn search_route(
    State(jasper): State<Arc<Jasper>>,
    Query(query): Query<HashMap<String, String>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let (account, response) = jasper.serve(&headers, || jasper.search(&query)).await;
    jasper.log.push(LoggedRequest {
        carrier: "jasper",
        method: "GET".to_owned(),
        path: uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        account,
        status: response.status().as_u16(),
        at_ms: jasper.started.elapsed().as_millis() as u64,
    });
    response
}

async fn usage_route(
    State(jasper): State<Arc<Jasper>>,
    Path(iccid): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (account, response) = jasper.serve(&headers, || jasper.cycle_usage(&iccid)).await;
    jasper.log.push(LoggedRequest {
        carrier: "jasper",
        method: "GET".to_owned(),
        path: format!("/rws/api/v1/devices/{iccid}/ctdUsages"),
        account,
        status: response.status().as_u16(),
        at_ms: jasper.started.elapsed().as_millis() as u64,
    });
    response
}

pub fn router(jasper: Arc<Jasper>) -> Router {
    Router::new()
        .route("/rws/api/v1/devices", get(search_route))
        .route("/rws/api/v1/devices/{iccid}/ctdUsages", get(usage_route))
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
