//! The SIM inventory: one record per SIM of each tenant, kept true against the carriers by the
//! carrier sync and by the outcomes of bulk changes, with each SIM's history and the queries the
//! API and bulk-change selections make over it.

pub mod dynamodb;
#[cfg(any(test, feature = "test-util"))]
pub mod memory;
pub mod ports;
pub mod query;
pub mod sim;
pub mod sync;
pub mod tenant;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod usage;
pub mod wiring;
