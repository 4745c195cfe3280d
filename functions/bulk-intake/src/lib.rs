//! `POST /bulk-changes`: validate, store the bulk change, hand it to the planner. Returns 202
//! at once: device changes are written by the planner, never inline. The devices are listed, or
//! selected from the tenant's inventory by a `filter`; `POST /bulk-changes/preview` shows what a
//! filter selects (how many SIMs, on which accounts, which would be refused and why) without
//! changing anything.

use cellbridge_bulk_changes::bulk_change::{
    AuditEntry, BulkChange, BulkChangeStatus, DeviceCounts,
};
use cellbridge_bulk_changes::inventory::{addresses_lines_by_number, fill_known_msisdns};
use cellbridge_bulk_changes::messages::PlanMessage;
use cellbridge_bulk_changes::ports::{BulkChangePorts, CreateOutcome};
use cellbridge_bulk_changes::request::{BulkChangeRequest, ProviderRef, RequestDocument};
use cellbridge_bulk_changes::selection::{
    parse_selection, selectable, Reviewed, Selection, MAX_SELECTION,
};
use cellbridge_bulk_changes::tenant::TenantStore;
use cellbridge_bulk_changes::views::{bulk_change_location, BulkChangeView};
use cellbridge_carriers::provider_ports::ProviderStore;
use cellbridge_core::store::IdempotencyClaim;
use cellbridge_core::store::PageRequest;
use cellbridge_core::validation::ValidationErrors;
use cellbridge_edge::http::body::json_body;
use cellbridge_edge::http::caller::Caller;
use cellbridge_edge::http::idempotency;
use cellbridge_edge::http::idempotency::idempotency_key;
use cellbridge_edge::http::paging::allow_query;
use cellbridge_edge::http::problem::Problem;
use cellbridge_edge::http::{caller, json_response, route_key};
use cellbridge_edge::lambda::metrics;
use cellbridge_edge::lambda::metrics::Unit;
use cellbridge_identity::role::Role;
use cellbridge_sims::ports::SimStore;
use cellbridge_sims::query::{SimFilter, SimQuery};
use cellbridge_sims::sim::Sim;
use cellbridge_sims::tenant::TenantSims;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tracing::Instrument;

cellbridge_core::composite_config! {
    /// This function's configuration, read once at cold start: where bulk changes are stored,
    /// queued and kept, where the tenants' service providers are, and their inventories.
    pub struct Config {
        pub bulk_changes: cellbridge_bulk_changes::wiring::BulkChangeConfig,
        pub providers: cellbridge_carriers::wiring::ProvidersConfig,
        pub sims: cellbridge_sims::wiring::SimTables,
    }
}

/// What a request is checked against besides the bulk-change store: the tenant's service
/// providers (a named one must be the tenant's) and inventory (a `filter` selects from it).
pub struct Lookups<'a> {
    pub providers: &'a dyn ProviderStore,
    pub sims: &'a dyn SimStore,
}

/// 10,000 devices with every optional identifier fit in about 2 MB; API Gateway allows 10 MB.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

pub async fn handle(
    ports: &BulkChangePorts,
    lookups: &Lookups<'_>,
    request: Request,
    now: OffsetDateTime,
) -> Response<Body> {
    let outcome = match route_key(&request).as_str() {
        "POST /bulk-changes/preview" => preview(lookups, &request).await,
        _ => create(ports, lookups, &request, now).await,
    };
    match outcome {
        Ok(response) => response,
        Err(problem) => problem.into_response(),
    }
}

fn rejected(caller: &Caller) -> impl Fn(ValidationErrors) -> Problem + '_ {
    move |errors: ValidationErrors| {
        tracing::info!(tenant = %caller.tenant(), invalid_fields = errors.errors.len(), "bulk change rejected");
        Problem::invalid(errors)
    }
}

