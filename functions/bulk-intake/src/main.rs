use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, sdk) = cellbridge_edge::lambda::cold_start::<bulk_intake::Config>().await?;
    let ports = cellbridge_bulk_changes::wiring::ports(&sdk, &config.bulk_changes);
    let providers = cellbridge_carriers::wiring::provider_store(&sdk, &config.providers);
    let sims = cellbridge_sims::wiring::sim_store(&sdk, &config.sims);
    let lookups = bulk_intake::Lookups {
        providers: &providers,
        sims: &sims,
    };
    lambda_http::run(service_fn(|request: Request| {
        let (ports, lookups) = (&ports, &lookups);
        async move {
            Ok::<_, Error>(
                bulk_intake::handle(ports, lookups, request, time::OffsetDateTime::now_utc()).await,
            )
        }
    }))
    .await
}
