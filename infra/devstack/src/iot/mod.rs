//! AWS IoT Core, locally: an MQTT broker with AWS's limits and lifecycle events
//! ([`broker`]), the topic rules of the template running on what it accepts ([`rules`]), and the
//! IoT data plane's HTTP publish endpoint that reaches MQTT devices from functions
//! ([`data_plane`]).

pub mod broker;
pub mod data_plane;
pub mod rules;
mod sqs_batches;
mod subscriptions;

pub use broker::{
    Broker, BrokerClock, BrokerMessage, BrokerOptions, BrokerStats, DisconnectReason,
};
pub use data_plane::DataPlane;
pub use rules::{
    FunctionBacklog, FunctionInvoker, RuleStats, RulesEngine, RulesOptions, RulesStats,
};
