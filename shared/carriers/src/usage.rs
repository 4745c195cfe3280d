//! The daily usage collection of one service provider: once a day, every SIM the inventory has
//! at the provider is asked for its usage at the account's pace (the same pace the worker and the
//! sync keep): its cycle-to-date total where the carrier tells that (Jasper, Telegence), its usage
//! of the day where the carrier keeps a daily history (ThingSpace); the day's usage and the new
//! cycle total are written. Where the carrier reports many SIMs' usage by callback and the account
//! listens for it (ThingSpace's aggregate usage), a page of SIMs is one request instead, kept for
//! the callbacks that `carrier-callbacks` records. Pages of the inventory are checkpoints, so a
//! collection that takes hours (Jasper answers one SIM a call, five calls a second) goes on over
//! many invocations and survives a crash.

use crate::account::CarrierAccount;
use crate::error::CarrierError;
use crate::leased::{Holding, Leased, StepEnd};
use crate::port::CallJournal;
use crate::provider::ServiceProvider;
use crate::sync::SyncError;
use cellbridge_bulk_changes::change::DeviceRef;
use cellbridge_core::ids::{Iccid, Msisdn};
use cellbridge_core::store::PageRequest;
use cellbridge_core::tenant::TenantId;
use cellbridge_sims::ports::{SimStore, SyncStateStore, UsageStore};
use cellbridge_sims::query::{SimFilter, SimQuery};
use cellbridge_sims::sim::Sim;
use cellbridge_sims::sync::{UsageRun, UsageState, UsageSummary};
use cellbridge_sims::usage::{
    record_day, record_reading, CycleReading, DailyUsage, UsageRecord, UsageRequest, UsageSpan,
};
use std::collections::BTreeMap;
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

