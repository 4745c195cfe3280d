//! SIMs: the tenant's inventory, filtered by status and carrier, searched by the start of an
//! ICCID, MSISDN or IMEI, sorted, a page at a time. Checkboxes select SIMs for a bulk change.

use crate::api::{get, with_query, ApiError, ApiProblem};
use crate::pages::layout::{
    api_error, badge, empty, field_error, frame, select, when, LiveFilter, Section,
};
use crate::respond::{html_page, session_ended};
use crate::session::Session;
use crate::views::{Listing, Sim};
use crate::ConsolePorts;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use maud::{html, Markup};

const PAGE_SIZE: &str = "50";

const STATUSES: [(&str, &str); 7] = [
    ("", "Any status"),
    ("active", "Active"),
    ("inventory", "Inventory"),
    ("suspended", "Suspended"),
    ("deactivated", "Deactivated"),
    ("retired", "Retired"),
    ("unknown", "Unknown"),
];

const CARRIERS: [(&str, &str); 4] = [
    ("", "Any carrier"),
    ("jasper", "Jasper"),
    ("thingSpace", "ThingSpace"),
    ("telegence", "Telegence"),
];

/// What the search box searches: the API's prefix parameter for it.
const SEARCH_IN: [(&str, &str); 3] = [("iccid", "ICCID"), ("msisdn", "MSISDN"), ("imei", "IMEI")];

const SORTS: [(&str, &str); 6] = [
    ("", "ICCID, ascending"),
    ("-iccid", "ICCID, descending"),
    ("msisdn", "MSISDN, ascending"),
    ("-msisdn", "MSISDN, descending"),
    ("imei", "IMEI, ascending"),
    ("-imei", "IMEI, descending"),
];

/// The page's filters, as the address carries them.
#[derive(Debug, Clone, Default)]
pub struct SimFilters {
    pub status: String,
    pub carrier: String,
    pub search: String,
    pub search_in: String,
    pub sort: String,
    pub cursor: String,
}

impl SimFilters {
    pub fn from_request(request: &Request) -> Self {
        let query = request.query_string_parameters();
        let value = |name: &str| query.first(name).unwrap_or("").trim().to_owned();
        let search_in = value("in");
        Self {
            status: value("status"),
            carrier: value("carrier"),
            search: value("q"),
            search_in: if SEARCH_IN.iter().any(|(v, _)| *v == search_in) {
                search_in
            } else {
                "iccid".to_owned()
            },
            sort: value("sort"),
            cursor: value("cursor"),
        }
    }

    /// The API parameter the search box fills (`iccidPrefix`, ...).
    pub fn prefix_parameter(&self) -> String {
        format!("{}Prefix", self.search_in)
    }

    /// The `GET /sims` request for these filters.
    pub fn api_path(&self) -> String {
        let prefix = self.prefix_parameter();
        with_query(
            "/sims",
            &[
                ("status", &self.status),
                ("carrier", &self.carrier),
                (&prefix, &self.search),
                ("sort", &self.sort),
                ("limit", PAGE_SIZE),
                ("cursor", &self.cursor),
            ],
        )
    }

    /// This page with these filters and another cursor.
    pub fn page_path(&self, cursor: &str) -> String {
        let search_in = if self.search.is_empty() {
            ""
        } else {
            &self.search_in
        };
        with_query(
            "/console/sims",
            &[
                ("status", &self.status),
                ("carrier", &self.carrier),
                ("q", &self.search),
                ("in", search_in),
                ("sort", &self.sort),
                ("cursor", cursor),
            ],
        )
    }
}

