//! The accounts store as one tenant's admin sees it.

use crate::caller::Caller;
use cellbridge_core::store::{Page, PageRequest, StoreError};
use cellbridge_core::tenant::TenantId;

/// The accounts store as one tenant's admin sees it: that tenant's users only.
pub struct TenantAccounts<'a> {
    store: &'a dyn crate::ports::AccountStore,
    tenant: TenantId,
}

impl<'a> TenantAccounts<'a> {
    pub fn of(store: &'a dyn crate::ports::AccountStore, caller: &Caller) -> Self {
        Self {
            store,
            tenant: caller.tenant().clone(),
        }
    }

    pub async fn list_users(
        &self,
        page: &PageRequest,
    ) -> Result<Page<crate::ports::UserRecord>, StoreError> {
        self.store.list_users(&self.tenant, page).await
    }

    /// A user of another tenant is not found here.
    pub async fn get_user(
        &self,
        username: &crate::username::Username,
    ) -> Result<Option<crate::ports::UserRecord>, StoreError> {
        Ok(self
            .store
            .get_user(username)
            .await?
            .filter(|user| user.tenant == self.tenant))
    }

    /// Creates a user of this tenant.
    pub async fn add_user(
        &self,
        username: &str,
        roles: crate::role::Roles,
        password: &str,
        now: time::OffsetDateTime,
    ) -> Result<crate::username::Username, crate::admin::AccountError> {
        crate::admin::add_user(
            self.store,
            crate::admin::NewUser {
                username,
                tenant: self.tenant.as_str(),
                roles,
                password,
            },
            now,
        )
        .await
    }

    pub async fn delete_user(
        &self,
        username: &crate::username::Username,
    ) -> Result<bool, StoreError> {
        self.store.delete_user(&self.tenant, username).await
    }
}
