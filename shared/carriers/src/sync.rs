//! The carrier sync of one service provider: lists the account's SIMs page by page at the
//! account's pace, compares each with the inventory and writes only what changed, conditional on
//! the stored version. The first run imports everything; later runs list only the changes since
//! the watermark where the carrier can (Jasper), else everything again, and a complete full
//! listing marks the SIMs it no longer shows as vanished. Every page is a checkpoint: a run cut
//! short (a crash, the function's time running out) resumes from the last page it finished.

use crate::account::CarrierAccount;
use crate::error::CarrierError;
use crate::leased::{Holding, Leased, StepEnd};
use crate::port::{CallJournal, CarrierSim, ListedSims};
use crate::provider::ServiceProvider;
use cellbridge_bulk_changes::capabilities::capabilities;
use cellbridge_core::store::{PageRequest, StoreError};
use cellbridge_core::tenant::TenantId;
use cellbridge_sims::ports::{DeviceDirectory, SimStore, SyncStateStore, Written};
use cellbridge_sims::query::{SimFilter, SimQuery};
use cellbridge_sims::sim::{LastChange, Sim, SimEvent, SimEventKind, SimSource};
use cellbridge_sims::sync::{SyncRun, SyncState, SyncSummary};
use std::collections::HashSet;
use time::OffsetDateTime;
use tokio::time::Instant;

/// How long a run holds its provider: longer than one invocation's work between checkpoints, so
/// a run that died frees the provider soon after.
pub const LEASE: time::Duration = time::Duration::minutes(16);

/// Listing calls that fail for a passing reason are tried this many times in all.
const LISTING_ATTEMPTS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The inventory or the sync state could not be read or written: try again later.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SyncError {
    pub fn is_retryable(&self) -> bool {
        match self {
            SyncError::Store(error) => error.is_retryable(),
        }
    }
}

/// How one step of a sync ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncStep {
    /// The run finished (or stopped on a carrier refusal, which its summary names).
    Finished(SyncSummary),
    /// Time ran out with pages left: run another step to go on.
    Continue,
    /// Another holder runs this provider's sync.
    Busy,
    /// The carrier refused these credentials before: nothing is tried until they change.
    CredentialsRefused,
}

impl From<StepEnd> for SyncStep {
    fn from(end: StepEnd) -> Self {
        match end {
            StepEnd::OutOfTime => SyncStep::Continue,
            StepEnd::TakenOver => SyncStep::Busy,
        }
    }
}

/// What a step needs besides the carrier account.
pub struct SyncPorts<'a> {
    pub sims: &'a dyn SimStore,
    pub states: &'a dyn SyncStateStore,
    /// Which registered device holds a SIM new to the inventory.
    pub devices: &'a dyn DeviceDirectory,
}

/// The inventory record `listed` makes of `stored` (or of nothing, for a SIM new to the
/// inventory) and its history entry; `None` when the carrier shows nothing new. A listing that
/// does not give a field (`None`) leaves the stored value as it is.
pub fn synced(
    stored: Option<&Sim>,
    listed: &CarrierSim,
    provider: &ServiceProvider,
    at: OffsetDateTime,
) -> Option<(Sim, SimEvent)> {
    let source = SimSource::CarrierSync {
        service_provider_id: provider.id.clone(),
    };
    let base = stored.cloned().unwrap_or_else(|| {
        Sim::unknown(
            &listed.iccid,
            provider.carrier,
            Some(provider.id.clone()),
            source.clone(),
            at,
        )
    });
    let mut next = base.clone();
    next.carrier = provider.carrier;
    next.service_provider_id = Some(provider.id.clone());
    next.status = capabilities(provider.carrier).normalize(&listed.status);
    next.carrier_status = Some(listed.status.clone());
    let keep_or = |listed: &Option<String>, stored: &Option<String>| {
        listed.clone().or_else(|| stored.clone())
    };
    next.rate_plan = keep_or(&listed.rate_plan, &base.rate_plan);
    next.comm_plan = keep_or(&listed.communication_plan, &base.comm_plan);
    next.msisdn = keep_or(&listed.msisdn, &base.msisdn);
    next.imsi = keep_or(&listed.imsi, &base.imsi);
    next.imei = keep_or(&listed.imei, &base.imei);
    next.customer = keep_or(&listed.customer, &base.customer);
    next.cost_center = keep_or(&listed.cost_center, &base.cost_center);
    next.username = keep_or(&listed.username, &base.username);
    next.vanished_at = None;
    next.carrier_updated_at = listed.updated_at.or(base.carrier_updated_at);
    let kind = if stored.is_none() {
        SimEventKind::Imported
    } else if base.vanished_at.is_some() {
        SimEventKind::Reappeared
    } else if next.same_carrier_view(&base) {
        return None;
    } else {
        SimEventKind::Changed
    };
    let changes = next.changes_since(&base);
    next.version = base.version + 1;
    next.last_change = LastChange {
        source: source.clone(),
        at,
    };
    Some((
        next,
        SimEvent {
            at,
            source,
            kind,
            changes,
        },
    ))
}

