//! Sample data for tests across the workspace: valid identifiers and authorized API events.

use crate::ids::luhn_check_digit;

/// The `n`th of a family of valid 19-digit ICCIDs.
pub fn iccid(n: u32) -> String {
    let payload = format!("8901260{n:011}");
    format!("{payload}{}", luhn_check_digit(&payload))
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
