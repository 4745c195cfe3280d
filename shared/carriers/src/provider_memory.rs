//! In-memory providers and vault, for handler tests.

use crate::provider::{Credentials, ServiceProvider};
use crate::provider_ports::{CredentialVault, ProviderStore, VaultError};
use async_trait::async_trait;
use cellbridge_core::cursor::{self, AfterId};
use cellbridge_core::store::{Page, PageRequest, StoreError};
use cellbridge_core::tenant::TenantId;
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryProviders {
    providers: Mutex<BTreeMap<(TenantId, String), ServiceProvider>>,
}

impl MemoryProviders {
    fn locked(&self) -> std::sync::MutexGuard<'_, BTreeMap<(TenantId, String), ServiceProvider>> {
        self.providers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl ProviderStore for MemoryProviders {
    async fn create_provider(&self, provider: &ServiceProvider) -> Result<bool, StoreError> {
        let mut providers = self.locked();
        let key = (provider.tenant.clone(), provider.id.clone());
        if providers.contains_key(&key) {
            return Ok(false);
        }
        providers.insert(key, provider.clone());
        Ok(true)
    }

    async fn get_provider(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<ServiceProvider>, StoreError> {
        Ok(self.locked().get(&(tenant.clone(), id.to_owned())).cloned())
    }

    async fn update_provider(&self, provider: &ServiceProvider) -> Result<bool, StoreError> {
        let mut providers = self.locked();
        match providers.get_mut(&(provider.tenant.clone(), provider.id.clone())) {
            Some(stored) if stored.version + 1 == provider.version => {
                *stored = provider.clone();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn delete_provider(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .locked()
            .remove(&(tenant.clone(), id.to_owned()))
            .is_some())
    }

    async fn every_provider(&self) -> Result<Vec<(TenantId, String)>, StoreError> {
        Ok(self
            .locked()
            .values()
            .map(|p| (p.tenant.clone(), p.id.clone()))
            .collect())
    }

    async fn list_providers(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Page<ServiceProvider>, StoreError> {
        let after = page
            .cursor
            .as_deref()
            .map(cursor::decode::<AfterId>)
            .transpose()?
            .map(|a| a.after);
        let providers = self.locked();
        let mut matching = providers
            .values()
            .filter(|p| &p.tenant == tenant)
            .filter(|p| after.as_deref().is_none_or(|after| p.id.as_str() > after));
        let items: Vec<ServiceProvider> = matching
            .by_ref()
            .take(page.limit as usize)
            .cloned()
            .collect();
        let next_cursor = (matching.next().is_some())
            .then(|| items.last())
            .flatten()
            .map(|last| {
                cursor::encode(&AfterId {
                    after: last.id.clone(),
                })
            });
        Ok(Page { items, next_cursor })
    }
}

/// Secrets by name; the id is the name.
#[derive(Default)]
pub struct MemoryVault {
    secrets: Mutex<BTreeMap<String, String>>,
}

impl MemoryVault {
    /// The names of the secrets held.
    pub fn names(&self) -> Vec<String> {
        self.secrets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }
}

#[async_trait]
impl CredentialVault for MemoryVault {
    async fn put(&self, name: &str, credentials: &Credentials) -> Result<String, VaultError> {
        self.secrets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                name.to_owned(),
                credentials.secret().expose_secret().to_owned(),
            );
        Ok(name.to_owned())
    }

    async fn get(&self, id: &str) -> Result<Credentials, VaultError> {
        self.secrets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .map(|s| Credentials::from_secret(SecretString::from(s.clone())))
            .ok_or_else(|| VaultError::Rejected(format!("no secret {id}")))
    }

    async fn delete(&self, id: &str) -> Result<(), VaultError> {
        self.secrets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
        Ok(())
    }
}
