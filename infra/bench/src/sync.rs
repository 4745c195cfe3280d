//! `cargo xtask bench sync`: a carrier sync of many SIMs per carrier from the simulators at their
//! documented limits, through a service provider's account as the `carrier-sync` function builds
//! it, into the in-memory inventory (the DynamoDB emulator's speed is not what is measured): the
//! first import, then a re-sync after a share of the SIMs changed outside cellbridge. Elapsed is
//! set against the floor the account's pace sets for the listing calls the carrier needs.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use async_trait::async_trait;
use carrier_sim::telegence::{Subscriber, SubscriberStatus};
use carrier_sim::thingspace::DeviceState;
use carrier_sim::{SimConfig, SimServer};
use cellbridge::bulk_changes::change::Carrier;
use cellbridge::carriers::account::{AccountLimits, CarrierAccount, CarrierAccounts};
use cellbridge::carriers::config::build_accounts;
use cellbridge::carriers::details::{details_step, DetailsPorts, DetailsStep};
use cellbridge::carriers::provider::{account_config, parse_new_provider, ServiceProvider};
use cellbridge::carriers::sync::{sync_step, SyncPorts, SyncStep};
use cellbridge::common::store::{Page, PageRequest, StoreError};
use cellbridge::common::tenant::TenantId;
use cellbridge::sims::memory::MemorySims;
use cellbridge::sims::ports::{SimStore, SyncStateStore, Written};
use cellbridge::sims::query::SimQuery;
use cellbridge::sims::sim::{Sim, SimChange, SimEvent};
use cellbridge::testing::iccid;
use clap::Args;
use time::OffsetDateTime;

use super::{publish, DocSection, Machine};

const SECTION: DocSection = DocSection {
    name: "sync",
    heading: "Carrier sync",
    begin: "<!-- sync:begin (written by `cargo xtask bench sync`) -->",
    end: "<!-- sync:end -->",
};
const TENANT: &str = "bench";
/// SIMs per listing page: Jasper's Search Devices and the simulators' ThingSpace and Telegence lists.
const JASPER_PAGE: u32 = 50;
const LIST_PAGE: u32 = 500;

#[derive(Args, Clone, Debug)]
pub struct SyncArgs {
    /// SIMs per carrier. The simulators run in this process and order Jasper's whole account on
    /// every listing page (a few milliseconds at 100,000 SIMs in a release build, well inside
    /// the 200 ms a page the pace allows).
    #[arg(long, default_value_t = 10_000)]
    pub sims: u32,
    /// Share of the SIMs changed outside cellbridge before the re-sync, in percent.
    #[arg(long, default_value_t = 1.0)]
    pub drift_percent: f64,
    /// How long the reading of details (Jasper's listing gives no numbers; each SIM it shows new
    /// is then read on its own, one call each) is measured after the import: at 5 calls a second
    /// the whole of a large import takes hours, its pace shows in a minute.
    #[arg(long, default_value_t = 60)]
    pub details_seconds: u64,
    /// Print the table only; leave docs/benchmarks.md untouched.
    #[arg(long)]
    pub no_write: bool,
}

/// The in-memory inventory, counting the store calls a benchmark cares about: the writes and
/// batch reads a sync makes, the listing pages a selection reads.
#[derive(Default)]
pub(crate) struct CountingSims {
    pub(crate) inner: MemorySims,
    pub(crate) puts: AtomicU64,
    pub(crate) batch_reads: AtomicU64,
    pub(crate) pages: AtomicU64,
}

