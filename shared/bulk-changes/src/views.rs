//! Response bodies: what a caller sees of a bulk change, its device changes and its audit trail.
//!
//! The handlers serialize views that borrow from the record; API clients deserialize the same
//! types as owned values (`BulkChangeView<'static>`), so the server and its clients cannot
//! disagree on a field.

use crate::bulk_change::{
    AuditEntry, AuditRecord, BulkChange, BulkChangeStatus, DeviceChange, DeviceChangeStatus,
};
use crate::change::{Carrier, ChangeSpec, DeviceEdit, DeviceRef};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use time::OffsetDateTime;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub total: u32,
    pub pending: u32,
    pub succeeded: u32,
    pub failed: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkChangeView<'a> {
    pub id: Cow<'a, str>,
    pub carrier: Carrier,
    /// The tenant's carrier account the changes go to, when the request named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_provider_id: Option<Cow<'a, str>>,
    pub change: Cow<'a, ChangeSpec>,
    pub process_changes: bool,
    pub status: BulkChangeStatus,
    /// Why a `failed` bulk change was never planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<Cow<'a, str>>,
    pub counts: Counts,
    /// Who submitted it (`user:<username>`).
    pub created_by: Cow<'a, str>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub links: Links,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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
            id: Cow::Borrowed(&change.bulk_change_id),
            carrier: change.carrier,
            service_provider_id: change.service_provider_id.as_deref().map(Cow::Borrowed),
            change: Cow::Borrowed(&change.change),
            process_changes: change.process_changes,
            status: change.status,
            failure_reason: change.failure_reason.as_deref().map(Cow::Borrowed),
            counts: Counts {
                total: change.counts.total,
                pending: change.counts.pending(),
                succeeded: change.counts.succeeded,
                failed: change.counts.failed,
            },
            created_by: Cow::Borrowed(&change.created_by),
            created_at: change.created_at,
            updated_at: change.updated_at,
            links: Links {
                devices: format!("{location}/devices"),
                this: location,
            },
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceChangeView<'a> {
    pub seq: u32,
    /// `iccid`, and `msisdn` / `imei` when given, at the top level.
    #[serde(flatten)]
    pub device: Cow<'a, DeviceRef>,
    /// The per-device part of the change, for the change types that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edit: Option<Cow<'a, DeviceEdit>>,
    pub status: DeviceChangeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<Cow<'a, str>>,
    pub attempts: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl<'a> From<&'a DeviceChange> for DeviceChangeView<'a> {
    fn from(change: &'a DeviceChange) -> Self {
        Self {
            seq: change.seq,
            device: Cow::Borrowed(&change.request.device),
            edit: match &change.request.edit {
                DeviceEdit::None => None,
                edit => Some(Cow::Borrowed(edit)),
            },
            status: change.status,
            status_reason: change.status_reason.as_deref().map(Cow::Borrowed),
            attempts: change.attempts,
            updated_at: change.updated_at,
        }
    }
}

/// One entry of a bulk change's audit trail: the entry as written, and the id that orders it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntryView<'a> {
    pub entry_id: Cow<'a, str>,
    #[serde(flatten)]
    pub entry: Cow<'a, AuditEntry>,
}

impl<'a> From<&'a AuditRecord> for AuditEntryView<'a> {
    fn from(record: &'a AuditRecord) -> Self {
        Self {
            entry_id: Cow::Borrowed(&record.entry_id),
            entry: Cow::Borrowed(&record.entry),
        }
    }
}
