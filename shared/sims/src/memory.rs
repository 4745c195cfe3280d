//! The SIM inventory in memory, for tests and local tools.

use crate::ports::{SimStore, SyncStateStore, UsageStore, Written};
use crate::query::{SimOrder, SimQuery};
use crate::sim::{Sim, SimChange, SimEvent};
use crate::sync::{DetailsState, SyncState, UsageState};
use crate::usage::{DailyUsage, UsageRecord, UsageRequest};
use async_trait::async_trait;
use cellbridge_core::memory::{locked, page_of};
use cellbridge_core::store::{Page, PageRequest, StoreError};
use cellbridge_core::tenant::TenantId;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use time::{Date, OffsetDateTime};

#[derive(Debug, Default)]
struct State {
    sims: HashMap<TenantId, BTreeMap<String, Sim>>,
    /// Per tenant and ICCID, oldest first.
    history: HashMap<(TenantId, String), Vec<SimEvent>>,
    syncs: HashMap<(TenantId, String), SyncState>,
    usage_states: HashMap<(TenantId, String), UsageState>,
    details_states: HashMap<(TenantId, String), DetailsState>,
    /// Per tenant and ICCID, by day, with the time each row is kept until.
    usage: HashMap<(TenantId, String), BTreeMap<Date, (DailyUsage, OffsetDateTime)>>,
    usage_requests: HashMap<String, UsageRequest>,
}

#[derive(Debug, Default)]
pub struct MemorySims {
    state: Mutex<State>,
}

impl MemorySims {
    /// Every SIM of `tenant`, by ICCID.
    pub fn all(&self, tenant: &TenantId) -> Vec<Sim> {
        locked(&self.state)
            .sims
            .get(tenant)
            .map(|sims| sims.values().cloned().collect())
            .unwrap_or_default()
    }
}

#[async_trait]
impl SimStore for MemorySims {
    async fn get_sim(&self, tenant: &TenantId, iccid: &str) -> Result<Option<Sim>, StoreError> {
        Ok(locked(&self.state)
            .sims
            .get(tenant)
            .and_then(|sims| sims.get(iccid))
            .cloned())
    }

    async fn get_sims(&self, tenant: &TenantId, iccids: &[String]) -> Result<Vec<Sim>, StoreError> {
        let state = locked(&self.state);
        let Some(sims) = state.sims.get(tenant) else {
            return Ok(Vec::new());
        };
        Ok(iccids
            .iter()
            .filter_map(|iccid| sims.get(iccid))
            .cloned()
            .collect())
    }

    async fn list_sims(
        &self,
        tenant: &TenantId,
        query: &SimQuery,
        page: &PageRequest,
    ) -> Result<Page<Sim>, StoreError> {
        let after = page
            .cursor
            .as_deref()
            .map(|cursor| query.order.decode_cursor(cursor))
            .transpose()?;
        let state = locked(&self.state);
        let keep = page.limit as usize + 1;
        // In ICCID order the map's own order is the listing's: a page reads from its cursor on,
        // not the whole inventory (a sync's walk over 100,000 SIMs stays linear).
        if query.order == SimOrder::default() {
            let from = after.as_ref().map_or(String::new(), |p| p.iccid.clone());
            let sims: Vec<Sim> = state
                .sims
                .get(tenant)
                .map(|sims| {
                    sims.range::<String, _>((
                        std::ops::Bound::Excluded(&from),
                        std::ops::Bound::Unbounded,
                    ))
                    .map(|(_, sim)| sim)
                    .filter(|sim| query.filter.matches(sim))
                    .take(keep)
                    .cloned()
                    .collect()
                })
                .unwrap_or_default();
            return Ok(page_of(sims, page.limit, |sim| {
                query.order.cursor_after(sim)
            }));
        }
        // References until the page is chosen: a page of a large inventory copies the page
        // (and one more, to tell whether there is a next), not every SIM that matches.
        let mut matched: Vec<&Sim> = state
            .sims
            .get(tenant)
            .map(|sims| {
                sims.values()
                    .filter(|sim| query.filter.matches(sim))
                    .filter(|sim| after.as_ref().is_none_or(|p| query.order.is_after(sim, p)))
                    .collect()
            })
            .unwrap_or_default();
        if matched.len() > keep {
            matched.select_nth_unstable_by(keep, |a, b| query.order.compare(a, b));
            matched.truncate(keep);
        }
        matched.sort_by(|a, b| query.order.compare(a, b));
        let sims: Vec<Sim> = matched.into_iter().cloned().collect();
        Ok(page_of(sims, page.limit, |sim| {
            query.order.cursor_after(sim)
        }))
    }

