//! The device registry over HTTP, for viewers and up: `GET /devices`, `GET /devices/{id}` (status,
//! last seen, latest telemetry, its SIM from the inventory) and `GET /devices/{id}/telemetry?from=&to=` (oldest first,
//! paginated). Another tenant's device does not exist here (404).

use cellbridge_devices::ports::DeviceStore;
use cellbridge_devices::registration::ThingName;
use cellbridge_devices::tenant::TenantDevices;
use cellbridge_devices::views::{DeviceView, HourView, TelemetryView};
use cellbridge_edge::http::page_view::PageView;
use cellbridge_edge::http::paging::{allow_query, page_request};
use cellbridge_edge::http::problem::Problem;
use cellbridge_edge::http::{caller, json_response, route_key};
use cellbridge_identity::role::Role;
use cellbridge_sims::ports::SimStore;
use cellbridge_sims::sim::Sim;
use cellbridge_sims::tenant::TenantSims;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

cellbridge_core::composite_config! {
    /// This function's configuration, read once at cold start: the device registry and telemetry
    /// it reads, and how long a connected device may be silent before it shows as offline.
    #[derive(Debug, Clone)]
    pub struct Config {
        pub devices: cellbridge_devices::wiring::DeviceTables,
        pub presence: cellbridge_devices::wiring::PresenceSettings,
        pub sims: cellbridge_sims::wiring::SimTables,
    }
}

/// A device with the SIM it has, as the tenant's inventory knows it (none when the inventory
/// does not have its ICCID yet).
#[derive(Debug, serde::Serialize)]
pub struct DeviceDetail<'a> {
    #[serde(flatten)]
    pub device: DeviceView<'a>,
    pub sim: Option<&'a Sim>,
}

/// Without `from`, telemetry starts this long before `to`.
pub const DEFAULT_WINDOW: Duration = Duration::hours(24);
/// A longer range is several requests: it bounds what one query may read.
pub const MAX_WINDOW: Duration = Duration::days(31);
/// Hourly summaries are kept this long; a year of them is 8,760 in one answer.
pub const MAX_HOURLY_WINDOW: Duration = cellbridge_devices::summary::SUMMARY_RETENTION;

pub async fn handle(
    devices: &dyn DeviceStore,
    sims: &dyn SimStore,
    presence_timeout: Duration,
    request: Request,
    now: OffsetDateTime,
) -> Response<Body> {
    match respond(devices, sims, presence_timeout, &request, now).await {
        Ok(response) => response,
        Err(problem) => problem.into_response(),
    }
}

async fn respond(
    store: &dyn DeviceStore,
    sims: &dyn SimStore,
    presence_timeout: Duration,
    request: &Request,
    now: OffsetDateTime,
) -> Result<Response<Body>, Problem> {
    let caller = caller(request)?;
    caller.require(Role::Viewer)?;
    let devices = TenantDevices::of(store, &caller);
    match route_key(request).as_str() {
        "GET /devices" => {
            allow_query(request, &["limit", "cursor"])?;
            let page = devices
                .list_devices_with_latest(&page_request(request)?)
                .await?;
            Ok(json_response(
                StatusCode::OK,
                &PageView::from_page(&page, |(device, latest)| {
                    DeviceView::with_presence_timeout(
                        device,
                        latest.as_ref(),
                        now,
                        presence_timeout,
                    )
                }),
            ))
        }
        "GET /devices/{id}" => {
            allow_query(request, &[])?;
            let thing = thing_name(request)?;
            let (device, latest) = devices
                .device_with_latest(&thing)
                .await?
                .ok_or_else(|| Problem::not_found("this device"))?;
            let sim = TenantSims::of(sims, &caller).get(&device.iccid).await?;
            Ok(json_response(
                StatusCode::OK,
                &DeviceDetail {
                    device: DeviceView::with_presence_timeout(
                        &device,
                        latest.as_ref(),
                        now,
                        presence_timeout,
                    ),
                    sim: sim.as_ref(),
                },
            ))
        }
        "GET /devices/{id}/telemetry" if hourly(request)? => {
            allow_query(request, &["from", "to", "resolution"])?;
            let thing = thing_name(request)?;
            let (from, to) = window(request, now, MAX_HOURLY_WINDOW)?;
            let hours = devices
                .telemetry_hours(&thing, from, to)
                .await?
                .ok_or_else(|| Problem::not_found("this device"))?;
            Ok(json_response(
                StatusCode::OK,
                &PageView {
                    items: hours.iter().map(HourView::from).collect(),
                    next_cursor: None,
                },
            ))
        }
        "GET /devices/{id}/telemetry" => {
            allow_query(request, &["from", "to", "limit", "cursor", "resolution"])?;
            let thing = thing_name(request)?;
            let (from, to) = window(request, now, MAX_WINDOW)?;
            let page = devices
                .telemetry(&thing, from, to, &page_request(request)?)
                .await?
                .ok_or_else(|| Problem::not_found("this device"))?;
            Ok(json_response(
                StatusCode::OK,
                &PageView::from_page(&page, TelemetryView::from),
            ))
        }
        _ => Err(Problem::not_found("this route")),
    }
}

