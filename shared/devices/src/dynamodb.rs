//! The device registry and telemetry on DynamoDB, and in memory for unit tests.
//!
//! - devices: `thingName` (thing names are unique in an AWS account), GSI `ByTenant` on
//!   `tenantId` / `thingName`; presence as `connected`, `presenceVersion`, `presenceRank`,
//!   `lastSeen` (ms); the end of its live window as `liveUntil` (ms, [`crate::live`])
//! - telemetry: one item per chunk of a device's samples ([`crate::series`]): `thingName` /
//!   `at` (the first sample's time, ms), `last` (ms), `count`, `receivedAt` (ms), `samples` (the
//!   columns, JSON text), expiring through `expiresAt`. Items written before batching hold one
//!   sample as a `metrics` map and read back alike. A device's latest state is its newest sample
//!   here (one `Query`, newest first, `Limit` 2)

use crate::ports::{
    DeviceRecord, DeviceStore, Followed, LiveFollowing, Registration, StoredPoint, TelemetryWritten,
};
use crate::presence::{LastSeen, LifecycleEvent, LifecycleKind, Presence};
use crate::registration::{Announcement, ThingName};
use crate::series::{self, Chunk, RangeCollector};
use crate::summary::{parts_of, HourSummary, MetricSummary, SUMMARY_RETENTION};
use crate::telemetry::TelemetryBatch;
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, ReturnValue, WriteRequest};
use aws_sdk_dynamodb::Client;
use backon::{ExponentialBuilder, Retryable};
use cellbridge_core::cursor;
use cellbridge_core::cursor::{AfterId, AfterMs};
use cellbridge_core::dynamodb::{
    backend, from_item_named, to_item, updated_unless_condition_failed,
    written_unless_condition_failed,
};
use cellbridge_core::dynamodb::{epoch_ms, n, s, Item};
use cellbridge_core::store::{Page, PageRequest, StoreError};
use cellbridge_core::tenant::TenantId;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

const TENANT_INDEX: &str = "ByTenant";
/// Devices by `tenantIccid` (tenant#ICCID): which registered device holds a SIM.
const ICCID_INDEX: &str = "ByIccid";
/// SIM lookups in flight at once when a page of new SIMs is matched to devices.
const LOOKUPS_IN_FLIGHT: usize = 16;

/// The `tenantIccid` of a device: its SIM, within its tenant.
fn tenant_iccid(tenant: &TenantId, iccid: &str) -> String {
    format!("{}#{iccid}", tenant.as_str())
}
/// DynamoDB's limit of items per `BatchWriteItem`.
pub const BATCH: usize = 25;
/// `BatchWriteItem` requests of one `write_telemetry` call in flight at once.
const WRITES_IN_FLIGHT: usize = 4;
/// Chunks read per telemetry `Query` request: at about 4 KB each, well under its 1 MB page.
const CHUNKS_PER_QUERY: i32 = 100;
/// Unprocessed items are retried this many times, waiting 50 ms, 100 ms, 200 ms...
const BATCH_RETRIES: usize = 6;

/// What a missing `registeredAt` or `receivedAt` reads as: the rest of the item is still good.
fn epoch() -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH
}

/// A device as the devices table holds it. Only `UpdateItem`s write it (`register`,
/// `apply_presence`, `record_activity`, the sweep), attribute by attribute, so it is only read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeviceItem {
    thing_name: String,
    tenant_id: String,
    iccid: String,
    #[serde(default)]
    imei: Option<String>,
    model: String,
    firmware: String,
    #[serde(default = "epoch", with = "time::serde::rfc3339")]
    registered_at: OffsetDateTime,
    #[serde(default)]
    connected: bool,
    #[serde(default)]
    presence_version: Option<i64>,
    /// The [`rank`] of the event applied at `presenceVersion`.
    #[serde(default)]
    presence_rank: Option<i64>,
    #[serde(default, with = "time::serde::timestamp::milliseconds_i64::option")]
    last_seen: Option<OffsetDateTime>,
    /// Set by the sweep; only whether it is there matters.
    #[serde(default)]
    timed_out_at: Option<IgnoredAny>,
}

