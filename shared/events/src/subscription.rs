//! What a connection asked to receive: event types, devices, bulk changes (each empty = all).

use crate::event::{Event, EventType, SubjectKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// At most this many devices or bulk changes in one filter: a connection that follows more
/// follows them all.
pub const MAX_SUBJECTS: usize = 1_000;
/// The longest device or bulk change name a filter takes (thing names are at most 128).
pub const MAX_SUBJECT_LENGTH: usize = 128;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subscription {
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub types: BTreeSet<EventType>,
    /// Thing names: their presence, telemetry and commands.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub devices: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub bulk_changes: BTreeSet<String>,
}

impl Subscription {
    /// Whether `event` is one this subscription receives. A device or bulk change list narrows
    /// only the events about devices or bulk changes.
    pub fn matches(&self, event: &Event) -> bool {
        let of_type = self.types.is_empty() || self.types.contains(&event.kind);
        let of_subject = match event.kind.subject_kind() {
            SubjectKind::Device => self.devices.is_empty() || self.devices.contains(&event.subject),
            SubjectKind::BulkChange => {
                self.bulk_changes.is_empty() || self.bulk_changes.contains(&event.subject)
            }
            SubjectKind::Sim => true,
        };
        of_type && of_subject
    }

    /// The devices whose telemetry it asks for by name, in name order: while one does, a device
    /// streams every sample rather than send batches. None for a filter on every device: a
    /// fleet's worth of devices does not stream.
    pub fn followed_devices(&self) -> impl Iterator<Item = &str> {
        let telemetry = self.wants_telemetry();
        self.devices
            .iter()
            .map(String::as_str)
            .filter(move |_| telemetry)
    }

    fn wants_telemetry(&self) -> bool {
        self.types.is_empty() || self.types.contains(&EventType::TelemetryLatest)
    }
}
