//! The carrier accounts built from configuration, for the worker's `main.rs`, the local stack
//! and the benchmarks alike.

use crate::account::SharedAccounts;
use crate::config::{build_accounts, CarrierAccountsConfig, CarrierConfigError};
use crate::pacing::dynamodb::DynamoGate;
use crate::port::AccountGate;
use aws_config::SdkConfig;
use cellbridge_core::aws;
use std::sync::Arc;

/// The gate every instance of every function shares to hold an account's limits (Jasper's one
/// call in flight, Telegence's rate), on the idempotency table.
pub fn account_gate(sdk: &SdkConfig, idempotency_table: &str) -> Arc<dyn AccountGate> {
    Arc::new(DynamoGate::on_table(aws::dynamodb(sdk), idempotency_table))
}

/// The configured accounts, their limits held across instances by the account gate.
pub fn accounts(
    sdk: &SdkConfig,
    config: CarrierAccountsConfig,
    idempotency_table: &str,
) -> Result<SharedAccounts, CarrierConfigError> {
    build_accounts(config, Some(account_gate(sdk, idempotency_table)))
}

/// Where a deployment keeps its tenants' service providers, read once at cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvidersConfig {
    /// `SERVICE_PROVIDERS_TABLE`.
    pub table: String,
    /// `PROVIDER_SECRET_PREFIX`: each provider's secret is `<prefix><tenant>/<provider id>`.
    pub secret_prefix: String,
}

impl cellbridge_core::config::FromEnvironment for ProvidersConfig {
    fn from_env(
        env: &dyn cellbridge_core::config::Environment,
    ) -> Result<Self, cellbridge_core::config::ConfigError> {
        use cellbridge_core::config::required;
        Ok(Self {
            table: required(env, "SERVICE_PROVIDERS_TABLE")?,
            secret_prefix: required(env, "PROVIDER_SECRET_PREFIX")?,
        })
    }
}

impl ProvidersConfig {
    /// The name of the secret holding a provider's credentials.
    pub fn secret_name(&self, tenant: &cellbridge_core::tenant::TenantId, id: &str) -> String {
        format!("{}{}/{id}", self.secret_prefix, tenant.as_str())
    }
}

pub fn provider_store(
    sdk: &SdkConfig,
    config: &ProvidersConfig,
) -> crate::provider_dynamodb::DynamoProviders {
    crate::provider_dynamodb::DynamoProviders::new(aws::dynamodb(sdk), &config.table)
}

pub fn credential_vault(sdk: &SdkConfig) -> crate::provider_secrets::SecretsManagerVault {
    crate::provider_secrets::SecretsManagerVault::new(aws::secrets_manager(sdk))
}

/// The accounts the worker uses: each tenant's service providers (read when first used, kept a
/// few minutes), and the deployment's own for bulk changes that name none.
pub fn provider_accounts(
    sdk: &SdkConfig,
    shared: CarrierAccountsConfig,
    providers: &ProvidersConfig,
    idempotency_table: &str,
) -> Result<crate::provider_accounts::ProviderAccounts, CarrierConfigError> {
    let gate = account_gate(sdk, idempotency_table);
    Ok(crate::provider_accounts::ProviderAccounts::new(
        build_accounts(shared, Some(gate.clone()))?,
        Arc::new(provider_store(sdk, providers)),
        Arc::new(credential_vault(sdk)),
        Some(gate),
    ))
}

/// The accounts of tenants' service providers alone (the carrier sync has no deployment-wide
/// accounts), paced across instances like the worker's.
pub fn provider_accounts_only(
    sdk: &SdkConfig,
    providers: &ProvidersConfig,
    idempotency_table: &str,
) -> crate::provider_accounts::ProviderAccounts {
    let gate = account_gate(sdk, idempotency_table);
    crate::provider_accounts::ProviderAccounts::new(
        crate::account::SharedAccounts::default(),
        Arc::new(provider_store(sdk, providers)),
        Arc::new(credential_vault(sdk)),
        Some(gate),
    )
}

/// Variable holding the URL of the carrier sync queue.
pub const SYNC_QUEUE_ENV: &str = "SYNC_QUEUE_URL";
