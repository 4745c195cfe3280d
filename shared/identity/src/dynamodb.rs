//! Tenants and users: on DynamoDB (one table keyed by `accountKey`: `tenant#id` or `user#name`,
//! with GSI `ByTenant` on `tenantId` / `accountKey` to list a tenant's users) and in memory for
//! unit tests.

use crate::lockout::LockoutPolicy;
use crate::ports::{AccountStore, TenantRecord, UserRecord};
use crate::role::Roles;
use crate::username::Username;
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_dynamodb::Client;
use cellbridge_core::cursor;
use cellbridge_core::cursor::AfterId;
use cellbridge_core::dynamodb::{
    backend, updated_unless_condition_failed, written_unless_condition_failed,
};
use cellbridge_core::dynamodb::{from_item_named, s, to_item, Item};
use cellbridge_core::store::{Page, PageRequest, StoreError};
use cellbridge_core::tenant::TenantId;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub const ACCOUNTS_TABLE_ENV: &str = "ACCOUNTS_TABLE";
const TENANT_INDEX: &str = "ByTenant";

fn tenant_key(tenant: &TenantId) -> String {
    format!("tenant#{tenant}")
}

fn user_key(username: &Username) -> String {
    format!("user#{username}")
}

fn timestamp(at: OffsetDateTime) -> AttributeValue {
    s(at.format(&Rfc3339).unwrap_or_default())
}

/// What a missing `createdAt` reads as: the rest of the item is still good.
fn epoch() -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH
}

const ACCOUNT_ITEM: &str = "account item";

fn corrupt(what: String) -> StoreError {
    StoreError::Corrupt(format!("{ACCOUNT_ITEM}: {what}"))
}

fn tenant_id(raw: &str) -> Result<TenantId, StoreError> {
    TenantId::parse(raw).ok_or_else(|| corrupt(format!("tenant id {raw:?}")))
}

/// A tenant as the accounts table holds it.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TenantItem {
    /// The table key (`tenant#id`): written, not needed to read the record back.
    #[serde(skip_deserializing)]
    account_key: String,
    tenant_id: String,
    name: String,
    #[serde(default = "epoch", with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

impl TenantItem {
    fn new(tenant: &TenantRecord) -> Self {
        Self {
            account_key: tenant_key(&tenant.tenant),
            tenant_id: tenant.tenant.to_string(),
            name: tenant.name.clone(),
            created_at: tenant.created_at,
        }
    }

    fn record(self) -> Result<TenantRecord, StoreError> {
        Ok(TenantRecord {
            tenant: tenant_id(&self.tenant_id)?,
            name: self.name,
            created_at: self.created_at,
        })
    }
}

/// A user as the accounts table holds it. `record_failed_login` and `clear_failed_logins`
/// change `failedLogins` and `lockedUntil` in place, by those names.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserItem {
    /// The table key (`user#name`): written, not needed to read the record back.
    #[serde(skip_deserializing)]
    account_key: String,
    username: String,
    tenant_id: String,
    /// Role names; names that are not roles are ignored on reading.
    #[serde(default)]
    roles: Vec<String>,
    password_hash: String,
    #[serde(default)]
    failed_logins: u32,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    locked_until: Option<OffsetDateTime>,
    #[serde(default = "epoch", with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

impl UserItem {
    /// A new user: no wrong passwords counted and no lock, whatever `user` says, since only
    /// the login updates set those.
    fn new_user(user: &UserRecord) -> Self {
        Self {
            account_key: user_key(&user.username),
            username: user.username.to_string(),
            tenant_id: user.tenant.to_string(),
            roles: user.roles.iter().map(|r| r.as_str().to_owned()).collect(),
            password_hash: user.password_hash.expose_secret().to_owned(),
            failed_logins: 0,
            locked_until: None,
            created_at: user.created_at,
        }
    }

    fn record(self) -> Result<UserRecord, StoreError> {
        let username = Username::parse(&self.username)
            .ok_or_else(|| corrupt(format!("username {:?}", self.username)))?;
        Ok(UserRecord {
            username,
            tenant: tenant_id(&self.tenant_id)?,
            roles: Roles::from_names(self.roles.iter().map(String::as_str)),
            password_hash: self.password_hash.into(),
            failed_logins: self.failed_logins,
            locked_until: self.locked_until,
            created_at: self.created_at,
        })
    }
}

fn tenant_item(tenant: &TenantRecord) -> Result<Item, StoreError> {
    to_item(&TenantItem::new(tenant))
}

