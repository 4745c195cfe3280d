//! cellbridge: the library every cellbridge function is built from.
//!
//! # Map
//!
//! One folder per business area. Each holds its pure domain, its ports (traits) and its adapters,
//! the DynamoDB (or other AWS) one and the in-memory one side by side:
//!
//! | folder | area | functions |
//! |---|---|---|
//! | [`bulk_changes`] | a tenant's request to change many devices: validation, storage, planning, completion, the tenant's view, API views | bulk-intake, bulk-planner, bulk-status, bulk-scheduler |
//! | [`carriers`] | the carrier port, errors, retry policies and budgets, pacing per account, account configuration, one folder per carrier | carrier-worker, carrier-callbacks |
//! | [`identity`] | users, tenants, roles, tokens, passwords, lockout, the tenant's view of the accounts store | auth-login, api-authorizer, users |
//! | [`devices`] | registration, presence, telemetry, commands, AWS IoT (things, data plane) | device-registration, device-presence, presence-sweep, telemetry-ingest, device-api, device-commands, command-ack, command-sweep |
//! | [`common`] | what every area uses: tenant and device identifiers, time, configuration, the AWS client factory, store errors and pages, DynamoDB and in-memory helpers | |
//! | [`edge`] | where requests and events come in: HTTP problems, the caller, paging, body limits, idempotency keys; SQS batches, tracing, metrics | |
//!
//! New areas (inventory, events, policies, towers, reports) follow the same shape.
//!
//! # Rules
//!
//! - **Pure domain files do no I/O and import no SDK, HTTP client or database driver**: in each
//!   area, the files that are not named after an adapter (`dynamodb`, `memory`, `sqs`, `s3`, `iot`,
//!   `http`, `keys`, the per-carrier folders) and not `ports`, `tenant`, `views` or `wiring`.
//!   `common::{ids, tenant, clock, redact, validation, store}` are pure too.
//! - **Ports are traits** in each area's `ports` (the carrier port in `carriers::port`); handlers
//!   take them as arguments, so a unit test calls a handler with in-memory adapters.
//! - **Adapters** implement ports: `dynamodb`, `sqs`, `s3`, `iot`, `keys` and the carrier folders
//!   talk to the outside; `memory` ones exist only with the `test-util` feature (or in this
//!   crate's own tests), so they never ship in a release binary.
//! - **Dependencies point one way**: areas may use `common` and `edge`; `common` uses no area;
//!   `carriers` builds on `bulk_changes` (a carrier call carries a change), not the reverse.
//! - **API handlers reach a store only through the tenant's view** (`*::tenant`), made from the
//!   verified caller, so another tenant's record is a 404.

pub mod bulk_changes;
pub mod carriers;
pub mod common;
pub mod devices;
pub mod edge;
pub mod identity;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
