//! AT&T Telegence over reqwest, on an **inferred** wire format.
//!
//! Telegence is AT&T's billing back end and has no public REST reference. What is known comes from
//! AMOP's public C# client (github.com/hemalathapampana/BulkChange): `app-id`/`app-secret` headers, a `PATCH` per
//! subscriber number with `serviceCharacteristic` name/value pairs and an `effectiveDate`, a batch
//! activation of at most 200 services, and activation status polled per subscriber with `batch-id`
//! and `subscriber-number` headers. That client reads its URLs from the environment, so the paths
//! here are configurable ([`TelegencePaths`]); the characteristic names, status words and error
//! codes are our guesses, mirrored by the simulator (`infra/carrier-sim/src/telegence.rs`) and held
//! together by `tests/tests/telegence_against_sim.rs`.
//!
//! Mapping of bulk-change actions: suspend → `Suspend`; restore and activate → `Restore` (a reserved
//! line is activated through new-service activation, not a status update); deactivate → `Cancel`.
//! A carrier rate plan change sets the SOC (`ratePlanCode`); Telegence has no communication plans.

use crate::error::CarrierError;
use crate::http::{retry_after, send_recorded, CarrierResponse};
use crate::port::{
    CallJournal, CarrierDevice, CarrierOutcome, CarrierPort, CarrierSim, ListedSims,
    RequestProgress,
};
use async_trait::async_trait;
use cellbridge_bulk_changes::change::{
    Carrier, ChangeSpec, DeviceEdit, DeviceRef, DeviceRequest, Label, StatusAction,
};
use cellbridge_core::ids::Msisdn;
use cellbridge_sims::usage::CycleReading;
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// Subscribers a listing page asks for (inferred: the simulator serves up to 500).
const LIST_PAGE_SIZE: &str = "500";
/// Services one activation request may carry (AMOP's `MAX_TELEGENCE_SERVICES_PER_REQUEST`).
pub const MAX_SERVICES_PER_REQUEST: usize = 200;
/// Characteristic carrying a status action (inferred).
pub const STATUS_CHARACTERISTIC: &str = "subscriberStatusAction";
/// Characteristic carrying the new rate plan SOC (inferred).
pub const RATE_PLAN_CHARACTERISTIC: &str = "ratePlanCode";
/// Characteristics of an equipment swap: the subscriber's new SIM and device (inferred).
pub const ICCID_CHARACTERISTIC: &str = "iccid";
pub const IMEI_CHARACTERISTIC: &str = "imei";
/// Characteristics of the subscriber's user name and cost center (inferred).
pub const USER_NAME_CHARACTERISTIC: &str = "userName";
pub const COST_CENTER_CHARACTERISTIC: &str = "costCenter";
/// Error code of a change the subscriber's status does not allow (inferred).
pub const INVALID_TRANSITION_CODE: &str = "INVALID_STATUS_TRANSITION";

#[derive(Debug, Clone)]
pub struct TelegenceCredentials {
    pub app_id: String,
    pub app_secret: SecretString,
}

/// Paths under the base URL. Not public: AMOP configures them per environment, and so can we.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelegencePaths {
    /// `GET {subscribers}/{number}`, `GET {subscribers}?iccid=`, `PATCH {subscribers}/{number}`.
    pub subscribers: String,
    /// `POST`: batch activation.
    pub activations: String,
    /// `GET` with `batch-id` and `subscriber-number` headers.
    pub activation_status: String,
    /// `GET {subscribers}/{number}{usage}`: the subscriber's cycle-to-date usage.
    pub usage: String,
}

