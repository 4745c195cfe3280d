//! The device registry as one tenant sees it.

use cellbridge_core::store::{Page, PageRequest, StoreError};
use cellbridge_core::tenant::TenantId;
use cellbridge_identity::caller::Caller;

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
        thing_name: &crate::registration::ThingName,
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
        thing_name: &crate::registration::ThingName,
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
        thing_name: &crate::registration::ThingName,
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

    /// The device's hourly summaries; `None` when it is not this tenant's device.
    pub async fn telemetry_hours(
        &self,
        thing_name: &crate::registration::ThingName,
        from: time::OffsetDateTime,
        to: time::OffsetDateTime,
    ) -> Result<Option<Vec<crate::summary::HourSummary>>, StoreError> {
        if self.get_device(thing_name).await?.is_none() {
            return Ok(None);
        }
        Ok(Some(
            self.store.telemetry_hours(thing_name, from, to).await?,
        ))
    }
}
