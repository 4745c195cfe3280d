//! The whole local stack, started in order: the AWS emulators, the template's resources, the function builds,
//! the MQTT broker and IoT data plane, `cargo lambda watch`, the SQS and DynamoDB stream pollers,
//! the IoT rules engine and the API.

use crate::api_client::ApiClient;
use crate::api_gateway::{routes_of, ApiGateway, ApiGatewayOptions, ApiRoute, StaticFiles};
use crate::billing::ApiUsage;
use crate::carriers::LocalCarriers;
use crate::iot::{
    Broker, BrokerOptions, BrokerStats, DataPlane, RulesEngine, RulesOptions, RulesStats,
};
use crate::lambda_watch::{prebuild, Build, ChildOutput, Invoker, LambdaWatch, LambdaWatchOptions};
use crate::local_aws::{LocalAws, LocalAwsPorts};
use crate::schedules::Schedules;
use crate::sqs_source::{SqsPollers, SqsSourceOptions};
use crate::stream_source::{StreamPollers, StreamSourceOptions, StreamSourceStats};
use crate::template::{FunctionSpec, ResourceKind, Resources, Template};
use crate::tools::Tools;
use crate::websocket_api::{WebSocketApi, WebSocketApiOptions};
use anyhow::{bail, Context, Result};
use aws_config::SdkConfig;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct DevstackOptions {
    /// Workspace root: template.yaml, the functions and .venv live here.
    pub root: PathBuf,
    /// Defaults to `<root>/template.yaml`.
    pub template: Option<PathBuf>,
    /// Port of the local API; 0 picks a free one.
    pub api_port: u16,
    /// Port of the WebSocket API (the live event stream); 3001 by default, 0 picks a free one.
    pub live_port: u16,
    /// Port of the MQTT broker (AWS IoT Core); 1883 by default, 0 picks a free one.
    pub mqtt_port: u16,
    /// Port of the IoT data plane (`IOT_DATA_ENDPOINT`); 0 picks a free one.
    pub iot_data_port: u16,
    /// Ports of the AWS emulators; 0 picks a free one.
    pub aws_ports: LocalAwsPorts,
    /// Port `cargo lambda watch` takes invocations on; 0 picks a free one.
    pub lambda_port: u16,
    /// Create the demo tenants and users (see [`crate::demo_accounts`]).
    pub demo_accounts: bool,
    /// Generated env file and logs; defaults to `<root>/.devstack` (gitignored).
    pub log_dir: PathBuf,
    /// Output of cargo-lambda, cargo and the functions; `None` is `<log_dir>/cargo-lambda.log`.
    pub function_output: Option<ChildOutput>,
    /// Build the function binaries before starting, so first invocations do not compile.
    pub prebuild: bool,
    /// Rebuild and restart functions when their sources change.
    pub reload: bool,
    /// Instances per function (`cargo lambda watch --concurrency`), also capping every SQS
    /// source's concurrency. `None`: the largest concurrency of any SQS source (at least 2), so
    /// the template's MaximumConcurrency holds. cargo-lambda 1.9 starts instances up to this
    /// number on a function's first request, so a lower cap saves memory on small machines.
    pub lambda_concurrency: Option<usize>,
    pub sqs: SqsSourceOptions,
    /// How the DynamoDB stream pollers poll and back off.
    pub streams: StreamSourceOptions,
    /// Extra time a function's first invocation may take to compile it.
    pub compile_allowance: Duration,
    /// `CARGO_TARGET_DIR` for the function builds; `None` keeps the inherited one.
    pub target_dir: Option<PathBuf>,
    /// Cargo profile of the function builds; `None` is the dev profile `cargo lambda watch`
    /// uses by default.
    pub function_profile: Option<String>,
    /// The carrier simulators the functions talk to; `None` runs without carriers.
    pub carriers: Option<carrier_sim::SimConfig>,
    /// Port of the carrier simulators; 0 picks a free one.
    pub carrier_port: u16,
    /// How often the worker follows up requests a carrier accepted for later.
    pub accepted_check_interval: Duration,
    /// Replaces the period of every `rate(...)` schedule locally; `None` keeps the template's.
    pub schedule_period: Option<Duration>,
    /// Environment of every function over the template's (as a stack parameter would set it).
    pub function_env: BTreeMap<String, String>,
}

