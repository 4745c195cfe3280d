//! `cargo xtask bench cost`: a simulated fleet on the local stack for a fixed window; the units
//! AWS would bill for what happened, read from the stack's meters (broker, topic rules, Lambda
//! invoker, and the MiniStack processes' DynamoDB and SQS meters), priced per device per month
//! with the dated price table ([`super::cost`]).
//!
//! Each unit goes to the flow that caused it, named as a fleet manager would name it: a Lambda
//! invocation, a DynamoDB write or an SQS request to the flow of the function that made it (the
//! SDK puts the function's name in its user agent); an MQTT message to the flow of the topic rule
//! its topic fires; a rule to the flow of the function its action reaches.

use super::cost::{self, Bill, Billed, PriceTable, Usage, Window};
use super::devices::{
    ingest_metrics, percentile, settle, start_fleet, start_stack, stop_fleet, wait_registered,
};
use super::{publish, DocSection, Machine};
use anyhow::{Context, Result};
use devstack::billing::{
    ApiUsage, BrokerUsage, FunctionUsage, LambdaSnapshot, DEVSTACK_CALLER, EVENT_SOURCE_CALLER,
    RULES_ENGINE_CALLER,
};
use devstack::iot::RulesStats;
use devstack::ministack::{read_meter, EmulatorMeter};
use devstack::template::{FunctionSpec, Resources, RuleActionSpec, TopicRuleSpec};
use devstack::Devstack;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// How the simulated devices behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FleetBehaviour {
    /// The device contract: a sample a second, published in batches once a minute (as many as
    /// fit one 5 KB metered message), presence from MQTT keep-alive, no heartbeats.
    Batched,
    /// Someone watches every device: each sample published as it is taken (a `live` command),
    /// no heartbeats. Its cost per device-month over 730 is the cost of a watched device-hour.
    Live,
    /// The legacy system's rates: one telemetry message and one heartbeat a second per device.
    Legacy,
}

impl FleetBehaviour {
    fn section(self) -> DocSection {
        match self {
            FleetBehaviour::Batched => DocSection {
                name: "cost-batched",
                heading: "Cost: devices in batches",
                begin: "<!-- cost-batched:begin (written by `cargo xtask bench cost --fleet batched`) -->",
                end: "<!-- cost-batched:end -->",
            },
            FleetBehaviour::Live => DocSection {
                name: "cost-live",
                heading: "Cost: devices streaming live",
                begin: "<!-- cost-live:begin (written by `cargo xtask bench cost --fleet live`) -->",
                end: "<!-- cost-live:end -->",
            },
            FleetBehaviour::Legacy => DocSection {
                name: "cost-legacy",
                heading: "Cost: devices at the legacy rates",
                begin: "<!-- cost-legacy:begin (written by `cargo xtask bench cost --fleet legacy`) -->",
                end: "<!-- cost-legacy:end -->",
            },
        }
    }

