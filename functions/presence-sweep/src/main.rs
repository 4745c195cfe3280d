use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cellbridge::edge::lambda::init_tracing();
    let config = cellbridge::common::aws::load_config().await;
    let devices = cellbridge::common::aws::device_store(&config)?;
    let timeout = presence_sweep::timeout_from_env()?;
    lambda_runtime::run(service_fn(|_: LambdaEvent<EventBridgeEvent>| {
        let devices = &devices;
        async move {
            let swept =
                presence_sweep::sweep(devices, time::OffsetDateTime::now_utc(), timeout).await?;
            Ok::<_, Error>(serde_json::json!({ "timedOut": swept }))
        }
    }))
    .await
}
