//! Who is calling: the identity the API's Lambda authorizer verified, read from the request
//! context API Gateway adds (`requestContext.authorizer.lambda`). Clients cannot set that
//! context, so nothing a request carries itself (headers, body) can name a tenant.

use crate::common::tenant::TenantId;
use crate::edge::http::problem::Problem;
use crate::identity::principal::Identity;
use crate::identity::role::Role;
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    identity: Identity,
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

    /// 403 unless the caller holds `role` or a higher one.
    pub fn require(&self, role: Role) -> Result<(), Problem> {
        if self.identity.roles.allows(role) {
            Ok(())
        } else {
            Err(Problem::forbidden(role))
        }
    }

    /// For tests and tools that act as a known identity without a request.
    pub fn acting_as(identity: Identity) -> Self {
        Self { identity }
    }
}

/// The verified caller of `request`; 401 when the request did not pass the authorizer (a route
/// wired without it, or an event built by hand).
pub fn caller(request: &Request) -> Result<Caller, Problem> {
    let context = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context
            .authorizer
            .as_ref()
            .map(|authorizer| &authorizer.fields),
        _ => None,
    };
    let identity = context
        .and_then(|fields| {
            let map: serde_json::Map<String, serde_json::Value> =
                fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            Identity::from_context(&map)
        })
        .ok_or_else(Problem::unauthorized)?;
    Ok(Caller { identity })
}
