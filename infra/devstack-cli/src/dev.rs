//! `cargo xtask dev` (`devstack dev`): the whole platform on this machine. Starts the devstack with the carrier
//! simulators, suspends 1,000 devices across the three carriers through the API to show the
//! flow end to end, then keeps serving until Ctrl-C.

use anyhow::{Context, Result};
use devstack::{Devstack, DevstackOptions};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct DevArgs {
    /// Port of the local API (API Gateway stand-in).
    #[arg(long, default_value_t = 3000, env = "CELLBRIDGE_API_PORT")]
    port: u16,
    /// Port of `cargo lambda watch` (where `cargo lambda invoke` sends events).
    #[arg(long, default_value_t = 9000)]
    lambda_port: u16,
    /// Port of the carrier simulators.
    #[arg(long, default_value_t = 4010)]
    carrier_port: u16,
    /// Devices in the demonstration, split across the three carriers.
    #[arg(long, default_value_t = 1000)]
    demo_devices: u32,
    /// Port of the local MQTT broker (AWS IoT Core stand-in).
    #[arg(long, default_value_t = 1883)]
    mqtt_port: u16,
    /// Simulated devices that connect over MQTT, register, and send telemetry and heartbeats
    /// every second while the stack serves (0: none).
    #[arg(long, default_value_t = 10)]
    fleet: usize,
    /// Start serving without the demonstration.
    #[arg(long)]
    no_demo: bool,
}

pub async fn run(args: DevArgs) -> Result<()> {
    let root = devstack::tools::workspace_root();
    local_tools::ensure_installed(&root)?;
    let spinner = ProgressBar::new_spinner()
        .with_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}")?);
    spinner.set_message("starting the AWS emulators, provisioning from template.yaml, building functions, starting cargo lambda watch");
    spinner.enable_steady_tick(Duration::from_millis(120));
    let mut options = DevstackOptions::new(root);
    options.api_port = args.port;
    // A fixed port, so `cargo lambda invoke` (default port 9000) reaches these functions.
    options.lambda_port = args.lambda_port;
    options.carrier_port = args.carrier_port;
    options.mqtt_port = args.mqtt_port;
    // cargo lambda watch applies one concurrency to every function; two instances each keep
    // a laptop responsive and still show overlapping invocations.
    options.lambda_concurrency = Some(2);
    let started = Devstack::start(options).await;
    spinner.finish_and_clear();
    let stack =
        started.context("the local stack did not start; the log files under .devstack/ say why")?;
    println!("{}", stack.summary());
    print_accounts();
    seed_sample_bulk_change(&stack, "demo").await?;

    if !args.no_demo {
        if let Err(error) = demonstrate(&stack, args.demo_devices).await {
            eprintln!("demonstration failed: {error:#}");
        }
    }
    let fleet = if args.fleet > 0 {
        match demonstrate_fleet(&stack, args.fleet).await {
            Ok(fleet) => Some(fleet),
            Err(error) => {
                eprintln!("device demonstration failed: {error:#}");
                None
            }
        }
    } else {
        None
    };
    println!("\nServing on {}. Press Ctrl-C to stop.", stack.api_url());
    tokio::signal::ctrl_c().await?;
    println!("stopping...");
    if let Some(fleet) = fleet {
        let _ = fleet.shutdown().await;
    }
    stack.shutdown().await;
    Ok(())
}

/// How often the demo's devices publish their samples.
const DEMO_BATCH_EVERY: Duration = Duration::from_secs(10);

