//! Signing in through the deployment's identity provider (OIDC mode): the authorization code flow
//! with PKCE (RFC 7636), as a public client, so the console holds no client secret.
//!
//! `/console/sign-in/start` sends the browser to the provider with a fresh state, nonce and PKCE
//! verifier, which wait in a cookie of their own ([`PendingSignIn`]). The provider sends the
//! browser back to `/console/sign-in/callback` with a code; the console exchanges it, with the
//! verifier, for an ID token ([`OidcProvider`]), checks that token as it checks every session and
//! makes it the session: in OIDC mode the API's authorizer takes exactly these ID tokens.

use crate::session::new_sign_in_nonce;
use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use cellbridge_core::config::{ConfigError, Environment, FromEnvironment};
use cellbridge_identity::keys::AuthMode;
use lambda_http::Request;
use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// Holds a sign-in under way at the provider. Lax, not Strict: the provider's redirect back is a
/// navigation from another site, and a Strict cookie would not come with it.
pub const OIDC_COOKIE: &str = "__Host-cellbridge-oidc";
/// How long a sign-in may take at the provider.
pub const PENDING_SIGN_IN_SECONDS: i64 = 10 * 60;
/// Where the provider sends the browser back; registered at the provider.
pub const CALLBACK_PATH: &str = "/console/sign-in/callback";
/// What the console asks for: the ID token carries the tenant and the roles by itself.
pub const SCOPE: &str = "openid email";

pub const AUTHORIZATION_URL_ENV: &str = "OIDC_AUTHORIZATION_URL";
pub const TOKEN_URL_ENV: &str = "OIDC_TOKEN_URL";
pub const REDIRECT_URL_ENV: &str = "OIDC_REDIRECT_URL";
pub const PROVIDER_NAME_ENV: &str = "OIDC_PROVIDER_NAME";

/// A `next` page longer than this is dropped (the overview instead), so the cookie stays within
/// what browsers keep.
const MAX_NEXT_LENGTH: usize = 2000;

/// The console's own OIDC settings, all optional; only OIDC mode uses them. The issuer and the
/// client id are the authorizer's (`OIDC_ISSUER`, `OIDC_AUDIENCE`), read with the auth mode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OidcSettings {
    /// Instead of the discovery document's `authorization_endpoint`.
    pub authorization_url: Option<Url>,
    /// Instead of the discovery document's `token_endpoint`.
    pub token_url: Option<Url>,
    /// The callback URL registered at the provider, when the console cannot tell its own address
    /// from the browser's requests (a proxy that drops `Referer`).
    pub redirect_url: Option<Url>,
    /// Shown on the sign-in button: "Sign in with <name>".
    pub provider_name: Option<String>,
}

impl FromEnvironment for OidcSettings {
    fn from_env(env: &dyn Environment) -> Result<Self, ConfigError> {
        let redirect_url = web_url(env, REDIRECT_URL_ENV)?;
        if let Some(url) = &redirect_url {
            if url.path() != CALLBACK_PATH {
                return Err(ConfigError::Invalid {
                    name: REDIRECT_URL_ENV,
                    reason: format!("{url} must be the console's https://<host>{CALLBACK_PATH}"),
                });
            }
        }
        Ok(Self {
            authorization_url: web_url(env, AUTHORIZATION_URL_ENV)?,
            token_url: web_url(env, TOKEN_URL_ENV)?,
            redirect_url,
            provider_name: env
                .var(PROVIDER_NAME_ENV)
                .map(|name| name.trim().to_owned()),
        })
    }
}