    async fn sim_history(
        &self,
        tenant: &TenantId,
        iccid: &str,
        page: &PageRequest,
    ) -> Result<Page<SimEvent>, StoreError> {
        let skip = page
            .cursor
            .as_deref()
            .map(cellbridge_core::cursor::decode::<cellbridge_core::cursor::AfterSeq>)
            .transpose()?
            .map_or(0, |position| position.after as usize);
        let events: Vec<SimEvent> = locked(&self.state)
            .history
            .get(&(tenant.clone(), iccid.to_owned()))
            .map(|events| events.iter().rev().skip(skip).cloned().collect())
            .unwrap_or_default();
        let limit = page.limit as usize;
        let more = events.len() > limit;
        let items: Vec<SimEvent> = events.into_iter().take(limit).collect();
        let next_cursor = more.then(|| {
            cellbridge_core::cursor::encode(&cellbridge_core::cursor::AfterSeq {
                after: u32::try_from(skip + limit).unwrap_or(u32::MAX),
            })
        });
        Ok(Page { items, next_cursor })
    }

    async fn put_sim(
        &self,
        tenant: &TenantId,
        sim: &Sim,
        stored_version: Option<u64>,
        event: Option<&SimEvent>,
    ) -> Result<Written, StoreError> {
        let mut state = locked(&self.state);
        let sims = state.sims.entry(tenant.clone()).or_default();
        let current = sims.get(&sim.iccid).map(|stored| stored.version);
        if current != stored_version {
            return Ok(Written::Conflict);
        }
        sims.insert(sim.iccid.clone(), sim.clone());
        if let Some(event) = event {
            state
                .history
                .entry((tenant.clone(), sim.iccid.clone()))
                .or_default()
                .push(event.clone());
        }
        Ok(Written::Written)
    }

    async fn sims_due_details(
        &self,
        tenant: &TenantId,
        service_provider_id: &str,
        page: &PageRequest,
    ) -> Result<Page<Sim>, StoreError> {
        let state = locked(&self.state);
        let after = page.cursor.clone().unwrap_or_default();
        let due: Vec<Sim> = state
            .sims
            .get(tenant)
            .map(|sims| {
                sims.range::<String, _>((
                    std::ops::Bound::Excluded(&after),
                    std::ops::Bound::Unbounded,
                ))
                .map(|(_, sim)| sim)
                .filter(|sim| {
                    sim.details_due
                        && sim.service_provider_id.as_deref() == Some(service_provider_id)
                })
                .take(page.limit as usize + 1)
                .cloned()
                .collect()
            })
            .unwrap_or_default();
        Ok(page_of(due, page.limit, |sim| sim.iccid.clone()))
    }

    async fn link_device(
        &self,
        tenant: &TenantId,
        iccid: &str,
        device_id: &str,
    ) -> Result<bool, StoreError> {
        let mut state = locked(&self.state);
        let Some(sim) = state
            .sims
            .get_mut(tenant)
            .and_then(|sims| sims.get_mut(iccid))
        else {
            return Ok(false);
        };
        if sim.device_id.as_deref() != Some(device_id) {
            sim.device_id = Some(device_id.to_owned());
            sim.version += 1;
        }
        Ok(true)
    }

    async fn unlink_device(
        &self,
        tenant: &TenantId,
        iccid: &str,
        device_id: &str,
    ) -> Result<(), StoreError> {
        let mut state = locked(&self.state);
        let sim = state
            .sims
            .get_mut(tenant)
            .and_then(|sims| sims.get_mut(iccid))
            .filter(|sim| sim.device_id.as_deref() == Some(device_id));
        if let Some(sim) = sim {
            sim.device_id = None;
            sim.version += 1;
        }
        Ok(())
    }

    async fn apply_change(
        &self,
        tenant: &TenantId,
        change: &SimChange,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.apply_now(tenant, change, at);
        Ok(())
    }
}

impl MemorySims {
    /// [`SimStore::apply_change`] without awaiting, for an in-memory store that applies it
    /// while holding its own locks (as the DynamoDB one writes it in its transaction).
    pub fn apply_now(&self, tenant: &TenantId, change: &SimChange, at: OffsetDateTime) {
        let mut state = locked(&self.state);
        let sims = state.sims.entry(tenant.clone()).or_default();
        match sims.get_mut(&change.iccid) {
            Some(sim) => change.apply(sim, at),
            None => {
                sims.insert(change.iccid.clone(), change.new_sim(at));
            }
        }
        state
            .history
            .entry((tenant.clone(), change.iccid.clone()))
            .or_default()
            .push(change.event(at));
    }
}

#[async_trait]
impl SyncStateStore for MemorySims {
    async fn get_sync(
        &self,
        tenant: &TenantId,
        service_provider_id: &str,
    ) -> Result<Option<SyncState>, StoreError> {
        Ok(locked(&self.state)
            .syncs
            .get(&(tenant.clone(), service_provider_id.to_owned()))
            .cloned())
    }

    async fn put_sync(&self, tenant: &TenantId, state: &SyncState) -> Result<Written, StoreError> {
        let mut guard = locked(&self.state);
        Ok(put_versioned(
            &mut guard.syncs,
            tenant,
            &state.service_provider_id,
            state,
            |s| s.version,
        ))
    }

