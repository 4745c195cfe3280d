//! `template.yaml` as the local stack sees it: the resources it emulates, with CloudFormation
//! intrinsics (`Ref`, `Fn::GetAtt`, `Fn::Sub`, `Fn::Join`, short or long form) resolved to local
//! names. Locally, tables and queues are named by their logical id, buckets by the lowercased
//! logical id, so every name and ARN is known before anything is created; only queue URLs (and the
//! exact ARNs of secrets, thing types and table streams) come from the emulators.

use crate::local_aws::{ACCOUNT_ID, REGION};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use serde_norway::Value as Yaml;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The stack name `${AWS::StackName}` resolves to.
pub const STACK_NAME: &str = "cellbridge-local";
pub const URL_SUFFIX: &str = "amazonaws.com";
/// `!Ref` of an HTTP API and `requestContext.apiId` in API events.
pub const LOCAL_API_ID: &str = "local";
/// API Gateway's v2 API resource; the template's is a WebSocket API.
pub const WEBSOCKET_API_TYPE: &str = "AWS::ApiGatewayV2::Api";

/// SAM's own defaults, used when neither the function nor Globals set them.
const DEFAULT_TIMEOUT_SECS: u64 = 3;
const DEFAULT_MEMORY_MB: u64 = 128;
/// Lambda's default for SQS event sources.
const DEFAULT_SQS_BATCH_SIZE: u32 = 10;
/// Lambda's default and maximum for DynamoDB stream event sources.
const DEFAULT_STREAM_BATCH_SIZE: u32 = 100;
const MAX_STREAM_BATCH_SIZE: u32 = 10_000;
/// Lambda's limit on `MaximumBatchingWindowInSeconds` (5 minutes).
const MAX_BATCHING_WINDOW_SECS: u64 = 300;
/// A stream's ARN ends in its label, the time AWS created it, which nobody can know beforehand:
/// planned ARNs carry this one until provisioning puts the emulator's in place.
pub const PLANNED_STREAM_LABEL: &str = "1970-01-01T00:00:00.000";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ResourceKind {
    Table,
    Queue,
    Bucket,
    Function,
    HttpApi,
    Secret,
    /// Run by the local rules engine over the devstack's MQTT broker.
    TopicRule,
    /// Created in moto's IoT registry (things need their type to exist).
    ThingType,
    /// Not emulated (moto does not check permissions), but named so `!GetAtt Role.Arn` resolves.
    Role,
    /// Present in the template, not emulated locally (alarms, topics...).
    Other,
}

impl ResourceKind {
    fn of(type_name: &str) -> Self {
        match type_name {
            "AWS::DynamoDB::Table" => Self::Table,
            "AWS::SQS::Queue" => Self::Queue,
            "AWS::S3::Bucket" => Self::Bucket,
            "AWS::Serverless::Function" => Self::Function,
            "AWS::Serverless::HttpApi" => Self::HttpApi,
            "AWS::SecretsManager::Secret" => Self::Secret,
            "AWS::IoT::TopicRule" => Self::TopicRule,
            "AWS::IoT::ThingType" => Self::ThingType,
            "AWS::IAM::Role" => Self::Role,
            _ => Self::Other,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Parameter {
    pub default: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Resource {
    pub logical_id: String,
    pub type_name: String,
    pub kind: ResourceKind,
    pub properties: Yaml,
    pub metadata: Yaml,
}

#[derive(Debug, Clone)]
pub struct Template {
    pub path: PathBuf,
    /// Directory `CodeUri` is relative to.
    pub base_dir: PathBuf,
    pub parameters: BTreeMap<String, Parameter>,
    /// `Globals.Function`, unresolved.
    pub function_globals: Yaml,
    pub resources: BTreeMap<String, Resource>,
    /// Cargo package and binary per function logical id, filled by [`Template::load`].
    binaries: BTreeMap<String, (String, String)>,
}

/// Name, ARN and (for queues, once created) URL of each emulated resource, by logical id.
#[derive(Debug, Clone, Serialize)]
pub struct LocalResource {
    pub logical_id: String,
    pub kind: ResourceKind,
    pub name: String,
    pub arn: String,
    pub url: Option<String>,
    /// A table's stream (`!GetAtt Table.StreamArn`), when it has a `StreamSpecification`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_arn: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Resources {
    by_id: BTreeMap<String, LocalResource>,
}

impl Resources {
    /// Names and ARNs as they will be once provisioned; queue URLs are unknown until then.
    pub fn planned(template: &Template) -> Self {
        let mut by_id = BTreeMap::new();
        for r in template.resources.values() {
            let id = r.logical_id.clone();
            let mut stream_arn = None;
            let (name, arn) = match r.kind {
                ResourceKind::Table => {
                    let arn = format!("arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{id}");
                    // Provisioning puts the emulator's label in place.
                    if r.properties.get("StreamSpecification").is_some() {
                        stream_arn = Some(format!("{arn}/stream/{PLANNED_STREAM_LABEL}"));
                    }
                    (id.clone(), arn)
                }
                ResourceKind::Queue => {
                    let name = queue_name(r);
                    let arn = format!("arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}");
                    (name, arn)
                }
                ResourceKind::Bucket => {
                    let name = id.to_lowercase();
                    let arn = format!("arn:aws:s3:::{name}");
                    (name, arn)
                }
                ResourceKind::Function => (
                    id.clone(),
                    format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{id}"),
                ),
                ResourceKind::HttpApi => (
                    LOCAL_API_ID.to_owned(),
                    format!("arn:aws:apigateway:{REGION}::/apis/{LOCAL_API_ID}"),
                ),
                // The real ARN ends in a random suffix; provisioning puts moto's in place.
                ResourceKind::Secret => (
                    id.clone(),
                    format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:{id}"),
                ),
                ResourceKind::TopicRule => {
                    let name = explicit_name(template, r, "RuleName");
                    let arn = format!("arn:aws:iot:{REGION}:{ACCOUNT_ID}:rule/{name}");
                    (name, arn)
                }
                // Provisioning puts moto's ARN in place.
                ResourceKind::ThingType => {
                    let name = explicit_name(template, r, "ThingTypeName");
                    let arn = format!("arn:aws:iot:{REGION}:{ACCOUNT_ID}:thingtype/{name}");
                    (name, arn)
                }
                ResourceKind::Role => {
                    let name = explicit_name(template, r, "RoleName");
                    let arn = format!("arn:aws:iam::{ACCOUNT_ID}:role/{name}");
                    (name, arn)
                }
                // The WebSocket API is served by the devstack itself (`websocket_api`): its id
                // names it in the stage URLs functions are given, which the stack points at
                // its own server.
                ResourceKind::Other if r.type_name == WEBSOCKET_API_TYPE => {
                    let api_id = id.to_lowercase();
                    let arn = format!("arn:aws:apigateway:{REGION}::/apis/{api_id}");
                    (api_id, arn)
                }
                ResourceKind::Other => continue,
            };
            by_id.insert(
                id.clone(),
                LocalResource {
                    logical_id: id,
                    kind: r.kind,
                    name,
                    arn,
                    url: None,
                    stream_arn,
                },
            );
        }
        Self { by_id }
    }

    pub fn get(&self, logical_id: &str) -> Option<&LocalResource> {
        self.by_id.get(logical_id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &LocalResource> {
        self.by_id.values()
    }

    pub fn of_kind(&self, kind: ResourceKind) -> impl Iterator<Item = &LocalResource> {
        self.by_id.values().filter(move |r| r.kind == kind)
    }

    fn name_of(&self, logical_id: &str, kind: ResourceKind) -> Option<&str> {
        self.get(logical_id)
            .filter(|r| r.kind == kind)
            .map(|r| r.name.as_str())
    }

    pub fn table_name(&self, logical_id: &str) -> Option<&str> {
        self.name_of(logical_id, ResourceKind::Table)
    }

    pub fn queue_name(&self, logical_id: &str) -> Option<&str> {
        self.name_of(logical_id, ResourceKind::Queue)
    }

    pub fn bucket_name(&self, logical_id: &str) -> Option<&str> {
        self.name_of(logical_id, ResourceKind::Bucket)
    }

    pub fn queue_url(&self, logical_id: &str) -> Option<&str> {
        self.get(logical_id)
            .filter(|r| r.kind == ResourceKind::Queue)
            .and_then(|r| r.url.as_deref())
    }

    pub fn arn(&self, logical_id: &str) -> Option<&str> {
        self.get(logical_id).map(|r| r.arn.as_str())
    }

    /// The resource an ARN designates (event sources name their queue by ARN).
    pub fn by_arn(&self, arn: &str) -> Option<&LocalResource> {
        self.by_id.values().find(|r| r.arn == arn)
    }

    /// The ARN of a table's stream, if it has one.
    pub fn stream_arn(&self, logical_id: &str) -> Option<&str> {
        self.get(logical_id)
            .filter(|r| r.kind == ResourceKind::Table)
            .and_then(|r| r.stream_arn.as_deref())
    }

    /// The table whose stream an ARN designates (stream event sources name it so).
    pub fn by_stream_arn(&self, stream_arn: &str) -> Option<&LocalResource> {
        self.by_id
            .values()
            .find(|r| r.kind == ResourceKind::Table && r.stream_arn.as_deref() == Some(stream_arn))
    }

    /// Records the stream ARN the emulator gave a table.
    pub fn set_stream_arn(&mut self, logical_id: &str, stream_arn: String) {
        if let Some(r) = self.by_id.get_mut(logical_id) {
            r.stream_arn = Some(stream_arn);
        }
    }

    /// Records what the emulator answered for a created queue.
    pub fn set_arn(&mut self, logical_id: &str, arn: String) {
        if let Some(r) = self.by_id.get_mut(logical_id) {
            r.arn = arn;
        }
    }

    pub fn set_queue(&mut self, logical_id: &str, url: String, arn: String) {
        if let Some(r) = self.by_id.get_mut(logical_id) {
            r.url = Some(url);
            r.arn = arn;
        }
    }
}

/// The name a resource's `name_property` gives it, or its logical id. Only parameters and pseudo
/// parameters can be referred to: no resource has a name yet when names are planned.
fn explicit_name(template: &Template, r: &Resource, name_property: &str) -> String {
    let Some(value) = r.properties.get(name_property) else {
        return r.logical_id.clone();
    };
    match template.resolve_string(value, &Resources::default()) {
        Ok(name) if !name.is_empty() => name,
        Ok(_) => r.logical_id.clone(),
        Err(e) => {
            tracing::warn!(
                "{}: {name_property} cannot be resolved before anything exists ({e:#}); named {} locally",
                r.logical_id,
                r.logical_id
            );
            r.logical_id.clone()
        }
    }
}

fn queue_name(r: &Resource) -> String {
    // SQS insists FIFO queue names end in ".fifo".
    let fifo = matches!(r.properties.get("FifoQueue"), Some(Yaml::Bool(true)))
        || matches!(r.properties.get("FifoQueue"), Some(Yaml::String(s)) if s == "true");
    if fifo {
        format!("{}.fifo", r.logical_id)
    } else {
        r.logical_id.clone()
    }
}

// ------------------------------------------------------------------------------------------------
// Typed views of the emulated resources.

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct AttributeDefinition {
    pub attribute_name: String,
    pub attribute_type: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct KeySchemaElement {
    pub attribute_name: String,
    pub key_type: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Projection {
    pub projection_type: Option<String>,
    #[serde(default)]
    pub non_key_attributes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Throughput {
    #[serde(deserialize_with = "flex_u64")]
    pub read_capacity_units: u64,
    #[serde(deserialize_with = "flex_u64")]
    pub write_capacity_units: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct SecondaryIndex {
    pub index_name: String,
    pub key_schema: Vec<KeySchemaElement>,
    pub projection: Projection,
    pub provisioned_throughput: Option<Throughput>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct TimeToLive {
    pub attribute_name: String,
    #[serde(deserialize_with = "flex_bool")]
    pub enabled: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct StreamSpecification {
    pub stream_view_type: String,
}

/// An `AWS::DynamoDB::Table`, properties resolved.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct TableSpec {
    #[serde(skip_deserializing)]
    pub logical_id: String,
    #[serde(skip_deserializing)]
    pub name: String,
    pub attribute_definitions: Vec<AttributeDefinition>,
    pub key_schema: Vec<KeySchemaElement>,
    pub billing_mode: Option<String>,
    pub provisioned_throughput: Option<Throughput>,
    #[serde(default)]
    pub global_secondary_indexes: Vec<SecondaryIndex>,
    #[serde(default)]
    pub local_secondary_indexes: Vec<SecondaryIndex>,
    pub time_to_live_specification: Option<TimeToLive>,
    pub stream_specification: Option<StreamSpecification>,
}

/// An `AWS::SQS::Queue`: its name and the SQS attributes to create it with.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSpec {
    pub logical_id: String,
    pub name: String,
    /// SQS attribute name → value, as CreateQueue takes them (RedrivePolicy as JSON text).
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BucketSpec {
    pub logical_id: String,
    pub name: String,
}

/// An `HttpApi` event of a function: one API Gateway route.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpRoute {
    pub event_id: String,
    /// Upper case; `ANY` matches every method.
    pub method: String,
    /// API Gateway syntax (`/bulk-changes/{id}`); `None` is the `$default` route.
    pub path: Option<String>,
    pub auth: RouteAuth,
}

/// Which authorizer guards a route (`Auth.Authorizer` of its event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum RouteAuth {
    /// The API's `DefaultAuthorizer`, if it has one.
    Default,
    /// `Authorizer: NONE`: open.
    None,
    Named(String),
}

/// A Lambda authorizer of the `HttpApi` (`Auth.Authorizers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthorizerSpec {
    pub name: String,
    /// Logical id of the function (`FunctionArn: !GetAtt X.Arn`).
    pub function_logical_id: String,
    /// Headers of the identity source, lower case; a request missing one is refused unasked.
    pub identity_headers: Vec<String>,
    pub simple_responses: bool,
}

/// The `Auth` of the `HttpApi`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApiAuth {
    pub default_authorizer: Option<String>,
    pub authorizers: Vec<AuthorizerSpec>,
}

impl ApiAuth {
    /// The authorizer guarding a route, if any.
    pub fn for_route(&self, auth: &RouteAuth) -> Option<&AuthorizerSpec> {
        let name = match auth {
            RouteAuth::None => return None,
            RouteAuth::Default => self.default_authorizer.as_deref()?,
            RouteAuth::Named(name) => name.as_str(),
        };
        self.authorizers.iter().find(|a| a.name == name)
    }
}

/// An `AWS::SecretsManager::Secret`: a fixed value, or one generated at creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSpec {
    pub logical_id: String,
    pub name: String,
    pub secret_string: Option<String>,
    /// `GenerateSecretString.PasswordLength` (CloudFormation's default is 32).
    pub generated_length: usize,
}

impl HttpRoute {
    /// `POST /bulk-changes`, or `$default`.
    pub fn route_key(&self) -> String {
        match &self.path {
            Some(path) => format!("{} {}", self.method, path),
            None => "$default".to_owned(),
        }
    }
}

/// An `SQS` event of a function: one event source mapping.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SqsSource {
    pub event_id: String,
    pub queue_logical_id: String,
    pub queue_arn: String,
    pub batch_size: u32,
    pub maximum_batching_window: Duration,
    pub report_batch_item_failures: bool,
    pub maximum_concurrency: Option<u32>,
    pub enabled: bool,
}

/// Where a stream event source starts reading a shard that exists when it starts (shards
/// created later are read from their start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StartingPosition {
    /// Only records written from now on.
    Latest,
    /// The oldest record still in the stream (24 hours back at most).
    TrimHorizon,
}

/// A `DynamoDB` event of a function: one event source mapping over a table's stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamSource {
    pub event_id: String,
    pub table_logical_id: String,
    /// As the template resolved it (the emulator's once provisioned).
    pub stream_arn: String,
    pub batch_size: u32,
    pub maximum_batching_window: Duration,
    pub starting_position: StartingPosition,
    pub report_batch_item_failures: bool,
    /// Retries of a failing batch before its records are skipped; `None` (the template's -1,
    /// Lambda's default) retries until the records expire from the stream, that is, forever here.
    pub maximum_retry_attempts: Option<u32>,
    pub bisect_batch_on_function_error: bool,
    pub enabled: bool,
    /// The record kinds (`INSERT`, `MODIFY`, `REMOVE`) its `FilterCriteria` lets through, when
    /// every pattern of it names `eventName` alone: the one filter the local stack applies.
    /// `None`: every record.
    pub event_names: Option<Vec<String>>,
}

/// What a stream source's `FilterCriteria` lets through, if it filters on `eventName` alone;
/// any other filter is said to be unemulated and lets everything through (the function sees
/// more than it would in AWS, never less).
fn event_name_filter(what: &str, criteria: Option<&Json>) -> Option<Vec<String>> {
    let filters = criteria.filter(|c| !c.is_null())?;
    let names = filters
        .get("Filters")
        .and_then(Json::as_array)
        .and_then(|filters| {
            let mut names = Vec::new();
            for filter in filters {
                let pattern: Json = serde_json::from_str(filter.get("Pattern")?.as_str()?).ok()?;
                let fields = pattern.as_object().filter(|fields| fields.len() == 1)?;
                for name in fields.get("eventName")?.as_array()? {
                    names.push(name.as_str()?.to_owned());
                }
            }
            // No filter at all lets everything through in AWS too.
            (!names.is_empty()).then_some(names)
        });
    if names.is_none() {
        tracing::warn!("{what}: FilterCriteria other than on eventName is not emulated by the local stack; every record is handed over");
    }
    names
}

/// A `Schedule` or `ScheduleV2` event of a function: EventBridge invoking it on a timer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduleSource {
    pub event_id: String,
    pub expression: String,
    /// The period of a `rate(...)` expression; `None` for cron expressions, which run only in AWS.
    pub every: Option<Duration>,
}

/// The period of an EventBridge `rate(value unit)` expression.
pub fn rate_period(expression: &str) -> Option<Duration> {
    let inner = expression.trim().strip_prefix("rate(")?.strip_suffix(')')?;
    let (value, unit) = inner.trim().split_once(' ')?;
    let value: u64 = value.parse().ok()?;
    let seconds = match unit.trim() {
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3_600,
        "day" | "days" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(value * seconds))
}

/// An `AWS::Serverless::Function` with Globals applied and its environment resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionSpec {
    pub logical_id: String,
    pub code_uri: PathBuf,
    /// Cargo package holding the binary (what `cargo build -p` takes).
    pub package: String,
    /// The binary `cargo lambda watch` runs and invokes by name.
    pub binary: String,
    pub timeout: Duration,
    pub memory_size_mb: u64,
    pub environment: BTreeMap<String, String>,
    pub http_routes: Vec<HttpRoute>,
    pub sqs_sources: Vec<SqsSource>,
    pub stream_sources: Vec<StreamSource>,
    pub schedules: Vec<ScheduleSource>,
}

/// An `AWS::IoT::TopicRule` (or a function's SAM `IoTRule` event), resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopicRuleSpec {
    pub logical_id: String,
    /// `RuleName`, or the logical id.
    pub name: String,
    pub sql: String,
    /// `AwsIotSqlVersion`; the local engine evaluates every rule as 2016-03-23.
    pub sql_version: Option<String>,
    pub disabled: bool,
    pub actions: Vec<RuleActionSpec>,
    pub error_action: Option<RuleActionSpec>,
}

