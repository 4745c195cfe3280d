//! The device ports: the registry with presence and telemetry, the command store, the thing
//! registry and publishing to device topics.

use async_trait::async_trait;
use cellbridge_core::store::IdempotencyClaim;
use cellbridge_core::store::{Page, PageRequest, StoreError};
use cellbridge_core::tenant::TenantId;
use time::OffsetDateTime;

/// A registered device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRecord {
    pub thing_name: crate::registration::ThingName,
    pub tenant: TenantId,
    pub iccid: String,
    pub imei: Option<String>,
    pub model: String,
    pub firmware: String,
    pub registered_at: OffsetDateTime,
    pub presence: crate::presence::Presence,
}

/// A telemetry point as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPoint {
    pub at: OffsetDateTime,
    pub received_at: OffsetDateTime,
    pub metrics: serde_json::Map<String, serde_json::Value>,
}

/// What a telemetry write stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TelemetryWritten {
    pub samples: usize,
    /// Stored items (chunks), after duplicates within the call were merged.
    pub items: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    Created,
    /// Announced before: identifiers, model and firmware brought up to date. The ICCID it had
    /// until now tells whether the device moved to another SIM.
    Updated {
        previous_iccid: String,
    },
    /// The thing name belongs to another tenant; nothing changed.
    OtherTenant,
}

#[async_trait]
pub trait DeviceStore: Send + Sync {
    async fn register(
        &self,
        announcement: &crate::registration::Announcement,
        now: OffsetDateTime,
    ) -> Result<Registration, StoreError>;

    async fn get_device(
        &self,
        thing_name: &crate::registration::ThingName,
    ) -> Result<Option<DeviceRecord>, StoreError>;

