//! The template's topic rules, run locally on every message the broker accepts, as AWS IoT's
//! rules engine runs them: the SQL (`iot_rules`) decides whether a rule fires and what it
//! sends; then its actions run, and when any fails, the rule's error action gets one message
//! with every failure (`{ruleName, topic, cloudwatchTraceId, clientId, base64OriginalPayload,
//! failures: [{failedAction, failedResource, errorMessage}]}`).
//!
//! Actions: Lambda (invoked asynchronously, as AWS does: the action succeeds once the event is
//! queued for the function; a failing function is logged and counted, not sent to the error
//! action), Sqs (`UseBase64`), DynamoDBv2 (each top-level attribute of the output becomes an item
//! attribute) and Republish. Text fields may hold substitution templates (`${topic(2)}`),
//! evaluated against the original message. Other actions are listed but not run.
//!
//! Rules act concurrently and in no particular order across messages (the SQS action's
//! documentation warns of the same). SQS actions go out in batches per queue (`sqs_batches`).
//! If the engine falls more than the broker's buffer behind, the messages it missed are counted
//! as lagged.

use super::broker::{valid_topic_name, Broker, BrokerHandle, BrokerMessage};
use super::sqs_batches::SqsBatches;
use crate::billing::{sqs_request_units, RULES_ENGINE_CALLER};
use crate::lambda_watch::Invoker;
use crate::template::{FunctionSpec, ResourceKind, Resources, RuleActionSpec, TopicRuleSpec};
use anyhow::{Context, Result};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt as _;
use rumqttc::mqttbytes::QoS;
use serde::Serialize;
use serde_json::{json, Value as Json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, oneshot, Semaphore};
use tokio::task::JoinHandle;

/// Runs a function with an event; the devstack's [`Invoker`] in the stack, a fake in tests.
pub trait FunctionInvoker: Send + Sync + 'static {
    /// Invokes `binary` with `event` and resolves once it has run; `Err` carries why it failed.
    fn invoke(
        &self,
        binary: &str,
        event: Json,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<(), String>>;
}

impl FunctionInvoker for Invoker {
    fn invoke(
        &self,
        binary: &str,
        event: Json,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<(), String>> {
        let invoker = self.clone();
        let binary = binary.to_owned();
        async move {
            invoker
                .invoke(&binary, &event, timeout)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        .boxed()
    }
}

#[derive(Debug, Clone)]
pub struct RulesOptions {
    /// Rule firings whose actions may run at once; past that the engine waits for one to end.
    pub max_in_flight: usize,
    /// Invocations in flight per function (at most what cargo-lambda runs at once).
    pub lambda_concurrency: usize,
    /// Events waiting per function; past that a Lambda action fails, as a throttled
    /// asynchronous invocation would.
    pub lambda_queue: usize,
}

impl Default for RulesOptions {
    fn default() -> Self {
        Self {
            max_in_flight: 256,
            lambda_concurrency: 4,
            lambda_queue: 10_000,
        }
    }
}

/// Counters of one rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RuleStats {
    pub name: String,
    pub topic_filter: String,
    pub disabled: bool,
    /// Messages the rule fired on (topic matched, WHERE true).
    pub matched: u64,
    pub actions_succeeded: u64,
    pub actions_failed: u64,
    /// Error messages the error action delivered, and those it could not.
    pub error_actions_sent: u64,
    pub error_actions_failed: u64,
    /// Asynchronous invocations of the rule's Lambda actions that ran to completion or failed.
    pub lambda_completed: u64,
    pub lambda_errors: u64,
    /// The SQS requests AWS would bill for the rule's SQS actions: one `SendMessage` per
    /// execution (in 64 KB chunks), whatever this engine's batching made of them.
    pub sqs_requests_billed: u64,
}

/// The asynchronous invocations of one function, across the rules that invoke it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FunctionBacklog {
    pub binary: String,
    /// Events waiting for an instance.
    pub queued: u64,
    /// Invocations under way.
    pub running: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RulesStats {
    /// Broker messages the engine evaluated.
    pub messages: u64,
    /// Broker messages the engine missed because it fell too far behind.
    pub lagged: u64,
    pub rules: Vec<RuleStats>,
    pub functions: Vec<FunctionBacklog>,
}

#[derive(Default)]
struct RuleCounters {
    matched: AtomicU64,
    actions_succeeded: AtomicU64,
    actions_failed: AtomicU64,
    error_actions_sent: AtomicU64,
    error_actions_failed: AtomicU64,
    lambda_completed: AtomicU64,
    lambda_errors: AtomicU64,
    sqs_requests_billed: AtomicU64,
}

/// Adds one and returns the new count.
fn bump(counter: &AtomicU64) -> u64 {
    counter.fetch_add(1, Ordering::Relaxed) + 1
}

/// Whether the `n`th occurrence of something is logged: the first ten, then at powers of two, so
/// a failure on every message of a busy fleet does not drown the log.
fn worth_logging(n: u64) -> bool {
    n <= 10 || n.is_power_of_two()
}

/// A text field with `${expression}` substitution templates.
struct Substitution {
    parts: Vec<Part>,
}

enum Part {
    Text(String),
    /// The expression as `SELECT <expr> AS substituted FROM '#'`, so the SQL engine evaluates it.
    Expression(iot_rules::Rule),
}

impl Substitution {
    fn parse(text: &str) -> Result<Self> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            // The closing brace at depth 0: an expression may hold an object literal.
            let mut depth = 0usize;
            let mut end = None;
            for (i, c) in after.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        end = Some(i);
                        break;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            let end = end.with_context(|| format!("{text:?}: unclosed ${{"))?;
            let expression = &after[..end];
            let rule =
                iot_rules::Rule::parse(&format!("SELECT {expression} AS substituted FROM '#'"))
                    .with_context(|| format!("{text:?}: the template ${{{expression}}}"))?;
            parts.push(Part::Expression(rule));
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// The text with every template evaluated against the original message; an Undefined
    /// expression gives nothing.
    fn render(&self, message: &iot_rules::Message<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Expression(rule) => {
                    match rule
                        .apply(message)
                        .as_ref()
                        .and_then(|o| o.get("substituted"))
                    {
                        Some(Json::String(s)) => out.push_str(s),
                        Some(Json::Null) | None => {}
                        Some(other) => out.push_str(&other.to_string()),
                    }
                }
            }
        }
        out
    }
}