/// Runs `provider`'s sync until it finishes or `deadline` comes, as `holder`. `clock` tells the
/// time of each write (a run lasts minutes).
pub async fn sync_step(
    ports: &SyncPorts<'_>,
    account: &CarrierAccount,
    tenant: &TenantId,
    provider: &ServiceProvider,
    holder: &str,
    clock: &(dyn Fn() -> OffsetDateTime + Send + Sync),
    deadline: Instant,
) -> Result<SyncStep, SyncError> {
    let mut state = ports
        .states
        .get_sync(tenant, &provider.id)
        .await?
        .unwrap_or_else(|| SyncState::new(&provider.id));
    if state.refused_provider_version == Some(provider.version) {
        return Ok(SyncStep::CredentialsRefused);
    }
    let now = clock();
    if state.held_by_another(holder, now) {
        return Ok(SyncStep::Busy);
    }
    let incremental = account.port.lists_changes_since() && state.watermark.is_some();
    let mut run = match state.run.take() {
        Some(mut run) => {
            run.resumed = true;
            run
        }
        None => SyncRun {
            id: uuid::Uuid::now_v7().to_string(),
            started_at: now,
            full: !incremental,
            since: if incremental { state.watermark } else { None },
            position: None,
            newest_change: None,
            resumed: false,
            counts: Default::default(),
        },
    };
    state.refused_provider_version = None;
    let holding = Holding::new(ports.states, tenant, holder, deadline);
    if !holding.keep(&mut state, &run, true, now).await? {
        return Ok(SyncStep::Busy);
    }
    tracing::info!(run = %run.id, resumed = run.resumed, full = run.full, "sync step");
    // A complete full listing marks what it did not show as vanished. What the inventory holds
    // is read while the listing waits for the carrier's pace, not after it.
    let vanish_checked = run.full && !run.resumed;
    let mut seen: HashSet<String> = HashSet::new();
    let (listed, stored) = {
        let listing = list_all(
            ports, account, provider, &holding, &mut state, &mut run, &mut seen, clock,
        );
        let stored = async {
            match vanish_checked {
                true => listed_before(ports, tenant, provider).await.map(Some),
                false => Ok(None),
            }
        };
        tokio::pin!(listing, stored);
        let mut read = None;
        let listed = loop {
            tokio::select! {
                listed = &mut listing => break listed,
                done = &mut stored, if read.is_none() => read = Some(done),
            }
        };
        let stored = match (&listed, read) {
            (Ok(None), None) => Some(stored.await),
            (_, read) => read,
        };
        (listed, stored)
    };
    if let Some(end) = listed? {
        return Ok(end);
    }
    if let Some(stored) = stored.transpose()?.flatten() {
        let unseen: Vec<String> = stored.difference(&seen).cloned().collect();
        mark_vanished(ports, tenant, provider, &unseen, &mut run, clock).await?;
    }
    finish(&holding, &mut state, run, vanish_checked, None, clock).await
}

/// Lists the account page by page from the run's position, comparing each page with the
/// inventory; `None` once the last page is compared, else how the step ends.
#[allow(clippy::too_many_arguments)]
async fn list_all(
    ports: &SyncPorts<'_>,
    account: &CarrierAccount,
    provider: &ServiceProvider,
    holding: &Holding<'_>,
    state: &mut SyncState,
    run: &mut SyncRun,
    seen: &mut HashSet<String>,
    clock: &(dyn Fn() -> OffsetDateTime + Send + Sync),
) -> Result<Option<SyncStep>, SyncError> {
    let tenant = holding.tenant();
    // The page asked for while the one before it was compared.
    let mut prefetched: Option<Listed> = None;
    loop {
        let listed = match prefetched.take() {
            Some(listed) => listed,
            None => list_page(account, run.position.clone(), run.since, clock).await,
        };
        run.counts.calls += listed.calls;
        let page = match listed.sims {
            Ok(page) => page,
            Err(error) => {
                if error == CarrierError::AuthFailed {
                    state.refused_provider_version = Some(provider.version);
                }
                let reason = format!("listing the SIMs failed: {error}");
                tracing::warn!(provider = %provider.id, %error, "sync stopped");
                let run = run.clone();
                return finish(holding, state, run, false, Some(reason), clock)
                    .await
                    .map(Some);
            }
        };
        let listing = Listing {
            page: &page,
            at: listed.at,
            complete: account.port.listing_is_complete(),
        };
        let since = run.since;
        let compared = compare_page(ports, tenant, provider, &listing, run, seen, clock);
        // The next listing call waits only for the pace, not for this page's reads and writes:
        // a page compared against the inventory can take longer than the pace leaves between
        // calls. A step whose time is up asks for none.
        match &page.next {
            Some(next) if !holding.out_of_time() => {
                let (compared, next_page) = tokio::join!(
                    compared,
                    list_page(account, Some(next.clone()), since, clock)
                );
                compared?;
                prefetched = Some(next_page);
            }
            _ => compared.await?,
        }
        run.position = page.next.clone();
        if page.next.is_none() {
            return Ok(None);
        }
        if prefetched.is_some() {
            // Asked for in time: compared in this step even if its time is now up.
            if !holding.keep(state, run, true, clock()).await? {
                return Ok(Some(SyncStep::Busy));
            }
        } else if let Some(end) = holding.after_page(state, run, clock()).await? {
            return Ok(Some(end.into()));
        }
    }
}

