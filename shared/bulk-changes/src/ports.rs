//! The ports of the bulk-change flows: the store, the work queues and the payload store.

use crate::bulk_change::{AuditEntry, AuditRecord, BulkChange, BulkChangeStatus, DeviceChange};
use crate::change::Carrier;
use crate::messages::{PlanMessage, WorkMessage};
use async_trait::async_trait;
use cellbridge_core::store::IdempotencyClaim;
use cellbridge_core::store::{Page, PageRequest, StoreError};
use cellbridge_core::tenant::TenantId;
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Throttled, timed out, unreachable or a 5xx: the same call may succeed later.
    #[error("the queue is unavailable: {0}")]
    Unavailable(String),
    /// Refused for good (a missing queue, access denied, a message SQS will never take).
    #[error("the queue refused the message: {0}")]
    Rejected(String),
}

impl QueueError {
    /// Whether the same call may succeed if tried again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, QueueError::Unavailable(_))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("payload {0} does not exist")]
    Missing(String),
    /// Throttled, timed out, unreachable or a 5xx: the same call may succeed later.
    #[error("the payload store is unavailable: {0}")]
    Unavailable(String),
    /// Refused for good (a missing bucket, access denied).
    #[error("the payload store refused the request: {0}")]
    Rejected(String),
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
    /// What a success changed on the SIM, written to the inventory with the outcome.
    pub sim: Option<cellbridge_sims::sim::SimChange>,
}

/// Where a submitted device change lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmittedRef {
    pub tenant: TenantId,
    pub bulk_change_id: String,
    pub seq: u32,
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

    /// Bulk changes of every tenant still `new` whose intake deadline (set when stored, moved by
    /// [`BulkChangeStore::extend_intake`]) is at or before `now`.
    async fn intake_overdue(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<(TenantId, String)>, StoreError>;

    /// Moves the intake deadline of a bulk change still `new`; `false` when it is no longer new.
    async fn extend_intake(
        &self,
        tenant: &TenantId,
        id: &str,
        next_check: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Moves a bulk change still `new` to `failed` with `reason`, every device counted failed;
    /// `false` when it is no longer new.
    async fn fail_intake(
        &self,
        tenant: &TenantId,
        id: &str,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

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

    /// Moves a pending device change to its outcome, counts it on the bulk change and applies
    /// the outcome's SIM change to the inventory, in one atomic write; false when it was already
    /// finished (a duplicate).
    async fn finish_device_change(
        &self,
        tenant: &TenantId,
        bulk_change_id: &str,
        seq: u32,
        outcome: &DeviceOutcome,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    async fn append_audit(&self, tenant: &TenantId, entry: &AuditEntry) -> Result<(), StoreError>;

    /// The whole audit trail of a bulk change, for tests and tools; the API pages with
    /// [`BulkChangeStore::audit_page`].
    async fn list_audit(
        &self,
        tenant: &TenantId,
        bulk_change_id: &str,
    ) -> Result<Vec<AuditEntry>, StoreError>;

    /// A page of a bulk change's audit trail, oldest first. `device` keeps only the entries
    /// naming that device change; with it a page may hold fewer than `page.limit` entries, even
    /// none, while a cursor still follows (the limit bounds the entries read, not those kept).
    async fn audit_page(
        &self,
        tenant: &TenantId,
        bulk_change_id: &str,
        device: Option<u32>,
        page: &PageRequest,
    ) -> Result<Page<AuditRecord>, StoreError>;
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
