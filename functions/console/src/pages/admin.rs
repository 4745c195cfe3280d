//! Admin: the tenant's users and its carrier accounts (service providers). Credentials are
//! write-only: the forms take them, and the page only ever shows which ones are on file.

use crate::api::{get, ApiError, ApiProblem, ApiRequest};
use crate::pages::layout::{
    api_error, badge, empty, field_error, frame, select, when, LiveFilter, Section,
};
use crate::pages::sign_in::capitalized;
use crate::respond::{csrf_refused, html_page, redirect, session_ended, Form};
use crate::session::{Session, CSRF_FIELD};
use crate::views::{Listing, ServiceProvider, User};
use crate::ConsolePorts;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use maud::{html, Markup};
use serde_json::{json, Map, Value};

const ROLES: [(&str, &str); 3] = [
    ("viewer", "Viewer (reads)"),
    ("operator", "Operator (also changes SIMs, sends commands)"),
    ("admin", "Admin (also manages users and carrier accounts)"),
];

const CARRIERS: [(&str, &str); 3] = [
    ("jasper", "Jasper (Cisco Control Center)"),
    ("thingSpace", "ThingSpace (Verizon)"),
    ("telegence", "Telegence (AT&T)"),
];

/// Credential rows the provider form offers; each carrier needs two to four (docs/carriers.md).
const CREDENTIAL_ROWS: usize = 4;

/// What the forms show after a refusal: which form, what was typed, and the API's complaints.
#[derive(Debug, Default)]
pub struct Attempt<'a> {
    form: Option<&'a str>,
    values: Option<&'a Form>,
    problem: Option<&'a ApiProblem>,
}

impl Attempt<'_> {
    fn about(&self, form: &str, field: &str) -> Option<&str> {
        (self.form == Some(form))
            .then_some(self.problem)
            .flatten()
            .and_then(|p| p.about(field))
    }

    fn general(&self, form: &str) -> Option<&ApiProblem> {
        (self.form == Some(form))
            .then_some(self.problem)
            .flatten()
            .filter(|p| p.errors.is_empty())
    }

    fn value(&self, form: &str, field: &str) -> &str {
        match (self.form == Some(form), self.values) {
            (true, Some(values)) => values.get(field).unwrap_or(""),
            _ => "",
        }
    }
}

fn text_field(
    attempt: &Attempt<'_>,
    form: &str,
    id: &str,
    name: &str,
    label: &str,
    kind: &str,
    api_field: &str,
) -> Markup {
    let error = attempt.about(form, api_field);
    // Secrets are never sent back into a page, even after a refusal.
    let value = if kind == "password" {
        ""
    } else {
        attempt.value(form, name)
    };
    html! {
        div.field {
            label for=(id) { (label) }
            input type=(kind) id=(id) name=(name) value=(value) autocomplete="off"
                aria-invalid=(error.is_some())
                aria-describedby=[error.map(|_| format!("{id}-error"))];
            (field_error(id, error))
        }
    }
}

fn general_error(problem: Option<&ApiProblem>) -> Markup {
    html! {
        @if let Some(problem) = problem {
            div.notice.error role="alert" { (capitalized(&problem.detail)) }
        }
    }
}