impl From<StepEnd> for UsageStep {
    fn from(end: StepEnd) -> Self {
        match end {
            StepEnd::OutOfTime => UsageStep::Continue,
            StepEnd::TakenOver => UsageStep::Busy,
        }
    }
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
    let port = &account.port;
    if !port.reads_cycle_usage() && !port.reads_daily_usage() && port.usage_request_size() == 0 {
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
            by_callback: by_callback(account).await,
        },
    };
    let holding = Holding::new(ports.states, tenant, holder, deadline);
    if !holding.keep(&mut state, &run, true, now).await? {
        return Ok(UsageStep::Busy);
    }
    tracing::info!(run = %run.id, day = %run.day, by_callback = run.by_callback, "usage step");
    let page_size = if run.by_callback {
        account.port.usage_request_size()
    } else {
        USAGE_PAGE
    };
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
                    limit: page_size,
                    cursor: run.position.clone(),
                },
            )
            .await?;
        if run.by_callback {
            let asked = Asked {
                tenant,
                provider,
                keep_days_until: keep_until,
            };
            match request_page(ports, account, &asked, &page.items, &mut run, clock).await {
                Ok(()) => {}
                Err(CarrierError::AuthFailed) => {
                    let reason = "the carrier refused the credentials".to_owned();
                    return finish(&holding, &mut state, run, Some(reason), clock).await;
                }
                Err(error) => {
                    return pause(&holding, provider, &mut state, run, &error, clock()).await
                }
            }
        }
        let mut records = Vec::new();
        // SIM by SIM here, unless their usage was just asked to come by callback.
        let by_callback = run.by_callback;
        let read_here = page.items.iter().filter(|_| !by_callback);
        for sim in read_here.filter(|sim| sim.vanished_at.is_none()) {
            match read(account, sim, &mut run).await {
                Ok(Some(reading)) => {
                    run.counts.read += 1;
                    let record = match reading {
                        Reading::Cycle(reading) => {
                            record_reading(&sim.iccid, &sim.usage, reading, run.day)
                        }
                        Reading::Days(days) => {
                            // Each day in turn, its cycle total carried to the next.
                            let mut cycle = sim.usage.clone();
                            for (day, data_bytes, sms) in days {
                                let usage = DailyUsage {
                                    day,
                                    data_bytes,
                                    sms,
                                };
                                if let Some(record) = record_day(&sim.iccid, &cycle, usage) {
                                    cycle = record.cycle.clone();
                                    records.push(record);
                                }
                            }
                            None
                        }
                    };
                    records.extend(record);
                }
                Ok(None) => run.counts.failed += 1,
                Err(CarrierError::AuthFailed) => {
                    let reason = "the carrier refused the credentials".to_owned();
                    write(ports, tenant, &records, keep_until, &mut run).await?;
                    return finish(&holding, &mut state, run, Some(reason), clock).await;
                }
                Err(error) => {
                    // Keep what was read, and the place: the next step starts at this page.
                    write(ports, tenant, &records, keep_until, &mut run).await?;
                    return pause(&holding, provider, &mut state, run, &error, clock()).await;
                }
            }
        }
        write(ports, tenant, &records, keep_until, &mut run).await?;
        run.position = page.next_cursor;
        if run.position.is_none() {
            return finish(&holding, &mut state, run, None, clock).await;
        }
        if let Some(end) = holding.after_page(&mut state, &run, clock()).await? {
            return Ok(end.into());
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

/// What a carrier tells of a SIM's usage.
enum Reading {
    /// Its cycle-to-date total.
    Cycle(CycleReading),
    /// Its usage day by day since the last day recorded (from the cycle's start for a SIM not
    /// read before): (day, bytes, SMS), oldest first.
    Days(Vec<(time::Date, u64, u64)>),
}

/// `sim`'s reading at the account's pace, tried again on passing failures; `Ok(None)` when the
/// carrier cannot tell this SIM's usage (it does not know it), `Err` when it fails for every SIM
/// (refused credentials, or still failing after the attempts).
async fn read(
    account: &CarrierAccount,
    sim: &Sim,
    run: &mut UsageRun,
) -> Result<Option<Reading>, CarrierError> {
    let Some(device) = device_of(sim) else {
        return Ok(None);
    };
    let calls = account.port.calls_to_read_usage(&device);
    let journal = CallJournal::default();
    let result = if account.port.reads_cycle_usage() {
        account
            .paced_with_retries(calls, USAGE_ATTEMPTS, &mut run.counts.calls, || {
                account.port.cycle_usage(&device, &journal)
            })
            .await
            .map(Reading::Cycle)
    } else {
        // The days not recorded yet: a SIM read before goes on from its last day, a new one
        // starts at its month's first day, so its cycle total is whole from the first run.
        let from = match sim.usage.through {
            Some(last) => last.next_day().unwrap_or(last),
            None => run.day.replace_day(1).unwrap_or(run.day),
        };
        if from > run.day {
            return Ok(Some(Reading::Days(Vec::new())));
        }
        account
            .paced_with_retries(calls, USAGE_ATTEMPTS, &mut run.counts.calls, || {
                account.port.daily_usage(&device, from, run.day, &journal)
            })
            .await
            .map(Reading::Days)
    };
    match result {
        Ok(reading) => Ok(Some(reading)),
        Err(error) if error.is_retryable() || error == CarrierError::AuthFailed => Err(error),
        Err(error) => {
            tracing::info!(iccid = %sim.iccid, %error, "no usage for this SIM");
            Ok(None)
        }
    }
}

/// Whether this run asks the carrier for many SIMs' usage at once and takes the answers by
/// callback: only where the carrier has such a request and the account has a listener for its
/// callbacks. A failed check reads SIM by SIM, which reports the carrier's failures itself.
async fn by_callback(account: &CarrierAccount) -> bool {
    if account.port.usage_request_size() == 0 {
        return false;
    }
    let journal = CallJournal::default();
    let registered = account
        .paced_calls(1, account.port.usage_listener_registered(&journal))
        .await;
    match registered {
        Ok(registered) => {
            if !registered {
                tracing::info!("no usage callback listener registered: reading SIM by SIM");
            }
            registered
        }
        Err(error) => {
            tracing::warn!(%error, "could not list the usage callback listeners: reading SIM by SIM");
            false
        }
    }
}

/// How long a usage request waits for its callbacks: the carrier re-sends a callback the
/// listener did not take for a while; a SIM whose answer never comes is asked again with the
/// next collection, for the days since its last one.
const USAGE_REQUEST_KEPT: time::Duration = time::Duration::days(7);

/// Asks the usage of `sims` by callback: one request per span of missing days (most SIMs miss
/// only the run's day), each kept for its callbacks to find.
/// Whose usage a page asks for, and how long the days its callbacks record are kept.
struct Asked<'a> {
    tenant: &'a TenantId,
    provider: &'a ServiceProvider,
    keep_days_until: OffsetDateTime,
}

