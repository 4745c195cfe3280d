//! `cargo xtask bench ...` (this binary, `cargo run -p bench -- ...`): benchmarks whose numbers go
//! to docs/benchmarks.md. A crate of its own so the xtask does not link the functions and the SDK.
//!
//! `cold-start` builds every function's release binary next to a hello-world `lambda_runtime`
//! function, starts each one many times against a fake Lambda Runtime API on loopback and times
//! spawn -> first `GET /runtime/invocation/next`: the point where Lambda ends the Init phase.
//!
//! `bulk-change` (in [`bulk_change`]) sends a 10,000-device status change per carrier through the
//! carrier worker against the carrier simulators and compares its time with the simulators' limits.
//!
//! `devices` (in [`devices`]) runs a simulated fleet through the local stack; `local-aws` (in
//! [`local_aws`]) times the local DynamoDB and SQS of both emulators; `cost` (in [`fleet_cost`],
//! priced by [`cost`]) meters a fleet's billable units and prices them per device-month; `sims`
//! (in [`sims`]) lists a 100,000-SIM inventory through `GET /sims`; `selection` (in [`selection`])
//! makes a bulk change of a 10,000-SIM selection.

mod activity_cost;
mod bulk_change;
mod console;
mod cost;
mod cpu_profile;
mod devices;
mod fleet_cost;
mod live;
mod local_aws;
mod selection;
mod sims;
mod sync;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use cargo_metadata::diagnostic::DiagnosticLevel;
use cargo_metadata::{Message, PackageId};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;

#[derive(Parser)]
#[command(
    name = "bench",
    about = "cellbridge benchmarks; numbers go to docs/benchmarks.md",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: BenchCommand,
}

#[tokio::main]
async fn main() -> Result<()> {
    run(Cli::parse().command).await
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Init time, resident memory and size of every function's release binary vs a hello-world.
    ColdStart(ColdStartArgs),
    /// A 10,000-device status change per carrier through the worker against the simulators:
    /// time vs the simulators' rate limits, carrier requests, 429s, CPU per device change.
    BulkChange(bulk_change::BulkChangeArgs),
    /// 1,000 simulated devices through the local broker, rules and ingest: backlog, ingest lag,
    /// items per BatchWriteItem, CPU per message, and the command round trip.
    Devices(devices::DevicesArgs),
    /// moto's and MiniStack's DynamoDB and SQS side by side through the SDK: a 100,000-item
    /// table's Query, BatchWriteItem, conditional UpdateItem, SQS with a backlog.
    LocalAws(local_aws::LocalAwsArgs),
    /// A simulated fleet on the local stack for a fixed time: what AWS would bill for it, per
    /// service and flow, in dollars per device per month.
    Cost(fleet_cost::CostArgs),
    /// A carrier sync of 10,000 SIMs per carrier from the simulators at documented limits:
    /// elapsed vs the floor the pace sets, carrier requests, writes per changed SIM, and a
    /// re-sync after 1 % changed outside cellbridge.
    Sync(sync::SyncArgs),
    /// `GET /sims` with 100,000 SIMs in the tenant, through the handler and the DynamoDB
    /// adapter on the local DynamoDB: time (the emulator's) and DynamoDB requests per page.
    Sims(sims::SimsArgs),
    /// A bulk change from a 10,000-SIM selection: preview, acceptance and planning through the
    /// handlers on the in-memory stores.
    Selection(selection::SelectionArgs),
    /// 1,000 WebSocket clients on the live event stream: write-to-receipt p50/p95, fan-out CPU
    /// per event per connection, the connections table against open connections, and a soak
    /// with forced disconnects (events missed or repeated).
    Live(live::LiveArgs),
    /// The web console with 100,000 SIMs and 1,000 live devices: each page's server render
    /// p50/p95, the bundle's gzipped size, interaction to next paint on the SIM table and from
    /// an event's write to the open page showing it (in Chromium).
    Console(console::ConsoleArgs),
    /// The AWS prices the cost model uses (infra/bench/aws-prices.yaml): each with its source,
    /// and the date they were checked.
    Prices(PricesArgs),
}

#[derive(Args)]
pub struct PricesArgs {
    /// Region whose prices to show: its own entries, us-east-1's for the rest.
    #[arg(long, default_value = cost::BASE_REGION)]
    pub region: String,
}

#[derive(Args)]
pub struct ColdStartArgs {
    /// Cold starts measured per binary.
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Measure the release binaries already in the target directory instead of building first.
    #[arg(long)]
    pub no_build: bool,
    /// Print the table only; leave docs/benchmarks.md untouched.
    #[arg(long)]
    pub no_write: bool,
}

pub async fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::ColdStart(args) => cold_start(args).await,
        BenchCommand::BulkChange(args) => bulk_change::run(args).await,
        BenchCommand::Devices(args) => devices::run(args).await,
        BenchCommand::LocalAws(args) => local_aws::run(args).await,
        BenchCommand::Cost(args) => fleet_cost::run(args).await,
        BenchCommand::Sync(args) => sync::run(args).await,
        BenchCommand::Sims(args) => sims::run(args).await,
        BenchCommand::Selection(args) => selection::run(args).await,
        BenchCommand::Live(args) => live::run(args).await,
        BenchCommand::Console(args) => console::run(args).await,
        BenchCommand::Prices(args) => print_prices(&args),
    }
}

