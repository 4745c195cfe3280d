//! Accounts in memory, for unit tests.

use crate::lockout::LockoutPolicy;
use crate::ports::{AccountStore, TenantRecord, UserRecord};
use crate::username::Username;
use async_trait::async_trait;
use cellbridge_core::cursor;
use cellbridge_core::cursor::AfterId;
use cellbridge_core::memory::{locked, page_of};
use cellbridge_core::store::{Page, PageRequest, StoreError};
use cellbridge_core::tenant::TenantId;
use std::collections::HashMap;
use std::sync::Mutex;
use time::OffsetDateTime;

/// Accounts in memory, with the same rules as the DynamoDB store.
#[derive(Debug, Default)]
pub struct MemoryAccounts {
    tenants: Mutex<HashMap<TenantId, TenantRecord>>,
    users: Mutex<HashMap<Username, UserRecord>>,
}

#[async_trait]
impl AccountStore for MemoryAccounts {
    async fn create_tenant(&self, tenant: &TenantRecord) -> Result<bool, StoreError> {
        let mut tenants = locked(&self.tenants);
        if tenants.contains_key(&tenant.tenant) {
            return Ok(false);
        }
        tenants.insert(tenant.tenant.clone(), tenant.clone());
        Ok(true)
    }

    async fn get_tenant(&self, tenant: &TenantId) -> Result<Option<TenantRecord>, StoreError> {
        Ok(locked(&self.tenants).get(tenant).cloned())
    }

    async fn create_user(&self, user: &UserRecord) -> Result<bool, StoreError> {
        let mut users = locked(&self.users);
        if users.contains_key(&user.username) {
            return Ok(false);
        }
        users.insert(
            user.username.clone(),
            UserRecord {
                failed_logins: 0,
                locked_until: None,
                ..user.clone()
            },
        );
        Ok(true)
    }

    async fn get_user(&self, username: &Username) -> Result<Option<UserRecord>, StoreError> {
        Ok(locked(&self.users).get(username).cloned())
    }

    async fn record_failed_login(
        &self,
        username: &Username,
        policy: &LockoutPolicy,
        now: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        let mut users = locked(&self.users);
        let Some(user) = users.get_mut(username) else {
            return Ok(None);
        };
        user.failed_logins += 1;
        let until = policy.lock_after(user.failed_logins, now);
        if let Some(until) = until {
            user.locked_until = Some(until);
            user.failed_logins = 0;
        }
        Ok(until)
    }

    async fn clear_failed_logins(&self, username: &Username) -> Result<(), StoreError> {
        if let Some(user) = locked(&self.users).get_mut(username) {
            user.failed_logins = 0;
            user.locked_until = None;
        }
        Ok(())
    }

    async fn list_users(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Page<UserRecord>, StoreError> {
        let after = page
            .cursor
            .as_deref()
            .map(|c| cursor::decode_after_parsed(c, crate::username::Username::parse))
            .transpose()?;
        let mut users: Vec<UserRecord> = locked(&self.users)
            .values()
            .filter(|u| &u.tenant == tenant && after.as_ref().is_none_or(|a| &u.username > a))
            .cloned()
            .collect();
        users.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(page_of(users, page.limit, |last| {
            cursor::encode(&AfterId {
                after: last.username.to_string(),
            })
        }))
    }

    async fn delete_user(
        &self,
        tenant: &TenantId,
        username: &Username,
    ) -> Result<bool, StoreError> {
        let mut users = locked(&self.users);
        if users.get(username).is_some_and(|u| &u.tenant == tenant) {
            users.remove(username);
            return Ok(true);
        }
        Ok(false)
    }
}