/// One action of a topic rule, with the properties the local engine uses (`RoleArn` is not
/// checked locally). Text fields may hold `${...}` substitution templates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum RuleActionSpec {
    /// `Lambda.FunctionArn`.
    Lambda { function_arn: String },
    /// `Sqs.QueueUrl`, `Sqs.UseBase64` (default false).
    Sqs { queue_url: String, use_base64: bool },
    /// `DynamoDBv2.PutItem.TableName`.
    DynamoDbV2 { table_name: String },
    /// `Republish.Topic`, `Republish.Qos` (default 0).
    Republish { topic: String, qos: u8 },
    /// An action the local stack does not run (Kinesis, S3, ...), by its property name.
    Unsupported { kind: String },
}

impl RuleActionSpec {
    /// The action's name as AWS's error messages give it (`failedAction`).
    pub fn action_name(&self) -> String {
        match self {
            Self::Lambda { .. } => "LambdaAction".to_owned(),
            Self::Sqs { .. } => "SqsAction".to_owned(),
            Self::DynamoDbV2 { .. } => "DynamoDBv2Action".to_owned(),
            Self::Republish { .. } => "RepublishAction".to_owned(),
            Self::Unsupported { kind } => format!("{kind}Action"),
        }
    }

    /// What the action writes to (`failedResource`).
    pub fn resource(&self) -> &str {
        match self {
            Self::Lambda { function_arn } => function_arn,
            Self::Sqs { queue_url, .. } => queue_url,
            Self::DynamoDbV2 { table_name } => table_name,
            Self::Republish { topic, .. } => topic,
            Self::Unsupported { kind } => kind,
        }
    }
}

/// An `AWS::IoT::ThingType`, resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThingTypeSpec {
    pub logical_id: String,
    pub name: String,
    pub description: Option<String>,
    pub searchable_attributes: Vec<String>,
    pub deprecated: bool,
}

// ------------------------------------------------------------------------------------------------