/// The SIMs a request's `filter` selects from the caller's inventory, reviewed against its
/// change; `None` when the request lists its devices.
async fn selection(
    lookups: &Lookups<'_>,
    caller: &Caller,
    document: &RequestDocument,
) -> Result<Option<Reviewed>, Problem> {
    let Some(filter) = document.filter() else {
        return Ok(None);
    };
    let rejected = rejected(caller);
    let selection = parse_selection(filter).map_err(&rejected)?;
    // A named provider narrows the selection to its SIMs (and must be the tenant's).
    let provider = document.service_provider_id();
    if let Some(id) = provider {
        lookups
            .providers
            .get_provider(caller.tenant(), id)
            .await?
            .ok_or_else(|| Problem::not_found("this service provider"))?;
    }
    let change = document.change().map_err(&rejected)?;
    selectable(&change).map_err(&rejected)?;
    let (matched, sims) = match selection {
        Selection::Matching(mut filter) => {
            if let Some(id) = provider {
                if filter
                    .service_provider_id
                    .as_deref()
                    .is_some_and(|f| f != id)
                {
                    return Err(rejected(ValidationErrors::single(
                        "filter.serviceProviderId",
                        "differs from the request's serviceProviderId",
                    )));
                }
                filter.service_provider_id = Some(id.to_owned());
            }
            read_selection(lookups.sims, caller, filter).await?
        }
        // The SIMs named that are the caller's (and on the named provider): one that is not
        // in the inventory is not matched.
        Selection::Listed(iccids) => {
            let mut sims = lookups.sims.get_sims(caller.tenant(), &iccids).await?;
            if let Some(id) = provider {
                sims.retain(|sim| sim.service_provider_id.as_deref() == Some(id));
            }
            // A batch read answers in any order; the bulk change keeps the order given.
            sims.sort_by_key(|sim| iccids.iter().position(|i| *i == sim.iccid));
            (sims.len(), sims)
        }
    };
    Ok(Some(Reviewed::review(&change, matched, sims)))
}

/// Every SIM `filter` matches in the caller's inventory, counted; the first
/// [`MAX_SELECTION`] + 1 kept (one more says the selection is too large).
async fn read_selection(
    sims: &dyn SimStore,
    caller: &Caller,
    filter: SimFilter,
) -> Result<(usize, Vec<Sim>), Problem> {
    let inventory = TenantSims::of(sims, caller);
    let query = SimQuery {
        filter,
        ..SimQuery::default()
    };
    let mut kept = Vec::new();
    let mut matched = 0;
    let mut cursor = None;
    loop {
        let page = inventory
            .list(
                &query,
                &PageRequest {
                    limit: 1000,
                    cursor,
                },
            )
            .await?;
        matched += page.items.len();
        let room = (MAX_SELECTION + 1).saturating_sub(kept.len());
        kept.extend(page.items.into_iter().take(room));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok((matched, kept)),
        }
    }
}

/// `POST /bulk-changes/preview`: what the request's filter selects, nothing written.
async fn preview(lookups: &Lookups<'_>, request: &Request) -> Result<Response<Body>, Problem> {
    let caller = caller(request)?;
    caller.require(Role::Operator)?;
    allow_query(request, &[])?;
    let body = json_body(
        request,
        MAX_BODY_BYTES,
        "a preview takes a filter, not devices",
    )?;
    let document = RequestDocument::read(body).map_err(rejected(&caller))?;
    let Some(reviewed) = selection(lookups, &caller, &document).await? else {
        return Err(rejected(&caller)(ValidationErrors::single(
            "filter",
            "is required: a preview shows what a filter selects from the inventory",
        )));
    };
    Ok(json_response(StatusCode::OK, &reviewed.preview()))
}