/// The invocations of one function, shared by every rule that invokes it.
struct LambdaPool {
    binary: String,
    timeout: Duration,
    running: Arc<Semaphore>,
    concurrency: usize,
    queued: AtomicUsize,
    queue_limit: usize,
}

enum Target {
    /// `None`: the ARN is no function of the template, so every invocation fails.
    Lambda(Option<Arc<LambdaPool>>),
    Sqs {
        queue_url: Substitution,
        use_base64: bool,
    },
    DynamoDb {
        table: Substitution,
    },
    Republish {
        topic: Substitution,
        qos: QoS,
    },
    Unsupported,
}

struct Action {
    spec: RuleActionSpec,
    target: Target,
}

impl Action {
    fn describe(&self) -> String {
        match (&self.spec, &self.target) {
            (_, Target::Lambda(Some(pool))) => format!("Lambda {}", pool.binary),
            (RuleActionSpec::Lambda { function_arn }, _) => {
                format!("Lambda {function_arn} (not a function of the template)")
            }
            (RuleActionSpec::Sqs { queue_url, .. }, _) => {
                format!("Sqs {}", queue_url.rsplit('/').next().unwrap_or(queue_url))
            }
            (RuleActionSpec::DynamoDbV2 { table_name }, _) => format!("DynamoDBv2 {table_name}"),
            (RuleActionSpec::Republish { topic, .. }, _) => format!("Republish {topic}"),
            (RuleActionSpec::Unsupported { kind }, _) => format!("{kind} (not emulated)"),
        }
    }
}

struct CompiledRule {
    name: String,
    sql: iot_rules::Rule,
    disabled: bool,
    actions: Vec<Action>,
    error_action: Option<Action>,
    counters: Arc<RuleCounters>,
}

struct Shared {
    rules: Vec<CompiledRule>,
    pools: Vec<Arc<LambdaPool>>,
    broker: BrokerHandle,
    sqs: SqsBatches,
    dynamodb: aws_sdk_dynamodb::Client,
    invoker: Arc<dyn FunctionInvoker>,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    messages: AtomicU64,
    lagged: AtomicU64,
}

/// A failed action, as the error message reports it.
struct Failure {
    action: String,
    resource: String,
    message: String,
}

