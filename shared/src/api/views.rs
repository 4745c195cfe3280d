//! Response bodies: what a caller sees of a bulk change and its device changes.

use crate::domain::{
    BulkChange, BulkChangeStatus, Carrier, ChangeSpec, DeviceChange, DeviceChangeStatus,
    DeviceEdit, DeviceRef,
};
use crate::ports::Page;
use serde::Serialize;
use time::OffsetDateTime;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub total: u32,
    pub pending: u32,
    pub succeeded: u32,
    pub failed: u32,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkChangeView<'a> {
    pub id: &'a str,
    pub carrier: Carrier,
    pub change: &'a ChangeSpec,
    pub process_changes: bool,
    pub status: BulkChangeStatus,
    pub counts: Counts,
    /// Who submitted it (`user:<username>`).
    pub created_by: &'a str,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub links: Links,
}

#[derive(Debug, Serialize)]
pub struct Links {
    #[serde(rename = "self")]
    pub this: String,
    pub devices: String,
}

pub fn bulk_change_location(id: &str) -> String {
    format!("/bulk-changes/{id}")
}

impl<'a> From<&'a BulkChange> for BulkChangeView<'a> {
    fn from(change: &'a BulkChange) -> Self {
        let location = bulk_change_location(&change.bulk_change_id);
        Self {
            id: &change.bulk_change_id,
            carrier: change.carrier,
            change: &change.change,
            process_changes: change.process_changes,
            status: change.status,
            counts: Counts {
                total: change.counts.total,
                pending: change.counts.pending(),
                succeeded: change.counts.succeeded,
                failed: change.counts.failed,
            },
            created_by: &change.created_by,
            created_at: change.created_at,
            updated_at: change.updated_at,
            links: Links {
                devices: format!("{location}/devices"),
                this: location,
            },
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceChangeView<'a> {
    pub seq: u32,
    /// `iccid`, and `msisdn` / `imei` when given, at the top level.
    #[serde(flatten)]
    pub device: &'a DeviceRef,
    /// The per-device part of the change, for the change types that have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edit: Option<&'a DeviceEdit>,
    pub status: DeviceChangeStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<&'a str>,
    pub attempts: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl<'a> From<&'a DeviceChange> for DeviceChangeView<'a> {
    fn from(change: &'a DeviceChange) -> Self {
        Self {
            seq: change.seq,
            device: &change.request.device,
            edit: match &change.request.edit {
                DeviceEdit::None => None,
                edit => Some(edit),
            },
            status: change.status,
            status_reason: change.status_reason.as_deref(),
            attempts: change.attempts,
            updated_at: change.updated_at,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PageView<T: Serialize> {
    pub items: Vec<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl<T: Serialize> PageView<T> {
    pub fn from_page<'a, S: 'a>(page: &'a Page<S>, view: impl Fn(&'a S) -> T) -> Self {
        Self {
            items: page.items.iter().map(view).collect(),
            next_cursor: page.next_cursor.clone(),
        }
    }
}

/// A user as an admin of its tenant sees it: never the password hash.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserView<'a> {
    pub username: &'a str,
    pub tenant: &'a str,
    pub roles: Vec<&'static str>,
    /// True while wrong passwords keep it locked.
    pub locked: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl<'a> UserView<'a> {
    pub fn new(user: &'a crate::ports::UserRecord, now: OffsetDateTime) -> Self {
        Self {
            username: user.username.as_str(),
            tenant: user.tenant.as_str(),
            roles: user.roles.iter().map(|r| r.as_str()).collect(),
            locked: crate::auth::lockout::is_locked(user.locked_until, now),
            created_at: user.created_at,
        }
    }
}

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
        device: &'a crate::ports::DeviceRecord,
        latest: Option<&'a crate::ports::StoredPoint>,
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

impl<'a> From<&'a crate::ports::StoredPoint> for TelemetryView<'a> {
    fn from(point: &'a crate::ports::StoredPoint) -> Self {
        Self {
            at: point.at,
            received_at: Some(point.received_at),
            metrics: &point.metrics,
        }
    }
}
