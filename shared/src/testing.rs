//! Sample data for tests across the workspace: valid identifiers and stored bulk changes.

use crate::bulk_changes::bulk_change::{BulkChange, BulkChangeStatus, DeviceCounts};
use crate::bulk_changes::change::{Carrier, ChangeSpec, DeviceRequest, StatusAction};
use crate::bulk_changes::request::parse_bulk_change_request;
use crate::common::ids::luhn_check_digit;
use crate::common::tenant::TenantId;
use time::OffsetDateTime;

/// The `n`th of a family of valid 19-digit ICCIDs.
pub fn iccid(n: u32) -> String {
    let payload = format!("8901260{n:011}");
    format!("{payload}{}", luhn_check_digit(&payload))
}

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

/// Makes an API Gateway event come from `subject` of `tenant` with `roles` (space-separated), as
/// if the authorizer had verified their token.
pub fn authorize_event(event: &mut serde_json::Value, tenant: &str, roles: &str) {
    event["requestContext"]["authorizer"] = serde_json::json!({
        "lambda": {"sub": format!("{roles}@{tenant}"), "tenant": tenant, "roles": roles}
    });
}

/// Removes the authorizer's context: the event of a route the authorizer did not guard.
pub fn unauthorize_event(event: &mut serde_json::Value) {
    if let Some(context) = event["requestContext"].as_object_mut() {
        context.remove("authorizer");
    }
}

/// A thing name known to be valid.
pub fn thing(name: &str) -> crate::devices::registration::ThingName {
    crate::devices::registration::ThingName::parse(name)
        .unwrap_or_else(|| panic!("bad sample thing name {name}"))
}

/// A `reboot` command for `on` of tenant `demo`, queued at `at`, expiring `expires_in` seconds later.
pub fn queued_command(
    on: &str,
    at: OffsetDateTime,
    expires_in: i64,
) -> crate::devices::command::Command {
    use crate::devices::command::{parse_command_request, Command, CommandId};
    let body = serde_json::json!({"name": "reboot", "params": {"delay": 5},
        "expiresInSeconds": expires_in, "ackTimeoutSeconds": 30});
    let request = parse_command_request(body.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("sample command invalid: {e:?}"));
    Command::queued(
        thing(on),
        TenantId::parse("demo").unwrap_or_else(|| panic!("bad sample tenant")),
        CommandId::new_v7(),
        &request,
        at,
    )
}
