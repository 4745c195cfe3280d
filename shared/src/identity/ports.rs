//! The accounts store: tenants and the users who sign in to them.

use crate::common::store::{Page, PageRequest, StoreError};
use crate::common::tenant::TenantId;
use async_trait::async_trait;
use time::OffsetDateTime;

/// A customer of the platform; every record belongs to one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRecord {
    pub tenant: TenantId,
    pub name: String,
    pub created_at: OffsetDateTime,
}

/// Someone who signs in with a password. Usernames are unique across tenants.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub username: crate::identity::username::Username,
    pub tenant: TenantId,
    pub roles: crate::identity::role::Roles,
    /// Argon2id, PHC string form.
    pub password_hash: String,
    /// Wrong passwords since the last good one or the last lock.
    pub failed_logins: u32,
    pub locked_until: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("username", &self.username)
            .field("tenant", &self.tenant)
            .field("roles", &self.roles)
            .field("failed_logins", &self.failed_logins)
            .field("locked_until", &self.locked_until)
            .finish_non_exhaustive()
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
        username: &crate::identity::username::Username,
    ) -> Result<Option<UserRecord>, StoreError>;

    /// Counts a wrong password; when that reaches the policy's limit the account is locked and
    /// the count starts again. Returns the lock's end when this failure locked it.
    async fn record_failed_login(
        &self,
        username: &crate::identity::username::Username,
        policy: &crate::identity::lockout::LockoutPolicy,
        now: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, StoreError>;

    /// A good password: the count of wrong ones starts again.
    async fn clear_failed_logins(
        &self,
        username: &crate::identity::username::Username,
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
        username: &crate::identity::username::Username,
    ) -> Result<bool, StoreError>;
}
