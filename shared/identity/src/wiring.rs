//! The identity configuration and the adapters built from it, for the functions' `main.rs` and
//! the local stack alike.

use crate::dynamodb::{DynamoAccounts, ACCOUNTS_TABLE_ENV};
use crate::keys::{cellbridge_audience, SIGNING_SECRET_ENV};
use crate::ports::AccountStore;
use crate::token::{TokenAudience, DEFAULT_LIFETIME};
use aws_config::SdkConfig;
use cellbridge_core::aws;
use cellbridge_core::config::{number_in, required, ConfigError, Environment, FromEnvironment};
use std::sync::Arc;

/// The table of tenants and users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountsConfig {
    pub table: String,
}

impl FromEnvironment for AccountsConfig {
    fn from_env(env: &dyn Environment) -> Result<Self, ConfigError> {
        Ok(Self {
            table: required(env, ACCOUNTS_TABLE_ENV)?,
        })
    }
}

/// Tenants and users on DynamoDB.
pub fn account_store(sdk: &SdkConfig, config: &AccountsConfig) -> Arc<dyn AccountStore> {
    Arc::new(DynamoAccounts::new(aws::dynamodb(sdk), &config.table))
}

/// How cellbridge issues its own tokens: the signing secret's id, `iss`/`aud`, and their lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIssuing {
    pub signing_secret_id: String,
    pub audience: TokenAudience,
    pub lifetime: time::Duration,
}

impl FromEnvironment for TokenIssuing {
    fn from_env(env: &dyn Environment) -> Result<Self, ConfigError> {
        let hours = number_in(
            env,
            "AUTH_TOKEN_HOURS",
            1..=24 * 90,
            DEFAULT_LIFETIME.whole_hours(),
            "hours",
        )?;
        Ok(Self {
            signing_secret_id: required(env, SIGNING_SECRET_ENV)?,
            audience: cellbridge_audience(env),
            lifetime: time::Duration::hours(hours),
        })
    }
}

/// The secret live tickets are signed with: the deployment's signing secret, in either auth mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveTicketsConfig {
    pub signing_secret_id: String,
}

impl FromEnvironment for LiveTicketsConfig {
    fn from_env(env: &dyn Environment) -> Result<Self, ConfigError> {
        Ok(Self {
            signing_secret_id: required(env, SIGNING_SECRET_ENV)?,
        })
    }
}

/// Live tickets signed with the secret `config` names (read at cold start).
pub async fn live_tickets(
    sdk: &SdkConfig,
    config: &LiveTicketsConfig,
) -> Result<crate::live_ticket::LiveTickets, crate::keys::KeyLoadError> {
    let secret =
        crate::keys::signing_secret(&aws::secrets_manager(sdk), &config.signing_secret_id).await?;
    Ok(crate::live_ticket::LiveTickets::new(&secret))
}