impl Template {
    /// Reads and parses `path`, then finds each function's Cargo binary with `cargo metadata`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read the SAM template {}", path.display()))?;
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut template = Self::parse(&text, &base_dir)?;
        template.path = path.to_path_buf();
        template.locate_binaries()?;
        Ok(template)
    }

    /// A parameter's `Default`, as the local stack deploys it.
    pub fn parameter_default(&self, name: &str) -> Option<&str> {
        self.parameters.get(name)?.default.as_deref()
    }

    /// Parses template text; functions need a `Metadata.BuildProperties.Binary` or a later
    /// [`Template::load`] to know their binary.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Self> {
        let doc: Yaml = serde_norway::from_str(text).context("template.yaml is not valid YAML")?;
        let mut parameters = BTreeMap::new();
        if let Some(params) = doc.get("Parameters").and_then(Yaml::as_mapping) {
            for (name, body) in params {
                let name = key_str(name)?;
                let default = match body.get("Default") {
                    None | Some(Yaml::Null) => None,
                    Some(v) => Some(scalar_to_string(v).with_context(|| {
                        format!("parameter {name}: Default must be a scalar for the local stack")
                    })?),
                };
                parameters.insert(name, Parameter { default });
            }
        }
        let function_globals = doc
            .get("Globals")
            .and_then(|g| g.get("Function"))
            .cloned()
            .unwrap_or(Yaml::Null);
        let mut resources = BTreeMap::new();
        let Some(res) = doc.get("Resources").and_then(Yaml::as_mapping) else {
            bail!("template.yaml has no Resources section");
        };
        for (id, body) in res {
            let logical_id = key_str(id)?;
            let type_name = body
                .get("Type")
                .and_then(Yaml::as_str)
                .with_context(|| format!("resource {logical_id} has no Type"))?
                .to_owned();
            resources.insert(
                logical_id.clone(),
                Resource {
                    kind: ResourceKind::of(&type_name),
                    logical_id,
                    type_name,
                    properties: body.get("Properties").cloned().unwrap_or(Yaml::Null),
                    metadata: body.get("Metadata").cloned().unwrap_or(Yaml::Null),
                },
            );
        }
        Ok(Self {
            path: base_dir.join("template.yaml"),
            base_dir: base_dir.to_path_buf(),
            parameters,
            function_globals,
            resources,
            binaries: BTreeMap::new(),
        })
    }

    pub fn of_kind(&self, kind: ResourceKind) -> impl Iterator<Item = &Resource> {
        self.resources.values().filter(move |r| r.kind == kind)
    }

    fn code_uri(&self, r: &Resource) -> Result<PathBuf> {
        let uri = r
            .properties
            .get("CodeUri")
            .or_else(|| self.function_globals.get("CodeUri"))
            .and_then(Yaml::as_str)
            .with_context(|| {
                format!(
                    "function {} needs a local CodeUri (a directory)",
                    r.logical_id
                )
            })?;
        Ok(self.base_dir.join(uri))
    }

    /// Binary named in `Metadata.BuildProperties.Binary`, as SAM's cargo-lambda builder takes it.
    fn binary_override(r: &Resource) -> Option<String> {
        r.metadata
            .get("BuildProperties")
            .and_then(|b| b.get("Binary"))
            .and_then(Yaml::as_str)
            .map(str::to_owned)
    }

    fn locate_binaries(&mut self) -> Result<()> {
        let mut wanted = Vec::new();
        for r in self.of_kind(ResourceKind::Function) {
            wanted.push((
                r.logical_id.clone(),
                self.code_uri(r)?,
                Self::binary_override(r),
            ));
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let mut packages = cargo_packages(&self.base_dir.join("Cargo.toml")).unwrap_or_default();
        for (id, code_uri, binary) in wanted {
            let manifest = code_uri.join("Cargo.toml");
            let canonical = manifest.canonicalize().with_context(|| {
                format!(
                    "function {id}: {} does not exist; CodeUri must be a Cargo package",
                    manifest.display()
                )
            })?;
            if !packages.iter().any(|p| p.manifest_path == canonical) {
                // Not a member of the template's workspace: ask its own manifest.
                packages.extend(cargo_packages(&manifest)?);
            }
            let package = packages
                .iter()
                .find(|p| p.manifest_path == canonical)
                .with_context(|| {
                    format!(
                        "function {id}: cargo metadata does not list {}",
                        canonical.display()
                    )
                })?;
            let binary = match binary {
                Some(b) => b,
                None if package.bins.contains(&package.name) => package.name.clone(),
                None => match package.bins.as_slice() {
                    [only] => only.clone(),
                    [] => bail!("function {id}: package {} has no binary target", package.name),
                    many => bail!(
                        "function {id}: package {} has several binaries ({}); name one in Metadata.BuildProperties.Binary",
                        package.name,
                        many.join(", ")
                    ),
                },
            };
            self.binaries.insert(id, (package.name.clone(), binary));
        }
        Ok(())
    }

    // --------------------------------------------------------------------------------------------
    // Intrinsics.

    /// Resolves every intrinsic in `value` against the local resources, giving plain JSON.
    pub fn resolve(&self, value: &Yaml, resources: &Resources) -> Result<Json> {
        Ok(match value {
            Yaml::Null => Json::Null,
            Yaml::Bool(b) => Json::Bool(*b),
            Yaml::Number(n) => serde_json::to_value(n)?,
            Yaml::String(s) => Json::String(s.clone()),
            Yaml::Sequence(items) => Json::Array(
                items
                    .iter()
                    .map(|v| self.resolve(v, resources))
                    .collect::<Result<_>>()?,
            ),
            Yaml::Tagged(tagged) => {
                let tag = tagged.tag.to_string();
                let name = tag.trim_start_matches('!');
                let long = match name {
                    "Ref" | "Condition" => name.to_owned(),
                    other => format!("Fn::{other}"),
                };
                self.intrinsic(&long, &tagged.value, resources)?
            }
            Yaml::Mapping(map) => {
                if map.len() == 1 {
                    if let Some((Yaml::String(k), v)) = map.iter().next() {
                        if k == "Ref" || k.starts_with("Fn::") {
                            return self.intrinsic(k, v, resources);
                        }
                    }
                }
                let mut out = serde_json::Map::new();
                for (k, v) in map {
                    out.insert(key_str(k)?, self.resolve(v, resources)?);
                }
                Json::Object(out)
            }
        })
    }

    /// Resolves to text, as environment variables and attributes need (numbers and booleans too).
    pub fn resolve_string(&self, value: &Yaml, resources: &Resources) -> Result<String> {
        match self.resolve(value, resources)? {
            Json::String(s) => Ok(s),
            Json::Number(n) => Ok(n.to_string()),
            Json::Bool(b) => Ok(b.to_string()),
            other => bail!("expected a scalar, found {other}"),
        }
    }

    fn intrinsic(&self, name: &str, arg: &Yaml, resources: &Resources) -> Result<Json> {
        match name {
            "Ref" => {
                let target = arg.as_str().context("Ref takes a logical id or parameter name")?;
                Ok(Json::String(self.reference(target, resources)?))
            }
            "Fn::GetAtt" => {
                let (target, attr) = match self.resolve(arg, resources)? {
                    Json::String(s) => {
                        let (t, a) = s.split_once('.').with_context(|| format!("GetAtt {s}: expected Name.Attribute"))?;
                        (t.to_owned(), a.to_owned())
                    }
                    Json::Array(parts) => match parts.as_slice() {
                        [Json::String(t), Json::String(a)] => (t.clone(), a.clone()),
                        _ => bail!("GetAtt takes [Name, Attribute]"),
                    },
                    other => bail!("GetAtt takes Name.Attribute, found {other}"),
                };
                Ok(Json::String(self.attribute(&target, &attr, resources)?))
            }
            "Fn::Sub" => {
                let (text, vars) = match arg {
                    Yaml::Sequence(items) => match items.as_slice() {
                        [text, Yaml::Mapping(vars)] => {
                            let mut resolved = BTreeMap::new();
                            for (k, v) in vars {
                                resolved.insert(key_str(k)?, self.resolve_string(v, resources)?);
                            }
                            (text, resolved)
                        }
                        _ => bail!("Sub takes a string or [string, {{variables}}]"),
                    },
                    text => (text, BTreeMap::new()),
                };
                let text = text.as_str().context("Sub's template must be a string")?;
                Ok(Json::String(self.substitute(text, &vars, resources)?))
            }
            "Fn::Join" => {
                let Yaml::Sequence(items) = arg else { bail!("Join takes [delimiter, [values]]") };
                let [delimiter, values] = items.as_slice() else { bail!("Join takes [delimiter, [values]]") };
                let delimiter = delimiter.as_str().context("Join's delimiter must be a string")?;
                let parts = match self.resolve(values, resources)? {
                    Json::Array(parts) => parts,
                    other => bail!("Join's values must be a list, found {other}"),
                };
                let parts = parts
                    .into_iter()
                    .map(|p| match p {
                        Json::String(s) => Ok(s),
                        Json::Number(n) => Ok(n.to_string()),
                        other => Err(anyhow!("Join can only join scalars, found {other}")),
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Json::String(parts.join(delimiter)))
            }
            other => bail!("the local stack does not support the intrinsic {other}; use Ref, GetAtt, Sub or Join"),
        }
    }

    fn substitute(
        &self,
        text: &str,
        vars: &BTreeMap<String, String>,
        resources: &Resources,
    ) -> Result<String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .with_context(|| format!("Sub {text:?}: unclosed ${{"))?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                // `${!Literal}` stands for the text `${Literal}`.
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(value) = vars.get(name) {
                out.push_str(value);
            } else if let Some((target, attr)) = name.split_once('.') {
                out.push_str(&self.attribute(target, attr, resources)?);
            } else {
                out.push_str(&self.reference(name, resources)?);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn reference(&self, target: &str, resources: &Resources) -> Result<String> {
        match target {
            "AWS::Region" => return Ok(REGION.to_owned()),
            "AWS::AccountId" => return Ok(ACCOUNT_ID.to_owned()),
            "AWS::StackName" => return Ok(STACK_NAME.to_owned()),
            "AWS::URLSuffix" => return Ok(URL_SUFFIX.to_owned()),
            "AWS::Partition" => return Ok("aws".to_owned()),
            "AWS::StackId" => {
                return Ok(format!(
                    "arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{STACK_NAME}/local"
                ))
            }
            _ => {}
        }
        if let Some(p) = self.parameters.get(target) {
            return p.default.clone().with_context(|| {
                format!("parameter {target} has no Default; the local stack needs one")
            });
        }
        let r = self.resource(target)?;
        let local = resources.get(target).with_context(|| {
            format!(
                "Ref {target}: {} is not emulated by the local stack",
                r.type_name
            )
        })?;
        match local.kind {
            ResourceKind::Queue => local.url.clone().with_context(|| {
                format!("Ref {target}: the queue URL is known once the emulator created the queue; provision first")
            }),
            // CloudFormation's Ref of a secret is its ARN.
            ResourceKind::Secret => Ok(local.arn.clone()),
            _ => Ok(local.name.clone()),
        }
    }

    fn attribute(&self, target: &str, attr: &str, resources: &Resources) -> Result<String> {
        let r = self.resource(target)?;
        let local = resources.get(target).with_context(|| {
            format!(
                "GetAtt {target}.{attr}: {} is not emulated locally",
                r.type_name
            )
        })?;
        match (local.kind, attr) {
            (_, "Arn") => Ok(local.arn.clone()),
            (ResourceKind::Table, "StreamArn") => local.stream_arn.clone().with_context(|| {
                format!("GetAtt {target}.StreamArn: the table has no StreamSpecification")
            }),
            (ResourceKind::Queue, "QueueName") => Ok(local.name.clone()),
            (ResourceKind::Queue, "QueueUrl") => self.reference(target, resources),
            (ResourceKind::Bucket, "DomainName" | "RegionalDomainName") => {
                Ok(format!("{}.s3.{REGION}.{URL_SUFFIX}", local.name))
            }
            _ => bail!("GetAtt {target}.{attr} is not supported by the local stack"),
        }
    }

    fn resource(&self, logical_id: &str) -> Result<&Resource> {
        self.resources.get(logical_id).with_context(|| {
            format!("{logical_id} is neither a parameter nor a resource of the template")
        })
    }

    // --------------------------------------------------------------------------------------------
    // Typed views.

    pub fn tables(&self, resources: &Resources) -> Result<Vec<TableSpec>> {
        self.of_kind(ResourceKind::Table)
            .map(|r| {
                let props = self.resolve(&r.properties, resources)?;
                let mut spec: TableSpec = serde_json::from_value(props)
                    .with_context(|| format!("table {}: unexpected properties", r.logical_id))?;
                spec.logical_id = r.logical_id.clone();
                spec.name = resources
                    .table_name(&r.logical_id)
                    .unwrap_or(&r.logical_id)
                    .to_owned();
                Ok(spec)
            })
            .collect()
    }

    pub fn secrets(&self, resources: &Resources) -> Result<Vec<SecretSpec>> {
        self.of_kind(ResourceKind::Secret)
            .map(|r| {
                let props = self.resolve(&r.properties, resources)?;
                let generated_length = props
                    .get("GenerateSecretString")
                    .and_then(|g| g.get("PasswordLength"))
                    .and_then(|l| {
                        l.as_u64()
                            .or_else(|| l.as_str().and_then(|s| s.parse().ok()))
                    })
                    .unwrap_or(32);
                Ok(SecretSpec {
                    logical_id: r.logical_id.clone(),
                    name: props
                        .get("Name")
                        .and_then(Json::as_str)
                        .map_or_else(|| r.logical_id.clone(), str::to_owned),
                    secret_string: props
                        .get("SecretString")
                        .and_then(Json::as_str)
                        .map(str::to_owned),
                    generated_length: usize::try_from(generated_length)?,
                })
            })
            .collect()
    }

    /// The `Auth` of the template's `HttpApi` (there is one API).
    pub fn api_auth(&self, resources: &Resources) -> Result<ApiAuth> {
        let Some(api) = self.of_kind(ResourceKind::HttpApi).next() else {
            return Ok(ApiAuth::default());
        };
        let props = self.resolve(&api.properties, resources)?;
        let Some(auth) = props.get("Auth") else {
            return Ok(ApiAuth::default());
        };
        let mut authorizers = Vec::new();
        for (name, spec) in auth
            .get("Authorizers")
            .and_then(Json::as_object)
            .into_iter()
            .flatten()
        {
            let Some(arn) = spec.get("FunctionArn").and_then(Json::as_str) else {
                tracing::debug!("authorizer {name} is not a Lambda authorizer; not emulated");
                continue;
            };
            let function = resources
                .by_arn(arn)
                .filter(|r| r.kind == ResourceKind::Function)
                .with_context(|| {
                    format!("authorizer {name}: {arn} is not a function of this template")
                })?;
            let identity_headers = spec
                .get("Identity")
                .and_then(|i| i.get("Headers"))
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
                .filter_map(Json::as_str)
                .map(str::to_ascii_lowercase)
                .collect();
            authorizers.push(AuthorizerSpec {
                name: name.clone(),
                function_logical_id: function.logical_id.clone(),
                identity_headers,
                simple_responses: spec.get("EnableSimpleResponses") == Some(&Json::Bool(true)),
            });
        }
        let default_authorizer = auth
            .get("DefaultAuthorizer")
            .and_then(Json::as_str)
            .map(str::to_owned);
        if let Some(name) = &default_authorizer {
            if !authorizers.iter().any(|a| &a.name == name) {
                bail!("DefaultAuthorizer {name} is not among the API's Lambda authorizers");
            }
        }
        Ok(ApiAuth {
            default_authorizer,
            authorizers,
        })
    }

    pub fn buckets(&self, resources: &Resources) -> Vec<BucketSpec> {
        self.of_kind(ResourceKind::Bucket)
            .map(|r| BucketSpec {
                logical_id: r.logical_id.clone(),
                name: resources
                    .bucket_name(&r.logical_id)
                    .map(str::to_owned)
                    .unwrap_or_else(|| r.logical_id.to_lowercase()),
            })
            .collect()
    }

    /// Queues in an order where every queue comes after the queues its properties refer to (dead
    /// letter queues first).
    pub fn queue_order(&self) -> Result<Vec<String>> {
        let queues: BTreeMap<&str, BTreeSet<String>> = self
            .of_kind(ResourceKind::Queue)
            .map(|r| {
                let mut refs = BTreeSet::new();
                collect_references(&r.properties, &mut refs);
                refs.retain(|id| {
                    self.resources
                        .get(id)
                        .is_some_and(|t| t.kind == ResourceKind::Queue)
                });
                (r.logical_id.as_str(), refs)
            })
            .collect();
        let mut order: Vec<String> = Vec::new();
        while order.len() < queues.len() {
            let ready: Vec<&str> = queues
                .iter()
                .filter(|(id, deps)| {
                    !order.iter().any(|o| o == *id) && deps.iter().all(|d| order.contains(d))
                })
                .map(|(id, _)| *id)
                .collect();
            if ready.is_empty() {
                bail!("the queues' RedrivePolicy references form a cycle; a dead-letter queue cannot redrive to its source");
            }
            order.extend(ready.into_iter().map(str::to_owned));
        }
        Ok(order)
    }

    /// The queue's CreateQueue attributes; referenced queues must be in `resources` already.
    pub fn queue(&self, logical_id: &str, resources: &Resources) -> Result<QueueSpec> {
        let r = self.resource(logical_id)?;
        if r.kind != ResourceKind::Queue {
            bail!("{logical_id} is not an AWS::SQS::Queue");
        }
        let props = match self.resolve(&r.properties, resources)? {
            Json::Object(map) => map,
            Json::Null => serde_json::Map::new(),
            other => bail!("queue {logical_id}: Properties must be a mapping, found {other}"),
        };
        let mut attributes = BTreeMap::new();
        for (key, value) in props {
            // CloudFormation property names are SQS attribute names, except the JSON policies,
            // which CreateQueue wants as text, and the name itself.
            let text = match (key.as_str(), value) {
                ("QueueName" | "Tags", _) => continue,
                ("RedrivePolicy" | "RedriveAllowPolicy", Json::String(s)) => s,
                ("RedrivePolicy" | "RedriveAllowPolicy", v) => serde_json::to_string(&v)?,
                (_, Json::String(s)) => s,
                (_, Json::Number(n)) => n.to_string(),
                (_, Json::Bool(b)) => b.to_string(),
                (k, v) => bail!("queue {logical_id}: property {k} = {v} is not a scalar"),
            };
            attributes.insert(key, text);
        }
        let name = resources
            .queue_name(logical_id)
            .map(str::to_owned)
            .unwrap_or_else(|| queue_name(r));
        Ok(QueueSpec {
            logical_id: logical_id.to_owned(),
            name,
            attributes,
        })
    }

    /// Every topic rule: the `AWS::IoT::TopicRule` resources and the functions' SAM `IoTRule`
    /// events (a rule with one Lambda action, named `<Function><Event>` as SAM names it).
    /// Queue URLs come from `resources`, so provision first.
    pub fn topic_rules(&self, resources: &Resources) -> Result<Vec<TopicRuleSpec>> {
        let mut rules = Vec::new();
        for r in self.of_kind(ResourceKind::TopicRule) {
            rules.push(
                self.topic_rule(r, resources)
                    .with_context(|| format!("topic rule {}", r.logical_id))?,
            );
        }
        for f in self.of_kind(ResourceKind::Function) {
            let Some(events) = f.properties.get("Events").and_then(Yaml::as_mapping) else {
                continue;
            };
            for (event_id, event) in events {
                if event.get("Type").and_then(Yaml::as_str) != Some("IoTRule") {
                    continue;
                }
                let event_id = key_str(event_id)?;
                let logical_id = format!("{}{event_id}", f.logical_id);
                let props = event.get("Properties").cloned().unwrap_or(Yaml::Null);
                let props = self
                    .resolve(&props, resources)
                    .with_context(|| format!("IoTRule event {logical_id}"))?;
                let sql = props
                    .get("Sql")
                    .and_then(Json::as_str)
                    .with_context(|| format!("IoTRule event {logical_id} has no Sql"))?
                    .to_owned();
                let function_arn = resources
                    .arn(&f.logical_id)
                    .map(str::to_owned)
                    .with_context(|| format!("function {} has no ARN", f.logical_id))?;
                rules.push(TopicRuleSpec {
                    name: logical_id.clone(),
                    logical_id,
                    sql,
                    sql_version: props
                        .get("AwsIotSqlVersion")
                        .and_then(Json::as_str)
                        .map(str::to_owned),
                    disabled: false,
                    actions: vec![RuleActionSpec::Lambda { function_arn }],
                    error_action: None,
                });
            }
        }
        Ok(rules)
    }

    fn topic_rule(&self, r: &Resource, resources: &Resources) -> Result<TopicRuleSpec> {
        let props = self.resolve(&r.properties, resources)?;
        let payload = props
            .get("TopicRulePayload")
            .context("TopicRulePayload is missing")?;
        let sql = payload
            .get("Sql")
            .and_then(Json::as_str)
            .context("TopicRulePayload.Sql is missing")?
            .to_owned();
        let disabled = match payload.get("RuleDisabled") {
            None | Some(Json::Null) => false,
            Some(v) => json_bool(v).context("RuleDisabled")?,
        };
        let actions = match payload.get("Actions") {
            None | Some(Json::Null) => Vec::new(),
            Some(Json::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, a)| rule_action(a).with_context(|| format!("Actions[{i}]")))
                .collect::<Result<_>>()?,
            Some(other) => bail!("TopicRulePayload.Actions must be a list, found {other}"),
        };
        let error_action = match payload.get("ErrorAction") {
            None | Some(Json::Null) => None,
            Some(a) => Some(rule_action(a).context("ErrorAction")?),
        };
        Ok(TopicRuleSpec {
            logical_id: r.logical_id.clone(),
            name: resources
                .get(&r.logical_id)
                .map_or_else(|| r.logical_id.clone(), |l| l.name.clone()),
            sql,
            sql_version: payload
                .get("AwsIotSqlVersion")
                .and_then(Json::as_str)
                .map(str::to_owned),
            disabled,
            actions,
            error_action,
        })
    }

    pub fn thing_types(&self, resources: &Resources) -> Result<Vec<ThingTypeSpec>> {
        self.of_kind(ResourceKind::ThingType)
            .map(|r| {
                let props = self
                    .resolve(&r.properties, resources)
                    .with_context(|| format!("thing type {}", r.logical_id))?;
                let type_props = props.get("ThingTypeProperties");
                Ok(ThingTypeSpec {
                    logical_id: r.logical_id.clone(),
                    name: resources
                        .get(&r.logical_id)
                        .map_or_else(|| r.logical_id.clone(), |l| l.name.clone()),
                    description: type_props
                        .and_then(|p| p.get("ThingTypeDescription"))
                        .and_then(Json::as_str)
                        .map(str::to_owned),
                    searchable_attributes: type_props
                        .and_then(|p| p.get("SearchableAttributes"))
                        .and_then(Json::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Json::as_str)
                        .map(str::to_owned)
                        .collect(),
                    deprecated: match props.get("DeprecateThingType") {
                        None | Some(Json::Null) => false,
                        Some(v) => json_bool(v).with_context(|| {
                            format!("thing type {}: DeprecateThingType", r.logical_id)
                        })?,
                    },
                })
            })
            .collect()
    }

    /// Every function with Globals applied; queue URLs in its environment come from `resources`.
    pub fn functions(&self, resources: &Resources) -> Result<Vec<FunctionSpec>> {
        self.of_kind(ResourceKind::Function)
            .map(|r| {
                self.function(r, resources)
                    .with_context(|| format!("function {}", r.logical_id))
            })
            .collect()
    }

    /// The Cargo binary of every function (what `cargo build --bin` and cargo-lambda take).
    pub fn function_binaries(&self) -> Result<Vec<String>> {
        self.of_kind(ResourceKind::Function)
            .map(|r| {
                self.binary_of(r)
                    .map(|(_, binary)| binary)
                    .with_context(|| format!("function {}", r.logical_id))
            })
            .collect()
    }

    fn binary_of(&self, r: &Resource) -> Result<(String, String)> {
        match (self.binaries.get(&r.logical_id), Self::binary_override(r)) {
            (Some((p, b)), _) => Ok((p.clone(), b.clone())),
            (None, Some(b)) => Ok((b.clone(), b)),
            (None, None) => bail!("its binary is unknown: load the template with Template::load (runs cargo metadata)"),
        }
    }

    fn function(&self, r: &Resource, resources: &Resources) -> Result<FunctionSpec> {
        let props = &r.properties;
        let globals = &self.function_globals;
        let code_uri = self.code_uri(r)?;
        let (package, binary) = self.binary_of(r)?;
        let number = |key: &str, default: u64| -> Result<u64> {
            match props.get(key).or_else(|| globals.get(key)) {
                None => Ok(default),
                Some(v) => {
                    let text = self.resolve_string(v, resources)?;
                    text.parse()
                        .with_context(|| format!("{key} = {text:?} is not a whole number"))
                }
            }
        };
        let timeout = Duration::from_secs(number("Timeout", DEFAULT_TIMEOUT_SECS)?);
        let memory_size_mb = number("MemorySize", DEFAULT_MEMORY_MB)?;

        let mut environment = BTreeMap::new();
        for source in [globals, props] {
            if let Some(vars) = source
                .get("Environment")
                .and_then(|e| e.get("Variables"))
                .and_then(Yaml::as_mapping)
            {
                for (k, v) in vars {
                    let k = key_str(k)?;
                    let value = self
                        .resolve_string(v, resources)
                        .with_context(|| format!("environment variable {k}"))?;
                    environment.insert(k, value);
                }
            }
        }

        let mut http_routes = Vec::new();
        let mut sqs_sources = Vec::new();
        let mut stream_sources = Vec::new();
        let mut schedules = Vec::new();
        if let Some(events) = props.get("Events").and_then(Yaml::as_mapping) {
            for (event_id, event) in events {
                let event_id = key_str(event_id)?;
                let ep = event.get("Properties").cloned().unwrap_or(Yaml::Null);
                let ep = match self
                    .resolve(&ep, resources)
                    .with_context(|| format!("event {event_id}"))?
                {
                    Json::Object(map) => map,
                    _ => serde_json::Map::new(),
                };
                match event.get("Type").and_then(Yaml::as_str) {
                    Some("HttpApi") => {
                        let method = ep
                            .get("Method")
                            .and_then(Json::as_str)
                            .unwrap_or("ANY")
                            .to_uppercase();
                        let path = ep.get("Path").and_then(Json::as_str).map(str::to_owned);
                        let auth = match ep
                            .get("Auth")
                            .and_then(|a| a.get("Authorizer"))
                            .and_then(Json::as_str)
                        {
                            None => RouteAuth::Default,
                            Some("NONE") => RouteAuth::None,
                            Some(name) => RouteAuth::Named(name.to_owned()),
                        };
                        http_routes.push(HttpRoute {
                            event_id,
                            method,
                            path,
                            auth,
                        });
                    }
                    Some("SQS") => sqs_sources.push(Self::sqs_source(event_id, &ep, resources)?),
                    Some("DynamoDB") => {
                        stream_sources.push(Self::stream_source(event_id, &ep, resources)?);
                    }
                    Some("Schedule" | "ScheduleV2") => {
                        let expression = ep
                            .get("Schedule")
                            .or_else(|| ep.get("ScheduleExpression"))
                            .and_then(Json::as_str)
                            .with_context(|| {
                                format!("schedule event {event_id} has no expression")
                            })?
                            .to_owned();
                        schedules.push(ScheduleSource {
                            event_id,
                            every: rate_period(&expression),
                            expression,
                        });
                    }
                    // Run by the rules engine: see `Template::topic_rules`.
                    Some("IoTRule") => {}
                    Some(other) => {
                        tracing::debug!(function = %r.logical_id, %event_id, "event type {other} is not emulated locally")
                    }
                    None => bail!("event {event_id} has no Type"),
                }
            }
        }
        Ok(FunctionSpec {
            logical_id: r.logical_id.clone(),
            code_uri,
            package,
            binary,
            timeout,
            memory_size_mb,
            environment,
            http_routes,
            sqs_sources,
            stream_sources,
            schedules,
        })
    }

    fn sqs_source(
        event_id: String,
        ep: &serde_json::Map<String, Json>,
        resources: &Resources,
    ) -> Result<SqsSource> {
        let queue_arn = ep
            .get("Queue")
            .and_then(Json::as_str)
            .with_context(|| format!("SQS event {event_id} needs Queue (the queue's ARN)"))?
            .to_owned();
        let queue = resources
            .by_arn(&queue_arn)
            .filter(|r| r.kind == ResourceKind::Queue)
            .with_context(|| {
                format!("SQS event {event_id}: {queue_arn} is not a queue of this template")
            })?;
        let int = |v: Option<&Json>| -> Result<Option<u64>> {
            match v {
                None | Some(Json::Null) => Ok(None),
                Some(Json::Number(n)) => n
                    .as_u64()
                    .map(Some)
                    .with_context(|| format!("{n} is not a whole number")),
                Some(Json::String(s)) => s
                    .parse()
                    .map(Some)
                    .with_context(|| format!("{s:?} is not a whole number")),
                Some(other) => bail!("{other} is not a whole number"),
            }
        };
        let batch_size =
            int(ep.get("BatchSize")).with_context(|| format!("SQS event {event_id}: BatchSize"))?;
        let batch_size = batch_size.map_or(Ok(DEFAULT_SQS_BATCH_SIZE), u32::try_from)?;
        if batch_size == 0 {
            bail!("SQS event {event_id}: BatchSize must be at least 1");
        }
        let window = int(ep.get("MaximumBatchingWindowInSeconds"))?.unwrap_or(0);
        let report_batch_item_failures = ep
            .get("FunctionResponseTypes")
            .and_then(Json::as_array)
            .is_some_and(|types| types.iter().any(|t| t == "ReportBatchItemFailures"));
        let maximum_concurrency = int(ep
            .get("ScalingConfig")
            .and_then(|s| s.get("MaximumConcurrency")))?
        .map(u32::try_from)
        .transpose()?;
        let enabled = !matches!(ep.get("Enabled"), Some(Json::Bool(false)));
        Ok(SqsSource {
            event_id,
            queue_logical_id: queue.logical_id.clone(),
            queue_arn: queue.arn.clone(),
            batch_size,
            maximum_batching_window: Duration::from_secs(window),
            report_batch_item_failures,
            maximum_concurrency,
            enabled,
        })
    }

    /// A `DynamoDB` event: Lambda's defaults and limits for DynamoDB streams.
    fn stream_source(
        event_id: String,
        ep: &serde_json::Map<String, Json>,
        resources: &Resources,
    ) -> Result<StreamSource> {
        let what = format!("DynamoDB event {event_id}");
        let stream_arn = ep
            .get("Stream")
            .and_then(Json::as_str)
            .with_context(|| format!("{what} needs Stream (the table's StreamArn)"))?
            .to_owned();
        let table = resources.by_stream_arn(&stream_arn).with_context(|| {
            format!("{what}: {stream_arn} is not the stream of a table of this template")
        })?;
        let number = |key: &str| -> Result<Option<i64>> {
            whole_number(ep.get(key)).with_context(|| format!("{what}: {key}"))
        };
        let flag = |key: &str| -> Result<bool> {
            match ep.get(key) {
                None | Some(Json::Null) => Ok(false),
                Some(v) => json_bool(v).with_context(|| format!("{what}: {key}")),
            }
        };
        let batch_size = match number("BatchSize")? {
            None => DEFAULT_STREAM_BATCH_SIZE,
            Some(n) => u32::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_STREAM_BATCH_SIZE).contains(n))
                .with_context(|| {
                    format!("{what}: BatchSize {n} is not between 1 and {MAX_STREAM_BATCH_SIZE}")
                })?,
        };
        let window = match number("MaximumBatchingWindowInSeconds")? {
            None => 0,
            Some(n) => u64::try_from(n)
                .ok()
                .filter(|n| *n <= MAX_BATCHING_WINDOW_SECS)
                .with_context(|| {
                    format!("{what}: MaximumBatchingWindowInSeconds {n} is not between 0 and {MAX_BATCHING_WINDOW_SECS}")
                })?,
        };
        // SAM requires it for streams; AT_TIMESTAMP is Kinesis's alone.
        let starting_position = match ep.get("StartingPosition").and_then(Json::as_str) {
            Some("LATEST") => StartingPosition::Latest,
            Some("TRIM_HORIZON") => StartingPosition::TrimHorizon,
            Some(other) => {
                bail!("{what}: StartingPosition {other} is neither LATEST nor TRIM_HORIZON")
            }
            None => bail!("{what} needs StartingPosition (LATEST or TRIM_HORIZON)"),
        };
        let maximum_retry_attempts = match number("MaximumRetryAttempts")? {
            None | Some(-1) => None,
            Some(n) => Some(u32::try_from(n).ok().with_context(|| {
                format!("{what}: MaximumRetryAttempts {n} is neither -1 nor a count")
            })?),
        };
        let report_batch_item_failures = ep
            .get("FunctionResponseTypes")
            .and_then(Json::as_array)
            .is_some_and(|types| types.iter().any(|t| t == "ReportBatchItemFailures"));
        // Said once, here, rather than silently doing more than the deployed mapping would.
        for key in [
            "ParallelizationFactor",
            "MaximumRecordAgeInSeconds",
            "TumblingWindowInSeconds",
            "DestinationConfig",
        ] {
            if ep.get(key).is_some_and(|v| !v.is_null()) {
                tracing::warn!("{what}: {key} is not emulated by the local stack");
            }
        }
        Ok(StreamSource {
            event_id,
            table_logical_id: table.logical_id.clone(),
            stream_arn,
            batch_size,
            maximum_batching_window: Duration::from_secs(window),
            starting_position,
            report_batch_item_failures,
            maximum_retry_attempts,
            bisect_batch_on_function_error: flag("BisectBatchOnFunctionError")?,
            enabled: match ep.get("Enabled") {
                None | Some(Json::Null) => true,
                Some(v) => json_bool(v).with_context(|| format!("{what}: Enabled"))?,
            },
            event_names: event_name_filter(&what, ep.get("FilterCriteria")),
        })
    }
}

