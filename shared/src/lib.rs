//! cellbridge: the shared library of the cellbridge functions.
//!
//! - [`domain`]: identifiers, change types, bulk changes and validation; imports no SDK.
//! - [`ports`]: the traits handlers depend on; [`adapters`] implement them.
//! - [`api`]: the HTTP edge (problem responses, caller, paging, views).
//! - [`lambda`]: runtime helpers (tracing, SQS partial batch responses).

pub mod accounts;
pub mod adapters;
pub mod api;
pub mod auth;
pub mod aws;
pub mod carrier_account;
pub mod carrier_config;
pub mod clock;
pub mod completion;
pub mod config;
pub mod devices;
pub mod domain;
pub mod lambda;
pub mod messages;
pub mod ports;
pub mod testing;
