//! `cargo xtask bench devices`: a simulated fleet through the local broker, the rules engine and
//! the ingest function, as in production but on one machine. Measures whether ingest keeps up
//! (the telemetry queue's backlog over time), the lag from the rule's receive time to the write,
//! how full the `BatchWriteItem` requests are, the ingest function's CPU per message, the
//! command round trip from the API call to the recorded acknowledgement, and where the CPU goes.

use super::cpu_profile::{self, CpuSnapshot};
use super::{publish, DocSection, Machine};
use anyhow::{Context, Result};
use devstack::api_client::command_round_trip;
use devstack::lambda_watch::ChildOutput;
use devstack::{Devstack, DevstackOptions};
use indicatif::{ProgressBar, ProgressStyle};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SECTION: DocSection = DocSection {
    name: "devices",
    heading: "Devices",
    begin: "<!-- devices:begin (written by `cargo xtask bench devices`) -->",
    end: "<!-- devices:end -->",
};

const INGEST_BINARY: &str = "telemetry-ingest";
const PRESENCE_BINARY: &str = "device-presence";
const SETTLE_LIMIT: Duration = Duration::from_secs(120);
const TELEMETRY_QUEUE: &str = "TelemetryQueue";

#[derive(clap::Args)]
pub struct DevicesArgs {
    /// Simulated devices, each sending one telemetry message and one heartbeat a second.
    #[arg(long, default_value_t = 1000)]
    pub devices: usize,
    /// Length of the measured window, after every device registered.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Seconds between a device's heartbeats. Under the 10 s heartbeat timeout, so devices stay
    /// online (commands go out at once); longer than the telemetry period, so the measured load
    /// is the telemetry.
    #[arg(long, default_value_t = 5)]
    pub heartbeat_seconds: u64,
    /// Commands sent one after another during the window, for the round trip.
    #[arg(long, default_value_t = 50)]
    pub commands: usize,
    /// Print the results only; leave docs/benchmarks.md untouched.
    #[arg(long)]
    pub no_write: bool,
}

struct Results {
    devices: usize,
    heartbeat_seconds: u64,
    registered: u64,
    window: Duration,
    telemetry_sent: u64,
    /// (seconds into the window, visible messages in the telemetry queue)
    backlog: Vec<(u64, u64)>,
    /// (seconds into the window, heartbeat and lifecycle events waiting for `device-presence`)
    presence_backlog: Vec<(u64, u64)>,
    batches: usize,
    written: f64,
    write_requests: f64,
    malformed: f64,
    lag_ms: Vec<f64>,
    cpu_per_message_us: Option<f64>,
    /// Each part's CPU over the window, in cores (1.0 = one core busy throughout).
    cpu: Vec<(String, f64)>,
    round_trips_ms: Vec<f64>,
    command_failures: usize,
}

pub async fn run(args: DevicesArgs) -> Result<()> {
    let root = devstack::tools::workspace_root();
    let (stack, log) = start_stack(&root, "bench-devices.log", false).await?;
    let outcome = measure(&stack, &args, &log).await;
    stack.shutdown().await;
    let results = outcome?;
    let machine = Machine::detect(&root).await;
    let markdown = results.markdown(&machine);
    publish(&root, &SECTION, &markdown, args.no_write)
}

/// The local stack as the benchmarks run it: functions built with the benchmark profile and
/// logging to `.devstack/<log_name>` (returned), the carrier simulators only when asked for.
pub(crate) async fn start_stack(
    root: &Path,
    log_name: &str,
    with_carriers: bool,
) -> Result<(Devstack, PathBuf)> {
    // The ingest queue's MaximumConcurrency; more instances only cost memory here.
    start_stack_with(root, log_name, with_carriers, 4).await
}

/// [`start_stack`] with `instances` of each function (`cargo lambda watch --concurrency`).
pub(crate) async fn start_stack_with(
    root: &Path,
    log_name: &str,
    with_carriers: bool,
    instances: usize,
) -> Result<(Devstack, PathBuf)> {
    local_tools::ensure_installed(root)?;
    let log = root.join(".devstack").join(log_name);
    let _ = std::fs::remove_file(&log);
    let mut options = DevstackOptions::new(root);
    options.api_port = 0;
    options.live_port = 0;
    options.mqtt_port = 0;
    if !with_carriers {
        options.carriers = None;
    }
    options.function_output = Some(ChildOutput::LogFile(log.clone()));
    options.lambda_concurrency = Some(instances);
    // The functions run optimised, as in AWS, so their CPU is what a deployment would spend.
    options.function_profile = Some(local_tools::BENCH_PROFILE.to_owned());
    let spinner = ProgressBar::new_spinner()
        .with_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}")?);
    spinner.set_message("starting the devstack (emulators, functions, broker, rules)");
    spinner.enable_steady_tick(Duration::from_millis(120));
    let stack = Devstack::start(options).await;
    spinner.finish_and_clear();
    let stack = stack.context("the devstack did not start; see .devstack/")?;
    Ok((stack, log))
}

