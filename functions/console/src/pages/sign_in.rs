//! Sign-in and sign-out. Signing in goes through the API's `POST /auth/login`, so lockout and
//! every other rule of the login apply; the token it answers goes into the session cookie.

use crate::api::{ApiError, ApiRequest};
use crate::pages::layout::{bare_page, field_error};
use crate::respond::{add_cookie, html_page, redirect, Form};
use crate::session::{
    self, clear_cookie, new_sign_in_nonce, same_secret, set_cookie, CSRF_FIELD, SESSION_COOKIE,
    SIGN_IN_COOKIE,
};
use crate::ConsolePorts;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use maud::html;
use serde::Deserialize;
use time::OffsetDateTime;

/// The sign-in form lives this long: long enough to find a password manager, short enough
/// that a stale tab asks for a reload.
const SIGN_IN_FORM_SECONDS: i64 = 30 * 60;

/// Where to go after signing in: a console page, never another site.
fn next_page(candidate: Option<&str>) -> String {
    match candidate {
        Some(path)
            if path.starts_with("/console")
                && !path.starts_with("/console/sign-")
                && !path.contains("//")
                && !path.contains('\\') =>
        {
            path.to_owned()
        }
        _ => "/console".to_owned(),
    }
}

/// What the form shows besides its fields.
#[derive(Debug, Default)]
struct FormState<'a> {
    username: &'a str,
    next: String,
    notice: Option<(&'static str, String)>,
    username_error: Option<String>,
    password_error: Option<String>,
}

fn render(state: FormState<'_>, status: StatusCode) -> Response<Body> {
    let nonce = new_sign_in_nonce();
    let markup = bare_page(
        "Sign in",
        html! {
            main.sign-in {
                h1 { "Sign in to cellbridge" }
                @if let Some((kind, message)) = &state.notice {
                    div class={ "notice " (kind) } role=(if *kind == "error" { "alert" } else { "status" }) { (message) }
                }
                form method="post" action="/console/sign-in" {
                    input type="hidden" name=(CSRF_FIELD) value=(nonce);
                    input type="hidden" name="next" value=(state.next);
                    div.field {
                        label for="username" { "Username" }
                        input type="text" id="username" name="username" value=(state.username)
                            autocomplete="username" required autofocus
                            aria-invalid=(state.username_error.is_some())
                            aria-describedby=[state.username_error.as_ref().map(|_| "username-error")];
                        (field_error("username", state.username_error.as_deref()))
                    }
                    div.field {
                        label for="password" { "Password" }
                        input type="password" id="password" name="password"
                            autocomplete="current-password" required
                            aria-invalid=(state.password_error.is_some())
                            aria-describedby=[state.password_error.as_ref().map(|_| "password-error")];
                        (field_error("password", state.password_error.as_deref()))
                    }
                    button type="submit" { "Sign in" }
                }
            }
        },
    );
    let mut response = html_page(status, markup);
    add_cookie(
        &mut response,
        &set_cookie(SIGN_IN_COOKIE, &nonce, SIGN_IN_FORM_SECONDS),
    );
    response
}

/// `GET /console/sign-in`
pub fn form(request: &Request) -> Response<Body> {
    let query = request.query_string_parameters();
    let notice = if query.first("expired").is_some() {
        Some((
            "info",
            "Your session has ended. Sign in again to go on.".to_owned(),
        ))
    } else if query.first("signed-out").is_some() {
        Some(("info", "You have signed out.".to_owned()))
    } else {
        None
    };
    render(
        FormState {
            next: next_page(query.first("next")),
            notice,
            ..FormState::default()
        },
        StatusCode::OK,
    )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Login {
    token: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

/// `POST /console/sign-in`
pub async fn submit(
    ports: &ConsolePorts,
    request: &Request,
    now: OffsetDateTime,
) -> Response<Body> {
    let form = Form::read(request);
    let username = form.get("username").unwrap_or("").trim();
    let next = next_page(form.get("next"));
    let expected = session::cookie(request, SIGN_IN_COOKIE).unwrap_or("");
    if expected.is_empty() || !same_secret(expected, form.get(CSRF_FIELD).unwrap_or("")) {
        return render(
            FormState {
                username,
                next,
                notice: Some((
                    "error",
                    "This sign-in form has expired or did not come from this console. Sign in again."
                        .to_owned(),
                )),
                ..FormState::default()
            },
            StatusCode::FORBIDDEN,
        );
    }
    let request = ApiRequest::post(
        "/auth/login",
        None,
        serde_json::json!({
            "username": username,
            "password": form.get("password").unwrap_or(""),
        }),
    );
    let answer = ports.api.call(request).await.and_then(|value| {
        serde_json::from_value::<Login>(value)
            .map_err(|e| ApiError::Unexpected(format!("the login answer: {e}")))
    });
    match answer {
        Ok(login) => {
            let mut response = redirect(&next);
            let lifetime = (login.expires_at - now).whole_seconds();
            add_cookie(
                &mut response,
                &set_cookie(SESSION_COOKIE, &login.token, lifetime),
            );
            add_cookie(&mut response, &clear_cookie(SIGN_IN_COOKIE));
            response
        }
        Err(ApiError::Refused(problem)) if !problem.errors.is_empty() => render(
            FormState {
                username,
                next,
                username_error: problem.about("username").map(str::to_owned),
                password_error: problem.about("password").map(str::to_owned),
                ..FormState::default()
            },
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(error) => {
            let status = match &error {
                ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
                e if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_REQUEST,
            };
            if !matches!(error, ApiError::Unauthorized(_)) {
                tracing::warn!("sign-in failed: {error}");
            }
            let message = match &error {
                ApiError::Unauthorized(problem) | ApiError::Refused(problem) => {
                    capitalized(&problem.detail)
                }
                e if e.is_retryable() => {
                    "Signing in is not possible right now: the API did not answer. Try again in a minute."
                        .to_owned()
                }
                e => format!("Signing in failed: {e}"),
            };
            render(
                FormState {
                    username,
                    next,
                    notice: Some(("error", message)),
                    ..FormState::default()
                },
                status,
            )
        }
    }
}

/// `POST /console/sign-out` (its CSRF token checked by the router): the cookie is removed, and
/// the browser goes back to sign-in.
pub fn signed_out() -> Response<Body> {
    let mut response = redirect("/console/sign-in?signed-out=1");
    add_cookie(&mut response, &clear_cookie(SESSION_COOKIE));
    response
}

/// The API's details start lower-case, to follow a colon; alone they read as a sentence.
pub fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => {
            let mut sentence: String = first.to_uppercase().chain(chars).collect();
            if !sentence.ends_with('.') {
                sentence.push('.');
            }
            sentence
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_sign_in_only_console_pages_are_next() {
        assert_eq!(
            next_page(Some("/console/sims?status=active")),
            "/console/sims?status=active"
        );
        for elsewhere in [
            "https://evil.example/console",
            "//evil.example/console",
            "/console//evil.example",
            "/console\\evil",
            "/auth/login",
            "/console/sign-out",
        ] {
            assert_eq!(next_page(Some(elsewhere)), "/console", "{elsewhere}");
        }
        assert_eq!(next_page(None), "/console");
    }
}