impl Default for TelegencePaths {
    fn default() -> Self {
        Self {
            subscribers: "/subscribers".into(),
            activations: "/activations".into(),
            activation_status: "/activations/status".into(),
            usage: "/usage".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TelegenceClient {
    http: reqwest::Client,
    /// e.g. `https://telegence.example.att.com/api/v1` (the simulator's is `{sim}/telegence/api/v1`)
    base_url: String,
    credentials: TelegenceCredentials,
    paths: TelegencePaths,
}

/// A subscriber's usage, as far as the inventory uses it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscriberUsage {
    bill_cycle_start_date: Option<String>,
    #[serde(default)]
    data_usage_bytes: u64,
    #[serde(default)]
    sms_count: u64,
}

/// A subscriber as Telegence describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TelegenceSubscriber {
    pub subscriber_number: String,
    pub iccid: String,
    #[serde(default)]
    pub imei: Option<String>,
    pub status: String,
    #[serde(default)]
    pub rate_plan_code: Option<String>,
    #[serde(default)]
    pub ban: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscriberList {
    #[serde(default)]
    subscribers: Vec<TelegenceSubscriber>,
    #[serde(default)]
    next_page_token: Option<String>,
}

/// One page of the account's subscribers (inferred format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberPage {
    /// Each with its number (the MSISDN a later change needs no lookup for), SIM and status.
    pub subscribers: Vec<TelegenceSubscriber>,
    /// What to ask for the next page with; `None` after the last.
    pub next_page_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchAccepted {
    batch_id: Option<String>,
}

/// One subscriber's line in an activation batch.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivationStatus {
    pub status: String,
    #[serde(default)]
    pub error_code: Option<String>,
    #[serde(default)]
    pub error_message: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody {
    #[serde(alias = "errorCode")]
    code: Option<String>,
    #[serde(alias = "errorMessage", alias = "description")]
    message: Option<String>,
    current_status: Option<String>,
    requested: Option<String>,
}

/// The subscriber number (CTN) of an MSISDN: digits only, and without the `1` country code for
/// North American numbers, as AT&T's systems key US lines by their 10-digit number.
/// Calls a change to `device` makes: one, plus a lookup by ICCID when it has no MSISDN.
fn calls_by_number(device: &DeviceRef) -> u32 {
    if device.msisdn.is_some() {
        1
    } else {
        2
    }
}

pub fn subscriber_number_of(msisdn: &Msisdn) -> String {
    let digits = msisdn.as_str().trim_start_matches('+');
    match digits.strip_prefix('1') {
        Some(national) if digits.len() == 11 => national.to_owned(),
        _ => digits.to_owned(),
    }
}

pub fn telegence_status_action(action: StatusAction) -> &'static str {
    match action {
        StatusAction::Suspend => "Suspend",
        StatusAction::Activate | StatusAction::Restore => "Restore",
        StatusAction::Deactivate => "Cancel",
    }
}

fn unsupported(change: &ChangeSpec, why: &str) -> CarrierError {
    CarrierError::Permanent {
        code: "unsupported".into(),
        message: format!("{} {why}", change.type_name()),
    }
}

/// The `PATCH` body for a change to one subscriber (`device` carries its per-device values), or
/// why Telegence cannot make it that way.
pub fn update_for(change: &ChangeSpec, device: &DeviceEdit) -> Result<Value, CarrierError> {
    let pair = |name: &str, value: &str| json!({"name": name, "value": value});
    let missing = |what: &str| CarrierError::Permanent {
        code: "request".into(),
        message: format!("{} needs the device's {what}", change.type_name()),
    };
    let characteristics = match change {
        ChangeSpec::StatusUpdate { action } => {
            vec![pair(
                STATUS_CHARACTERISTIC,
                telegence_status_action(*action),
            )]
        }
        ChangeSpec::CarrierRatePlanChange {
            rate_plan,
            comm_plan: None,
        } => vec![pair(RATE_PLAN_CHARACTERISTIC, rate_plan)],
        ChangeSpec::IccidImeiChange => {
            let DeviceEdit::IdentifierSwap {
                new_iccid,
                new_imei,
            } = device
            else {
                return Err(missing("new ICCID, new IMEI or both"));
            };
            let mut swap = Vec::new();
            if let Some(iccid) = new_iccid {
                swap.push(pair(ICCID_CHARACTERISTIC, iccid.as_str()));
            }
            if let Some(imei) = new_imei {
                swap.push(pair(IMEI_CHARACTERISTIC, imei.as_str()));
            }
            swap
        }
        ChangeSpec::UsernameCostCenterEdit => {
            let labels = device.labels();
            if labels.is_empty() {
                return Err(missing("username, cost center or both"));
            }
            labels
                .into_iter()
                .map(|(label, value)| match label {
                    Label::Username => pair(USER_NAME_CHARACTERISTIC, value),
                    Label::CostCenter => pair(COST_CENTER_CHARACTERISTIC, value),
                })
                .collect()
        }
        ChangeSpec::CarrierRatePlanChange {
            comm_plan: Some(_), ..
        } => {
            return Err(unsupported(
                change,
                "with a communication plan is not supported by Telegence (it has none)",
            ))
        }
        ChangeSpec::ActivateNewService { .. } => {
            return Err(unsupported(
                change,
                "is a batch activation, not a subscriber update",
            ))
        }
        ChangeSpec::CustomerRatePlanChange { .. } | ChangeSpec::CustomerAssignment { .. } => {
            return Err(unsupported(change, "is not supported by Telegence"))
        }
    };
    if characteristics.is_empty() {
        return Err(missing("values"));
    }
    // An empty effective date means "now" to Telegence.
    Ok(json!({"serviceCharacteristic": characteristics, "effectiveDate": ""}))
}

/// One service of an activation request.
pub fn activation_service(rate_plan: &str, zip_code: Option<&str>, device: &DeviceRef) -> Value {
    let mut service = Map::new();
    service.insert("iccid".into(), json!(device.iccid.as_str()));
    if let Some(imei) = &device.imei {
        service.insert("imei".into(), json!(imei.as_str()));
    }
    if let Some(msisdn) = &device.msisdn {
        service.insert(
            "subscriberNumber".into(),
            json!(subscriber_number_of(msisdn)),
        );
    }
    service.insert("ratePlanCode".into(), json!(rate_plan));
    if let Some(zip) = zip_code {
        service.insert("zipCode".into(), json!(zip));
    }
    Value::Object(service)
}

/// Where one subscriber's activation stands. Status words are inferred; an unknown one is treated
/// as a transient answer, so it is asked again rather than taken for success or failure.
pub fn progress_of(status: &ActivationStatus) -> Result<RequestProgress, CarrierError> {
    match status.status.to_ascii_uppercase().as_str() {
        "PENDING" | "IN_PROGRESS" | "SUBMITTED" | "QUEUED" => Ok(RequestProgress::Pending),
        "ACTIVE" | "COMPLETED" | "SUCCESS" => Ok(RequestProgress::Succeeded),
        "FAILED" | "ERROR" | "REJECTED" => Ok(RequestProgress::Failed(CarrierError::Permanent {
            code: status
                .error_code
                .clone()
                .unwrap_or_else(|| "activation_failed".into()),
            message: status.error_message.clone().unwrap_or_default(),
        })),
        other => Err(CarrierError::Transient(format!(
            "unrecognised activation status {other}"
        ))),
    }
}

/// A carrier refusal as a [`CarrierError`].
fn error(response: &CarrierResponse) -> CarrierError {
    let status = response.status;
    let body: ErrorBody = response.json().unwrap_or_default();
    match status {
        StatusCode::TOO_MANY_REQUESTS => CarrierError::RateLimited {
            retry_after: retry_after(&response.headers),
        },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => CarrierError::AuthFailed,
        StatusCode::NOT_FOUND => CarrierError::NotFound,
        s if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT => {
            CarrierError::Transient(format!("HTTP {}", s.as_u16()))
        }
        _ if body.code.as_deref() == Some(INVALID_TRANSITION_CODE) => {
            CarrierError::InvalidTransition {
                from: body.current_status.unwrap_or_else(|| "unknown".into()),
                to: body
                    .requested
                    .or(body.message)
                    .unwrap_or_else(|| "unknown".into()),
            }
        }
        s => CarrierError::Permanent {
            code: body.code.unwrap_or_else(|| s.as_u16().to_string()),
            message: body.message.unwrap_or_default(),
        },
    }
}

fn unreadable(what: &str, e: serde_json::Error) -> CarrierError {
    // A 2xx we cannot read is most likely a proxy or gateway page: worth asking again.
    CarrierError::Transient(format!("unreadable {what}: {e}"))
}

impl TelegenceClient {
    pub fn new(
        http: reqwest::Client,
        base_url: impl Into<String>,
        credentials: TelegenceCredentials,
    ) -> Self {
        Self {
            http,
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            credentials,
            paths: TelegencePaths::default(),
        }
    }