    async fn list_devices(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Page<DeviceRecord>, StoreError>;

    /// The thing names of `tenant`'s registered devices whose SIM is one of `iccids`, by ICCID
    /// (one device per SIM; for a SIM two devices named, either).
    async fn devices_with_iccids(
        &self,
        tenant: &TenantId,
        iccids: &[String],
    ) -> Result<std::collections::HashMap<String, String>, StoreError>;

    /// Applies a lifecycle event unless an equal or newer one was applied; false then, or when
    /// the device is not registered.
    async fn apply_presence(
        &self,
        thing_name: &crate::registration::ThingName,
        event: &crate::presence::LifecycleEvent,
    ) -> Result<bool, StoreError>;

    /// A sign of life at `at`, written whatever the interval since the last one (the functions
    /// go through the write gate and [`DeviceStore::record_activity_if_due`]); false when an
    /// equal or later one is stored already, or the device is not registered.
    async fn record_activity(
        &self,
        thing_name: &crate::registration::ThingName,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// The stored last sign of life of each of `things` that is registered; the others are left
    /// out. Many per call, read eventually consistent (on DynamoDB `BatchGetItem`, 100 keys a
    /// request, half a read unit a device): the write gate's read, where a value a moment old
    /// only costs a refused write.
    ///
    /// The default reads device by device; the adapters override it.
    async fn last_seen_of(
        &self,
        things: &[crate::registration::ThingName],
    ) -> Result<
        std::collections::HashMap<crate::registration::ThingName, crate::presence::LastSeen>,
        StoreError,
    > {
        let mut found = std::collections::HashMap::new();
        for thing in things {
            if let Some(device) = self.get_device(thing).await? {
                found.insert(thing.clone(), device.presence.last_seen_state());
            }
        }
        Ok(found)
    }

    /// A sign of life at `at`, written only when [`crate::presence::LastSeen::is_moved_by`]
    /// holds for what is stored (at most once per `interval`; never back in time; clears the
    /// sweep's mark). The adapters make it one conditional write, so of instances racing, one
    /// moves it. False when it was not due, or the device is not registered.
    ///
    /// The default reads, then writes with [`DeviceStore::record_activity`]: not one atomic step,
    /// for test doubles only; the adapters override it.
    async fn record_activity_if_due(
        &self,
        thing_name: &crate::registration::ThingName,
        at: OffsetDateTime,
        interval: time::Duration,
    ) -> Result<bool, StoreError> {
        let due = self
            .get_device(thing_name)
            .await?
            .is_some_and(|device| device.presence.last_seen_state().is_moved_by(at, interval));
        if !due {
            return Ok(false);
        }
        self.record_activity(thing_name, at).await
    }

    /// Writes telemetry messages, many per call, each as its chunks ([`crate::series`];
    /// BatchWriteItem, 25 items a request, unprocessed items retried), then folds the chunks into
    /// the hourly summaries of their devices. A chunk is keyed by device and first sample time,
    /// and a summary remembers the chunks in it, so writing a message again changes nothing.
    async fn write_telemetry(
        &self,
        batches: &[crate::telemetry::TelemetryBatch],
        retention: time::Duration,
    ) -> Result<TelemetryWritten, StoreError>;

    /// The device's hourly summaries ([`crate::summary`]) of the hours from the one `from`
    /// falls in through the one `to` falls in, oldest first. [`DeviceStore::write_telemetry`]
    /// keeps them: a chart of a long range reads these rather than every sample.
    async fn telemetry_hours(
        &self,
        thing_name: &crate::registration::ThingName,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<crate::summary::HourSummary>, StoreError>;

    /// The device's samples with `from <= at <= to`, oldest first, one per time.
    async fn query_telemetry(
        &self,
        thing_name: &crate::registration::ThingName,
        from: OffsetDateTime,
        to: OffsetDateTime,
        page: &PageRequest,
    ) -> Result<Page<StoredPoint>, StoreError>;

    /// The device's newest sample by its own time: the latest state. Read from the time series
    /// rather than kept on the device, so ingest writes each sample once, and a duplicate or late
    /// delivery cannot change which sample is newest. `None` before its first sample.
    async fn latest_telemetry(
        &self,
        thing_name: &crate::registration::ThingName,
    ) -> Result<Option<StoredPoint>, StoreError>;

    /// The presence sweep: marks timed out every connected device not heard from for longer
    /// than `timeout` at `now` (see `Presence::is_silent`) and returns them. A device heard from
    /// meanwhile is left alone.
    async fn sweep_silent(
        &self,
        now: OffsetDateTime,
        timeout: time::Duration,
    ) -> Result<Vec<crate::registration::ThingName>, StoreError>;
}

/// Whose a device is, and until when it streams for its followers ([`crate::live`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Followed {
    pub tenant: TenantId,
    /// `None` when no one asked it to stream, or not since it registered.
    pub live_until: Option<OffsetDateTime>,
}

impl Followed {
    /// Whether someone follows the device at `at`.
    pub fn is_followed(&self, at: OffsetDateTime) -> bool {
        self.live_until.is_some_and(|until| at <= until)
    }
}

/// Who follows which device live: kept on the device's record, as the one place the telemetry
/// of a device (which names no tenant) is tied to its tenant.
#[async_trait]
pub trait LiveFollowing: Send + Sync {
    /// Moves the device's live window to end at `until`, unless it already ends at
    /// `renew_from` or later; false then, or when the device is not registered. One
    /// conditional write: of followers racing, one renews, so one `live` command goes out.
    async fn extend_live(
        &self,
        thing_name: &crate::registration::ThingName,
        until: OffsetDateTime,
        renew_from: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Takes back a window [`LiveFollowing::extend_live`] set to `until` when its `live`
    /// command did not go out, so the follower's next renewal tries again; a window moved on
    /// since is left alone.
    async fn retract_live(
        &self,
        thing_name: &crate::registration::ThingName,
        until: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// The tenant and live window of each of `things` that is registered (one whose item cannot
    /// be read is left out too); the others are left
    /// out. Many per call (on DynamoDB `BatchGetItem`, eventually consistent: a window renewed a
    /// moment ago may be read a moment late).
    async fn followed(
        &self,
        things: &[crate::registration::ThingName],
    ) -> Result<std::collections::HashMap<crate::registration::ThingName, Followed>, StoreError>;
}

// ------------------------------------------------------------------------------------------------
// Devices on AWS IoT Core: the thing registry and publishing to device topics.

#[derive(Debug, thiserror::Error)]
#[error("publishing to {topic} failed: {reason}")]
pub struct PublishError {
    pub topic: String,
    pub reason: String,
}

/// Publishes to MQTT topics through the IoT data plane (QoS 1).
#[async_trait]
pub trait DevicePublisher: Send + Sync {
    async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<(), PublishError>;
}

/// What the IoT thing registry holds about a device: searchable attributes, not the full record
/// (DynamoDB has that).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThingAttributes {
    pub tenant: TenantId,
    pub iccid: String,
    pub imei: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ThingRegistryError {
    /// Throttled, timed out, unreachable or a 5xx: the same call may succeed later.
    #[error("the IoT thing registry is unavailable: {0}")]
    Unavailable(String),
    /// Refused for good (an invalid thing name or type, access denied).
    #[error("the IoT thing registry refused the request: {0}")]
    Rejected(String),
}

impl ThingRegistryError {
    /// Whether the same call may succeed if tried again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ThingRegistryError::Unavailable(_))
    }
}

/// The AWS IoT thing registry.
#[async_trait]
pub trait ThingRegistry: Send + Sync {
    /// Creates the thing, or brings its attributes up to date when it exists (idempotent).
    async fn upsert_thing(
        &self,
        thing_name: &crate::registration::ThingName,
        attributes: &ThingAttributes,
    ) -> Result<(), ThingRegistryError>;
}

// ------------------------------------------------------------------------------------------------
// Device commands: stored, published to the device, acknowledged by it or given up by the sweep.

/// What became of a status change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The command is now in this status.
    Applied(crate::command::CommandStatus),
    /// Nothing changed: the command is already at or past the status asked for (a duplicate or
    /// late message), or, for the sweep, not due.
    Stale {
        current: crate::command::CommandStatus,
    },
    /// The thing has no such command.
    Missing,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CommandCreated {
    Created,
    /// The idempotency key was already used; this is the command it created.
    Replayed {
        existing: Box<crate::command::Command>,
        same_request: bool,
    },
}

#[async_trait]
pub trait CommandStore: Send + Sync {
    /// Stores a new command; with a claim, atomically with it. A key already used (per tenant)
    /// stores nothing and answers the command it made.
    async fn create_command(
        &self,
        command: &crate::command::Command,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<CommandCreated, StoreError>;

    async fn get_command(
        &self,
        thing: &crate::registration::ThingName,
        id: &crate::command::CommandId,
    ) -> Result<Option<crate::command::Command>, StoreError>;

    /// The thing's commands, newest first.
    async fn list_commands(
        &self,
        thing: &crate::registration::ThingName,
        page: &PageRequest,
    ) -> Result<Page<crate::command::Command>, StoreError>;

    /// The thing's QUEUED commands not expired at `now`, oldest first, at most `limit`; read
    /// consistently, so a command stored before its device connected is never missed.
    async fn queued_commands(
        &self,
        thing: &crate::registration::ThingName,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<crate::command::Command>, StoreError>;

    /// Moves the command to `to` if that is forward (`CommandStatus::may_become`), in a
    /// conditional write; a repeated or late change is `Stale` and changes nothing.
    async fn transition(
        &self,
        thing: &crate::registration::ThingName,
        id: &crate::command::CommandId,
        to: crate::command::CommandStatus,
        at: OffsetDateTime,
        detail: Option<&str>,
    ) -> Result<Transition, StoreError>;

    /// Applies the sweep's rule (`Command::swept`) at `now` to the command as it is stored now
    /// (not as the index showed it): TIMEOUT or EXPIRED, or `Stale` when not due.
    async fn sweep_command(
        &self,
        thing: &crate::registration::ThingName,
        id: &crate::command::CommandId,
        now: OffsetDateTime,
    ) -> Result<Transition, StoreError>;

    /// Open commands whose next deadline is at or before `now`, at most `limit`. Read from an
    /// index that lags a little, so one may have just finished: `sweep_command` re-reads.
    async fn due_for_sweep(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<(crate::registration::ThingName, crate::command::CommandId)>, StoreError>;
}
