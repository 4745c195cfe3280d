//! Where service providers and their credentials are kept.

use crate::provider::{Credentials, ServiceProvider};
use async_trait::async_trait;
use cellbridge_core::store::{Page, PageRequest, StoreError};
use cellbridge_core::tenant::TenantId;

/// The providers of every tenant; each call names the tenant, so one tenant's provider is
/// another's `None`.
#[async_trait]
pub trait ProviderStore: Send + Sync {
    /// `false` when a provider with that id exists already.
    async fn create_provider(&self, provider: &ServiceProvider) -> Result<bool, StoreError>;

    async fn get_provider(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<ServiceProvider>, StoreError>;

    /// Writes `provider` if the stored one is still at `provider.version - 1`; `false` when
    /// another change came first (or the provider is gone).
    async fn update_provider(&self, provider: &ServiceProvider) -> Result<bool, StoreError>;

    /// `false` when there was none.
    async fn delete_provider(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError>;

    /// A tenant's providers, by id.
    async fn list_providers(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Page<ServiceProvider>, StoreError>;

    /// Every tenant's providers, as (tenant, id): what the scheduled carrier sync goes through.
    async fn every_provider(&self) -> Result<Vec<(TenantId, String)>, StoreError>;
}

/// Why a vault call failed.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// Throttled, timed out or unreachable: the same call may succeed later.
    #[error("the credential vault is unavailable: {0}")]
    Unavailable(String),
    /// Refused for good (access denied, a deleted secret): the deployment needs fixing.
    #[error("the credential vault refused the request: {0}")]
    Rejected(String),
}

/// One secret per provider.
#[async_trait]
pub trait CredentialVault: Send + Sync {
    /// Stores `credentials` under `name` (a new version when it exists); returns the secret's id.
    async fn put(&self, name: &str, credentials: &Credentials) -> Result<String, VaultError>;

    /// The current version of the secret `id`.
    async fn get(&self, id: &str) -> Result<Credentials, VaultError>;

    /// Deletes the secret `id`; one already gone is not an error.
    async fn delete(&self, id: &str) -> Result<(), VaultError>;
}
