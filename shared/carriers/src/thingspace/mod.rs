//! Verizon ThingSpace Connectivity Management (M2M) over reqwest.
//!
//! Two credentials: an OAuth client-credentials token (`{base}/ts/v1/oauth2/token`, Basic
//! app key and secret) and an M2M session (`{base}/m2m/v1/session/login`, sent as `VZ-M2M-Token`).
//! Both are cached in the client and shared by its clones, behind one async mutex so concurrent
//! callers log in once: a Lambda builds the client once per cold start and reuses them.
//!
//! Change types: status updates (activate, suspend, restore, deactivate), activation of new service
//! and carrier rate plan changes are batch actions of up to 10,000 devices, answered with a
//! `requestId` and finished later (CarrierService callbacks, see [`parse_callback`], or polling,
//! see [`CarrierPort::check`]). Customer rate plans and customer assignment are not carrier
//! notions; ICCID/IMEI swaps and username/cost-center edits have ThingSpace APIs this adapter
//! does not drive yet; all four are refused as `unsupported`, one device a call. A rate plan change
//! with a communication plan is refused too: ThingSpace has none, and dropping half a change
//! silently would be worse.

use crate::error::CarrierError;
use crate::http::{retry_after, send_recorded, transport, CarrierResponse};
use crate::port::{
    CallJournal, CarrierDevice, CarrierOutcome, CarrierPort, CarrierSim, InventoryPage, ListedSims,
    RequestProgress,
};
use async_trait::async_trait;
use cellbridge_bulk_changes::change::{
    Carrier, ChangeSpec, DeviceEdit, DeviceRef, DeviceRequest, StatusAction,
};
use cellbridge_core::redact::redact;
use cellbridge_sims::usage::UsageSpan;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Devices one ThingSpace action may carry.
pub const MAX_BATCH: usize = 10_000;
/// Devices one aggregate usage request names: ThingSpace documents no maximum; this keeps each
/// request's callbacks a burst the listener takes in stride.
pub const USAGE_REQUEST_SIZE: u32 = 500;
/// The callback service of device changes' results.
pub const CARRIER_SERVICE: &str = "CarrierService";
/// The callback service of aggregate usage.
pub const DEVICE_USAGE: &str = "DeviceUsage";
/// Renew the OAuth token this long before it expires (at most half its life).
const TOKEN_MARGIN: Duration = Duration::from_secs(300);
/// After the carrier refuses the login, fail fast for this long: five failed logins lock the user,
/// and every queued message would otherwise try again.
const LOGIN_COOLDOWN: Duration = Duration::from_secs(300);
const SESSION_HEADER: &str = "VZ-M2M-Token";
/// ThingSpace's error classes; what precedes one in a code is the service name.
const CLASSES: [&str; 4] = [
    "INPUT_INVALID",
    "REQUEST_FAILED",
    "REQUEST_ONHOLD",
    "REQUEST_CANCELLED",
];
const ALREADY_ACTIVE: &str = "REQUEST_FAILED.DeviceAlreadyActive";

#[derive(Debug, Clone)]
pub struct ThingSpaceCredentials {
    pub app_key: String,
    pub app_secret: SecretString,
    /// UWS user of the M2M session.
    pub username: String,
    pub password: SecretString,
    /// e.g. `0000123456-00001`
    pub account_name: String,
}

/// Where a ThingSpace request stands (`GET …/requests/{id}/status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThingSpaceRequestStatus {
    Pending,
    Success,
    Failure,
}

#[derive(Debug)]
struct ApiToken {
    value: SecretString,
    expires_at: Instant,
    renew_at: Instant,
}

/// The cached credentials, as secrets so that printing the client shows neither.
#[derive(Debug, Default)]
struct AuthState {
    token: Option<ApiToken>,
    session: Option<SecretString>,
    login_refused_at: Option<Instant>,
}

#[derive(Debug, Clone)]
pub struct ThingSpaceClient {
    http: reqwest::Client,
    /// e.g. `https://thingspace.verizon.com/api`
    base_url: String,
    credentials: ThingSpaceCredentials,
    /// For activations whose change names no plan or ZIP code.
    default_service_plan: Option<String>,
    default_zip_code: Option<String>,
    auth: Arc<tokio::sync::Mutex<AuthState>>,
    /// Requests known to be finished: their status never changes again, so checking the devices
    /// of a 10,000-device request asks ThingSpace once, not once per device.
    settled: Arc<std::sync::Mutex<HashMap<String, ThingSpaceRequestStatus>>>,
}

