//! The daily usage collection of one service provider: once a day, every SIM the inventory has
//! at the provider is asked for its cycle-to-date usage at the account's pace (the same pace the
//! worker and the sync keep), and the day's usage and the new cycle total are written. Pages of
//! the inventory are checkpoints, so a collection that takes hours (Jasper answers one SIM a
//! call, five calls a second) goes on over many invocations and survives a crash.

use crate::account::CarrierAccount;
use crate::error::CarrierError;
use crate::port::CallJournal;
use crate::provider::ServiceProvider;
use crate::sync::{SyncError, LEASE};
use cellbridge_bulk_changes::change::DeviceRef;
use cellbridge_core::ids::{Iccid, Msisdn};
use cellbridge_core::store::PageRequest;
use cellbridge_core::tenant::TenantId;
use cellbridge_sims::ports::{SimStore, SyncStateStore, UsageStore, Written};
use cellbridge_sims::query::{SimFilter, SimQuery};
use cellbridge_sims::sim::Sim;
use cellbridge_sims::sync::{SyncLease, UsageRun, UsageState, UsageSummary};
use cellbridge_sims::usage::{record_reading, CycleReading, UsageRecord};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::time::Instant;

/// SIMs read between two checkpoints: about ten seconds of Jasper's pace.
pub const USAGE_PAGE: u32 = 50;

/// A SIM's usage call that fails for a passing reason is tried this many times in all.
const USAGE_ATTEMPTS: u32 = 3;

/// How one step of a usage collection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageStep {
    /// Every SIM was read for the day (or the carrier refused the credentials; the summary
    /// says so).
    Finished(UsageSummary),
    /// Time ran out with SIMs left: run another step to go on.
    Continue,
    /// The carrier kept failing: the run keeps its place for the next scheduled step.
    Paused(String),
    /// Yesterday's usage is collected already.
    Idle,
    /// Another holder runs this provider's collection.
    Busy,
    /// The provider's carrier tells no usage per SIM.
    Unsupported,
    /// The carrier refused these credentials (the sync found out): nothing is tried until they
    /// change.
    CredentialsRefused,
}

/// What a step needs besides the carrier account.
pub struct UsagePorts<'a> {
    pub sims: &'a dyn SimStore,
    pub usage: &'a dyn UsageStore,
    pub states: &'a dyn SyncStateStore,
}

/// How long the days of usage are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageRetention(pub time::Duration);

/// Variable holding how many days of usage are kept.
pub const USAGE_RETENTION_ENV: &str = "USAGE_RETENTION_DAYS";

impl Default for UsageRetention {
    /// Thirteen months: a year back from any day of the current cycle.
    fn default() -> Self {
        Self(time::Duration::days(400))
    }
}

impl cellbridge_core::config::FromEnvironment for UsageRetention {
    fn from_env(
        env: &dyn cellbridge_core::config::Environment,
    ) -> Result<Self, cellbridge_core::config::ConfigError> {
        let days = cellbridge_core::config::number_in(
            env,
            USAGE_RETENTION_ENV,
            1..=3_660,
            Self::default().0.whole_days(),
            "days",
        )?;
        Ok(Self(time::Duration::days(days)))
    }
}

/// Collects `provider`'s usage of yesterday (by `clock`) until done or `deadline`, as `holder`.
#[allow(clippy::too_many_arguments)]
pub async fn usage_step(
    ports: &UsagePorts<'_>,
    account: &CarrierAccount,
    tenant: &TenantId,
    provider: &ServiceProvider,
    holder: &str,
    clock: &(dyn Fn() -> OffsetDateTime + Send + Sync),
    deadline: Instant,
    retention: UsageRetention,
) -> Result<UsageStep, SyncError> {
    if !account.port.reads_cycle_usage() {
        return Ok(UsageStep::Unsupported);
    }
    let refused = ports
        .states
        .get_sync(tenant, &provider.id)
        .await?
        .is_some_and(|sync| sync.refused_provider_version == Some(provider.version));
    if refused {
        return Ok(UsageStep::CredentialsRefused);
    }
    let now = clock();
    let Some(day) = now.date().previous_day() else {
        return Ok(UsageStep::Idle);
    };
    let mut state = ports
        .states
        .get_usage_state(tenant, &provider.id)
        .await?
        .unwrap_or_else(|| UsageState::new(&provider.id));
    if state.held_by_another(holder, now) {
        return Ok(UsageStep::Busy);
    }
    let mut run = match state.run.take() {
        Some(run) => run,
        None if state
            .collected_through
            .is_some_and(|through| through >= day) =>
        {
            return Ok(UsageStep::Idle)
        }
        None => UsageRun {
            id: uuid::Uuid::now_v7().to_string(),
            day,
            started_at: now,
            position: None,
            counts: Default::default(),
        },
    };
    state.lease = Some(SyncLease {
        holder: holder.to_owned(),
        until: now + LEASE,
    });
    state.run = Some(run.clone());
    if !save(ports, tenant, &mut state).await? {
        return Ok(UsageStep::Busy);
    }
    tracing::info!(run = %run.id, day = %run.day, "usage step");
    let query = SimQuery {
        filter: SimFilter {
            service_provider_id: Some(provider.id.clone()),
            ..SimFilter::default()
        },
        ..SimQuery::default()
    };
    let keep_until = (run.day.midnight().assume_utc()) + retention.0;
    loop {
        let page = ports
            .sims
            .list_sims(
                tenant,
                &query,
                &PageRequest {
                    limit: USAGE_PAGE,
                    cursor: run.position.clone(),
                },
            )
            .await?;
        let mut records = Vec::new();
        for sim in page.items.iter().filter(|sim| sim.vanished_at.is_none()) {
            match read(account, sim, &mut run).await {
                Ok(Some(reading)) => {
                    run.counts.read += 1;
                    if let Some(record) = record_reading(&sim.iccid, &sim.usage, reading, run.day) {
                        records.push(record);
                    }
                }
                Ok(None) => run.counts.failed += 1,
                Err(CarrierError::AuthFailed) => {
                    let reason = "the carrier refused the credentials".to_owned();
                    write(ports, tenant, &records, keep_until, &mut run).await?;
                    return finish(ports, tenant, &mut state, run, Some(reason), clock).await;
                }
                Err(error) => {
                    // Keep what was read, and the place: the next step starts at this page.
                    write(ports, tenant, &records, keep_until, &mut run).await?;
                    let reason = format!("the carrier keeps failing: {error}");
                    tracing::warn!(provider = %provider.id, %error, "usage collection paused");
                    state.run = Some(run);
                    state.lease = None;
                    save(ports, tenant, &mut state).await?;
                    return Ok(UsageStep::Paused(reason));
                }
            }
        }
        write(ports, tenant, &records, keep_until, &mut run).await?;
        run.position = page.next_cursor;
        if run.position.is_none() {
            return finish(ports, tenant, &mut state, run, None, clock).await;
        }
        let out_of_time = Instant::now() >= deadline;
        state.run = Some(run.clone());
        state.lease = (!out_of_time).then(|| SyncLease {
            holder: holder.to_owned(),
            until: clock() + LEASE,
        });
        if !save(ports, tenant, &mut state).await? {
            return Ok(UsageStep::Busy);
        }
        if out_of_time {
            return Ok(UsageStep::Continue);
        }
    }
}

