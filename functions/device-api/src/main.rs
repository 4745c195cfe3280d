use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, sdk) = cellbridge_edge::lambda::cold_start::<device_api::Config>().await?;
    let devices = cellbridge_devices::wiring::device_store(&sdk, &config.devices);
    let sims = cellbridge_sims::wiring::sim_store(&sdk, &config.sims);
    let presence_timeout = config.presence.timeout;
    lambda_http::run(service_fn(|request: Request| {
        let (devices, sims) = (&devices, &sims);
        async move {
            Ok::<_, Error>(
                device_api::handle(
                    devices,
                    sims,
                    presence_timeout,
                    request,
                    time::OffsetDateTime::now_utc(),
                )
                .await,
            )
        }
    }))
    .await
}
