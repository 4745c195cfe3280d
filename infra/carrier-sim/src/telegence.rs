//! AT&T Telegence simulator, on an **inferred** wire format.
//!
//! Telegence is AT&T's mobility billing back end; it has no public REST reference. The only known
//! client (AMOP's public C#) reads its URLs from the environment, so the paths, field names, status
//! names and error codes below are our plausible guesses, flagged as such in the adapter. What the client
//! code does show, and is modelled faithfully: `app-id`/`app-secret` headers, a `PATCH` per
//! subscriber carrying `serviceCharacteristic` name/value pairs and an `effectiveDate`, and a batch
//! activation of at most 200 services, polled per subscriber with `batch-id` and
//! `subscriber-number` headers.
//!
//! Routes, under the `/telegence` prefix:
//! - `GET   /api/v1/subscribers/{subscriberNumber}`: one subscriber.
//! - `GET   /api/v1/subscribers?iccid=…`: `{"subscribers": [...]}`, the SIM's subscriber if any
//!   (AT&T's back end has an `accountByEquipmentBySim` operation); without `iccid`, every
//!   subscriber by number, `pageSize` (up to 500) a page, `pageToken` from `nextPageToken`.
//! - `PATCH /api/v1/subscribers/{subscriberNumber}`: status action, rate plan (SOC), equipment
//!   swap (new ICCID and/or IMEI) and labels (user name, cost center).
//! - `POST  /api/v1/activations`: `{"services": [...]}`, answered 202 with a `batchId` at once.
//! - `GET   /api/v1/activations/status`: `PENDING`, `ACTIVE` or `FAILED` for one subscriber.
//! - `POST  /_sim/subscribers`: test and demo hook adding subscribers.

use crate::random::Random;
use crate::{locked, LoggedRequest, RequestLog};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Name of the characteristic carrying a status action (inferred).
pub const STATUS_CHARACTERISTIC: &str = "subscriberStatusAction";
/// Name of the characteristic carrying the new rate plan, an AT&T SOC (inferred).
pub const RATE_PLAN_CHARACTERISTIC: &str = "ratePlanCode";
/// Most subscribers one listing page returns.
pub const MAX_LIST_PAGE: usize = 500;
/// Equipment swap: the subscriber's new SIM and device.
pub const ICCID_CHARACTERISTIC: &str = "iccid";
pub const IMEI_CHARACTERISTIC: &str = "imei";
/// Labels of the subscriber, free text.
pub const USER_NAME_CHARACTERISTIC: &str = "userName";
pub const COST_CENTER_CHARACTERISTIC: &str = "costCenter";
/// Error code of a change the subscriber's status does not allow (inferred).
pub const INVALID_TRANSITION: &str = "INVALID_STATUS_TRANSITION";
/// Error code of an eSIM-only device activated with a physical SIM; the message is what AT&T's
/// portal shows.
pub const ESIM_REQUIRED: &str = "ESIM_REQUIRED";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TelegenceConfig {
    /// `app-id` to `app-secret`.
    pub accounts: BTreeMap<String, String>,
    /// Token bucket per account: sustained calls a second (not public; AMOP sends ~1 a second).
    pub requests_per_second: f64,
    /// Token bucket size: calls an idle account may make at once.
    pub burst: u32,
    /// Whether a 429 says when the next call would be admitted (`Retry-After`, whole seconds).
    pub send_retry_after: bool,
    /// Share of calls answered with a 500, 502, 503 or 504.
    pub transient_fault_rate: f64,
    /// Share of calls answered only after `slow_answer`.
    pub slow_rate: f64,
    pub slow_answer: Duration,
    pub seed: u64,
    /// Services one activation request may carry (AMOP's `MAX_TELEGENCE_SERVICES_PER_REQUEST`).
    pub max_services_per_request: usize,
    /// Time from an activation request to each of its services settling.
    pub activation_delay: Duration,
    /// Share of activations that fail without a specific reason.
    pub activation_failure_rate: f64,
    /// SIMs whose device is eSIM-only: their activation fails with [`ESIM_REQUIRED`].
    pub esim_only_iccids: BTreeSet<String>,
    /// IMEI type allocation codes (first 8 digits) of eSIM-only devices.
    pub esim_only_tacs: BTreeSet<String>,
    /// HTTP status answered for an invalid transition (not public).
    pub invalid_transition_status: u16,
    /// Billing account number given to subscribers an activation creates.
    pub default_ban: String,
}

