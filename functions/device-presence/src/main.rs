use async_trait::async_trait;
use cellbridge::devices::iot::IotDataPublisher;
use cellbridge::devices::ports::{DevicePublisher, PublishError};
use device_presence::PresenceMessage;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cellbridge::edge::lambda::init_tracing();
    let config = cellbridge::common::aws::load_config().await;
    let devices = cellbridge::common::aws::device_store(&config)?;
    let commands = cellbridge::common::aws::command_store(&config)?;
    let publisher = LazyPublisher {
        config,
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
    config: aws_config::SdkConfig,
    publisher: tokio::sync::OnceCell<IotDataPublisher>,
}

#[async_trait]
impl DevicePublisher for LazyPublisher {
    async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<(), PublishError> {
        let publisher = self
            .publisher
            .get_or_try_init(|| cellbridge::common::aws::device_publisher(&self.config))
            .await
            .map_err(|e| PublishError {
                topic: topic.to_owned(),
                reason: e.to_string(),
            })?;
        publisher.publish(topic, payload).await
    }
}