    /// Uses the deployment's paths instead of the defaults.
    pub fn with_paths(mut self, paths: TelegencePaths) -> Self {
        self.paths = paths;
        self
    }

    /// `{base}{path}`, then `segment` percent-encoded as one more path segment.
    fn url(&self, path: &str, segment: Option<&str>) -> Result<Url, CarrierError> {
        let bad = |why: String| CarrierError::Permanent {
            code: "invalid_url".into(),
            message: why,
        };
        let mut url = Url::parse(&format!("{}{path}", self.base_url))
            .map_err(|e| bad(format!("Telegence base URL or path: {e}")))?;
        if let Some(segment) = segment {
            url.path_segments_mut()
                .map_err(|()| bad("Telegence base URL cannot take a path".into()))?
                .pop_if_empty()
                .push(segment);
        }
        Ok(url)
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        journal: &CallJournal,
    ) -> Result<CarrierResponse, CarrierError> {
        let request = request
            .header("app-id", &self.credentials.app_id)
            .header("app-secret", self.credentials.app_secret.expose_secret())
            .header(reqwest::header::ACCEPT, "application/json")
            .build()
            .map_err(crate::http::transport)?;
        let response = send_recorded(
            &self.http,
            request,
            &[self.credentials.app_secret.expose_secret()],
            journal,
        )
        .await?;
        if response.status.is_success() {
            return Ok(response);
        }
        Err(error(&response))
    }