/// The SIM as the carrier addresses it: by ICCID, and by number where it has one.
fn device_of(sim: &Sim) -> Option<DeviceRef> {
    Some(DeviceRef {
        iccid: Iccid::parse(&sim.iccid).ok()?,
        msisdn: sim.msisdn.as_deref().and_then(|m| Msisdn::parse(m).ok()),
        imei: None,
    })
}

/// `sim`'s reading at the account's pace, tried again on passing failures; `Ok(None)` when the
/// carrier cannot tell this SIM's usage (it does not know it), `Err` when it fails for every SIM
/// (refused credentials, or still failing after the attempts).
async fn read(
    account: &CarrierAccount,
    sim: &Sim,
    run: &mut UsageRun,
) -> Result<Option<CycleReading>, CarrierError> {
    let Some(device) = device_of(sim) else {
        return Ok(None);
    };
    let mut wait = Duration::from_secs(1);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let calls = account.port.calls_to_read_usage(&device);
        run.counts.calls += u64::from(calls);
        let journal = CallJournal::default();
        let result = account
            .paced_calls(calls, account.port.cycle_usage(&device, &journal))
            .await;
        match result {
            Ok(reading) => return Ok(Some(reading)),
            Err(CarrierError::AuthFailed) => return Err(CarrierError::AuthFailed),
            Err(error) if error.is_retryable() && attempts < USAGE_ATTEMPTS => {
                let pause = error.carrier_wait().unwrap_or(wait).max(wait);
                tokio::time::sleep(pause).await;
                wait *= 2;
            }
            Err(error) if error.is_retryable() => return Err(error),
            Err(error) => {
                tracing::info!(iccid = %sim.iccid, %error, "no usage for this SIM");
                return Ok(None);
            }
        }
    }
}

async fn write(
    ports: &UsagePorts<'_>,
    tenant: &TenantId,
    records: &[UsageRecord],
    keep_until: OffsetDateTime,
    run: &mut UsageRun,
) -> Result<(), SyncError> {
    if records.is_empty() {
        return Ok(());
    }
    ports
        .usage
        .record_usage(tenant, records, keep_until)
        .await?;
    run.counts.days += records.iter().filter(|r| r.day.is_some()).count() as u64;
    Ok(())
}

async fn save(
    ports: &UsagePorts<'_>,
    tenant: &TenantId,
    state: &mut UsageState,
) -> Result<bool, SyncError> {
    state.version += 1;
    Ok(ports.states.put_usage_state(tenant, state).await? == Written::Written)
}

async fn finish(
    ports: &UsagePorts<'_>,
    tenant: &TenantId,
    state: &mut UsageState,
    run: UsageRun,
    error: Option<String>,
    clock: &(dyn Fn() -> OffsetDateTime + Send + Sync),
) -> Result<UsageStep, SyncError> {
    if error.is_none() {
        state.collected_through = Some(run.day);
    }
    let summary = UsageSummary {
        run_id: run.id,
        day: run.day,
        started_at: run.started_at,
        finished_at: clock(),
        counts: run.counts,
        error,
    };
    tracing::info!(
        day = %summary.day,
        read = summary.counts.read,
        days = summary.counts.days,
        failed = summary.counts.failed,
        calls = summary.counts.calls,
        error = summary.error.as_deref(),
        "usage collection finished"
    );
    state.run = None;
    state.lease = None;
    state.last_run = Some(summary.clone());
    save(ports, tenant, state).await?;
    Ok(UsageStep::Finished(summary))
}
