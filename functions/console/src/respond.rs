//! Responses every page shares: HTML with the console's security headers, redirects, cookies,
//! error pages, and the posted form.

use crate::pages::layout::{bare_page, frame, LiveFilter, Section};
use crate::session::{same_secret, Session, CSRF_FIELD};
use lambda_http::http::header::{self, HeaderValue};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use maud::{html, Markup};

/// Scripts and styles only from the console's own origin, no inline script, no framing; the
/// live event stream (`live_url`'s origin) is the one other place pages connect to.
pub fn content_security_policy(live_url: &str) -> String {
    let live_origin = live_url
        .split_once("://")
        .map(|(scheme, rest)| format!("{scheme}://{}", rest.split('/').next().unwrap_or("")))
        .unwrap_or_default();
    format!("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' {live_origin}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
}

/// The headers every console answer carries.
pub fn secure(response: &mut Response<Body>, live_url: &str) {
    let headers = response.headers_mut();
    if let Ok(policy) = HeaderValue::from_str(&content_security_policy(live_url)) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}

/// A JSON answer, never cached (the console's JSON is one user's: the live ticket).
pub fn json(
    status: StatusCode,
    content_type: &'static str,
    value: &serde_json::Value,
) -> Response<Body> {
    let mut response = Response::new(Body::Text(value.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `Server-Timing`: how long the answer waited on the API, and the console's own time (total
/// less that), as browsers' developer tools and the benchmark read them.
pub fn server_timing(
    response: &mut Response<Body>,
    api: std::time::Duration,
    total: std::time::Duration,
) {
    let own = total.saturating_sub(api);
    let value = format!(
        "api;dur={:.1}, console;dur={:.1}",
        api.as_secs_f64() * 1000.0,
        own.as_secs_f64() * 1000.0
    );
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().insert("server-timing", value);
    }
}

/// An RFC 9457 problem, for the console's few JSON answers.
pub fn json_problem(status: StatusCode, detail: &str) -> Response<Body> {
    let problem = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    json(status, "application/problem+json", &problem)
}

/// A rendered page.
pub fn html_page(status: StatusCode, markup: Markup) -> Response<Body> {
    let mut response = Response::new(Body::Text(markup.into_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // Pages show one user's data: never kept by a shared cache, nor by the back button after
    // sign-out.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `303 See Other` to `location`: a path of this console, or the identity provider's sign-in.
pub fn redirect(location: &str) -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub fn add_cookie(response: &mut Response<Body>, set_cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(set_cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

pub fn not_found(session: &Session) -> Response<Body> {
    html_page(
        StatusCode::NOT_FOUND,
        frame(
            session,
            Section::None,
            "Not found",
            &LiveFilter::none(),
            html! {
                p { "There is no such page in the console. " a href="/console" { "Go to the overview" } "." }
            },
        ),
    )
}

pub fn not_found_bare() -> Response<Body> {
    html_page(
        StatusCode::NOT_FOUND,
        bare_page(
            "Not found",
            html! { main { h1 { "Not found" } p { a href="/console" { "Go to the console" } } } },
        ),
    )
}

pub fn method_not_allowed() -> Response<Body> {
    let mut response = html_page(
        StatusCode::METHOD_NOT_ALLOWED,
        bare_page(
            "Not allowed",
            html! { main { h1 { "This page takes no such request" } p { a href="/console" { "Go to the console" } } } },
        ),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
    response
}

/// A form post without the page's CSRF token: made by another site, or from a page older than
/// the session.
pub fn csrf_refused() -> Response<Body> {
    html_page(
        StatusCode::FORBIDDEN,
        bare_page(
            "Request refused",
            html! {
                main {
                    h1 { "Request refused" }
                    p { "This form did not come from your console session, so nothing was changed. If you sent it yourself, go back, reload the page and send it again." }
                    p { a href="/console" { "Go to the console" } }
                }
            },
        ),
    )
}

/// A posted `application/x-www-form-urlencoded` body.
#[derive(Debug, Clone, Default)]
pub struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    /// The request's form; a body that is not one reads as an empty form.
    pub fn read(request: &Request) -> Self {
        let bytes: &[u8] = match request.body() {
            Body::Text(text) => text.as_bytes(),
            Body::Binary(bytes) => bytes,
            _ => &[],
        };
        Self {
            fields: serde_urlencoded::from_bytes(bytes).unwrap_or_default(),
        }
    }

    /// Every value of `name` (a column of checkboxes), in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// True when the form lacks the session's CSRF token.
    pub fn csrf_fails(&self, session: &Session) -> bool {
        !same_secret(&session.csrf(), self.get(CSRF_FIELD).unwrap_or(""))
    }
}

/// The API no longer takes the session's token (revoked, or the keys changed): back to sign-in.
pub fn session_ended() -> Response<Body> {
    let mut response = redirect("/console/sign-in?expired=1");
    add_cookie(
        &mut response,
        &crate::session::clear_cookie(crate::session::SESSION_COOKIE),
    );
    response
}