/// An optional http(s) URL.
fn web_url(env: &dyn Environment, name: &'static str) -> Result<Option<Url>, ConfigError> {
    let Some(text) = env.var(name) else {
        return Ok(None);
    };
    match Url::parse(text.trim()) {
        Ok(url) if matches!(url.scheme(), "https" | "http") => Ok(Some(url)),
        _ => Err(ConfigError::Invalid {
            name,
            reason: format!("{text:?} is not an http(s) URL"),
        }),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    #[error("reading the identity provider's discovery document {url} failed: {detail}. Check OIDC_ISSUER, or set {AUTHORIZATION_URL_ENV} and {TOKEN_URL_ENV} for a provider without discovery")]
    Document { url: String, detail: String },
    #[error("the identity provider's discovery document {url} has no usable {field}: set {variable} (a Cognito user pool needs a domain for its sign-in pages)")]
    Endpoint {
        url: String,
        field: &'static str,
        variable: &'static str,
    },
    #[error("the identity provider names its issuer {published}, but OIDC_ISSUER is {configured}: its ID tokens carry the former and would be refused; set OIDC_ISSUER to it exactly")]
    Issuer {
        configured: String,
        published: String,
    },
    #[error("building the HTTP client for the identity provider failed: {0}")]
    Client(String),
}

/// Where the browser signs in, and where the console exchanges codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcEndpoints {
    pub authorization_url: Url,
    pub token_url: Url,
}

/// The parts of a discovery document (OpenID Connect Discovery 1.0) the console uses.
#[derive(Debug, Deserialize)]
struct DiscoveryDocument {
    issuer: Option<String>,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
}

/// The provider's discovery document, unless the settings name both endpoints.
pub async fn discover(
    http: &reqwest::Client,
    issuer: &str,
    settings: &OidcSettings,
) -> Result<OidcEndpoints, DiscoveryError> {
    if let (Some(authorization_url), Some(token_url)) =
        (&settings.authorization_url, &settings.token_url)
    {
        return Ok(OidcEndpoints {
            authorization_url: authorization_url.clone(),
            token_url: token_url.clone(),
        });
    }
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let failed = |detail: String| DiscoveryError::Document {
        url: url.clone(),
        detail,
    };
    let response = http
        .get(&url)
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?;
    if !response.status().is_success() {
        return Err(failed(format!("HTTP {}", response.status())));
    }
    let document = response
        .json::<Value>()
        .await
        .map_err(|e| failed(format!("not JSON: {e}")))?;
    endpoints_from_discovery(&url, &document, issuer, settings)
}

/// The endpoints a discovery document (read from `url`) names, the settings' overrides first.
pub fn endpoints_from_discovery(
    url: &str,
    document: &Value,
    issuer: &str,
    settings: &OidcSettings,
) -> Result<OidcEndpoints, DiscoveryError> {
    let document: DiscoveryDocument =
        serde_json::from_value(document.clone()).map_err(|e| DiscoveryError::Document {
            url: url.to_owned(),
            detail: format!("not a discovery document: {e}"),
        })?;
    if let Some(published) = document.issuer.filter(|published| published != issuer) {
        return Err(DiscoveryError::Issuer {
            configured: issuer.to_owned(),
            published,
        });
    }
    let endpoint = |chosen: &Option<Url>,
                    published: Option<String>,
                    field: &'static str,
                    variable: &'static str| {
        chosen
            .clone()
            .or_else(|| published.and_then(|text| Url::parse(&text).ok()))
            .filter(|url| matches!(url.scheme(), "https" | "http"))
            .ok_or_else(|| DiscoveryError::Endpoint {
                url: url.to_owned(),
                field,
                variable,
            })
    };
    Ok(OidcEndpoints {
        authorization_url: endpoint(
            &settings.authorization_url,
            document.authorization_endpoint,
            "authorization_endpoint",
            AUTHORIZATION_URL_ENV,
        )?,
        token_url: endpoint(
            &settings.token_url,
            document.token_endpoint,
            "token_endpoint",
            TOKEN_URL_ENV,
        )?,
    })
}

