//! The SIM inventory over HTTP, for viewers and up: `GET /sims` (filters, one prefix search, an
//! order, cursor pages), `GET /sims/{iccid}` (the SIM and a page of its history, newest first)
//! and `GET /sims/{iccid}/usage` (its daily usage over a range of days, with the cycle-to-date
//! total). Another tenant's SIM does not exist here (404). `GET /fleet/summary`: the tenant's
//! SIMs by carrier and status and its devices registered and online, kept as they change;
//! `POST /fleet/summary/recount` (admins) counts them afresh from the tables.

use cellbridge_core::store::{PageRequest, StoreError};
use cellbridge_core::tenant::TenantId;
use cellbridge_devices::ports::DeviceStore;
use cellbridge_edge::http::page_view::PageView;
use cellbridge_edge::http::paging::{allow_query, page_request};
use cellbridge_edge::http::problem::Problem;
use cellbridge_edge::http::{caller, json_response, route_key};
use cellbridge_events::counts::{CountDeltas, FleetCounts, FleetSummary, Tally};
use cellbridge_identity::role::Role;
use cellbridge_sims::ports::{SimStore, UsageStore};
use cellbridge_sims::query::{parse_filter, parse_order, SimQuery, FILTER_NAMES};
use cellbridge_sims::sim::{CycleUsage, Sim, SimEvent};
use cellbridge_sims::tenant::TenantSims;
use cellbridge_sims::usage::{total, DailyUsage};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use time::{Date, OffsetDateTime};

cellbridge_core::composite_config! {
    /// This function's configuration, read once at cold start: the inventory it reads.
    #[derive(Debug, Clone)]
    pub struct Config {
        pub sims: cellbridge_sims::wiring::SimTables,
        /// Where the event recorder keeps each tenant's fleet numbers.
        pub events: cellbridge_events::wiring::EventsTable,
        /// The devices a recount counts.
        pub devices: cellbridge_devices::wiring::DeviceTables,
    }
}

/// A SIM with a page of its history.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SimDetail<'a> {
    #[serde(flatten)]
    pub sim: &'a Sim,
    pub history: PageView<&'a SimEvent>,
}

/// Days one usage request may span (a year, leap or not).
pub const MAX_USAGE_DAYS: i64 = 366;

/// Days a usage request without `from` covers, ending with `to`.
pub const DEFAULT_USAGE_DAYS: i64 = 30;

/// A SIM's usage over a range of days.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageView<'a> {
    pub iccid: &'a str,
    #[serde(with = "cellbridge_core::clock::iso_date")]
    pub from: Date,
    #[serde(with = "cellbridge_core::clock::iso_date")]
    pub to: Date,
    /// The cycle-to-date total as last read.
    pub cycle: &'a CycleUsage,
    /// The days with usage recorded, oldest first (a day not read yet has none).
    pub days: &'a [DailyUsage],
    pub total: UsageTotal,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageTotal {
    pub data_bytes: u64,
    pub sms: u64,
}

/// The stores the API reads.
pub struct Stores<'a> {
    pub sims: &'a dyn SimStore,
    pub usage: &'a dyn UsageStore,
    pub counts: &'a dyn FleetCounts,
    pub devices: &'a dyn DeviceStore,
}

/// The most SIMs or devices a recount reads a page.
const RECOUNT_PAGE: u32 = 1000;

