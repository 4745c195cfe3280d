//! `cargo xtask bench console`: the web console on the local stack with 100,000 SIMs and 1,000
//! live devices in the tenant. Each page is asked for many times as a signed-in operator (the
//! console function renders it, reading the API); a real browser (tests/browser/bench.mjs)
//! measures interaction to next paint on the SIM table and how long a bulk change takes from
//! its write to showing on the open bulk-changes page; the bundle's size is its gzipped files.
//!
//! The times are this machine's local stack (emulators, `cargo lambda watch`), not AWS's.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cellbridge::common::tenant::TenantId;
use clap::Args;
use devstack::demo_accounts::DEMO_PASSWORD;
use devstack::Devstack;
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::Value;

use super::devices::start_stack;
use super::{publish, DocSection, Machine};

const SECTION: DocSection = DocSection {
    name: "console",
    heading: "The console",
    begin: "<!-- console:begin (written by `cargo xtask bench console`) -->",
    end: "<!-- console:end -->",
};

#[derive(Args, Clone, Debug)]
pub struct ConsoleArgs {
    /// SIMs loaded into the demo tenant's inventory.
    #[arg(long, default_value_t = 100_000)]
    pub sims: u32,
    /// Simulated devices connected for the whole run.
    #[arg(long, default_value_t = 1_000)]
    pub devices: usize,
    /// Times each page is asked for.
    #[arg(long, default_value_t = 20)]
    pub requests: usize,
    /// Print the table only; leave docs/benchmarks.md untouched.
    #[arg(long)]
    pub no_write: bool,
}

/// The pages measured: name and address (`{device}` is one of the fleet's).
const PAGES: &[(&str, &str)] = &[
    ("overview", "/console"),
    ("SIMs, first page", "/console/sims"),
    (
        "SIMs, active at Jasper",
        "/console/sims?status=active&carrier=jasper",
    ),
    (
        "SIMs, ICCID prefix search",
        "/console/sims?q=8901000000000005&in=iccid",
    ),
    ("bulk changes", "/console/bulk-changes"),
    ("devices", "/console/devices"),
    (
        "a device (15 minutes of telemetry)",
        "/console/devices/{device}",
    ),
    (
        "a device (90 days of telemetry, hourly)",
        "/console/devices/{device}?range=90d",
    ),
];

/// Days of one-second history laid down for the measured device.
const HISTORY_DAYS: i64 = 90;

