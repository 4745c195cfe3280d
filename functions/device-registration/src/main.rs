use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cellbridge::edge::lambda::init_tracing();
    let config = cellbridge::common::aws::load_config().await;
    let devices = cellbridge::common::aws::device_store(&config)?;
    let accounts = cellbridge::common::aws::account_store(&config)?;
    let things = cellbridge::common::aws::thing_registry(&config)?;
    let publisher = cellbridge::common::aws::device_publisher(&config).await?;
    let ports = device_registration::Ports {
        devices: &devices,
        accounts: accounts.as_ref(),
        things: &things,
        replies: &publisher,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let ports = &ports;
        async move {
            device_registration::handle(ports, &event.payload, time::OffsetDateTime::now_utc())
                .await?;
            Ok::<_, Error>(())
        }
    }))
    .await
}
