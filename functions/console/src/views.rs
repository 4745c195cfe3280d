//! The API's answers as the pages read them. Only what a page shows is read; fields the API
//! adds later are ignored.

use serde::Deserialize;
use serde_json::Value;

/// A page of a listing and the cursor of the next one.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listing<T> {
    pub items: Vec<T>,
    #[serde(default)]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sim {
    pub iccid: String,
    #[serde(default)]
    pub msisdn: Option<String>,
    #[serde(default)]
    pub imei: Option<String>,
    pub carrier: String,
    pub status: String,
    #[serde(default)]
    pub rate_plan: Option<String>,
    #[serde(default)]
    pub customer: Option<String>,
    #[serde(default)]
    pub device_id: Option<String>,
    #[serde(default)]
    pub last_change: Option<LastChange>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LastChange {
    pub at: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkChange {
    pub id: String,
    pub carrier: String,
    pub change: Value,
    pub status: String,
    pub counts: Counts,
    #[serde(default)]
    pub created_by: String,
    pub created_at: String,
    #[serde(default)]
    pub failure_reason: Option<String>,
}

impl BulkChange {
    /// Still moving: devices are pending or it has not been planned yet.
    pub fn in_flight(&self) -> bool {
        matches!(self.status.as_str(), "new" | "processing" | "scheduled")
    }

    /// "statusUpdate: suspend", "carrierRatePlanChange", ...
    pub fn describe_change(&self) -> String {
        let kind = self
            .change
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("change");
        match self.change.get("action").and_then(Value::as_str) {
            Some(action) => format!("{kind}: {action}"),
            None => kind.to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Default)]
pub struct Counts {
    pub total: u64,
    pub pending: u64,
    pub succeeded: u64,
    pub failed: u64,
}

impl Counts {
    pub fn done(&self) -> u64 {
        self.succeeded + self.failed
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub id: String,
    #[serde(default)]
    pub iccid: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub firmware: String,
    pub status: String,
    #[serde(default)]
    pub last_seen: Option<String>,
    #[serde(default)]
    pub latest: Option<TelemetryPoint>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TelemetryPoint {
    pub at: String,
    #[serde(default)]
    pub metrics: serde_json::Map<String, Value>,
}

/// One device's part of a bulk change, with its outcome.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceChange {
    pub seq: u64,
    pub iccid: String,
    #[serde(default)]
    pub msisdn: Option<String>,
    pub status: String,
    #[serde(default)]
    pub status_reason: Option<String>,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub updated_at: String,
}

/// One entry of a bulk change's audit trail, as `GET /bulk-changes/{id}/audit` lists them: a step
/// of the change, or a carrier call with what was sent and answered (credentials removed).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub entry_id: String,
    #[serde(default)]
    pub device_seq: Option<u64>,
    pub description: String,
    #[serde(default)]
    pub processed_by: String,
    #[serde(default)]
    pub request_text: Option<String>,
    #[serde(default)]
    pub response_text: Option<String>,
    #[serde(default)]
    pub has_errors: bool,
    #[serde(default)]
    pub http_status: Option<u16>,
    #[serde(default)]
    pub duration_ms: Option<u64>,
    pub created_at: String,
}

/// A device with its SIM, as `GET /devices/{id}` answers.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceDetail {
    #[serde(flatten)]
    pub device: Device,
    #[serde(default)]
    pub registered_at: Option<String>,
    #[serde(default)]
    pub sim: Option<Sim>,
}

/// A command to a device with every status it went through.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Command {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub params: Value,
    pub status: String,
    pub created_at: String,
    #[serde(default)]
    pub updated_at: Option<String>,
}

/// A user of the tenant, as `GET /users` lists them.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub username: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub locked: bool,
    #[serde(default)]
    pub created_at: Option<String>,
}

/// One of the tenant's carrier accounts; its credentials are names only, never values.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceProvider {
    pub id: String,
    pub name: String,
    pub carrier: String,
    #[serde(default)]
    pub endpoint: String,
    #[serde(default)]
    pub credentials: Vec<String>,
    #[serde(default)]
    pub credentials_updated_at: Option<String>,
    #[serde(default)]
    pub last_test: Option<Value>,
}
