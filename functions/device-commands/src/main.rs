use cellbridge_devices::wiring;
use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, sdk) = cellbridge_edge::lambda::cold_start::<device_commands::Config>().await?;
    let devices = wiring::device_store(&sdk, &config.devices);
    let commands = wiring::command_store(&sdk, &config.commands);
    let publisher = wiring::device_publisher(&sdk, &config.iot_data).await?;
    let presence_timeout = config.presence.timeout;
    lambda_http::run(service_fn(|request: Request| {
        let (devices, commands, publisher) = (&devices, &commands, &publisher);
        async move {
            Ok::<_, Error>(
                device_commands::handle(
                    devices,
                    commands,
                    publisher,
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
