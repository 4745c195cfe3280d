use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cellbridge::edge::lambda::init_tracing();
    let config = cellbridge::common::aws::load_config().await;
    let commands = cellbridge::common::aws::command_store(&config)?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let commands = &commands;
        async move {
            command_ack::handle(commands, &event.payload, time::OffsetDateTime::now_utc()).await?;
            Ok::<_, Error>(())
        }
    }))
    .await
}
