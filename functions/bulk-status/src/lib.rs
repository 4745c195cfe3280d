//! Read side of bulk changes: `GET /bulk-changes`, `GET /bulk-changes/{id}` and
//! `GET /bulk-changes/{id}/devices`. Every read is scoped to the caller's tenant; another
//! tenant's bulk change is indistinguishable from one that does not exist.

use cellbridge::api::paging::page_request;
use cellbridge::api::views::{BulkChangeView, DeviceChangeView, PageView};
use cellbridge::api::{caller, json_response, Caller, Problem};
use cellbridge::domain::{BulkChange, BulkChangeStatus};
use cellbridge::ports::BulkChangeStore;
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext;
use lambda_http::http::StatusCode;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    List,
    Get,
    Devices,
}

pub async fn handle(store: &dyn BulkChangeStore, request: Request) -> Response<Body> {
    match respond(store, &request).await {
        Ok(response) => response,
        Err(problem) => problem.into_response(),
    }
}

async fn respond(store: &dyn BulkChangeStore, request: &Request) -> Result<Response<Body>, Problem> {
    let caller = caller(request)?;
    match route(request)? {
        Route::List => {
            allow_query(request, &["status", "limit", "cursor"])?;
            let status = match request.query_string_parameters().first("status") {
                None => None,
                Some(raw) => Some(BulkChangeStatus::parse(raw).ok_or_else(|| {
                    let names: Vec<&str> = BulkChangeStatus::ALL.iter().map(|s| s.as_str()).collect();
                    Problem::bad_parameter("status", &format!("must be one of: {}", names.join(", ")))
                })?),
            };
            let page = store.list_bulk_changes(&caller.tenant, status, &page_request(request)?).await?;
            Ok(json_response(StatusCode::OK, &PageView::from_page(&page, BulkChangeView::from)))
        }
        Route::Get => {
            allow_query(request, &[])?;
            let change = find(store, &caller, request).await?;
            Ok(json_response(StatusCode::OK, &BulkChangeView::from(&change)))
        }
        Route::Devices => {
            allow_query(request, &["limit", "cursor"])?;
            let change = find(store, &caller, request).await?;
            let page = store
                .list_device_changes(&caller.tenant, &change.bulk_change_id, &page_request(request)?)
                .await?;
            Ok(json_response(StatusCode::OK, &PageView::from_page(&page, DeviceChangeView::from)))
        }
    }
}

/// The route API Gateway matched, from its route key; the path is the fallback for events
/// that carry none.
fn route(request: &Request) -> Result<Route, Problem> {
    let route_key = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ApiGatewayV2httpRequestContext { route_key, .. })) => route_key.clone(),
        _ => None,
    };
    let key = route_key.unwrap_or_else(|| {
        let path = request.uri().path();
        let shape = match path.trim_end_matches('/').split('/').skip(1).count() {
            1 => "/bulk-changes",
            2 => "/bulk-changes/{id}",
            _ => "/bulk-changes/{id}/devices",
        };
        format!("{} {shape}", request.method())
    });
    match key.as_str() {
        "GET /bulk-changes" => Ok(Route::List),
        "GET /bulk-changes/{id}" => Ok(Route::Get),
        "GET /bulk-changes/{id}/devices" => Ok(Route::Devices),
        _ => Err(Problem::not_found("this route")),
    }
}

fn allow_query(request: &Request, allowed: &[&str]) -> Result<(), Problem> {
    let query = request.query_string_parameters();
    for (name, _) in query.iter() {
        if !allowed.contains(&name) {
            let expected = if allowed.is_empty() { "none".to_owned() } else { allowed.join(", ") };
            return Err(Problem::bad_parameter(name, &format!("unknown query parameter; expected: {expected}")));
        }
    }
    Ok(())
}

async fn find(store: &dyn BulkChangeStore, caller: &Caller, request: &Request) -> Result<BulkChange, Problem> {
    let params = request.path_parameters();
    let id = params.first("id").unwrap_or_default();
    // Ids are UUIDs; anything else cannot exist, and is not worth a store round trip.
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(Problem::not_found("this bulk change"));
    }
    store
        .get_bulk_change(&caller.tenant, id)
        .await?
        .ok_or_else(|| Problem::not_found("this bulk change"))
}