    pub async fn get_subscriber(
        &self,
        subscriber_number: &str,
        journal: &CallJournal,
    ) -> Result<TelegenceSubscriber, CarrierError> {
        let url = self.url(&self.paths.subscribers, Some(subscriber_number))?;
        let response = self.send(self.http.get(url), journal).await?;
        response.json().map_err(|e| unreadable("subscriber", e))
    }

    /// The subscriber's cycle-to-date usage. The shape is inferred (no public reference):
    /// `billCycleStartDate` and `ratedThrough` as `YYYY-MM-DD`, `dataUsageBytes`, `smsCount`.
    pub async fn subscriber_usage(
        &self,
        subscriber_number: &str,
        journal: &CallJournal,
    ) -> Result<CycleReading, CarrierError> {
        let mut url = self.url(&self.paths.subscribers, Some(subscriber_number))?;
        let path = format!("{}{}", url.path().trim_end_matches('/'), self.paths.usage);
        url.set_path(&path);
        let response = self.send(self.http.get(url), journal).await?;
        let usage: SubscriberUsage = response
            .json()
            .map_err(|e| unreadable("subscriber usage", e))?;
        Ok(CycleReading {
            cycle_start: usage
                .bill_cycle_start_date
                .as_deref()
                .and_then(cellbridge_core::clock::parse_day),
            data_bytes: usage.data_usage_bytes,
            sms: usage.sms_count,
        })
    }

    /// The subscriber of a SIM; [`CarrierError::NotFound`] when the SIM has none.
    pub async fn find_by_iccid(
        &self,
        iccid: &str,
        journal: &CallJournal,
    ) -> Result<TelegenceSubscriber, CarrierError> {
        let url = self.url(&self.paths.subscribers, None)?;
        let response = self
            .send(self.http.get(url).query(&[("iccid", iccid)]), journal)
            .await?;
        let list: SubscriberList = response
            .json()
            .map_err(|e| unreadable("subscriber list", e))?;
        list.subscribers
            .into_iter()
            .find(|s| s.iccid == iccid)
            .ok_or(CarrierError::NotFound)
    }

