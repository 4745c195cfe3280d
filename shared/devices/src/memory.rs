//! The device registry and telemetry in memory, for unit tests.

use crate::dynamodb::{decode_after_ms, encode_after_ms, unique_chunks, written};
use crate::ports::{
    DeviceRecord, DeviceStore, Followed, LiveFollowing, Registration, StoredPoint, TelemetryWritten,
};
use crate::presence::{LastSeen, LifecycleEvent, Presence};
use crate::registration::{Announcement, ThingName};
use crate::series::{self, Chunk, RangeCollector};
use crate::summary::{hour_of, parts_of, HourSummary};
use crate::telemetry::TelemetryBatch;
use async_trait::async_trait;
use cellbridge_core::clock::epoch_ms;
use cellbridge_core::cursor;
use cellbridge_core::cursor::AfterId;
use cellbridge_core::memory::{locked, page_of};
use cellbridge_core::store::{Page, PageRequest, StoreError};
use cellbridge_core::tenant::TenantId;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use time::{Duration, OffsetDateTime};

/// Devices in memory, with the same rules.
#[derive(Debug, Default)]
pub struct MemoryDevices {
    devices: Mutex<BTreeMap<ThingName, DeviceRecord>>,
    /// What the presence write gate cost: devices read by `last_seen_of`, and
    /// `record_activity_if_due` calls that wrote or were refused.
    activity_reads: AtomicUsize,
    activity_writes: AtomicUsize,
    activity_refused: AtomicUsize,
    /// Fails those reads and writes, as a throttled table would.
    presence_unavailable: std::sync::atomic::AtomicBool,
    /// Chunks by device and first sample time, as the telemetry table keys them.
    telemetry: Mutex<BTreeMap<(ThingName, i64), Chunk>>,
    /// Hour summaries by device and hour.
    hours: Mutex<BTreeMap<(ThingName, i64), HourSummary>>,
    /// The end of each followed device's live window.
    live_until: Mutex<HashMap<ThingName, OffsetDateTime>>,
}

impl MemoryDevices {
    /// Makes `last_seen_of` and `record_activity_if_due` fail (retryable) while set.
    pub fn set_presence_unavailable(&self, unavailable: bool) {
        self.presence_unavailable
            .store(unavailable, Ordering::SeqCst);
    }

    fn presence_available(&self) -> Result<(), StoreError> {
        if self.presence_unavailable.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("presence throttled".into()));
        }
        Ok(())
    }

    /// Devices whose last sign of life `last_seen_of` read.
    pub fn activity_reads(&self) -> usize {
        self.activity_reads.load(Ordering::SeqCst)
    }

    /// `record_activity_if_due` calls that moved `lastSeen`.
    pub fn activity_writes(&self) -> usize {
        self.activity_writes.load(Ordering::SeqCst)
    }

    /// `record_activity_if_due` calls refused (not due, or not registered): billed on DynamoDB
    /// all the same.
    pub fn activity_refused(&self) -> usize {
        self.activity_refused.load(Ordering::SeqCst)
    }

    /// Samples stored.
    pub fn telemetry_count(&self) -> usize {
        self.telemetry
            .lock()
            .map(|t| t.values().map(|c| c.count).sum())
            .unwrap_or(0)
    }

    /// Chunks (items) stored.
    pub fn telemetry_items(&self) -> usize {
        self.telemetry.lock().map(|t| t.len()).unwrap_or(0)
    }
}

#[async_trait]
impl DeviceStore for MemoryDevices {
    async fn devices_with_iccids(
        &self,
        tenant: &TenantId,
        iccids: &[String],
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        let wanted: std::collections::HashSet<&str> = iccids.iter().map(String::as_str).collect();
        Ok(locked(&self.devices)
            .values()
            .filter(|d| d.tenant == *tenant && wanted.contains(d.iccid.as_str()))
            .map(|d| (d.iccid.clone(), d.thing_name.as_str().to_owned()))
            .collect())
    }

    async fn register(
        &self,
        a: &Announcement,
        now: OffsetDateTime,
    ) -> Result<Registration, StoreError> {
        let mut devices = locked(&self.devices);
        let existing = devices.get(&a.thing_name).cloned();
        if existing.as_ref().is_some_and(|d| d.tenant != a.tenant) {
            return Ok(Registration::OtherTenant);
        }
        let record = DeviceRecord {
            thing_name: a.thing_name.clone(),
            tenant: a.tenant.clone(),
            iccid: a.iccid.to_string(),
            imei: a.imei.as_ref().map(|i| i.to_string()),
            model: a.model.clone(),
            firmware: a.firmware.clone(),
            registered_at: existing.as_ref().map_or(now, |d| d.registered_at),
            presence: existing
                .as_ref()
                .map_or(Presence::announced(now), |d| d.presence),
        };
        devices.insert(a.thing_name.clone(), record);
        Ok(match existing {
            Some(before) => Registration::Updated {
                previous_iccid: before.iccid,
            },
            None => Registration::Created,
        })
    }