async fn finish(
    holding: &Holding<'_>,
    state: &mut SyncState,
    run: SyncRun,
    vanish_checked: bool,
    error: Option<String>,
    clock: &(dyn Fn() -> OffsetDateTime + Send + Sync),
) -> Result<SyncStep, SyncError> {
    if error.is_none() {
        // The carrier's own clock: changes it lists later are after this one.
        if let Some(newest) = run.newest_change {
            state.watermark = Some(state.watermark.map_or(newest, |w| w.max(newest)));
        } else if state.watermark.is_none() {
            state.watermark = Some(run.started_at);
        }
    }
    let summary = SyncSummary {
        run_id: run.id,
        started_at: run.started_at,
        finished_at: clock(),
        full: run.full,
        counts: run.counts,
        vanish_checked,
        error,
    };
    tracing::info!(
        listed = summary.counts.listed,
        written = summary.counts.written(),
        calls = summary.counts.calls,
        error = summary.error.as_deref(),
        "sync run finished"
    );
    state.last_run = Some(summary.clone());
    holding.close(state).await?;
    Ok(SyncStep::Finished(summary))
}

/// One listing call (tried again on passing failures) and when it was asked for.
struct Listed {
    sims: Result<ListedSims, CarrierError>,
    at: OffsetDateTime,
    /// Calls made, retries included.
    calls: u64,
}

/// The listing page at `position` at the account's pace, tried again on passing failures.
async fn list_page(
    account: &CarrierAccount,
    position: Option<String>,
    since: Option<OffsetDateTime>,
    clock: &(dyn Fn() -> OffsetDateTime + Send + Sync),
) -> Listed {
    let mut calls = 0;
    let journal = CallJournal::default();
    let at = clock();
    let sims = account
        .paced_with_retries(1, LISTING_ATTEMPTS, &mut calls, || {
            account.port.list_sims(position.as_deref(), since, &journal)
        })
        .await;
    Listed { sims, at, calls }
}

/// A page of the listing and when it was asked for.
struct Listing<'a> {
    page: &'a ListedSims,
    at: OffsetDateTime,
    /// Whether it tells all of each SIM (else the SIMs it shows new or changed await details).
    complete: bool,
}

/// Whether the carrier changed `stored` after the listing it was last compared with, though
/// nothing the listing shows differs, and its details are not due already.
fn changed_beyond_listing(stored: &Sim, listed: &CarrierSim) -> bool {
    let newer = match (listed.updated_at, stored.carrier_updated_at) {
        (Some(listed), Some(stored)) => listed > stored,
        (Some(_), None) => true,
        (None, _) => false,
    };
    newer && !stored.details_due
}

/// Whether `stored` was changed through cellbridge after the listing was asked for: the listing
/// may predate that change, and must not undo it (the next run sees the carrier after it).
fn newer_than_listing(stored: Option<&Sim>, listed_at: OffsetDateTime) -> bool {
    stored.is_some_and(|sim| {
        sim.last_change.at >= listed_at
            && !matches!(sim.last_change.source, SimSource::CarrierSync { .. })
    })
}

