//! `carrier-sim`: serves the carrier simulators on loopback.

use anyhow::Context;
use carrier_sim::SimConfig;
use clap::Parser;
use std::net::SocketAddr;

#[derive(Parser)]
#[command(about = "cellbridge carrier simulators (Jasper, ThingSpace and Telegence on one server)")]
struct Args {
    /// Address to serve on; port 0 picks a free one (the first line printed names it).
    #[arg(long, default_value = "127.0.0.1:4010")]
    listen: SocketAddr,
    /// How the carriers behave: JSON inline (starting with `{`) or the path of a JSON file, shaped
    /// as `{"jasper": {...}, "thingspace": {...}, "telegence": {...}}` with the camelCase fields of
    /// `JasperConfig`, `ThingSpaceConfig` and `TelegenceConfig`. Fields left out keep their
    /// defaults; durations are `{"secs": 1, "nanos": 0}`. Example:
    /// `--config '{"jasper": {"callsPerSecond": 500}, "telegence": {"requestsPerSecond": 500}}'`.
    #[arg(long)]
    config: Option<String>,
    /// Share of Jasper calls answered with a 503 (overrides the configuration's).
    #[arg(long)]
    fault_rate: Option<f64>,
}

fn load_config(config: Option<&str>) -> anyhow::Result<SimConfig> {
    let Some(config) = config else {
        return Ok(SimConfig::default());
    };
    let (text, origin) = if config.trim_start().starts_with('{') {
        (config.to_owned(), "the inline --config".to_owned())
    } else {
        let text = std::fs::read_to_string(config)
            .with_context(|| format!("reading the --config file {config}"))?;
        (text, config.to_owned())
    };
    serde_json::from_str(&text).with_context(|| {
        format!("{origin} is not a simulator configuration (see `carrier-sim --help`)")
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config = load_config(args.config.as_deref())?;
    if let Some(rate) = args.fault_rate {
        config.jasper.transient_fault_rate = rate;
    }
    let server = carrier_sim::SimServer::start(args.listen, config).await?;
    println!(
        "carrier simulators on {} (Jasper: {})",
        server.url(),
        server.jasper_url()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_configuration_keeps_the_other_defaults() {
        let config = load_config(Some(
            r#"{"jasper": {"callsPerSecond": 500, "oneCallInFlight": false},
                "telegence": {"requestsPerSecond": 250.0}}"#,
        ))
        .expect("valid configuration");
        assert_eq!(config.jasper.calls_per_second, 500);
        assert!(!config.jasper.one_call_in_flight);
        assert_eq!(
            config.jasper.accounts,
            carrier_sim::jasper::JasperConfig::default().accounts
        );
        assert_eq!(config.telegence.requests_per_second, 250.0);
        assert_eq!(config.thingspace.rate_limits.activate, Some(100));
    }

    #[test]
    fn a_configuration_survives_a_round_trip_and_typos_are_refused() {
        let text = serde_json::to_string(&SimConfig::default()).expect("serializes");
        let back = load_config(Some(&text)).expect("round trip");
        assert_eq!(back.jasper.calls_per_second, 5);
        assert!(load_config(Some(r#"{"jaspr": {}}"#)).is_err());
        assert!(load_config(Some("/nonexistent/carrier-sim.json")).is_err());
    }
}