impl Default for TelegenceConfig {
    fn default() -> Self {
        Self {
            accounts: BTreeMap::from([(
                "cellbridge".to_owned(),
                "local-telegence-app-secret".to_owned(),
            )]),
            requests_per_second: 10.0,
            burst: 10,
            send_retry_after: true,
            transient_fault_rate: 0.0,
            slow_rate: 0.0,
            slow_answer: Duration::from_secs(2),
            seed: 11,
            max_services_per_request: 200,
            activation_delay: Duration::from_secs(3),
            activation_failure_rate: 0.0,
            esim_only_iccids: BTreeSet::new(),
            esim_only_tacs: BTreeSet::new(),
            invalid_transition_status: 400,
            default_ban: DEFAULT_BAN.to_owned(),
        }
    }
}

const DEFAULT_BAN: &str = "287300000001";
const DEFAULT_RATE_PLAN: &str = "IOT1GB";

/// Subscriber statuses (names inferred; AT&T billing knows reserved, active, suspended, cancelled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubscriberStatus {
    /// Pre-active: the number is reserved for the SIM, service not yet activated.
    Reserved,
    Active,
    Suspended,
    Cancelled,
}

impl SubscriberStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriberStatus::Reserved => "Reserved",
            SubscriberStatus::Active => "Active",
            SubscriberStatus::Suspended => "Suspended",
            SubscriberStatus::Cancelled => "Cancelled",
        }
    }
}

/// The status actions a `PATCH` may ask for (AT&T's MVNX API names them Suspend/Restore/Cancel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusAction {
    Suspend,
    Restore,
    Cancel,
}

impl StatusAction {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "Suspend" => Some(StatusAction::Suspend),
            "Restore" => Some(StatusAction::Restore),
            "Cancel" => Some(StatusAction::Cancel),
            _ => None,
        }
    }

    pub fn target(self) -> SubscriberStatus {
        match self {
            StatusAction::Suspend => SubscriberStatus::Suspended,
            StatusAction::Restore => SubscriberStatus::Active,
            StatusAction::Cancel => SubscriberStatus::Cancelled,
        }
    }
}

/// The transition matrix. Repeating an action is a no-op; a reserved subscriber only becomes
/// active through a new-service activation; a cancelled one only through a new activation too.
pub fn transition_allowed(from: SubscriberStatus, action: StatusAction) -> bool {
    use SubscriberStatus::*;
    match action {
        StatusAction::Suspend => matches!(from, Active | Suspended),
        StatusAction::Restore => matches!(from, Suspended | Active),
        StatusAction::Cancel => matches!(from, Active | Suspended | Cancelled),
    }
}

/// Rate plans can change on lines that have service, suspended or not.
fn rate_plan_change_allowed(status: SubscriberStatus) -> bool {
    matches!(
        status,
        SubscriberStatus::Active | SubscriberStatus::Suspended
    )
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscriber {
    /// The CTN (MSISDN without country code, 10 digits in the US).
    pub subscriber_number: String,
    pub iccid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imei: Option<String>,
    pub status: SubscriberStatus,
    /// The rate plan SOC.
    #[serde(default = "default_rate_plan")]
    pub rate_plan_code: String,
    #[serde(default = "default_ban")]
    pub ban: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_center: Option<String>,
}

fn is_digits(value: &str, lengths: std::ops::RangeInclusive<usize>) -> bool {
    lengths.contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit())
}

fn default_rate_plan() -> String {
    DEFAULT_RATE_PLAN.to_owned()
}

fn default_ban() -> String {
    DEFAULT_BAN.to_owned()
}

