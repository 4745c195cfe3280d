//! `cargo xtask bench live`: the live event stream with many clients on the local stack.
//! Measures, with every client subscribed to the demo tenant's whole stream:
//! - the time from the DynamoDB write of a change (a SIM's status) to each client's receipt of
//!   its event, p50/p95/max over every (event, client) pair;
//! - the fan-out's CPU per event per connection (and the recorder's per event);
//! - the connections table's items against the connections the WebSocket API holds open, after
//!   connecting, and after cuts from either side;
//! - a soak with forced disconnects: a share of the clients cut every second (half by the
//!   client, as a network drop, half by the server, as API Gateway's limits do), each resuming
//!   with its last `seq`; then every client's events against the tenant's stream: missed and
//!   repeated (goal 0).

use super::cpu_profile;
use super::devices::{percentile, start_stack_with};
use super::{publish, DocSection, Machine};
use anyhow::{bail, ensure, Context, Result};
use cellbridge::common::tenant::TenantId;
use cellbridge::events::subscription::Subscription;
use cellbridge::sims::ports::SimStore;
use cellbridge::sims::sim::SimStatus;
use devstack::demo_accounts::DEMO_PASSWORD;
use devstack::Devstack;
use indicatif::{ProgressBar, ProgressStyle};
use live_client::{LiveClient, LiveError, LiveOptions};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECTION: DocSection = DocSection {
    name: "live",
    heading: "Live events",
    begin: "<!-- live:begin (written by `cargo xtask bench live`) -->",
    end: "<!-- live:end -->",
};

const FANOUT_BINARY: &str = "event-fanout";
const RECORDER_BINARY: &str = "event-recorder";
/// SIMs whose status the benchmark flips; far from any the demo or tests use.
const FIRST_SIM: u32 = 600_000;

#[derive(clap::Args)]
pub struct LiveArgs {
    /// WebSocket clients, each subscribed to the demo tenant's whole stream.
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Changes written one after another for the latency measure.
    #[arg(long, default_value_t = 100)]
    pub events: u32,
    /// Changes written a second during the latency measure and the soak.
    #[arg(long, default_value_t = 5)]
    pub rate: u32,
    /// Length of the soak with forced disconnects.
    #[arg(long, default_value_t = 60)]
    pub soak_seconds: u64,
    /// Share of the clients cut every second of the soak (percent).
    #[arg(long, default_value_t = 2)]
    pub cut_percent: u32,
    /// Clients connecting at once.
    #[arg(long, default_value_t = 5)]
    pub wave: usize,
    /// Print the results only; leave docs/benchmarks.md untouched.
    #[arg(long)]
    pub no_write: bool,
}

/// What every client was handed, in order: `(seq, subject, when)`.
type Received = Arc<Mutex<Vec<(u64, String, Instant)>>>;

struct Client {
    received: Received,
    /// Cuts asked of this client by the soak (a network drop: the client resumes).
    cut: Arc<std::sync::atomic::AtomicBool>,
    /// Set at the end: the client returns what it met.
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<Result<live_client::LiveStats>>,
}

#[derive(Default)]
struct Results {
    clients: usize,
    connect_time: Duration,
    table_after_connect: (usize, usize),
    latency_ms: Vec<f64>,
    latency_events: u32,
    fanout_cpu_us_per_delivery: f64,
    recorder_cpu_us_per_event: f64,
    soak_events: usize,
    soak_seconds: u64,
    client_cuts: u64,
    server_cuts: u64,
    missed: usize,
    repeated: usize,
    gaps_healed: u64,
    duplicates_dropped: u64,
    reconnects: u64,
    resets: u64,
    table_after_soak: (usize, usize),
    table_after_close: (usize, usize),
}

pub async fn run(args: LiveArgs) -> Result<()> {
    let root = devstack::tools::workspace_root();
    // One instance of each function: the fan-out and the recorder read one shard each (one
    // invocation at a time), and the clients' process and the stack share two cores.
    let (stack, _log) = start_stack_with(&root, "bench-live.log", false, 1).await?;
    let outcome = measure(&stack, &args).await;
    stack.shutdown().await;
    let results = outcome?;
    let machine = Machine::detect(&root).await;
    publish(
        &root,
        &SECTION,
        &results.markdown(&machine, &args),
        args.no_write,
    )
}

