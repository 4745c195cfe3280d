//! The device registry and telemetry on DynamoDB, and in memory for unit tests.
//!
//! - devices: `thingName` (thing names are unique in an AWS account), GSI `ByTenant` on
//!   `tenantId` / `thingName`; presence as `connected`, `presenceVersion`, `presenceRank`,
//!   `lastSeen` (ms)
//! - telemetry: `thingName` / `at` (ms), `receivedAt` (ms), `metrics` (a map), expiring through
//!   `expiresAt`; a device's latest state is its newest point here (one `Query`, newest first,
//!   `Limit` 1)

use crate::common::cursor;
use crate::common::cursor::{AfterId, AfterMs};
use crate::common::dynamodb::{backend, updated_unless_condition_failed};
use crate::common::dynamodb::{epoch_ms, n, s, time_from_epoch_ms, Item};
use crate::common::store::{Page, PageRequest, StoreError};
use crate::common::tenant::TenantId;
use crate::devices::ports::{DeviceRecord, DeviceStore, Registration, StoredPoint};
use crate::devices::presence::{LifecycleEvent, LifecycleKind, Presence};
use crate::devices::registration::{Announcement, ThingName};
use crate::devices::telemetry::TelemetryPoint;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, ReturnValue, WriteRequest};
use aws_sdk_dynamodb::Client;
use backon::{ExponentialBuilder, Retryable};
use std::collections::{BTreeMap, HashMap};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

const TENANT_INDEX: &str = "ByTenant";
/// DynamoDB's limit of items per `BatchWriteItem`.
pub const BATCH: usize = 25;
/// `BatchWriteItem` requests of one `write_telemetry` call in flight at once.
const WRITES_IN_FLIGHT: usize = 4;
/// Unprocessed items are retried this many times, waiting 50 ms, 100 ms, 200 ms...
const BATCH_RETRIES: usize = 6;

fn json_to_attribute(value: &serde_json::Value) -> AttributeValue {
    match value {
        serde_json::Value::Null => AttributeValue::Null(true),
        serde_json::Value::Bool(b) => AttributeValue::Bool(*b),
        serde_json::Value::Number(num) => n(num),
        serde_json::Value::String(text) => s(text.clone()),
        serde_json::Value::Array(items) => {
            AttributeValue::L(items.iter().map(json_to_attribute).collect())
        }
        serde_json::Value::Object(fields) => AttributeValue::M(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), json_to_attribute(v)))
                .collect(),
        ),
    }
}

fn attribute_to_json(value: &AttributeValue) -> serde_json::Value {
    match value {
        AttributeValue::Bool(b) => serde_json::Value::Bool(*b),
        AttributeValue::N(text) => text
            .parse::<i64>()
            .map(serde_json::Value::from)
            .or_else(|_| text.parse::<f64>().map(serde_json::Value::from))
            .unwrap_or(serde_json::Value::Null),
        AttributeValue::S(text) => serde_json::Value::String(text.clone()),
        AttributeValue::L(items) => {
            serde_json::Value::Array(items.iter().map(attribute_to_json).collect())
        }
        AttributeValue::M(fields) => serde_json::Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), attribute_to_json(v)))
                .collect(),
        ),
        _ => serde_json::Value::Null,
    }
}

fn text(item: &Item, name: &str) -> Result<String, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .ok_or_else(|| StoreError::Corrupt(format!("device item without {name}")))
}

fn device_from(item: &Item) -> Result<DeviceRecord, StoreError> {
    let thing = text(item, "thingName")?;
    let tenant = text(item, "tenantId")?;
    let number = |name: &str| -> Option<i64> { item.get(name)?.as_n().ok()?.parse().ok() };
    let presence_kind = match number("presenceRank") {
        Some(1) => LifecycleKind::Disconnected,
        _ => LifecycleKind::Connected,
    };
    Ok(DeviceRecord {
        thing_name: ThingName::parse(&thing)
            .ok_or_else(|| StoreError::Corrupt(format!("thing name {thing:?}")))?,
        tenant: TenantId::parse(&tenant)
            .ok_or_else(|| StoreError::Corrupt(format!("tenant {tenant:?}")))?,
        iccid: text(item, "iccid")?,
        imei: item.get("imei").and_then(|v| v.as_s().ok()).cloned(),
        model: text(item, "model")?,
        firmware: text(item, "firmware")?,
        registered_at: item
            .get("registeredAt")
            .and_then(|v| v.as_s().ok())
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        presence: Presence {
            connected: item
                .get("connected")
                .and_then(|v| v.as_bool().ok())
                .copied()
                .unwrap_or(false),
            version: number("presenceVersion").map(|v| (v, presence_kind)),
            last_seen: time_from_epoch_ms(item.get("lastSeen")),
            timed_out: item.contains_key("timedOutAt"),
        },
    })
}

