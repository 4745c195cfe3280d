use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (tables, sdk) = cellbridge_edge::lambda::cold_start::<command_sweep::Config>().await?;
    let commands = cellbridge_devices::wiring::command_store(&sdk, &tables);
    lambda_runtime::run(service_fn(|_: LambdaEvent<EventBridgeEvent>| {
        let commands = &commands;
        async move {
            let swept = command_sweep::sweep(commands, time::OffsetDateTime::now_utc()).await?;
            Ok::<_, Error>(swept)
        }
    }))
    .await
}
