//! The carrier accounts a deployment uses, read once at cold start from `CARRIER_ACCOUNTS`: a
//! JSON document that template.yaml fills from Secrets Manager, so credentials never sit in the
//! template or the code.

use crate::account::{AccountLimits, CarrierAccount, SharedAccounts};
use crate::http::http_client;
use crate::jasper::{JasperClient, JasperCredentials};
use crate::port::AccountGate;
use crate::telegence::{TelegenceClient, TelegenceCredentials};
use crate::thingspace::{ThingSpaceClient, ThingSpaceCredentials};
use cellbridge_bulk_changes::change::Carrier;
use cellbridge_core::config::{ConfigError, Environment, FromEnvironment};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::sync::Arc;

pub const ENV_NAME: &str = "CARRIER_ACCOUNTS";

#[derive(Debug, thiserror::Error)]
pub enum CarrierConfigError {
    #[error("{ENV_NAME} is {0}")]
    Invalid(String),
    #[error("the HTTP client for carrier calls could not be built: {0}")]
    Http(String),
}

/// Limits that override a carrier's documented ones (a contract with higher limits, a simulator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitsOverride {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls_per_second: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
}

fn limits(carrier: Carrier, overrides: Option<LimitsOverride>) -> AccountLimits {
    let documented = AccountLimits::documented(carrier);
    let Some(o) = overrides else {
        return documented;
    };
    AccountLimits {
        calls_per_second: o.calls_per_second.unwrap_or(documented.calls_per_second),
        burst: o.burst.unwrap_or(documented.burst),
        max_in_flight: o.max_in_flight.unwrap_or(documented.max_in_flight),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JasperAccount {
    base_url: String,
    username: String,
    api_key: SecretString,
    limits: Option<LimitsOverride>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ThingSpaceAccount {
    /// e.g. `https://thingspace.verizon.com/api`
    base_url: String,
    app_key: String,
    app_secret: SecretString,
    username: String,
    password: SecretString,
    account_name: String,
    /// Service plan and ZIP code for activations whose change names none.
    default_service_plan: Option<String>,
    default_zip_code: Option<String>,
    /// What ThingSpace sends back in every callback, registered with the listener.
    callback: Option<CallbackCredentials>,
    limits: Option<LimitsOverride>,
}

/// The username and password a carrier echoes in its callbacks.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CallbackCredentials {
    pub username: String,
    pub password: SecretString,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TelegenceAccount {
    base_url: String,
    app_id: String,
    app_secret: SecretString,
    limits: Option<LimitsOverride>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AccountsDocument {
    jasper: Option<JasperAccount>,
    thing_space: Option<ThingSpaceAccount>,
    telegence: Option<TelegenceAccount>,
}

/// What is wrong with `document`, if anything.
fn parse(document: &str) -> Result<AccountsDocument, String> {
    // serde_json's messages can quote the offending value, which may be a credential: report
    // only where and what kind of problem it is.
    serde_json::from_str(document).map_err(|e| {
        format!(
            "not valid JSON for carrier accounts: {:?} error at line {} column {}; see docs/carriers.md for the shape",
            e.classify(),
            e.line(),
            e.column()
        )
    })
}

/// The carrier accounts of `CARRIER_ACCOUNTS`, parsed at cold start; [`build_accounts`] makes
/// their clients. Unset means no accounts: every carrier call then fails for want of one.
#[derive(Debug, Default)]
pub struct CarrierAccountsConfig {
    document: AccountsDocument,
}

impl CarrierAccountsConfig {
    pub fn parse(document: &str) -> Result<Self, CarrierConfigError> {
        Ok(Self {
            document: parse(document).map_err(CarrierConfigError::Invalid)?,
        })
    }

    /// What ThingSpace echoes in its callbacks, when configured.
    pub fn thingspace_callback(&self) -> Option<&CallbackCredentials> {
        self.document
            .thing_space
            .as_ref()
            .and_then(|t| t.callback.as_ref())
    }

    /// The carriers with an account.
    pub fn carriers(&self) -> Vec<Carrier> {
        let d = &self.document;
        [
            (d.jasper.is_some(), Carrier::Jasper),
            (d.thing_space.is_some(), Carrier::ThingSpace),
            (d.telegence.is_some(), Carrier::Telegence),
        ]
        .into_iter()
        .filter_map(|(present, carrier)| present.then_some(carrier))
        .collect()
    }
}

impl FromEnvironment for CarrierAccountsConfig {
    fn from_env(env: &dyn Environment) -> Result<Self, ConfigError> {
        match env.var(ENV_NAME) {
            Some(document) if !document.trim().is_empty() => Ok(Self {
                document: parse(&document).map_err(|reason| ConfigError::Invalid {
                    name: ENV_NAME,
                    reason,
                })?,
            }),
            _ => Ok(Self::default()),
        }
    }
}

/// Builds the accounts `document` describes; carriers it leaves out have no account, and their
/// device changes fail with that reason.
pub fn accounts_from_json(document: &str) -> Result<SharedAccounts, CarrierConfigError> {
    gated_accounts_from_json(document, None)
}

/// As [`accounts_from_json`], with Jasper's and Telegence's limits held across instances by
/// `gate` (see [`build_accounts`]), not just within one.
pub fn gated_accounts_from_json(
    document: &str,
    gate: Option<Arc<dyn AccountGate>>,
) -> Result<SharedAccounts, CarrierConfigError> {
    build_accounts(CarrierAccountsConfig::parse(document)?, gate)
}

/// Makes the clients of the configured accounts; with a `gate`, Jasper's calls pass it one at a
/// time and Telegence's take their start slots from it, so the limits hold across instances.
pub fn build_accounts(
    config: CarrierAccountsConfig,
    gate: Option<Arc<dyn AccountGate>>,
) -> Result<SharedAccounts, CarrierConfigError> {
    if config.carriers().is_empty() {
        tracing::warn!(
            "{ENV_NAME} names no carrier account: every carrier call will fail for want of one"
        );
    }
    let parsed = config.document;
    let http = http_client().map_err(|e| CarrierConfigError::Http(e.to_string()))?;
    let mut accounts = SharedAccounts::default();
    if let Some(jasper) = parsed.jasper {
        let secrets = vec![jasper.api_key.expose_secret().to_owned()];
        let account_name = format!("jasper:{}", jasper.username);
        let jasper_limits = limits(Carrier::Jasper, jasper.limits);
        let client = JasperClient::new(
            http.clone(),
            jasper.base_url,
            JasperCredentials {
                username: jasper.username,
                api_key: jasper.api_key,
            },
        );
        let mut account = CarrierAccount::new(Arc::new(client), jasper_limits, secrets);
        if let (Some(gate), 1) = (&gate, jasper_limits.max_in_flight) {
            account = account.with_gate(gate.clone(), account_name, jasper_limits.calls_per_second);
        }
        accounts = accounts.with(Carrier::Jasper, account);
    }
    if let Some(ts) = parsed.thing_space {
        let mut secrets = vec![
            ts.app_secret.expose_secret().to_owned(),
            ts.password.expose_secret().to_owned(),
        ];
        if let Some(callback) = &ts.callback {
            secrets.push(callback.password.expose_secret().to_owned());
        }
        let mut client = ThingSpaceClient::new(
            http.clone(),
            ts.base_url,
            ThingSpaceCredentials {
                app_key: ts.app_key,
                app_secret: ts.app_secret,
                username: ts.username,
                password: ts.password,
                account_name: ts.account_name,
            },
        );
        if let (Some(plan), Some(zip)) = (ts.default_service_plan, ts.default_zip_code) {
            client = client.with_activation_defaults(plan, zip);
        }
        accounts = accounts.with(
            Carrier::ThingSpace,
            CarrierAccount::new(
                Arc::new(client),
                limits(Carrier::ThingSpace, ts.limits),
                secrets,
            ),
        );
    }
    if let Some(telegence) = parsed.telegence {
        let secrets = vec![telegence.app_secret.expose_secret().to_owned()];
        let account_name = format!("telegence:{}", telegence.app_id);
        let client = TelegenceClient::new(
            http,
            telegence.base_url,
            TelegenceCredentials {
                app_id: telegence.app_id,
                app_secret: telegence.app_secret,
            },
        );
        let telegence_limits = limits(Carrier::Telegence, telegence.limits);
        let mut account = CarrierAccount::new(Arc::new(client), telegence_limits, secrets);
        if let Some(gate) = &gate {
            account = account.with_shared_pace(
                gate.clone(),
                account_name,
                telegence_limits.calls_per_second,
            );
        }
        accounts = accounts.with(Carrier::Telegence, account);
    }
    Ok(accounts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::CarrierAccounts;
    use cellbridge_core::tenant::TenantId;

    #[test]
    fn a_document_names_the_accounts_and_errors_never_echo_values() {
        let accounts = accounts_from_json(
            r#"{"jasper": {"baseUrl": "http://127.0.0.1:4010/jasper/rws/api/v1", "username": "u", "apiKey": "k-123456"}}"#,
        )
        .expect("valid document");
        let tenant = TenantId::parse("demo").expect("tenant");
        assert!(accounts.account(&tenant, Carrier::Jasper).is_some());
        assert!(accounts.account(&tenant, Carrier::ThingSpace).is_none());

        let error = accounts_from_json(r#"{"jasper": {"baseUrl": 7, "username": "u", "apiKey": "k", "limits": "s3cr3t-value"}}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("CARRIER_ACCOUNTS"), "{error}");
        assert!(!error.contains("s3cr3t-value"), "{error}");
    }

    #[test]
    fn printed_configuration_shows_no_credential() {
        let config = CarrierAccountsConfig::parse(
            r#"{
                "jasper": {"baseUrl": "http://jasper.test", "username": "j-user", "apiKey": "jasper-k3y"},
                "thingSpace": {"baseUrl": "http://ts.test", "appKey": "ts-app", "appSecret": "ts-s3cret",
                    "username": "ts-user", "password": "ts-pa55", "accountName": "0000123456-00001",
                    "callback": {"username": "cb-user", "password": "cb-pa55"}},
                "telegence": {"baseUrl": "http://tg.test", "appId": "tg-app", "appSecret": "tg-s3cret"}
            }"#,
        )
        .expect("valid document");
        let printed = format!("{config:?}");
        for secret in ["jasper-k3y", "ts-s3cret", "ts-pa55", "cb-pa55", "tg-s3cret"] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        assert!(printed.contains("0000123456-00001"), "{printed}");
    }
}