pub struct RulesEngine {
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// The function an ARN (possibly with a version or alias) designates.
fn function_of<'a>(
    arn: &str,
    functions: &'a [FunctionSpec],
    resources: &Resources,
) -> Option<&'a FunctionSpec> {
    let unqualified: String = arn.split(':').take(7).collect::<Vec<_>>().join(":");
    let resource = resources
        .by_arn(arn)
        .or_else(|| resources.by_arn(&unqualified))
        .filter(|r| r.kind == ResourceKind::Function)?;
    functions
        .iter()
        .find(|f| f.logical_id == resource.logical_id)
}

impl RulesEngine {
    /// Compiles the rules (SQL and templates) and starts evaluating the broker's messages.
    pub fn start(
        rules: &[TopicRuleSpec],
        functions: &[FunctionSpec],
        resources: &Resources,
        broker: &Broker,
        sdk: &SdkConfig,
        invoker: Arc<dyn FunctionInvoker>,
        opts: RulesOptions,
    ) -> Result<Self> {
        let mut pools: HashMap<String, Arc<LambdaPool>> = HashMap::new();
        let mut compile_action = |spec: &RuleActionSpec, rule: &str| -> Result<Action> {
            let target = match spec {
                RuleActionSpec::Lambda { function_arn } => {
                    match function_of(function_arn, functions, resources) {
                        Some(f) => {
                            let pool = pools.entry(f.binary.clone()).or_insert_with(|| {
                                Arc::new(LambdaPool {
                                    binary: f.binary.clone(),
                                    timeout: f.timeout,
                                    running: Arc::new(Semaphore::new(
                                        opts.lambda_concurrency.max(1),
                                    )),
                                    concurrency: opts.lambda_concurrency.max(1),
                                    queued: AtomicUsize::new(0),
                                    queue_limit: opts.lambda_queue.max(1),
                                })
                            });
                            Target::Lambda(Some(pool.clone()))
                        }
                        None => {
                            tracing::warn!("topic rule {rule}: {function_arn} is not a function of the template; its Lambda action will fail");
                            Target::Lambda(None)
                        }
                    }
                }
                RuleActionSpec::Sqs {
                    queue_url,
                    use_base64,
                } => Target::Sqs {
                    queue_url: Substitution::parse(queue_url)?,
                    use_base64: *use_base64,
                },
                RuleActionSpec::DynamoDbV2 { table_name } => Target::DynamoDb {
                    table: Substitution::parse(table_name)?,
                },
                RuleActionSpec::Republish { topic, qos } => Target::Republish {
                    topic: Substitution::parse(topic)?,
                    qos: if *qos == 0 {
                        QoS::AtMostOnce
                    } else {
                        QoS::AtLeastOnce
                    },
                },
                RuleActionSpec::Unsupported { kind } => {
                    tracing::warn!(
                        "topic rule {rule}: the {kind} action is not emulated locally and is skipped"
                    );
                    Target::Unsupported
                }
            };
            Ok(Action {
                spec: spec.clone(),
                target,
            })
        };
        let mut compiled = Vec::new();
        for spec in rules {
            let sql = iot_rules::Rule::parse(&spec.sql)
                .with_context(|| format!("topic rule {}: {}", spec.name, spec.sql))?;
            if let Some(version) = spec.sql_version.as_deref().filter(|v| *v != "2016-03-23") {
                tracing::warn!("topic rule {}: AwsIotSqlVersion {version}; the local engine evaluates it as 2016-03-23", spec.name);
            }
            let actions = spec
                .actions
                .iter()
                .map(|a| compile_action(a, &spec.name))
                .collect::<Result<Vec<_>>>()
                .with_context(|| format!("topic rule {}", spec.name))?;
            let error_action = spec
                .error_action
                .as_ref()
                .map(|a| compile_action(a, &spec.name))
                .transpose()
                .with_context(|| format!("topic rule {}: ErrorAction", spec.name))?;
            compiled.push(CompiledRule {
                name: spec.name.clone(),
                sql,
                disabled: spec.disabled,
                actions,
                error_action,
                counters: Arc::new(RuleCounters::default()),
            });
        }
        let max_in_flight = opts.max_in_flight.max(1);
        let mut pools: Vec<Arc<LambdaPool>> = pools.into_values().collect();
        pools.sort_by(|a, b| a.binary.cmp(&b.binary));
        let shared = Arc::new(Shared {
            rules: compiled,
            pools,
            broker: broker.handle(),
            sqs: SqsBatches::new(aws_sdk_sqs::Client::new(&crate::local_aws::for_caller(
                sdk,
                RULES_ENGINE_CALLER,
            ))),
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            invoker,
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
            messages: AtomicU64::new(0),
            lagged: AtomicU64::new(0),
        });
        // Subscribed before returning, so nothing published after `start` is missed.
        let messages = broker.messages();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(shared.clone(), messages, stopped));
        tracing::info!(
            "IoT rules engine running {} topic rule(s)",
            shared.rules.iter().filter(|r| !r.disabled).count()
        );
        Ok(Self {
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub fn stats(&self) -> RulesStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RulesStats {
            messages: get(&self.shared.messages),
            lagged: get(&self.shared.lagged),
            rules: self
                .shared
                .rules
                .iter()
                .map(|r| RuleStats {
                    name: r.name.clone(),
                    topic_filter: r.sql.topic_filter().to_owned(),
                    disabled: r.disabled,
                    matched: get(&r.counters.matched),
                    actions_succeeded: get(&r.counters.actions_succeeded),
                    actions_failed: get(&r.counters.actions_failed),
                    error_actions_sent: get(&r.counters.error_actions_sent),
                    error_actions_failed: get(&r.counters.error_actions_failed),
                    lambda_completed: get(&r.counters.lambda_completed),
                    lambda_errors: get(&r.counters.lambda_errors),
                    sqs_requests_billed: get(&r.counters.sqs_requests_billed),
                })
                .collect(),
            functions: self
                .shared
                .pools
                .iter()
                .map(|p| FunctionBacklog {
                    binary: p.binary.clone(),
                    queued: p.queued.load(Ordering::Relaxed) as u64,
                    running: p.concurrency.saturating_sub(p.running.available_permits()) as u64,
                })
                .collect(),
        }
    }

    /// One line per rule: name, topic filter, actions and error action.
    pub fn summary(&self) -> Vec<String> {
        self.shared
            .rules
            .iter()
            .map(|r| {
                let actions: Vec<String> = r.actions.iter().map(Action::describe).collect();
                let mut line = format!(
                    "{:<28} '{}' -> {}",
                    r.name,
                    r.sql.topic_filter(),
                    if actions.is_empty() {
                        "no action".to_owned()
                    } else {
                        actions.join(", ")
                    }
                );
                if let Some(e) = &r.error_action {
                    line.push_str(&format!("; errors -> {}", e.describe()));
                }
                if r.disabled {
                    line.push_str("  (disabled)");
                }
                line
            })
            .collect()
    }

    /// Stops taking messages and waits (up to 5 s) for the actions under way.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let all = u32::try_from(self.shared.max_in_flight).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            self.shared.in_flight.acquire_many(all),
        )
        .await;
    }
}

