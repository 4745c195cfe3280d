//! Verizon ThingSpace Connectivity Management (M2M) simulator.
//!
//! Two tokens (an OAuth client-credentials token, then an M2M session), batch device actions that
//! answer `{requestId}` at once and finish later with one CarrierService callback per device,
//! request status polling, a per-account rate limit per action, faults at configurable rates and
//! the shared request log. Modelled on Verizon's published ThingSpace documentation
//! (thingspace.verizon.com/resources/documentation/connectivity).
//!
//! Where Verizon publishes no contract the choice here is ours: the login failure and lock codes,
//! the 429 answer, the codes of malformed bodies, and that devices are not partitioned by account.
//! State errors and unknown ICCIDs come back in the per-device callbacks, not synchronously, so one
//! bad device never sinks a 10,000-device batch.

use crate::random::Random;
use crate::{locked, LoggedRequest, RequestLog};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;

pub const DEFAULT_APP_KEY: &str = "local-thingspace-app-key";
pub const DEFAULT_APP_SECRET: &str = "local-thingspace-app-secret";
pub const DEFAULT_USERNAME: &str = "cellbridge";
pub const DEFAULT_PASSWORD: &str = "local-thingspace-password";
/// Verizon account names are numeric with leading zeros.
pub const DEFAULT_ACCOUNT: &str = "0000123456-00001";
pub const DEFAULT_SERVICE_PLAN: &str = "M2M4G1GB";

const CARRIER_SERVICE: &str = "CarrierService";
const DEVICE_USAGE: &str = "DeviceUsage";
/// The longest period one aggregate usage request may cover ("one month maximum").
const AGGREGATE_MAX_DAYS: i64 = 31;
const SESSION_HEADER: &str = "vz-m2m-token";
/// Services a callback listener may be registered for (ThingSpace's callback service names).
const SERVICE_NAMES: [&str; 13] = [
    "AlertsService",
    "CarrierService",
    "DevicePRLInformation",
    "DeviceService",
    "DeviceSuspensionStatus",
    "DeviceUsage",
    "EnhancedConnectivityService",
    "ExternalProvisioningChanges",
    "NiddService",
    "PromoChanges",
    "ResumeTrackingNotification",
    "SMSDeliveryConfirmation",
    "StateService",
];
/// Identifier kinds ThingSpace knows (`deviceIds[].kind`, lower case in requests).
const KINDS: [&str; 9] = [
    "esn", "eid", "iccid", "imei", "mdn", "meid", "msisdn", "imsi", "min",
];
/// Callback fault codes carry the service name in front of the class.
const FAULT_PREFIX: &str = "UnifiedWebService.";

/// A login the simulator accepts, and the account it opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThingSpaceUser {
    pub password: String,
    pub account_name: String,
}

/// Requests per rate-limit window per account and action; `None` is unlimited. Verizon documents
/// only the activation limit (100 a minute), so the others default to unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimits {
    pub activate: Option<u32>,
    pub suspend: Option<u32>,
    pub restore: Option<u32>,
    pub deactivate: Option<u32>,
    pub plan: Option<u32>,
    #[serde(default)]
    pub device_id: Option<u32>,
    pub list: Option<u32>,
    pub status: Option<u32>,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            activate: Some(100),
            suspend: None,
            restore: None,
            deactivate: None,
            plan: None,
            device_id: None,
            list: None,
            status: None,
        }
    }
}

impl RateLimits {
    fn get(&self, endpoint: Endpoint) -> Option<u32> {
        match endpoint {
            Endpoint::Action(Action::Activate) => self.activate,
            Endpoint::Action(Action::Suspend) => self.suspend,
            Endpoint::Action(Action::Restore) => self.restore,
            Endpoint::Action(Action::Deactivate) => self.deactivate,
            Endpoint::Action(Action::Plan) => self.plan,
            Endpoint::Action(Action::DeviceId) => self.device_id,
            Endpoint::List => self.list,
            Endpoint::Status => self.status,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ThingSpaceConfig {
    /// OAuth app key to app secret.
    pub apps: BTreeMap<String, String>,
    /// UWS username to password and account.
    pub users: BTreeMap<String, ThingSpaceUser>,
    /// Life of an OAuth token; asking again while it is valid returns the same token.
    pub token_ttl: Duration,
    /// A session unused this long answers `REQUEST_FAILED.SessionToken.Expired`.
    pub session_idle_timeout: Duration,
    /// Consecutive failed logins that lock the user.
    pub max_failed_logins: u32,
    /// Above this, `INPUT_INVALID.MaxRequestsExceeded`.
    pub max_devices_per_request: usize,
    /// Service plans activate and plan changes accept; empty accepts any.
    pub service_plans: Vec<String>,
    pub rate_limits: RateLimits,
    pub rate_limit_window: Duration,
    /// Whether a 429 carries `Retry-After` (Verizon's contract is not public).
    pub retry_after: bool,
    /// Share of calls answered with a 500, 502, 503 or 504.
    pub transient_fault_rate: f64,
    /// Share of calls answered after `slow_answer`.
    pub slow_rate: f64,
    pub slow_answer: Duration,
    /// Share of devices that fail with `REQUEST_FAILED.UnexpectedError` (partial batch failure).
    pub device_failure_rate: f64,
    /// From accepting a request to resolving its devices and sending their callbacks.
    pub callback_delay: Duration,
    /// Between re-sends of a callback the listener did not take with a 2xx.
    pub callback_retry_delay: Duration,
    /// Share of callbacks sent twice.
    pub duplicate_callback_rate: f64,
    /// Share of callbacks never sent (the device is still resolved).
    pub lost_callback_rate: f64,
    /// Attempts per callback, echoed as `maxCallbackThreshold`.
    pub max_callback_threshold: u32,
    /// Callbacks in flight at once per request.
    pub callback_concurrency: usize,
    /// DeviceUsage callbacks in flight at once over every aggregate usage request (set when the
    /// simulator starts): a day's usage of a whole account comes as a steady stream, not as one
    /// burst per request.
    pub usage_callback_concurrency: usize,
    /// Devices per page of an account-wide `devices/actions/list`.
    pub list_page_size: usize,
    pub seed: u64,
}

impl Default for ThingSpaceConfig {
    fn default() -> Self {
        Self {
            apps: BTreeMap::from([(DEFAULT_APP_KEY.to_owned(), DEFAULT_APP_SECRET.to_owned())]),
            users: BTreeMap::from([(
                DEFAULT_USERNAME.to_owned(),
                ThingSpaceUser {
                    password: DEFAULT_PASSWORD.to_owned(),
                    account_name: DEFAULT_ACCOUNT.to_owned(),
                },
            )]),
            token_ttl: Duration::from_secs(3600),
            session_idle_timeout: Duration::from_secs(20 * 60),
            max_failed_logins: 5,
            max_devices_per_request: 10_000,
            service_plans: vec![DEFAULT_SERVICE_PLAN.to_owned(), "M2M4G5GB".to_owned()],
            rate_limits: RateLimits::default(),
            rate_limit_window: Duration::from_secs(60),
            retry_after: true,
            transient_fault_rate: 0.0,
            slow_rate: 0.0,
            slow_answer: Duration::from_secs(2),
            device_failure_rate: 0.0,
            callback_delay: Duration::from_secs(1),
            callback_retry_delay: Duration::from_secs(1),
            duplicate_callback_rate: 0.0,
            lost_callback_rate: 0.0,
            max_callback_threshold: 4,
            callback_concurrency: 16,
            usage_callback_concurrency: 4,
            list_page_size: 500,
            seed: 11,
        }
    }
}

/// `carrierInformations[].state` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceState {
    #[serde(rename = "pre-active")]
    PreActive,
    #[serde(rename = "active")]
    Active,
    #[serde(rename = "suspend")]
    Suspend,
    #[serde(rename = "deactive")]
    Deactive,
}

impl DeviceState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::PreActive => "pre-active",
            DeviceState::Active => "active",
            DeviceState::Suspend => "suspend",
            DeviceState::Deactive => "deactive",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [
            DeviceState::PreActive,
            DeviceState::Active,
            DeviceState::Suspend,
            DeviceState::Deactive,
        ]
        .into_iter()
        .find(|s| s.as_str().eq_ignore_ascii_case(value))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub iccid: String,
    pub imei: Option<String>,
    pub state: DeviceState,
    pub service_plan: Option<String>,
    /// Only a line (active or suspended) has an MDN; deactivation releases it.
    pub msisdn: Option<String>,
    pub ip_address: Option<String>,
    /// Between an accepted activation and its completion: listed as `pending activation`.
    pub pending_activation: bool,
    pub created_at: String,
}

/// The asynchronous device actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    Activate,
    Suspend,
    Restore,
    Deactivate,
    Plan,
    /// Change Device Identifier (`devices/{serviceType}/actions/deviceId`): a SIM or IMEI swap.
    DeviceId,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Activate => "activate",
            Action::Suspend => "suspend",
            Action::Restore => "restore",
            Action::Deactivate => "deactivate",
            Action::Plan => "plan",
            Action::DeviceId => "deviceId",
        }
    }
}

/// The endpoints that have a rate limit of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Endpoint {
    Action(Action),
    List,
    Status,
}