/// Counts `tenant`'s SIMs and devices from the tables and makes that its numbers.
async fn recount(stores: &Stores<'_>, tenant: &TenantId) -> Result<FleetSummary, StoreError> {
    let mut counted = CountDeltas::default();
    let mut page = PageRequest {
        limit: RECOUNT_PAGE,
        cursor: None,
    };
    loop {
        let sims = stores
            .sims
            .list_sims(tenant, &SimQuery::default(), &page)
            .await?;
        for sim in &sims.items {
            counted.add(Tally::sims(sim.carrier.as_str(), sim.status.as_str()), 1);
        }
        match sims.next_cursor {
            Some(next) => page.cursor = Some(next),
            None => break,
        }
    }
    page.cursor = None;
    loop {
        let devices = stores.devices.list_devices(tenant, &page).await?;
        for device in &devices.items {
            counted.add(Tally::DevicesRegistered, 1);
            if device.presence.is_marked_online() {
                counted.add(Tally::DevicesOnline, 1);
            }
        }
        match devices.next_cursor {
            Some(next) => page.cursor = Some(next),
            None => break,
        }
    }
    stores.counts.replace(tenant, &counted).await?;
    stores.counts.summary(tenant).await
}

pub async fn handle(stores: &Stores<'_>, request: Request, now: OffsetDateTime) -> Response<Body> {
    match respond(stores, &request, now).await {
        Ok(response) => response,
        Err(problem) => problem.into_response(),
    }
}

async fn respond(
    stores: &Stores<'_>,
    request: &Request,
    now: OffsetDateTime,
) -> Result<Response<Body>, Problem> {
    let caller = caller(request)?;
    caller.require(Role::Viewer)?;
    let sims = TenantSims::of(stores.sims, &caller);
    match route_key(request).as_str() {
        "GET /sims" => {
            let mut allowed = FILTER_NAMES.to_vec();
            allowed.extend(["sort", "limit", "cursor"]);
            allow_query(request, &allowed)?;
            let query = sim_query(request)?;
            let page = sims.list(&query, &page_request(request)?).await?;
            Ok(json_response(
                StatusCode::OK,
                &PageView::from_page(&page, |sim| sim),
            ))
        }
        "GET /sims/{iccid}" => {
            allow_query(request, &["limit", "cursor"])?;
            let iccid = iccid(request)?;
            let (sim, history) = sims
                .with_history(iccid, &page_request(request)?)
                .await?
                .ok_or_else(|| Problem::not_found("this SIM"))?;
            Ok(json_response(
                StatusCode::OK,
                &SimDetail {
                    sim: &sim,
                    history: PageView::from_page(&history, |event| event),
                },
            ))
        }
        "GET /fleet/summary" => {
            allow_query(request, &[])?;
            let summary = stores.counts.summary(caller.tenant()).await?;
            Ok(json_response(StatusCode::OK, &summary))
        }
        "POST /fleet/summary/recount" => {
            caller.require(Role::Admin)?;
            allow_query(request, &[])?;
            let summary = recount(stores, caller.tenant()).await?;
            Ok(json_response(StatusCode::OK, &summary))
        }
        "GET /sims/{iccid}/usage" => {
            allow_query(request, &["from", "to"])?;
            let iccid = iccid(request)?;
            let (from, to) = usage_range(request, now)?;
            let sim = sims
                .get(iccid)
                .await?
                .ok_or_else(|| Problem::not_found("this SIM"))?;
            let days = stores
                .usage
                .daily_usage(caller.tenant(), iccid, from, to)
                .await?;
            let (data_bytes, sms) = total(&days);
            Ok(json_response(
                StatusCode::OK,
                &UsageView {
                    iccid,
                    from,
                    to,
                    cycle: &sim.usage,
                    days: &days,
                    total: UsageTotal { data_bytes, sms },
                },
            ))
        }
        _ => Err(Problem::not_found("this route")),
    }
}

