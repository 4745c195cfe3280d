//! What the inventory sync, the usage collection and the reading of SIM details share: a run
//! per service provider that takes many steps (a Lambda invocation each), kept in one record with
//! the run's place, a lease naming the step that holds it, and a version every write is
//! conditional on. A step takes the lease, keeps the place after every page (giving the lease up
//! when its time is out), and closes the run; a write that finds another version means another
//! step took the run over.

use crate::sync::LEASE;
use cellbridge_core::store::StoreError;
use cellbridge_core::tenant::TenantId;
use cellbridge_sims::ports::{SyncStateStore, Written};
use cellbridge_sims::sync::{
    DetailsRun, DetailsState, SyncLease, SyncRun, SyncState, UsageRun, UsageState,
};
use time::OffsetDateTime;
use tokio::time::Instant;

/// A provider's record of one kind of run.
#[async_trait::async_trait]
pub(crate) trait Leased: Send + Sync {
    type Run: Clone + Send + Sync;

    fn run_mut(&mut self) -> &mut Option<Self::Run>;
    fn lease(&self) -> &Option<SyncLease>;
    fn lease_mut(&mut self) -> &mut Option<SyncLease>;
    fn version_mut(&mut self) -> &mut u64;

    /// Writes the record if the stored one is the version before it.
    async fn put(
        &self,
        states: &dyn SyncStateStore,
        tenant: &TenantId,
    ) -> Result<Written, StoreError>;

    /// Whether a step other than `holder`'s holds the run at `now`.
    fn held_by_another(&self, holder: &str, now: OffsetDateTime) -> bool {
        self.lease()
            .as_ref()
            .is_some_and(|lease| lease.holder != holder && lease.until > now)
    }
}

/// The same accessors for each record, and the store's write of its kind.
macro_rules! leased {
    ($state:ty, $run:ty, $put:ident) => {
        #[async_trait::async_trait]
        impl Leased for $state {
            type Run = $run;

            fn run_mut(&mut self) -> &mut Option<$run> {
                &mut self.run
            }
            fn lease(&self) -> &Option<SyncLease> {
                &self.lease
            }
            fn lease_mut(&mut self) -> &mut Option<SyncLease> {
                &mut self.lease
            }
            fn version_mut(&mut self) -> &mut u64 {
                &mut self.version
            }
            async fn put(
                &self,
                states: &dyn SyncStateStore,
                tenant: &TenantId,
            ) -> Result<Written, StoreError> {
                states.$put(tenant, self).await
            }
        }
    };
}

leased!(SyncState, SyncRun, put_sync);
leased!(UsageState, UsageRun, put_usage_state);
leased!(DetailsState, DetailsRun, put_details_state);

/// A step of a provider's run: the record's store and tenant, who takes the step, and until when.
pub(crate) struct Holding<'a> {
    states: &'a dyn SyncStateStore,
    tenant: &'a TenantId,
    holder: &'a str,
    deadline: Instant,
}

/// Why a step ends after a page.
pub(crate) enum StepEnd {
    /// Time is out: the place is kept and the lease given up, for the next step to take at once.
    OutOfTime,
    /// Another step took the run over (this one was presumed dead): leave it to them.
    TakenOver,
}

impl<'a> Holding<'a> {
    pub(crate) fn new(
        states: &'a dyn SyncStateStore,
        tenant: &'a TenantId,
        holder: &'a str,
        deadline: Instant,
    ) -> Self {
        Self {
            states,
            tenant,
            holder,
            deadline,
        }
    }

    /// Writes `state` as its next version; false when another writer came first.
    async fn save<S: Leased>(&self, state: &mut S) -> Result<bool, StoreError> {
        *state.version_mut() += 1;
        Ok(state.put(self.states, self.tenant).await? == Written::Written)
    }

    /// Keeps `run` in `state`, held by this step for a lease from `now` when `held`, else by no
    /// one; false when another writer came first.
    pub(crate) async fn keep<S: Leased>(
        &self,
        state: &mut S,
        run: &S::Run,
        held: bool,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        *state.run_mut() = Some(run.clone());
        *state.lease_mut() = held.then(|| SyncLease {
            holder: self.holder.to_owned(),
            until: now + LEASE,
        });
        self.save(state).await
    }

    /// Keeps the run's place after a page, the lease renewed unless the deadline has come; why
    /// the step ends, if it does.
    pub(crate) async fn after_page<S: Leased>(
        &self,
        state: &mut S,
        run: &S::Run,
        now: OffsetDateTime,
    ) -> Result<Option<StepEnd>, StoreError> {
        // Every step reads at least one page, so a short deadline still makes progress.
        let out_of_time = self.out_of_time();
        Ok(match self.keep(state, run, !out_of_time, now).await? {
            false => Some(StepEnd::TakenOver),
            true if out_of_time => Some(StepEnd::OutOfTime),
            true => None,
        })
    }

    pub(crate) fn tenant(&self) -> &'a TenantId {
        self.tenant
    }

    /// Whether the step's time is up: it ends after the page at hand.
    pub(crate) fn out_of_time(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Ends the run (its summary set by the caller) and frees the record.
    pub(crate) async fn close<S: Leased>(&self, state: &mut S) -> Result<(), StoreError> {
        *state.run_mut() = None;
        *state.lease_mut() = None;
        self.save(state).await?;
        Ok(())
    }
}
