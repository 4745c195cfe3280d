//! Who is calling: the identity the API's Lambda authorizer verified, read from the request
//! context API Gateway adds (`requestContext.authorizer.lambda`). Clients cannot set that
//! context, so nothing a request carries itself (headers, body) can name a tenant.

use crate::http::problem::Problem;
use cellbridge_identity::principal::Identity;
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

pub use cellbridge_identity::caller::{Caller, MissingRole};

/// 403, naming the role the caller lacks.
impl From<MissingRole> for Problem {
    fn from(missing: MissingRole) -> Self {
        Problem::forbidden(missing.needed)
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
    Ok(Caller::acting_as(identity))
}
