//! `cargo xtask bench bulk-change`: one status change (suspend) of many devices per carrier, sent
//! through the carrier worker against the carrier simulators, timed against the floor the
//! simulators' rate limits set.
//!
//! Two processes besides cargo's: the carrier simulators (`carrier-sim`, a release build, one
//! process per scenario with that scenario's limits) and a runner (this `bench` binary, rebuilt in
//! release so the worker code is what Lambda runs) that hosts the pipeline: the planner, N worker
//! "instances" fed from an in-memory queue the way Lambda's SQS poller feeds them, and for
//! ThingSpace an HTTP listener that hands callbacks to the callback function. The runner's CPU time
//! is the pipeline's alone; the simulators burn theirs elsewhere. The runner writes its
//! measurements to a JSON file; this process prints them and writes docs/benchmarks.md.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use cargo_metadata::diagnostic::DiagnosticLevel;
use cargo_metadata::Message;
use carrier_sim::SimConfig;
use cellbridge::bulk_changes::bulk_change::{BulkChange, BulkChangeStatus, DeviceCounts};
use cellbridge::bulk_changes::change::{Carrier, ChangeSpec, DeviceRequest, StatusAction};
use cellbridge::bulk_changes::memory::{MemoryPorts, MemoryQueues};
use cellbridge::bulk_changes::messages::{PlanMessage, WorkMessage};
use cellbridge::bulk_changes::ports::{BulkChangeStore, PayloadStore};
use cellbridge::bulk_changes::request::parse_bulk_change_request;
use cellbridge::carriers::config::{
    accounts_from_json, gated_accounts_from_json, CallbackCredentials,
};
use cellbridge::carriers::http::http_client;
use cellbridge::carriers::port::{CallJournal, CarrierOutcome, CarrierPort};
use cellbridge::carriers::retry::RetryPolicy;
use cellbridge::carriers::thingspace::ThingSpaceClient;
use cellbridge::common::tenant::TenantId;
use cellbridge::testing::iccid;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinSet;

use super::{cargo, write_section, DocSection, Machine, Workspace};

const SECTION: DocSection = DocSection {
    name: "bulk-change",
    heading: "Bulk change",
    begin: "<!-- bulk-change:begin (written by `cargo xtask bench bulk-change`) -->",
    end: "<!-- bulk-change:end -->",
};
/// Goal of the issue: within 5 % of the floor the carrier's rate limit sets, and no 429s.
const GOAL_RATIO: f64 = 1.05;
/// The work queues' visibility timeout in template.yaml: a failed record comes back after it.
const VISIBILITY_TIMEOUT: Duration = Duration::from_secs(720);
/// Longest an idle instance waits before looking at the queue again; it wakes earlier when a
/// handler returns (the only time messages are queued) or a delayed message comes due, as SQS
/// long polling answers once a message is there.
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// How often the runner looks at the bulk change's counts (the elapsed time comes from the last
/// device change's own timestamp, so this only bounds how long idle time is added to the CPU).
/// Every wake-up of the runner costs CPU (futex and epoll calls, ~3 ms a second at 10 a second on
/// the benchmark machine), which a run at documented limits would pay for minutes.
const MONITOR: Duration = Duration::from_millis(500);
/// Calibration devices live at these numbers, apart from the benchmark's own.
const CALIBRATION_BASE: u32 = 5_000_000;
/// Route of the callback function in template.yaml.
const CALLBACK_PATH: &str = devstack::carriers::CALLBACK_PATH;
const CALLBACK_USERNAME: &str = devstack::carriers::CALLBACK_USERNAME;
const CALLBACK_PASSWORD: &str = devstack::carriers::CALLBACK_PASSWORD;
const TENANT: &str = "bench";

#[derive(Args, Clone, Debug)]
pub struct BulkChangeArgs {
    /// Devices per carrier with scaled-up limits, and for ThingSpace at documented limits
    /// (one request however many devices).
    #[arg(long, default_value_t = 10_000)]
    pub devices: u32,
    /// Devices for Jasper and Telegence at their documented limits (5 and 10 calls a second:
    /// 10,000 devices would take 33 and 17 minutes).
    #[arg(long, default_value_t = 1_000)]
    pub documented_devices: u32,
    /// Which limits to run at.
    #[arg(long, value_enum, default_value_t = ScenarioChoice::Both)]
    pub scenario: ScenarioChoice,
    /// Carriers to run, comma separated (default: all three).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub carriers: Vec<CarrierChoice>,
    /// Smoke test in about a minute: 500 devices, scaled limits only; docs/benchmarks.md is left
    /// untouched.
    #[arg(long)]
    pub quick: bool,
    /// Interval of the worker's follow-up checks of accepted requests (ThingSpace), as
    /// ACCEPTED_CHECK_INTERVAL_SECONDS sets it; 300 in production.
    #[arg(long, default_value_t = 300)]
    pub check_interval: u64,
    /// Telegence devices carry only their ICCID, so the adapter looks each subscriber up before
    /// changing it: two calls per device change instead of one.
    #[arg(long)]
    pub telegence_iccid_only: bool,
    /// Every simulator answers every call this many milliseconds late, as a carrier across the
    /// internet does (loopback answers in well under one).
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Lift Jasper's one-call-in-flight rule with scaled limits (kept by default: the account
    /// gate holds it across instances, and a 429 would show where it does not).
    #[arg(long)]
    pub scaled_without_in_flight_rule: bool,
    /// Use the release binaries already in the target directory instead of building them.
    #[arg(long)]
    pub no_build: bool,
    /// Print the table only; leave docs/benchmarks.md untouched.
    #[arg(long)]
    pub no_write: bool,
    /// Internal: run the benchmark in this process and write the measurements to this file.
    #[arg(long, hide = true)]
    pub runner: Option<PathBuf>,
    /// Internal: the carrier-sim executable the runner starts.
    #[arg(long, hide = true)]
    pub sim_exe: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScenarioChoice {
    Both,
    Documented,
    Scaled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CarrierChoice {
    Jasper,
    Thingspace,
    Telegence,
}

impl CarrierChoice {
    fn carrier(self) -> Carrier {
        match self {
            CarrierChoice::Jasper => Carrier::Jasper,
            CarrierChoice::Thingspace => Carrier::ThingSpace,
            CarrierChoice::Telegence => Carrier::Telegence,
        }
    }

    fn arg(self) -> &'static str {
        match self {
            CarrierChoice::Jasper => "jasper",
            CarrierChoice::Thingspace => "thingspace",
            CarrierChoice::Telegence => "telegence",
        }
    }
}

impl BulkChangeArgs {
    /// `--quick` applied.
    fn effective(&self) -> Self {
        let mut args = self.clone();
        if args.quick {
            args.devices = args.devices.min(500);
            args.documented_devices = args.documented_devices.min(500);
            args.scenario = ScenarioChoice::Scaled;
            args.no_write = true;
        }
        if args.carriers.is_empty() {
            args.carriers = vec![
                CarrierChoice::Jasper,
                CarrierChoice::Thingspace,
                CarrierChoice::Telegence,
            ];
        }
        args
    }