fn print_prices(args: &PricesArgs) -> Result<()> {
    let path = devstack::tools::workspace_root().join(cost::PRICE_TABLE);
    let table = cost::PriceTable::load(&path)?;
    let prices = table.prices(&args.region)?;
    println!(
        "AWS list prices in {} (USD), checked {}, from {}:\n",
        args.region,
        table.checked,
        cost::PRICE_TABLE
    );
    println!("| service | billed | price | source | note |\n|---|---|---:|---|---|");
    for (billed, price) in &prices {
        println!(
            "| {} | {} | {} per {} | {} | {} |",
            billed.service(),
            billed.unit(),
            price.price,
            price.per,
            price.source,
            price.note.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

/// The baseline every function is compared with (infra/hello-lambda).
const BASELINE: &str = "hello-lambda";
/// Goal: a function's median init stays within this multiple of the baseline's.
const GOAL_RATIO: f64 = 1.5;
/// A healthy init takes milliseconds; this only stops a hung binary from stalling the benchmark.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);
const NEXT_PATH: &str = "/2018-06-01/runtime/invocation/next";
const COLD_START_SECTION: DocSection = DocSection {
    name: "cold-start",
    heading: "Cold start",
    begin: "<!-- cold-start:begin (written by `cargo xtask bench cold-start`) -->",
    end: "<!-- cold-start:end -->",
};
const DOCS_INTRO: &str = "# Benchmarks\n\n\
Measured with `cargo xtask bench <name>`. Each command rewrites only its own section, between its \
marker comments; everything outside the markers is kept, so notes can go around them.\n";

async fn cold_start(args: ColdStartArgs) -> Result<()> {
    if !cfg!(target_os = "linux") {
        bail!("the cold-start benchmark reads /proc/<pid>/status, so it runs on Linux only");
    }
    if args.runs == 0 {
        bail!("--runs must be at least 1 (default 20)");
    }
    let workspace = Workspace::load().await?;
    let targets = workspace.targets()?;

    let mut skipped: Vec<(String, String)> = Vec::new();
    let executables = if args.no_build {
        existing_executables(&workspace, &targets, &mut skipped)
    } else {
        build(&workspace, &targets, &mut skipped).await?
    };
    if !executables.contains_key(BASELINE) {
        bail!("the baseline {BASELINE} has no release binary; run without --no-build to build it");
    }

    let template = devstack::template::Template::load(&workspace.root.join("template.yaml"))?;
    let mut environments =
        devstack::ports::deployed_environments(&template, &sample_carrier_accounts())?;
    let mut benches = Vec::new();
    for target in &targets {
        let Some(exe) = executables.get(&target.package) else {
            continue;
        };
        let size = std::fs::metadata(exe)
            .with_context(|| format!("reading the size of {}", exe.display()))?
            .len();
        benches.push(Bench {
            name: target.package.clone(),
            exe: exe.clone(),
            config: environments.remove(&target.bin).unwrap_or_default(),
            size,
            samples: vec![],
        });
    }

    // Before measuring, so the load average is the machine's, not ours.
    let machine = Machine::detect(&workspace.root).await;
    println!(
        "measuring {} binaries x {} cold starts (1-min load average {}; other work adds noise)",
        benches.len(),
        args.runs,
        machine.load
    );
    let aws = FakeAws::start().await?;
    measure(&mut benches, &aws, args.runs, &mut skipped).await?;
    let report = Report::new(&benches, &skipped, args.runs)?;
    println!("\n{}", report.text_table());
    for (name, why) in &skipped {
        println!("skipped {name}: {why}");
    }

    if !args.no_write {
        let path = workspace.root.join("docs/benchmarks.md");
        write_docs(&path, &report.markdown(&machine))?;
        println!("\nwrote {}", path.display());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Workspace discovery and build

struct Workspace {
    root: PathBuf,
    target_dir: PathBuf,
    packages: Vec<cargo_metadata::Package>,
}

/// A package to benchmark and the binary target that is its Lambda bootstrap.
struct Target {
    package: String,
    id: PackageId,
    bin: String,
}

/// The cargo running us (under `cargo run`), without this crate's variables: the builds it runs
/// then share what a shell's builds compiled (see `local_tools::cargo`).
fn cargo() -> Command {
    Command::from(local_tools::cargo())
}

impl Workspace {
    async fn load() -> Result<Self> {
        // `cargo metadata` blocks: keep it off the async workers.
        let metadata = tokio::task::spawn_blocking(|| {
            cargo_metadata::MetadataCommand::new()
                .cargo_path(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
                .no_deps()
                .exec()
        })
        .await?
        .context("`cargo metadata` failed; fix the manifest error it reports")?;
        Ok(Self {
            root: metadata.workspace_root.into_std_path_buf(),
            target_dir: metadata.target_directory.into_std_path_buf(),
            packages: metadata.packages,
        })
    }

    /// The baseline first, then every package under functions/ that has a binary.
    fn targets(&self) -> Result<Vec<Target>> {
        let functions = self.root.join("functions");
        let mut targets = Vec::new();
        let mut found_baseline = false;
        for package in &self.packages {
            let is_baseline = *package.name == *BASELINE;
            if !is_baseline && !package.manifest_path.as_std_path().starts_with(&functions) {
                continue;
            }
            let bins: Vec<&cargo_metadata::Target> =
                package.targets.iter().filter(|t| t.is_bin()).collect();
            // Several binaries: the bootstrap is the one named after the package.
            let bin = match bins.as_slice() {
                [] => continue,
                [only] => only,
                several => match several.iter().find(|t| *t.name == *package.name) {
                    Some(named) => named,
                    None => bail!(
                        "{} has several binaries and none is named after the package; \
                         name the Lambda bootstrap binary `{}`",
                        package.name,
                        package.name
                    ),
                },
            };
            let target = Target {
                package: package.name.to_string(),
                id: package.id.clone(),
                bin: bin.name.clone(),
            };
            if is_baseline {
                found_baseline = true;
                targets.insert(0, target);
            } else {
                targets.push(target);
            }
        }
        if !found_baseline {
            bail!("the baseline package {BASELINE} (infra/hello-lambda) is not a workspace member with a binary; add it back to the workspace members");
        }
        if targets.len() == 1 {
            bail!(
                "no binary packages under {}; nothing to compare with the baseline",
                functions.display()
            );
        }
        Ok(targets)
    }
}

/// What `--no-build` measures: whatever release binaries are already there.
fn existing_executables(
    workspace: &Workspace,
    targets: &[Target],
    skipped: &mut Vec<(String, String)>,
) -> BTreeMap<String, PathBuf> {
    let release = workspace.target_dir.join("release");
    let mut found = BTreeMap::new();
    for target in targets {
        let exe = release.join(&target.bin);
        if exe.is_file() {
            found.insert(target.package.clone(), exe);
        } else {
            let why = format!(
                "no release binary at {} (run without --no-build)",
                exe.display()
            );
            skipped.push((target.package.clone(), why));
        }
    }
    found
}

/// Builds all targets in one `cargo build --release` and returns the executables it produced.
/// `--keep-going` so a function that does not compile yet costs only itself, and executables
/// come from cargo's artifact messages so a stale binary from an older build is never measured.
async fn build(
    workspace: &Workspace,
    targets: &[Target],
    skipped: &mut Vec<(String, String)>,
) -> Result<BTreeMap<String, PathBuf>> {
    let mut command = cargo();
    command.current_dir(&workspace.root).args([
        "build",
        "--release",
        "--keep-going",
        "--message-format=json",
    ]);
    for target in targets {
        command.args(["-p", &target.package]);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting `cargo build --release`; is cargo on PATH?")?;
    let stdout = child
        .stdout
        .take()
        .context("cargo build stdout was not captured")?;
    let stderr = child
        .stderr
        .take()
        .context("cargo build stderr was not captured")?;

    let spinner = ProgressBar::new_spinner();
    spinner.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {prefix}: {wide_msg}")
            .context("progress template")?,
    );
    spinner.set_prefix(format!(
        "cargo build --release of {} binaries (fat LTO: 10+ min when cold)",
        targets.len()
    ));
    spinner.enable_steady_tick(Duration::from_millis(120));

    // Cargo's stderr carries the "Compiling x" / "Blocking waiting for file lock" status lines:
    // show the latest, keep a tail in case the build fails for a reason other than a compile error.
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

    let mut artifacts: Vec<(PackageId, String, PathBuf)> = Vec::new();
    let mut errors: Vec<(PackageId, String)> = Vec::new();
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines
        .next_line()
        .await
        .context("reading cargo build output")?
    {
        // Not every stdout line has to be ours to understand; skip what does not parse.
        match serde_json::from_str::<Message>(&line) {
            Ok(Message::CompilerArtifact(artifact)) => {
                if let Some(exe) = artifact.executable {
                    artifacts.push((
                        artifact.package_id,
                        artifact.target.name,
                        exe.into_std_path_buf(),
                    ));
                }
            }
            Ok(Message::CompilerMessage(message))
                if message.message.level == DiagnosticLevel::Error =>
            {
                errors.push((
                    message.package_id,
                    message.message.rendered.unwrap_or_default(),
                ));
            }
            _ => {}
        }
    }
    let status = child.wait().await.context("waiting for cargo build")?;
    let tail = status_lines.await.unwrap_or_default();
    let elapsed = spinner.elapsed();
    spinner.finish_and_clear();
    println!(
        "cargo build --release finished in {:.0?} ({status})",
        elapsed
    );

    if !status.success() {
        if errors.is_empty() {
            eprintln!("{}", tail.join("\n"));
        } else {
            eprintln!(
                "compile errors (first {} of {}):",
                errors.len().min(5),
                errors.len()
            );
            for (_, rendered) in errors.iter().take(5) {
                eprintln!("{}", rendered.trim_end());
            }
        }
    }

    let mut found = BTreeMap::new();
    for target in targets {
        let built = artifacts
            .iter()
            .find(|(id, bin, _)| *id == target.id && *bin == target.bin);
        match built {
            Some((_, _, exe)) => {
                found.insert(target.package.clone(), exe.clone());
            }
            None => {
                let own_errors = errors.iter().filter(|(id, _)| *id == target.id).count();
                let why = if own_errors > 0 {
                    format!("does not compile yet ({own_errors} compile error(s) in the package)")
                } else {
                    "not built: cargo build failed before reaching it (errors above)".to_string()
                };
                skipped.push((target.package.clone(), why));
            }
        }
    }
    if !found.contains_key(BASELINE) {
        bail!(
            "cargo build --release failed for the baseline {BASELINE} ({status}); fix the errors \
             above and rerun"
        );
    }
    Ok(found)
}

// ---------------------------------------------------------------------------------------------
// Measurement

struct Bench {
    name: String,
    exe: PathBuf,
    /// The function's own configuration, as template.yaml gives it in a deployment.
    config: BTreeMap<String, String>,
    size: u64,
    samples: Vec<Sample>,
}

struct Sample {
    init: Duration,
    rss_kib: u64,
    hwm_kib: u64,
}

/// One unrecorded warm-up start per binary (loads it into the page cache and weeds out binaries
/// that are not Lambda functions yet), then `runs` rounds, each starting every binary once in a
/// rotated order so drift in machine load spreads over all of them alike.
async fn measure(
    benches: &mut Vec<Bench>,
    aws: &FakeAws,
    runs: usize,
    skipped: &mut Vec<(String, String)>,
) -> Result<()> {
    let progress = ProgressBar::new((benches.len() * (runs + 1)) as u64);
    progress.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] cold starts {bar:30} {pos}/{len} {msg}",
        )
        .context("progress template")?,
    );
    progress.enable_steady_tick(Duration::from_millis(120));

    let mut failed = Vec::new();
    for (index, bench) in benches.iter().enumerate() {
        progress.set_message(format!("warm-up {}", bench.name));
        if let Err(error) = cold_start_once(bench, aws).await {
            failed.push((index, format!("{error:#}")));
        }
        progress.inc(1);
    }
    for (index, why) in failed.into_iter().rev() {
        let bench = benches.remove(index);
        if bench.name == BASELINE {
            progress.finish_and_clear();
            bail!("the baseline {BASELINE} did not start: {why}");
        }
        progress.inc(runs as u64);
        skipped.push((bench.name, why));
    }

    let count = benches.len();
    for round in 0..runs {
        progress.set_message(format!("round {}/{runs}", round + 1));
        for offset in 0..count {
            let bench = &mut benches[(offset + round) % count];
            let sample = cold_start_once(bench, aws).await.with_context(|| {
                format!(
                    "{} failed in round {} after a good warm-up; rerun",
                    bench.name,
                    round + 1
                )
            })?;
            bench.samples.push(sample);
            progress.inc(1);
        }
    }
    progress.finish_and_clear();
    Ok(())
}

/// The environment Lambda gives a `provided.al2023` function, plus the function's own
/// configuration from template.yaml. `env_clear` first, so the developer's own AWS profile,
/// region or credentials cannot change what init does.
fn lambda_env(bench: &Bench, runtime_port: u16, aws: &FakeAws) -> Vec<(String, String)> {
    let fixed = [
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDCOLDSTARTBENCH00"),
        ("AWS_SECRET_ACCESS_KEY", "cold-start-bench-not-a-secret"),
        ("AWS_SESSION_TOKEN", "cold-start-bench-token"),
        // No profile files on Lambda: keep the SDK from finding the developer's ~/.aws.
        ("AWS_CONFIG_FILE", "/nonexistent/cold-start-bench/config"),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/cold-start-bench/credentials",
        ),
        ("TZ", ":UTC"),
    ];
    let name = &bench.name;
    let mut env: Vec<(String, String)> = bench
        .config
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.extend(fixed.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())));
    env.extend([
        // Errors only, so logging costs what it costs in a quiet production function.
        ("RUST_LOG".to_owned(), "error".to_owned()),
        // The calls made during init (a secret, the IoT endpoint) reach the stand-in.
        ("AWS_ENDPOINT_URL".to_owned(), aws.url()),
        (
            "AWS_LAMBDA_RUNTIME_API".to_owned(),
            format!("127.0.0.1:{runtime_port}"),
        ),
        (
            "AWS_LAMBDA_FUNCTION_NAME".to_owned(),
            format!("cellbridge-{name}"),
        ),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME".to_owned(),
            format!("/aws/lambda/cellbridge-{name}"),
        ),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME".to_owned(),
            "2000/01/01/[$LATEST]coldstartbench".to_owned(),
        ),
    ]);
    env
}

