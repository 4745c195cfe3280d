//! The ports handlers depend on. Adapters (DynamoDB, SQS, S3, in-memory) implement them.

use crate::domain::carrier_error::CarrierError;
use crate::domain::{
    AuditEntry, BulkChange, BulkChangeStatus, Carrier, ChangeSpec, DeviceChange, DeviceRef,
    DeviceRequest, TenantId,
};
use crate::messages::{PlanMessage, WorkMessage};
use async_trait::async_trait;
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the pagination cursor is not one this API issued")]
    InvalidCursor,
    #[error("a stored record could not be read: {0}")]
    Corrupt(String),
    #[error("the store failed: {0}")]
    Backend(String),
}

#[derive(Debug, thiserror::Error)]
#[error("the queue failed: {0}")]
pub struct QueueError(pub String);

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("payload {0} does not exist")]
    Missing(String),
    #[error("the payload store failed: {0}")]
    Backend(String),
}

/// A page of results and the opaque cursor of the next one, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub cursor: Option<String>,
}

/// Whether a worker may go ahead with a unit of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Go ahead. `resumed`: an earlier holder of the same retry stopped without finishing (its
    /// call may have reached the carrier), so check the device before sending again.
    Granted { resumed: bool },
    /// Another delivery of the same retry holds it until `until`: try again after that, in case
    /// that holder dies.
    Held { until: OffsetDateTime },
    /// A later retry replaced this message: nothing left for it to do.
    Superseded,
}

/// How a device change ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceOutcome {
    pub succeeded: bool,
    pub reason: Option<String>,
    /// Carrier calls made for it so far.
    pub attempts: u32,
}

/// Where a submitted device change lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmittedRef {
    pub tenant: TenantId,
    pub bulk_change_id: String,
    pub seq: u32,
}

/// Binds an idempotency key to the request it first came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    pub key: String,
    /// Digest of the request body, to tell a retry from a different request reusing the key.
    pub request_digest: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CreateOutcome {
    Created,
    /// The idempotency key was already used; this is the bulk change it created.
    Replayed {
        existing: Box<BulkChange>,
        same_request: bool,
    },
}

