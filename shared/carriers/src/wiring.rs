//! The carrier accounts built from configuration, for the worker's `main.rs`, the local stack
//! and the benchmarks alike.

use crate::account::SharedAccounts;
use crate::config::{build_accounts, CarrierAccountsConfig, CarrierConfigError};
use crate::pacing::dynamodb::DynamoGate;
use crate::port::AccountGate;
use aws_config::SdkConfig;
use cellbridge_core::aws;
use std::sync::Arc;

/// The gate every worker instance shares for accounts that allow one call in flight, on the
/// idempotency table.
pub fn account_gate(sdk: &SdkConfig, idempotency_table: &str) -> Arc<dyn AccountGate> {
    Arc::new(DynamoGate::on_table(aws::dynamodb(sdk), idempotency_table))
}

/// The configured accounts, their one-call-in-flight ones gated across instances.
pub fn accounts(
    sdk: &SdkConfig,
    config: CarrierAccountsConfig,
    idempotency_table: &str,
) -> Result<SharedAccounts, CarrierConfigError> {
    build_accounts(config, Some(account_gate(sdk, idempotency_table)))
}
