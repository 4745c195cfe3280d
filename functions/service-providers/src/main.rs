use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, sdk) = cellbridge_edge::lambda::cold_start::<service_providers::Config>().await?;
    let providers = cellbridge_carriers::wiring::provider_store(&sdk, &config.providers);
    let vault = cellbridge_carriers::wiring::credential_vault(&sdk);
    let bulk_changes = cellbridge_bulk_changes::wiring::store(&sdk, &config.bulk_changes);
    let ports = service_providers::Ports {
        providers: &providers,
        bulk_changes: bulk_changes.as_ref(),
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
