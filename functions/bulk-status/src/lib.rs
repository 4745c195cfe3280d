//! Read side of bulk changes: `GET /bulk-changes`, `GET /bulk-changes/{id}`,
//! `GET /bulk-changes/{id}/devices` and its audit trail (`GET /bulk-changes/{id}/audit`), and what
//! each carrier can do (`GET /carriers`). Every read is scoped to the caller's tenant; another
//! tenant's bulk change is indistinguishable from one that does not exist.

use cellbridge_bulk_changes::bulk_change::{BulkChange, BulkChangeStatus};
use cellbridge_bulk_changes::capabilities::{self, CarrierCapabilities};
use cellbridge_bulk_changes::ports::BulkChangeStore;
use cellbridge_bulk_changes::tenant::TenantStore;
use cellbridge_bulk_changes::views::{AuditEntryView, BulkChangeView, DeviceChangeView};
use cellbridge_edge::http::page_view::PageView;
use cellbridge_edge::http::paging::{allow_query, page_request};
use cellbridge_edge::http::problem::Problem;
use cellbridge_edge::http::{caller, json_response};
use cellbridge_identity::role::Role;
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext;
use lambda_http::http::StatusCode;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};

/// This function's configuration, read once at cold start: the bulk-change tables it reads.
pub type Config = cellbridge_bulk_changes::dynamodb::TableNames;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    List,
    Get,
    Devices,
    Audit,
    Carriers,
}

/// `GET /carriers`: every carrier's capability table.
#[derive(serde::Serialize)]
struct CarriersView {
    items: [&'static CarrierCapabilities; 3],
}

pub async fn handle(store: &dyn BulkChangeStore, request: Request) -> Response<Body> {
    match respond(store, &request).await {
        Ok(response) => response,
        Err(problem) => problem.into_response(),
    }
}

async fn respond(
    store: &dyn BulkChangeStore,
    request: &Request,
) -> Result<Response<Body>, Problem> {
    let caller = caller(request)?;
    caller.require(Role::Viewer)?;
    let store = TenantStore::of(store, &caller);
    match route(request)? {
        Route::Carriers => {
            allow_query(request, &[])?;
            Ok(json_response(
                StatusCode::OK,
                &CarriersView {
                    items: capabilities::all(),
                },
            ))
        }
        Route::List => {
            allow_query(request, &["status", "limit", "cursor"])?;
            let status = match request.query_string_parameters().first("status") {
                None => None,
                Some(raw) => Some(BulkChangeStatus::parse(raw).ok_or_else(|| {
                    let names: Vec<&str> =
                        BulkChangeStatus::ALL.iter().map(|s| s.as_str()).collect();
                    Problem::bad_parameter(
                        "status",
                        &format!("must be one of: {}", names.join(", ")),
                    )
                })?),
            };
            let page = store
                .list_bulk_changes(status, &page_request(request)?)
                .await?;
            Ok(json_response(
                StatusCode::OK,
                &PageView::from_page(&page, BulkChangeView::from),
            ))
        }
        Route::Get => {
            allow_query(request, &[])?;
            let change = find(&store, request).await?;
            Ok(json_response(
                StatusCode::OK,
                &BulkChangeView::from(&change),
            ))
        }
        Route::Devices => {
            allow_query(request, &["limit", "cursor"])?;
            let change = find(&store, request).await?;
            let page = store
                .list_device_changes(&change.bulk_change_id, &page_request(request)?)
                .await?;
            Ok(json_response(
                StatusCode::OK,
                &PageView::from_page(&page, DeviceChangeView::from),
            ))
        }
        Route::Audit => {
            allow_query(request, &["limit", "cursor", "device"])?;
            let device = device_filter(request)?;
            let page_request = page_request(request)?;
            let change = find(&store, request).await?;
            let page = store
                .audit_page(&change.bulk_change_id, device, &page_request)
                .await?;
            Ok(json_response(
                StatusCode::OK,
                &PageView::from_page(&page, AuditEntryView::from),
            ))
        }
    }
}

/// The route API Gateway matched, from its route key; the path is the fallback for events
/// that carry none.
fn route(request: &Request) -> Result<Route, Problem> {
    let route_key = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ApiGatewayV2httpRequestContext {
            route_key, ..
        })) => route_key.clone(),
        _ => None,
    };
    let key = route_key.unwrap_or_else(|| {
        let path = request.uri().path();
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        let shape = match segments.as_slice() {
            _ if path.starts_with("/carriers") => "/carriers",
            [_] => "/bulk-changes",
            [_, _] => "/bulk-changes/{id}",
            [_, _, "audit"] => "/bulk-changes/{id}/audit",
            _ => "/bulk-changes/{id}/devices",
        };
        format!("{} {shape}", request.method())
    });
    match key.as_str() {
        "GET /bulk-changes" => Ok(Route::List),
        "GET /bulk-changes/{id}" => Ok(Route::Get),
        "GET /bulk-changes/{id}/devices" => Ok(Route::Devices),
        "GET /bulk-changes/{id}/audit" => Ok(Route::Audit),
        "GET /carriers" => Ok(Route::Carriers),
        _ => Err(Problem::not_found("this route")),
    }
}

