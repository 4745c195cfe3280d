use aws_lambda_events::event::apigw::ApiGatewayWebsocketProxyRequest;
use cellbridge_devices::live::FollowPorts;
use cellbridge_devices::wiring as devices;
use cellbridge_events::wiring;
use cellbridge_identity::authenticator::Authenticator;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use live_socket::SocketPorts;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, sdk) = cellbridge_edge::lambda::cold_start::<live_socket::Config>().await?;
    let authenticator =
        Authenticator::for_mode(&config.auth, &cellbridge_core::aws::secrets_manager(&sdk)).await?;
    let tickets = cellbridge_identity::wiring::live_tickets(&sdk, &config.tickets).await?;
    let log = wiring::event_log(&sdk, &config.tables);
    let connections = wiring::connections(&sdk, &config.tables);
    let poster = wiring::poster(&sdk, &config.endpoint);
    let devices = devices::device_store(&sdk, &config.commands.devices);
    let commands = devices::command_store(&sdk, &config.commands.commands);
    let publisher = devices::device_publisher(&sdk, &config.commands.iot_data).await?;
    let ports = SocketPorts {
        log: &log,
        connections: &connections,
        poster: &poster,
        authenticator: &authenticator,
        tickets: &tickets,
        follow: FollowPorts {
            devices: &devices,
            following: &devices,
            commands: &commands,
            publisher: &publisher,
            presence_timeout: config.commands.presence.timeout,
        },
    };
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
            let ports = &ports;
            async move {
                live_socket::handle(&event.payload, ports, time::OffsetDateTime::now_utc())
                    .await
                    .map_err(Error::from)
            }
        },
    ))
    .await
}
