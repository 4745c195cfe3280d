use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cellbridge::edge::lambda::init_tracing();
    let config = cellbridge::common::aws::load_config().await;
    let ports = cellbridge::common::aws::bulk_change_ports(&config)?;
    lambda_runtime::run(service_fn(|_: LambdaEvent<EventBridgeEvent>| {
        let ports = &ports;
        async move {
            let run = bulk_scheduler::run(ports, time::OffsetDateTime::now_utc()).await?;
            Ok::<_, Error>(run)
        }
    }))
    .await
}
