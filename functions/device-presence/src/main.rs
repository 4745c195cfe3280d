use async_trait::async_trait;
use cellbridge_devices::iot::IotDataPublisher;
use cellbridge_devices::ports::{DevicePublisher, PublishError};
use cellbridge_devices::wiring::{self, IotDataEndpoint};
use device_presence::PresenceMessage;
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
    lambda_runtime::run(service_fn(|event: LambdaEvent<PresenceMessage>| {
        let (devices, commands, publisher) = (&devices, &commands, &publisher);
        async move {
            device_presence::handle(
                devices,
                commands,
                publisher,
                &event.payload,
                time::OffsetDateTime::now_utc(),
            )
            .await?;
            Ok::<_, Error>(())
        }
    }))
    .await
}

/// The IoT data-plane client, made on the first publish. Most invocations are heartbeats that
/// publish nothing, so they neither wait for the endpoint lookup (DescribeEndpoint) at cold
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
