//! `carrier-sim`: serves the carrier simulators on loopback.

use clap::Parser;
use std::net::SocketAddr;

#[derive(Parser)]
#[command(about = "cellbridge carrier simulators (Jasper at /jasper/rws/api/v1)")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:4010")]
    listen: SocketAddr,
    /// Share of calls answered with a 503.
    #[arg(long, default_value_t = 0.0)]
    fault_rate: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = carrier_sim::jasper::JasperConfig {
        transient_fault_rate: args.fault_rate,
        ..Default::default()
    };
    let server = carrier_sim::SimServer::start(args.listen, config).await?;
    println!(
        "carrier simulators on {} (Jasper: {})",
        server.url(),
        server.jasper_url()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