fn tenant_from(item: Item) -> Result<TenantRecord, StoreError> {
    from_item_named::<TenantItem>(ACCOUNT_ITEM, item)?.record()
}

fn user_item(user: &UserRecord) -> Result<Item, StoreError> {
    to_item(&UserItem::new_user(user))
}

fn user_from(item: Item) -> Result<UserRecord, StoreError> {
    from_item_named::<UserItem>(ACCOUNT_ITEM, item)?.record()
}

#[derive(Debug, Clone)]
pub struct DynamoAccounts {
    client: Client,
    table: String,
}

impl DynamoAccounts {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    async fn put_new(&self, item: Item) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(accountKey)")
            .send()
            .await;
        written_unless_condition_failed(result, |e| {
            matches!(e, PutItemError::ConditionalCheckFailedException(_))
        })
    }

    async fn get(&self, key: String) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("accountKey", s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend)?;
        Ok(out.item)
    }
}

#[async_trait]
impl AccountStore for DynamoAccounts {
    async fn create_tenant(&self, tenant: &TenantRecord) -> Result<bool, StoreError> {
        self.put_new(tenant_item(tenant)?).await
    }

    async fn get_tenant(&self, tenant: &TenantId) -> Result<Option<TenantRecord>, StoreError> {
        let Some(item) = self.get(tenant_key(tenant)).await? else {
            return Ok(None);
        };
        tenant_from(item).map(Some)
    }

    async fn create_user(&self, user: &UserRecord) -> Result<bool, StoreError> {
        self.put_new(user_item(user)?).await
    }

    async fn get_user(&self, username: &Username) -> Result<Option<UserRecord>, StoreError> {
        self.get(user_key(username))
            .await?
            .map(user_from)
            .transpose()
    }

