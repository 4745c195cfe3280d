//! The overview: the fleet in numbers (SIMs by carrier and status, devices online and
//! offline), and what needs attention now: bulk changes still moving, with their progress, and
//! the latest ones that finished.

use crate::api::{get, ApiError};
use crate::pages::bulk_changes::bulk_change_table;
use crate::pages::layout::{api_error, empty, frame, LiveFilter, Section};
use crate::pages::sims::{CARRIERS, STATUSES};
use crate::respond::{html_page, session_ended};
use crate::session::Session;
use crate::views::{BulkChange, Listing};
use crate::ConsolePorts;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use maud::{html, Markup};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Enough of the newest bulk changes to find those in flight on a busy day.
const RECENT_BULK_CHANGES: usize = 50;
/// Finished bulk changes shown under those in flight.
const LATEST_FINISHED: usize = 10;
/// What the overview's timeline tells: everything but telemetry, which only followed devices
/// stream.
const OVERVIEW_EVENTS: [&str; 6] = [
    "device.registered",
    "device.presence",
    "command.status",
    "bulkChange.progress",
    "bulkChange.completed",
    "sim.status",
];
/// The newest events the timeline shows on load.
const TIMELINE_HISTORY: u32 = 30;

/// `GET /fleet/summary`: the tenant's numbers, kept by the API as SIMs and devices change.
#[derive(Debug, Deserialize)]
struct FleetSummary {
    sims: SimCounts,
    devices: DeviceCounts,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SimCounts {
    total: u64,
    by_status: BTreeMap<String, u64>,
    by_carrier: BTreeMap<String, BTreeMap<String, u64>>,
}

#[derive(Debug, Deserialize)]
struct DeviceCounts {
    registered: u64,
    online: u64,
    offline: u64,
}

/// A count linking to the SIMs it counts.
fn sims_link(count: u64, carrier: &str, status: &str) -> Markup {
    let mut filters = Vec::new();
    if !carrier.is_empty() {
        filters.push(format!("carrier={carrier}"));
    }
    if !status.is_empty() {
        filters.push(format!("status={status}"));
    }
    html! {
        @if count == 0 { span.muted { "0" } }
        @else { a href={ "/console/sims?" (filters.join("&")) } { (count) } }
    }
}

/// The fleet in numbers. The region is read again whenever a SIM or device changes, so the
/// numbers stay the API's, never a sum kept by the page.
fn fleet_numbers(summary: &Result<FleetSummary, ApiError>) -> Markup {
    html! {
        section aria-labelledby="fleet-heading" id="fleet-region" data-live-region data-catch-up
            data-refresh-on="sim.status device.presence device.registered" {
            h2 id="fleet-heading" { "Fleet" }
            @match summary {
                Err(error) => (api_error(error)),
                Ok(summary) => {
                    div.cards {
                        div.card {
                            h3 { "Devices" }
                            p { strong data-count="devices-online" { (summary.devices.online) } " online" }
                            p { span data-count="devices-offline" { (summary.devices.offline) } " offline of "
                                a href="/console/devices" { (summary.devices.registered) " registered" } }
                        }
                        div.card {
                            h3 { "SIMs" }
                            p { a href="/console/sims" data-count="sims-total" { (summary.sims.total) } " in the inventory" }
                            p { (summary.sims.by_status.get("active").copied().unwrap_or(0)) " active, "
                                (summary.sims.by_status.get("suspended").copied().unwrap_or(0)) " suspended" }
                        }
                    }
                    @if summary.sims.total == 0 {
                        (empty("No SIMs yet: add a carrier account and its SIMs arrive with the next sync.", html! {
                            a href="/console/admin" { "Carrier accounts" }
                        }))
                    } @else {
                        @let statuses: Vec<&(&str, &str)> = STATUSES.iter().filter(|(s, _)| summary.sims.by_status.contains_key(*s)).collect();
                        div.table-wrap {
                            table data-fleet-counts {
                                caption { "SIMs by carrier and status" }
                                thead { tr {
                                    th scope="col" { "Carrier" }
                                    @for (_, label) in &statuses { th scope="col" class="numeric" { (label) } }
                                    th scope="col" class="numeric" { "All" }
                                } }
                                tbody {
                                    @for (carrier, by_status) in &summary.sims.by_carrier {
                                        @let name = CARRIERS.iter().find(|(c, _)| c == carrier).map_or(carrier.as_str(), |(_, label)| label);
                                        tr {
                                            th scope="row" { (name) }
                                            @for (status, _) in &statuses {
                                                td.numeric data-count={ "sims-" (carrier) "-" (status) } { (sims_link(by_status.get(*status).copied().unwrap_or(0), carrier, status)) }
                                            }
                                            td.numeric { (sims_link(by_status.values().sum(), carrier, "")) }
                                        }
                                    }
                                }
                                tfoot { tr {
                                    th scope="row" { "All carriers" }
                                    @for (status, _) in &statuses {
                                        td.numeric data-count={ "sims-" (status) } { (sims_link(summary.sims.by_status.get(*status).copied().unwrap_or(0), "", status)) }
                                    }
                                    td.numeric { (sims_link(summary.sims.total, "", "")) }
                                } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /console`
pub async fn page(ports: &ConsolePorts, session: &Session) -> Response<Body> {
    let api = ports.api.as_ref();
    let recent_path = format!("/bulk-changes?limit={RECENT_BULK_CHANGES}");
    let (recent, summary): (
        Result<Listing<BulkChange>, ApiError>,
        Result<FleetSummary, ApiError>,
    ) = tokio::join!(
        get(api, &session.token, &recent_path),
        get(api, &session.token, "/fleet/summary"),
    );
    if matches!(recent, Err(ApiError::Unauthorized(_)))
        || matches!(summary, Err(ApiError::Unauthorized(_)))
    {
        return session_ended();
    }
    let body = html! {
        header { h1 { "Overview" } }
        (fleet_numbers(&summary))
        div.columns {
        div {
        @match &recent {
            Ok(listing) => {
                @let moving: Vec<&BulkChange> = listing.items.iter().filter(|b| b.in_flight()).collect();
                @let finished: Vec<&BulkChange> = listing.items.iter().filter(|b| !b.in_flight()).take(LATEST_FINISHED).collect();
                section aria-labelledby="in-flight" id="in-flight-region" data-live-region data-refresh-on="bulkChange.progress bulkChange.completed" {
                    h2 id="in-flight" { "Bulk changes in flight" }
                    @if moving.is_empty() {
                        (empty("No bulk change is running.", html! {
                            a href="/console/sims" { "Choose SIMs to change" }
                        }))
                    } @else {
                        (bulk_change_table(&moving, "Bulk changes in flight"))
                    }
                }
                section aria-labelledby="finished" id="finished-region" data-live-region data-refresh-on="bulkChange.completed" {
                    h2 id="finished" { "Latest finished bulk changes" }
                    @if finished.is_empty() {
                        (empty("No bulk change has finished yet.", html! {}))
                    } @else {
                        (bulk_change_table(&finished, "Latest finished bulk changes"))
                    }
                }
            }
            Err(error) => (api_error(error)),
        }
        }
        section aria-labelledby="timeline-heading" {
            h2 id="timeline-heading" { "What just happened" }
            // Focusable: a scrolling list must be reachable by keyboard to be scrolled.
            ol.timeline data-timeline aria-live="off" tabindex="0" aria-labelledby="timeline-heading" {
                li data-timeline-empty { span.muted { "Events appear here as they happen (with the script's live updates on)." } }
            }
        }
        }
    };
    let live = LiveFilter {
        history: TIMELINE_HISTORY,
        ..LiveFilter::of(&OVERVIEW_EVENTS)
    };
    html_page(
        StatusCode::OK,
        frame(session, Section::Overview, "Overview", &live, body),
    )
}