fn thing_name(request: &Request) -> Result<ThingName, Problem> {
    let params = request.path_parameters();
    // A name that cannot be a thing's cannot exist.
    params
        .first("id")
        .and_then(ThingName::parse)
        .ok_or_else(|| Problem::not_found("this device"))
}

/// `resolution=hour`: hourly summaries (in one page) rather than the samples;
/// `resolution=sample`, the default, the samples.
fn hourly(request: &Request) -> Result<bool, Problem> {
    match request.query_string_parameters().first("resolution") {
        None | Some("sample") => Ok(false),
        Some("hour") => Ok(true),
        Some(_) => Err(Problem::bad_parameter(
            "resolution",
            "must be sample (the default) or hour",
        )),
    }
}

fn window(
    request: &Request,
    now: OffsetDateTime,
    longest: Duration,
) -> Result<(OffsetDateTime, OffsetDateTime), Problem> {
    let query = request.query_string_parameters();
    let time = |name: &str| -> Result<Option<OffsetDateTime>, Problem> {
        query
            .first(name)
            .map(|raw| {
                OffsetDateTime::parse(raw, &Rfc3339).map_err(|_| {
                    Problem::bad_parameter(
                        name,
                        "must be an RFC 3339 time, e.g. 2026-11-22T09:00:00Z",
                    )
                })
            })
            .transpose()
    };
    let to = time("to")?.unwrap_or(now);
    let from = time("from")?.unwrap_or(to - DEFAULT_WINDOW);
    if from > to {
        return Err(Problem::bad_parameter("from", "must not be after to"));
    }
    if to - from > longest {
        let message = if longest == MAX_WINDOW {
            "a range of samples is at most 31 days; ask for longer ones in parts, or for resolution=hour"
        } else {
            "a range of hours is at most 400 days, as long as they are kept"
        };
        return Err(Problem::bad_parameter("from", message));
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellbridge_devices::memory::MemoryDevices;
    use cellbridge_devices::presence::{LifecycleEvent, LifecycleKind};
    use cellbridge_devices::registration::parse_announcement;
    use cellbridge_devices::telemetry::parse_telemetry;
    use lambda_http::request::from_str;
    use serde_json::{json, Value};

    const LIST: &str = include_str!("../../../events/device-api/list-devices.json");
    const GET: &str = include_str!("../../../events/device-api/get-device.json");
    const TELEMETRY: &str = include_str!("../../../events/device-api/get-telemetry.json");
    /// 2026-11-22T09:00:00Z
    const RECEIVED: i64 = 1_795_338_000_000;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(RECEIVED / 1000).expect("time") + Duration::seconds(60)
    }

    async fn store() -> MemoryDevices {
        let store = MemoryDevices::default();
        for (thing, tenant) in [("trk-1", "demo"), ("trk-2", "demo"), ("gx-1", "globex")] {
            let body = json!({"tenant": tenant, "iccid": cellbridge_core::testing::iccid(1), "model": "TRK-200", "firmware": "2.4.1"});
            let announcement =
                parse_announcement(thing, body.to_string().as_bytes()).expect("valid");
            store
                .register(&announcement, now() - Duration::days(1))
                .await
                .expect("registered");
        }
        let trk1 = ThingName::parse("trk-1").expect("name");
        let connected = LifecycleEvent {
            kind: LifecycleKind::Connected,
            version: 1,
            at: now() - Duration::seconds(5),
        };
        store
            .apply_presence(&trk1, &connected)
            .await
            .expect("presence");
        let points: Vec<_> = (0..5)
            .map(|i| {
                let body = json!({"deviceId": "trk-1", "receivedAt": RECEIVED + i * 10_000, "ts": RECEIVED + i * 10_000, "temp": 20 + i});
                parse_telemetry(body.to_string().as_bytes()).expect("valid")
            })
            .collect();
        store
            .write_telemetry(&points, Duration::days(30))
            .await
            .expect("written");
        store
    }

    fn event(sample: &str, tenant: &str, id: Option<&str>, query: &[(&str, &str)]) -> Request {
        let mut value: Value = serde_json::from_str(sample).expect("sample");
        cellbridge_core::testing::authorize_event(&mut value, tenant, "viewer");
        if let Some(id) = id {
            value["pathParameters"]["id"] = json!(id);
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

    async fn call(store: &MemoryDevices, request: Request) -> (StatusCode, Value) {
        let inventory = cellbridge_sims::memory::MemorySims::default();
        let sim = cellbridge_sims::testing::sample_sim(1);
        cellbridge_sims::testing::put_imported(&inventory, "demo", &sim).await;
        let response = handle(
            store,
            &inventory,
            cellbridge_devices::presence::DEFAULT_PRESENCE_TIMEOUT,
            request,
            now(),
        )
        .await;
        let status = response.status();
        (
            status,
            serde_json::from_slice(response.body().as_ref()).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn the_samples_show_status_last_seen_latest_and_telemetry() {
        let store = store().await;
        let (status, page) = call(&store, from_str(LIST).expect("sample")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let ids: Vec<&str> = page["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|d| d["id"].as_str())
            .collect();
        assert_eq!(ids, ["trk-1", "trk-2"], "never globex's");
        let (status, device) = call(&store, from_str(GET).expect("sample")).await;
        assert_eq!(status, StatusCode::OK, "{device}");
        assert_eq!(device["status"], "online");
        assert_eq!(device["latest"]["metrics"], json!({"temp": 24}));
        assert_eq!(device["latest"]["at"], "2026-11-22T09:00:40Z");
        assert_eq!(
            device["sim"]["iccid"],
            cellbridge_core::testing::iccid(1),
            "its SIM"
        );
        assert_eq!(device["sim"]["status"], "active");
        let (_, silent) = call(&store, event(GET, "demo", Some("trk-2"), &[])).await;
        assert_eq!(silent["status"], "offline");
        assert_eq!(
            silent["lastSeen"], silent["registeredAt"],
            "its announcement is the last sign of life"
        );

        let (status, series) = call(&store, from_str(TELEMETRY).expect("sample")).await;
        assert_eq!(status, StatusCode::OK, "{series}");
        let temps: Vec<i64> = series["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|p| p["metrics"]["temp"].as_i64())
            .collect();
        assert_eq!(
            temps,
            [21, 22, 23],
            "from 09:00:10 to 09:00:30, oldest first"
        );
    }

    #[tokio::test]
    async fn long_ranges_read_hourly_summaries() {
        let store = store().await;
        let day = [
            ("resolution", "hour"),
            ("from", "2026-11-22T00:00:00Z"),
            ("to", "2026-11-22T23:59:59Z"),
        ];
        let (status, hours) = call(&store, event(TELEMETRY, "demo", Some("trk-1"), &day)).await;
        assert_eq!(status, StatusCode::OK, "{hours}");
        assert_eq!(
            hours,
            json!({"items": [{"at": "2026-11-22T09:00:00Z",
                "metrics": {"temp": {"min": 20.0, "max": 24.0, "mean": 22.0, "count": 5}}}]})
        );
        let (status, _) = call(&store, event(TELEMETRY, "demo", Some("gx-1"), &day)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "another tenant's device");

        let year_and_more = [
            ("resolution", "hour"),
            ("from", "2025-01-01T00:00:00Z"),
            ("to", "2026-11-22T00:00:00Z"),
        ];
        for query in [
            &[("resolution", "minute")][..],
            &[("resolution", "hour"), ("limit", "10")][..],
            &year_and_more[..],
        ] {
            let (status, problem) =
                call(&store, event(TELEMETRY, "demo", Some("trk-1"), query)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query:?}: {problem}");
        }
    }

    #[tokio::test]
    async fn telemetry_pages_follow_the_cursor() {
        let store = store().await;
        let mut temps = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("limit", "2")];
            if let Some(c) = cursor.as_deref() {
                query.push(("cursor", c));
            }
            let (status, page) =
                call(&store, event(TELEMETRY, "demo", Some("trk-1"), &query)).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            temps.extend(
                page["items"]
                    .as_array()
                    .expect("items")
                    .iter()
                    .filter_map(|p| p["metrics"]["temp"].as_i64()),
            );
            match page["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(temps, [20, 21, 22, 23, 24], "the last 24 hours by default");
    }

    #[tokio::test]
    async fn another_tenants_device_does_not_exist() {
        let store = store().await;
        for sample in [GET, TELEMETRY] {
            let (status, problem) = call(&store, event(sample, "globex", Some("trk-1"), &[])).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
        }
        let (status, _) = call(&store, event(GET, "demo", Some("gx-1"), &[])).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn bad_parameters_are_named() {
        let store = store().await;
        let cases: [(&[(&str, &str)], &str); 5] = [
            (&[("from", "yesterday")], "from"),
            (&[("to", "2026-13-01T00:00:00Z")], "to"),
            (
                &[
                    ("from", "2026-11-22T10:00:00Z"),
                    ("to", "2026-11-22T09:00:00Z"),
                ],
                "from",
            ),
            (
                &[
                    ("from", "2026-01-01T00:00:00Z"),
                    ("to", "2026-11-22T09:00:00Z"),
                ],
                "from",
            ),
            (&[("metric", "temp")], "metric"),
        ];
        for (query, field) in cases {
            let (status, problem) =
                call(&store, event(TELEMETRY, "demo", Some("trk-1"), query)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query:?}: {problem}");
            assert_eq!(problem["errors"][0]["field"], field, "{query:?}");
        }
        let (status, _) = call(&store, event(GET, "demo", Some("bad/name"), &[])).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