/// A whole number property, which CloudFormation also accepts as text.
fn whole_number(v: Option<&Json>) -> Result<Option<i64>> {
    match v {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Number(n)) => n
            .as_i64()
            .map(Some)
            .with_context(|| format!("{n} is not a whole number")),
        Some(Json::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .with_context(|| format!("{s:?} is not a whole number")),
        Some(other) => bail!("{other} is not a whole number"),
    }
}

/// A boolean property, which CloudFormation also accepts as `"true"`/`"false"`.
fn json_bool(v: &Json) -> Result<bool> {
    match v {
        Json::Bool(b) => Ok(*b),
        Json::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Json::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        other => bail!("{other} is not a boolean"),
    }
}

/// One `{Kind: {properties}}` entry of a rule's `Actions` or its `ErrorAction`.
fn rule_action(action: &Json) -> Result<RuleActionSpec> {
    let Some((kind, props)) =
        action
            .as_object()
            .and_then(|o| if o.len() == 1 { o.iter().next() } else { None })
    else {
        bail!("an action is an object with one key (Lambda, Sqs, DynamoDBv2, ...), found {action}");
    };
    let text = |key: &str| -> Result<String> {
        props
            .get(key)
            .and_then(Json::as_str)
            .map(str::to_owned)
            .with_context(|| format!("the {kind} action needs {key}"))
    };
    Ok(match kind.as_str() {
        "Lambda" => RuleActionSpec::Lambda {
            function_arn: text("FunctionArn")?,
        },
        "Sqs" => RuleActionSpec::Sqs {
            queue_url: text("QueueUrl")?,
            use_base64: match props.get("UseBase64") {
                None | Some(Json::Null) => false,
                Some(v) => json_bool(v).context("UseBase64")?,
            },
        },
        "DynamoDBv2" => RuleActionSpec::DynamoDbV2 {
            table_name: props
                .get("PutItem")
                .and_then(|p| p.get("TableName"))
                .and_then(Json::as_str)
                .map(str::to_owned)
                .context("the DynamoDBv2 action needs PutItem.TableName")?,
        },
        "Republish" => RuleActionSpec::Republish {
            topic: text("Topic")?,
            qos: match props.get("Qos") {
                None | Some(Json::Null) => 0,
                Some(Json::Number(n)) if n.as_u64() == Some(0) => 0,
                Some(Json::Number(n)) if n.as_u64() == Some(1) => 1,
                Some(Json::String(s)) if s == "0" || s == "1" => u8::from(s == "1"),
                Some(other) => bail!("Republish.Qos must be 0 or 1, found {other}"),
            },
        },
        other => RuleActionSpec::Unsupported {
            kind: other.to_owned(),
        },
    })
}