fn point_from(item: &Item) -> Result<StoredPoint, StoreError> {
    Ok(StoredPoint {
        at: time_from_epoch_ms(item.get("at"))
            .ok_or_else(|| StoreError::Corrupt("point without at".into()))?,
        received_at: time_from_epoch_ms(item.get("receivedAt"))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        metrics: match item.get("metrics") {
            Some(AttributeValue::M(fields)) => fields
                .iter()
                .map(|(k, v)| (k.clone(), attribute_to_json(v)))
                .collect(),
            _ => serde_json::Map::new(),
        },
    })
}

/// Telemetry cursors carry the last point's time (ms).
pub(crate) fn encode_after_ms(at: i64) -> String {
    cursor::encode(&AfterMs { after: at })
}

pub(crate) fn decode_after_ms(text: &str) -> Result<i64, StoreError> {
    cursor::decode::<AfterMs>(text).map(|position| position.after)
}

fn rank(kind: LifecycleKind) -> i64 {
    match kind {
        LifecycleKind::Connected => 0,
        LifecycleKind::Disconnected => 1,
    }
}

/// Later points of the same device and time replace earlier ones: BatchWriteItem refuses two
/// writes of one key in a request.
pub(crate) fn unique_points(points: &[TelemetryPoint]) -> Vec<&TelemetryPoint> {
    let mut by_key: BTreeMap<(&str, i64), &TelemetryPoint> = BTreeMap::new();
    for point in points {
        by_key.insert((point.device.as_str(), epoch_ms(point.at)), point);
    }
    by_key.into_values().collect()
}

#[derive(Debug, Clone)]
pub struct DynamoDevices {
    client: Client,
    devices_table: String,
    telemetry_table: String,
}

impl DynamoDevices {
    pub fn new(
        client: Client,
        devices_table: impl Into<String>,
        telemetry_table: impl Into<String>,
    ) -> Self {
        Self {
            client,
            devices_table: devices_table.into(),
            telemetry_table: telemetry_table.into(),
        }
    }

    /// Writes one batch, resending what DynamoDB left unprocessed (throttled partitions) with
    /// exponential backoff; a failed request itself is not retried here.
    async fn write_batch(&self, requests: Vec<WriteRequest>) -> Result<(), StoreError> {
        let pending = std::sync::Mutex::new(requests);
        let take = || std::mem::take(&mut *pending.lock().unwrap_or_else(|e| e.into_inner()));
        let attempt = || async {
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.telemetry_table, take())
                .send()
                .await
                .map_err(|e| BatchWrite::Failed(backend(e)))?;
            let left = out
                .unprocessed_items
                .and_then(|mut left| left.remove(&self.telemetry_table))
                .unwrap_or_default();
            if left.is_empty() {
                return Ok(());
            }
            let count = left.len();
            *pending.lock().unwrap_or_else(|e| e.into_inner()) = left;
            Err(BatchWrite::Unprocessed(count))
        };
        attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(std::time::Duration::from_millis(50))
                    .with_max_times(BATCH_RETRIES),
            )
            .when(|e| matches!(e, BatchWrite::Unprocessed(_)))
            .await
            .map_err(|e| match e {
                BatchWrite::Failed(e) => e,
                BatchWrite::Unprocessed(count) => StoreError::Unavailable(format!(
                    "{count} telemetry writes stayed unprocessed after {BATCH_RETRIES} retries"
                )),
            })
    }
}

/// How one `BatchWriteItem` attempt ended short of writing everything.
enum BatchWrite {
    Failed(StoreError),
    Unprocessed(usize),
}

