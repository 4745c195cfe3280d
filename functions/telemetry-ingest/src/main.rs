use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, sdk) = cellbridge_edge::lambda::cold_start::<telemetry_ingest::Config>().await?;
    let devices = cellbridge_devices::wiring::device_store(&sdk, &config.devices);
    let settings = config.settings;
    // One per instance: what it learns of devices' last signs of life spares later batches.
    let activity =
        cellbridge_devices::activity::ActivityRecorder::new(config.presence.write_interval);
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let (devices, settings, activity) = (&devices, &settings, &activity);
        async move {
            let (response, report) = telemetry_ingest::handle(
                devices,
                settings,
                activity,
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
