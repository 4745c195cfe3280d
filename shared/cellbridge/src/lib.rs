//! cellbridge's business areas under one name, for code that spans them: the local stack, the
//! benchmarks and the cross-area tests. Each function depends only on the area crates it uses,
//! so a change to one area rebuilds only that area's functions.
//!
//! # Map
//!
//! One crate per business area, in `shared/<area>/`. Each holds its pure domain, its ports
//! (traits) and its adapters, the DynamoDB (or other AWS) one and the in-memory one side by side:
//!
//! | crate (folder) | here as | area | functions |
//! |---|---|---|---|
//! | `cellbridge-bulk-changes` (`shared/bulk-changes`) | [`bulk_changes`] | a tenant's request to change many devices: validation, storage, planning, completion, the tenant's view, API views | bulk-intake, bulk-planner, bulk-status, bulk-scheduler |
//! | `cellbridge-carriers` (`shared/carriers`) | [`carriers`] | the carrier port, errors, retry policies and budgets, pacing per account, account configuration, one folder per carrier | carrier-worker, carrier-callbacks |
//! | `cellbridge-identity` (`shared/identity`) | [`identity`] | users, tenants, roles, the caller, tokens, passwords, lockout, the tenant's view of the accounts store | auth-login, api-authorizer, users |
//! | `cellbridge-devices` (`shared/devices`) | [`devices`] | registration, presence, telemetry, commands, AWS IoT (things, data plane) | device-registration, device-presence, presence-sweep, telemetry-ingest, device-api, device-commands, command-ack, command-sweep |
//! | `cellbridge-sims` (`shared/sims`) | [`sims`] | the SIM inventory: one record per SIM of a tenant, its history, the queries of listings and selections | sim-api |
//! | `cellbridge-core` (`shared/core`) | [`common`] | what every area uses: tenant and device identifiers, time, configuration, the AWS client factory, store errors and pages, DynamoDB and in-memory helpers | |
//! | `cellbridge-edge` (`shared/edge`) | [`edge`] | where requests and events come in: HTTP problems, the caller from a request, paging, body limits, idempotency keys; SQS batches, tracing, metrics, cold start | |
//!
//! New areas (events, policies, towers, reports) follow the same shape: a crate in
//! `shared/<area>/`, named here.
//!
//! # Rules
//!
//! - **Pure domain files do no I/O and import no SDK, HTTP client or database driver**: in each
//!   area, the files that are not named after an adapter (`dynamodb`, `memory`, `sqs`, `s3`, `iot`,
//!   `http`, `keys`, the per-carrier folders) and not `ports`, `tenant`, `views` or `wiring`.
//!   In `cellbridge-core`, `ids`, `tenant`, `clock`, `redact`, `validation` and `store` are pure too.
//! - **Ports are traits** in each area's `ports` (the carrier port in `carriers::port`); handlers
//!   take them as arguments, so a unit test calls a handler with in-memory adapters.
//! - **Adapters** implement ports: `dynamodb`, `sqs`, `s3`, `iot`, `keys` and the carrier folders
//!   talk to the outside; `memory` ones and the `testing` sample data exist only with each
//!   crate's `test-util` feature (or in its own tests), so they never ship in a release binary.
//! - **Dependencies point one way**, and cargo enforces it: every area uses `cellbridge-core`;
//!   bulk changes and devices use identity (the caller); `carriers` builds on `bulk-changes` (a
//!   carrier call carries a change), not the reverse; `cellbridge-edge` uses identity and core,
//!   and no area uses the edge.
//! - **API handlers reach a store only through the tenant's view** (`<area>::tenant`), made from
//!   the verified caller, so another tenant's record is a 404.

pub use cellbridge_bulk_changes as bulk_changes;
pub use cellbridge_carriers as carriers;
pub use cellbridge_core as common;
pub use cellbridge_core::composite_config;
pub use cellbridge_devices as devices;
pub use cellbridge_edge as edge;
pub use cellbridge_events as events;
pub use cellbridge_identity as identity;
pub use cellbridge_sims as sims;

/// Sample data of every area, for tests and local tools.
#[cfg(feature = "test-util")]
pub mod testing {
    pub use cellbridge_bulk_changes::testing::*;
    pub use cellbridge_core::testing::*;
    pub use cellbridge_devices::testing::*;
    pub use cellbridge_sims::testing::*;
}
