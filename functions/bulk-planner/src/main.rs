use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cellbridge::edge::lambda::init_tracing();
    let config = cellbridge::common::aws::load_config().await;
    let ports = cellbridge::common::aws::bulk_change_ports(&config)?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let ports = &ports;
        async move { Ok::<SqsBatchResponse, Error>(bulk_planner::handle(ports, event.payload).await) }
    }))
    .await
}