async fn request_page(
    ports: &UsagePorts<'_>,
    account: &CarrierAccount,
    asked: &Asked<'_>,
    sims: &[Sim],
    run: &mut UsageRun,
    clock: &(dyn Fn() -> OffsetDateTime + Send + Sync),
) -> Result<(), CarrierError> {
    let mut by_span: BTreeMap<UsageSpan, Vec<DeviceRef>> = BTreeMap::new();
    for sim in sims.iter().filter(|sim| sim.vanished_at.is_none()) {
        let Some(span) = UsageSpan::missing(&sim.usage, run.day) else {
            continue;
        };
        match device_of(sim) {
            Some(device) => by_span.entry(span).or_default().push(device),
            None => run.counts.failed += 1,
        }
    }
    for (span, devices) in by_span {
        let journal = CallJournal::default();
        let answer = account
            .paced_with_retries(1, USAGE_ATTEMPTS, &mut run.counts.calls, || {
                account.port.request_usage(&devices, span, &journal)
            })
            .await;
        let request_id = match answer {
            Ok(request_id) => request_id,
            Err(error) if error.is_retryable() || error == CarrierError::AuthFailed => {
                return Err(error)
            }
            Err(error) => {
                tracing::warn!(%error, sims = devices.len(), "usage request refused");
                run.counts.failed += devices.len() as u64;
                continue;
            }
        };
        let now = clock();
        let request = UsageRequest {
            request_id,
            tenant_id: asked.tenant.as_str().to_owned(),
            service_provider_id: asked.provider.id.clone(),
            span,
            requested_at: now,
            keep_days_until: asked.keep_days_until,
        };
        if let Err(error) = ports
            .usage
            .put_usage_request(&request, now + USAGE_REQUEST_KEPT)
            .await
        {
            // Its callbacks will find nothing to record; the next collection asks again.
            tracing::error!(%error, request = %request.request_id, "usage request not kept");
            run.counts.failed += devices.len() as u64;
            continue;
        }
        run.counts.requested += devices.len() as u64;
    }
    Ok(())
}

