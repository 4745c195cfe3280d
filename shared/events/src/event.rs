//! The event envelope and its types.

use cellbridge_core::tenant::TenantId;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

/// What changed. Later kinds (violations, towers, bookings, reports) are new variants; a
/// client that meets a type it does not know skips the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// A device went online or offline (`data.online`).
    #[serde(rename = "device.presence")]
    DevicePresence,
    /// A device announced itself for the first time.
    #[serde(rename = "device.registered")]
    DeviceRegistered,
    /// A device's latest telemetry, at most one a second per device.
    #[serde(rename = "telemetry.latest")]
    TelemetryLatest,
    /// A command to a device moved on (`data.commandId`, `data.status`).
    #[serde(rename = "command.status")]
    CommandStatus,
    /// A bulk change's counts, at most one a second per bulk change.
    #[serde(rename = "bulkChange.progress")]
    BulkChangeProgress,
    /// A bulk change finished.
    #[serde(rename = "bulkChange.completed")]
    BulkChangeCompleted,
    /// A SIM's status changed in the inventory.
    #[serde(rename = "sim.status")]
    SimStatusChanged,
}

impl EventType {
    pub const ALL: [EventType; 7] = [
        EventType::DevicePresence,
        EventType::DeviceRegistered,
        EventType::TelemetryLatest,
        EventType::CommandStatus,
        EventType::BulkChangeProgress,
        EventType::BulkChangeCompleted,
        EventType::SimStatusChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::DevicePresence => "device.presence",
            EventType::DeviceRegistered => "device.registered",
            EventType::TelemetryLatest => "telemetry.latest",
            EventType::CommandStatus => "command.status",
            EventType::BulkChangeProgress => "bulkChange.progress",
            EventType::BulkChangeCompleted => "bulkChange.completed",
            EventType::SimStatusChanged => "sim.status",
        }
    }

    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// What the event's `subject` names.
    pub fn subject_kind(self) -> SubjectKind {
        match self {
            EventType::DevicePresence
            | EventType::DeviceRegistered
            | EventType::TelemetryLatest
            | EventType::CommandStatus => SubjectKind::Device,
            EventType::BulkChangeProgress | EventType::BulkChangeCompleted => {
                SubjectKind::BulkChange
            }
            EventType::SimStatusChanged => SubjectKind::Sim,
        }
    }

    /// Whether several events of this type about one subject within a second are told as the
    /// last of them.
    pub fn coalesced(self) -> bool {
        matches!(
            self,
            EventType::TelemetryLatest | EventType::BulkChangeProgress
        )
    }
}

/// The kind of thing an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    /// A device's thing name (a command's events are its device's).
    Device,
    BulkChange,
    /// A SIM's ICCID.
    Sim,
}

/// A change, before the tenant's stream gives it its place.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub tenant: TenantId,
    pub kind: EventType,
    pub subject: String,
    pub at: OffsetDateTime,
    pub data: Value,
    /// The change-stream record it was read from: a batch handed again after a failure does not
    /// tell it twice.
    pub source: Option<String>,
}

/// One event of a tenant's stream, as every client receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Its place in the tenant's stream: one more than the event before.
    pub seq: u64,
    pub tenant: TenantId,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub subject: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub data: Value,
}

impl Change {
    /// The event this change is at `seq` of its tenant's stream.
    pub fn at_seq(self, seq: u64) -> Event {
        Event {
            seq,
            tenant: self.tenant,
            kind: self.kind,
            subject: self.subject,
            at: self.at,
            data: self.data,
        }
    }
}

/// The changes of one batch as the stream tells them: in order, and of the coalesced types only
/// the last of each subject within each second (by the change's own time).
pub fn coalesce(changes: Vec<Change>) -> Vec<Change> {
    let mut kept: Vec<Change> = Vec::with_capacity(changes.len());
    for change in changes {
        let second = change.at.unix_timestamp();
        let earlier = kept.iter().rposition(|k| {
            k.kind.coalesced()
                && k.kind == change.kind
                && k.tenant == change.tenant
                && k.subject == change.subject
                && k.at.unix_timestamp() == second
        });
        if let Some(index) = earlier.filter(|_| change.kind.coalesced()) {
            kept.remove(index);
        }
        kept.push(change);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn change(kind: EventType, subject: &str, ms: i64) -> Change {
        Change {
            tenant: TenantId::parse("demo").expect("tenant"),
            kind,
            subject: subject.into(),
            at: OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(ms),
            data: json!({"ms": ms}),
            source: None,
        }
    }

    #[test]
    fn the_envelope_is_what_clients_read() {
        let event = change(EventType::DevicePresence, "trk-1", 1_500).at_seq(42);
        let wire = serde_json::to_value(&event).expect("json");
        assert_eq!(
            wire,
            json!({"seq": 42, "tenant": "demo", "type": "device.presence", "subject": "trk-1",
                   "at": "1970-01-01T00:00:01.5Z", "data": {"ms": 1_500}})
        );
        let back: Event = serde_json::from_value(wire).expect("read back");
        assert_eq!(back, event);
        for kind in EventType::ALL {
            assert_eq!(EventType::parse(kind.as_str()), Some(kind));
            assert_eq!(
                serde_json::to_value(kind).expect("json"),
                json!(kind.as_str())
            );
        }
    }

    #[test]
    fn telemetry_and_progress_keep_the_last_of_each_second_the_rest_all() {
        use EventType::*;
        let changes = vec![
            change(TelemetryLatest, "trk-1", 100),
            change(BulkChangeProgress, "bc-1", 200),
            change(TelemetryLatest, "trk-2", 300),
            change(TelemetryLatest, "trk-1", 900),
            change(DevicePresence, "trk-1", 950),
            change(DevicePresence, "trk-1", 960),
            change(BulkChangeProgress, "bc-1", 999),
            change(TelemetryLatest, "trk-1", 1_000),
            change(BulkChangeCompleted, "bc-1", 1_001),
        ];
        let kept: Vec<(EventType, String, i64)> = coalesce(changes)
            .into_iter()
            .map(|c| {
                let ms = (c.at - OffsetDateTime::UNIX_EPOCH).whole_milliseconds();
                (c.kind, c.subject, i64::try_from(ms).expect("ms"))
            })
            .collect();
        let expected = [
            (TelemetryLatest, "trk-2", 300),
            (TelemetryLatest, "trk-1", 900),
            (DevicePresence, "trk-1", 950),
            (DevicePresence, "trk-1", 960),
            (BulkChangeProgress, "bc-1", 999),
            (TelemetryLatest, "trk-1", 1_000),
            (BulkChangeCompleted, "bc-1", 1_001),
        ]
        .map(|(kind, subject, ms)| (kind, subject.to_owned(), ms));
        assert_eq!(kept, expected);
    }
}