impl DevstackOptions {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        Self {
            template: None,
            api_port: 3000,
            live_port: 3001,
            mqtt_port: 1883,
            iot_data_port: 0,
            aws_ports: LocalAwsPorts::default(),
            lambda_port: 0,
            demo_accounts: true,
            log_dir: root.join(".devstack"),
            function_output: None,
            prebuild: true,
            reload: false,
            lambda_concurrency: None,
            sqs: SqsSourceOptions::default(),
            streams: StreamSourceOptions::default(),
            compile_allowance: Duration::from_secs(20 * 60),
            target_dir: None,
            function_profile: None,
            carriers: Some(carrier_sim::SimConfig::default()),
            carrier_port: 0,
            // Callbacks normally finish the work first; a minute leaves them time on a busy laptop.
            accepted_check_interval: Duration::from_secs(60),
            schedule_period: Some(Duration::from_secs(15)),
            function_env: BTreeMap::new(),
            root,
        }
    }

    fn output(&self) -> ChildOutput {
        self.function_output
            .clone()
            .unwrap_or_else(|| ChildOutput::LogFile(self.log_dir.join("cargo-lambda.log")))
    }
}

impl Default for DevstackOptions {
    fn default() -> Self {
        Self::new(crate::tools::workspace_root())
    }
}

/// Where the console's pages link their bundled script and styles, and where the bundle is
/// built (`cargo xtask web`); in AWS, CloudFront serves that path from S3.
pub const CONSOLE_ASSETS_PATH: &str = "/console/assets";
pub const CONSOLE_ASSETS_DIR: &str = "functions/console/web/dist";

/// The template's table of tenants and users.
pub const ACCOUNTS_TABLE: &str = "AccountsTable";

pub struct Devstack {
    template: Template,
    aws: LocalAws,
    sdk: SdkConfig,
    resources: Resources,
    functions: Vec<FunctionSpec>,
    routes: Vec<ApiRoute>,
    lambda: LambdaWatch,
    pollers: SqsPollers,
    stream_pollers: StreamPollers,
    schedules: Schedules,
    api: ApiGateway,
    live: Option<WebSocketApi>,
    output: ChildOutput,
    carriers: Option<LocalCarriers>,
    broker: Broker,
    iot_data: DataPlane,
    rules: RulesEngine,
}

/// The IoT side's counters: the broker's and each topic rule's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IotStats {
    pub broker: BrokerStats,
    pub rules: RulesStats,
}

