//! `cargo xtask dev`: the whole platform on this machine. Starts the devstack, pushes a
//! 1,000-device bulk change through it to show the flow, then keeps serving until Ctrl-C.

use crate::setup;
use anyhow::{bail, Context, Result};
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
    /// Tenant the local API assumes when a request names none.
    #[arg(long, default_value = "demo")]
    tenant: String,
    /// Devices in the demonstration bulk change.
    #[arg(long, default_value_t = 1000)]
    demo_devices: u32,
    /// Start serving without the demonstration.
    #[arg(long)]
    no_demo: bool,
}

pub async fn run(args: DevArgs) -> Result<()> {
    setup::run()?;
    let root = devstack::tools::workspace_root();
    let spinner = ProgressBar::new_spinner()
        .with_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}")?);
    spinner.set_message("starting moto, provisioning from template.yaml, building functions, starting cargo lambda watch");
    spinner.enable_steady_tick(Duration::from_millis(120));
    let mut options = DevstackOptions::new(root);
    options.api_port = args.port;
    options.default_tenant = args.tenant.clone();
    // A fixed port, so `cargo lambda invoke` (default port 9000) reaches these functions.
    options.lambda_port = args.lambda_port;
    // cargo lambda watch applies one concurrency to every function; two instances each keep
    // a laptop responsive and still show overlapping invocations.
    options.lambda_concurrency = Some(2);
    let started = Devstack::start(options).await;
    spinner.finish_and_clear();
    let stack =
        started.context("the local stack did not start; the log files under .devstack/ say why")?;
    println!("{}", stack.summary());
    seed_sample_bulk_change(&stack, &args.tenant).await?;

    if !args.no_demo {
        if let Err(error) = demonstrate(&stack, args.demo_devices).await {
            eprintln!("demonstration failed: {error:#}");
        }
    }
    println!("\nServing on {}. Press Ctrl-C to stop.", stack.api_url());
    tokio::signal::ctrl_c().await?;
    println!("stopping...");
    stack.shutdown().await;
    Ok(())
}

/// The bulk change that the sample events in events/ name, stored as the intake function would
/// leave it, so `cargo lambda invoke ... --data-file events/...` finds it.
const SAMPLE_BULK_CHANGE_ID: &str = "019aa8e4-6f2a-7c3d-9b1e-2f4a5c6d7e80";

async fn seed_sample_bulk_change(stack: &Devstack, tenant: &str) -> Result<()> {
    let ports = devstack::ports::bulk_change_ports(stack.sdk_config(), stack.resources())?;
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

/// Creates a bulk change through the API like a portal user would and follows it to planned.
async fn demonstrate(stack: &Devstack, devices: u32) -> Result<()> {
    let client = reqwest::Client::new();
    let api = stack.api_url();
    let body = cellbridge::testing::suspend_request(devices, true);
    println!("\nDemonstration: POST {api}/bulk-changes suspending {devices} Jasper devices");
    let response = client
        .post(format!("{api}/bulk-changes"))
        .header("content-type", "application/json")
        .header("idempotency-key", uuid_like())
        .body(body.to_string())
        .send()
        .await?;
    let status = response.status();
    let created: Value = response.json().await?;
    if status.as_u16() != 202 {
        bail!("the API answered {status}: {created}");
    }
    let id = created["id"]
        .as_str()
        .context("no id in the response")?
        .to_owned();
    println!("  202 Accepted, bulk change {id}");

    let bar = ProgressBar::new(u64::from(devices)).with_style(ProgressStyle::with_template(
        "  planning {bar:40} {pos}/{len} device changes {elapsed}",
    )?);
    let started = Instant::now();
    let view = loop {
        let view: Value = client
            .get(format!("{api}/bulk-changes/{id}"))
            .send()
            .await?
            .json()
            .await?;
        let planned = count_device_changes(&client, &api, &id).await?;
        bar.set_position(planned);
        if view["status"] != "new" && planned == u64::from(devices) {
            break view;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("not planned after 10 minutes; see .devstack/cargo-lambda.log");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    bar.finish();
    let queued = stack.queue_depth("JasperWorkQueue").await?;
    println!(
        "  planned in {:.1?}: status {}, counts {}, {queued} messages waiting for the carrier worker",
        started.elapsed(),
        view["status"],
        view["counts"]
    );
    println!("\nTry it yourself:");
    println!("  curl -s {api}/bulk-changes/{id}");
    println!("  curl -s '{api}/bulk-changes/{id}/devices?limit=5'");
    println!("  curl -s '{api}/bulk-changes?status=processing'");
    Ok(())
}

async fn count_device_changes(client: &reqwest::Client, api: &str, id: &str) -> Result<u64> {
    let mut count = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{api}/bulk-changes/{id}/devices?limit=1000");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = client.get(url).send().await?.json().await?;
        count += page["items"]
            .as_array()
            .map_or(0, |items| items.len() as u64);
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(count),
        }
    }
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("dev-demo-{nanos}")
}