impl Subscriber {
    /// A subscriber on the default rate plan and BAN, without IMEI.
    pub fn new(subscriber_number: &str, iccid: &str, status: SubscriberStatus) -> Self {
        Self {
            subscriber_number: subscriber_number.to_owned(),
            iccid: iccid.to_owned(),
            imei: None,
            status,
            rate_plan_code: default_rate_plan(),
            ban: default_ban(),
            user_name: None,
            cost_center: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Update {
    service_characteristic: Vec<Characteristic>,
    #[serde(default)]
    effective_date: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Characteristic {
    name: String,
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ActivationRequest {
    services: Vec<ServiceRequest>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ServiceRequest {
    iccid: String,
    #[serde(default)]
    imei: Option<String>,
    #[serde(default)]
    subscriber_number: Option<String>,
    rate_plan_code: String,
    /// Accepted and not checked: the simulator has no address validation.
    #[serde(default)]
    #[allow(dead_code)]
    zip_code: Option<String>,
}

/// How one service of an activation batch ends, decided when it is submitted.
#[derive(Debug, Clone)]
enum Planned {
    Succeed,
    Fail { code: String, message: String },
}

#[derive(Debug, Clone)]
enum ActivationState {
    Pending { due: Instant, planned: Planned },
    Active,
    Failed { code: String, message: String },
}

#[derive(Debug, Clone)]
struct ActivationEntry {
    subscriber_number: String,
    iccid: String,
    rate_plan_code: String,
    state: ActivationState,
}

#[derive(Default)]
struct Store {
    subscribers: BTreeMap<String, Subscriber>,
    batches: BTreeMap<String, Vec<ActivationEntry>>,
    batches_made: u64,
    numbers_assigned: u64,
    /// Activations stay pending while set, however long ago they were due.
    held: bool,
}

impl Store {
    fn number_of_iccid(&self, iccid: &str) -> Option<String> {
        self.subscribers
            .values()
            .find(|s| s.iccid == iccid)
            .map(|s| s.subscriber_number.clone())
    }

    /// Settles every activation whose time has come, applying it to its subscriber.
    fn settle(&mut self, now: Instant) {
        if self.held {
            return;
        }
        let Store {
            subscribers,
            batches,
            ..
        } = self;
        for entry in batches.values_mut().flatten() {
            let ActivationState::Pending { due, planned } = &entry.state else {
                continue;
            };
            if *due > now {
                continue;
            }
            entry.state = match (planned, subscribers.get_mut(&entry.subscriber_number)) {
                (Planned::Fail { code, message }, _) => ActivationState::Failed {
                    code: code.clone(),
                    message: message.clone(),
                },
                (Planned::Succeed, None) => ActivationState::Failed {
                    code: "SUBSCRIBER_NOT_FOUND".into(),
                    message: "The subscriber was removed before activation".into(),
                },
                (Planned::Succeed, Some(subscriber)) => match subscriber.status {
                    // Active already: a replayed activation, done.
                    SubscriberStatus::Reserved | SubscriberStatus::Active => {
                        subscriber.status = SubscriberStatus::Active;
                        subscriber.rate_plan_code = entry.rate_plan_code.clone();
                        ActivationState::Active
                    }
                    other => ActivationState::Failed {
                        code: INVALID_TRANSITION.into(),
                        message: format!(
                            "Subscriber {} is {} and cannot be activated",
                            entry.subscriber_number,
                            other.as_str()
                        ),
                    },
                },
            };
        }
    }
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

pub struct Telegence {
    config: Mutex<TelegenceConfig>,
    store: Mutex<Store>,
    buckets: Mutex<HashMap<String, Bucket>>,
    random: Random,
    log: Arc<RequestLog>,
    started: Instant,
    /// The day usage is rated through (see [`crate::usage`]).
    pub usage_day: crate::usage::UsageDay,
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"code": code, "message": message}))).into_response()
}

fn not_found(number: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "SUBSCRIBER_NOT_FOUND",
        &format!("Subscriber {number} not found"),
    )
}

/// A refusal the gate (auth, rate limit, faults) answers before any work, and the account if known.
type Refusal = (Option<String>, Box<Response>);

impl Telegence {
    pub fn new(config: TelegenceConfig, log: Arc<RequestLog>) -> Self {
        Self {
            random: Random::new(config.seed),
            config: Mutex::new(config),
            store: Mutex::default(),
            buckets: Mutex::default(),
            log,
            started: Instant::now(),
            usage_day: crate::usage::UsageDay::default(),
        }
    }

    /// The subscriber's cycle-to-date usage, rated through yesterday. The shape is inferred
    /// (Telegence publishes no usage API): the bill cycle's start, the last day rated, bytes and
    /// SMS.
    fn subscriber_usage(&self, number: &str) -> Response {
        let Some(subscriber) = self.subscriber(number) else {
            return not_found(number);
        };
        let through = self.usage_day.rated_through();
        let (start, bytes, sms) = crate::usage::cycle_to_date(&subscriber.iccid, through);
        Json(json!({
            "subscriberNumber": number,
            "billCycleStartDate": start.to_string(),
            "ratedThrough": through.to_string(),
            "dataUsageBytes": bytes,
            "smsCount": sms,
        }))
        .into_response()
    }

    /// Adds subscribers, replacing any with the same number or the same ICCID.
    pub fn seed_subscribers(&self, subscribers: impl IntoIterator<Item = Subscriber>) {
        let mut store = locked(&self.store);
        for subscriber in subscribers {
            store.subscribers.retain(|_, s| s.iccid != subscriber.iccid);
            store
                .subscribers
                .insert(subscriber.subscriber_number.clone(), subscriber);
        }
    }

    /// The subscriber with this number, with due activations applied.
    pub fn subscriber(&self, subscriber_number: &str) -> Option<Subscriber> {
        let mut store = locked(&self.store);
        store.settle(Instant::now());
        store.subscribers.get(subscriber_number).cloned()
    }

    pub fn subscriber_by_iccid(&self, iccid: &str) -> Option<Subscriber> {
        let mut store = locked(&self.store);
        store.settle(Instant::now());
        let number = store.number_of_iccid(iccid)?;
        store.subscribers.get(&number).cloned()
    }

    pub fn configure(&self, change: impl FnOnce(&mut TelegenceConfig)) {
        change(&mut locked(&self.config));
    }

    /// Keeps every activation pending, due or not, until [`Telegence::release_activations`]: a
    /// test can look at a pending batch without racing `activation_delay`.
    pub fn hold_activations(&self) {
        locked(&self.store).held = true;
    }

    /// Lets activations settle again; those already due do at the next read.
    pub fn release_activations(&self) {
        locked(&self.store).held = false;
    }

    fn config(&self) -> TelegenceConfig {
        locked(&self.config).clone()
    }

    /// The account whose `app-id`/`app-secret` headers match.
    fn authenticate(
        &self,
        headers: &HeaderMap,
        config: &TelegenceConfig,
    ) -> Result<String, Refusal> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(app_id), Some(app_secret)) = (header("app-id"), header("app-secret")) else {
            return Err((
                None,
                Box::new(error(
                    StatusCode::UNAUTHORIZED,
                    "MISSING_CREDENTIALS",
                    "app-id and app-secret headers are required",
                )),
            ));
        };
        match config.accounts.get(app_id) {
            Some(secret) if secret == app_secret => Ok(app_id.to_owned()),
            _ => Err((
                None,
                Box::new(error(
                    StatusCode::UNAUTHORIZED,
                    "INVALID_CREDENTIALS",
                    "The app-id or app-secret is not valid",
                )),
            )),
        }
    }

