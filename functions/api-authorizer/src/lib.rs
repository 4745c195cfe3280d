//! The API's Lambda authorizer (HTTP API, payload format 2.0, simple responses). It verifies the
//! bearer token and hands the identity to the route's function as the request context; it
//! checks no roles, which each route does itself with a problem response that says what is
//! missing.
//!
//! A refused token ends in the error `Unauthorized`, the one answer API Gateway turns into
//! `401`. `isAuthorized: false` would be a 403, which is wrong for a bad token.

use aws_lambda_events::event::apigw::{
    ApiGatewayV2CustomAuthorizerSimpleResponse, ApiGatewayV2CustomAuthorizerV2Request,
};
use aws_lambda_events::http::header::AUTHORIZATION;
use cellbridge_identity::token::TokenError;
use time::OffsetDateTime;

/// This function's configuration, read once at cold start: which tokens the API accepts and how their keys are found.
pub type Config = cellbridge_identity::keys::AuthMode;

/// Longer headers are no token of ours; refusing them early bounds the work per request.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
pub use cellbridge_identity::authenticator::JWKS_REFRESH_INTERVAL;

/// What API Gateway sends a Lambda authorizer (HTTP API, payload format 2.0).
pub type AuthorizerRequest = ApiGatewayV2CustomAuthorizerV2Request;
/// The simple response: the identity as the context the route's function receives.
pub type AuthorizerResponse = ApiGatewayV2CustomAuthorizerSimpleResponse<serde_json::Value>;

/// The refusal API Gateway maps to 401; its message must be exactly this word.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Unauthorized")]
pub struct Unauthorized;

/// The verifier, shared with the live event stream's `$connect`.
pub use cellbridge_identity::authenticator::{Authenticator as Authorizer, KeySource};

/// `Bearer <token>` from the identity source (or the header, for events built by hand).
fn bearer_token(request: &AuthorizerRequest) -> Result<&str, TokenError> {
    let header = request
        .identity_source
        .as_ref()
        .and_then(|sources| sources.first())
        .map(String::as_str)
        .or_else(|| {
            request
                .headers
                .get(AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
        })
        .ok_or(TokenError::Missing)?;
    if header.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed);
    }
    let (scheme, token) = header.trim().split_once(' ').ok_or(TokenError::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(TokenError::Missing);
    }
    Ok(token.trim())
}

