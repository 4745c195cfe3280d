use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (tables, sdk) = cellbridge_edge::lambda::cold_start::<command_ack::Config>().await?;
    let commands = cellbridge_devices::wiring::command_store(&sdk, &tables);
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let commands = &commands;
        async move {
            command_ack::handle(commands, &event.payload, time::OffsetDateTime::now_utc()).await?;
            Ok::<_, Error>(())
        }
    }))
    .await
}
