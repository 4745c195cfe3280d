//! Creating tenants and users: the rules `cargo xtask admin` and the local stack's demo accounts
//! share.

use crate::password::{hash_password, PasswordError};
use crate::ports::{AccountStore, TenantRecord, UserRecord};
use crate::role::Roles;
use crate::username::Username;
use crate::username::USERNAME_RULE;
use cellbridge_core::store::StoreError;
use cellbridge_core::tenant::TenantId;
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("tenant id {0:?} is invalid: use 1 to 64 letters, digits, '-' or '_'")]
    InvalidTenant(String),
    #[error("username {0:?} is invalid: it {USERNAME_RULE}")]
    InvalidUsername(String),
    #[error("tenant {0} does not exist; create it first")]
    UnknownTenant(String),
    #[error("the username {0} is taken")]
    UserExists(String),
    #[error("a user needs at least one role: viewer, operator or admin")]
    NoRoles,
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates the tenant; false when it already existed (left unchanged).
pub async fn add_tenant(
    store: &dyn AccountStore,
    tenant: &str,
    name: &str,
    now: OffsetDateTime,
) -> Result<bool, AccountError> {
    let id =
        TenantId::parse(tenant).ok_or_else(|| AccountError::InvalidTenant(tenant.to_owned()))?;
    let name = if name.trim().is_empty() {
        tenant
    } else {
        name.trim()
    };
    Ok(store
        .create_tenant(&TenantRecord {
            tenant: id,
            name: name.to_owned(),
            created_at: now,
        })
        .await?)
}

pub struct NewUser<'a> {
    pub username: &'a str,
    pub tenant: &'a str,
    pub roles: Roles,
    pub password: &'a str,
}

/// Creates a user of an existing tenant, storing only the password's Argon2id hash.
pub async fn add_user(
    store: &dyn AccountStore,
    user: NewUser<'_>,
    now: OffsetDateTime,
) -> Result<Username, AccountError> {
    let username = Username::parse(user.username)
        .ok_or_else(|| AccountError::InvalidUsername(user.username.to_owned()))?;
    let tenant = TenantId::parse(user.tenant)
        .ok_or_else(|| AccountError::InvalidTenant(user.tenant.to_owned()))?;
    if user.roles.is_empty() {
        return Err(AccountError::NoRoles);
    }
    if store.get_tenant(&tenant).await?.is_none() {
        return Err(AccountError::UnknownTenant(tenant.to_string()));
    }
    let record = UserRecord {
        username: username.clone(),
        tenant,
        roles: user.roles,
        password_hash: hash_password(user.password)?.into(),
        failed_logins: 0,
        locked_until: None,
        created_at: now,
    };
    if !store.create_user(&record).await? {
        return Err(AccountError::UserExists(username.to_string()));
    }
    Ok(username)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryAccounts;
    use crate::password::verify_password;
    use crate::role::Role;
    use secrecy::ExposeSecret;

    #[tokio::test]
    async fn users_need_an_existing_tenant_a_role_and_a_good_password() {
        let store = MemoryAccounts::default();
        let now = OffsetDateTime::now_utc();
        let user = |username, tenant, roles: &[Role], password| NewUser {
            username,
            tenant,
            roles: Roles::new(roles.iter().copied()),
            password,
        };
        let err = add_user(
            &store,
            user("a@b.c", "acme", &[Role::Viewer], "long enough password"),
            now,
        )
        .await;
        assert!(matches!(err, Err(AccountError::UnknownTenant(_))));
        assert!(add_tenant(&store, "acme", "Acme", now)
            .await
            .expect("created"));
        assert!(!add_tenant(&store, "acme", "Acme again", now)
            .await
            .expect("kept"));
        assert!(matches!(
            add_tenant(&store, "a b", "", now).await,
            Err(AccountError::InvalidTenant(_))
        ));
        assert!(matches!(
            add_user(
                &store,
                user("a@b.c", "acme", &[], "long enough password"),
                now
            )
            .await,
            Err(AccountError::NoRoles)
        ));
        assert!(matches!(
            add_user(&store, user("a@b.c", "acme", &[Role::Viewer], "short"), now).await,
            Err(AccountError::Password(PasswordError::Length))
        ));
        let name = add_user(
            &store,
            user("A@b.c", "acme", &[Role::Viewer], "long enough password"),
            now,
        )
        .await
        .expect("created");
        assert_eq!(name.as_str(), "a@b.c");
        let stored = store.get_user(&name).await.expect("store").expect("user");
        assert!(verify_password(
            "long enough password",
            stored.password_hash.expose_secret()
        ));
        assert!(!stored
            .password_hash
            .expose_secret()
            .contains("long enough password"));
        assert!(!format!("{stored:?}").contains("argon2"), "{stored:?}");
        assert!(matches!(
            add_user(
                &store,
                user("a@B.c", "acme", &[Role::Admin], "long enough password"),
                now
            )
            .await,
            Err(AccountError::UserExists(_))
        ));
    }
}
