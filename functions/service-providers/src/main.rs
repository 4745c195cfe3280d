use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, sdk) = cellbridge_edge::lambda::cold_start::<service_providers::Config>().await?;
    let providers = cellbridge_carriers::wiring::provider_store(&sdk, &config);
    let vault = cellbridge_carriers::wiring::credential_vault(&sdk);
    let ports = service_providers::Ports {
        providers: &providers,
        vault: &vault,
        probe: &cellbridge_carriers::provider_probe::CarrierProbe,
        config: &config,
    };
    lambda_http::run(service_fn(|request: Request| {
        let ports = &ports;
        async move {
            Ok::<_, Error>(
                service_providers::handle(ports, request, time::OffsetDateTime::now_utc()).await,
            )
        }
    }))
    .await
}