/// A `CARRIER_ACCOUNTS` document with an account at every carrier, as a deployment's secret
/// holds, so the worker builds all three clients at init. Nothing is called at init.
fn sample_carrier_accounts() -> String {
    serde_json::json!({
        "jasper": {"baseUrl": "https://127.0.0.1:9/rws/api/v1", "username": "bench", "apiKey": "bench-api-key"},
        "thingSpace": {
            "baseUrl": "https://127.0.0.1:9/api", "appKey": "bench", "appSecret": "bench-secret",
            "username": "bench", "password": "bench-password", "accountName": "0000000000-00001",
            "callback": {"username": "bench", "password": "bench-callback"}
        },
        "telegence": {"baseUrl": "https://127.0.0.1:9/telegence", "appId": "bench", "appSecret": "bench-secret"}
    })
    .to_string()
}

/// Stands in for the two AWS calls functions make during init: Secrets Manager's
/// `GetSecretValue` (the token signing secret) and IoT's `DescribeEndpoint` (the data endpoint).
/// It answers at once from memory, so init time is the function's own plus one loopback round
/// trip; in AWS each call adds its network latency. Any other call gets a 400, so a new call
/// during init fails the start visibly instead of going unnoticed.
struct FakeAws {
    url: String,
    server: tokio::task::JoinHandle<()>,
}