/// Starts `devices` simulated devices of tenant `demo` against the local broker and shows, through
/// the API, that they registered and are online, that their telemetry is stored, and a command's
/// round trip. The fleet keeps running while the stack serves.
async fn demonstrate_fleet(stack: &Devstack, devices: usize) -> Result<device_sim::Fleet> {
    use devstack::api_client::command_round_trip;
    use devstack::demo_accounts::DEMO_PASSWORD;
    let mut options = device_sim::FleetOptions::new(stack.mqtt_address());
    options.devices = devices;
    options.prefix = "demo-trk".to_owned();
    options.tenant = "demo".to_owned();
    options.start_spread = Duration::from_secs(2);
    // The contract's batches go once a minute; the demo's every ten seconds, so its telemetry
    // shows up while you watch.
    options.batch_every = Some(DEMO_BATCH_EVERY);
    println!(
        "\nDevices: {devices} simulated devices connect to mqtt://{}, register, sample every second and publish their samples in batches every {} s (presence from MQTT keep-alive, no heartbeats)",
        stack.mqtt_address(),
        DEMO_BATCH_EVERY.as_secs()
    );
    let fleet = device_sim::Fleet::start(options)?;
    let things: std::collections::HashSet<String> = fleet.things().map(str::to_owned).collect();
    let api = stack.sign_in("ops@demo.example", DEMO_PASSWORD).await?;
    let bar = ProgressBar::new(devices as u64).with_style(ProgressStyle::with_template(
        "  {bar:40} {pos}/{len} devices online (GET /devices) {elapsed}",
    )?);
    let online = api
        .wait_online(&things, Duration::from_secs(300), |n| {
            bar.set_position(n as u64)
        })
        .await?;
    bar.finish();
    let first = fleet.things().next().context("an empty fleet")?.to_owned();
    // Telemetry flows through the rule, the queue and the batch writer: wait for the first batch.
    let last_hour = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    let waiting_since = std::time::Instant::now();
    let points = loop {
        let points = api.telemetry_since(&first, last_hour).await?.len();
        if points > 0 || waiting_since.elapsed() > 3 * DEMO_BATCH_EVERY {
            break points;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let id = api.send_command(&first, "ping", None).await?.id;
    let view = api
        .wait_command_final(&first, &id, Duration::from_secs(60))
        .await?;
    let stats = fleet.stats();
    println!("  devices online      {online}/{devices}");
    println!(
        "  telemetry           {} samples in {} messages sent by the fleet; {points} samples stored for {first} (GET /devices/{first}/telemetry)",
        stats.samples_taken, stats.telemetry_sent
    );
    println!(
        "  command round trip  ping to {first}: {} in {} ms (POST /devices/{first}/commands to the recorded ack)",
        view.status.as_str(),
        command_round_trip(&view).map_or_else(|| "?".to_owned(), |d| d.as_millis().to_string())
    );
    println!(
        "  try                 device-sim: cargo run -p device-sim -- --mqtt {} --devices 5 --prefix mine --tenant demo",
        stack.mqtt_address()
    );
    Ok(fleet)
}

fn print_accounts() {
    use devstack::demo_accounts::{DEMO_PASSWORD, DEMO_TENANTS};
    println!("  Accounts     password {DEMO_PASSWORD:?} for every demo user (local only):");
    for (tenant, _, users) in DEMO_TENANTS {
        for (username, role) in *users {
            println!("                 {username:<22} tenant {tenant:<7} {role}");
        }
    }
}

/// The bulk change that the sample events in events/ name, stored as the intake function would
/// leave it, so `cargo lambda invoke ... --data-file events/...` finds it.
const SAMPLE_BULK_CHANGE_ID: &str = "019aa8e4-6f2a-7c3d-9b1e-2f4a5c6d7e80";

async fn seed_sample_bulk_change(stack: &Devstack, tenant: &str) -> Result<()> {
    let ports = devstack::ports::bulk_change_ports(
        stack.sdk_config(),
        stack.template(),
        stack.resources(),
    )?;
    let (change, devices) =
        cellbridge::testing::sample_bulk_change(tenant, SAMPLE_BULK_CHANGE_ID, 3, true);
    ports
        .payloads
        .put(&change.payload_key, serde_json::to_vec(&devices)?)
        .await?;
    ports.store.create_bulk_change(&change, None).await?;
    println!("  Sample       bulk change {SAMPLE_BULK_CHANGE_ID} (tenant {tenant}), named by the events in events/");
    Ok(())
}

/// The demonstration's share of devices per carrier (of `--demo-devices`).
const DEMO_SPLIT: [(&str, u32); 3] = [("jasper", 40), ("thingSpace", 30), ("telegence", 30)];

/// Suspends `devices` devices across the three carriers through the API, like a portal user,
/// and follows the bulk changes to completion at the carrier simulators.
async fn demonstrate(stack: &Devstack, devices: u32) -> Result<()> {
    use devstack::demo_accounts::DEMO_PASSWORD;
    let client = stack.sign_in("ops@demo.example", DEMO_PASSWORD).await?;
    let api = stack.api_url();
    let carriers = stack
        .carriers()
        .context("the devstack runs without carrier simulators")?;
    let iccids: Vec<String> = (0..devices).map(cellbridge::testing::iccid).collect();
    carriers.seed_active(iccids.iter().map(String::as_str));
    println!(
        "\nDemonstration: suspending {devices} devices across Jasper, ThingSpace and Telegence"
    );

    // Each carrier's bulk change goes through the tenant's own account there (its service
    // provider), as a tenant's operator would send it.
    let providers = client.service_providers().await?;
    let mut changes = Vec::new();
    let mut first = 0;
    for (i, (carrier, percent)) in DEMO_SPLIT.iter().enumerate() {
        let provider = providers
            .iter()
            .find(|p| p.carrier.as_str() == *carrier)
            .with_context(|| format!("the demo tenant has no {carrier} service provider"))?;
        let count = if i + 1 == DEMO_SPLIT.len() {
            devices - first
        } else {
            devices * percent / 100
        };
        let body = serde_json::json!({
            "serviceProviderId": provider.id,
            "change": {"type": "statusUpdate", "action": "suspend"},
            "processChanges": true,
            "devices": iccids[first as usize..(first + count) as usize]
                .iter()
                .map(|iccid| serde_json::json!({"iccid": iccid}))
                .collect::<Vec<_>>(),
        });
        let id = client
            .create_bulk_change(&body, Some(&uuid_like()))
            .await?
            .id
            .into_owned();
        println!(
            "  POST {api}/bulk-changes  {count:>5} {carrier:<10} devices via \"{}\" -> 202, bulk change {id}",
            provider.name
        );
        changes.push((*carrier, id));
        first += count;
    }

    let bar = ProgressBar::new(u64::from(devices)).with_style(ProgressStyle::with_template(
        "  {bar:40} {pos}/{len} device changes done {elapsed} {msg}",
    )?);
    let started = Instant::now();
    let ids: Vec<String> = changes.iter().map(|(_, id)| id.clone()).collect();
    let views = client
        .wait_bulk_changes_final(&ids, Duration::from_secs(900), |views| {
            let done: u32 = views
                .iter()
                .map(|v| v.counts.succeeded + v.counts.failed)
                .sum();
            bar.set_position(u64::from(done));
            let statuses: Vec<String> = changes
                .iter()
                .zip(views)
                .map(|((carrier, _), v)| format!("{carrier} {}", v.status.as_str()))
                .collect();
            bar.set_message(statuses.join(", "));
        })
        .await
        .context("the demonstration's bulk changes; see .devstack/cargo-lambda.log")?;
    bar.finish();

    let log: Value = reqwest::Client::new()
        .get(format!("{}/_sim/requests", carriers.url()))
        .send()
        .await?
        .json()
        .await?;
    let entries = log.as_array().cloned().unwrap_or_default();
    println!(
        "\n  {:<11} {:<20} {:>9} {:>7} {:>16} {:>5}",
        "carrier", "status", "succeeded", "failed", "carrier requests", "429s"
    );
    for ((carrier, _), view) in changes.iter().zip(&views) {
        let sim_name = carrier.to_ascii_lowercase();
        let mine = entries.iter().filter(|e| e["carrier"] == sim_name.as_str());
        let (requests, limited) = mine.fold((0, 0), |(n, l), e| {
            (n + 1, l + usize::from(e["status"] == 429))
        });
        println!(
            "  {:<11} {:<20} {:>9} {:>7} {:>16} {:>5}",
            carrier,
            view.status.as_str(),
            view.counts.succeeded,
            view.counts.failed,
            requests,
            limited
        );
    }
    println!("  finished in {:.1?}", started.elapsed());
    let (_, jasper_id) = &changes[0];
    println!("\nTry it yourself (as ops@demo.example):");
    println!("  TOKEN=$(curl -s {api}/auth/login -H 'content-type: application/json' \\");
    println!("      -d '{{\"username\":\"ops@demo.example\",\"password\":\"{DEMO_PASSWORD}\"}}' | sed 's/.*\"token\":\"\\([^\"]*\\)\".*/\\1/')");
    println!("  curl -s {api}/bulk-changes/{jasper_id} -H \"authorization: Bearer $TOKEN\"");
    println!("  curl -s '{api}/bulk-changes/{jasper_id}/devices?limit=5' -H \"authorization: Bearer $TOKEN\"");
    println!("  curl -s '{api}/bulk-changes?status=completed' -H \"authorization: Bearer $TOKEN\"");
    println!("  curl -s {}/_sim/requests | head -c 600", carriers.url());
    Ok(())
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("dev-demo-{nanos}")
}
