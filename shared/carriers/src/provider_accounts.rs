//! The carrier accounts of the tenants' service providers, as the worker uses them: the
//! provider's record and credentials read on first use and kept for a few minutes, so new
//! credentials (a new version of the provider's secret) take over without a redeploy.

use crate::account::{AccountLookupError, CarrierAccount, CarrierAccounts, SharedAccounts};
use crate::config::build_accounts;
use crate::port::AccountGate;
use crate::provider::account_config;
use crate::provider_ports::{CredentialVault, ProviderStore, VaultError};
use cellbridge_bulk_changes::change::Carrier;
use cellbridge_core::store::StoreError;
use cellbridge_core::tenant::TenantId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
// Tokio's clock, so a test can pause it and move it on instead of waiting out the TTL.
use tokio::time::Instant;

/// How long a provider's account is used before its record and secret are read again.
pub const ACCOUNT_TTL: Duration = Duration::from_secs(300);

type Cached = (Instant, Arc<CarrierAccount>);

pub struct ProviderAccounts {
    shared: SharedAccounts,
    providers: Arc<dyn ProviderStore>,
    vault: Arc<dyn CredentialVault>,
    /// The gate that holds accounts' limits across instances (see `build_accounts`).
    gate: Option<Arc<dyn AccountGate>>,
    cache: Mutex<HashMap<(TenantId, String), Cached>>,
}

impl ProviderAccounts {
    pub fn new(
        shared: SharedAccounts,
        providers: Arc<dyn ProviderStore>,
        vault: Arc<dyn CredentialVault>,
        gate: Option<Arc<dyn AccountGate>>,
    ) -> Self {
        Self {
            shared,
            providers,
            vault,
            gate,
            cache: Mutex::default(),
        }
    }

    async fn load(
        &self,
        tenant: &TenantId,
        carrier: Carrier,
        id: &str,
    ) -> Result<Arc<CarrierAccount>, AccountLookupError> {
        let provider = self
            .providers
            .get_provider(tenant, id)
            .await
            .map_err(|e| match e {
                StoreError::Unavailable(why) => AccountLookupError::Unavailable(why),
                other => AccountLookupError::Unusable(other.to_string()),
            })?
            .ok_or_else(|| {
                AccountLookupError::Unusable(format!("the service provider {id} was deleted"))
            })?;
        if provider.carrier != carrier {
            return Err(AccountLookupError::Unusable(format!(
                "the service provider {id} is at {}, not {}",
                provider.carrier.as_str(),
                carrier.as_str()
            )));
        }
        let credentials = self
            .vault
            .get(&provider.secret_id)
            .await
            .map_err(|e| match e {
                VaultError::Unavailable(why) => AccountLookupError::Unavailable(why),
                VaultError::Rejected(why) => AccountLookupError::Unusable(format!(
                    "the credentials of service provider {id} cannot be read: {why}"
                )),
            })?;
        let accounts = account_config(&provider, &credentials)
            .and_then(|config| build_accounts(config, self.gate.clone()))
            .map_err(|e| AccountLookupError::Unusable(format!("service provider {id}: {e}")))?;
        accounts.account(tenant, carrier).ok_or_else(|| {
            AccountLookupError::Unusable(format!("service provider {id} makes no account"))
        })
    }
}

#[async_trait::async_trait]
impl CarrierAccounts for ProviderAccounts {
    fn account(&self, tenant: &TenantId, carrier: Carrier) -> Option<Arc<CarrierAccount>> {
        self.shared.account(tenant, carrier)
    }

    async fn account_for(
        &self,
        tenant: &TenantId,
        carrier: Carrier,
        provider: Option<&str>,
    ) -> Result<Option<Arc<CarrierAccount>>, AccountLookupError> {
        let Some(id) = provider else {
            return Ok(self.shared.account(tenant, carrier));
        };
        // A provider's carrier never changes, so a kept account at another carrier means the
        // change and the provider disagree: read the provider again and say why.
        let key = (tenant.clone(), id.to_owned());
        let fresh = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .filter(|(at, account)| at.elapsed() < ACCOUNT_TTL && account.port.carrier() == carrier)
            .map(|(_, account)| account.clone());
        if let Some(account) = fresh {
            return Ok(Some(account));
        }
        // Two instances of a message may both load it; the second replaces the first, which
        // costs one extra read and nothing else.
        let account = self.load(tenant, carrier, id).await?;
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, (Instant::now(), account.clone()));
        Ok(Some(account))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::parse_new_provider;
    use crate::provider_memory::{MemoryProviders, MemoryVault};
    use serde_json::json;
    use time::OffsetDateTime;

    async fn world() -> (Arc<MemoryProviders>, Arc<MemoryVault>, TenantId, String) {
        let providers = Arc::new(MemoryProviders::default());
        let vault = Arc::new(MemoryVault::default());
        let tenant = TenantId::parse("demo").expect("tenant");
        let body = json!({"name": "Jasper", "carrier": "jasper", "endpoint": "http://127.0.0.1:1/jasper",
            "credentials": {"username": "ops", "apiKey": "k1"}});
        let new = parse_new_provider(body.to_string().as_bytes()).expect("valid");
        let secret = vault
            .put("demo/p-1", &new.credentials)
            .await
            .expect("stored");
        let provider = new.into_provider(
            tenant.clone(),
            "p-1".into(),
            secret,
            OffsetDateTime::UNIX_EPOCH,
        );
        providers.create_provider(&provider).await.expect("created");
        (providers, vault, tenant, "p-1".into())
    }

    #[tokio::test(start_paused = true)]
    async fn a_providers_account_is_built_once_and_a_deleted_one_is_unusable() {
        let (providers, vault, tenant, id) = world().await;
        let accounts = ProviderAccounts::new(
            SharedAccounts::default(),
            providers.clone(),
            vault.clone(),
            None,
        );
        let first = accounts
            .account_for(&tenant, Carrier::Jasper, Some(&id))
            .await
            .expect("found")
            .expect("an account");
        let again = accounts
            .account_for(&tenant, Carrier::Jasper, Some(&id))
            .await
            .expect("found")
            .expect("an account");
        assert!(Arc::ptr_eq(&first, &again), "kept, not rebuilt");
        assert!(matches!(
            accounts
                .account_for(&tenant, Carrier::Telegence, Some(&id))
                .await,
            Err(AccountLookupError::Unusable(_))
        ));
        let other = TenantId::parse("globex").expect("tenant");
        assert!(
            matches!(
                accounts
                    .account_for(&other, Carrier::Jasper, Some(&id))
                    .await,
                Err(AccountLookupError::Unusable(_))
            ),
            "another tenant's provider is none of this one's"
        );
        assert!(
            accounts
                .account_for(&tenant, Carrier::Jasper, None)
                .await
                .expect("no lookup")
                .is_none(),
            "no shared account configured"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn new_credentials_take_over_once_the_kept_account_expires() {
        let (providers, vault, tenant, id) = world().await;
        let accounts = ProviderAccounts::new(SharedAccounts::default(), providers, vault, None);
        let first = accounts
            .account_for(&tenant, Carrier::Jasper, Some(&id))
            .await
            .expect("found")
            .expect("an account");
        tokio::time::advance(ACCOUNT_TTL).await;
        let second = accounts
            .account_for(&tenant, Carrier::Jasper, Some(&id))
            .await
            .expect("found")
            .expect("an account");
        assert!(!Arc::ptr_eq(&first, &second), "read again after the TTL");
    }
}
