//! The live events' configuration, read once at cold start.

use cellbridge_core::config::{number_in, required, ConfigError, Environment, FromEnvironment};

/// The events table and the connections table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveTables {
    pub events: String,
    pub connections: String,
}

impl FromEnvironment for LiveTables {
    fn from_env(env: &dyn Environment) -> Result<Self, ConfigError> {
        Ok(Self {
            events: required(env, "EVENTS_TABLE")?,
            connections: required(env, "LIVE_CONNECTIONS_TABLE")?,
        })
    }
}

/// The events table alone, for a function that reads the fleet numbers kept there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsTable(pub String);

impl FromEnvironment for EventsTable {
    fn from_env(env: &dyn Environment) -> Result<Self, ConfigError> {
        required(env, "EVENTS_TABLE").map(Self)
    }
}

/// The WebSocket API stage's URL, where the management API takes frames for connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveEndpoint(pub String);

impl FromEnvironment for LiveEndpoint {
    fn from_env(env: &dyn Environment) -> Result<Self, ConfigError> {
        required(env, "LIVE_EVENTS_ENDPOINT").map(Self)
    }
}

/// How long events stay replayable to a client that resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayWindow(pub time::Duration);

pub const REPLAY_WINDOW_ENV: &str = "LIVE_EVENTS_REPLAY_MINUTES";

impl FromEnvironment for ReplayWindow {
    fn from_env(env: &dyn Environment) -> Result<Self, ConfigError> {
        let minutes = number_in(env, REPLAY_WINDOW_ENV, 1..=1_440, 15, "minutes")?;
        Ok(Self(time::Duration::minutes(minutes)))
    }
}

pub fn event_log(
    sdk: &aws_config::SdkConfig,
    tables: &LiveTables,
) -> crate::dynamodb::DynamoEventLog {
    crate::dynamodb::DynamoEventLog::new(aws_sdk_dynamodb::Client::new(sdk), &tables.events)
}

pub fn connections(
    sdk: &aws_config::SdkConfig,
    tables: &LiveTables,
) -> crate::dynamodb::DynamoConnections {
    crate::dynamodb::DynamoConnections::new(aws_sdk_dynamodb::Client::new(sdk), &tables.connections)
}

pub fn poster(
    sdk: &aws_config::SdkConfig,
    endpoint: &LiveEndpoint,
) -> crate::apigateway::ApiGatewayPoster {
    crate::apigateway::ApiGatewayPoster::new(sdk, &endpoint.0)
}

pub fn fleet_counts(
    sdk: &aws_config::SdkConfig,
    events_table: &str,
) -> crate::dynamodb::DynamoFleetCounts {
    crate::dynamodb::DynamoFleetCounts::new(aws_sdk_dynamodb::Client::new(sdk), events_table)
}
