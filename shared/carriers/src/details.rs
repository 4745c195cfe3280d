//! Reading SIM details one by one, for carriers whose listing leaves some out (Jasper's Search
//! Devices gives status and plans, not MSISDN, IMSI, customer or labels). The inventory sync
//! marks each SIM it writes from such a listing as due; this run reads the due SIMs of a
//! provider with the carrier's per-SIM call, at the account's pace, and writes what the details
//! add. It is a run of its own (its own record and lease), so a first import's one call per SIM
//! (hours for a large account) never holds the listing up: the sync keeps every SIM's status
//! current meanwhile.

use crate::account::CarrierAccount;
use crate::error::CarrierError;
use crate::leased::{Holding, Leased, StepEnd};
use crate::port::{CallJournal, CarrierSim};
use crate::provider::ServiceProvider;
use crate::sync::{synced, SyncError};
use cellbridge_core::store::PageRequest;
use cellbridge_core::tenant::TenantId;
use cellbridge_sims::ports::{SimStore, SyncStateStore, Written};
use cellbridge_sims::sim::Sim;
use cellbridge_sims::sync::{DetailsRun, DetailsState, DetailsSummary};
use time::OffsetDateTime;
use tokio::time::Instant;

/// Due SIMs read between checkpoints: ten seconds of Jasper's pace.
pub const DETAILS_PAGE: u32 = 50;

/// A SIM's details call that fails for a passing reason is tried this many times in all.
const DETAILS_ATTEMPTS: u32 = 5;

/// Steps that may pause on the same SIM before it is passed over as failed: a SIM the carrier
/// keeps failing on must not hold up every SIM after it.
const PAUSES_PER_SIM: u32 = 3;

/// How one step of a reading of details ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetailsStep {
    /// No SIM is due any more (or the carrier refused the credentials; the summary says so).
    Finished(DetailsSummary),
    /// Time ran out with SIMs left: run another step to go on.
    Continue,
    /// The carrier kept failing: the run keeps its place for a later step.
    Paused(String),
    /// Another holder runs this provider's reading.
    Busy,
    /// No SIM is due and no run is under way: nothing was written.
    Idle,
    /// The provider's listing tells everything: nothing is ever due.
    Unneeded,
    /// The carrier refused these credentials (the sync found out): nothing is tried until they
    /// change.
    CredentialsRefused,
}

impl From<StepEnd> for DetailsStep {
    fn from(end: StepEnd) -> Self {
        match end {
            StepEnd::OutOfTime => DetailsStep::Continue,
            StepEnd::TakenOver => DetailsStep::Busy,
        }
    }
}

/// What a step needs besides the carrier account.
pub struct DetailsPorts<'a> {
    pub sims: &'a dyn SimStore,
    pub states: &'a dyn SyncStateStore,
}

