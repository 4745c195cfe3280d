use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cellbridge::lambda::init_tracing();
    let config = cellbridge::aws::load_config().await;
    let devices = cellbridge::aws::device_store(&config)?;
    let commands = cellbridge::aws::command_store(&config)?;
    let publisher = cellbridge::aws::device_publisher(&config).await?;
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