/// Keeps the run's place and lets it go: the carrier keeps failing, the next step starts at
/// this page.
async fn pause(
    holding: &Holding<'_>,
    provider: &ServiceProvider,
    state: &mut UsageState,
    run: UsageRun,
    error: &CarrierError,
    now: OffsetDateTime,
) -> Result<UsageStep, SyncError> {
    tracing::warn!(provider = %provider.id, %error, "usage collection paused");
    holding.keep(state, &run, false, now).await?;
    Ok(UsageStep::Paused(format!(
        "the carrier keeps failing: {error}"
    )))
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

async fn finish(
    holding: &Holding<'_>,
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
        requested = summary.counts.requested,
        days = summary.counts.days,
        failed = summary.counts.failed,
        calls = summary.counts.calls,
        error = summary.error.as_deref(),
        "usage collection finished"
    );
    state.last_run = Some(summary.clone());
    holding.close(state).await?;
    Ok(UsageStep::Finished(summary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::AccountLimits;
    use crate::port::{CarrierDevice, CarrierOutcome, CarrierPort};
    use crate::provider::parse_new_provider;
    use async_trait::async_trait;
    use cellbridge_bulk_changes::change::{Carrier, ChangeSpec, DeviceRequest};
    use cellbridge_sims::memory::MemorySims;
    use cellbridge_sims::sim::SimSource;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::Arc;
    use std::time::Duration;
    use time::macros::{date, datetime};

    /// A test carrier: Jasper tells a cycle total of 4,000 bytes (and fails while `down`);
    /// ThingSpace tells 700 bytes a day, or takes usage requests by callback when `listening`.
    struct UsageCarrier {
        carrier: Carrier,
        down: AtomicBool,
        calls: AtomicU32,
        listening: bool,
        requests: std::sync::Mutex<Vec<(UsageSpan, usize)>>,
    }

    impl UsageCarrier {
        fn new(carrier: Carrier, listening: bool) -> Arc<Self> {
            Arc::new(Self {
                carrier,
                down: AtomicBool::new(false),
                calls: AtomicU32::new(0),
                listening,
                requests: Default::default(),
            })
        }
    }

    #[async_trait]
    impl CarrierPort for UsageCarrier {
        fn carrier(&self) -> Carrier {
            self.carrier
        }

        fn reads_cycle_usage(&self) -> bool {
            self.carrier == Carrier::Jasper
        }

        async fn cycle_usage(
            &self,
            _device: &DeviceRef,
            _journal: &CallJournal,
        ) -> Result<CycleReading, CarrierError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(CarrierError::Transient("503".into()));
            }
            Ok(CycleReading {
                cycle_start: Some(date!(2026 - 12 - 01)),
                data_bytes: 4_000,
                sms: 4,
            })
        }

        fn reads_daily_usage(&self) -> bool {
            self.carrier == Carrier::ThingSpace
        }

        async fn daily_usage(
            &self,
            _device: &DeviceRef,
            _from: time::Date,
            through: time::Date,
            _journal: &CallJournal,
        ) -> Result<Vec<(time::Date, u64, u64)>, CarrierError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(vec![(through, 700, 1)])
        }

        fn usage_request_size(&self) -> u32 {
            if self.carrier == Carrier::ThingSpace {
                100
            } else {
                0
            }
        }

        async fn usage_listener_registered(&self, _: &CallJournal) -> Result<bool, CarrierError> {
            Ok(self.listening)
        }

        async fn request_usage(
            &self,
            devices: &[DeviceRef],
            span: UsageSpan,
            _journal: &CallJournal,
        ) -> Result<String, CarrierError> {
            let mut requests = self.requests.lock().expect("requests");
            requests.push((span, devices.len()));
            Ok(format!("request-{}", requests.len()))
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

    /// Fast enough that pacing never shows in a test.
    const FAST: AccountLimits = AccountLimits {
        calls_per_second: 1_000,
        burst: 1,
        max_in_flight: 1,
    };

    fn ports_of(store: &MemorySims) -> UsagePorts<'_> {
        UsagePorts {
            sims: store,
            usage: store,
            states: store,
        }
    }

    fn provider(tenant: &TenantId, body: serde_json::Value, id: &str) -> ServiceProvider {
        parse_new_provider(body.to_string().as_bytes())
            .expect("valid")
            .into_provider(
                tenant.clone(),
                id.into(),
                "secret".into(),
                OffsetDateTime::UNIX_EPOCH,
            )
    }

    /// `count` SIMs of `carrier` at provider `provider`.
    async fn seed(
        store: &MemorySims,
        tenant: &TenantId,
        carrier: Carrier,
        provider: &str,
        count: u32,
    ) {
        for n in 0..count {
            let sim = Sim::unknown(
                &cellbridge_core::testing::iccid(n),
                carrier,
                Some(provider.into()),
                SimSource::CarrierSync {
                    service_provider_id: provider.into(),
                },
                OffsetDateTime::UNIX_EPOCH,
            );
            cellbridge_sims::testing::put_imported(store, tenant.as_str(), &sim).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_carrier_that_keeps_failing_pauses_the_collection_where_it_stands() {
        let tenant = TenantId::parse("demo").expect("tenant");
        let body = serde_json::json!({"name": "Jasper", "carrier": "jasper",
            "endpoint": "http://127.0.0.1:1/", "credentials": {"username": "u", "apiKey": "k"}});
        let provider = provider(&tenant, body, "sp-jasper");
        let store = MemorySims::default();
        // Two pages of SIMs at the provider.
        seed(
            &store,
            &tenant,
            Carrier::Jasper,
            "sp-jasper",
            USAGE_PAGE + 10,
        )
        .await;
        let meter = UsageCarrier::new(Carrier::Jasper, false);
        let account = CarrierAccount::new(meter.clone(), FAST, Vec::new());
        let ports = ports_of(&store);
        let at = datetime!(2026-12-05 01:00 UTC);
        let clock = move || at;
        let step = |holder: &'static str, deadline: Instant| {
            let (ports, account, tenant, provider, clock) =
                (&ports, &account, &tenant, &provider, &clock);
            async move {
                usage_step(
                    ports,
                    account,
                    tenant,
                    provider,
                    holder,
                    clock,
                    deadline,
                    UsageRetention::default(),
                )
                .await
                .expect("a step")
            }
        };

        // Out of time after the first page: the rest waits for the next step.
        let first = step("a", Instant::now()).await;
        assert_eq!(first, UsageStep::Continue);
        let state = store
            .get_usage_state(&tenant, "sp-jasper")
            .await
            .expect("read")
            .expect("a state");
        let run = state.run.expect("a run under way");
        assert_eq!(run.counts.read, u64::from(USAGE_PAGE));
        assert!(state.lease.is_none(), "free for the next step at once");

        // The carrier fails on every call of the second page: three tries, then a pause.
        meter.down.store(true, Ordering::SeqCst);
        let before = meter.calls.load(Ordering::SeqCst);
        let paused = step("b", Instant::now() + Duration::from_secs(600)).await;
        assert!(matches!(paused, UsageStep::Paused(_)), "{paused:?}");
        assert_eq!(meter.calls.load(Ordering::SeqCst) - before, USAGE_ATTEMPTS);

        // Back up: the next step goes on from the second page, and the day is done.
        meter.down.store(false, Ordering::SeqCst);
        let done = step("c", Instant::now() + Duration::from_secs(600)).await;
        let UsageStep::Finished(summary) = done else {
            panic!("expected the collection to finish, got {done:?}");
        };
        assert_eq!(summary.day, date!(2026 - 12 - 04));
        assert_eq!(summary.counts.read, u64::from(USAGE_PAGE + 10));
        let sim = store
            .get_sim(&tenant, &cellbridge_core::testing::iccid(USAGE_PAGE + 5))
            .await
            .expect("read")
            .expect("stored");
        assert_eq!(sim.usage.through, Some(date!(2026 - 12 - 04)));
        assert_eq!(sim.usage.data_bytes, 4_000);
        assert_eq!(
            step("d", Instant::now() + Duration::from_secs(600)).await,
            UsageStep::Idle,
            "collected for the day"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn with_a_listener_usage_is_asked_by_callback_one_request_per_span_and_page() {
        let tenant = TenantId::parse("demo").expect("tenant");
        let body = serde_json::json!({"name": "ThingSpace", "carrier": "thingSpace",
            "endpoint": "http://127.0.0.1:1/", "settings": {"accountName": "0000123456-00001"},
            "credentials": {"appKey": "k", "appSecret": "s", "username": "u", "password": "p"}});
        let provider = provider(&tenant, body, "sp-ts");
        let store = MemorySims::default();
        seed(&store, &tenant, Carrier::ThingSpace, "sp-ts", 150).await;
        // The last ten were collected through the day before: they miss only one day.
        let continuing: Vec<UsageRecord> = (140..150)
            .map(|n| UsageRecord {
                iccid: cellbridge_core::testing::iccid(n),
                day: None,
                cycle: cellbridge_sims::sim::CycleUsage {
                    cycle_start: Some(date!(2026 - 12 - 01)),
                    through: Some(date!(2026 - 12 - 03)),
                    data_bytes: 3_000,
                    sms: 3,
                },
            })
            .collect();
        store
            .record_usage(&tenant, &continuing, datetime!(2027-12-01 00:00 UTC))
            .await
            .expect("recorded");
        let ports = ports_of(&store);
        let at = datetime!(2026-12-05 01:00 UTC);
        let clock = move || at;
        let collect = |carrier: Arc<UsageCarrier>, holder: &'static str| {
            let (ports, tenant, provider, clock) = (&ports, &tenant, &provider, &clock);
            async move {
                let account = CarrierAccount::new(carrier, FAST, Vec::new());
                usage_step(
                    ports,
                    &account,
                    tenant,
                    provider,
                    holder,
                    clock,
                    Instant::now() + Duration::from_secs(600),
                    UsageRetention::default(),
                )
                .await
                .expect("a step")
            }
        };

        let listening = UsageCarrier::new(Carrier::ThingSpace, true);
        let done = collect(listening.clone(), "a").await;
        let UsageStep::Finished(summary) = done else {
            panic!("expected the collection to finish, got {done:?}");
        };
        assert_eq!(summary.counts.requested, 150);
        assert_eq!(summary.counts.calls, 3);
        let month = UsageSpan {
            from: date!(2026 - 12 - 01),
            through: date!(2026 - 12 - 04),
        };
        let day = UsageSpan {
            from: date!(2026 - 12 - 04),
            through: date!(2026 - 12 - 04),
        };
        assert_eq!(
            *listening.requests.lock().expect("requests"),
            vec![(month, 100), (month, 40), (day, 10)],
            "pages of the request size, one request per span within a page"
        );
        assert_eq!(
            listening.calls.load(Ordering::SeqCst),
            0,
            "no SIM read one by one"
        );
        let kept = store
            .get_usage_request("request-3")
            .await
            .expect("read")
            .expect("kept for its callbacks");
        assert_eq!(
            (
                kept.tenant_id.as_str(),
                kept.service_provider_id.as_str(),
                kept.span
            ),
            ("demo", "sp-ts", day)
        );

        // No listener: the next day is read SIM by SIM, and no request is sent.
        let later = move || datetime!(2026-12-06 01:00 UTC);
        let deaf = UsageCarrier::new(Carrier::ThingSpace, false);
        let account = CarrierAccount::new(deaf.clone(), FAST, Vec::new());
        let step = usage_step(
            &ports,
            &account,
            &tenant,
            &provider,
            "b",
            &later,
            Instant::now() + Duration::from_secs(600),
            UsageRetention::default(),
        )
        .await
        .expect("a step");
        assert!(matches!(step, UsageStep::Finished(_)), "{step:?}");
        assert!(deaf.requests.lock().expect("requests").is_empty());
        assert_eq!(deaf.calls.load(Ordering::SeqCst), 150);
    }
}