impl FakeAws {
    async fn start() -> Result<Self> {
        use axum::http::{HeaderMap, StatusCode};
        use axum::routing::{get, post};
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the stand-in AWS endpoint on 127.0.0.1")?;
        let url = format!("http://{}", listener.local_addr()?);
        let secret = |headers: HeaderMap| async move {
            let target = headers
                .get("x-amz-target")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if target != "secretsmanager.GetSecretValue" {
                return (StatusCode::BAD_REQUEST, format!("{{\"__type\":\"UnknownOperationException\",\"message\":\"{target} is not expected during init\"}}"));
            }
            let body = serde_json::json!({
                "ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:bench-AbCdEf",
                "Name": "bench",
                "VersionId": "00000000-0000-0000-0000-000000000000",
                "SecretString": "cold-start-bench-signing-secret-of-48-characters",
                "VersionStages": ["AWSCURRENT"],
                "CreatedDate": 1_700_000_000
            });
            (StatusCode::OK, body.to_string())
        };
        let endpoint = || async {
            serde_json::json!({"endpointAddress": "bench-ats.iot.us-east-1.amazonaws.com"})
                .to_string()
        };
        let app = axum::Router::new()
            .route("/", post(secret))
            .route("/endpoint", get(endpoint));
        let server = tokio::spawn(async move {
            // Ignoring the result: the server lives until the benchmark drops it.
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, server })
    }