/// `device=<seq>`: only that device change's entries.
fn device_filter(request: &Request) -> Result<Option<u32>, Problem> {
    let query = request.query_string_parameters();
    query
        .first("device")
        .map(|raw| {
            raw.parse::<u32>().map_err(|_| {
                Problem::bad_parameter(
                    "device",
                    "must be a device's seq in the bulk change, a whole number from 0",
                )
            })
        })
        .transpose()
}

async fn find(store: &TenantStore<'_>, request: &Request) -> Result<BulkChange, Problem> {
    let params = request.path_parameters();
    let id = params.first("id").unwrap_or_default();
    // Ids are UUIDs; anything else cannot exist, and is not worth a store round trip.
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(Problem::not_found("this bulk change"));
    }
    store
        .get_bulk_change(id)
        .await?
        .ok_or_else(|| Problem::not_found("this bulk change"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellbridge_bulk_changes::bulk_change::{AuditEntry, DeviceChange};
    use cellbridge_bulk_changes::memory::MemoryStore;
    use cellbridge_bulk_changes::testing::sample_bulk_change;
    use cellbridge_core::tenant::TenantId;
    use lambda_http::request::from_str;
    use serde_json::Value;
    use time::OffsetDateTime;

    const GET: &str = include_str!("../../../events/bulk-status/get-bulk-change.json");
    const LIST: &str = include_str!("../../../events/bulk-status/list-bulk-changes.json");
    const DEVICES: &str = include_str!("../../../events/bulk-status/list-device-changes.json");
    const CARRIERS: &str = include_str!("../../../events/bulk-status/list-carriers.json");
    const AUDIT: &str = include_str!("../../../events/bulk-status/list-audit-entries.json");
    const SAMPLE_ID: &str = "019aa8e4-6f2a-7c3d-9b1e-2f4a5c6d7e80";

    async fn store_with(
        tenant: &str,
        id: &str,
        devices: u32,
        status: BulkChangeStatus,
    ) -> MemoryStore {
        let store = MemoryStore::default();
        add(&store, tenant, id, devices, status).await;
        store
    }

    async fn add(
        store: &MemoryStore,
        tenant: &str,
        id: &str,
        devices: u32,
        status: BulkChangeStatus,
    ) {
        let (mut change, requests) = sample_bulk_change(tenant, id, devices, true);
        change.status = status;
        store.create_bulk_change(&change, None).await.unwrap();
        let changes: Vec<DeviceChange> = requests
            .into_iter()
            .enumerate()
            .map(|(i, r)| DeviceChange::pending(id, i as u32, r, OffsetDateTime::now_utc()))
            .collect();
        store
            .insert_device_changes(&change.tenant_id, &changes)
            .await
            .unwrap();
    }

    /// The sample event, with its query string replaced and its tenant set.
    fn event(sample: &str, tenant: &str, query: &[(&str, &str)]) -> Request {
        let mut value: Value = serde_json::from_str(sample).unwrap();
        cellbridge_core::testing::authorize_event(&mut value, tenant, "viewer");
        let raw: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        value["rawQueryString"] = raw.join("&").into();
        value["queryStringParameters"] = query
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect::<serde_json::Map<_, _>>()
            .into();
        from_str(&value.to_string()).unwrap()
    }

    async fn call(store: &MemoryStore, request: Request) -> (StatusCode, Value) {
        let response = handle(store, request).await;
        let body = serde_json::from_slice(response.body().as_ref()).unwrap();
        (response.status(), body)
    }

    #[tokio::test]
    async fn the_sample_get_shows_status_and_counts() {
        let store = store_with("demo", SAMPLE_ID, 3, BulkChangeStatus::Processing).await;
        let (status, body) = call(&store, from_str(GET).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["id"], SAMPLE_ID);
        assert_eq!(body["status"], "processing");
        assert_eq!(
            body["counts"],
            serde_json::json!({"total": 3, "pending": 3, "succeeded": 0, "failed": 0})
        );
    }

    #[tokio::test]
    async fn the_sample_carriers_request_lists_what_each_carrier_can_do() {
        let store = MemoryStore::default();
        let (status, body) = call(&store, from_str(CARRIERS).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        let carriers: Vec<&str> = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["carrier"].as_str().unwrap())
            .collect();
        assert_eq!(carriers, ["jasper", "thingSpace", "telegence"]);
        let thingspace = &body["items"][1];
        assert_eq!(
            thingspace["changes"][0],
            serde_json::json!({"type": "statusUpdate", "devicesPerCall": 10000, "completion": "callback"})
        );
        let telegence = &body["items"][2];
        let plan = telegence["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "carrierRatePlanChange")
            .unwrap();
        assert_eq!(plan["unsupportedFields"], serde_json::json!(["commPlan"]));
        assert_eq!(telegence["limits"]["callsPerSecond"], 10.0);
        let (status, _) = call(&store, event(CARRIERS, "demo", &[("limit", "2")])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "no query on this route");
    }

    #[tokio::test]
    async fn another_tenants_bulk_change_does_not_exist() {
        let store = store_with("other", SAMPLE_ID, 3, BulkChangeStatus::Processing).await;
        for sample in [GET, DEVICES] {
            let (status, body) = call(&store, event(sample, "demo", &[])).await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert_eq!(body["status"], 404);
        }
        let (_, list) = call(&store, event(LIST, "demo", &[])).await;
        assert_eq!(list["items"], serde_json::json!([]));
    }

    #[tokio::test]
    async fn device_pages_follow_the_cursor_to_the_end() {
        let store = store_with("demo", SAMPLE_ID, 5, BulkChangeStatus::Processing).await;
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("limit", "2")];
            if let Some(c) = cursor.as_deref() {
                query.push(("cursor", c));
            }
            let (status, body) = call(&store, event(DEVICES, "demo", &query)).await;
            assert_eq!(status, StatusCode::OK);
            seen.extend(
                body["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d["seq"].as_u64().unwrap()),
            );
            match body["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen, vec![0, 1, 2, 3, 4]);
        let (_, first) = call(&store, event(DEVICES, "demo", &[("limit", "1")])).await;
        let device = &first["items"][0];
        assert_eq!(device["iccid"], cellbridge_core::testing::iccid(0));
        assert_eq!(device["status"], "pending");
        assert!(
            device.get("edit").is_none(),
            "status updates carry no per-device edit: {device}"
        );
    }

    /// The trail of a bulk change: accepted, then a carrier call per device of `devices`.
    async fn audit_trail(store: &MemoryStore, tenant: &str, id: &str, devices: u32) {
        let tenant = TenantId::parse(tenant).unwrap();
        let entry = |device_seq: Option<u32>, description: String| AuditEntry {
            bulk_change_id: id.to_owned(),
            device_seq,
            description,
            processed_by: "carrier-worker".into(),
            request_text: device_seq.map(|seq| format!("{{\"iccid\":\"{seq}\"}}")),
            response_text: device_seq.map(|_| "<error>&</error>".to_owned()),
            has_errors: device_seq.is_some(),
            http_status: device_seq.map(|_| 500),
            duration_ms: device_seq.map(|_| 120),
            created_at: OffsetDateTime::now_utc(),
        };
        store
            .append_audit(&tenant, &entry(None, "accepted".into()))
            .await
            .unwrap();
        for seq in 0..devices {
            let call = entry(Some(seq), format!("jasper PUT /devices/{seq}: 500"));
            store.append_audit(&tenant, &call).await.unwrap();
        }
    }

    fn descriptions(body: &Value) -> Vec<&str> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["description"].as_str().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn the_audit_trail_reads_in_order_a_page_at_a_time() {
        let store = store_with("demo", SAMPLE_ID, 3, BulkChangeStatus::Processing).await;
        audit_trail(&store, "demo", SAMPLE_ID, 3).await;
        let (status, whole) = call(&store, from_str(AUDIT).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            descriptions(&whole),
            [
                "accepted",
                "jasper PUT /devices/0: 500",
                "jasper PUT /devices/1: 500",
                "jasper PUT /devices/2: 500"
            ]
        );
        assert!(whole.get("nextCursor").is_none(), "{whole}");
        let call_entry = &whole["items"][1];
        assert_eq!(call_entry["deviceSeq"], 0);
        assert_eq!(call_entry["httpStatus"], 500);
        assert_eq!(call_entry["durationMs"], 120);
        assert_eq!(call_entry["hasErrors"], true);
        assert_eq!(call_entry["requestText"], r#"{"iccid":"0"}"#);
        assert_eq!(call_entry["responseText"], "<error>&</error>");
        assert_eq!(call_entry["bulkChangeId"], SAMPLE_ID);
        assert!(call_entry["entryId"].is_string(), "{call_entry}");

        let mut paged = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("limit", "3")];
            if let Some(c) = cursor.as_deref() {
                query.push(("cursor", c));
            }
            let (status, body) = call(&store, event(AUDIT, "demo", &query)).await;
            assert_eq!(status, StatusCode::OK);
            assert!(body["items"].as_array().unwrap().len() <= 3);
            paged.extend(body["items"].as_array().unwrap().iter().cloned());
            match body["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(&Value::from(paged), &whole["items"]);
    }

    #[tokio::test]
    async fn the_audit_trail_of_one_device_holds_only_its_entries() {
        let store = store_with("demo", SAMPLE_ID, 3, BulkChangeStatus::Processing).await;
        audit_trail(&store, "demo", SAMPLE_ID, 3).await;
        let (status, body) = call(&store, event(AUDIT, "demo", &[("device", "1")])).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(descriptions(&body), ["jasper PUT /devices/1: 500"]);
        let (_, none) = call(&store, event(AUDIT, "demo", &[("device", "7")])).await;
        assert_eq!(none["items"], serde_json::json!([]));
    }

    #[tokio::test]
    async fn another_tenants_audit_trail_does_not_exist() {
        let store = store_with("other", SAMPLE_ID, 2, BulkChangeStatus::Processing).await;
        audit_trail(&store, "other", SAMPLE_ID, 2).await;
        let (status, body) = call(&store, event(AUDIT, "demo", &[])).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["status"], 404);
        let mut value: Value = serde_json::from_str(AUDIT).unwrap();
        cellbridge_core::testing::authorize_event(&mut value, "demo", "viewer");
        value["pathParameters"]["id"] = "not-a-uuid".into();
        let (status, _) = call(&store, from_str(&value.to_string()).unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn listing_filters_by_status() {
        let store = store_with("demo", SAMPLE_ID, 1, BulkChangeStatus::Processing).await;
        add(
            &store,
            "demo",
            "019aa8e4-6f2a-7c3d-9b1e-2f4a5c6d7e81",
            1,
            BulkChangeStatus::Recorded,
        )
        .await;
        let (_, all) = call(&store, event(LIST, "demo", &[])).await;
        assert_eq!(all["items"].as_array().unwrap().len(), 2);
        let (status, processing) = call(&store, from_str(LIST).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        let ids: Vec<&str> = processing["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, vec![SAMPLE_ID]);
    }

    #[tokio::test]
    async fn bad_parameters_are_named() {
        let store = store_with("demo", SAMPLE_ID, 1, BulkChangeStatus::Processing).await;
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: [Case; 10] = [
            (LIST, &[("status", "done")], "status"),
            (LIST, &[("limit", "0")], "limit"),
            (LIST, &[("limit", "many")], "limit"),
            (DEVICES, &[("cursor", "bm90IGEgY3Vyc29y")], "cursor"),
            (GET, &[("expand", "devices")], "expand"),
            (AUDIT, &[("limit", "1001")], "limit"),
            (AUDIT, &[("cursor", "bm90IGEgY3Vyc29y")], "cursor"),
            // A device-change cursor is not an audit cursor.
            (AUDIT, &[("cursor", "eyJhZnRlciI6Mn0")], "cursor"),
            (AUDIT, &[("device", "-1")], "device"),
            (AUDIT, &[("since", "2026-01-01")], "since"),
        ];
        for (sample, query, field) in cases {
            let (status, body) = call(&store, event(sample, "demo", query)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query:?}");
            assert_eq!(body["errors"][0]["field"], field);
        }
    }

    #[tokio::test]
    async fn a_request_the_authorizer_did_not_pass_is_unauthorized() {
        let store = store_with("demo", SAMPLE_ID, 1, BulkChangeStatus::Processing).await;
        let mut value: Value = serde_json::from_str(GET).unwrap();
        cellbridge_core::testing::unauthorize_event(&mut value);
        // A tenant named by the client itself counts for nothing.
        value["headers"]["x-cellbridge-tenant"] = "demo".into();
        let request = from_str(&value.to_string()).unwrap();
        assert_eq!(
            handle(&store, request).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }

    #[tokio::test]
    async fn every_role_may_read_and_a_role_less_caller_may_not() {
        let store = store_with("demo", SAMPLE_ID, 1, BulkChangeStatus::Processing).await;
        for roles in ["viewer", "operator", "admin"] {
            let mut value: Value = serde_json::from_str(GET).unwrap();
            cellbridge_core::testing::authorize_event(&mut value, "demo", roles);
            let (status, _) = call(&store, from_str(&value.to_string()).unwrap()).await;
            assert_eq!(status, StatusCode::OK, "{roles}");
        }
        let mut value: Value = serde_json::from_str(GET).unwrap();
        cellbridge_core::testing::authorize_event(&mut value, "demo", "");
        let (status, body) = call(&store, from_str(&value.to_string()).unwrap()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["type"], "https://cellbridge.dev/problems/forbidden");
    }
}
