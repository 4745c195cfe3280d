use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cellbridge::edge::lambda::init_tracing();
    let config = cellbridge::common::aws::load_config().await;
    let devices = cellbridge::common::aws::device_store(&config)?;
    let commands = cellbridge::common::aws::command_store(&config)?;
    let publisher = cellbridge::common::aws::device_publisher(&config).await?;
    lambda_http::run(service_fn(|request: Request| {
        let (devices, commands, publisher) = (&devices, &commands, &publisher);
        async move {
            Ok::<_, Error>(
                device_commands::handle(
                    devices,
                    commands,
                    publisher,
                    request,
                    time::OffsetDateTime::now_utc(),
                )
                .await,
            )
        }
    }))
    .await
}