/// The HTTP client for the provider, at cold start and while a sign-in waits: a provider that
/// does not answer fails fast, with a page saying so, rather than at the function's timeout.
pub fn provider_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .user_agent(concat!("cellbridge-console/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Signing in through the provider, in OIDC mode (its endpoints discovered at cold start);
/// `None` in cellbridge mode, where users sign in with cellbridge's own passwords.
pub async fn sign_in_for_mode(
    auth: &AuthMode,
    settings: &OidcSettings,
) -> Result<Option<OidcSignIn>, DiscoveryError> {
    let AuthMode::Oidc { audience, .. } = auth else {
        return Ok(None);
    };
    let http = provider_client().map_err(|e| DiscoveryError::Client(e.to_string()))?;
    let endpoints = discover(&http, &audience.issuer, settings).await?;
    Ok(Some(OidcSignIn {
        client: OidcClient {
            authorization_url: endpoints.authorization_url,
            client_id: audience.audience.clone(),
            redirect_url: settings.redirect_url.clone(),
            provider_name: settings.provider_name.clone(),
        },
        provider: Arc::new(HttpOidcProvider::new(http, endpoints.token_url)),
    }))
}

/// The console as the provider's client, and the port that exchanges its codes.
#[derive(Clone)]
pub struct OidcSignIn {
    pub client: OidcClient,
    pub provider: Arc<dyn OidcProvider>,
}

/// The console as a client of the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcClient {
    pub authorization_url: Url,
    /// `OIDC_AUDIENCE`: the ID tokens' `aud`, which the API checks.
    pub client_id: String,
    pub redirect_url: Option<Url>,
    pub provider_name: Option<String>,
}

impl OidcClient {
    /// What the sign-in button names.
    pub fn provider_label(&self) -> &str {
        self.provider_name
            .as_deref()
            .filter(|name| !name.is_empty())
            .unwrap_or("your identity provider")
    }

    /// The callback URL for a sign-in started by `request`: the configured one, or the console's
    /// own on the browser's origin.
    pub fn redirect_uri_for(&self, request: &Request) -> Option<String> {
        match &self.redirect_url {
            Some(url) => Some(url.to_string()),
            None => browser_origin(request).map(|origin| format!("{origin}{CALLBACK_PATH}")),
        }
    }

    /// Where the browser goes to sign in for `pending`.
    pub fn authorization_request(&self, pending: &PendingSignIn) -> String {
        let mut url = self.authorization_url.clone();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &pending.redirect_uri)
            .append_pair("scope", SCOPE)
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &pkce_challenge(&pending.verifier))
            .append_pair("code_challenge_method", "S256");
        url.into()
    }
}

/// The console's origin as the browser sees it. Behind the stack's CloudFront distribution the
/// `Host` header is API Gateway's (CloudFront cannot pass the browser's on to it), so the
/// address of the console page that linked here, which the browser sends as `Referer` on a
/// same-origin request, says it better; without one, the request's own scheme and host.
fn browser_origin(request: &Request) -> Option<String> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    let from_console_page = header("sec-fetch-site") == Some("same-origin");
    let referer_origin = header("referer")
        .filter(|_| from_console_page)
        .and_then(web_origin);
    referer_origin.or_else(|| {
        let scheme = header("x-forwarded-proto")
            .and_then(|protos| protos.split(',').next())
            .map(str::trim)
            .filter(|proto| matches!(*proto, "https" | "http"))
            .unwrap_or("https");
        web_origin(&format!("{scheme}://{}", header("host")?))
    })
}

/// `scheme://host[:port]` of an http(s) URL.
fn web_origin(url: &str) -> Option<String> {
    let url = Url::parse(url).ok()?;
    let is_web = matches!(url.scheme(), "https" | "http") && url.has_host();
    is_web.then(|| url.origin().ascii_serialization())
}

/// PKCE's S256 challenge: BASE64URL(SHA-256(verifier)), so the code is worth nothing to whoever
/// intercepts it without the verifier, which never leaves this browser's cookie and the console.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// 244 random bits as 64 hex digits (two of the sign-in form's values): unguessable for a
/// sign-in's whole round trip, and within PKCE's 43 to 128 characters for the verifier.
fn new_secret() -> String {
    format!("{}{}", new_sign_in_nonce(), new_sign_in_nonce())
}