pub async fn authorize(
    authorizer: &Authorizer,
    request: &AuthorizerRequest,
    now: OffsetDateTime,
) -> Result<AuthorizerResponse, Unauthorized> {
    let route = request.route_key.as_deref().unwrap_or("");
    let refuse = |reason: TokenError| {
        // The reason, never the token: it is a credential.
        tracing::warn!(route, %reason, "request refused");
        Unauthorized
    };
    let token = bearer_token(request).map_err(refuse)?;
    let identity = authorizer.identify(token, now).await.map_err(refuse)?;
    tracing::info!(route, tenant = %identity.tenant, subject = %identity.subject, "request authorized");
    // The response type is non-exhaustive: built from its default.
    let mut response = AuthorizerResponse::default();
    response.is_authorized = true;
    response.context = identity.to_context();
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellbridge_core::tenant::TenantId;
    use cellbridge_identity::principal::Identity;
    use cellbridge_identity::role::{Role, Roles};
    use cellbridge_identity::token::{SigningSecret, TokenAudience, DEFAULT_LIFETIME};
    use cellbridge_identity::token::{TokenSigner, TokenVerifier};
    use time::macros::datetime;

    const SAMPLE: &str = include_str!("../../../events/api-authorizer/request.json");
    const NOW: OffsetDateTime = datetime!(2026-11-22 09:00 UTC);

    fn secret() -> SigningSecret {
        SigningSecret::new(vec![9; 32]).expect("secret")
    }

    fn authorizer() -> Authorizer {
        Authorizer::new(
            TokenVerifier::shared_secret(&secret(), TokenAudience::default()),
            None,
        )
    }

    fn token_for(tenant: &str, roles: Roles) -> String {
        let identity = Identity {
            subject: "ops@demo.example".into(),
            tenant: TenantId::parse(tenant).expect("tenant"),
            roles,
        };
        TokenSigner::new(&secret(), TokenAudience::default(), DEFAULT_LIFETIME)
            .issue(&identity, NOW)
            .expect("token")
            .token
    }

    fn request_with(authorization: Option<&str>) -> AuthorizerRequest {
        let mut event: serde_json::Value = serde_json::from_str(SAMPLE).expect("sample");
        match authorization {
            Some(value) => {
                event["identitySource"] = serde_json::json!([value]);
                // Text that is no valid header value never arrives as a header; the identity
                // source still carries it.
                if aws_lambda_events::http::HeaderValue::from_str(value).is_ok() {
                    event["headers"]["authorization"] = value.into();
                } else {
                    event["headers"]
                        .as_object_mut()
                        .expect("headers")
                        .remove("authorization");
                }
            }
            None => {
                event
                    .as_object_mut()
                    .expect("object")
                    .remove("identitySource");
                event["headers"]
                    .as_object_mut()
                    .expect("headers")
                    .remove("authorization");
            }
        }
        serde_json::from_value(event).expect("request")
    }

    #[tokio::test]
    async fn a_valid_token_passes_its_identity_to_the_route() {
        let token = token_for("demo", Roles::new([Role::Operator]));
        let response = authorize(
            &authorizer(),
            &request_with(Some(&format!("Bearer {token}"))),
            NOW,
        )
        .await
        .expect("authorized");
        assert!(response.is_authorized);
        assert_eq!(
            response.context,
            serde_json::json!({"sub": "ops@demo.example", "tenant": "demo", "roles": "operator"})
        );
        // The scheme is case-insensitive, as RFC 7235 says.
        let lower = request_with(Some(&format!("bearer {token}")));
        assert!(authorize(&authorizer(), &lower, NOW).await.is_ok());
    }

    #[tokio::test]
    async fn the_sample_event_parses_and_its_placeholder_is_refused() {
        let request: AuthorizerRequest = serde_json::from_str(SAMPLE).expect("sample");
        assert_eq!(request.route_key.as_deref(), Some("POST /bulk-changes"));
        assert_eq!(
            authorize(&authorizer(), &request, NOW).await,
            Err(Unauthorized)
        );
    }

    #[tokio::test]
    async fn bad_tokens_are_unauthorized() {
        let good = token_for("demo", Roles::new([Role::Viewer]));
        let expired_at = NOW + DEFAULT_LIFETIME + time::Duration::minutes(1);
        let cases: Vec<(Option<String>, OffsetDateTime)> = vec![
            (None, NOW),
            (Some(good.clone()), NOW),
            (Some(format!("Basic {good}")), NOW),
            (Some("Bearer ".to_owned()), NOW),
            (Some(format!("Bearer {good}x")), NOW),
            (Some(format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES))), NOW),
            (Some(format!("Bearer {good}")), expired_at),
        ];
        for (header, now) in cases {
            let result = authorize(&authorizer(), &request_with(header.as_deref()), now).await;
            assert_eq!(result, Err(Unauthorized), "{header:?} at {now}");
        }
        assert_eq!(Unauthorized.to_string(), "Unauthorized");
    }

    proptest::proptest! {
        #[test]
        fn any_authorization_header_without_our_token_is_unauthorized(header in ".{0,200}") {
            let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            let request = request_with(Some(&header));
            let result = runtime.block_on(authorize(&authorizer(), &request, NOW));
            proptest::prop_assert_eq!(result, Err(Unauthorized));
        }
    }

    /// Serves `status` and `body` to one HTTP request on a local port; returns the URL.
    async fn serve_once(status: u16, body: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("port");
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().expect("addr")
        );
        tokio::spawn(async move {
            if let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0u8; 2048];
                let _ = socket.read(&mut request).await;
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            }
        });
        url
    }

    #[tokio::test]
    async fn the_published_keys_are_fetched_over_http() {
        use cellbridge_identity::keys::fetch_jwks;
        let http = reqwest::Client::new();
        let url = serve_once(200, r#"{"keys": [{"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256", "n": "sXch", "e": "AQAB"}]}"#).await;
        let set = fetch_jwks(&http, &url).await.expect("a key set");
        assert!(set.find("k1").is_some());

        let url = serve_once(503, "{}").await;
        let error = fetch_jwks(&http, &url)
            .await
            .expect_err("unavailable")
            .to_string();
        assert!(error.contains(&url) && error.contains("503"), "{error}");
        let url = serve_once(200, "<html>").await;
        let error = fetch_jwks(&http, &url)
            .await
            .expect_err("not JWKS")
            .to_string();
        assert!(error.contains("not a JWKS document"), "{error}");
    }
}