async fn create(
    ports: &BulkChangePorts,
    lookups: &Lookups<'_>,
    request: &Request,
    now: OffsetDateTime,
) -> Result<Response<Body>, Problem> {
    let caller = caller(request)?;
    caller.require(Role::Operator)?;
    let store = TenantStore::of(ports.store.as_ref(), &caller);
    allow_query(request, &[])?;
    let body = json_body(
        request,
        MAX_BODY_BYTES,
        "split the devices into several bulk changes",
    )?;
    let claim = idempotency_key(request)?.map(|key| IdempotencyClaim {
        key,
        request_digest: hex_digest(body),
    });
    let rejected = rejected(&caller);
    let mut document = RequestDocument::read(body).map_err(&rejected)?;
    // A selection becomes the device list it reads as now (a snapshot of the inventory).
    if let Some(reviewed) = selection(lookups, &caller, &document).await? {
        let (provider, carrier) = reviewed.check().map_err(&rejected)?;
        document = document
            .with_selection(reviewed.device_entries(), provider.as_deref(), carrier)
            .map_err(&rejected)?;
    }
    let providers = lookups.providers;
    // A named provider must be the caller's tenant's; another tenant's does not exist here.
    let provider = match document.service_provider_id() {
        None => None,
        Some(id) => Some(
            providers
                .get_provider(caller.tenant(), id)
                .await?
                .ok_or_else(|| Problem::not_found("this service provider"))?,
        ),
    };
    let provider_ref = provider.as_ref().map(|p| ProviderRef {
        id: &p.id,
        carrier: p.carrier,
    });
    let mut parsed = document.parse(provider_ref).map_err(&rejected)?;
    if addresses_lines_by_number(parsed.carrier) {
        let iccids: Vec<String> = parsed
            .devices
            .iter()
            .filter(|d| d.device.msisdn.is_none())
            .map(|d| d.device.iccid.as_str().to_owned())
            .collect();
        if !iccids.is_empty() {
            let known = lookups.sims.get_sims(caller.tenant(), &iccids).await?;
            let filled = fill_known_msisdns(&mut parsed, &known);
            tracing::debug!(filled, "MSISDNs from the inventory");
        }
    }
    let change = new_bulk_change(&caller, &parsed, now);
    let span = tracing::info_span!("bulk_change", tenant = %caller.tenant(), bulk_change_id = %change.bulk_change_id);
    async {
        match store.create_bulk_change(&change, claim.as_ref()).await? {
            CreateOutcome::Created => {
                store
                    .append_audit(&accepted_entry(&change, &caller, now))
                    .await?;
                hand_to_planner(ports, &change, &parsed).await?;
                tracing::info!(
                    devices = change.counts.total,
                    change_type = change.change.type_name(),
                    "bulk change accepted"
                );
                metrics::emit(
                    &[("Carrier", change.carrier.as_str())],
                    &[
                        ("BulkChangesAccepted", 1.0, Unit::Count),
                        (
                            "DevicesAccepted",
                            f64::from(change.counts.total),
                            Unit::Count,
                        ),
                    ],
                );
                Ok(accepted(&change, false))
            }
            CreateOutcome::Replayed {
                same_request: false,
                ..
            } => Err(Problem::idempotency_key_reused(
                "a bulk change from a different body",
            )),
            CreateOutcome::Replayed { existing, .. } => {
                // A retry after a failure between storing and enqueueing finishes the hand-over;
                // the planner ignores a second plan message for a planned bulk change.
                if existing.status == BulkChangeStatus::New {
                    hand_to_planner(ports, &existing, &parsed).await?;
                }
                Ok(accepted(&existing, true))
            }
        }
    }
    .instrument(span)
    .await
}

