//! The overview: what needs attention now. Bulk changes still moving, with their progress, and
//! the latest ones that finished.

use crate::api::{get, ApiError};
use crate::pages::bulk_changes::bulk_change_table;
use crate::pages::layout::{api_error, empty, frame, LiveFilter, Section};
use crate::respond::{html_page, session_ended};
use crate::session::Session;
use crate::views::{BulkChange, Listing};
use crate::ConsolePorts;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use maud::html;

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

/// `GET /console`
pub async fn page(ports: &ConsolePorts, session: &Session) -> Response<Body> {
    let recent: Result<Listing<BulkChange>, ApiError> = get(
        ports.api.as_ref(),
        &session.token,
        &format!("/bulk-changes?limit={RECENT_BULK_CHANGES}"),
    )
    .await;
    if let Err(ApiError::Unauthorized(_)) = recent {
        return session_ended();
    }
    let body = html! {
        header { h1 { "Overview" } }
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
            ol.timeline data-timeline aria-live="off" {
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
