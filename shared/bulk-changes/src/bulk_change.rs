//! A bulk change, its per-device changes and its audit trail.

use crate::change::{Carrier, ChangeSpec, DeviceRequest};
use cellbridge_core::tenant::TenantId;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BulkChangeStatus {
    /// Accepted and stored; the planner has not yet written its device changes.
    New,
    /// Device changes written and queued for the carriers.
    Processing,
    /// Validated and recorded only (`processChanges: false`); no carrier is called.
    Recorded,
    /// Device changes written; held until the change's effective date, when the scheduler
    /// releases it to the carriers.
    Scheduled,
    Completed,
    CompletedWithErrors,
    /// Never planned: its intake stopped after it was stored (the device list never reached the
    /// payload store, or planning kept failing). `failureReason` says why; every device counts as
    /// failed, so the counts still add up.
    Failed,
}

impl BulkChangeStatus {
    pub const ALL: [BulkChangeStatus; 7] = [
        BulkChangeStatus::New,
        BulkChangeStatus::Processing,
        BulkChangeStatus::Recorded,
        BulkChangeStatus::Scheduled,
        BulkChangeStatus::Completed,
        BulkChangeStatus::CompletedWithErrors,
        BulkChangeStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BulkChangeStatus::New => "new",
            BulkChangeStatus::Processing => "processing",
            BulkChangeStatus::Recorded => "recorded",
            BulkChangeStatus::Scheduled => "scheduled",
            BulkChangeStatus::Completed => "completed",
            BulkChangeStatus::CompletedWithErrors => "completedWithErrors",
            BulkChangeStatus::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// Nothing more will happen to it: every device change has its outcome, or it was never
    /// planned. (`recorded` is final too: nothing is sent to a carrier.)
    pub fn is_final(self) -> bool {
        matches!(
            self,
            BulkChangeStatus::Recorded
                | BulkChangeStatus::Completed
                | BulkChangeStatus::CompletedWithErrors
                | BulkChangeStatus::Failed
        )
    }

    /// The status a planned bulk change moves to.
    pub fn after_planning(process_changes: bool) -> Self {
        if process_changes {
            BulkChangeStatus::Processing
        } else {
            BulkChangeStatus::Recorded
        }
    }
}

/// Device counts of a bulk change; `pending` is derived so the invariant
/// total = pending + succeeded + failed cannot be broken by a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCounts {
    pub total: u32,
    pub succeeded: u32,
    pub failed: u32,
}

impl DeviceCounts {
    pub fn pending(&self) -> u32 {
        self.total.saturating_sub(self.succeeded + self.failed)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkChange {
    pub tenant_id: TenantId,
    pub bulk_change_id: String,
    pub carrier: Carrier,
    /// The tenant's carrier account the changes go to; `None` for the deployment's own
    /// (`CARRIER_ACCOUNTS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_provider_id: Option<String>,
    pub change: ChangeSpec,
    pub process_changes: bool,
    pub status: BulkChangeStatus,
    #[serde(flatten)]
    pub counts: DeviceCounts,
    /// Where the validated device list is kept (it can exceed a queue message or table item).
    pub payload_key: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub created_by: String,
    /// Why a `failed` bulk change was never planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DeviceChangeStatus {
    Pending,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceChange {
    pub bulk_change_id: String,
    /// Position of the device in the request; stable across redeliveries.
    pub seq: u32,
    #[serde(flatten)]
    pub request: DeviceRequest,
    pub status: DeviceChangeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    pub attempts: u32,
    /// The carrier's id for the request that carries this change, once an asynchronous carrier
    /// accepted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier_request_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl DeviceChange {
    pub fn pending(
        bulk_change_id: &str,
        seq: u32,
        request: DeviceRequest,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            bulk_change_id: bulk_change_id.to_owned(),
            seq,
            request,
            status: DeviceChangeStatus::Pending,
            status_reason: None,
            attempts: 0,
            carrier_request_id: None,
            updated_at: now,
        }
    }
}

/// One line of a bulk change's audit trail. Request and response texts must already be free of secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub bulk_change_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_seq: Option<u32>,
    pub description: String,
    pub processed_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_text: Option<String>,
    pub has_errors: bool,
    /// The carrier's HTTP status, for entries that record a carrier call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// An audit entry as stored, with the id that places it in the trail: a UUIDv7 given when it was
/// written, so the trail reads in order of its ids.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub entry_id: String,
    pub entry: AuditEntry,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_is_what_is_neither_succeeded_nor_failed() {
        let counts = DeviceCounts {
            total: 10,
            succeeded: 3,
            failed: 2,
        };
        assert_eq!(counts.pending(), 5);
        assert_eq!(
            counts.pending() + counts.succeeded + counts.failed,
            counts.total
        );
    }

    #[test]
    fn tenant_ids_are_key_safe() {
        assert!(TenantId::parse("acme-01_x").is_some());
        assert!(TenantId::parse("").is_none());
        assert!(TenantId::parse("a#b").is_none());
        assert!(TenantId::parse(&"a".repeat(65)).is_none());
    }

    #[test]
    fn status_names_round_trip() {
        for status in BulkChangeStatus::ALL {
            assert_eq!(BulkChangeStatus::parse(status.as_str()), Some(status));
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
    }
}