impl DeviceItem {
    fn record(self) -> Result<DeviceRecord, StoreError> {
        let kind = match self.presence_rank {
            Some(1) => LifecycleKind::Disconnected,
            _ => LifecycleKind::Connected,
        };
        Ok(DeviceRecord {
            thing_name: ThingName::parse(&self.thing_name).ok_or_else(|| {
                StoreError::Corrupt(format!("{DEVICE_ITEM}: thing name {:?}", self.thing_name))
            })?,
            tenant: TenantId::parse(&self.tenant_id).ok_or_else(|| {
                StoreError::Corrupt(format!("{DEVICE_ITEM}: tenant {:?}", self.tenant_id))
            })?,
            iccid: self.iccid,
            imei: self.imei,
            model: self.model,
            firmware: self.firmware,
            registered_at: self.registered_at,
            presence: Presence {
                connected: self.connected,
                version: self.presence_version.map(|v| (v, kind)),
                last_seen: self.last_seen,
                timed_out: self.timed_out_at.is_some(),
            },
        })
    }
}

const DEVICE_ITEM: &str = "device item";

/// A device as an item of the devices table (a stream record's image) holds it.
pub fn device_from_image(item: Item) -> Result<DeviceRecord, StoreError> {
    device_from(item)
}

fn device_from(item: Item) -> Result<DeviceRecord, StoreError> {
    from_item_named::<DeviceItem>(DEVICE_ITEM, item)?.record()
}

/// A chunk of telemetry as the telemetry table holds it.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChunkItem {
    /// The partition key: written, not needed to read the chunk back.
    #[serde(skip_deserializing)]
    thing_name: String,
    /// The first sample's time, ms.
    at: i64,
    #[serde(default)]
    last: Option<i64>,
    #[serde(default)]
    count: Option<usize>,
    #[serde(default = "epoch", with = "time::serde::timestamp::milliseconds_i64")]
    received_at: OffsetDateTime,
    /// The TTL, in seconds: written, never read back.
    #[serde(skip_deserializing)]
    expires_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    samples: Option<String>,
    /// The one sample of an item written before batching.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metrics: Option<serde_json::Map<String, serde_json::Value>>,
}

fn chunk_item(device: &ThingName, chunk: &Chunk, retention: Duration) -> Result<Item, StoreError> {
    to_item(&ChunkItem {
        thing_name: device.to_string(),
        at: chunk.first_ms,
        last: Some(chunk.last_ms),
        count: Some(chunk.count),
        received_at: chunk.received_at,
        expires_at: (chunk.received_at + retention).unix_timestamp(),
        samples: Some(chunk.encoded.clone()),
        metrics: None,
    })
}

/// A chunk's samples and when they were received.
type DecodedChunk = (series::Samples, OffsetDateTime);

fn chunk_from(item: Item) -> Result<(i64, DecodedChunk), StoreError> {
    let chunk: ChunkItem = from_item_named("telemetry item", item)?;
    let samples = match (chunk.samples, chunk.metrics) {
        (Some(encoded), _) => series::decode(chunk.at, &encoded)
            .map_err(|why| StoreError::Corrupt(format!("telemetry item at {}: {why}", chunk.at)))?,
        (None, metrics) => vec![(chunk.at, metrics.unwrap_or_default())],
    };
    Ok((chunk.at, (samples, chunk.received_at)))
}

/// The device a telemetry item (a stream record's image) is of, and its newest sample; `None`
/// for an item without samples.
pub fn newest_sample_from_image(
    item: Item,
) -> Result<(ThingName, Option<StoredPoint>), StoreError> {
    let thing = item
        .get("thingName")
        .and_then(|name| name.as_s().ok())
        .and_then(|name| ThingName::parse(name))
        .ok_or_else(|| StoreError::Corrupt("telemetry item: no valid thingName".into()))?;
    let (_, chunk) = chunk_from(item)?;
    Ok((thing, series::newest([chunk])))
}

/// Hour summaries share the telemetry table under a partition of their own per device. No
/// thing name holds a `#` (AWS IoT allows letters, digits, `:`, `_` and `-`).
const HOURS_SUFFIX: &str = "#hours";
/// Writers folding into one device's hour at once: each lost race reads it again.
const FOLD_ATTEMPTS: u32 = 10;

fn hours_key(device: &ThingName) -> String {
    format!("{device}{HOURS_SUFFIX}")
}

