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
