//! Who is calling: a verified identity. Only the API edge makes one from a request (from the
//! context the Lambda authorizer set, which clients cannot forge); the tenant's views of the
//! stores are made from it, so a handler cannot name another tenant.

use crate::principal::Identity;
use crate::role::Role;
use cellbridge_core::tenant::TenantId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    identity: Identity,
}

/// The caller lacks `needed` (the API answers 403).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this needs the {needed} role")]
pub struct MissingRole {
    pub needed: Role,
}

impl Caller {
    pub fn tenant(&self) -> &TenantId {
        &self.identity.tenant
    }

    /// Who to name in audit entries.
    pub fn principal(&self) -> String {
        format!("user:{}", self.identity.subject)
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Refused unless the caller holds `role` or a higher one.
    pub fn require(&self, role: Role) -> Result<(), MissingRole> {
        if self.identity.roles.allows(role) {
            Ok(())
        } else {
            Err(MissingRole { needed: role })
        }
    }

    /// The caller `identity` is: for the API edge once the authorizer verified it, and for tests
    /// and tools that act as a known identity without a request.
    pub fn acting_as(identity: Identity) -> Self {
        Self { identity }
    }
}
