//! The SIM inventory in DynamoDB. `SimsTable` holds one item per SIM, keyed by `tenantId` and
//! `iccid`, with three indexes: `ByStatus` (`statusKey` = tenant#status, then ICCID) and
//! `ByMsisdn`/`ByImei` (tenant, then `msisdnOrder`/`imeiOrder` = value#ICCID, `~` for none), so
//! a status filter, a prefix search and every order are key conditions, not scans.
//! `SimHistoryTable` keeps each SIM's events under `simKey` = tenant#ICCID, by a time-ordered id.

use crate::ports::{SimStore, SyncStateStore, UsageStore, Written, READ_BUDGET};
use crate::query::{SimKey, SimPosition, SimQuery, NONE};
use crate::sim::{Sim, SimChange, SimEvent, SimField, SimStatus};
use crate::sync::{DetailsState, SyncState, UsageState};
use crate::usage::{DailyUsage, UsageRecord, UsageRequest};
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::KeysAndAttributes;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use cellbridge_core::cursor::{self, AfterId};
use cellbridge_core::dynamodb::{
    backend, from_item_named, n, s, to_item, transaction_cancelled_on_condition, unbuildable, Item,
};
use cellbridge_core::store::{Page, PageRequest, StoreError};
use cellbridge_core::tenant::TenantId;
use std::collections::HashMap;
use time::OffsetDateTime;

#[derive(Debug, Clone)]
pub struct DynamoSims {
    client: Client,
    sims: String,
    history: String,
    /// Where each service provider's carrier sync stands (`tenantId`, `serviceProviderId`).
    sync: Option<String>,
    /// Each SIM's daily usage (`simKey` = tenant#ICCID, `day`), with a TTL.
    usage: Option<String>,
    read_budget: usize,
}

/// The index a listing reads and how its positions are keyed.
struct Plan {
    index: Option<&'static str>,
    /// The attribute the index orders by, when it is not the ICCID.
    order_attribute: Option<&'static str>,
    key_condition: String,
    values: HashMap<String, AttributeValue>,
    /// The status condition, when the index does not answer it.
    status_in_filter: bool,
    /// `statusKey` of the `ByStatus` index.
    status_key: Option<String>,
}

fn status_key(tenant: &TenantId, status: SimStatus) -> String {
    format!("{}#{}", tenant.as_str(), status.as_str())
}

fn order_value(value: Option<&str>, iccid: &str) -> String {
    format!("{}#{iccid}", value.unwrap_or(NONE))
}

fn order_attribute(key: SimKey) -> Option<&'static str> {
    match key {
        SimKey::Iccid => None,
        SimKey::Msisdn => Some("msisdnOrder"),
        SimKey::Imei => Some("imeiOrder"),
    }
}

/// The `ByDetailsDue` index's partition: a provider's SIMs whose details are due.
fn details_due_key(tenant: &TenantId, service_provider_id: &str) -> String {
    format!("{}#{service_provider_id}", tenant.as_str())
}

fn sim_key(tenant: &TenantId, iccid: &str) -> String {
    format!("{}#{iccid}", tenant.as_str())
}

impl DynamoSims {
    pub fn new(client: Client, sims: impl Into<String>, history: impl Into<String>) -> Self {
        Self {
            client,
            sims: sims.into(),
            history: history.into(),
            sync: None,
            usage: None,
            read_budget: READ_BUDGET,
        }
    }

    /// The same store, keeping sync states in `table` too.
    pub fn with_sync_table(self, table: impl Into<String>) -> Self {
        Self {
            sync: Some(table.into()),
            ..self
        }
    }

    /// The same store, keeping daily usage in `table` too.
    pub fn with_usage_table(self, table: impl Into<String>) -> Self {
        Self {
            usage: Some(table.into()),
            ..self
        }
    }

    fn usage_table(&self) -> Result<&str, StoreError> {
        self.usage
            .as_deref()
            .ok_or_else(|| StoreError::Rejected("no usage table configured".into()))
    }

    fn sync_table(&self) -> Result<&str, StoreError> {
        self.sync
            .as_deref()
            .ok_or_else(|| StoreError::Rejected("no sync state table configured".into()))
    }

