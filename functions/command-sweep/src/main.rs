use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cellbridge::edge::lambda::init_tracing();
    let config = cellbridge::common::aws::load_config().await;
    let commands = cellbridge::common::aws::command_store(&config)?;
    lambda_runtime::run(service_fn(|_: LambdaEvent<EventBridgeEvent>| {
        let commands = &commands;
        async move {
            let swept = command_sweep::sweep(commands, time::OffsetDateTime::now_utc()).await?;
            Ok::<_, Error>(swept)
        }
    }))
    .await
}
