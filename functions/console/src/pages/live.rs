//! `POST /console/live-ticket`: a minute-long ticket onto the live event stream for the page's
//! script, which cannot read the session cookie. The page's CSRF token comes in a header, so
//! another site cannot have a ticket made for its own script.

use crate::respond::{json, json_problem};
use crate::session::{same_secret, Session};
use crate::ConsolePorts;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use time::OffsetDateTime;

/// The header the page's script puts its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

pub fn ticket(
    ports: &ConsolePorts,
    session: &Session,
    request: &Request,
    now: OffsetDateTime,
) -> Response<Body> {
    let given = request
        .headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !same_secret(&session.csrf(), given) {
        return json_problem(
            StatusCode::FORBIDDEN,
            "the request lacks this session's CSRF token; reload the page",
        );
    }
    let issued = match ports.tickets.issue(&session.identity, now) {
        Ok(issued) => issued,
        Err(e) => {
            tracing::error!("issuing a live ticket failed: {e}");
            return json_problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "no live ticket could be issued; reload the page to try again",
            );
        }
    };
    let expires_at = issued
        .expires_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    json(
        StatusCode::OK,
        "application/json",
        &serde_json::json!({ "ticket": issued.token, "expiresAt": expires_at }),
    )
}
