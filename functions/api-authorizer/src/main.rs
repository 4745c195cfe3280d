use api_authorizer::{authorize, AuthorizerRequest};
use cellbridge_identity::authenticator::Authenticator;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (mode, sdk) = cellbridge_edge::lambda::cold_start::<api_authorizer::Config>().await?;
    let authorizer =
        Authenticator::for_mode(&mode, &cellbridge_core::aws::secrets_manager(&sdk)).await?;
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
