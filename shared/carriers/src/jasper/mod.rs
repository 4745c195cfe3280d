//! Cisco Control Center (Jasper) REST: `GET`/`PUT {base}/devices/{iccid}` with Basic auth.
//!
//! Mapping of bulk-change actions to Jasper statuses: activate and restore → `ACTIVATED`;
//! suspend and deactivate → `DEACTIVATED` (Jasper has no separate suspended state at account
//! level; retiring and purging a SIM are lifecycle steps outside bulk status changes).

use crate::error::CarrierError;
use crate::http::{retry_after, send_recorded, CarrierResponse};
use crate::port::{
    listed_msisdn, CallJournal, CarrierDevice, CarrierOutcome, CarrierPort, CarrierSim,
    InventoryPage, ListedSims,
};
use async_trait::async_trait;
use cellbridge_bulk_changes::change::{
    Carrier, ChangeSpec, DeviceEdit, DeviceRef, DeviceRequest, Label, StatusAction,
};
use cellbridge_sims::usage::CycleReading;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

/// Jasper's rate-limit error code, sent with HTTP 400 by some pods and 429 by others.
const RATE_LIMIT_CODE: &str = "40000029";

#[derive(Debug, Clone)]
pub struct JasperCredentials {
    pub username: String,
    pub api_key: SecretString,
}

#[derive(Debug, Clone)]
pub struct JasperClient {
    http: reqwest::Client,
    /// e.g. `https://restapi1.jasper.com/rws/api/v1`
    base_url: String,
    credentials: JasperCredentials,
}

/// Get Device Usage's answer, as far as the inventory uses it.
#[derive(Debug, Deserialize)]
struct CtdUsage {
    #[serde(rename = "ctdDataUsage", default)]
    ctd_data_usage: u64,
    #[serde(rename = "ctdSMSUsage", default)]
    ctd_sms_usage: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeviceDetails {
    iccid: String,
    status: String,
    rate_plan: Option<String>,
    communication_plan: Option<String>,
    msisdn: Option<String>,
    imsi: Option<String>,
    imei: Option<String>,
    customer: Option<String>,
    #[serde(rename = "accountCustom1")]
    username: Option<String>,
    #[serde(rename = "accountCustom2")]
    cost_center: Option<String>,
    date_updated: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody {
    error_code: Option<String>,
    error_message: Option<String>,
}

/// The status Control Center shows after `action`, from the capability table.
pub fn jasper_status(action: StatusAction) -> &'static str {
    cellbridge_bulk_changes::capabilities::capabilities(Carrier::Jasper).status_after(action)
}

impl JasperClient {
    pub fn new(
        http: reqwest::Client,
        base_url: impl Into<String>,
        credentials: JasperCredentials,
    ) -> Self {
        Self {
            http,
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            credentials,
        }
    }

    fn url(&self, iccid: &str) -> String {
        format!("{}/devices/{iccid}", self.base_url)
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        journal: &CallJournal,
    ) -> Result<CarrierResponse, CarrierError> {
        let request = request
            .basic_auth(
                &self.credentials.username,
                Some(self.credentials.api_key.expose_secret()),
            )
            .build()
            .map_err(crate::http::transport)?;
        let response = send_recorded(
            &self.http,
            request,
            &[self.credentials.api_key.expose_secret()],
            journal,
        )
        .await?;
        if response.status.is_success() {
            return Ok(response);
        }
        Err(error(&response))
    }

    pub async fn get_device(
        &self,
        iccid: &str,
        journal: &CallJournal,
    ) -> Result<CarrierDevice, CarrierError> {
        let details = self.device_details(iccid, journal).await?;
        Ok(CarrierDevice {
            iccid: details.iccid,
            status: details.status,
            rate_plan: details.rate_plan,
        })
    }

    /// Get Device Details: everything Control Center keeps of the device, as the inventory
    /// holds it (an empty field is no value; the MSISDN in E.164).
    pub async fn describe_device(
        &self,
        iccid: &str,
        journal: &CallJournal,
    ) -> Result<CarrierSim, CarrierError> {
        let details = self.device_details(iccid, journal).await?;
        let given = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
        Ok(CarrierSim {
            updated_at: details.date_updated.as_deref().and_then(parse_jasper_date),
            msisdn: details.msisdn.as_deref().and_then(listed_msisdn),
            iccid: details.iccid,
            status: details.status,
            rate_plan: given(details.rate_plan),
            communication_plan: given(details.communication_plan),
            imsi: given(details.imsi),
            imei: given(details.imei),
            customer: given(details.customer),
            cost_center: given(details.cost_center),
            username: given(details.username),
        })
    }

