//! Sign-in and sign-out. Signing in goes through the API's `POST /auth/login`, so lockout and
//! every other rule of the login apply; the token it answers goes into the session cookie. In
//! OIDC mode the identity provider signs users in instead ([`crate::oidc`]), and its ID token
//! goes into the same cookie.

use crate::api::{with_query, ApiError, ApiRequest};
use crate::oidc::{
    claims_of_verified, CodeExchange, OidcClient, OidcSignIn, PendingSignIn, ProviderError,
    OIDC_COOKIE, PENDING_SIGN_IN_SECONDS,
};
use crate::pages::layout::{bare_page, field_error};
use crate::respond::{add_cookie, html_page, redirect, Form};
use crate::session::{
    self, clear_cookie, new_sign_in_nonce, same_secret, set_cookie, CSRF_FIELD, SESSION_COOKIE,
    SIGN_IN_COOKIE,
};
use crate::ConsolePorts;
use cellbridge_identity::authenticator::Authenticator;
use cellbridge_identity::token::TokenError;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;
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

/// A message above the form: `("info" | "error", text)`.
type Notice = Option<(&'static str, String)>;

/// What the form shows besides its fields.
#[derive(Debug, Default)]
struct FormState<'a> {
    username: &'a str,
    next: String,
    notice: Notice,
    username_error: Option<String>,
    password_error: Option<String>,
}

fn notice_markup(notice: &Notice) -> Markup {
    html! {
        @if let Some((kind, message)) = notice {
            div class={ "notice " (kind) } role=(if *kind == "error" { "alert" } else { "status" }) { (message) }
        }
    }
}

