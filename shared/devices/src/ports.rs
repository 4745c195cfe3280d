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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    Created,
    /// Announced before: identifiers, model and firmware brought up to date.
    Updated,
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

    /// Applies a lifecycle event unless an equal or newer one was applied; false then, or when
    /// the device is not registered.
    async fn apply_presence(
        &self,
        thing_name: &crate::registration::ThingName,
        event: &crate::presence::LifecycleEvent,
    ) -> Result<bool, StoreError>;

    /// A heartbeat or other sign of life at `at`; false when an equal or later one is stored
    /// already, or the device is not registered.
    async fn record_activity(
        &self,
        thing_name: &crate::registration::ThingName,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Writes telemetry points, many per call (BatchWriteItem, 25 a request, unprocessed items
    /// retried). A point is keyed by device and time, so writing it again changes nothing.
    async fn write_telemetry(
        &self,
        points: &[crate::telemetry::TelemetryPoint],
        retention: time::Duration,
    ) -> Result<usize, StoreError>;

    /// The device's points with `from <= at <= to`, oldest first.
    async fn query_telemetry(
        &self,
        thing_name: &crate::registration::ThingName,
        from: OffsetDateTime,
        to: OffsetDateTime,
        page: &PageRequest,
    ) -> Result<Page<StoredPoint>, StoreError>;

    /// The device's newest point by its own time: the latest state. Read from the time series
    /// rather than kept on the device, so ingest writes each point once, and a duplicate or late
    /// delivery cannot change which point is newest. `None` before its first point.
    async fn latest_telemetry(
        &self,
        thing_name: &crate::registration::ThingName,
    ) -> Result<Option<StoredPoint>, StoreError>;

    /// The heartbeat sweep: marks timed out every connected device silent for longer than
    /// `timeout` at `now` (see `Presence::is_silent`) and returns them. A device heard from
    /// meanwhile is left alone.
    async fn sweep_silent(
        &self,
        now: OffsetDateTime,
        timeout: time::Duration,
    ) -> Result<Vec<crate::registration::ThingName>, StoreError>;
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
