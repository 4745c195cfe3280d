//! Implementations of the ports: AWS services through the SDK, and in-memory ones for unit tests.

pub mod accounts;
mod attributes;
pub mod auth_keys;
pub mod carriers;
pub mod commands;
pub mod cursor;
pub mod devices;
pub mod dynamodb;
pub mod iot;
pub mod memory;
pub mod s3;
pub mod sqs;

use aws_sdk_dynamodb::error::DisplayErrorContext;

/// The full cause chain of an SDK error; the plain Display of `SdkError` says only "service error".
pub(crate) fn sdk_message<E: std::error::Error>(error: E) -> String {
    DisplayErrorContext(error).to_string()
}