impl Devstack {
    /// Starts everything; on error, what was started is stopped again.
    pub async fn start(opts: DevstackOptions) -> Result<Self> {
        let tools = Tools::at(&opts.root);
        tools.require()?;
        let template_path = opts
            .template
            .clone()
            .unwrap_or_else(|| opts.root.join("template.yaml"));
        // Runs `cargo metadata`: keep it off the async workers.
        let template =
            tokio::task::spawn_blocking(move || Template::load(&template_path)).await??;
        let output = opts.output();
        std::fs::create_dir_all(&opts.log_dir).with_context(|| {
            format!("creating the devstack directory {}", opts.log_dir.display())
        })?;

        let binaries = template.function_binaries()?;

        // The build and the emulators are independent: run them side by side.
        let build = async {
            if opts.prebuild {
                let build = Build {
                    target_dir: opts.target_dir.as_deref(),
                    profile: opts.function_profile.as_deref(),
                };
                prebuild(&opts.root, &binaries, &output, build)
                    .await
                    .context("building the functions")?;
            }
            anyhow::Ok(())
        };
        let aws = async {
            let aws = LocalAws::start(&tools, opts.aws_ports).await?;
            // What the stack itself does (provisioning, seeding, the benchmarks' probes) is no
            // traffic a deployment would pay for: its own name keeps it off the meters' bills.
            let sdk = crate::local_aws::for_caller(
                &aws.sdk_config().await,
                crate::billing::DEVSTACK_CALLER,
            );
            let resources = crate::provision::provision(&template, &sdk)
                .await
                .context("provisioning the template's resources in the AWS emulators")?;
            if opts.demo_accounts {
                let table = resources.table_name(ACCOUNTS_TABLE).with_context(|| {
                    format!("the template has no {ACCOUNTS_TABLE} for the demo accounts")
                })?;
                let store = cellbridge::identity::dynamodb::DynamoAccounts::new(
                    aws_sdk_dynamodb::Client::new(&sdk),
                    table,
                );
                crate::demo_accounts::seed(&store).await?;
            }
            anyhow::Ok((aws, sdk, resources))
        };
        let ((), (aws, sdk, resources)) = tokio::try_join!(build, aws)?;

        let functions = template.functions(&resources)?;
        let mut env = function_env(&functions, &aws);
        env.extend(opts.function_env.clone());
        let carriers = match &opts.carriers {
            Some(config) => Some(LocalCarriers::start(opts.carrier_port, config.clone()).await?),
            None => None,
        };
        let concurrency = opts.lambda_concurrency.unwrap_or_else(|| {
            let sources = functions.iter().flat_map(|f| &f.sqs_sources);
            let widest = sources
                .map(|s| {
                    s.maximum_concurrency
                        .unwrap_or(opts.sqs.default_max_concurrency)
                })
                .max();
            usize::try_from(widest.unwrap_or(2).max(2)).unwrap_or(2)
        });
        if let Some(carriers) = &carriers {
            // Stands in for the Secrets Manager reference template.yaml resolves at deploy time.
            env.insert(
                cellbridge::carriers::config::ENV_NAME.to_owned(),
                carriers.accounts_document()?.to_string(),
            );
        }
        env.insert(
            "ACCEPTED_CHECK_INTERVAL_SECONDS".to_owned(),
            opts.accepted_check_interval.as_secs().max(1).to_string(),
        );
        // Before cargo-lambda: the functions' environment names the data plane's port.
        let broker = Broker::start(BrokerOptions {
            port: opts.mqtt_port,
            ..BrokerOptions::default()
        })
        .await
        .context("starting the MQTT broker (AWS IoT Core)")?;
        let iot_data = DataPlane::start(&broker, opts.iot_data_port)
            .await
            .context("starting the IoT data plane")?;
        env.insert(
            cellbridge::devices::wiring::IOT_DATA_ENDPOINT_ENV.to_owned(),
            iot_data.url(),
        );
        // Bound before cargo-lambda: the functions post to its `@connections` endpoint.
        let live = WebSocketApi::bind(
            &template,
            &functions,
            WebSocketApiOptions {
                port: opts.live_port,
                ..WebSocketApiOptions::default()
            },
        )
        .await
        .context("starting the WebSocket API")?;
        if let Some(live) = &live {
            let api_id = resources
                .get(live.api_logical_id())
                .map(|r| r.name.clone())
                .unwrap_or_default();
            env.extend(urls_pointed_at(&functions, &api_id, live.addr()));
        }
        // Bound before cargo-lambda too: the console calls the API at its address.
        let api = ApiGateway::bind(ApiGatewayOptions {
            port: opts.api_port,
            static_files: vec![StaticFiles {
                url_path: CONSOLE_ASSETS_PATH.to_owned(),
                dir: opts.root.join(CONSOLE_ASSETS_DIR),
            }],
        })
        .await?;
        let api_id = resources
            .of_kind(ResourceKind::HttpApi)
            .next()
            .map(|r| r.name.clone())
            .unwrap_or_default();
        env.extend(urls_pointed_at(&functions, &api_id, api.addr()));
        let mut lambda_opts = LambdaWatchOptions::new(&opts.root, opts.log_dir.join("lambda.env"));
        lambda_opts.port = opts.lambda_port;
        lambda_opts.env = env;
        lambda_opts.output = output.clone();
        lambda_opts.reload = opts.reload;
        lambda_opts.concurrency = concurrency;
        lambda_opts.compile_allowance = opts.compile_allowance;
        lambda_opts.target_dir = opts.target_dir.clone();
        lambda_opts.profile = opts.function_profile.clone();
        let lambda = LambdaWatch::start(&tools, lambda_opts)
            .await
            .context("starting cargo lambda watch")?;

        let mut sqs_opts = opts.sqs.clone();
        if let Some(cap) = opts.lambda_concurrency {
            sqs_opts.concurrency_cap = Some(u32::try_from(cap).unwrap_or(u32::MAX));
        }
        let pollers = SqsPollers::start(
            aws_sdk_sqs::Client::new(&crate::local_aws::for_caller(
                &sdk,
                crate::billing::EVENT_SOURCE_CALLER,
            )),
            &functions,
            &resources,
            lambda.invoker(),
            &sqs_opts,
        )?;
        // Lambda's reads of a DynamoDB stream are free: the stack's own name keeps them off the
        // meters' bills.
        let stream_pollers = StreamPollers::start(
            aws_sdk_dynamodbstreams::Client::new(&crate::local_aws::for_caller(
                &sdk,
                crate::billing::DEVSTACK_CALLER,
            )),
            &functions,
            &resources,
            Arc::new(lambda.invoker()),
            &opts.streams,
        )?;
        // With LATEST, what is written before a poller has its place in the stream never
        // reaches the function: a stack that says it is up has its pollers in place.
        let limit = Duration::from_secs(60);
        if !stream_pollers.wait_until_reading(limit).await {
            bail!("the DynamoDB stream pollers were not reading their streams after {limit:?}; see the warnings above");
        }
        let schedules = Schedules::start(&functions, lambda.invoker(), opts.schedule_period);
        let topic_rules = template
            .topic_rules(&resources)
            .context("reading the template's topic rules")?;
        let rules = RulesEngine::start(
            &topic_rules,
            &functions,
            &resources,
            &broker,
            &sdk,
            Arc::new(lambda.invoker()),
            RulesOptions {
                lambda_concurrency: concurrency,
                ..RulesOptions::default()
            },
        )
        .context("starting the IoT rules engine")?;
        let routes = routes_of(&functions, &template.api_auth(&resources)?)?;
        let api = api.serve(routes.clone(), lambda.invoker())?;
        let live = live.map(|bound| bound.serve(lambda.invoker()));
        if let Some(carriers) = &carriers {
            carriers.register_callbacks(&api.url()).await?;
            carriers.seed_providers(&api.url()).await?;
        }
        Ok(Self {
            template,
            aws,
            sdk,
            resources,
            functions,
            routes,
            lambda,
            pollers,
            stream_pollers,
            schedules,
            api,
            live,
            output,
            carriers,
            broker,
            iot_data,
            rules,
        })
    }

