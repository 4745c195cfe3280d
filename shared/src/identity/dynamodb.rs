//! Tenants and users: on DynamoDB (one table keyed by `accountKey`: `tenant#id` or `user#name`,
//! with GSI `ByTenant` on `tenantId` / `accountKey` to list a tenant's users) and in memory for
//! unit tests.

use crate::common::cursor;
use crate::common::cursor::AfterId;
use crate::common::dynamodb::{
    backend, updated_unless_condition_failed, written_unless_condition_failed,
};
use crate::common::dynamodb::{s, Item};
use crate::common::store::{Page, PageRequest, StoreError};
use crate::common::tenant::TenantId;
use crate::identity::lockout::LockoutPolicy;
use crate::identity::ports::{AccountStore, TenantRecord, UserRecord};
use crate::identity::role::Roles;
use crate::identity::username::Username;
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;
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

fn text<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| StoreError::Corrupt(format!("account item without {name}")))
}

fn time_of(item: &Item, name: &str) -> Result<Option<OffsetDateTime>, StoreError> {
    match item.get(name).and_then(|v| v.as_s().ok()) {
        None => Ok(None),
        Some(t) => OffsetDateTime::parse(t, &Rfc3339)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("{name}: {e}"))),
    }
}

fn tenant_of(item: &Item) -> Result<TenantId, StoreError> {
    let raw = text(item, "tenantId")?;
    TenantId::parse(raw).ok_or_else(|| StoreError::Corrupt(format!("tenant id {raw:?}")))
}

fn user_from(item: &Item) -> Result<UserRecord, StoreError> {
    let raw = text(item, "username")?;
    let username =
        Username::parse(raw).ok_or_else(|| StoreError::Corrupt(format!("username {raw:?}")))?;
    let roles = item
        .get("roles")
        .and_then(|v| v.as_l().ok())
        .map(|names| {
            Roles::from_names(
                names
                    .iter()
                    .filter_map(|n| n.as_s().ok().map(String::as_str)),
            )
        })
        .unwrap_or_default();
    let failed_logins = item
        .get("failedLogins")
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Ok(UserRecord {
        username,
        tenant: tenant_of(item)?,
        roles,
        password_hash: text(item, "passwordHash")?.to_owned(),
        failed_logins,
        locked_until: time_of(item, "lockedUntil")?,
        created_at: time_of(item, "createdAt")?.unwrap_or(OffsetDateTime::UNIX_EPOCH),
    })
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
        self.put_new(HashMap::from([
            ("accountKey".to_owned(), s(tenant_key(&tenant.tenant))),
            ("tenantId".to_owned(), s(tenant.tenant.as_str())),
            ("name".to_owned(), s(&tenant.name)),
            ("createdAt".to_owned(), timestamp(tenant.created_at)),
        ]))
        .await
    }

    async fn get_tenant(&self, tenant: &TenantId) -> Result<Option<TenantRecord>, StoreError> {
        let Some(item) = self.get(tenant_key(tenant)).await? else {
            return Ok(None);
        };
        Ok(Some(TenantRecord {
            tenant: tenant_of(&item)?,
            name: text(&item, "name")?.to_owned(),
            created_at: time_of(&item, "createdAt")?.unwrap_or(OffsetDateTime::UNIX_EPOCH),
        }))
    }

    async fn create_user(&self, user: &UserRecord) -> Result<bool, StoreError> {
        let roles = user.roles.iter().map(|r| s(r.as_str())).collect();
        self.put_new(HashMap::from([
            ("accountKey".to_owned(), s(user_key(&user.username))),
            ("username".to_owned(), s(user.username.as_str())),
            ("tenantId".to_owned(), s(user.tenant.as_str())),
            ("roles".to_owned(), AttributeValue::L(roles)),
            ("passwordHash".to_owned(), s(&user.password_hash)),
            ("failedLogins".to_owned(), AttributeValue::N("0".to_owned())),
            ("createdAt".to_owned(), timestamp(user.created_at)),
        ]))
        .await
    }

    async fn get_user(&self, username: &Username) -> Result<Option<UserRecord>, StoreError> {
        self.get(user_key(username))
            .await?
            .map(|item| user_from(&item))
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
            .map(cursor::decode_after_username)
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
            .iter()
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