    /// One page of every subscriber of the account, by number: a carrier sync lists them all and
    /// compares, as Telegence has no change date to search by.
    pub async fn list_subscribers(
        &self,
        page_token: Option<&str>,
        journal: &CallJournal,
    ) -> Result<SubscriberPage, CarrierError> {
        let url = self.url(&self.paths.subscribers, None)?;
        let mut query = vec![("pageSize", LIST_PAGE_SIZE)];
        if let Some(token) = page_token {
            query.push(("pageToken", token));
        }
        let response = self.send(self.http.get(url).query(&query), journal).await?;
        let list: SubscriberList = response
            .json()
            .map_err(|e| unreadable("subscriber list", e))?;
        Ok(SubscriberPage {
            subscribers: list.subscribers,
            next_page_token: list.next_page_token.filter(|t| !t.is_empty()),
        })
    }

    /// The device's subscriber number: from its MSISDN, or looked up by ICCID when it has none.
    pub async fn subscriber_number(
        &self,
        device: &DeviceRef,
        journal: &CallJournal,
    ) -> Result<String, CarrierError> {
        match &device.msisdn {
            Some(msisdn) => Ok(subscriber_number_of(msisdn)),
            None => Ok(self
                .find_by_iccid(device.iccid.as_str(), journal)
                .await?
                .subscriber_number),
        }
    }

    /// Sends a `PATCH`; 202 means accepted for a future effective date.
    pub async fn update_subscriber(
        &self,
        subscriber_number: &str,
        update: &Value,
        journal: &CallJournal,
    ) -> Result<CarrierOutcome, CarrierError> {
        let url = self.url(&self.paths.subscribers, Some(subscriber_number))?;
        let response = self
            .send(self.http.patch(url).json(update), journal)
            .await?;
        Ok(if response.status == StatusCode::ACCEPTED {
            CarrierOutcome::Accepted { request_id: None }
        } else {
            CarrierOutcome::Completed
        })
    }

    /// Submits one activation batch and returns its batch id.
    pub async fn activate(
        &self,
        services: &[Value],
        journal: &CallJournal,
    ) -> Result<String, CarrierError> {
        if services.is_empty() || services.len() > MAX_SERVICES_PER_REQUEST {
            return Err(CarrierError::Permanent {
                code: "batch".into(),
                message: format!(
                    "Telegence activates 1 to {MAX_SERVICES_PER_REQUEST} services a request, not {}",
                    services.len()
                ),
            });
        }
        let url = self.url(&self.paths.activations, None)?;
        let response = self
            .send(
                self.http.post(url).json(&json!({ "services": services })),
                journal,
            )
            .await?;
        let accepted: BatchAccepted = response
            .json()
            .map_err(|e| unreadable("activation answer", e))?;
        accepted
            .batch_id
            .filter(|id| !id.is_empty())
            .ok_or_else(|| CarrierError::Transient("activation answered without a batch id".into()))
    }

    pub async fn activation_status(
        &self,
        batch_id: &str,
        subscriber_number: &str,
        journal: &CallJournal,
    ) -> Result<ActivationStatus, CarrierError> {
        let url = self.url(&self.paths.activation_status, None)?;
        let request = self
            .http
            .get(url)
            .header("batch-id", batch_id)
            .header("subscriber-number", subscriber_number);
        let response = self.send(request, journal).await?;
        response
            .json()
            .map_err(|e| unreadable("activation status", e))
    }
}

#[async_trait]
impl CarrierPort for TelegenceClient {
    fn carrier(&self) -> Carrier {
        Carrier::Telegence
    }

    /// Every subscriber by number, with its MSISDN (the subscriber number) and IMEI.
    async fn list_sims(
        &self,
        position: Option<&str>,
        _since: Option<time::OffsetDateTime>,
        journal: &CallJournal,
    ) -> Result<ListedSims, CarrierError> {
        let page = self.list_subscribers(position, journal).await?;
        Ok(ListedSims {
            sims: page
                .subscribers
                .into_iter()
                .map(|subscriber| CarrierSim {
                    iccid: subscriber.iccid,
                    status: subscriber.status,
                    rate_plan: subscriber.rate_plan_code,
                    msisdn: crate::port::listed_msisdn(&subscriber.subscriber_number),
                    imei: subscriber.imei,
                    ..CarrierSim::default()
                })
                .collect(),
            next: page.next_page_token,
        })
    }

    fn batch_limit(&self, change: &ChangeSpec) -> usize {
        match change {
            ChangeSpec::ActivateNewService { .. } => MAX_SERVICES_PER_REQUEST,
            _ => 1,
        }
    }