#[async_trait]
pub trait BulkChangeStore: Send + Sync {
    /// Writes a new bulk change, atomically with its idempotency claim when there is one.
    async fn create_bulk_change(
        &self,
        change: &BulkChange,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<CreateOutcome, StoreError>;

    async fn get_bulk_change(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<BulkChange>, StoreError>;

    async fn list_bulk_changes(
        &self,
        tenant: &TenantId,
        status: Option<BulkChangeStatus>,
        page: &PageRequest,
    ) -> Result<Page<BulkChange>, StoreError>;

    /// Moves a bulk change out of `from`; false when it was no longer in `from` (a redelivery).
    async fn transition(
        &self,
        tenant: &TenantId,
        id: &str,
        from: BulkChangeStatus,
        to: BulkChangeStatus,
    ) -> Result<bool, StoreError>;

    /// Moves a new bulk change to `scheduled`, to be released at `release_at`; false when it was
    /// no longer new.
    async fn schedule(
        &self,
        tenant: &TenantId,
        id: &str,
        release_at: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Scheduled bulk changes of every tenant whose release time is at or before `now`.
    async fn due_for_release(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<(TenantId, String)>, StoreError>;

    /// Writes device changes that do not exist yet; existing ones are left untouched so a
    /// redelivered plan never resets work already done. Returns how many were new.
    async fn insert_device_changes(
        &self,
        tenant: &TenantId,
        changes: &[DeviceChange],
    ) -> Result<usize, StoreError>;

    async fn list_device_changes(
        &self,
        tenant: &TenantId,
        bulk_change_id: &str,
        page: &PageRequest,
    ) -> Result<Page<DeviceChange>, StoreError>;

    /// The device changes with sequence numbers in `seqs`, in order.
    async fn get_device_changes(
        &self,
        tenant: &TenantId,
        bulk_change_id: &str,
        seqs: std::ops::Range<u32>,
    ) -> Result<Vec<DeviceChange>, StoreError>;

    /// Claims the work unit `unit` (one message's device changes) for retry `retry_number` until `now + lease`,
    /// so a duplicate delivery never calls the carrier while the first is at it, and a message
    /// from an earlier retry never runs after a later one was queued.
    async fn claim_work(
        &self,
        tenant: &TenantId,
        bulk_change_id: &str,
        unit: &str,
        retry_number: u32,
        now: OffsetDateTime,
        lease: std::time::Duration,
    ) -> Result<Claim, StoreError>;

    /// Notes that the carrier accepted a pending device change as part of request
    /// `carrier_request_id`; false when it was no longer pending.
    async fn record_submitted(
        &self,
        tenant: &TenantId,
        bulk_change_id: &str,
        seq: u32,
        iccid: &str,
        carrier_request_id: &str,
    ) -> Result<bool, StoreError>;

    /// The device change a carrier request covers for `iccid` (for callbacks, which name only
    /// the carrier's request id and the device).
    async fn find_submitted(
        &self,
        carrier_request_id: &str,
        iccid: &str,
    ) -> Result<Option<SubmittedRef>, StoreError>;

    /// Moves a pending device change to its outcome and counts it on the bulk change, in one
    /// atomic write; false when it was already finished (a duplicate).
    async fn finish_device_change(
        &self,
        tenant: &TenantId,
        bulk_change_id: &str,
        seq: u32,
        outcome: &DeviceOutcome,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    async fn append_audit(&self, tenant: &TenantId, entry: &AuditEntry) -> Result<(), StoreError>;

    async fn list_audit(
        &self,
        tenant: &TenantId,
        bulk_change_id: &str,
    ) -> Result<Vec<AuditEntry>, StoreError>;
}

#[async_trait]
pub trait WorkQueues: Send + Sync {
    async fn enqueue_plan(&self, message: &PlanMessage) -> Result<(), QueueError>;
    /// Sends to `carrier`'s work queue in batches, each message held back `delay` (at most
    /// 15 minutes); all messages are sent or an error names what was not.
    async fn enqueue_work(
        &self,
        carrier: Carrier,
        messages: &[WorkMessage],
        delay: std::time::Duration,
    ) -> Result<(), QueueError>;
}

/// Large request bodies (a 10,000-device list) live here, not in queue messages or table items.
#[async_trait]
pub trait PayloadStore: Send + Sync {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), PayloadError>;
    async fn get(&self, key: &str) -> Result<Vec<u8>, PayloadError>;
}

/// The ports of the bulk-change flows, shared by the functions that need them.
#[derive(Clone)]
pub struct BulkChangePorts {
    pub store: std::sync::Arc<dyn BulkChangeStore>,
    pub queues: std::sync::Arc<dyn WorkQueues>,
    pub payloads: std::sync::Arc<dyn PayloadStore>,
}

/// What a carrier says about a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarrierDevice {
    pub iccid: String,
    /// The carrier's own status name (e.g. Jasper's `ACTIVATED`).
    pub status: String,
    pub rate_plan: Option<String>,
}

/// How a carrier took a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CarrierOutcome {
    /// Done when the call returned.
    Completed,
    /// Accepted for later (a future effective date, or an asynchronous carrier); `request_id`
    /// tracks it when the carrier gives one, and [`CarrierPort::check`] follows it up.
    Accepted { request_id: Option<String> },
}

/// Where an accepted request stands for one of its devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestProgress {
    Pending,
    Succeeded,
    Failed(CarrierError),
}

/// One HTTP exchange with a carrier, with secrets already removed: it becomes an audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarrierExchange {
    pub method: String,
    pub url: String,
    pub request_body: Option<String>,
    /// `None` when no answer came (timeout, connection failure).
    pub status: Option<u16>,
    pub response_body: Option<String>,
    pub duration: std::time::Duration,
}

/// Collects the exchanges of one operation, so the caller can audit every carrier call, including
/// the ones an adapter makes on its own (token renewals, retries of a stale session).
#[derive(Debug, Default)]
pub struct CallJournal {
    exchanges: std::sync::Mutex<Vec<CarrierExchange>>,
}

impl CallJournal {
    pub fn record(&self, exchange: CarrierExchange) {
        self.exchanges
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(exchange);
    }