    /// The same store reading at most `items` stored SIMs for one page (a test shows a short page
    /// without writing thousands of SIMs).
    pub fn with_read_budget(self, items: usize) -> Self {
        Self {
            read_budget: items.max(1),
            ..self
        }
    }

    /// The item that stores `sim` in `SimsTable`, with the keys of its indexes (also for bulk
    /// loads, which write items without the history a `put_sim` records).
    pub fn item_of(tenant: &TenantId, sim: &Sim) -> Result<Item, StoreError> {
        let mut item = to_item(sim)?;
        item.insert("tenantId".into(), s(tenant.as_str()));
        item.insert("statusKey".into(), s(status_key(tenant, sim.status)));
        item.insert(
            "msisdnOrder".into(),
            s(order_value(
                sim.msisdn.as_deref().map(|m| m.trim_start_matches('+')),
                &sim.iccid,
            )),
        );
        item.insert(
            "imeiOrder".into(),
            s(order_value(sim.imei.as_deref(), &sim.iccid)),
        );
        // Only SIMs whose details are due carry the key of the sparse index that finds them.
        if sim.details_due {
            if let Some(provider) = &sim.service_provider_id {
                item.insert("detailsDue".into(), s(details_due_key(tenant, provider)));
            }
        }
        Ok(item)
    }

    /// A SIM and its tenant as an item of the SIMs table (a stream record's image) holds them.
    pub fn sim_from_image(item: Item) -> Result<(TenantId, Sim), StoreError> {
        let tenant = match item.get("tenantId") {
            Some(AttributeValue::S(text)) => TenantId::parse(text),
            _ => None,
        }
        .ok_or_else(|| StoreError::Corrupt("SIM item: tenantId".into()))?;
        Ok((tenant, Self::sim_of(item)?))
    }

    fn sim_of(mut item: Item) -> Result<Sim, StoreError> {
        for bookkeeping in ["tenantId", "statusKey", "msisdnOrder", "imeiOrder"] {
            item.remove(bookkeeping);
        }
        let details_due = item.remove("detailsDue").is_some();
        let sim: Sim = from_item_named("SIM item", item)?;
        Ok(Sim { details_due, ..sim })
    }

