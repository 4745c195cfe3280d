//! The device registry and telemetry on DynamoDB, and in memory for unit tests.
//!
//! - devices: `thingName` (thing names are unique in an AWS account), GSI `ByTenant` on
//!   `tenantId` / `thingName`; presence as `connected`, `presenceVersion`, `presenceRank`,
//!   `lastSeen` (ms)
//! - telemetry: `thingName` / `at` (ms), `receivedAt` (ms), `metrics` (a map), expiring through
//!   `expiresAt`; a device's latest state is its newest point here (one `Query`, newest first,
//!   `Limit` 1)

use crate::ports::{DeviceRecord, DeviceStore, Registration, StoredPoint};
use crate::presence::{LifecycleEvent, LifecycleKind, Presence};
use crate::registration::{Announcement, ThingName};
use crate::telemetry::TelemetryPoint;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, ReturnValue, WriteRequest};
use aws_sdk_dynamodb::Client;
use backon::{ExponentialBuilder, Retryable};
use cellbridge_core::cursor;
use cellbridge_core::cursor::{AfterId, AfterMs};
use cellbridge_core::dynamodb::{
    backend, from_item_named, to_item, updated_unless_condition_failed,
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
/// DynamoDB's limit of items per `BatchWriteItem`.
pub const BATCH: usize = 25;
/// `BatchWriteItem` requests of one `write_telemetry` call in flight at once.
const WRITES_IN_FLIGHT: usize = 4;
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

fn device_from(item: Item) -> Result<DeviceRecord, StoreError> {
    from_item_named::<DeviceItem>(DEVICE_ITEM, item)?.record()
}

/// A telemetry point as the telemetry table holds it.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PointItem {
    /// The partition key: written, not needed to read the point back.
    #[serde(skip_deserializing)]
    thing_name: String,
    #[serde(with = "time::serde::timestamp::milliseconds_i64")]
    at: OffsetDateTime,
    #[serde(default = "epoch", with = "time::serde::timestamp::milliseconds_i64")]
    received_at: OffsetDateTime,
    /// The TTL, in seconds: written, never read back.
    #[serde(skip_deserializing)]
    expires_at: i64,
    #[serde(default)]
    metrics: serde_json::Map<String, serde_json::Value>,
}

fn point_item(p: &TelemetryPoint, retention: Duration) -> Result<Item, StoreError> {
    to_item(&PointItem {
        thing_name: p.device.to_string(),
        at: p.at,
        received_at: p.received_at,
        expires_at: (p.received_at + retention).unix_timestamp(),
        metrics: p.metrics_json(),
    })
}

fn point_from(item: Item) -> Result<StoredPoint, StoreError> {
    let point: PointItem = from_item_named("telemetry item", item)?;
    Ok(StoredPoint {
        at: point.at,
        received_at: point.received_at,
        metrics: point.metrics,
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
                    PutRequest::builder()
                        .set_item(Some(point_item(p, retention)?))
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
            .items
            .unwrap_or_default()
            .into_iter()
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
        out.items
            .unwrap_or_default()
            .into_iter()
            .next()
            .map(point_from)
            .transpose()
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

    fn point() -> TelemetryPoint {
        TelemetryPoint {
            device: thing("trk-1"),
            at: datetime!(2026-11-22 09:00:00.125 UTC),
            received_at: datetime!(2026-11-22 09:00:01.5 UTC),
            metrics: BTreeMap::from([
                ("battery".to_owned(), Metric::Number(87.0)),
                ("gps.lat".to_owned(), Metric::Number(52.520_008)),
                ("rssi".to_owned(), Metric::Number(-71.0)),
                ("state".to_owned(), Metric::Text("moving".to_owned())),
                ("door".to_owned(), Metric::Flag(false)),
            ]),
        }
    }

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
                    ("gps.lat".to_owned(), n(52.520_008)),
                    ("rssi".to_owned(), n(-71)),
                    ("state".to_owned(), s("moving")),
                    ("door".to_owned(), AttributeValue::Bool(false)),
                ])),
            ),
        ])
    }

    #[test]
    fn telemetry_items_keep_their_stored_attributes_and_read_back() {
        assert_eq!(
            point_item(&point(), Duration::days(7)).expect("item"),
            stored_point()
        );
        assert_eq!(
            point_from(stored_point()).expect("read"),
            StoredPoint {
                at: point().at,
                received_at: point().received_at,
                metrics: point().metrics_json(),
            }
        );
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
        let why = corrupt(point_from(item).map(|_| ()));
        assert!(why.contains("at"), "{why}");
    }
}