/// `from` and `to` (`YYYY-MM-DD`, both included): by default the 30 days through yesterday, the
/// last day whose usage is read.
fn usage_range(request: &Request, now: OffsetDateTime) -> Result<(Date, Date), Problem> {
    let parameters = request.query_string_parameters();
    let day = |name: &str| -> Result<Option<Date>, Problem> {
        parameters
            .first(name)
            .map(|text| {
                cellbridge_core::clock::parse_day(text)
                    .ok_or_else(|| Problem::bad_parameter(name, "must be a day as YYYY-MM-DD"))
            })
            .transpose()
    };
    let yesterday = now.date().previous_day().unwrap_or(now.date());
    let to = day("to")?.unwrap_or(yesterday);
    let from = match day("from")? {
        Some(from) => from,
        None => to
            .checked_sub(time::Duration::days(DEFAULT_USAGE_DAYS - 1))
            .unwrap_or(to),
    };
    if from > to {
        return Err(Problem::bad_parameter("from", "must not be after to"));
    }
    if (to - from).whole_days() >= MAX_USAGE_DAYS {
        return Err(Problem::bad_parameter(
            "from",
            &format!("a request spans at most {MAX_USAGE_DAYS} days"),
        ));
    }
    Ok((from, to))
}

fn sim_query(request: &Request) -> Result<SimQuery, Problem> {
    let parameters = request.query_string_parameters();
    let filters = parameters
        .iter()
        .filter(|(name, _)| FILTER_NAMES.contains(name));
    let filter = parse_filter(filters).map_err(bad_parameters)?;
    let order = parse_order(parameters.first("sort"), &filter).map_err(bad_parameters)?;
    Ok(SimQuery { filter, order })
}

/// Query parameters are not a body: their problems are 400s, every one named.
fn bad_parameters(errors: cellbridge_core::validation::ValidationErrors) -> Problem {
    let mut problem = Problem::bad_parameter(&errors.errors[0].field, &errors.errors[0].message);
    problem.errors = errors.errors;
    problem
}

