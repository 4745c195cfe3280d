use async_trait::async_trait;
use aws_lambda_events::event::sqs::SqsBatchResponse;
use cellbridge_devices::activity::ActivityRecorder;
use cellbridge_devices::iot::IotDataPublisher;
use cellbridge_devices::ports::{DevicePublisher, PublishError};
use cellbridge_devices::wiring::{self, IotDataEndpoint};
use device_presence::{Ports, PresenceEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, sdk) = cellbridge_edge::lambda::cold_start::<device_presence::Config>().await?;
    let devices = wiring::device_store(&sdk, &config.devices);
    let commands = wiring::command_store(&sdk, &config.commands);
    let publisher = LazyPublisher {
        sdk,
        endpoint: config.iot_data,
        publisher: tokio::sync::OnceCell::new(),
    };
    // Lives as long as the instance: what it learns of each device spares later batches the reads
    // and writes.
    let activity = ActivityRecorder::new(config.presence.write_interval);
    let ports = Ports {
        devices: &devices,
        commands: &commands,
        publisher: &publisher,
        activity: &activity,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<PresenceEvent>| {
        let ports = &ports;
        async move {
            let now = time::OffsetDateTime::now_utc();
            match &event.payload {
                PresenceEvent::Heartbeats(batch) => {
                    let (response, report) =
                        device_presence::handle_heartbeats(ports.devices, ports.activity, batch, now)
                            .await;
                    report.emit_metrics();
                    Ok::<Option<SqsBatchResponse>, Error>(Some(response))
                }
                PresenceEvent::Message(message) => {
                    if let Err(error) = device_presence::handle(ports, message, now).await {
                        tracing::error!(%error, retryable = error.is_retryable(), "presence message failed; Lambda retries it");
                        return Err(error.into());
                    }
                    Ok(None)
                }
            }
        }
    }))
    .await
}

/// The IoT data-plane client, made on the first publish. Most invocations are heartbeat batches
/// that publish nothing, so they neither wait for the endpoint lookup (DescribeEndpoint) at cold
/// start nor fail when it fails.
struct LazyPublisher {
    sdk: aws_config::SdkConfig,
    endpoint: IotDataEndpoint,
    publisher: tokio::sync::OnceCell<IotDataPublisher>,
}

#[async_trait]
impl DevicePublisher for LazyPublisher {
    async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<(), PublishError> {
        let publisher = self
            .publisher
            .get_or_try_init(|| wiring::device_publisher(&self.sdk, &self.endpoint))
            .await
            .map_err(|e| PublishError {
                topic: topic.to_owned(),
                reason: e.to_string(),
            })?;
        publisher.publish(topic, payload).await
    }
}