impl Endpoint {
    /// `devices/actions/{name}` as Verizon routes it: plan changes are a PUT, the rest POSTs.
    fn parse(method: &Method, name: &str) -> Option<Self> {
        let action = match (method.as_str(), name) {
            ("POST", "activate") => Action::Activate,
            ("POST", "suspend") => Action::Suspend,
            ("POST", "restore") => Action::Restore,
            ("POST", "deactivate") => Action::Deactivate,
            ("PUT", "plan") => Action::Plan,
            ("POST", "list") => return Some(Endpoint::List),
            _ => return None,
        };
        Some(Endpoint::Action(action))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RequestStatus {
    Pending,
    Success,
    Failure,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "Pending",
            RequestStatus::Success => "Success",
            RequestStatus::Failure => "Failure",
        }
    }
}

/// An accepted request as the simulator tracks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestSummary {
    pub request_id: String,
    pub account_name: String,
    pub action: Action,
    pub devices: usize,
    /// Devices that failed, once resolved.
    pub failed: usize,
    pub status: RequestStatus,
}

/// What happened to callbacks so far, across all requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallbackStats {
    /// Deliveries queued (duplicates included, lost ones not).
    pub queued: u64,
    /// Queued and not yet delivered or given up.
    pub pending: u64,
    /// Taken by the listener with a 2xx.
    pub delivered: u64,
    /// Attempts answered with a non-2xx or not answered.
    pub failed_attempts: u64,
    /// Deliveries abandoned after `max_callback_threshold` attempts.
    pub gave_up: u64,
    pub lost: u64,
    pub duplicated: u64,
}

struct IssuedToken {
    expires_at: Instant,
}

struct Session {
    account_name: String,
    last_used: Instant,
    expired: bool,
}

#[derive(Default)]
struct Auth {
    /// Access token to what it grants.
    tokens: HashMap<String, IssuedToken>,
    /// App key to its current token.
    app_tokens: HashMap<String, String>,
    sessions: HashMap<String, Session>,
    failed_logins: HashMap<String, u32>,
    /// Every token and session ever handed out, for tests that look for leaks.
    issued: Vec<String>,
}

#[derive(Clone)]
struct Listener {
    url: String,
    username: Option<String>,
    password: Option<String>,
}

struct Tracked {
    account_name: String,
    action: Action,
    devices: usize,
    failed: usize,
    resolved: bool,
}

/// One device's result, as its callback reports it.
struct Outcome {
    iccid: String,
    imei: Option<String>,
    msisdn: Option<String>,
    ip_address: Option<String>,
    service_plan: Option<String>,
    state: DeviceState,
    fault: Option<(&'static str, String)>,
}

struct Delivery {
    url: String,
    body: Value,
}

/// Tags a response with the account it was for, so the logging layer can record it.
#[derive(Clone)]
struct LoggedAccount(String);

struct Caller {
    account_name: String,
}

pub struct ThingSpace {
    config: Mutex<ThingSpaceConfig>,
    auth: Mutex<Auth>,
    devices: Mutex<BTreeMap<String, Device>>,
    requests: Mutex<HashMap<String, Tracked>>,
    /// (account, service name) to listener.
    listeners: Mutex<HashMap<(String, String), Listener>>,
    load: Mutex<HashMap<(String, Endpoint), VecDeque<Instant>>>,
    stats: Mutex<CallbackStats>,
    faults: Random,
    ids: Random,
    outcomes: Random,
    serial: AtomicU64,
    http: reqwest::Client,
    log: Arc<RequestLog>,
    started: Instant,
    /// True while requests are held pending past their `callback_delay`.
    held: watch::Sender<bool>,
    /// The day usage is rated through (see [`crate::usage`]).
    pub usage_day: crate::usage::UsageDay,
    /// Aggregate usage requests accepted whose callbacks are not queued yet.
    usage_requests_open: AtomicU64,
    /// Permits to deliver a DeviceUsage callback (`usage_callback_concurrency`).
    usage_lane: Arc<tokio::sync::Semaphore>,
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"errorCode": code, "errorMessage": message})),
    )
        .into_response()
}

fn bad_request(code: &str, message: &str) -> Box<Response> {
    Box::new(error(StatusCode::BAD_REQUEST, code, message))
}

/// The OAuth gateway's answer to a missing, unknown or expired bearer token.
fn unauthorized(description: &str) -> Box<Response> {
    let mut response = (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": "invalid_token", "error_description": description})),
    )
        .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    Box::new(response)
}

fn for_account(mut response: Response, account: &str) -> Response {
    response
        .extensions_mut()
        .insert(LoggedAccount(account.to_owned()));
    response
}

fn digits(value: &str, lengths: std::ops::RangeInclusive<usize>) -> bool {
    lengths.contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit())
}

fn luhn_valid(value: &str) -> bool {
    let sum: u32 = value
        .bytes()
        .rev()
        .enumerate()
        .map(|(position, byte)| {
            let digit = u32::from(byte - b'0');
            match position % 2 {
                0 => digit,
                _ if digit * 2 > 9 => digit * 2 - 9,
                _ => digit * 2,
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether `id` is well formed for `kind` (lower case): ICCIDs up to 20 digits, IMEIs 15 or 16,
/// MEIDs hexadecimal.
pub fn identifier_valid(kind: &str, id: &str) -> bool {
    let hex = |len: std::ops::RangeInclusive<usize>| {
        len.contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit())
    };
    match kind {
        "iccid" => digits(id, 19..=20) && id.starts_with("89") && luhn_valid(id),
        "imei" => (digits(id, 15..=15) && luhn_valid(id)) || digits(id, 16..=16),
        "mdn" | "msisdn" | "min" => digits(id, 10..=15),
        "imsi" => digits(id, 14..=15),
        "eid" => digits(id, 32..=32),
        "meid" => hex(14..=14),
        "esn" => hex(8..=8) || digits(id, 11..=11),
        _ => false,
    }
}

/// ThingSpace's device-state rules (active to suspended or deactivated, back to active; pre-active
/// only to active): the state a device moves to, or the fault.
pub fn transition(action: Action, from: DeviceState) -> Result<DeviceState, &'static str> {
    use DeviceState::*;
    match (action, from) {
        (Action::Activate | Action::Restore, Active) => Err("REQUEST_FAILED.DeviceAlreadyActive"),
        (Action::Activate, PreActive | Deactive) => Ok(Active),
        (Action::Restore, Suspend) => Ok(Active),
        (Action::Suspend, Active) => Ok(Suspend),
        (Action::Deactivate, Active) => Ok(Deactive),
        (Action::Plan, Active) => Ok(Active),
        // A line in service keeps its state on the new hardware or SIM.
        (Action::DeviceId, Active | Suspend) => Ok(from),
        _ => Err("INPUT_INVALID.DeviceState.Invalid"),
    }
}

/// `name=value` from a form body (the values ThingSpace's token endpoint takes need no decoding).
fn form_value(body: &[u8], name: &str) -> Option<String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| key.trim() == name)
        .map(|(_, value)| value.trim().to_owned())
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let decoded = STANDARD.decode(value.strip_prefix("Basic ")?.trim()).ok()?;
    let pair = String::from_utf8(decoded).ok()?;
    let (user, secret) = pair.split_once(':')?;
    Some((user.to_owned(), secret.to_owned()))
}

#[derive(Debug, Deserialize)]
struct DeviceIdBody {
    kind: String,
    id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeviceBody {
    #[serde(default)]
    device_ids: Vec<DeviceIdBody>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ActionBody {
    devices: Option<Vec<DeviceBody>>,
    account_name: Option<String>,
    service_plan: Option<String>,
    mdn_zip_code: Option<String>,
    reason_code: Option<String>,
}

/// Change Device Identifier: the device as it is known, what it becomes, and which swap.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeviceIdChangeBody {
    #[serde(default)]
    device_ids: Vec<DeviceIdBody>,
    #[serde(default)]
    device_ids_to: Vec<DeviceIdBody>,
    #[serde(rename = "change4gOption")]
    change_4g_option: Option<String>,
}

/// A swap's new identifiers.
#[derive(Debug, Clone, Default)]
struct Swap {
    iccid: Option<String>,
    imei: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageHistoryBody {
    device_id: DeviceIdBody,
    earliest: String,
    latest: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AggregateUsageBody {
    account_name: Option<String>,
    #[serde(default)]
    device_ids: Vec<DeviceIdBody>,
    start_time: String,
    end_time: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListBody {
    account_name: Option<String>,
    device_id: Option<DeviceIdBody>,
    last_seen_device_id: Option<DeviceIdBody>,
}

#[derive(Debug, Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

#[derive(Debug, Deserialize)]
struct ListenerBody {
    name: String,
    url: String,
    username: Option<String>,
    password: Option<String>,
}

/// The ICCID (and IMEI, when given) of a device entry, or the synchronous error.
fn device_identifiers(device: &DeviceBody) -> Result<(String, Option<String>), Box<Response>> {
    let mut iccid = None;
    let mut imei = None;
    for id in &device.device_ids {
        let kind = id.kind.to_ascii_lowercase();
        if !KINDS.contains(&kind.as_str()) {
            return Err(bad_request(
                "INPUT_INVALID.Device.Kind.Invalid",
                &format!("Device kind {} is not valid", id.kind),
            ));
        }
        if !identifier_valid(&kind, &id.id) {
            return Err(bad_request(
                "INPUT_INVALID.Device.Identifier.Invalid",
                &format!("Device identifier {} is not a valid {kind}", id.id),
            ));
        }
        match kind.as_str() {
            "iccid" => iccid = Some(id.id.clone()),
            "imei" => imei = Some(id.id.clone()),
            _ => {}
        }
    }
    // The simulator keys devices by ICCID; the real service also finds them by MDN or IMEI.
    let iccid = iccid.ok_or_else(|| {
        bad_request(
            "INPUT_INVALID.Device.Identifier.Invalid",
            "Every device needs an iccid identifier",
        )
    })?;
    Ok((iccid, imei))
}

/// The day of an RFC 3339 date and time in a request body.
fn day_of(text: &str) -> Result<time::Date, Box<Response>> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|at| at.date())
        .map_err(|_| {
            bad_request(
                "INPUT_INVALID.Request.Invalid",
                &format!("{text} is not a date and time"),
            )
        })
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        bad_request(
            "INPUT_INVALID.Request.Invalid",
            &format!("Bad request: {e}"),
        )
    })
}