fn hex_digest(body: &[u8]) -> String {
    Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn new_bulk_change(
    caller: &Caller,
    request: &BulkChangeRequest,
    now: OffsetDateTime,
) -> BulkChange {
    let id = uuid::Uuid::now_v7().to_string();
    BulkChange {
        payload_key: format!("bulk-changes/{}/{id}/devices.json", caller.tenant()),
        tenant_id: caller.tenant().clone(),
        bulk_change_id: id,
        carrier: request.carrier,
        service_provider_id: request.service_provider_id.clone(),
        change: request.change.clone(),
        process_changes: request.process_changes,
        status: BulkChangeStatus::New,
        counts: DeviceCounts {
            // Bounded by MAX_DEVICES, so it fits.
            total: request.devices.len() as u32,
            succeeded: 0,
            failed: 0,
        },
        created_at: now,
        updated_at: now,
        created_by: caller.principal(),
        failure_reason: None,
    }
}

fn accepted_entry(change: &BulkChange, caller: &Caller, now: OffsetDateTime) -> AuditEntry {
    AuditEntry {
        bulk_change_id: change.bulk_change_id.clone(),
        device_seq: None,
        description: format!(
            "accepted {} for {} device(s) on {}{}",
            change.change.type_name(),
            change.counts.total,
            change.carrier.as_str(),
            if change.process_changes {
                ""
            } else {
                " (record only)"
            }
        ),
        processed_by: caller.principal(),
        request_text: None,
        response_text: None,
        has_errors: false,
        http_status: None,
        duration_ms: None,
        created_at: now,
    }
}

/// Stores the device list where the planner reads it, then asks for planning.
async fn hand_to_planner(
    ports: &BulkChangePorts,
    change: &BulkChange,
    request: &BulkChangeRequest,
) -> Result<(), Problem> {
    let devices =
        serde_json::to_vec(&request.devices).map_err(|e| Problem::internal(&e.to_string()))?;
    ports
        .payloads
        .put(&change.payload_key, devices)
        .await
        .map_err(|e| Problem::unavailable(&e.to_string()))?;
    ports
        .queues
        .enqueue_plan(&PlanMessage {
            tenant_id: change.tenant_id.clone(),
            bulk_change_id: change.bulk_change_id.clone(),
        })
        .await
        .map_err(|e| Problem::unavailable(&e.to_string()))
}

fn accepted(change: &BulkChange, replayed: bool) -> Response<Body> {
    idempotency::accepted(
        &BulkChangeView::from(change),
        &bulk_change_location(&change.bulk_change_id),
        replayed,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellbridge_bulk_changes::memory::MemoryPorts;
    use cellbridge_bulk_changes::ports::{BulkChangeStore, PayloadStore};
    use cellbridge_carriers::provider_memory::MemoryProviders;
    use cellbridge_core::tenant::TenantId;
    use cellbridge_edge::http::idempotency::IDEMPOTENCY_HEADER;
    use lambda_http::http::header;
    use lambda_http::http::StatusCode;
    use lambda_http::request::from_str;
    use serde_json::Value;

    const CREATE: &str = include_str!("../../../events/bulk-intake/create-status-update.json");
    const RECORD_ONLY: &str =
        include_str!("../../../events/bulk-intake/create-customer-rate-plan-change.json");
    const INVALID: &str = include_str!("../../../events/bulk-intake/create-invalid.json");

    fn request(event: &str) -> Request {
        from_str(event).expect("sample event parses")
    }

    fn with_body(event: &str, body: &str) -> Request {
        let mut value: Value = serde_json::from_str(event).unwrap();
        value["body"] = Value::String(body.to_owned());
        request(&value.to_string())
    }

    fn json(response: &Response<Body>) -> Value {
        serde_json::from_slice(response.body().as_ref()).expect("JSON body")
    }

    static NO_PROVIDERS: std::sync::LazyLock<MemoryProviders> =
        std::sync::LazyLock::new(MemoryProviders::default);
    static NO_SIMS: std::sync::LazyLock<cellbridge_sims::memory::MemorySims> =
        std::sync::LazyLock::new(Default::default);

    fn lookups() -> Lookups<'static> {
        Lookups {
            providers: &*NO_PROVIDERS,
            sims: &*NO_SIMS,
        }
    }

    fn demo() -> TenantId {
        TenantId::parse("demo").unwrap()
    }

    fn assert_nothing_written(memory: &MemoryPorts) {
        assert_eq!(memory.store.bulk_change_count(), 0);
        assert!(memory.payloads.is_empty());
        assert!(memory.queues.plans().is_empty());
    }

    #[tokio::test]
    async fn a_valid_request_is_stored_and_handed_to_the_planner() {
        let memory = MemoryPorts::default();
        let response = handle(
            &memory.ports(),
            &lookups(),
            request(CREATE),
            OffsetDateTime::now_utc(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let body = json(&response);
        let id = body["id"].as_str().unwrap().to_owned();
        assert_eq!(
            response.headers()[header::LOCATION],
            format!("/bulk-changes/{id}").as_str()
        );
        assert_eq!(body["status"], "new");
        assert_eq!(
            body["counts"],
            serde_json::json!({"total": 3, "pending": 3, "succeeded": 0, "failed": 0})
        );

        let stored = memory
            .store
            .get_bulk_change(&demo(), &id)
            .await
            .unwrap()
            .expect("stored");
        let payload: Vec<Value> =
            serde_json::from_slice(&memory.payloads.get(&stored.payload_key).await.unwrap())
                .unwrap();
        assert_eq!(payload.len(), 3);
        assert_eq!(
            memory.queues.plans(),
            vec![PlanMessage {
                tenant_id: demo(),
                bulk_change_id: id.clone()
            }]
        );
        assert_eq!(
            memory.store.list_audit(&demo(), &id).await.unwrap().len(),
            1
        );
        assert_eq!(
            memory.store.device_change_count(),
            0,
            "device changes are the planner's job"
        );
    }

    #[tokio::test]
    async fn a_retry_with_the_same_idempotency_key_returns_the_same_bulk_change() {
        let memory = MemoryPorts::default();
        let first = json(
            &handle(
                &memory.ports(),
                &lookups(),
                request(CREATE),
                OffsetDateTime::now_utc(),
            )
            .await,
        );
        let retry = handle(
            &memory.ports(),
            &lookups(),
            request(CREATE),
            OffsetDateTime::now_utc(),
        )
        .await;
        assert_eq!(retry.status(), StatusCode::ACCEPTED);
        assert_eq!(retry.headers()["idempotent-replayed"], "true");
        assert_eq!(json(&retry)["id"], first["id"]);
        assert_eq!(memory.store.bulk_change_count(), 1);
    }

    #[tokio::test]
    async fn an_idempotency_key_reused_for_another_body_is_refused() {
        let memory = MemoryPorts::default();
        handle(
            &memory.ports(),
            &lookups(),
            request(CREATE),
            OffsetDateTime::now_utc(),
        )
        .await;
        let mut other: Value = serde_json::from_str(CREATE).unwrap();
        let body = other["body"]
            .as_str()
            .unwrap()
            .replace("suspend", "restore");
        other["body"] = Value::String(body);
        let response = handle(
            &memory.ports(),
            &lookups(),
            request(&other.to_string()),
            OffsetDateTime::now_utc(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(json(&response)["errors"][0]["field"], "Idempotency-Key");
        assert_eq!(memory.store.bulk_change_count(), 1);
    }

    #[tokio::test]
    async fn invalid_requests_name_every_field_and_write_nothing() {
        let memory = MemoryPorts::default();
        let response = handle(
            &memory.ports(),
            &lookups(),
            request(INVALID),
            OffsetDateTime::now_utc(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let fields: Vec<String> = json(&response)["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            fields,
            vec![
                "carrier",
                "change.action",
                "devices[1].iccid",
                "devices[2].iccid"
            ]
        );
        assert_nothing_written(&memory);
    }

    #[tokio::test]
    async fn client_mistakes_get_their_own_status_and_write_nothing() {
        let memory = MemoryPorts::default();
        let cases = [
            (with_body(CREATE, "{\"carrier\": "), StatusCode::BAD_REQUEST),
            (
                with_body(
                    CREATE,
                    &format!("{{\"pad\": \"{}\"}}", "x".repeat(MAX_BODY_BYTES)),
                ),
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
        ];
        for (request, status) in cases {
            let response = handle(
                &memory.ports(),
                &lookups(),
                request,
                OffsetDateTime::now_utc(),
            )
            .await;
            assert_eq!(response.status(), status);
            assert_eq!(
                response.headers()[header::CONTENT_TYPE],
                "application/problem+json"
            );
        }
        let mut unverified: Value = serde_json::from_str(CREATE).unwrap();
        cellbridge_core::testing::unauthorize_event(&mut unverified);
        assert_eq!(
            handle(
                &memory.ports(),
                &lookups(),
                request(&unverified.to_string()),
                OffsetDateTime::now_utc()
            )
            .await
            .status(),
            StatusCode::UNAUTHORIZED
        );
        let mut viewer: Value = serde_json::from_str(CREATE).unwrap();
        cellbridge_core::testing::authorize_event(&mut viewer, "demo", "viewer");
        let refused = handle(
            &memory.ports(),
            &lookups(),
            request(&viewer.to_string()),
            OffsetDateTime::now_utc(),
        )
        .await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            json(&refused)["detail"],
            "this needs the operator role; ask an admin of your tenant for it"
        );
        let mut text = request(CREATE);
        text.headers_mut()
            .insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert_eq!(
            handle(&memory.ports(), &lookups(), text, OffsetDateTime::now_utc())
                .await
                .status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        let mut bad_key = request(CREATE);
        bad_key.headers_mut().insert(
            IDEMPOTENCY_HEADER,
            "spaces are not allowed".parse().unwrap(),
        );
        assert_eq!(
            handle(
                &memory.ports(),
                &lookups(),
                bad_key,
                OffsetDateTime::now_utc()
            )
            .await
            .status(),
            StatusCode::BAD_REQUEST
        );
        assert_nothing_written(&memory);
    }

    #[tokio::test]
    async fn a_queue_outage_is_finished_by_retrying_with_the_same_key() {
        let memory = MemoryPorts::default();
        memory
            .queues
            .fail
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let failed = handle(
            &memory.ports(),
            &lookups(),
            request(CREATE),
            OffsetDateTime::now_utc(),
        )
        .await;
        assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(memory.queues.plans().is_empty());

        memory
            .queues
            .fail
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let retried = handle(
            &memory.ports(),
            &lookups(),
            request(CREATE),
            OffsetDateTime::now_utc(),
        )
        .await;
        assert_eq!(retried.status(), StatusCode::ACCEPTED);
        assert_eq!(memory.queues.plans().len(), 1);
        assert_eq!(memory.store.bulk_change_count(), 1);
    }

    #[tokio::test]
    async fn record_only_requests_keep_their_flag() {
        let memory = MemoryPorts::default();
        let body = json(
            &handle(
                &memory.ports(),
                &lookups(),
                request(RECORD_ONLY),
                OffsetDateTime::now_utc(),
            )
            .await,
        );
        assert_eq!(body["processChanges"], false);
        assert_eq!(body["change"]["type"], "customerRatePlanChange");
        assert_eq!(body["change"]["effectiveDate"], "2027-01-01T00:00:00Z");
    }

    const SELECT: &str = include_str!("../../../events/bulk-intake/create-from-selection.json");
    const PREVIEW: &str = include_str!("../../../events/bulk-intake/preview.json");

    /// demo's Jasper provider, as the sample SIMs name it.
    async fn jasper_provider() -> MemoryProviders {
        let providers = MemoryProviders::default();
        let body = serde_json::json!({"name": "Jasper", "carrier": "jasper",
            "endpoint": "http://127.0.0.1:1/", "credentials": {"username": "ops", "apiKey": "k"}});
        let provider =
            cellbridge_carriers::provider::parse_new_provider(body.to_string().as_bytes())
                .expect("valid")
                .into_provider(
                    demo(),
                    "sp-jasper".into(),
                    "secret".into(),
                    OffsetDateTime::UNIX_EPOCH,
                );
        providers.create_provider(&provider).await.expect("created");
        providers
    }

    /// demo's inventory: the 90 sample SIMs; globex's: none.
    async fn inventory() -> cellbridge_sims::memory::MemorySims {
        let sims = cellbridge_sims::memory::MemorySims::default();
        for n in 0..90 {
            let sim = cellbridge_sims::testing::sample_sim(n);
            cellbridge_sims::testing::put_imported(&sims, demo().as_str(), &sim).await;
        }
        sims
    }

    fn tenant_event(event: &str, tenant: &str, body: Option<Value>) -> Request {
        let mut value: Value = serde_json::from_str(event).unwrap();
        cellbridge_core::testing::authorize_event(&mut value, tenant, "operator");
        if let Some(body) = body {
            value["body"] = Value::String(body.to_string());
        }
        request(&value.to_string())
    }

    #[tokio::test]
    async fn telegence_devices_listed_without_a_number_get_the_inventorys() {
        let memory = MemoryPorts::default();
        let sims = cellbridge_sims::memory::MemorySims::default();
        // Sample SIM 2 is at Telegence; the inventory keeps numbers in E.164.
        let known = cellbridge_sims::sim::Sim {
            msisdn: Some("+14045550002".into()),
            ..cellbridge_sims::testing::sample_sim(2)
        };
        sims.put_sim(
            &demo(),
            &known,
            None,
            Some(&cellbridge_sims::testing::imported(&known)),
        )
        .await
        .expect("stored");
        let providers = MemoryProviders::default();
        let lookups = Lookups {
            providers: &providers,
            sims: &sims,
        };
        let body = serde_json::json!({"carrier": "telegence",
            "change": {"type": "statusUpdate", "action": "suspend"},
            "devices": [{"iccid": known.iccid}, {"iccid": cellbridge_core::testing::iccid(5)}]});
        let created = handle(
            &memory.ports(),
            &lookups,
            tenant_event(SELECT, "demo", Some(body)),
            OffsetDateTime::now_utc(),
        )
        .await;
        assert_eq!(created.status(), StatusCode::ACCEPTED, "{}", json(&created));
        let id = json(&created)["id"].as_str().expect("id").to_owned();
        let stored = memory
            .store
            .get_bulk_change(&demo(), &id)
            .await
            .unwrap()
            .expect("stored");
        let payload: Vec<Value> =
            serde_json::from_slice(&memory.payloads.get(&stored.payload_key).await.unwrap())
                .unwrap();
        let numbers: Vec<&Value> = payload.iter().map(|d| &d["device"]["msisdn"]).collect();
        assert_eq!(
            numbers,
            [&serde_json::json!("+14045550002"), &Value::Null],
            "the inventory's number, none for a SIM it does not know"
        );
    }

    #[tokio::test]
    async fn a_preview_shows_the_selection_and_the_bulk_change_carries_exactly_it() {
        let memory = MemoryPorts::default();
        let sims = inventory().await;
        let providers = jasper_provider().await;
        let lookups = Lookups {
            providers: &providers,
            sims: &sims,
        };
        let now = OffsetDateTime::now_utc();
        let preview = handle(
            &memory.ports(),
            &lookups,
            tenant_event(PREVIEW, "demo", None),
            now,
        )
        .await;
        assert_eq!(preview.status(), StatusCode::OK);
        let preview = json(&preview);
        // Worked out from the sample data: Jasper SIMs (n % 3 == 0), active (n % 10 <= 6), on
        // IOT-1GB ((n / 3) % 3 == 0).
        let expected: Vec<String> = (0..90u32)
            .filter(|n| n % 3 == 0 && n % 10 <= 6 && (n / 3) % 3 == 0)
            .map(cellbridge_core::testing::iccid)
            .collect();
        assert_eq!(preview["matched"], expected.len());
        assert_eq!(preview["accepted"], expected.len(), "{preview}");
        assert_eq!(preview["accounts"][0]["serviceProviderId"], "sp-jasper");
        assert_eq!(preview["refused"]["count"], 0);
        assert!(
            memory.store.bulk_change_count() == 0,
            "a preview writes nothing"
        );

        let created = handle(
            &memory.ports(),
            &lookups,
            tenant_event(SELECT, "demo", None),
            now,
        )
        .await;
        assert_eq!(created.status(), StatusCode::ACCEPTED, "{}", json(&created));
        let id = json(&created)["id"].as_str().expect("id").to_owned();
        let stored = memory
            .store
            .get_bulk_change(&demo(), &id)
            .await
            .unwrap()
            .expect("stored");
        assert_eq!(stored.service_provider_id.as_deref(), Some("sp-jasper"));
        assert_eq!(
            carried_iccids(&memory, &id).await,
            expected,
            "exactly the previewed SIMs"
        );

        // Suspended or deactivated SIMs are refused by name when the filter takes them in.
        let every_jasper = serde_json::json!({"change": {"type": "statusUpdate", "action": "suspend"},
            "filter": {"carrier": "jasper"}});
        let preview = json(
            &handle(
                &memory.ports(),
                &lookups,
                tenant_event(PREVIEW, "demo", Some(every_jasper)),
                now,
            )
            .await,
        );
        assert_eq!(preview["matched"], 30);
        assert!(
            preview["refused"]["count"].as_u64().is_some_and(|n| n > 0),
            "{preview}"
        );
        assert_eq!(
            preview["refused"]["reasons"][0]["reason"],
            "already DEACTIVATED"
        );
    }

    /// The ICCIDs the stored bulk change `id` carries, in its device list's order.
    async fn carried_iccids(memory: &MemoryPorts, id: &str) -> Vec<String> {
        let stored = memory
            .store
            .get_bulk_change(&demo(), id)
            .await
            .unwrap()
            .expect("stored");
        let payload: Vec<Value> =
            serde_json::from_slice(&memory.payloads.get(&stored.payload_key).await.unwrap())
                .unwrap();
        payload
            .iter()
            .filter_map(|d| d["device"]["iccid"].as_str().map(str::to_owned))
            .collect()
    }

    #[tokio::test]
    async fn sims_ticked_by_hand_are_previewed_and_carried_like_a_filters() {
        let memory = MemoryPorts::default();
        let sims = inventory().await;
        let providers = jasper_provider().await;
        let lookups = Lookups {
            providers: &providers,
            sims: &sims,
        };
        let now = OffsetDateTime::now_utc();
        // Jasper SIMs 0, 3 and 6 are active, 9 is not (n % 10 > 6): it is refused by name; the
        // ICCID of another tenant's or no SIM is not matched.
        let ticked: Vec<String> = [0u32, 3, 6, 9, 500]
            .into_iter()
            .map(cellbridge_core::testing::iccid)
            .collect();
        let body = serde_json::json!({"change": {"type": "statusUpdate", "action": "suspend"},
            "filter": {"iccids": ticked}});
        let preview = json(
            &handle(
                &memory.ports(),
                &lookups,
                tenant_event(PREVIEW, "demo", Some(body.clone())),
                now,
            )
            .await,
        );
        assert_eq!(preview["matched"], 4, "{preview}");
        assert_eq!(preview["accepted"], 3, "{preview}");
        assert_eq!(preview["refused"]["sample"][0]["iccid"], ticked[3]);

        let created = handle(
            &memory.ports(),
            &lookups,
            tenant_event(SELECT, "demo", Some(body)),
            now,
        )
        .await;
        assert_eq!(created.status(), StatusCode::ACCEPTED, "{}", json(&created));
        let id = json(&created)["id"].as_str().expect("id").to_owned();
        assert_eq!(
            carried_iccids(&memory, &id).await,
            ticked[..3].to_vec(),
            "the accepted SIMs, in the order ticked"
        );
    }

    #[tokio::test]
    async fn a_selection_that_cannot_be_one_bulk_change_is_refused_with_the_reason() {
        let memory = MemoryPorts::default();
        let sims = inventory().await;
        let providers = jasper_provider().await;
        let lookups = Lookups {
            providers: &providers,
            sims: &sims,
        };
        let now = OffsetDateTime::now_utc();
        let suspend = serde_json::json!({"type": "statusUpdate", "action": "suspend"});
        let cases = [
            (
                "demo",
                serde_json::json!({"change": suspend, "filter": {"costCenter": "CC-404"}}),
                "filter",
                "0 SIMs",
            ),
            (
                "demo",
                serde_json::json!({"change": suspend, "filter": {"status": "active"}}),
                "filter",
                "3 carrier accounts",
            ),
            (
                "demo",
                serde_json::json!({"change": suspend, "filter": {"plan": "x"}}),
                "filter.plan",
                "unknown",
            ),
            (
                "demo",
                serde_json::json!({"change": {"type": "usernameCostCenterEdit"}, "filter": {"carrier": "jasper"}}),
                "change.type",
                "list the devices",
            ),
            (
                "demo",
                serde_json::json!({"change": suspend, "filter": {"carrier": "jasper"}, "devices": [{"iccid": cellbridge_core::testing::iccid(1)}]}),
                "devices",
                "not both",
            ),
            // Another tenant's inventory is not there to select from.
            (
                "globex",
                serde_json::json!({"change": suspend, "filter": {"carrier": "jasper"}}),
                "filter",
                "0 SIMs",
            ),
        ];
        for (tenant, body, field, says) in cases {
            let response = handle(
                &memory.ports(),
                &lookups,
                tenant_event(SELECT, tenant, Some(body.clone())),
                now,
            )
            .await;
            assert_eq!(
                response.status(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "{body}"
            );
            let problem = json(&response);
            assert_eq!(problem["errors"][0]["field"], field, "{problem}");
            assert!(
                problem["errors"][0]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(says)),
                "{problem}"
            );
        }
        assert_nothing_written(&memory);
    }
}
