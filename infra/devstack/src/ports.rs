//! Configuration and adapters as the functions get them, for `cargo xtask dev`, the tests and the
//! benchmarks, which talk to a local stack from outside the functions' environment: a function's
//! environment in template.yaml is resolved against the stack's resources and read by the same
//! configuration types and wiring the function's `main.rs` uses.

use crate::local_aws::{ACCOUNT_ID, REGION};
use crate::template::{ResourceKind, Resources, Template};
use anyhow::{Context, Result};
use aws_config::SdkConfig;
use cellbridge::bulk_changes::ports::BulkChangePorts;
use cellbridge::bulk_changes::wiring::BulkChangeConfig;
use cellbridge::common::config::FromEnvironment;
use std::collections::BTreeMap;

/// Configuration `C` as the function `logical_id` reads it at cold start.
pub fn function_config<C: FromEnvironment>(
    template: &Template,
    resources: &Resources,
    logical_id: &str,
) -> Result<C> {
    let function = template
        .functions(resources)?
        .into_iter()
        .find(|f| f.logical_id == logical_id)
        .with_context(|| format!("template.yaml declares no function {logical_id}"))?;
    C::from_env(&function.environment)
        .with_context(|| format!("reading {logical_id}'s environment in template.yaml"))
}

/// The bulk-change ports, configured as bulk-intake is.
pub fn bulk_change_ports(
    sdk: &SdkConfig,
    template: &Template,
    resources: &Resources,
) -> Result<BulkChangePorts> {
    let config: BulkChangeConfig = function_config(template, resources, "BulkIntakeFunction")?;
    Ok(cellbridge::bulk_changes::wiring::ports(sdk, &config))
}

/// Each function's environment as a deployment gives it, by binary: names as CloudFormation
/// would make them (the local stack's planned ones), queue URLs in SQS's form, and Secrets
/// Manager references (`{{resolve:secretsmanager:...}}`) replaced by `resolved_secret`.
pub fn deployed_environments(
    template: &Template,
    resolved_secret: &str,
) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
    let mut resources = Resources::planned(template);
    let queues: Vec<(String, String)> = resources
        .of_kind(ResourceKind::Queue)
        .map(|q| (q.logical_id.clone(), q.name.clone()))
        .collect();
    for (logical_id, name) in queues {
        resources.set_queue(
            &logical_id,
            format!("https://sqs.{REGION}.amazonaws.com/{ACCOUNT_ID}/{name}"),
            format!("arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}"),
        );
    }
    let functions = template
        .functions(&resources)
        .context("resolving the functions of template.yaml")?;
    Ok(functions
        .into_iter()
        .map(|f| {
            let env = f
                .environment
                .into_iter()
                .map(|(name, value)| {
                    if value.contains("{{resolve:secretsmanager:") {
                        (name, resolved_secret.to_owned())
                    } else {
                        (name, value)
                    }
                })
                .collect();
            (f.binary, env)
        })
        .collect())
}

/// The SIM inventory, configured as sim-api is.
pub fn sim_store(stack: &crate::Devstack) -> Result<cellbridge::sims::dynamodb::DynamoSims> {
    let tables: cellbridge::sims::wiring::SimTables =
        function_config(stack.template(), stack.resources(), "SimApiFunction")?;
    Ok(cellbridge::sims::wiring::sim_store(
        stack.sdk_config(),
        &tables,
    ))
}

/// The live connections table, configured as the fan-out reads it.
pub fn live_connections(
    stack: &crate::Devstack,
) -> Result<cellbridge::events::dynamodb::DynamoConnections> {
    let tables: cellbridge::events::wiring::LiveTables =
        function_config(stack.template(), stack.resources(), "EventFanoutFunction")?;
    Ok(cellbridge::events::wiring::connections(
        stack.sdk_config(),
        &tables,
    ))
}

/// The events table, configured as the fan-out reads it.
pub fn event_log(stack: &crate::Devstack) -> Result<cellbridge::events::dynamodb::DynamoEventLog> {
    let tables: cellbridge::events::wiring::LiveTables =
        function_config(stack.template(), stack.resources(), "EventFanoutFunction")?;
    Ok(cellbridge::events::wiring::event_log(
        stack.sdk_config(),
        &tables,
    ))
}
