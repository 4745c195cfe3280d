//! `cargo xtask bench cost --scenario bulk-change|console-day`: what one piece of work costs,
//! metered on the local stack as [`super::fleet_cost`] meters a fleet and priced per piece: a
//! bulk change of 10,000 devices on each carrier, and a console user's working day of API use.

use super::cost::{self, Bill, PriceTable};
use super::devices::{start_fleet, start_stack, stop_fleet, wait_registered};
use super::fleet_cost::{
    architecture, flow_of_function, grouped, CostArgs, FleetBehaviour, Flows, Measured, Meters,
};
use super::{publish, DocSection, Machine};
use anyhow::{bail, Context, Result};
use cellbridge::bulk_changes::bulk_change::BulkChange;
use cellbridge::common::tenant::TenantId;
use cellbridge::devices::ports::DeviceStore;
use cellbridge::devices::registration::ThingName;
use cellbridge::devices::telemetry::{Metric, Sample, TelemetryBatch};
use cellbridge::devices::views::{DeviceView, TelemetryView};
use cellbridge::devices::wiring::{device_store, DeviceTables};
use devstack::api_client::ApiClient;
use devstack::demo_accounts::DEMO_PASSWORD;
use devstack::Devstack;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

const BULK_SECTION: DocSection = DocSection {
    name: "cost-bulk-change",
    heading: "Cost: a bulk change",
    begin: "<!-- cost-bulk-change:begin (written by `cargo xtask bench cost --scenario bulk-change`) -->",
    end: "<!-- cost-bulk-change:end -->",
};

const CONSOLE_SECTION: DocSection = DocSection {
    name: "cost-console-day",
    heading: "Cost: a day at the console",
    begin: "<!-- cost-console-day:begin (written by `cargo xtask bench cost --scenario console-day`) -->",
    end: "<!-- cost-console-day:end -->",
};

/// The size of the bulk change the scenario prices.
const PRICED_BULK_CHANGE: u32 = 10_000;
const TENANT: &str = "demo";
const OPERATOR: &str = "ops@demo.example";
const ADMIN: &str = "admin@demo.example";

/// The carriers as `POST /bulk-changes` names them, with the names people know them by.
const CARRIERS: [(&str, &str); 3] = [
    ("jasper", "Jasper (Cisco Control Center)"),
    ("thingSpace", "ThingSpace (Verizon)"),
    ("telegence", "Telegence (AT&T)"),
];

/// What a bulk change pays for: the functions of its flow and the API calls that start and
/// watch it. The scheduled functions run whatever happens and are priced with the fleet.
fn bulk_change_line(function: &str) -> Option<String> {
    matches!(flow_of_function(function), "bulk changes" | "API").then(|| function.to_owned())
}

/// What a console user pays for: the API and the commands they send, not the fleet's own
/// telemetry and presence.
fn console_line(function: &str) -> Option<String> {
    matches!(flow_of_function(function), "API" | "commands").then(|| function.to_owned())
}

/// One carrier's metered bulk change.
struct BulkRun {
    carrier: &'static str,
    devices: u32,
    succeeded: u32,
    failed: u32,
    measured: Measured,
}

pub async fn bulk_change(args: CostArgs) -> Result<()> {
    if args.bulk_devices == 0 || args.bulk_devices > PRICED_BULK_CHANGE {
        bail!("--bulk-devices must be between 1 and {PRICED_BULK_CHANGE}");
    }
    let root = devstack::tools::workspace_root();
    let table = PriceTable::load(&root.join(cost::PRICE_TABLE))?;
    let prices = table.prices(&args.region)?;
    let (stack, _log) = start_stack(&root, "bench-cost-bulk-change.log", true).await?;
    let outcome = measure_bulk_changes(&stack, args.bulk_devices).await;
    let flows = Flows::of(&stack);
    let architecture = architecture(&args, &stack);
    stack.shutdown().await;
    let runs = outcome?;
    let mut bills = Vec::new();
    for run in &runs {
        let usage = flows.usage(&run.measured, architecture, &bulk_change_line);
        let scale = f64::from(PRICED_BULK_CHANGE) / f64::from(run.devices);
        let bill = cost::price_scaled(&usage.per_device, scale, "bulk change of 10,000", &prices)?;
        bills.push(bill);
    }
    let machine = Machine::detect(&root).await;
    let markdown = bulk_markdown(&args, &table.checked, &runs, &bills, &machine);
    publish(&root, &BULK_SECTION, &markdown, args.no_write)
}