impl ThingSpace {
    pub fn new(config: ThingSpaceConfig, log: Arc<RequestLog>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .no_proxy()
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let usage_lane = Arc::new(tokio::sync::Semaphore::new(
            config.usage_callback_concurrency.max(1),
        ));
        Self {
            faults: Random::new(config.seed),
            ids: Random::new(config.seed.rotate_left(17) ^ 0x5EED),
            outcomes: Random::new(config.seed.rotate_left(31) ^ 0xCA11),
            config: Mutex::new(config),
            auth: Mutex::default(),
            devices: Mutex::default(),
            requests: Mutex::default(),
            listeners: Mutex::default(),
            load: Mutex::default(),
            stats: Mutex::default(),
            serial: AtomicU64::new(1),
            http,
            log,
            started: Instant::now(),
            held: watch::Sender::new(false),
            usage_day: crate::usage::UsageDay::default(),
            usage_requests_open: AtomicU64::new(0),
            usage_lane,
        }
    }

    /// Retrieve Device Usage History: the device's usage per day from `earliest` until before
    /// `latest`, through the last day rated (yesterday).
    fn usage_history(&self, body: &[u8]) -> Result<Response, Box<Response>> {
        let body: UsageHistoryBody = parse_body(body)?;
        if !body.device_id.kind.eq_ignore_ascii_case("iccid") {
            return Err(bad_request(
                "INPUT_INVALID.DeviceId.Kind",
                "the only valid kind for this query is ICCID",
            ));
        }
        let iccid = body.device_id.id;
        if !locked(&self.devices).contains_key(&iccid) {
            return Err(bad_request(
                "REQUEST_FAILED.DeviceNotFound",
                "Device not found",
            ));
        }
        let (earliest, latest) = (day_of(&body.earliest)?, day_of(&body.latest)?);
        let through = self.usage_day.rated_through();
        let mut history = Vec::new();
        let mut day = earliest;
        while day < latest && day <= through {
            let (bytes, sms) = crate::usage::day_usage(&iccid, day);
            history.push(json!({
                "bytesUsed": bytes,
                "smsUsed": sms,
                "source": "Usage Feed",
                "timestamp": format!("{day}T00:00:00Z"),
            }));
            match day.next_day() {
                Some(next) => day = next,
                None => break,
            }
        }
        Ok(Json(json!({
            "hasMoreData": false,
            "deviceId": {"id": iccid, "kind": "iccid"},
            "usageHistory": history,
        }))
        .into_response())
    }

    /// Retrieve Aggregate Device Usage History: `{requestId}` at once; after `callback_delay`,
    /// one DeviceUsage callback per device with its bytes and SMS from `startTime` until before
    /// `endTime` (through the last day rated), or a failure for a device the account lacks.
    fn aggregate_usage(
        self: &Arc<Self>,
        caller: &Caller,
        body: &[u8],
        config: &ThingSpaceConfig,
    ) -> Result<Response, Box<Response>> {
        let body: AggregateUsageBody = parse_body(body)?;
        Self::same_account(caller, body.account_name.as_deref())?;
        if body.device_ids.is_empty() {
            return Err(bad_request(
                "INPUT_INVALID.DeviceIds.Missing",
                "deviceIds is required",
            ));
        }
        if let Some(odd) = body
            .device_ids
            .iter()
            .find(|id| !id.kind.eq_ignore_ascii_case("iccid"))
        {
            return Err(bad_request(
                "INPUT_INVALID.DeviceId.Kind",
                &format!("{} is not a device id kind this query takes", odd.kind),
            ));
        }
        let (start, end) = (day_of(&body.start_time)?, day_of(&body.end_time)?);
        if end <= start || (end - start).whole_days() > AGGREGATE_MAX_DAYS {
            return Err(bad_request(
                "INPUT_INVALID.Request.Invalid",
                "endTime must follow startTime by at most one month",
            ));
        }
        let request_id = self.new_id();
        let iccids: Vec<String> = body.device_ids.into_iter().map(|id| id.id).collect();
        self.usage_requests_open.fetch_add(1, Ordering::SeqCst);
        let id = request_id.clone();
        let account = caller.account_name.clone();
        let config = config.clone();
        self.later(config.callback_delay, move |sim| async move {
            sim.report_usage(&id, &account, &iccids, start, end, &config)
                .await;
        });
        Ok(Json(json!({"requestId": request_id})).into_response())
    }

    /// Sends an aggregate usage request's callbacks to the account's DeviceUsage listener.
    async fn report_usage(
        self: Arc<Self>,
        request_id: &str,
        account: &str,
        iccids: &[String],
        start: time::Date,
        end: time::Date,
        config: &ThingSpaceConfig,
    ) {
        let listener = locked(&self.listeners)
            .get(&(account.to_owned(), DEVICE_USAGE.to_owned()))
            .cloned();
        // The period ends before `end`, and nothing after the last day rated is told.
        let last_day = end
            .previous_day()
            .unwrap_or(end)
            .min(self.usage_day.rated_through());
        let bodies: Vec<Value> = match &listener {
            Some(listener) => {
                let known = locked(&self.devices);
                iccids
                    .iter()
                    .map(|iccid| {
                        let usage = known
                            .contains_key(iccid)
                            .then(|| crate::usage::usage_between(iccid, start, last_day));
                        usage_callback_body(request_id, iccid, usage, listener, config)
                    })
                    .collect()
            }
            None => Vec::new(),
        };
        let deliveries = listener
            .map(|listener| self.queue(&listener.url, bodies, config))
            .unwrap_or_default();
        // Counted as pending first, so `wait_idle` sees no gap.
        self.usage_requests_open.fetch_sub(1, Ordering::SeqCst);
        self.deliver(deliveries, config, Some(&self.usage_lane))
            .await;
    }

    /// Deliveries of `bodies` to `url`, some lost and some sent twice as configured, counted as
    /// pending.
    fn queue(
        &self,
        url: &str,
        bodies: impl IntoIterator<Item = Value>,
        config: &ThingSpaceConfig,
    ) -> Vec<Delivery> {
        let mut deliveries = Vec::new();
        let (mut lost, mut duplicated) = (0, 0);
        for body in bodies {
            if self.outcomes.chance(config.lost_callback_rate) {
                lost += 1;
                continue;
            }
            if self.outcomes.chance(config.duplicate_callback_rate) {
                duplicated += 1;
                deliveries.push(Delivery {
                    url: url.to_owned(),
                    body: body.clone(),
                });
            }
            deliveries.push(Delivery {
                url: url.to_owned(),
                body,
            });
        }
        let mut stats = locked(&self.stats);
        stats.lost += lost;
        stats.duplicated += duplicated;
        stats.queued += deliveries.len() as u64;
        stats.pending += deliveries.len() as u64;
        deliveries
    }