    fn event_put(
        &self,
        tenant: &TenantId,
        iccid: &str,
        event: &SimEvent,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut item = to_item(event)?;
        item.insert("simKey".into(), s(sim_key(tenant, iccid)));
        item.insert(
            "eventId".into(),
            s(uuid::Uuid::now_v7().as_hyphenated().to_string()),
        );
        Ok(TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&self.history)
                    .set_item(Some(item))
                    .build()
                    .map_err(unbuildable)?,
            )
            .build())
    }

    /// The writes of a change made through cellbridge (the SIM's update and its history entry),
    /// for a transaction that records something else with them (a device change's outcome).
    pub fn change_writes(
        &self,
        tenant: &TenantId,
        change: &SimChange,
        at: OffsetDateTime,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let mut sets = vec![
            "lastChange = :lastChange".to_owned(),
            "version = if_not_exists(version, :zero) + :one".to_owned(),
            "carrier = if_not_exists(carrier, :carrier)".to_owned(),
            "#usage = if_not_exists(#usage, :usage)".to_owned(),
        ];
        let mut removes = Vec::new();
        let mut names: HashMap<String, String> = HashMap::from([("#usage".into(), "usage".into())]);
        let last_change = to_item(&crate::sim::LastChange {
            source: change.source.clone(),
            at,
        })?;
        let mut values: HashMap<String, AttributeValue> = HashMap::from([
            (":lastChange".into(), AttributeValue::M(last_change)),
            (":zero".into(), n(0)),
            (":one".into(), n(1)),
            (":carrier".into(), s(change.carrier.as_str())),
            (
                ":usage".into(),
                AttributeValue::M(to_item(&crate::sim::CycleUsage::default())?),
            ),
        ]);
        if let Some(provider) = &change.service_provider_id {
            sets.push("serviceProviderId = if_not_exists(serviceProviderId, :provider)".into());
            values.insert(":provider".into(), s(provider));
        }
        let set_of = |field: SimField| {
            change
                .set
                .iter()
                .find(|(f, _)| *f == field)
                .map(|(_, value)| value.as_deref())
        };
        for (index, (field, value)) in change.set.iter().enumerate() {
            let name = format!("#f{index}");
            names.insert(name.clone(), field.as_str().to_owned());
            match value {
                Some(value) => {
                    let placeholder = format!(":f{index}");
                    sets.push(format!("{name} = {placeholder}"));
                    values.insert(placeholder, s(value));
                }
                None => removes.push(name),
            }
        }
        if set_of(SimField::Status).is_none() {
            names.insert("#status".into(), "status".into());
            sets.push("#status = if_not_exists(#status, :unknown)".into());
            values.insert(":unknown".into(), s(SimStatus::Unknown.as_str()));
        }
        let status = set_of(SimField::Status).map(|value| {
            value
                .and_then(SimStatus::parse)
                .unwrap_or(SimStatus::Unknown)
        });
        match status {
            Some(status) => {
                sets.push("statusKey = :statusKey".into());
                values.insert(":statusKey".into(), s(status_key(tenant, status)));
            }
            None => {
                sets.push("statusKey = if_not_exists(statusKey, :statusKey)".into());
                values.insert(
                    ":statusKey".into(),
                    s(status_key(tenant, SimStatus::Unknown)),
                );
            }
        }
        for (field, attribute) in [
            (SimField::Msisdn, "msisdnOrder"),
            (SimField::Imei, "imeiOrder"),
        ] {
            let placeholder = format!(":{attribute}");
            match set_of(field) {
                Some(_) => sets.push(format!("{attribute} = {placeholder}")),
                None => sets.push(format!(
                    "{attribute} = if_not_exists({attribute}, {placeholder})"
                )),
            }
            values.insert(
                placeholder,
                s(order_value(
                    set_of(field).flatten().map(|v| v.trim_start_matches('+')),
                    &change.iccid,
                )),
            );
        }
        let mut expression = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        let update = Update::builder()
            .table_name(&self.sims)
            .key("tenantId", s(tenant.as_str()))
            .key("iccid", s(&change.iccid))
            .update_expression(expression)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(unbuildable)?;
        Ok(vec![
            TransactWriteItem::builder().update(update).build(),
            self.event_put(tenant, &change.iccid, &change.event(at))?,
        ])
    }

    fn plan(&self, tenant: &TenantId, query: &SimQuery) -> Plan {
        let tenant_value = || HashMap::from([(":tenant".to_owned(), s(tenant.as_str()))]);
        let order = query.order;
        if let Some((key, digits)) = &query.filter.prefix {
            let attribute = order_attribute(*key).unwrap_or("iccid");
            let mut values = tenant_value();
            values.insert(":prefix".into(), s(digits));
            return Plan {
                index: index_of(*key),
                order_attribute: order_attribute(*key),
                key_condition: format!("tenantId = :tenant AND begins_with({attribute}, :prefix)"),
                values,
                status_in_filter: query.filter.status.is_some(),
                status_key: None,
            };
        }
        if let (SimKey::Iccid, Some(status)) = (order.key, query.filter.status) {
            return Plan {
                index: Some("ByStatus"),
                order_attribute: None,
                key_condition: "statusKey = :statusKey".into(),
                values: HashMap::from([(":statusKey".to_owned(), s(status_key(tenant, status)))]),
                status_in_filter: false,
                status_key: Some(status_key(tenant, status)),
            };
        }
        Plan {
            index: index_of(order.key),
            order_attribute: order_attribute(order.key),
            key_condition: "tenantId = :tenant".into(),
            values: tenant_value(),
            status_in_filter: query.filter.status.is_some(),
            status_key: None,
        }
    }

    fn start_key(&self, tenant: &TenantId, plan: &Plan, position: &SimPosition) -> Item {
        let mut key: Item = HashMap::from([
            ("tenantId".to_owned(), s(tenant.as_str())),
            ("iccid".to_owned(), s(&position.iccid)),
        ]);
        if let Some(attribute) = plan.order_attribute {
            let value = (position.value != NONE).then_some(position.value.as_str());
            key.insert(attribute.into(), s(order_value(value, &position.iccid)));
        }
        if let Some(status_key) = &plan.status_key {
            key.insert("statusKey".into(), s(status_key));
        }
        key
    }
}

