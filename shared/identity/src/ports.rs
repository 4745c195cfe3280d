//! The accounts store: tenants and the users who sign in to them.

use async_trait::async_trait;
use cellbridge_core::store::{Page, PageRequest, StoreError};
use cellbridge_core::tenant::TenantId;
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

/// A customer of the platform; every record belongs to one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRecord {
    pub tenant: TenantId,
    pub name: String,
    pub created_at: OffsetDateTime,
}

/// Someone who signs in with a password. Usernames are unique across tenants.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub username: crate::username::Username,
    pub tenant: TenantId,
    pub roles: crate::role::Roles,
    /// Argon2id, PHC string form. Not the password, but whoever has it can guess at it offline,
    /// so it never prints.
    pub password_hash: SecretString,
    /// Wrong passwords since the last good one or the last lock.
    pub failed_logins: u32,
    pub locked_until: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
}

/// Equal when every field is, the hash included (compared as text: it is salted, so equal
/// hashes mean the same stored record, not the same password).
impl PartialEq for UserRecord {
    fn eq(&self, other: &Self) -> bool {
        self.username == other.username
            && self.tenant == other.tenant
            && self.roles == other.roles
            && self.password_hash.expose_secret() == other.password_hash.expose_secret()
            && self.failed_logins == other.failed_logins
            && self.locked_until == other.locked_until
            && self.created_at == other.created_at
    }
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    /// False when the tenant already exists (it is left as it was).
    async fn create_tenant(&self, tenant: &TenantRecord) -> Result<bool, StoreError>;

    async fn get_tenant(&self, tenant: &TenantId) -> Result<Option<TenantRecord>, StoreError>;

    /// False when the username is taken (the existing user is left as it was).
    async fn create_user(&self, user: &UserRecord) -> Result<bool, StoreError>;

    async fn get_user(
        &self,
        username: &crate::username::Username,
    ) -> Result<Option<UserRecord>, StoreError>;

    /// Counts a wrong password; when that reaches the policy's limit the account is locked and
    /// the count starts again. Returns the lock's end when this failure locked it.
    async fn record_failed_login(
        &self,
        username: &crate::username::Username,
        policy: &crate::lockout::LockoutPolicy,
        now: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, StoreError>;

    /// A good password: the count of wrong ones starts again.
    async fn clear_failed_logins(
        &self,
        username: &crate::username::Username,
    ) -> Result<(), StoreError>;

    /// The tenant's users in username order.
    async fn list_users(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Page<UserRecord>, StoreError>;

    /// Removes the user if it belongs to `tenant`; false when there is no such user there.
    async fn delete_user(
        &self,
        tenant: &TenantId,
        username: &crate::username::Username,
    ) -> Result<bool, StoreError>;
}
