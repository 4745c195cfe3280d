use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, sdk) = cellbridge_edge::lambda::cold_start::<event_recorder::Config>().await?;
    let log = cellbridge_events::wiring::event_log(&sdk, &config.tables);
    let counts = cellbridge_events::wiring::fleet_counts(&sdk, &config.tables.events);
    let devices = cellbridge_devices::wiring::device_store(&sdk, &config.devices);
    lambda_runtime::run(service_fn(|event: LambdaEvent<Event>| {
        let ports = event_recorder::RecorderPorts {
            log: &log,
            counts: &counts,
            following: &devices,
        };
        let config = &config;
        async move {
            Ok::<_, Error>(
                event_recorder::handle(
                    &event.payload,
                    &config.sources,
                    ports,
                    config.window.0,
                    time::OffsetDateTime::now_utc(),
                )
                .await,
            )
        }
    }))
    .await
}
