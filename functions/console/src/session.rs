//! The signed-in session: the API token in an `HttpOnly` cookie that no script can read, and the
//! CSRF token every form post must carry.
//!
//! The CSRF token is derived from the session token: a page from this console can show it, and a
//! page from elsewhere cannot learn it, because it cannot read the cookie. Before sign-in, a
//! random value in its own cookie (double submit) guards the sign-in form against a forged
//! sign-in into someone else's account.

use base64::Engine;
use cellbridge_identity::principal::Identity;
use lambda_http::http::header::COOKIE;
use lambda_http::Request;
use sha2::{Digest, Sha256};

/// `__Host-`: the browser keeps it only if it is `Secure`, has `Path=/` and no `Domain`, so no
/// other host or path can plant or read it.
pub const SESSION_COOKIE: &str = "__Host-cellbridge-session";
/// The sign-in form's own CSRF value.
pub const SIGN_IN_COOKIE: &str = "__Host-cellbridge-sign-in";
/// The form field carrying the CSRF token.
pub const CSRF_FIELD: &str = "csrf";

/// A signed-in user, as the console's pages need them.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub identity: Identity,
    /// The live event stream this session's pages connect to.
    pub live_url: String,
}

impl Session {
    pub fn csrf(&self) -> String {
        csrf_for(&self.token)
    }
}

/// The CSRF token of a session token.
pub fn csrf_for(session_token: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"cellbridge console csrf\n")
        .chain_update(session_token.as_bytes())
        .finalize();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}

/// Equal strings, compared in time that does not depend on where they differ.
pub fn same_secret(expected: &str, given: &str) -> bool {
    expected.len() == given.len()
        && expected
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

/// The value of the cookie `name`, from every `Cookie` header of the request.
pub fn cookie<'r>(request: &'r Request, name: &str) -> Option<&'r str> {
    request
        .headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// `Set-Cookie` for a cookie only this console's pages send back, never readable by script.
pub fn set_cookie(name: &str, value: &str, max_age_seconds: i64) -> String {
    // Lax, not Strict: a link to a console page from mail or chat opens it signed in; what
    // changes anything is a form post, which carries the CSRF token.
    format!(
        "{name}={value}; Path=/; Max-Age={}; HttpOnly; Secure; SameSite=Lax",
        max_age_seconds.max(0)
    )
}

/// `Set-Cookie` that removes the cookie `name`.
pub fn clear_cookie(name: &str) -> String {
    set_cookie(name, "", 0)
}

/// A fresh random value for the sign-in form's CSRF cookie.
pub fn new_sign_in_nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_with_cookies(values: &[&str]) -> Request {
        let mut builder = lambda_http::http::Request::builder().uri("/console");
        for value in values {
            builder = builder.header(COOKIE, *value);
        }
        builder.body(lambda_http::Body::Empty).expect("a request")
    }

    #[test]
    fn cookies_are_found_in_any_header_and_empty_ones_are_none() {
        let request = request_with_cookies(&[
            "theme=dark; __Host-cellbridge-session=abc.def",
            "__Host-cellbridge-sign-in=",
        ]);
        assert_eq!(cookie(&request, SESSION_COOKIE), Some("abc.def"));
        assert_eq!(cookie(&request, SIGN_IN_COOKIE), None);
        assert_eq!(cookie(&request, "missing"), None);
    }

    #[test]
    fn the_csrf_token_belongs_to_one_session() {
        let one = csrf_for("token-one");
        assert_eq!(one, csrf_for("token-one"));
        assert_ne!(one, csrf_for("token-two"));
        assert!(same_secret(&one, &csrf_for("token-one")));
        assert!(!same_secret(&one, &csrf_for("token-two")));
        assert!(!same_secret(&one, ""));
    }

    #[test]
    fn session_cookies_are_out_of_reach_of_scripts_and_other_sites() {
        let cookie = set_cookie(SESSION_COOKIE, "t", 3600);
        for attribute in [
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=3600",
        ] {
            assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
        }
        assert!(!cookie.contains("Domain"));
        assert!(clear_cookie(SESSION_COOKIE).contains("Max-Age=0"));
    }
}