fn index_of(key: SimKey) -> Option<&'static str> {
    match key {
        SimKey::Iccid => None,
        SimKey::Msisdn => Some("ByMsisdn"),
        SimKey::Imei => Some("ByImei"),
    }
}

/// The filter expression for what the index does not answer.
fn filter_expression(
    query: &SimQuery,
    plan: &Plan,
    names: &mut HashMap<String, String>,
    values: &mut HashMap<String, AttributeValue>,
) -> Option<String> {
    let filter = &query.filter;
    let mut conditions = Vec::new();
    let mut equal = |attribute: &str, value: Option<String>| {
        if let Some(value) = value {
            let name = format!("#{attribute}");
            let placeholder = format!(":{attribute}");
            conditions.push(format!("{name} = {placeholder}"));
            names.insert(name, attribute.to_owned());
            values.insert(placeholder, s(value));
        }
    };
    if plan.status_in_filter {
        equal("status", filter.status.map(|s| s.as_str().to_owned()));
    }
    equal("serviceProviderId", filter.service_provider_id.clone());
    equal("carrier", filter.carrier.map(|c| c.as_str().to_owned()));
    equal("ratePlan", filter.rate_plan.clone());
    equal("customer", filter.customer.clone());
    equal("costCenter", filter.cost_center.clone());
    match filter.linked {
        Some(true) => conditions.push("attribute_exists(deviceId)".into()),
        Some(false) => conditions.push("attribute_not_exists(deviceId)".into()),
        None => {}
    }
    (!conditions.is_empty()).then(|| conditions.join(" AND "))
}

