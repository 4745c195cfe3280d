use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, sdk) = cellbridge_edge::lambda::cold_start::<carrier_callbacks::Config>().await?;
    let sims = std::sync::Arc::new(cellbridge_sims::wiring::sim_store(
        &sdk,
        &config.tables.sims,
    ));
    let ports = carrier_callbacks::CallbackPorts {
        store: cellbridge_bulk_changes::wiring::store(&sdk, &config.tables),
        sims: sims.clone(),
        usage: sims,
        usage_requests: Default::default(),
        credentials: config.carriers.thingspace_callback().cloned(),
    };
    lambda_http::run(service_fn(|request: Request| {
        let ports = &ports;
        async move {
            Ok::<_, Error>(
                carrier_callbacks::handle(ports, request, time::OffsetDateTime::now_utc()).await,
            )
        }
    }))
    .await
}