/// Names a `Sub` template refers to (`${Name}`, `${Name.Attr}`; not `${!Literal}`).
fn sub_references(text: &str, out: &mut BTreeSet<String>) {
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let name = &after[..end];
        if !name.starts_with('!') {
            out.insert(name.split('.').next().unwrap_or(name).to_owned());
        }
        rest = &after[end + 1..];
    }
}

/// Logical ids named by `Ref`/`GetAtt`/`Sub` anywhere in `value`.
fn collect_references(value: &Yaml, out: &mut BTreeSet<String>) {
    match value {
        Yaml::Tagged(t) => {
            let tag = t.tag.to_string();
            match (tag.trim_start_matches('!'), &t.value) {
                ("Ref", Yaml::String(s)) => {
                    out.insert(s.clone());
                }
                ("GetAtt", Yaml::String(s)) => {
                    out.insert(s.split('.').next().unwrap_or(s).to_owned());
                }
                ("Sub", Yaml::String(s)) => sub_references(s, out),
                _ => {}
            }
            collect_references(&t.value, out);
        }
        Yaml::Mapping(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    (Some("Ref"), Yaml::String(s)) => {
                        out.insert(s.clone());
                    }
                    (Some("Fn::GetAtt"), Yaml::String(s)) => {
                        out.insert(s.split('.').next().unwrap_or(s).to_owned());
                    }
                    (Some("Fn::GetAtt"), Yaml::Sequence(items)) => {
                        if let Some(Yaml::String(s)) = items.first() {
                            out.insert(s.clone());
                        }
                    }
                    (Some("Fn::Sub"), Yaml::String(s)) => sub_references(s, out),
                    _ => {}
                }
                collect_references(v, out);
            }
        }
        Yaml::Sequence(items) => {
            for item in items {
                collect_references(item, out);
            }
        }
        _ => {}
    }
}

