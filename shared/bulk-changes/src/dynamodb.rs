//! The bulk-change store on DynamoDB.
//!
//! Tables (keys as in template.yaml):
//! - bulk changes: `tenantId` / `bulkChangeId`, GSI `ByStatus` on `statusKey` (`tenant#status`) / `bulkChangeId`,
//!   sparse GSI `ByRelease` on `scheduleBucket` / `releaseAt` for the scheduler
//! - device changes: `bulkChangeKey` (`tenant#bulkChangeId`) / `seq`
//!   with GSI `ByCarrierRef` on `carrierRef` (`carrierRequestId#iccid`), set once a carrier accepts it
//! - audit log: `bulkChangeKey` / `entryId` (time-ordered UUID)
//! - idempotency keys: `idempotencyKey` (`tenant#key`), expiring through the `expiresAt` TTL attribute;
//!   worker claims live there too, as `tenant#work#bulkChangeId#unit`

use crate::bulk_change::{AuditEntry, AuditRecord, BulkChange, BulkChangeStatus, DeviceChange};
use crate::ports::{BulkChangeStore, Claim, CreateOutcome, DeviceOutcome, SubmittedRef};
use crate::stalled_intake::INTAKE_TIMEOUT;
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update,
};
use aws_sdk_dynamodb::Client;
use cellbridge_core::cursor;
use cellbridge_core::cursor::{AfterId, AfterSeq};
use cellbridge_core::dynamodb::{
    backend, from_item, to_item, updated_unless_condition_failed, written_unless_condition_failed,
};
use cellbridge_core::dynamodb::{n, s, unbuildable, Item};
use cellbridge_core::store::IdempotencyClaim;
use cellbridge_core::store::IDEMPOTENCY_WINDOW;
use cellbridge_core::store::{Page, PageRequest, StoreError};
use cellbridge_core::tenant::TenantId;
use futures::{stream, StreamExt};
use std::collections::HashMap;
use time::{Duration, OffsetDateTime};

/// Conditional puts in flight at once while writing device changes.
const WRITE_CONCURRENCY: usize = 32;
const STATUS_INDEX: &str = "ByStatus";
/// Scheduled bulk changes of every tenant by `releaseAt`: a sparse index holding only them.
const RELEASE_INDEX: &str = "ByRelease";
const SCHEDULE_BUCKET: &str = "scheduled";
/// New bulk changes by intake deadline, in the same index.
const INTAKE_BUCKET: &str = "intake";
/// Device changes by `carrierRef` (`carrierRequestId#iccid`), for carrier callbacks.
const CARRIER_REF_INDEX: &str = "ByCarrierRef";
/// Work claims outlive any redelivery of the message they guard.
pub const WORK_CLAIM_RETENTION: Duration = Duration::days(14);

#[derive(Debug, Clone)]
pub struct TableNames {
    pub bulk_changes: String,
    pub device_changes: String,
    pub audit_log: String,
    pub idempotency: String,
    /// The inventory a device change's outcome updates.
    pub sims: cellbridge_sims::wiring::SimTables,
}

