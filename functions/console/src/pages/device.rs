//! One device: its presence and latest values (live while the page is open, which also has
//! the device stream its samples), a telemetry chart over a chosen range, its SIM, and its
//! commands with a form to send one, whose status follows it to the device's answer.

use crate::api::{get, with_query, ApiError, ApiProblem, ApiRequest};
use crate::pages::chart::{line_chart, Series};
use crate::pages::layout::{
    api_error, badge, empty, field_error, frame, select, when, LiveFilter, Section,
};
use crate::respond::{csrf_refused, html_page, not_found, redirect, session_ended, Form};
use crate::session::{Session, CSRF_FIELD};
use crate::views::{Command, DeviceDetail, Listing, TelemetryPoint};
use crate::ConsolePorts;
use cellbridge_devices::live::LIVE_COMMAND;
use cellbridge_identity::role::Role;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

/// What a chart is drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolution {
    /// Every sample (up to 6 hours of one a second).
    Sample,
    /// The API's hourly summaries: 90 days are 2,160 of them.
    Hour,
}

/// The ranges a chart offers: `(value, label, length, what it is drawn from)`.
const RANGES: [(&str, &str, Duration, Resolution); 7] = [
    (
        "15m",
        "Last 15 minutes",
        Duration::minutes(15),
        Resolution::Sample,
    ),
    ("1h", "Last hour", Duration::hours(1), Resolution::Sample),
    ("6h", "Last 6 hours", Duration::hours(6), Resolution::Sample),
    (
        "24h",
        "Last 24 hours",
        Duration::hours(24),
        Resolution::Hour,
    ),
    ("7d", "Last 7 days", Duration::days(7), Resolution::Hour),
    ("30d", "Last 30 days", Duration::days(30), Resolution::Hour),
    ("90d", "Last 90 days", Duration::days(90), Resolution::Hour),
];
/// The API's largest page, and the most pages one chart reads (6 hours of 1-second samples).
const TELEMETRY_PAGE: &str = "1000";
const MAX_TELEMETRY_PAGES: usize = 25;
/// The longest range whose charts are drawn again as samples arrive. Longer ranges would read
/// up to 25 pages of samples for each redraw and barely move.
const LIVE_CHART_LONGEST: Duration = Duration::hours(1);
/// Charts drawn: the first numeric metrics.
const MAX_CHARTS: usize = 4;
/// Commands listed. The `live` commands a followed device is sent every couple of minutes while
/// someone watches it are left out: they would bury the commands people sent.
const COMMANDS_SHOWN: &str = "25";