    fn url(&self) -> String {
        self.url.clone()
    }
}

impl Drop for FakeAws {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Starts `exe` once and times it to its first poll for an event. The poll is never answered,
/// so no handler code runs; the process is killed once its memory has been read.
async fn cold_start_once(bench: &Bench, aws: &FakeAws) -> Result<Sample> {
    let exe = &bench.exe;
    // A fresh listener per start: a connection can only come from this child.
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("binding the fake Runtime API on 127.0.0.1")?;
    let port = listener
        .local_addr()
        .context("fake Runtime API address")?
        .port();

    let mut command = Command::new(exe);
    command
        .env_clear()
        .envs(lambda_env(bench, port, aws))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let pid = child.id().context("the child exited before it had a pid")?;
    let stdout = tokio::spawn(capture(child.stdout.take()));
    let stderr = tokio::spawn(capture(child.stderr.take()));

    let outcome = tokio::time::timeout(RUN_TIMEOUT, async {
        tokio::select! {
            polled = wait_for_next(&listener) => Ok(polled),
            exited = child.wait() => Err(exited),
        }
    })
    .await;

    // Read memory while the process is alive and idle in its poll, before killing it.
    let memory = match &outcome {
        Ok(Ok(Ok(_))) => Some(read_memory(pid)),
        _ => None,
    };
    // Ignoring the error: the child may already have exited; the wait below reaps it either way.
    let _ = child.start_kill();
    let _ = child.wait().await;
    let output = || async {
        let mut text = String::new();
        for task in [stdout, stderr] {
            if let Ok(Ok(Ok(bytes))) = tokio::time::timeout(Duration::from_secs(2), task).await {
                text.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
        let text = text.trim();
        if text.is_empty() {
            "(no output)".to_string()
        } else {
            text.to_string()
        }
    };

    match outcome {
        Ok(Ok(Ok((polled_at, _held_connection)))) => {
            let (rss_kib, hwm_kib) =
                memory.unwrap_or_else(|| Err(anyhow!("memory was not read")))?;
            Ok(Sample {
                init: polled_at.duration_since(started),
                rss_kib,
                hwm_kib,
            })
        }
        Ok(Ok(Err(error))) => bail!("{error:#}; output: {}", output().await),
        Ok(Err(exited)) => {
            let status = exited.map_or_else(|e| e.to_string(), |s: ExitStatus| s.to_string());
            bail!(
                "exited ({status}) without polling the Runtime API: not a Lambda function yet, or \
                 init failed; output: {}",
                output().await
            )
        }
        Err(_) => bail!(
            "did not poll the Runtime API within {RUN_TIMEOUT:?}; is it calling something during \
             init? output: {}",
            output().await
        ),
    }
}

/// Reads a child's stdout or stderr to the end, keeping the last 16 KiB for error messages.
/// Draining it all keeps a chatty child from blocking on a full pipe.
async fn capture(pipe: Option<impl AsyncRead + Unpin>) -> std::io::Result<Vec<u8>> {
    const KEEP: usize = 16 * 1024;
    let mut kept = Vec::new();
    let Some(mut pipe) = pipe else {
        return Ok(kept);
    };
    let mut chunk = [0u8; 4096];
    loop {
        let read = pipe.read(&mut chunk).await?;
        if read == 0 {
            return Ok(kept);
        }
        kept.extend_from_slice(&chunk[..read]);
        if kept.len() > KEEP {
            kept.drain(..kept.len() - KEEP);
        }
    }
}

/// Serves the fake Runtime API until the first `GET .../invocation/next`, returning when its
/// first bytes arrived and the connection, which the caller holds open without answering.
async fn wait_for_next(listener: &TcpListener) -> Result<(Instant, TcpStream)> {
    loop {
        let (mut stream, _) = listener
            .accept()
            .await
            .context("accepting on the fake Runtime API")?;
        let Some((first_bytes_at, head, body_start)) = read_head(&mut stream).await? else {
            continue; // connected and closed without a request
        };
        let request_line = head.lines().next().unwrap_or_default();
        let mut parts = request_line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        if method == "GET" && path == NEXT_PATH {
            return Ok((first_bytes_at, stream));
        }
        if path.ends_with("/init/error") {
            let body = read_body(&mut stream, &head, body_start).await;
            bail!("init failed and was reported to the Runtime API: {body}");
        }
        bail!(
            "made an unexpected Runtime API request `{request_line}` before polling for an event"
        );
    }
}

/// Reads an HTTP/1.1 request head. Returns when its first bytes arrived, the head, and whatever
/// body bytes came with it; `None` when the peer closed without sending anything.
async fn read_head(stream: &mut TcpStream) -> Result<Option<(Instant, String, Vec<u8>)>> {
    const MAX_HEAD: usize = 64 * 1024;
    let mut buffer = Vec::new();
    let mut first_bytes_at = None;
    let mut chunk = [0u8; 4096];
    loop {
        let read = stream
            .read(&mut chunk)
            .await
            .context("reading a Runtime API request")?;
        if read == 0 {
            if buffer.is_empty() {
                return Ok(None);
            }
            bail!("the Runtime API client closed the connection in the middle of a request");
        }
        first_bytes_at.get_or_insert_with(Instant::now);
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            let body = buffer[end + 4..].to_vec();
            let at = first_bytes_at.unwrap_or_else(Instant::now);
            return Ok(Some((at, head, body)));
        }
        if buffer.len() > MAX_HEAD {
            bail!("a Runtime API request head exceeded {MAX_HEAD} bytes");
        }
    }
}

/// Best-effort read of a small request body (an init error report), for the error message.
async fn read_body(stream: &mut TcpStream, head: &str, mut body: Vec<u8>) -> String {
    const MAX_BODY: usize = 8 * 1024;
    let length = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_BODY);
    let mut chunk = [0u8; 4096];
    while body.len() < length {
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut chunk)).await {
            Ok(Ok(read)) if read > 0 => body.extend_from_slice(&chunk[..read]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// VmRSS (resident now) and VmHWM (peak resident) of a process, in KiB.
fn read_memory(pid: u32) -> Result<(u64, u64)> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {name} line in {path}"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

// ---------------------------------------------------------------------------------------------
// Report

struct Row {
    name: String,
    median_ms: f64,
    p90_ms: f64,
    min_ms: f64,
    ratio: f64,
    rss_mib: f64,
    hwm_mib: f64,
    size_mib: f64,
}

struct Report {
    rows: Vec<Row>,
    skipped: Vec<(String, String)>,
    runs: usize,
}

const MIB: f64 = 1024.0 * 1024.0;

/// Median of sorted values; the mean of the middle two for an even count.
fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Nearest-rank percentile of sorted values: the smallest value with at least `p` of them at or
/// below it.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values
}

impl Report {
    fn new(benches: &[Bench], skipped: &[(String, String)], runs: usize) -> Result<Self> {
        let mut rows = Vec::new();
        for bench in benches.iter().filter(|b| !b.samples.is_empty()) {
            let init = sorted(bench.samples.iter().map(|s| s.init.as_secs_f64() * 1000.0));
            let rss = sorted(bench.samples.iter().map(|s| s.rss_kib as f64 / 1024.0));
            let hwm = sorted(bench.samples.iter().map(|s| s.hwm_kib as f64 / 1024.0));
            rows.push(Row {
                name: bench.name.clone(),
                median_ms: median(&init),
                p90_ms: percentile(&init, 0.9),
                min_ms: init[0],
                ratio: 0.0,
                rss_mib: median(&rss),
                hwm_mib: median(&hwm),
                size_mib: bench.size as f64 / MIB,
            });
        }
        let baseline = rows
            .iter()
            .find(|r| r.name == BASELINE)
            .map(|r| r.median_ms)
            .context("no measurements of the baseline; rerun")?;
        for row in &mut rows {
            row.ratio = row.median_ms / baseline;
        }
        Ok(Self {
            rows,
            skipped: skipped.to_vec(),
            runs,
        })
    }

    fn verdict(row: &Row) -> &'static str {
        if row.name == BASELINE {
            "baseline"
        } else if row.ratio <= GOAL_RATIO {
            "yes"
        } else {
            "NO"
        }
    }

    fn cells(row: &Row) -> [String; 9] {
        [
            row.name.clone(),
            format!("{:.2}", row.median_ms),
            format!("{:.2}", row.p90_ms),
            format!("{:.2}", row.min_ms),
            format!("{:.2}x", row.ratio),
            Self::verdict(row).to_string(),
            format!("{:.1}", row.rss_mib),
            format!("{:.1}", row.hwm_mib),
            format!("{:.2}", row.size_mib),
        ]
    }

    fn header() -> [String; 9] {
        [
            "binary",
            "init median ms",
            "init p90 ms",
            "init min ms",
            "vs hello",
            &format!("within {GOAL_RATIO}x"),
            "RSS median MiB",
            "peak RSS MiB",
            "size MiB",
        ]
        .map(str::to_string)
    }

    fn text_table(&self) -> String {
        let mut lines = vec![Self::header()];
        lines.extend(self.rows.iter().map(Self::cells));
        let widths: Vec<usize> = (0..9)
            .map(|c| lines.iter().map(|l| l[c].len()).max().unwrap_or(0))
            .collect();
        let mut out = format!(
            "cold start, {} runs per binary (median of init ms, ratio of medians)\n",
            self.runs
        );
        for line in &lines {
            for (c, cell) in line.iter().enumerate() {
                // Names left-aligned, numbers right-aligned.
                if c == 0 {
                    let _ = write!(out, "{cell:<w$}", w = widths[c]);
                } else {
                    let _ = write!(out, "  {cell:>w$}", w = widths[c]);
                }
            }
            out.push('\n');
        }
        out.trim_end().to_string()
    }

    fn markdown(&self, machine: &Machine) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Measured {} with `cargo xtask bench cold-start --runs {}` at {}.\n",
            machine.date, self.runs, machine.commit
        );
        let header = Self::header();
        let _ = writeln!(out, "| {} |", header.join(" | "));
        let _ = writeln!(out, "|:--|{}", "--:|".repeat(header.len() - 1));
        for row in &self.rows {
            let mut cells = Self::cells(row);
            cells[0] = format!("`{}`", cells[0]);
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
        out.push('\n');

        let functions: Vec<&Row> = self.rows.iter().filter(|r| r.name != BASELINE).collect();
        let over: Vec<String> = functions
            .iter()
            .filter(|r| r.ratio > GOAL_RATIO)
            .map(|r| format!("`{}`", r.name))
            .collect();
        let _ = write!(
            out,
            "**Goal:** every function's median init within {GOAL_RATIO}x that of `{BASELINE}`, the \
             smallest `lambda_runtime` function built with the same release profile. "
        );
        let _ = writeln!(
            out,
            "{}\n",
            match (functions.len(), over.is_empty()) {
                (0, _) => "No function could be measured in this run.".to_string(),
                (1, true) => "Met by the one function measured.".to_string(),
                (_, true) => format!("Met by all {} functions measured.", functions.len()),
                (_, false) => format!("Missed by {}.", over.join(", ")),
            }
        );
        if !self.skipped.is_empty() {
            let _ = writeln!(out, "**Skipped** in this run:\n");
            for (name, why) in &self.skipped {
                // The reason can hold a child's multi-line output: keep the list item on one line.
                let why: String = why.split_whitespace().collect::<Vec<_>>().join(" ");
                let why = if why.chars().count() > 300 {
                    format!("{}...", why.chars().take(300).collect::<String>())
                } else {
                    why
                };
                let _ = writeln!(out, "- `{name}`: {why}");
            }
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "**Machine:** {} CPUs (`nproc`), {}, Linux {}, {}; load average {} when the runs \
             started. No CPU or memory limit was applied.\n",
            machine.nproc, machine.cpu, machine.kernel, machine.rustc, machine.load
        );
        let _ = writeln!(
            out,
            "**Method:** each release binary (workspace `[profile.release]`) is started as a child \
             process with a clean environment (the variables Lambda sets, the function's own \
             environment from template.yaml as a deployment resolves it, fake credentials, no AWS \
             profile files) against a minimal Lambda Runtime API that the benchmark serves on \
             loopback. The two AWS calls made during init, Secrets Manager's `GetSecretValue` \
             (auth-login, api-authorizer) and IoT's `DescribeEndpoint` (device-commands, \
             device-registration), are answered at once by a stand-in on loopback, so their network \
             latency in AWS is not in these numbers. Init is the time from spawn to the \
             first `GET /2018-06-01/runtime/invocation/next`: Lambda ends the Init phase at that \
             request, so like `Init Duration` in a REPORT line it covers exec and loading, the Tokio \
             runtime, reading configuration and building the SDK clients, while the poll is never \
             answered so no handler runs. VmRSS/VmHWM come from `/proc/<pid>/status` at that \
             moment; each binary has one unrecorded warm-up start, and the runs are interleaved \
             across binaries so page-cache and load noise fall on all of them alike. Lambda adds \
             what this leaves out (fetching the package, the micro-VM, a CPU share that scales with \
             the memory size), so absolute times there are typically higher; the ratio to \
             `{BASELINE}` is the figure that carries over."
        );
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Machine facts and docs

struct Machine {
    date: String,
    commit: String,
    nproc: String,
    cpu: String,
    kernel: String,
    rustc: String,
    load: String,
}

/// Runs a small command for a fact; `None` when it is missing or fails.
async fn command_output(program: &str, args: &[&str], dir: &Path) -> Option<String> {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
    (output.status.success() && !text.is_empty()).then_some(text)
}

impl Machine {
    /// "Measured <date> with `cargo xtask bench <bench>` at <commit> on <cpu> (<n> cores, load
    /// <load>)": how a benchmark's section starts.
    fn measured_with(&self, bench: &str) -> String {
        format!(
            "Measured {} with `cargo xtask bench {bench}` at {} on {} ({} cores, load {})",
            self.date, self.commit, self.cpu, self.nproc, self.load
        )
    }

    async fn detect(here: &Path) -> Self {
        let unknown = || "unknown".to_string();
        let commit = match command_output("git", &["rev-parse", "--short", "HEAD"], here).await {
            Some(hash) => {
                // --no-optional-locks: a read must not take the index lock from a concurrent commit.
                let dirty = command_output(
                    "git",
                    &[
                        "--no-optional-locks",
                        "status",
                        "--porcelain",
                        "--untracked-files=no",
                    ],
                    here,
                )
                .await
                .is_some();
                if dirty {
                    format!("commit `{hash}` plus uncommitted changes")
                } else {
                    format!("commit `{hash}`")
                }
            }
            None => "an unknown commit".to_string(),
        };
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, model)| model.trim().to_string())
            })
            .unwrap_or_else(unknown);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|k| k.trim().to_string())
            .unwrap_or_else(|_| unknown());
        // RUSTC if cargo set one, so the version is that of the compiler that built the binaries.
        let rustc_program = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
        // The 1-minute load average: other work on the machine is the main source of noise.
        let load = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().map(str::to_string))
            .unwrap_or_else(unknown);
        Self {
            load,
            date: command_output("date", &["-u", "+%Y-%m-%d"], here)
                .await
                .unwrap_or_else(unknown),
            commit,
            nproc: command_output("nproc", &[], here)
                .await
                .unwrap_or_else(unknown),
            cpu,
            kernel,
            rustc: command_output(&rustc_program, &["--version"], here)
                .await
                .unwrap_or_else(unknown),
        }
    }
}

