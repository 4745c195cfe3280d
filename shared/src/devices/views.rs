//! What a caller sees of a device and its telemetry.

use serde::Serialize;
use time::OffsetDateTime;

/// A device with its status: online while connected and heard from within the heartbeat
/// timeout, offline otherwise (a lost disconnect shows as offline once the device is silent).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceView<'a> {
    pub id: &'a str,
    pub iccid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub imei: Option<&'a str>,
    pub model: &'a str,
    pub firmware: &'a str,
    pub status: &'static str,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub last_seen: Option<OffsetDateTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest: Option<TelemetryView<'a>>,
    #[serde(with = "time::serde::rfc3339")]
    pub registered_at: OffsetDateTime,
}

impl<'a> DeviceView<'a> {
    /// `latest` is the device's newest telemetry point (`DeviceStore::latest_telemetry`).
    pub fn new(
        device: &'a crate::devices::ports::DeviceRecord,
        latest: Option<&'a crate::devices::ports::StoredPoint>,
        now: OffsetDateTime,
    ) -> Self {
        let online = device
            .presence
            .is_online(now, crate::devices::presence::DEFAULT_HEARTBEAT_TIMEOUT);
        Self {
            id: device.thing_name.as_str(),
            iccid: &device.iccid,
            imei: device.imei.as_deref(),
            model: &device.model,
            firmware: &device.firmware,
            status: if online { "online" } else { "offline" },
            last_seen: device.presence.last_seen,
            latest: latest.map(TelemetryView::from),
            registered_at: device.registered_at,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TelemetryView<'a> {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub received_at: Option<OffsetDateTime>,
    pub metrics: &'a serde_json::Map<String, serde_json::Value>,
}

impl<'a> From<&'a crate::devices::ports::StoredPoint> for TelemetryView<'a> {
    fn from(point: &'a crate::devices::ports::StoredPoint) -> Self {
        Self {
            at: point.at,
            received_at: Some(point.received_at),
            metrics: &point.metrics,
        }
    }
}