/// The hourly summaries that `HISTORY_DAYS` of one-second samples (two metrics) make, folded
/// in through the store's own write path. Writing the 7.8 million samples themselves would
/// measure the emulator for an hour; the chart reads only the summaries.
async fn lay_down_history(stack: &Devstack, device: &str) -> Result<()> {
    use cellbridge::devices::summary::{hour_of, summarise};
    use futures::StreamExt as _;
    let resources = stack.resources();
    let store = cellbridge::devices::dynamodb::DynamoDevices::new(
        aws_sdk_dynamodb::Client::new(stack.sdk_config()),
        resources
            .table_name("DevicesTable")
            .context("DevicesTable")?,
        resources
            .table_name("TelemetryTable")
            .context("TelemetryTable")?,
    );
    let thing = cellbridge::devices::registration::ThingName::parse(device).context("thing")?;
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    // Up to the hour before this one: the fleet's own telemetry fills this hour.
    let last = hour_of(now_ms) - 3_600_000;
    let hours: Vec<i64> = (0..HISTORY_DAYS * 24)
        .map(|h| last - h * 3_600_000)
        .collect();
    let mut folds = futures::stream::iter(hours.into_iter().map(|hour| {
        let samples: Vec<_> = (0..3_600_i64)
            .map(|s| {
                let at = hour + s * 1000;
                let phase = (at as f64 / 86_400_000.0) * std::f64::consts::TAU;
                let metrics = serde_json::json!({
                    "temp": 21.0 + 4.0 * phase.sin() + f64::from((s % 7) as i32) * 0.05,
                    "rssi": -70 - (s % 13),
                });
                (at, metrics.as_object().cloned().unwrap_or_default())
            })
            .collect();
        let parts = summarise(hour, &samples);
        let store = &store;
        let thing = thing.clone();
        async move { store.fold_hour(thing, hour, parts).await }
    }))
    .buffer_unordered(8);
    let mut done = 0;
    while let Some(folded) = folds.next().await {
        folded?;
        done += 1;
        if done % 240 == 0 {
            println!("  {done} of {} hours", HISTORY_DAYS * 24);
        }
    }
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The value of cookie `name` among a response's `Set-Cookie` headers.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// Signs in through the console's own form, as a browser does; the session cookie.
async fn sign_in(http: &reqwest::Client, base: &str) -> Result<String> {
    let form = http.get(format!("{base}/console/sign-in")).send().await?;
    let nonce = set_cookie(&form, "__Host-cellbridge-sign-in")
        .context("the sign-in form set no cookie of its own")?;
    let signed_in = http
        .post(format!("{base}/console/sign-in"))
        .header(COOKIE, format!("__Host-cellbridge-sign-in={nonce}"))
        .form(&[
            ("csrf", nonce.as_str()),
            ("username", "ops@demo.example"),
            ("password", DEMO_PASSWORD),
            ("next", "/console"),
        ])
        .send()
        .await?;
    set_cookie(&signed_in, "__Host-cellbridge-session")
        .with_context(|| format!("signing in answered {}", signed_in.status()))
}

struct PageTimes {
    name: &'static str,
    /// The whole answer, as the client waited for it.
    total: (Duration, Duration),
    /// Of that, the console function's own time and its wait on the API (`Server-Timing`).
    console: (Duration, Duration),
    api: (Duration, Duration),
    bytes: usize,
}

/// `name;dur=<ms>` of a `Server-Timing` header.
fn server_timing(response: &reqwest::Response, name: &str) -> Option<Duration> {
    let header = response.headers().get("server-timing")?.to_str().ok()?;
    header.split(',').find_map(|metric| {
        let (metric_name, rest) = metric.trim().split_once(";dur=")?;
        (metric_name == name)
            .then(|| rest.parse::<f64>().ok())
            .flatten()
            .map(|ms| Duration::from_secs_f64(ms / 1000.0))
    })
}

fn p50_p95(mut values: Vec<Duration>) -> (Duration, Duration) {
    values.sort();
    (percentile(&values, 50.0), percentile(&values, 95.0))
}

async fn time_pages(stack: &Devstack, device: &str, requests: usize) -> Result<Vec<PageTimes>> {
    let base = stack.api_url();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    // The first sign-in starts the console's and the login's instances: a busy emulator can
    // make that outlast the API's timeout, so it is tried a few times.
    let mut session = sign_in(&http, &base).await;
    for _ in 0..3 {
        if session.is_ok() {
            break;
        }
        session = sign_in(&http, &base).await;
    }
    let session = session?;
    let mut rows = Vec::new();
    for (name, path) in PAGES {
        let url = format!("{base}{}", path.replace("{device}", device));
        // The first request starts the functions' instances: not what a user waits for.
        let warm = http
            .get(&url)
            .header(COOKIE, format!("__Host-cellbridge-session={session}"))
            .send()
            .await?;
        if !warm.status().is_success() {
            bail!("{url} answered {}", warm.status());
        }
        let mut times = Vec::with_capacity(requests);
        let (mut own, mut waited) = (Vec::new(), Vec::new());
        let mut bytes = 0;
        for _ in 0..requests {
            let started = Instant::now();
            let response = http
                .get(&url)
                .header(COOKIE, format!("__Host-cellbridge-session={session}"))
                .send()
                .await?;
            let status = response.status();
            own.extend(server_timing(&response, "console"));
            waited.extend(server_timing(&response, "api"));
            let body = response.bytes().await?;
            times.push(started.elapsed());
            if !status.is_success() {
                bail!("{url} answered {status}");
            }
            bytes = body.len();
        }
        let row = PageTimes {
            name,
            total: p50_p95(times),
            console: p50_p95(own),
            api: p50_p95(waited),
            bytes,
        };
        println!(
            "  {name}: p50 {:?} (console {:?}, API {:?}), p95 {:?}",
            row.total.0, row.console.0, row.api.0, row.total.1
        );
        rows.push(row);
    }
    Ok(rows)
}

/// What tests/browser/bench.mjs prints.
async fn browser_numbers(stack: &Devstack) -> Result<Value> {
    let root = devstack::tools::workspace_root();
    let mut node = tokio::process::Command::new("node");
    node.arg(root.join("tests/browser/bench.mjs"))
        .env("CONSOLE_URL", stack.api_url())
        .env("CONSOLE_PASSWORD", DEMO_PASSWORD)
        .env(
            "CONSOLE_BULK_CHANGE",
            cellbridge::testing::suspend_request(1, false).to_string(),
        )
        .kill_on_drop(true);
    let run = tokio::time::timeout(Duration::from_secs(600), node.output())
        .await
        .context("the browser measurements did not finish within 10 minutes")?
        .context("could not run node; install Node.js 20 or newer")?;
    if !run.status.success() {
        bail!(
            "the browser measurements failed ({}): {}{}",
            run.status,
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&run.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("the browser measurements printed no result")?;
    Ok(serde_json::from_str(line)?)
}

pub async fn run(args: ConsoleArgs) -> Result<()> {
    let root = devstack::tools::workspace_root();
    let (stack, _log) = start_stack(&root, "bench-console.log", true).await?;
    let outcome = measure(&stack, &args).await;
    stack.shutdown().await;
    let markdown = outcome?;
    publish(&root, &SECTION, &markdown, args.no_write)
}

async fn measure(stack: &Devstack, args: &ConsoleArgs) -> Result<String> {
    println!("loading {} SIMs into the demo tenant", args.sims);
    let sims_table = stack
        .resources()
        .table_name("SimsTable")
        .context("template.yaml has no SimsTable")?
        .to_owned();
    let client = aws_sdk_dynamodb::Client::new(stack.sdk_config());
    let tenant = TenantId::parse("demo").context("tenant")?;
    super::sims::load(&client, &sims_table, &tenant, args.sims).await?;

    println!("connecting {} simulated devices", args.devices);
    let mut options = device_sim::FleetOptions::new(stack.mqtt_address());
    options.devices = args.devices;
    options.prefix = "bench-console".to_owned();
    options.tenant = "demo".to_owned();
    // A thousand registrations at once would only measure the machine's queue.
    options.start_spread = Duration::from_secs(60);
    let fleet = device_sim::Fleet::start(options)?;
    let things: Vec<String> = fleet.things().map(str::to_owned).collect();
    let device = things.iter().min().cloned().context("a device")?;
    let online = super::devices::wait_registered(&fleet, things.len()).await?;
    println!("  {online} of {} registered", things.len());

    println!("laying down {HISTORY_DAYS} days of hourly summaries for {device}");
    lay_down_history(stack, &device).await?;

    println!("asking for each page {} times", args.requests);
    let pages = time_pages(stack, &device, args.requests).await?;
    println!("measuring in Chromium (interactions on the SIM table, bulk changes shown live)");
    let browser = browser_numbers(stack).await?;
    fleet.shutdown().await?;

    let machine = Machine::detect(&devstack::tools::workspace_root()).await;
    let browser_ms = |v: &Value, key: &str| {
        v[key]
            .as_f64()
            .map_or("n/a".to_owned(), |x| format!("{x:.0} ms"))
    };
    let mut md = String::new();
    writeln!(
        md,
        "{}: the console on the local stack with {} SIMs loaded into the demo tenant and {} simulated devices connected ({online} of them registered within the 10 minutes allowed), signed in as its operator.\n",
        machine.measured_with("console"),
        args.sims,
        args.devices
    )?;
    writeln!(md, "**Server render** (each page {} times after one warm-up request; the console function's answer including its API requests, on this machine's local stack):\n", args.requests)?;
    writeln!(
        md,
        "| page | p50 | p95 | console's own p50 / p95 | waiting on the API p50 / p95 | HTML |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|")?;
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    let fine = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    for row in &pages {
        writeln!(
            md,
            "| {} | {} | {} | {} / {} | {} / {} | {:.1} KB |",
            row.name,
            ms(row.total.0),
            ms(row.total.1),
            fine(row.console.0),
            fine(row.console.1),
            ms(row.api.0),
            ms(row.api.1),
            row.bytes as f64 / 1024.0
        )?;
    }
    let kb = |key: &str| {
        browser[key]
            .as_f64()
            .map_or("n/a".to_owned(), |b| format!("{:.1} KB", b / 1024.0))
    };
    writeln!(
        md,
        "\n**Script and styles** (the bundle's files, gzipped as a browser downloads them): {} in all (goal: under 100 KB), of which the script {}.\n",
        kb("bundleGzip"),
        kb("scriptGzip")
    )?;
    writeln!(
        md,
        "**Interaction to next paint on the SIM table** ({} interactions: ticking a SIM, `j`/`k`, select all; Chrome's Event Timing reports those of 16 ms or more, {} were): p50 {}, p95 {} (goal: under 100 ms), longest {}.\n",
        browser["interactions"], browser["inpReported"], browser_ms(&browser, "inpP50"), browser_ms(&browser, "inpP95"), browser_ms(&browser, "inpMax")
    )?;
    writeln!(
        md,
        "**From an event's write to the page showing it** ({} bulk changes created through the API while the bulk-changes page is open; from each change's `createdAt` to its row painted): p50 {}, p95 {} (goal: under 1 s), longest {}.\n",
        browser["changes"], browser_ms(&browser, "eventToPaintP50"), browser_ms(&browser, "eventToPaintP95"), browser_ms(&browser, "eventToPaintMax")
    )?;
    writeln!(md, "**A 90-day telemetry chart** is the row \"a device (90 days of telemetry, hourly)\" above: the device page asks the API for the range's {} hourly summaries (`resolution=hour`) and draws each metric's hourly lowest and highest. The summaries are those {HISTORY_DAYS} days of one-second samples make, folded in through ingest's own write path; the samples themselves are not written.", HISTORY_DAYS * 24)?;
    Ok(md)
}