async fn compare_page(
    ports: &SyncPorts<'_>,
    tenant: &TenantId,
    provider: &ServiceProvider,
    listing: &Listing<'_>,
    run: &mut SyncRun,
    seen: &mut HashSet<String>,
    clock: &(dyn Fn() -> OffsetDateTime + Send + Sync),
) -> Result<(), SyncError> {
    let page = listing.page;
    let iccids: Vec<String> = page.sims.iter().map(|sim| sim.iccid.clone()).collect();
    let stored: std::collections::HashMap<String, Sim> = ports
        .sims
        .get_sims(tenant, &iccids)
        .await?
        .into_iter()
        .map(|sim| (sim.iccid.clone(), sim))
        .collect();
    // SIMs new to the inventory whose device registered before them: linked as they are
    // imported (a device that registers later links itself).
    let new: Vec<String> = iccids
        .iter()
        .filter(|iccid| !stored.contains_key(*iccid))
        .cloned()
        .collect();
    let devices = if new.is_empty() {
        std::collections::HashMap::new()
    } else {
        ports.devices.devices_with_iccids(tenant, &new).await?
    };
    for listed in &page.sims {
        run.counts.listed += 1;
        seen.insert(listed.iccid.clone());
        if let Some(updated) = listed.updated_at {
            run.newest_change = Some(run.newest_change.map_or(updated, |n| n.max(updated)));
        }
        let mut current = stored.get(&listed.iccid).cloned();
        // A conflict means another writer (a bulk change's outcome) came in between: compare
        // once more with what it wrote, then leave it to the next run.
        for attempt in 0..2 {
            if newer_than_listing(current.as_ref(), listing.at) {
                run.counts.conflicts += 1;
                break;
            }
            let Some((mut sim, event)) = synced(current.as_ref(), listed, provider, clock()) else {
                run.counts.unchanged += 1;
                // Changed at the carrier in what the listing does not show: only the details
                // tell what, so they are read again (no history entry until they do).
                if let Some(stored) = current.as_ref().filter(|_| !listing.complete) {
                    if changed_beyond_listing(stored, listed) {
                        let marked = Sim {
                            details_due: true,
                            carrier_updated_at: listed.updated_at,
                            version: stored.version + 1,
                            ..stored.clone()
                        };
                        let put = ports
                            .sims
                            .put_sim(tenant, &marked, Some(stored.version), None);
                        if put.await? == Written::Conflict {
                            run.counts.conflicts += 1;
                        }
                    }
                }
                break;
            };
            if event.kind == SimEventKind::Imported {
                sim.device_id = devices.get(&listed.iccid).cloned();
            }
            sim.details_due = !listing.complete;
            let kind = event.kind;
            let stored_version = current.as_ref().map(|s| s.version);
            match ports
                .sims
                .put_sim(tenant, &sim, stored_version, Some(&event))
                .await?
            {
                Written::Written => {
                    count(run, kind);
                    break;
                }
                Written::Conflict if attempt == 0 => {
                    current = ports.sims.get_sim(tenant, &listed.iccid).await?;
                }
                Written::Conflict => run.counts.conflicts += 1,
            }
        }
    }
    Ok(())
}

fn count(run: &mut SyncRun, kind: SimEventKind) {
    let counter = match kind {
        SimEventKind::Imported => &mut run.counts.imported,
        SimEventKind::Changed => &mut run.counts.changed,
        SimEventKind::Vanished => &mut run.counts.vanished,
        SimEventKind::Reappeared => &mut run.counts.reappeared,
    };
    *counter += 1;
}

/// The provider's SIMs the inventory holds and does not know as vanished.
async fn listed_before(
    ports: &SyncPorts<'_>,
    tenant: &TenantId,
    provider: &ServiceProvider,
) -> Result<HashSet<String>, StoreError> {
    let query = SimQuery {
        filter: SimFilter {
            service_provider_id: Some(provider.id.clone()),
            ..SimFilter::default()
        },
        ..SimQuery::default()
    };
    let mut stored = HashSet::new();
    let mut cursor = None;
    loop {
        let page = ports
            .sims
            .list_sims(
                tenant,
                &query,
                &PageRequest {
                    limit: 1000,
                    cursor,
                },
            )
            .await?;
        let present = page
            .items
            .into_iter()
            .filter(|sim| sim.vanished_at.is_none());
        stored.extend(present.map(|sim| sim.iccid));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(stored),
        }
    }
}