    /// Where devices connect: the MQTT broker standing in for AWS IoT Core.
    pub fn mqtt_address(&self) -> SocketAddr {
        self.broker.address()
    }

    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// `IOT_DATA_ENDPOINT` of the functions: the local IoT data plane.
    pub fn iot_data_url(&self) -> String {
        self.iot_data.url()
    }

    /// The broker's counters and each topic rule's.
    pub fn iot_stats(&self) -> IotStats {
        IotStats {
            broker: self.broker.stats(),
            rules: self.rules.stats(),
        }
    }

    /// Signs in through `POST /auth/login` and returns the bearer token.
    pub async fn login(&self, username: &str, password: &str) -> Result<String> {
        let login = ApiClient::anonymous(&self.api_url())?
            .login(username, password)
            .await
            .with_context(|| format!("signing in as {username}"))?;
        Ok(login.token)
    }

    /// A client of the local API signed in as `username`.
    pub async fn sign_in(&self, username: &str, password: &str) -> Result<ApiClient> {
        ApiClient::sign_in(&self.api_url(), username, password)
            .await
            .with_context(|| format!("signing in as {username}"))
    }

    /// The HTTP API's requests so far, per route, as AWS bills them.
    pub fn api_usage(&self) -> ApiUsage {
        self.api.usage()
    }

    /// The live event stream (`ws://127.0.0.1:<port>/<stage>`); empty when the template has no
    /// WebSocket API.
    pub fn live_url(&self) -> String {
        self.live
            .as_ref()
            .map(WebSocketApi::url)
            .unwrap_or_default()
    }

    /// The WebSocket API, when the template has one.
    pub fn live_api(&self) -> Option<&WebSocketApi> {
        self.live.as_ref()
    }

    /// Base URL of the local API, without a trailing slash.
    pub fn api_url(&self) -> String {
        self.api.url()
    }

    /// The carrier simulators, when the stack runs them.
    pub fn carriers(&self) -> Option<&LocalCarriers> {
        self.carriers.as_ref()
    }

    /// The AWS emulators.
    pub fn aws(&self) -> &LocalAws {
        &self.aws
    }

