use api_authorizer::{authorize, Authorizer, AuthorizerRequest, KeySource};
use async_trait::async_trait;
use cellbridge_identity::keys::{fetch_jwks, jwks_client, verifier, AuthMode, KeyLoadError};
use jsonwebtoken::jwk::JwkSet;
use lambda_runtime::{service_fn, Error, LambdaEvent};

struct HttpJwks {
    http: reqwest::Client,
    url: String,
}

#[async_trait]
impl KeySource for HttpJwks {
    async fn fetch(&self) -> Result<JwkSet, KeyLoadError> {
        fetch_jwks(&self.http, &self.url).await
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (mode, sdk) = cellbridge_edge::lambda::cold_start::<api_authorizer::Config>().await?;
    let http = jwks_client()?;
    let verifier = verifier(&mode, &cellbridge_core::aws::secrets_manager(&sdk), &http).await?;
    let keys: Option<Box<dyn KeySource>> = match &mode {
        AuthMode::Oidc { jwks_url, .. } => Some(Box::new(HttpJwks {
            http,
            url: jwks_url.clone(),
        })),
        AuthMode::Cellbridge { .. } => None,
    };
    let authorizer = Authorizer::new(verifier, keys);
    lambda_runtime::run(service_fn(|event: LambdaEvent<AuthorizerRequest>| {
        let authorizer = &authorizer;
        async move {
            authorize(authorizer, &event.payload, time::OffsetDateTime::now_utc())
                .await
                .map_err(Error::from)
        }
    }))
    .await
}