#[async_trait]
impl SimStore for CountingSims {
    async fn get_sim(&self, tenant: &TenantId, iccid: &str) -> Result<Option<Sim>, StoreError> {
        self.inner.get_sim(tenant, iccid).await
    }
    async fn get_sims(&self, tenant: &TenantId, iccids: &[String]) -> Result<Vec<Sim>, StoreError> {
        // BatchGetItem takes 100 keys a request.
        self.batch_reads
            .fetch_add(iccids.len().div_ceil(100) as u64, Ordering::Relaxed);
        self.inner.get_sims(tenant, iccids).await
    }
    async fn list_sims(
        &self,
        tenant: &TenantId,
        query: &SimQuery,
        page: &PageRequest,
    ) -> Result<Page<Sim>, StoreError> {
        self.pages.fetch_add(1, Ordering::Relaxed);
        self.inner.list_sims(tenant, query, page).await
    }
    async fn sim_history(
        &self,
        tenant: &TenantId,
        iccid: &str,
        page: &PageRequest,
    ) -> Result<Page<SimEvent>, StoreError> {
        self.inner.sim_history(tenant, iccid, page).await
    }
    async fn put_sim(
        &self,
        tenant: &TenantId,
        sim: &Sim,
        stored_version: Option<u64>,
        event: Option<&SimEvent>,
    ) -> Result<Written, StoreError> {
        self.puts.fetch_add(1, Ordering::Relaxed);
        self.inner.put_sim(tenant, sim, stored_version, event).await
    }
    async fn sims_due_details(
        &self,
        tenant: &TenantId,
        service_provider_id: &str,
        page: &PageRequest,
    ) -> Result<Page<Sim>, StoreError> {
        self.inner
            .sims_due_details(tenant, service_provider_id, page)
            .await
    }
    async fn link_device(
        &self,
        tenant: &TenantId,
        iccid: &str,
        device: &str,
    ) -> Result<bool, StoreError> {
        self.inner.link_device(tenant, iccid, device).await
    }
    async fn unlink_device(
        &self,
        tenant: &TenantId,
        iccid: &str,
        device: &str,
    ) -> Result<(), StoreError> {
        self.inner.unlink_device(tenant, iccid, device).await
    }
    async fn apply_change(
        &self,
        tenant: &TenantId,
        change: &SimChange,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.inner.apply_change(tenant, change, at).await
    }
}

/// One run's numbers.
struct Measured {
    elapsed: Duration,
    floor: Duration,
    requests: usize,
    limited: usize,
    listed: u64,
    written: u64,
    puts: u64,
    batch_reads: u64,
}

