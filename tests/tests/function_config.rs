//! Every function's configuration, read from the environment template.yaml gives it: what the
//! template sets is what the code reads, and a variable the code needs names itself when it is
//! missing. Catches a renamed variable on either side before a deployment does.

use anyhow::{Context, Result};
use cellbridge::common::config::{ConfigError, FromEnvironment};
use devstack::template::Template;
use std::collections::BTreeMap;

type Reader = fn(&BTreeMap<String, String>) -> Result<(), ConfigError>;

fn reads<C: FromEnvironment>(env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    C::from_env(env).map(drop)
}

/// Each function's binary and the configuration its `main.rs` reads.
const FUNCTIONS: &[(&str, Reader)] = &[
    ("api-authorizer", reads::<api_authorizer::Config>),
    ("auth-login", reads::<auth_login::Config>),
    ("bulk-intake", reads::<bulk_intake::Config>),
    ("bulk-planner", reads::<bulk_planner::Config>),
    ("bulk-scheduler", reads::<bulk_scheduler::Config>),
    ("bulk-status", reads::<bulk_status::Config>),
    ("carrier-callbacks", reads::<carrier_callbacks::Config>),
    ("carrier-sync", reads::<carrier_sync::Config>),
    ("carrier-worker", reads::<carrier_worker::Config>),
    ("command-ack", reads::<command_ack::Config>),
    ("command-sweep", reads::<command_sweep::Config>),
    ("web-console", reads::<web_console::Config>),
    ("console-assets", reads::<console_assets::Config>),
    ("device-api", reads::<device_api::Config>),
    ("device-commands", reads::<device_commands::Config>),
    ("device-presence", reads::<device_presence::Config>),
    ("device-registration", reads::<device_registration::Config>),
    ("event-fanout", reads::<event_fanout::Config>),
    ("event-recorder", reads::<event_recorder::Config>),
    ("live-socket", reads::<live_socket::Config>),
    ("presence-sweep", reads::<presence_sweep::Config>),
    ("service-providers", reads::<service_providers::Config>),
    ("sim-api", reads::<sim_api::Config>),
    ("telemetry-ingest", reads::<telemetry_ingest::Config>),
    ("users", reads::<users::Config>),
];

/// Each function's environment as AWS would give it, with an empty carrier accounts document
/// where the template reads Secrets Manager.
fn deployed_environments() -> Result<Vec<(String, BTreeMap<String, String>)>> {
    let template = Template::load(&devstack::tools::workspace_root().join("template.yaml"))?;
    Ok(devstack::ports::deployed_environments(&template, "{}")?
        .into_iter()
        .collect())
}

fn reader(binary: &str) -> Reader {
    FUNCTIONS
        .iter()
        .find(|(name, _)| *name == binary)
        .map(|(_, read)| *read)
        .unwrap_or_else(|| panic!("{binary} is in template.yaml but not in FUNCTIONS here; add it"))
}

#[test]
fn every_function_starts_with_the_environment_the_template_gives_it() -> Result<()> {
    let environments = deployed_environments()?;
    assert_eq!(
        environments.len(),
        FUNCTIONS.len(),
        "one configuration per function in template.yaml"
    );
    for (binary, env) in &environments {
        reader(binary)(env).map_err(|e| anyhow::anyhow!("{binary}: {e}"))?;
    }
    Ok(())
}

#[test]
fn a_variable_a_function_needs_names_itself_when_it_is_missing() -> Result<()> {
    let mut required = 0;
    for (binary, env) in deployed_environments()? {
        let read = reader(&binary);
        for name in env.keys() {
            let mut without = env.clone();
            without.remove(name);
            if let Err(error) = read(&without) {
                assert_eq!(error.variable(), name, "{binary} without {name}: {error}");
                assert!(error.to_string().contains(name.as_str()), "{error}");
                required += 1;
            }
        }
    }
    // Tables, queues, the bucket, the thing type and the signing secret, across the functions.
    assert!(required >= 40, "only {required} required variables found");
    Ok(())
}

#[test]
fn a_malformed_value_fails_the_start_instead_of_falling_back() -> Result<()> {
    let environments = deployed_environments()?;
    let bad = [
        ("carrier-worker", "ACCEPTED_CHECK_INTERVAL_SECONDS", "soon"),
        ("carrier-worker", "CARRIER_ACCOUNTS", "{\"jasper\": 1}"),
        ("carrier-callbacks", "CARRIER_ACCOUNTS", "not json"),
        ("telemetry-ingest", "TELEMETRY_RETENTION_DAYS", "0"),
        ("auth-login", "AUTH_TOKEN_HOURS", "a day"),
        ("api-authorizer", "AUTH_MODE", "saml"),
        ("device-commands", "IOT_DATA_ENDPOINT", "iot.local:8443"),
        ("presence-sweep", "PRESENCE_TIMEOUT_SECONDS", "15m"),
        // Not shorter than the timeout: a device could time out between two writes.
        ("device-presence", "PRESENCE_WRITE_INTERVAL_SECONDS", "900"),
    ];
    for (binary, name, value) in bad {
        let (_, env) = environments
            .iter()
            .find(|(b, _)| b == binary)
            .with_context(|| format!("no {binary} in template.yaml"))?;
        let mut env = env.clone();
        env.insert(name.to_owned(), value.to_owned());
        let error = reader(binary)(&env).expect_err(name);
        assert_eq!(error.variable(), name, "{binary}: {error}");
    }
    Ok(())
}