/// Reads the details of `provider`'s due SIMs until none is left or `deadline` comes, as
/// `holder`. `clock` tells the time of each write.
pub async fn details_step(
    ports: &DetailsPorts<'_>,
    account: &CarrierAccount,
    tenant: &TenantId,
    provider: &ServiceProvider,
    holder: &str,
    clock: &(dyn Fn() -> OffsetDateTime + Send + Sync),
    deadline: Instant,
) -> Result<DetailsStep, SyncError> {
    if account.port.listing_is_complete() {
        return Ok(DetailsStep::Unneeded);
    }
    let refused = ports
        .states
        .get_sync(tenant, &provider.id)
        .await?
        .is_some_and(|sync| sync.refused_provider_version == Some(provider.version));
    if refused {
        return Ok(DetailsStep::CredentialsRefused);
    }
    let mut state = ports
        .states
        .get_details_state(tenant, &provider.id)
        .await?
        .unwrap_or_else(|| DetailsState::new(&provider.id));
    let now = clock();
    if state.held_by_another(holder, now) {
        return Ok(DetailsStep::Busy);
    }
    let first = PageRequest {
        limit: 1,
        cursor: None,
    };
    let nothing_due = || async {
        let due = ports.sims.sims_due_details(tenant, &provider.id, &first);
        Ok::<bool, SyncError>(due.await?.items.is_empty())
    };
    // Queued after every sync: most find nothing to do, and leave the last run's summary be.
    if state.run.is_none() && nothing_due().await? {
        return Ok(DetailsStep::Idle);
    }
    let mut run = state.run.take().unwrap_or_else(|| DetailsRun {
        id: uuid::Uuid::now_v7().to_string(),
        started_at: now,
        position: None,
        pauses_here: 0,
        counts: Default::default(),
    });
    let holding = Holding::new(ports.states, tenant, holder, deadline);
    if !holding.keep(&mut state, &run, true, now).await? {
        return Ok(DetailsStep::Busy);
    }
    tracing::info!(run = %run.id, "details step");
    loop {
        let page = ports
            .sims
            .sims_due_details(
                tenant,
                &provider.id,
                &PageRequest {
                    limit: DETAILS_PAGE,
                    cursor: run.position.clone(),
                },
            )
            .await?;
        for sim in &page.items {
            // One SIM can take a while (the shared pace, retries): the deadline is checked
            // before each, the place kept at the last one done.
            if holding.out_of_time() {
                let kept = holding.keep(&mut state, &run, false, clock()).await?;
                return Ok(if kept {
                    DetailsStep::Continue
                } else {
                    DetailsStep::Busy
                });
            }
            let described = match describe(account, sim, &mut run).await {
                Ok(described) => described,
                Err(CarrierError::AuthFailed) => {
                    let reason = "the carrier refused the credentials".to_owned();
                    return finish(&holding, &mut state, run, Some(reason), clock).await;
                }
                Err(error) if run.pauses_here + 1 < PAUSES_PER_SIM => {
                    // The place is the last SIM done: the next step starts with this one.
                    run.pauses_here += 1;
                    tracing::warn!(provider = %provider.id, %error, "reading details paused");
                    holding.keep(&mut state, &run, false, clock()).await?;
                    return Ok(DetailsStep::Paused(format!(
                        "the carrier keeps failing: {error}"
                    )));
                }
                Err(error) => {
                    tracing::warn!(iccid = %sim.iccid, %error, "details passed over");
                    run.counts.failed += 1;
                    None
                }
            };
            write(ports, tenant, provider, sim, described, &mut run, clock).await?;
            run.pauses_here = 0;
            run.position = Some(sim.iccid.clone());
        }
        if page.next_cursor.is_none() {
            return finish(&holding, &mut state, run, None, clock).await;
        }
        if let Some(end) = holding.after_page(&mut state, &run, clock()).await? {
            return Ok(end.into());
        }
    }
}

/// `sim`'s details at the account's pace, tried again on passing failures; `Ok(None)` when the
/// carrier cannot tell them (it does not know the SIM: the next listing shows whether it
/// vanished), `Err` when it fails for every SIM.
async fn describe(
    account: &CarrierAccount,
    sim: &Sim,
    run: &mut DetailsRun,
) -> Result<Option<CarrierSim>, CarrierError> {
    let journal = CallJournal::default();
    let described = account
        .paced_with_retries(1, DETAILS_ATTEMPTS, &mut run.counts.calls, || {
            account.port.describe_sim(&sim.iccid, &journal)
        })
        .await;
    match described {
        Ok(described) => {
            run.counts.read += 1;
            Ok(Some(described))
        }
        Err(error) if error.is_retryable() || error == CarrierError::AuthFailed => Err(error),
        Err(error) => {
            tracing::info!(iccid = %sim.iccid, %error, "no details for this SIM");
            run.counts.failed += 1;
            Ok(None)
        }
    }
}

/// Writes what `described` adds to `sim` and marks its details read, conditional on the stored
/// version: a SIM another writer changed meanwhile (its usage, its device) is read again and
/// written once more, then left due for the next run.
async fn write(
    ports: &DetailsPorts<'_>,
    tenant: &TenantId,
    provider: &ServiceProvider,
    sim: &Sim,
    described: Option<CarrierSim>,
    run: &mut DetailsRun,
    clock: &(dyn Fn() -> OffsetDateTime + Send + Sync),
) -> Result<(), SyncError> {
    let mut current = sim.clone();
    for attempt in 0..2 {
        let changed = described
            .as_ref()
            .and_then(|described| synced(Some(&current), described, provider, clock()));
        let (next, event) = match changed {
            Some((next, event)) => (next, Some(event)),
            // Nothing new: only the mark goes, with no history entry.
            None => (
                Sim {
                    version: current.version + 1,
                    ..current.clone()
                },
                None,
            ),
        };
        let next = Sim {
            details_due: false,
            ..next
        };
        let put = ports
            .sims
            .put_sim(tenant, &next, Some(current.version), event.as_ref());
        match put.await? {
            Written::Written => {
                run.counts.changed += u64::from(event.is_some());
                return Ok(());
            }
            Written::Conflict if attempt == 0 => {
                match ports.sims.get_sim(tenant, &sim.iccid).await? {
                    Some(fresh) if fresh.details_due => current = fresh,
                    // Read meanwhile, or gone: nothing left to do.
                    _ => return Ok(()),
                }
            }
            Written::Conflict => run.counts.conflicts += 1,
        }
    }
    Ok(())
}