    fn calls_to_apply(&self, change: &ChangeSpec, requests: &[DeviceRequest]) -> u32 {
        match (change, requests) {
            (ChangeSpec::ActivateNewService { .. }, _) => 1,
            (_, [request]) => calls_by_number(&request.device),
            _ => 1,
        }
    }

    fn calls_to_check(&self, _change: &ChangeSpec, request: &DeviceRequest) -> u32 {
        calls_by_number(&request.device)
    }

    fn reads_cycle_usage(&self) -> bool {
        true
    }

    fn calls_to_read_usage(&self, device: &DeviceRef) -> u32 {
        calls_by_number(device)
    }

    async fn cycle_usage(
        &self,
        device: &DeviceRef,
        journal: &CallJournal,
    ) -> Result<CycleReading, CarrierError> {
        let number = self.subscriber_number(device, journal).await?;
        self.subscriber_usage(&number, journal).await
    }

    async fn read_device(
        &self,
        device: &DeviceRef,
        journal: &CallJournal,
    ) -> Result<CarrierDevice, CarrierError> {
        let subscriber = match &device.msisdn {
            Some(msisdn) => {
                self.get_subscriber(&subscriber_number_of(msisdn), journal)
                    .await?
            }
            None => self.find_by_iccid(device.iccid.as_str(), journal).await?,
        };
        Ok(CarrierDevice {
            iccid: subscriber.iccid,
            status: subscriber.status,
            rate_plan: subscriber.rate_plan_code,
        })
    }

    fn already_applied(&self, change: &ChangeSpec, device: &CarrierDevice) -> bool {
        match change {
            ChangeSpec::StatusUpdate { action } => {
                let target =
                    cellbridge_bulk_changes::capabilities::capabilities(Carrier::Telegence)
                        .status_after(*action);
                device.status.eq_ignore_ascii_case(target)
            }
            ChangeSpec::CarrierRatePlanChange { rate_plan, .. } => {
                device.rate_plan.as_deref() == Some(rate_plan.as_str())
            }
            _ => false,
        }
    }

    async fn apply(
        &self,
        change: &ChangeSpec,
        requests: &[DeviceRequest],
        journal: &CallJournal,
    ) -> Result<CarrierOutcome, CarrierError> {
        if let ChangeSpec::ActivateNewService {
            rate_plan,
            zip_code,
        } = change
        {
            let services: Vec<Value> = requests
                .iter()
                .map(|r| activation_service(rate_plan, zip_code.as_deref(), &r.device))
                .collect();
            let batch_id = self.activate(&services, journal).await?;
            return Ok(CarrierOutcome::Accepted {
                request_id: Some(batch_id),
            });
        }
        let [request] = requests else {
            return Err(CarrierError::Permanent {
                code: "batch".into(),
                message: format!(
                    "Telegence updates one subscriber a call, not {}",
                    requests.len()
                ),
            });
        };
        // Refuse what Telegence cannot do before any call is made.
        let update = update_for(change, &request.edit)?;
        let number = self.subscriber_number(&request.device, journal).await?;
        self.update_subscriber(&number, &update, journal).await
    }

