//! Who is calling. Until the authorizer lands, the tenant comes from a header that the API edge
//! (the devstack locally) sets; this is the one function the authorizer's context will replace.

use super::Problem;
use crate::domain::TenantId;
use lambda_http::Request;

pub const TENANT_HEADER: &str = "x-cellbridge-tenant";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant: TenantId,
    /// Who to name in audit entries.
    pub principal: String,
}

pub fn caller(request: &Request) -> Result<Caller, Problem> {
    let tenant = request
        .headers()
        .get(TENANT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(TenantId::parse)
        .ok_or_else(Problem::unauthorized)?;
    Ok(Caller {
        principal: format!("tenant:{tenant}"),
        tenant,
    })
}
