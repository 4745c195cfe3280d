//! The local stack: emulators for AWS ([`local_aws`]: MiniStack for DynamoDB and SQS, moto for
//! the rest), `cargo lambda watch` for the functions, and what neither provides (API Gateway
//! routes, SQS event sources, AWS IoT Core's broker, topic rules and data plane), all derived from
//! `template.yaml`.
//!
//! [`Devstack::start`] runs the lot; the modules can also be used one by one (the integration
//! tests only [`provision`] the emulators).

pub mod api_client;
pub mod api_gateway;
pub mod billing;
pub mod carriers;
mod children;
pub mod demo_accounts;
pub mod iot;
pub mod lambda_watch;
pub mod local_aws;
pub mod ministack;
pub mod moto;
pub mod ports;
pub mod provision;
pub mod python_server;
pub mod schedules;
mod server_task;
pub mod sqs_source;
pub mod stack;
pub mod stream_source;
pub mod template;
pub mod websocket_api;
/// The local tools (the emulators, cargo-lambda) live in their own small crate, so the xtask installs them
/// without building the devstack; re-exported under the name the stack's users know.
pub use local_tools as tools;

pub use stack::{Devstack, DevstackOptions, IotStats};
