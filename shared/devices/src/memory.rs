//! The device registry and telemetry in memory, for unit tests.

use crate::dynamodb::{decode_after_ms, encode_after_ms, unique_points};
use crate::ports::{DeviceRecord, DeviceStore, Registration, StoredPoint};
use crate::presence::{LifecycleEvent, Presence};
use crate::registration::{Announcement, ThingName};
use crate::telemetry::TelemetryPoint;
use async_trait::async_trait;
use cellbridge_core::cursor;
use cellbridge_core::cursor::AfterId;
use cellbridge_core::dynamodb::epoch_ms;
use cellbridge_core::memory::{locked, page_of};
use cellbridge_core::store::{Page, PageRequest, StoreError};
use cellbridge_core::tenant::TenantId;
use std::collections::BTreeMap;
use std::sync::Mutex;
use time::{Duration, OffsetDateTime};

/// Devices in memory, with the same rules.
#[derive(Debug, Default)]
pub struct MemoryDevices {
    devices: Mutex<BTreeMap<ThingName, DeviceRecord>>,
    telemetry: Mutex<BTreeMap<(ThingName, i64), TelemetryPoint>>,
}

impl MemoryDevices {
    pub fn telemetry_count(&self) -> usize {
        self.telemetry.lock().map(|t| t.len()).unwrap_or(0)
    }
}

#[async_trait]
impl DeviceStore for MemoryDevices {
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
        Ok(if existing.is_some() {
            Registration::Updated
        } else {
            Registration::Created
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

    async fn write_telemetry(
        &self,
        points: &[TelemetryPoint],
        _retention: Duration,
    ) -> Result<usize, StoreError> {
        let unique = unique_points(points);
        let mut series = locked(&self.telemetry);
        for point in &unique {
            series.insert((point.device.clone(), epoch_ms(point.at)), (*point).clone());
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
        let series = locked(&self.telemetry);
        let items: Vec<StoredPoint> = series
            .range((thing_name.clone(), epoch_ms(from))..=(thing_name.clone(), epoch_ms(to)))
            .filter(|((_, at), _)| after.is_none_or(|a| *at > a))
            .map(|(_, p)| stored(p))
            .collect();
        Ok(page_of(items, page.limit, |last| {
            encode_after_ms(epoch_ms(last.at))
        }))
    }

    async fn latest_telemetry(
        &self,
        thing_name: &ThingName,
    ) -> Result<Option<StoredPoint>, StoreError> {
        Ok(locked(&self.telemetry)
            .range((thing_name.clone(), i64::MIN)..=(thing_name.clone(), i64::MAX))
            .next_back()
            .map(|(_, p)| stored(p)))
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

fn stored(point: &TelemetryPoint) -> StoredPoint {
    StoredPoint {
        at: point.at,
        received_at: point.received_at,
        metrics: point.metrics_json(),
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
            Registration::Updated
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
        assert_eq!(
            store
                .write_telemetry(&points, Duration::days(1))
                .await
                .expect("ok"),
            2
        );
        assert_eq!(store.telemetry_count(), 2);
        let latest = store.latest_telemetry(&thing).await.expect("ok");
        assert_eq!(latest.map(|p| p.at), Some(points[2].at));
    }
}
