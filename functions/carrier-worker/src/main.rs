use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, sdk) = cellbridge_edge::lambda::cold_start::<carrier_worker::Config>().await?;
    let ports = carrier_worker::WorkerPorts {
        store: cellbridge_bulk_changes::wiring::store(&sdk, &config.tables),
        queues: cellbridge_bulk_changes::wiring::queues(&sdk, &config.queues),
        accounts: std::sync::Arc::new(cellbridge_carriers::wiring::provider_accounts(
            &sdk,
            config.carriers,
            &config.providers,
            &config.tables.idempotency,
        )?),
        settings: config.settings,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let ports = &ports;
        async move { Ok::<SqsBatchResponse, Error>(carrier_worker::handle(ports, event.payload).await) }
    }))
    .await
}
