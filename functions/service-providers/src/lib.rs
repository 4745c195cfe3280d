//! A tenant's carrier accounts (service providers): `GET /service-providers`, `POST`, `GET`,
//! `PATCH` and `DELETE /service-providers/{id}`, and `POST /service-providers/{id}/test`, one
//! cheap authenticated call with the stored credentials. Operators read; admins change. The
//! credentials go to the vault, one secret per provider, and are never returned or logged; another
//! tenant's provider does not exist here (404).

use cellbridge_bulk_changes::bulk_change::BulkChangeStatus;
use cellbridge_bulk_changes::ports::BulkChangeStore;
use cellbridge_carriers::provider::{
    parse_new_provider, parse_provider_change, AccountIdentity, ProviderView, ServiceProvider,
    TestResult, MAX_REFUSED_TESTS,
};
use cellbridge_carriers::provider_ports::{CredentialVault, ProviderStore, VaultError};
use cellbridge_carriers::provider_probe::{ProbeOutcome, ProviderProbe};
use cellbridge_core::store::PageRequest;
use cellbridge_core::tenant::TenantId;
use cellbridge_edge::http::body::json_body;
use cellbridge_edge::http::page_view::PageView;
use cellbridge_edge::http::paging::{allow_query, page_request};
use cellbridge_edge::http::problem::Problem;
use cellbridge_edge::http::{caller, json_response, route_key};
use cellbridge_identity::role::Role;
use lambda_http::http::{header, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use time::OffsetDateTime;

cellbridge_core::composite_config! {
    /// This function's configuration, read once at cold start: where providers and their
    /// credentials are kept, and the bulk changes that may still use one.
    pub struct Config {
        pub providers: cellbridge_carriers::wiring::ProvidersConfig,
        pub bulk_changes: cellbridge_bulk_changes::dynamodb::TableNames,
    }
}

/// Bulk changes in these states may still call their provider's carrier.
const IN_FLIGHT: [BulkChangeStatus; 3] = [
    BulkChangeStatus::New,
    BulkChangeStatus::Scheduled,
    BulkChangeStatus::Processing,
];

pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// What the handler works with.
pub struct Ports<'a> {
    pub providers: &'a dyn ProviderStore,
    pub bulk_changes: &'a dyn BulkChangeStore,
    pub vault: &'a dyn CredentialVault,
    pub probe: &'a dyn ProviderProbe,
    pub config: &'a Config,
}

