//! The HTTP edge: problem responses, caller identity, the tenant's view of the store, paging
//! parameters and response bodies.

pub mod body;
pub mod caller;
pub mod idempotency;
pub mod page_view;
pub mod paging;
pub mod problem;

pub use caller::{caller, Caller};
pub use problem::Problem;

use lambda_http::{http::StatusCode, Body, Response};

/// A JSON response. Serializing our own view types cannot fail; if it somehow did, the caller
/// gets a 500 problem rather than a panic.
pub fn json_response<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_string(value) {
        Ok(body) => Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::Text(body))
            .unwrap_or_default(),
        Err(e) => Problem::internal(&e.to_string()).into_response(),
    }
}

/// The route API Gateway matched (`GET /devices/{id}`); empty for an event that names none.
pub fn route_key(request: &lambda_http::Request) -> String {
    use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext;
    use lambda_http::request::RequestContext;
    use lambda_http::RequestExt;
    match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ApiGatewayV2httpRequestContext {
            route_key: Some(key),
            ..
        })) => key.clone(),
        _ => String::new(),
    }
}