#[async_trait]
impl SimStore for DynamoSims {
    async fn get_sim(&self, tenant: &TenantId, iccid: &str) -> Result<Option<Sim>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.sims)
            .key("tenantId", s(tenant.as_str()))
            .key("iccid", s(iccid))
            .send()
            .await
            .map_err(backend)?;
        out.item.map(Self::sim_of).transpose()
    }

    async fn get_sims(&self, tenant: &TenantId, iccids: &[String]) -> Result<Vec<Sim>, StoreError> {
        let mut sims = Vec::with_capacity(iccids.len());
        // BatchGetItem takes 100 keys; what it leaves unprocessed (throttling) is asked again.
        for chunk in iccids.chunks(100) {
            let mut keys: Vec<Item> = chunk
                .iter()
                .map(|iccid| {
                    HashMap::from([
                        ("tenantId".to_owned(), s(tenant.as_str())),
                        ("iccid".to_owned(), s(iccid)),
                    ])
                })
                .collect();
            let mut attempts = 0;
            while !keys.is_empty() {
                attempts += 1;
                if attempts > 5 {
                    return Err(StoreError::Unavailable(format!(
                        "{} SIMs left unread after 5 batch reads",
                        keys.len()
                    )));
                }
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut keys)))
                    .build()
                    .map_err(unbuildable)?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.sims, request)
                    .send()
                    .await
                    .map_err(backend)?;
                for item in out
                    .responses
                    .and_then(|mut tables| tables.remove(&self.sims))
                    .unwrap_or_default()
                {
                    sims.push(Self::sim_of(item)?);
                }
                if let Some(left) = out
                    .unprocessed_keys
                    .and_then(|mut tables| tables.remove(&self.sims))
                {
                    keys = left.keys;
                    if !keys.is_empty() {
                        tokio::time::sleep(std::time::Duration::from_millis(50 << attempts)).await;
                    }
                }
            }
        }
        Ok(sims)
    }

    async fn list_sims(
        &self,
        tenant: &TenantId,
        query: &SimQuery,
        page: &PageRequest,
    ) -> Result<Page<Sim>, StoreError> {
        let position = page
            .cursor
            .as_deref()
            .map(|cursor| query.order.decode_cursor(cursor))
            .transpose()?;
        let plan = self.plan(tenant, query);
        let mut names = HashMap::new();
        let mut values = plan.values.clone();
        let filter = filter_expression(query, &plan, &mut names, &mut values);
        let limit = page.limit as usize;
        let mut start = position.map(|p| self.start_key(tenant, &plan, &p));
        let mut sims: Vec<Sim> = Vec::new();
        let mut read = 0usize;
        loop {
            let wanted = limit - sims.len();
            // A filter drops some of what is read: read more than is missing, within the budget.
            let call_limit = if filter.is_some() {
                wanted
                    .max(250)
                    .min(self.read_budget.saturating_sub(read))
                    .max(1)
            } else {
                wanted
            };
            let out = self
                .client
                .query()
                .table_name(&self.sims)
                .set_index_name(plan.index.map(str::to_owned))
                .key_condition_expression(&plan.key_condition)
                .set_filter_expression(filter.clone())
                .set_expression_attribute_names((!names.is_empty()).then(|| names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .scan_index_forward(!query.order.descending)
                .limit(i32::try_from(call_limit).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(backend)?;
            read += usize::try_from(out.scanned_count).unwrap_or(0);
            for item in out.items.unwrap_or_default() {
                sims.push(Self::sim_of(item)?);
            }
            let more = out.last_evaluated_key.is_some();
            if sims.len() >= limit {
                let truncated = sims.len() > limit;
                sims.truncate(limit);
                let next_cursor = (truncated || more)
                    .then(|| sims.last().map(|sim| query.order.cursor_after(sim)))
                    .flatten();
                return Ok(Page {
                    items: sims,
                    next_cursor,
                });
            }
            let Some(last_key) = out.last_evaluated_key else {
                return Ok(Page {
                    items: sims,
                    next_cursor: None,
                });
            };
            if read >= self.read_budget {
                let next_cursor = position_of_key(query.order.key, &plan, &last_key).map(|p| {
                    cursor::encode(&SimPosition {
                        order: query.order.as_sort(),
                        ..p
                    })
                });
                return Ok(Page {
                    items: sims,
                    next_cursor,
                });
            }
            start = Some(last_key);
        }
    }

    async fn sim_history(
        &self,
        tenant: &TenantId,
        iccid: &str,
        page: &PageRequest,
    ) -> Result<Page<SimEvent>, StoreError> {
        let after = page
            .cursor
            .as_deref()
            .map(cursor::decode_after_id)
            .transpose()?;
        let key = sim_key(tenant, iccid);
        let mut query = self
            .client
            .query()
            .table_name(&self.history)
            .key_condition_expression("simKey = :key")
            .expression_attribute_values(":key", s(&key))
            .scan_index_forward(false)
            .limit(i32::try_from(page.limit).unwrap_or(i32::MAX));
        if let Some(after) = after {
            query = query
                .exclusive_start_key("simKey", s(&key))
                .exclusive_start_key("eventId", s(after.after));
        }
        let out = query.send().await.map_err(backend)?;
        let mut last_id = None;
        let mut items = Vec::new();
        for mut item in out.items.unwrap_or_default() {
            item.remove("simKey");
            last_id = item
                .remove("eventId")
                .and_then(|id| id.as_s().ok().cloned());
            items.push(from_item_named("SIM event", item)?);
        }
        let next_cursor = out
            .last_evaluated_key
            .and(last_id)
            .map(|after| cursor::encode(&AfterId { after }));
        Ok(Page { items, next_cursor })
    }

    async fn put_sim(
        &self,
        tenant: &TenantId,
        sim: &Sim,
        stored_version: Option<u64>,
        event: Option<&SimEvent>,
    ) -> Result<Written, StoreError> {
        let mut put = Put::builder()
            .table_name(&self.sims)
            .set_item(Some(Self::item_of(tenant, sim)?));
        put = match stored_version {
            None => put.condition_expression("attribute_not_exists(iccid)"),
            Some(version) => put
                .condition_expression("version = :stored")
                .expression_attribute_values(":stored", n(version)),
        };
        let mut write = self.client.transact_write_items().transact_items(
            TransactWriteItem::builder()
                .put(put.build().map_err(unbuildable)?)
                .build(),
        );
        if let Some(event) = event {
            write = write.transact_items(self.event_put(tenant, &sim.iccid, event)?);
        }
        let result = write.send().await;
        match result {
            Ok(_) => Ok(Written::Written),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(transaction_cancelled_on_condition) =>
            {
                Ok(Written::Conflict)
            }
            Err(error) => Err(backend(error)),
        }
    }

    async fn sims_due_details(
        &self,
        tenant: &TenantId,
        service_provider_id: &str,
        page: &PageRequest,
    ) -> Result<Page<Sim>, StoreError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.sims)
            .index_name("ByDetailsDue")
            .expression_attribute_values(":due", s(details_due_key(tenant, service_provider_id)))
            .limit(i32::try_from(page.limit).unwrap_or(i32::MAX));
        query = match &page.cursor {
            Some(after) => query
                .key_condition_expression("detailsDue = :due AND iccid > :after")
                .expression_attribute_values(":after", s(after)),
            None => query.key_condition_expression("detailsDue = :due"),
        };
        let out = query.send().await.map_err(backend)?;
        let items = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(Self::sim_of)
            .collect::<Result<Vec<Sim>, _>>()?;
        let next_cursor = out
            .last_evaluated_key
            .and_then(|_| items.last().map(|sim| sim.iccid.clone()));
        Ok(Page { items, next_cursor })
    }

    async fn link_device(
        &self,
        tenant: &TenantId,
        iccid: &str,
        device_id: &str,
    ) -> Result<bool, StoreError> {
        // Linked already: no write (a device announces itself on every start).
        let result = self
            .client
            .update_item()
            .table_name(&self.sims)
            .key("tenantId", s(tenant.as_str()))
            .key("iccid", s(iccid))
            .update_expression("SET deviceId = :device ADD version :one")
            .condition_expression(
                "attribute_exists(iccid) AND (attribute_not_exists(deviceId) OR deviceId <> :device)",
            )
            .expression_attribute_values(":device", s(device_id))
            .expression_attribute_values(":one", n(1))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error)
                if error.as_service_error().is_some_and(|e| {
                    matches!(
                        e,
                        aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(_)
                    )
                }) =>
            {
                // Either no such SIM or linked already: one read tells which.
                Ok(self.get_sim(tenant, iccid).await?.is_some())
            }
            Err(error) => Err(backend(error)),
        }
    }

    async fn unlink_device(
        &self,
        tenant: &TenantId,
        iccid: &str,
        device_id: &str,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.sims)
            .key("tenantId", s(tenant.as_str()))
            .key("iccid", s(iccid))
            .update_expression("REMOVE deviceId ADD version :one")
            .condition_expression("deviceId = :device")
            .expression_attribute_values(":device", s(device_id))
            .expression_attribute_values(":one", n(1))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // No such SIM, or another device's (or none's): nothing to undo.
            Err(error)
                if error.as_service_error().is_some_and(|e| {
                    matches!(
                        e,
                        aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(_)
                    )
                }) =>
            {
                Ok(())
            }
            Err(error) => Err(backend(error)),
        }
    }

    async fn apply_change(
        &self,
        tenant: &TenantId,
        change: &SimChange,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.client
            .transact_write_items()
            .set_transact_items(Some(self.change_writes(tenant, change, at)?))
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }
}