    /// Runs `finish` once `delay` has passed and requests are not held.
    fn later<F>(
        self: &Arc<Self>,
        delay: Duration,
        finish: impl FnOnce(Arc<Self>) -> F + Send + 'static,
    ) where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let sim = self.clone();
        let mut held = self.held.subscribe();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            // An error means the simulator is gone: nothing is waiting for this request.
            if held.wait_for(|held| !held).await.is_err() {
                return;
            }
            finish(sim).await;
        });
    }

    /// Keeps requests pending (devices unresolved, no callbacks sent) past their
    /// `callback_delay` until [`ThingSpace::release_requests`]: a test can look at a pending
    /// request without racing the delay. [`ThingSpace::wait_idle`] waits for the release too.
    pub fn hold_requests(&self) {
        self.held.send_replace(true);
    }

    /// Lets held requests complete; those past their delay do at once.
    pub fn release_requests(&self) {
        self.held.send_replace(false);
    }

    /// Adds devices (or resets them) in `state`; lines (active, suspended) get an MDN, an IP and
    /// the default plan.
    pub fn seed_devices<'a>(&self, iccids: impl IntoIterator<Item = &'a str>, state: DeviceState) {
        let created_at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let mut devices = locked(&self.devices);
        for iccid in iccids {
            let line = matches!(state, DeviceState::Active | DeviceState::Suspend);
            devices.insert(
                iccid.to_owned(),
                Device {
                    iccid: iccid.to_owned(),
                    imei: None,
                    state,
                    service_plan: line.then(|| DEFAULT_SERVICE_PLAN.to_owned()),
                    msisdn: line.then(|| self.new_msisdn()),
                    ip_address: line.then(|| self.new_ip()),
                    pending_activation: false,
                    created_at: created_at.clone(),
                },
            );
        }
    }

    pub fn device(&self, iccid: &str) -> Option<Device> {
        locked(&self.devices).get(iccid).cloned()
    }

    pub fn configure(&self, change: impl FnOnce(&mut ThingSpaceConfig)) {
        change(&mut locked(&self.config));
    }

    /// Every session answers `REQUEST_FAILED.SessionToken.Expired` from now on.
    pub fn expire_sessions(&self) {
        for session in locked(&self.auth).sessions.values_mut() {
            session.expired = true;
        }
    }

    /// Every OAuth token is rejected with a 401 from now on; the next token request gets a new one.
    pub fn expire_tokens(&self) {
        let now = Instant::now();
        for token in locked(&self.auth).tokens.values_mut() {
            token.expires_at = now;
        }
    }

    /// Every access token and session token handed out so far (for leak checks in tests).
    pub fn issued_secrets(&self) -> Vec<String> {
        locked(&self.auth).issued.clone()
    }

    pub fn request(&self, request_id: &str) -> Option<RequestSummary> {
        locked(&self.requests)
            .get(request_id)
            .map(|tracked| summary(request_id, tracked))
    }

    /// How many devices request `request_id` carried.
    pub fn request_devices(&self, request_id: &str) -> Option<usize> {
        self.request(request_id).map(|r| r.devices)
    }

    pub fn requests(&self) -> Vec<RequestSummary> {
        let mut all: Vec<RequestSummary> = locked(&self.requests)
            .iter()
            .map(|(id, tracked)| summary(id, tracked))
            .collect();
        all.sort_by(|a, b| a.request_id.cmp(&b.request_id));
        all
    }

    pub fn callback_stats(&self) -> CallbackStats {
        *locked(&self.stats)
    }

    /// Waits until every request is resolved and every callback delivered or given up; false on
    /// timeout.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let resolved = locked(&self.requests).values().all(|r| r.resolved)
                && self.usage_requests_open.load(Ordering::SeqCst) == 0;
            if resolved && self.callback_stats().pending == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn config(&self) -> ThingSpaceConfig {
        locked(&self.config).clone()
    }

    /// A draw of 53 random bits.
    fn bits(&self) -> u64 {
        (self.ids.next_unit() * (1u64 << 53) as f64) as u64
    }

    /// A v4-shaped UUID; the serial in the last group keeps ids unique under concurrency.
    fn new_id(&self) -> String {
        let (a, b) = (self.bits(), self.bits());
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a & 0xffff_ffff,
            (a >> 32) & 0xffff,
            b & 0xfff,
            0x8000 | ((b >> 12) & 0x3fff),
            serial & 0xffff_ffff_ffff
        )
    }

    fn new_msisdn(&self) -> String {
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        format!("1555{:07}", serial % 10_000_000)
    }

    fn new_ip(&self) -> String {
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        format!(
            "10.{}.{}.{}",
            (serial >> 16) & 0xff,
            (serial >> 8) & 0xff,
            serial & 0xff
        )
    }

    /// The current token of `app_key`, or a new one; and the seconds it has left.
    fn issue_token(&self, app_key: &str, ttl: Duration) -> (String, u64) {
        let now = Instant::now();
        let mut auth = locked(&self.auth);
        if let Some(current) = auth.app_tokens.get(app_key) {
            if let Some(issued) = auth.tokens.get(current).filter(|t| t.expires_at > now) {
                let left = issued.expires_at.duration_since(now);
                return (current.clone(), left.as_millis().div_ceil(1000) as u64);
            }
        }
        let token = format!("{:x}{:x}", self.bits(), self.bits()) + &self.new_id().replace('-', "");
        auth.tokens.insert(
            token.clone(),
            IssuedToken {
                expires_at: now + ttl,
            },
        );
        auth.app_tokens.insert(app_key.to_owned(), token.clone());
        auth.issued.push(token.clone());
        (token, ttl.as_millis().div_ceil(1000) as u64)
    }

    fn check_bearer(&self, headers: &HeaderMap) -> Result<(), Box<Response>> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let Some(token) = token else {
            return Err(unauthorized("Missing bearer token"));
        };
        match locked(&self.auth).tokens.get(token) {
            Some(issued) if issued.expires_at > Instant::now() => Ok(()),
            Some(_) => Err(unauthorized("Access token expired")),
            None => Err(unauthorized("Invalid access token")),
        }
    }

    fn check_session(
        &self,
        headers: &HeaderMap,
        config: &ThingSpaceConfig,
    ) -> Result<Caller, Box<Response>> {
        let token = headers
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(bad_request(
                "REQUEST_FAILED.SessionToken.Format",
                "The VZ-M2M-Token header is missing or malformed",
            ));
        };
        let now = Instant::now();
        let mut auth = locked(&self.auth);
        let Some(session) = auth.sessions.get_mut(token) else {
            return Err(bad_request(
                "INPUT_INVALID.SessionToken.Invalid",
                "The session token is not valid",
            ));
        };
        if session.expired || now.duration_since(session.last_used) > config.session_idle_timeout {
            session.expired = true;
            return Err(bad_request(
                "REQUEST_FAILED.SessionToken.Expired",
                "The session token has expired",
            ));
        }
        session.last_used = now;
        Ok(Caller {
            account_name: session.account_name.clone(),
        })
    }

    /// Counts a call against the account's limit for `endpoint`, or answers 429.
    fn admit(
        &self,
        account: &str,
        endpoint: Endpoint,
        config: &ThingSpaceConfig,
    ) -> Result<(), Box<Response>> {
        let Some(limit) = config.rate_limits.get(endpoint) else {
            return Ok(());
        };
        let now = Instant::now();
        let window = config.rate_limit_window;
        let mut load = locked(&self.load);
        let recent = load.entry((account.to_owned(), endpoint)).or_default();
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            recent.pop_front();
        }
        if recent.len() < limit as usize {
            recent.push_back(now);
            return Ok(());
        }
        let wait = recent
            .front()
            .map(|t| window.saturating_sub(now.duration_since(*t)))
            .unwrap_or(window);
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            "REQUEST_FAILED.TooManyRequests",
            &format!("At most {limit} requests per {}s", window.as_secs()),
        );
        if config.retry_after {
            let seconds = wait.as_millis().div_ceil(1000).max(1);
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        Err(Box::new(response))
    }

    /// Slow answers and server faults, drawn from the configured random seed.
    async fn misbehave(&self, config: &ThingSpaceConfig) -> Result<(), Box<Response>> {
        if self.faults.chance(config.slow_rate) {
            tokio::time::sleep(config.slow_answer).await;
        }
        if self.faults.chance(config.transient_fault_rate) {
            let status = match (self.faults.next_unit() * 4.0) as u8 {
                0 => StatusCode::INTERNAL_SERVER_ERROR,
                1 => StatusCode::BAD_GATEWAY,
                2 => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::GATEWAY_TIMEOUT,
            };
            return Err(Box::new(
                (status, status.canonical_reason().unwrap_or("error")).into_response(),
            ));
        }
        Ok(())
    }

    /// What every M2M call goes through before its own work: bearer, session, rate limit, faults.
    async fn gate(
        &self,
        headers: &HeaderMap,
        endpoint: Option<Endpoint>,
    ) -> Result<(Caller, ThingSpaceConfig), Response> {
        let config = self.config();
        self.check_bearer(headers).map_err(|r| *r)?;
        let caller = self.check_session(headers, &config).map_err(|r| *r)?;
        let tag = |r: Box<Response>| for_account(*r, &caller.account_name);
        if let Some(endpoint) = endpoint {
            self.admit(&caller.account_name, endpoint, &config)
                .map_err(tag)?;
        }
        self.misbehave(&config).await.map_err(tag)?;
        Ok((caller, config))
    }

    fn login(&self, body: &[u8], config: &ThingSpaceConfig) -> Response {
        let login: LoginBody = match parse_body(body) {
            Ok(login) => login,
            Err(response) => return *response,
        };
        let mut auth = locked(&self.auth);
        let failures = auth
            .failed_logins
            .get(&login.username)
            .copied()
            .unwrap_or(0);
        if failures >= config.max_failed_logins {
            return error(
                StatusCode::BAD_REQUEST,
                "REQUEST_FAILED.User.Locked",
                "The user is locked after too many failed logins",
            );
        }
        match config.users.get(&login.username) {
            Some(user) if user.password == login.password => {
                auth.failed_logins.remove(&login.username);
                let token = self.new_id();
                auth.sessions.insert(
                    token.clone(),
                    Session {
                        account_name: user.account_name.clone(),
                        last_used: Instant::now(),
                        expired: false,
                    },
                );
                auth.issued.push(token.clone());
                for_account(
                    Json(json!({"sessionToken": token})).into_response(),
                    &user.account_name,
                )
            }
            _ => {
                *auth.failed_logins.entry(login.username).or_default() += 1;
                error(
                    StatusCode::BAD_REQUEST,
                    "REQUEST_FAILED.Login.Failed",
                    "Invalid username or password",
                )
            }
        }
    }

    /// The account a body or path names, checked against the session's.
    fn same_account(caller: &Caller, named: Option<&str>) -> Result<(), Box<Response>> {
        match named {
            None | Some("") => Err(bad_request(
                "INPUT_INVALID.Account.NotDefined",
                "accountName is required",
            )),
            Some(name) if name == caller.account_name => Ok(()),
            Some(name) => Err(bad_request(
                "REQUEST_FAILED.AccountNotFound",
                &format!("Account {name} not found"),
            )),
        }
    }

    /// Validates an action, tracks it and schedules its completion; answers `{requestId}`.
    fn accept(
        self: &Arc<Self>,
        action: Action,
        caller: &Caller,
        body: &[u8],
        config: &ThingSpaceConfig,
    ) -> Result<Response, Box<Response>> {
        let body: ActionBody = parse_body(body)?;
        Self::same_account(caller, body.account_name.as_deref())?;
        let devices = body.devices.unwrap_or_default();
        if devices.is_empty() {
            return Err(bad_request(
                "INPUT_INVALID.Devices.Missing",
                "At least one device is required",
            ));
        }
        if devices.len() > config.max_devices_per_request {
            return Err(bad_request(
                "INPUT_INVALID.MaxRequestsExceeded",
                &format!(
                    "At most {} devices per request, got {}",
                    config.max_devices_per_request,
                    devices.len()
                ),
            ));
        }
        let targets = devices
            .iter()
            .map(device_identifiers)
            .collect::<Result<Vec<_>, _>>()?;
        let plan_known = |plan: &str| {
            config.service_plans.is_empty() || config.service_plans.iter().any(|p| p == plan)
        };
        let service_plan = match action {
            Action::Activate | Action::Plan => {
                let Some(plan) = body.service_plan.filter(|p| !p.is_empty()) else {
                    return Err(bad_request(
                        "INPUT_INVALID.ServicePlan.Invalid",
                        "servicePlan is required",
                    ));
                };
                if !plan_known(&plan) {
                    return Err(bad_request(
                        "REQUEST_FAILED._servicePlan_.NotFound",
                        &format!("Service plan {plan} not found"),
                    ));
                }
                Some(plan)
            }
            _ => None,
        };
        if action == Action::Activate
            && !body
                .mdn_zip_code
                .as_deref()
                .is_some_and(|zip| digits(zip, 5..=5))
        {
            return Err(bad_request(
                "INPUT_INVALID.MdnZipCode.Invalid",
                "mdnZipCode must be a 5-digit ZIP code",
            ));
        }
        if action == Action::Deactivate && body.reason_code.as_deref() != Some("FF") {
            return Err(bad_request(
                "INPUT_INVALID.ReasonCode.Invalid",
                "reasonCode must be FF",
            ));
        }

        let request_id = self.new_id();
        locked(&self.requests).insert(
            request_id.clone(),
            Tracked {
                account_name: caller.account_name.clone(),
                action,
                devices: targets.len(),
                failed: 0,
                resolved: false,
            },
        );
        if action == Action::Activate {
            let mut known = locked(&self.devices);
            for (iccid, _) in &targets {
                if let Some(device) = known.get_mut(iccid) {
                    device.pending_activation = transition(action, device.state).is_ok();
                }
            }
        }
        let id = request_id.clone();
        let account = caller.account_name.clone();
        self.later(config.callback_delay, move |sim| async move {
            sim.complete(
                &id,
                &account,
                action,
                targets,
                service_plan,
                Swap::default(),
            )
            .await;
        });
        Ok(Json(json!({"requestId": request_id})).into_response())
    }

    /// Change Device Identifier: one device a request, its new ICCID, IMEI or both as
    /// `change4gOption` names (`ChangeMSISDN` and the 3G moves are not modelled), answered by a
    /// CarrierService callback that names the device as the request did.
    fn accept_device_id(
        self: &Arc<Self>,
        caller: &Caller,
        body: &[u8],
        config: &ThingSpaceConfig,
    ) -> Result<Response, Box<Response>> {
        let body: DeviceIdChangeBody = parse_body(body)?;
        let target = device_identifiers(&DeviceBody {
            device_ids: body.device_ids,
        })?;
        let to = DeviceBody {
            device_ids: body.device_ids_to,
        };
        let mut swap = Swap::default();
        for id in &to.device_ids {
            let kind = id.kind.to_ascii_lowercase();
            if !identifier_valid(&kind, &id.id) {
                return Err(bad_request(
                    "INPUT_INVALID.Device.Identifier.Invalid",
                    &format!("Device identifier {} is not a valid {kind}", id.id),
                ));
            }
            match kind.as_str() {
                "iccid" => swap.iccid = Some(id.id.clone()),
                "imei" => swap.imei = Some(id.id.clone()),
                _ => {}
            }
        }
        let wanted = match body.change_4g_option.as_deref() {
            Some("ChangeICCID") => (true, false),
            Some("ChangeIMEI") => (false, true),
            Some("ChangeIMEIandICCID") => (true, true),
            other => {
                return Err(bad_request(
                    "INPUT_INVALID.Change4GOption.Invalid",
                    &format!("change4gOption {other:?} is not one this service takes"),
                ))
            }
        };
        if (swap.iccid.is_some(), swap.imei.is_some()) != wanted {
            return Err(bad_request(
                "INPUT_INVALID.DeviceIdsTo.Invalid",
                "deviceIdsTo must hold exactly the identifiers change4gOption changes",
            ));
        }
        let request_id = self.new_id();
        locked(&self.requests).insert(
            request_id.clone(),
            Tracked {
                account_name: caller.account_name.clone(),
                action: Action::DeviceId,
                devices: 1,
                failed: 0,
                resolved: false,
            },
        );
        let id = request_id.clone();
        let account = caller.account_name.clone();
        self.later(config.callback_delay, move |sim| async move {
            sim.complete(&id, &account, Action::DeviceId, vec![target], None, swap)
                .await;
        });
        Ok(Json(json!({"requestId": request_id})).into_response())
    }

    /// Resolves every device of a request, then sends their callbacks.
    async fn complete(
        self: Arc<Self>,
        request_id: &str,
        account: &str,
        action: Action,
        targets: Vec<(String, Option<String>)>,
        service_plan: Option<String>,
        swap: Swap,
    ) {
        let config = self.config();
        let outcomes: Vec<Outcome> = {
            let mut devices = locked(&self.devices);
            targets
                .into_iter()
                .map(|(iccid, imei)| {
                    self.resolve(
                        &mut devices,
                        (action, &swap),
                        iccid,
                        imei,
                        service_plan.as_deref(),
                        &config,
                    )
                })
                .collect()
        };
        let listener = locked(&self.listeners)
            .get(&(account.to_owned(), CARRIER_SERVICE.to_owned()))
            .cloned();
        let deliveries = match &listener {
            Some(listener) => {
                let bodies = outcomes
                    .iter()
                    .map(|outcome| callback_body(request_id, action, outcome, listener, &config));
                self.queue(&listener.url, bodies, &config)
            }
            None => Vec::new(),
        };
        // Resolved only once the deliveries are counted as pending, so `wait_idle` sees no gap.
        if let Some(tracked) = locked(&self.requests).get_mut(request_id) {
            tracked.failed = outcomes.iter().filter(|o| o.fault.is_some()).count();
            tracked.resolved = true;
        }
        self.deliver(deliveries, &config, None).await;
    }

    fn resolve(
        &self,
        devices: &mut BTreeMap<String, Device>,
        (action, swap): (Action, &Swap),
        iccid: String,
        imei: Option<String>,
        service_plan: Option<&str>,
        config: &ThingSpaceConfig,
    ) -> Outcome {
        let failed = |iccid: String, imei, state, code: &'static str, message: String| Outcome {
            iccid,
            imei,
            msisdn: None,
            ip_address: None,
            service_plan: None,
            state,
            fault: Some((code, message)),
        };
        // The new SIM must not be a line already (Verizon publishes no code for it: ours).
        if let Some(new) = swap.iccid.as_ref().filter(|new| devices.contains_key(*new)) {
            let state = devices
                .get(&iccid)
                .map_or(DeviceState::PreActive, |d| d.state);
            return failed(
                iccid,
                imei,
                state,
                "REQUEST_FAILED.DeviceIdentifier.InUse",
                format!("Device {new} is already on an account"),
            );
        }
        let Some(device) = devices.get_mut(&iccid) else {
            return failed(
                iccid,
                imei,
                DeviceState::PreActive,
                "REQUEST_FAILED.DeviceNotFound",
                "Device not found".into(),
            );
        };
        device.pending_activation = false;
        if self.outcomes.chance(config.device_failure_rate) {
            return failed(
                iccid,
                imei,
                device.state,
                "REQUEST_FAILED.UnexpectedError",
                "An unexpected error occurred".into(),
            );
        }
        match transition(action, device.state) {
            Err(code) => {
                let message = if code.ends_with("DeviceAlreadyActive") {
                    "Device is already active".to_owned()
                } else {
                    format!(
                        "Device state {} does not allow {}",
                        device.state.as_str(),
                        action.as_str()
                    )
                };
                failed(iccid, imei, device.state, code, message)
            }
            Ok(next) => {
                match action {
                    Action::Activate => {
                        device.msisdn = Some(self.new_msisdn());
                        device.ip_address = Some(self.new_ip());
                        device.service_plan = service_plan.map(str::to_owned);
                        if imei.is_some() {
                            device.imei.clone_from(&imei);
                        }
                    }
                    Action::Deactivate => {
                        device.msisdn = None;
                        device.ip_address = None;
                    }
                    Action::Plan => device.service_plan = service_plan.map(str::to_owned),
                    Action::DeviceId => {
                        if swap.imei.is_some() {
                            device.imei.clone_from(&swap.imei);
                        }
                    }
                    Action::Suspend | Action::Restore => {}
                }
                device.state = next;
                let outcome = Outcome {
                    iccid,
                    imei: device.imei.clone(),
                    msisdn: device.msisdn.clone(),
                    ip_address: device.ip_address.clone(),
                    service_plan: device.service_plan.clone(),
                    state: next,
                    fault: None,
                };
                // The line moves to its new SIM: known by the new ICCID from now on.
                if let Some(new) = swap.iccid.as_ref().filter(|_| action == Action::DeviceId) {
                    if let Some(mut moved) = devices.remove(&outcome.iccid) {
                        moved.iccid.clone_from(new);
                        devices.insert(new.clone(), moved);
                    }
                }
                outcome
            }
        }
    }

    /// Sends `deliveries` with at most `callback_concurrency` in flight, each also holding a
    /// permit of `lane` when one is given.
    async fn deliver(
        self: &Arc<Self>,
        deliveries: Vec<Delivery>,
        config: &ThingSpaceConfig,
        lane: Option<&Arc<tokio::sync::Semaphore>>,
    ) {
        if deliveries.is_empty() {
            return;
        }
        let workers = config.callback_concurrency.clamp(1, deliveries.len());
        let queue = Arc::new(Mutex::new(VecDeque::from(deliveries)));
        let mut tasks = JoinSet::new();
        for _ in 0..workers {
            let sim = self.clone();
            let queue = queue.clone();
            let attempts = config.max_callback_threshold.max(1);
            let pause = config.callback_retry_delay;
            let lane = lane.cloned();
            tasks.spawn(async move {
                loop {
                    // A closed lane cannot happen (it is never closed); deliver unlimited then.
                    let _permit = match &lane {
                        Some(lane) => lane.clone().acquire_owned().await.ok(),
                        None => None,
                    };
                    let Some(delivery) = locked(&queue).pop_front() else {
                        break;
                    };
                    sim.deliver_one(delivery, attempts, pause).await;
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    }

    async fn deliver_one(&self, mut delivery: Delivery, attempts: u32, pause: Duration) {
        let mut delivered = false;
        for attempt in 1..=attempts {
            delivery.body["callbackCount"] = json!(attempt);
            let answer = self
                .http
                .post(&delivery.url)
                .json(&delivery.body)
                .send()
                .await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                delivered = true;
                break;
            }
            locked(&self.stats).failed_attempts += 1;
            if attempt < attempts {
                tokio::time::sleep(pause).await;
            }
        }
        let mut stats = locked(&self.stats);
        stats.pending = stats.pending.saturating_sub(1);
        if delivered {
            stats.delivered += 1;
        } else {
            stats.gave_up += 1;
        }
    }

    fn list(
        &self,
        caller: &Caller,
        body: &[u8],
        config: &ThingSpaceConfig,
    ) -> Result<Response, Box<Response>> {
        let body: ListBody = parse_body(body)?;
        if body.account_name.is_some() {
            Self::same_account(caller, body.account_name.as_deref())?;
        }
        let devices = locked(&self.devices);
        let render = |d: &Device| device_json(d, &caller.account_name);
        if let Some(id) = &body.device_id {
            let entry = DeviceBody {
                device_ids: vec![DeviceIdBody {
                    kind: id.kind.clone(),
                    id: id.id.clone(),
                }],
            };
            let (iccid, _) = device_identifiers(&entry)?;
            let found: Vec<Value> = devices.get(&iccid).map(render).into_iter().collect();
            return Ok(Json(json!({"hasMoreData": false, "devices": found})).into_response());
        }
        if body.account_name.is_none() {
            Self::same_account(caller, None)?;
        }
        let after = body.last_seen_device_id.map(|id| id.id);
        let from = match &after {
            Some(after) => std::ops::Bound::Excluded(after),
            None => std::ops::Bound::Unbounded,
        };
        let mut page: Vec<Value> = devices
            .range::<String, _>((from, std::ops::Bound::Unbounded))
            .map(|(_, d)| d)
            .take(config.list_page_size.max(1) + 1)
            .map(render)
            .collect();
        let more = page.len() > config.list_page_size.max(1);
        page.truncate(config.list_page_size.max(1));
        Ok(Json(json!({"hasMoreData": more, "devices": page})).into_response())
    }
}

fn summary(request_id: &str, tracked: &Tracked) -> RequestSummary {
    RequestSummary {
        request_id: request_id.to_owned(),
        account_name: tracked.account_name.clone(),
        action: tracked.action,
        devices: tracked.devices,
        failed: tracked.failed,
        status: match (tracked.resolved, tracked.failed) {
            (false, _) => RequestStatus::Pending,
            (true, 0) => RequestStatus::Success,
            (true, _) => RequestStatus::Failure,
        },
    }
}

fn device_json(device: &Device, account: &str) -> Value {
    let mut ids = vec![json!({"id": device.iccid, "kind": "iccid"})];
    if let Some(imei) = &device.imei {
        ids.push(json!({"id": imei, "kind": "imei"}));
    }
    if let Some(msisdn) = &device.msisdn {
        ids.push(json!({"id": msisdn, "kind": "msisdn"}));
    }
    let state = if device.pending_activation {
        "pending activation"
    } else {
        device.state.as_str()
    };
    json!({
        "accountName": account,
        "deviceIds": ids,
        "carrierInformations": [{
            "carrierName": "Verizon Wireless",
            "servicePlan": device.service_plan,
            "state": state,
        }],
        "connected": device.state == DeviceState::Active,
        "ipAddress": device.ip_address,
        "createdAt": device.created_at,
    })
}

/// A CarrierService callback. Failures echo kinds in mixed case as the
/// documented sample does; successes use lower case as AMOP reads them. `callbackCount` is set
/// per attempt.
fn callback_body(
    request_id: &str,
    action: Action,
    outcome: &Outcome,
    listener: &Listener,
    config: &ThingSpaceConfig,
) -> Value {
    let mut body = callback_envelope(request_id, listener, config);
    match &outcome.fault {
        Some((code, message)) => {
            let mut ids = vec![json!({"id": outcome.iccid, "kind": "Iccid"})];
            if let Some(imei) = &outcome.imei {
                ids.push(json!({"id": imei, "kind": "Imei"}));
            }
            body["deviceIds"] = json!(ids);
            body["status"] = json!("Failed");
            body["faultResponse"] = json!({
                "faultcode": format!("{FAULT_PREFIX}{code}"),
                "faultstring": message,
            });
        }
        None => {
            let mut ids = vec![json!({"id": outcome.iccid, "kind": "iccid"})];
            if let Some(imei) = &outcome.imei {
                ids.push(json!({"id": imei, "kind": "imei"}));
            }
            if let Some(msisdn) = &outcome.msisdn {
                ids.push(json!({"id": msisdn, "kind": "msisdn"}));
            }
            body["deviceIds"] = json!(ids);
            body["status"] = json!("Success");
            let mut response = json!({"state": outcome.state.as_str()});
            if let Some(plan) = &outcome.service_plan {
                response["servicePlan"] = json!(plan);
            }
            if let Some(ip) = &outcome.ip_address {
                response["ipAddress"] = json!(ip);
            }
            body["deviceResponse"] = json!({ format!("{}Response", action.as_str()): response });
        }
    }
    body
}

/// What every callback carries: its request, the delivery counters (`callbackCount` is set per
/// attempt) and the listener's credentials echoed.
fn callback_envelope(request_id: &str, listener: &Listener, config: &ThingSpaceConfig) -> Value {
    let mut body = json!({
        "requestId": request_id,
        "maxCallbackThreshold": config.max_callback_threshold,
        "callbackCount": 1,
    });
    if let Some(username) = &listener.username {
        body["username"] = json!(username);
    }
    if let Some(password) = &listener.password {
        body["password"] = json!(password);
    }
    body
}

/// A DeviceUsage callback: the device's totals over the request's span, or a failure for a
/// device the account does not have (`None`).
fn usage_callback_body(
    request_id: &str,
    iccid: &str,
    usage: Option<(u64, u64)>,
    listener: &Listener,
    config: &ThingSpaceConfig,
) -> Value {
    let mut body = callback_envelope(request_id, listener, config);
    match usage {
        Some((bytes, sms)) => {
            body["deviceIds"] = json!([{"id": iccid, "kind": "iccid"}]);
            body["status"] = json!("Success");
            body["deviceResponse"] = json!({"usage": {"bytesUsed": bytes, "smsUsed": sms}});
        }
        None => {
            body["deviceIds"] = json!([{"id": iccid, "kind": "Iccid"}]);
            body["status"] = json!("Failed");
            body["faultResponse"] = json!({
                "faultcode": format!("{FAULT_PREFIX}REQUEST_FAILED.DeviceNotFound"),
                "faultstring": "Device not found",
            });
        }
    }
    body
}

async fn token_route(
    State(sim): State<Arc<ThingSpace>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let config = sim.config();
    let app = basic_credentials(&headers)
        .filter(|(key, secret)| config.apps.get(key).is_some_and(|s| s == secret));
    let Some((app_key, _)) = app else {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({
                "error": "invalid_client",
                "error_description": "Client authentication failed",
            })),
        )
            .into_response();
    };
    if form_value(&body, "grant_type").as_deref() != Some("client_credentials") {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "error": "unsupported_grant_type",
                "error_description": "grant_type must be client_credentials",
            })),
        )
            .into_response();
    }
    let (token, expires_in) = sim.issue_token(&app_key, config.token_ttl);
    Json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "scope": "ts.m2m",
    }))
    .into_response()
}

