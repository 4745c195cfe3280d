use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (tables, sdk) = cellbridge_edge::lambda::cold_start::<device_api::Config>().await?;
    let devices = cellbridge_devices::wiring::device_store(&sdk, &tables);
    lambda_http::run(service_fn(|request: Request| {
        let devices = &devices;
        async move {
            Ok::<_, Error>(
                device_api::handle(devices, request, time::OffsetDateTime::now_utc()).await,
            )
        }
    }))
    .await
}