impl cellbridge_core::config::FromEnvironment for TableNames {
    fn from_env(
        env: &dyn cellbridge_core::config::Environment,
    ) -> Result<Self, cellbridge_core::config::ConfigError> {
        use cellbridge_core::config::required;
        Ok(Self {
            bulk_changes: required(env, "BULK_CHANGES_TABLE")?,
            device_changes: required(env, "DEVICE_CHANGES_TABLE")?,
            audit_log: required(env, "AUDIT_LOG_TABLE")?,
            idempotency: required(env, "IDEMPOTENCY_TABLE")?,
            sims: cellbridge_sims::wiring::SimTables::from_env(env)?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    tables: TableNames,
    sims: cellbridge_sims::dynamodb::DynamoSims,
}

fn status_key(tenant: &TenantId, status: BulkChangeStatus) -> String {
    format!("{tenant}#{}", status.as_str())
}

fn bulk_change_key(tenant: &TenantId, id: &str) -> String {
    format!("{tenant}#{id}")
}

fn carrier_ref(carrier_request_id: &str, iccid: &str) -> String {
    format!("{carrier_request_id}#{iccid}")
}

/// A bulk change as an item of the bulk changes table (a stream record's image) holds it.
pub fn bulk_change_from_image(item: Item) -> Result<BulkChange, StoreError> {
    from_item(item)
}

impl DynamoStore {
    /// True when the device change was written, false when it already existed.
    async fn insert_device_change(
        &self,
        tenant: &TenantId,
        change: &DeviceChange,
    ) -> Result<bool, StoreError> {
        let mut item = to_item(change)?;
        item.insert(
            "bulkChangeKey".into(),
            s(bulk_change_key(tenant, &change.bulk_change_id)),
        );
        let result = self
            .client
            .put_item()
            .table_name(&self.tables.device_changes)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(seq)")
            .send()
            .await;
        written_unless_condition_failed(result, |e| {
            matches!(e, PutItemError::ConditionalCheckFailedException(_))
        })
    }

    pub fn new(client: Client, tables: TableNames) -> Self {
        let sims = cellbridge_sims::dynamodb::DynamoSims::new(
            client.clone(),
            &tables.sims.sims,
            &tables.sims.history,
        );
        Self {
            client,
            tables,
            sims,
        }
    }

    fn bulk_change_item(&self, change: &BulkChange) -> Result<Item, StoreError> {
        let mut item = to_item(change)?;
        item.insert(
            "statusKey".into(),
            s(status_key(&change.tenant_id, change.status)),
        );
        if change.status == BulkChangeStatus::New {
            // A new change sits in the release index under its intake deadline until the planner
            // moves it on (any transition removes it), so a stalled intake is found without a scan.
            item.insert("scheduleBucket".into(), s(INTAKE_BUCKET));
            item.insert(
                "releaseAt".into(),
                n((change.created_at + INTAKE_TIMEOUT).unix_timestamp()),
            );
        }
        Ok(item)
    }

    /// An `UpdateItem` moving a bulk change from `from` to `to`, on condition that it is still
    /// `from`. `set` extends the SET clause (starting with a comma) and `remove` adds a REMOVE
    /// clause; the caller binds their values and sends it.
    #[allow(clippy::too_many_arguments)]
    fn status_move(
        &self,
        tenant: &TenantId,
        id: &str,
        from: BulkChangeStatus,
        to: BulkChangeStatus,
        now: OffsetDateTime,
        set: &str,
        remove: &str,
    ) -> UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.tables.bulk_changes)
            .key("tenantId", s(tenant.as_str()))
            .key("bulkChangeId", s(id))
            .update_expression(format!(
                "SET #status = :to, statusKey = :toKey, updatedAt = :now{set} {remove}"
            ))
            .condition_expression("#status = :from")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":to", s(to.as_str()))
            .expression_attribute_values(":toKey", s(status_key(tenant, to)))
            .expression_attribute_values(":from", s(from.as_str()))
            .expression_attribute_values(":now", s(cellbridge_core::clock::rfc3339(now)))
    }

