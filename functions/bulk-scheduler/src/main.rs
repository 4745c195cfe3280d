use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, sdk) = cellbridge_edge::lambda::cold_start::<bulk_scheduler::Config>().await?;
    let ports = cellbridge_bulk_changes::wiring::ports(&sdk, &config);
    lambda_runtime::run(service_fn(|_: LambdaEvent<EventBridgeEvent>| {
        let ports = &ports;
        async move {
            let run = bulk_scheduler::run(ports, time::OffsetDateTime::now_utc()).await?;
            Ok::<_, Error>(run)
        }
    }))
    .await
}
