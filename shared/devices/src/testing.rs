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