/// A thing name as the API takes it; anything else is no page of ours.
fn plausible_thing(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-'))
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

/// The range's samples, every page of them (up to [`MAX_TELEMETRY_PAGES`]).
async fn telemetry(
    ports: &ConsolePorts,
    session: &Session,
    id: &str,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> Result<Vec<TelemetryPoint>, ApiError> {
    let mut points = Vec::new();
    let mut cursor = String::new();
    for _ in 0..MAX_TELEMETRY_PAGES {
        let path = with_query(
            &format!("/devices/{id}/telemetry"),
            &[
                ("from", &rfc3339(from)),
                ("to", &rfc3339(to)),
                ("limit", TELEMETRY_PAGE),
                ("cursor", &cursor),
            ],
        );
        let page: Listing<TelemetryPoint> = get(ports.api.as_ref(), &session.token, &path).await?;
        points.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = next,
            None => break,
        }
    }
    Ok(points)
}

/// The numeric metrics of `points`, each as a series, in the order first seen.
/// An hour of a metric as the API summarises it.
#[derive(Debug, Deserialize)]
struct HourMetric {
    min: f64,
    max: f64,
}

/// `GET /devices/{id}/telemetry?resolution=hour`: one item per hour with samples.
#[derive(Debug, Deserialize)]
struct TelemetryHour {
    at: String,
    metrics: BTreeMap<String, HourMetric>,
}

/// The charts' series and what they were drawn from, in words.
type Charts = (Vec<(String, Series)>, String);

/// The range's hourly summaries as series: each hour its lowest and highest, so the chart's
/// buckets keep an hour's extremes as they keep samples'.
fn hourly_series(hours: &[TelemetryHour]) -> Charts {
    let mut series: Vec<(String, Series)> = Vec::new();
    for hour in hours {
        let Some(ms) = epoch_ms(&hour.at) else {
            continue;
        };
        for (name, metric) in &hour.metrics {
            add_points(
                &mut series,
                name,
                &[(ms, metric.min), (ms + HALF_HOUR_MS, metric.max)],
            );
        }
    }
    (series, format!("{} hourly summaries", hours.len()))
}

/// An API time (RFC 3339) as unix milliseconds.
fn epoch_ms(at: &str) -> Option<i64> {
    OffsetDateTime::parse(at, &Rfc3339)
        .ok()
        .map(cellbridge_core::clock::epoch_ms)
}

/// Adds `points` to the series of `name`, starting it while there are fewer than
/// [`MAX_CHARTS`]; a metric beyond those is not charted.
fn add_points(series: &mut Vec<(String, Series)>, name: &str, points: &[(i64, f64)]) {
    match series.iter().position(|(known, _)| known == name) {
        Some(index) => series[index].1.extend_from_slice(points),
        None if series.len() < MAX_CHARTS => series.push((name.to_owned(), points.to_vec())),
        None => {}
    }
}

const HALF_HOUR_MS: i64 = 1_800_000;

/// The charts of a range: its samples, or its hours for the long ranges.
async fn charts(
    ports: &ConsolePorts,
    session: &Session,
    id: &str,
    from: OffsetDateTime,
    to: OffsetDateTime,
    resolution: Resolution,
) -> Result<Charts, ApiError> {
    match resolution {
        Resolution::Sample => {
            let points = telemetry(ports, session, id, from, to).await?;
            let described = format!("{} samples", points.len());
            Ok((series_of(&points), described))
        }
        Resolution::Hour => {
            let path = with_query(
                &format!("/devices/{id}/telemetry"),
                &[
                    ("resolution", "hour"),
                    ("from", &rfc3339(from)),
                    ("to", &rfc3339(to)),
                ],
            );
            let hours: Listing<TelemetryHour> =
                get(ports.api.as_ref(), &session.token, &path).await?;
            Ok(hourly_series(&hours.items))
        }
    }
}

fn series_of(points: &[TelemetryPoint]) -> Vec<(String, Series)> {
    let mut series: Vec<(String, Series)> = Vec::new();
    for point in points {
        let Some(ms) = epoch_ms(&point.at) else {
            continue;
        };
        for (name, value) in &point.metrics {
            if let Some(value) = value.as_f64() {
                add_points(&mut series, name, &[(ms, value)]);
            }
        }
    }
    series
}

fn metric_value(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn commands_table(commands: &[Command]) -> Markup {
    html! {
        div.table-wrap {
            table {
                caption.visually-hidden { "Commands, newest first" }
                thead { tr {
                    th scope="col" { "Command" }
                    th scope="col" { "Parameters" }
                    th scope="col" { "Status" }
                    th scope="col" { "Sent" }
                } }
                tbody {
                    @for command in commands {
                        tr data-command=(command.id) {
                            td.mono { (command.name) }
                            td.mono { @if command.params.as_object().is_some_and(|p| !p.is_empty()) { (command.params) } }
                            td { (badge(&command.status)) }
                            td { (when(&command.created_at)) }
                        }
                    }
                }
            }
        }
    }
}

/// What the command form shows: what was typed, and the API's complaints by field.
#[derive(Debug, Default)]
pub struct CommandForm<'a> {
    name: &'a str,
    params: &'a str,
    problem: Option<&'a ApiProblem>,
}

fn command_form(session: &Session, id: &str, form: &CommandForm<'_>) -> Markup {
    let about = |field: &str| form.problem.and_then(|p| p.about(field));
    let general = form.problem.filter(|p| p.errors.is_empty());
    html! {
        form method="post" action={ "/console/devices/" (id) "/commands" } aria-labelledby="send-heading" {
            h3 id="send-heading" { "Send a command" }
            @if let Some(problem) = general {
                div.notice.error role="alert" { (crate::pages::sign_in::capitalized(&problem.detail)) }
            }
            input type="hidden" name=(CSRF_FIELD) value=(session.csrf());
            div.filters {
                div.field {
                    label for="command-name" { "Command" }
                    input type="text" id="command-name" name="name" value=(form.name) required
                        placeholder="ping" list="known-commands"
                        aria-invalid=(about("name").is_some())
                        aria-describedby=[about("name").map(|_| "command-name-error")];
                    datalist id="known-commands" {
                        option value="ping" {} option value="locate" {} option value="reboot" {} option value="set-interval" {}
                    }
                    (field_error("command-name", about("name")))
                }
                div.field {
                    label for="command-params" { "Parameters (JSON, optional)" }
                    input type="text" id="command-params" name="params" value=(form.params)
                        placeholder="{\"seconds\": 30}"
                        aria-invalid=(about("params").is_some())
                        aria-describedby=[about("params").map(|_| "command-params-error")];
                    (field_error("command-params", about("params")))
                }
                button type="submit" { "Send" }
            }
        }
    }
}

/// `GET /console/devices/{id}?range=`
pub async fn page(
    ports: &ConsolePorts,
    session: &Session,
    request: &Request,
    id: &str,
    now: OffsetDateTime,
) -> Response<Body> {
    render(
        ports,
        session,
        request,
        id,
        now,
        &CommandForm::default(),
        StatusCode::OK,
    )
    .await
}

async fn render(
    ports: &ConsolePorts,
    session: &Session,
    request: &Request,
    id: &str,
    now: OffsetDateTime,
    form: &CommandForm<'_>,
    status: StatusCode,
) -> Response<Body> {
    if !plausible_thing(id) {
        return not_found(session);
    }
    let query = request.query_string_parameters();
    let range = query
        .first("range")
        .and_then(|r| RANGES.iter().find(|(value, ..)| *value == r))
        .unwrap_or(&RANGES[0]);
    let from = now - range.2;
    let api = ports.api.as_ref();
    let commands_path = with_query(
        &format!("/devices/{id}/commands"),
        &[("limit", COMMANDS_SHOWN)],
    );
    let device_path = format!("/devices/{id}");
    let (device, commands, charts) = tokio::join!(
        get::<DeviceDetail>(api, &session.token, &device_path),
        get::<Listing<Command>>(api, &session.token, &commands_path),
        charts(ports, session, id, from, now, range.3),
    );
    let device = match device {
        Ok(device) => device,
        Err(ApiError::Unauthorized(_)) => return session_ended(),
        Err(ApiError::Refused(problem)) if problem.status == 404 => return not_found(session),
        Err(error) => {
            let body = html! { header { h1 { (id) } } (api_error(&error)) };
            return html_page(
                StatusCode::OK,
                frame(session, Section::Devices, id, &LiveFilter::none(), body),
            );
        }
    };
    let may_command = session.identity.roles.allows(Role::Operator);
    let from_ms = cellbridge_core::clock::epoch_ms(from);
    let to_ms = cellbridge_core::clock::epoch_ms(now);
    let info = &device.device;
    let live_chart = range.2 <= LIVE_CHART_LONGEST;
    let body = html! {
        header { h1 { (info.id) } }
        div.columns {
            div {
                section.panel data-device=(info.id) id="device-region" data-live-region data-catch-up aria-labelledby="state-heading" {
                    h2 id="state-heading" { "Now" }
                    dl.facts {
                        dt { "Status" } dd data-presence { (badge(&info.status)) }
                        dt { "Last seen" } dd { @if let Some(seen) = &info.last_seen { (when(seen)) } @else { "never" } }
                        dt { "Latest values" }
                        dd data-latest {
                            @if let Some(latest) = &info.latest {
                                @for (name, value) in &latest.metrics {
                                    span.metric { (name) " " strong { (metric_value(value)) } } " "
                                }
                            } @else { "no telemetry yet" }
                        }
                    }
                }
                section aria-labelledby="telemetry-heading" {
                    h2 id="telemetry-heading" { "Telemetry" }
                    form.filters method="get" action={ "/console/devices/" (info.id) } {
                        div.field {
                            label for="range" { "Range" }
                            (select("range", &RANGES.map(|(value, label, ..)| (value, label)), range.0, false))
                        }
                        button.secondary type="submit" { "Show" }
                    }
                    // Short ranges are drawn again from the server as the device's samples
                    // arrive (at most every few seconds), so the chart moves with them.
                    div id="telemetry-region" data-live-region[live_chart] data-redraw-on=[live_chart.then_some("telemetry.latest")] {
                        @match &charts {
                            Ok((series, _)) if series.is_empty() => {
                                (empty("No numeric telemetry in this range.", html! {}))
                            }
                            Ok((series, drawn_from)) => {
                                div.charts {
                                    @for (metric, points) in series {
                                        (line_chart(metric, points, from_ms, to_ms, drawn_from))
                                    }
                                }
                            }
                            Err(error) => (api_error(error)),
                        }
                    }
                }
                section id="commands-region" data-live-region data-catch-up aria-labelledby="commands-heading" {
                    h2 id="commands-heading" { "Commands" }
                    @match &commands {
                        Ok(listing) => {
                            @let shown: Vec<Command> = listing.items.iter().filter(|c| c.name != LIVE_COMMAND).cloned().collect();
                            @if shown.is_empty() {
                                (empty("No command has been sent to this device.", html! {}))
                            } @else {
                                (commands_table(&shown))
                            }
                        }
                        Err(error) => (api_error(error)),
                    }
                }
                @if may_command {
                    (command_form(session, &info.id, form))
                }
            }
            aside {
                section.panel aria-labelledby="device-heading" {
                    h2 id="device-heading" { "Device" }
                    dl.facts {
                        dt { "Model" } dd { (info.model) }
                        dt { "Firmware" } dd { (info.firmware) }
                        @if let Some(at) = &device.registered_at { dt { "Registered" } dd { (when(at)) } }
                    }
                }
                section.panel aria-labelledby="sim-heading" {
                    h2 id="sim-heading" { "SIM" }
                    @if let Some(sim) = &device.sim {
                        dl.facts {
                            dt { "ICCID" } dd.mono { a href={ "/console/sims?q=" (sim.iccid) } { (sim.iccid) } }
                            dt { "Status" } dd { (badge(&sim.status)) }
                            dt { "Carrier" } dd { (sim.carrier) }
                            @if let Some(msisdn) = &sim.msisdn { dt { "MSISDN" } dd.mono { (msisdn) } }
                            @if let Some(plan) = &sim.rate_plan { dt { "Rate plan" } dd { (plan) } }
                        }
                    } @else {
                        p.muted { "ICCID " span.mono { (info.iccid) } ", not in the inventory yet (the next carrier sync brings it)." }
                    }
                }
            }
        }
    };
    // Following the device's telemetry has it stream its samples while the page is open.
    let live = LiveFilter {
        devices: vec![info.id.clone()],
        ..LiveFilter::of(&["device.presence", "telemetry.latest", "command.status"])
    };
    html_page(
        status,
        frame(session, Section::Devices, &info.id, &live, body),
    )
}

/// `POST /console/devices/{id}/commands`
pub async fn send_command(
    ports: &ConsolePorts,
    session: &Session,
    request: &Request,
    id: &str,
    now: OffsetDateTime,
) -> Response<Body> {
    if !plausible_thing(id) {
        return not_found(session);
    }
    let form = Form::read(request);
    if form.csrf_fails(session) {
        return csrf_refused();
    }
    let name = form.get("name").unwrap_or("").trim();
    let params_text = form.get("params").unwrap_or("").trim();
    let params: Result<Option<Value>, String> = if params_text.is_empty() {
        Ok(None)
    } else {
        serde_json::from_str(params_text)
            .map(Some)
            .map_err(|e| format!("is not JSON: {e}"))
    };
    let problem = match params {
        Err(message) => ApiProblem {
            status: 422,
            detail: format!("params {message}"),
            errors: vec![crate::api::FieldError {
                field: "params".into(),
                message,
            }],
            ..ApiProblem::default()
        },
        Ok(params) => {
            let mut body = serde_json::json!({ "name": name });
            if let Some(params) = params {
                body["params"] = params;
            }
            let mut call = ApiRequest::post(
                format!("/devices/{id}/commands"),
                Some(&session.token),
                body,
            );
            call.idempotency_key = form
                .get("idempotency-key")
                .filter(|k| !k.is_empty())
                .map(str::to_owned);
            match ports
                .api
                .call(call)
                .await
                .map_err(ApiError::into_form_problem)
            {
                Ok(_) => return redirect(&format!("/console/devices/{id}#commands-heading")),
                Err(Some(problem)) => problem,
                Err(None) => return session_ended(),
            }
        }
    };
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
    let form = CommandForm {
        name,
        params: params_text,
        problem: Some(&problem),
    };
    render(ports, session, request, id, now, &form, status).await
}