    /// The arguments the runner gets (everything that shapes the measurement).
    fn forwarded(&self) -> Vec<String> {
        let mut out = vec![
            format!("--devices={}", self.devices),
            format!("--documented-devices={}", self.documented_devices),
            format!(
                "--scenario={}",
                match self.scenario {
                    ScenarioChoice::Both => "both",
                    ScenarioChoice::Documented => "documented",
                    ScenarioChoice::Scaled => "scaled",
                }
            ),
            format!("--check-interval={}", self.check_interval),
            format!(
                "--carriers={}",
                self.carriers
                    .iter()
                    .map(|c| c.arg())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        ];
        if self.latency_ms > 0 {
            out.push(format!("--latency-ms={}", self.latency_ms));
        }
        if self.telegence_iccid_only {
            out.push("--telegence-iccid-only".into());
        }
        if self.scaled_without_in_flight_rule {
            out.push("--scaled-without-in-flight-rule".into());
        }
        out
    }
}

pub async fn run(args: BulkChangeArgs) -> Result<()> {
    if !cfg!(target_os = "linux") {
        bail!("the bulk-change benchmark reads CPU times from getrusage and /proc, so it runs on Linux only");
    }
    let args = args.effective();
    if args.devices == 0 || args.documented_devices == 0 {
        bail!("--devices and --documented-devices must be at least 1");
    }
    if args.devices as usize > cellbridge::bulk_changes::request::MAX_DEVICES
        || args.documented_devices as usize > cellbridge::bulk_changes::request::MAX_DEVICES
    {
        bail!(
            "a bulk change holds at most {} devices",
            cellbridge::bulk_changes::request::MAX_DEVICES
        );
    }
    match args.runner.clone() {
        Some(results) => runner(&args, &results).await,
        None => orchestrate(&args).await,
    }
}

// ---------------------------------------------------------------------------------------------
// Orchestration: build, start the runner, report

async fn orchestrate(args: &BulkChangeArgs) -> Result<()> {
    let workspace = Workspace::load().await?;
    let release = workspace.target_dir.join("release");
    let (runner_exe, sim_exe) = if args.no_build {
        let found = (release.join("bench"), release.join("carrier-sim"));
        for exe in [&found.0, &found.1] {
            if !exe.is_file() {
                bail!(
                    "no release binary at {} (run without --no-build)",
                    exe.display()
                );
            }
        }
        found
    } else {
        build_release(&workspace).await?
    };

    let dir = workspace.target_dir.join("bench-bulk-change");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let results_path = dir.join("results.json");
    let _ = std::fs::remove_file(&results_path);
    // The functions write their metrics as EMF lines on stdout, one or two per device change:
    // kept in a file (as Lambda hands them to CloudWatch Logs), out of the terminal.
    let stdout_path = dir.join("runner-stdout.log");
    let stdout = std::fs::File::create(&stdout_path)
        .with_context(|| format!("creating {}", stdout_path.display()))?;

    // Before measuring, so the load average is the machine's, not ours.
    let machine = Machine::detect(&workspace.root).await;
    println!(
        "running the bulk-change benchmark in {} (1-min load average {}; other work adds noise)",
        runner_exe.display(),
        machine.load
    );
    let status = Command::new(&runner_exe)
        .current_dir(&workspace.root)
        .arg("bulk-change")
        .args(args.forwarded())
        .arg("--runner")
        .arg(&results_path)
        .arg("--sim-exe")
        .arg(&sim_exe)
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .status()
        .await
        .with_context(|| format!("starting {}", runner_exe.display()))?;
    if !status.success() {
        bail!(
            "the benchmark runner failed ({status}); its error is above, its stdout in {}",
            stdout_path.display()
        );
    }
    let text = std::fs::read_to_string(&results_path)
        .with_context(|| format!("reading {}", results_path.display()))?;
    let results: Results = serde_json::from_str(&text)
        .with_context(|| format!("parsing {}", results_path.display()))?;

    println!("\n{}", results.text_table());
    for note in results.notes() {
        println!("- {note}");
    }
    if args.no_write {
        if args.quick {
            println!("\n--quick: docs/benchmarks.md left untouched");
        }
    } else {
        let path = workspace.root.join("docs/benchmarks.md");
        write_section(&path, &SECTION, &results.markdown(&machine))?;
        println!("\nwrote {}", path.display());
    }
    Ok(())
}

/// Builds the runner (this `bench` binary) and the simulators in release: the worker code is measured as
/// Lambda runs it, and the simulators take as little CPU from the machine as they can.
async fn build_release(workspace: &Workspace) -> Result<(PathBuf, PathBuf)> {
    let mut child = cargo()
        .current_dir(&workspace.root)
        .args([
            "build",
            "--release",
            "--message-format=json",
            "-p",
            "bench",
            "-p",
            "carrier-sim",
            "--bin",
            "bench",
            "--bin",
            "carrier-sim",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting `cargo build --release`; is cargo on PATH?")?;
    let stdout = child.stdout.take().context("cargo stdout not captured")?;
    let stderr = child.stderr.take().context("cargo stderr not captured")?;
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {prefix}: {wide_msg}")
            .context("progress template")?,
    );
    spinner.set_prefix(
        "cargo build --release of the runner and carrier-sim (fat LTO: minutes when cold)",
    );
    spinner.enable_steady_tick(Duration::from_millis(120));
    let status_lines = tokio::spawn({
        let spinner = spinner.clone();
        async move {
            let mut tail: Vec<String> = Vec::new();
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                spinner.set_message(line.trim().to_string());
                if tail.len() == 40 {
                    tail.remove(0);
                }
                tail.push(line);
            }
            tail
        }
    });
    let mut executables: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut errors: Vec<String> = Vec::new();
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next_line().await.context("reading cargo output")? {
        // Not every stdout line has to be ours to understand; skip what does not parse.
        match serde_json::from_str::<Message>(&line) {
            Ok(Message::CompilerArtifact(artifact)) => {
                if let Some(exe) = artifact.executable {
                    executables.insert(artifact.target.name, exe.into_std_path_buf());
                }
            }
            Ok(Message::CompilerMessage(message))
                if message.message.level == DiagnosticLevel::Error =>
            {
                errors.push(message.message.rendered.unwrap_or_default());
            }
            _ => {}
        }
    }
    let status = child.wait().await.context("waiting for cargo build")?;
    let tail = status_lines.await.unwrap_or_default();
    let elapsed = spinner.elapsed();
    spinner.finish_and_clear();
    println!("cargo build --release finished in {elapsed:.0?} ({status})");
    if !status.success() {
        if errors.is_empty() {
            eprintln!("{}", tail.join("\n"));
        } else {
            for rendered in errors.iter().take(5) {
                eprintln!("{}", rendered.trim_end());
            }
        }
        bail!("the release build failed; fix the errors above, or pass --no-build to use the binaries already built");
    }
    let exe = |name: &str| {
        executables
            .get(name)
            .cloned()
            .with_context(|| format!("cargo built no `{name}` executable"))
    };
    Ok((exe("bench")?, exe("carrier-sim")?))
}

// ---------------------------------------------------------------------------------------------
// Measurements

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Results {
    runs: Vec<RunResult>,
    check_interval_s: u64,
    telegence_iccid_only: bool,
    #[serde(default)]
    latency_ms: u64,
    quick: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunResult {
    scenario: String,
    carrier: String,
    devices: u32,
    /// The simulator's limit, in words.
    carrier_limit: String,
    /// Instances, batch size and per-instance pacing, in words.
    pacing: String,
    /// The fastest the carrier's limit allows.
    floor_s: f64,
    floor_basis: String,
    /// The fastest the worker's own pacing allows (all instances together), when per device.
    pacing_floor_s: Option<f64>,
    elapsed_s: f64,
    completed: bool,
    plan_ms: f64,
    /// Carrier requests the worker sent during the run (the simulator's log).
    requests: u64,
    rate_limited: u64,
    /// Other 4xx and 5xx answers.
    other_errors: u64,
    /// Runner process CPU (user + system) during the run.
    cpu_ms: f64,
    /// The runner's CPU with nothing to do (ms a second), measured before the scenario's runs.
    #[serde(default)]
    idle_cpu_ms_per_s: f64,
    /// Of it, inside the callback function's handler (ThingSpace).
    callback_cpu_ms: Option<f64>,
    sim_cpu_ms: f64,
    succeeded: u32,
    failed: u32,
    first_failure: Option<String>,
    /// Work messages the worker put back on the queue with a delay (retries, waits).
    requeued: u64,
    /// Follow-up checks of accepted requests the worker queued.
    checks_queued: u64,
    /// Records the worker reported as failed (back after the visibility timeout).
    batch_item_failures: u64,
    callbacks: Option<CallbackCounts>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct CallbackCounts {
    received: u64,
    recorded: u64,
    duplicate: u64,
    unknown: u64,
    refused: u64,
}

impl RunResult {
    fn ratio(&self) -> f64 {
        self.elapsed_s / self.floor_s
    }

    fn goal_met(&self) -> bool {
        self.completed && self.failed == 0 && self.rate_limited == 0 && self.ratio() <= GOAL_RATIO
    }

    /// CPU the run's elapsed time costs the runner anyway (monitor, progress bar, idle runtime).
    fn idle_cpu_ms(&self) -> f64 {
        self.idle_cpu_ms_per_s * self.elapsed_s
    }

    /// CPU per device change, the runner's idle share taken out.
    fn cpu_per_device(&self) -> f64 {
        (self.cpu_ms - self.idle_cpu_ms()).max(0.0) / f64::from(self.devices.max(1))
    }
}

/// Seconds with three significant digits or more: 0.512, 20.4, 250.
fn seconds(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.2}")
    } else if value < 100.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.0}")
    }
}

