//! Devices on AWS IoT Core: what a device announces, its presence, the commands sent to it and
//! the telemetry it reports. Pure rules; the functions and adapters of the devices issue use them.

pub mod command;
pub mod presence;
pub mod registration;
pub mod telemetry;
pub mod topics;
