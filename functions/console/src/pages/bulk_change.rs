//! One bulk change: its progress (live), and each device's outcome with the carrier's reason and
//! a way to its carrier calls in the audit trail ([`super::audit`]).

use crate::api::{get, with_query, ApiError};
use crate::pages::layout::{api_error, badge, empty, frame, progress, when, LiveFilter, Section};
use crate::respond::{html_page, session_ended};
use crate::session::Session;
use crate::views::{BulkChange, DeviceChange, Listing};
use crate::ConsolePorts;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use maud::{html, Markup};

/// Device outcomes shown on the page; the CSV has them all.
const DEVICES_SHOWN: &str = "200";

/// A bulk change id as the API writes them (a UUID); anything else is no page of ours.
pub(crate) fn plausible_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

fn outcomes_table(bulk_change_id: &str, items: &[DeviceChange]) -> Markup {
    html! {
        div.table-wrap {
            table data-rows {
                caption.visually-hidden { "Device outcomes" }
                thead { tr {
                    th scope="col" class="numeric" { "#" }
                    th scope="col" { "ICCID" }
                    th scope="col" { "MSISDN" }
                    th scope="col" { "Outcome" }
                    th scope="col" { "Reason" }
                    th scope="col" class="numeric" { "Attempts" }
                    th scope="col" { "Updated" }
                    th scope="col" { "Carrier calls" }
                } }
                tbody {
                    @for device in items {
                        tr id={ "device-" (device.seq) } {
                            td.numeric { (device.seq) }
                            td.mono { a data-row-link href={ "/console/sims?q=" (device.iccid) } { (device.iccid) } }
                            td.mono { (device.msisdn.as_deref().unwrap_or("")) }
                            td { (badge(&device.status)) }
                            td { (device.status_reason.as_deref().unwrap_or("")) }
                            td.numeric { (device.attempts) }
                            td { @if !device.updated_at.is_empty() { (when(&device.updated_at)) } }
                            td {
                                a href=(super::audit::device_path(bulk_change_id, device.seq)) {
                                    "Calls" span.visually-hidden { " of device " (device.seq) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The answer when the API would not give the bulk change: sign-in again, not found (another
/// tenant's bulk change is as absent as one that never was), or the API's error in place.
pub(crate) fn failed(session: &Session, error: &ApiError, title: &str) -> Response<Body> {
    match error {
        ApiError::Unauthorized(_) => session_ended(),
        ApiError::Refused(problem) if problem.status == 404 => crate::respond::not_found(session),
        error => {
            let body = html! { header { h1 { (title) } } (api_error(error)) };
            html_page(
                StatusCode::OK,
                frame(
                    session,
                    Section::BulkChanges,
                    title,
                    &LiveFilter::none(),
                    body,
                ),
            )
        }
    }
}

/// `GET /console/bulk-changes/{id}`
pub async fn page(ports: &ConsolePorts, session: &Session, id: &str) -> Response<Body> {
    if !plausible_id(id) {
        return crate::respond::not_found(session);
    }
    let api = ports.api.as_ref();
    let change_path = format!("/bulk-changes/{id}");
    let devices_path = with_query(
        &format!("/bulk-changes/{id}/devices"),
        &[("limit", DEVICES_SHOWN)],
    );
    let (change, devices) = tokio::join!(
        get::<BulkChange>(api, &session.token, &change_path),
        get::<Listing<DeviceChange>>(api, &session.token, &devices_path),
    );
    let change = match change {
        Ok(change) => change,
        Err(error) => return failed(session, &error, "Bulk change"),
    };
    let live = LiveFilter {
        bulk_changes: vec![change.id.clone()],
        ..LiveFilter::of(&["bulkChange.progress", "bulkChange.completed"])
    };
    let title = change.describe_change();
    let body = html! {
        header {
            h1 { (title) }
            div {
                a.button.secondary href={ "/console/bulk-changes/" (change.id) "/audit" } { "Audit trail" }
                " "
                a.button.secondary href={ "/console/bulk-changes/" (change.id) "/outcomes.csv" } download { "Download outcomes (CSV)" }
            }
        }
        section.panel data-bulk-change=(change.id) aria-labelledby="progress-heading" {
            h2 id="progress-heading" { "Progress" }
            dl.facts {
                dt { "Status" } dd { (badge(&change.status)) }
                dt { "Devices" } dd { (progress(&change.counts)) }
                dt { "Carrier" } dd { (change.carrier) }
                dt { "Submitted by" } dd { (change.created_by.trim_start_matches("user:")) }
                dt { "Submitted" } dd { (when(&change.created_at)) }
                dt { "Id" } dd.mono { (change.id) }
                @if let Some(reason) = &change.failure_reason {
                    dt { "Why it failed" } dd { (reason) }
                }
            }
        }
        section aria-labelledby="outcomes-heading" data-live-region id="outcomes" data-refresh-on="bulkChange.completed" {
            h2 id="outcomes-heading" { "Device outcomes" }
            @match &devices {
                Ok(listing) if listing.items.is_empty() => {
                    (empty("The devices have not been planned yet; they appear here once the planner has read the request.", html! {}))
                }
                Ok(listing) => {
                    (outcomes_table(&change.id, &listing.items))
                    @if listing.next_cursor.is_some() {
                        p.muted { "The first " (DEVICES_SHOWN) " devices are shown; the CSV has every device." }
                    }
                }
                Err(error) => (api_error(error)),
            }
        }
    };
    html_page(
        StatusCode::OK,
        frame(session, Section::BulkChanges, &title, &live, body),
    )
}

/// A CSV field, quoted when it must be (RFC 4180), and never read as a formula by a
/// spreadsheet: a leading `=`, `+`, `-` or `@` is escaped with a quote.
fn csv_field(value: &str) -> String {
    let guarded = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

/// The API's largest page.
const CSV_PAGE: &str = "1000";

/// `GET /console/bulk-changes/{id}/outcomes.csv`: every device's outcome, all pages.
pub async fn outcomes_csv(ports: &ConsolePorts, session: &Session, id: &str) -> Response<Body> {
    if !plausible_id(id) {
        return crate::respond::not_found(session);
    }
    let mut csv = String::from("seq,iccid,msisdn,outcome,reason,attempts,updated_at\r\n");
    let mut cursor = String::new();
    loop {
        let path = with_query(
            &format!("/bulk-changes/{id}/devices"),
            &[("limit", CSV_PAGE), ("cursor", &cursor)],
        );
        let listing =
            match get::<Listing<DeviceChange>>(ports.api.as_ref(), &session.token, &path).await {
                Ok(listing) => listing,
                Err(error) => return failed(session, &error, "Outcomes"),
            };
        for device in &listing.items {
            let fields = [
                device.seq.to_string(),
                csv_field(&device.iccid),
                csv_field(device.msisdn.as_deref().unwrap_or("")),
                csv_field(&device.status),
                csv_field(device.status_reason.as_deref().unwrap_or("")),
                device.attempts.to_string(),
                csv_field(&device.updated_at),
            ];
            csv.push_str(&fields.join(","));
            csv.push_str("\r\n");
        }
        match listing.next_cursor {
            Some(next) => cursor = next,
            None => break,
        }
    }
    let mut response = Response::new(Body::Text(csv));
    let headers = response.headers_mut();
    headers.insert(
        lambda_http::http::header::CONTENT_TYPE,
        lambda_http::http::HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(disposition) = lambda_http::http::HeaderValue::from_str(&format!(
        "attachment; filename=\"bulk-change-{id}-outcomes.csv\""
    )) {
        headers.insert(lambda_http::http::header::CONTENT_DISPOSITION, disposition);
    }
    headers.insert(
        lambda_http::http::header::CACHE_CONTROL,
        lambda_http::http::HeaderValue::from_static("no-store"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("8901"), "8901");
        assert_eq!(
            csv_field("carrier said \"no\", twice"),
            "\"carrier said \"\"no\"\", twice\""
        );
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("-1"), "'-1");
    }

    #[test]
    fn only_uuid_like_ids_are_asked_for() {
        assert!(plausible_id("019aa8e4-6f2a-7c3d-9b1e-2f4a5c6d7e80"));
        assert!(!plausible_id("../users"));
        assert!(!plausible_id(""));
    }
}