    /// Takes a token from the account's bucket at `now`, or says how long until one is there.
    fn take_token(
        &self,
        account: &str,
        config: &TelegenceConfig,
        now: Instant,
    ) -> Result<(), Option<Duration>> {
        let capacity = f64::from(config.burst.max(1));
        let rate = config.requests_per_second.max(0.0);
        let mut buckets = locked(&self.buckets);
        let bucket = buckets.entry(account.to_owned()).or_insert(Bucket {
            tokens: capacity,
            refilled: now,
        });
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(capacity);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        Err((rate > 0.0).then(|| Duration::from_secs_f64((1.0 - bucket.tokens) / rate)))
    }

    /// Auth, rate limit, slow answers and transient faults, in that order.
    async fn gate(&self, headers: &HeaderMap, config: &TelegenceConfig) -> Result<String, Refusal> {
        let account = self.authenticate(headers, config)?;
        if let Err(wait) = self.take_token(&account, config, Instant::now()) {
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMIT_EXCEEDED",
                "Too many requests for this app-id",
            );
            if let Some(wait) = wait.filter(|_| config.send_retry_after) {
                // Whole seconds, rounded up, so a client that waits this long is admitted.
                let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
            }
            return Err((Some(account), Box::new(response)));
        }
        if self.random.chance(config.slow_rate) {
            tokio::time::sleep(config.slow_answer).await;
        }
        if self.random.chance(config.transient_fault_rate) {
            const FAULTS: [StatusCode; 4] = [
                StatusCode::INTERNAL_SERVER_ERROR,
                StatusCode::BAD_GATEWAY,
                StatusCode::SERVICE_UNAVAILABLE,
                StatusCode::GATEWAY_TIMEOUT,
            ];
            let pick = ((self.random.next_unit() * 4.0) as usize).min(3);
            let status = FAULTS[pick];
            return Err((
                Some(account),
                Box::new((status, "Backend unavailable").into_response()),
            ));
        }
        Ok(account)
    }

    /// Runs `work` behind the gate and logs the call.
    async fn serve(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        work: impl FnOnce(&Self, &TelegenceConfig) -> Response,
    ) -> Response {
        let config = self.config();
        let (account, response) = match self.gate(headers, &config).await {
            Ok(account) => (Some(account), work(self, &config)),
            Err((account, response)) => (account, *response),
        };
        self.log.push(LoggedRequest {
            carrier: "telegence",
            method: method.to_string(),
            // Path and query only: credentials travel in headers, which are never logged.
            path: uri
                .path_and_query()
                .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned()),
            account,
            status: response.status().as_u16(),
            at_ms: self.started.elapsed().as_millis() as u64,
        });
        response
    }

    fn get_subscriber(&self, number: &str) -> Response {
        match self.subscriber(number) {
            Some(subscriber) => Json(subscriber).into_response(),
            None => not_found(number),
        }
    }

    /// The SIM's subscriber (`?iccid=`), or a page of every subscriber by number
    /// (`?pageSize=` up to 500, `&pageToken=` from the previous page's `nextPageToken`).
    fn find_subscribers(&self, query: &HashMap<String, String>) -> Response {
        if let Some(iccid) = query.get("iccid").filter(|i| !i.is_empty()) {
            let found: Vec<Subscriber> = self.subscriber_by_iccid(iccid).into_iter().collect();
            return Json(json!({ "subscribers": found })).into_response();
        }
        let page_size = match query.get("pageSize").map(|v| v.parse::<usize>()) {
            None => MAX_LIST_PAGE,
            Some(Ok(n)) if (1..=MAX_LIST_PAGE).contains(&n) => n,
            Some(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_REQUEST",
                    "pageSize must be 1 to 500",
                )
            }
        };
        let after = query.get("pageToken").cloned().unwrap_or_default();
        let mut store = locked(&self.store);
        store.settle(Instant::now());
        let mut page: Vec<Subscriber> = store
            .subscribers
            .range::<String, _>((
                std::ops::Bound::Excluded(&after),
                std::ops::Bound::Unbounded,
            ))
            .map(|(_, s)| s.clone())
            .take(page_size + 1)
            .collect();
        let more = page.len() > page_size;
        page.truncate(page_size);
        let next = more
            .then(|| page.last().map(|s| s.subscriber_number.clone()))
            .flatten();
        Json(json!({ "subscribers": page, "nextPageToken": next })).into_response()
    }

    fn update(&self, number: &str, body: &[u8], config: &TelegenceConfig) -> Response {
        let update: Update = match serde_json::from_slice(body) {
            Ok(update) => update,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_REQUEST",
                    &format!("Invalid request: {e}"),
                )
            }
        };
        let mut action = None;
        let mut rate_plan = None;
        let mut new_iccid = None;
        let mut new_imei = None;
        let mut user_name = None;
        let mut cost_center = None;
        for characteristic in &update.service_characteristic {
            let value = characteristic.value.trim();
            match characteristic.name.as_str() {
                ICCID_CHARACTERISTIC if is_digits(value, 19..=20) => {
                    new_iccid = Some(value.to_owned());
                }
                IMEI_CHARACTERISTIC if is_digits(value, 15..=15) => {
                    new_imei = Some(value.to_owned());
                }
                name @ (ICCID_CHARACTERISTIC | IMEI_CHARACTERISTIC) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "INVALID_CHARACTERISTIC",
                        &format!("{name} {value:?} is not a valid identifier"),
                    )
                }
                USER_NAME_CHARACTERISTIC => user_name = Some(value.to_owned()),
                COST_CENTER_CHARACTERISTIC => cost_center = Some(value.to_owned()),
                STATUS_CHARACTERISTIC => match StatusAction::parse(&characteristic.value) {
                    Some(parsed) => action = Some(parsed),
                    None => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "INVALID_CHARACTERISTIC",
                            &format!("Unknown status action {}", characteristic.value),
                        )
                    }
                },
                RATE_PLAN_CHARACTERISTIC if !characteristic.value.trim().is_empty() => {
                    rate_plan = Some(characteristic.value.clone());
                }
                name => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "INVALID_CHARACTERISTIC",
                        &format!("Unsupported service characteristic {name}"),
                    )
                }
            }
        }
        if action.is_none()
            && rate_plan.is_none()
            && new_iccid.is_none()
            && new_imei.is_none()
            && user_name.is_none()
            && cost_center.is_none()
        {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                "serviceCharacteristic must name at least one change",
            );
        }
        // An empty effective date means now; a future one is accepted (202) and, in this
        // simulator, applied at once.
        let future = match effective_date_is_future(update.effective_date.as_deref()) {
            Ok(future) => future,
            Err(message) => {
                return error(StatusCode::BAD_REQUEST, "INVALID_EFFECTIVE_DATE", &message)
            }
        };
        let mut store = locked(&self.store);
        store.settle(Instant::now());
        // A SIM serves one subscriber at a time.
        if let Some(owner) = new_iccid
            .as_deref()
            .and_then(|iccid| store.number_of_iccid(iccid))
            .filter(|owner| owner != number)
        {
            return error(
                StatusCode::CONFLICT,
                "ICCID_IN_USE",
                &format!("the SIM is already on subscriber {owner}"),
            );
        }
        let Some(subscriber) = store.subscribers.get_mut(number) else {
            return not_found(number);
        };
        let refuse = |requested: String| {
            let status = StatusCode::from_u16(config.invalid_transition_status)
                .unwrap_or(StatusCode::BAD_REQUEST);
            let message = format!(
                "Subscriber {number} is {} and cannot change to {requested}",
                subscriber.status.as_str()
            );
            let body = json!({
                "code": INVALID_TRANSITION,
                "message": message,
                "currentStatus": subscriber.status.as_str(),
                "requested": requested,
            });
            (status, Json(body)).into_response()
        };
        if let Some(action) = action {
            if !transition_allowed(subscriber.status, action) {
                return refuse(action.target().as_str().to_owned());
            }
        }
        if let Some(plan) = &rate_plan {
            if !rate_plan_change_allowed(subscriber.status) {
                return refuse(format!("rate plan {plan}"));
            }
        }
        if let Some(action) = action {
            subscriber.status = action.target();
        }
        if let Some(plan) = rate_plan {
            subscriber.rate_plan_code = plan;
        }
        if let Some(iccid) = new_iccid {
            subscriber.iccid = iccid;
        }
        if new_imei.is_some() {
            subscriber.imei = new_imei;
        }
        if user_name.is_some() {
            subscriber.user_name = user_name;
        }
        if cost_center.is_some() {
            subscriber.cost_center = cost_center;
        }
        let status = if future {
            StatusCode::ACCEPTED
        } else {
            StatusCode::OK
        };
        (status, Json(subscriber.clone())).into_response()
    }

    fn activate(&self, body: &[u8], config: &TelegenceConfig) -> Response {
        let request: ActivationRequest = match serde_json::from_slice(body) {
            Ok(request) => request,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_REQUEST",
                    &format!("Invalid request: {e}"),
                )
            }
        };
        if request.services.is_empty() {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                "services must not be empty",
            );
        }
        if request.services.len() > config.max_services_per_request {
            return error(
                StatusCode::BAD_REQUEST,
                "TOO_MANY_SERVICES",
                &format!(
                    "At most {} services per request, got {}",
                    config.max_services_per_request,
                    request.services.len()
                ),
            );
        }
        let mut store = locked(&self.store);
        store.settle(Instant::now());
        // Validate the whole request before touching anything: it is accepted or refused whole.
        let mut seen = BTreeSet::new();
        for service in &request.services {
            if service.iccid.is_empty() || service.rate_plan_code.trim().is_empty() {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_REQUEST",
                    "every service needs an iccid and a ratePlanCode",
                );
            }
            if !seen.insert(service.iccid.as_str()) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "DUPLICATE_SERVICE",
                    &format!("ICCID {} appears twice", service.iccid),
                );
            }
            let owner = store.number_of_iccid(&service.iccid);
            if let (None, Some(number)) = (&owner, &service.subscriber_number) {
                if store.subscribers.contains_key(number) {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "SUBSCRIBER_NUMBER_IN_USE",
                        &format!("Subscriber number {number} belongs to another SIM"),
                    );
                }
            }
        }
        store.batches_made += 1;
        let batch_id = format!("TLG-{:08}", store.batches_made);
        let due = Instant::now() + config.activation_delay;
        let mut entries = Vec::with_capacity(request.services.len());
        let mut answered = Vec::with_capacity(request.services.len());
        for service in request.services {
            let number = match store.number_of_iccid(&service.iccid) {
                Some(number) => number,
                None => {
                    let number = match service.subscriber_number.clone() {
                        Some(number) => number,
                        None => assign_number(&mut store),
                    };
                    let mut subscriber =
                        Subscriber::new(&number, &service.iccid, SubscriberStatus::Reserved);
                    subscriber.imei = service.imei.clone();
                    subscriber.ban = config.default_ban.clone();
                    store.subscribers.insert(number.clone(), subscriber);
                    number
                }
            };
            let esim_only = config.esim_only_iccids.contains(&service.iccid)
                || service
                    .imei
                    .as_deref()
                    .and_then(|imei| imei.get(..8))
                    .is_some_and(|tac| config.esim_only_tacs.contains(tac));
            let planned = if esim_only {
                Planned::Fail {
                    code: ESIM_REQUIRED.into(),
                    message: "Device requires eSIM".into(),
                }
            } else if self.random.chance(config.activation_failure_rate) {
                Planned::Fail {
                    code: "ACTIVATION_FAILED".into(),
                    message: "The network could not activate the service".into(),
                }
            } else {
                Planned::Succeed
            };
            answered.push(json!({"iccid": service.iccid, "subscriberNumber": number}));
            entries.push(ActivationEntry {
                subscriber_number: number,
                iccid: service.iccid,
                rate_plan_code: service.rate_plan_code,
                state: ActivationState::Pending { due, planned },
            });
        }
        store.batches.insert(batch_id.clone(), entries);
        (
            StatusCode::ACCEPTED,
            Json(json!({"batchId": batch_id, "services": answered})),
        )
            .into_response()
    }

    fn activation_status(&self, headers: &HeaderMap) -> Response {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
        };
        let (Some(batch_id), Some(number)) = (header("batch-id"), header("subscriber-number"))
        else {
            return error(
                StatusCode::BAD_REQUEST,
                "MISSING_HEADER",
                "batch-id and subscriber-number headers are required",
            );
        };
        let mut store = locked(&self.store);
        store.settle(Instant::now());
        let Some(batch) = store.batches.get(batch_id) else {
            return error(
                StatusCode::NOT_FOUND,
                "BATCH_NOT_FOUND",
                &format!("Batch {batch_id} not found"),
            );
        };
        let Some(entry) = batch.iter().find(|e| e.subscriber_number == number) else {
            return error(
                StatusCode::NOT_FOUND,
                "SUBSCRIBER_NOT_IN_BATCH",
                &format!("Subscriber {number} is not part of batch {batch_id}"),
            );
        };
        let mut body = json!({
            "batchId": batch_id,
            "subscriberNumber": number,
            "iccid": entry.iccid,
        });
        match &entry.state {
            ActivationState::Pending { .. } => body["status"] = json!("PENDING"),
            ActivationState::Active => body["status"] = json!("ACTIVE"),
            ActivationState::Failed { code, message } => {
                body["status"] = json!("FAILED");
                body["errorCode"] = json!(code);
                body["errorMessage"] = json!(message);
            }
        }
        Json(body).into_response()
    }
}