impl Results {
    fn header() -> [&'static str; 14] {
        [
            "scenario",
            "carrier",
            "devices",
            "carrier limit",
            "worker instances and pacing",
            "elapsed s",
            "floor s",
            "elapsed / floor",
            "pacing floor s",
            "goal",
            "carrier requests",
            "429s",
            "CPU ms / device",
            "succeeded / failed",
        ]
    }

    fn cells(run: &RunResult) -> [String; 14] {
        [
            run.scenario.clone(),
            run.carrier.clone(),
            run.devices.to_string(),
            run.carrier_limit.clone(),
            run.pacing.clone(),
            if run.completed {
                seconds(run.elapsed_s)
            } else {
                format!(">{:.0} (timed out)", run.elapsed_s)
            },
            seconds(run.floor_s),
            format!("{:.2}x", run.ratio()),
            run.pacing_floor_s.map_or_else(|| "-".to_string(), seconds),
            if run.goal_met() { "yes" } else { "NO" }.to_string(),
            run.requests.to_string(),
            run.rate_limited.to_string(),
            format!("{:.3}", run.cpu_per_device()),
            format!("{} / {}", run.succeeded, run.failed),
        ]
    }

    fn text_table(&self) -> String {
        let mut lines = vec![Self::header().map(str::to_string)];
        lines.extend(self.runs.iter().map(Self::cells));
        let columns = lines[0].len();
        let widths: Vec<usize> = (0..columns)
            .map(|c| lines.iter().map(|l| l[c].len()).max().unwrap_or(0))
            .collect();
        let mut out = String::from("bulk change (suspend), one per carrier\n");
        for line in &lines {
            for (c, cell) in line.iter().enumerate() {
                if [0, 1, 3, 4].contains(&c) {
                    let _ = write!(out, "{cell:<w$}  ", w = widths[c]);
                } else {
                    let _ = write!(out, "{cell:>w$}  ", w = widths[c]);
                }
            }
            out = out.trim_end().to_string();
            out.push('\n');
        }
        out.trim_end().to_string()
    }

    /// What the table leaves out, one line per run that has something to say.
    fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        for run in &self.runs {
            let mut parts = vec![format!("floor: {}", run.floor_basis)];
            parts.push(format!(
                "planning {:.0} ms before the clock started",
                run.plan_ms
            ));
            let idle = format!(
                "{:.0} ms of it the runner's idle rate ({:.2} ms/s) over the run",
                run.idle_cpu_ms(),
                run.idle_cpu_ms_per_s
            );
            if let Some(callback) = run.callback_cpu_ms {
                parts.push(format!(
                    "CPU {:.0} ms in all, {idle}, {:.0} ms in the callback function's handler",
                    run.cpu_ms, callback
                ));
            } else {
                parts.push(format!("CPU {:.0} ms in all, {idle}", run.cpu_ms));
            }
            parts.push(format!("simulator CPU {:.0} ms", run.sim_cpu_ms));
            if run.other_errors > 0 {
                parts.push(format!("{} other 4xx/5xx answers", run.other_errors));
            }
            if run.requeued > 0 {
                parts.push(format!(
                    "{} work messages back on the queue with a delay",
                    run.requeued
                ));
            }
            if run.checks_queued > 0 {
                parts.push(format!(
                    "{} follow-up check(s) queued for {} s later",
                    run.checks_queued, self.check_interval_s
                ));
            }
            if run.batch_item_failures > 0 {
                parts.push(format!(
                    "{} records reported failed to the poller",
                    run.batch_item_failures
                ));
            }
            if let Some(callbacks) = &run.callbacks {
                parts.push(format!(
                    "callbacks: {} received, {} recorded, {} duplicate, {} for unknown requests, {} refused",
                    callbacks.received,
                    callbacks.recorded,
                    callbacks.duplicate,
                    callbacks.unknown,
                    callbacks.refused
                ));
            }
            if let Some(reason) = &run.first_failure {
                parts.push(format!("first failure: {reason}"));
            }
            notes.push(format!(
                "{} {}: {}",
                run.scenario,
                run.carrier,
                parts.join("; ")
            ));
        }
        notes
    }

    fn markdown(&self, machine: &Machine) -> String {
        let mut out = String::new();
        let scenarios: Vec<&str> = {
            let mut seen: Vec<&str> = self.runs.iter().map(|r| r.scenario.as_str()).collect();
            seen.dedup();
            seen
        };
        let _ = writeln!(
            out,
            "Measured {} with `cargo xtask bench bulk-change` at {}: {} limits{}{}.\n",
            machine.date,
            machine.commit,
            scenarios.join(" and "),
            if self.telegence_iccid_only {
                ", Telegence devices given by ICCID only"
            } else {
                ""
            },
            if self.latency_ms > 0 {
                format!(", every carrier answering {} ms late", self.latency_ms)
            } else {
                String::new()
            }
        );
        let header = Self::header();
        let _ = writeln!(out, "| {} |", header.join(" | "));
        // Words left, numbers right.
        let align: String = (0..header.len())
            .map(|c| {
                if [0, 1, 3, 4].contains(&c) {
                    ":--|"
                } else {
                    "--:|"
                }
            })
            .collect();
        let _ = writeln!(out, "|{align}");
        for run in &self.runs {
            let _ = writeln!(out, "| {} |", Self::cells(run).join(" | "));
        }
        out.push('\n');
        let met = self.runs.iter().filter(|r| r.goal_met()).count();
        let _ = writeln!(
            out,
            "**Goal:** elapsed within {GOAL_RATIO}x of the floor the carrier's rate limit sets, no \
             429s, every device change succeeded. Met by {met} of {} runs.\n",
            self.runs.len()
        );
        let _ = writeln!(out, "**Per run:**\n");
        for note in self.notes() {
            let _ = writeln!(out, "- {note}");
        }
        out.push('\n');
        let _ = writeln!(
            out,
            "**Machine:** {} CPUs (`nproc`), {}, Linux {}, {}; load average {} when the runs \
             started. The simulators and the runner share these CPUs.\n",
            machine.nproc, machine.cpu, machine.kernel, machine.rustc, machine.load
        );
        let _ = writeln!(
            out,
            "**Method:** one bulk change per carrier suspends that many active devices, seeded in \
             the simulators over their `/_sim` routes; carriers run one after another. The \
             simulators run in their own process (`carrier-sim --config`, release build, one \
             process per scenario with its limits); the pipeline runs in a runner process (the \
             `bench` binary, release build: the workspace's release profile, as the functions are built): \
             `bulk_planner::plan` writes the device changes and queues the work (before the clock \
             starts), then worker \"instances\" take batches from the queue and call \
             `carrier_worker::handle` as Lambda's SQS poller does, with the template's shape per \
             carrier: Jasper 2 instances x batch 10, ThingSpace 2 x 1, Telegence 4 x 10. Each \
             instance has its own `CARRIER_ACCOUNTS` accounts (own HTTP client, pacer and retry \
             budget, as each Lambda instance has), configured as the local stack does: \
             every limit whole, held across the instances by one account gate (Jasper's calls \
             pass it one at a time, Telegence's take their start slots from it; the in-memory \
             `MemoryGate` stands in for the DynamoDB item, so the gate's own DynamoDB writes are \
             not in these numbers). \
             Delayed messages (retries, follow-up checks \
             every {} s) are held until due, failed records for the visibility timeout (720 s). \
             ThingSpace's callbacks reach a listener in the runner that hands them to \
             `carrier_callbacks::handle`, as API Gateway would. Elapsed runs from the first \
             message taken to the last device change finished. **Floor:** Jasper and Telegence, \
             devices x calls per device / the simulator's calls a second; ThingSpace, a \
             calibration just before the run: the same suspend sent straight to the simulator \
             with a listener that only answers 200, timed to its last callback (the simulator \
             waits 1 s, then sends 16 callbacks at a time). The pacing floor is the same \
             arithmetic at the rate the account gate paces at. **Requests and 429s** come \
             from the simulator's request log (`GET /_sim/requests`), counting only the run. \
             **CPU** is the runner's user + system time (`getrusage`) over the run, less what \
             it burns idle (measured for 5 s before each scenario, times the elapsed time), \
             divided by devices: worker, adapters, HTTP client, EMF metric lines (written to a \
             file), in-memory store and queue driver, and for ThingSpace the callback listener \
             (the handler's own share is given apart, measured with the thread CPU clock). **Store and queues** are the in-memory adapters \
             (`MemoryPorts`), not moto: moto's SQS slows down with queue depth (2,000 messages \
             take about a minute to move), so through moto the benchmark would time moto; \
             DynamoDB and SQS latency on AWS are left out of these numbers.",
            self.check_interval_s
        );
        out
    }
}

