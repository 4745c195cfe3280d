//! Changing SIMs from the SIM table: a selection (the SIMs ticked, or every SIM the table's
//! filters match) and an action, previewed by the API (how many, on which carrier accounts,
//! which the carrier would refuse and why), confirmed, then followed live on the bulk change's
//! page. The preview and the bulk change read the selection the same way, so the change carries
//! exactly what the preview showed.

use crate::api::{ApiError, ApiProblem, ApiRequest};
use crate::pages::layout::{frame, LiveFilter, Section};
use crate::pages::sims::SimFilters;
use crate::respond::{csrf_refused, html_page, redirect, session_ended, Form};
use crate::session::{Session, CSRF_FIELD};
use crate::ConsolePorts;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

/// The changes the SIM table offers: the API's `statusUpdate` actions, and a move to another
/// of the carrier's rate plans (`carrierRatePlanChange`, the plan named in [`RATE_PLAN_FIELD`]).
pub const ACTIONS: [(&str, &str); 5] = [
    ("suspend", "Suspend"),
    ("restore", "Restore"),
    ("activate", "Activate"),
    ("deactivate", "Deactivate"),
    (RATE_PLAN_ACTION, "Change rate plan"),
];

const RATE_PLAN_ACTION: &str = "ratePlan";
/// The form field naming the rate plan a rate plan change moves SIMs to.
pub const RATE_PLAN_FIELD: &str = "ratePlan";

/// What a proposal does to each SIM.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    /// A `statusUpdate` action, with the word for it.
    Status {
        action: &'static str,
        label: &'static str,
    },
    /// A move to the carrier's rate plan of this name.
    RatePlan(String),
}

impl Change {
    fn read(form: &Form) -> Result<Self, String> {
        let requested = form.get("action").unwrap_or("");
        let (action, label) = ACTIONS
            .iter()
            .find(|(action, _)| *action == requested)
            .copied()
            .ok_or_else(|| format!("{requested:?} is not a change the SIM table offers"))?;
        if action != RATE_PLAN_ACTION {
            return Ok(Self::Status { action, label });
        }
        match form.get(RATE_PLAN_FIELD).map(str::trim) {
            Some(plan) if !plan.is_empty() => Ok(Self::RatePlan(plan.to_owned())),
            _ => Err("Name the rate plan to move the SIMs to (the carrier's name for it, as the SIM table shows).".to_owned()),
        }
    }

    fn body(&self) -> Value {
        match self {
            Self::Status { action, .. } => json!({"type": "statusUpdate", "action": action}),
            Self::RatePlan(plan) => json!({"type": "carrierRatePlanChange", "ratePlan": plan}),
        }
    }

    /// The question the preview asks, about `sims` ("the 3 selected SIMs").
    fn question(&self, sims: &str) -> String {
        match self {
            Self::Status { label, .. } => format!("{label} {sims}?"),
            Self::RatePlan(plan) => format!("Move {sims} to rate plan {plan}?"),
        }
    }

    /// What confirming does, to `count` SIMs.
    fn confirmation(&self, count: u64) -> String {
        match self {
            Self::Status { label, .. } => format!("{label} {count} SIMs"),
            Self::RatePlan(plan) => format!("Move {count} SIMs to {plan}"),
        }
    }

    /// The page's title.
    fn title(&self) -> String {
        match self {
            Self::Status { label, .. } => format!("{label} SIMs"),
            Self::RatePlan(_) => "Change the rate plan of SIMs".to_owned(),
        }
    }
}

/// Which SIMs a proposal changes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    /// The SIMs ticked in the table.
    Selected(Vec<String>),
    /// Every SIM the table's filters match.
    Filter,
}

/// A change being previewed or confirmed, as the forms carry it from page to page.
#[derive(Debug, Clone)]
struct Proposal {
    change: Change,
    scope: Scope,
    filters: SimFilters,
    /// Chosen at the preview, so confirming twice makes one bulk change.
    idempotency_key: String,
}

impl Proposal {
    fn read(form: &Form) -> Result<Self, String> {
        let change = Change::read(form)?;
        let scope = match form.get("scope") {
            Some("filter") => Scope::Filter,
            _ => {
                let ticked: Vec<String> =
                    form.all("iccid").into_iter().map(str::to_owned).collect();
                if ticked.is_empty() {
                    return Err("No SIM is selected: tick the SIMs to change, or preview for every SIM the filters match.".to_owned());
                }
                Scope::Selected(ticked)
            }
        };
        let idempotency_key = form
            .get("idempotency-key")
            .filter(|key| !key.is_empty() && key.len() <= 64)
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
        Ok(Self {
            change,
            scope,
            filters: SimFilters::from_form(form),
            idempotency_key,
        })
    }

