//! The inventory's configuration and the adapter built from it.

use crate::dynamodb::DynamoSims;
use aws_config::SdkConfig;
use cellbridge_core::aws;
use cellbridge_core::config::{required, ConfigError, Environment, FromEnvironment};

/// The inventory's tables: the SIMs, their history and their daily usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimTables {
    pub sims: String,
    pub history: String,
    /// Where each service provider's carrier sync and usage collection stand.
    pub sync: String,
    pub usage: String,
}

impl FromEnvironment for SimTables {
    fn from_env(env: &dyn Environment) -> Result<Self, ConfigError> {
        Ok(Self {
            sims: required(env, "SIMS_TABLE")?,
            history: required(env, "SIM_HISTORY_TABLE")?,
            sync: required(env, "CARRIER_SYNC_TABLE")?,
            usage: required(env, "SIM_USAGE_TABLE")?,
        })
    }
}

pub fn sim_store(sdk: &SdkConfig, tables: &SimTables) -> DynamoSims {
    DynamoSims::new(aws::dynamodb(sdk), &tables.sims, &tables.history)
        .with_sync_table(&tables.sync)
        .with_usage_table(&tables.usage)
}