// ---------------------------------------------------------------------------------------------
// The runner

/// One set of carrier limits to run every carrier at.
struct Scenario {
    name: &'static str,
    sim: SimConfig,
    /// Devices for per-device carriers (Jasper, Telegence); ThingSpace always gets `--devices`.
    per_device_devices: u32,
    thingspace_devices: u32,
}

/// The simulators' defaults (their documented limits), answering `latency_ms` late.
fn base_config(args: &BulkChangeArgs) -> SimConfig {
    let mut sim = SimConfig::default();
    if args.latency_ms > 0 {
        let latency = Duration::from_millis(args.latency_ms);
        sim.jasper.slow_rate = 1.0;
        sim.jasper.slow_answer = latency;
        sim.thingspace.slow_rate = 1.0;
        sim.thingspace.slow_answer = latency;
        sim.telegence.slow_rate = 1.0;
        sim.telegence.slow_answer = latency;
    }
    sim
}

fn scenarios(args: &BulkChangeArgs) -> Vec<Scenario> {
    let mut out = Vec::new();
    if matches!(
        args.scenario,
        ScenarioChoice::Both | ScenarioChoice::Documented
    ) {
        out.push(Scenario {
            name: "documented",
            sim: base_config(args),
            per_device_devices: args.documented_devices,
            thingspace_devices: args.devices,
        });
    }
    if matches!(args.scenario, ScenarioChoice::Both | ScenarioChoice::Scaled) {
        let mut sim = base_config(args);
        sim.jasper.calls_per_second = 500;
        sim.jasper.one_call_in_flight = !args.scaled_without_in_flight_rule;
        sim.telegence.requests_per_second = 500.0;
        out.push(Scenario {
            name: "scaled",
            sim,
            per_device_devices: args.devices,
            thingspace_devices: args.devices,
        });
    }
    out
}

/// The template's event source shape per carrier: (MaximumConcurrency, BatchSize).
fn lambda_shape(carrier: Carrier) -> (u32, usize) {
    match carrier {
        Carrier::Jasper => (2, 10),
        Carrier::ThingSpace => (2, 1),
        Carrier::Telegence => (4, 10),
    }
}

async fn runner(args: &BulkChangeArgs, results_path: &Path) -> Result<()> {
    let sim_exe = args
        .sim_exe
        .clone()
        .context("--runner needs --sim-exe, the carrier-sim executable")?;
    let dir = results_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    let mut runs = Vec::new();
    for scenario in scenarios(args) {
        let sim = SimProcess::start(&sim_exe, &scenario, &dir).await?;
        let idle = idle_cpu_rate(Duration::from_secs(5)).await?;
        for choice in &args.carriers {
            let carrier = choice.carrier();
            let devices = if carrier == Carrier::ThingSpace {
                scenario.thingspace_devices
            } else {
                scenario.per_device_devices
            };
            let run = run_carrier(&sim, &scenario, carrier, devices, args, idle)
                .await
                .with_context(|| format!("{} {}", scenario.name, carrier.as_str()))?;
            eprintln!(
                "{} {}: {} devices in {:.1} s (floor {:.1} s, {:.2}x), {} requests, {} 429s, {:.3} CPU ms per device, {} succeeded, {} failed",
                run.scenario,
                run.carrier,
                run.devices,
                run.elapsed_s,
                run.floor_s,
                run.ratio(),
                run.requests,
                run.rate_limited,
                run.cpu_per_device(),
                run.succeeded,
                run.failed
            );
            runs.push(run);
        }
        sim.stop().await;
    }
    let results = Results {
        runs,
        check_interval_s: args.check_interval,
        telegence_iccid_only: args.telegence_iccid_only,
        latency_ms: args.latency_ms,
        quick: args.quick,
    };
    std::fs::write(results_path, serde_json::to_vec_pretty(&results)?)
        .with_context(|| format!("writing {}", results_path.display()))
}

fn display_name(carrier: Carrier) -> &'static str {
    match carrier {
        Carrier::Jasper => "Jasper",
        Carrier::ThingSpace => "ThingSpace",
        Carrier::Telegence => "Telegence",
    }
}

/// The log name the simulator gives a carrier's requests.
fn log_name(carrier: Carrier) -> &'static str {
    match carrier {
        Carrier::Jasper => "jasper",
        Carrier::ThingSpace => "thingspace",
        Carrier::Telegence => "telegence",
    }
}