    fn describe(self) -> &'static str {
        match self {
            FleetBehaviour::Batched => {
                "each sampling every second and publishing its samples in one message a minute (presence from MQTT keep-alive, no heartbeats), as the device contract has it"
            }
            FleetBehaviour::Live => {
                "each streaming every sample as it takes it, once a second (live mode: someone is watching), no heartbeats"
            }
            FleetBehaviour::Legacy => {
                "each sending one telemetry message (one sample) and one heartbeat a second over MQTT, as the legacy system's devices do"
            }
        }
    }

    pub(crate) fn options(self, fleet: &mut device_sim::FleetOptions) {
        match self {
            FleetBehaviour::Batched => {
                fleet.telemetry_every = Duration::from_secs(1);
                fleet.batch_every = Some(Duration::from_secs(60));
                fleet.heartbeat_every = None;
            }
            FleetBehaviour::Live => {
                fleet.telemetry_every = Duration::from_secs(1);
                fleet.batch_every = None;
                fleet.heartbeat_every = None;
            }
            FleetBehaviour::Legacy => {
                fleet.telemetry_every = Duration::from_secs(1);
                fleet.batch_every = None;
                fleet.heartbeat_every = Some(Duration::from_secs(1));
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Architecture {
    Arm64,
    X86_64,
}

#[derive(clap::Args)]
pub struct CostArgs {
    /// Simulated devices.
    #[arg(long, default_value_t = 100)]
    pub devices: usize,
    /// Length of the measured window, after every device registered: several of the devices'
    /// batch periods.
    #[arg(long, default_value_t = 300)]
    pub seconds: u64,
    #[arg(long, value_enum, default_value = "batched")]
    pub fleet: FleetBehaviour,
    /// Region whose prices to use (infra/bench/aws-prices.yaml).
    #[arg(long, default_value = cost::BASE_REGION)]
    pub region: String,
    /// Lambda architecture to price; by default the template's `Architecture` parameter's.
    #[arg(long, value_enum)]
    pub architecture: Option<Architecture>,
    /// What to price: a fleet per device-month (`--fleet` says how its devices behave), a
    /// 10,000-device bulk change on each carrier, or a console user's day of API use.
    #[arg(long, value_enum, default_value = "fleet")]
    pub scenario: CostScenario,
    /// Devices in each carrier's metered bulk change (`--scenario bulk-change`), scaled to 10,000.
    #[arg(long, default_value_t = 1000)]
    pub bulk_devices: u32,
    /// Print the results only; leave docs/benchmarks.md untouched.
    #[arg(long)]
    pub no_write: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CostScenario {
    Fleet,
    BulkChange,
    ConsoleDay,
}

/// Every meter of the stack at one moment.
pub(crate) struct Meters {
    broker: BrokerUsage,
    rules: RulesStats,
    lambda: LambdaSnapshot,
    api: ApiUsage,
    emulators: EmulatorMeter,
}

impl Meters {
    pub(crate) async fn read(stack: &Devstack, http: &reqwest::Client) -> Result<Meters> {
        let dynamodb = read_meter(http, &stack.aws().dynamodb().endpoint())
            .await
            .context("reading MiniStack's DynamoDB meter")?;
        let sqs = read_meter(http, &stack.aws().sqs().endpoint())
            .await
            .context("reading MiniStack's SQS meter")?;
        let moto = read_meter(http, &stack.aws().moto().endpoint())
            .await
            .context("reading moto's meter (S3, Secrets Manager, IoT registry)")?;
        Ok(Meters {
            broker: stack.broker().usage(),
            rules: stack.iot_stats().rules,
            lambda: stack.invoker().usage(),
            api: stack.api_usage(),
            // Each process meters only the services it serves.
            emulators: EmulatorMeter::merged([
                EmulatorMeter {
                    dynamodb: dynamodb.dynamodb,
                    ..EmulatorMeter::default()
                },
                EmulatorMeter {
                    sqs: sqs.sqs,
                    ..EmulatorMeter::default()
                },
                EmulatorMeter {
                    requests: moto.requests,
                    ..EmulatorMeter::default()
                },
            ]),
        })
    }

    /// What happened between `before` and this reading, over `window`.
    pub(crate) fn since(&self, before: &Meters, window: Duration) -> Measured {
        Measured {
            broker: self.broker.since(&before.broker),
            rules: rules_since(&self.rules, &before.rules),
            functions: self.lambda.since(&before.lambda),
            api: self.api.since(&before.api),
            emulators: self.emulators.since(&before.emulators),
            window,
            sample_age_ms: Vec::new(),
        }
    }
}

/// What happened during the window, from two readings of the meters.
pub(crate) struct Measured {
    broker: BrokerUsage,
    rules: RulesStats,
    functions: Vec<FunctionUsage>,
    api: ApiUsage,
    emulators: EmulatorMeter,
    pub(crate) window: Duration,
    /// From when a sample was taken to its write, sorted: how fresh what readers see is.
    sample_age_ms: Vec<f64>,
}

pub async fn run(args: CostArgs) -> Result<()> {
    match args.scenario {
        CostScenario::Fleet => run_fleet(args).await,
        CostScenario::BulkChange => super::activity_cost::bulk_change(args).await,
        CostScenario::ConsoleDay => super::activity_cost::console_day(args).await,
    }
}

/// The Lambda architecture to price: the one asked for, else the template's default.
pub(crate) fn architecture(args: &CostArgs, stack: &Devstack) -> Architecture {
    args.architecture.unwrap_or_else(
        || match stack.template().parameter_default("Architecture") {
            Some("x86_64") => Architecture::X86_64,
            _ => Architecture::Arm64,
        },
    )
}

async fn run_fleet(args: CostArgs) -> Result<()> {
    let root = devstack::tools::workspace_root();
    let table = PriceTable::load(&root.join(cost::PRICE_TABLE))?;
    let prices = table.prices(&args.region)?;
    let (stack, log) = start_stack(&root, "bench-cost.log", false).await?;
    let outcome = measure(&stack, &args, &log).await;
    let flows = Flows::of(&stack);
    let architecture = architecture(&args, &stack);
    stack.shutdown().await;
    let measured = outcome?;
    let usage = flows.usage(&measured, architecture, &|function| {
        Some(flow_of_function(function).to_owned())
    });
    let bill = cost::price(
        &usage.per_device,
        Window {
            devices: args.devices as u64,
            duration: measured.window,
        },
        &prices,
    )?;
    // The window priced as one "device" is the whole deployment's month.
    let fixed = cost::price(
        &usage.fixed,
        Window {
            devices: 1,
            duration: measured.window,
        },
        &prices,
    )?;
    let machine = Machine::detect(&root).await;
    let markdown = markdown(
        &args,
        architecture,
        &table.checked,
        &measured,
        (&bill, &fixed),
        &machine,
    );
    publish(&root, &args.fleet.section(), &markdown, args.no_write)
}

async fn measure(stack: &Devstack, args: &CostArgs, log: &Path) -> Result<Measured> {
    let mut options = device_sim::FleetOptions::new(stack.mqtt_address());
    options.devices = args.devices;
    options.prefix = "cost".to_owned();
    options.tenant = "demo".to_owned();
    options.start_spread = Duration::from_secs(10);
    args.fleet.options(&mut options);
    let (simulator, fleet) = start_fleet(options)?;
    let outcome = async {
        wait_registered(&fleet, args.devices).await?;
        settle(stack, args.devices).await?;
        let http = reqwest::Client::new();
        let log_offset = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
        let before = Meters::read(stack, &http).await?;
        let started = Instant::now();
        let bar = ProgressBar::new(args.seconds).with_style(ProgressStyle::with_template(
            "  {bar:40} {pos}/{len} s metered",
        )?);
        while started.elapsed() < Duration::from_secs(args.seconds) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            bar.set_position(started.elapsed().as_secs());
        }
        bar.finish();
        let after = Meters::read(stack, &http).await?;
        let window = started.elapsed();
        // Let the window's last batches land in the log.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut sample_age_ms: Vec<f64> = ingest_metrics(log, log_offset)?
            .into_iter()
            .flat_map(|b| b.sample_age_ms)
            .collect();
        sample_age_ms.sort_by(f64::total_cmp);
        anyhow::Ok(Measured {
            sample_age_ms,
            ..after.since(&before, window)
        })
    }
    .await;
    stop_fleet(simulator, fleet).await;
    outcome
}

/// The rules' counters between two readings.
fn rules_since(after: &RulesStats, before: &RulesStats) -> RulesStats {
    let mut rules = after.clone();
    for rule in &mut rules.rules {
        if let Some(b) = before.rules.iter().find(|b| b.name == rule.name) {
            rule.matched -= b.matched.min(rule.matched);
            rule.actions_succeeded -= b.actions_succeeded.min(rule.actions_succeeded);
            rule.actions_failed -= b.actions_failed.min(rule.actions_failed);
            rule.error_actions_sent -= b.error_actions_sent.min(rule.error_actions_sent);
            rule.error_actions_failed -= b.error_actions_failed.min(rule.error_actions_failed);
            rule.sqs_requests_billed -= b.sqs_requests_billed.min(rule.sqs_requests_billed);
        }
    }
    rules
}

/// The flow of each function's work, as the people who run a fleet name it.
pub(crate) fn flow_of_function(binary: &str) -> &str {
    match binary {
        "telemetry-ingest" => "telemetry",
        "device-presence" | "presence-sweep" => "presence",
        "device-registration" => "registration",
        "device-commands" | "command-ack" | "command-sweep" => "commands",
        "api-authorizer" | "auth-login" | "users" | "device-api" | "bulk-status"
        | "service-providers" | "sim-api" => "API",
        "bulk-intake" | "bulk-planner" | "bulk-scheduler" | "carrier-worker"
        | "carrier-callbacks" => "bulk changes",
        "carrier-sync" => "carrier sync",
        "event-recorder" | "event-fanout" | "live-socket" => "live events",
        other => other,
    }
}

/// Where each rule, queue, route and topic leads, from the template: to the function whose work
/// it is.
pub(crate) struct Flows {
    /// Rule name → its topic filter and the function it leads to.
    rules: Vec<(String, String, String)>,
    /// Queue name → the function it feeds.
    queues: BTreeMap<String, String>,
    /// Route key (`GET /devices`) → the function that answers it.
    routes: BTreeMap<String, String>,
    /// Binary → memory size in MB.
    memory_mb: BTreeMap<String, u64>,
    /// Binaries run on a schedule, with the schedule's period in AWS: their invocations cost
    /// the same whatever the fleet's size.
    scheduled: BTreeMap<String, Duration>,
}

/// The window's usage: what grows with the fleet, and what a deployment pays whatever its size.
pub(crate) struct FleetUsage {
    pub(crate) per_device: Vec<Usage>,
    pub(crate) fixed: Vec<Usage>,
}

/// The line a function's units go to on the bill; `None` leaves them out. `connectivity` stands
/// for the devices' connected time.
pub(crate) type LineOf<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Flows {
    pub(crate) fn of(stack: &Devstack) -> Flows {
        let resources = stack.resources();
        let functions = stack.functions();
        let rules = stack
            .template()
            .topic_rules(resources)
            .unwrap_or_default()
            .iter()
            .map(|rule| {
                let function =
                    rule_function(rule, functions, resources).unwrap_or_else(|| rule.name.clone());
                (rule.name.clone(), topic_filter(&rule.sql), function)
            })
            .collect();
        let queues = functions
            .iter()
            .flat_map(|f| {
                f.sqs_sources.iter().filter_map(|source| {
                    let name = resources.queue_name(&source.queue_logical_id)?;
                    Some((name.to_owned(), f.binary.clone()))
                })
            })
            .collect();
        let routes = functions
            .iter()
            .flat_map(|f| {
                f.http_routes.iter().map(|route| {
                    let key = match &route.path {
                        Some(path) => format!("{} {path}", route.method),
                        None => "$default".to_owned(),
                    };
                    (key, f.binary.clone())
                })
            })
            .collect();
        let memory_mb = functions
            .iter()
            .map(|f| (f.binary.clone(), f.memory_size_mb))
            .collect();
        let scheduled = functions
            .iter()
            .filter_map(|f| {
                let every = f.schedules.iter().filter_map(|s| s.every).min()?;
                Some((f.binary.clone(), every))
            })
            .collect();
        Flows {
            rules,
            queues,
            routes,
            memory_mb,
            scheduled,
        }
    }

    /// The function of a topic pattern: that of the rule its messages fire, or else that of the
    /// rule of the same subject (`devices/+/commands` goes with `devices/+/commands/ack`).
    fn of_topic(&self, pattern: &str) -> String {
        if let Some((_, _, function)) = self
            .rules
            .iter()
            .find(|(_, filter, _)| filter_matches(filter, pattern))
        {
            return function.clone();
        }
        let subject = |topic: &str| topic.split('/').take(3).collect::<Vec<_>>().join("/");
        self.rules
            .iter()
            .find(|(_, filter, _)| subject(filter) == subject(pattern))
            .map(|(_, _, function)| function.clone())
            .unwrap_or_else(|| pattern.to_owned())
    }

    fn of_rule(&self, name: &str) -> String {
        self.rules
            .iter()
            .find(|(rule, _, _)| rule == name)
            .map(|(_, _, function)| function.clone())
            .unwrap_or_else(|| name.to_owned())
    }

    fn of_route(&self, route: &str) -> String {
        self.routes
            .get(route)
            .cloned()
            .unwrap_or_else(|| route.to_owned())
    }

    /// A caller of the emulators: a function, the event sources (by queue), the rules engine
    /// (billed through the rules' own counts) or the stack itself (not billed).
    fn of_caller(&self, caller: &str, queue: &str) -> Option<String> {
        match caller {
            RULES_ENGINE_CALLER | DEVSTACK_CALLER => None,
            EVENT_SOURCE_CALLER => Some(
                self.queues
                    .get(queue)
                    .cloned()
                    .unwrap_or_else(|| format!("queue {queue}")),
            ),
            function => Some(function.to_owned()),
        }
    }

    /// The measured units on the lines `line_of` gives each function.
    pub(crate) fn usage(
        &self,
        measured: &Measured,
        architecture: Architecture,
        line_of: LineOf<'_>,
    ) -> FleetUsage {
        let mut per_device = Vec::new();
        let mut fixed = Vec::new();
        let mut add = |function: &str, billed: Billed, units: f64, is_fixed: bool| {
            let Some(flow) = line_of(function) else {
                return;
            };
            if units > 0.0 {
                let usage = Usage {
                    flow,
                    billed,
                    units,
                };
                if is_fixed {
                    fixed.push(usage);
                } else {
                    per_device.push(usage);
                }
            }
        };
        add(
            "connectivity",
            Billed::IotConnectionMinutes,
            measured.broker.connection_minutes(),
            false,
        );
        for topic in &measured.broker.topics {
            add(
                &self.of_topic(&topic.pattern),
                Billed::IotMessages,
                (topic.published_units + topic.delivered_units) as f64,
                false,
            );
        }
        for rule in &measured.rules.rules {
            let function = self.of_rule(&rule.name);
            add(
                &function,
                Billed::IotRulesTriggered,
                rule.matched as f64,
                false,
            );
            add(
                &function,
                Billed::IotRuleActions,
                (rule.actions_succeeded + rule.actions_failed + rule.error_actions_sent) as f64,
                false,
            );
            add(
                &function,
                Billed::SqsRequests,
                rule.sqs_requests_billed as f64,
                false,
            );
        }
        for route in &measured.api.routes {
            add(
                &self.of_route(&route.route),
                Billed::ApiRequests,
                route.billed_units as f64,
                false,
            );
        }
        let gb_seconds = match architecture {
            Architecture::Arm64 => Billed::LambdaGbSecondsArm,
            Architecture::X86_64 => Billed::LambdaGbSecondsX86,
        };
        for function in &measured.functions {
            let name = function.function.as_str();
            let memory_mb = self.memory_mb.get(name).copied().unwrap_or(128);
            let gb_per_ms = memory_mb as f64 / 1024.0 / 1000.0;
            match self.scheduled.get(name) {
                // The local stack runs schedules more often than AWS would, so that a developer
                // sees them work: count the invocations EventBridge would make in the window,
                // each as long as the median local one.
                Some(every) => {
                    let invocations = measured.window.as_secs_f64() / every.as_secs_f64();
                    add(name, Billed::LambdaRequests, invocations, true);
                    let ms = invocations * function.median_ms.max(1) as f64;
                    add(name, gb_seconds, ms * gb_per_ms, true);
                }
                None => {
                    add(
                        name,
                        Billed::LambdaRequests,
                        function.invocations as f64,
                        false,
                    );
                    add(
                        name,
                        gb_seconds,
                        function.billed_ms as f64 * gb_per_ms,
                        false,
                    );
                }
            }
        }
        for row in &measured.emulators.dynamodb {
            if let Some(function) = self.of_caller(&row.caller, "") {
                add(
                    &function,
                    Billed::DynamodbWriteUnits,
                    row.write_units,
                    false,
                );
                add(&function, Billed::DynamodbReadUnits, row.read_units, false);
            }
        }
        for row in &measured.emulators.sqs {
            // An event source polling an empty queue does so whatever the fleet's size, and
            // Lambda's pollers wait 20 s a receive where the local ones return sooner: only the
            // polling that fetched messages is counted.
            if row.caller == EVENT_SOURCE_CALLER && row.messages == 0 {
                continue;
            }
            if let Some(function) = self.of_caller(&row.caller, &row.queue) {
                add(
                    &function,
                    Billed::SqsRequests,
                    row.billed_requests as f64,
                    false,
                );
            }
        }
        for row in &measured.emulators.requests {
            let billed = match (row.service.as_str(), row.kind.as_str()) {
                ("s3", "put" | "list") => Billed::S3PutRequests,
                ("s3", "get") => Billed::S3GetRequests,
                ("secretsmanager", _) => Billed::SecretsManagerApiCalls,
                ("iot", _) => Billed::IotRegistryOperations,
                // S3 deletes are free; moto's other services are not priced here.
                _ => continue,
            };
            if let Some(function) = self.of_caller(&row.caller, "") {
                add(&function, billed, row.requests as f64, false);
            }
        }
        FleetUsage { per_device, fixed }
    }
}

/// The topic filter of a rule's SQL (`... FROM 'filter' ...`; the SELECT may quote strings too).
fn topic_filter(sql: &str) -> String {
    let from = sql
        .to_ascii_uppercase()
        .rfind(" FROM ")
        .map_or(0, |at| at + 6);
    sql[from..]
        .split('\'')
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

/// Whether `filter` (with `+` and `#`) matches a topic pattern (whose `+` levels stand for any
/// device).
fn filter_matches(filter: &str, pattern: &str) -> bool {
    let mut topic = pattern.split('/');
    for level in filter.split('/') {
        match (level, topic.next()) {
            ("#", _) => return true,
            (_, None) => return false,
            ("+", Some(_)) => {}
            (wanted, Some(actual)) if wanted == actual => {}
            _ => return false,
        }
    }
    topic.next().is_none()
}

/// The function a rule's first action leads to: the one it invokes, or the one fed by the queue
/// it sends to.
fn rule_function(
    rule: &TopicRuleSpec,
    functions: &[FunctionSpec],
    resources: &Resources,
) -> Option<String> {
    let function = match rule.actions.first()? {
        RuleActionSpec::Lambda { function_arn } => {
            let logical_id = &resources.by_arn(function_arn)?.logical_id;
            functions.iter().find(|f| &f.logical_id == logical_id)?
        }
        RuleActionSpec::Sqs { queue_url, .. } => functions.iter().find(|f| {
            f.sqs_sources
                .iter()
                .any(|s| resources.queue_url(&s.queue_logical_id) == Some(queue_url.as_str()))
        })?,
        _ => return None,
    };
    Some(function.binary.clone())
}

fn markdown(
    args: &CostArgs,
    architecture: Architecture,
    checked: &str,
    measured: &Measured,
    (bill, fixed): (&Bill, &Bill),
    machine: &Machine,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {} simulated devices, {}, metered for {} s after every device registered. Units are what AWS would bill (IoT messages in 5 KB units of topic and payload, one SQS `SendMessage` per rule execution, Lambda milliseconds at each function's template memory on {}, DynamoDB units by item size), priced with {} in {} (checked {checked}) and scaled to one device for a 730-hour month.\n",
        machine.measured_with(&format!("cost --fleet {}", fleet_name(args.fleet))),
        args.devices,
        args.fleet.describe(),
        measured.window.as_secs(),
        match architecture {
            Architecture::Arm64 => "arm64",
            Architecture::X86_64 => "x86_64",
        },
        cost::PRICE_TABLE,
        args.region,
    );
    let _ = writeln!(
        out,
        "**${:.2} per device per month**, and ${:.2} a month whatever the fleet's size (the scheduled functions' invocations at their template rates): {} a month for 10,000 devices.\n",
        bill.total(),
        fixed.total(),
        thousands(bill.total() * 10_000.0 + fixed.total()),
    );
    if args.fleet == FleetBehaviour::Live {
        let _ = writeln!(
            out,
            "A device streaming live costs **${:.4} per watched hour** (the device-month over 730 hours).\n",
            bill.total() / 730.0
        );
    }
    if !measured.sample_age_ms.is_empty() {
        let p50 = percentile(&measured.sample_age_ms, 0.50);
        let p95 = percentile(&measured.sample_age_ms, 0.95);
        let _ = writeln!(
            out,
            "Freshness, from a sample taken on the device to it stored and readable through the API: p50 {:.1} s, p95 {:.1} s ({} samples).\n",
            p50 / 1000.0,
            p95 / 1000.0,
            measured.sample_age_ms.len()
        );
    }
    out.push_str("| flow | $ per device-month | share |\n|---|---:|---:|\n");
    for (flow, dollars) in bill.by_flow() {
        let _ = writeln!(
            out,
            "| {flow} | {dollars:.4} | {:.0}% |",
            dollars / bill.total() * 100.0
        );
    }
    out.push('\n');
    out.push_str(&bill.markdown());
    out.push('\n');
    if !fixed.lines.is_empty() {
        out.push_str(
            "Whatever the fleet's size (the table's device-month columns are the deployment's month here):\n\n",
        );
        out.push_str(&fixed.markdown());
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "Lambda duration is each invocation's round trip through `cargo lambda watch` on this machine, rounded up to the millisecond: an upper bound of what Lambda bills. Median invocations: {}.",
        measured
            .functions
            .iter()
            .map(|f| format!("{} {} ms", f.function, f.median_ms))
            .collect::<Vec<_>>()
            .join(", ")
    );
    out
}

/// `$139,645`
fn thousands(dollars: f64) -> String {
    format!("${}", grouped(dollars.max(0.0).round() as u64))
}

/// `139,645`
pub(crate) fn grouped(whole: u64) -> String {
    let whole = whole.to_string();
    let mut out = String::new();
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn fleet_name(fleet: FleetBehaviour) -> &'static str {
    match fleet {
        FleetBehaviour::Batched => "batched",
        FleetBehaviour::Live => "live",
        FleetBehaviour::Legacy => "legacy",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_patterns_match_rule_filters_level_by_level() {
        assert!(filter_matches("devices/+/telemetry", "devices/+/telemetry"));
        assert!(filter_matches(
            "$aws/events/presence/+/+",
            "$aws/events/presence/connected/+"
        ));
        assert!(!filter_matches(
            "devices/+/commands/ack",
            "devices/+/commands"
        ));
        assert!(!filter_matches(
            "devices/+/register",
            "devices/+/register/accepted"
        ));
        assert!(filter_matches("devices/#", "devices/+/register/accepted"));
    }

    #[test]
    fn dollars_are_grouped_by_thousands() {
        assert_eq!(thousands(139_645.4), "$139,645");
        assert_eq!(thousands(999.0), "$999");
        assert_eq!(thousands(1_000.0), "$1,000");
    }

    #[test]
    fn a_rules_filter_is_read_from_its_sql() {
        assert_eq!(
            topic_filter("SELECT *, topic(2) AS deviceId FROM 'devices/+/telemetry' WHERE x > 1"),
            "devices/+/telemetry"
        );
        assert_eq!(
            topic_filter("SELECT 'heartbeat' AS eventType from 'devices/+/heartbeat'"),
            "devices/+/heartbeat"
        );
    }
}
