use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, sdk) = cellbridge_edge::lambda::cold_start::<sim_api::Config>().await?;
    let sims = cellbridge_sims::wiring::sim_store(&sdk, &config.sims);
    let counts = cellbridge_events::wiring::fleet_counts(&sdk, &config.events.0);
    let devices = cellbridge_devices::wiring::device_store(&sdk, &config.devices);
    let stores = sim_api::Stores {
        sims: &sims,
        usage: &sims,
        counts: &counts,
        devices: &devices,
    };
    lambda_http::run(service_fn(|request: Request| {
        let stores = &stores;
        async move {
            Ok::<_, Error>(sim_api::handle(stores, request, time::OffsetDateTime::now_utc()).await)
        }
    }))
    .await
}