/// The ids of the tenant's bulk changes still in flight on provider `id`.
async fn bulk_changes_using(
    store: &dyn BulkChangeStore,
    tenant: &TenantId,
    id: &str,
) -> Result<Vec<String>, Problem> {
    let mut users = Vec::new();
    for status in IN_FLIGHT {
        let mut cursor = None;
        loop {
            let page = store
                .list_bulk_changes(tenant, Some(status), &PageRequest { limit: 100, cursor })
                .await?;
            users.extend(
                page.items
                    .into_iter()
                    .filter(|change| change.service_provider_id.as_deref() == Some(id))
                    .map(|change| change.bulk_change_id),
            );
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
    Ok(users)
}

pub async fn handle(ports: &Ports<'_>, request: Request, now: OffsetDateTime) -> Response<Body> {
    match respond(ports, &request, now).await {
        Ok(response) => response,
        Err(problem) => problem.into_response(),
    }
}

fn vault_problem(error: VaultError) -> Problem {
    match error {
        VaultError::Unavailable(detail) => Problem::unavailable(&detail),
        VaultError::Rejected(detail) => Problem::internal(&detail),
    }
}

async fn respond(
    ports: &Ports<'_>,
    request: &Request,
    now: OffsetDateTime,
) -> Result<Response<Body>, Problem> {
    let caller = caller(request)?;
    let tenant = caller.tenant().clone();
    let route = route_key(request);
    let needed = if route.starts_with("GET ") {
        Role::Operator
    } else {
        Role::Admin
    };
    caller.require(needed)?;
    let id = request
        .path_parameters()
        .first("id")
        .unwrap_or_default()
        .to_owned();
    match route.as_str() {
        "GET /service-providers" => {
            allow_query(request, &["limit", "cursor"])?;
            let page = ports
                .providers
                .list_providers(&tenant, &page_request(request)?)
                .await?;
            Ok(json_response(
                StatusCode::OK,
                &PageView::from_page(&page, ProviderView::from),
            ))
        }
        "POST /service-providers" => {
            allow_query(request, &[])?;
            let body = json_body(
                request,
                MAX_BODY_BYTES,
                "send a name, a carrier, an endpoint and the carrier's credentials",
            )?;
            let new = parse_new_provider(body).map_err(Problem::invalid)?;
            let identity =
                AccountIdentity::of(new.carrier, &new.endpoint, &new.settings, &new.credentials);
            if let Some(existing) = provider_on_account(ports, &tenant, &identity, None).await? {
                return Err(duplicate(&existing));
            }
            let id = uuid::Uuid::now_v7().to_string();
            let secret_id = ports
                .vault
                .put(
                    &ports.config.providers.secret_name(&tenant, &id),
                    &new.credentials,
                )
                .await
                .map_err(vault_problem)?;
            let provider = new.into_provider(tenant.clone(), id.clone(), secret_id.clone(), now);
            if let Err(error) = ports.providers.create_provider(&provider).await {
                // No record points at the secret: remove it rather than leave credentials behind.
                let _ = ports.vault.delete(&secret_id).await;
                return Err(error.into());
            }
            tracing::info!(provider = %id, carrier = provider.carrier.as_str(), tenant = %tenant, by = %caller.principal(), "service provider created");
            let mut response = json_response(StatusCode::CREATED, &ProviderView::from(&provider));
            if let Ok(location) = format!("/service-providers/{id}").parse() {
                response.headers_mut().insert(header::LOCATION, location);
            }
            Ok(response)
        }
        "GET /service-providers/{id}" => {
            allow_query(request, &[])?;
            let provider = find(ports, &tenant, &id).await?;
            Ok(json_response(
                StatusCode::OK,
                &ProviderView::from(&provider),
            ))
        }
        "PATCH /service-providers/{id}" => {
            allow_query(request, &[])?;
            let body = json_body(
                request,
                MAX_BODY_BYTES,
                "send the fields to change (name, portalType, endpoint, limits, settings, credentials)",
            )?;
            let mut provider = find(ports, &tenant, &id).await?;
            let change = parse_provider_change(provider.carrier, body).map_err(Problem::invalid)?;
            // A change of account must not land on another provider's.
            if change.endpoint.is_some()
                || change.settings.is_some()
                || change.credentials.is_some()
            {
                let credentials = match &change.credentials {
                    Some(credentials) => credentials.clone(),
                    None => ports
                        .vault
                        .get(&provider.secret_id)
                        .await
                        .map_err(vault_problem)?,
                };
                let identity = AccountIdentity::of(
                    provider.carrier,
                    change.endpoint.as_deref().unwrap_or(&provider.endpoint),
                    change.settings.as_ref().unwrap_or(&provider.settings),
                    &credentials,
                );
                if let Some(existing) =
                    provider_on_account(ports, &tenant, &identity, Some(&provider.id)).await?
                {
                    return Err(duplicate(&existing));
                }
            }
            if let Some(credentials) = &change.credentials {
                // A new version of the same secret: the worker reads it at its next call.
                provider.secret_id = ports
                    .vault
                    .put(
                        &ports.config.providers.secret_name(&tenant, &id),
                        credentials,
                    )
                    .await
                    .map_err(vault_problem)?;
                provider.credentials_updated_at = now;
                provider.refused_tests = 0;
            }
            if let Some(name) = change.name {
                provider.name = name;
            }
            if let Some(portal_type) = change.portal_type {
                provider.portal_type = portal_type;
            }
            if let Some(endpoint) = change.endpoint {
                provider.endpoint = endpoint;
            }
            if let Some(limits) = change.limits {
                provider.limits = limits;
            }
            if let Some(settings) = change.settings {
                provider.settings = settings;
            }
            save(ports, &mut provider, now).await?;
            tracing::info!(provider = %id, tenant = %tenant, by = %caller.principal(), credentials = change.credentials.is_some(), "service provider changed");
            Ok(json_response(
                StatusCode::OK,
                &ProviderView::from(&provider),
            ))
        }
        "DELETE /service-providers/{id}" => {
            allow_query(request, &[])?;
            let provider = find(ports, &tenant, &id).await?;
            // Its bulk changes would fail every device left on losing their account.
            let users = bulk_changes_using(ports.bulk_changes, &tenant, &id).await?;
            if let Some(first) = users.first() {
                return Err(Problem::conflict(
                    "service-provider-in-use",
                    "The service provider is in use",
                    format!(
                        "{} bulk change(s) still use this service provider (the first: {first}); delete it once they are done",
                        users.len()
                    ),
                ));
            }
            if !ports.providers.delete_provider(&tenant, &id).await? {
                return Err(Problem::not_found("this service provider"));
            }
            ports
                .vault
                .delete(&provider.secret_id)
                .await
                .map_err(vault_problem)?;
            tracing::info!(provider = %id, tenant = %tenant, by = %caller.principal(), "service provider deleted");
            Ok(Response::builder()
                .status(StatusCode::NO_CONTENT)
                .body(Body::Empty)
                .unwrap_or_default())
        }
        "POST /service-providers/{id}/test" => {
            allow_query(request, &[])?;
            let mut provider = find(ports, &tenant, &id).await?;
            if provider.refused_tests >= MAX_REFUSED_TESTS {
                return Err(Problem::conflict(
                    "credentials-refused",
                    "The carrier refused these credentials",
                    format!(
                        "the carrier refused these credentials {} times in a row; update them (PATCH with new credentials) before testing again, as carriers lock a login after a few failures",
                        provider.refused_tests
                    ),
                ));
            }
            let credentials = ports
                .vault
                .get(&provider.secret_id)
                .await
                .map_err(vault_problem)?;
            let outcome = ports.probe.probe(&provider, &credentials).await;
            provider.refused_tests = match outcome {
                ProbeOutcome::Refused => provider.refused_tests + 1,
                ProbeOutcome::Accepted => 0,
                _ => provider.refused_tests,
            };
            let result = TestResult {
                at: now,
                ok: outcome.is_ok(),
                detail: outcome.detail(),
            };
            provider.last_test = Some(result.clone());
            save(ports, &mut provider, now).await?;
            tracing::info!(provider = %id, tenant = %tenant, ok = result.ok, "service provider tested");
            Ok(json_response(StatusCode::OK, &result))
        }
        _ => Err(Problem::not_found("this route")),
    }
}

fn duplicate(existing: &ServiceProvider) -> Problem {
    Problem::conflict(
        "service-provider-duplicate",
        "The carrier account has a service provider already",
        format!(
            "service provider {} ({}) uses this carrier account already; two would list the same SIMs and take them from each other: change that one instead",
            existing.id, existing.name
        ),
    )
}

/// The tenant's provider (other than `except`) on the carrier account `identity` names, if any:
/// only providers at the same carrier and endpoint have their credentials read.
async fn provider_on_account(
    ports: &Ports<'_>,
    tenant: &TenantId,
    identity: &AccountIdentity,
    except: Option<&str>,
) -> Result<Option<ServiceProvider>, Problem> {
    let mut cursor = None;
    loop {
        let page = ports
            .providers
            .list_providers(tenant, &PageRequest { limit: 100, cursor })
            .await?;
        for provider in page.items {
            if except == Some(provider.id.as_str())
                || AccountIdentity::place(provider.carrier, &provider.endpoint) != identity.place
            {
                continue;
            }
            let credentials = ports
                .vault
                .get(&provider.secret_id)
                .await
                .map_err(vault_problem)?;
            let theirs = AccountIdentity::of(
                provider.carrier,
                &provider.endpoint,
                &provider.settings,
                &credentials,
            );
            if &theirs == identity {
                return Ok(Some(provider));
            }
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(None),
        }
    }
}

async fn find(
    ports: &Ports<'_>,
    tenant: &cellbridge_core::tenant::TenantId,
    id: &str,
) -> Result<ServiceProvider, Problem> {
    // Ids are UUIDs; anything else cannot exist, and is not worth a store round trip.
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(Problem::not_found("this service provider"));
    }
    ports
        .providers
        .get_provider(tenant, id)
        .await?
        .ok_or_else(|| Problem::not_found("this service provider"))
}

/// Writes `provider` as its next version, unless someone changed it since it was read.
async fn save(
    ports: &Ports<'_>,
    provider: &mut ServiceProvider,
    now: OffsetDateTime,
) -> Result<(), Problem> {
    provider.version += 1;
    provider.updated_at = now;
    if ports.providers.update_provider(provider).await? {
        Ok(())
    } else {
        Err(Problem::conflict(
            "changed-meanwhile",
            "The service provider changed meanwhile",
            "another change to this service provider came first; read it again and retry",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellbridge_bulk_changes::memory::MemoryStore;
    use cellbridge_carriers::provider::Credentials;
    use cellbridge_carriers::provider_memory::{MemoryProviders, MemoryVault};
    use lambda_http::request::from_str;
    use serde_json::{json, Value};
    use std::sync::Mutex;

    const CREATE: &str = include_str!("../../../events/service-providers/create.json");
    const LIST: &str = include_str!("../../../events/service-providers/list.json");
    const TEST: &str = include_str!("../../../events/service-providers/test.json");
    const NOW: OffsetDateTime = OffsetDateTime::UNIX_EPOCH;

    /// Answers what it is told to, and remembers what it was given.
    struct ScriptedProbe {
        outcome: Mutex<ProbeOutcome>,
        secrets_seen: Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl ProviderProbe for ScriptedProbe {
        async fn probe(&self, _: &ServiceProvider, credentials: &Credentials) -> ProbeOutcome {
            use secrecy::ExposeSecret;
            self.secrets_seen
                .lock()
                .unwrap()
                .push(credentials.secret().expose_secret().to_owned());
            self.outcome.lock().unwrap().clone()
        }
    }

    struct World {
        providers: MemoryProviders,
        vault: MemoryVault,
        probe: ScriptedProbe,
        bulk_changes: MemoryStore,
        config: Config,
    }

    impl World {
        fn new() -> Self {
            Self {
                providers: MemoryProviders::default(),
                vault: MemoryVault::default(),
                probe: ScriptedProbe {
                    outcome: Mutex::new(ProbeOutcome::Accepted),
                    secrets_seen: Mutex::new(Vec::new()),
                },
                bulk_changes: MemoryStore::default(),
                config: Config {
                    providers: cellbridge_carriers::wiring::ProvidersConfig {
                        table: "providers".into(),
                        secret_prefix: "cellbridge/providers/".into(),
                    },
                    bulk_changes: cellbridge_bulk_changes::dynamodb::TableNames {
                        bulk_changes: "bulk-changes".into(),
                        device_changes: "device-changes".into(),
                        audit_log: "audit".into(),
                        idempotency: "idempotency".into(),
                        sims: cellbridge_sims::wiring::SimTables {
                            sims: "sims".into(),
                            history: "sim-history".into(),
                            sync: "carrier-sync".into(),
                            usage: "sim-usage".into(),
                        },
                    },
                },
            }
        }

        async fn call(&self, request: Request) -> (StatusCode, Value) {
            let ports = Ports {
                providers: &self.providers,
                bulk_changes: &self.bulk_changes,
                vault: &self.vault,
                probe: &self.probe,
                config: &self.config,
            };
            let response = handle(&ports, request, NOW).await;
            let status = response.status();
            let body = match response.body() {
                Body::Text(text) => serde_json::from_str(text).unwrap_or(Value::Null),
                Body::Binary(bytes) => serde_json::from_slice(bytes).unwrap_or(Value::Null),
                Body::Empty => Value::Null,
                _ => Value::Null,
            };
            (status, body)
        }
    }

    /// `sample` as `tenant`'s caller with `roles`, at `path` (the route key kept).
    fn event(sample: &str, tenant: &str, roles: &str, id: Option<&str>) -> Request {
        let mut value: Value = serde_json::from_str(sample).unwrap();
        let authorizer = &mut value["requestContext"]["authorizer"]["lambda"];
        authorizer["tenant"] = json!(tenant);
        authorizer["roles"] = json!(roles);
        if let Some(id) = id {
            value["pathParameters"] = json!({ "id": id });
            let path = value["rawPath"]
                .as_str()
                .unwrap()
                .replace("019aa8e4-0000-7000-8000-000000000001", id);
            value["rawPath"] = json!(path);
            value["requestContext"]["http"]["path"] = json!(path);
        }
        from_str(&value.to_string()).unwrap()
    }

    fn with_route(sample: &str, method: &str, route: &str, body: Option<Value>) -> String {
        let mut value: Value = serde_json::from_str(sample).unwrap();
        value["routeKey"] = json!(format!("{method} {route}"));
        value["requestContext"]["routeKey"] = json!(format!("{method} {route}"));
        value["requestContext"]["http"]["method"] = json!(method);
        match body {
            Some(body) => {
                value["body"] = json!(body.to_string());
                value["headers"]["content-type"] = json!("application/json");
            }
            None => {
                value.as_object_mut().unwrap().remove("body");
            }
        }
        value.to_string()
    }

    #[tokio::test]
    async fn the_sample_create_stores_the_credentials_in_the_vault_only() {
        let world = World::new();
        let (status, created) = world.call(from_str(CREATE).unwrap()).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert_eq!(created["carrier"], "jasper");
        assert_eq!(created["credentials"], json!(["username", "apiKey"]));
        assert!(!created.to_string().contains("sample-api-key"));
        let id = created["id"].as_str().unwrap();
        assert_eq!(
            world.vault.names(),
            [format!("cellbridge/providers/demo/{id}")]
        );
        let stored = world
            .providers
            .get_provider(
                &cellbridge_core::tenant::TenantId::parse("demo").unwrap(),
                id,
            )
            .await
            .unwrap()
            .unwrap();
        assert!(!serde_json::to_string(&stored)
            .unwrap()
            .contains("sample-api-key"));

        let (status, list) = world.call(event(LIST, "demo", "operator", None)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list["items"][0]["id"], created["id"]);
    }

    #[tokio::test]
    async fn operators_read_admins_change_and_other_tenants_see_nothing() {
        let world = World::new();
        let (_, created) = world.call(from_str(CREATE).unwrap()).await;
        let id = created["id"].as_str().unwrap();
        let (status, _) = world.call(event(CREATE, "demo", "operator", None)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "operators cannot create");
        let (status, _) = world.call(event(LIST, "demo", "viewer", None)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "viewers cannot list");
        let (status, list) = world.call(event(LIST, "globex", "admin", None)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list["items"], json!([]));
        let (status, _) = world.call(event(TEST, "globex", "admin", Some(id))).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let delete = with_route(LIST, "DELETE", "/service-providers/{id}", None);
        let (status, _) = world
            .call(event(&delete, "globex", "admin", Some(id)))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // A bulk change still going through it keeps it; once done, it can go.
        let demo = cellbridge_core::tenant::TenantId::parse("demo").unwrap();
        let (mut change, _) =
            cellbridge_bulk_changes::testing::sample_bulk_change("demo", "bc-1", 1, true);
        change.service_provider_id = Some(id.to_owned());
        change.status = BulkChangeStatus::Processing;
        world
            .bulk_changes
            .create_bulk_change(&change, None)
            .await
            .unwrap();
        let (status, problem) = world.call(event(&delete, "demo", "admin", Some(id))).await;
        assert_eq!(status, StatusCode::CONFLICT, "{problem}");
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| d.contains("bc-1")),
            "{problem}"
        );
        world
            .bulk_changes
            .transition(
                &demo,
                "bc-1",
                BulkChangeStatus::Processing,
                BulkChangeStatus::Completed,
            )
            .await
            .unwrap();
        let (status, _) = world.call(event(&delete, "demo", "admin", Some(id))).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(world.vault.names().is_empty(), "the secret goes too");
    }

    #[tokio::test]
    async fn tests_record_their_outcome_and_stop_after_refusals_until_new_credentials() {
        let world = World::new();
        let (_, created) = world.call(from_str(CREATE).unwrap()).await;
        let id = created["id"].as_str().unwrap();
        let (status, result) = world.call(event(TEST, "demo", "admin", Some(id))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(result["ok"], true);
        assert!(
            world.probe.secrets_seen.lock().unwrap()[0].contains("sample-api-key"),
            "the probe gets the stored credentials"
        );

        *world.probe.outcome.lock().unwrap() = ProbeOutcome::Refused;
        for _ in 0..MAX_REFUSED_TESTS {
            let (status, result) = world.call(event(TEST, "demo", "admin", Some(id))).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(result["ok"], false);
        }
        let (status, problem) = world.call(event(TEST, "demo", "admin", Some(id))).await;
        assert_eq!(status, StatusCode::CONFLICT, "{problem}");
        assert_eq!(world.probe.secrets_seen.lock().unwrap().len(), 3);

        let patch = with_route(
            LIST,
            "PATCH",
            "/service-providers/{id}",
            Some(json!({"credentials": {"username": "ops", "apiKey": "rotated-key"}})),
        );
        let (status, changed) = world.call(event(&patch, "demo", "admin", Some(id))).await;
        assert_eq!(status, StatusCode::OK, "{changed}");
        assert_eq!(changed["lastTest"]["ok"], false);
        *world.probe.outcome.lock().unwrap() = ProbeOutcome::Accepted;
        let (status, result) = world.call(event(TEST, "demo", "admin", Some(id))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(result["ok"], true);
        assert!(world.probe.secrets_seen.lock().unwrap()[3].contains("rotated-key"));
    }

    #[tokio::test]
    async fn one_provider_per_carrier_account_and_tenant() {
        let world = World::new();
        let (status, first) = world.call(from_str(CREATE).unwrap()).await;
        assert_eq!(status, StatusCode::CREATED, "{first}");
        let body = |username: &str, endpoint: &str| {
            json!({"name": format!("Jasper as {username}"), "carrier": "jasper",
                   "endpoint": endpoint,
                   "credentials": {"username": username, "apiKey": "another-key"}})
        };
        let endpoint = "http://127.0.0.1:4010/jasper/rws/api/v1";
        let create = |body: Value| {
            let sample = with_route(CREATE, "POST", "/service-providers", Some(body));
            event(&sample, "demo", "admin", None)
        };
        // The same login at the same endpoint, whatever the key or a trailing slash.
        let (status, problem) = world
            .call(create(body("cellbridge", &format!("{endpoint}/"))))
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{problem}");
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| d.contains(first["id"].as_str().unwrap())),
            "{problem}"
        );
        assert!(!problem.to_string().contains("another-key"));
        // Another login, or another tenant, is another account.
        let (status, second) = world.call(create(body("field-ops", endpoint))).await;
        assert_eq!(status, StatusCode::CREATED, "{second}");
        let elsewhere = with_route(
            CREATE,
            "POST",
            "/service-providers",
            Some(body("cellbridge", endpoint)),
        );
        let (status, _) = world.call(event(&elsewhere, "globex", "admin", None)).await;
        assert_eq!(status, StatusCode::CREATED);
        // Nor can a change move a provider onto another's account.
        let id = second["id"].as_str().unwrap();
        let patch = with_route(
            CREATE,
            "PATCH",
            "/service-providers/{id}",
            Some(json!({"credentials": {"username": "cellbridge", "apiKey": "k"}})),
        );
        let (status, problem) = world.call(event(&patch, "demo", "admin", Some(id))).await;
        assert_eq!(status, StatusCode::CONFLICT, "{problem}");
        let rename = with_route(
            CREATE,
            "PATCH",
            "/service-providers/{id}",
            Some(json!({"name": "Field operations"})),
        );
        let (status, _) = world.call(event(&rename, "demo", "admin", Some(id))).await;
        assert_eq!(status, StatusCode::OK, "a change that keeps the account");
    }

    #[tokio::test]
    async fn invalid_requests_name_their_fields() {
        let world = World::new();
        let bad = with_route(
            CREATE,
            "POST",
            "/service-providers",
            Some(json!({"name": "x", "carrier": "sprint", "endpoint": "ftp://x"})),
        );
        let (status, problem) = world.call(event(&bad, "demo", "admin", None)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, ["carrier", "endpoint"]);
    }
}