/// The Telegence subscriber number the benchmark gives a SIM (as the local stack does).
fn subscriber_number(iccid: &str) -> String {
    format!("555{}", &iccid[iccid.len().saturating_sub(7)..])
}

/// A suspend of `iccids` on `carrier`, as the intake function stores it, with its device list.
fn bulk_change(
    carrier: Carrier,
    id: &str,
    iccids: &[String],
    with_msisdn: bool,
) -> Result<(BulkChange, Vec<DeviceRequest>)> {
    let devices: Vec<Value> = iccids
        .iter()
        .map(|iccid| {
            if with_msisdn {
                json!({"iccid": iccid, "msisdn": format!("+1{}", subscriber_number(iccid))})
            } else {
                json!({"iccid": iccid})
            }
        })
        .collect();
    let body = json!({
        "carrier": carrier.as_str(),
        "change": {"type": "statusUpdate", "action": "suspend"},
        "processChanges": true,
        "devices": devices,
    });
    let request = parse_bulk_change_request(body.to_string().as_bytes())
        .map_err(|e| anyhow!("the benchmark's bulk change is invalid: {e:?}"))?;
    let now = OffsetDateTime::now_utc();
    let change = BulkChange {
        tenant_id: tenant(),
        bulk_change_id: id.to_owned(),
        carrier: request.carrier,
        service_provider_id: None,
        change: request.change,
        process_changes: true,
        status: BulkChangeStatus::New,
        counts: DeviceCounts {
            total: iccids.len() as u32,
            succeeded: 0,
            failed: 0,
        },
        payload_key: format!("bulk-changes/{TENANT}/{id}/devices.json"),
        created_at: now,
        updated_at: now,
        created_by: "bench".into(),
        failure_reason: None,
    };
    Ok((change, request.devices))
}

fn tenant() -> TenantId {
    TenantId::parse(TENANT).expect("a valid tenant id")
}

async fn run_carrier(
    sim: &SimProcess,
    scenario: &Scenario,
    carrier: Carrier,
    devices: u32,
    args: &BulkChangeArgs,
    idle_cpu_ms_per_s: f64,
) -> Result<RunResult> {
    let (instances, batch) = lambda_shape(carrier);
    let iccids: Vec<String> = (0..devices).map(iccid).collect();
    sim.seed(carrier, &iccids).await?;

    // What the carrier allows, the floor it sets, and what the worker's pacers allow.
    let config = &scenario.sim;
    let calls_per_device = if carrier == Carrier::Telegence && args.telegence_iccid_only {
        2
    } else {
        1
    };
    let (carrier_limit, pacing, floor_s, floor_basis, pacing_floor_s) = match carrier {
        Carrier::Jasper => {
            let rate = config.jasper.calls_per_second;
            let limit = format!(
                "{rate} calls/s{}",
                if config.jasper.one_call_in_flight {
                    ", 1 in flight"
                } else {
                    ""
                }
            );
            // The account gate spaces calls across instances: the whole rate (spacing 1/rate from
            // one call's start to the next, no margin), one in flight.
            let pacing = format!(
                "{instances} x batch {batch}, one account gate: {rate} calls/s, 1 in flight"
            );
            let floor = f64::from(devices) / f64::from(rate);
            (
                limit,
                pacing,
                floor,
                format!("{devices} calls / {rate} calls/s"),
                Some(floor),
            )
        }
        Carrier::Telegence => {
            let rate = config.telegence.requests_per_second;
            let limit = format!("{rate} calls/s, burst {}", config.telegence.burst);
            // The account gate hands out start slots at the whole rate to every instance, one
            // slot per carrier call (a lookup takes its own).
            let pacing = format!("{instances} x batch {batch}, one account pace: {rate} calls/s");
            let calls = f64::from(devices * calls_per_device);
            (
                limit,
                pacing,
                calls / rate,
                format!(
                    "{} calls ({calls_per_device} per device) / {rate} calls/s",
                    devices * calls_per_device
                ),
                Some(calls / rate.floor().max(1.0)),
            )
        }
        Carrier::ThingSpace => {
            let limit = match config.thingspace.rate_limits.suspend {
                Some(n) => format!(
                    "suspend {n} requests/{} s",
                    config.thingspace.rate_limit_window.as_secs()
                ),
                None => format!(
                    "suspend unlimited (activate {}/{} s)",
                    config
                        .thingspace
                        .rate_limits
                        .activate
                        .map_or_else(|| "unlimited".to_string(), |n| n.to_string()),
                    config.thingspace.rate_limit_window.as_secs()
                ),
            };
            let pacing = format!("{instances} x batch {batch}, documented limits each");
            let floor = thingspace_floor(sim, config, devices).await?;
            (
                limit,
                pacing,
                floor.as_secs_f64(),
                format!(
                    "calibrated: the simulator's {:.1} s from submitting {devices} devices to its \
                     last callback to a listener that only answers 200",
                    floor.as_secs_f64()
                ),
                None,
            )
        }
    };

    // The bulk change, planned.
    let memory = MemoryPorts::default();
    let id = format!("bench-{}-{}", scenario.name, log_name(carrier));
    let with_msisdn = !(carrier == Carrier::Telegence && args.telegence_iccid_only);
    let (change, requests) = bulk_change(carrier, &id, &iccids, with_msisdn)?;
    memory.store.create_bulk_change(&change, None).await?;
    memory
        .payloads
        .put(&change.payload_key, serde_json::to_vec(&requests)?)
        .await?;
    let planned_at = Instant::now();
    bulk_planner::plan(
        &memory.ports(),
        &PlanMessage {
            tenant_id: tenant(),
            bulk_change_id: id.clone(),
        },
        OffsetDateTime::now_utc(),
    )
    .await
    .map_err(|e| anyhow!("planning failed: {e}"))?;
    let plan_ms = planned_at.elapsed().as_secs_f64() * 1000.0;
    let queue = Arc::new(BenchQueue::new(memory.queues.clone()));
    queue.absorb_planned();

    // ThingSpace answers through callbacks: the callback function listens.
    let listener = if carrier == Carrier::ThingSpace {
        let listener = CallbackListener::start(memory.clone()).await?;
        thingspace_client(sim, config)?
            .register_callback(
                cellbridge::carriers::thingspace::CARRIER_SERVICE,
                &listener.url(),
                Some(CALLBACK_USERNAME),
                Some(CALLBACK_PASSWORD),
                &CallJournal::default(),
            )
            .await
            .map_err(|e| anyhow!("registering the callback listener: {e}"))?;
        Some(listener)
    } else {
        None
    };

    // One set of ports per instance, each with its own accounts, like Lambda instances.
    let settings = carrier_worker::WorkerSettings {
        processed_by: "carrier-worker".into(),
        check_policy: RetryPolicy::ACCEPTED_CHECK.every(Duration::from_secs(args.check_interval)),
        ..carrier_worker::WorkerSettings::default()
    };
    let document = devstack::carriers::accounts_document(&sim.url, config)?.to_string();
    // Instances share the account gate as Lambda instances share the DynamoDB item.
    let gate: Arc<dyn cellbridge::carriers::port::AccountGate> =
        Arc::new(cellbridge::carriers::pacing::memory::MemoryGate::default());
    let mut ports = Vec::new();
    for _ in 0..instances {
        ports.push(carrier_worker::WorkerPorts {
            store: memory.store.clone(),
            queues: memory.queues.clone(),
            accounts: Arc::new(gated_accounts_from_json(&document, Some(gate.clone()))?),
            settings: settings.clone(),
        });
    }

    let logged_before = sim.requests().await?.len();
    let progress = progress_bar(
        u64::from(devices),
        format!("{} {}", scenario.name, display_name(carrier)),
    )?;
    let estimate = floor_s.max(pacing_floor_s.unwrap_or(0.0));
    let timeout =
        Duration::from_secs_f64(estimate * 3.0 + 120.0) + Duration::from_secs(args.check_interval);

    let sim_cpu_before = sim.cpu();
    let cpu_before = process_cpu();
    let started_utc = OffsetDateTime::now_utc();
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for instance_ports in ports {
        workers.spawn(instance(instance_ports, queue.clone(), batch));
    }
    let (final_change, completed) = watch(&memory, &id, &progress, started, timeout).await?;
    let cpu = process_cpu().saturating_sub(cpu_before);
    let sim_cpu = sim.cpu().saturating_sub(sim_cpu_before);
    let wall = started.elapsed();
    workers.abort_all();
    while workers.join_next().await.is_some() {}
    progress.finish_and_clear();

    // Elapsed to the last device change's finish (its write stamps the bulk change), not to when
    // the monitor noticed.
    let elapsed_s = if completed {
        (final_change.updated_at - started_utc)
            .as_seconds_f64()
            .clamp(0.0, wall.as_secs_f64())
    } else {
        wall.as_secs_f64()
    };
    let logged = sim.requests().await?;
    let ours: Vec<&LoggedRequest> = logged
        .iter()
        .skip(logged_before)
        .filter(|r| r.carrier == log_name(carrier))
        .collect();
    let first_failure = memory
        .store
        .get_device_changes(&tenant(), &id, 0..devices)
        .await?
        .into_iter()
        .find(|d| d.status == cellbridge::bulk_changes::bulk_change::DeviceChangeStatus::Failed)
        .and_then(|d| d.status_reason);
    let counters = queue.counters();
    let (callbacks, callback_cpu_ms) = match &listener {
        Some(listener) => {
            let (counts, cpu) = listener.counts();
            (Some(counts), Some(cpu.as_secs_f64() * 1000.0))
        }
        None => (None, None),
    };
    Ok(RunResult {
        scenario: scenario.name.to_string(),
        carrier: display_name(carrier).to_string(),
        devices,
        carrier_limit,
        pacing,
        floor_s,
        floor_basis,
        pacing_floor_s,
        elapsed_s,
        completed,
        plan_ms,
        requests: ours.len() as u64,
        rate_limited: ours.iter().filter(|r| r.status == 429).count() as u64,
        other_errors: ours
            .iter()
            .filter(|r| r.status >= 400 && r.status != 429)
            .count() as u64,
        cpu_ms: cpu.as_secs_f64() * 1000.0,
        idle_cpu_ms_per_s,
        callback_cpu_ms,
        sim_cpu_ms: sim_cpu.as_secs_f64() * 1000.0,
        succeeded: final_change.counts.succeeded,
        failed: final_change.counts.failed,
        first_failure,
        requeued: counters.requeued,
        checks_queued: counters.checks,
        batch_item_failures: counters.item_failures,
        callbacks,
    })
}