    async fn get_usage_state(
        &self,
        tenant: &TenantId,
        service_provider_id: &str,
    ) -> Result<Option<UsageState>, StoreError> {
        Ok(locked(&self.state)
            .usage_states
            .get(&(tenant.clone(), service_provider_id.to_owned()))
            .cloned())
    }

    async fn put_usage_state(
        &self,
        tenant: &TenantId,
        state: &UsageState,
    ) -> Result<Written, StoreError> {
        let mut guard = locked(&self.state);
        Ok(put_versioned(
            &mut guard.usage_states,
            tenant,
            &state.service_provider_id,
            state,
            |s| s.version,
        ))
    }

    async fn get_details_state(
        &self,
        tenant: &TenantId,
        service_provider_id: &str,
    ) -> Result<Option<DetailsState>, StoreError> {
        Ok(locked(&self.state)
            .details_states
            .get(&(tenant.clone(), service_provider_id.to_owned()))
            .cloned())
    }

    async fn put_details_state(
        &self,
        tenant: &TenantId,
        state: &DetailsState,
    ) -> Result<Written, StoreError> {
        let mut guard = locked(&self.state);
        Ok(put_versioned(
            &mut guard.details_states,
            tenant,
            &state.service_provider_id,
            state,
            |s| s.version,
        ))
    }
}

/// Keeps `state` as the provider's record if the stored one is the version before it.
fn put_versioned<S: Clone>(
    records: &mut HashMap<(TenantId, String), S>,
    tenant: &TenantId,
    service_provider_id: &str,
    state: &S,
    version: fn(&S) -> u64,
) -> Written {
    let key = (tenant.clone(), service_provider_id.to_owned());
    let stored = records.get(&key).map_or(0, version);
    if stored + 1 != version(state) {
        return Written::Conflict;
    }
    records.insert(key, state.clone());
    Written::Written
}

#[async_trait]
impl UsageStore for MemorySims {
    async fn record_usage(
        &self,
        tenant: &TenantId,
        records: &[UsageRecord],
        keep_until: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut guard = locked(&self.state);
        let state = &mut *guard;
        for record in records {
            let Some(sim) = state
                .sims
                .get_mut(tenant)
                .and_then(|sims| sims.get_mut(&record.iccid))
            else {
                continue;
            };
            sim.usage = record.cycle.clone();
            sim.version += 1;
            if let Some(day) = record.day {
                state
                    .usage
                    .entry((tenant.clone(), record.iccid.clone()))
                    .or_default()
                    .insert(day.day, (day, keep_until));
            }
        }
        Ok(())
    }

    async fn daily_usage(
        &self,
        tenant: &TenantId,
        iccid: &str,
        from: Date,
        to: Date,
    ) -> Result<Vec<DailyUsage>, StoreError> {
        if from > to {
            return Ok(Vec::new());
        }
        let now = OffsetDateTime::now_utc();
        Ok(locked(&self.state)
            .usage
            .get(&(tenant.clone(), iccid.to_owned()))
            .map(|days| {
                days.range(from..=to)
                    // What a TTL would have removed by now.
                    .filter(|(_, (_, keep_until))| *keep_until > now)
                    .map(|(_, (day, _))| *day)
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn put_usage_request(
        &self,
        request: &UsageRequest,
        _keep_until: OffsetDateTime,
    ) -> Result<(), StoreError> {
        locked(&self.state)
            .usage_requests
            .insert(request.request_id.clone(), request.clone());
        Ok(())
    }

    async fn get_usage_request(
        &self,
        request_id: &str,
    ) -> Result<Option<UsageRequest>, StoreError> {
        Ok(locked(&self.state).usage_requests.get(request_id).cloned())
    }
}

/// Registered devices by tenant and ICCID, for tests of what links SIMs to them.
#[derive(Debug, Default)]
pub struct MemoryDeviceDirectory {
    devices: Mutex<HashMap<(TenantId, String), String>>,
}

impl MemoryDeviceDirectory {
    /// `thing_name` is registered in `tenant` with SIM `iccid`.
    pub fn register(&self, tenant: &TenantId, iccid: &str, thing_name: &str) {
        locked(&self.devices).insert((tenant.clone(), iccid.to_owned()), thing_name.to_owned());
    }
}

#[async_trait]
impl crate::ports::DeviceDirectory for MemoryDeviceDirectory {
    async fn devices_with_iccids(
        &self,
        tenant: &TenantId,
        iccids: &[String],
    ) -> Result<HashMap<String, String>, StoreError> {
        let devices = locked(&self.devices);
        Ok(iccids
            .iter()
            .filter_map(|iccid| {
                let thing = devices.get(&(tenant.clone(), iccid.clone()))?;
                Some((iccid.clone(), thing.clone()))
            })
            .collect())
    }
}