pub async fn run(args: SyncArgs) -> Result<()> {
    if args.sims == 0 {
        bail!("--sims must be at least 1");
    }
    let root = devstack::tools::workspace_root();
    let config = SimConfig::default();
    let server = SimServer::start("127.0.0.1:0".parse()?, config.clone()).await?;
    let document = devstack::carriers::accounts_document(&server.url(), &config)?;
    let tenant = TenantId::parse(TENANT).context("tenant")?;
    let drifted = ((f64::from(args.sims) * args.drift_percent / 100.0).round() as u32).max(1);
    let mut rows = Vec::new();
    for body in devstack::carriers::provider_requests(&document) {
        let new = parse_new_provider(body.to_string().as_bytes())
            .map_err(|e| anyhow::anyhow!("the local provider does not parse: {e:?}"))?;
        let credentials = new.credentials.clone();
        let provider = new.into_provider(
            tenant.clone(),
            format!("sp-{}", body["carrier"].as_str().unwrap_or("x")),
            "local".into(),
            OffsetDateTime::now_utc(),
        );
        // As the function builds it: Jasper's one call in flight held by the account gate (here
        // the in-memory one, so its DynamoDB writes are not in the numbers).
        let gate: Arc<dyn cellbridge::carriers::port::AccountGate> =
            Arc::new(cellbridge::carriers::pacing::memory::MemoryGate::default());
        let accounts = build_accounts(account_config(&provider, &credentials)?, Some(gate))?;
        let account = accounts
            .account(&tenant, provider.carrier)
            .context("the provider makes no account")?;
        let carrier = provider.carrier;
        let iccids: Vec<String> = (0..args.sims).map(|n| iccid(10_000_000 + n)).collect();
        seed(&server, carrier, &iccids, |_| false);
        let sims = Arc::new(CountingSims::default());
        println!("{}: importing {} SIMs", carrier.as_str(), args.sims);
        let import = measure(
            &server, &sims, &account, &tenant, &provider, args.sims, None,
        )
        .await?;
        // Changed outside cellbridge: a share of the SIMs in another state or on another plan.
        seed(&server, carrier, &iccids[..drifted as usize], |_| true);
        println!("{}: re-sync after {drifted} SIMs changed", carrier.as_str());
        let resync = measure(
            &server,
            &sims,
            &account,
            &tenant,
            &provider,
            args.sims,
            Some(drifted),
        )
        .await?;
        if resync.written != u64::from(drifted) {
            bail!(
                "{}: the re-sync wrote {} SIMs, {drifted} changed",
                carrier.as_str(),
                resync.written
            );
        }
        let mut runs = vec![("import", import), ("re-sync", resync)];
        if !account.port.listing_is_complete() {
            println!(
                "{}: reading details for {} s",
                carrier.as_str(),
                args.details_seconds
            );
            let budget = Duration::from_secs(args.details_seconds);
            let details =
                measure_details(&server, &sims, &account, &tenant, &provider, budget).await?;
            runs.push(("details", details));
        }
        rows.push((carrier, runs));
    }
    let machine = Machine::detect(&root).await;
    let mut markdown = String::new();
    writeln!(markdown, "{}.", machine.measured_with("sync"))?;
    writeln!(markdown)?;
    writeln!(markdown, "**Method:** the three simulators at their default (documented) limits, in this process; one service provider per carrier built as the `carrier-sync` function builds it (its account's pacer: Jasper 5 calls a second through the account gate, which also starts no call within a second of the end of the call five before; ThingSpace 1; Telegence 10), and `sync_step` run until the run finishes, into the in-memory inventory (so MiniStack's speed is not in the numbers; the DynamoDB requests are counted from the store calls). {} SIMs per carrier are imported, then {} of them ({}%) are changed at the carrier and the sync runs again. Jasper's listing gives no numbers, so after the re-sync its reading of details (one Get Device Details per SIM the listing showed new or changed, a run of its own beside the listing) runs for {} s from the SIMs the import left due: *listed* is the SIMs read, *written* those the details changed. **Floor:** the listing calls the carrier needs at the account's pace (Jasper {JASPER_PAGE} SIMs a page; ThingSpace and Telegence {LIST_PAGE}), as (calls - 1) / rate; for details, the calls made, likewise. **DynamoDB requests per changed SIM:** each write is one `TransactWriteItems` (the SIM and its history entry, 2 item writes); reads are `BatchGetItem`s of 100 per page.", args.sims, drifted, args.drift_percent, args.details_seconds)?;
    writeln!(markdown)?;
    writeln!(markdown, "| carrier | run | SIMs listed | written | elapsed | floor | ratio | carrier requests | 429s | TransactWriteItems per written SIM | BatchGetItem |")?;
    writeln!(markdown, "|---|---|---|---|---|---|---|---|---|---|---|")?;
    for (carrier, runs) in &rows {
        for (run, m) in runs {
            let ratio = if m.floor.is_zero() {
                1.0
            } else {
                m.elapsed.as_secs_f64() / m.floor.as_secs_f64()
            };
            writeln!(
                markdown,
                "| {} | {run} | {} | {} | {:.1} s | {:.1} s | {ratio:.3} | {} | {} | {:.2} | {} |",
                carrier.as_str(),
                m.listed,
                m.written,
                m.elapsed.as_secs_f64(),
                m.floor.as_secs_f64(),
                m.requests,
                m.limited,
                if m.written == 0 {
                    0.0
                } else {
                    m.puts as f64 / m.written as f64
                },
                m.batch_reads,
            )?;
        }
    }
    publish(&root, &SECTION, &markdown, args.no_write)
}

/// One step of reading details for `budget`, from the due SIMs the import left: the SIMs read
/// (as listed) and changed (as written), against the floor the account's pace sets for its calls.
async fn measure_details(
    server: &SimServer,
    sims: &Arc<CountingSims>,
    account: &CarrierAccount,
    tenant: &TenantId,
    provider: &ServiceProvider,
    budget: Duration,
) -> Result<Measured> {
    let log_before = server.sims.log.entries().len();
    let puts = sims.puts.load(Ordering::Relaxed);
    let ports = DetailsPorts {
        sims: sims.as_ref(),
        states: &sims.inner,
    };
    let started = Instant::now();
    let step = details_step(
        &ports,
        account,
        tenant,
        provider,
        "bench",
        &OffsetDateTime::now_utc,
        tokio::time::Instant::now() + budget,
    )
    .await?;
    let elapsed = started.elapsed();
    let counts = match step {
        DetailsStep::Continue => sims
            .inner
            .get_details_state(tenant, &provider.id)
            .await?
            .and_then(|state| state.run)
            .map(|run| run.counts)
            .unwrap_or_default(),
        DetailsStep::Finished(summary) if summary.error.is_none() => summary.counts,
        other => bail!("reading details did not run: {other:?}"),
    };
    let entries = server.sims.log.entries();
    let mine = &entries[log_before..];
    let rate = f64::from(
        AccountLimits::documented(provider.carrier)
            .calls_per_second
            .max(1),
    );
    Ok(Measured {
        elapsed,
        floor: Duration::from_secs_f64(counts.calls.saturating_sub(1) as f64 / rate),
        requests: mine.len(),
        limited: mine.iter().filter(|e| e.status == 429).count(),
        listed: counts.read,
        written: counts.changed,
        puts: sims.puts.load(Ordering::Relaxed) - puts,
        batch_reads: 0,
    })
}

