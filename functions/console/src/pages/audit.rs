//! A bulk change's audit trail, a page at a time and oldest first: each step, and each carrier
//! call with what was sent and what came back (the worker removed the credentials before the
//! texts were stored). `?device=` narrows it to one device change's calls.

use crate::api::{get, with_query};
use crate::pages::bulk_change::{failed, plausible_id};
use crate::pages::layout::{empty, frame, when, LiveFilter, Section};
use crate::respond::html_page;
use crate::session::Session;
use crate::views::{AuditEntry, Listing};
use crate::ConsolePorts;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use maud::{html, Markup};

/// Entries on a page; each may show two texts of up to [`TEXT_SHOWN`].
const PAGE_SIZE: &str = "50";

/// The most of a request or response text a page shows: a ThingSpace batch names up to 10,000
/// devices, far more than anyone reads in a page, and the API keeps the whole text.
const TEXT_SHOWN: usize = 8 * 1024;

/// The page of the carrier calls (and callbacks) of one device change.
pub fn device_path(bulk_change_id: &str, seq: u64) -> String {
    with_query(
        &format!("/console/bulk-changes/{bulk_change_id}/audit"),
        &[("device", &seq.to_string())],
    )
}

/// At most [`TEXT_SHOWN`] bytes of `text`, cut on a character boundary, and whether it was cut.
fn shown(text: &str) -> (&str, bool) {
    if text.len() <= TEXT_SHOWN {
        return (text, false);
    }
    let mut end = TEXT_SHOWN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], true)
}

/// A request or response text, folded away until asked for.
fn exchange_text(label: &str, text: Option<&str>) -> Markup {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return html! {};
    };
    let (visible, cut) = shown(text);
    html! {
        details.exchange {
            summary { (label) span.muted { " (" (text.len()) " bytes)" } }
            pre { (visible) }
            @if cut {
                p.muted { "Only the first " (TEXT_SHOWN / 1024) " KB of " (text.len()) " bytes are shown." }
            }
        }
    }
}

/// The carrier's HTTP status; an error says so in words, not only by its colour. Steps that made
/// no carrier call show nothing unless they failed.
fn outcome(entry: &AuditEntry) -> Markup {
    match (entry.http_status, entry.has_errors) {
        (Some(code), true) => html! { span.badge data-status="failed" { (code) " error" } },
        (Some(code), false) => html! { span.badge data-status="succeeded" { (code) } },
        (None, true) => html! { span.badge data-status="failed" { "error" } },
        (None, false) => html! {},
    }
}

fn entries_table(bulk_change_id: &str, items: &[AuditEntry]) -> Markup {
    html! {
        div.table-wrap {
            table {
                caption.visually-hidden { "Audit entries, oldest first" }
                thead { tr {
                    th scope="col" { "Time" }
                    th scope="col" class="numeric" { "Device" }
                    th scope="col" { "What happened" }
                    th scope="col" { "HTTP status" }
                    th scope="col" class="numeric" { "Duration" }
                    th scope="col" { "Request and response" }
                } }
                tbody {
                    @for entry in items {
                        tr data-entry=(entry.entry_id) {
                            td { (when(&entry.created_at)) }
                            td.numeric {
                                @if let Some(seq) = entry.device_seq {
                                    a href={ "/console/bulk-changes/" (bulk_change_id) "#device-" (seq) } {
                                        (seq) span.visually-hidden { ": its outcome" }
                                    }
                                }
                            }
                            td.wrap {
                                (entry.description)
                                @if !entry.processed_by.is_empty() {
                                    br; span.muted { "by " (entry.processed_by) }
                                }
                            }
                            td { (outcome(entry)) }
                            td.numeric { @if let Some(ms) = entry.duration_ms { (ms) " ms" } }
                            td.wrap {
                                (exchange_text("Request", entry.request_text.as_deref()))
                                (exchange_text("Response", entry.response_text.as_deref()))
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /console/bulk-changes/{id}/audit?device=&cursor=`
pub async fn page(
    ports: &ConsolePorts,
    session: &Session,
    request: &Request,
    id: &str,
) -> Response<Body> {
    if !plausible_id(id) {
        return crate::respond::not_found(session);
    }
    let query = request.query_string_parameters();
    let device = query.first("device").unwrap_or("");
    let cursor = query.first("cursor").unwrap_or("");
    // The API checks `device` and the cursor; a bad one is its 400, shown in place.
    let path = with_query(
        &format!("/bulk-changes/{id}/audit"),
        &[("device", device), ("limit", PAGE_SIZE), ("cursor", cursor)],
    );
    let title = if device.is_empty() {
        "Audit trail".to_owned()
    } else {
        format!("Audit trail of device {device}")
    };
    let listing = match get::<Listing<AuditEntry>>(ports.api.as_ref(), &session.token, &path).await
    {
        Ok(listing) => listing,
        Err(error) => return failed(session, &error, &title),
    };
    let here = format!("/console/bulk-changes/{id}/audit");
    let bulk_change = format!("/console/bulk-changes/{id}");
    let first_page = cursor.is_empty();
    let body = html! {
        header {
            h1 { (title) }
            div {
                @if !device.is_empty() {
                    a.button.secondary href=(here) { "Every entry" }
                    " "
                }
                a.button.secondary href=(bulk_change) { "Back to the bulk change" }
            }
        }
        @if listing.items.is_empty() && first_page && listing.next_cursor.is_none() {
            (empty("No audit entries yet.", html! { a href=(bulk_change) { "Back to the bulk change" } }))
        } @else if listing.items.is_empty() {
            // With `device`, the API filters each page it reads: one may hold none of its entries.
            p.muted { "No entries on this page." }
        } @else {
            (entries_table(id, &listing.items))
        }
        @if !first_page || listing.next_cursor.is_some() {
            nav.pager aria-label="Pages" {
                @if !first_page {
                    a href=(with_query(&here, &[("device", device)])) { "First page" }
                }
                @if let Some(next) = &listing.next_cursor {
                    a rel="next" href=(with_query(&here, &[("device", device), ("cursor", next)])) { "Next page" }
                }
            }
        }
    };
    html_page(
        StatusCode::OK,
        frame(
            session,
            Section::BulkChanges,
            &title,
            &LiveFilter::none(),
            body,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_are_cut_on_a_character_boundary() {
        assert_eq!(shown("short"), ("short", false));
        let long = "é".repeat(TEXT_SHOWN);
        let (visible, cut) = shown(&long);
        assert!(cut);
        assert!(visible.len() <= TEXT_SHOWN && visible.len() > TEXT_SHOWN - 2);
        assert!(visible.chars().all(|c| c == 'é'));
    }
}