    async fn device_details(
        &self,
        iccid: &str,
        journal: &CallJournal,
    ) -> Result<DeviceDetails, CarrierError> {
        let response = self.send(self.http.get(self.url(iccid)), journal).await?;
        response
            .json()
            .map_err(|e| CarrierError::Transient(format!("unreadable device details: {e}")))
    }

    /// Get Device Usage: the device's cycle-to-date data and SMS (Control Center gives no cycle
    /// dates).
    pub async fn ctd_usage(
        &self,
        iccid: &str,
        journal: &CallJournal,
    ) -> Result<CycleReading, CarrierError> {
        let url = format!("{}/ctdUsages", self.url(iccid));
        let response = self.send(self.http.get(url), journal).await?;
        let usage: CtdUsage = response
            .json()
            .map_err(|e| CarrierError::Transient(format!("unreadable device usage: {e}")))?;
        Ok(CycleReading {
            cycle_start: None,
            data_bytes: usage.ctd_data_usage,
            sms: usage.ctd_sms_usage,
        })
    }

    /// One page (`page_number` from 1, 50 devices) of Search Devices: the devices changed at
    /// or after `since`, oldest change first, the listing a carrier sync pages through.
    pub async fn search_devices(
        &self,
        since: OffsetDateTime,
        page_number: u32,
        journal: &CallJournal,
    ) -> Result<InventoryPage, CarrierError> {
        let since = since
            .to_offset(time::UtcOffset::UTC)
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| CarrierError::Permanent {
                code: "request".into(),
                message: format!("modifiedSince cannot be written: {e}"),
            })?
            .replace('Z', "+00:00");
        let request = self.http.get(format!("{}/devices", self.base_url)).query(&[
            ("modifiedSince", since.as_str()),
            ("pageSize", SEARCH_PAGE_SIZE),
            ("pageNumber", &page_number.to_string()),
        ]);
        let response = self.send(request, journal).await?;
        let page: SearchPage = response
            .json()
            .map_err(|e| CarrierError::Transient(format!("unreadable device search: {e}")))?;
        Ok(InventoryPage {
            sims: page
                .devices
                .into_iter()
                .map(|d| CarrierSim {
                    updated_at: d.date_updated.as_deref().and_then(parse_jasper_date),
                    iccid: d.iccid,
                    status: d.status,
                    rate_plan: d.rate_plan,
                    communication_plan: d.communication_plan,
                    ..CarrierSim::default()
                })
                .collect(),
            more: !page.last_page,
        })
    }

    /// Edits the device; 202 means accepted for a future effective date.
    pub async fn edit_device(
        &self,
        iccid: &str,
        edit: &Value,
        journal: &CallJournal,
    ) -> Result<CarrierOutcome, CarrierError> {
        let response = self
            .send(self.http.put(self.url(iccid)).json(edit), journal)
            .await?;
        let accepted = response.status == StatusCode::ACCEPTED;
        let body: Value = response.json().unwrap_or(Value::Null);
        // Real clients treat a 2xx without the ICCID echoed back as a failure.
        if body.get("iccid").and_then(Value::as_str) != Some(iccid) {
            return Err(CarrierError::Transient(
                "edit answered without the device's ICCID".into(),
            ));
        }
        Ok(if accepted {
            CarrierOutcome::Accepted { request_id: None }
        } else {
            CarrierOutcome::Completed
        })
    }
}

