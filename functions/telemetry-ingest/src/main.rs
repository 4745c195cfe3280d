use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cellbridge::edge::lambda::init_tracing();
    let config = cellbridge::common::aws::load_config().await;
    let devices = cellbridge::common::aws::device_store(&config)?;
    let settings = telemetry_ingest::Settings::from_env()?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let (devices, settings) = (&devices, &settings);
        async move {
            let (response, report) = telemetry_ingest::handle(
                devices,
                settings,
                &event.payload,
                time::OffsetDateTime::now_utc(),
            )
            .await;
            report.emit_metrics();
            Ok::<SqsBatchResponse, Error>(response)
        }
    }))
    .await
}