async fn finish(
    holding: &Holding<'_>,
    state: &mut DetailsState,
    run: DetailsRun,
    error: Option<String>,
    clock: &(dyn Fn() -> OffsetDateTime + Send + Sync),
) -> Result<DetailsStep, SyncError> {
    let summary = DetailsSummary {
        run_id: run.id,
        started_at: run.started_at,
        finished_at: clock(),
        counts: run.counts,
        error,
    };
    tracing::info!(
        read = summary.counts.read,
        changed = summary.counts.changed,
        calls = summary.counts.calls,
        error = summary.error.as_deref(),
        "details run finished"
    );
    state.last_run = Some(summary.clone());
    holding.close(state).await?;
    Ok(DetailsStep::Finished(summary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::AccountLimits;
    use crate::port::{CarrierDevice, CarrierOutcome, CarrierPort, ListedSims};
    use crate::provider::parse_new_provider;
    use crate::sync::{sync_step, SyncPorts, SyncStep};
    use async_trait::async_trait;
    use cellbridge_bulk_changes::change::{Carrier, ChangeSpec, DeviceRef, DeviceRequest};
    use cellbridge_sims::memory::{MemoryDeviceDirectory, MemorySims};
    use cellbridge_sims::sim::{SimEventKind, SimField};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// A Jasper-like account: its listing gives status only, its details the MSISDN too. Each
    /// details call takes a second.
    #[derive(Default)]
    struct Account {
        /// ICCID, status, whether the carrier still knows it.
        sims: Mutex<Vec<(String, String, bool)>>,
        described: Mutex<Vec<String>>,
        /// Details calls that fail for a passing reason before one answers.
        failing: Mutex<u32>,
        /// SIMs whose customer was changed at the carrier, at which second.
        edited: Mutex<std::collections::HashMap<String, i64>>,
    }

    impl Account {
        /// When the carrier last changed `iccid` (epoch + seconds) and its customer then.
        fn edit_of(&self, iccid: &str) -> (OffsetDateTime, String) {
            let at = self.edited.lock().expect("edited").get(iccid).copied();
            let customer = at.map_or("Acme".to_owned(), |at| format!("Acme-{at}"));
            let at = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(at.unwrap_or(0));
            (at, customer)
        }
    }

    impl Account {
        fn with(count: u32) -> Arc<Self> {
            let account = Self::default();
            *account.sims.lock().expect("sims") = (0..count)
                .map(|n| (cellbridge_core::testing::iccid(n), "ACTIVATED".into(), true))
                .collect();
            Arc::new(account)
        }

        fn described(&self) -> Vec<String> {
            std::mem::take(&mut *self.described.lock().expect("described"))
        }
    }

    #[async_trait]
    impl CarrierPort for Account {
        fn carrier(&self) -> Carrier {
            Carrier::Jasper
        }

        fn listing_is_complete(&self) -> bool {
            false
        }

        async fn list_sims(
            &self,
            _: Option<&str>,
            _: Option<OffsetDateTime>,
            _: &CallJournal,
        ) -> Result<ListedSims, CarrierError> {
            let sims = self.sims.lock().expect("sims");
            Ok(ListedSims {
                sims: sims
                    .iter()
                    .map(|(iccid, status, _)| CarrierSim {
                        iccid: iccid.clone(),
                        status: status.clone(),
                        updated_at: Some(self.edit_of(iccid).0),
                        ..CarrierSim::default()
                    })
                    .collect(),
                next: None,
            })
        }

        async fn describe_sim(
            &self,
            iccid: &str,
            _: &CallJournal,
        ) -> Result<CarrierSim, CarrierError> {
            tokio::time::sleep(Duration::from_secs(1)).await;
            {
                let mut failing = self.failing.lock().expect("failing");
                if *failing > 0 {
                    *failing -= 1;
                    return Err(CarrierError::Transient("HTTP 503".into()));
                }
            }
            self.described
                .lock()
                .expect("described")
                .push(iccid.to_owned());
            let sims = self.sims.lock().expect("sims");
            let Some((_, status, true)) = sims.iter().find(|(i, _, _)| i == iccid) else {
                return Err(CarrierError::NotFound);
            };
            let (updated_at, customer) = self.edit_of(iccid);
            Ok(CarrierSim {
                iccid: iccid.to_owned(),
                status: status.clone(),
                msisdn: Some(format!("+88235{}", &iccid[iccid.len() - 10..])),
                customer: Some(customer),
                updated_at: Some(updated_at),
                ..CarrierSim::default()
            })
        }

        async fn read_device(
            &self,
            _: &DeviceRef,
            _: &CallJournal,
        ) -> Result<CarrierDevice, CarrierError> {
            Err(CarrierError::NotFound)
        }

        async fn apply(
            &self,
            _: &ChangeSpec,
            _: &[DeviceRequest],
            _: &CallJournal,
        ) -> Result<CarrierOutcome, CarrierError> {
            Ok(CarrierOutcome::Completed)
        }
    }

    struct World {
        carrier: Arc<Account>,
        account: CarrierAccount,
        sims: MemorySims,
        provider: ServiceProvider,
        tenant: TenantId,
    }

    fn world(count: u32) -> World {
        let carrier = Account::with(count);
        let limits = AccountLimits {
            calls_per_second: 100,
            burst: 10,
            max_in_flight: 1,
        };
        let body = serde_json::json!({"name": "Ops", "carrier": "jasper",
            "endpoint": "http://127.0.0.1:1/", "credentials": {"username": "ops", "apiKey": "k"}});
        let tenant = TenantId::parse("demo").expect("tenant");
        World {
            account: CarrierAccount::new(carrier.clone(), limits, Vec::new()),
            carrier,
            sims: MemorySims::default(),
            provider: parse_new_provider(body.to_string().as_bytes())
                .expect("provider")
                .into_provider(
                    tenant.clone(),
                    "sp-1".into(),
                    "secret".into(),
                    OffsetDateTime::UNIX_EPOCH,
                ),
            tenant,
        }
    }

    fn clock() -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::days(1)
    }

    impl World {
        async fn listed(&self) {
            let ports = SyncPorts {
                sims: &self.sims,
                states: &self.sims,
                devices: &MemoryDeviceDirectory::default(),
            };
            let step = sync_step(
                &ports,
                &self.account,
                &self.tenant,
                &self.provider,
                "sync",
                &clock,
                Instant::now() + Duration::from_secs(60),
            )
            .await
            .expect("sync step");
            assert!(matches!(step, SyncStep::Finished(_)), "{step:?}");
        }

        async fn details(&self, holder: &str, budget: Duration) -> DetailsStep {
            let ports = DetailsPorts {
                sims: &self.sims,
                states: &self.sims,
            };
            details_step(
                &ports,
                &self.account,
                &self.tenant,
                &self.provider,
                holder,
                &clock,
                Instant::now() + budget,
            )
            .await
            .expect("details step")
        }

        fn due(&self) -> usize {
            let all = self.sims.all(&self.tenant);
            all.iter().filter(|sim| sim.details_due).count()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn sims_the_listing_shows_new_or_changed_get_their_details_once() {
        let w = world(120);
        w.listed().await;
        assert_eq!(w.due(), 120, "the listing gave no numbers");
        let DetailsStep::Finished(summary) = w.details("a", Duration::from_secs(3600)).await else {
            panic!("not finished");
        };
        assert_eq!((summary.counts.read, summary.counts.changed), (120, 120));
        assert_eq!(w.carrier.described().len(), 120);
        assert_eq!(w.due(), 0);
        let sim = &w.sims.all(&w.tenant)[7];
        let tail = &sim.iccid[sim.iccid.len() - 10..];
        assert_eq!(sim.msisdn, Some(format!("+88235{tail}")));
        assert_eq!(sim.customer.as_deref(), Some("Acme"));
        let history = w
            .sims
            .sim_history(
                &w.tenant,
                &sim.iccid,
                &PageRequest {
                    limit: 10,
                    cursor: None,
                },
            )
            .await
            .expect("history");
        assert_eq!(history.items[0].kind, SimEventKind::Changed);
        assert!(history.items[0]
            .changes
            .iter()
            .any(|c| c.field == SimField::Msisdn));

        // Nothing due: nothing read.
        assert_eq!(
            w.details("a", Duration::from_secs(60)).await,
            DetailsStep::Idle
        );

        // Changed at the carrier in what only the details show: listed as changed (a newer
        // `dateUpdated`), read again; listed again unchanged, not.
        let five = cellbridge_core::testing::iccid(5);
        w.carrier
            .edited
            .lock()
            .expect("edited")
            .insert(five.clone(), 100);
        w.listed().await;
        assert_eq!(w.due(), 1);
        w.details("a", Duration::from_secs(60)).await;
        assert_eq!(w.carrier.described(), [five]);
        let customer = w.sims.all(&w.tenant)[5].customer.clone();
        assert_eq!(customer.as_deref(), Some("Acme-100"));
        w.listed().await;
        assert_eq!(w.due(), 0);

        // One SIM changed at the carrier: only it is read again, and its unchanged details
        // leave no history entry of their own.
        w.carrier.sims.lock().expect("sims")[3].1 = "DEACTIVATED".into();
        w.listed().await;
        assert_eq!(w.due(), 1);
        w.details("a", Duration::from_secs(60)).await;
        assert_eq!(w.carrier.described(), [cellbridge_core::testing::iccid(3)]);
        let history = w
            .sims
            .sim_history(
                &w.tenant,
                &cellbridge_core::testing::iccid(3),
                &PageRequest {
                    limit: 10,
                    cursor: None,
                },
            )
            .await
            .expect("history");
        assert_eq!(history.items.len(), 3, "imported, details, deactivated");
        assert_eq!(w.due(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_cut_short_or_paused_goes_on_from_its_place() {
        let w = world(120);
        w.listed().await;
        // A SIM takes a second: the first step stops when its 30 s are up, mid-page.
        assert_eq!(
            w.details("a", Duration::from_secs(30)).await,
            DetailsStep::Continue
        );
        assert_eq!(w.due(), 90);
        // The carrier fails on the next SIM, more times than a call is tried.
        *w.carrier.failing.lock().expect("failing") = DETAILS_ATTEMPTS;
        assert!(matches!(
            w.details("b", Duration::from_secs(3600)).await,
            DetailsStep::Paused(_)
        ));
        assert_eq!(w.due(), 90);
        // A SIM the carrier no longer knows is marked read (the listing tells if it vanished).
        w.carrier.sims.lock().expect("sims")[60].2 = false;
        let DetailsStep::Finished(summary) = w.details("c", Duration::from_secs(3600)).await else {
            panic!("not finished");
        };
        assert_eq!(
            (summary.counts.read, summary.counts.failed),
            (119, 1),
            "the run's counts carry over"
        );
        let described = w.carrier.described();
        assert_eq!(described.len(), 120, "no SIM read twice: {described:?}");
        assert_eq!(w.due(), 0);
        assert_eq!(
            w.details("d", Duration::from_secs(60)).await,
            DetailsStep::Idle,
            "nothing due: nothing written"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_sim_the_carrier_keeps_failing_on_is_passed_over_after_a_few_steps() {
        let w = world(3);
        w.listed().await;
        *w.carrier.failing.lock().expect("failing") = DETAILS_ATTEMPTS * PAUSES_PER_SIM;
        for holder in ["a", "b"] {
            assert!(matches!(
                w.details(holder, Duration::from_secs(3600)).await,
                DetailsStep::Paused(_)
            ));
        }
        let DetailsStep::Finished(summary) = w.details("c", Duration::from_secs(3600)).await else {
            panic!("not finished");
        };
        assert_eq!((summary.counts.failed, summary.counts.read), (1, 2));
        assert_eq!(w.due(), 0, "passed over, not left due");
        let first = &w.sims.all(&w.tenant)[0];
        assert_eq!(first.msisdn, None);
    }
}
