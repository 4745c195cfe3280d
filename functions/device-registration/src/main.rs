use cellbridge_devices::wiring;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, sdk) =
        cellbridge_edge::lambda::cold_start::<device_registration::Config>().await?;
    let devices = wiring::device_store(&sdk, &config.devices);
    let accounts = cellbridge_identity::wiring::account_store(&sdk, &config.accounts);
    let things = wiring::thing_registry(&sdk, &config.thing_type);
    let publisher = wiring::device_publisher(&sdk, &config.iot_data).await?;
    let sims = cellbridge_sims::wiring::sim_store(&sdk, &config.sims);
    let ports = device_registration::Ports {
        devices: &devices,
        accounts: accounts.as_ref(),
        things: &things,
        replies: &publisher,
        sims: &sims,
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