    /// Bulk changes of every tenant in one bucket of the release index, due at or before `now`.
    async fn due_in_bucket(
        &self,
        bucket: &str,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<(TenantId, String)>, StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.tables.bulk_changes)
            .index_name(RELEASE_INDEX)
            .key_condition_expression("scheduleBucket = :bucket AND releaseAt <= :now")
            .expression_attribute_values(":bucket", s(bucket))
            .expression_attribute_values(":now", n(now.unix_timestamp()))
            .limit(limit as i32)
            .send()
            .await
            .map_err(backend)?;
        output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| {
                let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
                let tenant = text("tenantId").and_then(|t| TenantId::parse(&t));
                match (tenant, text("bulkChangeId")) {
                    (Some(tenant), Some(id)) => Ok((tenant, id)),
                    _ => Err(StoreError::Corrupt(
                        "release index entry without keys".into(),
                    )),
                }
            })
            .collect()
    }

    /// One query page of a bulk change's items in `table` (device changes and audit entries are
    /// both kept under `bulkChangeKey`, ordered by `sort_key`): at most `limit` items read, in
    /// sort-key order, after the sort-key value `after`. `refine` may add a filter, which drops
    /// items after they were read and counted. Returns the items kept and, when more follow, the
    /// sort-key value of the last item read, which the next page starts after.
    async fn bulk_change_page(
        &self,
        table: &str,
        key: &str,
        sort_key: &str,
        after: Option<AttributeValue>,
        limit: u32,
        refine: impl FnOnce(QueryFluentBuilder) -> QueryFluentBuilder + Send,
    ) -> Result<(Vec<Item>, Option<AttributeValue>), StoreError> {
        let mut query = self
            .client
            .query()
            .table_name(table)
            .key_condition_expression("bulkChangeKey = :pk")
            .expression_attribute_values(":pk", s(key))
            .limit(limit as i32);
        if let Some(after) = after {
            query = query
                .exclusive_start_key("bulkChangeKey", s(key))
                .exclusive_start_key(sort_key, after);
        }
        let output = refine(query).send().await.map_err(backend)?;
        let resume_after = output
            .last_evaluated_key
            .and_then(|mut last| last.remove(sort_key));
        Ok((output.items.unwrap_or_default(), resume_after))
    }

    async fn read_claim(
        &self,
        tenant: &TenantId,
        claim: &IdempotencyClaim,
    ) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.idempotency)
            .key("idempotencyKey", s(format!("{tenant}#{}", claim.key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend)?;
        Ok(output.item)
    }

    async fn replay(
        &self,
        tenant: &TenantId,
        claim: &IdempotencyClaim,
    ) -> Result<Option<CreateOutcome>, StoreError> {
        let Some(stored) = self.read_claim(tenant, claim).await? else {
            return Ok(None);
        };
        let text = |name: &str| stored.get(name).and_then(|v| v.as_s().ok()).cloned();
        let id = text("bulkChangeId")
            .ok_or_else(|| StoreError::Corrupt("idempotency record without id".into()))?;
        let existing = self.get_bulk_change(tenant, &id).await?.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "idempotency record points at missing bulk change {id}"
            ))
        })?;
        Ok(Some(CreateOutcome::Replayed {
            existing: Box::new(existing),
            same_request: text("requestDigest").as_deref() == Some(claim.request_digest.as_str()),
        }))
    }
}

