//! The bulk-change store as one tenant sees it. API handlers reach the store only through this
//! view, made from the verified caller: every key and query carries that tenant, so another
//! tenant's record is simply not found (404), and no handler can forget the scope.

use crate::bulk_change::{AuditEntry, AuditRecord, BulkChange, BulkChangeStatus, DeviceChange};
use crate::ports::{BulkChangeStore, CreateOutcome};
use cellbridge_core::store::IdempotencyClaim;
use cellbridge_core::store::{Page, PageRequest, StoreError};
use cellbridge_core::tenant::TenantId;
use cellbridge_identity::caller::Caller;

pub struct TenantStore<'a> {
    store: &'a dyn BulkChangeStore,
    tenant: TenantId,
}

impl<'a> TenantStore<'a> {
    pub fn of(store: &'a dyn BulkChangeStore, caller: &Caller) -> Self {
        Self {
            store,
            tenant: caller.tenant().clone(),
        }
    }

    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// Stores a bulk change made for this tenant; one made for any other is refused.
    pub async fn create_bulk_change(
        &self,
        change: &BulkChange,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<CreateOutcome, StoreError> {
        if change.tenant_id != self.tenant {
            return Err(StoreError::Corrupt(
                "a bulk change of another tenant reached a tenant's store".to_owned(),
            ));
        }
        self.store.create_bulk_change(change, claim).await
    }

    pub async fn get_bulk_change(&self, id: &str) -> Result<Option<BulkChange>, StoreError> {
        self.store.get_bulk_change(&self.tenant, id).await
    }

    pub async fn list_bulk_changes(
        &self,
        status: Option<BulkChangeStatus>,
        page: &PageRequest,
    ) -> Result<Page<BulkChange>, StoreError> {
        self.store
            .list_bulk_changes(&self.tenant, status, page)
            .await
    }

    pub async fn list_device_changes(
        &self,
        bulk_change_id: &str,
        page: &PageRequest,
    ) -> Result<Page<DeviceChange>, StoreError> {
        self.store
            .list_device_changes(&self.tenant, bulk_change_id, page)
            .await
    }

    pub async fn audit_page(
        &self,
        bulk_change_id: &str,
        device: Option<u32>,
        page: &PageRequest,
    ) -> Result<Page<AuditRecord>, StoreError> {
        self.store
            .audit_page(&self.tenant, bulk_change_id, device, page)
            .await
    }

    pub async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.store.append_audit(&self.tenant, entry).await
    }
}