    async fn record_failed_login(
        &self,
        username: &Username,
        policy: &LockoutPolicy,
        now: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        let counted = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("accountKey", s(user_key(username)))
            .update_expression("ADD failedLogins :one")
            .condition_expression("attribute_exists(accountKey)")
            .expression_attribute_values(":one", AttributeValue::N("1".to_owned()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let failures = match counted {
            Ok(out) => out
                .attributes
                .as_ref()
                .and_then(|a| a.get("failedLogins"))
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(0),
            Err(error) => {
                // The user was deleted meanwhile: nothing to count.
                return updated_unless_condition_failed(Err::<(), _>(error)).map(|_| None);
            }
        };
        let Some(until) = policy.lock_after(failures, now) else {
            return Ok(None);
        };
        // Only the failure that reached the limit locks: concurrent ones see a reset count.
        let locked = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("accountKey", s(user_key(username)))
            .update_expression("SET lockedUntil = :until, failedLogins = :zero")
            .condition_expression("failedLogins >= :limit")
            .expression_attribute_values(":until", timestamp(until))
            .expression_attribute_values(":zero", AttributeValue::N("0".to_owned()))
            .expression_attribute_values(
                ":limit",
                AttributeValue::N(policy.max_failures.to_string()),
            )
            .send()
            .await;
        Ok(updated_unless_condition_failed(locked)?.then_some(until))
    }

    async fn clear_failed_logins(&self, username: &Username) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("accountKey", s(user_key(username)))
            .update_expression("SET failedLogins = :zero REMOVE lockedUntil")
            .condition_expression("attribute_exists(accountKey)")
            .expression_attribute_values(":zero", AttributeValue::N("0".to_owned()))
            .send()
            .await;
        updated_unless_condition_failed(result).map(|_| ())
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
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(TENANT_INDEX)
            .key_condition_expression("tenantId = :tenant AND begins_with(accountKey, :users)")
            .expression_attribute_values(":tenant", s(tenant.as_str()))
            .expression_attribute_values(":users", s("user#"))
            .limit(i32::try_from(page.limit).unwrap_or(i32::MAX));
        if let Some(after) = after {
            query = query
                .exclusive_start_key("tenantId", s(tenant.as_str()))
                .exclusive_start_key("accountKey", s(user_key(&after)));
        }
        let out = query.send().await.map_err(backend)?;
        let items: Vec<UserRecord> = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(user_from)
            .collect::<Result<_, _>>()?;
        let next_cursor = out.last_evaluated_key.and(items.last()).map(|last| {
            cursor::encode(&AfterId {
                after: last.username.to_string(),
            })
        });
        Ok(Page { items, next_cursor })
    }

    async fn delete_user(
        &self,
        tenant: &TenantId,
        username: &Username,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("accountKey", s(user_key(username)))
            .condition_expression("tenantId = :tenant")
            .expression_attribute_values(":tenant", s(tenant.as_str()))
            .send()
            .await;
        written_unless_condition_failed(result, |e| {
            matches!(
                e,
                aws_sdk_dynamodb::operation::delete_item::DeleteItemError::ConditionalCheckFailedException(_)
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::role::Role;
    use cellbridge_core::dynamodb::n;
    use std::collections::HashMap;
    use time::macros::datetime;

    fn user() -> UserRecord {
        UserRecord {
            username: Username::parse("ops@acme.example").expect("username"),
            tenant: TenantId::parse("acme").expect("tenant"),
            roles: Roles::new([Role::Viewer, Role::Operator]),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            failed_logins: 0,
            locked_until: None,
            created_at: datetime!(2026-11-22 09:00:00.123 UTC),
        }
    }

    /// The item as deployed tables hold it: `record_failed_login` and `clear_failed_logins`
    /// update `failedLogins` and `lockedUntil` by name.
    fn stored_user() -> Item {
        HashMap::from([
            ("accountKey".to_owned(), s("user#ops@acme.example")),
            ("username".to_owned(), s("ops@acme.example")),
            ("tenantId".to_owned(), s("acme")),
            (
                "roles".to_owned(),
                AttributeValue::L(vec![s("viewer"), s("operator")]),
            ),
            (
                "passwordHash".to_owned(),
                s("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"),
            ),
            ("failedLogins".to_owned(), n(0)),
            ("createdAt".to_owned(), s("2026-11-22T09:00:00.123Z")),
        ])
    }

    #[test]
    fn user_items_keep_their_stored_attributes_and_read_back() {
        assert_eq!(user_item(&user()).expect("item"), stored_user());
        assert_eq!(user_from(stored_user()).expect("read"), user());

        let mut locked = stored_user();
        locked.insert("failedLogins".to_owned(), n(3));
        locked.insert("lockedUntil".to_owned(), s("2026-11-22T09:15:00Z"));
        let read = user_from(locked).expect("read");
        assert_eq!(read.failed_logins, 3);
        assert_eq!(read.locked_until, Some(datetime!(2026-11-22 09:15 UTC)));

        // A new user starts with no failures and no lock, whatever the record says.
        let mut counted = user();
        counted.failed_logins = 4;
        counted.locked_until = Some(datetime!(2026-11-22 09:15 UTC));
        assert_eq!(user_item(&counted).expect("item"), stored_user());
    }

    #[test]
    fn tenant_items_keep_their_stored_attributes_and_read_back() {
        let tenant = TenantRecord {
            tenant: TenantId::parse("acme").expect("tenant"),
            name: "Acme Corp".to_owned(),
            created_at: datetime!(2026-11-22 09:00 UTC),
        };
        let stored = HashMap::from([
            ("accountKey".to_owned(), s("tenant#acme")),
            ("tenantId".to_owned(), s("acme")),
            ("name".to_owned(), s("Acme Corp")),
            ("createdAt".to_owned(), s("2026-11-22T09:00:00Z")),
        ]);
        assert_eq!(tenant_item(&tenant).expect("item"), stored);
        assert_eq!(tenant_from(stored).expect("read"), tenant);
    }

    #[test]
    fn corrupt_account_items_are_errors_that_name_the_fault() {
        let corrupt = |change: &dyn Fn(&mut Item)| {
            let mut item = stored_user();
            change(&mut item);
            match user_from(item) {
                Err(StoreError::Corrupt(why)) => why,
                other => panic!("expected a corrupt item, got {other:?}"),
            }
        };
        let why = corrupt(&|i| {
            i.remove("passwordHash");
        });
        assert!(why.contains("passwordHash"), "{why}");
        let why = corrupt(&|i| {
            i.insert("username".to_owned(), s("no spaces allowed"));
        });
        assert!(why.contains("no spaces allowed"), "{why}");
        let why = corrupt(&|i| {
            i.insert("tenantId".to_owned(), s("acme#1"));
        });
        assert!(why.contains("acme#1"), "{why}");
        let why = corrupt(&|i| {
            i.insert("lockedUntil".to_owned(), s("soon"));
        });
        assert!(why.contains("lockedUntil"), "{why}");
    }
}
