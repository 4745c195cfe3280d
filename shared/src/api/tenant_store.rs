//! The bulk-change store as one tenant sees it. API handlers reach the store only through this
//! view, made from the verified caller: every key and query carries that tenant, so another
//! tenant's record is simply not found (404), and no handler can forget the scope.

use super::Caller;
use crate::domain::{AuditEntry, BulkChange, BulkChangeStatus, DeviceChange, TenantId};
use crate::ports::{
    BulkChangeStore, CreateOutcome, IdempotencyClaim, Page, PageRequest, StoreError,
};

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

    pub async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.store.append_audit(&self.tenant, entry).await
    }
}

/// The accounts store as one tenant's admin sees it: that tenant's users only.
pub struct TenantAccounts<'a> {
    store: &'a dyn crate::ports::AccountStore,
    tenant: TenantId,
}

impl<'a> TenantAccounts<'a> {
    pub fn of(store: &'a dyn crate::ports::AccountStore, caller: &Caller) -> Self {
        Self {
            store,
            tenant: caller.tenant().clone(),
        }
    }

    pub async fn list_users(
        &self,
        page: &PageRequest,
    ) -> Result<Page<crate::ports::UserRecord>, StoreError> {
        self.store.list_users(&self.tenant, page).await
    }

    /// A user of another tenant is not found here.
    pub async fn get_user(
        &self,
        username: &crate::auth::Username,
    ) -> Result<Option<crate::ports::UserRecord>, StoreError> {
        Ok(self
            .store
            .get_user(username)
            .await?
            .filter(|user| user.tenant == self.tenant))
    }

    /// Creates a user of this tenant.
    pub async fn add_user(
        &self,
        username: &str,
        roles: crate::auth::Roles,
        password: &str,
        now: time::OffsetDateTime,
    ) -> Result<crate::auth::Username, crate::accounts::AccountError> {
        crate::accounts::add_user(
            self.store,
            crate::accounts::NewUser {
                username,
                tenant: self.tenant.as_str(),
                roles,
                password,
            },
            now,
        )
        .await
    }

    pub async fn delete_user(&self, username: &crate::auth::Username) -> Result<bool, StoreError> {
        self.store.delete_user(&self.tenant, username).await
    }
}

/// A device and its newest telemetry point, as the API shows it.
pub type DeviceWithLatest = (
    crate::ports::DeviceRecord,
    Option<crate::ports::StoredPoint>,
);

/// Latest-point reads in flight for one page of devices (one `Query` each).
const LATEST_READS_IN_FLIGHT: usize = 16;

/// The device registry as one tenant sees it: another tenant's device is not found.
pub struct TenantDevices<'a> {
    store: &'a dyn crate::ports::DeviceStore,
    tenant: TenantId,
}

impl<'a> TenantDevices<'a> {
    pub fn of(store: &'a dyn crate::ports::DeviceStore, caller: &Caller) -> Self {
        Self {
            store,
            tenant: caller.tenant().clone(),
        }
    }

    pub async fn list_devices(
        &self,
        page: &PageRequest,
    ) -> Result<Page<crate::ports::DeviceRecord>, StoreError> {
        self.store.list_devices(&self.tenant, page).await
    }

    pub async fn get_device(
        &self,
        thing_name: &crate::devices::registration::ThingName,
    ) -> Result<Option<crate::ports::DeviceRecord>, StoreError> {
        Ok(self
            .store
            .get_device(thing_name)
            .await?
            .filter(|device| device.tenant == self.tenant))
    }

    /// The device with its newest telemetry point; `None` when it is not this tenant's.
    pub async fn device_with_latest(
        &self,
        thing_name: &crate::devices::registration::ThingName,
    ) -> Result<Option<DeviceWithLatest>, StoreError> {
        // Both at once; the point is dropped unread when the device is another tenant's.
        let (device, latest) = futures::try_join!(
            self.get_device(thing_name),
            self.store.latest_telemetry(thing_name)
        )?;
        Ok(device.map(|device| (device, latest)))
    }

    /// A page of the tenant's devices, each with its newest telemetry point.
    pub async fn list_devices_with_latest(
        &self,
        page: &PageRequest,
    ) -> Result<Page<DeviceWithLatest>, StoreError> {
        use futures::{StreamExt as _, TryStreamExt as _};
        let devices = self.list_devices(page).await?;
        // Collected first: a stream over a borrowing closure is not `Send` enough for the
        // handler's future.
        let reads: Vec<_> = devices
            .items
            .iter()
            .map(|device| self.store.latest_telemetry(&device.thing_name))
            .collect();
        let latest: Vec<_> = futures::stream::iter(reads)
            .buffered(LATEST_READS_IN_FLIGHT)
            .try_collect()
            .await?;
        Ok(Page {
            items: devices.items.into_iter().zip(latest).collect(),
            next_cursor: devices.next_cursor,
        })
    }

    /// The device's telemetry; `None` when it is not this tenant's device.
    pub async fn telemetry(
        &self,
        thing_name: &crate::devices::registration::ThingName,
        from: time::OffsetDateTime,
        to: time::OffsetDateTime,
        page: &PageRequest,
    ) -> Result<Option<Page<crate::ports::StoredPoint>>, StoreError> {
        if self.get_device(thing_name).await?.is_none() {
            return Ok(None);
        }
        Ok(Some(
            self.store
                .query_telemetry(thing_name, from, to, page)
                .await?,
        ))
    }
}