#[async_trait]
impl DeviceStore for DynamoDevices {
    async fn register(
        &self,
        a: &Announcement,
        now: OffsetDateTime,
    ) -> Result<Registration, StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.devices_table)
            .key("thingName", s(a.thing_name.as_str()))
            .condition_expression("attribute_not_exists(thingName) OR tenantId = :tenant")
            .expression_attribute_values(":tenant", s(a.tenant.as_str()))
            .expression_attribute_values(":iccid", s(a.iccid.as_str()))
            .expression_attribute_values(":model", s(&a.model))
            .expression_attribute_values(":firmware", s(&a.firmware))
            .expression_attribute_values(":now", s(now.format(&Rfc3339).unwrap_or_default()))
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .expression_attribute_values(":seen", n(epoch_ms(now)))
            .return_values(ReturnValue::AllOld);
        // Until a lifecycle event is applied, the live connection the announcement came over is
        // all there is to go by (see `Presence::announced`).
        let set = "SET tenantId = :tenant, iccid = :iccid, model = :model, firmware = :firmware, \
                   updatedAt = :now, registeredAt = if_not_exists(registeredAt, :now), \
                   connected = if_not_exists(connected, :yes), lastSeen = if_not_exists(lastSeen, :seen)";
        update = match &a.imei {
            Some(imei) => update
                .update_expression(format!("{set}, imei = :imei"))
                .expression_attribute_values(":imei", s(imei.as_str())),
            None => update.update_expression(format!("{set} REMOVE imei")),
        };
        match update.send().await {
            Ok(out) => Ok(if out.attributes.is_some_and(|old| !old.is_empty()) {
                Registration::Updated
            } else {
                Registration::Created
            }),
            Err(error) => match updated_unless_condition_failed(Err::<(), _>(error)) {
                Ok(_) => Ok(Registration::OtherTenant),
                Err(e) => Err(e),
            },
        }
    }

    async fn get_device(&self, thing_name: &ThingName) -> Result<Option<DeviceRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.devices_table)
            .key("thingName", s(thing_name.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend)?;
        out.item.as_ref().map(device_from).transpose()
    }

    async fn list_devices(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Page<DeviceRecord>, StoreError> {
        let after = page
            .cursor
            .as_deref()
            .map(cursor::decode_after_thing)
            .transpose()?;
        let mut query = self
            .client
            .query()
            .table_name(&self.devices_table)
            .index_name(TENANT_INDEX)
            .key_condition_expression("tenantId = :tenant")
            .expression_attribute_values(":tenant", s(tenant.as_str()))
            .limit(i32::try_from(page.limit).unwrap_or(i32::MAX));
        if let Some(after) = &after {
            query = query
                .exclusive_start_key("tenantId", s(tenant.as_str()))
                .exclusive_start_key("thingName", s(after.as_str()));
        }
        let out = query.send().await.map_err(backend)?;
        let items: Vec<DeviceRecord> = out
            .items()
            .iter()
            .map(device_from)
            .collect::<Result<_, _>>()?;
        let next_cursor = out.last_evaluated_key.and(items.last()).map(|last| {
            cursor::encode(&AfterId {
                after: last.thing_name.to_string(),
            })
        });
        Ok(Page { items, next_cursor })
    }

    async fn apply_presence(
        &self,
        thing_name: &ThingName,
        event: &LifecycleEvent,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.devices_table)
            .key("thingName", s(thing_name.as_str()))
            .update_expression("SET connected = :connected, presenceVersion = :version, presenceRank = :rank, lastSeen = :at REMOVE timedOutAt")
            .condition_expression(
                "attribute_exists(thingName) AND (attribute_not_exists(presenceVersion) \
                 OR presenceVersion < :version OR (presenceVersion = :version AND presenceRank < :rank))",
            )
            .expression_attribute_values(":connected", AttributeValue::Bool(event.kind == LifecycleKind::Connected))
            .expression_attribute_values(":version", n(event.version))
            .expression_attribute_values(":rank", n(rank(event.kind)))
            .expression_attribute_values(":at", n(epoch_ms(event.at)))
            .send()
            .await;
        updated_unless_condition_failed(result)
    }

    async fn record_activity(
        &self,
        thing_name: &ThingName,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.devices_table)
            .key("thingName", s(thing_name.as_str()))
            .update_expression("SET lastSeen = :at REMOVE timedOutAt")
            .condition_expression("attribute_exists(thingName) AND (attribute_not_exists(lastSeen) OR lastSeen < :at)")
            .expression_attribute_values(":at", n(epoch_ms(at)))
            .send()
            .await;
        updated_unless_condition_failed(result)
    }

    async fn write_telemetry(
        &self,
        points: &[TelemetryPoint],
        retention: Duration,
    ) -> Result<usize, StoreError> {
        let unique = unique_points(points);
        let mut batches = Vec::new();
        for chunk in unique.chunks(BATCH) {
            let requests = chunk
                .iter()
                .map(|p| {
                    let metrics = p
                        .metrics_json()
                        .iter()
                        .map(|(k, v)| (k.clone(), json_to_attribute(v)))
                        .collect();
                    let item: Item = HashMap::from([
                        ("thingName".to_owned(), s(p.device.as_str())),
                        ("at".to_owned(), n(epoch_ms(p.at))),
                        ("receivedAt".to_owned(), n(epoch_ms(p.received_at))),
                        (
                            "expiresAt".to_owned(),
                            n((p.received_at + retention).unix_timestamp()),
                        ),
                        ("metrics".to_owned(), AttributeValue::M(metrics)),
                    ]);
                    PutRequest::builder()
                        .set_item(Some(item))
                        .build()
                        .map(|put| WriteRequest::builder().put_request(put).build())
                        .map_err(|e| StoreError::Corrupt(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            batches.push(requests);
        }
        // A few requests in flight: one after another, a large batch waits out every round trip.
        use futures::StreamExt as _;
        let mut writes = futures::stream::iter(batches.into_iter().map(|b| self.write_batch(b)))
            .buffer_unordered(WRITES_IN_FLIGHT);
        while let Some(written) = writes.next().await {
            written?;
        }
        Ok(unique.len())
    }

    async fn query_telemetry(
        &self,
        thing_name: &ThingName,
        from: OffsetDateTime,
        to: OffsetDateTime,
        page: &PageRequest,
    ) -> Result<Page<StoredPoint>, StoreError> {
        let after = page.cursor.as_deref().map(decode_after_ms).transpose()?;
        let mut query = self
            .client
            .query()
            .table_name(&self.telemetry_table)
            .key_condition_expression("thingName = :thing AND #at BETWEEN :from AND :to")
            .expression_attribute_names("#at", "at")
            .expression_attribute_values(":thing", s(thing_name.as_str()))
            .expression_attribute_values(":from", n(epoch_ms(from)))
            .expression_attribute_values(":to", n(epoch_ms(to)))
            .limit(i32::try_from(page.limit).unwrap_or(i32::MAX));
        if let Some(after) = after {
            query = query
                .exclusive_start_key("thingName", s(thing_name.as_str()))
                .exclusive_start_key("at", n(after));
        }
        let out = query.send().await.map_err(backend)?;
        let items: Vec<StoredPoint> = out
            .items()
            .iter()
            .map(point_from)
            .collect::<Result<_, StoreError>>()?;
        let next_cursor = out
            .last_evaluated_key
            .and(items.last())
            .map(|last| encode_after_ms(epoch_ms(last.at)));
        Ok(Page { items, next_cursor })
    }

    async fn latest_telemetry(
        &self,
        thing_name: &ThingName,
    ) -> Result<Option<StoredPoint>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.telemetry_table)
            .key_condition_expression("thingName = :thing")
            .expression_attribute_values(":thing", s(thing_name.as_str()))
            .scan_index_forward(false)
            .limit(1)
            .send()
            .await
            .map_err(backend)?;
        out.items().first().map(point_from).transpose()
    }

    async fn sweep_silent(
        &self,
        now: OffsetDateTime,
        timeout: Duration,
    ) -> Result<Vec<ThingName>, StoreError> {
        // A paged scan: fine for fleets of tens of thousands swept once a minute; beyond that a
        // sparse, sharded index of connected devices would keep the sweep from reading them all.
        let cutoff = epoch_ms(now - timeout);
        let mut swept = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.devices_table)
                .filter_expression(
                    "connected = :yes AND attribute_not_exists(timedOutAt) \
                     AND (attribute_not_exists(lastSeen) OR lastSeen < :cutoff)",
                )
                .projection_expression("thingName, lastSeen")
                .expression_attribute_values(":yes", AttributeValue::Bool(true))
                .expression_attribute_values(":cutoff", n(cutoff))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(backend)?;
            for item in out.items() {
                let Some(thing) = item
                    .get("thingName")
                    .and_then(|v| v.as_s().ok())
                    .and_then(|t| ThingName::parse(t))
                else {
                    continue;
                };
                // Only if nothing was heard since the scan read it.
                let mut update = self
                    .client
                    .update_item()
                    .table_name(&self.devices_table)
                    .key("thingName", s(thing.as_str()))
                    .update_expression("SET timedOutAt = :now")
                    .expression_attribute_values(":now", n(epoch_ms(now)))
                    .expression_attribute_values(":yes", AttributeValue::Bool(true));
                update = match item.get("lastSeen") {
                    Some(seen) => update
                        .condition_expression("connected = :yes AND lastSeen = :seen")
                        .expression_attribute_values(":seen", seen.clone()),
                    None => update.condition_expression(
                        "connected = :yes AND attribute_not_exists(lastSeen)",
                    ),
                };
                if updated_unless_condition_failed(update.send().await)? {
                    swept.push(thing);
                }
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        Ok(swept)
    }
}