/// A number no subscriber has, from a 214-555 block.
fn assign_number(store: &mut Store) -> String {
    loop {
        store.numbers_assigned += 1;
        let number = format!("214555{:04}", store.numbers_assigned % 10_000);
        if !store.subscribers.contains_key(&number) {
            return number;
        }
    }
}

/// Whether `date` (empty or absent for now, RFC 3339 or `YYYY-MM-DD`) is in the future.
fn effective_date_is_future(date: Option<&str>) -> Result<bool, String> {
    let Some(date) = date.map(str::trim).filter(|d| !d.is_empty()) else {
        return Ok(false);
    };
    let now = time::OffsetDateTime::now_utc();
    if let Ok(at) =
        time::OffsetDateTime::parse(date, &time::format_description::well_known::Rfc3339)
    {
        return Ok(at > now);
    }
    time::Date::parse(
        date,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map(|day| day > now.date())
    .map_err(|_| format!("effectiveDate {date} is neither RFC 3339 nor YYYY-MM-DD"))
}

async fn subscriber_route(
    State(sim): State<Arc<Telegence>>,
    method: Method,
    uri: Uri,
    Path(number): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sim.serve(&method, &uri, &headers, |sim, config| {
        if method == Method::PATCH {
            sim.update(&number, &body, config)
        } else {
            sim.get_subscriber(&number)
        }
    })
    .await
}

async fn usage_route(
    State(sim): State<Arc<Telegence>>,
    method: Method,
    uri: Uri,
    Path(number): Path<String>,
    headers: HeaderMap,
) -> Response {
    sim.serve(&method, &uri, &headers, |sim, _| {
        sim.subscriber_usage(&number)
    })
    .await
}

async fn search_route(
    State(sim): State<Arc<Telegence>>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    sim.serve(&method, &uri, &headers, |sim, _| {
        sim.find_subscribers(&query)
    })
    .await
}

async fn activations_route(
    State(sim): State<Arc<Telegence>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sim.serve(&method, &uri, &headers, |sim, config| {
        sim.activate(&body, config)
    })
    .await
}

async fn activation_status_route(
    State(sim): State<Arc<Telegence>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    sim.serve(&method, &uri, &headers, |sim, _| {
        sim.activation_status(&headers)
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedRequest {
    subscribers: Vec<Subscriber>,
}

/// Test and demo hook: adds (or resets) subscribers.
async fn seed_route(State(sim): State<Arc<Telegence>>, Json(seed): Json<SeedRequest>) -> Response {
    let count = seed.subscribers.len();
    sim.seed_subscribers(seed.subscribers);
    (StatusCode::OK, Json(json!({ "seeded": count }))).into_response()
}

pub fn router(sim: Arc<Telegence>) -> Router {
    Router::new()
        .route("/api/v1/subscribers", get(search_route))
        .route(
            "/api/v1/subscribers/{subscriber_number}",
            get(subscriber_route).patch(subscriber_route),
        )
        .route(
            "/api/v1/subscribers/{subscriber_number}/usage",
            get(usage_route),
        )
        .route("/api/v1/activations", post(activations_route))
        .route("/api/v1/activations/status", get(activation_status_route))
        .route("/_sim/subscribers", post(seed_route))
        .with_state(sim)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(config: TelegenceConfig) -> Telegence {
        Telegence::new(config, Arc::default())
    }

    #[test]
    fn the_matrix_keeps_cancelled_lines_cancelled() {
        use SubscriberStatus::*;
        assert!(transition_allowed(Active, StatusAction::Suspend));
        assert!(transition_allowed(Suspended, StatusAction::Restore));
        assert!(transition_allowed(Suspended, StatusAction::Cancel));
        assert!(
            transition_allowed(Suspended, StatusAction::Suspend),
            "a repeated action is a no-op"
        );
        for action in [StatusAction::Suspend, StatusAction::Restore] {
            assert!(!transition_allowed(Cancelled, action));
            assert!(!transition_allowed(Reserved, action));
        }
        assert!(!transition_allowed(Reserved, StatusAction::Cancel));
    }

    #[test]
    fn the_bucket_refuses_past_the_burst_and_says_how_long_to_wait() {
        let config = TelegenceConfig {
            burst: 2,
            requests_per_second: 0.5,
            ..TelegenceConfig::default()
        };
        let telegence = sim(config.clone());
        // One instant for every call: how long the test takes between them does not count.
        let now = Instant::now();
        assert_eq!(telegence.take_token("a", &config, now), Ok(()));
        assert_eq!(telegence.take_token("a", &config, now), Ok(()));
        let wait = telegence.take_token("a", &config, now).err().flatten();
        assert!(
            wait.is_some_and(|w| w > Duration::from_millis(1900) && w <= Duration::from_secs(2)),
            "{wait:?}"
        );
        assert_eq!(
            telegence.take_token("b", &config, now),
            Ok(()),
            "buckets are per account"
        );
        // The wait it named is enough: a token is there then.
        let refilled = now + wait.unwrap_or_default();
        assert_eq!(telegence.take_token("a", &config, refilled), Ok(()));
    }

    #[test]
    fn effective_dates_are_checked() {
        assert_eq!(effective_date_is_future(None), Ok(false));
        assert_eq!(effective_date_is_future(Some("")), Ok(false));
        assert_eq!(effective_date_is_future(Some("2001-01-01")), Ok(false));
        assert_eq!(
            effective_date_is_future(Some("2999-01-01T00:00:00Z")),
            Ok(true)
        );
        assert!(effective_date_is_future(Some("next week")).is_err());
    }

    #[test]
    fn activations_settle_after_the_delay() {
        let config = TelegenceConfig {
            activation_delay: Duration::ZERO,
            esim_only_tacs: BTreeSet::from(["35000000".to_owned()]),
            ..TelegenceConfig::default()
        };
        let telegence = sim(config.clone());
        let body = json!({"services": [
            {"iccid": "89010000000000000001", "ratePlanCode": "IOT5GB"},
            {"iccid": "89010000000000000002", "imei": "350000001234567", "ratePlanCode": "IOT5GB"},
        ]});
        let response = telegence.activate(body.to_string().as_bytes(), &config);
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let active = telegence.subscriber_by_iccid("89010000000000000001");
        assert_eq!(
            active.as_ref().map(|s| s.status),
            Some(SubscriberStatus::Active)
        );
        assert_eq!(active.map(|s| s.rate_plan_code), Some("IOT5GB".to_owned()));
        assert_eq!(
            telegence
                .subscriber_by_iccid("89010000000000000002")
                .map(|s| s.status),
            Some(SubscriberStatus::Reserved),
            "an eSIM-only device stays reserved"
        );
    }
}