async fn measure_bulk_changes(stack: &Devstack, devices: u32) -> Result<Vec<BulkRun>> {
    let client = stack.sign_in(OPERATOR, DEMO_PASSWORD).await?;
    let carriers = stack
        .carriers()
        .context("the stack runs without carrier simulators")?;
    let ports = devstack::ports::bulk_change_ports(
        stack.sdk_config(),
        stack.template(),
        stack.resources(),
    )?;
    let tenant = TenantId::parse(TENANT).context("the demo tenant's id")?;
    let http = reqwest::Client::new();
    let mut runs = Vec::new();
    for (index, (carrier, name)) in CARRIERS.iter().enumerate() {
        let first = index as u32 * devices;
        let iccids: Vec<String> = (first..first + devices)
            .map(cellbridge::testing::iccid)
            .collect();
        carriers.seed_active(iccids.iter().map(String::as_str));
        println!("{name}: suspending {devices} devices");
        let before = Meters::read(stack, &http).await?;
        let started = Instant::now();
        let body = json!({
            "carrier": carrier,
            "change": {"type": "statusUpdate", "action": "suspend"},
            "processChanges": true,
            "devices": iccids.iter().map(|iccid| json!({"iccid": iccid})).collect::<Vec<_>>(),
        });
        let id = client
            .create_bulk_change(&body, None)
            .await
            .with_context(|| format!("creating the {name} bulk change"))?
            .id
            .into_owned();
        // Followed in the store, as the stack itself: a user's polling would be billed.
        let bar = ProgressBar::new(u64::from(devices)).with_style(ProgressStyle::with_template(
            "  {bar:40} {pos}/{len} device changes done {elapsed}",
        )?);
        let change = loop {
            let change: Option<BulkChange> = ports
                .store
                .get_bulk_change(&tenant, &id)
                .await
                .context("reading the bulk change")?;
            if let Some(change) = change {
                bar.set_position(u64::from(change.counts.succeeded + change.counts.failed));
                if change.status.is_final() {
                    break change;
                }
            }
            if started.elapsed() > Duration::from_secs(1800) {
                bail!("the {name} bulk change {id} was not done after 30 minutes; see .devstack/bench-cost-bulk-change.log");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        bar.finish();
        // Calls still in flight when the change turned final (the last status writes) land in
        // the meters before they are read.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = Meters::read(stack, &http).await?;
        runs.push(BulkRun {
            carrier: name,
            devices,
            succeeded: change.counts.succeeded,
            failed: change.counts.failed,
            measured: after.since(&before, started.elapsed()),
        });
    }
    Ok(runs)
}

fn bulk_markdown(
    args: &CostArgs,
    checked: &str,
    runs: &[BulkRun],
    bills: &[Bill],
    machine: &Machine,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: one bulk change per carrier suspending {} active SIMs at the carrier simulators, created through the API and metered from the request to its last device outcome, then scaled to {} devices. Units are what AWS would bill (API requests, Lambda milliseconds at each function's template memory, DynamoDB units by item size, SQS requests in 64 KB chunks, S3 requests), priced with {} in {} (checked {checked}). Carrier API calls are not AWS charges and are left out.\n",
        machine.measured_with("cost --scenario bulk-change"),
        args.bulk_devices,
        grouped(u64::from(PRICED_BULK_CHANGE)),
        cost::PRICE_TABLE,
        args.region,
    );
    out.push_str("| carrier | $ per 10,000-device bulk change | $ per device | outcomes | metered in |\n|---|---:|---:|---|---:|\n");
    for (run, bill) in runs.iter().zip(bills) {
        let _ = writeln!(
            out,
            "| {} | {:.4} | {:.6} | {} succeeded, {} failed | {:.0} s |",
            run.carrier,
            bill.total(),
            bill.total() / f64::from(PRICED_BULK_CHANGE),
            run.succeeded,
            run.failed,
            run.measured.window.as_secs_f64(),
        );
    }
    out.push('\n');
    for (run, bill) in runs.iter().zip(bills) {
        let _ = writeln!(out, "{}, by function:\n", run.carrier);
        out.push_str(&bill.markdown());
        out.push('\n');
    }
    out
}

/// A console user's working day with today's API: no live events yet, so open pages refresh
/// by polling. Each step is (how many times a day, what it is).
const CONSOLE_DAY: ConsoleDay = ConsoleDay {
    sign_ins: 2,
    overview_refreshes: 240,
    devices_opened: 40,
    commands_sent: 10,
    bulk_changes_opened: 10,
    users_listed: 2,
};

struct ConsoleDay {
    /// `POST /auth/login`, morning and afternoon.
    sign_ins: u32,
    /// The overview open all day, refreshed every 2 minutes for 8 hours: the first page of
    /// `GET /devices` and of `GET /bulk-changes`.
    overview_refreshes: u32,
    /// A device's page: `GET /devices/{id}`, its last hour of telemetry (every page) and its
    /// recent commands.
    devices_opened: u32,
    /// `POST /devices/{id}/commands`, then its status polled until the device answers.
    commands_sent: u32,
    /// A bulk change's page: `GET /bulk-changes/{id}` and the first page of its devices.
    bulk_changes_opened: u32,
    /// The admin's `GET /users`.
    users_listed: u32,
}

impl ConsoleDay {
    fn describe(&self) -> String {
        format!(
            "{} sign-ins; the overview refreshed {} times (every 2 minutes for 8 hours: the first page of devices and of bulk changes); {} device pages opened (the device, its last hour of 1-second telemetry, every page, and its commands); {} commands sent and polled to the device's answer; {} bulk change pages opened (the change and its first page of devices); the user list {} times",
            self.sign_ins,
            self.overview_refreshes,
            self.devices_opened,
            self.commands_sent,
            self.bulk_changes_opened,
            self.users_listed
        )
    }
}

/// Devices on the console: enough for every listing to be a full page.
const CONSOLE_DEVICES: usize = 25;

pub async fn console_day(args: CostArgs) -> Result<()> {
    let root = devstack::tools::workspace_root();
    let table = PriceTable::load(&root.join(cost::PRICE_TABLE))?;
    let prices = table.prices(&args.region)?;
    let (stack, _log) = start_stack(&root, "bench-cost-console-day.log", false).await?;
    let outcome = measure_console_day(&stack).await;
    let flows = Flows::of(&stack);
    let architecture = architecture(&args, &stack);
    stack.shutdown().await;
    let (measured, requests) = outcome?;
    let usage = flows.usage(&measured, architecture, &console_line);
    let bill = cost::price_scaled(&usage.per_device, 1.0, "console day", &prices)?;
    let machine = Machine::detect(&root).await;
    let mut markdown = String::new();
    let _ = writeln!(
        markdown,
        "{}: one fleet manager's working day at the console, with today's API (open pages poll; live events will replace the polling): {}. That is {requests} API requests, each with its authorizer call, against {CONSOLE_DEVICES} devices sending their batches and a bulk change of 500 devices; priced with {} in {} (checked {}). The fleet's own telemetry and presence are the fleet's cost, not the user's, and are left out.\n",
        machine.measured_with("cost --scenario console-day"),
        CONSOLE_DAY.describe(),
        cost::PRICE_TABLE,
        args.region,
        table.checked,
    );
    let _ = writeln!(
        markdown,
        "**${:.4} per console user per day**, about ${:.2} a month for 20 working days.\n",
        bill.total(),
        bill.total() * 20.0
    );
    markdown.push_str(&bill.markdown());
    publish(&root, &CONSOLE_SECTION, &markdown, args.no_write)
}

async fn measure_console_day(stack: &Devstack) -> Result<(Measured, u64)> {
    let mut options = device_sim::FleetOptions::new(stack.mqtt_address());
    options.devices = CONSOLE_DEVICES;
    options.prefix = "console".to_owned();
    options.tenant = TENANT.to_owned();
    FleetBehaviour::Batched.options(&mut options);
    let (simulator, fleet) = start_fleet(options)?;
    let outcome = async {
        wait_registered(&fleet, CONSOLE_DEVICES).await?;
        let things: Vec<String> = fleet.things().map(str::to_owned).collect();
        seed_telemetry(stack, &things).await?;
        let operator = stack.sign_in(OPERATOR, DEMO_PASSWORD).await?;
        let bulk_change = recorded_bulk_change(&operator).await?;
        let http = reqwest::Client::new();
        let before = Meters::read(stack, &http).await?;
        let started = Instant::now();
        let requests = run_console_day(stack, &things, &bulk_change).await?;
        // The commands' acknowledgements still on their way land in the meters.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = Meters::read(stack, &http).await?;
        anyhow::Ok((after.since(&before, started.elapsed()), requests))
    }
    .await;
    stop_fleet(simulator, fleet).await;
    outcome
}

/// The last hour of each device's 1-second samples, written as the ingest function stores them
/// (by the stack, so unbilled): a device page reads what a real one would.
async fn seed_telemetry(stack: &Devstack, things: &[String]) -> Result<()> {
    let tables: DeviceTables = devstack::ports::function_config(
        stack.template(),
        stack.resources(),
        "TelemetryIngestFunction",
    )?;
    let store = device_store(stack.sdk_config(), &tables);
    let now = OffsetDateTime::now_utc();
    let bar = ProgressBar::new(things.len() as u64).with_style(ProgressStyle::with_template(
        "  {bar:40} {pos}/{len} devices given an hour of telemetry",
    )?);
    for thing in things {
        let device = ThingName::parse(thing).with_context(|| format!("thing name {thing}"))?;
        // One message a minute of 60 samples, as the device contract has it.
        let batches: Vec<TelemetryBatch> = (0..60)
            .map(|minute| {
                let start = now - time::Duration::minutes(60 - minute);
                TelemetryBatch {
                    device: device.clone(),
                    received_at: start + time::Duration::minutes(1),
                    samples: (0..60)
                        .map(|second| Sample {
                            at: start + time::Duration::seconds(second),
                            metrics: BTreeMap::from([
                                (
                                    "temperature".to_owned(),
                                    Metric::Number(20.0 + second as f64 / 10.0),
                                ),
                                ("battery".to_owned(), Metric::Number(90.0)),
                                ("rssi".to_owned(), Metric::Number(-70.0)),
                                ("lat".to_owned(), Metric::Number(52.52)),
                                ("lon".to_owned(), Metric::Number(13.40)),
                            ]),
                        })
                        .collect(),
                }
            })
            .collect();
        for chunk in batches.chunks(10) {
            store
                .write_telemetry(chunk, time::Duration::days(7))
                .await
                .context("seeding telemetry")?;
        }
        bar.inc(1);
    }
    bar.finish();
    Ok(())
}

/// A bulk change of 500 devices, recorded without carrier calls, for the bulk change pages.
async fn recorded_bulk_change(client: &ApiClient) -> Result<String> {
    let devices: Vec<Value> = (0..500)
        .map(|n| json!({"iccid": cellbridge::testing::iccid(n)}))
        .collect();
    let body = json!({
        "carrier": "jasper",
        "change": {"type": "statusUpdate", "action": "suspend"},
        "processChanges": false,
        "devices": devices,
    });
    let id = client
        .create_bulk_change(&body, None)
        .await?
        .id
        .into_owned();
    client
        .wait_bulk_change_final(&id, Duration::from_secs(120))
        .await?;
    Ok(id)
}

/// Runs [`CONSOLE_DAY`] through the API; returns how many requests it made.
async fn run_console_day(stack: &Devstack, things: &[String], bulk_change: &str) -> Result<u64> {
    let day = &CONSOLE_DAY;
    let steps = u64::from(
        day.sign_ins
            + day.overview_refreshes
            + day.devices_opened
            + day.commands_sent
            + day.bulk_changes_opened
            + day.users_listed,
    );
    let bar = ProgressBar::new(steps).with_style(ProgressStyle::with_template(
        "  {bar:40} {pos}/{len} console steps {elapsed}",
    )?);
    let mut requests = 0u64;
    let mut operator = None;
    for _ in 0..day.sign_ins {
        operator = Some(stack.sign_in(OPERATOR, DEMO_PASSWORD).await?);
        requests += 1;
        bar.inc(1);
    }
    let operator = operator.context("the day signs in at least once")?;
    let now = OffsetDateTime::now_utc();
    let hour_ago = (now - time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)?
        .replace('+', "%2B");
    for _ in 0..day.overview_refreshes {
        let _: Value = operator.get("/devices?limit=50").await?;
        let _: Value = operator.get("/bulk-changes?limit=20").await?;
        requests += 2;
        bar.inc(1);
    }
    for n in 0..day.devices_opened {
        let thing = &things[n as usize % things.len()];
        let _: DeviceView = operator.device(thing).await?;
        let points: Vec<TelemetryView> = operator
            .all_pages(&format!("/devices/{thing}/telemetry?from={hour_ago}"))
            .await?;
        let _: Value = operator
            .get(&format!("/devices/{thing}/commands?limit=20"))
            .await?;
        // A page of up to 1,000 points each.
        requests += 2 + (points.len() as u64).div_ceil(1000).max(1);
        bar.inc(1);
    }
    for n in 0..day.commands_sent {
        let thing = &things[n as usize % things.len()];
        let sent = operator
            .send_command(thing, "reboot", None)
            .await
            .with_context(|| format!("sending a command to {thing}"))?;
        requests += 1;
        let started = Instant::now();
        // Polled once a second, as a page waiting for the answer would.
        loop {
            let view = operator.command(thing, &sent.id).await?;
            requests += 1;
            if view.status.is_final() || started.elapsed() > Duration::from_secs(30) {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        bar.inc(1);
    }
    for _ in 0..day.bulk_changes_opened {
        let _: Value = operator
            .get(&format!("/bulk-changes/{bulk_change}"))
            .await?;
        let _: Value = operator
            .get(&format!("/bulk-changes/{bulk_change}/devices?limit=100"))
            .await?;
        requests += 2;
        bar.inc(1);
    }
    let admin = stack.sign_in(ADMIN, DEMO_PASSWORD).await?;
    requests += 1;
    for _ in 0..day.users_listed {
        let _ = admin.users().await?;
        requests += 1;
        bar.inc(1);
    }
    bar.finish();
    Ok(requests)
}
