//! Who a token belongs to, for every entry point that takes one (the HTTP API's authorizer, the
//! live event stream's `$connect`): the verifier for the deployment's auth mode, which fetches an
//! OIDC provider's keys again when a token names one it does not know (the provider rotated them).

use crate::keys::{fetch_jwks, jwks_client, verifier, AuthMode, KeyLoadError};
use crate::principal::Identity;
use crate::token::{TokenError, TokenVerifier};
use async_trait::async_trait;
use jsonwebtoken::jwk::JwkSet;
use std::sync::RwLock;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// An unknown key id refetches the provider's keys at most this often.
pub const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(300);

/// Where an OIDC provider's current keys come from.
#[async_trait]
pub trait KeySource: Send + Sync {
    async fn fetch(&self) -> Result<JwkSet, KeyLoadError>;
}

/// The provider's JWKS document over HTTPS.
pub struct HttpJwks {
    http: reqwest::Client,
    url: String,
}

#[async_trait]
impl KeySource for HttpJwks {
    async fn fetch(&self) -> Result<JwkSet, KeyLoadError> {
        fetch_jwks(&self.http, &self.url).await
    }
}

pub struct Authenticator {
    verifier: RwLock<TokenVerifier>,
    keys: Option<Box<dyn KeySource>>,
    last_refresh: tokio::sync::Mutex<Option<Instant>>,
}

impl Authenticator {
    pub fn new(verifier: TokenVerifier, keys: Option<Box<dyn KeySource>>) -> Self {
        Self {
            verifier: RwLock::new(verifier),
            keys,
            last_refresh: tokio::sync::Mutex::new(None),
        }
    }

    /// The authenticator of `mode`, its keys loaded (at cold start).
    pub async fn for_mode(
        mode: &AuthMode,
        secrets: &aws_sdk_secretsmanager::Client,
    ) -> Result<Self, KeyLoadError> {
        let http = jwks_client().map_err(|e| KeyLoadError::Client(e.to_string()))?;
        let verifier = verifier(mode, secrets, &http).await?;
        let keys: Option<Box<dyn KeySource>> = match mode {
            AuthMode::Oidc { jwks_url, .. } => Some(Box::new(HttpJwks {
                http,
                url: jwks_url.clone(),
            })),
            AuthMode::Cellbridge { .. } => None,
        };
        Ok(Self::new(verifier, keys))
    }

    /// Whose `token` is, at `now`.
    pub async fn identify(&self, token: &str, now: OffsetDateTime) -> Result<Identity, TokenError> {
        if self.lacks_key_for(token) {
            self.refresh_keys().await;
        }
        self.verifier
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .verify(token, now)
    }

    fn lacks_key_for(&self, token: &str) -> bool {
        self.verifier
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .lacks_key_for(token)
    }

    /// The provider may have rotated its keys: fetch them again, unless that was done lately.
    async fn refresh_keys(&self) {
        let Some(source) = &self.keys else { return };
        let mut last = self.last_refresh.lock().await;
        if last.is_some_and(|at| at.elapsed() < JWKS_REFRESH_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        match source.fetch().await {
            Ok(set) => self
                .verifier
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .replace_keys(set),
            Err(e) => tracing::error!("refreshing the identity provider's keys failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{ClaimNames, TokenAudience};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    struct Counted(JwkSet, Arc<AtomicUsize>);

    #[async_trait]
    impl KeySource for Counted {
        async fn fetch(&self) -> Result<JwkSet, KeyLoadError> {
            self.1.fetch_add(1, Ordering::SeqCst);
            Ok(self.0.clone())
        }
    }

    #[tokio::test]
    async fn an_unknown_key_id_refetches_the_keys_once_per_interval() {
        let empty: JwkSet = serde_json::from_str(r#"{"keys": []}"#).expect("jwks");
        let fetches = Arc::new(AtomicUsize::new(0));
        let verifier = TokenVerifier::oidc(
            empty.clone(),
            TokenAudience::default(),
            ClaimNames::cognito(),
        );
        let authenticator =
            Authenticator::new(verifier, Some(Box::new(Counted(empty, fetches.clone()))));
        let forged = "eyJhbGciOiJSUzI1NiIsImtpZCI6Im5ldyJ9.e30.c2ln";
        let now = OffsetDateTime::UNIX_EPOCH;
        assert!(authenticator.identify(forged, now).await.is_err());
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert!(authenticator.identify(forged, now).await.is_err());
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            1,
            "not again within the interval"
        );
    }
}
