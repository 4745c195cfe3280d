use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cellbridge::edge::lambda::init_tracing();
    let config = cellbridge::common::aws::load_config().await;
    let ports = carrier_worker::WorkerPorts {
        store: cellbridge::common::aws::bulk_change_store(&config)?,
        queues: cellbridge::common::aws::work_queues(&config)?,
        accounts: std::sync::Arc::new(cellbridge::carriers::config::accounts_from_env(Some(
            cellbridge::common::aws::account_gate(&config)?,
        ))?),
        settings: carrier_worker::WorkerSettings::from_env()?,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let ports = &ports;
        async move { Ok::<SqsBatchResponse, Error>(carrier_worker::handle(ports, event.payload).await) }
    }))
    .await
}
