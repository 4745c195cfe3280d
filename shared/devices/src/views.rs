//! What a caller sees of a device, its telemetry and its commands. The handlers serialize
//! views that borrow from the records; API clients deserialize the same types as owned values.

use crate::command::{Command, CommandId, CommandStatus, HistoryEntry};
use crate::registration::ThingName;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use time::OffsetDateTime;

/// A device with its status: online while connected (IoT Core's lifecycle events; MQTT
/// keep-alive holds the connection) and not timed out, offline otherwise (a lost disconnect shows
/// as offline once the device has been silent for the presence timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceStatus {
    Online,
    Offline,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceView<'a> {
    pub id: Cow<'a, str>,
    pub iccid: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imei: Option<Cow<'a, str>>,
    pub model: Cow<'a, str>,
    pub firmware: Cow<'a, str>,
    pub status: DeviceStatus,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub last_seen: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<TelemetryView<'a>>,
    #[serde(with = "time::serde::rfc3339")]
    pub registered_at: OffsetDateTime,
}

impl<'a> DeviceView<'a> {
    /// `latest` is the device's newest telemetry point (`DeviceStore::latest_telemetry`); the
    /// status is judged with the default presence timeout.
    pub fn new(
        device: &'a crate::ports::DeviceRecord,
        latest: Option<&'a crate::ports::StoredPoint>,
        now: OffsetDateTime,
    ) -> Self {
        Self::with_presence_timeout(
            device,
            latest,
            now,
            crate::presence::DEFAULT_PRESENCE_TIMEOUT,
        )
    }

    /// As [`DeviceView::new`], with the presence timeout the deployment configured
    /// (`crate::wiring::PresenceSettings`).
    pub fn with_presence_timeout(
        device: &'a crate::ports::DeviceRecord,
        latest: Option<&'a crate::ports::StoredPoint>,
        now: OffsetDateTime,
        presence_timeout: time::Duration,
    ) -> Self {
        let online = device.presence.is_online(now, presence_timeout);
        Self {
            id: Cow::Borrowed(device.thing_name.as_str()),
            iccid: Cow::Borrowed(&device.iccid),
            imei: device.imei.as_deref().map(Cow::Borrowed),
            model: Cow::Borrowed(&device.model),
            firmware: Cow::Borrowed(&device.firmware),
            status: if online {
                DeviceStatus::Online
            } else {
                DeviceStatus::Offline
            },
            last_seen: device.presence.last_seen,
            latest: latest.map(TelemetryView::from),
            registered_at: device.registered_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TelemetryView<'a> {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub received_at: Option<OffsetDateTime>,
    pub metrics: Cow<'a, serde_json::Map<String, serde_json::Value>>,
}

impl<'a> From<&'a crate::ports::StoredPoint> for TelemetryView<'a> {
    fn from(point: &'a crate::ports::StoredPoint) -> Self {
        Self {
            at: point.at,
            received_at: Some(point.received_at),
            metrics: Cow::Borrowed(&point.metrics),
        }
    }
}

/// An hour of a device's numeric telemetry: each metric's lowest, highest and mean, and how
/// many samples it had.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HourView {
    /// The hour's start.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub metrics: std::collections::BTreeMap<String, HourMetricView>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct HourMetricView {
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub count: u64,
}

impl From<&crate::summary::HourSummary> for HourView {
    fn from(hour: &crate::summary::HourSummary) -> Self {
        Self {
            at: cellbridge_core::clock::from_epoch_ms(hour.hour_ms),
            metrics: hour
                .metrics
                .iter()
                .map(|(name, summary)| {
                    let view = HourMetricView {
                        min: summary.min,
                        max: summary.max,
                        mean: summary.mean(),
                        count: summary.count,
                    };
                    (name.clone(), view)
                })
                .collect(),
        }
    }
}

/// A command as its sender sees it, with every status it went through.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandView<'a> {
    pub id: Cow<'a, str>,
    pub device_id: Cow<'a, str>,
    pub name: Cow<'a, str>,
    pub params: Cow<'a, serde_json::Map<String, serde_json::Value>>,
    pub status: CommandStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub sent_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    pub ack_timeout_seconds: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub history: Vec<HistoryView<'a>>,
    pub links: CommandLinks,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommandLinks {
    #[serde(rename = "self")]
    pub this: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryView<'a> {
    pub status: CommandStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Cow<'a, str>>,
}

impl<'a> From<&'a HistoryEntry> for HistoryView<'a> {
    fn from(entry: &'a HistoryEntry) -> Self {
        Self {
            status: entry.status,
            at: entry.at,
            detail: entry.detail.as_deref().map(Cow::Borrowed),
        }
    }
}

/// Where a command is found: its `Location` and its `self` link.
pub fn command_location(thing: &ThingName, id: &CommandId) -> String {
    format!("/devices/{thing}/commands/{id}")
}

impl<'a> From<&'a Command> for CommandView<'a> {
    fn from(command: &'a Command) -> Self {
        Self {
            id: Cow::Borrowed(command.id.as_str()),
            device_id: Cow::Borrowed(command.thing.as_str()),
            name: Cow::Borrowed(&command.name),
            params: Cow::Borrowed(&command.params),
            status: command.status,
            created_at: command.created_at,
            sent_at: command.sent_at,
            expires_at: command.deadlines.expires_at,
            ack_timeout_seconds: command.deadlines.ack_timeout.whole_seconds(),
            updated_at: command.updated_at(),
            history: command.history.iter().map(HistoryView::from).collect(),
            links: CommandLinks {
                this: command_location(&command.thing, &command.id),
            },
        }
    }
}
