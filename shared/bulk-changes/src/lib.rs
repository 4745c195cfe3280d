//! Bulk changes: a tenant's request to change many devices at one carrier, validated, stored,
//! planned into per-device changes, worked through the carrier and counted to completion.

pub mod bulk_change;
pub mod capabilities;
pub mod change;
pub mod completion;
pub mod dynamodb;
pub mod inventory;
#[cfg(any(test, feature = "test-util"))]
pub mod memory;
pub mod messages;
pub mod ports;
pub mod request;
pub mod s3;
pub mod selection;
pub mod sqs;
pub mod stalled_intake;
pub mod tenant;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod views;
pub mod wiring;
