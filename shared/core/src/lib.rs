//! What every area shares: the tenant and device identifiers, time, configuration, the AWS client
//! factory, the store error and pages, and the DynamoDB and in-memory adapter helpers.

pub mod aws;
pub mod carrier;
pub mod clock;
pub mod config;
pub mod cursor;
pub mod dynamodb;
pub mod ids;
#[cfg(any(test, feature = "test-util"))]
pub mod memory;
pub mod redact;
pub mod store;
pub mod tenant;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod validation;
