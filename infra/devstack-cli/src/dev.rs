//! `cargo xtask dev` (`devstack dev`): the whole platform on this machine. Starts the devstack with the carrier
//! simulators, syncs a 10,000-SIM inventory in from them, suspends a selection from it across the
//! three carriers through the API to show the flow end to end, then keeps serving until Ctrl-C.

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
    /// Port of the live event stream (API Gateway WebSocket API stand-in).
    #[arg(long, default_value_t = 3001)]
    live_port: u16,
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
    options.live_port = args.live_port;
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
    // The demo tenant's live stream, watched while the demonstration runs.
    let watcher = crate::live::LiveWatcher::start(
        &stack,
        "ops@demo.example",
        devstack::demo_accounts::DEMO_PASSWORD,
    )
    .await
    .context("following the live event stream")?;

    if !args.no_demo {
        match demonstrate(&stack, &watcher).await {
            Ok(()) => {
                if let Err(error) = leave_one_running(&stack).await {
                    eprintln!("the running bulk change could not be started: {error:#}");
                }
            }
            Err(error) => eprintln!("demonstration failed: {error:#}"),
        }
    }
    let fleet = if args.fleet > 0 {
        match demonstrate_fleet(&stack, args.fleet, &watcher).await {
            Ok(fleet) => Some(fleet),
            Err(error) => {
                eprintln!("device demonstration failed: {error:#}");
                None
            }
        }
    } else {
        None
    };
    print_live(&stack, &watcher);
    println!(
        "\nConsole: {}/console  (sign in as ops@demo.example, password {:?}; docs/console.md)",
        stack.api_url(),
        devstack::demo_accounts::DEMO_PASSWORD
    );
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
async fn demonstrate_fleet(
    stack: &Devstack,
    devices: usize,
    watcher: &crate::live::LiveWatcher,
) -> Result<device_sim::Fleet> {
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
    let tally = watcher.tally();
    let told = |kind: &str| tally.by_type.get(kind).copied().unwrap_or(0);
    println!(
        "  live stream         {} device.registered and {} device.presence events, {} command.status (the ping's, to its acknowledgement)",
        told("device.registered"),
        told("device.presence"),
        told("command.status")
    );
    println!(
        "  try                 device-sim: cargo run -p device-sim -- --mqtt {} --devices 5 --prefix mine --tenant demo",
        stack.mqtt_address()
    );
    Ok(fleet)
}

