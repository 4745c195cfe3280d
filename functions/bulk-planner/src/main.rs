use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, sdk) = cellbridge_edge::lambda::cold_start::<bulk_planner::Config>().await?;
    let ports = cellbridge_bulk_changes::wiring::ports(&sdk, &config);
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let ports = &ports;
        async move { Ok::<SqsBatchResponse, Error>(bulk_planner::handle(ports, event.payload).await) }
    }))
    .await
}
