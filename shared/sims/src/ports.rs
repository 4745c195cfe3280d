//! The SIM inventory's store.

use crate::query::SimQuery;
use crate::sim::{Sim, SimChange, SimEvent};
use crate::sync::{DetailsState, SyncState, UsageState};
use crate::usage::{DailyUsage, UsageRecord, UsageRequest};
use async_trait::async_trait;
use cellbridge_core::store::{Page, PageRequest, StoreError};
use cellbridge_core::tenant::TenantId;
use time::{Date, OffsetDateTime};

/// A listing reads at most this many stored SIMs for one page: a filter that matches few SIMs
/// answers a short page with a cursor rather than reading a whole inventory in one request.
pub const READ_BUDGET: usize = 5_000;

/// How a write conditional on the stored record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Written,
    /// The stored record is not the one the write was based on (another writer came first).
    Conflict,
}

#[async_trait]
pub trait SimStore: Send + Sync {
    async fn get_sim(&self, tenant: &TenantId, iccid: &str) -> Result<Option<Sim>, StoreError>;

    /// The stored SIMs among `iccids` (any number; read in batches), in no particular order.
    async fn get_sims(&self, tenant: &TenantId, iccids: &[String]) -> Result<Vec<Sim>, StoreError>;

    /// The SIMs of `query`, in its order. A page can hold fewer than `page.limit` SIMs and still
    /// have a next cursor, when [`READ_BUDGET`] ran out before the page filled.
    async fn list_sims(
        &self,
        tenant: &TenantId,
        query: &SimQuery,
        page: &PageRequest,
    ) -> Result<Page<Sim>, StoreError>;

    /// A SIM's history, newest first.
    async fn sim_history(
        &self,
        tenant: &TenantId,
        iccid: &str,
        page: &PageRequest,
    ) -> Result<Page<SimEvent>, StoreError>;

    /// Writes `sim` with `event` in its history (none: bookkeeping, no change to tell), if the
    /// stored record is still at `stored_version` (`None`: there must be no record yet).
    /// `sim.version` is the new one.
    async fn put_sim(
        &self,
        tenant: &TenantId,
        sim: &Sim,
        stored_version: Option<u64>,
        event: Option<&SimEvent>,
    ) -> Result<Written, StoreError>;

    /// `service_provider_id`'s SIMs whose details are due (see [`Sim::details_due`]), in ICCID
    /// order after `page.cursor` (an ICCID).
    async fn sims_due_details(
        &self,
        tenant: &TenantId,
        service_provider_id: &str,
        page: &PageRequest,
    ) -> Result<Page<Sim>, StoreError>;

    /// Records that registered device `device_id` has the SIM (a new version, no history: it
    /// is no change at the carrier); `false` when the tenant's inventory has no such SIM.
    async fn link_device(
        &self,
        tenant: &TenantId,
        iccid: &str,
        device_id: &str,
    ) -> Result<bool, StoreError>;

    /// Records that registered device `device_id` no longer has the SIM (it announced another);
    /// nothing when the SIM is linked to another device, or to none.
    async fn unlink_device(
        &self,
        tenant: &TenantId,
        iccid: &str,
        device_id: &str,
    ) -> Result<(), StoreError>;

    /// Applies a change made through cellbridge without reading the record first (creating it
    /// when there is none), with its history entry.
    async fn apply_change(
        &self,
        tenant: &TenantId,
        change: &SimChange,
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;
}

/// Where each service provider's carrier sync stands.
#[async_trait]
pub trait SyncStateStore: Send + Sync {
    async fn get_sync(
        &self,
        tenant: &TenantId,
        service_provider_id: &str,
    ) -> Result<Option<SyncState>, StoreError>;

    /// Writes `state` if the stored one is still at `state.version - 1` (none at all for 1).
    async fn put_sync(&self, tenant: &TenantId, state: &SyncState) -> Result<Written, StoreError>;

    async fn get_usage_state(
        &self,
        tenant: &TenantId,
        service_provider_id: &str,
    ) -> Result<Option<UsageState>, StoreError>;

    /// As [`SyncStateStore::put_sync`], for the provider's usage collection.
    async fn put_usage_state(
        &self,
        tenant: &TenantId,
        state: &UsageState,
    ) -> Result<Written, StoreError>;

    async fn get_details_state(
        &self,
        tenant: &TenantId,
        service_provider_id: &str,
    ) -> Result<Option<DetailsState>, StoreError>;

    /// As [`SyncStateStore::put_sync`], for the provider's reading of SIM details.
    async fn put_details_state(
        &self,
        tenant: &TenantId,
        state: &DetailsState,
    ) -> Result<Written, StoreError>;
}

/// Each SIM's daily usage and cycle-to-date total.
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Writes each record's day (replacing a stored row of that day), kept until `keep_until`,
    /// and its SIM's cycle-to-date total; a SIM the inventory does not have is skipped.
    async fn record_usage(
        &self,
        tenant: &TenantId,
        records: &[UsageRecord],
        keep_until: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// `iccid`'s days of usage from `from` to `to`, both included, oldest first; days without a
    /// row (not read, or past retention) are left out.
    async fn daily_usage(
        &self,
        tenant: &TenantId,
        iccid: &str,
        from: Date,
        to: Date,
    ) -> Result<Vec<DailyUsage>, StoreError>;

    /// Keeps `request` until `keep_until`, for the callbacks that answer it.
    async fn put_usage_request(
        &self,
        request: &UsageRequest,
        keep_until: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// The usage request the carrier named `request_id`, if this platform sent it.
    async fn get_usage_request(&self, request_id: &str)
        -> Result<Option<UsageRequest>, StoreError>;
}

/// The registered devices SIMs are linked to, as the devices area knows them: the carrier sync
/// links a SIM it imports to the device registered with it before (a device registered after
/// links itself when it announces).
#[async_trait]
pub trait DeviceDirectory: Send + Sync {
    /// The thing names of `tenant`'s registered devices holding one of `iccids`, by ICCID.
    async fn devices_with_iccids(
        &self,
        tenant: &TenantId,
        iccids: &[String],
    ) -> Result<std::collections::HashMap<String, String>, StoreError>;
}