    async fn check(
        &self,
        change: &ChangeSpec,
        request_id: &str,
        request: &DeviceRequest,
        journal: &CallJournal,
    ) -> Result<RequestProgress, CarrierError> {
        if !matches!(change, ChangeSpec::ActivateNewService { .. }) {
            return Err(unsupported(
                change,
                "completes when applied on Telegence; there is nothing to poll",
            ));
        }
        let number = self.subscriber_number(&request.device, journal).await?;
        let status = self.activation_status(request_id, &number, journal).await?;
        progress_of(&status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellbridge_core::ids::Iccid;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
    use std::time::Duration;

    fn response(status: u16, headers: HeaderMap, body: Value) -> CarrierResponse {
        CarrierResponse {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT),
            headers,
            body: body.to_string().into(),
        }
    }

    fn plain(status: u16, body: Value) -> CarrierError {
        error(&response(status, HeaderMap::new(), body))
    }

    #[test]
    fn a_subscriber_already_in_the_target_state_needs_no_call() {
        let client = TelegenceClient::new(
            reqwest::Client::new(),
            "http://127.0.0.1:1/api/v1",
            TelegenceCredentials {
                app_id: "a".into(),
                app_secret: "s".into(),
            },
        );
        let device = |status: &str| CarrierDevice {
            iccid: "8901260000000000006".into(),
            status: status.into(),
            rate_plan: Some("SOC-1GB".into()),
        };
        let suspend = ChangeSpec::StatusUpdate {
            action: StatusAction::Suspend,
        };
        assert!(client.already_applied(&suspend, &device("Suspended")));
        assert!(!client.already_applied(&suspend, &device("Active")));
        let plan = ChangeSpec::CarrierRatePlanChange {
            rate_plan: "SOC-1GB".into(),
            comm_plan: None,
        };
        assert!(client.already_applied(&plan, &device("Active")));
    }

    #[test]
    fn credentials_never_print_the_secret() {
        let credentials = TelegenceCredentials {
            app_id: "fleet-app".into(),
            app_secret: "s3cr3t-app-secret".into(),
        };
        let client = TelegenceClient::new(
            reqwest::Client::new(),
            "http://127.0.0.1:1/telegence/api/v1/",
            credentials.clone(),
        );
        for printed in [format!("{client:?}"), format!("{credentials:?}")] {
            assert!(!printed.contains("s3cr3t-app-secret"), "{printed}");
            assert!(printed.contains("REDACTED") && printed.contains("fleet-app"));
        }
    }

    #[test]
    fn answers_map_to_carrier_errors() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(
            error(&response(
                429,
                headers,
                json!({"code": "RATE_LIMIT_EXCEEDED"})
            )),
            CarrierError::RateLimited {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert_eq!(
            plain(429, Value::Null),
            CarrierError::RateLimited { retry_after: None }
        );
        assert_eq!(plain(401, json!({})), CarrierError::AuthFailed);
        assert_eq!(plain(403, json!({})), CarrierError::AuthFailed);
        assert_eq!(plain(404, json!({})), CarrierError::NotFound);
        for status in [500, 502, 503, 504, 408] {
            assert!(
                matches!(plain(status, Value::Null), CarrierError::Transient(_)),
                "{status}"
            );
        }
        let refused = json!({
            "code": INVALID_TRANSITION_CODE,
            "message": "Subscriber 2145550001 is Cancelled and cannot change to Active",
            "currentStatus": "Cancelled",
            "requested": "Active",
        });
        for status in [400, 409, 422] {
            assert_eq!(
                plain(status, refused.clone()),
                CarrierError::InvalidTransition {
                    from: "Cancelled".into(),
                    to: "Active".into()
                }
            );
        }
        assert_eq!(
            plain(
                400,
                json!({"errorCode": "INVALID_CHARACTERISTIC", "errorMessage": "no"})
            ),
            CarrierError::Permanent {
                code: "INVALID_CHARACTERISTIC".into(),
                message: "no".into()
            }
        );
        assert_eq!(
            error(&CarrierResponse {
                status: StatusCode::BAD_REQUEST,
                headers: HeaderMap::new(),
                body: "<html>gateway</html>".into(),
            }),
            CarrierError::Permanent {
                code: "400".into(),
                message: String::new()
            }
        );
    }

    #[test]
    fn changes_map_to_subscriber_updates() {
        let bodies: Vec<Value> = StatusAction::ALL
            .into_iter()
            .map(|action| {
                update_for(&ChangeSpec::StatusUpdate { action }, &DeviceEdit::None)
                    .unwrap_or_default()
            })
            .collect();
        let values: Vec<&Value> = bodies
            .iter()
            .map(|b| &b["serviceCharacteristic"][0]["value"])
            .collect();
        assert_eq!(
            values,
            [
                &json!("Restore"),
                &json!("Suspend"),
                &json!("Restore"),
                &json!("Cancel")
            ]
        );
        assert_eq!(bodies[1]["effectiveDate"], json!(""));
        assert_eq!(
            update_for(
                &ChangeSpec::CarrierRatePlanChange {
                    rate_plan: "IOT5GB".into(),
                    comm_plan: None
                },
                &DeviceEdit::None
            )
            .ok(),
            Some(json!({
                "serviceCharacteristic": [{"name": "ratePlanCode", "value": "IOT5GB"}],
                "effectiveDate": ""
            }))
        );
    }

    #[test]
    fn swaps_and_labels_carry_only_the_values_given() {
        let swap = DeviceEdit::IdentifierSwap {
            new_iccid: Iccid::parse(&cellbridge_core::testing::iccid(9)).ok(),
            new_imei: None,
        };
        assert_eq!(
            update_for(&ChangeSpec::IccidImeiChange, &swap).ok(),
            Some(json!({
                "serviceCharacteristic": [{"name": "iccid", "value": cellbridge_core::testing::iccid(9)}],
                "effectiveDate": ""
            }))
        );
        let labels = DeviceEdit::Labels {
            username: Some("pump-7".into()),
            cost_center: Some("CC-12".into()),
        };
        assert_eq!(
            update_for(&ChangeSpec::UsernameCostCenterEdit, &labels).ok(),
            Some(json!({
                "serviceCharacteristic": [
                    {"name": "userName", "value": "pump-7"},
                    {"name": "costCenter", "value": "CC-12"}
                ],
                "effectiveDate": ""
            }))
        );
        assert!(matches!(
            update_for(&ChangeSpec::UsernameCostCenterEdit, &DeviceEdit::None),
            Err(CarrierError::Permanent { code, .. }) if code == "request"
        ));
    }

    #[test]
    fn unsupported_changes_are_refused_by_name() {
        for change in [
            ChangeSpec::CustomerAssignment {
                customer_id: "c-1".into(),
            },
            ChangeSpec::CarrierRatePlanChange {
                rate_plan: "IOT5GB".into(),
                comm_plan: Some("CP".into()),
            },
        ] {
            match update_for(&change, &DeviceEdit::None) {
                Err(CarrierError::Permanent { code, message }) => {
                    assert_eq!(code, "unsupported");
                    assert!(message.contains(change.type_name()), "{message}");
                }
                other => panic!("{change:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn subscriber_numbers_drop_the_plus_and_the_nanp_country_code() {
        let number = |m: &str| Msisdn::parse(m).map(|m| subscriber_number_of(&m)).ok();
        assert_eq!(number("+12145550100"), Some("2145550100".into()));
        assert_eq!(number("+447700900123"), Some("447700900123".into()));
        assert_eq!(number("+1234"), Some("1234".into()));
    }

    #[test]
    fn activation_services_carry_what_the_device_has() -> Result<(), Box<dyn std::error::Error>> {
        let device = DeviceRef {
            iccid: Iccid::parse(&cellbridge_core::testing::iccid(1))?,
            msisdn: Some(Msisdn::parse("+12145550100")?),
            imei: None,
        };
        let service = activation_service("IOT1GB", Some("75001"), &device);
        assert_eq!(service["subscriberNumber"], json!("2145550100"));
        assert_eq!(service["zipCode"], json!("75001"));
        assert_eq!(service["ratePlanCode"], json!("IOT1GB"));
        assert!(service.get("imei").is_none());
        Ok(())
    }

    #[test]
    fn activation_statuses_map_to_progress() {
        let status = |s: &str, code: Option<&str>| ActivationStatus {
            status: s.into(),
            error_code: code.map(Into::into),
            error_message: code.map(|_| "Device requires eSIM".into()),
        };
        assert_eq!(
            progress_of(&status("PENDING", None)),
            Ok(RequestProgress::Pending)
        );
        assert_eq!(
            progress_of(&status("active", None)),
            Ok(RequestProgress::Succeeded)
        );
        assert_eq!(
            progress_of(&status("FAILED", Some("ESIM_REQUIRED"))),
            Ok(RequestProgress::Failed(CarrierError::Permanent {
                code: "ESIM_REQUIRED".into(),
                message: "Device requires eSIM".into()
            }))
        );
        assert!(matches!(
            progress_of(&status("WHATEVER", None)),
            Err(CarrierError::Transient(_))
        ));
    }
}
