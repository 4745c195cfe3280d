//! The device configuration and the adapters built from it, for the functions' `main.rs` and the
//! local stack alike.

use crate::commands_dynamodb::DynamoCommands;
use crate::dynamodb::DynamoDevices;
use crate::iot::{IotDataPublisher, IotThings};
use aws_config::SdkConfig;
use cellbridge_core::aws;
use cellbridge_core::config::{number_in, required, ConfigError, Environment, FromEnvironment};
use time::Duration;

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

/// Variable holding the presence timeout, in seconds.
pub const PRESENCE_TIMEOUT_ENV: &str = "PRESENCE_TIMEOUT_SECONDS";
/// Variable holding the presence write interval, in seconds.
pub const PRESENCE_WRITE_INTERVAL_ENV: &str = "PRESENCE_WRITE_INTERVAL_SECONDS";

/// How presence is judged and written (see `crate::presence`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceSettings {
    /// A connected device not heard from for longer than this is timed out (offline).
    pub timeout: Duration,
    /// A device's `lastSeen` moves at most once per this.
    pub write_interval: Duration,
}

impl Default for PresenceSettings {
    fn default() -> Self {
        Self {
            timeout: crate::presence::DEFAULT_PRESENCE_TIMEOUT,
            write_interval: crate::presence::DEFAULT_WRITE_INTERVAL,
        }
    }
}

impl FromEnvironment for PresenceSettings {
    fn from_env(env: &dyn Environment) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let timeout = number_in(
            env,
            PRESENCE_TIMEOUT_ENV,
            2..=86_400,
            defaults.timeout.whole_seconds(),
            "seconds",
        )?;
        let write_interval = number_in(
            env,
            PRESENCE_WRITE_INTERVAL_ENV,
            0..=3_600,
            defaults.write_interval.whole_seconds(),
            "seconds",
        )?;
        // Otherwise a device heard from all along could be timed out between two writes.
        if write_interval >= timeout {
            return Err(ConfigError::Invalid {
                name: PRESENCE_WRITE_INTERVAL_ENV,
                reason: format!(
                    "{write_interval} s is not shorter than {PRESENCE_TIMEOUT_ENV} ({timeout} s)"
                ),
            });
        }
        Ok(Self {
            timeout: Duration::seconds(timeout),
            write_interval: Duration::seconds(write_interval),
        })
    }
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
    /// What delivering commands takes: the devices and how presence is judged (to know who is
    /// online), the commands, and the IoT data plane to publish them on.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct CommandDelivery {
        pub devices: DeviceTables,
        pub presence: PresenceSettings,
        pub commands: CommandTables,
        pub iot_data: IotDataEndpoint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<PresenceSettings, ConfigError> {
        let env: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        PresenceSettings::from_env(&env)
    }

    #[test]
    fn presence_settings_default_to_fifteen_and_five_minutes_and_a_bad_one_names_its_variable() {
        assert_eq!(settings(&[]), Ok(PresenceSettings::default()));
        assert_eq!(
            settings(&[]).map(|s| (s.timeout.whole_seconds(), s.write_interval.whole_seconds())),
            Ok((900, 300))
        );
        assert_eq!(
            settings(&[
                (PRESENCE_TIMEOUT_ENV, "1800"),
                (PRESENCE_WRITE_INTERVAL_ENV, "0")
            ]),
            Ok(PresenceSettings {
                timeout: Duration::seconds(1800),
                write_interval: Duration::ZERO,
            })
        );
        for (name, bad) in [
            (PRESENCE_TIMEOUT_ENV, "1"),
            (PRESENCE_TIMEOUT_ENV, "15m"),
            (PRESENCE_TIMEOUT_ENV, "86401"),
            (PRESENCE_WRITE_INTERVAL_ENV, "-1"),
            (PRESENCE_WRITE_INTERVAL_ENV, "3601"),
        ] {
            let error = settings(&[(name, bad)]).expect_err(bad);
            assert_eq!(error.variable(), name, "{bad}");
        }
        let error = settings(&[(PRESENCE_TIMEOUT_ENV, "300")]).expect_err("interval not shorter");
        assert_eq!(error.variable(), PRESENCE_WRITE_INTERVAL_ENV);
        assert!(error.to_string().contains(PRESENCE_TIMEOUT_ENV), "{error}");
    }
}
