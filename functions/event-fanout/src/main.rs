use aws_lambda_events::event::dynamodb::Event;
use cellbridge_events::fanout::FanoutPorts;
use cellbridge_events::wiring;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, sdk) = cellbridge_edge::lambda::cold_start::<event_fanout::Config>().await?;
    let log = wiring::event_log(&sdk, &config.tables);
    let connections = wiring::connections(&sdk, &config.tables);
    let poster = wiring::poster(&sdk, &config.endpoint);
    let ports = FanoutPorts {
        log: &log,
        connections: &connections,
        poster: &poster,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Event>| {
        let ports = &ports;
        async move {
            Ok::<_, Error>(
                event_fanout::handle(&event.payload, ports, time::OffsetDateTime::now_utc()).await,
            )
        }
    }))
    .await
}
