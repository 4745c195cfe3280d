//! The SIM inventory as one tenant sees it: another tenant's SIM is not found.

use crate::ports::SimStore;
use crate::query::SimQuery;
use crate::sim::{Sim, SimEvent};
use cellbridge_core::store::{Page, PageRequest, StoreError};
use cellbridge_core::tenant::TenantId;
use cellbridge_identity::caller::Caller;

pub struct TenantSims<'a> {
    store: &'a dyn SimStore,
    tenant: TenantId,
}

impl<'a> TenantSims<'a> {
    pub fn of(store: &'a dyn SimStore, caller: &Caller) -> Self {
        Self {
            store,
            tenant: caller.tenant().clone(),
        }
    }

    pub async fn list(
        &self,
        query: &SimQuery,
        page: &PageRequest,
    ) -> Result<Page<Sim>, StoreError> {
        self.store.list_sims(&self.tenant, query, page).await
    }

    pub async fn get(&self, iccid: &str) -> Result<Option<Sim>, StoreError> {
        self.store.get_sim(&self.tenant, iccid).await
    }

    /// The SIM and a page of its history (newest first); `None` when the tenant has no such SIM.
    pub async fn with_history(
        &self,
        iccid: &str,
        page: &PageRequest,
    ) -> Result<Option<(Sim, Page<SimEvent>)>, StoreError> {
        let Some(sim) = self.get(iccid).await? else {
            return Ok(None);
        };
        let history = self.store.sim_history(&self.tenant, iccid, page).await?;
        Ok(Some((sim, history)))
    }
}
