//! Sample bulk changes for tests across the workspace.

use crate::bulk_change::{BulkChange, BulkChangeStatus, DeviceCounts};
use crate::change::{Carrier, ChangeSpec, DeviceRequest, StatusAction};
use crate::request::parse_bulk_change_request;
use cellbridge_core::tenant::TenantId;
use cellbridge_core::testing::iccid;
use time::OffsetDateTime;

/// A request body suspending `devices` devices on Jasper.
pub fn suspend_request(devices: u32, process_changes: bool) -> serde_json::Value {
    serde_json::json!({
        "carrier": "jasper",
        "change": {"type": "statusUpdate", "action": "suspend"},
        "processChanges": process_changes,
        "devices": (0..devices).map(|n| serde_json::json!({"iccid": iccid(n)})).collect::<Vec<_>>(),
    })
}

/// A bulk change as the intake function stores it, with the device list for its payload.
pub fn sample_bulk_change(
    tenant: &str,
    id: &str,
    devices: u32,
    process_changes: bool,
) -> (BulkChange, Vec<DeviceRequest>) {
    let body = suspend_request(devices, process_changes).to_string();
    let request = parse_bulk_change_request(body.as_bytes())
        .unwrap_or_else(|e| panic!("sample request invalid: {e:?}"));
    let now = OffsetDateTime::now_utc();
    let change = BulkChange {
        tenant_id: TenantId::parse(tenant).unwrap_or_else(|| panic!("bad sample tenant {tenant}")),
        bulk_change_id: id.to_owned(),
        carrier: Carrier::Jasper,
        service_provider_id: None,
        change: ChangeSpec::StatusUpdate {
            action: StatusAction::Suspend,
        },
        process_changes,
        status: BulkChangeStatus::New,
        counts: DeviceCounts {
            total: devices,
            succeeded: 0,
            failed: 0,
        },
        payload_key: format!("bulk-changes/{tenant}/{id}/devices.json"),
        created_at: now,
        updated_at: now,
        created_by: "test".into(),
        failure_reason: None,
    };
    (change, request.devices)
}
