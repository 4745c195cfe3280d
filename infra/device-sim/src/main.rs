//! `device-sim`: runs a fleet of simulated devices against an MQTT broker and reports progress.

use anyhow::Context;
use clap::Parser;
use device_sim::{Fleet, FleetOptions, FleetStats, Misbehaviour};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "Simulated cellular devices speaking MQTT to cellbridge")]
struct Args {
    /// The MQTT broker, host:port (plain TCP).
    #[arg(long, default_value = "127.0.0.1:1883")]
    mqtt: String,
    #[arg(long, default_value_t = 10)]
    devices: usize,
    /// Thing names are <prefix>-0001, <prefix>-0002, ...
    #[arg(long, default_value = "sim")]
    prefix: String,
    #[arg(long, default_value = "demo")]
    tenant: String,
    /// Milliseconds between samples.
    #[arg(long, default_value_t = 1000)]
    telemetry_ms: u64,
    /// Milliseconds between batches of samples; 0 publishes each sample alone.
    #[arg(long, default_value_t = 60_000)]
    batch_ms: u64,
    /// Milliseconds between heartbeats; 0 (the default) sends none.
    #[arg(long, default_value_t = 0)]
    heartbeat_ms: u64,
    #[arg(long, default_value_t = 30)]
    keep_alive_s: u64,
    /// Spread first connections over this many ms (default: 5 ms per device).
    #[arg(long)]
    start_spread_ms: Option<u64>,
    #[arg(long, default_value = "SIM-TRK-100")]
    model: String,
    #[arg(long, default_value = "1.0.0")]
    firmware: String,
    /// Same seed, same ICCIDs, IMEIs and readings.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stop after this many seconds (default: on Ctrl-C).
    #[arg(long)]
    duration_s: Option<u64>,
    /// Seconds between stats lines.
    #[arg(long, default_value_t = 5)]
    stats_every_s: u64,
    /// Make a device misbehave: <thing>=garbage|oversize|flood|flood:<per second>. Repeatable.
    #[arg(long, value_parser = parse_misbehaviour)]
    misbehave: Vec<(String, Misbehaviour)>,
}

fn parse_misbehaviour(text: &str) -> Result<(String, Misbehaviour), String> {
    let (thing, kind) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not <thing>=<misbehaviour>"))?;
    Ok((thing.to_owned(), kind.parse()?))
}

async fn resolve(address: &str) -> anyhow::Result<std::net::SocketAddr> {
    tokio::net::lookup_host(address)
        .await
        .with_context(|| format!("resolving --mqtt {address}"))?
        .next()
        .with_context(|| format!("--mqtt {address} resolves to no address"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let options = FleetOptions {
        devices: args.devices,
        prefix: args.prefix,
        tenant: args.tenant,
        telemetry_every: Duration::from_millis(args.telemetry_ms),
        batch_every: (args.batch_ms > 0).then(|| Duration::from_millis(args.batch_ms)),
        heartbeat_every: (args.heartbeat_ms > 0).then(|| Duration::from_millis(args.heartbeat_ms)),
        keep_alive: Duration::from_secs(args.keep_alive_s),
        start_spread: Duration::from_millis(
            args.start_spread_ms.unwrap_or(5 * args.devices as u64),
        ),
        model: args.model,
        firmware: args.firmware,
        seed: args.seed,
        ..FleetOptions::new(resolve(&args.mqtt).await?)
    };
    let fleet = Fleet::start(options)?;
    for (thing, misbehaviour) in &args.misbehave {
        fleet.set_misbehaviour(thing, *misbehaviour)?;
    }

    // A live spinner on a terminal; plain lines otherwise (logs, CI).
    let spinner = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let report = |stats: &FleetStats| match &spinner {
        Some(bar) => bar.println(stats.to_string()),
        None => println!("{stats}"),
    };

    let stop = async {
        match args.duration_s {
            Some(seconds) => tokio::time::sleep(Duration::from_secs(seconds)).await,
            None => {
                // Without a signal handler there is no way to stop but killing the process.
                if let Err(error) = tokio::signal::ctrl_c().await {
                    tracing::error!(%error, "cannot listen for Ctrl-C");
                    std::future::pending::<()>().await;
                }
            }
        }
    };
    tokio::pin!(stop);
    let mut refresh = tokio::time::interval(Duration::from_secs(1));
    let stats_every = args.stats_every_s.max(1);
    let mut seconds = 0u64;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = refresh.tick() => {
                let stats = fleet.stats();
                if let Some(bar) = &spinner {
                    bar.set_message(stats.to_string());
                }
                if seconds > 0 && seconds.is_multiple_of(stats_every) {
                    report(&stats);
                }
                seconds += 1;
            }
        }
    }
    if let Some(bar) = &spinner {
        bar.set_message("disconnecting...");
    }
    let last = fleet.shutdown().await?;
    if let Some(bar) = &spinner {
        bar.finish_and_clear();
    }
    println!("final: {last}");
    Ok(())
}
