//! A verified caller: who, for which tenant, with which roles. The authorizer makes one from a
//! token and hands it to the functions through API Gateway's request context.

use crate::role::Roles;
use cellbridge_core::tenant::TenantId;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub subject: String,
    pub tenant: TenantId,
    pub roles: Roles,
}

/// Keys of the authorizer context (`requestContext.authorizer.lambda`).
pub const CONTEXT_SUBJECT: &str = "sub";
pub const CONTEXT_TENANT: &str = "tenant";
pub const CONTEXT_ROLES: &str = "roles";

impl Identity {
    /// The authorizer's context. Values are strings: API Gateway passes those through unchanged.
    pub fn to_context(&self) -> Value {
        json!({
            CONTEXT_SUBJECT: self.subject,
            CONTEXT_TENANT: self.tenant.as_str(),
            CONTEXT_ROLES: self.roles.to_names(),
        })
    }

    /// Reads the context the authorizer produced; `None` when any part is missing or invalid.
    pub fn from_context(context: &Map<String, Value>) -> Option<Self> {
        let text = |key: &str| context.get(key).and_then(Value::as_str);
        let subject = text(CONTEXT_SUBJECT).filter(|s| !s.is_empty())?.to_owned();
        let tenant = TenantId::parse(text(CONTEXT_TENANT)?)?;
        let roles = Roles::from_names([text(CONTEXT_ROLES).unwrap_or("")]);
        Some(Self {
            subject,
            tenant,
            roles,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::role::Role;

    #[test]
    fn context_round_trips() {
        let identity = Identity {
            subject: "ops@acme.example".into(),
            tenant: TenantId::parse("acme").expect("tenant"),
            roles: Roles::new([Role::Operator, Role::Viewer]),
        };
        let context = identity.to_context();
        assert_eq!(context["roles"], "viewer operator");
        let back = Identity::from_context(context.as_object().expect("object"));
        assert_eq!(back, Some(identity));
    }

    #[test]
    fn incomplete_contexts_are_no_identity() {
        for context in [
            json!({"tenant": "acme", "roles": "viewer"}),
            json!({"sub": "a", "roles": "viewer"}),
            json!({"sub": "a", "tenant": "acme/../b", "roles": "viewer"}),
            json!({"sub": "", "tenant": "acme"}),
        ] {
            assert_eq!(
                Identity::from_context(context.as_object().expect("object")),
                None,
                "{context}"
            );
        }
    }
}