fn spawn_client(mut live: LiveClient) -> Client {
    let received: Received = Arc::default();
    let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (mine, cut_mine, stop_mine) = (received.clone(), cut.clone(), stop.clone());
    let task = tokio::spawn(async move {
        loop {
            if stop_mine.load(std::sync::atomic::Ordering::SeqCst) {
                return Ok(live.stats());
            }
            if cut_mine.swap(false, std::sync::atomic::Ordering::SeqCst) {
                live.cut();
            }
            match live.next(Duration::from_millis(200)).await {
                Ok(event) => {
                    let mut received = mine
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    received.push((event.seq, event.subject, Instant::now()));
                }
                Err(LiveError::Timeout(_)) => {}
                Err(LiveError::Reset(reason)) => bail!("a client was reset: {reason}"),
                Err(error) => return Err(error.into()),
            }
        }
    });
    Client {
        received,
        cut,
        stop,
        task,
    }
}

/// Items in the connections table (a full scan: the bench's own read, not billed).
async fn table_items(stack: &Devstack) -> Result<usize> {
    let table = stack
        .resources()
        .table_name("LiveConnectionsTable")
        .context("LiveConnectionsTable")?;
    let client = aws_sdk_dynamodb::Client::new(stack.sdk_config());
    let mut count = 0;
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .select(aws_sdk_dynamodb::types::Select::Count)
            .set_exclusive_start_key(start)
            .send()
            .await?;
        count += usize::try_from(page.count()).unwrap_or(0);
        match page.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => return Ok(count),
        }
    }
}

fn open_connections(stack: &Devstack) -> usize {
    stack.live_api().map_or(0, |api| {
        usize::try_from(api.stats().open).unwrap_or(usize::MAX)
    })
}