/// Settled request statuses remembered per client; past this the memo starts afresh.
const SETTLED_MEMO: usize = 1_000;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody {
    error_code: Option<String>,
    error_message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    access_token: Option<SecretString>,
    expires_in: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionAnswer {
    session_token: Option<SecretString>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestAnswer {
    request_id: Option<String>,
    status: Option<String>,
}

#[derive(Debug, Deserialize)]
struct IdAnswer {
    kind: Option<String>,
    id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CarrierInformation {
    state: Option<String>,
    service_plan: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListedDevice {
    #[serde(default)]
    device_ids: Vec<IdAnswer>,
    #[serde(default)]
    carrier_informations: Vec<CarrierInformation>,
}

#[derive(Debug, Deserialize)]
struct ListenerAnswer {
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageHistory {
    #[serde(default)]
    usage_history: Vec<UsageRecordAnswer>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageRecordAnswer {
    #[serde(default)]
    bytes_used: u64,
    #[serde(default)]
    sms_used: u64,
    #[serde(default)]
    timestamp: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListAnswer {
    #[serde(default)]
    devices: Vec<ListedDevice>,
    /// Absent means no more: a sync cannot loop on a page that does not say.
    #[serde(default)]
    has_more_data: bool,
}

impl ListedDevice {
    /// The identifier of `kind` (any case), when the device has one.
    fn id_of(&self, kind: &str) -> Option<String> {
        self.device_ids
            .iter()
            .find(|id| {
                id.kind
                    .as_deref()
                    .is_some_and(|k| k.eq_ignore_ascii_case(kind))
            })
            .and_then(|id| id.id.clone())
    }

    fn iccid(&self) -> Option<&str> {
        self.device_ids
            .iter()
            .find(|id| {
                id.kind
                    .as_deref()
                    .is_some_and(|k| k.eq_ignore_ascii_case("iccid"))
            })
            .and_then(|id| id.id.as_deref())
    }
}

/// How ThingSpace carries a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Move {
    Activate {
        service_plan: Option<String>,
        zip_code: Option<String>,
    },
    Suspend,
    Restore,
    Deactivate,
    Plan(String),
}

fn unsupported(what: &str) -> CarrierError {
    CarrierError::Permanent {
        code: "unsupported".into(),
        message: format!("{what} is not a ThingSpace action this adapter makes"),
    }
}

impl Move {
    pub(crate) fn of(change: &ChangeSpec) -> Result<Self, CarrierError> {
        Ok(match change {
            ChangeSpec::StatusUpdate { action } => match action {
                StatusAction::Activate => Move::Activate {
                    service_plan: None,
                    zip_code: None,
                },
                StatusAction::Suspend => Move::Suspend,
                StatusAction::Restore => Move::Restore,
                StatusAction::Deactivate => Move::Deactivate,
            },
            ChangeSpec::ActivateNewService {
                rate_plan,
                zip_code,
            } => Move::Activate {
                service_plan: Some(rate_plan.clone()),
                zip_code: zip_code.clone(),
            },
            ChangeSpec::CarrierRatePlanChange {
                rate_plan,
                comm_plan: None,
            } => Move::Plan(rate_plan.clone()),
            ChangeSpec::CarrierRatePlanChange {
                comm_plan: Some(_), ..
            } => return Err(unsupported("a communication plan change")),
            ChangeSpec::CustomerRatePlanChange { .. } => {
                return Err(unsupported("a customer rate plan change"))
            }
            ChangeSpec::CustomerAssignment { .. } => {
                return Err(unsupported("a customer assignment"))
            }
            ChangeSpec::IccidImeiChange => return Err(unsupported("an ICCID/IMEI change")),
            ChangeSpec::UsernameCostCenterEdit => {
                return Err(unsupported("a username/cost center edit"))
            }
        })
    }

    /// The `devices/actions/{name}` of the move.
    fn name(&self) -> &'static str {
        match self {
            Move::Activate { .. } => "activate",
            Move::Suspend => "suspend",
            Move::Restore => "restore",
            Move::Deactivate => "deactivate",
            Move::Plan(_) => "plan",
        }
    }

    fn method(&self) -> Method {
        match self {
            Move::Plan(_) => Method::PUT,
            _ => Method::POST,
        }
    }

    /// The `carrierInformations[].state` the device ends in.
    fn target(&self) -> &'static str {
        match self {
            Move::Suspend => "suspend",
            Move::Deactivate => "deactive",
            Move::Activate { .. } | Move::Restore | Move::Plan(_) => "active",
        }
    }

    /// Whether "already active" means the move is done.
    fn activates(&self) -> bool {
        matches!(self, Move::Activate { .. } | Move::Restore)
    }

    /// Whether ThingSpace allows the move from `state`: active devices may be suspended or
    /// deactivated, suspended and deactivated ones only activated again
    /// (thingspace.verizon.com, "About Device States").
    fn starts_from(&self, state: &str) -> bool {
        match self {
            Move::Activate { .. } => ["pre-active", "deactive"].contains(&state),
            Move::Restore => state == "suspend",
            Move::Suspend | Move::Deactivate | Move::Plan(_) => state == "active",
        }
    }

    fn reached(&self, device: &CarrierDevice) -> bool {
        let state = device.status.to_ascii_lowercase();
        match self {
            Move::Plan(plan) => state == "active" && device.rate_plan.as_deref() == Some(plan),
            _ => state == self.target(),
        }
    }

    /// What a failed request left the device in means for this move.
    fn judge(&self, device: &CarrierDevice, request_id: &str) -> RequestProgress {
        let state = device.status.to_ascii_lowercase();
        if state.starts_with("pending") {
            return RequestProgress::Pending;
        }
        if self.reached(device) {
            return RequestProgress::Succeeded;
        }
        if self.starts_from(&state) {
            // The move was allowed, so something else failed it; the status API does not say what.
            return RequestProgress::Failed(CarrierError::Permanent {
                code: "REQUEST_FAILED".into(),
                message: format!(
                    "ThingSpace request {request_id} failed; the device is still {state}"
                ),
            });
        }
        RequestProgress::Failed(CarrierError::InvalidTransition {
            from: state,
            to: self.target().to_owned(),
        })
    }
}

/// `UnifiedWebService.REQUEST_FAILED.X` → `REQUEST_FAILED.X`: sync errors and callbacks name the
/// same failure with and without the service in front.
pub fn normalise_code(code: &str) -> &str {
    let code = code.trim();
    CLASSES
        .iter()
        .filter_map(|class| code.find(class))
        .min()
        .map_or(code, |at| &code[at..])
}

/// What a ThingSpace error code means; `target` is the state the change aimed at, when known.
pub fn error_for_code(code: &str, message: &str, target: Option<&str>) -> CarrierError {
    let code = normalise_code(code);
    match code {
        "REQUEST_FAILED.DeviceNotFound" | "INPUT_INVALID.Device.Account.Invalid" => {
            CarrierError::NotFound
        }
        "INPUT_INVALID.DeviceState.Invalid" => CarrierError::InvalidTransition {
            from: "unknown".into(),
            to: target.unwrap_or("unknown").into(),
        },
        // Only after the one re-login: the account cannot hold a session.
        c if c.contains(".SessionToken.") => CarrierError::AuthFailed,
        "REQUEST_FAILED.UnexpectedError" => CarrierError::Transient(format!("{code}: {message}")),
        _ => CarrierError::Permanent {
            code: code.to_owned(),
            message: message.to_owned(),
        },
    }
}

/// The [`CarrierError`] of a non-2xx answer.
pub fn error_for(response: &CarrierResponse, target: Option<&str>) -> CarrierError {
    let status = response.status;
    if status == StatusCode::TOO_MANY_REQUESTS {
        return CarrierError::RateLimited {
            retry_after: retry_after(&response.headers),
        };
    }
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return CarrierError::AuthFailed;
    }
    if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        return CarrierError::Transient(format!("HTTP {}", status.as_u16()));
    }
    let body: ErrorBody = response.json().unwrap_or_default();
    let message = body.error_message.unwrap_or_default();
    match body.error_code.filter(|c| !c.trim().is_empty()) {
        Some(code) => error_for_code(&code, &message, target),
        None => CarrierError::Permanent {
            code: status.as_u16().to_string(),
            message,
        },
    }
}

/// Whether ThingSpace refused the session (expired or unknown): worth one re-login.
fn session_refused(response: &CarrierResponse) -> bool {
    if response.status != StatusCode::BAD_REQUEST {
        return false;
    }
    let body: ErrorBody = response.json().unwrap_or_default();
    matches!(
        body.error_code.as_deref().map(normalise_code),
        Some("REQUEST_FAILED.SessionToken.Expired" | "INPUT_INVALID.SessionToken.Invalid")
    )
}

fn unreadable(what: &str, error: serde_json::Error) -> CarrierError {
    CarrierError::Transient(format!("unreadable {what}: {error}"))
}

/// The tokens an answer hands out, to be removed from its journaled copy.
fn issued_tokens(response: &CarrierResponse) -> Vec<String> {
    let body: Value = response.json().unwrap_or(Value::Null);
    ["access_token", "sessionToken"]
        .iter()
        .filter_map(|name| body.get(name).and_then(Value::as_str))
        .map(str::to_owned)
        .collect()
}

/// The service type in Change Device Identifier's path (`devices/{serviceType}/actions/deviceId`):
/// the lines cellbridge manages are 4G ones (LTE, LTE-M and NB-IoT).
const IDENTIFIER_SERVICE_TYPE: &str = "4G";

/// Change Device Identifier's body for one device's swap: the device as it is known, its new
/// ICCID, IMEI or both, and the `change4gOption` that names which.
pub(crate) fn identifier_body(
    account_name: &str,
    device: &DeviceRef,
    edit: &DeviceEdit,
) -> Result<Value, CarrierError> {
    let (new_iccid, new_imei) = match edit {
        DeviceEdit::IdentifierSwap {
            new_iccid,
            new_imei,
        } => (new_iccid.as_ref(), new_imei.as_ref()),
        _ => (None, None),
    };
    let option = match (new_iccid, new_imei) {
        (Some(_), Some(_)) => "ChangeIMEIandICCID",
        (Some(_), None) => "ChangeICCID",
        (None, Some(_)) => "ChangeIMEI",
        (None, None) => {
            return Err(CarrierError::Permanent {
                code: "request".into(),
                message: "an identifier change needs a new ICCID, a new IMEI or both".into(),
            })
        }
    };
    let mut to = Vec::new();
    if let Some(iccid) = new_iccid {
        to.push(json!({"kind": "iccid", "id": iccid.as_str()}));
    }
    if let Some(imei) = new_imei {
        to.push(json!({"kind": "imei", "id": imei.as_str()}));
    }
    Ok(json!({
        "accountName": account_name,
        "deviceIds": device_ids(device),
        "deviceIdsTo": to,
        "change4gOption": option,
    }))
}

/// A request ThingSpace accepted: its id, to follow up.
fn accepted(response: &CarrierResponse) -> Result<CarrierOutcome, CarrierError> {
    let answer: RequestAnswer = response.json().unwrap_or_default();
    match answer.request_id.filter(|id| !id.trim().is_empty()) {
        Some(id) => Ok(CarrierOutcome::Accepted {
            request_id: Some(id),
        }),
        // Nothing to follow up: as AMOP does, a failure to try again (a state change that finds
        // its device already moved is judged by its state).
        None => Err(CarrierError::Transient(
            "ThingSpace accepted the request without a requestId".into(),
        )),
    }
}

fn device_ids(device: &DeviceRef) -> Value {
    let mut ids = vec![json!({"kind": "iccid", "id": device.iccid.as_str()})];
    if let Some(imei) = &device.imei {
        // 4G activations need the IMEI with the ICCID.
        ids.push(json!({"kind": "imei", "id": imei.as_str()}));
    }
    Value::Array(ids)
}

impl ThingSpaceClient {
    /// `base_url` is the API root, e.g. `https://thingspace.verizon.com/api`.
    pub fn new(
        http: reqwest::Client,
        base_url: impl Into<String>,
        credentials: ThingSpaceCredentials,
    ) -> Self {
        Self {
            http,
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            credentials,
            default_service_plan: None,
            default_zip_code: None,
            auth: Arc::default(),
            settled: Arc::default(),
        }
    }

    /// The service plan and MDN ZIP code of activations whose change does not name them.
    pub fn with_activation_defaults(
        mut self,
        service_plan: impl Into<String>,
        mdn_zip_code: impl Into<String>,
    ) -> Self {
        self.default_service_plan = Some(service_plan.into());
        self.default_zip_code = Some(mdn_zip_code.into());
        self
    }

    fn m2m(&self, path: &str) -> String {
        format!("{}/m2m/v1/{path}", self.base_url)
    }

    /// Sends through [`send_recorded`], then removes from the journaled copy any token the
    /// answer itself handed out (the session token is not a field the redactor knows by name).
    async fn exchange(
        &self,
        request: reqwest::Request,
        known: &[&str],
        journal: &CallJournal,
    ) -> Result<CarrierResponse, CarrierError> {
        let mut secrets = vec![
            self.credentials.app_secret.expose_secret(),
            self.credentials.password.expose_secret(),
        ];
        secrets.extend_from_slice(known);
        let scratch = CallJournal::default();
        let answer = send_recorded(&self.http, request, &secrets, &scratch).await;
        let issued = answer.as_ref().map(issued_tokens).unwrap_or_default();
        let issued: Vec<&str> = issued.iter().map(String::as_str).collect();
        for mut exchange in scratch.take() {
            if !issued.is_empty() {
                exchange.response_body = exchange.response_body.map(|b| redact(&b, &issued));
            }
            journal.record(exchange);
        }
        answer
    }

    async fn fetch_token(
        &self,
        journal: &CallJournal,
    ) -> Result<(SecretString, Duration), CarrierError> {
        let request = self
            .http
            .post(format!("{}/ts/v1/oauth2/token", self.base_url))
            .basic_auth(
                &self.credentials.app_key,
                Some(self.credentials.app_secret.expose_secret()),
            )
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body("grant_type=client_credentials")
            .build()
            .map_err(transport)?;
        let response = self.exchange(request, &[], journal).await?;
        if !response.status.is_success() {
            return Err(match error_for(&response, None) {
                // The gateway's 400s (bad client, bad grant) are about the credentials too.
                CarrierError::Permanent { .. } => CarrierError::AuthFailed,
                other => other,
            });
        }
        let answer: TokenAnswer = response.json().map_err(|e| unreadable("OAuth token", e))?;
        let token = answer
            .access_token
            .filter(|t| !t.expose_secret().is_empty())
            .ok_or_else(|| CarrierError::Transient("OAuth answer without a token".into()))?;
        Ok((
            token,
            Duration::from_secs(answer.expires_in.unwrap_or(3600)),
        ))
    }

    /// A valid OAuth token, fetched when there is none or it is due for renewal.
    async fn ensure_token(
        &self,
        auth: &mut AuthState,
        journal: &CallJournal,
    ) -> Result<SecretString, CarrierError> {
        let now = Instant::now();
        if let Some(token) = auth.token.as_ref().filter(|t| now < t.renew_at) {
            return Ok(token.value.clone());
        }
        match self.fetch_token(journal).await {
            Ok((value, life)) => {
                let expires_at = now + life;
                // Verizon hands back the same token for its whole life: once it came back
                // unchanged, use it until it expires rather than asking on every call.
                let unchanged = auth
                    .token
                    .as_ref()
                    .is_some_and(|t| t.value.expose_secret() == value.expose_secret());
                let renew_at = if unchanged {
                    expires_at
                } else {
                    expires_at - TOKEN_MARGIN.min(life / 2)
                };
                auth.token = Some(ApiToken {
                    value: value.clone(),
                    expires_at,
                    renew_at,
                });
                Ok(value)
            }
            // An early renewal that failed transiently leaves a token that still works.
            Err(e) if e.is_retryable() => match auth.token.as_ref() {
                Some(token) if now < token.expires_at => Ok(token.value.clone()),
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    async fn login(
        &self,
        auth: &mut AuthState,
        journal: &CallJournal,
    ) -> Result<SecretString, CarrierError> {
        let mut renewed = false;
        loop {
            let token = self.ensure_token(auth, journal).await?;
            let request = self
                .http
                .post(self.m2m("session/login"))
                .bearer_auth(token.expose_secret())
                .json(&json!({
                    "username": self.credentials.username,
                    "password": self.credentials.password.expose_secret(),
                }))
                .build()
                .map_err(transport)?;
            let response = self
                .exchange(request, &[token.expose_secret()], journal)
                .await?;
            if response.status.is_success() {
                let answer: SessionAnswer = response
                    .json()
                    .map_err(|e| unreadable("session answer", e))?;
                let session = answer
                    .session_token
                    .filter(|s| !s.expose_secret().is_empty())
                    .ok_or_else(|| {
                        CarrierError::Transient("login answered without a session token".into())
                    })?;
                auth.session = Some(session.clone());
                auth.login_refused_at = None;
                return Ok(session);
            }
            if response.status == StatusCode::UNAUTHORIZED && !renewed {
                renewed = true;
                auth.token = None;
                continue;
            }
            return Err(match error_for(&response, None) {
                e @ (CarrierError::Transient(_) | CarrierError::RateLimited { .. }) => e,
                _ => {
                    auth.login_refused_at = Some(Instant::now());
                    CarrierError::AuthFailed
                }
            });
        }
    }

    /// The OAuth token and session of the next call. The lock is held while logging in, so
    /// concurrent callers wait for one login and share it.
    async fn session(
        &self,
        journal: &CallJournal,
    ) -> Result<(SecretString, SecretString), CarrierError> {
        let mut auth = self.auth.lock().await;
        let token = self.ensure_token(&mut auth, journal).await?;
        if let Some(session) = &auth.session {
            return Ok((token, session.clone()));
        }
        if auth
            .login_refused_at
            .is_some_and(|at| at.elapsed() < LOGIN_COOLDOWN)
        {
            return Err(CarrierError::AuthFailed);
        }
        let session = self.login(&mut auth, journal).await?;
        // A 401 during login renews the token: use the one the login went through with.
        let token = auth.token.as_ref().map_or(token, |t| t.value.clone());
        Ok((token, session))
    }

    /// Drops `used` unless another caller already replaced it.
    async fn forget_token(&self, used: &str) {
        let mut auth = self.auth.lock().await;
        if auth
            .token
            .as_ref()
            .is_some_and(|t| t.value.expose_secret() == used)
        {
            auth.token = None;
        }
    }

    async fn forget_session(&self, used: &str) {
        let mut auth = self.auth.lock().await;
        if auth
            .session
            .as_ref()
            .is_some_and(|s| s.expose_secret() == used)
        {
            auth.session = None;
        }
    }

    /// An M2M call: renews the OAuth token once on a 401 and logs in again once when the
    /// session is refused, then gives the carrier's answer.
    async fn call(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
        secrets: &[&str],
        target: Option<&str>,
        journal: &CallJournal,
    ) -> Result<CarrierResponse, CarrierError> {
        let (mut renewed, mut relogged) = (false, false);
        loop {
            let (token, session) = self.session(journal).await?;
            let (token, session) = (token.expose_secret(), session.expose_secret());
            let request = build()
                .bearer_auth(token)
                .header(SESSION_HEADER, session)
                .build()
                .map_err(transport)?;
            let mut known = vec![token, session];
            known.extend_from_slice(secrets);
            let response = self.exchange(request, &known, journal).await?;
            if response.status.is_success() {
                return Ok(response);
            }
            let refused = [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN];
            if refused.contains(&response.status) && !renewed {
                renewed = true;
                self.forget_token(token).await;
                continue;
            }
            if session_refused(&response) && !relogged {
                relogged = true;
                self.forget_session(session).await;
                continue;
            }
            return Err(error_for(&response, target));
        }
    }

    /// Ends the cached session, if any (callbacks keep arriving after a logout).
    pub async fn logout(&self, journal: &CallJournal) -> Result<(), CarrierError> {
        let (token, session) = {
            let auth = self.auth.lock().await;
            match (&auth.token, &auth.session) {
                (Some(token), Some(session)) => (token.value.clone(), session.clone()),
                _ => return Ok(()),
            }
        };
        let (token, session) = (token.expose_secret(), session.expose_secret());
        let request = self
            .http
            .post(self.m2m("session/logout"))
            .bearer_auth(token)
            .header(SESSION_HEADER, session)
            .build()
            .map_err(transport)?;
        let response = self.exchange(request, &[token, session], journal).await;
        self.forget_session(session).await;
        let response = response?;
        if response.status.is_success() {
            Ok(())
        } else {
            Err(error_for(&response, None))
        }
    }

    /// Registers the account's listener for callback service `service` ([`CARRIER_SERVICE`],
    /// [`DEVICE_USAGE`]); ThingSpace echoes `username` and `password` in every callback so the
    /// listener can authenticate them.
    pub async fn register_callback(
        &self,
        service: &str,
        url: &str,
        username: Option<&str>,
        password: Option<&str>,
        journal: &CallJournal,
    ) -> Result<(), CarrierError> {
        let mut body = json!({"name": service, "url": url});
        if let Some(username) = username {
            body["username"] = json!(username);
        }
        if let Some(password) = password {
            body["password"] = json!(password);
        }
        let endpoint = self.m2m(&format!("callbacks/{}", self.credentials.account_name));
        let secrets: Vec<&str> = password.into_iter().collect();
        self.call(
            || self.http.post(&endpoint).json(&body),
            &secrets,
            None,
            journal,
        )
        .await
        .map(drop)
    }

    pub async fn request_status(
        &self,
        request_id: &str,
        journal: &CallJournal,
    ) -> Result<ThingSpaceRequestStatus, CarrierError> {
        let remembered = self
            .settled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(request_id)
            .copied();
        if let Some(status) = remembered {
            return Ok(status);
        }
        let status = self.fetch_request_status(request_id, journal).await?;
        if status != ThingSpaceRequestStatus::Pending {
            let mut settled = self
                .settled
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if settled.len() >= SETTLED_MEMO {
                settled.clear();
            }
            settled.insert(request_id.to_owned(), status);
        }
        Ok(status)
    }

    async fn fetch_request_status(
        &self,
        request_id: &str,
        journal: &CallJournal,
    ) -> Result<ThingSpaceRequestStatus, CarrierError> {
        let endpoint = self.m2m(&format!(
            "accounts/{}/requests/{request_id}/status",
            self.credentials.account_name
        ));
        let response = self
            .call(|| self.http.get(&endpoint), &[], None, journal)
            .await?;
        let answer: RequestAnswer = response
            .json()
            .map_err(|e| unreadable("request status", e))?;
        match answer
            .status
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("pending") => Ok(ThingSpaceRequestStatus::Pending),
            Some("success") => Ok(ThingSpaceRequestStatus::Success),
            Some("failure" | "failed") => Ok(ThingSpaceRequestStatus::Failure),
            other => Err(CarrierError::Transient(format!(
                "request {request_id} has an unknown status {other:?}"
            ))),
        }
    }

    /// The device as `devices/actions/list` shows it; its first carrier's state and plan.
    pub async fn get_device(
        &self,
        iccid: &str,
        journal: &CallJournal,
    ) -> Result<CarrierDevice, CarrierError> {
        let body = json!({
            "accountName": self.credentials.account_name,
            "deviceId": {"kind": "iccid", "id": iccid},
        });
        let endpoint = self.m2m("devices/actions/list");
        let response = self
            .call(|| self.http.post(&endpoint).json(&body), &[], None, journal)
            .await?;
        let answer: ListAnswer = response.json().map_err(|e| unreadable("device list", e))?;
        let device = answer
            .devices
            .into_iter()
            .find(|d| d.iccid() == Some(iccid))
            .ok_or(CarrierError::NotFound)?;
        let carrier = device.carrier_informations.into_iter().next();
        Ok(CarrierDevice {
            iccid: iccid.to_owned(),
            status: carrier
                .as_ref()
                .and_then(|c| c.state.clone())
                .unwrap_or_default(),
            rate_plan: carrier.and_then(|c| c.service_plan),
        })
    }

    /// The callback services the account has a listener for (List Callback Listeners).
    pub async fn listeners(&self, journal: &CallJournal) -> Result<Vec<String>, CarrierError> {
        let endpoint = self.m2m(&format!("callbacks/{}", self.credentials.account_name));
        let response = self
            .call(|| self.http.get(&endpoint), &[], None, journal)
            .await?;
        let listed: Vec<ListenerAnswer> = response
            .json()
            .map_err(|e| unreadable("callback listeners", e))?;
        Ok(listed.into_iter().filter_map(|l| l.name).collect())
    }

    /// Retrieve Aggregate Device Usage History: each device's bytes and SMS over `span`, sent
    /// later to the DeviceUsage listener, one callback per device; answers the request id.
    pub async fn aggregate_usage(
        &self,
        iccids: &[&str],
        span: UsageSpan,
        journal: &CallJournal,
    ) -> Result<String, CarrierError> {
        let (start, end) = whole_days(span.from, span.through);
        let ids: Vec<Value> = iccids
            .iter()
            .map(|iccid| json!({"kind": "iccid", "id": iccid}))
            .collect();
        let body = json!({
            "accountName": self.credentials.account_name,
            "deviceIds": ids,
            "startTime": start,
            "endTime": end,
        });
        let endpoint = self.m2m("devices/usage/actions/list/aggregate");
        let response = self
            .call(|| self.http.post(&endpoint).json(&body), &[], None, journal)
            .await?;
        let answer: RequestAnswer = response
            .json()
            .map_err(|e| unreadable("aggregate usage request", e))?;
        answer
            .request_id
            .filter(|id| !id.trim().is_empty())
            .ok_or_else(|| {
                CarrierError::Transient(
                    "ThingSpace took the usage request without a requestId".into(),
                )
            })
    }

    /// Retrieve Device Usage History: the device's bytes and SMS on each day from `from` through
    /// `through` (one record a day; a call answers at most 500, more than a month's worth).
    pub async fn usage_history(
        &self,
        iccid: &str,
        from: time::Date,
        through: time::Date,
        journal: &CallJournal,
    ) -> Result<Vec<(time::Date, u64, u64)>, CarrierError> {
        let (earliest, latest) = whole_days(from, through);
        let body = json!({
            "deviceId": {"kind": "iccid", "id": iccid},
            "earliest": earliest,
            "latest": latest,
        });
        let endpoint = self.m2m("devices/usage/actions/list");
        let response = self
            .call(|| self.http.post(&endpoint).json(&body), &[], None, journal)
            .await?;
        let answer: UsageHistory = response
            .json()
            .map_err(|e| unreadable("device usage history", e))?;
        let mut days: Vec<(time::Date, u64, u64)> = answer
            .usage_history
            .iter()
            .filter_map(|record| {
                let day = cellbridge_core::clock::parse_day(record.timestamp.get(..10)?)?;
                (from..=through)
                    .contains(&day)
                    .then_some((day, record.bytes_used, record.sms_used))
            })
            .collect();
        days.sort_by_key(|(day, _, _)| *day);
        Ok(days)
    }

    /// One page of the account's devices, after the ICCID `after` (the last of the previous page;
    /// `None` for the first): ThingSpace has no change date to search by, so a sync lists the
    /// whole account and compares.
    pub async fn list_devices(
        &self,
        after: Option<&str>,
        journal: &CallJournal,
    ) -> Result<InventoryPage, CarrierError> {
        let mut body = json!({"accountName": self.credentials.account_name});
        if let Some(after) = after {
            body["lastSeenDeviceId"] = json!({"kind": "iccid", "id": after});
        }
        let endpoint = self.m2m("devices/actions/list");
        let response = self
            .call(|| self.http.post(&endpoint).json(&body), &[], None, journal)
            .await?;
        let answer: ListAnswer = response.json().map_err(|e| unreadable("device list", e))?;
        let sims = answer
            .devices
            .into_iter()
            .filter_map(|device| {
                let iccid = device.iccid()?.to_owned();
                let msisdn = device
                    .id_of("msisdn")
                    .or_else(|| device.id_of("mdn"))
                    .and_then(|raw| crate::port::listed_msisdn(&raw));
                let imei = device.id_of("imei");
                let carrier = device.carrier_informations.into_iter().next();
                Some(CarrierSim {
                    iccid,
                    status: carrier
                        .as_ref()
                        .and_then(|c| c.state.clone())
                        .unwrap_or_default(),
                    rate_plan: carrier.and_then(|c| c.service_plan),
                    msisdn,
                    imei,
                    ..CarrierSim::default()
                })
            })
            .collect();
        Ok(InventoryPage {
            sims,
            more: answer.has_more_data,
        })
    }

    /// Change Device Identifier for one device; accepted with a request id, answered by a
    /// CarrierService callback like the other actions. Tried again after a lost answer, a swap
    /// that went through finds the device gone from its old ICCID and fails: the next sync
    /// shows the line on its new SIM.
    async fn change_identifier(
        &self,
        request: &DeviceRequest,
        journal: &CallJournal,
    ) -> Result<CarrierOutcome, CarrierError> {
        let account = &self.credentials.account_name;
        let body = identifier_body(account, &request.device, &request.edit)?;
        let endpoint = self.m2m(&format!(
            "devices/{IDENTIFIER_SERVICE_TYPE}/actions/deviceId"
        ));
        let response = self
            .call(|| self.http.put(&endpoint).json(&body), &[], None, journal)
            .await?;
        accepted(&response)
    }

    /// The body of `step` for `requests`, or why it cannot be sent.
    fn action_body(&self, step: &Move, requests: &[DeviceRequest]) -> Result<Value, CarrierError> {
        let devices: Vec<Value> = requests
            .iter()
            .map(|r| json!({"deviceIds": device_ids(&r.device)}))
            .collect();
        let mut body = json!({
            "accountName": self.credentials.account_name,
            "devices": devices,
        });
        let missing = |what: &str| CarrierError::Permanent {
            code: "config".into(),
            message: format!(
                "a ThingSpace activation needs {what}: name it in the change or configure a default"
            ),
        };
        match step {
            Move::Activate {
                service_plan,
                zip_code,
            } => {
                let plan = service_plan
                    .as_ref()
                    .or(self.default_service_plan.as_ref())
                    .ok_or_else(|| missing("a service plan"))?;
                let zip = zip_code
                    .as_ref()
                    .or(self.default_zip_code.as_ref())
                    .ok_or_else(|| missing("an MDN ZIP code"))?;
                body["servicePlan"] = json!(plan);
                body["mdnZipCode"] = json!(zip);
            }
            // "FF" (General Admin/Maintenance) is the only documented reason code.
            Move::Deactivate => body["reasonCode"] = json!("FF"),
            Move::Plan(plan) => body["servicePlan"] = json!(plan),
            Move::Suspend | Move::Restore => {}
        }
        Ok(body)
    }
}

#[async_trait]
impl CarrierPort for ThingSpaceClient {
    fn carrier(&self) -> Carrier {
        Carrier::ThingSpace
    }

    fn reads_daily_usage(&self) -> bool {
        true
    }

    async fn daily_usage(
        &self,
        device: &DeviceRef,
        from: time::Date,
        through: time::Date,
        journal: &CallJournal,
    ) -> Result<Vec<(time::Date, u64, u64)>, CarrierError> {
        self.usage_history(device.iccid.as_str(), from, through, journal)
            .await
    }

    fn usage_request_size(&self) -> u32 {
        USAGE_REQUEST_SIZE
    }

    async fn usage_listener_registered(&self, journal: &CallJournal) -> Result<bool, CarrierError> {
        Ok(self
            .listeners(journal)
            .await?
            .iter()
            .any(|name| name.eq_ignore_ascii_case(DEVICE_USAGE)))
    }

    async fn request_usage(
        &self,
        devices: &[DeviceRef],
        span: UsageSpan,
        journal: &CallJournal,
    ) -> Result<String, CarrierError> {
        let iccids: Vec<&str> = devices.iter().map(|d| d.iccid.as_str()).collect();
        self.aggregate_usage(&iccids, span, journal).await
    }

    /// The account's devices in pages; the position is the last ICCID of the page before.
    async fn list_sims(
        &self,
        position: Option<&str>,
        _since: Option<time::OffsetDateTime>,
        journal: &CallJournal,
    ) -> Result<ListedSims, CarrierError> {
        let page = self.list_devices(position, journal).await?;
        let next = page
            .more
            .then(|| page.sims.last().map(|sim| sim.iccid.clone()))
            .flatten();
        Ok(ListedSims {
            sims: page.sims,
            next,
        })
    }

    fn batch_limit(&self, change: &ChangeSpec) -> usize {
        if Move::of(change).is_ok() {
            MAX_BATCH
        } else {
            1
        }
    }

    async fn read_device(
        &self,
        device: &DeviceRef,
        journal: &CallJournal,
    ) -> Result<CarrierDevice, CarrierError> {
        self.get_device(device.iccid.as_str(), journal).await
    }

    /// One ThingSpace request for the whole slice; the devices finish later.
    async fn apply(
        &self,
        change: &ChangeSpec,
        requests: &[DeviceRequest],
        journal: &CallJournal,
    ) -> Result<CarrierOutcome, CarrierError> {
        if *change == ChangeSpec::IccidImeiChange {
            let [request] = requests else {
                return Err(CarrierError::Permanent {
                    code: "batch".into(),
                    message: format!(
                        "a ThingSpace identifier change carries one device, not {}",
                        requests.len()
                    ),
                });
            };
            return self.change_identifier(request, journal).await;
        }
        let step = Move::of(change)?;
        if requests.is_empty() || requests.len() > MAX_BATCH {
            return Err(CarrierError::Permanent {
                code: "batch".into(),
                message: format!(
                    "a ThingSpace request carries 1 to {MAX_BATCH} devices, not {}",
                    requests.len()
                ),
            });
        }
        let body = self.action_body(&step, requests)?;
        let endpoint = self.m2m(&format!("devices/actions/{}", step.name()));
        let method = step.method();
        let answer = self
            .call(
                || self.http.request(method.clone(), &endpoint).json(&body),
                &[],
                Some(step.target()),
                journal,
            )
            .await;
        match answer {
            Ok(response) => accepted(&response),
            Err(CarrierError::Permanent { code, .. })
                if step.activates() && code == ALREADY_ACTIVE =>
            {
                Ok(CarrierOutcome::Completed)
            }
            Err(e) => Err(e),
        }
    }

    /// Pending and Success come from the request status; on Failure the device's own state says
    /// whether this device made it (the status is for the whole request; an identifier change
    /// is one device's alone).
    async fn check(
        &self,
        change: &ChangeSpec,
        request_id: &str,
        request: &DeviceRequest,
        journal: &CallJournal,
    ) -> Result<RequestProgress, CarrierError> {
        let status = self.request_status(request_id, journal).await?;
        if *change == ChangeSpec::IccidImeiChange {
            return Ok(match status {
                ThingSpaceRequestStatus::Pending => RequestProgress::Pending,
                ThingSpaceRequestStatus::Success => RequestProgress::Succeeded,
                ThingSpaceRequestStatus::Failure => {
                    RequestProgress::Failed(CarrierError::Permanent {
                        code: "REQUEST_FAILED".into(),
                        message: format!("ThingSpace request {request_id} failed"),
                    })
                }
            });
        }
        let step = Move::of(change)?;
        match status {
            ThingSpaceRequestStatus::Pending => Ok(RequestProgress::Pending),
            ThingSpaceRequestStatus::Success => Ok(RequestProgress::Succeeded),
            ThingSpaceRequestStatus::Failure => {
                match self.read_device(&request.device, journal).await {
                    Ok(device) => Ok(step.judge(&device, request_id)),
                    Err(CarrierError::NotFound) => {
                        Ok(RequestProgress::Failed(CarrierError::NotFound))
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }
}

/// The days `from` through `through` as ThingSpace's usage queries take a period: from the start
/// of the first day (UTC) to the start of the day after the last.
fn whole_days(from: time::Date, through: time::Date) -> (String, String) {
    let at = |d: time::Date| format!("{d}T00:00:00Z");
    (at(from), at(through.next_day().unwrap_or(through)))
}

/// One CarrierService callback: the result of one device of a request.
#[derive(Debug, Clone)]
pub struct CallbackReport {
    pub request_id: String,
    pub iccid: String,
    /// The MDN a successful activation assigned (any `msisdn`/`mdn` identifier sent).
    pub msisdn: Option<String>,
    /// `Succeeded`, or `Failed` with the fault mapped as synchronous errors are.
    /// `REQUEST_FAILED.DeviceAlreadyActive` is `Succeeded`: ThingSpace sends it only to
    /// activations and restores, where it means the device is where the change wanted it.
    pub progress: RequestProgress,
    /// The listener credentials registered with the callback, echoed for the listener to check.
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// A DeviceUsage callback's totals for the device over the request's span.
    pub usage: Option<ReportedUsage>,
}

/// A device's data and SMS over an aggregate usage request's span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportedUsage {
    pub data_bytes: u64,
    pub sms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("the callback is not the JSON of a ThingSpace callback: {0}")]
    NotJson(String),
    #[error("the callback has no {0}")]
    Missing(&'static str),
    #[error("the callback's status {0:?} is neither Success nor Failed")]
    UnknownStatus(String),
}

#[derive(Debug, Deserialize)]
struct RawFault {
    faultcode: Option<String>,
    faultstring: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCallback {
    request_id: Option<String>,
    #[serde(default)]
    device_ids: Vec<IdAnswer>,
    status: Option<String>,
    fault_response: Option<RawFault>,
    username: Option<String>,
    password: Option<String>,
    device_response: Option<RawDeviceResponse>,
}

/// The shape of a DeviceUsage callback's totals is not published; this reads them as the
/// daily history names them (`bytesUsed`, `smsUsed`) under `deviceResponse.usage`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDeviceResponse {
    usage: Option<RawUsage>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawUsage {
    #[serde(default)]
    bytes_used: u64,
    #[serde(default)]
    sms_used: u64,
}

/// Reads a CarrierService callback body. Identifier kinds are matched case-insensitively
/// (callbacks send `Iccid` as well as `iccid`).
pub fn parse_callback(body: &[u8]) -> Result<CallbackReport, CallbackError> {
    let raw: RawCallback =
        serde_json::from_slice(body).map_err(|e| CallbackError::NotJson(e.to_string()))?;
    let request_id = raw
        .request_id
        .filter(|id| !id.trim().is_empty())
        .ok_or(CallbackError::Missing("requestId"))?;
    let id_of = |kinds: &[&str]| {
        raw.device_ids
            .iter()
            .filter(|id| {
                id.kind
                    .as_deref()
                    .is_some_and(|k| kinds.iter().any(|want| k.eq_ignore_ascii_case(want)))
            })
            .find_map(|id| id.id.clone().filter(|v| !v.trim().is_empty()))
    };
    let iccid = id_of(&["iccid"]).ok_or(CallbackError::Missing("iccid device id"))?;
    let msisdn = id_of(&["msisdn", "mdn"]);
    let failed = |fault: Option<&RawFault>| {
        let code = fault.and_then(|f| f.faultcode.as_deref()).unwrap_or("");
        let message = fault.and_then(|f| f.faultstring.as_deref()).unwrap_or("");
        if normalise_code(code) == ALREADY_ACTIVE {
            RequestProgress::Succeeded
        } else if code.trim().is_empty() {
            RequestProgress::Failed(CarrierError::Permanent {
                code: "REQUEST_FAILED".into(),
                message: format!("failed without a fault code: {message}"),
            })
        } else {
            RequestProgress::Failed(error_for_code(code, message, None))
        }
    };
    let progress = match raw.status.as_deref().map(str::trim) {
        Some(s) if s.eq_ignore_ascii_case("success") => RequestProgress::Succeeded,
        Some(s)
            if ["failed", "failure", "fail"]
                .iter()
                .any(|f| s.eq_ignore_ascii_case(f)) =>
        {
            failed(raw.fault_response.as_ref())
        }
        None if raw.fault_response.is_some() => failed(raw.fault_response.as_ref()),
        None => return Err(CallbackError::Missing("status")),
        Some(other) => return Err(CallbackError::UnknownStatus(other.to_owned())),
    };
    Ok(CallbackReport {
        request_id,
        iccid,
        msisdn,
        progress,
        username: raw.username,
        password: raw.password.map(SecretString::from),
        usage: raw
            .device_response
            .and_then(|r| r.usage)
            .map(|u| ReportedUsage {
                data_bytes: u.bytes_used,
                sms: u.sms_used,
            }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn answer(status: u16, headers: &[(&'static str, &str)], body: Value) -> CarrierResponse {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            if let Ok(value) = HeaderValue::from_str(value) {
                map.insert(*name, value);
            }
        }
        CarrierResponse {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT),
            headers: map,
            body: body.to_string().into(),
        }
    }

    fn coded(code: &str) -> Value {
        json!({"errorCode": code, "errorMessage": "text"})
    }

    #[test]
    fn thingspace_answers_map_to_carrier_errors() {
        assert_eq!(
            error_for(&answer(429, &[("retry-after", "7")], json!({})), None),
            CarrierError::RateLimited {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert_eq!(
            error_for(&answer(429, &[], json!({})), None),
            CarrierError::RateLimited { retry_after: None }
        );
        for status in [500, 502, 503, 504, 408] {
            assert!(matches!(
                error_for(&answer(status, &[], Value::Null), None),
                CarrierError::Transient(_)
            ));
        }
        assert_eq!(
            error_for(&answer(401, &[], json!({"error": "invalid_token"})), None),
            CarrierError::AuthFailed
        );
        assert_eq!(
            error_for(&answer(403, &[], Value::Null), None),
            CarrierError::AuthFailed
        );
        assert_eq!(
            error_for(
                &answer(400, &[], coded("REQUEST_FAILED.DeviceNotFound")),
                None
            ),
            CarrierError::NotFound
        );
        assert_eq!(
            error_for(
                &answer(400, &[], coded("INPUT_INVALID.DeviceState.Invalid")),
                Some("active")
            ),
            CarrierError::InvalidTransition {
                from: "unknown".into(),
                to: "active".into()
            }
        );
        assert_eq!(
            error_for(
                &answer(400, &[], coded("INPUT_INVALID.MaxRequestsExceeded")),
                None
            ),
            CarrierError::Permanent {
                code: "INPUT_INVALID.MaxRequestsExceeded".into(),
                message: "text".into()
            }
        );
        assert_eq!(
            error_for(
                &answer(400, &[], coded("REQUEST_FAILED.SessionToken.Expired")),
                None
            ),
            CarrierError::AuthFailed
        );
        assert_eq!(
            error_for(&answer(404, &[], Value::Null), None),
            CarrierError::Permanent {
                code: "404".into(),
                message: String::new()
            }
        );
        assert!(session_refused(&answer(
            400,
            &[],
            coded("REQUEST_FAILED.SessionToken.Expired")
        )));
        assert!(!session_refused(&answer(
            400,
            &[],
            coded("REQUEST_FAILED.SessionToken.Format")
        )));
    }

    #[test]
    fn thingspace_codes_are_read_with_or_without_the_service_name() {
        assert_eq!(
            normalise_code("UnifiedWebService.REQUEST_FAILED.DeviceAlreadyActive"),
            ALREADY_ACTIVE
        );
        assert_eq!(normalise_code(" INPUT_INVALID.X "), "INPUT_INVALID.X");
        assert_eq!(normalise_code("400"), "400");
        assert_eq!(
            error_for_code("UnifiedWebService.REQUEST_FAILED.DeviceNotFound", "", None),
            CarrierError::NotFound
        );
        assert!(matches!(
            error_for_code("UnifiedWebService.REQUEST_FAILED.UnexpectedError", "", None),
            CarrierError::Transient(_)
        ));
    }

    #[test]
    fn thingspace_success_callbacks_parse_with_mixed_case_kinds() {
        let body = json!({
            "requestId": "4f1c-1", "status": "Success", "callbackCount": 1,
            "deviceIds": [{"kind": "Iccid", "id": "8901260882296135418"},
                          {"kind": "MSISDN", "id": "15551234567"}],
            "deviceResponse": {"activateResponse": {"ipAddress": "10.0.0.1"}},
            "username": "hook", "password": "hook-pass",
        });
        let report = parse_callback(body.to_string().as_bytes()).expect("parsed");
        assert_eq!(report.request_id, "4f1c-1");
        assert_eq!(report.iccid, "8901260882296135418");
        assert_eq!(report.msisdn.as_deref(), Some("15551234567"));
        assert_eq!(report.progress, RequestProgress::Succeeded);
        assert_eq!(report.username.as_deref(), Some("hook"));
        assert_eq!(
            report.password.as_ref().map(|p| p.expose_secret()),
            Some("hook-pass")
        );
        let printed = format!("{report:?}");
        assert!(!printed.contains("hook-pass"), "{printed}");
        assert_eq!(
            report.usage, None,
            "a device change's callback tells no usage"
        );
    }

    #[test]
    fn thingspace_usage_callbacks_carry_the_devices_totals() {
        let body = json!({
            "requestId": "9a7e-2", "status": "Success",
            "deviceIds": [{"kind": "iccid", "id": "8901260882296135418"}],
            "deviceResponse": {"usage": {"bytesUsed": 73_400_320_u64, "smsUsed": 12}},
        });
        let report = parse_callback(body.to_string().as_bytes()).expect("parsed");
        assert_eq!(
            report.usage,
            Some(ReportedUsage {
                data_bytes: 73_400_320,
                sms: 12
            })
        );
    }

    #[test]
    fn thingspace_failure_callbacks_map_their_fault() {
        let failed = |code: &str| {
            let body = json!({
                "requestId": "r", "status": "Failed",
                "deviceIds": [{"kind": "Iccid", "id": "8901260882296135418"}],
                "faultResponse": {"faultcode": code, "faultstring": "why"},
            });
            parse_callback(body.to_string().as_bytes()).map(|r| r.progress)
        };
        assert_eq!(
            failed("UnifiedWebService.REQUEST_FAILED.DeviceNotFound"),
            Ok(RequestProgress::Failed(CarrierError::NotFound))
        );
        assert_eq!(
            failed("UnifiedWebService.INPUT_INVALID.DeviceState.Invalid"),
            Ok(RequestProgress::Failed(CarrierError::InvalidTransition {
                from: "unknown".into(),
                to: "unknown".into()
            }))
        );
        assert_eq!(
            failed("UnifiedWebService.REQUEST_FAILED.DeviceAlreadyActive"),
            Ok(RequestProgress::Succeeded)
        );
        assert_eq!(
            failed("UnifiedWebService.REQUEST_FAILED._servicePlan_.NotFound"),
            Ok(RequestProgress::Failed(CarrierError::Permanent {
                code: "REQUEST_FAILED._servicePlan_.NotFound".into(),
                message: "why".into()
            }))
        );
    }

    #[test]
    fn thingspace_malformed_callbacks_are_errors_not_panics() {
        assert!(matches!(
            parse_callback(b"not json"),
            Err(CallbackError::NotJson(_))
        ));
        assert!(matches!(
            parse_callback(b"[1,2]"),
            Err(CallbackError::NotJson(_))
        ));
        let no_iccid = json!({"requestId": "r", "status": "Success",
                              "deviceIds": [{"kind": "imei", "id": "490154203237518"}]});
        assert_eq!(
            parse_callback(no_iccid.to_string().as_bytes()).err(),
            Some(CallbackError::Missing("iccid device id"))
        );
        let no_request = json!({"status": "Success", "deviceIds": [{"kind": "iccid", "id": "1"}]});
        assert_eq!(
            parse_callback(no_request.to_string().as_bytes()).err(),
            Some(CallbackError::Missing("requestId"))
        );
        let odd = json!({"requestId": "r", "status": "Queued",
                         "deviceIds": [{"kind": "iccid", "id": "1"}]});
        assert_eq!(
            parse_callback(odd.to_string().as_bytes()).err(),
            Some(CallbackError::UnknownStatus("Queued".into()))
        );
        let wrong_types = json!({"requestId": 7, "deviceIds": "x"});
        assert!(parse_callback(wrong_types.to_string().as_bytes()).is_err());
    }

    #[test]
    fn thingspace_secrets_never_print() {
        let client = ThingSpaceClient::new(
            reqwest::Client::new(),
            "http://127.0.0.1:1/api/",
            ThingSpaceCredentials {
                app_key: "app-key".into(),
                app_secret: "app-s3cr3t".into(),
                username: "ops".into(),
                password: "pa55word".into(),
                account_name: "0000123456-00001".into(),
            },
        );
        {
            let mut auth = client.auth.try_lock().expect("unshared");
            let now = Instant::now();
            auth.token = Some(ApiToken {
                value: "oauth-t0ken".into(),
                expires_at: now,
                renew_at: now,
            });
            auth.session = Some("m2m-s3ssion".into());
        }
        let printed = format!("{client:?}");
        for secret in ["app-s3cr3t", "pa55word", "oauth-t0ken", "m2m-s3ssion"] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        assert!(printed.contains("REDACTED") && printed.contains("0000123456-00001"));
        assert_eq!(client.base_url, "http://127.0.0.1:1/api");

        let answers = format!(
            "{:?} {:?}",
            serde_json::from_value::<TokenAnswer>(
                json!({"access_token": "oauth-t0ken", "expires_in": 3600})
            )
            .expect("token answer"),
            serde_json::from_value::<SessionAnswer>(json!({"sessionToken": "m2m-s3ssion"}))
                .expect("session answer"),
        );
        assert!(
            !answers.contains("oauth-t0ken") && !answers.contains("m2m-s3ssion"),
            "{answers}"
        );
    }

    #[test]
    fn thingspace_batches_only_the_changes_it_can_make() {
        let client = ThingSpaceClient::new(
            reqwest::Client::new(),
            "http://127.0.0.1:1/api",
            ThingSpaceCredentials {
                app_key: String::new(),
                app_secret: SecretString::from(""),
                username: String::new(),
                password: SecretString::from(""),
                account_name: "a".into(),
            },
        );
        for action in StatusAction::ALL {
            assert_eq!(
                client.batch_limit(&ChangeSpec::StatusUpdate { action }),
                MAX_BATCH
            );
        }
        let plan = ChangeSpec::CarrierRatePlanChange {
            rate_plan: "P".into(),
            comm_plan: None,
        };
        assert_eq!(client.batch_limit(&plan), MAX_BATCH);
        for change in [
            ChangeSpec::IccidImeiChange,
            ChangeSpec::UsernameCostCenterEdit,
            ChangeSpec::CustomerAssignment {
                customer_id: "c".into(),
            },
            ChangeSpec::CarrierRatePlanChange {
                rate_plan: "P".into(),
                comm_plan: Some("C".into()),
            },
        ] {
            assert_eq!(client.batch_limit(&change), 1);
            assert!(matches!(
                Move::of(&change),
                Err(CarrierError::Permanent { code, .. }) if code == "unsupported"
            ));
        }
        // Activation without a plan anywhere is a configuration error, not a carrier call.
        let activate = Move::of(&ChangeSpec::StatusUpdate {
            action: StatusAction::Activate,
        });
        assert!(matches!(
            activate.and_then(|m| client.action_body(&m, &[])),
            Err(CarrierError::Permanent { code, .. }) if code == "config"
        ));
        let deactivate = client.action_body(&Move::Deactivate, &[]);
        assert_eq!(
            deactivate.ok().and_then(|b| b.get("reasonCode").cloned()),
            Some(json!("FF"))
        );
    }

    #[test]
    fn thingspace_failed_requests_are_judged_by_the_device_state() {
        let device = |status: &str, plan: Option<&str>| CarrierDevice {
            iccid: "8901260882296135418".into(),
            status: status.into(),
            rate_plan: plan.map(str::to_owned),
        };
        assert_eq!(
            Move::Suspend.judge(&device("suspend", None), "r"),
            RequestProgress::Succeeded
        );
        assert_eq!(
            Move::Suspend.judge(&device("deactive", None), "r"),
            RequestProgress::Failed(CarrierError::InvalidTransition {
                from: "deactive".into(),
                to: "suspend".into()
            })
        );
        assert!(matches!(
            Move::Suspend.judge(&device("active", None), "r"),
            RequestProgress::Failed(CarrierError::Permanent { .. })
        ));
        let activate = Move::Activate {
            service_plan: None,
            zip_code: None,
        };
        assert_eq!(
            activate.judge(&device("pending activation", None), "r"),
            RequestProgress::Pending
        );
        assert_eq!(
            Move::Plan("P2".into()).judge(&device("active", Some("P2")), "r"),
            RequestProgress::Succeeded
        );
        assert_eq!(
            Move::Plan("P2".into()).judge(&device("suspend", Some("P1")), "r"),
            RequestProgress::Failed(CarrierError::InvalidTransition {
                from: "suspend".into(),
                to: "active".into()
            })
        );
    }
}
