use device_presence::PresenceMessage;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cellbridge::lambda::init_tracing();
    let config = cellbridge::aws::load_config().await;
    let devices = cellbridge::aws::device_store(&config)?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<PresenceMessage>| {
        let devices = &devices;
        async move {
            device_presence::handle(devices, &event.payload).await?;
            Ok::<_, Error>(())
        }
    }))
    .await
}