fn error(response: &CarrierResponse) -> CarrierError {
    let status = response.status;
    let wait = retry_after(&response.headers);
    let body: ErrorBody = response.json().unwrap_or_default();
    let code = body.error_code.unwrap_or_default();
    let message = body.error_message.unwrap_or_default();
    match status {
        _ if code == RATE_LIMIT_CODE || status == StatusCode::TOO_MANY_REQUESTS => {
            CarrierError::RateLimited { retry_after: wait }
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => CarrierError::AuthFailed,
        StatusCode::NOT_FOUND => CarrierError::NotFound,
        s if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT => {
            CarrierError::Transient(format!("HTTP {}", s.as_u16()))
        }
        s => CarrierError::Permanent {
            code: if code.is_empty() {
                s.as_u16().to_string()
            } else {
                code
            },
            message,
        },
    }
}

/// Devices a Search Devices page asks for: Jasper's maximum.
const SEARCH_PAGE_SIZE: &str = "50";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SearchPage {
    #[serde(default)]
    devices: Vec<SearchedDevice>,
    #[serde(default = "last_page_when_unsaid")]
    last_page: bool,
}

/// A page that does not say whether more follow is taken as the last, so a sync cannot loop.
fn last_page_when_unsaid() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SearchedDevice {
    iccid: String,
    status: String,
    rate_plan: Option<String>,
    communication_plan: Option<String>,
    date_updated: Option<String>,
}

/// Jasper's `2016-07-06 22:04:04.380+0000`.
pub fn parse_jasper_date(text: &str) -> Option<OffsetDateTime> {
    let format = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3][offset_hour sign:mandatory][offset_minute]"
    );
    OffsetDateTime::parse(text, &format).ok()
}

/// Where a Jasper account keeps what cellbridge calls a device's username and cost center: two of
/// the account's custom fields, as Control Center has no field of either name.
pub const USERNAME_FIELD: &str = "accountCustom1";
pub const COST_CENTER_FIELD: &str = "accountCustom2";

/// The Jasper edit for a change to one device (`device` carries its per-device values), or why
/// Jasper cannot make it.
pub fn edit_for(change: &ChangeSpec, device: &DeviceEdit) -> Result<Value, CarrierError> {
    let unsupported = |what: &str| CarrierError::Permanent {
        code: "unsupported".into(),
        message: format!("{what} is not a Jasper device edit"),
    };
    Ok(match change {
        ChangeSpec::StatusUpdate { action } => json!({"status": jasper_status(*action)}),
        ChangeSpec::CarrierRatePlanChange {
            rate_plan,
            comm_plan,
        } => match comm_plan {
            Some(comm) => json!({"ratePlan": rate_plan, "communicationPlan": comm}),
            None => json!({"ratePlan": rate_plan}),
        },
        ChangeSpec::CustomerAssignment { customer_id } => json!({"customer": customer_id}),
        ChangeSpec::ActivateNewService { .. } => return Err(unsupported("activating new service")),
        ChangeSpec::CustomerRatePlanChange { .. } => {
            return Err(unsupported("a customer rate plan change"))
        }
        ChangeSpec::IccidImeiChange => return Err(unsupported("an ICCID/IMEI change")),
        ChangeSpec::UsernameCostCenterEdit => {
            let labels = device.labels();
            if labels.is_empty() {
                return Err(CarrierError::Permanent {
                    code: "request".into(),
                    message: "a username/cost center edit needs the device's username, cost center or both".into(),
                });
            }
            let field = |label| match label {
                Label::Username => USERNAME_FIELD,
                Label::CostCenter => COST_CENTER_FIELD,
            };
            Value::Object(
                labels
                    .into_iter()
                    .map(|(label, value)| (field(label).to_owned(), json!(value)))
                    .collect(),
            )
        }
    })
}

#[async_trait]
impl CarrierPort for JasperClient {
    fn carrier(&self) -> Carrier {
        Carrier::Jasper
    }

    fn lists_changes_since(&self) -> bool {
        true
    }

    fn reads_cycle_usage(&self) -> bool {
        true
    }

    async fn cycle_usage(
        &self,
        device: &DeviceRef,
        journal: &CallJournal,
    ) -> Result<CycleReading, CarrierError> {
        self.ctd_usage(device.iccid.as_str(), journal).await
    }