    fn request_body(&self) -> Value {
        let filter = match &self.scope {
            Scope::Selected(iccids) => json!({ "iccids": iccids }),
            Scope::Filter => self.filters.selection(),
        };
        json!({
            "change": self.change.body(),
            "filter": filter,
        })
    }

    fn describe(&self) -> String {
        match &self.scope {
            Scope::Selected(iccids) if iccids.len() == 1 => "the selected SIM".to_owned(),
            Scope::Selected(iccids) => format!("the {} selected SIMs", iccids.len()),
            Scope::Filter if self.filters.describe().is_empty() => "every SIM".to_owned(),
            Scope::Filter => format!("every SIM with {}", self.filters.describe()),
        }
    }

    fn hidden_fields(&self, session: &Session) -> Markup {
        html! {
            input type="hidden" name=(CSRF_FIELD) value=(session.csrf());
            @match &self.change {
                Change::Status { action, .. } => { input type="hidden" name="action" value=(action); }
                Change::RatePlan(plan) => {
                    input type="hidden" name="action" value=(RATE_PLAN_ACTION);
                    input type="hidden" name=(RATE_PLAN_FIELD) value=(plan);
                }
            }
            input type="hidden" name="idempotency-key" value=(self.idempotency_key);
            @match &self.scope {
                Scope::Selected(iccids) => {
                    input type="hidden" name="scope" value="selected";
                    @for iccid in iccids { input type="hidden" name="iccid" value=(iccid); }
                }
                Scope::Filter => { input type="hidden" name="scope" value="filter"; }
            }
            (self.filters.hidden_fields())
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Preview {
    matched: u64,
    accepted: u64,
    #[serde(default)]
    accounts: Vec<AccountShare>,
    refused: Refused,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccountShare {
    #[serde(default)]
    service_provider_id: Option<String>,
    carrier: String,
    sims: u64,
}

#[derive(Debug, Deserialize)]
struct Refused {
    count: u64,
    #[serde(default)]
    reasons: Vec<ReasonCount>,
    #[serde(default)]
    sample: Vec<RefusedSim>,
}

#[derive(Debug, Deserialize)]
struct ReasonCount {
    reason: String,
    count: u64,
}

#[derive(Debug, Deserialize)]
struct RefusedSim {
    iccid: String,
    reason: String,
}

/// The API's refusal of a proposal, with every field it names.
fn refusal(problem: &ApiProblem) -> Markup {
    html! {
        div.notice.error role="alert" {
            p { strong { (crate::pages::sign_in::capitalized(&problem.detail)) } }
            @if !problem.errors.is_empty() {
                ul {
                    @for error in &problem.errors {
                        li { @if !error.field.is_empty() { code { (error.field) } ": " } (error.message) }
                    }
                }
            }
        }
    }
}

fn page(session: &Session, title: &str, status: StatusCode, body: Markup) -> Response<Body> {
    html_page(
        status,
        frame(session, Section::Sims, title, &LiveFilter::none(), body),
    )
}

fn back_to_sims(proposal: &Proposal) -> Markup {
    html! { a.button.secondary href=(proposal.filters.page_path("")) { "Back to the SIMs" } }
}

fn preview_markup(session: &Session, proposal: &Proposal, preview: &Preview) -> Markup {
    html! {
        header { h1 { (proposal.change.question(&proposal.describe())) } }
        section.panel aria-labelledby="preview-heading" {
            h2 id="preview-heading" { "What the change would do" }
            dl.facts {
                dt { "Selected" } dd data-testid="matched" { (preview.matched) " SIMs in the inventory" }
                dt { "Would change" } dd data-testid="accepted" { (preview.accepted) " SIMs" }
                dt { "Carrier accounts" }
                dd {
                    @if preview.accounts.is_empty() { "none" }
                    @for account in &preview.accounts {
                        div { (account.carrier) " " span.mono { (account.service_provider_id.as_deref().unwrap_or("(the deployment's account)")) } ": " (account.sims) " SIMs" }
                    }
                }
                dt { "Refused" } dd data-testid="refused" { (preview.refused.count) " SIMs" }
            }
        }
        @if preview.refused.count > 0 {
            section aria-labelledby="refused-heading" {
                h2 id="refused-heading" { "SIMs the carrier would refuse" }
                ul {
                    @for reason in &preview.refused.reasons { li { (reason.reason) ": " (reason.count) } }
                }
                div.table-wrap {
                    table {
                        caption { "The first " (preview.refused.sample.len()) " refused SIMs" }
                        thead { tr { th scope="col" { "ICCID" } th scope="col" { "Why" } } }
                        tbody {
                            @for sim in &preview.refused.sample {
                                tr { td.mono { (sim.iccid) } td { (sim.reason) } }
                            }
                        }
                    }
                }
            }
        }
        form method="post" action="/console/bulk-changes" {
            (proposal.hidden_fields(session))
            p.pager {
                @if preview.accepted > 0 {
                    button type="submit" { (proposal.change.confirmation(preview.accepted)) }
                } @else {
                    span.notice.info { "Nothing to change: the carrier would refuse every selected SIM." }
                }
                (back_to_sims(proposal))
            }
        }
    }
}

/// Reads the form and checks its CSRF token; the answer to send instead when it fails.
fn proposal_of(session: &Session, request: &Request) -> Result<Proposal, Box<Response<Body>>> {
    let form = Form::read(request);
    if form.csrf_fails(session) {
        return Err(Box::new(csrf_refused()));
    }
    Proposal::read(&form).map_err(|message| {
        let filters = SimFilters::from_form(&form);
        let body = html! {
            header { h1 { "Change SIMs" } }
            div.notice.error role="alert" { (message) }
            a.button.secondary href=(filters.page_path("")) { "Back to the SIMs" }
        };
        Box::new(page(
            session,
            "Change SIMs",
            StatusCode::UNPROCESSABLE_ENTITY,
            body,
        ))
    })
}

/// `POST /console/bulk-changes/preview`
pub async fn preview(ports: &ConsolePorts, session: &Session, request: &Request) -> Response<Body> {
    let proposal = match proposal_of(session, request) {
        Ok(proposal) => proposal,
        Err(response) => return *response,
    };
    let answer = ports
        .api
        .call(ApiRequest::post(
            "/bulk-changes/preview",
            Some(&session.token),
            proposal.request_body(),
        ))
        .await
        .and_then(|value| {
            serde_json::from_value::<Preview>(value)
                .map_err(|e| ApiError::Unexpected(format!("the preview: {e}")))
        });
    let title = proposal.change.title();
    match answer {
        Ok(preview) => page(
            session,
            &title,
            StatusCode::OK,
            preview_markup(session, &proposal, &preview),
        ),
        Err(error) => refused(session, &proposal, &title, &error),
    }
}

/// The proposal's page with the API's refusal in place of the preview.
fn refused(
    session: &Session,
    proposal: &Proposal,
    title: &str,
    error: &ApiError,
) -> Response<Body> {
    let (status, notice) = match error {
        ApiError::Unauthorized(_) => return session_ended(),
        ApiError::Refused(problem) => (
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY),
            refusal(problem),
        ),
        other => (
            StatusCode::BAD_GATEWAY,
            crate::pages::layout::api_error(other),
        ),
    };
    let body = html! {
        header { h1 { (proposal.change.question(&proposal.describe())) } }
        (notice)
        (back_to_sims(proposal))
    };
    page(session, title, status, body)
}

#[derive(Debug, Deserialize)]
struct Created {
    id: String,
}

/// `POST /console/bulk-changes`: the confirmed proposal becomes a bulk change, whose page then
/// follows it live.
pub async fn create(ports: &ConsolePorts, session: &Session, request: &Request) -> Response<Body> {
    let proposal = match proposal_of(session, request) {
        Ok(proposal) => proposal,
        Err(response) => return *response,
    };
    let mut call = ApiRequest::post(
        "/bulk-changes",
        Some(&session.token),
        proposal.request_body(),
    );
    call.idempotency_key = Some(proposal.idempotency_key.clone());
    let answer = ports.api.call(call).await.and_then(|value| {
        serde_json::from_value::<Created>(value)
            .map_err(|e| ApiError::Unexpected(format!("the created bulk change: {e}")))
    });
    match answer {
        Ok(created) => redirect(&format!("/console/bulk-changes/{}", created.id)),
        Err(error) => refused(session, &proposal, &proposal.change.title(), &error),
    }
}
