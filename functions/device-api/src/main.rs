use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, sdk) = cellbridge_edge::lambda::cold_start::<device_api::Config>().await?;
    let devices = cellbridge_devices::wiring::device_store(&sdk, &config.devices);
    let presence_timeout = config.presence.timeout;
    lambda_http::run(service_fn(|request: Request| {
        let devices = &devices;
        async move {
            Ok::<_, Error>(
                device_api::handle(
                    devices,
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