/// What the stream told during the demonstration, and how to watch it.
fn print_live(stack: &Devstack, watcher: &crate::live::LiveWatcher) {
    let url = stack.live_url();
    println!("\nLive events: {url} (WebSocket; docs/live-events.md)");
    println!("  the demo tenant's stream told {}", watcher.line());
    println!("  watch it (websocat, or any WebSocket client; the token as a subprotocol):");
    println!("    websocat --protocol \"cellbridge.events.v1, $TOKEN\" {url}");
    println!("    {{\"action\":\"subscribe\",\"filter\":{{\"types\":[\"device.presence\",\"bulkChange.progress\"]}}}}");
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

/// SIMs the local carriers hold for the demo tenant's inventory, one in three at each carrier.
const INVENTORY_SIMS: u32 = 10_000;

/// The demonstration's selection: SIMs whose ICCID starts with this (the first 1,000 of the
/// inventory), active, at each carrier account.
const DEMO_SELECTION_PREFIX: &str = "890126000000000";

/// Seeds the carriers with an inventory, syncs it in, then suspends a selection from it through
/// the API like a portal user (preview, then the bulk change, per carrier account), follows the
/// bulk changes to completion at the carrier simulators and shows the inventory after.
async fn demonstrate(stack: &Devstack, watcher: &crate::live::LiveWatcher) -> Result<()> {
    use devstack::demo_accounts::DEMO_PASSWORD;
    let client = stack.sign_in("ops@demo.example", DEMO_PASSWORD).await?;
    let api = stack.api_url();
    let carriers = stack
        .carriers()
        .context("the devstack runs without carrier simulators")?;
    let iccids: Vec<String> = (0..INVENTORY_SIMS)
        .map(cellbridge::testing::iccid)
        .collect();
    carriers.seed_inventory(&iccids);
    println!(
        "\nInventory: {INVENTORY_SIMS} SIMs at Jasper, ThingSpace and Telegence; syncing them in through each tenant's service providers"
    );
    stack.sync_inventory_now().await?;
    let bar = ProgressBar::new(u64::from(INVENTORY_SIMS)).with_style(ProgressStyle::with_template(
        "  {bar:40} {pos}/{len} SIMs in the demo tenant's inventory {elapsed}",
    )?);
    let synced = Instant::now();
    loop {
        let count = client
            .all_pages::<Value>("/sims?iccidPrefix=8901260")
            .await?
            .len();
        bar.set_position(count as u64);
        if count >= INVENTORY_SIMS as usize {
            break;
        }
        if synced.elapsed() > Duration::from_secs(900) {
            anyhow::bail!("the carrier sync did not bring in {INVENTORY_SIMS} SIMs within 15 minutes; see .devstack/cargo-lambda.log");
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    bar.finish();
    print_inventory(&client, "").await?;

    println!(
        "\nDemonstration: suspending a selection from the inventory, the active SIMs whose ICCID starts {DEMO_SELECTION_PREFIX}, at each carrier account"
    );
    let providers = client.service_providers().await?;
    let log_before = sim_requests(carriers).await?.len();
    let mut changes = Vec::new();
    let mut devices = 0u32;
    for carrier in ["jasper", "thingSpace", "telegence"] {
        let provider = providers
            .iter()
            .find(|p| p.carrier.as_str() == carrier)
            .with_context(|| format!("the demo tenant has no {carrier} service provider"))?;
        let body = serde_json::json!({
            "serviceProviderId": provider.id,
            "change": {"type": "statusUpdate", "action": "suspend"},
            "filter": {"status": "active", "iccidPrefix": DEMO_SELECTION_PREFIX},
        });
        let preview = client.preview_bulk_change(&body).await?;
        println!(
            "  POST {api}/bulk-changes/preview  {carrier:<10} -> {} SIMs match, {} to change, {} refused",
            preview["matched"], preview["accepted"], preview["refused"]["count"]
        );
        let created = client.create_bulk_change(&body, Some(&uuid_like())).await?;
        println!(
            "  POST {api}/bulk-changes          {carrier:<10} -> 202, bulk change {} for {} devices via \"{}\"",
            created.id, created.counts.total, provider.name
        );
        devices += created.counts.total;
        changes.push((carrier, created.id.into_owned()));
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

    let entries: Vec<Value> = sim_requests(carriers).await?.split_off(log_before);
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
    println!(
        "  finished in {:.1?} (carrier requests include the carrier sync's listings meanwhile)",
        started.elapsed()
    );
    // The stream tells a bulk change's completion within a second or so of its write.
    let mut told = watcher.tally();
    let settle = Instant::now();
    while ids
        .iter()
        .any(|id| told.bulk_changes.get(id).is_none_or(|d| d["pending"] != 0))
        && settle.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
        told = watcher.tally();
    }
    let progress = told
        .by_type
        .get("bulkChange.progress")
        .copied()
        .unwrap_or(0);
    println!("  live stream         {progress} bulkChange.progress events for the three; the last each told:");
    for ((carrier, id), view) in changes.iter().zip(&views) {
        let last = told.bulk_changes.get(id);
        println!(
            "                      {carrier:<10} {} ({} succeeded, {} failed; the API says {} / {})",
            last.map_or("nothing".to_owned(), |d| d["status"].as_str().unwrap_or("?").to_owned()),
            last.map_or(0, |d| d["succeeded"].as_u64().unwrap_or(0)),
            last.map_or(0, |d| d["failed"].as_u64().unwrap_or(0)),
            view.counts.succeeded,
            view.counts.failed,
        );
    }
    print_inventory(&client, &format!("&iccidPrefix={DEMO_SELECTION_PREFIX}")).await?;

    // The day's collection ran when the inventory was still empty: read every SIM now. It shares
    // each account's pace, so at Jasper it takes a while; the first SIMs show within seconds.
    stack.collect_usage_now().await?;
    let first = &iccids[0];
    let usage_started = Instant::now();
    // The local stack runs two carrier-sync invocations at once, shared with the listings and
    // the reading of Jasper's SIM details (two-minute steps each): the collection can wait in
    // the queue for a few minutes. Not seen within two, it is told as under way, not as failed.
    let cycle = loop {
        let usage: Value = client.get(&format!("/sims/{first}/usage")).await?;
        if !usage["cycle"]["through"].is_null() {
            break Some(usage["cycle"].clone());
        }
        if usage_started.elapsed() > Duration::from_secs(120) {
            break None;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let pace = format!(
        "going on in the background: Jasper {} SIMs a tenant at 5 a second",
        INVENTORY_SIMS.div_ceil(3)
    );
    match cycle {
        Some(cycle) => println!(
            "\nUsage: each SIM's cycle-to-date usage is read once a day at its account's pace ({pace}); {first} has used {:.1} MB and {} SMS this cycle, through {}",
            cycle["dataBytes"].as_f64().unwrap_or(0.0) / 1e6,
            cycle["sms"],
            cycle["through"].as_str().unwrap_or("?"),
        ),
        None => println!(
            "\nUsage: each SIM's cycle-to-date usage is read once a day at its account's pace ({pace}); the collection is still queued behind the listings and the details after 2 minutes: GET /sims/{first}/usage shows it when it has run"
        ),
    }
    let (_, jasper_id) = &changes[0];
    println!("\nTry it yourself (as ops@demo.example):");
    println!("  TOKEN=$(curl -s {api}/auth/login -H 'content-type: application/json' \\");
    println!("      -d '{{\"username\":\"ops@demo.example\",\"password\":\"{DEMO_PASSWORD}\"}}' | sed 's/.*\"token\":\"\\([^\"]*\\)\".*/\\1/')");
    println!("  curl -s {api}/bulk-changes/{jasper_id} -H \"authorization: Bearer $TOKEN\"");
    println!("  curl -s '{api}/bulk-changes/{jasper_id}/devices?limit=5' -H \"authorization: Bearer $TOKEN\"");
    println!("  curl -s '{api}/bulk-changes?status=completed' -H \"authorization: Bearer $TOKEN\"");
    println!("  curl -s '{api}/sims?status=suspended&limit=5' -H \"authorization: Bearer $TOKEN\"");
    println!(
        "  curl -s '{api}/sims/{}' -H \"authorization: Bearer $TOKEN\"",
        iccids[0]
    );
    println!(
        "  curl -s '{api}/sims/{}/usage' -H \"authorization: Bearer $TOKEN\"   # days appear from tomorrow's collection on",
        iccids[0]
    );
    println!("  curl -s {}/_sim/requests | head -c 600", carriers.url());
    Ok(())
}

/// A bulk change left running while the stack serves, so the console has one in flight to
/// watch beside the finished ones: every active SIM at the demo's Jasper account, at Jasper's
/// pace of 5 calls a second (about ten minutes).
async fn leave_one_running(stack: &Devstack) -> Result<()> {
    let client = stack
        .sign_in("ops@demo.example", devstack::demo_accounts::DEMO_PASSWORD)
        .await?;
    let providers = client.service_providers().await?;
    let jasper = providers
        .iter()
        .find(|p| p.carrier.as_str() == "jasper")
        .context("the demo tenant has no Jasper service provider")?;
    let body = serde_json::json!({
        "serviceProviderId": jasper.id,
        "change": {"type": "statusUpdate", "action": "suspend"},
        "filter": {"status": "active"},
    });
    let created = client.create_bulk_change(&body, Some(&uuid_like())).await?;
    println!(
        "
Left running: bulk change {} suspends the {} active SIMs at \"{}\", at Jasper's pace; watch it at {}/console/bulk-changes/{}",
        created.id,
        created.counts.total,
        jasper.name,
        stack.api_url(),
        created.id
    );
    Ok(())
}

/// Every request the carrier simulators logged, oldest first.
async fn sim_requests(carriers: &devstack::carriers::LocalCarriers) -> Result<Vec<Value>> {
    let log: Value = reqwest::Client::new()
        .get(format!("{}/_sim/requests", carriers.url()))
        .send()
        .await?
        .json()
        .await?;
    Ok(log.as_array().cloned().unwrap_or_default())
}

/// SIMs of the demo tenant by carrier and status (`query` narrows them), through `GET /sims`.
async fn print_inventory(client: &devstack::api_client::ApiClient, query: &str) -> Result<()> {
    let title = if query.is_empty() {
        "the inventory".to_owned()
    } else {
        format!("the inventory where {}", query.trim_start_matches('&'))
    };
    println!("\n  {title}:");
    println!(
        "  {:<11} {:>9} {:>9} {:>11} {:>9}",
        "carrier", "active", "suspended", "deactivated", "inventory"
    );
    for carrier in ["jasper", "thingSpace", "telegence"] {
        let mut counts = Vec::new();
        for status in ["active", "suspended", "deactivated", "inventory"] {
            let sims = client
                .all_pages::<Value>(&format!("/sims?carrier={carrier}&status={status}{query}"))
                .await?;
            counts.push(sims.len());
        }
        println!(
            "  {:<11} {:>9} {:>9} {:>11} {:>9}",
            carrier, counts[0], counts[1], counts[2], counts[3]
        );
    }
    Ok(())
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("dev-demo-{nanos}")
}
