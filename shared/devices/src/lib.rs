//! Devices on AWS IoT Core: what a device announces, its presence, the commands sent to it and
//! the telemetry it reports. Pure rules; the functions and adapters of the devices issue use them.

pub mod activity;
pub mod command;
pub mod commands_dynamodb;
#[cfg(any(test, feature = "test-util"))]
pub mod commands_memory;
pub mod delivery;
pub mod dynamodb;
pub mod iot;
#[cfg(any(test, feature = "test-util"))]
pub mod iot_memory;
pub mod live;
#[cfg(any(test, feature = "test-util"))]
pub mod memory;
pub mod ports;
pub mod presence;
pub mod registration;
pub mod series;
pub mod summary;
pub mod telemetry;
pub mod tenant;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod topics;
pub mod views;
pub mod wiring;
