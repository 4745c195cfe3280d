use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cellbridge::edge::lambda::init_tracing();
    let config = cellbridge::common::aws::load_config().await;
    let devices = cellbridge::common::aws::device_store(&config)?;
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