impl Drop for RulesEngine {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn run(
    shared: Arc<Shared>,
    mut messages: broadcast::Receiver<BrokerMessage>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        let message = tokio::select! {
            _ = &mut stop => break,
            received = messages.recv() => match received {
                Ok(m) => Arc::new(m),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    shared.lagged.fetch_add(n, Ordering::Relaxed);
                    tracing::warn!("the IoT rules engine fell behind the broker: {n} messages were not evaluated");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
        };
        shared.messages.fetch_add(1, Ordering::Relaxed);
        for (index, rule) in shared.rules.iter().enumerate() {
            if rule.disabled {
                continue;
            }
            let output = rule.sql.apply(&iot_message(&message));
            let Some(output) = output else { continue };
            bump(&rule.counters.matched);
            // Waiting here pushes back on the broadcast buffer, never on the broker.
            let Ok(permit) = shared.in_flight.clone().acquire_owned().await else {
                return;
            };
            let shared = shared.clone();
            let message = message.clone();
            tokio::spawn(async move {
                fire(&shared, index, &message, output).await;
                drop(permit);
            });
        }
    }
}

fn iot_message(m: &BrokerMessage) -> iot_rules::Message<'_> {
    iot_rules::Message {
        topic: &m.topic,
        payload: &m.payload,
        client_id: m.client_id.as_deref(),
        timestamp_ms: m.timestamp_ms,
    }
}

