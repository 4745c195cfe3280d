//! Devices: the tenant's registered devices with their presence and latest values.

use crate::api::{get, with_query, ApiError};
use crate::pages::layout::{api_error, badge, empty, frame, when, LiveFilter, Section};
use crate::respond::{html_page, session_ended};
use crate::session::Session;
use crate::views::{Device, Listing};
use crate::ConsolePorts;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use maud::{html, Markup};

const PAGE_SIZE: &str = "100";

/// A device's latest values in a line: "rssi -71 · temp 21.5".
fn latest_values(device: &Device) -> String {
    device
        .latest
        .as_ref()
        .map(|point| {
            point
                .metrics
                .iter()
                .take(4)
                .map(|(name, value)| match value {
                    serde_json::Value::String(text) => format!("{name} {text}"),
                    other => format!("{name} {other}"),
                })
                .collect::<Vec<_>>()
                .join(" · ")
        })
        .unwrap_or_default()
}

fn device_table(items: &[Device]) -> Markup {
    html! {
        div.table-wrap {
            table data-rows {
                caption.visually-hidden { "Devices" }
                thead { tr {
                    th scope="col" { "Device" }
                    th scope="col" { "Status" }
                    th scope="col" { "Last seen" }
                    th scope="col" { "Latest values" }
                    th scope="col" { "Model" }
                    th scope="col" { "Firmware" }
                    th scope="col" { "ICCID" }
                } }
                tbody {
                    @for device in items {
                        tr data-device=(device.id) {
                            td { a data-row-link href={ "/console/devices/" (device.id) } { (device.id) } }
                            td data-presence { (badge(&device.status)) }
                            td { @if let Some(seen) = &device.last_seen { (when(seen)) } }
                            td data-latest { (latest_values(device)) }
                            td { (device.model) }
                            td { (device.firmware) }
                            td.mono { a href={ "/console/sims?q=" (device.iccid) } { (device.iccid) } }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /console/devices?cursor=`
pub async fn page(ports: &ConsolePorts, session: &Session, request: &Request) -> Response<Body> {
    let query = request.query_string_parameters();
    let cursor = query.first("cursor").unwrap_or("");
    let path = with_query("/devices", &[("limit", PAGE_SIZE), ("cursor", cursor)]);
    let listing: Result<Listing<Device>, ApiError> =
        get(ports.api.as_ref(), &session.token, &path).await;
    if let Err(ApiError::Unauthorized(_)) = listing {
        return session_ended();
    }
    let body = html! {
        header { h1 { "Devices" } }
        div id="devices-region" data-live-region data-refresh-on="device.registered" {
        @match &listing {
            Ok(listing) if listing.items.is_empty() => {
                (empty("No device has registered yet. Devices register themselves when they first connect over MQTT.", html! {}))
            }
            Ok(listing) => {
                (device_table(&listing.items))
                nav.pager aria-label="Pages" {
                    @if !cursor.is_empty() { a href="/console/devices" { "First page" } }
                    @if let Some(next) = &listing.next_cursor {
                        a rel="next" href=(with_query("/console/devices", &[("cursor", next)])) { "Next page" }
                    }
                }
            }
            Err(error) => (api_error(error)),
        }
        }
    };
    let live = LiveFilter::of(&["device.presence", "device.registered"]);
    html_page(
        StatusCode::OK,
        frame(session, Section::Devices, "Devices", &live, body),
    )
}
