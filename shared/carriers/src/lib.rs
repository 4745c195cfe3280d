//! Carriers: the port the worker calls, carrier errors, retry policies and budgets, pacing per
//! account, the accounts a deployment configures, and one adapter per carrier over reqwest.

pub mod account;
pub mod config;
pub mod error;
pub mod http;
pub mod jasper;
pub mod pacing;
pub mod port;
pub mod retry;
pub mod telegence;
pub mod thingspace;
pub mod wiring;