/// Runs a fired rule's actions side by side, then its error action if any failed.
async fn fire(shared: &Arc<Shared>, index: usize, message: &BrokerMessage, output: Json) {
    let Some(rule) = shared.rules.get(index) else {
        return;
    };
    let results = futures::future::join_all(
        rule.actions
            .iter()
            .map(|action| act(shared, rule, action, message, &output)),
    )
    .await;
    let failures: Vec<Failure> = results.into_iter().filter_map(Result::err).collect();
    let succeeded = rule.actions.len() - failures.len();
    rule.counters
        .actions_succeeded
        .fetch_add(succeeded as u64, Ordering::Relaxed);
    if failures.is_empty() {
        return;
    }
    for f in &failures {
        let n = bump(&rule.counters.actions_failed);
        if worth_logging(n) {
            tracing::warn!(
                "topic rule {}: {} on {} failed for a message on {} (failure {n}): {}",
                rule.name,
                f.action,
                f.resource,
                message.topic,
                f.message
            );
        }
    }
    let Some(error_action) = &rule.error_action else {
        return;
    };
    let error_message = json!({
        "ruleName": rule.name,
        "topic": message.topic,
        "cloudwatchTraceId": uuid::Uuid::new_v4().to_string(),
        "clientId": message.client_id.as_deref().unwrap_or("n/a"),
        "base64OriginalPayload": base64::engine::general_purpose::STANDARD.encode(&message.payload),
        "failures": failures.iter().map(|f| json!({
            "failedAction": f.action,
            "failedResource": f.resource,
            "errorMessage": f.message,
        })).collect::<Vec<_>>(),
    });
    match act(shared, rule, error_action, message, &error_message).await {
        Ok(()) => {
            bump(&rule.counters.error_actions_sent);
        }
        Err(f) => {
            if !worth_logging(bump(&rule.counters.error_actions_failed)) {
                return;
            }
            tracing::error!(
                "topic rule {}: the error action {} on {} failed too, the failure report is lost: {}",
                rule.name,
                f.action,
                f.resource,
                f.message
            );
        }
    }
}

/// The text an action sends: the rule's output as JSON.
fn output_text(output: &Json) -> String {
    output.to_string()
}

fn json_to_attribute(value: &Json) -> AttributeValue {
    match value {
        Json::Null => AttributeValue::Null(true),
        Json::Bool(b) => AttributeValue::Bool(*b),
        Json::Number(n) => AttributeValue::N(n.to_string()),
        Json::String(s) => AttributeValue::S(s.clone()),
        Json::Array(items) => AttributeValue::L(items.iter().map(json_to_attribute).collect()),
        Json::Object(members) => AttributeValue::M(
            members
                .iter()
                .map(|(k, v)| (k.clone(), json_to_attribute(v)))
                .collect(),
        ),
    }
}

/// An SDK error as `Code: message`, or its full chain when the service gave no code.
pub(super) fn sdk_error<E, R>(e: aws_sdk_sqs::error::SdkError<E, R>) -> String
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_sqs::error::ProvideErrorMetadata as _;
    match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
    }
}