/// Puts `iccids` at `carrier`'s simulator, active on the default plan, or (`changed`) in
/// another state: suspended at ThingSpace and Telegence, on another plan at Jasper.
fn seed(server: &SimServer, carrier: Carrier, iccids: &[String], changed: impl Fn(usize) -> bool) {
    let sims = &server.sims;
    let drifting = iccids.iter().enumerate().any(|(n, _)| changed(n));
    match carrier {
        Carrier::Jasper if drifting => {
            for iccid in iccids {
                sims.jasper.seed_devices([iccid.as_str()], "DEACTIVATED");
            }
        }
        Carrier::Jasper => sims
            .jasper
            .seed_devices(iccids.iter().map(String::as_str), "ACTIVATED"),
        Carrier::ThingSpace => sims.thingspace.seed_devices(
            iccids.iter().map(String::as_str),
            if drifting {
                DeviceState::Suspend
            } else {
                DeviceState::Active
            },
        ),
        Carrier::Telegence => sims.telegence.seed_subscribers(iccids.iter().map(|iccid| {
            let number = format!("7{}", &iccid[iccid.len() - 10..iccid.len() - 1]);
            Subscriber::new(
                &number,
                iccid,
                if drifting {
                    SubscriberStatus::Suspended
                } else {
                    SubscriberStatus::Active
                },
            )
        })),
    }
}

async fn measure(
    server: &SimServer,
    sims: &Arc<CountingSims>,
    account: &CarrierAccount,
    tenant: &TenantId,
    provider: &ServiceProvider,
    count: u32,
    changed: Option<u32>,
) -> Result<Measured> {
    let log_before = server.sims.log.entries().len();
    let (puts, reads) = (
        sims.puts.load(Ordering::Relaxed),
        sims.batch_reads.load(Ordering::Relaxed),
    );
    // No device registered: every imported SIM is looked up, none found (as a first sync goes).
    let devices = cellbridge::sims::memory::MemoryDeviceDirectory::default();
    let ports = SyncPorts {
        sims: sims.as_ref(),
        states: &sims.inner,
        devices: &devices,
    };
    let started = Instant::now();
    let summary = loop {
        let step = sync_step(
            &ports,
            account,
            tenant,
            provider,
            "bench",
            &OffsetDateTime::now_utc,
            tokio::time::Instant::now() + Duration::from_secs(3600),
        )
        .await?;
        match step {
            SyncStep::Finished(summary) => break summary,
            SyncStep::Continue => continue,
            other => bail!("the sync did not run: {other:?}"),
        }
    };
    let elapsed = started.elapsed();
    if let Some(error) = &summary.error {
        bail!("the sync stopped: {error}");
    }
    let entries = server.sims.log.entries();
    let mine = &entries[log_before..];
    // Jasper lists only the changes since the watermark after the first import.
    let listed_sims = match (provider.carrier, changed) {
        (Carrier::Jasper, Some(changed)) => changed,
        _ => count,
    };
    let page = if provider.carrier == Carrier::Jasper {
        JASPER_PAGE
    } else {
        LIST_PAGE
    };
    let calls = listed_sims.div_ceil(page).max(1);
    let rate = f64::from(
        AccountLimits::documented(provider.carrier)
            .calls_per_second
            .max(1),
    );
    Ok(Measured {
        elapsed,
        floor: Duration::from_secs_f64(f64::from(calls - 1) / rate),
        requests: mine.len(),
        limited: mine.iter().filter(|e| e.status == 429).count(),
        listed: summary.counts.listed,
        written: summary.counts.written(),
        puts: sims.puts.load(Ordering::Relaxed) - puts,
        batch_reads: sims.batch_reads.load(Ordering::Relaxed) - reads,
    })
}