/// A sign-in under way at the provider, kept in [`OIDC_COOKIE`] until it comes back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSignIn {
    /// Comes back with the provider's answer: an answer without it was not asked for by this
    /// browser (a forged callback signing it into someone else's account).
    pub state: String,
    /// Comes back inside the ID token: a token without it was not issued for this sign-in.
    pub nonce: String,
    /// Proves to the token endpoint that whoever redeems the code started the sign-in.
    pub verifier: String,
    /// The console page to open afterwards.
    pub next: String,
    /// The callback URL sent to the provider; the code exchange must repeat it exactly.
    pub redirect_uri: String,
}

impl PendingSignIn {
    pub fn new(next: &str, redirect_uri: &str) -> Self {
        let next = if next.len() > MAX_NEXT_LENGTH {
            crate::BASE_PATH
        } else {
            next
        };
        Self {
            state: new_secret(),
            nonce: new_secret(),
            verifier: new_secret(),
            next: next.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
        }
    }

    /// The cookie's value: base64url JSON, which needs no quoting in a cookie.
    pub fn cookie_value(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// The sign-in a cookie holds; `None` for anything else.
    pub fn from_cookie_value(value: &str) -> Option<Self> {
        let json = URL_SAFE_NO_PAD.decode(value).ok()?;
        serde_json::from_slice(&json).ok()
    }
}

/// What the token endpoint needs to give the ID token for a code (RFC 6749 4.1.3, RFC 7636 4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeExchange {
    pub code: String,
    pub redirect_uri: String,
    pub client_id: String,
    pub code_verifier: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The provider answered with an OAuth error (RFC 6749 5.2): an expired or already used
    /// code, or a client set up differently at the provider.
    #[error("the identity provider refused the code: {error} ({})", .description.as_deref().unwrap_or("no description"))]
    Refused {
        error: String,
        description: Option<String>,
    },
    /// No answer, or the provider failing (5xx): worth trying again.
    #[error("the identity provider could not be reached: {0}")]
    Unreachable(String),
    /// An answer without an ID token: the client at the provider is not allowed `openid`.
    #[error("the identity provider's answer has no ID token: {0}")]
    NoIdToken(String),
}

/// The provider's token endpoint.
#[async_trait]
pub trait OidcProvider: Send + Sync {
    /// The ID token the provider issues for an authorization code.
    async fn exchange_code(&self, exchange: &CodeExchange) -> Result<String, ProviderError>;
}

/// The token endpoint over HTTPS.
pub struct HttpOidcProvider {
    http: reqwest::Client,
    token_url: Url,
}

impl HttpOidcProvider {
    pub fn new(http: reqwest::Client, token_url: Url) -> Self {
        Self { http, token_url }
    }
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    id_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorAnswer {
    error: Option<String>,
    error_description: Option<String>,
}

#[async_trait]
impl OidcProvider for HttpOidcProvider {
    async fn exchange_code(&self, exchange: &CodeExchange) -> Result<String, ProviderError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", exchange.code.as_str()),
            ("redirect_uri", exchange.redirect_uri.as_str()),
            ("client_id", exchange.client_id.as_str()),
            ("code_verifier", exchange.code_verifier.as_str()),
        ];
        let response = self
            .http
            .post(self.token_url.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| ProviderError::Unreachable(e.to_string()))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| ProviderError::Unreachable(format!("reading the answer: {e}")))?;
        if status.is_success() {
            return serde_json::from_slice::<TokenAnswer>(&body)
                .map_err(|e| ProviderError::NoIdToken(format!("the answer is not JSON: {e}")))?
                .id_token
                .filter(|token| !token.is_empty())
                .ok_or_else(|| ProviderError::NoIdToken("no id_token in the answer".to_owned()));
        }
        if status.is_client_error() {
            let answer: ErrorAnswer = serde_json::from_slice(&body).unwrap_or_default();
            return Err(ProviderError::Refused {
                error: answer.error.unwrap_or_else(|| format!("HTTP {status}")),
                description: answer.error_description,
            });
        }
        Err(ProviderError::Unreachable(format!(
            "the token endpoint answered HTTP {status}"
        )))
    }
}

/// The claims of a token the console's `Authenticator` has already verified, read as they are:
/// checking nothing, so never call it before `Authenticator::identify` has taken the token.
pub fn claims_of_verified(token: &str) -> Option<Map<String, Value>> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}