/// The listing position a `LastEvaluatedKey` stands for.
fn position_of_key(key: SimKey, plan: &Plan, last: &Item) -> Option<SimPosition> {
    let iccid = last.get("iccid")?.as_s().ok()?.clone();
    let value = match plan.order_attribute {
        Some(attribute) => last
            .get(attribute)?
            .as_s()
            .ok()?
            .split_once('#')?
            .0
            .to_owned(),
        None => iccid.clone(),
    };
    debug_assert!(key == SimKey::Iccid || plan.order_attribute.is_some());
    Some(SimPosition {
        order: String::new(),
        value,
        iccid,
    })
}

/// The sort key of a provider's usage collection state, beside its sync state.
fn usage_state_key(service_provider_id: &str) -> String {
    format!("usage#{service_provider_id}")
}

/// The sort key of a provider's reading of SIM details, beside its sync state.
fn details_state_key(service_provider_id: &str) -> String {
    format!("details#{service_provider_id}")
}

impl DynamoSims {
    async fn get_state<T: serde::de::DeserializeOwned>(
        &self,
        tenant: &TenantId,
        key: &str,
        what: &str,
    ) -> Result<Option<T>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(self.sync_table()?)
            .key("tenantId", s(tenant.as_str()))
            .key("serviceProviderId", s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend)?;
        out.item
            .map(|mut item| {
                item.remove("tenantId");
                from_item_named(what, item)
            })
            .transpose()
    }

    /// Writes `item` under `key` if the stored one is at `version - 1` (none at all for 1).
    async fn put_state(
        &self,
        tenant: &TenantId,
        key: &str,
        mut item: Item,
        version: u64,
    ) -> Result<Written, StoreError> {
        item.insert("tenantId".into(), s(tenant.as_str()));
        // The table's sort key: a sync state's is its provider, a usage state's is prefixed.
        item.insert("serviceProviderId".into(), s(key));
        let mut put = self
            .client
            .put_item()
            .table_name(self.sync_table()?)
            .set_item(Some(item));
        put = if version <= 1 {
            put.condition_expression("attribute_not_exists(serviceProviderId)")
        } else {
            put.condition_expression("version = :stored")
                .expression_attribute_values(":stored", n(version - 1))
        };
        match put.send().await {
            Ok(_) => Ok(Written::Written),
            Err(error)
                if error.as_service_error().is_some_and(|e| {
                    matches!(e, PutItemError::ConditionalCheckFailedException(_))
                }) =>
            {
                Ok(Written::Conflict)
            }
            Err(error) => Err(backend(error)),
        }
    }
}

