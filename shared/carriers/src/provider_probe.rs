//! The `test` of a service provider: one cheap authenticated call with its credentials (reading
//! a SIM that cannot exist), told apart by what the carrier answered.

use crate::account::CarrierAccounts;
use crate::config::build_accounts;
use crate::error::CarrierError;
use crate::port::CallJournal;
use crate::provider::{account_config, Credentials, ServiceProvider};
use async_trait::async_trait;
use cellbridge_bulk_changes::change::DeviceRef;
use cellbridge_core::ids::Iccid;

/// A well-formed ICCID no carrier issues (industry prefix 89, country 00): asking for it costs one
/// read and changes nothing.
pub const PROBE_ICCID: &str = "8900000000000000003";

/// What a provider's test found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The carrier took the credentials.
    Accepted,
    /// The carrier refused the credentials.
    Refused,
    /// The carrier asked us to slow down; the credentials are unknown.
    RateLimited,
    /// No usable answer (unreachable, timed out, a 5xx).
    Unreachable(String),
    /// Anything else: the provider's settings are wrong (an endpoint that is not the carrier's API).
    Failed(String),
}

impl ProbeOutcome {
    pub fn is_ok(&self) -> bool {
        matches!(self, ProbeOutcome::Accepted)
    }

    /// In a sentence, for the user.
    pub fn detail(&self) -> String {
        match self {
            ProbeOutcome::Accepted => "the carrier accepted the credentials".to_owned(),
            ProbeOutcome::Refused => {
                "the carrier refused the credentials; check them and update the provider".to_owned()
            }
            ProbeOutcome::RateLimited => {
                "the carrier is rate limiting this account; test again in a minute".to_owned()
            }
            ProbeOutcome::Unreachable(why) => {
                format!("the carrier did not answer usefully ({why}); check the endpoint")
            }
            ProbeOutcome::Failed(why) => format!("the carrier's answer was not understood: {why}"),
        }
    }
}

impl From<Result<(), CarrierError>> for ProbeOutcome {
    fn from(result: Result<(), CarrierError>) -> Self {
        match result {
            Ok(()) | Err(CarrierError::NotFound) => ProbeOutcome::Accepted,
            Err(CarrierError::AuthFailed) => ProbeOutcome::Refused,
            Err(CarrierError::RateLimited { .. }) => ProbeOutcome::RateLimited,
            Err(CarrierError::Transient(why)) => ProbeOutcome::Unreachable(why),
            Err(other) => ProbeOutcome::Failed(other.to_string()),
        }
    }
}

#[async_trait]
pub trait ProviderProbe: Send + Sync {
    async fn probe(&self, provider: &ServiceProvider, credentials: &Credentials) -> ProbeOutcome;
}

/// Probes the carrier itself, through the adapter the worker uses.
pub struct CarrierProbe;

#[async_trait]
impl ProviderProbe for CarrierProbe {
    async fn probe(&self, provider: &ServiceProvider, credentials: &Credentials) -> ProbeOutcome {
        let accounts = match account_config(provider, credentials)
            .and_then(|config| build_accounts(config, None))
        {
            Ok(accounts) => accounts,
            Err(e) => return ProbeOutcome::Failed(e.to_string()),
        };
        let Some(account) = accounts.account(&provider.tenant, provider.carrier) else {
            return ProbeOutcome::Failed("no account could be made of the provider".to_owned());
        };
        let device = DeviceRef {
            iccid: match Iccid::parse(PROBE_ICCID) {
                Ok(iccid) => iccid,
                Err(e) => return ProbeOutcome::Failed(e.to_string()),
            },
            msisdn: None,
            imei: None,
        };
        // The exchanges are not kept: they carry nothing a tenant needs, and a test is not a
        // change to audit.
        let journal = CallJournal::default();
        account
            .port
            .read_device(&device, &journal)
            .await
            .map(|_| ())
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_iccid_is_well_formed() {
        assert!(Iccid::parse(PROBE_ICCID).is_ok());
    }

    #[test]
    fn a_missing_sim_means_the_credentials_worked() {
        assert!(ProbeOutcome::from(Err(CarrierError::NotFound)).is_ok());
        assert_eq!(
            ProbeOutcome::from(Err(CarrierError::AuthFailed)),
            ProbeOutcome::Refused
        );
        assert!(matches!(
            ProbeOutcome::from(Err(CarrierError::Transient("HTTP 503".into()))),
            ProbeOutcome::Unreachable(_)
        ));
    }
}
