//! The console: the web app fleet managers work in, on the HTTP API's `/console` routes.
//!
//! Every page is complete HTML rendered here, so the first paint needs no script; the bundled
//! script (`web/`) only adds conveniences. Pages read and act through the portal API with the
//! signed-in user's token ([`api`]), which keeps the API the one authority on roles and tenants.
//! The token itself lives in an `HttpOnly` cookie ([`session`]).

pub mod api;
pub mod assets;
pub mod oidc;
pub mod pages;
pub mod respond;
pub mod session;
pub mod views;

use crate::api::PortalApi;
use crate::respond::{redirect, Form};
use crate::session::{Session, SESSION_COOKIE};
use cellbridge_core::config::{required, ConfigError, Environment, FromEnvironment};
use cellbridge_identity::authenticator::Authenticator;
use cellbridge_identity::live_ticket::LiveTickets;
use cellbridge_identity::token::TokenError;
use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};
use std::sync::Arc;
use time::OffsetDateTime;
use tracing::Instrument;

/// Where the console finds the API (`https://<api id>.execute-api.<region>.amazonaws.com`).
pub const API_URL_ENV: &str = "CONSOLE_API_URL";
/// Where pages connect for live events (`wss://<api id>.execute-api.<region>.amazonaws.com/live`).
pub const LIVE_URL_ENV: &str = "CONSOLE_LIVE_URL";

/// Where the console reaches the rest of cellbridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleEndpoints {
    pub api_url: String,
    pub live_url: String,
}

impl FromEnvironment for ConsoleEndpoints {
    fn from_env(env: &dyn Environment) -> Result<Self, ConfigError> {
        Ok(Self {
            api_url: required(env, API_URL_ENV)?,
            live_url: required(env, LIVE_URL_ENV)?,
        })
    }
}

cellbridge_core::composite_config! {
    /// This function's configuration, read once at cold start.
    #[derive(Debug, Clone)]
    pub struct Config {
        pub auth: cellbridge_identity::keys::AuthMode,
        pub tickets: cellbridge_identity::wiring::LiveTicketsConfig,
        pub endpoints: ConsoleEndpoints,
        pub oidc: oidc::OidcSettings,
    }
}

pub struct ConsolePorts {
    pub api: Arc<dyn PortalApi>,
    /// Checks the session cookie's token the way the API's authorizer does, so an expired
    /// session goes back to sign-in before any page asks the API for anything.
    pub authenticator: Arc<Authenticator>,
    /// Passes onto the live event stream for pages, whose script cannot read the session token.
    pub tickets: Arc<LiveTickets>,
    /// The live event stream pages connect to.
    pub live_url: String,
    /// Signing in through the identity provider, in OIDC mode; `None` in cellbridge mode, where
    /// users sign in with cellbridge's own passwords.
    pub oidc: Option<oidc::OidcSignIn>,
}

/// Every console path starts with this.
pub const BASE_PATH: &str = "/console";

pub async fn handle(ports: &ConsolePorts, request: Request, now: OffsetDateTime) -> Response<Body> {
    let span =
        tracing::info_span!("console", method = %request.method(), path = %request.uri().path());
    let started = std::time::Instant::now();
    // This request's API calls are timed, to tell the console's own time from the API's.
    let timed = Arc::new(api::TimedApi::new(ports.api.clone()));
    let request_ports = ConsolePorts {
        api: timed.clone(),
        authenticator: ports.authenticator.clone(),
        tickets: ports.tickets.clone(),
        live_url: ports.live_url.clone(),
        oidc: ports.oidc.clone(),
    };
    let mut response = route(&request_ports, request, now).instrument(span).await;
    respond::secure(&mut response, &ports.live_url);
    respond::server_timing(&mut response, timed.waited(), started.elapsed());
    response
}