#[async_trait]
impl SyncStateStore for DynamoSims {
    async fn get_sync(
        &self,
        tenant: &TenantId,
        service_provider_id: &str,
    ) -> Result<Option<SyncState>, StoreError> {
        self.get_state(tenant, service_provider_id, "sync state")
            .await
    }

    async fn put_sync(&self, tenant: &TenantId, state: &SyncState) -> Result<Written, StoreError> {
        self.put_state(
            tenant,
            &state.service_provider_id,
            to_item(state)?,
            state.version,
        )
        .await
    }

    async fn get_usage_state(
        &self,
        tenant: &TenantId,
        service_provider_id: &str,
    ) -> Result<Option<UsageState>, StoreError> {
        let key = usage_state_key(service_provider_id);
        let state: Option<UsageState> = self.get_state(tenant, &key, "usage state").await?;
        Ok(state.map(|state| UsageState {
            service_provider_id: service_provider_id.to_owned(),
            ..state
        }))
    }

    async fn put_usage_state(
        &self,
        tenant: &TenantId,
        state: &UsageState,
    ) -> Result<Written, StoreError> {
        let key = usage_state_key(&state.service_provider_id);
        self.put_state(tenant, &key, to_item(state)?, state.version)
            .await
    }

    async fn get_details_state(
        &self,
        tenant: &TenantId,
        service_provider_id: &str,
    ) -> Result<Option<DetailsState>, StoreError> {
        let key = details_state_key(service_provider_id);
        let state: Option<DetailsState> = self.get_state(tenant, &key, "details state").await?;
        Ok(state.map(|state| DetailsState {
            service_provider_id: service_provider_id.to_owned(),
            ..state
        }))
    }

    async fn put_details_state(
        &self,
        tenant: &TenantId,
        state: &DetailsState,
    ) -> Result<Written, StoreError> {
        let key = details_state_key(&state.service_provider_id);
        self.put_state(tenant, &key, to_item(state)?, state.version)
            .await
    }
}

/// A day as the usage table keys it (ISO 8601, so the sort key orders days).
fn day_key(day: time::Date) -> String {
    cellbridge_core::clock::format_day(day)
}