    /// Search Devices, oldest change first. The position is `<since ms>:<page>`: each page
    /// starts again from the newest change it has seen rather than counting pages, so a SIM
    /// changed mid-listing (which moves to the end) never shifts an unread one out of reach.
    async fn list_sims(
        &self,
        position: Option<&str>,
        since: Option<OffsetDateTime>,
        journal: &CallJournal,
    ) -> Result<ListedSims, CarrierError> {
        let (since_ms, page_number) = match position {
            None => (since.map_or(0, cellbridge_core::clock::epoch_ms), 1),
            Some(position) => position
                .split_once(':')
                .and_then(|(ms, page)| Some((ms.parse::<i64>().ok()?, page.parse::<u32>().ok()?)))
                .ok_or_else(|| CarrierError::Permanent {
                    code: "position".into(),
                    message: format!("not a Jasper listing position: {position}"),
                })?,
        };
        let page = self
            .search_devices(
                cellbridge_core::clock::from_epoch_ms(since_ms),
                page_number,
                journal,
            )
            .await?;
        let newest = page
            .sims
            .iter()
            .filter_map(|sim| sim.updated_at)
            .map(cellbridge_core::clock::epoch_ms)
            .max();
        let next = page.more.then(|| match newest {
            Some(newest) if newest > since_ms => format!("{newest}:1"),
            // A whole page changed at the same instant: only counting pages gets past it.
            _ => format!("{since_ms}:{}", page_number + 1),
        });
        Ok(ListedSims {
            sims: page.sims,
            next,
        })
    }

    async fn read_device(
        &self,
        device: &DeviceRef,
        journal: &CallJournal,
    ) -> Result<CarrierDevice, CarrierError> {
        self.get_device(device.iccid.as_str(), journal).await
    }

    /// Search Devices gives no numbers, customer or labels.
    fn listing_is_complete(&self) -> bool {
        false
    }

    async fn describe_sim(
        &self,
        iccid: &str,
        journal: &CallJournal,
    ) -> Result<CarrierSim, CarrierError> {
        self.describe_device(iccid, journal).await
    }

    fn already_applied(&self, change: &ChangeSpec, device: &CarrierDevice) -> bool {
        match change {
            ChangeSpec::StatusUpdate { action } => device.status == jasper_status(*action),
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
        let [request] = requests else {
            return Err(CarrierError::Permanent {
                code: "batch".into(),
                message: format!("Jasper edits one device a call, not {}", requests.len()),
            });
        };
        let edit = edit_for(change, &request.edit)?;
        self.edit_device(request.device.iccid.as_str(), &edit, journal)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_print_the_key() {
        let credentials = JasperCredentials {
            username: "ops".into(),
            api_key: "s3cr3t-key".into(),
        };
        let client = JasperClient::new(
            reqwest::Client::new(),
            "http://127.0.0.1:1/rws/api/v1/",
            credentials,
        );
        let printed = format!("{client:?}");
        assert!(!printed.contains("s3cr3t-key"), "{printed}");
        assert!(printed.contains("REDACTED"), "{printed}");
    }

    #[test]
    fn status_actions_map_to_jasper_statuses() {
        let edits: Vec<Value> = StatusAction::ALL
            .into_iter()
            .map(|action| {
                edit_for(&ChangeSpec::StatusUpdate { action }, &DeviceEdit::None)
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(
            edits,
            vec![
                json!({"status": "ACTIVATED"}),
                json!({"status": "DEACTIVATED"}),
                json!({"status": "ACTIVATED"}),
                json!({"status": "DEACTIVATED"})
            ]
        );
        assert!(matches!(
            edit_for(&ChangeSpec::IccidImeiChange, &DeviceEdit::None),
            Err(CarrierError::Permanent { .. })
        ));
    }

    #[test]
    fn jaspers_dates_are_read_to_the_millisecond() {
        let at = parse_jasper_date("2016-07-06 22:04:04.380+0000").expect("a Jasper date");
        assert_eq!(at.unix_timestamp(), 1_467_842_644);
        assert_eq!(at.millisecond(), 380);
        assert!(parse_jasper_date("2016-07-06T22:04:04Z").is_none());
    }

    #[test]
    fn usernames_and_cost_centers_go_to_the_accounts_custom_fields() {
        let labels = |username: Option<&str>, cost_center: Option<&str>| DeviceEdit::Labels {
            username: username.map(str::to_owned),
            cost_center: cost_center.map(str::to_owned),
        };
        let edit = |device: &DeviceEdit| edit_for(&ChangeSpec::UsernameCostCenterEdit, device);
        assert_eq!(
            edit(&labels(Some("pump-7"), Some("CC-12"))).ok(),
            Some(json!({"accountCustom1": "pump-7", "accountCustom2": "CC-12"}))
        );
        assert_eq!(
            edit(&labels(None, Some("CC-12"))).ok(),
            Some(json!({"accountCustom2": "CC-12"}))
        );
        assert!(matches!(
            edit(&DeviceEdit::None),
            Err(CarrierError::Permanent { code, .. }) if code == "request"
        ));
    }
}