fn render(state: FormState<'_>, status: StatusCode) -> Response<Body> {
    let nonce = new_sign_in_nonce();
    let markup = bare_page(
        "Sign in",
        html! {
            main.sign-in {
                h1 { "Sign in to cellbridge" }
                (notice_markup(&state.notice))
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

/// The sign-in page of OIDC mode: no form, a way to the identity provider.
fn render_provider_sign_in(
    client: &OidcClient,
    next: &str,
    notice: Notice,
    status: StatusCode,
) -> Response<Body> {
    let start = with_query("/console/sign-in/start", &[("next", next)]);
    let markup = bare_page(
        "Sign in",
        html! {
            main.sign-in {
                h1 { "Sign in to cellbridge" }
                (notice_markup(&notice))
                p { a.button href=(start) { "Sign in with " (client.provider_label()) } }
            }
        },
    );
    html_page(status, markup)
}

/// `GET /console/sign-in`
pub fn form(ports: &ConsolePorts, request: &Request) -> Response<Body> {
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
    let next = next_page(query.first("next"));
    if let Some(oidc) = &ports.oidc {
        return render_provider_sign_in(&oidc.client, &next, notice, StatusCode::OK);
    }
    render(
        FormState {
            next,
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
    if let Some(oidc) = &ports.oidc {
        // A form from before the deployment moved to OIDC mode: the API takes no password now.
        let notice = format!(
            "This console no longer takes passwords: sign in with {}.",
            oidc.client.provider_label()
        );
        return render_provider_sign_in(
            &oidc.client,
            &next,
            Some(("info", notice)),
            StatusCode::BAD_REQUEST,
        );
    }
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
            let mut response = signed_in(&next, &login.token, login.expires_at, now);
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

/// Signed in with `token` (until it expires), on to `next`: both ways of signing in end here.
fn signed_in(
    next: &str,
    token: &str,
    expires_at: OffsetDateTime,
    now: OffsetDateTime,
) -> Response<Body> {
    let mut response = redirect(next);
    let lifetime = (expires_at - now).whole_seconds();
    add_cookie(&mut response, &set_cookie(SESSION_COOKIE, token, lifetime));
    response
}

/// `GET /console/sign-in/start` (OIDC mode): to the identity provider, with a fresh sign-in
/// waiting in its cookie for the way back.
pub fn start(ports: &ConsolePorts, request: &Request) -> Response<Body> {
    let Some(oidc) = &ports.oidc else {
        return redirect("/console/sign-in");
    };
    let next = next_page(request.query_string_parameters().first("next"));
    let Some(redirect_uri) = oidc.client.redirect_uri_for(request) else {
        tracing::warn!(
            "the console cannot tell its own address for the identity provider's callback"
        );
        let notice = format!(
            "The console cannot tell its own address from this request, so it cannot send you to {}. Tell your administrator to set {}.",
            oidc.client.provider_label(),
            crate::oidc::REDIRECT_URL_ENV
        );
        return render_provider_sign_in(
            &oidc.client,
            &next,
            Some(("error", notice)),
            StatusCode::BAD_REQUEST,
        );
    };
    let pending = PendingSignIn::new(&next, &redirect_uri);
    let mut response = redirect(&oidc.client.authorization_request(&pending));
    add_cookie(
        &mut response,
        &set_cookie(
            OIDC_COOKIE,
            &pending.cookie_value(),
            PENDING_SIGN_IN_SECONDS,
        ),
    );
    response
}

/// Why a callback signs nobody in: the page's status and message, and where to go afterwards.
struct Refusal {
    status: StatusCode,
    message: String,
    next: String,
}

/// `GET /console/sign-in/callback` (OIDC mode): the provider's answer, a code to exchange for
/// the ID token that becomes the session. The waiting sign-in is used up either way.
pub async fn callback(
    ports: &ConsolePorts,
    request: &Request,
    now: OffsetDateTime,
) -> Response<Body> {
    let Some(oidc) = &ports.oidc else {
        return redirect("/console/sign-in");
    };
    let pending = session::cookie(request, OIDC_COOKIE).and_then(PendingSignIn::from_cookie_value);
    let mut response = match finish_sign_in(oidc, &ports.authenticator, pending, request, now).await
    {
        Ok(response) => response,
        Err(refusal) => render_provider_sign_in(
            &oidc.client,
            &refusal.next,
            Some(("error", refusal.message)),
            refusal.status,
        ),
    };
    add_cookie(&mut response, &clear_cookie(OIDC_COOKIE));
    response
}

async fn finish_sign_in(
    oidc: &OidcSignIn,
    authenticator: &Authenticator,
    pending: Option<PendingSignIn>,
    request: &Request,
    now: OffsetDateTime,
) -> Result<Response<Body>, Refusal> {
    let Some(pending) = pending else {
        return Err(Refusal {
            status: StatusCode::BAD_REQUEST,
            message: "This sign-in was not started in this browser, or took longer than 10 minutes. Sign in again.".to_owned(),
            next: next_page(None),
        });
    };
    let next = next_page(Some(&pending.next));
    let refuse = |status: StatusCode, message: String| Refusal {
        status,
        message,
        next: next.clone(),
    };
    let query = request.query_string_parameters();
    if !same_secret(&pending.state, query.first("state").unwrap_or("")) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "This answer from the identity provider is not for the sign-in this browser started, so it was refused. Sign in again.".to_owned(),
        ));
    }
    if let Some(error) = query.first("error") {
        // The state matched, so this is the provider's answer to this browser, not words
        // someone else put into a link.
        let description = query
            .first("error_description")
            .unwrap_or(error)
            .trim_end_matches('.');
        tracing::info!(
            error,
            "the identity provider refused the sign-in: {description}"
        );
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            format!("The identity provider did not sign you in: {description}. Try again; if it keeps happening, tell your administrator."),
        ));
    }
    let Some(code) = query.first("code").filter(|code| !code.is_empty()) else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "The identity provider's answer has no authorization code. Sign in again.".to_owned(),
        ));
    };
    let exchange = CodeExchange {
        code: code.to_owned(),
        redirect_uri: pending.redirect_uri.clone(),
        client_id: oidc.client.client_id.clone(),
        code_verifier: pending.verifier.clone(),
    };
    let id_token = oidc.provider.exchange_code(&exchange).await.map_err(|error| {
        tracing::warn!("console sign-in: {error}");
        match error {
            ProviderError::Unreachable(_) => refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "Signing in is not possible right now: the identity provider did not answer. Try again in a minute; if it keeps happening, tell your administrator.".to_owned(),
            ),
            ProviderError::Refused { error, description } => refuse(
                StatusCode::BAD_GATEWAY,
                format!("The identity provider would not complete the sign-in: {}. Sign in again; if it keeps happening, tell your administrator.", description.unwrap_or(error).trim_end_matches('.')),
            ),
            ProviderError::NoIdToken(_) => refuse(
                StatusCode::BAD_GATEWAY,
                "The identity provider's answer has no ID token. Tell your administrator: the console's client at the provider must be allowed the openid scope.".to_owned(),
            ),
        }
    })?;
    authenticator
        .identify(&id_token, now)
        .await
        .map_err(|error| {
            tracing::warn!("console sign-in: the identity provider's ID token was refused: {error}");
            let message = match error {
                TokenError::Claim(claim) => format!("Your account at the identity provider lacks a valid {claim}, which says who you are or which tenant you work for. Ask your administrator to set it."),
                error => format!("The identity provider's ID token was refused: {error}. Sign in again; if it keeps happening, tell your administrator."),
            };
            refuse(StatusCode::UNAUTHORIZED, message)
        })?;
    // Verified above, so its claims are the provider's.
    let claims = claims_of_verified(&id_token).unwrap_or_default();
    let nonce = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
    if !same_secret(&pending.nonce, nonce) {
        tracing::warn!("console sign-in: the ID token's nonce is not this sign-in's");
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "The identity provider's ID token was not issued for this sign-in, so it was refused. Sign in again.".to_owned(),
        ));
    }
    // The verifier requires `exp`; were it missing, the cookie would expire at once.
    let expires_at = claims
        .get("exp")
        .and_then(Value::as_i64)
        .and_then(|exp| OffsetDateTime::from_unix_timestamp(exp).ok())
        .unwrap_or(now);
    Ok(signed_in(&next, &id_token, expires_at, now))
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