async fn login_route(
    State(sim): State<Arc<ThingSpace>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let config = sim.config();
    if let Err(response) = sim.check_bearer(&headers) {
        return *response;
    }
    if let Err(response) = sim.misbehave(&config).await {
        return *response;
    }
    sim.login(&body, &config)
}

async fn logout_route(State(sim): State<Arc<ThingSpace>>, headers: HeaderMap) -> Response {
    let (caller, _) = match sim.gate(&headers, None).await {
        Ok(gated) => gated,
        Err(response) => return response,
    };
    let token = headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .unwrap_or_default()
        .to_owned();
    locked(&sim.auth).sessions.remove(&token);
    for_account(
        Json(json!({"sessionToken": token})).into_response(),
        &caller.account_name,
    )
}

async fn action_route(
    State(sim): State<Arc<ThingSpace>>,
    method: Method,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(endpoint) = Endpoint::parse(&method, &name) else {
        return error(StatusCode::NOT_FOUND, "404", "Resource not found");
    };
    let (caller, config) = match sim.gate(&headers, Some(endpoint)).await {
        Ok(gated) => gated,
        Err(response) => return response,
    };
    let answer = match endpoint {
        Endpoint::Action(action) => sim.accept(action, &caller, &body, &config),
        Endpoint::List => sim.list(&caller, &body, &config),
        Endpoint::Status => Err(bad_request(
            "INPUT_INVALID.Request.Invalid",
            "not an action",
        )),
    };
    for_account(answer.unwrap_or_else(|r| *r), &caller.account_name)
}