/// A simulated fleet on a runtime of its own, so the CPU profile tells the simulator's CPU from
/// the local stack's. Shut both down with [`stop_fleet`].
pub(crate) fn start_fleet(
    options: device_sim::FleetOptions,
) -> Result<(tokio::runtime::Runtime, device_sim::Fleet)> {
    let simulator = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(cpu_profile::SIMULATOR_THREADS)
        .enable_all()
        .build()
        .context("starting the device simulator's runtime")?;
    let fleet = {
        let _entered = simulator.enter();
        device_sim::Fleet::start(options)?
    };
    Ok((simulator, fleet))
}

pub(crate) async fn stop_fleet(simulator: tokio::runtime::Runtime, fleet: device_sim::Fleet) {
    let _ = fleet.shutdown().await;
    simulator.shutdown_background();
}

/// Waits (up to 10 minutes) until every device of the fleet registered; returns how many did.
pub(crate) async fn wait_registered(fleet: &device_sim::Fleet, devices: usize) -> Result<u64> {
    let registering = ProgressBar::new(devices as u64).with_style(ProgressStyle::with_template(
        "  {bar:40} {pos}/{len} devices registered {elapsed}",
    )?);
    let started = Instant::now();
    let registered = loop {
        let stats = fleet.stats();
        registering.set_position(stats.registered_accepted);
        if stats.registered_accepted as usize >= devices
            || started.elapsed() > Duration::from_secs(600)
        {
            break stats.registered_accepted;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    registering.finish();
    Ok(registered)
}

async fn measure(stack: &Devstack, args: &DevicesArgs, log: &Path) -> Result<Results> {
    let mut options = device_sim::FleetOptions::new(stack.mqtt_address());
    options.devices = args.devices;
    options.prefix = "bench".to_owned();
    options.tenant = "demo".to_owned();
    // Connecting a thousand devices at once would measure the stampede, not the steady state.
    options.start_spread = Duration::from_secs(20);
    // One message per sample, the load this benchmark has always measured.
    options.batch_every = None;
    options.heartbeat_every = Some(Duration::from_secs(args.heartbeat_seconds.max(1)));
    let (simulator, fleet) = start_fleet(options)?;
    let outcome = measure_fleet(stack, args, log, &fleet).await;
    stop_fleet(simulator, fleet).await;
    outcome
}

async fn measure_fleet(
    stack: &Devstack,
    args: &DevicesArgs,
    log: &Path,
    fleet: &device_sim::Fleet,
) -> Result<Results> {
    use devstack::demo_accounts::DEMO_PASSWORD;
    let functions = stack.template().function_binaries()?;
    let registered = wait_registered(fleet, args.devices).await?;
    settle(stack, args.devices).await?;

    let api = stack.sign_in("ops@demo.example", DEMO_PASSWORD).await?;
    let window = Duration::from_secs(args.seconds);
    let log_offset = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
    let cpu_before = cpu_profile::snapshot(&functions);
    let sent_before = fleet.stats().telemetry_sent;
    let measuring = Instant::now();
    let bar = ProgressBar::new(args.seconds).with_style(ProgressStyle::with_template(
        "  {bar:40} {pos}/{len} s measured  {msg}",
    )?);
    let things: Vec<String> = fleet.things().map(str::to_owned).collect();
    let commands = async {
        let mut trips = Vec::new();
        let mut failures = 0;
        for n in 0..args.commands {
            let thing = &things[(n * 37) % things.len()];
            let trip = async {
                let id = api.send_command(thing, "ping", None).await?.id;
                let view = api
                    .wait_command_final(thing, &id, Duration::from_secs(10))
                    .await?;
                command_round_trip(&view).context("no final acknowledgement in the history")
            };
            match trip.await {
                Ok(d) => trips.push(d.as_secs_f64() * 1000.0),
                Err(e) => {
                    failures += 1;
                    eprintln!("  command {n}: {e:#}");
                }
            }
            // Spread them over the window.
            tokio::time::sleep(window / (args.commands as u32 + 1)).await;
        }
        (trips, failures)
    };
    let sampling = async {
        let mut backlog = Vec::new();
        let mut presence_backlog = Vec::new();
        let begin = Instant::now();
        while begin.elapsed() < window {
            let depth = stack.queue_depth(TELEMETRY_QUEUE).await.unwrap_or(0);
            let at = begin.elapsed().as_secs();
            backlog.push((at, depth));
            presence_backlog.push((at, presence_waiting(stack)));
            bar.set_position(at);
            bar.set_message(format!("telemetry queue backlog {depth}"));
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        (backlog, presence_backlog)
    };
    let ((mut round_trips_ms, command_failures), (backlog, presence_backlog)) =
        tokio::join!(commands, sampling);
    bar.finish();
    let telemetry_sent = fleet.stats().telemetry_sent - sent_before;
    // The commands may run past the window; rates are over the time really measured.
    let window = measuring.elapsed();
    let cpu_after = cpu_profile::snapshot(&functions);
    // Let the last batches land in the log.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let batches = ingest_metrics(log, log_offset)?;
    let written: f64 = batches.iter().map(|b| b.written).sum();
    let mut lag_ms: Vec<f64> = batches.iter().flat_map(|b| b.lag_ms.clone()).collect();
    lag_ms.sort_by(f64::total_cmp);
    round_trips_ms.sort_by(f64::total_cmp);
    let ingest_seconds = ingest_cpu_seconds(&cpu_before, &cpu_after);
    Ok(Results {
        devices: args.devices,
        heartbeat_seconds: args.heartbeat_seconds,
        registered,
        window,
        telemetry_sent,
        backlog,
        presence_backlog,
        batches: batches.len(),
        written,
        write_requests: batches.iter().map(|b| b.write_requests).sum(),
        malformed: batches.iter().map(|b| b.malformed).sum(),
        lag_ms,
        cpu_per_message_us: (written > 0.0 && ingest_seconds > 0.0)
            .then(|| ingest_seconds * 1_000_000.0 / written),
        cpu: cpu_profile::cores_between(&cpu_before, &cpu_after, window),
        round_trips_ms,
        command_failures,
    })
}

/// One ingest batch's metrics line.
pub(crate) struct BatchMetrics {
    written: f64,
    write_requests: f64,
    malformed: f64,
    lag_ms: Vec<f64>,
    /// From when each (sampled) sample was taken to its write.
    pub sample_age_ms: Vec<f64>,
}

/// The ingest function's embedded-metric lines written to the log after `offset`.
pub(crate) fn ingest_metrics(log: &Path, offset: u64) -> Result<Vec<BatchMetrics>> {
    let text = std::fs::read(log).with_context(|| format!("reading {}", log.display()))?;
    let start = usize::try_from(offset).unwrap_or(0).min(text.len());
    let mut batches = Vec::new();
    for line in String::from_utf8_lossy(&text[start..]).lines() {
        let Some(json) = line.find('{').map(|i| &line[i..]) else {
            continue;
        };
        if !json.contains("\"TelemetryWriteRequests\"") {
            continue;
        }
        let Ok(value) = serde_json::from_str::<serde_json::Value>(json) else {
            continue;
        };
        let number = |k: &str| value[k].as_f64().unwrap_or(0.0);
        let values = |k: &str| -> Vec<f64> {
            value[k]
                .as_array()
                .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
                .unwrap_or_default()
        };
        batches.push(BatchMetrics {
            written: number("TelemetryWritten"),
            write_requests: number("TelemetryWriteRequests"),
            malformed: number("TelemetryMalformed"),
            lag_ms: values("IngestLagMs"),
            sample_age_ms: values("SampleAgeMs"),
        });
    }
    Ok(batches)
}

fn ingest_cpu_seconds(before: &CpuSnapshot, after: &CpuSnapshot) -> f64 {
    cpu_profile::seconds_between(before, after, &format!("function {INGEST_BINARY}"))
}

/// Heartbeats and lifecycle events waiting for `device-presence`.
fn presence_waiting(stack: &Devstack) -> u64 {
    stack
        .iot_stats()
        .rules
        .functions
        .iter()
        .filter(|f| f.binary == PRESENCE_BINARY)
        .map(|f| f.queued)
        .sum()
}

/// Waits (up to `SETTLE_LIMIT`) for the start-up burst (a connect, an announcement and the first
/// heartbeats of every device) to be worked off, so the window measures the steady state.
pub(crate) async fn settle(stack: &Devstack, devices: usize) -> Result<()> {
    let spinner = ProgressBar::new_spinner()
        .with_style(ProgressStyle::with_template("  {spinner} {msg} {elapsed}")?);
    spinner.enable_steady_tick(Duration::from_millis(120));
    let quiet = (devices as u64 / 20).max(5);
    let started = Instant::now();
    while started.elapsed() < SETTLE_LIMIT {
        let telemetry = stack.queue_depth(TELEMETRY_QUEUE).await.unwrap_or(0);
        let presence = presence_waiting(stack);
        spinner.set_message(format!(
            "settling: {telemetry} telemetry messages and {presence} presence events waiting"
        ));
        if telemetry <= quiet && presence <= quiet {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    spinner.finish_and_clear();
    Ok(())
}

/// `0s:12 5s:3 ...`
fn series(samples: &[(u64, u64)]) -> String {
    samples
        .iter()
        .map(|(at, depth)| format!("{at}s:{depth}"))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Results {
    fn markdown(&self, machine: &Machine) -> String {
        let mut out = String::new();
        let per_second = self.telemetry_sent as f64 / self.window.as_secs_f64();
        let _ = writeln!(
            out,
            "{}, the functions under `cargo lambda watch` and the local stack built with the `{}` profile (optimised, no link-time optimisation), MiniStack for DynamoDB and SQS, moto for the IoT registry.\n",
            machine.measured_with("devices"),
            local_tools::BENCH_PROFILE
        );
        let _ = writeln!(
            out,
            "{} simulated devices ({} registered), each sending one telemetry message a second and a heartbeat every {} s over MQTT to the local broker; the telemetry rule sends each message to `TelemetryQueue`, and `telemetry-ingest` takes up to 500 a batch within a 1 s window. Measured over {} s after every device registered and the start-up burst was worked off (or 120 s passed).\n",
            self.devices,
            self.registered,
            self.heartbeat_seconds,
            self.window.as_secs()
        );
        let _ = writeln!(out, "| measure | value | goal |");
        let _ = writeln!(out, "|---|---|---|");
        let _ = writeln!(
            out,
            "| telemetry sent | {} messages ({per_second:.0}/s) | {}/s |",
            self.telemetry_sent, self.devices
        );
        let _ = writeln!(
            out,
            "| points written | {:.0} in {} batches ({:.0} malformed) | all |",
            self.written, self.batches, self.malformed
        );
        let _ = writeln!(
            out,
            "| telemetry queue backlog (every 5 s) | {} | not growing |",
            series(&self.backlog)
        );
        let _ = writeln!(
            out,
            "| heartbeats and lifecycle events waiting for `device-presence` (every 5 s) | {} | not growing |",
            series(&self.presence_backlog)
        );
        let _ = writeln!(
            out,
            "| ingest lag p50 / p99 (rule receive to write) | {:.0} ms / {:.0} ms | |",
            percentile(&self.lag_ms, 0.5),
            percentile(&self.lag_ms, 0.99)
        );
        let _ = writeln!(
            out,
            "| items per `BatchWriteItem` | {:.1} | 20 or more |",
            if self.write_requests > 0.0 {
                self.written / self.write_requests
            } else {
                0.0
            }
        );
        let _ = writeln!(
            out,
            "| ingest CPU per message (user + system of the function processes) | {} | |",
            self.cpu_per_message_us
                .map_or_else(|| "not measured".to_owned(), |us| format!("{us:.0} µs"))
        );
        let _ = writeln!(
            out,
            "| command round trip p50 / p95 (API call to recorded ack, {} commands, {} failed) | {:.0} ms / {:.0} ms | under 100 ms |",
            self.round_trips_ms.len() + self.command_failures,
            self.command_failures,
            percentile(&self.round_trips_ms, 0.5),
            percentile(&self.round_trips_ms, 0.95)
        );
        let total: f64 = self.cpu.iter().map(|(_, cores)| cores).sum();
        let _ = writeln!(
            out,
            "\nWhere the CPU went over the window ({:.0}% of a core in all, on {} cores):\n",
            total * 100.0,
            machine.nproc
        );
        let _ = writeln!(out, "| part | CPU (100% = one core) |");
        let _ = writeln!(out, "|---|---|");
        for (part, cores) in &self.cpu {
            let _ = writeln!(out, "| {part} | {:.0}% |", cores * 100.0);
        }
        out
    }
}

/// The value at `q` (0..=1) of sorted samples.
pub(crate) fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[cfg(test)]
mod percentile_tests {
    use super::percentile;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 0.5), 51.0);
        assert_eq!(percentile(&sorted, 0.99), 99.0);
        assert!(percentile(&[], 0.5).is_nan());
    }
}