/// An ICCID has 18 to 22 digits (carriers differ); anything else cannot be a SIM's.
fn iccid(request: &Request) -> Result<&str, Problem> {
    request
        .path_parameters_ref()
        .and_then(|params| params.first("iccid"))
        .filter(|iccid| {
            (18..=22).contains(&iccid.len()) && iccid.bytes().all(|b| b.is_ascii_digit())
        })
        .ok_or_else(|| Problem::not_found("this SIM"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellbridge_core::tenant::TenantId;
    use cellbridge_devices::memory::MemoryDevices;
    use cellbridge_devices::presence::{LifecycleEvent, LifecycleKind};
    use cellbridge_devices::testing::{online_device, thing};
    use cellbridge_events::counts::{CountDeltas, Counted, Tally};
    use cellbridge_events::memory::MemoryFleetCounts;
    use cellbridge_sims::memory::MemorySims;
    use cellbridge_sims::testing::{imported, sample_sim};
    use lambda_http::request::from_str;
    use serde_json::{json, Value};

    const LIST: &str = include_str!("../../../events/sim-api/list-sims.json");
    const GET: &str = include_str!("../../../events/sim-api/get-sim.json");
    const USAGE: &str = include_str!("../../../events/sim-api/get-sim-usage.json");

    /// 5 December 2026, 10:00 UTC: yesterday is the 4th.
    fn test_now() -> OffsetDateTime {
        time::macros::datetime!(2026-12-05 10:00 UTC)
    }

    #[tokio::test]
    async fn a_sims_usage_is_its_days_in_the_range_with_the_cycle_total() {
        use cellbridge_sims::usage::UsageRecord;
        use time::macros::date;
        let store = store().await;
        let demo = TenantId::parse("demo").expect("tenant");
        let iccid = sample_sim(3).iccid;
        let day = |d: Date, data_bytes: u64| DailyUsage {
            day: d,
            data_bytes,
            sms: 1,
        };
        let keep = test_now() + time::Duration::days(400);
        let mut records = Vec::new();
        for (d, bytes) in [
            (date!(2026 - 11 - 04), 50),
            (date!(2026 - 12 - 03), 700),
            (date!(2026 - 12 - 04), 300),
        ] {
            records.push(UsageRecord {
                iccid: iccid.clone(),
                day: Some(day(d, bytes)),
                cycle: CycleUsage {
                    cycle_start: Some(date!(2026 - 12 - 01)),
                    through: Some(d),
                    data_bytes: 1_000,
                    sms: 2,
                },
            });
        }
        store
            .record_usage(&demo, &records, keep)
            .await
            .expect("recorded");

        // The sample asks for 3 to 4 December.
        let (status, usage) = call(&store, from_str(USAGE).expect("sample")).await;
        assert_eq!(status, StatusCode::OK, "{usage}");
        assert_eq!(usage["from"], "2026-12-03");
        assert_eq!(usage["days"].as_array().map(Vec::len), Some(2));
        assert_eq!(usage["days"][0]["day"], "2026-12-03");
        assert_eq!(usage["total"], json!({"dataBytes": 1_000, "sms": 2}));
        assert_eq!(usage["cycle"]["cycleStart"], "2026-12-01");
        assert_eq!(usage["cycle"]["through"], "2026-12-04");

        // By default the 30 days through yesterday: 5 November on.
        let (status, usage) = call(&store, event(USAGE, "demo", None, &[])).await;
        assert_eq!(status, StatusCode::OK, "{usage}");
        assert_eq!(
            (usage["from"].as_str(), usage["to"].as_str()),
            (Some("2026-11-05"), Some("2026-12-04"))
        );
        assert_eq!(usage["days"].as_array().map(Vec::len), Some(2));

        let (status, _) = call(&store, event(USAGE, "globex", None, &[])).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "another tenant's SIM");
        for (query, named) in [
            (&[("from", "2026-12-05"), ("to", "2026-12-01")][..], "from"),
            (&[("from", "yesterday")][..], "from"),
            (&[("from", "2025-01-01"), ("to", "2026-12-01")][..], "from"),
            (&[("to", "2026-13-01")][..], "to"),
            (&[("day", "2026-12-01")][..], "day"),
        ] {
            let (status, problem) = call(&store, event(USAGE, "demo", None, query)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query:?}");
            assert!(problem.to_string().contains(named), "{problem}");
        }
    }

    async fn store() -> MemorySims {
        let store = MemorySims::default();
        for (tenant, count) in [("demo", 30), ("globex", 3)] {
            let tenant = TenantId::parse(tenant).expect("tenant");
            for n in 0..count {
                let sim = sample_sim(n);
                store
                    .put_sim(&tenant, &sim, None, Some(&imported(&sim)))
                    .await
                    .expect("stored");
            }
        }
        store
    }

    fn event(sample: &str, tenant: &str, iccid: Option<&str>, query: &[(&str, &str)]) -> Request {
        let mut value: Value = serde_json::from_str(sample).expect("sample");
        cellbridge_core::testing::authorize_event(&mut value, tenant, "viewer");
        if let Some(iccid) = iccid {
            value["pathParameters"]["iccid"] = json!(iccid);
        }
        value["rawQueryString"] = json!(query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&"));
        value["queryStringParameters"] = query
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect::<serde_json::Map<_, _>>()
            .into();
        from_str(&value.to_string()).expect("event")
    }

    async fn call(store: &MemorySims, request: Request) -> (StatusCode, Value) {
        call_counting(store, &MemoryFleetCounts::default(), request).await
    }

    async fn call_counting(
        store: &MemorySims,
        counts: &MemoryFleetCounts,
        request: Request,
    ) -> (StatusCode, Value) {
        let devices = MemoryDevices::default();
        let stores = Stores {
            sims: store,
            usage: store,
            counts,
            devices: &devices,
        };
        let response = handle(&stores, request, test_now()).await;
        let status = response.status();
        (
            status,
            serde_json::from_slice(response.body().as_ref()).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn the_samples_list_filtered_sims_and_show_one_with_its_history() {
        let store = store().await;
        let (status, page) = call(&store, from_str(LIST).expect("sample")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["items"].as_array().expect("items");
        assert!(!items.is_empty());
        for sim in items {
            assert_eq!(sim["status"], "active", "{sim}");
            assert_eq!(sim["carrier"], "jasper", "{sim}");
        }
        let (status, sim) = call(&store, from_str(GET).expect("sample")).await;
        assert_eq!(status, StatusCode::OK, "{sim}");
        assert_eq!(sim["iccid"], sample_sim(3).iccid);
        assert_eq!(sim["msisdn"], "14040000003");
        assert_eq!(sim["lastChange"]["source"]["kind"], "carrierSync");
        assert_eq!(sim["history"]["items"][0]["kind"], "imported");
    }

    #[tokio::test]
    async fn pages_follow_the_cursor_in_the_order_asked() {
        let store = store().await;
        let mut msisdns = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("limit", "4"), ("sort", "-msisdn"), ("status", "active")];
            if let Some(c) = cursor.as_deref() {
                query.push(("cursor", c));
            }
            let (status, page) = call(&store, event(LIST, "demo", None, &query)).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            msisdns.extend(
                page["items"]
                    .as_array()
                    .expect("items")
                    .iter()
                    .map(|sim| sim["msisdn"].as_str().unwrap_or("~").to_owned()),
            );
            match page["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        let active = (0..30u32).filter(|n| n % 10 <= 6).count();
        assert_eq!(msisdns.len(), active);
        let mut sorted = msisdns.clone();
        sorted.sort();
        sorted.reverse();
        assert_eq!(msisdns, sorted);
        assert_eq!(msisdns[0], "~", "no MSISDN first when descending");
    }

    #[tokio::test]
    async fn another_tenants_sim_does_not_exist() {
        let store = store().await;
        let (status, _) = call(
            &store,
            event(GET, "globex", Some(&sample_sim(2).iccid), &[]),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "globex has its own SIM 2");
        let (status, _) = call(
            &store,
            event(GET, "globex", Some(&sample_sim(12).iccid), &[]),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "demo's SIM 12 is not globex's"
        );
        let (_, page) = call(&store, event(LIST, "globex", None, &[])).await;
        assert_eq!(page["items"].as_array().map(Vec::len), Some(3));
        let (status, _) = call(&store, event(GET, "demo", Some("not-an-iccid"), &[])).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn bad_parameters_are_named() {
        let store = store().await;
        type Query<'a> = &'a [(&'a str, &'a str)];
        let cases: [(Query, &[&str]); 5] = [
            (
                &[("status", "on"), ("carrier", "sprint")],
                &["carrier", "status"],
            ),
            (&[("sort", "status")], &["sort"]),
            (&[("imeiPrefix", "35"), ("sort", "iccid")], &["sort"]),
            (
                &[("iccidPrefix", "89"), ("msisdnPrefix", "1")],
                &["iccidPrefix", "msisdnPrefix"],
            ),
            (&[("plan", "x")], &["plan"]),
        ];
        for (query, fields) in cases {
            let (status, problem) = call(&store, event(LIST, "demo", None, query)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query:?}: {problem}");
            let mut named: Vec<&str> = problem["errors"]
                .as_array()
                .expect("errors")
                .iter()
                .filter_map(|e| e["field"].as_str())
                .collect();
            named.sort_unstable();
            assert_eq!(named, fields, "{query:?}");
        }
        let (status, problem) =
            call(&store, event(LIST, "demo", None, &[("cursor", "garbage")])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    }

    #[tokio::test]
    async fn a_recount_makes_the_numbers_those_of_the_tables_for_admins_only() {
        let store = store().await;
        let devices = MemoryDevices::default();
        online_device(&devices, "tracker-1", "demo", test_now()).await;
        online_device(&devices, "tracker-2", "demo", test_now()).await;
        let gone = LifecycleEvent {
            kind: LifecycleKind::Disconnected,
            version: 2,
            at: test_now(),
        };
        devices
            .apply_presence(&thing("tracker-2"), &gone)
            .await
            .expect("disconnected");
        online_device(&devices, "other-1", "globex", test_now()).await;
        let counts = MemoryFleetCounts::default();
        // Numbers that drifted: a tally no SIM has any more, and too few devices.
        let mut drifted = CountDeltas::default();
        drifted.add(Tally::sims("jasper", "purged"), 4);
        drifted.add(Tally::DevicesRegistered, 1);
        let demo = TenantId::parse("demo").expect("tenant");
        counts.replace(&demo, &drifted).await.expect("drifted");
        let stores = Stores {
            sims: &store,
            usage: &store,
            counts: &counts,
            devices: &devices,
        };
        let sample = include_str!("../../../events/sim-api/recount-fleet-summary.json");
        let as_role = |role: &str| {
            let mut value: Value = serde_json::from_str(sample).expect("sample");
            cellbridge_core::testing::authorize_event(&mut value, "demo", role);
            from_str(&value.to_string()).expect("event")
        };
        for role in ["viewer", "operator"] {
            let response = handle(&stores, as_role(role), test_now()).await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{role}");
        }
        let response = handle(&stores, as_role("admin"), test_now()).await;
        assert_eq!(response.status(), StatusCode::OK);
        let summary: Value = serde_json::from_slice(response.body().as_ref()).expect("json");
        assert_eq!(summary["sims"]["total"], 30, "{summary}");
        assert!(
            summary["sims"]["byStatus"].get("purged").is_none(),
            "{summary}"
        );
        let by_carrier = summary["sims"]["byCarrier"].as_object().expect("carriers");
        let added: u64 = by_carrier
            .values()
            .flat_map(|statuses| statuses.as_object().expect("statuses").values())
            .filter_map(Value::as_u64)
            .sum();
        assert_eq!(added, 30, "{summary}");
        assert_eq!(
            summary["devices"],
            json!({"registered": 2, "online": 1, "offline": 1})
        );
        let kept = counts.summary(&demo).await.expect("summary");
        assert_eq!(kept.sims.total, 30, "the recount is kept");
        let globex = TenantId::parse("globex").expect("tenant");
        assert_eq!(
            counts.summary(&globex).await.expect("summary").sims.total,
            0,
            "another tenant's numbers are its own"
        );
    }

    #[tokio::test]
    async fn the_fleet_summary_is_the_callers_tenants_numbers() {
        let counts = MemoryFleetCounts::default();
        let mut deltas = CountDeltas::default();
        deltas.add(
            Tally::Sims {
                carrier: "jasper".into(),
                status: "active".into(),
            },
            3,
        );
        deltas.add(Tally::DevicesRegistered, 2);
        deltas.add(Tally::DevicesOnline, 1);
        let acme = TenantId::parse("acme").expect("tenant");
        counts
            .add(
                &acme,
                vec![Counted {
                    source: "r1".into(),
                    deltas,
                }],
            )
            .await
            .expect("counted");
        let store = MemorySims::default();
        let sample = include_str!("../../../events/sim-api/get-fleet-summary.json");
        let (status, summary) =
            call_counting(&store, &counts, event(sample, "acme", None, &[])).await;
        assert_eq!(status, StatusCode::OK, "{summary}");
        assert_eq!(
            summary,
            json!({
                "sims": {"total": 3, "byStatus": {"active": 3}, "byCarrier": {"jasper": {"active": 3}}},
                "devices": {"registered": 2, "online": 1, "offline": 1}
            })
        );
        let (_, other) = call_counting(&store, &counts, event(sample, "bolt", None, &[])).await;
        assert_eq!(
            other["sims"]["total"], 0,
            "another tenant sees its own numbers"
        );
        let (status, _) = call_counting(
            &store,
            &counts,
            event(sample, "acme", None, &[("limit", "5")]),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "the summary takes no query"
        );
    }
}