async fn act(
    shared: &Arc<Shared>,
    rule: &CompiledRule,
    action: &Action,
    message: &BrokerMessage,
    output: &Json,
) -> Result<(), Failure> {
    let original = iot_message(message);
    let fail = |resource: String, text: String| Failure {
        action: action.spec.action_name(),
        resource,
        message: text,
    };
    match &action.target {
        Target::Lambda(None) => Err(fail(
            action.spec.resource().to_owned(),
            "Function not found: the ARN names no function of template.yaml".to_owned(),
        )),
        Target::Lambda(Some(pool)) => {
            // Asynchronous, as Lambda's `Event` invocation: queued, then run by the pool.
            let queued = pool.queued.fetch_add(1, Ordering::Relaxed);
            if queued >= pool.queue_limit {
                pool.queued.fetch_sub(1, Ordering::Relaxed);
                return Err(fail(
                    action.spec.resource().to_owned(),
                    format!(
                        "{} has {queued} events waiting (the local limit); the invocation was throttled",
                        pool.binary
                    ),
                ));
            }
            let pool = pool.clone();
            let invoker = shared.invoker.clone();
            let counters = rule.counters.clone();
            let rule_name = rule.name.clone();
            let event = output.clone();
            tokio::spawn(async move {
                let Ok(_running) = pool.running.acquire().await else {
                    return;
                };
                pool.queued.fetch_sub(1, Ordering::Relaxed);
                match invoker.invoke(&pool.binary, event, pool.timeout).await {
                    Ok(()) => {
                        bump(&counters.lambda_completed);
                    }
                    Err(e) => {
                        let n = bump(&counters.lambda_errors);
                        if worth_logging(n) {
                            tracing::warn!(
                                "topic rule {rule_name}: the asynchronous invocation of {} failed (failure {n}): {e}",
                                pool.binary
                            );
                        }
                    }
                }
            });
            Ok(())
        }
        Target::Sqs {
            queue_url,
            use_base64,
        } => {
            let url = queue_url.render(&original);
            let text = output_text(output);
            let body = if *use_base64 {
                base64::engine::general_purpose::STANDARD.encode(text)
            } else {
                text
            };
            // AWS's SQS action makes one SendMessage per execution, however this engine batches.
            let billed = sqs_request_units(body.len() as u64);
            shared.sqs.send(&url, body).await.map_err(|reason| {
                fail(
                    url.clone(),
                    format!("Failed to send a message to the SQS queue: {reason}"),
                )
            })?;
            rule.counters
                .sqs_requests_billed
                .fetch_add(billed, Ordering::Relaxed);
            Ok(())
        }
        Target::DynamoDb { table } => {
            let table = table.render(&original);
            let Json::Object(members) = output else {
                return Err(fail(
                    table,
                    format!("The rule's output is not a JSON object, so it is no DynamoDB item: {output}"),
                ));
            };
            let item: HashMap<String, AttributeValue> = members
                .iter()
                .map(|(k, v)| (k.clone(), json_to_attribute(v)))
                .collect();
            shared
                .dynamodb
                .put_item()
                .table_name(&table)
                .set_item(Some(item))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
                    let text = match (e.code(), e.message()) {
                        (Some(code), Some(m)) => format!("{code}: {m}"),
                        _ => aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
                    };
                    fail(
                        table.clone(),
                        format!("Failed to put the item into DynamoDB: {text}"),
                    )
                })
        }
        Target::Republish { topic, qos } => {
            let topic = topic.render(&original);
            if !valid_topic_name(&topic) {
                return Err(fail(
                    topic.clone(),
                    format!("{topic:?} is not a topic name"),
                ));
            }
            shared
                .broker
                .publish(&topic, Bytes::from(output_text(output)), *qos)
                .map_err(|e| fail(topic.clone(), format!("Failed to republish: {e}")))
        }
        Target::Unsupported => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message<'a>(topic: &'a str, payload: &'a [u8]) -> iot_rules::Message<'a> {
        iot_rules::Message {
            topic,
            payload,
            client_id: Some("d1"),
            timestamp_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn substitution_templates_use_the_original_message() -> Result<()> {
        let payload = br#"{"kind":"alarm","level":3}"#;
        let m = message("devices/d1/telemetry", payload);
        let t = Substitution::parse("${topic()}/republish")?;
        assert_eq!(t.render(&m), "devices/d1/telemetry/republish");
        let t = Substitution::parse("out/${topic(2)}/${kind}-${level + 1}")?;
        assert_eq!(t.render(&m), "out/d1/alarm-4");
        let t = Substitution::parse("plain/topic")?;
        assert_eq!(t.render(&m), "plain/topic");
        // Undefined gives nothing.
        let t = Substitution::parse("x/${missing}/y")?;
        assert_eq!(t.render(&m), "x//y");
        assert!(Substitution::parse("x/${topic(2)").is_err(), "unclosed");
        Ok(())
    }

    #[test]
    fn json_becomes_dynamodb_attributes() {
        let item = json!({"s": "a", "n": 10, "f": 1.5, "b": true, "z": null, "l": [1, "x"], "m": {"k": "v"}});
        let Json::Object(members) = item else {
            panic!("object")
        };
        let attrs: HashMap<_, _> = members
            .iter()
            .map(|(k, v)| (k.clone(), json_to_attribute(v)))
            .collect();
        assert_eq!(attrs["s"], AttributeValue::S("a".into()));
        assert_eq!(attrs["n"], AttributeValue::N("10".into()));
        assert_eq!(attrs["f"], AttributeValue::N("1.5".into()));
        assert_eq!(attrs["b"], AttributeValue::Bool(true));
        assert_eq!(attrs["z"], AttributeValue::Null(true));
        assert_eq!(
            attrs["l"],
            AttributeValue::L(vec![
                AttributeValue::N("1".into()),
                AttributeValue::S("x".into())
            ])
        );
        assert_eq!(
            attrs["m"],
            AttributeValue::M([("k".to_owned(), AttributeValue::S("v".into()))].into())
        );
    }
}
