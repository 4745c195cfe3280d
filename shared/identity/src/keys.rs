//! The keys tokens are signed and checked with, loaded once per cold start: cellbridge's HS256
//! secret from Secrets Manager, or an OIDC provider's published keys (JWKS) over HTTPS.

use crate::token::TokenVerifier;
use crate::token::{ClaimNames, SigningSecret, TokenAudience};
use cellbridge_core::config::{
    one_of, or_default, required, ConfigError, Environment, FromEnvironment,
};
use cellbridge_core::dynamodb::sdk_message;
use jsonwebtoken::jwk::JwkSet;
use std::time::Duration;

pub const SIGNING_SECRET_ENV: &str = "AUTH_SIGNING_SECRET_ID";

#[derive(Debug, thiserror::Error)]
pub enum KeyLoadError {
    #[error("reading the signing secret {secret_id} from Secrets Manager failed: {detail}")]
    Secret { secret_id: String, detail: String },
    #[error("the signing secret {0} is shorter than 32 bytes; store a longer random value")]
    ShortSecret(String),
    #[error("fetching the identity provider's keys from {url} failed: {detail}")]
    Jwks { url: String, detail: String },
    #[error("building the HTTP client for the identity provider's keys failed: {0}")]
    Client(String),
}

/// Which tokens the API accepts (`AUTH_MODE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// Tokens from `POST /auth/login`, HS256 with the secret named by `AUTH_SIGNING_SECRET_ID`.
    Cellbridge {
        secret_id: String,
        audience: TokenAudience,
    },
    /// ID tokens of an OIDC provider such as Cognito, RS256 with its published keys.
    Oidc {
        jwks_url: String,
        audience: TokenAudience,
        claims: ClaimNames,
    },
}

impl FromEnvironment for AuthMode {
    fn from_env(env: &dyn Environment) -> Result<Self, ConfigError> {
        match one_of(env, "AUTH_MODE", &["cellbridge", "oidc"], "cellbridge")? {
            "oidc" => {
                let issuer = required(env, "OIDC_ISSUER")?;
                let jwks_url = or_default(
                    env,
                    "OIDC_JWKS_URL",
                    &format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/')),
                );
                let cognito = ClaimNames::cognito();
                Ok(Self::Oidc {
                    jwks_url,
                    audience: TokenAudience {
                        issuer,
                        audience: required(env, "OIDC_AUDIENCE")?,
                    },
                    claims: ClaimNames {
                        tenant: or_default(env, "OIDC_TENANT_CLAIM", &cognito.tenant),
                        roles: or_default(env, "OIDC_ROLES_CLAIM", &cognito.roles),
                    },
                })
            }
            _ => Ok(Self::Cellbridge {
                secret_id: required(env, SIGNING_SECRET_ENV)?,
                audience: cellbridge_audience(env),
            }),
        }
    }
}

/// `iss` and `aud` of cellbridge's own tokens (`AUTH_ISSUER`, `AUTH_AUDIENCE`).
pub fn cellbridge_audience(env: &dyn Environment) -> TokenAudience {
    let defaults = TokenAudience::default();
    TokenAudience {
        issuer: or_default(env, "AUTH_ISSUER", &defaults.issuer),
        audience: or_default(env, "AUTH_AUDIENCE", &defaults.audience),
    }
}

pub async fn signing_secret(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
) -> Result<SigningSecret, KeyLoadError> {
    let out = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| KeyLoadError::Secret {
            secret_id: secret_id.to_owned(),
            detail: sdk_message(e),
        })?;
    let bytes = match (out.secret_string, out.secret_binary) {
        (Some(text), _) => text.into_bytes(),
        (None, Some(blob)) => blob.into_inner(),
        (None, None) => Vec::new(),
    };
    SigningSecret::new(bytes).map_err(|_| KeyLoadError::ShortSecret(secret_id.to_owned()))
}

/// The HTTP client for the identity provider's keys. The authorizer may fetch them while a
/// request waits (a token signed with a key it has not seen), and API Gateway gives an
/// authorizer 10 s in all, so a provider that does not answer fails fast.
pub fn jwks_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(2))
        .timeout(std::time::Duration::from_secs(4))
        .user_agent(concat!("cellbridge/", env!("CARGO_PKG_VERSION")))
        .build()
}

pub async fn fetch_jwks(http: &reqwest::Client, url: &str) -> Result<JwkSet, KeyLoadError> {
    let failed = |detail: String| KeyLoadError::Jwks {
        url: url.to_owned(),
        detail,
    };
    let response = http
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?;
    if !response.status().is_success() {
        return Err(failed(format!("HTTP {}", response.status())));
    }
    response
        .json::<JwkSet>()
        .await
        .map_err(|e| failed(format!("not a JWKS document: {e}")))
}

/// The verifier for `mode`, with its keys loaded.
pub async fn verifier(
    mode: &AuthMode,
    secrets: &aws_sdk_secretsmanager::Client,
    http: &reqwest::Client,
) -> Result<TokenVerifier, KeyLoadError> {
    match mode {
        AuthMode::Cellbridge {
            secret_id,
            audience,
        } => Ok(TokenVerifier::shared_secret(
            &signing_secret(secrets, secret_id).await?,
            audience.clone(),
        )),
        AuthMode::Oidc {
            jwks_url,
            audience,
            claims,
        } => Ok(TokenVerifier::oidc(
            fetch_jwks(http, jwks_url).await?,
            audience.clone(),
            claims.clone(),
        )),
    }
}