#[async_trait]
impl UsageStore for DynamoSims {
    async fn record_usage(
        &self,
        tenant: &TenantId,
        records: &[UsageRecord],
        keep_until: OffsetDateTime,
    ) -> Result<(), StoreError> {
        // One transaction per SIM: its day and its cycle total are written together, so a run
        // that stops between them never finds a total newer than its days.
        for record in records {
            let cycle = serde_dynamo::to_attribute_value(&record.cycle)
                .map_err(|e| StoreError::Rejected(format!("cycle usage: {e}")))?;
            let update = Update::builder()
                .table_name(&self.sims)
                .key("tenantId", s(tenant.as_str()))
                .key("iccid", s(&record.iccid))
                .update_expression("SET #usage = :usage ADD version :one")
                .condition_expression("attribute_exists(iccid)")
                .expression_attribute_names("#usage", "usage")
                .expression_attribute_values(":usage", cycle)
                .expression_attribute_values(":one", n(1))
                .build()
                .map_err(unbuildable)?;
            let mut writes = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().update(update).build());
            if let Some(day) = &record.day {
                let mut item = to_item(day)?;
                item.insert("simKey".into(), s(sim_key(tenant, &record.iccid)));
                item.insert("day".into(), s(day_key(day.day)));
                item.insert("expiresAt".into(), n(keep_until.unix_timestamp()));
                let put = Put::builder()
                    .table_name(self.usage_table()?)
                    .set_item(Some(item))
                    .build()
                    .map_err(unbuildable)?;
                writes = writes.transact_items(TransactWriteItem::builder().put(put).build());
            }
            match writes.send().await {
                Ok(_) => {}
                // Not in the inventory (yet): its usage waits for the sync to import it.
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(transaction_cancelled_on_condition) => {}
                Err(error) => return Err(backend(error)),
            }
        }
        Ok(())
    }

    async fn daily_usage(
        &self,
        tenant: &TenantId,
        iccid: &str,
        from: time::Date,
        to: time::Date,
    ) -> Result<Vec<DailyUsage>, StoreError> {
        if from > to {
            return Ok(Vec::new());
        }
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let mut days = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(self.usage_table()?)
                .key_condition_expression("simKey = :sim AND #day BETWEEN :from AND :to")
                .expression_attribute_names("#day", "day")
                .expression_attribute_values(":sim", s(sim_key(tenant, iccid)))
                .expression_attribute_values(":from", s(day_key(from)))
                .expression_attribute_values(":to", s(day_key(to)))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(backend)?;
            for mut item in out.items.unwrap_or_default() {
                // DynamoDB deletes expired items within days, not at once: hide them meanwhile.
                let expired = item
                    .get("expiresAt")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|at| at <= now);
                if expired {
                    continue;
                }
                for bookkeeping in ["simKey", "expiresAt"] {
                    item.remove(bookkeeping);
                }
                days.push(from_item_named("usage day", item)?);
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(days),
            }
        }
    }

    async fn put_usage_request(
        &self,
        request: &UsageRequest,
        keep_until: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut item = to_item(request)?;
        let (key, sort) = usage_request_key(&request.request_id);
        item.insert("simKey".into(), key);
        item.insert("day".into(), sort);
        item.insert("expiresAt".into(), n(keep_until.unix_timestamp()));
        self.client
            .put_item()
            .table_name(self.usage_table()?)
            .set_item(Some(item))
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn get_usage_request(
        &self,
        request_id: &str,
    ) -> Result<Option<UsageRequest>, StoreError> {
        let (key, sort) = usage_request_key(request_id);
        let out = self
            .client
            .get_item()
            .table_name(self.usage_table()?)
            .key("simKey", key)
            .key("day", sort)
            .send()
            .await
            .map_err(backend)?;
        out.item
            .map(|mut item| {
                for bookkeeping in ["simKey", "day", "expiresAt"] {
                    item.remove(bookkeeping);
                }
                from_item_named("usage request", item)
            })
            .transpose()
    }
}

/// Where a pending usage request is kept: in the usage table beside the days it will fill
/// (its TTL removes it), under a key no SIM's days have (`day` is never a date).
fn usage_request_key(request_id: &str) -> (AttributeValue, AttributeValue) {
    (s(format!("usage-request#{request_id}")), s("request"))
}
