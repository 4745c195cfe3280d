//! Sample devices and commands for tests across the workspace.

use cellbridge_core::tenant::TenantId;
use time::OffsetDateTime;

/// A thing name known to be valid.
pub fn thing(name: &str) -> crate::registration::ThingName {
    crate::registration::ThingName::parse(name)
        .unwrap_or_else(|| panic!("bad sample thing name {name}"))
}

/// A `reboot` command for `on` of tenant `demo`, queued at `at`, expiring `expires_in` seconds later.
pub fn queued_command(on: &str, at: OffsetDateTime, expires_in: i64) -> crate::command::Command {
    use crate::command::{parse_command_request, Command, CommandId};
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

/// Registers `name` for `tenant` a day before `at` (a TRK-200 on a sample SIM).
pub async fn register_device(
    devices: &dyn crate::ports::DeviceStore,
    name: &str,
    tenant: &str,
    at: OffsetDateTime,
) {
    let body = serde_json::json!({"tenant": tenant, "iccid": cellbridge_core::testing::iccid(1),
        "model": "TRK-200", "firmware": "2.4.1"});
    let announcement = crate::registration::parse_announcement(name, body.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("sample announcement invalid: {e:?}"));
    devices
        .register(&announcement, at - time::Duration::days(1))
        .await
        .unwrap_or_else(|e| panic!("registering {name}: {e}"));
}

/// Registers `name` for `tenant` (see [`register_device`]), connected at `at`.
pub async fn online_device(
    devices: &dyn crate::ports::DeviceStore,
    name: &str,
    tenant: &str,
    at: OffsetDateTime,
) {
    register_device(devices, name, tenant, at).await;
    let connected = crate::presence::LifecycleEvent {
        kind: crate::presence::LifecycleKind::Connected,
        version: 1,
        at,
    };
    devices
        .apply_presence(&thing(name), &connected)
        .await
        .unwrap_or_else(|e| panic!("connecting {name}: {e}"));
}
