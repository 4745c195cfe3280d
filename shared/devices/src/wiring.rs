//! The device configuration and the adapters built from it, for the functions' `main.rs` and the
//! local stack alike.

use crate::commands_dynamodb::DynamoCommands;
use crate::dynamodb::DynamoDevices;
use crate::iot::{IotDataPublisher, IotThings};
use aws_config::SdkConfig;
use cellbridge_core::aws;
use cellbridge_core::config::{required, ConfigError, Environment, FromEnvironment};

/// The device registry and its telemetry series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceTables {
    pub devices: String,
    pub telemetry: String,
}

impl FromEnvironment for DeviceTables {
    fn from_env(env: &dyn Environment) -> Result<Self, ConfigError> {
        Ok(Self {
            devices: required(env, "DEVICES_TABLE")?,
            telemetry: required(env, "TELEMETRY_TABLE")?,
        })
    }
}

pub fn device_store(sdk: &SdkConfig, tables: &DeviceTables) -> DynamoDevices {
    DynamoDevices::new(aws::dynamodb(sdk), &tables.devices, &tables.telemetry)
}

/// Device commands, and the idempotency table that binds request keys to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTables {
    pub commands: String,
    pub idempotency: String,
}

impl FromEnvironment for CommandTables {
    fn from_env(env: &dyn Environment) -> Result<Self, ConfigError> {
        Ok(Self {
            commands: required(env, "COMMANDS_TABLE")?,
            idempotency: required(env, "IDEMPOTENCY_TABLE")?,
        })
    }
}

pub fn command_store(sdk: &SdkConfig, tables: &CommandTables) -> DynamoCommands {
    DynamoCommands::new(aws::dynamodb(sdk), &tables.commands, &tables.idempotency)
}

/// The thing type registered devices get (template.yaml's `DeviceThingType`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThingType(pub String);

impl FromEnvironment for ThingType {
    fn from_env(env: &dyn Environment) -> Result<Self, ConfigError> {
        required(env, "THING_TYPE_NAME").map(Self)
    }
}

pub fn thing_registry(sdk: &SdkConfig, thing_type: &ThingType) -> IotThings {
    IotThings::new(aws::iot(sdk), &thing_type.0)
}

/// Variable naming the account's IoT data endpoint (`iot:Data-ATS`), locally the devstack's.
pub const IOT_DATA_ENDPOINT_ENV: &str = "IOT_DATA_ENDPOINT";

/// Where device topics are published: `IOT_DATA_ENDPOINT` when set, otherwise the account's
/// endpoint as IoT describes it (`DescribeEndpoint`, once per cold start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IotDataEndpoint(pub Option<String>);

impl FromEnvironment for IotDataEndpoint {
    fn from_env(env: &dyn Environment) -> Result<Self, ConfigError> {
        match env.var(IOT_DATA_ENDPOINT_ENV) {
            Some(url) if !(url.starts_with("https://") || url.starts_with("http://")) => {
                Err(ConfigError::Invalid {
                    name: IOT_DATA_ENDPOINT_ENV,
                    reason: format!("{url:?} is not an http(s) URL"),
                })
            }
            endpoint => Ok(Self(endpoint)),
        }
    }
}

/// Publishing to device topics through the IoT data plane.
pub async fn device_publisher(
    sdk: &SdkConfig,
    endpoint: &IotDataEndpoint,
) -> Result<IotDataPublisher, Box<dyn std::error::Error + Send + Sync>> {
    let url = match &endpoint.0 {
        Some(url) => url.clone(),
        None => {
            let described = aws::iot(sdk)
                .describe_endpoint()
                .endpoint_type("iot:Data-ATS")
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "finding the IoT data endpoint failed ({}); set {IOT_DATA_ENDPOINT_ENV} or allow iot:DescribeEndpoint",
                        cellbridge_core::dynamodb::sdk_message(e)
                    )
                })?;
            let address = described
                .endpoint_address()
                .ok_or("DescribeEndpoint answered without an address")?;
            format!("https://{address}")
        }
    };
    let conf = aws_sdk_iotdataplane::config::Builder::from(sdk)
        .endpoint_url(url)
        .build();
    Ok(IotDataPublisher::new(
        aws_sdk_iotdataplane::Client::from_conf(conf),
    ))
}

cellbridge_core::composite_config! {
    /// What delivering commands takes: the devices (to know who is online), the commands, and
    /// the IoT data plane to publish them on.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct CommandDelivery {
        pub devices: DeviceTables,
        pub commands: CommandTables,
        pub iot_data: IotDataEndpoint,
    }
}