/// Whether a telemetry item (a stream record's image) is an hour summary, not samples.
pub fn is_hour_summary(item: &Item) -> bool {
    item.get("thingName")
        .and_then(|name| name.as_s().ok())
        .is_some_and(|name| name.ends_with(HOURS_SUFFIX))
}

/// An hour summary as the telemetry table holds it.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HourItem {
    /// The partition key (`<thing>#hours`): written, not needed to read it back.
    #[serde(skip_deserializing)]
    thing_name: String,
    /// The hour's start, ms.
    at: i64,
    metrics: BTreeMap<String, MetricSummary>,
    /// The chunks folded in; left out of reads for charts.
    #[serde(default)]
    chunks: Vec<i64>,
    /// Counts the writes: each is conditional on the one it read.
    #[serde(default)]
    version: u64,
    /// The TTL, in seconds: written, never read back.
    #[serde(skip_deserializing)]
    expires_at: i64,
}

impl HourItem {
    fn summary(self) -> HourSummary {
        HourSummary {
            hour_ms: self.at,
            metrics: self.metrics,
            chunks: self.chunks.into_iter().collect(),
        }
    }
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

/// Each message's chunks, keyed by device and first sample time; a later chunk of one key
/// replaces an earlier one (the same samples sent twice): BatchWriteItem refuses two writes of
/// one key in a request.
pub(crate) fn unique_chunks(batches: &[TelemetryBatch]) -> BTreeMap<(ThingName, i64), Chunk> {
    let mut by_key = BTreeMap::new();
    for batch in batches {
        for chunk in series::chunks(batch) {
            by_key.insert((batch.device.clone(), chunk.first_ms), chunk);
        }
    }
    by_key
}

/// What writing `chunks` (from [`unique_chunks`]) stores.
pub(crate) fn written(chunks: &BTreeMap<(ThingName, i64), Chunk>) -> TelemetryWritten {
    TelemetryWritten {
        samples: chunks.values().map(|c| c.count).sum(),
        items: chunks.len(),
    }
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

    /// Folds `parts` (of one device and hour) into the stored summary: read, fold, and write
    /// back on the condition that no one else wrote it meanwhile. Ingest's path; benchmarks lay
    /// down months of history through it too.
    pub async fn fold_hour(
        &self,
        device: ThingName,
        hour_ms: i64,
        parts: Vec<HourSummary>,
    ) -> Result<(), StoreError> {
        let key = [
            ("thingName".to_owned(), s(hours_key(&device))),
            ("at".to_owned(), n(hour_ms)),
        ];
        for attempt in 0..FOLD_ATTEMPTS {
            let read = self
                .client
                .get_item()
                .table_name(&self.telemetry_table)
                .set_key(Some(key.clone().into_iter().collect()))
                .consistent_read(true)
                .send()
                .await
                .map_err(backend)?;
            let (mut summary, version) = match read.item {
                Some(item) => {
                    let stored: HourItem = from_item_named("hour summary", item)?;
                    let version = stored.version;
                    (stored.summary(), Some(version))
                }
                None => (
                    HourSummary {
                        hour_ms,
                        ..HourSummary::default()
                    },
                    None,
                ),
            };
            let mut changed = false;
            for part in &parts {
                changed |= summary.fold(part);
            }
            if !changed {
                return Ok(());
            }
            let item = to_item(&HourItem {
                thing_name: hours_key(&device),
                at: hour_ms,
                metrics: summary.metrics,
                chunks: summary.chunks.into_iter().collect(),
                version: version.map_or(1, |v| v + 1),
                expires_at: (cellbridge_core::clock::from_epoch_ms(hour_ms) + SUMMARY_RETENTION)
                    .unix_timestamp(),
            })?;
            let put = self
                .client
                .put_item()
                .table_name(&self.telemetry_table)
                .set_item(Some(item));
            let put = match version {
                Some(version) => put
                    .condition_expression("version = :read")
                    .expression_attribute_values(":read", n(version)),
                None => put.condition_expression("attribute_not_exists(thingName)"),
            };
            if written_unless_condition_failed(put.send().await, |e| {
                matches!(e, PutItemError::ConditionalCheckFailedException(_))
            })? {
                return Ok(());
            }
            // Another instance folded into this hour first.
            tokio::time::sleep(std::time::Duration::from_millis(5 * u64::from(attempt + 1))).await;
        }
        Err(StoreError::Unavailable(format!(
            "the summary of {device} at {hour_ms} kept changing under {FOLD_ATTEMPTS} attempts"
        )))
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
            .expression_attribute_values(
                ":tenantIccid",
                s(tenant_iccid(&a.tenant, a.iccid.as_str())),
            )
            .expression_attribute_values(":model", s(&a.model))
            .expression_attribute_values(":firmware", s(&a.firmware))
            .expression_attribute_values(":now", s(now.format(&Rfc3339).unwrap_or_default()))
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .expression_attribute_values(":seen", n(epoch_ms(now)))
            .return_values(ReturnValue::AllOld);
        // Until a lifecycle event is applied, the live connection the announcement came over is
        // all there is to go by (see `Presence::announced`).
        let set = "SET tenantId = :tenant, iccid = :iccid, tenantIccid = :tenantIccid, \
                   model = :model, firmware = :firmware, \
                   updatedAt = :now, registeredAt = if_not_exists(registeredAt, :now), \
                   connected = if_not_exists(connected, :yes), lastSeen = if_not_exists(lastSeen, :seen)";
        update = match &a.imei {
            Some(imei) => update
                .update_expression(format!("{set}, imei = :imei"))
                .expression_attribute_values(":imei", s(imei.as_str())),
            None => update.update_expression(format!("{set} REMOVE imei")),
        };
        match update.send().await {
            Ok(out) => Ok(match out.attributes.unwrap_or_default().remove("iccid") {
                Some(AttributeValue::S(previous_iccid)) => Registration::Updated { previous_iccid },
                _ => Registration::Created,
            }),
            Err(error) => match updated_unless_condition_failed(Err::<(), _>(error)) {
                Ok(_) => Ok(Registration::OtherTenant),
                Err(e) => Err(e),
            },
        }
    }

    async fn devices_with_iccids(
        &self,
        tenant: &TenantId,
        iccids: &[String],
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        use futures::stream::{self, StreamExt, TryStreamExt};
        // One small Query per SIM on the keys-only index, some at once: a page of new SIMs costs
        // its own size in lookups, not a read of every device of the tenant.
        // Each lookup owns what it needs, so the stream borrows nothing across its awaits.
        let lookups: Vec<_> = iccids
            .iter()
            .map(|iccid| {
                let query = self
                    .client
                    .query()
                    .table_name(&self.devices_table)
                    .index_name(ICCID_INDEX)
                    .key_condition_expression("tenantIccid = :sim")
                    .expression_attribute_values(":sim", s(tenant_iccid(tenant, iccid)))
                    .limit(1);
                let iccid = iccid.clone();
                async move {
                    let out = query.send().await.map_err(backend)?;
                    let thing = out
                        .items()
                        .first()
                        .and_then(|item| item.get("thingName"))
                        .and_then(|v| v.as_s().ok())
                        .map(|thing| (iccid, thing.clone()));
                    Ok::<_, StoreError>(thing)
                }
            })
            .collect();
        let found: Vec<Option<(String, String)>> = stream::iter(lookups)
            .buffer_unordered(LOOKUPS_IN_FLIGHT)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
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
        out.item.map(device_from).transpose()
    }

    async fn list_devices(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Page<DeviceRecord>, StoreError> {
        let after = page
            .cursor
            .as_deref()
            .map(|c| cursor::decode_after_parsed(c, crate::registration::ThingName::parse))
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
            .items
            .unwrap_or_default()
            .into_iter()
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
        // With no interval the gate's condition is "later than what is stored".
        self.record_activity_if_due(thing_name, at, Duration::ZERO)
            .await
    }

    async fn last_seen_of(
        &self,
        things: &[ThingName],
    ) -> Result<std::collections::HashMap<ThingName, LastSeen>, StoreError> {
        self.read_devices(things, "thingName, lastSeen, timedOutAt", last_seen_from)
            .await
    }

    async fn record_activity_if_due(
        &self,
        thing_name: &ThingName,
        at: OffsetDateTime,
        interval: Duration,
    ) -> Result<bool, StoreError> {
        // `LastSeen::is_moved_by` as the write's condition, so of instances racing, one moves it.
        let result = self
            .client
            .update_item()
            .table_name(&self.devices_table)
            .key("thingName", s(thing_name.as_str()))
            .update_expression("SET lastSeen = :at REMOVE timedOutAt")
            .condition_expression(
                "attribute_exists(thingName) AND (attribute_not_exists(lastSeen) OR lastSeen < :due \
                 OR (attribute_exists(timedOutAt) AND lastSeen < :at))",
            )
            .expression_attribute_values(":at", n(epoch_ms(at)))
            .expression_attribute_values(":due", n(epoch_ms(at - interval)))
            .send()
            .await;
        updated_unless_condition_failed(result)
    }

    async fn write_telemetry(
        &self,
        batches: &[TelemetryBatch],
        retention: Duration,
    ) -> Result<TelemetryWritten, StoreError> {
        let unique = unique_chunks(batches);
        let written = written(&unique);
        let items = unique
            .iter()
            .map(|((device, _), chunk)| {
                PutRequest::builder()
                    .set_item(Some(chunk_item(device, chunk, retention)?))
                    .build()
                    .map(|put| WriteRequest::builder().put_request(put).build())
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let batches: Vec<Vec<WriteRequest>> = items.chunks(BATCH).map(<[_]>::to_vec).collect();
        // A few requests in flight: one after another, a large batch waits out every round trip.
        use futures::StreamExt as _;
        let mut writes = futures::stream::iter(batches.into_iter().map(|b| self.write_batch(b)))
            .buffer_unordered(WRITES_IN_FLIGHT);
        while let Some(done) = writes.next().await {
            done?;
        }
        // After the chunks: a summary never counts a chunk that is not stored, and a failure
        // here has the messages delivered again, whose chunks are then folded in once.
        let parts = parts_of(unique.iter().map(|((device, _), chunk)| (device, chunk)));
        let mut folds = futures::stream::iter(
            parts
                .into_iter()
                .map(|((device, hour_ms), parts)| self.fold_hour(device, hour_ms, parts)),
        )
        .buffer_unordered(WRITES_IN_FLIGHT);
        while let Some(done) = folds.next().await {
            done?;
        }
        Ok(written)
    }

    async fn telemetry_hours(
        &self,
        thing_name: &ThingName,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<HourSummary>, StoreError> {
        let mut hours = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.telemetry_table)
            .key_condition_expression("thingName = :thing AND #at BETWEEN :from AND :to")
            // The folded chunks' keys are for writers only.
            .projection_expression("#at, #metrics")
            .expression_attribute_names("#at", "at")
            .expression_attribute_names("#metrics", "metrics")
            .expression_attribute_values(":thing", s(hours_key(thing_name)))
            .expression_attribute_values(":from", n(crate::summary::hour_of(epoch_ms(from))))
            .expression_attribute_values(":to", n(epoch_ms(to)))
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.try_next().await.map_err(backend)? {
            let stored: HourItem = from_item_named("hour summary", item)?;
            hours.push(stored.summary());
        }
        Ok(hours)
    }

    async fn query_telemetry(
        &self,
        thing_name: &ThingName,
        from: OffsetDateTime,
        to: OffsetDateTime,
        page: &PageRequest,
    ) -> Result<Page<StoredPoint>, StoreError> {
        let after = page.cursor.as_deref().map(decode_after_ms).transpose()?;
        let limit = usize::try_from(page.limit).unwrap_or(usize::MAX);
        let mut collector = RangeCollector::new(from, to, after, limit);
        let mut start: Option<Item> = None;
        'pages: loop {
            let out = self
                .client
                .query()
                .table_name(&self.telemetry_table)
                .key_condition_expression("thingName = :thing AND #at BETWEEN :from AND :to")
                .expression_attribute_names("#at", "at")
                .expression_attribute_values(":thing", s(thing_name.as_str()))
                .expression_attribute_values(":from", n(collector.first_key_ms()))
                .expression_attribute_values(":to", n(collector.last_key_ms()))
                .set_exclusive_start_key(start.take())
                .limit(CHUNKS_PER_QUERY)
                .send()
                .await
                .map_err(backend)?;
            for item in out.items.unwrap_or_default() {
                let (first_ms, (samples, received_at)) = chunk_from(item)?;
                if collector.is_settled_before(first_ms) {
                    break 'pages;
                }
                collector.add(samples, received_at);
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        let (items, next) = collector.page();
        Ok(Page {
            items,
            next_cursor: next.map(encode_after_ms),
        })
    }

    async fn latest_telemetry(
        &self,
        thing_name: &ThingName,
    ) -> Result<Option<StoredPoint>, StoreError> {
        // Two chunks: a late message's chunk may start after the newest chunk started and end
        // before it ends; chunks of one device rarely overlap more than that.
        let out = self
            .client
            .query()
            .table_name(&self.telemetry_table)
            .key_condition_expression("thingName = :thing")
            .expression_attribute_values(":thing", s(thing_name.as_str()))
            .scan_index_forward(false)
            .limit(2)
            .send()
            .await
            .map_err(backend)?;
        let chunks = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| chunk_from(item).map(|(_, chunk)| chunk))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(series::newest(chunks))
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

/// DynamoDB's limit of keys per `BatchGetItem`.
const BATCH_GET: usize = 100;

/// A device's last sign of life, as `last_seen_of` projects it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LastSeenItem {
    thing_name: String,
    #[serde(default, with = "time::serde::timestamp::milliseconds_i64::option")]
    last_seen: Option<OffsetDateTime>,
    #[serde(default)]
    timed_out_at: Option<IgnoredAny>,
}

fn last_seen_from(item: Item) -> Result<(ThingName, LastSeen), StoreError> {
    let read: LastSeenItem = from_item_named(DEVICE_ITEM, item)?;
    let thing = ThingName::parse(&read.thing_name).ok_or_else(|| {
        StoreError::Corrupt(format!("{DEVICE_ITEM}: thing name {:?}", read.thing_name))
    })?;
    Ok((
        thing,
        LastSeen {
            at: read.last_seen,
            timed_out: read.timed_out_at.is_some(),
        },
    ))
}

impl DynamoDevices {
    /// `projection` of each of `things` that is registered, many at once: `BatchGetItem`s of
    /// at most [`BATCH_GET`] devices, eventually consistent (half a read unit each), asking
    /// again for what DynamoDB left unprocessed (throttled partitions) with growing waits.
    async fn read_devices<T>(
        &self,
        things: &[ThingName],
        projection: &str,
        read: fn(Item) -> Result<(ThingName, T), StoreError>,
    ) -> Result<std::collections::HashMap<ThingName, T>, StoreError> {
        // BatchGetItem refuses a key twice in one request.
        let unique: Vec<&ThingName> = things
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut found = std::collections::HashMap::new();
        for chunk in unique.chunks(BATCH_GET) {
            let keys: Vec<Item> = chunk
                .iter()
                .map(|thing| Item::from([("thingName".to_owned(), s(thing.as_str()))]))
                .collect();
            let mut pending = Some(
                aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .projection_expression(projection)
                    .build()
                    .map_err(cellbridge_core::dynamodb::unbuildable)?,
            );
            let mut wait = std::time::Duration::from_millis(50);
            let mut retries = 0;
            while let Some(request) = pending.take() {
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.devices_table, request)
                    .send()
                    .await
                    .map_err(backend)?;
                let items = out
                    .responses
                    .and_then(|mut tables| tables.remove(&self.devices_table))
                    .unwrap_or_default();
                for item in items {
                    let (thing, value) = read(item)?;
                    found.insert(thing, value);
                }
                let left = out
                    .unprocessed_keys
                    .and_then(|mut tables| tables.remove(&self.devices_table))
                    .filter(|left| !left.keys().is_empty());
                if let Some(left) = left {
                    if retries == BATCH_RETRIES {
                        return Err(StoreError::Unavailable(format!(
                            "{} device reads stayed unprocessed after {BATCH_RETRIES} retries",
                            left.keys().len()
                        )));
                    }
                    retries += 1;
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                    pending = Some(left);
                }
            }
        }
        Ok(found)
    }
}

/// What the telemetry of a device needs to become its tenant's live events.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FollowedItem {
    tenant_id: String,
    #[serde(default, with = "time::serde::timestamp::milliseconds_i64::option")]
    live_until: Option<OffsetDateTime>,
}

/// `None` for an item that cannot be read: one device's bad item must not hold up the live
/// telemetry of every other device in the batch.
fn followed_from(item: Item) -> Result<(ThingName, Option<Followed>), StoreError> {
    let thing = item
        .get("thingName")
        .and_then(|name| name.as_s().ok())
        .and_then(|name| ThingName::parse(name))
        .ok_or_else(|| StoreError::Corrupt(format!("{DEVICE_ITEM}: no valid thingName")))?;
    let followed = from_item_named::<FollowedItem>(DEVICE_ITEM, item)
        .ok()
        .and_then(|read| {
            Some(Followed {
                tenant: TenantId::parse(&read.tenant_id)?,
                live_until: read.live_until,
            })
        });
    Ok((thing, followed))
}

#[async_trait]
impl LiveFollowing for DynamoDevices {
    async fn extend_live(
        &self,
        thing_name: &ThingName,
        until: OffsetDateTime,
        renew_from: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.devices_table)
            .key("thingName", s(thing_name.as_str()))
            .update_expression("SET liveUntil = :until")
            .condition_expression(
                "attribute_exists(thingName) AND (attribute_not_exists(liveUntil) OR liveUntil < :renew)",
            )
            .expression_attribute_values(":until", n(epoch_ms(until)))
            .expression_attribute_values(":renew", n(epoch_ms(renew_from)))
            .send()
            .await;
        updated_unless_condition_failed(result)
    }

    async fn followed(
        &self,
        things: &[ThingName],
    ) -> Result<std::collections::HashMap<ThingName, Followed>, StoreError> {
        let read = self
            .read_devices(things, "thingName, tenantId, liveUntil", followed_from)
            .await?;
        Ok(read
            .into_iter()
            .filter_map(|(thing, followed)| Some((thing, followed?)))
            .collect())
    }

    async fn retract_live(
        &self,
        thing_name: &ThingName,
        until: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.devices_table)
            .key("thingName", s(thing_name.as_str()))
            .update_expression("REMOVE liveUntil")
            .condition_expression("liveUntil = :until")
            .expression_attribute_values(":until", n(epoch_ms(until)))
            .send()
            .await;
        updated_unless_condition_failed(result).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::Metric;
    use crate::testing::thing;
    use std::collections::HashMap;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-22 09:00 UTC);

    /// A device as `register`, `apply_presence` and the sweep leave it: those `UpdateItem`s
    /// write the attributes one by one, so this is the format reads must keep accepting.
    fn stored_device() -> Item {
        HashMap::from([
            ("thingName".to_owned(), s("trk-1")),
            ("tenantId".to_owned(), s("demo")),
            ("iccid".to_owned(), s("89012600000000000017")),
            ("imei".to_owned(), s("490154203237518")),
            ("model".to_owned(), s("TRK-200")),
            ("firmware".to_owned(), s("1.4.2")),
            ("registeredAt".to_owned(), s("2026-11-22T09:00:00Z")),
            ("updatedAt".to_owned(), s("2026-11-22T09:05:00Z")),
            ("connected".to_owned(), AttributeValue::Bool(false)),
            ("presenceVersion".to_owned(), n(7)),
            ("presenceRank".to_owned(), n(1)),
            ("lastSeen".to_owned(), n(1_795_338_300_250_i64)),
            ("timedOutAt".to_owned(), n(1_795_338_400_000_i64)),
        ])
    }

    fn device() -> DeviceRecord {
        DeviceRecord {
            thing_name: thing("trk-1"),
            tenant: TenantId::parse("demo").expect("tenant"),
            iccid: "89012600000000000017".to_owned(),
            imei: Some("490154203237518".to_owned()),
            model: "TRK-200".to_owned(),
            firmware: "1.4.2".to_owned(),
            registered_at: T0,
            presence: Presence {
                connected: false,
                version: Some((7, LifecycleKind::Disconnected)),
                last_seen: Some(datetime!(2026-11-22 09:05:00.250 UTC)),
                timed_out: true,
            },
        }
    }

    #[test]
    fn device_items_as_the_updates_write_them_read_back() {
        assert_eq!(device_from(stored_device()).expect("read"), device());

        // Registered, no lifecycle event applied yet, no IMEI announced.
        let mut fresh = stored_device();
        for name in ["imei", "presenceVersion", "presenceRank", "timedOutAt"] {
            fresh.remove(name);
        }
        fresh.insert("connected".to_owned(), AttributeValue::Bool(true));
        let read = device_from(fresh).expect("read");
        assert_eq!(read.imei, None);
        assert_eq!(
            read.presence,
            Presence {
                connected: true,
                version: None,
                last_seen: Some(datetime!(2026-11-22 09:05:00.250 UTC)),
                timed_out: false,
            }
        );
        let mut connected = stored_device();
        connected.insert("presenceRank".to_owned(), n(0));
        let read = device_from(connected).expect("read");
        assert_eq!(read.presence.version, Some((7, LifecycleKind::Connected)));
    }

    fn batch() -> TelemetryBatch {
        let sample = |at: OffsetDateTime, battery: f64| crate::telemetry::Sample {
            at,
            metrics: BTreeMap::from([
                ("battery".to_owned(), Metric::Number(battery)),
                ("gps.lat".to_owned(), Metric::Number(52.520_008)),
                ("state".to_owned(), Metric::Text("moving".to_owned())),
                ("door".to_owned(), Metric::Flag(false)),
            ]),
        };
        TelemetryBatch {
            device: thing("trk-1"),
            received_at: datetime!(2026-11-22 09:00:01.5 UTC),
            samples: vec![
                sample(datetime!(2026-11-22 09:00:00.125 UTC), 87.0),
                sample(datetime!(2026-11-22 09:00:01.125 UTC), 86.5),
            ],
        }
    }

    /// An item as ingest wrote it before telemetry was batched: one point, its metrics a map.
    fn stored_point() -> Item {
        HashMap::from([
            ("thingName".to_owned(), s("trk-1")),
            ("at".to_owned(), n(1_795_338_000_125_i64)),
            ("receivedAt".to_owned(), n(1_795_338_001_500_i64)),
            ("expiresAt".to_owned(), n(1_795_942_801_i64)),
            (
                "metrics".to_owned(),
                AttributeValue::M(HashMap::from([
                    ("battery".to_owned(), n(87)),
                    ("state".to_owned(), s("moving")),
                ])),
            ),
        ])
    }

    #[test]
    fn chunk_items_keep_their_stored_attributes_and_read_back() {
        let chunks = unique_chunks(&[batch(), batch()]);
        assert_eq!(chunks.len(), 1, "the same message twice is one item");
        let ((device, _), chunk) = chunks.iter().next().expect("a chunk");
        let item = chunk_item(device, chunk, Duration::days(7)).expect("item");
        assert_eq!(item["at"], n(1_795_338_000_125_i64));
        assert_eq!(item["last"], n(1_795_338_001_125_i64));
        assert_eq!(item["count"], n(2));
        assert_eq!(item["expiresAt"], n(1_795_942_801_i64));
        assert!(!item.contains_key("metrics"));
        let (first, (samples, received_at)) = chunk_from(item).expect("read");
        assert_eq!(first, 1_795_338_000_125);
        assert_eq!(received_at, batch().received_at);
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[1].0, 1_795_338_001_125);
        assert_eq!(samples[1].1, batch().samples[1].metrics_json());
    }