/// Marks `unseen` (SIMs of the provider that a complete listing did not show) as vanished, as
/// they stand now.
async fn mark_vanished(
    ports: &SyncPorts<'_>,
    tenant: &TenantId,
    provider: &ServiceProvider,
    unseen: &[String],
    run: &mut SyncRun,
    clock: &(dyn Fn() -> OffsetDateTime + Send + Sync),
) -> Result<(), SyncError> {
    if unseen.is_empty() {
        return Ok(());
    }
    for sim in ports.sims.get_sims(tenant, unseen).await? {
        let moved = sim.service_provider_id.as_deref() != Some(provider.id.as_str());
        if sim.vanished_at.is_some() || moved {
            continue;
        }
        let at = clock();
        let mut gone = sim.clone();
        gone.vanished_at = Some(at);
        gone.version += 1;
        let source = SimSource::CarrierSync {
            service_provider_id: provider.id.clone(),
        };
        gone.last_change = LastChange {
            source: source.clone(),
            at,
        };
        let event = SimEvent {
            at,
            source,
            kind: SimEventKind::Vanished,
            changes: Vec::new(),
        };
        match ports
            .sims
            .put_sim(tenant, &gone, Some(sim.version), Some(&event))
            .await?
        {
            Written::Written => run.counts.vanished += 1,
            Written::Conflict => run.counts.conflicts += 1,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::AccountLimits;
    use crate::port::{CarrierDevice, CarrierOutcome, CarrierPort};
    use crate::provider::parse_new_provider;
    use async_trait::async_trait;
    use cellbridge_bulk_changes::change::{Carrier, ChangeSpec, DeviceRef, DeviceRequest};
    use cellbridge_sims::memory::MemorySims;
    use cellbridge_sims::sim::SimStatus;
    use cellbridge_sims::sync::SyncLease;
    use serde_json::json;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    const PAGE: usize = 3;

    /// A carrier account's SIMs, listed 3 a page; each listing call takes a second.
    struct FakeInventory {
        carrier: Carrier,
        incremental: bool,
        sims: Mutex<Vec<CarrierSim>>,
        calls: Mutex<u32>,
        refuse: Mutex<bool>,
        /// What happened in order: `list` as a listing call starts (and what the test adds).
        timeline: Arc<Mutex<Vec<&'static str>>>,
    }

    impl FakeInventory {
        fn new(carrier: Carrier, incremental: bool, count: u32) -> Arc<Self> {
            let sims = (0..count)
                .map(|n| CarrierSim {
                    iccid: cellbridge_core::testing::iccid(n),
                    status: "ACTIVATED".into(),
                    rate_plan: Some("IOT-1GB".into()),
                    msisdn: Some(format!("1404{n:07}")),
                    updated_at: Some(
                        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(n.into()),
                    ),
                    ..CarrierSim::default()
                })
                .collect();
            Arc::new(Self {
                carrier,
                incremental,
                sims: Mutex::new(sims),
                calls: Mutex::new(0),
                refuse: Mutex::new(false),
                timeline: Arc::default(),
            })
        }

        /// Puts every SIM in `status` (ThingSpace's names, in the ThingSpace tests).
        fn all_in(&self, status: &str) {
            for sim in self.sims.lock().expect("sims").iter_mut() {
                sim.status = status.into();
            }
        }

        fn calls(&self) -> u32 {
            *self.calls.lock().expect("calls")
        }

        /// Changes SIM `n` in the carrier's portal at second `at`.
        fn change_outside(&self, n: usize, status: &str, at: i64) {
            let mut sims = self.sims.lock().expect("sims");
            sims[n].status = status.into();
            sims[n].updated_at = Some(OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(at));
        }
    }

    #[async_trait]
    impl CarrierPort for FakeInventory {
        fn carrier(&self) -> Carrier {
            self.carrier
        }

        fn lists_changes_since(&self) -> bool {
            self.incremental
        }

        async fn list_sims(
            &self,
            position: Option<&str>,
            since: Option<OffsetDateTime>,
            _journal: &CallJournal,
        ) -> Result<ListedSims, CarrierError> {
            *self.calls.lock().expect("calls") += 1;
            self.timeline.lock().expect("timeline").push("list");
            tokio::time::sleep(Duration::from_secs(1)).await;
            if *self.refuse.lock().expect("refuse") {
                return Err(CarrierError::AuthFailed);
            }
            let skip: usize =
                position
                    .map_or(Ok(0), str::parse)
                    .map_err(|_| CarrierError::Permanent {
                        code: "position".into(),
                        message: "bad".into(),
                    })?;
            let mut listed: Vec<CarrierSim> = self.sims.lock().expect("sims").clone();
            if let Some(since) = since {
                listed.retain(|sim| sim.updated_at.is_some_and(|at| at > since));
            }
            let page: Vec<CarrierSim> = listed.iter().skip(skip).take(PAGE).cloned().collect();
            let next = (skip + PAGE < listed.len()).then(|| (skip + PAGE).to_string());
            Ok(ListedSims { sims: page, next })
        }

        async fn read_device(
            &self,
            _device: &DeviceRef,
            _journal: &CallJournal,
        ) -> Result<CarrierDevice, CarrierError> {
            Err(CarrierError::NotFound)
        }

        async fn apply(
            &self,
            _change: &ChangeSpec,
            _requests: &[DeviceRequest],
            _journal: &CallJournal,
        ) -> Result<CarrierOutcome, CarrierError> {
            Ok(CarrierOutcome::Completed)
        }
    }

    fn provider(carrier: Carrier) -> ServiceProvider {
        let body = match carrier {
            Carrier::Jasper => {
                json!({"name": "Ops", "carrier": "jasper", "endpoint": "http://127.0.0.1:1/",
                "credentials": {"username": "ops", "apiKey": "k"}})
            }
            _ => {
                json!({"name": "Ops", "carrier": carrier.as_str(), "endpoint": "http://127.0.0.1:1/",
                "settings": {"accountName": "0000123456-00001"},
                "credentials": {"username": "ops", "password": "p", "appKey": "a", "appSecret": "b"}})
            }
        };
        let new = parse_new_provider(body.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("provider for {carrier:?}: {e:?}"));
        new.into_provider(
            TenantId::parse("demo").expect("tenant"),
            "sp-1".into(),
            "secret".into(),
            OffsetDateTime::UNIX_EPOCH,
        )
    }

    struct World {
        sims: MemorySims,
        devices: cellbridge_sims::memory::MemoryDeviceDirectory,
        carrier: Arc<FakeInventory>,
        account: CarrierAccount,
        provider: ServiceProvider,
        tenant: TenantId,
    }

    fn world(carrier: Carrier, incremental: bool, count: u32) -> World {
        let inventory = FakeInventory::new(carrier, incremental, count);
        let limits = AccountLimits {
            calls_per_second: 100,
            burst: 10,
            max_in_flight: 1,
        };
        World {
            sims: MemorySims::default(),
            devices: Default::default(),
            account: CarrierAccount::new(inventory.clone(), limits, Vec::new()),
            carrier: inventory,
            provider: provider(carrier),
            tenant: TenantId::parse("demo").expect("tenant"),
        }
    }

    impl World {
        async fn step(&self, holder: &str, budget: Duration) -> SyncStep {
            let ports = SyncPorts {
                sims: &self.sims,
                states: &self.sims,
                devices: &self.devices,
            };
            let clock = || OffsetDateTime::UNIX_EPOCH + time::Duration::days(1);
            sync_step(
                &ports,
                &self.account,
                &self.tenant,
                &self.provider,
                holder,
                &clock,
                Instant::now() + budget,
            )
            .await
            .expect("sync step")
        }

        async fn finished(&self) -> SyncSummary {
            match self.step("a", Duration::from_secs(3600)).await {
                SyncStep::Finished(summary) => summary,
                other => panic!("not finished: {other:?}"),
            }
        }

        fn sim(&self, n: u32) -> Sim {
            self.sims
                .all(&self.tenant)
                .into_iter()
                .find(|sim| sim.iccid == cellbridge_core::testing::iccid(n))
                .expect("in the inventory")
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_listing_imports_once_then_writes_only_what_changed_and_what_vanished() {
        let w = world(Carrier::ThingSpace, false, 10);
        w.carrier.all_in("active");
        // A device registered with SIM 3 before the sync ever saw it.
        let third = cellbridge_core::testing::iccid(3);
        w.devices.register(&w.tenant, &third, "trk-3");
        let first = w.finished().await;
        assert_eq!(
            w.sim(3).device_id.as_deref(),
            Some("trk-3"),
            "linked as imported"
        );
        assert_eq!(w.sim(4).device_id, None);
        assert_eq!(
            (
                first.counts.imported,
                first.counts.listed,
                first.counts.calls
            ),
            (10, 10, 4)
        );
        assert!(first.vanish_checked && first.error.is_none());
        let sim = w.sim(4);
        assert_eq!(sim.status, SimStatus::Active);
        assert_eq!(sim.carrier_status.as_deref(), Some("active"));
        assert_eq!(
            sim.msisdn.as_deref(),
            Some("14040000004"),
            "as the carrier listed it"
        );
        assert_eq!(sim.service_provider_id.as_deref(), Some("sp-1"));

        let again = w.finished().await;
        assert_eq!((again.counts.unchanged, again.counts.written()), (10, 0));

        w.carrier.change_outside(2, "suspend", 100);
        w.carrier.change_outside(7, "deactive", 101);
        w.carrier.sims.lock().expect("sims").remove(9);
        let drift = w.finished().await;
        assert_eq!(
            (
                drift.counts.changed,
                drift.counts.vanished,
                drift.counts.unchanged
            ),
            (2, 1, 7)
        );
        assert_eq!(w.sim(2).status, SimStatus::Suspended);
        assert_eq!(w.sim(7).status, SimStatus::Deactivated);
        assert!(w.sim(9).vanished_at.is_some());
        assert_eq!(
            w.sim(2).last_change.source,
            SimSource::CarrierSync {
                service_provider_id: "sp-1".into()
            }
        );
        let history = w
            .sims
            .sim_history(
                &w.tenant,
                &w.sim(2).iccid,
                &PageRequest {
                    limit: 10,
                    cursor: None,
                },
            )
            .await
            .expect("history");
        let kinds: Vec<SimEventKind> = history.items.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [SimEventKind::Changed, SimEventKind::Imported]);
        assert_eq!(history.items[0].changes[0].from.as_deref(), Some("active"));

        // Listed again: it reappears.
        w.carrier.sims.lock().expect("sims").push(CarrierSim {
            iccid: cellbridge_core::testing::iccid(9),
            status: "active".into(),
            ..CarrierSim::default()
        });
        let back = w.finished().await;
        assert_eq!(back.counts.reappeared, 1);
        assert!(w.sim(9).vanished_at.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_carrier_that_lists_changes_is_asked_only_for_those_after_the_first_import() {
        let w = world(Carrier::Jasper, true, 30);
        let first = w.finished().await;
        assert!(first.full);
        assert_eq!(first.counts.imported, 30);
        let calls = w.carrier.calls();
        w.carrier.change_outside(5, "DEACTIVATED", 1_000);
        let second = w.finished().await;
        assert!(!second.full && !second.vanish_checked);
        assert_eq!((second.counts.listed, second.counts.changed), (1, 1));
        assert_eq!(
            w.carrier.calls() - calls,
            1,
            "one page of changes, not 10 of everything"
        );
        assert_eq!(w.sim(5).status, SimStatus::Deactivated);
    }

    /// A device directory that takes a second a lookup, and says when each ends.
    struct SlowDirectory(Arc<Mutex<Vec<&'static str>>>);

    #[async_trait]
    impl DeviceDirectory for SlowDirectory {
        async fn devices_with_iccids(
            &self,
            _tenant: &TenantId,
            _iccids: &[String],
        ) -> Result<std::collections::HashMap<String, String>, StoreError> {
            tokio::time::sleep(Duration::from_secs(1)).await;
            self.0.lock().expect("timeline").push("compared");
            Ok(Default::default())
        }
    }

    /// The inventory, slow to list (2.5 s a page) and saying when a listing page is read.
    struct SlowListing<'a> {
        sims: &'a MemorySims,
        timeline: Arc<Mutex<Vec<&'static str>>>,
    }

    #[async_trait]
    impl SimStore for SlowListing<'_> {
        async fn get_sim(&self, t: &TenantId, iccid: &str) -> Result<Option<Sim>, StoreError> {
            self.sims.get_sim(t, iccid).await
        }
        async fn get_sims(&self, t: &TenantId, iccids: &[String]) -> Result<Vec<Sim>, StoreError> {
            self.sims.get_sims(t, iccids).await
        }
        async fn list_sims(
            &self,
            t: &TenantId,
            query: &SimQuery,
            page: &PageRequest,
        ) -> Result<cellbridge_core::store::Page<Sim>, StoreError> {
            tokio::time::sleep(Duration::from_millis(2_500)).await;
            self.timeline.lock().expect("timeline").push("inventory");
            self.sims.list_sims(t, query, page).await
        }
        async fn sim_history(
            &self,
            t: &TenantId,
            iccid: &str,
            page: &PageRequest,
        ) -> Result<cellbridge_core::store::Page<SimEvent>, StoreError> {
            self.sims.sim_history(t, iccid, page).await
        }
        async fn put_sim(
            &self,
            t: &TenantId,
            sim: &Sim,
            stored: Option<u64>,
            event: Option<&SimEvent>,
        ) -> Result<Written, StoreError> {
            self.sims.put_sim(t, sim, stored, event).await
        }
        async fn sims_due_details(
            &self,
            t: &TenantId,
            provider: &str,
            page: &PageRequest,
        ) -> Result<cellbridge_core::store::Page<Sim>, StoreError> {
            self.sims.sims_due_details(t, provider, page).await
        }
        async fn link_device(
            &self,
            t: &TenantId,
            iccid: &str,
            d: &str,
        ) -> Result<bool, StoreError> {
            self.sims.link_device(t, iccid, d).await
        }
        async fn unlink_device(
            &self,
            t: &TenantId,
            iccid: &str,
            d: &str,
        ) -> Result<(), StoreError> {
            self.sims.unlink_device(t, iccid, d).await
        }
        async fn apply_change(
            &self,
            t: &TenantId,
            change: &cellbridge_sims::sim::SimChange,
            at: OffsetDateTime,
        ) -> Result<(), StoreError> {
            self.sims.apply_change(t, change, at).await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn what_the_inventory_holds_is_read_while_the_carrier_lists() {
        let w = world(Carrier::ThingSpace, false, 12);
        w.finished().await;
        w.carrier.sims.lock().expect("sims").remove(4);
        w.carrier.timeline.lock().expect("timeline").clear();
        let slow = SlowListing {
            sims: &w.sims,
            timeline: w.carrier.timeline.clone(),
        };
        let ports = SyncPorts {
            sims: &slow,
            states: &w.sims,
            devices: &w.devices,
        };
        let clock = || OffsetDateTime::UNIX_EPOCH + time::Duration::days(2);
        let step = sync_step(
            &ports,
            &w.account,
            &w.tenant,
            &w.provider,
            "a",
            &clock,
            Instant::now() + Duration::from_secs(60),
        )
        .await
        .expect("sync step");
        assert!(
            matches!(&step, SyncStep::Finished(s) if s.counts.vanished == 1 && s.vanish_checked),
            "{step:?}"
        );
        // Four listing calls of a second each; the inventory's page comes in between them.
        let timeline = w.carrier.timeline.lock().expect("timeline").clone();
        assert_eq!(timeline, ["list", "list", "list", "inventory", "list"]);
        assert!(w.sim(4).vanished_at.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn the_next_page_is_asked_for_while_one_is_compared() {
        let w = world(Carrier::ThingSpace, false, 12);
        let directory = SlowDirectory(w.carrier.timeline.clone());
        let ports = SyncPorts {
            sims: &w.sims,
            states: &w.sims,
            devices: &directory,
        };
        let clock = || OffsetDateTime::UNIX_EPOCH + time::Duration::days(1);
        let step = sync_step(
            &ports,
            &w.account,
            &w.tenant,
            &w.provider,
            "a",
            &clock,
            Instant::now() + Duration::from_secs(60),
        )
        .await
        .expect("sync step");
        assert!(matches!(step, SyncStep::Finished(s) if s.counts.imported == 12));
        let timeline = w.carrier.timeline.lock().expect("timeline").clone();
        // Each page's listing call starts before the page ahead of it is compared.
        assert_eq!(
            timeline,
            ["list", "list", "compared", "list", "compared", "list", "compared", "compared"]
        );
        assert_eq!(w.carrier.calls(), 4, "no page asked for twice");
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_cut_short_resumes_from_its_last_page() {
        let w = world(Carrier::ThingSpace, false, 12);
        // Each listing call takes a second: two pages fit before the deadline.
        assert_eq!(
            w.step("a", Duration::from_millis(1_500)).await,
            SyncStep::Continue
        );
        assert_eq!(w.sims.all(&w.tenant).len(), 6);
        // Whoever takes the next step goes on with the run (the first freed it).
        let rest = match w.step("b", Duration::from_secs(60)).await {
            SyncStep::Finished(summary) => summary,
            other => panic!("not finished: {other:?}"),
        };
        assert_eq!(rest.counts.listed, 12, "the run's counts carry over");
        assert_eq!(rest.counts.calls, 4, "no page listed twice");
        assert!(
            !rest.vanish_checked,
            "a resumed run does not know every SIM it saw"
        );
        assert_eq!(w.sims.all(&w.tenant).len(), 12);
    }

    #[tokio::test(start_paused = true)]
    async fn a_listing_older_than_a_bulk_change_outcome_does_not_undo_it() {
        let w = world(Carrier::ThingSpace, false, 3);
        w.carrier.all_in("active");
        w.finished().await;
        // A suspension's outcome lands at the instant the next listing is asked for; the
        // listing still shows the SIM active.
        let suspend = cellbridge_sims::sim::SimChange {
            iccid: w.sim(1).iccid,
            carrier: Carrier::ThingSpace,
            service_provider_id: Some("sp-1".into()),
            set: vec![(
                cellbridge_sims::sim::SimField::Status,
                Some("suspended".into()),
            )],
            source: SimSource::BulkChange {
                bulk_change_id: "bc-1".into(),
            },
        };
        w.sims
            .apply_change(
                &w.tenant,
                &suspend,
                OffsetDateTime::UNIX_EPOCH + time::Duration::days(1),
            )
            .await
            .expect("applied");
        let run = w.finished().await;
        assert_eq!((run.counts.conflicts, run.counts.changed), (1, 0));
        assert_eq!(w.sim(1).status, SimStatus::Suspended);
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_under_way_elsewhere_is_left_to_its_holder_until_its_lease_ends() {
        let w = world(Carrier::ThingSpace, false, 3);
        let mut held = SyncState::new("sp-1");
        held.version = 1;
        held.lease = Some(SyncLease {
            holder: "elsewhere".into(),
            until: OffsetDateTime::UNIX_EPOCH
                + time::Duration::days(1)
                + time::Duration::minutes(1),
        });
        assert_eq!(
            w.sims.put_sync(&w.tenant, &held).await.expect("stored"),
            Written::Written
        );
        assert_eq!(w.step("a", Duration::from_secs(60)).await, SyncStep::Busy);
        assert_eq!(w.carrier.calls(), 0);
        held.version = 2;
        held.lease = Some(SyncLease {
            holder: "elsewhere".into(),
            until: OffsetDateTime::UNIX_EPOCH,
        });
        w.sims.put_sync(&w.tenant, &held).await.expect("stored");
        assert_eq!(
            w.finished().await.counts.imported,
            3,
            "an expired lease is taken over"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn refused_credentials_are_not_tried_again_until_they_change() {
        let mut w = world(Carrier::ThingSpace, false, 5);
        *w.carrier.refuse.lock().expect("refuse") = true;
        let refused = w.finished().await;
        assert!(
            refused
                .error
                .as_deref()
                .is_some_and(|e| e.contains("credentials")),
            "{refused:?}"
        );
        assert_eq!(
            w.carrier.calls(),
            1,
            "an authentication failure is not retried"
        );
        assert_eq!(
            w.step("a", Duration::from_secs(60)).await,
            SyncStep::CredentialsRefused
        );
        assert_eq!(w.carrier.calls(), 1, "and no later run logs in with them");
        *w.carrier.refuse.lock().expect("refuse") = false;
        w.provider.version += 1;
        assert_eq!(w.finished().await.counts.imported, 5);
    }
}
