//! docs/openapi.yaml against what exists: the template's routes and their authorizer, the
//! code's enumerations, and the fields the API's views really serialize.

use anyhow::{Context, Result};
use cellbridge::bulk_changes::bulk_change::{BulkChangeStatus, DeviceChange};
use cellbridge::bulk_changes::capabilities::{capabilities, Completion};
use cellbridge::bulk_changes::change::{Carrier, ChangeSpec};
use cellbridge::bulk_changes::views::{BulkChangeView, DeviceChangeView};
use cellbridge::carriers::provider::{parse_new_provider, PortalType, ProviderView, TestResult};
use cellbridge::devices::command::{Command, CommandStatus};
use cellbridge::devices::views::{CommandView, DeviceView};
use cellbridge::identity::role::Role;
use cellbridge::identity::views::UserView;
use devstack::api_gateway::routes_of;
use devstack::template::{ResourceKind, Resources, Template};
use serde_json::Value;
use std::collections::BTreeSet;

fn spec() -> Result<Value> {
    let path = devstack::tools::workspace_root().join("docs/openapi.yaml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(serde_norway::from_str(&text)?)
}

fn template_routes() -> Result<Vec<devstack::api_gateway::ApiRoute>> {
    let template = Template::load(&devstack::tools::workspace_root().join("template.yaml"))?;
    let mut resources = Resources::planned(&template);
    let queues: Vec<String> = template
        .of_kind(ResourceKind::Queue)
        .map(|q| q.logical_id.clone())
        .collect();
    for id in queues {
        let arn = resources.arn(&id).context("queue ARN")?.to_owned();
        resources.set_queue(&id, format!("http://localhost:5000/000000000000/{id}"), arn);
    }
    let functions = template.functions(&resources)?;
    let routes = routes_of(&functions, &template.api_auth(&resources)?)?;
    // The console's pages share the HTTP API but are a web app (HTML, docs/console.md), not
    // part of the API's contract.
    Ok(routes
        .into_iter()
        .filter(|r| {
            !r.path
                .as_deref()
                .is_some_and(|p| p == "/console" || p.starts_with("/console/"))
        })
        .collect())
}

fn enum_of(spec: &Value, schema: &str) -> BTreeSet<String> {
    spec["components"]["schemas"][schema]["enum"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

fn names<'a>(items: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    items.into_iter().map(str::to_owned).collect()
}

#[test]
fn every_route_of_the_template_is_documented_with_its_authorization() -> Result<()> {
    let spec = spec()?;
    let documented: BTreeSet<(String, String)> = spec["paths"]
        .as_object()
        .context("paths")?
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .into_iter()
                .flatten()
                .map(move |(method, _)| (method.to_uppercase(), path.clone()))
        })
        .collect();
    let routes = template_routes()?;
    let served: BTreeSet<(String, String)> = routes
        .iter()
        .map(|r| (r.method.clone(), r.path.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        documented, served,
        "docs/openapi.yaml and template.yaml list different routes"
    );
    for route in &routes {
        let path = route.path.as_deref().unwrap_or_default();
        let operation = &spec["paths"][path][route.method.to_lowercase()];
        let open = operation["security"] == serde_json::json!([]);
        assert_eq!(
            open,
            route.authorizer.is_none(),
            "{}: documented {}, served {}",
            route.route_key(),
            if open { "open" } else { "with a token" },
            if route.authorizer.is_none() {
                "open"
            } else {
                "behind the authorizer"
            }
        );
        let role = operation["x-cellbridge-role"].as_str().unwrap_or_default();
        let expected_roles = ["none", "viewer", "operator", "admin"];
        assert!(
            expected_roles.contains(&role),
            "{}: role {role:?}",
            route.route_key()
        );
        assert_eq!(role == "none", open, "{}", route.route_key());
        for (status, response) in operation["responses"].as_object().context("responses")? {
            if status.starts_with('4') || status.starts_with('5') {
                let name = response["$ref"]
                    .as_str()
                    .and_then(|r| r.rsplit('/').next())
                    .unwrap_or_default();
                let content = &spec["components"]["responses"][name]["content"];
                assert!(
                    content.get("application/problem+json").is_some(),
                    "{} {status}: errors are problem documents",
                    route.route_key()
                );
            }
        }
    }
    Ok(())
}

#[test]
fn the_enumerations_are_the_codes() -> Result<()> {
    let spec = spec()?;
    assert_eq!(
        enum_of(&spec, "Carrier"),
        names(Carrier::ALL.map(Carrier::as_str))
    );
    assert_eq!(
        enum_of(&spec, "BulkChangeStatus"),
        names(BulkChangeStatus::ALL.map(BulkChangeStatus::as_str))
    );
    assert_eq!(enum_of(&spec, "ChangeType"), names(ChangeSpec::TYPE_NAMES));
    assert_eq!(enum_of(&spec, "Role"), names(Role::ALL.map(Role::as_str)));
    assert_eq!(
        enum_of(&spec, "CommandStatus"),
        names(CommandStatus::ALL.map(CommandStatus::as_str))
    );
    Ok(())
}

/// The schema's properties are exactly the view's fields, and its required ones always present.
fn check_schema(spec: &Value, schema: &str, serialized: &Value, optional_absent: &[&str]) {
    let schema_value = &spec["components"]["schemas"][schema];
    let properties: BTreeSet<String> = schema_value["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    let required: BTreeSet<String> = schema_value["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let fields: BTreeSet<String> = serialized
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    assert!(
        fields.is_subset(&properties),
        "{schema}: undocumented fields {:?}",
        fields.difference(&properties).collect::<Vec<_>>()
    );
    assert!(
        required.is_subset(&fields),
        "{schema}: required but missing {:?}",
        required.difference(&fields).collect::<Vec<_>>()
    );
    let expected_absent: BTreeSet<String> = names(optional_absent.iter().copied());
    let absent: BTreeSet<String> = properties.difference(&fields).cloned().collect();
    assert_eq!(
        absent, expected_absent,
        "{schema}: documented fields this sample lacks"
    );
}

/// The API client reads a view into the same type the function wrote it from: reading `json`
/// back and writing it again changes nothing.
fn reads_back<T: serde::Serialize + serde::de::DeserializeOwned>(json: &Value) -> Result<()> {
    let read: T =
        serde_json::from_value(json.clone()).with_context(|| format!("reading back {json}"))?;
    assert_eq!(&serde_json::to_value(read)?, json);
    Ok(())
}

#[test]
fn the_carrier_capabilities_are_documented_as_served() -> Result<()> {
    let spec = spec()?;
    let completions: Vec<String> = [
        Completion::Synchronous,
        Completion::Callback,
        Completion::Polling,
        Completion::NoCarrierCall,
    ]
    .iter()
    .map(|c| serde_json::to_value(c).map(|v| v.as_str().unwrap_or_default().to_owned()))
    .collect::<Result<_, _>>()?;
    let documented: BTreeSet<String> = spec["components"]["schemas"]["ChangeSupport"]["properties"]
        ["completion"]["enum"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    assert_eq!(documented, names(completions.iter().map(String::as_str)));
    let thingspace = serde_json::to_value(capabilities(Carrier::ThingSpace))?;
    check_schema(&spec, "CarrierCapabilities", &thingspace, &[]);
    check_schema(
        &spec,
        "DocumentedLimits",
        &thingspace["limits"],
        &["callsPerSecond", "callsInFlight", "pageSize"],
    );
    check_schema(
        &spec,
        "ChangeSupport",
        &thingspace["changes"][0],
        &["unsupportedFields"],
    );
    let telegence = serde_json::to_value(capabilities(Carrier::Telegence))?;
    let plan = telegence["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "carrierRatePlanChange")
        .context("Telegence changes rate plans")?;
    check_schema(&spec, "ChangeSupport", plan, &[]);
    let jasper = serde_json::to_value(capabilities(Carrier::Jasper))?;
    check_schema(&spec, "DocumentedLimits", &jasper["limits"], &[]);
    Ok(())
}

#[test]
fn the_service_provider_schema_matches_its_view() -> Result<()> {
    let spec = spec()?;
    let body = serde_json::json!({
        "name": "Verizon production", "carrier": "thingSpace", "endpoint": "https://thingspace.verizon.com/api",
        "limits": {"callsPerSecond": 2},
        "settings": {"accountName": "0342351234-00001"},
        "credentials": {"appKey": "k", "appSecret": "s", "username": "u", "password": "p"}
    });
    let new =
        parse_new_provider(body.to_string().as_bytes()).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let at = time::OffsetDateTime::UNIX_EPOCH;
    let mut provider = new.into_provider(
        cellbridge::common::tenant::TenantId::parse("demo").context("tenant")?,
        "019aa8e4-0000-7000-8000-000000000001".into(),
        "s".into(),
        at,
    );
    let view = serde_json::to_value(ProviderView::from(&provider))?;
    check_schema(&spec, "ServiceProvider", &view, &["lastTest"]);
    check_schema(
        &spec,
        "ProviderLimits",
        &view["limits"],
        &["burst", "maxInFlight"],
    );
    reads_back::<ProviderView>(&view)?;
    provider.last_test = Some(TestResult {
        at,
        ok: true,
        detail: "the carrier accepted the credentials".into(),
    });
    let view = serde_json::to_value(ProviderView::from(&provider))?;
    check_schema(&spec, "ServiceProvider", &view, &[]);
    check_schema(&spec, "ProviderTest", &view["lastTest"], &[]);
    let portal_types: Vec<&str> = PortalType::ALL.iter().map(|p| p.as_str()).collect();
    assert_eq!(enum_of(&spec, "PortalType"), names(portal_types));
    Ok(())
}

#[test]
fn the_schemas_match_what_the_views_serialize() -> Result<()> {
    let spec = spec()?;
    let (change, requests) = cellbridge::testing::sample_bulk_change(
        "demo",
        "019aa8e4-6f2a-7c3d-9b1e-2f4a5c6d7e80",
        1,
        true,
    );
    let view = serde_json::to_value(BulkChangeView::from(&change))?;
    check_schema(
        &spec,
        "BulkChange",
        &view,
        &["failureReason", "serviceProviderId"],
    );
    reads_back::<BulkChangeView>(&view)?;
    let mut failed = change.clone();
    failed.status = cellbridge::bulk_changes::bulk_change::BulkChangeStatus::Failed;
    failed.failure_reason = Some("the device list was never stored".into());
    failed.service_provider_id = Some("019aa8e4-0000-7000-8000-000000000001".into());
    let view = serde_json::to_value(BulkChangeView::from(&failed))?;
    check_schema(&spec, "BulkChange", &view, &[]);
    reads_back::<BulkChangeView>(&view)?;
    let request = requests.into_iter().next().context("a device")?;
    let device = DeviceChange::pending(&change.bulk_change_id, 0, request, change.created_at);
    let view = serde_json::to_value(DeviceChangeView::from(&device))?;
    check_schema(
        &spec,
        "DeviceChange",
        &view,
        &["msisdn", "imei", "edit", "statusReason"],
    );
    reads_back::<DeviceChangeView>(&view)?;
    let user = cellbridge::identity::ports::UserRecord {
        username: cellbridge::identity::username::Username::parse("ops@demo.example")
            .context("username")?,
        tenant: change.tenant_id.clone(),
        roles: cellbridge::identity::role::Roles::new([Role::Operator]),
        password_hash: "$argon2id$...".into(),
        failed_logins: 0,
        locked_until: None,
        created_at: change.created_at,
    };
    let view = serde_json::to_value(UserView::new(&user, change.created_at))?;
    check_schema(&spec, "User", &view, &[]);
    reads_back::<UserView>(&view)?;
    let device = cellbridge::devices::ports::DeviceRecord {
        thing_name: cellbridge::devices::registration::ThingName::parse("trk-1").context("name")?,
        tenant: change.tenant_id.clone(),
        iccid: cellbridge::testing::iccid(1),
        imei: Some("490154203237518".to_owned()),
        model: "TRK-200".to_owned(),
        firmware: "2.4.1".to_owned(),
        registered_at: change.created_at,
        presence: cellbridge::devices::presence::Presence {
            connected: true,
            version: None,
            last_seen: Some(change.created_at),
            timed_out: false,
        },
    };
    let latest = cellbridge::devices::ports::StoredPoint {
        at: change.created_at,
        received_at: change.created_at,
        metrics: serde_json::Map::new(),
    };
    let view = serde_json::to_value(DeviceView::new(&device, Some(&latest), change.created_at))?;
    check_schema(&spec, "RegisteredDevice", &view, &[]);
    reads_back::<DeviceView>(&view)?;
    let request = cellbridge::devices::command::parse_command_request(
        br#"{"name": "set-interval", "params": {"seconds": 5}}"#,
    )
    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let queued = Command::queued(
        device.thing_name.clone(),
        device.tenant.clone(),
        cellbridge::devices::command::CommandId::new_v7(),
        &request,
        change.created_at,
    );
    let sent = queued
        .after(CommandStatus::Sent, change.created_at, None)
        .context("QUEUED becomes SENT")?;
    let view = serde_json::to_value(CommandView::from(&sent))?;
    check_schema(&spec, "Command", &view, &[]);
    reads_back::<CommandView>(&view)?;
    let history = &view["history"][1];
    check_schema(&spec, "CommandHistoryEntry", history, &["detail"]);
    Ok(())
}

#[test]
fn the_fleet_summary_and_hourly_telemetry_are_documented_as_served() -> Result<()> {
    use cellbridge::devices::summary::summarise;
    use cellbridge::devices::views::HourView;
    use cellbridge::events::counts::{FleetSummary, Tally};
    let spec = spec()?;
    let summary = serde_json::to_value(FleetSummary::of([
        (
            Tally::Sims {
                carrier: "jasper".into(),
                status: "active".into(),
            },
            3,
        ),
        (Tally::DevicesRegistered, 2),
        (Tally::DevicesOnline, 1),
    ]))?;
    check_schema(&spec, "FleetSummary", &summary, &[]);
    let fleet = &spec["components"]["schemas"]["FleetSummary"]["properties"];
    for (part, schema) in [("sims", &fleet["sims"]), ("devices", &fleet["devices"])] {
        let documented: BTreeSet<String> = schema["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, _)| name.clone())
            .collect();
        let served: BTreeSet<String> = summary[part]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, _)| name.clone())
            .collect();
        assert_eq!(documented, served, "FleetSummary.{part}");
    }
    let samples = vec![(
        1_796_547_600_000,
        serde_json::json!({"temp": 21.5})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    )];
    let hour = serde_json::to_value(HourView::from(&summarise(1_796_547_600_000, &samples)[0]))?;
    check_schema(&spec, "TelemetryHour", &hour, &[]);
    let metric: BTreeSet<String> = spec["components"]["schemas"]["TelemetryHour"]["properties"]
        ["metrics"]["additionalProperties"]["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, _)| name.clone())
        .collect();
    assert_eq!(
        metric,
        names(
            hour["metrics"]["temp"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k.as_str())
        )
    );
    Ok(())
}
