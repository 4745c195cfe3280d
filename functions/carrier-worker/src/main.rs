use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cellbridge::lambda::init_tracing();
    let config = cellbridge::aws::load_config().await;
    let ports = carrier_worker::WorkerPorts {
        store: cellbridge::aws::bulk_change_store(&config)?,
        queues: cellbridge::aws::work_queues(&config)?,
        accounts: std::sync::Arc::new(cellbridge::carrier_config::accounts_from_env(Some(
            cellbridge::aws::account_gate(&config)?,
        ))?),
        settings: carrier_worker::WorkerSettings::from_env()?,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let ports = &ports;
        async move { Ok::<SqsBatchResponse, Error>(carrier_worker::handle(ports, event.payload).await) }
    }))
    .await
}