async fn device_id_route(
    State(sim): State<Arc<ThingSpace>>,
    Path(_service_type): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let endpoint = Endpoint::Action(Action::DeviceId);
    let (caller, config) = match sim.gate(&headers, Some(endpoint)).await {
        Ok(gated) => gated,
        Err(response) => return response,
    };
    let answer = sim.accept_device_id(&caller, &body, &config);
    for_account(answer.unwrap_or_else(|r| *r), &caller.account_name)
}

async fn usage_route(
    State(sim): State<Arc<ThingSpace>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Read like the device list, under its limits.
    let (caller, _) = match sim.gate(&headers, Some(Endpoint::List)).await {
        Ok(gated) => gated,
        Err(response) => return response,
    };
    let answer = sim.usage_history(&body);
    for_account(answer.unwrap_or_else(|r| *r), &caller.account_name)
}

async fn aggregate_usage_route(
    State(sim): State<Arc<ThingSpace>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Under the device list's limits, as the daily history.
    let (caller, config) = match sim.gate(&headers, Some(Endpoint::List)).await {
        Ok(gated) => gated,
        Err(response) => return response,
    };
    let answer = sim.aggregate_usage(&caller, &body, &config);
    for_account(answer.unwrap_or_else(|r| *r), &caller.account_name)
}