fn users_section(
    session: &Session,
    users: &Result<Listing<User>, ApiError>,
    attempt: &Attempt<'_>,
) -> Markup {
    html! {
        section aria-labelledby="users-heading" {
            h2 id="users-heading" { "Users" }
            @match users {
                Ok(listing) if listing.items.is_empty() => (empty("No users yet.", html! {})),
                Ok(listing) => {
                    div.table-wrap {
                        table {
                            caption.visually-hidden { "Users of this tenant" }
                            thead { tr {
                                th scope="col" { "Username" } th scope="col" { "Roles" } th scope="col" { "Locked" }
                                th scope="col" { "Created" } th scope="col" { span.visually-hidden { "Actions" } }
                            } }
                            tbody {
                                @for user in &listing.items {
                                    tr data-user=(user.username) {
                                        td { (user.username) }
                                        td { (user.roles.join(", ")) }
                                        td { @if user.locked { (badge("locked")) } }
                                        td { @if let Some(at) = &user.created_at { (when(at)) } }
                                        td {
                                            @if user.username != session.identity.subject {
                                                form method="post" action={ "/console/admin/users/" (user.username) "/delete" } {
                                                    input type="hidden" name=(CSRF_FIELD) value=(session.csrf());
                                                    button.secondary type="submit" aria-label={ "Delete " (user.username) } { "Delete" }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                Err(error) => (api_error(error)),
            }
            form.panel method="post" action="/console/admin/users" aria-labelledby="new-user-heading" {
                h3 id="new-user-heading" { "Add a user" }
                (general_error(attempt.general("user")))
                input type="hidden" name=(CSRF_FIELD) value=(session.csrf());
                div.filters {
                    (text_field(attempt, "user", "new-username", "username", "Username", "text", "username"))
                    (text_field(attempt, "user", "new-password", "password", "Password (12 characters or more)", "password", "password"))
                    div.field {
                        label for="role" { "Role" }
                        (select("role", &ROLES, attempt.value("user", "role"), attempt.about("user", "roles").is_some()))
                        (field_error("role", attempt.about("user", "roles")))
                    }
                    button type="submit" { "Add user" }
                }
            }
        }
    }
}

fn providers_section(
    session: &Session,
    providers: &Result<Listing<ServiceProvider>, ApiError>,
    attempt: &Attempt<'_>,
) -> Markup {
    html! {
        section aria-labelledby="providers-heading" {
            h2 id="providers-heading" { "Carrier accounts" }
            @match providers {
                Ok(listing) if listing.items.is_empty() => (empty("No carrier account yet: add one below to sync its SIMs.", html! {})),
                Ok(listing) => {
                    div.table-wrap {
                        table {
                            caption.visually-hidden { "Carrier accounts (service providers)" }
                            thead { tr {
                                th scope="col" { "Name" } th scope="col" { "Carrier" } th scope="col" { "Endpoint" }
                                th scope="col" { "Credentials on file" } th scope="col" { "Last test" }
                                th scope="col" { span.visually-hidden { "Actions" } }
                            } }
                            tbody {
                                @for provider in &listing.items {
                                    tr data-provider=(provider.id) {
                                        td { (provider.name) }
                                        td { (provider.carrier) }
                                        td.mono { (provider.endpoint) }
                                        td {
                                            (provider.credentials.join(", "))
                                            @if let Some(at) = &provider.credentials_updated_at { br; span.muted { "set " (when(at)) } }
                                        }
                                        td {
                                            @if let Some(test) = &provider.last_test {
                                                @let ok = test.get("ok").and_then(Value::as_bool).unwrap_or(false);
                                                (badge(if ok { "succeeded" } else { "failed" }))
                                                " " (test.get("detail").and_then(Value::as_str).unwrap_or(""))
                                            }
                                        }
                                        td {
                                            form method="post" action={ "/console/admin/providers/" (provider.id) "/test" } {
                                                input type="hidden" name=(CSRF_FIELD) value=(session.csrf());
                                                button.secondary type="submit" aria-label={ "Test " (provider.name) } { "Test" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                Err(error) => (api_error(error)),
            }
            form.panel method="post" action="/console/admin/providers" aria-labelledby="new-provider-heading" {
                h3 id="new-provider-heading" { "Add a carrier account" }
                p.muted { "Credentials are stored in Secrets Manager and never shown again: Jasper takes username and apiKey; ThingSpace appKey, appSecret, username and password (and an account name); Telegence appId and appSecret." }
                (general_error(attempt.general("provider")))
                input type="hidden" name=(CSRF_FIELD) value=(session.csrf());
                div.filters {
                    (text_field(attempt, "provider", "provider-name", "name", "Name", "text", "name"))
                    div.field {
                        label for="carrier" { "Carrier" }
                        (select("carrier", &CARRIERS, attempt.value("provider", "carrier"), attempt.about("provider", "carrier").is_some()))
                        (field_error("carrier", attempt.about("provider", "carrier")))
                    }
                    (text_field(attempt, "provider", "provider-endpoint", "endpoint", "API endpoint", "url", "endpoint"))
                    (text_field(attempt, "provider", "provider-account", "accountName", "ThingSpace account name", "text", "settings.accountName"))
                }
                fieldset.actions {
                    legend { "Credentials" }
                    @for row in 0..CREDENTIAL_ROWS {
                        @let name_id = format!("credential-name-{row}");
                        @let value_id = format!("credential-value-{row}");
                        div.field {
                            label for=(name_id) { "Name " (row + 1) }
                            input type="text" id=(name_id) name="credentialName" value=(attempt.values.filter(|_| attempt.form == Some("provider")).map(|f| f.all("credentialName").get(row).copied().unwrap_or("")).unwrap_or("")) autocomplete="off";
                        }
                        div.field {
                            label for=(value_id) { "Value " (row + 1) }
                            input type="password" id=(value_id) name="credentialValue" autocomplete="new-password";
                        }
                    }
                    (field_error("credentials", attempt.about("provider", "credentials")))
                }
                button type="submit" { "Add carrier account" }
            }
        }
    }
}

fn numbers_section(session: &Session, attempt: &Attempt<'_>) -> Markup {
    html! {
        section aria-labelledby="numbers-heading" {
            h2 id="numbers-heading" { "The fleet's numbers" }
            form.panel method="post" action="/console/admin/recount" {
                p.muted { "The overview's numbers are counted as SIMs and devices change. Recount them from the inventory after upgrading from a version that did not keep them, or when they look wrong; a change made while the recount reads is best recounted again." }
                (general_error(attempt.general("recount")))
                input type="hidden" name=(CSRF_FIELD) value=(session.csrf());
                button.secondary type="submit" { "Recount" }
            }
        }
    }
}

async fn render(
    ports: &ConsolePorts,
    session: &Session,
    attempt: &Attempt<'_>,
    status: StatusCode,
) -> Response<Body> {
    let api = ports.api.as_ref();
    let (users, providers) = tokio::join!(
        get::<Listing<User>>(api, &session.token, "/users?limit=200"),
        get::<Listing<ServiceProvider>>(api, &session.token, "/service-providers?limit=100"),
    );
    if matches!(users, Err(ApiError::Unauthorized(_))) {
        return session_ended();
    }
    let body = html! {
        header { h1 { "Admin" } }
        (users_section(session, &users, attempt))
        (providers_section(session, &providers, attempt))
        (numbers_section(session, attempt))
    };
    html_page(
        status,
        frame(session, Section::Admin, "Admin", &LiveFilter::none(), body),
    )
}

/// `GET /console/admin`
pub async fn page(ports: &ConsolePorts, session: &Session) -> Response<Body> {
    render(ports, session, &Attempt::default(), StatusCode::OK).await
}

/// Sends `call`; on success on to `done`, on refusal the page with the complaint at the form
/// `form`.
async fn act(
    ports: &ConsolePorts,
    session: &Session,
    form_name: &str,
    form: &Form,
    call: ApiRequest,
    done: &str,
) -> Response<Body> {
    let problem = match ports
        .api
        .call(call)
        .await
        .map_err(ApiError::into_form_problem)
    {
        Ok(_) => return redirect(done),
        Err(Some(problem)) => problem,
        Err(None) => return session_ended(),
    };
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
    let attempt = Attempt {
        form: Some(form_name),
        values: Some(form),
        problem: Some(&problem),
    };
    render(ports, session, &attempt, status).await
}

/// Where an admin's action returns to.
const ADMIN_PAGE: &str = "/console/admin";

/// `POST /console/admin/...`: add or delete a user, add or test a carrier account, recount the
/// fleet's numbers.
pub async fn submit(
    ports: &ConsolePorts,
    session: &Session,
    request: &Request,
    action: &str,
) -> Option<Response<Body>> {
    let form = Form::read(request);
    if form.csrf_fails(session) {
        return Some(csrf_refused());
    }
    let token = Some(session.token.as_str());
    let response = match action.split('/').collect::<Vec<_>>().as_slice() {
        ["users"] => {
            let body = json!({
                "username": form.get("username").unwrap_or("").trim(),
                "password": form.get("password").unwrap_or(""),
                "roles": [form.get("role").unwrap_or("viewer")],
            });
            act(
                ports,
                session,
                "user",
                &form,
                ApiRequest::post("/users", token, body),
                ADMIN_PAGE,
            )
            .await
        }
        ["users", username, "delete"] => {
            let call = ApiRequest {
                method: Method::DELETE,
                ..ApiRequest::get(format!("/users/{}", encode(username)), &session.token)
            };
            act(ports, session, "users", &form, call, ADMIN_PAGE).await
        }
        ["providers"] => {
            let mut credentials = Map::new();
            for (name, value) in form
                .all("credentialName")
                .into_iter()
                .zip(form.all("credentialValue"))
            {
                if !name.trim().is_empty() {
                    credentials.insert(name.trim().to_owned(), Value::String(value.to_owned()));
                }
            }
            let mut body = json!({
                "name": form.get("name").unwrap_or("").trim(),
                "carrier": form.get("carrier").unwrap_or(""),
                "endpoint": form.get("endpoint").unwrap_or("").trim(),
                "credentials": credentials,
            });
            if let Some(account) = form.get("accountName").filter(|a| !a.trim().is_empty()) {
                body["settings"] = json!({ "accountName": account.trim() });
            }
            act(
                ports,
                session,
                "provider",
                &form,
                ApiRequest::post("/service-providers", token, body),
                ADMIN_PAGE,
            )
            .await
        }
        ["providers", id, "test"] => {
            let call = ApiRequest::post(
                format!("/service-providers/{}/test", encode(id)),
                token,
                json!({}),
            );
            act(ports, session, "providers", &form, call, ADMIN_PAGE).await
        }
        // The overview then shows the numbers as recounted.
        ["recount"] => {
            let call = ApiRequest::post("/fleet/summary/recount", token, json!({}));
            act(ports, session, "recount", &form, call, "/console").await
        }
        _ => return None,
    };
    Some(response)
}

/// A path segment, percent-encoded.
fn encode(segment: &str) -> String {
    serde_urlencoded::to_string([("", segment)])
        .map(|pair| pair.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}