fn key_str(key: &Yaml) -> Result<String> {
    key.as_str()
        .map(str::to_owned)
        .with_context(|| format!("expected a string key, found {key:?}"))
}

fn scalar_to_string(v: &Yaml) -> Result<String> {
    match v {
        Yaml::String(s) => Ok(s.clone()),
        Yaml::Number(n) => Ok(n.to_string()),
        Yaml::Bool(b) => Ok(b.to_string()),
        other => bail!("not a scalar: {other:?}"),
    }
}

/// CloudFormation accepts numbers written as strings.
fn flex_u64<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    use serde::de::Error;
    match Json::deserialize(d)? {
        Json::Number(n) => n
            .as_u64()
            .ok_or_else(|| D::Error::custom(format!("{n} is not a whole number"))),
        Json::String(s) => s
            .parse()
            .map_err(|_| D::Error::custom(format!("{s:?} is not a whole number"))),
        other => Err(D::Error::custom(format!("{other} is not a number"))),
    }
}

fn flex_bool<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    use serde::de::Error;
    match Json::deserialize(d)? {
        Json::Bool(b) => Ok(b),
        Json::String(s) if s == "true" => Ok(true),
        Json::String(s) if s == "false" => Ok(false),
        other => Err(D::Error::custom(format!("{other} is not a boolean"))),
    }
}

#[derive(Debug)]
struct CargoPackage {
    name: String,
    manifest_path: PathBuf,
    bins: Vec<String>,
}