async fn status_route(
    State(sim): State<Arc<ThingSpace>>,
    Path((account, request_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (caller, _) = match sim.gate(&headers, Some(Endpoint::Status)).await {
        Ok(gated) => gated,
        Err(response) => return response,
    };
    let answer = ThingSpace::same_account(&caller, Some(&account)).and_then(|()| {
        sim.request(&request_id)
            .filter(|r| r.account_name == account)
            .map(|r| {
                Json(json!({"requestId": request_id, "status": r.status.as_str()})).into_response()
            })
            .ok_or_else(|| {
                bad_request(
                    "REQUEST_FAILED.RequestNotFound",
                    &format!("Request {request_id} not found"),
                )
            })
    });
    for_account(answer.unwrap_or_else(|r| *r), &caller.account_name)
}

async fn register_route(
    State(sim): State<Arc<ThingSpace>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (caller, _) = match sim.gate(&headers, None).await {
        Ok(gated) => gated,
        Err(response) => return response,
    };
    let answer = ThingSpace::same_account(&caller, Some(&account))
        .and_then(|()| parse_body::<ListenerBody>(&body))
        .and_then(|listener| {
            if !SERVICE_NAMES.contains(&listener.name.as_str()) {
                return Err(bad_request(
                    "INPUT_INVALID.ServiceName.Invalid",
                    &format!("Unknown service {}", listener.name),
                ));
            }
            if !(listener.url.starts_with("http://") || listener.url.starts_with("https://")) {
                return Err(bad_request(
                    "INPUT_INVALID.Url.Invalid",
                    "url must be http(s)",
                ));
            }
            locked(&sim.listeners).insert(
                (account.clone(), listener.name.clone()),
                Listener {
                    url: listener.url,
                    username: listener.username,
                    password: listener.password,
                },
            );
            Ok(Json(json!({"accountName": account, "name": listener.name})).into_response())
        });
    for_account(answer.unwrap_or_else(|r| *r), &caller.account_name)
}

async fn listeners_route(
    State(sim): State<Arc<ThingSpace>>,
    Path(account): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (caller, _) = match sim.gate(&headers, None).await {
        Ok(gated) => gated,
        Err(response) => return response,
    };
    let answer = ThingSpace::same_account(&caller, Some(&account)).map(|()| {
        // Never the listener's password: it goes out only inside callbacks.
        let mut listed: Vec<Value> = locked(&sim.listeners)
            .iter()
            .filter(|((owner, _), _)| *owner == account)
            .map(|((_, name), l)| json!({"accountName": account, "name": name, "url": l.url}))
            .collect();
        listed.sort_by_key(|l| l["name"].as_str().map(str::to_owned));
        Json(Value::Array(listed)).into_response()
    });
    for_account(answer.unwrap_or_else(|r| *r), &caller.account_name)
}

async fn deregister_route(
    State(sim): State<Arc<ThingSpace>>,
    Path((account, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (caller, _) = match sim.gate(&headers, None).await {
        Ok(gated) => gated,
        Err(response) => return response,
    };
    let answer = ThingSpace::same_account(&caller, Some(&account)).and_then(|()| {
        match locked(&sim.listeners).remove(&(account.clone(), name.clone())) {
            Some(_) => Ok(Json(json!({"accountName": account, "name": name})).into_response()),
            None => Err(bad_request(
                "REQUEST_FAILED.Callback.NotFound",
                &format!("No {name} listener registered"),
            )),
        }
    });
    for_account(answer.unwrap_or_else(|r| *r), &caller.account_name)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedRequest {
    iccids: Vec<String>,
    state: String,
}

/// Test and demo hook: adds (or resets) devices.
async fn seed_route(State(sim): State<Arc<ThingSpace>>, Json(seed): Json<SeedRequest>) -> Response {
    let Some(state) = DeviceState::parse(&seed.state) else {
        return error(
            StatusCode::BAD_REQUEST,
            "seed",
            &format!("unknown state {}", seed.state),
        );
    };
    sim.seed_devices(seed.iccids.iter().map(String::as_str), state);
    Json(json!({"seeded": seed.iccids.len()})).into_response()
}

/// Test and demo hook: the next call with an existing session (and token) is told it expired.
async fn expire_route(State(sim): State<Arc<ThingSpace>>) -> Response {
    sim.expire_sessions();
    sim.expire_tokens();
    StatusCode::NO_CONTENT.into_response()
}

/// Records every call (the `_sim` hooks aside) with the account a handler tagged it with.
async fn log_calls(State(sim): State<Arc<ThingSpace>>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    if !path.starts_with("/_sim") {
        sim.log.push(LoggedRequest {
            carrier: "thingspace",
            method,
            path,
            account: response
                .extensions()
                .get::<LoggedAccount>()
                .map(|a| a.0.clone()),
            status: response.status().as_u16(),
            at_ms: sim.started.elapsed().as_millis() as u64,
        });
    }
    response
}

pub fn router(sim: Arc<ThingSpace>) -> Router {
    Router::new()
        .route("/api/ts/v1/oauth2/token", post(token_route))
        .route("/api/m2m/v1/session/login", post(login_route))
        .route("/api/m2m/v1/session/logout", post(logout_route))
        .route(
            "/api/m2m/v1/devices/actions/{name}",
            post(action_route).put(action_route),
        )
        .route(
            "/api/m2m/v1/devices/{service_type}/actions/deviceId",
            put(device_id_route),
        )
        .route("/api/m2m/v1/devices/usage/actions/list", post(usage_route))
        .route(
            "/api/m2m/v1/devices/usage/actions/list/aggregate",
            post(aggregate_usage_route),
        )
        .route(
            "/api/m2m/v1/accounts/{account}/requests/{request_id}/status",
            get(status_route),
        )
        .route(
            "/api/m2m/v1/callbacks/{account}",
            post(register_route).get(listeners_route),
        )
        .route(
            "/api/m2m/v1/callbacks/{account}/name/{name}",
            delete(deregister_route),
        )
        .route("/_sim/devices", post(seed_route))
        .route("/_sim/expire", post(expire_route))
        // A 10,000-device action with every identifier kind is well over axum's 2 MB default.
        .layer(DefaultBodyLimit::max(16 * 1024 * 1024))
        .layer(from_fn_with_state(sim.clone(), log_calls))
        .with_state(sim)
}

/// A CarrierService listener for tests and local runs: keeps every callback body it takes, and can
/// refuse the first attempt of chosen devices' callbacks to exercise re-sends.
pub struct CallbackSink {
    addr: std::net::SocketAddr,
    state: Arc<SinkState>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct SinkState {
    received: Mutex<Vec<Bytes>>,
    refuse_first: Mutex<std::collections::HashSet<String>>,
    refused: AtomicU64,
}

/// The first ICCID and the `callbackCount` of a callback body.
fn callback_key(body: &[u8]) -> Option<(String, u64)> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let iccid = value
        .get("deviceIds")?
        .as_array()?
        .iter()
        .find(|id| {
            id.get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k.eq_ignore_ascii_case("iccid"))
        })?
        .get("id")?
        .as_str()?
        .to_owned();
    let count = value
        .get("callbackCount")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    Some((iccid, count))
}

async fn sink_route(State(state): State<Arc<SinkState>>, body: Bytes) -> StatusCode {
    if let Some((iccid, 1)) = callback_key(&body) {
        if locked(&state.refuse_first).contains(&iccid) {
            state.refused.fetch_add(1, Ordering::Relaxed);
            return StatusCode::SERVICE_UNAVAILABLE;
        }
    }
    locked(&state.received).push(body);
    StatusCode::OK
}

impl CallbackSink {
    pub async fn start(addr: std::net::SocketAddr) -> anyhow::Result<Self> {
        let state = Arc::new(SinkState::default());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/callbacks", post(sink_route))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "callback sink stopped");
            }
        });
        Ok(Self { addr, state, task })
    }

    /// The URL to register as the CarrierService listener.
    pub fn url(&self) -> String {
        format!("http://{}/callbacks", self.addr)
    }

    /// The first attempt of these devices' callbacks is answered 503.
    pub fn refuse_first_attempt<'a>(&self, iccids: impl IntoIterator<Item = &'a str>) {
        locked(&self.state.refuse_first).extend(iccids.into_iter().map(str::to_owned));
    }

    /// Bodies of the callbacks answered 2xx, in arrival order.
    pub fn received(&self) -> Vec<Bytes> {
        locked(&self.state.received).clone()
    }

    /// Attempts answered 503.
    pub fn refused(&self) -> u64 {
        self.state.refused.load(Ordering::Relaxed)
    }
}