/// The part of docs/benchmarks.md one benchmark owns: everything between its two markers.
struct DocSection {
    name: &'static str,
    heading: &'static str,
    begin: &'static str,
    end: &'static str,
}

/// Rewrites the cold-start section of docs/benchmarks.md (see [`write_section`]).
fn write_docs(path: &Path, section: &str) -> Result<()> {
    write_section(path, &COLD_START_SECTION, section)
}

/// Prints a benchmark's results and, unless `no_write`, puts them in their section of
/// docs/benchmarks.md.
fn publish(root: &Path, section: &DocSection, markdown: &str, no_write: bool) -> Result<()> {
    println!("{markdown}");
    if !no_write {
        write_section(&root.join("docs/benchmarks.md"), section, markdown)?;
        println!("written to docs/benchmarks.md");
    }
    Ok(())
}

/// Rewrites one benchmark's section of docs/benchmarks.md between its markers, keeping every
/// other section; creates the file, or appends the section, when there is none yet.
fn write_section(path: &Path, marks: &DocSection, section: &str) -> Result<()> {
    let old = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    let new =
        splice(marks, &old, section).with_context(|| format!("updating {}", path.display()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, new).with_context(|| format!("writing {}", path.display()))
}

/// `old` with its cold-start block replaced by `section` (see [`write_docs`]).
#[cfg(test)]
fn splice_section(old: &str, section: &str) -> Result<String> {
    splice(&COLD_START_SECTION, old, section)
}

/// `old` with the block between `marks` replaced by `section` (see [`write_section`]).
fn splice(marks: &DocSection, old: &str, section: &str) -> Result<String> {
    let DocSection {
        name,
        heading,
        begin: mark_begin,
        end: mark_end,
    } = marks;
    let block = format!("{mark_begin}\n{}\n{mark_end}\n", section.trim_end());
    Ok(match (old.find(mark_begin), old.find(mark_end)) {
        (Some(begin), Some(end)) if begin < end => {
            let after = &old[end + mark_end.len()..];
            let after = after.strip_prefix('\n').unwrap_or(after);
            format!("{}{block}{after}", &old[..begin])
        }
        (None, None) if old.trim().is_empty() => format!("{DOCS_INTRO}\n## {heading}\n\n{block}"),
        (None, None) => format!("{}\n\n## {heading}\n\n{block}", old.trim_end()),
        _ => bail!(
            "the {name} section is broken: expected `{mark_begin}` followed by `{mark_end}`; \
             restore the markers (or delete the section) and rerun"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p90_of_sorted_values() {
        let odd = [1.0, 2.0, 3.0];
        let even = [1.0, 2.0, 3.0, 10.0];
        assert_eq!(median(&odd), 2.0);
        assert_eq!(median(&even), 2.5);
        let twenty: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&twenty, 0.9), 18.0);
        assert_eq!(percentile(&[7.0], 0.9), 7.0);
    }

    #[test]
    fn docs_section_is_created_then_rewritten_in_place() {
        let created = splice_section("", "first").expect("new file");
        assert!(created.starts_with("# Benchmarks"));
        assert!(created.contains("## Cold start\n\n<!-- cold-start:begin"));

        let with_more = format!("{created}\n## Later section\n\nkept\n");
        let rewritten = splice_section(&with_more, "second").expect("rewrite");
        assert!(rewritten.contains("second") && !rewritten.contains("first"));
        assert!(rewritten.ends_with("## Later section\n\nkept\n"));
        assert_eq!(rewritten.matches("## Cold start").count(), 1);
        assert_eq!(
            splice_section(&rewritten, "second").expect("idempotent"),
            rewritten
        );
    }

    #[test]
    fn docs_section_is_appended_to_a_file_without_one() {
        let appended =
            splice_section("# Benchmarks\n\n## Throughput\n\nx\n", "cold").expect("append");
        assert!(appended.starts_with("# Benchmarks\n\n## Throughput\n\nx\n\n## Cold start\n\n"));
        assert!(appended.contains("cold"));
    }

    #[test]
    fn a_broken_marker_pair_is_refused() {
        let broken = format!(
            "# Benchmarks\n\n{}\nhalf a section\n",
            COLD_START_SECTION.begin
        );
        assert!(splice_section(&broken, "cold").is_err());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn memory_fields_of_proc_status() {
        let (rss, hwm) = read_memory(std::process::id()).expect("own /proc status");
        assert!(rss > 0 && hwm >= rss);
    }
}
