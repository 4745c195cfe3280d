//! Service providers in DynamoDB: one item per provider, keyed by `tenant` and `id`, written
//! whole and conditional on its version.

use crate::provider::ServiceProvider;
use crate::provider_ports::ProviderStore;
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_dynamodb::Client;
use cellbridge_core::cursor::{self, AfterId};
use cellbridge_core::dynamodb::{backend, written_unless_condition_failed};
use cellbridge_core::store::{Page, PageRequest, StoreError};
use cellbridge_core::tenant::TenantId;
use std::collections::HashMap;

type Item = HashMap<String, AttributeValue>;

#[derive(Debug, Clone)]
pub struct DynamoProviders {
    client: Client,
    table: String,
}

impl DynamoProviders {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn item_of(provider: &ServiceProvider) -> Result<Item, StoreError> {
    serde_dynamo::to_item(provider).map_err(|e| StoreError::Rejected(e.to_string()))
}

fn provider_of(item: Item) -> Result<ServiceProvider, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[async_trait]
impl ProviderStore for DynamoProviders {
    async fn create_provider(&self, provider: &ServiceProvider) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item_of(provider)?))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await;
        written_unless_condition_failed(result, |e| {
            matches!(e, PutItemError::ConditionalCheckFailedException(_))
        })
    }

    async fn get_provider(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<ServiceProvider>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("tenant", s(tenant.as_str()))
            .key("id", s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend)?;
        out.item.map(provider_of).transpose()
    }

    async fn update_provider(&self, provider: &ServiceProvider) -> Result<bool, StoreError> {
        let previous = provider.version.saturating_sub(1);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item_of(provider)?))
            .condition_expression("version = :previous")
            .expression_attribute_values(":previous", AttributeValue::N(previous.to_string()))
            .send()
            .await;
        written_unless_condition_failed(result, |e| {
            matches!(e, PutItemError::ConditionalCheckFailedException(_))
        })
    }

    async fn delete_provider(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("tenant", s(tenant.as_str()))
            .key("id", s(id))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(backend)?;
        Ok(out.attributes.is_some_and(|old| !old.is_empty()))
    }

    async fn every_provider(&self) -> Result<Vec<(TenantId, String)>, StoreError> {
        let mut providers = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .projection_expression("tenant, id")
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(backend)?;
            for item in out.items.unwrap_or_default() {
                let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
                let (Some(tenant), Some(id)) = (text("tenant"), text("id")) else {
                    return Err(StoreError::Corrupt(
                        "a provider item without its keys".into(),
                    ));
                };
                let tenant = TenantId::parse(&tenant)
                    .ok_or_else(|| StoreError::Corrupt(format!("provider tenant {tenant}")))?;
                providers.push((tenant, id));
            }
            match out.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok(providers),
            }
        }
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
            .transpose()?;
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("tenant = :tenant")
            .expression_attribute_values(":tenant", s(tenant.as_str()))
            .consistent_read(true)
            .limit(i32::try_from(page.limit).unwrap_or(i32::MAX));
        if let Some(after) = after {
            query = query
                .exclusive_start_key("tenant", s(tenant.as_str()))
                .exclusive_start_key("id", s(after.after));
        }
        let out = query.send().await.map_err(backend)?;
        let items: Vec<ServiceProvider> = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(provider_of)
            .collect::<Result<_, _>>()?;
        let next_cursor = out.last_evaluated_key.and(items.last()).map(|last| {
            cursor::encode(&AfterId {
                after: last.id.clone(),
            })
        });
        Ok(Page { items, next_cursor })
    }
}