fn progress_bar(length: u64, prefix: String) -> Result<ProgressBar> {
    let progress = ProgressBar::new(length);
    progress.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {prefix} {bar:30} {pos}/{len} ({per_sec}, eta {eta}) {msg}",
        )
        .context("progress template")?,
    );
    progress.set_prefix(prefix);
    progress.enable_steady_tick(Duration::from_secs(1));
    Ok(progress)
}

/// Follows the bulk change until it is final (true) or `timeout` has passed since `started`.
async fn watch(
    memory: &MemoryPorts,
    id: &str,
    progress: &ProgressBar,
    started: Instant,
    timeout: Duration,
) -> Result<(BulkChange, bool)> {
    loop {
        let current = memory
            .store
            .get_bulk_change(&tenant(), id)
            .await?
            .context("the bulk change disappeared")?;
        progress.set_position(u64::from(current.counts.succeeded + current.counts.failed));
        if matches!(
            current.status,
            BulkChangeStatus::Completed | BulkChangeStatus::CompletedWithErrors
        ) {
            return Ok((current, true));
        }
        if started.elapsed() > timeout {
            return Ok((current, false));
        }
        tokio::time::sleep(MONITOR).await;
    }
}

/// CPU the runner burns with nothing to do, in ms a second: instances waiting on an empty queue,
/// the monitor and the progress bar ticking over a bulk change that never moves. A run at
/// documented limits lasts minutes, so this share is taken out of its CPU per device change.
async fn idle_cpu_rate(probe: Duration) -> Result<f64> {
    let memory = MemoryPorts::default();
    let iccids: Vec<String> = (0..1).map(iccid).collect();
    let (mut change, _) = bulk_change(Carrier::Jasper, "idle", &iccids, false)?;
    change.status = BulkChangeStatus::Processing;
    memory.store.create_bulk_change(&change, None).await?;
    let queue = Arc::new(BenchQueue::new(memory.queues.clone()));
    let progress = progress_bar(1, "measuring the runner's idle CPU".into())?;
    let mut workers = JoinSet::new();
    for _ in 0..4 {
        let ports = carrier_worker::WorkerPorts {
            store: memory.store.clone(),
            queues: memory.queues.clone(),
            accounts: Arc::new(accounts_from_json("{}")?),
            settings: carrier_worker::WorkerSettings::default(),
        };
        workers.spawn(instance(ports, queue.clone(), 10));
    }
    let before = process_cpu();
    let started = Instant::now();
    watch(&memory, "idle", &progress, started, probe).await?;
    let cpu = process_cpu().saturating_sub(before);
    let wall = started.elapsed();
    workers.abort_all();
    while workers.join_next().await.is_some() {}
    progress.finish_and_clear();
    Ok(cpu.as_secs_f64() * 1000.0 / wall.as_secs_f64())
}