async fn route(ports: &ConsolePorts, request: Request, now: OffsetDateTime) -> Response<Body> {
    let path = request.uri().path().trim_end_matches('/').to_owned();
    let Some(page) = path.strip_prefix(BASE_PATH) else {
        return respond::not_found_bare();
    };
    let method = request.method().clone();
    match (method, page) {
        (Method::GET, "/sign-in") => pages::sign_in::form(ports, &request),
        // Only in OIDC mode; in cellbridge mode these are pages like any other (sign-in first).
        (Method::GET, "/sign-in/start") if ports.oidc.is_some() => {
            pages::sign_in::start(ports, &request)
        }
        (Method::GET, "/sign-in/callback") if ports.oidc.is_some() => {
            pages::sign_in::callback(ports, &request, now).await
        }
        (Method::POST, "/sign-in") => pages::sign_in::submit(ports, &request, now).await,
        (Method::POST, "/live-ticket") => match session_of(ports, &request, now).await {
            Ok(session) => pages::live::ticket(ports, &session, &request, now),
            Err(_) => respond::json_problem(
                lambda_http::http::StatusCode::UNAUTHORIZED,
                "your session has ended; sign in again",
            ),
        },
        (Method::POST, "/sign-out") => {
            // Signing out needs no valid session (an expired one included), but it does need
            // the form's CSRF token when there is a session to end.
            match session_of(ports, &request, now).await {
                Ok(session) if Form::read(&request).csrf_fails(&session) => respond::csrf_refused(),
                _ => pages::sign_in::signed_out(),
            }
        }
        (Method::POST, page) => {
            let session = match session_of(ports, &request, now).await {
                Ok(session) => session,
                Err(why) => return back_to_sign_in(&request, why),
            };
            match page {
                "/bulk-changes" => pages::change::create(ports, &session, &request).await,
                "/bulk-changes/preview" => pages::change::preview(ports, &session, &request).await,
                _ if page.starts_with("/admin/") => {
                    let action = page.trim_start_matches("/admin/");
                    match pages::admin::submit(ports, &session, &request, action).await {
                        Some(response) => response,
                        None => respond::not_found(&session),
                    }
                }
                _ => match page
                    .strip_prefix("/devices/")
                    .and_then(|rest| rest.strip_suffix("/commands"))
                {
                    Some(id) => {
                        pages::device::send_command(ports, &session, &request, id, now).await
                    }
                    None => respond::not_found(&session),
                },
            }
        }
        (Method::GET, page) => {
            let session = match session_of(ports, &request, now).await {
                Ok(session) => session,
                Err(why) => return back_to_sign_in(&request, why),
            };
            match page {
                "" => pages::overview::page(ports, &session).await,
                "/sims" => pages::sims::page(ports, &session, &request).await,
                "/bulk-changes" => pages::bulk_changes::page(ports, &session, &request).await,
                "/devices" => pages::devices::page(ports, &session, &request).await,
                "/admin" => pages::admin::page(ports, &session).await,
                _ if page.starts_with("/devices/") => {
                    let id = page.trim_start_matches("/devices/");
                    pages::device::page(ports, &session, &request, id, now).await
                }
                _ => match page.strip_prefix("/bulk-changes/") {
                    Some(rest) => match rest.split_once('/') {
                        None => pages::bulk_change::page(ports, &session, rest).await,
                        Some((id, "outcomes.csv")) => {
                            pages::bulk_change::outcomes_csv(ports, &session, id).await
                        }
                        Some((id, "audit")) => {
                            pages::audit::page(ports, &session, &request, id).await
                        }
                        Some(_) => respond::not_found(&session),
                    },
                    None => respond::not_found(&session),
                },
            }
        }
        _ => respond::method_not_allowed(),
    }
}

/// Why a request has no session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoSession {
    /// No cookie: never signed in, or signed out.
    Absent,
    /// The token expired: say so on the sign-in page.
    Expired,
    /// Anything else wrong with the token (another deployment's, tampered with, the keys changed).
    Invalid(TokenError),
}

/// The signed-in user of `request`, checked as the API's authorizer checks them.
pub async fn session_of(
    ports: &ConsolePorts,
    request: &Request,
    now: OffsetDateTime,
) -> Result<Session, NoSession> {
    let token = session::cookie(request, SESSION_COOKIE).ok_or(NoSession::Absent)?;
    match ports.authenticator.identify(token, now).await {
        Ok(identity) => Ok(Session {
            token: token.to_owned(),
            identity,
            live_url: ports.live_url.clone(),
        }),
        Err(TokenError::Expired) => Err(NoSession::Expired),
        Err(e) => {
            tracing::info!("console session refused: {e}");
            Err(NoSession::Invalid(e))
        }
    }
}

/// To the sign-in page, coming back to this page afterwards; a stale cookie is removed.
fn back_to_sign_in(request: &Request, why: NoSession) -> Response<Body> {
    let here = match request.uri().query() {
        Some(query) => format!("{}?{query}", request.uri().path()),
        None => request.uri().path().to_owned(),
    };
    let mut pairs = vec![("next", here.as_str())];
    if why == NoSession::Expired {
        pairs.push(("expired", "1"));
    }
    let target = api::with_query("/console/sign-in", &pairs);
    let mut response = redirect(&target);
    if why != NoSession::Absent {
        respond::add_cookie(&mut response, &session::clear_cookie(SESSION_COOKIE));
    }
    response
}

#[cfg(test)]
mod oidc_tests;
#[cfg(test)]
mod tests;