#[async_trait]
impl BulkChangeStore for DynamoStore {
    async fn create_bulk_change(
        &self,
        change: &BulkChange,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<CreateOutcome, StoreError> {
        let item = self.bulk_change_item(change)?;
        let Some(claim) = claim else {
            self.client
                .put_item()
                .table_name(&self.tables.bulk_changes)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(bulkChangeId)")
                .send()
                .await
                .map_err(backend)?;
            return Ok(CreateOutcome::Created);
        };
        let expires_at = (change.created_at + IDEMPOTENCY_WINDOW).unix_timestamp();
        let claim_item: Item = HashMap::from([
            (
                "idempotencyKey".to_owned(),
                s(format!("{}#{}", change.tenant_id, claim.key)),
            ),
            ("bulkChangeId".to_owned(), s(&change.bulk_change_id)),
            ("requestDigest".to_owned(), s(&claim.request_digest)),
            ("expiresAt".to_owned(), n(expires_at)),
        ]);
        let put_change = Put::builder()
            .table_name(&self.tables.bulk_changes)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(bulkChangeId)")
            .build()
            .map_err(unbuildable)?;
        // An expired claim may still be stored (TTL deletes lazily); it no longer binds the key.
        let put_claim = Put::builder()
            .table_name(&self.tables.idempotency)
            .set_item(Some(claim_item))
            .condition_expression("attribute_not_exists(idempotencyKey) OR expiresAt < :now")
            .expression_attribute_values(":now", n(change.created_at.unix_timestamp()))
            .build()
            .map_err(unbuildable)?;
        let written = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put_change).build())
            .transact_items(TransactWriteItem::builder().put(put_claim).build())
            .send()
            .await;
        match written {
            Ok(_) => Ok(CreateOutcome::Created),
            // A cancelled transaction is a used key when the claim exists; anything else is a failure.
            Err(error) => match self.replay(&change.tenant_id, claim).await? {
                Some(outcome) => Ok(outcome),
                None => Err(backend(error)),
            },
        }
    }

    async fn get_bulk_change(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<BulkChange>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.bulk_changes)
            .key("tenantId", s(tenant.as_str()))
            .key("bulkChangeId", s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend)?;
        output.item.map(from_item).transpose()
    }

    async fn list_bulk_changes(
        &self,
        tenant: &TenantId,
        status: Option<BulkChangeStatus>,
        page: &PageRequest,
    ) -> Result<Page<BulkChange>, StoreError> {
        let after = page
            .cursor
            .as_deref()
            .map(cursor::decode_after_id)
            .transpose()?;
        let mut query = self
            .client
            .query()
            .table_name(&self.tables.bulk_changes)
            .scan_index_forward(false)
            .limit(page.limit as i32);
        query = match status {
            Some(status) => query
                .index_name(STATUS_INDEX)
                .key_condition_expression("statusKey = :pk")
                .expression_attribute_values(":pk", s(status_key(tenant, status))),
            None => query
                .key_condition_expression("tenantId = :pk")
                .expression_attribute_values(":pk", s(tenant.as_str())),
        };
        if let Some(after) = after {
            query = query
                .exclusive_start_key("tenantId", s(tenant.as_str()))
                .exclusive_start_key("bulkChangeId", s(&after.after));
            if let Some(status) = status {
                query = query.exclusive_start_key("statusKey", s(status_key(tenant, status)));
            }
        }
        let output = query.send().await.map_err(backend)?;
        let items: Vec<BulkChange> = output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(from_item)
            .collect::<Result<_, _>>()?;
        let next_cursor = output.last_evaluated_key.and(items.last()).map(|last| {
            cursor::encode(&AfterId {
                after: last.bulk_change_id.clone(),
            })
        });
        Ok(Page { items, next_cursor })
    }

    async fn transition(
        &self,
        tenant: &TenantId,
        id: &str,
        from: BulkChangeStatus,
        to: BulkChangeStatus,
    ) -> Result<bool, StoreError> {
        // Leaving `scheduled` drops the change from the release index.
        let result = self
            .status_move(
                tenant,
                id,
                from,
                to,
                OffsetDateTime::now_utc(),
                "",
                "REMOVE scheduleBucket",
            )
            .send()
            .await;
        updated_unless_condition_failed(result)
    }

    async fn schedule(
        &self,
        tenant: &TenantId,
        id: &str,
        release_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let result = self
            .status_move(
                tenant,
                id,
                BulkChangeStatus::New,
                BulkChangeStatus::Scheduled,
                OffsetDateTime::now_utc(),
                ", scheduleBucket = :bucket, releaseAt = :release",
                "",
            )
            .expression_attribute_values(":bucket", s(SCHEDULE_BUCKET))
            .expression_attribute_values(":release", n(release_at.unix_timestamp()))
            .send()
            .await;
        updated_unless_condition_failed(result)
    }

    async fn due_for_release(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<(TenantId, String)>, StoreError> {
        self.due_in_bucket(SCHEDULE_BUCKET, now, limit).await
    }

    async fn intake_overdue(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<(TenantId, String)>, StoreError> {
        self.due_in_bucket(INTAKE_BUCKET, now, limit).await
    }

    async fn extend_intake(
        &self,
        tenant: &TenantId,
        id: &str,
        next_check: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.bulk_changes)
            .key("tenantId", s(tenant.as_str()))
            .key("bulkChangeId", s(id))
            .update_expression("SET releaseAt = :next")
            .condition_expression("#status = :new AND scheduleBucket = :bucket")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":new", s(BulkChangeStatus::New.as_str()))
            .expression_attribute_values(":bucket", s(INTAKE_BUCKET))
            .expression_attribute_values(":next", n(next_check.unix_timestamp()))
            .send()
            .await;
        updated_unless_condition_failed(result)
    }

    async fn fail_intake(
        &self,
        tenant: &TenantId,
        id: &str,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        // Every device counts as failed, so total = succeeded + failed + pending still holds.
        let result = self
            .status_move(
                tenant,
                id,
                BulkChangeStatus::New,
                BulkChangeStatus::Failed,
                now,
                ", failureReason = :reason, #failed = #total - #succeeded",
                "REMOVE scheduleBucket",
            )
            .expression_attribute_names("#total", "total")
            .expression_attribute_names("#failed", "failed")
            .expression_attribute_names("#succeeded", "succeeded")
            .expression_attribute_values(":reason", s(reason))
            .send()
            .await;
        updated_unless_condition_failed(result)
    }

    async fn insert_device_changes(
        &self,
        tenant: &TenantId,
        changes: &[DeviceChange],
    ) -> Result<usize, StoreError> {
        // Futures are created up front: a lazily mapping closure trips the compiler's Send analysis
        // inside async_trait (rust-lang/rust#102211).
        let writes: Vec<_> = changes
            .iter()
            .map(|change| self.insert_device_change(tenant, change))
            .collect();
        let mut results = stream::iter(writes).buffer_unordered(WRITE_CONCURRENCY);
        let mut new = 0;
        while let Some(written) = results.next().await {
            new += usize::from(written?);
        }
        Ok(new)
    }

    async fn list_device_changes(
        &self,
        tenant: &TenantId,
        bulk_change_id: &str,
        page: &PageRequest,
    ) -> Result<Page<DeviceChange>, StoreError> {
        let after = page
            .cursor
            .as_deref()
            .map(cursor::decode::<AfterSeq>)
            .transpose()?;
        let (items, resume_after) = self
            .bulk_change_page(
                &self.tables.device_changes,
                &bulk_change_key(tenant, bulk_change_id),
                "seq",
                after.map(|a| n(a.after)),
                page.limit,
                |query| query,
            )
            .await?;
        let items: Vec<DeviceChange> =
            items.into_iter().map(from_item).collect::<Result<_, _>>()?;
        let next_cursor = resume_after
            .and(items.last())
            .map(|last| cursor::encode(&AfterSeq { after: last.seq }));
        Ok(Page { items, next_cursor })
    }

    async fn get_device_changes(
        &self,
        tenant: &TenantId,
        bulk_change_id: &str,
        seqs: std::ops::Range<u32>,
    ) -> Result<Vec<DeviceChange>, StoreError> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let mut items = self
            .client
            .query()
            .table_name(&self.tables.device_changes)
            .key_condition_expression("bulkChangeKey = :pk AND seq BETWEEN :first AND :last")
            .expression_attribute_values(":pk", s(bulk_change_key(tenant, bulk_change_id)))
            .expression_attribute_values(":first", n(seqs.start))
            .expression_attribute_values(":last", n(seqs.end - 1))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut changes = Vec::new();
        while let Some(item) = items.try_next().await.map_err(backend)? {
            changes.push(from_item(item)?);
        }
        Ok(changes)
    }

    async fn claim_work(
        &self,
        tenant: &TenantId,
        bulk_change_id: &str,
        unit: &str,
        retry_number: u32,
        now: OffsetDateTime,
        lease: std::time::Duration,
    ) -> Result<Claim, StoreError> {
        let now_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
        let until_ms = now_ms + lease.as_millis() as i64;
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.idempotency)
            .key(
                "idempotencyKey",
                s(format!("{tenant}#work#{bulk_change_id}#{unit}")),
            )
            .update_expression("SET claimedRetry = :r, leaseUntil = :until, expiresAt = :expires")
            .condition_expression(
                "attribute_not_exists(idempotencyKey) OR claimedRetry < :r \
                 OR (claimedRetry = :r AND leaseUntil < :now)",
            )
            .expression_attribute_values(":r", n(retry_number))
            .expression_attribute_values(":until", n(until_ms))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(
                ":expires",
                n((now + WORK_CLAIM_RETENTION).unix_timestamp()),
            )
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => {
                let earlier = output
                    .attributes
                    .as_ref()
                    .and_then(|old| old.get("claimedRetry"))
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse::<u32>().ok());
                Ok(Claim::Granted {
                    resumed: earlier == Some(retry_number),
                })
            }
            Err(error) => match error.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(refused)) => {
                    let number = |name: &str| {
                        refused
                            .item()
                            .and_then(|item| item.get(name))
                            .and_then(|v| v.as_n().ok())
                            .and_then(|v| v.parse::<i64>().ok())
                    };
                    Ok(if number("claimedRetry") == Some(i64::from(retry_number)) {
                        let lease_ms = number("leaseUntil").unwrap_or(until_ms);
                        Claim::Held {
                            until: OffsetDateTime::from_unix_timestamp_nanos(
                                i128::from(lease_ms) * 1_000_000,
                            )
                            .unwrap_or(now + lease),
                        }
                    } else {
                        Claim::Superseded
                    })
                }
                _ => Err(backend(error)),
            },
        }
    }

    async fn record_submitted(
        &self,
        tenant: &TenantId,
        bulk_change_id: &str,
        seq: u32,
        iccid: &str,
        carrier_request_id: &str,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.device_changes)
            .key("bulkChangeKey", s(bulk_change_key(tenant, bulk_change_id)))
            .key("seq", n(seq))
            .update_expression("SET carrierRequestId = :request, carrierRef = :ref")
            .condition_expression("#status = :pending")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":request", s(carrier_request_id))
            .expression_attribute_values(":ref", s(carrier_ref(carrier_request_id, iccid)))
            .expression_attribute_values(":pending", s("pending"))
            .send()
            .await;
        updated_unless_condition_failed(result)
    }

    async fn find_submitted(
        &self,
        carrier_request_id: &str,
        iccid: &str,
    ) -> Result<Option<SubmittedRef>, StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.tables.device_changes)
            .index_name(CARRIER_REF_INDEX)
            .key_condition_expression("carrierRef = :ref")
            .expression_attribute_values(":ref", s(carrier_ref(carrier_request_id, iccid)))
            .limit(1)
            .send()
            .await
            .map_err(backend)?;
        let Some(item) = output.items.unwrap_or_default().into_iter().next() else {
            return Ok(None);
        };
        let key = item
            .get("bulkChangeKey")
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| StoreError::Corrupt("index entry without bulkChangeKey".into()))?;
        let seq = item
            .get("seq")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<u32>().ok())
            .ok_or_else(|| StoreError::Corrupt("index entry without seq".into()))?;
        let (tenant, bulk_change_id) = key
            .split_once('#')
            .and_then(|(t, id)| TenantId::parse(t).map(|t| (t, id.to_owned())))
            .ok_or_else(|| StoreError::Corrupt(format!("bad bulkChangeKey {key}")))?;
        Ok(Some(SubmittedRef {
            tenant,
            bulk_change_id,
            seq,
        }))
    }

    async fn finish_device_change(
        &self,
        tenant: &TenantId,
        bulk_change_id: &str,
        seq: u32,
        outcome: &DeviceOutcome,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let now_text = cellbridge_core::clock::rfc3339(now);
        let (status, counter) = if outcome.succeeded {
            ("succeeded", "succeeded")
        } else {
            ("failed", "failed")
        };
        let mut device = Update::builder()
            .table_name(&self.tables.device_changes)
            .key("bulkChangeKey", s(bulk_change_key(tenant, bulk_change_id)))
            .key("seq", n(seq))
            .condition_expression("#status = :pending")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":final", s(status))
            .expression_attribute_values(":attempts", n(outcome.attempts))
            .expression_attribute_values(":now", s(&now_text));
        device = match &outcome.reason {
            Some(reason) => device
                .update_expression(
                    "SET #status = :final, attempts = :attempts, updatedAt = :now, statusReason = :reason",
                )
                .expression_attribute_values(":reason", s(reason)),
            None => device.update_expression(
                "SET #status = :final, attempts = :attempts, updatedAt = :now",
            ),
        };
        let count = Update::builder()
            .table_name(&self.tables.bulk_changes)
            .key("tenantId", s(tenant.as_str()))
            .key("bulkChangeId", s(bulk_change_id))
            .update_expression("ADD #counter :one SET updatedAt = :now")
            .condition_expression("attribute_exists(bulkChangeId)")
            .expression_attribute_names("#counter", counter)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", s(&now_text));
        // The device change comes first: its condition is the one a duplicate fails.
        let mut writes = vec![
            TransactWriteItem::builder()
                .update(device.build().map_err(unbuildable)?)
                .build(),
            TransactWriteItem::builder()
                .update(count.build().map_err(unbuildable)?)
                .build(),
        ];
        if let Some(sim) = &outcome.sim {
            writes.extend(self.sims.change_writes(tenant, sim, now)?);
        }
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(writes))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) => {
                let already_finished = error
                    .as_service_error()
                    .and_then(|e| match e {
                        TransactWriteItemsError::TransactionCanceledException(cancelled) => {
                            cancelled.cancellation_reasons().first()
                        }
                        _ => None,
                    })
                    .is_some_and(|reason| reason.code() == Some("ConditionalCheckFailed"));
                if already_finished {
                    Ok(false)
                } else {
                    Err(backend(error))
                }
            }
        }
    }

    async fn append_audit(&self, tenant: &TenantId, entry: &AuditEntry) -> Result<(), StoreError> {
        let mut item = to_item(entry)?;
        item.insert(
            "bulkChangeKey".into(),
            s(bulk_change_key(tenant, &entry.bulk_change_id)),
        );
        item.insert("entryId".into(), s(uuid::Uuid::now_v7().to_string()));
        self.client
            .put_item()
            .table_name(&self.tables.audit_log)
            .set_item(Some(item))
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn list_audit(
        &self,
        tenant: &TenantId,
        bulk_change_id: &str,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut items = self
            .client
            .query()
            .table_name(&self.tables.audit_log)
            .key_condition_expression("bulkChangeKey = :pk")
            .expression_attribute_values(":pk", s(bulk_change_key(tenant, bulk_change_id)))
            .into_paginator()
            .items()
            .send();
        let mut entries = Vec::new();
        while let Some(item) = items.try_next().await.map_err(backend)? {
            entries.push(from_item(item)?);
        }
        Ok(entries)
    }

    async fn audit_page(
        &self,
        tenant: &TenantId,
        bulk_change_id: &str,
        device: Option<u32>,
        page: &PageRequest,
    ) -> Result<Page<AuditRecord>, StoreError> {
        let after = page
            .cursor
            .as_deref()
            .map(cursor::decode_after_id)
            .transpose()?;
        let (items, resume_after) = self
            .bulk_change_page(
                &self.tables.audit_log,
                &bulk_change_key(tenant, bulk_change_id),
                "entryId",
                after.map(|a| s(a.after)),
                page.limit,
                // A filter rather than an index on the device: looked for now and then, it is not
                // worth an index write for every entry of every bulk change.
                |query| match device {
                    Some(seq) => query
                        .filter_expression("deviceSeq = :device")
                        .expression_attribute_values(":device", n(seq)),
                    None => query,
                },
            )
            .await?;
        let items = items
            .into_iter()
            .map(audit_record)
            .collect::<Result<_, _>>()?;
        // The cursor is the last entry read, not the last kept: with a filter, entries read past
        // the last one kept must not be read again.
        let next_cursor = resume_after
            .map(|last| match last {
                AttributeValue::S(after) => Ok(cursor::encode(&AfterId { after })),
                _ => Err(StoreError::Corrupt(
                    "an audit entry id is not a string".into(),
                )),
            })
            .transpose()?;
        Ok(Page { items, next_cursor })
    }
}

/// An audit log item as its record: the entry and the id it was written under.
fn audit_record(mut item: Item) -> Result<AuditRecord, StoreError> {
    let entry_id = match item.remove("entryId") {
        Some(AttributeValue::S(id)) => id,
        _ => return Err(StoreError::Corrupt("audit entry without entryId".into())),
    };
    Ok(AuditRecord {
        entry_id,
        entry: from_item(item)?,
    })
}
