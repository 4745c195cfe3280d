//! Bulk changes: the tenant's, newest first, filtered by status, a page at a time.

use crate::api::{get, with_query, ApiError};
use crate::pages::layout::{
    api_error, badge, empty, field_error, frame, progress, select, when, LiveFilter, Section,
};
use crate::respond::{html_page, session_ended};
use crate::session::Session;
use crate::views::{BulkChange, Listing};
use crate::ConsolePorts;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use maud::{html, Markup};

const PAGE_SIZE: &str = "50";

const STATUSES: [(&str, &str); 8] = [
    ("", "Any status"),
    ("new", "New"),
    ("processing", "Processing"),
    ("scheduled", "Scheduled"),
    ("recorded", "Recorded"),
    ("completed", "Completed"),
    ("completedWithErrors", "Completed with errors"),
    ("failed", "Failed"),
];

/// A table of bulk changes with their progress.
pub fn bulk_change_table(items: &[&BulkChange], caption: &str) -> Markup {
    html! {
        div.table-wrap {
            table data-rows {
                caption.visually-hidden { (caption) }
                thead { tr {
                    th scope="col" { "Change" }
                    th scope="col" { "Carrier" }
                    th scope="col" { "Status" }
                    th scope="col" { "Progress" }
                    th scope="col" { "Submitted by" }
                    th scope="col" { "Submitted" }
                } }
                tbody {
                    @for change in items {
                        tr data-bulk-change=(change.id) {
                            td { a data-row-link href={ "/console/bulk-changes/" (change.id) } { (change.describe_change()) } }
                            td { (change.carrier) }
                            td { (badge(&change.status)) }
                            td { (progress(&change.counts)) }
                            td { (change.created_by.trim_start_matches("user:")) }
                            td { (when(&change.created_at)) }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /console/bulk-changes?status=&cursor=`
pub async fn page(ports: &ConsolePorts, session: &Session, request: &Request) -> Response<Body> {
    let query = request.query_string_parameters();
    let status = query.first("status").unwrap_or("");
    let cursor = query.first("cursor").unwrap_or("");
    let path = with_query(
        "/bulk-changes",
        &[("status", status), ("limit", PAGE_SIZE), ("cursor", cursor)],
    );
    let listing: Result<Listing<BulkChange>, ApiError> =
        get(ports.api.as_ref(), &session.token, &path).await;
    let problem = match &listing {
        Err(ApiError::Unauthorized(_)) => return session_ended(),
        Err(ApiError::Refused(problem)) => Some(problem),
        _ => None,
    };
    let status_error = problem.and_then(|p| p.about("status"));
    let body = html! {
        header { h1 { "Bulk changes" } }
        form.filters method="get" action="/console/bulk-changes" {
            div.field {
                label for="status" { "Status" }
                (select("status", &STATUSES, status, status_error.is_some()))
                (field_error("status", status_error))
            }
            button.secondary type="submit" { "Show" }
        }
        div id="bulk-changes-region" data-live-region data-refresh-on="bulkChange.progress" {
        @match &listing {
            Ok(listing) if listing.items.is_empty() => {
                (empty("No bulk change matches.", html! { a href="/console/sims" { "Choose SIMs to change" } }))
            }
            Ok(listing) => {
                (bulk_change_table(&listing.items.iter().collect::<Vec<_>>(), "Bulk changes"))
                nav.pager aria-label="Pages" {
                    @if !cursor.is_empty() {
                        a href=(with_query("/console/bulk-changes", &[("status", status)])) { "First page" }
                    }
                    @if let Some(next) = &listing.next_cursor {
                        a rel="next" href=(with_query("/console/bulk-changes", &[("status", status), ("cursor", next)])) { "Next page" }
                    }
                }
            }
            Err(error) if status_error.is_none() => (api_error(error)),
            Err(_) => {}
        }
        }
    };
    // New bulk changes appear only on the first page of the unfiltered list.
    let live = LiveFilter::of(&["bulkChange.progress", "bulkChange.completed"]);
    html_page(
        StatusCode::OK,
        frame(session, Section::BulkChanges, "Bulk changes", &live, body),
    )
}