/// Waits until the table holds as many connections as are open (a `$disconnect` or `$connect`
/// may still be on its way), at most 30 s; returns both counts.
async fn table_against_open(stack: &Devstack) -> Result<(usize, usize)> {
    let started = Instant::now();
    loop {
        let (items, open) = (table_items(stack).await?, open_connections(stack));
        if items == open || started.elapsed() > Duration::from_secs(30) {
            return Ok((items, open));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Writes change `n`: the status of SIM `FIRST_SIM + n` flips (one `sim.status` event). Returns
/// the ICCID (the event's subject) and when the write was sent.
async fn write_change(
    store: &dyn SimStore,
    tenant: &TenantId,
    n: u32,
) -> Result<(String, Instant)> {
    let mut sim = cellbridge::testing::sample_sim(FIRST_SIM + n);
    sim.status = SimStatus::Active;
    sim.version = 1;
    store.put_sim(tenant, &sim, None, None).await?;
    sim.status = SimStatus::Suspended;
    sim.version = 2;
    let sent = Instant::now();
    store.put_sim(tenant, &sim, Some(1), None).await?;
    Ok((sim.iccid, sent))
}

async fn measure(stack: &Devstack, args: &LiveArgs) -> Result<Results> {
    let mut results = Results {
        clients: args.clients,
        soak_seconds: args.soak_seconds,
        latency_events: args.events,
        ..Results::default()
    };
    let token = stack.login("ops@demo.example", DEMO_PASSWORD).await?;
    let url = stack.live_url();
    ensure!(!url.is_empty(), "the template has no WebSocket API");
    let store = devstack::ports::sim_store(stack)?;
    let tenant = TenantId::parse("demo").context("tenant")?;
    let functions = stack.template().function_binaries()?;

    // Connect, `wave` at a time ($connect runs through cargo lambda watch). cargo-lambda starts a
    // function's instances on its first requests (`cargo run` each, minutes on a busy machine):
    // the first clients connect one by one, with time to spare, so that is done before measuring.
    let bar = ProgressBar::new(args.clients as u64).with_style(ProgressStyle::with_template(
        "  {bar:40} {pos}/{len} clients connected {elapsed}",
    )?);
    let options = LiveOptions {
        subscribe_timeout: Duration::from_secs(300),
        ..LiveOptions::default()
    };
    let mut clients = Vec::with_capacity(args.clients);
    let warm = args.clients.min(8);
    // Side by side, so every instance cargo-lambda will run is started now; one still starting
    // answers 504 (its `cargo run` outlasts the route's timeout): try again.
    let warming = futures::future::join_all((0..warm).map(|_| async {
        let mut attempt = 0;
        loop {
            match LiveClient::connect(&url, &token, Subscription::default(), options.clone()).await
            {
                Err(LiveError::Refused(status)) if status >= 500 && attempt < 20 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                other => return other,
            }
        }
    }))
    .await;
    for live in warming {
        clients.push(spawn_client(live?));
        bar.inc(1);
    }
    // The recorder's and the fan-out's instances too: a first change, told to every client.
    let (iccid, _) = write_change(&store, &tenant, args.events + 1_000_000).await?;
    let warmed = Instant::now();
    while clients.iter().any(|c| {
        !c.received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .any(|(_, subject, _)| *subject == iccid)
    }) {
        if warmed.elapsed() > Duration::from_secs(600) {
            bail!("the first change did not reach the first clients within 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let connecting = Instant::now();
    for wave in (warm..args.clients)
        .collect::<Vec<_>>()
        .chunks(args.wave.max(1))
    {
        let joined =
            futures::future::join_all(wave.iter().map(|_| {
                LiveClient::connect(&url, &token, Subscription::default(), options.clone())
            }))
            .await;
        for live in joined {
            clients.push(spawn_client(live?));
            bar.inc(1);
        }
    }
    bar.finish();
    results.connect_time = connecting.elapsed();
    results.table_after_connect = table_against_open(stack).await?;

    // Latency and CPU: changes at `rate` a second, each awaited by every client.
    let bar = ProgressBar::new(u64::from(args.events)).with_style(ProgressStyle::with_template(
        "  {bar:40} {pos}/{len} changes told to every client {elapsed}",
    )?);
    let cpu_before = cpu_profile::snapshot(&functions);
    let mut sent: BTreeMap<String, Instant> = BTreeMap::new();
    let pause = Duration::from_secs(1) / args.rate.max(1);
    for n in 0..args.events {
        let (iccid, at) = write_change(&store, &tenant, n).await?;
        sent.insert(iccid, at);
        bar.inc(1);
        tokio::time::sleep(pause).await;
    }
    let expected = sent.len() * clients.len();
    let waiting = Instant::now();
    loop {
        let told: usize = clients
            .iter()
            .map(|c| {
                let received = c
                    .received
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                received
                    .iter()
                    .filter(|(_, subject, _)| sent.contains_key(subject))
                    .count()
            })
            .sum();
        if told >= expected {
            break;
        }
        if waiting.elapsed() > Duration::from_secs(120) {
            bail!("{told} of {expected} deliveries within 2 minutes of the last change");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bar.finish();
    let cpu_after = cpu_profile::snapshot(&functions);
    for client in &clients {
        let received = client
            .received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (_, subject, at) in received.iter() {
            if let Some(written) = sent.get(subject) {
                results
                    .latency_ms
                    .push(at.duration_since(*written).as_secs_f64() * 1000.0);
            }
        }
    }
    results.latency_ms.sort_by(f64::total_cmp);
    let deliveries = (sent.len() * clients.len()).max(1) as f64;
    let cpu_of = |binary: &str| {
        cpu_profile::seconds_between(&cpu_before, &cpu_after, &format!("function {binary}"))
    };
    results.fanout_cpu_us_per_delivery = cpu_of(FANOUT_BINARY) * 1e6 / deliveries;
    results.recorder_cpu_us_per_event = cpu_of(RECORDER_BINARY) * 1e6 / sent.len().max(1) as f64;

    // The soak: changes go on while clients are cut from either side every second.
    let bar = ProgressBar::new(args.soak_seconds).with_style(ProgressStyle::with_template(
        "  {bar:40} {pos}/{len} s of soak with forced disconnects {msg}",
    )?);
    let soak_started = Instant::now();
    let mut n = args.events;
    let mut second = 0u64;
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let per_second = (args.clients as u64 * u64::from(args.cut_percent)).div_ceil(100);
    while soak_started.elapsed() < Duration::from_secs(args.soak_seconds) {
        for _ in 0..args.rate {
            write_change(&store, &tenant, n).await?;
            n += 1;
            tokio::time::sleep(pause).await;
        }
        for k in 0..per_second {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let index = (rng % clients.len() as u64) as usize;
            if k % 2 == 0 {
                clients[index]
                    .cut
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                results.client_cuts += 1;
            } else if let Some(api) = stack.live_api() {
                let ids = api.connection_ids();
                if let Some(id) = ids.get(index % ids.len().max(1)) {
                    api.disconnect(id);
                    results.server_cuts += 1;
                }
            }
        }
        second += 1;
        bar.set_position(second.min(args.soak_seconds));
    }
    bar.finish();
    results.soak_events = (n - args.events) as usize;

    // Every client's events against the tenant's stream from its first one on.
    let log = devstack::ports::event_log(stack)?;
    let newest = cellbridge::events::ports::EventLog::newest(&log, &tenant).await?;
    let settle = Instant::now();
    while clients.iter().any(|c| {
        c.received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .last()
            .is_none_or(|(seq, _, _)| *seq < newest)
    }) {
        if settle.elapsed() > Duration::from_secs(120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    results.table_after_soak = table_against_open(stack).await?;
    for client in &clients {
        client.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    for client in clients {
        let seqs: Vec<u64> = client
            .received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(seq, _, _)| *seq)
            .collect();
        let Some(first) = seqs.first().copied() else {
            results.missed += usize::try_from(newest).unwrap_or(usize::MAX);
            continue;
        };
        let distinct: std::collections::BTreeSet<u64> = seqs.iter().copied().collect();
        results.repeated += seqs.len() - distinct.len();
        results.missed += (first..=newest)
            .filter(|seq| !distinct.contains(seq))
            .count();
        if let Ok(Ok(stats)) = client.task.await {
            results.gaps_healed += stats.gaps;
            results.duplicates_dropped += stats.duplicates;
            results.reconnects += u64::from(stats.connections.saturating_sub(1));
            results.resets += stats.resets;
        }
    }
    results.table_after_close = table_against_open(stack).await?;
    Ok(results)
}

impl Results {
    fn markdown(&self, machine: &Machine, args: &LiveArgs) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}, the functions under `cargo lambda watch` built with the `{}` profile, MiniStack for DynamoDB and its streams, the devstack's WebSocket API and stream pollers, and the clients (`live-client`) in the benchmark's own process.\n",
            machine.measured_with("live"),
            local_tools::BENCH_PROFILE
        );
        let _ = writeln!(
            out,
            "{} clients of the demo tenant, each subscribed to its whole stream (all but the first 8 connected in {:.1} s, {} at a time). A change is a SIM's status written to `SimsTable`: its stream feeds `event-recorder`, which writes the event to `EventsTable`, whose stream feeds `event-fanout`, which posts it to every connection. {} changes at {} a second for the latency, then a {} s soak at the same rate with {} % of the clients cut every second.\n",
            self.clients,
            self.connect_time.as_secs_f64(),
            args.wave,
            self.latency_events,
            args.rate,
            self.soak_seconds,
            args.cut_percent
        );
        let _ = writeln!(out, "| measure | value | goal |");
        let _ = writeln!(out, "|---|---|---|");
        let _ = writeln!(
            out,
            "| DynamoDB write to the client's receipt, p50 / p95 / max ({} deliveries) | {:.0} / {:.0} / {:.0} ms | p95 under 1,000 ms |",
            self.latency_ms.len(),
            percentile(&self.latency_ms, 0.5),
            percentile(&self.latency_ms, 0.95),
            self.latency_ms.last().copied().unwrap_or(f64::NAN)
        );
        let _ = writeln!(
            out,
            "| `event-fanout` CPU per event per connection | {:.1} µs | |",
            self.fanout_cpu_us_per_delivery
        );
        let _ = writeln!(
            out,
            "| `event-recorder` CPU per event | {:.0} µs | |",
            self.recorder_cpu_us_per_event
        );
        for (when, (items, open)) in [
            ("connected", self.table_after_connect),
            ("after the soak", self.table_after_soak),
            ("every client gone", self.table_after_close),
        ] {
            let _ = writeln!(
                out,
                "| connections table items / open connections, {when} | {items} / {open} | equal |"
            );
        }
        let _ = writeln!(
            out,
            "| soak: events, cuts by the client / by the server | {} events, {} / {} | |",
            self.soak_events, self.client_cuts, self.server_cuts
        );
        let _ = writeln!(
            out,
            "| soak: events missed / repeated, over every client | {} / {} | 0 / 0 |",
            self.missed, self.repeated
        );
        let _ = writeln!(
            out,
            "| soak: reconnects, gaps healed by resubscribing, duplicates dropped, resets | {} / {} / {} / {} | |",
            self.reconnects, self.gaps_healed, self.duplicates_dropped, self.resets
        );
        out
    }
}
