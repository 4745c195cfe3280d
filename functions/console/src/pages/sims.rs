//! SIMs: the tenant's inventory, filtered by status and carrier, searched by the start of an
//! ICCID, MSISDN or IMEI, sorted, a page at a time. Checkboxes select SIMs for a bulk change.

use crate::api::{get, with_query, ApiError, ApiProblem};
use crate::pages::layout::{
    api_error, badge, empty, field_error, frame, select, when, LiveFilter, Section,
};
use crate::respond::Form;
use crate::respond::{html_page, session_ended};
use crate::session::{Session, CSRF_FIELD};
use crate::views::{Listing, Sim};
use crate::ConsolePorts;
use cellbridge_identity::role::Role;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use maud::{html, Markup};

const PAGE_SIZE: &str = "50";

pub(crate) const STATUSES: [(&str, &str); 7] = [
    ("", "Any status"),
    ("active", "Active"),
    ("inventory", "Inventory"),
    ("suspended", "Suspended"),
    ("deactivated", "Deactivated"),
    ("retired", "Retired"),
    ("unknown", "Unknown"),
];

pub(crate) const CARRIERS: [(&str, &str); 4] = [
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
        Self::from_fields(|name| query.first(name).map(str::to_owned))
    }

    /// The filters a form carried along (the SIM table's action form).
    pub fn from_form(form: &Form) -> Self {
        Self::from_fields(|name| form.get(name).map(str::to_owned))
    }

    fn from_fields(field: impl Fn(&str) -> Option<String>) -> Self {
        let value = |name: &str| field(name).unwrap_or_default().trim().to_owned();
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

    /// The filters as a bulk change's `filter` selects by them (`GET /sims`'s names).
    pub fn selection(&self) -> serde_json::Value {
        let mut filter = serde_json::Map::new();
        for (name, value) in [
            ("status", &self.status),
            ("carrier", &self.carrier),
            (&self.prefix_parameter() as &str, &self.search),
        ] {
            if !value.is_empty() {
                filter.insert(name.to_owned(), serde_json::Value::String(value.clone()));
            }
        }
        serde_json::Value::Object(filter)
    }

    /// The filters as hidden fields, carried from the table to the preview to the confirmation.
    pub fn hidden_fields(&self) -> Markup {
        html! {
            @for (name, value) in [("status", &self.status), ("carrier", &self.carrier), ("q", &self.search), ("in", &self.search_in)] {
                @if !value.is_empty() { input type="hidden" name=(name) value=(value); }
            }
        }
    }

    /// In words, for the preview: "status active, carrier jasper, ICCID starting 8901".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.status.is_empty() {
            parts.push(format!("status {}", self.status));
        }
        if !self.carrier.is_empty() {
            parts.push(format!("carrier {}", self.carrier));
        }
        if !self.search.is_empty() {
            parts.push(format!(
                "{} starting {}",
                self.search_in.to_uppercase(),
                self.search
            ));
        }
        parts.join(", ")
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

fn sim_table(items: &[Sim], selectable: bool) -> Markup {
    html! {
        div.table-wrap {
            table data-rows {
                caption.visually-hidden { "SIMs" }
                thead { tr {
                    @if selectable {
                        th scope="col" {
                            input type="checkbox" data-select-all="iccid" aria-label="Select every SIM on this page";
                        }
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
                            @if selectable {
                                td { input type="checkbox" name="iccid" value=(sim.iccid) aria-label={ "Select SIM " (sim.iccid) }; }
                            }
                            td.mono { a data-row-link href={ "/console/sims?in=iccid&q=" (sim.iccid) } { (sim.iccid) } }
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

fn pager(filters: &SimFilters, next_cursor: Option<&str>) -> Markup {
    html! {
        nav.pager aria-label="Pages" {
            @if !filters.cursor.is_empty() {
                a href=(filters.page_path("")) { "First page" }
            }
            @if let Some(next) = next_cursor {
                a rel="next" href=(filters.page_path(next)) { "Next page" }
            }
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
    // Changing SIMs needs the operator role; the API refuses it anyway, so a viewer is not
    // offered what would be refused.
    let may_change = session.identity.roles.allows(Role::Operator);
    let body = html! {
        header { h1 { "SIMs" } }
        (filters_form(&filters, problem))
        @match &listing {
            Ok(listing) if listing.items.is_empty() => {
                (empty("No SIM matches these filters.", html! { a href="/console/sims" { "Show every SIM" } }))
            }
            Ok(listing) if may_change => {
                form method="post" action="/console/bulk-changes/preview" {
                    input type="hidden" name=(CSRF_FIELD) value=(session.csrf());
                    (filters.hidden_fields())
                    fieldset.actions {
                        legend.visually-hidden { "Change SIMs" }
                        div.field {
                            label for="action" { "Change" }
                            (select("action", &crate::pages::change::ACTIONS, "suspend", false))
                        }
                        div.field {
                            label for="rate-plan" { "New rate plan (to change it)" }
                            input type="text" id="rate-plan" name=(crate::pages::change::RATE_PLAN_FIELD) autocomplete="off";
                        }
                        button type="submit" name="scope" value="selected" { "Preview for the selected SIMs" }
                        button.secondary type="submit" name="scope" value="filter" { "Preview for every SIM these filters match" }
                        span.muted data-selection-count { "0 selected" }
                    }
                    (sim_table(&listing.items, true))
                }
                (pager(&filters, listing.next_cursor.as_deref()))
            }
            Ok(listing) => {
                (sim_table(&listing.items, false))
                (pager(&filters, listing.next_cursor.as_deref()))
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