/// Packages (and their binary targets) of the workspace `manifest` belongs to.
fn cargo_packages(manifest: &Path) -> Result<Vec<CargoPackage>> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .manifest_path(manifest)
        .no_deps()
        .exec()
        .with_context(|| {
            format!(
                "`cargo metadata --manifest-path {}` failed; is cargo on PATH, and the manifest valid?",
                manifest.display()
            )
        })?;
    Ok(metadata
        .packages
        .into_iter()
        .map(|p| {
            let manifest_path = p.manifest_path.into_std_path_buf();
            let manifest_path = manifest_path.canonicalize().unwrap_or(manifest_path);
            let bins = p
                .targets
                .iter()
                .filter(|t| t.is_bin())
                .map(|t| t.name.clone())
                .collect();
            CargoPackage {
                name: p.name.to_string(),
                manifest_path,
                bins,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_expressions_become_periods() {
        assert_eq!(
            rate_period("rate(5 minutes)"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(rate_period("rate(1 hour)"), Some(Duration::from_secs(3600)));
        assert_eq!(rate_period("cron(0 12 * * ? *)"), None);
        assert_eq!(rate_period("rate(five minutes)"), None);
    }
    use crate::tools::workspace_root;

    fn real() -> Template {
        Template::load(&workspace_root().join("template.yaml")).expect("template.yaml loads")
    }

    /// Secrets reach functions only as references (a secret's ARN, a `{{resolve:...}}`), never
    /// as literal values in the template, and no parameter defaults to one.
    #[test]
    fn the_template_holds_no_secret() {
        let t = real();
        // Anything naming a secret or a password, or ending in a key or token
        // (`AUTH_TOKEN_HOURS` is a setting).
        let secret_name = |name: &str| {
            let upper = name.to_ascii_uppercase();
            ["SECRET", "PASSWORD", "CREDENTIAL"]
                .iter()
                .any(|word| upper.contains(word))
                || ["KEY", "TOKEN"].iter().any(|word| upper.ends_with(word))
        };
        let mut checked = 0;
        let environments = std::iter::once(&t.function_globals)
            .chain(t.of_kind(ResourceKind::Function).map(|f| &f.properties))
            .filter_map(|p| p.get("Environment").and_then(|e| e.get("Variables")))
            .filter_map(Yaml::as_mapping);
        for vars in environments {
            for (name, value) in vars {
                let name = name.as_str().unwrap_or_default();
                // A plain string; `!Ref`/`!Sub` are tagged values.
                let literal = matches!(value, Yaml::String(v) if !v.contains("{{resolve:"));
                if secret_name(name) || name == "CARRIER_ACCOUNTS" {
                    checked += 1;
                    assert!(!literal, "{name} is a literal in template.yaml: {value:?}");
                }
            }
        }
        assert!(
            checked >= 3,
            "the secret-bearing variables were not found ({checked})"
        );
        for (name, parameter) in &t.parameters {
            if let (true, Some(default)) = (secret_name(name), &parameter.default) {
                assert!(
                    name.ends_with("Name") || default.is_empty(),
                    "parameter {name} defaults to a value, not a name: {default:?}"
                );
            }
        }
        for secret in t.of_kind(ResourceKind::Secret) {
            assert!(
                secret.properties.get("SecretString").is_none(),
                "{} has its value in the template",
                secret.logical_id
            );
        }
    }

    /// Every topic rule's SQL parses with the local rules engine, as SQL version 2016-03-23.
    #[test]
    fn every_topic_rule_of_the_real_template_parses() {
        let t = real();
        let rules: Vec<&Resource> = t
            .resources
            .values()
            .filter(|r| r.type_name == "AWS::IoT::TopicRule")
            .collect();
        assert!(!rules.is_empty());
        for rule in rules {
            let payload = rule.properties.get("TopicRulePayload").expect("payload");
            let sql = payload.get("Sql").and_then(Yaml::as_str).expect("Sql");
            iot_rules::Rule::parse(sql).unwrap_or_else(|e| panic!("{}: {e}", rule.logical_id));
            assert_eq!(
                payload.get("AwsIotSqlVersion").and_then(Yaml::as_str),
                Some("2016-03-23"),
                "{}",
                rule.logical_id
            );
            assert!(
                payload.get("ErrorAction").is_some(),
                "{} has an error action",
                rule.logical_id
            );
        }
    }

    /// Resources as after provisioning: a queue URL for every queue.
    fn provisioned(t: &Template) -> Resources {
        let mut res = Resources::planned(t);
        let queues: Vec<(String, String, String)> = res
            .of_kind(ResourceKind::Queue)
            .map(|q| {
                (
                    q.logical_id.clone(),
                    format!("http://localhost:5000/{ACCOUNT_ID}/{}", q.name),
                    q.arn.clone(),
                )
            })
            .collect();
        for (id, url, arn) in queues {
            res.set_queue(&id, url, arn);
        }
        res
    }

    fn assert_no_tags(value: &Json, at: &str) {
        match value {
            Json::Object(map) => {
                for (k, v) in map {
                    assert!(
                        k != "Ref" && !k.starts_with("Fn::"),
                        "unresolved {k} at {at}"
                    );
                    assert_no_tags(v, &format!("{at}.{k}"));
                }
            }
            Json::Array(items) => items.iter().for_each(|v| assert_no_tags(v, at)),
            Json::String(s) => assert!(!s.contains("${"), "unresolved Sub at {at}: {s}"),
            _ => {}
        }
    }

    #[test]
    fn every_function_of_the_real_template_is_found_and_resolved() {
        let t = real();
        let res = provisioned(&t);
        let functions = t.functions(&res).expect("functions resolve");
        let by_id: BTreeMap<_, _> = functions
            .iter()
            .map(|f| (f.logical_id.as_str(), f))
            .collect();
        let declared: Vec<_> = t
            .of_kind(ResourceKind::Function)
            .map(|r| r.logical_id.as_str())
            .collect();
        assert_eq!(by_id.keys().copied().collect::<Vec<_>>(), declared);
        assert!(
            declared.len() >= 3,
            "expected the intake, status and planner functions"
        );

        for f in &functions {
            assert!(
                !f.binary.is_empty() && !f.package.is_empty(),
                "{}: binary",
                f.logical_id
            );
            assert!(
                f.code_uri.join("Cargo.toml").exists(),
                "{}: CodeUri",
                f.logical_id
            );
            // Globals reach every function, resolved to local names.
            assert_eq!(
                f.environment.get("BULK_CHANGES_TABLE").map(String::as_str),
                Some("BulkChangesTable")
            );
            assert_eq!(
                f.environment.get("PAYLOAD_BUCKET").map(String::as_str),
                Some("payloadbucket")
            );
            assert_eq!(
                f.environment.get("PLAN_QUEUE_URL").map(String::as_str),
                Some(format!("http://localhost:5000/{ACCOUNT_ID}/PlanQueue").as_str())
            );
            assert_eq!(
                f.environment.get("RUST_LOG").map(String::as_str),
                Some("info")
            );
            for (k, v) in &f.environment {
                // The OIDC settings are empty parameters until a deployment chooses oidc.
                assert!(
                    !v.contains("${") && (!v.is_empty() || k.starts_with("OIDC_")),
                    "{}: {k}={v}",
                    f.logical_id
                );
            }
        }

        let intake = by_id["BulkIntakeFunction"];
        assert_eq!(intake.binary, "bulk-intake");
        assert_eq!(intake.timeout, Duration::from_secs(30));
        assert_eq!(intake.memory_size_mb, 256);
        let intake_routes: BTreeSet<_> = intake
            .http_routes
            .iter()
            .map(HttpRoute::route_key)
            .collect();
        assert_eq!(
            intake_routes,
            BTreeSet::from([
                "POST /bulk-changes".to_owned(),
                "POST /bulk-changes/preview".to_owned()
            ])
        );

        let status = by_id["BulkStatusFunction"];
        let keys: BTreeSet<_> = status
            .http_routes
            .iter()
            .map(HttpRoute::route_key)
            .collect();
        assert!(keys.contains("GET /bulk-changes/{id}"), "{keys:?}");
        assert!(keys.contains("GET /bulk-changes"), "{keys:?}");

        // Every route is behind the token authorizer but the login, the carrier callbacks and
        // the console's pages (whose session cookie the console checks itself).
        let auth = t.api_auth(&res).expect("the API's Auth");
        assert_eq!(auth.default_authorizer.as_deref(), Some("TokenAuthorizer"));
        let [authorizer] = auth.authorizers.as_slice() else {
            panic!("one authorizer: {auth:?}")
        };
        assert_eq!(authorizer.function_logical_id, "ApiAuthorizerFunction");
        assert_eq!(authorizer.identity_headers, ["authorization"]);
        assert!(authorizer.simple_responses);
        for f in &functions {
            for route in &f.http_routes {
                let open = matches!(
                    route.route_key().as_str(),
                    "POST /auth/login"
                        | "POST /carriers/thingspace/callbacks"
                        | "POST /carriers/thingspace/usage-callbacks"
                        | "GET /console"
                        | "ANY /console/{proxy+}"
                );
                assert_eq!(
                    auth.for_route(&route.auth).is_none(),
                    open,
                    "{}",
                    route.route_key()
                );
            }
        }
        let secret_arn =
            by_id["ApiAuthorizerFunction"].environment["AUTH_SIGNING_SECRET_ID"].clone();
        assert!(
            secret_arn.starts_with("arn:aws:secretsmanager:"),
            "{secret_arn}"
        );
        assert_eq!(
            by_id["AuthLoginFunction"].environment["AUTH_SIGNING_SECRET_ID"],
            secret_arn
        );
        let secrets = t.secrets(&res).expect("secrets");
        assert_eq!(secrets.len(), 1);
        assert_eq!(secrets[0].generated_length, 64);
        assert_eq!(
            secrets[0].secret_string, None,
            "generated, never in the template"
        );

        let planner = by_id["BulkPlannerFunction"];
        assert_eq!(planner.timeout, Duration::from_secs(300));
        assert_eq!(planner.memory_size_mb, 512);
        assert!(planner.http_routes.is_empty());
        let [plan] = planner.sqs_sources.as_slice() else {
            panic!("planner has one SQS source")
        };
        assert_eq!(plan.queue_logical_id, "PlanQueue");
        assert_eq!(
            plan.queue_arn,
            format!("arn:aws:sqs:{REGION}:{ACCOUNT_ID}:PlanQueue")
        );
        assert_eq!(plan.batch_size, 1);
        assert!(plan.report_batch_item_failures);
        assert_eq!(plan.maximum_concurrency, Some(10));
        assert!(plan.enabled);

        // The live events: the recorder follows five tables' streams, the fan-out the events'.
        let tables_of = |id: &str| -> Vec<&str> {
            by_id[id]
                .stream_sources
                .iter()
                .map(|s| s.table_logical_id.as_str())
                .collect()
        };
        assert_eq!(
            tables_of("EventRecorderFunction"),
            [
                "DevicesTable",
                "CommandsTable",
                "BulkChangesTable",
                "SimsTable",
                "TelemetryTable"
            ]
        );
        let telemetry = &by_id["EventRecorderFunction"].stream_sources[4];
        assert_eq!(
            telemetry.event_names,
            Some(vec!["INSERT".to_owned()]),
            "rewritten and expiring chunks are left out"
        );
        assert_eq!(tables_of("EventFanoutFunction"), ["EventsTable"]);
        for source in functions.iter().flat_map(|f| &f.stream_sources) {
            assert_eq!(
                res.stream_arn(&source.table_logical_id),
                Some(source.stream_arn.as_str())
            );
            assert_eq!(source.starting_position, StartingPosition::Latest);
            // Telemetry comes in large batches: most of it is read and left.
            let batch = if source.table_logical_id == "TelemetryTable" {
                1000
            } else {
                100
            };
            assert_eq!(source.batch_size, batch, "{}", source.event_id);
            // Nothing waits to gather a batch: a page shows a change within a second.
            assert_eq!(
                source.maximum_batching_window,
                Duration::ZERO,
                "{}",
                source.event_id
            );
            assert!(source.report_batch_item_failures, "{}", source.event_id);
            // A live sample is soon stale: it is given up sooner than the rest.
            let retries = if source.table_logical_id == "TelemetryTable" {
                5
            } else {
                20
            };
            assert_eq!(source.maximum_retry_attempts, Some(retries));
            assert!(source.enabled);
        }
    }

    #[test]
    fn storage_of_the_real_template_resolves_without_a_tag_left() {
        let t = real();
        let res = provisioned(&t);
        for r in t
            .resources
            .values()
            .filter(|r| r.kind != ResourceKind::Other)
        {
            let props = t
                .resolve(&r.properties, &res)
                .unwrap_or_else(|e| panic!("{}: {e:#}", r.logical_id));
            // A topic rule's `${...}` are IoT substitution templates, not CloudFormation's.
            if r.kind != ResourceKind::TopicRule {
                assert_no_tags(&props, &r.logical_id);
            }
        }

        let tables = t.tables(&res).expect("tables");
        // The template grows; these are the ones the bulk-change side cannot do without.
        for id in [
            "BulkChangesTable",
            "DeviceChangesTable",
            "AuditLogTable",
            "IdempotencyTable",
            "AccountsTable",
        ] {
            assert!(tables.iter().any(|t| t.logical_id == id), "{id}");
        }
        let bulk = tables
            .iter()
            .find(|t| t.logical_id == "BulkChangesTable")
            .expect("BulkChangesTable");
        assert_eq!(bulk.name, "BulkChangesTable");
        assert_eq!(bulk.billing_mode.as_deref(), Some("PAY_PER_REQUEST"));
        assert_eq!(bulk.global_secondary_indexes[0].index_name, "ByStatus");
        assert_eq!(
            bulk.global_secondary_indexes[0]
                .projection
                .projection_type
                .as_deref(),
            Some("ALL")
        );
        let idem = tables
            .iter()
            .find(|t| t.logical_id == "IdempotencyTable")
            .expect("IdempotencyTable");
        assert_eq!(
            idem.time_to_live_specification,
            Some(TimeToLive {
                attribute_name: "expiresAt".into(),
                enabled: true
            })
        );

        let order = t.queue_order().expect("queue order");
        let pos = |id: &str| order.iter().position(|q| q == id).expect(id);
        assert!(pos("PlanDeadLetterQueue") < pos("PlanQueue"));
        assert!(pos("JasperWorkDeadLetterQueue") < pos("JasperWorkQueue"));

        let plan = t.queue("PlanQueue", &res).expect("PlanQueue");
        assert_eq!(plan.attributes["VisibilityTimeout"], "1800");
        let redrive: Json = serde_json::from_str(&plan.attributes["RedrivePolicy"]).expect("JSON");
        assert_eq!(
            redrive["deadLetterTargetArn"],
            format!("arn:aws:sqs:{REGION}:{ACCOUNT_ID}:PlanDeadLetterQueue")
        );
        assert_eq!(redrive["maxReceiveCount"], 5);

        assert_eq!(
            t.buckets(&res),
            vec![
                BucketSpec {
                    logical_id: "ConsoleAssetsBucket".into(),
                    name: "consoleassetsbucket".into()
                },
                BucketSpec {
                    logical_id: "PayloadBucket".into(),
                    name: "payloadbucket".into()
                }
            ]
        );
    }

    #[test]
    fn intrinsics_in_short_and_long_form() {
        let text = r#"
Parameters:
  Stage: { Type: String, Default: dev }
  Size: { Type: Number, Default: 3 }
Resources:
  Q: { Type: AWS::SQS::Queue }
  F: { Type: AWS::SQS::Queue, Properties: { FifoQueue: true } }
  T: { Type: AWS::DynamoDB::Table }
  B: { Type: AWS::S3::Bucket }
  Fn:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: fn-bin } }
    Properties:
      CodeUri: somewhere
      Environment:
        Variables:
          A: !Sub "${AWS::StackName}-${Stage}-${T}-${Q.Arn}-${!Literal}"
          B: { "Fn::Sub": ["${X}/${AWS::Region}/${AWS::AccountId}.${AWS::URLSuffix}", { X: !Ref B }] }
          C: { "Fn::Join": [",", [{ Ref: Q }, { "Fn::GetAtt": [F, QueueName] }, !GetAtt T.Arn, !Ref Size]] }
          D: { "Fn::GetAtt": "B.Arn" }
          E: 42
      Events:
        Any: { Type: HttpApi }
        Fifo: { Type: SQS, Properties: { Queue: !GetAtt F.Arn, MaximumBatchingWindowInSeconds: 5 } }
"#;
        let t = Template::parse(text, Path::new("/nowhere")).expect("parses");
        let mut res = Resources::planned(&t);
        res.set_queue(
            "Q",
            "http://moto/123456789012/Q".into(),
            format!("arn:aws:sqs:{REGION}:{ACCOUNT_ID}:Q"),
        );
        let [f] = t
            .functions(&res)
            .expect("resolves")
            .try_into()
            .expect("one function");
        assert_eq!(f.binary, "fn-bin");
        assert_eq!(f.timeout, Duration::from_secs(DEFAULT_TIMEOUT_SECS));
        let env = &f.environment;
        assert_eq!(
            env["A"],
            format!("cellbridge-local-dev-T-arn:aws:sqs:{REGION}:{ACCOUNT_ID}:Q-${{Literal}}")
        );
        assert_eq!(env["B"], format!("b/{REGION}/{ACCOUNT_ID}.amazonaws.com"));
        assert_eq!(env["C"], format!("http://moto/123456789012/Q,F.fifo,arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/T,3"));
        assert_eq!(env["D"], "arn:aws:s3:::b");
        assert_eq!(env["E"], "42");
        assert_eq!(
            f.http_routes,
            vec![HttpRoute {
                event_id: "Any".into(),
                method: "ANY".into(),
                path: None,
                auth: RouteAuth::Default,
            }]
        );
        let [fifo] = f.sqs_sources.as_slice() else {
            panic!("one SQS source")
        };
        assert_eq!(fifo.queue_logical_id, "F");
        assert_eq!(fifo.batch_size, DEFAULT_SQS_BATCH_SIZE);
        assert_eq!(fifo.maximum_batching_window, Duration::from_secs(5));
        assert!(!fifo.report_batch_item_failures);
    }

    #[test]
    fn dynamodb_events_are_stream_sources() {
        let text = r#"
Resources:
  T:
    Type: AWS::DynamoDB::Table
    Properties: { StreamSpecification: { StreamViewType: NEW_AND_OLD_IMAGES } }
  Plain: { Type: AWS::DynamoDB::Table }
  Fn:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: fn-bin } }
    Properties:
      CodeUri: somewhere
      Events:
        Changes: { Type: DynamoDB, Properties: { Stream: !GetAtt T.StreamArn, StartingPosition: TRIM_HORIZON } }
        Tuned:
          Type: DynamoDB
          Properties:
            Stream: { "Fn::GetAtt": [T, StreamArn] }
            StartingPosition: LATEST
            BatchSize: "10"
            MaximumBatchingWindowInSeconds: 2
            FunctionResponseTypes: [ReportBatchItemFailures]
            MaximumRetryAttempts: 3
            BisectBatchOnFunctionError: true
            Enabled: false
            FilterCriteria:
              Filters:
                - Pattern: '{"eventName": ["INSERT"]}'
                - Pattern: '{"eventName": ["MODIFY"]}'
"#;
        let t = Template::parse(text, Path::new("/nowhere")).expect("parses");
        let mut res = Resources::planned(&t);
        let planned =
            format!("arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/T/stream/{PLANNED_STREAM_LABEL}");
        assert_eq!(res.stream_arn("T"), Some(planned.as_str()));
        assert_eq!(res.stream_arn("Plain"), None);
        // Provisioning puts the emulator's ARN in place; the events follow it.
        let local = format!(
            "arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/T/stream/2024-05-01T10:00:00.123"
        );
        res.set_stream_arn("T", local.clone());
        let [f] = t
            .functions(&res)
            .expect("resolves")
            .try_into()
            .expect("one function");
        assert!(f.sqs_sources.is_empty());
        let [changes, tuned] = f.stream_sources.as_slice() else {
            panic!("two stream sources: {:?}", f.stream_sources)
        };
        assert_eq!(
            *changes,
            StreamSource {
                event_id: "Changes".into(),
                table_logical_id: "T".into(),
                stream_arn: local.clone(),
                batch_size: DEFAULT_STREAM_BATCH_SIZE,
                maximum_batching_window: Duration::ZERO,
                starting_position: StartingPosition::TrimHorizon,
                report_batch_item_failures: false,
                maximum_retry_attempts: None,
                bisect_batch_on_function_error: false,
                enabled: true,
                event_names: None,
            }
        );
        assert_eq!(
            *tuned,
            StreamSource {
                event_id: "Tuned".into(),
                table_logical_id: "T".into(),
                stream_arn: local,
                batch_size: 10,
                maximum_batching_window: Duration::from_secs(2),
                starting_position: StartingPosition::Latest,
                report_batch_item_failures: true,
                maximum_retry_attempts: Some(3),
                bisect_batch_on_function_error: true,
                enabled: false,
                event_names: Some(vec!["INSERT".into(), "MODIFY".into()]),
            }
        );

        // What Lambda would refuse, the local stack refuses too, saying why.
        let with = |properties: &str| {
            let text = format!(
                "Resources:\n  T: {{ Type: AWS::DynamoDB::Table, Properties: {{ StreamSpecification: {{ StreamViewType: KEYS_ONLY }} }} }}\n  Plain: {{ Type: AWS::DynamoDB::Table }}\n  Fn:\n    Type: AWS::Serverless::Function\n    Metadata: {{ BuildProperties: {{ Binary: b }} }}\n    Properties:\n      CodeUri: somewhere\n      Events:\n        E: {{ Type: DynamoDB, Properties: {properties} }}\n"
            );
            let t = Template::parse(&text, Path::new("/nowhere")).expect("parses");
            let err = t.functions(&Resources::planned(&t)).expect_err(properties);
            format!("{err:#}")
        };
        for (properties, says) in [
            ("{ Stream: !GetAtt T.StreamArn }", "StartingPosition"),
            ("{ Stream: !GetAtt T.StreamArn, StartingPosition: AT_TIMESTAMP }", "AT_TIMESTAMP"),
            ("{ Stream: !GetAtt T.StreamArn, StartingPosition: LATEST, BatchSize: 0 }", "BatchSize"),
            ("{ Stream: !GetAtt T.StreamArn, StartingPosition: LATEST, BatchSize: 10001 }", "BatchSize"),
            ("{ Stream: !GetAtt T.StreamArn, StartingPosition: LATEST, MaximumBatchingWindowInSeconds: 301 }", "MaximumBatchingWindowInSeconds"),
            ("{ Stream: !GetAtt T.StreamArn, StartingPosition: LATEST, MaximumRetryAttempts: -2 }", "MaximumRetryAttempts"),
            ("{ Stream: !GetAtt Plain.StreamArn, StartingPosition: LATEST }", "no StreamSpecification"),
            ("{ Stream: arn:aws:dynamodb:us-east-1:1:table/X/stream/y, StartingPosition: LATEST }", "not the stream of a table"),
            ("{ StartingPosition: LATEST }", "needs Stream"),
        ] {
            let err = with(properties);
            assert!(err.contains(says), "{properties}: {err}");
        }
    }

    #[test]
    fn unresolvable_references_say_what_is_missing() {
        let text = "Resources:\n  Q: { Type: AWS::SQS::Queue }\n  X: { Type: AWS::SNS::Topic }\n";
        let t = Template::parse(text, Path::new(".")).expect("parses");
        let res = Resources::planned(&t);
        let err = t
            .resolve(&serde_norway::from_str("!Ref Q").expect("yaml"), &res)
            .expect_err("no URL yet");
        assert!(err.to_string().contains("provision first"), "{err}");
        let err = t
            .resolve(&serde_norway::from_str("!Ref Nope").expect("yaml"), &res)
            .expect_err("unknown");
        assert!(
            err.to_string()
                .contains("neither a parameter nor a resource"),
            "{err}"
        );
        let err = t
            .resolve(&serde_norway::from_str("!Ref X").expect("yaml"), &res)
            .expect_err("not emulated");
        assert!(err.to_string().contains("not emulated"), "{err}");
        let err = t
            .resolve(
                &serde_norway::from_str("!If [a, b, c]").expect("yaml"),
                &res,
            )
            .expect_err("unsupported");
        assert!(err.to_string().contains("Fn::If"), "{err}");
    }

    /// Every topic rule of template.yaml resolves: SQL, actions with local ARNs and queue URLs,
    /// and an error action; lifecycle events invoke the presence function, heartbeats queue for
    /// it.
    #[test]
    fn topic_rules_of_the_real_template_resolve() {
        let t = real();
        let res = provisioned(&t);
        let rules = t.topic_rules(&res).expect("topic rules resolve");
        assert!(rules.len() >= 2, "{rules:?}");
        let queue_urls: Vec<&str> = res
            .of_kind(ResourceKind::Queue)
            .filter_map(|q| q.url.as_deref())
            .collect();
        for rule in &rules {
            assert!(!rule.disabled, "{}", rule.name);
            assert!(!rule.actions.is_empty(), "{}", rule.name);
            let error_action = rule.error_action.as_ref().expect("an error action");
            // Every queue an action names is one of the template's.
            for action in rule.actions.iter().chain([error_action]) {
                if let RuleActionSpec::Sqs { queue_url, .. } = action {
                    assert!(
                        queue_urls.contains(&queue_url.as_str()),
                        "{}: {queue_url}",
                        rule.name
                    );
                }
                assert!(
                    !matches!(action, RuleActionSpec::Unsupported { .. }),
                    "{}: {action:?} is not emulated locally",
                    rule.name
                );
            }
            iot_rules::Rule::parse(&rule.sql).unwrap_or_else(|e| panic!("{}: {e}", rule.name));
        }
        let presence_arn = res
            .arn("DevicePresenceFunction")
            .expect("presence function");
        let rule = |name: &str| rules.iter().find(|r| r.name == name).expect(name);
        assert_eq!(
            rule("PresenceLifecycleRule").actions,
            vec![RuleActionSpec::Lambda {
                function_arn: presence_arn.to_owned()
            }]
        );
        assert_eq!(
            rule("HeartbeatRule").actions,
            vec![RuleActionSpec::Sqs {
                queue_url: res
                    .queue_url("PresenceQueue")
                    .expect("presence queue")
                    .to_owned(),
                use_base64: false
            }]
        );
        let presence_source = t
            .functions(&res)
            .expect("functions")
            .into_iter()
            .find(|f| f.logical_id == "DevicePresenceFunction")
            .expect("presence function")
            .sqs_sources
            .into_iter()
            .next()
            .expect("the heartbeats' event source");
        assert_eq!(presence_source.queue_logical_id, "PresenceQueue");
        assert!(presence_source.report_batch_item_failures);
        let lifecycle = rules
            .iter()
            .find(|r| r.name == "PresenceLifecycleRule")
            .expect("lifecycle rule");
        assert_eq!(
            res.arn("PresenceLifecycleRule"),
            Some(format!("arn:aws:iot:{REGION}:{ACCOUNT_ID}:rule/PresenceLifecycleRule").as_str())
        );
        assert_eq!(lifecycle.sql_version.as_deref(), Some("2016-03-23"));
        // Every thing type has a name, and `!Ref` of one gives it (functions get it so).
        let thing_types = t.thing_types(&res).expect("thing types");
        for f in t.functions(&res).expect("functions") {
            if let Some(name) = f.environment.get("THING_TYPE_NAME") {
                assert!(
                    thing_types.iter().any(|tt| &tt.name == name),
                    "{}: THING_TYPE_NAME={name} is no thing type of the template",
                    f.logical_id
                );
            }
        }
        for thing_type in thing_types {
            assert!(!thing_type.name.is_empty());
            let reference = Yaml::Tagged(Box::new(serde_norway::value::TaggedValue {
                tag: serde_norway::value::Tag::new("Ref"),
                value: Yaml::String(thing_type.logical_id.clone()),
            }));
            assert_eq!(
                t.resolve_string(&reference, &res).expect("Ref"),
                thing_type.name
            );
        }
    }

    #[test]
    fn topic_rules_thing_types_and_iot_rule_events() {
        let text = r#"
Parameters:
  Stage: { Type: String, Default: dev }
Resources:
  Q: { Type: AWS::SQS::Queue }
  Errors: { Type: AWS::SQS::Queue }
  T: { Type: AWS::DynamoDB::Table }
  Role: { Type: AWS::IAM::Role, Properties: { RoleName: rules-role } }
  Kind:
    Type: AWS::IoT::ThingType
    Properties:
      ThingTypeName: !Sub "tracker-${Stage}"
      ThingTypeProperties: { ThingTypeDescription: Trackers, SearchableAttributes: [tenant, iccid] }
  Fn:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: fn-bin } }
    Properties:
      CodeUri: somewhere
      Environment: { Variables: { THING_TYPE_NAME: !Ref Kind } }
      Events:
        Acks: { Type: IoTRule, Properties: { Sql: "SELECT * FROM 'devices/+/commands/ack'", AwsIotSqlVersion: "2016-03-23" } }
  Telemetry:
    Type: AWS::IoT::TopicRule
    Properties:
      RuleName: telemetry_rule
      TopicRulePayload:
        Sql: "SELECT *, topic(2) AS deviceId FROM 'devices/+/telemetry'"
        RuleDisabled: "false"
        Actions:
          - Sqs: { QueueUrl: !Ref Q, RoleArn: !GetAtt Role.Arn, UseBase64: "true" }
          - DynamoDBv2: { PutItem: { TableName: !Ref T }, RoleArn: !GetAtt Role.Arn }
          - Republish: { Topic: "out/${topic(2)}", Qos: 1, RoleArn: !GetAtt Role.Arn }
          - Lambda: { FunctionArn: !GetAtt Fn.Arn }
          - Kinesis: { StreamName: s, RoleArn: !GetAtt Role.Arn }
        ErrorAction:
          Sqs: { QueueUrl: !GetAtt Errors.QueueUrl, RoleArn: !GetAtt Role.Arn }
"#;
        let t = Template::parse(text, Path::new("/nowhere")).expect("parses");
        let mut res = Resources::planned(&t);
        for q in ["Q", "Errors"] {
            res.set_queue(
                q,
                format!("http://moto/{ACCOUNT_ID}/{q}"),
                format!("arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{q}"),
            );
        }
        assert_eq!(
            res.arn("Role"),
            Some(format!("arn:aws:iam::{ACCOUNT_ID}:role/rules-role").as_str())
        );
        let [kind] = t
            .thing_types(&res)
            .expect("thing types")
            .try_into()
            .expect("one thing type");
        assert_eq!(kind.name, "tracker-dev");
        assert_eq!(kind.description.as_deref(), Some("Trackers"));
        assert_eq!(kind.searchable_attributes, ["tenant", "iccid"]);
        let [f] = t
            .functions(&res)
            .expect("functions")
            .try_into()
            .expect("one function");
        assert_eq!(f.environment["THING_TYPE_NAME"], "tracker-dev");

        let rules = t.topic_rules(&res).expect("rules");
        let telemetry = rules
            .iter()
            .find(|r| r.logical_id == "Telemetry")
            .expect("telemetry rule");
        assert_eq!(telemetry.name, "telemetry_rule");
        assert!(!telemetry.disabled);
        assert_eq!(telemetry.sql_version, None);
        let fn_arn = format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:Fn");
        assert_eq!(
            telemetry.actions,
            vec![
                RuleActionSpec::Sqs {
                    queue_url: format!("http://moto/{ACCOUNT_ID}/Q"),
                    use_base64: true
                },
                RuleActionSpec::DynamoDbV2 {
                    table_name: "T".into()
                },
                RuleActionSpec::Republish {
                    topic: "out/${topic(2)}".into(),
                    qos: 1
                },
                RuleActionSpec::Lambda {
                    function_arn: fn_arn.clone()
                },
                RuleActionSpec::Unsupported {
                    kind: "Kinesis".into()
                },
            ]
        );
        assert_eq!(
            telemetry.error_action,
            Some(RuleActionSpec::Sqs {
                queue_url: format!("http://moto/{ACCOUNT_ID}/Errors"),
                use_base64: false
            })
        );
        let acks = rules
            .iter()
            .find(|r| r.logical_id == "FnAcks")
            .expect("the IoTRule event is a rule");
        assert_eq!(acks.sql, "SELECT * FROM 'devices/+/commands/ack'");
        assert_eq!(
            acks.actions,
            vec![RuleActionSpec::Lambda {
                function_arn: fn_arn
            }]
        );
        assert_eq!(acks.error_action, None);

        let bad = "Resources:\n  R:\n    Type: AWS::IoT::TopicRule\n    Properties:\n      TopicRulePayload:\n        Sql: \"SELECT * FROM 'a'\"\n        Actions: [{ Sqs: { UseBase64: false } }]\n";
        let t = Template::parse(bad, Path::new("/nowhere")).expect("parses");
        let err = t
            .topic_rules(&Resources::planned(&t))
            .expect_err("no QueueUrl");
        assert!(format!("{err:#}").contains("QueueUrl"), "{err:#}");
    }
}