    /// SDK configuration for the stack's AWS emulators.
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.sdk
    }

    /// Names, ARNs and queue URLs by logical id.
    pub fn resources(&self) -> &Resources {
        &self.resources
    }

    pub fn functions(&self) -> &[FunctionSpec] {
        &self.functions
    }

    pub fn template(&self) -> &Template {
        &self.template
    }

    /// Invokes functions directly, as `aws lambda invoke` would.
    pub fn invoker(&self) -> Invoker {
        self.lambda.invoker()
    }

    /// Queues a carrier sync (inventory and usage) of every tenant's service providers now, as
    /// the schedule does.
    pub async fn sync_inventory_now(&self) -> Result<()> {
        let event = crate::schedules::scheduled_event("sync-now");
        self.invoker()
            .invoke("carrier-sync", &event, Duration::from_secs(120))
            .await
            .map_err(|e| anyhow::anyhow!("queueing the carrier syncs: {e}"))?;
        Ok(())
    }

    /// Forgets which day each provider's usage was collected for, and queues the syncs: every
    /// provider reads its SIMs' usage again now (once a day otherwise, so SIMs seeded after the
    /// day's collection would wait for tomorrow).
    pub async fn collect_usage_now(&self) -> Result<()> {
        use aws_sdk_dynamodb::types::AttributeValue;
        let table = self
            .resources
            .table_name("CarrierSyncTable")
            .context("the template has no CarrierSyncTable")?;
        let dynamodb = aws_sdk_dynamodb::Client::new(&self.sdk);
        let mut start = None;
        loop {
            let page = dynamodb
                .scan()
                .table_name(table)
                .filter_expression("begins_with(serviceProviderId, :usage)")
                .expression_attribute_values(":usage", AttributeValue::S("usage#".into()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .context("reading the usage states")?;
            for item in page.items() {
                let (Some(tenant), Some(key)) =
                    (item.get("tenantId"), item.get("serviceProviderId"))
                else {
                    continue;
                };
                // A new version, so a collection writing meanwhile finds it changed and stops.
                dynamodb
                    .update_item()
                    .table_name(table)
                    .key("tenantId", tenant.clone())
                    .key("serviceProviderId", key.clone())
                    .update_expression("REMOVE collectedThrough ADD version :one")
                    .expression_attribute_values(":one", AttributeValue::N("1".into()))
                    .send()
                    .await
                    .context("resetting a usage state")?;
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        self.sync_inventory_now().await
    }

    pub fn lambda_port(&self) -> u16 {
        self.lambda.port()
    }

    /// The last lines printed by cargo-lambda and the functions.
    pub fn function_output_tail(&self) -> String {
        self.lambda.output_tail()
    }

    /// Waits until every ReceiveMessage the SQS pollers of a queue had under way has returned, so
    /// that their later receives apply the queue's attributes as they are now.
    pub async fn wait_for_receives_under_way(&self, logical_id: &str) -> Result<()> {
        let limit = Duration::from_secs(120);
        if !self
            .pollers
            .receives_under_way_returned(logical_id, limit)
            .await
        {
            bail!("the pollers of {logical_id} had a receive under way for over {limit:?}");
        }
        Ok(())
    }

    /// Each DynamoDB stream event source's counters: records delivered, retries, skips.
    pub fn stream_stats(&self) -> Vec<StreamSourceStats> {
        self.stream_pollers.stats()
    }

    /// Messages waiting in a queue (visible ones), by logical id.
    pub async fn queue_depth(&self, logical_id: &str) -> Result<u64> {
        use aws_sdk_sqs::types::QueueAttributeName;
        let url = self
            .resources
            .queue_url(logical_id)
            .with_context(|| format!("the template has no queue {logical_id}"))?;
        let out = aws_sdk_sqs::Client::new(&self.sdk)
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(aws_sdk_sqs::Error::from)?;
        let depth = out
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages));
        Ok(depth.and_then(|d| d.parse().ok()).unwrap_or(0))
    }

    /// Where everything listens, for people.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "cellbridge devstack ({})", self.template.path.display());
        let _ = writeln!(s, "  API          {}", self.api_url());
        for r in &self.routes {
            let _ = writeln!(
                s,
                "                 {:<34} -> {}{}",
                r.route_key(),
                r.function,
                if r.authorizer.is_some() {
                    ""
                } else {
                    "  (no authorizer)"
                }
            );
        }
        let log = match &self.output {
            ChildOutput::LogFile(p) => format!("log {}", p.display()),
            ChildOutput::Prefixed(prefix) => format!("output prefixed [{prefix}]"),
            ChildOutput::Discard => "output discarded".to_owned(),
        };
        let _ = writeln!(
            s,
            "  Functions    cargo lambda watch on http://127.0.0.1:{}  ({log})",
            self.lambda.port()
        );
        for f in &self.functions {
            let _ = writeln!(
                s,
                "                 {:<34} ({}, timeout {:?})",
                f.binary, f.logical_id, f.timeout
            );
        }
        if let Some(live) = &self.live {
            for line in live.summary_lines() {
                let _ = writeln!(s, "  WebSocket    {line}");
            }
        }
        for line in self.pollers.summary() {
            let _ = writeln!(s, "  SQS source   {line}");
        }
        for line in self.stream_pollers.summary() {
            let _ = writeln!(s, "  DDB stream   {line}");
        }
        for line in self.schedules.summary() {
            let _ = writeln!(s, "  Schedule     {line}");
        }
        let limits = self.broker.options();
        let _ = writeln!(
            s,
            "  MQTT         mqtt://{}  (AWS IoT Core: QoS 0/1, presence events, {} KiB payloads, {} publishes/s per connection)",
            self.broker.address(),
            limits.max_payload_bytes / 1024,
            limits.max_publishes_per_second
        );
        let _ = writeln!(
            s,
            "  IoT data     {}  (IOT_DATA_ENDPOINT: Publish, DeleteConnection)",
            self.iot_data.url()
        );
        for line in self.rules.summary() {
            let _ = writeln!(s, "  Topic rule   {line}");
        }
        for line in self.aws.summary() {
            let _ = writeln!(s, "  {line}");
        }
        let names = |kind| {
            self.resources
                .of_kind(kind)
                .map(|r| r.name.clone())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(s, "  Tables       {}", names(ResourceKind::Table));
        for q in self.resources.of_kind(ResourceKind::Queue) {
            let _ = writeln!(
                s,
                "  Queue        {:<20} {}",
                q.logical_id,
                q.url.as_deref().unwrap_or("-")
            );
        }
        let _ = writeln!(s, "  Buckets      {}", names(ResourceKind::Bucket));
        if self
            .resources
            .of_kind(ResourceKind::ThingType)
            .next()
            .is_some()
        {
            let _ = writeln!(s, "  Thing types  {}", names(ResourceKind::ThingType));
        }
        match &self.carriers {
            Some(c) => {
                let _ = write!(
                    s,
                    "  Carriers     {}  (Jasper {}, ThingSpace {}, Telegence {}; request log {}/_sim/requests)",
                    c.url(),
                    c.server.jasper_url(),
                    c.thingspace_url(),
                    c.telegence_url(),
                    c.url()
                );
            }
            None => {
                let _ = write!(s, "  Carriers     none (CARRIER_ACCOUNTS unset)");
            }
        }
        s
    }

    /// Stops the API, the IoT side, the pollers, cargo-lambda with its functions, and the
    /// emulators.
    pub async fn shutdown(self) {
        self.api.shutdown().await;
        if let Some(live) = self.live {
            live.shutdown().await;
        }
        self.rules.shutdown().await;
        self.iot_data.shutdown().await;
        self.broker.shutdown().await;
        self.schedules.shutdown();
        self.pollers.shutdown().await;
        self.stream_pollers.shutdown().await;
        self.lambda.shutdown().await;
        self.aws.stop().await;
    }
}

/// The variables whose template value is a URL of the WebSocket API's stage in AWS
/// (`https://<api id>.execute-api.<region>.<suffix>/<stage>...`), pointed at the local one.
fn urls_pointed_at(
    functions: &[FunctionSpec],
    api_id: &str,
    local: SocketAddr,
) -> BTreeMap<String, String> {
    functions
        .iter()
        .flat_map(|f| &f.environment)
        .filter(|_| !api_id.is_empty())
        .filter_map(|(name, value)| {
            let (local_scheme, rest) = if let Some(rest) = value.strip_prefix("https://") {
                ("http", rest)
            } else {
                ("ws", value.strip_prefix("wss://")?)
            };
            if !rest.starts_with(&format!("{api_id}.execute-api.")) {
                return None;
            }
            // What follows the host (`/live`) stays as it is.
            let path = rest.split_once('/').map_or("", |(_, p)| p);
            Some((name.clone(), format!("{local_scheme}://{local}/{path}")))
        })
        .collect()
}

/// What every function process gets: the union of the functions' template environments (one
/// cargo-lambda serves them all) and the emulators' endpoints and credentials.
fn function_env(functions: &[FunctionSpec], aws: &LocalAws) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for f in functions {
        for (k, v) in &f.environment {
            if let Some(old) = env.insert(k.clone(), v.clone()) {
                if old != *v {
                    tracing::warn!(
                        "{k} differs between functions ({old:?} vs {v:?} in {}); cargo lambda watch gives all of them {v:?}",
                        f.logical_id
                    );
                }
            }
        }
    }
    env.extend(aws.client_env());
    env
}
