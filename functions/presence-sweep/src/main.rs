use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, sdk) = cellbridge_edge::lambda::cold_start::<presence_sweep::Config>().await?;
    let devices = cellbridge_devices::wiring::device_store(&sdk, &config.devices);
    let timeout = config.presence.timeout;
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
