//! Queue message bodies. Versioned by shape: fields are only ever added, with defaults.

use serde::{Deserialize, Serialize};

use crate::domain::TenantId;

/// Asks the planner to expand a bulk change into its device changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanMessage {
    pub tenant_id: TenantId,
    pub bulk_change_id: String,
}

/// One device change for the worker to carry out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkMessage {
    pub tenant_id: TenantId,
    pub bulk_change_id: String,
    pub device_seq: u32,
    #[serde(default)]
    pub retry_number: u32,
    /// Stable per device change, so a carrier sees retries of one request as one request.
    pub request_id: String,
}