    async fn get_device(&self, thing_name: &ThingName) -> Result<Option<DeviceRecord>, StoreError> {
        Ok(locked(&self.devices).get(thing_name).cloned())
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
        let items: Vec<DeviceRecord> = locked(&self.devices)
            .values()
            .filter(|d| &d.tenant == tenant && after.as_ref().is_none_or(|a| &d.thing_name > a))
            .cloned()
            .collect();
        Ok(page_of(items, page.limit, |last| {
            cursor::encode(&AfterId {
                after: last.thing_name.to_string(),
            })
        }))
    }

    async fn apply_presence(
        &self,
        thing_name: &ThingName,
        event: &LifecycleEvent,
    ) -> Result<bool, StoreError> {
        let mut devices = locked(&self.devices);
        let Some(device) = devices.get_mut(thing_name) else {
            return Ok(false);
        };
        match device.presence.after_event(event) {
            Some(next) => {
                device.presence = next;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn record_activity(
        &self,
        thing_name: &ThingName,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut devices = locked(&self.devices);
        let Some(device) = devices.get_mut(thing_name) else {
            return Ok(false);
        };
        if device.presence.last_seen.is_some_and(|seen| seen >= at) {
            return Ok(false);
        }
        device.presence = device.presence.after_activity(at);
        Ok(true)
    }

    async fn last_seen_of(
        &self,
        things: &[ThingName],
    ) -> Result<HashMap<ThingName, LastSeen>, StoreError> {
        self.presence_available()?;
        self.activity_reads
            .fetch_add(things.len(), Ordering::SeqCst);
        let devices = locked(&self.devices);
        Ok(things
            .iter()
            .filter_map(|thing| {
                let device = devices.get(thing)?;
                Some((thing.clone(), device.presence.last_seen_state()))
            })
            .collect())
    }

    async fn record_activity_if_due(
        &self,
        thing_name: &ThingName,
        at: OffsetDateTime,
        interval: Duration,
    ) -> Result<bool, StoreError> {
        self.presence_available()?;
        let mut devices = locked(&self.devices);
        let due = devices
            .get(thing_name)
            .is_some_and(|d| d.presence.last_seen_state().is_moved_by(at, interval));
        match devices.get_mut(thing_name) {
            Some(device) if due => {
                device.presence = device.presence.after_activity(at);
                self.activity_writes.fetch_add(1, Ordering::SeqCst);
                Ok(true)
            }
            _ => {
                self.activity_refused.fetch_add(1, Ordering::SeqCst);
                Ok(false)
            }
        }
    }

    async fn write_telemetry(
        &self,
        batches: &[TelemetryBatch],
        _retention: Duration,
    ) -> Result<TelemetryWritten, StoreError> {
        let unique = unique_chunks(batches);
        let written = written(&unique);
        let parts = parts_of(unique.iter().map(|((device, _), chunk)| (device, chunk)));
        locked(&self.telemetry).extend(unique);
        let mut hours = locked(&self.hours);
        for ((device, hour_ms), parts) in parts {
            let summary = hours
                .entry((device, hour_ms))
                .or_insert_with(|| HourSummary {
                    hour_ms,
                    ..HourSummary::default()
                });
            for part in &parts {
                summary.fold(part);
            }
        }
        Ok(written)
    }

    async fn telemetry_hours(
        &self,
        thing_name: &ThingName,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<HourSummary>, StoreError> {
        let first = hour_of(epoch_ms(from));
        let hours = locked(&self.hours);
        Ok(hours
            .range((thing_name.clone(), first)..=(thing_name.clone(), epoch_ms(to)))
            .map(|(_, summary)| summary.clone())
            .collect())
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
        let chunks = locked(&self.telemetry);
        let keys = (thing_name.clone(), collector.first_key_ms())
            ..=(thing_name.clone(), collector.last_key_ms());
        for ((_, first_ms), chunk) in chunks.range(keys) {
            if collector.is_settled_before(*first_ms) {
                break;
            }
            collector.add(decoded(chunk)?, chunk.received_at);
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
        let chunks = locked(&self.telemetry);
        let newest = chunks
            .range((thing_name.clone(), i64::MIN)..=(thing_name.clone(), i64::MAX))
            .rev()
            .take(2)
            .map(|(_, chunk)| Ok((decoded(chunk)?, chunk.received_at)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(series::newest(newest))
    }

    async fn sweep_silent(
        &self,
        now: OffsetDateTime,
        timeout: Duration,
    ) -> Result<Vec<ThingName>, StoreError> {
        let mut swept = Vec::new();
        for (thing, device) in locked(&self.devices).iter_mut() {
            if device.presence.is_silent(now, timeout) {
                device.presence.timed_out = true;
                swept.push(thing.clone());
            }
        }
        Ok(swept)
    }
}

fn decoded(chunk: &Chunk) -> Result<series::Samples, StoreError> {
    series::decode(chunk.first_ms, &chunk.encoded).map_err(StoreError::Corrupt)
}

#[async_trait]
impl LiveFollowing for MemoryDevices {
    async fn extend_live(
        &self,
        thing_name: &ThingName,
        until: OffsetDateTime,
        renew_from: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        if !locked(&self.devices).contains_key(thing_name) {
            return Ok(false);
        }
        let mut windows = locked(&self.live_until);
        if windows
            .get(thing_name)
            .is_some_and(|end| *end >= renew_from)
        {
            return Ok(false);
        }
        windows.insert(thing_name.clone(), until);
        Ok(true)
    }

    async fn retract_live(
        &self,
        thing_name: &ThingName,
        until: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut windows = locked(&self.live_until);
        if windows.get(thing_name) == Some(&until) {
            windows.remove(thing_name);
        }
        Ok(())
    }

    async fn followed(
        &self,
        things: &[ThingName],
    ) -> Result<HashMap<ThingName, Followed>, StoreError> {
        let devices = locked(&self.devices);
        let windows = locked(&self.live_until);
        Ok(things
            .iter()
            .filter_map(|thing| {
                let device = devices.get(thing)?;
                let followed = Followed {
                    tenant: device.tenant.clone(),
                    live_until: windows.get(thing).copied(),
                };
                Some((thing.clone(), followed))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::LifecycleKind;
    use crate::registration::parse_announcement;
    use crate::telemetry::parse_telemetry;
    use serde_json::json;

    fn announce(tenant: &str) -> Announcement {
        let body = json!({"tenant": tenant, "iccid": cellbridge_core::testing::iccid(3), "model": "m", "firmware": "1"});
        parse_announcement("trk-1", body.to_string().as_bytes()).expect("valid")
    }

    /// The in-memory store keeps the rules the DynamoDB one has (tests/devices_on_local_aws.rs).
    #[tokio::test]
    async fn memory_devices_keep_the_same_rules() {
        let store = MemoryDevices::default();
        let now = OffsetDateTime::now_utc();
        assert_eq!(
            store.register(&announce("demo"), now).await.expect("ok"),
            Registration::Created
        );
        assert_eq!(
            store.register(&announce("demo"), now).await.expect("ok"),
            Registration::Updated {
                previous_iccid: cellbridge_core::testing::iccid(3)
            }
        );
        assert_eq!(
            store.register(&announce("globex"), now).await.expect("ok"),
            Registration::OtherTenant
        );
        let thing = ThingName::parse("trk-1").expect("name");
        let event = |kind, version| LifecycleEvent {
            kind,
            version,
            at: now,
        };
        assert!(store
            .apply_presence(&thing, &event(LifecycleKind::Connected, 2))
            .await
            .expect("ok"));
        assert!(!store
            .apply_presence(&thing, &event(LifecycleKind::Disconnected, 1))
            .await
            .expect("ok"));
        let point = |ts: i64| {
            let body = json!({"deviceId": "trk-1", "receivedAt": ts, "ts": ts, "temp": ts % 100});
            parse_telemetry(body.to_string().as_bytes()).expect("valid")
        };
        let received = 1_795_338_000_000_i64;
        let points = [point(received), point(received), point(received + 1000)];
        let written = store
            .write_telemetry(&points, Duration::days(1))
            .await
            .expect("ok");
        assert_eq!((written.samples, written.items), (2, 2));
        assert_eq!(store.telemetry_count(), 2);
        let latest = store.latest_telemetry(&thing).await.expect("ok");
        assert_eq!(latest.map(|p| p.at), Some(points[2].samples[0].at));
    }
}