/// One Lambda instance: takes a batch, runs the handler over it, puts failed records back for
/// the visibility timeout; again until aborted.
async fn instance(ports: carrier_worker::WorkerPorts, queue: Arc<BenchQueue>, batch: usize) {
    loop {
        // Registered before looking, so a handler that queues work meanwhile still wakes us.
        let queued = queue.signal.notified();
        tokio::pin!(queued);
        queued.as_mut().enable();
        let (messages, next_due) = queue.take(batch);
        if messages.is_empty() {
            let wait = next_due
                .map_or(IDLE_WAIT, |due| {
                    due.saturating_duration_since(Instant::now())
                })
                .min(IDLE_WAIT);
            tokio::select! {
                () = &mut queued => {}
                () = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        let mut event = SqsEvent::default();
        event.records = messages
            .iter()
            .enumerate()
            .map(|(index, message)| {
                let mut record = SqsMessage::default();
                record.message_id = Some(index.to_string());
                record.body = serde_json::to_string(message).ok();
                record
            })
            .collect();
        let response = carrier_worker::handle(&ports, event).await;
        queue.signal.notify_waiters();
        for failure in response.batch_item_failures {
            if let Some(message) = failure
                .item_identifier
                .parse::<usize>()
                .ok()
                .and_then(|i| messages.get(i))
            {
                queue.put_back(message.clone(), VISIBILITY_TIMEOUT);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The queue Lambda's SQS poller reads

#[derive(Debug, Clone, Copy, Default)]
struct QueueCounters {
    requeued: u64,
    checks: u64,
    item_failures: u64,
}

#[derive(Default)]
struct QueueState {
    ready: VecDeque<WorkMessage>,
    /// (due, message): held back until due, as SQS holds delayed messages.
    delayed: Vec<(Instant, WorkMessage)>,
    counters: QueueCounters,
}

/// The worker's queue as SQS would hold it: what the handlers enqueue into the memory queue moves
/// here, delayed messages wait until due, failed records for the visibility timeout.
struct BenchQueue {
    memory: Arc<MemoryQueues>,
    state: Mutex<QueueState>,
    /// Told when a handler returned, having maybe queued work.
    signal: tokio::sync::Notify,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl BenchQueue {
    fn new(memory: Arc<MemoryQueues>) -> Self {
        Self {
            memory,
            state: Mutex::default(),
            signal: tokio::sync::Notify::new(),
        }
    }

    /// Takes what the planner queued, without counting it as requeued.
    fn absorb_planned(&self) {
        let mut state = locked(&self.state);
        for queued in self.memory.drain_work() {
            state.ready.push_back(queued.message);
        }
    }

    fn absorb(&self, state: &mut QueueState, now: Instant) {
        for queued in self.memory.drain_work() {
            if queued.message.check_request.is_some() {
                state.counters.checks += 1;
            } else {
                state.counters.requeued += 1;
            }
            if queued.delay.is_zero() {
                state.ready.push_back(queued.message);
            } else {
                state.delayed.push((now + queued.delay, queued.message));
            }
        }
    }

    /// Up to `max` messages that are due, oldest first, and when the next delayed one is due.
    fn take(&self, max: usize) -> (Vec<WorkMessage>, Option<Instant>) {
        let now = Instant::now();
        let mut state = locked(&self.state);
        self.absorb(&mut state, now);
        if !state.delayed.is_empty() {
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut state.delayed)
                .into_iter()
                .partition(|(at, _)| *at <= now);
            state.delayed = later;
            state.ready.extend(due.into_iter().map(|(_, m)| m));
        }
        let take = max.min(state.ready.len());
        let taken = state.ready.drain(..take).collect();
        let next_due = state.delayed.iter().map(|(at, _)| *at).min();
        (taken, next_due)
    }

    fn put_back(&self, message: WorkMessage, after: Duration) {
        let mut state = locked(&self.state);
        state.counters.item_failures += 1;
        state.delayed.push((Instant::now() + after, message));
    }

    fn counters(&self) -> QueueCounters {
        let mut state = locked(&self.state);
        self.absorb(&mut state, Instant::now());
        state.counters
    }
}

// ---------------------------------------------------------------------------------------------
// Carrier accounts and ThingSpace

fn thingspace_client(sim: &SimProcess, config: &SimConfig) -> Result<ThingSpaceClient> {
    Ok(ThingSpaceClient::new(
        http_client()?,
        format!("{}/thingspace/api", sim.url),
        devstack::carriers::thingspace_credentials(config)?,
    ))
}

/// The simulator's own pace for `devices` ThingSpace callbacks: a suspend of that many (other)
/// devices sent straight to it, with a listener that only answers 200, timed to the last callback.
async fn thingspace_floor(sim: &SimProcess, config: &SimConfig, devices: u32) -> Result<Duration> {
    let iccids: Vec<String> = (CALIBRATION_BASE..CALIBRATION_BASE + devices)
        .map(iccid)
        .collect();
    sim.seed(Carrier::ThingSpace, &iccids).await?;
    let sink = NullListener::start().await?;
    let client = thingspace_client(sim, config)?;
    let journal = CallJournal::default();
    client
        .register_callback(
            cellbridge::carriers::thingspace::CARRIER_SERVICE,
            &sink.url(),
            Some(CALLBACK_USERNAME),
            Some(CALLBACK_PASSWORD),
            &journal,
        )
        .await
        .map_err(|e| anyhow!("registering the calibration listener: {e}"))?;
    let (_, requests) = bulk_change(Carrier::ThingSpace, "calibration", &iccids, false)?;
    let change = ChangeSpec::StatusUpdate {
        action: StatusAction::Suspend,
    };
    let started = Instant::now();
    let answer = client
        .apply(&change, &requests, &journal)
        .await
        .map_err(|e| anyhow!("the calibration suspend failed: {e}"))?;
    if !matches!(answer, CarrierOutcome::Accepted { .. }) {
        bail!("the calibration suspend was not accepted for later: {answer:?}");
    }
    let deadline = started + Duration::from_secs(120 + u64::from(devices) / 50);
    while sink.received() < u64::from(devices) {
        if Instant::now() > deadline {
            bail!(
                "the calibration got {} of {devices} callbacks in {:?}",
                sink.received(),
                started.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(sink.last_at().unwrap_or_else(Instant::now) - started)
}

/// Answers every callback 200 and counts it.
struct NullListener {
    addr: std::net::SocketAddr,
    state: Arc<NullState>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct NullState {
    received: AtomicU64,
    last: Mutex<Option<Instant>>,
}

async fn null_route(State(state): State<Arc<NullState>>, _body: Bytes) -> &'static str {
    *locked(&state.last) = Some(Instant::now());
    state.received.fetch_add(1, Ordering::SeqCst);
    "{}"
}

impl NullListener {
    async fn start() -> Result<Self> {
        let state = Arc::new(NullState::default());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the calibration listener")?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route(CALLBACK_PATH, post(null_route))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, state, task })
    }

    fn url(&self) -> String {
        format!("http://{}{CALLBACK_PATH}", self.addr)
    }

    fn received(&self) -> u64 {
        self.state.received.load(Ordering::SeqCst)
    }

    fn last_at(&self) -> Option<Instant> {
        *locked(&self.state.last)
    }
}

impl Drop for NullListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The callback function behind a local HTTP listener, as API Gateway puts it behind its route.
struct CallbackListener {
    addr: std::net::SocketAddr,
    state: Arc<CallbackState>,
    task: tokio::task::JoinHandle<()>,
}

struct CallbackState {
    ports: carrier_callbacks::CallbackPorts,
    counts: Mutex<CallbackCounts>,
    cpu_ns: AtomicU64,
}

async fn callback_route(
    State(state): State<Arc<CallbackState>>,
    body: Bytes,
) -> axum::response::Response {
    let request = lambda_http::http::Request::builder()
        .method("POST")
        .uri(CALLBACK_PATH)
        .header("content-type", "application/json")
        .body(lambda_http::Body::from(body.to_vec()));
    let Ok(request) = request else {
        return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "bad request").into_response();
    };
    // The in-memory store never suspends, so the handler runs on this thread from start to end.
    let cpu_before = thread_cpu();
    let response =
        carrier_callbacks::handle(&state.ports, request, OffsetDateTime::now_utc()).await;
    let cpu = thread_cpu().saturating_sub(cpu_before);
    state
        .cpu_ns
        .fetch_add(cpu.as_nanos() as u64, Ordering::Relaxed);
    let status = response.status().as_u16();
    let body: Vec<u8> = response.body().as_ref().to_vec();
    {
        let mut counts = locked(&state.counts);
        counts.received += 1;
        if status == 200 {
            let result = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("result").and_then(Value::as_str).map(str::to_owned));
            match result.as_deref() {
                Some("recorded") => counts.recorded += 1,
                Some("duplicate") => counts.duplicate += 1,
                Some("unknown") => counts.unknown += 1,
                _ => {}
            }
        } else {
            counts.refused += 1;
        }
    }
    let status = axum::http::StatusCode::from_u16(status)
        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

impl CallbackListener {
    async fn start(memory: MemoryPorts) -> Result<Self> {
        let state = Arc::new(CallbackState {
            ports: carrier_callbacks::CallbackPorts {
                store: memory.store.clone(),
                sims: memory.store.sims.clone(),
                usage: memory.store.sims.clone(),
                usage_requests: Default::default(),
                credentials: Some(CallbackCredentials {
                    username: CALLBACK_USERNAME.into(),
                    password: CALLBACK_PASSWORD.into(),
                }),
            },
            counts: Mutex::default(),
            cpu_ns: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the callback listener")?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route(CALLBACK_PATH, post(callback_route))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, state, task })
    }

    fn url(&self) -> String {
        format!("http://{}{CALLBACK_PATH}", self.addr)
    }

    fn counts(&self) -> (CallbackCounts, Duration) {
        (
            locked(&self.state.counts).clone(),
            Duration::from_nanos(self.state.cpu_ns.load(Ordering::Relaxed)),
        )
    }
}

impl Drop for CallbackListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// The simulator process

/// One entry of `GET /_sim/requests`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoggedRequest {
    carrier: String,
    status: u16,
}

struct SimProcess {
    child: Child,
    pid: u32,
    url: String,
    http: reqwest::Client,
}

impl SimProcess {
    async fn start(exe: &Path, scenario: &Scenario, dir: &Path) -> Result<Self> {
        let config_path = dir.join(format!("sim-{}.json", scenario.name));
        std::fs::write(&config_path, serde_json::to_vec_pretty(&scenario.sim)?)
            .with_context(|| format!("writing {}", config_path.display()))?;
        let mut child = Command::new(exe)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let pid = child.id().context("the simulator exited at once")?;
        let stdout = child
            .stdout
            .take()
            .context("simulator stdout not captured")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .context("the simulator did not say where it listens within 20 s")?
            .context("reading the simulator's output")?
            .context("the simulator exited before it listened")?;
        let url = first
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .with_context(|| format!("no URL in the simulator's first line: {first}"))?
            .to_owned();
        // Keep reading so the simulator never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            child,
            pid,
            url,
            http,
        })
    }

    async fn post(&self, path: &str, body: &Value) -> Result<()> {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        if !response.status().is_success() {
            bail!(
                "POST {path}: {} {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    /// Puts `iccids` at `carrier`, active.
    async fn seed(&self, carrier: Carrier, iccids: &[String]) -> Result<()> {
        for chunk in iccids.chunks(5_000) {
            match carrier {
                Carrier::Jasper => {
                    self.post(
                        "/jasper/_sim/devices",
                        &json!({"iccids": chunk, "status": "ACTIVATED"}),
                    )
                    .await?
                }
                Carrier::ThingSpace => {
                    self.post(
                        "/thingspace/_sim/devices",
                        &json!({"iccids": chunk, "state": "active"}),
                    )
                    .await?
                }
                Carrier::Telegence => {
                    let subscribers: Vec<Value> = chunk
                        .iter()
                        .map(|iccid| {
                            json!({
                                "subscriberNumber": subscriber_number(iccid),
                                "iccid": iccid,
                                "status": "Active",
                            })
                        })
                        .collect();
                    self.post(
                        "/telegence/_sim/subscribers",
                        &json!({"subscribers": subscribers}),
                    )
                    .await?
                }
            }
        }
        Ok(())
    }

    async fn requests(&self) -> Result<Vec<LoggedRequest>> {
        self.http
            .get(format!("{}/_sim/requests", self.url))
            .send()
            .await
            .context("GET /_sim/requests")?
            .error_for_status()?
            .json()
            .await
            .context("parsing the simulator's request log")
    }

    /// User + system CPU of the simulator process so far.
    fn cpu(&self) -> Duration {
        proc_cpu(self.pid).unwrap_or_default()
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

// ---------------------------------------------------------------------------------------------
// CPU clocks

fn timeval(tv: libc::timeval) -> Duration {
    Duration::from_secs(tv.tv_sec.max(0) as u64) + Duration::from_micros(tv.tv_usec.max(0) as u64)
}

/// User + system CPU of this process, all threads.
fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes into the struct it is handed, which is plain old data.
    #[allow(unsafe_code)]
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always valid.
    #[allow(unsafe_code)]
    let failed = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0;
    if failed {
        return Duration::ZERO;
    }
    timeval(usage.ru_utime) + timeval(usage.ru_stime)
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes into the timespec it is handed.
    #[allow(unsafe_code)]
    let failed = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } != 0;
    if failed {
        return Duration::ZERO;
    }
    Duration::new(
        now.tv_sec.max(0) as u64,
        now.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// User + system CPU of another process, from `/proc/<pid>/stat`.
fn proc_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5); the first after ')' is field 3.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    #[allow(unsafe_code)]
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second).ok().filter(|t| *t > 0)?;
    Some(Duration::from_nanos(ticks * 1_000_000_000 / per_second))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_runs_scaled_limits_on_few_devices_and_writes_nothing() {
        let args = BulkChangeArgs {
            devices: 10_000,
            documented_devices: 1_000,
            scenario: ScenarioChoice::Both,
            carriers: vec![],
            quick: true,
            check_interval: 300,
            telegence_iccid_only: false,
            latency_ms: 0,
            scaled_without_in_flight_rule: false,
            no_build: false,
            no_write: false,
            runner: None,
            sim_exe: None,
        }
        .effective();
        assert_eq!(args.devices, 500);
        assert_eq!(args.scenario, ScenarioChoice::Scaled);
        assert!(args.no_write);
        assert_eq!(args.carriers.len(), 3);
        let scenarios = scenarios(&args);
        assert_eq!(scenarios.len(), 1);
        assert_eq!(scenarios[0].sim.jasper.calls_per_second, 500);
        assert!(args
            .forwarded()
            .contains(&"--carriers=jasper,thingspace,telegence".to_string()));
    }

    #[test]
    fn the_queue_holds_delayed_messages_until_due() {
        let memory = Arc::new(MemoryQueues::default());
        let queue = BenchQueue::new(memory.clone());
        let message = |seq| WorkMessage::first(tenant(), "b", seq, 1);
        queue.put_back(message(0), Duration::from_secs(60));
        futures_lite_block(async {
            use cellbridge::bulk_changes::ports::WorkQueues;
            memory
                .enqueue_work(Carrier::Jasper, &[message(1)], Duration::ZERO)
                .await
                .expect("enqueue");
        });
        let (taken, next_due) = queue.take(10);
        assert!(next_due.is_some_and(|at| at > Instant::now()));
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].device_seq, 1);
        let counters = queue.counters();
        assert_eq!((counters.requeued, counters.item_failures), (1, 1));
    }

    fn futures_lite_block<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    #[test]
    fn cpu_clocks_move_forward() {
        let before = (process_cpu(), thread_cpu());
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(process_cpu() >= before.0);
        assert!(thread_cpu() > before.1);
        assert!(proc_cpu(std::process::id()).is_some());
    }

    #[test]
    fn subscriber_numbers_match_the_msisdn_the_adapter_derives() {
        let iccid = iccid(42);
        let number = subscriber_number(&iccid);
        assert_eq!(number.len(), 10);
        let msisdn = cellbridge::common::ids::Msisdn::parse(&format!("+1{number}")).expect("E.164");
        assert_eq!(
            cellbridge::carriers::telegence::subscriber_number_of(&msisdn),
            number
        );
    }
}