    pub fn take(&self) -> Vec<CarrierExchange> {
        std::mem::take(
            &mut *self
                .exchanges
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// Admission to call one carrier account, shared by every worker instance: Jasper allows one call
/// in flight per account, and Lambda runs at least two instances of a queue's consumer.
#[async_trait]
pub trait AccountGate: Send + Sync {
    /// Waits until no other caller holds `account` and `spacing` has passed since the last call
    /// began, then holds it for at most `hold` (a holder that dies frees it by then).
    async fn enter(
        &self,
        account: &str,
        spacing: std::time::Duration,
        hold: std::time::Duration,
    ) -> Result<GateTicket, StoreError>;

    /// Frees the account; the next call may begin `spacing` after `started`, when this call
    /// actually went out (entering can take a while, and the carrier counts what arrives).
    async fn leave(
        &self,
        ticket: &GateTicket,
        started: OffsetDateTime,
        spacing: std::time::Duration,
    ) -> Result<(), StoreError>;
}

/// Proof of holding an account's gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateTicket {
    pub account: String,
    pub holder: String,
}

/// One carrier account, as a bulk change needs it.
#[async_trait]
pub trait CarrierPort: Send + Sync {
    fn carrier(&self) -> Carrier;

    /// Devices one [`CarrierPort::apply`] call may carry for this change: 1 for per-device APIs,
    /// up to 10,000 for ThingSpace's batch actions.
    fn batch_limit(&self, _change: &ChangeSpec) -> usize {
        1
    }

    async fn read_device(
        &self,
        device: &DeviceRef,
        journal: &CallJournal,
    ) -> Result<CarrierDevice, CarrierError>;

    /// Applies `change` to `requests` (at most [`CarrierPort::batch_limit`] of them) in one
    /// carrier request.
    async fn apply(
        &self,
        change: &ChangeSpec,
        requests: &[DeviceRequest],
        journal: &CallJournal,
    ) -> Result<CarrierOutcome, CarrierError>;

    /// Whether `device`, as the carrier reports it, already shows `change` done: lets a worker
    /// that resumes after a crash skip a call that had reached the carrier.
    fn already_applied(&self, change: &ChangeSpec, device: &CarrierDevice) -> bool {
        let _ = (change, device);
        false
    }

    /// Follows up an accepted request for one of its devices (polling, for when a callback never
    /// comes or the carrier has none).
    async fn check(
        &self,
        change: &ChangeSpec,
        request_id: &str,
        request: &DeviceRequest,
        journal: &CallJournal,
    ) -> Result<RequestProgress, CarrierError> {
        let _ = (change, request, journal);
        Err(CarrierError::Permanent {
            code: "unsupported".into(),
            message: format!(
                "{} requests cannot be polled (request {request_id})",
                self.carrier().as_str()
            ),
        })
    }
}

// ------------------------------------------------------------------------------------------------
// Accounts: tenants and the users who sign in to them.

/// A customer of the platform; every record belongs to one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRecord {
    pub tenant: TenantId,
    pub name: String,
    pub created_at: OffsetDateTime,
}

/// Someone who signs in with a password. Usernames are unique across tenants.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub username: crate::auth::Username,
    pub tenant: TenantId,
    pub roles: crate::auth::Roles,
    /// Argon2id, PHC string form.
    pub password_hash: String,
    /// Wrong passwords since the last good one or the last lock.
    pub failed_logins: u32,
    pub locked_until: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("username", &self.username)
            .field("tenant", &self.tenant)
            .field("roles", &self.roles)
            .field("failed_logins", &self.failed_logins)
            .field("locked_until", &self.locked_until)
            .finish_non_exhaustive()
    }
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    /// False when the tenant already exists (it is left as it was).
    async fn create_tenant(&self, tenant: &TenantRecord) -> Result<bool, StoreError>;

    async fn get_tenant(&self, tenant: &TenantId) -> Result<Option<TenantRecord>, StoreError>;

    /// False when the username is taken (the existing user is left as it was).
    async fn create_user(&self, user: &UserRecord) -> Result<bool, StoreError>;

    async fn get_user(
        &self,
        username: &crate::auth::Username,
    ) -> Result<Option<UserRecord>, StoreError>;

    /// Counts a wrong password; when that reaches the policy's limit the account is locked and
    /// the count starts again. Returns the lock's end when this failure locked it.
    async fn record_failed_login(
        &self,
        username: &crate::auth::Username,
        policy: &crate::auth::LockoutPolicy,
        now: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, StoreError>;

    /// A good password: the count of wrong ones starts again.
    async fn clear_failed_logins(&self, username: &crate::auth::Username)
        -> Result<(), StoreError>;

    /// The tenant's users in username order.
    async fn list_users(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Page<UserRecord>, StoreError>;

    /// Removes the user if it belongs to `tenant`; false when there is no such user there.
    async fn delete_user(
        &self,
        tenant: &TenantId,
        username: &crate::auth::Username,
    ) -> Result<bool, StoreError>;
}

// ------------------------------------------------------------------------------------------------
// Devices: the registry, presence, latest state and telemetry time series.

/// A registered device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRecord {
    pub thing_name: crate::devices::registration::ThingName,
    pub tenant: TenantId,
    pub iccid: String,
    pub imei: Option<String>,
    pub model: String,
    pub firmware: String,
    pub registered_at: OffsetDateTime,
    pub presence: crate::devices::presence::Presence,
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
        announcement: &crate::devices::registration::Announcement,
        now: OffsetDateTime,
    ) -> Result<Registration, StoreError>;

    async fn get_device(
        &self,
        thing_name: &crate::devices::registration::ThingName,
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
        thing_name: &crate::devices::registration::ThingName,
        event: &crate::devices::presence::LifecycleEvent,
    ) -> Result<bool, StoreError>;

    /// A heartbeat or other sign of life at `at`; false when an equal or later one is stored
    /// already, or the device is not registered.
    async fn record_activity(
        &self,
        thing_name: &crate::devices::registration::ThingName,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Writes telemetry points, many per call (BatchWriteItem, 25 a request, unprocessed items
    /// retried). A point is keyed by device and time, so writing it again changes nothing.
    async fn write_telemetry(
        &self,
        points: &[crate::devices::telemetry::TelemetryPoint],
        retention: time::Duration,
    ) -> Result<usize, StoreError>;

    /// The device's points with `from <= at <= to`, oldest first.
    async fn query_telemetry(
        &self,
        thing_name: &crate::devices::registration::ThingName,
        from: OffsetDateTime,
        to: OffsetDateTime,
        page: &PageRequest,
    ) -> Result<Page<StoredPoint>, StoreError>;

    /// The device's newest point by its own time: the latest state. Read from the time series
    /// rather than kept on the device, so ingest writes each point once, and a duplicate or late
    /// delivery cannot change which point is newest. `None` before its first point.
    async fn latest_telemetry(
        &self,
        thing_name: &crate::devices::registration::ThingName,
    ) -> Result<Option<StoredPoint>, StoreError>;

    /// The heartbeat sweep: marks timed out every connected device silent for longer than
    /// `timeout` at `now` (see `Presence::is_silent`) and returns them. A device heard from
    /// meanwhile is left alone.
    async fn sweep_silent(
        &self,
        now: OffsetDateTime,
        timeout: time::Duration,
    ) -> Result<Vec<crate::devices::registration::ThingName>, StoreError>;
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
#[error("the IoT thing registry failed: {0}")]
pub struct ThingRegistryError(pub String);

/// The AWS IoT thing registry.
#[async_trait]
pub trait ThingRegistry: Send + Sync {
    /// Creates the thing, or brings its attributes up to date when it exists (idempotent).
    async fn upsert_thing(
        &self,
        thing_name: &crate::devices::registration::ThingName,
        attributes: &ThingAttributes,
    ) -> Result<(), ThingRegistryError>;
}

// ------------------------------------------------------------------------------------------------
// Device commands: stored, published to the device, acknowledged by it or given up by the sweep.

/// What became of a status change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The command is now in this status.
    Applied(crate::devices::command::CommandStatus),
    /// Nothing changed: the command is already at or past the status asked for (a duplicate or
    /// late message), or, for the sweep, not due.
    Stale {
        current: crate::devices::command::CommandStatus,
    },
    /// The thing has no such command.
    Missing,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CommandCreated {
    Created,
    /// The idempotency key was already used; this is the command it created.
    Replayed {
        existing: Box<crate::devices::command::Command>,
        same_request: bool,
    },
}

#[async_trait]
pub trait CommandStore: Send + Sync {
    /// Stores a new command; with a claim, atomically with it. A key already used (per tenant)
    /// stores nothing and answers the command it made.
    async fn create_command(
        &self,
        command: &crate::devices::command::Command,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<CommandCreated, StoreError>;

    async fn get_command(
        &self,
        thing: &crate::devices::registration::ThingName,
        id: &crate::devices::command::CommandId,
    ) -> Result<Option<crate::devices::command::Command>, StoreError>;

    /// The thing's commands, newest first.
    async fn list_commands(
        &self,
        thing: &crate::devices::registration::ThingName,
        page: &PageRequest,
    ) -> Result<Page<crate::devices::command::Command>, StoreError>;

    /// The thing's QUEUED commands not expired at `now`, oldest first, at most `limit`; read
    /// consistently, so a command stored before its device connected is never missed.
    async fn queued_commands(
        &self,
        thing: &crate::devices::registration::ThingName,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<crate::devices::command::Command>, StoreError>;

    /// Moves the command to `to` if that is forward (`CommandStatus::may_become`), in a
    /// conditional write; a repeated or late change is `Stale` and changes nothing.
    async fn transition(
        &self,
        thing: &crate::devices::registration::ThingName,
        id: &crate::devices::command::CommandId,
        to: crate::devices::command::CommandStatus,
        at: OffsetDateTime,
        detail: Option<&str>,
    ) -> Result<Transition, StoreError>;

    /// Applies the sweep's rule (`Command::swept`) at `now` to the command as it is stored now
    /// (not as the index showed it): TIMEOUT or EXPIRED, or `Stale` when not due.
    async fn sweep_command(
        &self,
        thing: &crate::devices::registration::ThingName,
        id: &crate::devices::command::CommandId,
        now: OffsetDateTime,
    ) -> Result<Transition, StoreError>;

    /// Open commands whose next deadline is at or before `now`, at most `limit`. Read from an
    /// index that lags a little, so one may have just finished: `sweep_command` re-reads.
    async fn due_for_sweep(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<
        Vec<(
            crate::devices::registration::ThingName,
            crate::devices::command::CommandId,
        )>,
        StoreError,
    >;
}