impl Drop for CallbackSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thingspace_state_model_matches_the_documented_moves() {
        use DeviceState::*;
        assert_eq!(transition(Action::Suspend, Active), Ok(Suspend));
        assert_eq!(transition(Action::Restore, Suspend), Ok(Active));
        assert_eq!(transition(Action::Deactivate, Active), Ok(Deactive));
        assert_eq!(transition(Action::Activate, Deactive), Ok(Active));
        assert_eq!(transition(Action::Activate, PreActive), Ok(Active));
        assert_eq!(
            transition(Action::Activate, Active),
            Err("REQUEST_FAILED.DeviceAlreadyActive")
        );
        for (action, from) in [
            (Action::Plan, Suspend),
            (Action::Suspend, Suspend),
            (Action::Deactivate, Suspend),
            (Action::Activate, Suspend),
            (Action::Restore, PreActive),
            (Action::Suspend, PreActive),
        ] {
            assert_eq!(
                transition(action, from),
                Err("INPUT_INVALID.DeviceState.Invalid"),
                "{action:?} from {from:?}"
            );
        }
    }

    #[test]
    fn thingspace_identifiers_are_checked_per_kind() {
        assert!(identifier_valid("iccid", "8901260882296135418"));
        assert!(!identifier_valid("iccid", "8901260882296135419"), "Luhn");
        assert!(!identifier_valid("iccid", "89012608822961354a"));
        assert!(identifier_valid("imei", "490154203237518"));
        assert!(!identifier_valid("imei", "49015420323751"));
        assert!(identifier_valid("msisdn", "15551234567"));
        assert!(!identifier_valid("colour", "blue"));
    }

    #[test]
    fn thingspace_token_form_and_basic_credentials_parse() {
        assert_eq!(
            form_value(b"grant_type=client_credentials&scope=x", "grant_type").as_deref(),
            Some("client_credentials")
        );
        assert_eq!(form_value(b"scope=x", "grant_type"), None);
        let mut headers = HeaderMap::new();
        let encoded = STANDARD.encode("key:sec:ret");
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {encoded}"))
                .unwrap_or(HeaderValue::from_static("")),
        );
        assert_eq!(
            basic_credentials(&headers),
            Some(("key".to_owned(), "sec:ret".to_owned()))
        );
    }

    /// A token and a session on a running simulator, by hand.
    async fn session(
        server: &crate::SimServer,
    ) -> anyhow::Result<(reqwest::Client, String, String)> {
        let http = reqwest::Client::new();
        let base = format!("{}/thingspace/api", server.url());
        let token: Value = http
            .post(format!("{base}/ts/v1/oauth2/token"))
            .basic_auth(DEFAULT_APP_KEY, Some(DEFAULT_APP_SECRET))
            .body("grant_type=client_credentials")
            .send()
            .await?
            .json()
            .await?;
        let token = token["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let login: Value = http
            .post(format!("{base}/m2m/v1/session/login"))
            .bearer_auth(&token)
            .json(&json!({"username": DEFAULT_USERNAME, "password": DEFAULT_PASSWORD}))
            .send()
            .await?
            .json()
            .await?;
        let session = login["sessionToken"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        Ok((http, token, session))
    }

    #[tokio::test]
    async fn thingspace_lists_pages_and_shows_pending_activations() -> anyhow::Result<()> {
        let config = crate::SimConfig {
            thingspace: ThingSpaceConfig {
                list_page_size: 2,
                ..ThingSpaceConfig::default()
            },
            ..Default::default()
        };
        let server = crate::SimServer::start("127.0.0.1:0".parse()?, config).await?;
        // The activation stays pending however long the calls below take.
        server.sims.thingspace.hold_requests();
        let iccids = [
            "8901260882296135418",
            "89014103211118510720",
            "8901260000000000014",
        ];
        server
            .sims
            .thingspace
            .seed_devices(iccids, DeviceState::PreActive);
        let (http, token, session) = session(&server).await?;
        let base = format!("{}/thingspace/api/m2m/v1", server.url());
        let post = |path: &str, body: Value| {
            http.post(format!("{base}/{path}"))
                .bearer_auth(&token)
                .header("VZ-M2M-Token", &session)
                .json(&body)
                .send()
        };

        let first: Value = post(
            "devices/actions/list",
            json!({"accountName": DEFAULT_ACCOUNT}),
        )
        .await?
        .json()
        .await?;
        assert_eq!(first["hasMoreData"], json!(true));
        let last = first["devices"][1]["deviceIds"][0].clone();
        let second: Value = post(
            "devices/actions/list",
            json!({"accountName": DEFAULT_ACCOUNT, "lastSeenDeviceId": last}),
        )
        .await?
        .json()
        .await?;
        assert_eq!(second["hasMoreData"], json!(false));
        assert_eq!(second["devices"].as_array().map(Vec::len), Some(1));

        let accepted: Value = post(
            "devices/actions/activate",
            json!({"accountName": DEFAULT_ACCOUNT, "servicePlan": DEFAULT_SERVICE_PLAN,
                   "mdnZipCode": "94105",
                   "devices": [{"deviceIds": [{"kind": "iccid", "id": iccids[0]}]}]}),
        )
        .await?
        .json()
        .await?;
        let request_id = accepted["requestId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert_eq!(
            server
                .sims
                .thingspace
                .request(&request_id)
                .map(|r| r.status),
            Some(RequestStatus::Pending)
        );
        let listed: Value = post(
            "devices/actions/list",
            json!({"deviceId": {"kind": "ICCID", "id": iccids[0]}}),
        )
        .await?
        .json()
        .await?;
        assert_eq!(
            listed["devices"][0]["carrierInformations"][0]["state"],
            json!("pending activation")
        );
        let log = server.sims.log.entries();
        assert_eq!(log.len(), 6);
        assert_eq!(log[0].account, None, "the token call names no account");
        assert!(log[1..]
            .iter()
            .all(|e| e.account.as_deref() == Some(DEFAULT_ACCOUNT)));
        Ok(())
    }

    #[test]
    fn thingspace_ids_are_unique_and_uuid_shaped() {
        let sim = ThingSpace::new(ThingSpaceConfig::default(), Arc::default());
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| sim.new_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids
            .iter()
            .all(|id| id.len() == 36 && id.as_bytes()[14] == b'4'));
    }
}