    #[test]
    fn items_written_before_batching_read_back_as_one_sample() {
        let (first, (samples, _)) = chunk_from(stored_point()).expect("read");
        assert_eq!(first, 1_795_338_000_125);
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].1["battery"], serde_json::json!(87));
    }

    #[test]
    fn corrupt_device_and_telemetry_items_are_errors_that_name_the_fault() {
        let corrupt = |result: Result<_, StoreError>| match result {
            Err(StoreError::Corrupt(why)) => why,
            other => panic!("expected a corrupt item, got {other:?}"),
        };
        let mut item = stored_device();
        item.remove("iccid");
        let why = corrupt(device_from(item).map(|_| ()));
        assert!(why.contains("iccid"), "{why}");
        let mut item = stored_device();
        item.insert("thingName".to_owned(), s("trk 1"));
        let why = corrupt(device_from(item).map(|_| ()));
        assert!(why.contains("trk 1"), "{why}");
        let mut item = stored_point();
        item.remove("at");
        let why = corrupt(chunk_from(item).map(|_| ()));
        assert!(why.contains("at"), "{why}");
        let mut item = stored_point();
        item.insert("samples".to_owned(), s("{\"t\": 7}"));
        let why = corrupt(chunk_from(item).map(|_| ()));
        assert!(why.contains("offsets"), "{why}");
    }
}
