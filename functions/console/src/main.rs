use cellbridge_identity::authenticator::Authenticator;
use lambda_http::{service_fn, Error, Request};
use std::sync::Arc;
use web_console::api::HttpPortalApi;
use web_console::ConsolePorts;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, sdk) = cellbridge_edge::lambda::cold_start::<web_console::Config>().await?;
    let authenticator =
        Authenticator::for_mode(&config.auth, &cellbridge_core::aws::secrets_manager(&sdk)).await?;
    let tickets = cellbridge_identity::wiring::live_tickets(&sdk, &config.tickets).await?;
    // In OIDC mode, the provider's endpoints, read once here from its discovery document.
    let oidc = web_console::oidc::sign_in_for_mode(&config.auth, &config.oidc).await?;
    let ports = ConsolePorts {
        api: Arc::new(HttpPortalApi::new(&config.endpoints.api_url)?),
        authenticator: Arc::new(authenticator),
        tickets: Arc::new(tickets),
        live_url: config.endpoints.live_url,
        oidc,
    };
    lambda_http::run(service_fn(|request: Request| {
        let ports = &ports;
        async move {
            Ok::<_, Error>(
                web_console::handle(ports, request, time::OffsetDateTime::now_utc()).await,
            )
        }
    }))
    .await
}