fn sim_table(items: &[Sim]) -> Markup {
    html! {
        div.table-wrap {
            table data-rows {
                caption.visually-hidden { "SIMs" }
                thead { tr {
                    th scope="col" {
                        input type="checkbox" data-select-all="iccid" aria-label="Select every SIM on this page";
                    }
                    th scope="col" { "ICCID" }
                    th scope="col" { "MSISDN" }
                    th scope="col" { "IMEI" }
                    th scope="col" { "Carrier" }
                    th scope="col" { "Status" }
                    th scope="col" { "Rate plan" }
                    th scope="col" { "Customer" }
                    th scope="col" { "Device" }
                    th scope="col" { "Last change" }
                } }
                tbody {
                    @for sim in items {
                        tr data-sim=(sim.iccid) {
                            td { input type="checkbox" name="iccid" value=(sim.iccid) aria-label={ "Select SIM " (sim.iccid) }; }
                            td.mono { a data-row-link href={ "/console/sims/" (sim.iccid) } { (sim.iccid) } }
                            td.mono { (sim.msisdn.as_deref().unwrap_or("")) }
                            td.mono { (sim.imei.as_deref().unwrap_or("")) }
                            td { (sim.carrier) }
                            td { (badge(&sim.status)) }
                            td { (sim.rate_plan.as_deref().unwrap_or("")) }
                            td { (sim.customer.as_deref().unwrap_or("")) }
                            td {
                                @if let Some(device) = &sim.device_id {
                                    a href={ "/console/devices/" (device) } { (device) }
                                }
                            }
                            td { @if let Some(change) = &sim.last_change { (when(&change.at)) } }
                        }
                    }
                }
            }
        }
    }
}

fn filters_form(filters: &SimFilters, problem: Option<&ApiProblem>) -> Markup {
    let about = |field: &str| problem.and_then(|p| p.about(field));
    let prefix = filters.prefix_parameter();
    let search_error = about(&prefix);
    html! {
        form.filters method="get" action="/console/sims" role="search" {
            div.field {
                label for="q" { "Search (" kbd { "/" } ")" }
                input type="search" id="q" name="q" value=(filters.search) data-search
                    inputmode="numeric" placeholder="Starts with…"
                    aria-invalid=(search_error.is_some())
                    aria-describedby=[search_error.map(|_| "q-error")];
                (field_error("q", search_error))
            }
            div.field {
                label for="in" { "in" }
                (select("in", &SEARCH_IN, &filters.search_in, false))
            }
            div.field {
                label for="status" { "Status" }
                (select("status", &STATUSES, &filters.status, about("status").is_some()))
                (field_error("status", about("status")))
            }
            div.field {
                label for="carrier" { "Carrier" }
                (select("carrier", &CARRIERS, &filters.carrier, about("carrier").is_some()))
                (field_error("carrier", about("carrier")))
            }
            div.field {
                label for="sort" { "Order" }
                (select("sort", &SORTS, &filters.sort, about("sort").is_some()))
                (field_error("sort", about("sort")))
            }
            button.secondary type="submit" { "Show" }
        }
    }
}

/// `GET /console/sims?status=&carrier=&q=&in=&sort=&cursor=`
pub async fn page(ports: &ConsolePorts, session: &Session, request: &Request) -> Response<Body> {
    let filters = SimFilters::from_request(request);
    let listing: Result<Listing<Sim>, ApiError> =
        get(ports.api.as_ref(), &session.token, &filters.api_path()).await;
    let problem = match &listing {
        Err(ApiError::Unauthorized(_)) => return session_ended(),
        Err(ApiError::Refused(problem)) => Some(problem),
        _ => None,
    };
    // A refusal that names a field is shown next to it; any other, above the table.
    let shown_at_field = problem.is_some_and(|p| !p.errors.is_empty());
    let body = html! {
        header { h1 { "SIMs" } }
        (filters_form(&filters, problem))
        @match &listing {
            Ok(listing) if listing.items.is_empty() => {
                (empty("No SIM matches these filters.", html! { a href="/console/sims" { "Show every SIM" } }))
            }
            Ok(listing) => {
                form method="get" action="/console/sims" {
                    p.muted { span data-selection-count { "0 selected" } }
                    (sim_table(&listing.items))
                }
                nav.pager aria-label="Pages" {
                    @if !filters.cursor.is_empty() {
                        a href=(filters.page_path("")) { "First page" }
                    }
                    @if let Some(next) = &listing.next_cursor {
                        a rel="next" href=(filters.page_path(next)) { "Next page" }
                    }
                }
            }
            Err(error) if !shown_at_field => (api_error(error)),
            Err(_) => {}
        }
    };
    let live = LiveFilter::of(&["sim.status"]);
    html_page(
        StatusCode::OK,
        frame(session, Section::Sims, "SIMs", &live, body),
    )
}
