//! The DynamoDB stream event sources against MiniStack's DynamoDB and DynamoDB Streams: what
//! GetRecords gives becomes the event Lambda sends, records reach the function in order, one
//! batch at a time, and failures are retried as Lambda retries them (from the record a partial
//! batch failure names, the whole batch after a function error, halves with bisection, then
//! skipped after `MaximumRetryAttempts`).
//!
//! The function is a fake in this process that notes every batch it is given: the tests wait
//! for what they expect to have happened (with a generous limit, so a busy machine is no
//! failure) and then check exactly what was delivered, never how fast.

use anyhow::{bail, Context, Result};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodbstreams::types::ShardIteratorType;
use devstack::local_aws::REGION;
use devstack::ministack::{self, MiniStackServices};
use devstack::python_server::PythonServer;
use devstack::stream_source::{
    dynamodb_event, StreamFunction, StreamPollers, StreamSourceOptions, StreamSourceStats,
};
use devstack::template::{Resources, Template};
use devstack::tools::{workspace_root, Tools};
use futures::future::BoxFuture;
use futures::FutureExt as _;
use serde_json::{json, Value as Json};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a test waits for what it expects; only reached when something is wrong.
const PATIENCE: Duration = Duration::from_secs(60);

/// Quick polls and backoffs, so the retries of a test do not add up to seconds.
fn options() -> StreamSourceOptions {
    StreamSourceOptions {
        idle_poll: Duration::from_millis(50),
        describe_interval: Duration::from_secs(1),
        first_retry_backoff: Duration::from_millis(10),
        max_retry_backoff: Duration::from_millis(50),
    }
}

/// MiniStack's DynamoDB (with Streams). `cargo xtask test` installs it; run alone without it,
/// the error says what to run.
async fn ministack() -> Result<PythonServer> {
    let tools = Tools::at(&workspace_root());
    tools.require()?;
    ministack::start(&tools, MiniStackServices::DynamoDb, 0).await
}

async fn sdk_config(server: &PythonServer) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .endpoint_url(server.endpoint())
        .load()
        .await
}

/// A table with a stream and a function following it, with `properties` added to the event.
fn template(properties: &str) -> Result<Template> {
    let text = format!(
        r#"
Resources:
  Readings:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{{ AttributeName: id, AttributeType: S }}]
      KeySchema: [{{ AttributeName: id, KeyType: HASH }}]
      StreamSpecification: {{ StreamViewType: NEW_AND_OLD_IMAGES }}
  Recorder:
    Type: AWS::Serverless::Function
    Metadata: {{ BuildProperties: {{ Binary: recorder }} }}
    Properties:
      CodeUri: somewhere
      Timeout: 5
      Events:
        Readings:
          Type: DynamoDB
          Properties:
            Stream: !GetAtt Readings.StreamArn
            {properties}
"#
    );
    Template::parse(&text, Path::new("/nowhere"))
}

/// One invocation of the fake function.
#[derive(Debug, Clone)]
struct Call {
    /// The `id` key of each record, in the event's order.
    ids: Vec<String>,
    sequence_numbers: Vec<String>,
}

type Answer = dyn Fn(&Call, &[Call]) -> Result<Json, String> + Send + Sync;

/// A function that notes each batch and answers as `answer` says, given the batch and the
/// batches before it.
struct FakeFunction {
    calls: Mutex<Vec<Call>>,
    answer: Box<Answer>,
    /// Events that did not read as `aws_lambda_events`'s DynamoDB event.
    unreadable: Mutex<Vec<String>>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

impl FakeFunction {
    fn new(
        answer: impl Fn(&Call, &[Call]) -> Result<Json, String> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            calls: Mutex::default(),
            answer: Box::new(answer),
            unreadable: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
        })
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// The ids of every call, for comparisons and messages.
    fn batches(&self) -> Vec<Vec<String>> {
        self.calls().into_iter().map(|c| c.ids).collect()
    }
}

/// Handle for the pollers: the fake is shared with the test.
struct Shared(Arc<FakeFunction>);

impl StreamFunction for Shared {
    fn invoke(
        &self,
        binary: &str,
        event: Json,
        _timeout: Duration,
    ) -> BoxFuture<'static, Result<Json, String>> {
        let fake = self.0.clone();
        let binary = binary.to_owned();
        async move {
            let now = fake.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            fake.most_in_flight.fetch_max(now, Ordering::SeqCst);
            if let Err(e) =
                serde_json::from_value::<aws_lambda_events::event::dynamodb::Event>(event.clone())
            {
                if let Ok(mut unreadable) = fake.unreadable.lock() {
                    unreadable.push(format!("{e}: {event}"));
                }
            }
            let records = event["Records"].as_array().cloned().unwrap_or_default();
            let call = Call {
                ids: records
                    .iter()
                    .map(|r| {
                        r["dynamodb"]["Keys"]["id"]["S"]
                            .as_str()
                            .unwrap_or("?")
                            .to_owned()
                    })
                    .collect(),
                sequence_numbers: records
                    .iter()
                    .map(|r| {
                        r["dynamodb"]["SequenceNumber"]
                            .as_str()
                            .unwrap_or("?")
                            .to_owned()
                    })
                    .collect(),
            };
            let answer = {
                let mut calls = match fake.calls.lock() {
                    Ok(calls) => calls,
                    Err(_) => return Err("the fake's lock is poisoned".to_owned()),
                };
                let answer = if binary == "recorder" {
                    (fake.answer)(&call, &calls)
                } else {
                    Err(format!("no function {binary}"))
                };
                calls.push(call);
                answer
            };
            // Long enough for a second invocation of the shard to overlap, if there were one.
            tokio::time::sleep(Duration::from_millis(5)).await;
            fake.in_flight.fetch_sub(1, Ordering::SeqCst);
            answer
        }
        .boxed()
    }
}

/// Started pollers over a provisioned template, with what the test needs around them.
struct Running {
    server: PythonServer,
    dynamodb: aws_sdk_dynamodb::Client,
    resources: Resources,
    pollers: StreamPollers,
    fake: Arc<FakeFunction>,
}

impl Running {
    async fn stop(self) {
        self.pollers.shutdown().await;
        self.server.stop().await;
    }

    async fn put(&self, id: &str) -> Result<()> {
        self.dynamodb
            .put_item()
            .table_name("Readings")
            .item("id", AttributeValue::S(id.to_owned()))
            .send()
            .await
            .with_context(|| format!("writing {id}"))?;
        Ok(())
    }

    fn stats(&self) -> StreamSourceStats {
        self.pollers.stats().into_iter().next().unwrap_or_default()
    }

    /// Waits until `done` holds of the mapping's counters.
    async fn wait_for(&self, what: &str, done: impl Fn(&StreamSourceStats) -> bool) -> Result<()> {
        let deadline = Instant::now() + PATIENCE;
        while !done(&self.stats()) {
            if Instant::now() > deadline {
                bail!(
                    "{what} did not happen: {:?}; batches {:?}",
                    self.stats(),
                    self.fake.batches()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// What a test checks at the end of every run: each event read as Lambda's, and the shard's
    /// batches never overlapped.
    fn check_events(&self) {
        let unreadable = self
            .fake
            .unreadable
            .lock()
            .map(|u| u.clone())
            .unwrap_or_default();
        assert!(unreadable.is_empty(), "{unreadable:?}");
        assert_eq!(self.fake.most_in_flight.load(Ordering::SeqCst), 1);
    }
}

/// MiniStack, the template provisioned in it, `before` written, then the pollers started with
/// `fake`; `None` when MiniStack is not installed.
async fn run(properties: &str, before: &[&str], fake: Arc<FakeFunction>) -> Result<Running> {
    let server = ministack().await?;
    let sdk = sdk_config(&server).await;
    let template = template(properties)?;
    let resources = devstack::provision::provision(&template, &sdk).await?;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    // Before the pollers start, so the first read finds every one of them: one batch.
    for id in before {
        dynamodb
            .put_item()
            .table_name("Readings")
            .item("id", AttributeValue::S((*id).to_owned()))
            .send()
            .await
            .with_context(|| format!("writing {id}"))?;
    }
    let functions = template.functions(&resources)?;
    let pollers = StreamPollers::start(
        aws_sdk_dynamodbstreams::Client::new(&sdk),
        &functions,
        &resources,
        Arc::new(Shared(fake.clone())),
        &options(),
    )?;
    Ok(Running {
        server,
        dynamodb,
        resources,
        pollers,
        fake,
    })
}

fn ids(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i:02}")).collect()
}

fn strs(ids: &[String]) -> Vec<&str> {
    ids.iter().map(String::as_str).collect()
}

/// Reads the stream as the pollers do, converts what GetRecords gave, and checks it is the event
/// Lambda sends, for inserts, updates and deletes with every kind of attribute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_records_output_becomes_lambdas_event() -> Result<()> {
    let server = ministack().await?;
    let outcome = conversion(&server).await;
    server.stop().await;
    outcome
}

async fn conversion(server: &PythonServer) -> Result<()> {
    let sdk = sdk_config(server).await;
    let template = template("StartingPosition: TRIM_HORIZON")?;
    let resources = devstack::provision::provision(&template, &sdk).await?;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let streams = aws_sdk_dynamodbstreams::Client::new(&sdk);

    // Provisioning recorded the emulator's stream, and the function's event follows it.
    let table = dynamodb
        .describe_table()
        .table_name("Readings")
        .send()
        .await?;
    let stream_arn = table
        .table()
        .and_then(|t| t.latest_stream_arn())
        .context("the table has a stream")?
        .to_owned();
    assert_eq!(resources.stream_arn("Readings"), Some(stream_arn.as_str()));
    let functions = template.functions(&resources)?;
    assert_eq!(functions[0].stream_sources[0].stream_arn, stream_arn);

    let item = std::collections::HashMap::from([
        ("id".to_owned(), AttributeValue::S("dev-1".into())),
        ("n".to_owned(), AttributeValue::N("12.5".into())),
        (
            "b".to_owned(),
            AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(vec![0, 1, 254])),
        ),
        ("ok".to_owned(), AttributeValue::Bool(true)),
        ("none".to_owned(), AttributeValue::Null(true)),
        (
            "ss".to_owned(),
            AttributeValue::Ss(vec!["a".into(), "b".into()]),
        ),
        (
            "ns".to_owned(),
            AttributeValue::Ns(vec!["1".into(), "-2.5".into()]),
        ),
        (
            "bs".to_owned(),
            AttributeValue::Bs(vec![aws_sdk_dynamodb::primitives::Blob::new(b"x".to_vec())]),
        ),
        (
            "l".to_owned(),
            AttributeValue::L(vec![
                AttributeValue::S("first".into()),
                AttributeValue::N("2".into()),
            ]),
        ),
        (
            "m".to_owned(),
            AttributeValue::M(std::collections::HashMap::from([(
                "deep".to_owned(),
                AttributeValue::M(std::collections::HashMap::from([(
                    "flag".to_owned(),
                    AttributeValue::Bool(false),
                )])),
            )])),
        ),
    ]);
    let item_json = json!({
        "id": {"S": "dev-1"},
        "n": {"N": "12.5"},
        "b": {"B": "AAH+"},
        "ok": {"BOOL": true},
        "none": {"NULL": true},
        "ss": {"SS": ["a", "b"]},
        "ns": {"NS": ["1", "-2.5"]},
        "bs": {"BS": ["eA=="]},
        "l": {"L": [{"S": "first"}, {"N": "2"}]},
        "m": {"M": {"deep": {"M": {"flag": {"BOOL": false}}}}},
    });
    dynamodb
        .put_item()
        .table_name("Readings")
        .set_item(Some(item))
        .send()
        .await?;
    dynamodb
        .update_item()
        .table_name("Readings")
        .key("id", AttributeValue::S("dev-1".into()))
        .update_expression("SET n = :n REMOVE b, bs, l, m, ss, ns, ok, #none")
        .expression_attribute_names("#none", "none")
        .expression_attribute_values(":n", AttributeValue::N("13".into()))
        .send()
        .await?;
    dynamodb
        .delete_item()
        .table_name("Readings")
        .key("id", AttributeValue::S("dev-1".into()))
        .send()
        .await?;

    let description = streams
        .describe_stream()
        .stream_arn(&stream_arn)
        .send()
        .await?
        .stream_description
        .context("DescribeStream answered without a description")?;
    let shard = description
        .shards()
        .first()
        .and_then(|s| s.shard_id())
        .context("the stream has a shard")?;
    let iterator = streams
        .get_shard_iterator()
        .stream_arn(&stream_arn)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await?
        .shard_iterator
        .context("an iterator")?;
    let records = streams
        .get_records()
        .shard_iterator(iterator)
        .send()
        .await?
        .records
        .unwrap_or_default();
    assert_eq!(records.len(), 3);

    let event = dynamodb_event(&records, &stream_arn);
    let r = event["Records"].as_array().context("Records")?;
    let names: Vec<&str> = r.iter().filter_map(|r| r["eventName"].as_str()).collect();
    assert_eq!(names, ["INSERT", "MODIFY", "REMOVE"]);
    let small = json!({"id": {"S": "dev-1"}, "n": {"N": "13"}});
    for (i, record) in r.iter().enumerate() {
        assert_eq!(record["eventSource"], "aws:dynamodb", "{record}");
        assert_eq!(record["eventVersion"], "1.1", "{record}");
        assert_eq!(record["awsRegion"], REGION, "{record}");
        assert_eq!(record["eventSourceARN"], stream_arn.as_str(), "{record}");
        assert!(record["eventID"].as_str().is_some_and(|id| !id.is_empty()));
        let change = &record["dynamodb"];
        assert_eq!(change["Keys"], json!({"id": {"S": "dev-1"}}), "{i}");
        assert_eq!(change["StreamViewType"], "NEW_AND_OLD_IMAGES", "{i}");
        assert!(
            change["ApproximateCreationDateTime"].is_number(),
            "{change}"
        );
        assert!(change["SizeBytes"].is_number(), "{change}");
        assert!(change["SequenceNumber"].is_string(), "{change}");
    }
    assert_eq!(r[0]["dynamodb"]["NewImage"], item_json);
    assert!(r[0]["dynamodb"].get("OldImage").is_none());
    assert_eq!(r[1]["dynamodb"]["OldImage"], item_json);
    assert_eq!(r[1]["dynamodb"]["NewImage"], small);
    assert_eq!(r[2]["dynamodb"]["OldImage"], small);
    assert!(r[2]["dynamodb"].get("NewImage").is_none());

    // As a Rust function reads it.
    let typed: aws_lambda_events::event::dynamodb::Event =
        serde_json::from_value(event.clone()).context("aws_lambda_events reads the event")?;
    assert_eq!(typed.records.len(), 3);
    assert_eq!(typed.records[0].change.new_image.len(), 10);
    assert_eq!(
        serde_json::to_value(&typed.records[0].change.new_image)?,
        item_json
    );
    let sequence: Vec<String> = typed
        .records
        .iter()
        .filter_map(|r| r.change.sequence_number.clone())
        .collect();
    assert_eq!(sequence.len(), 3);
    assert!(
        r.iter()
            .zip(&sequence)
            .all(|(json, typed)| json["dynamodb"]["SequenceNumber"] == typed.as_str()),
        "{sequence:?}"
    );
    Ok(())
}

/// Records reach the function in the order they were written, one batch at a time; a partial
/// batch failure has the batch retried from the lowest record it names, and only from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_arrive_in_order_and_partial_failures_resume_from_the_failed_record() -> Result<()>
{
    // The first time k04 and k07 are seen, both are reported (k07 first): the batch comes back
    // from k04, the lowest; the second time everything succeeds.
    let fake = FakeFunction::new(|call, before| {
        let first_sight = before.is_empty();
        if !first_sight {
            return Ok(json!({"batchItemFailures": []}));
        }
        let failed: Vec<Json> = ["k07", "k04"]
            .iter()
            .filter_map(|id| call.ids.iter().position(|i| i == id))
            .map(|p| json!({"itemIdentifier": call.sequence_numbers[p]}))
            .collect();
        Ok(json!({ "batchItemFailures": failed }))
    });
    let first = ids("k", 0..10);
    let running = run(
        "StartingPosition: TRIM_HORIZON\n            BatchSize: 100\n            FunctionResponseTypes: [ReportBatchItemFailures]",
        &strs(&first),
        fake.clone(),
    )
    .await?;
    let outcome = async {
        running
            .wait_for("the first ten records", |s| s.records_delivered >= 10)
            .await?;
        // More while the poller runs, in however many batches it reads them.
        let more = ids("k", 10..30);
        for id in &more {
            running.put(id).await?;
        }
        running
            .wait_for("thirty records", |s| s.records_delivered >= 30)
            .await?;

        let calls = fake.calls();
        assert!(calls.len() >= 2, "{calls:?}");
        assert_eq!(
            calls[0].ids, first,
            "the records written before, in one batch"
        );
        assert_eq!(
            calls[1].ids,
            ids("k", 4..10),
            "retried from k04, the lowest failure"
        );
        // Each record processed exactly once, in order: what each batch finished, one after
        // the other (the first batch finished what came before k04).
        let mut processed: Vec<String> = calls[0].ids[..4].to_vec();
        for call in &calls[1..] {
            processed.extend(call.ids.iter().cloned());
        }
        assert_eq!(processed, ids("k", 0..30));
        let stats = running.stats();
        assert_eq!(stats.records_delivered, 30);
        assert_eq!(stats.retries, 1);
        assert_eq!(stats.records_skipped, 0);
        assert_eq!(stats.invocations, calls.len() as u64);
        assert_eq!(stats.shards_read, 1);
        running.check_events();
        anyhow::Ok(())
    }
    .await;
    running.stop().await;
    outcome
}

/// A function error retries the whole batch, `MaximumRetryAttempts` times, then its records are
/// skipped and the records after them delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_errors_retry_the_whole_batch_then_skip_it() -> Result<()> {
    let fake = FakeFunction::new(|call, _| {
        if call.ids.iter().any(|id| id == "poison") {
            Err("Handled: cannot process poison".to_owned())
        } else {
            Ok(Json::Null)
        }
    });
    let running = run(
        "StartingPosition: TRIM_HORIZON\n            FunctionResponseTypes: [ReportBatchItemFailures]\n            MaximumRetryAttempts: 2",
        &["a01", "poison", "a02"],
        fake.clone(),
    )
    .await?;
    let outcome = async {
        running
            .wait_for("the batch skipped", |s| s.records_skipped >= 3)
            .await?;
        running.put("after").await?;
        running
            .wait_for("the next record", |s| s.records_delivered >= 1)
            .await?;
        let whole = vec!["a01".to_owned(), "poison".to_owned(), "a02".to_owned()];
        assert_eq!(
            fake.batches(),
            vec![
                whole.clone(),
                whole.clone(),
                whole,
                vec!["after".to_owned()]
            ],
            "tried, retried twice, skipped; then the next record"
        );
        let stats = running.stats();
        assert_eq!(
            (
                stats.retries,
                stats.records_skipped,
                stats.records_delivered
            ),
            (2, 3, 1)
        );
        running.check_events();
        anyhow::Ok(())
    }
    .await;
    running.stop().await;
    outcome
}

/// `BisectBatchOnFunctionError` halves a failing batch until the failing record is alone; only
/// it is retried and skipped, and the records around it are delivered in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bisection_isolates_the_failing_record() -> Result<()> {
    let fake = FakeFunction::new(|call, _| {
        if call.ids.iter().any(|id| id == "poison") {
            Err("Unhandled: poison".to_owned())
        } else {
            Ok(Json::Null)
        }
    });
    let running = run(
        "StartingPosition: TRIM_HORIZON\n            BisectBatchOnFunctionError: true\n            MaximumRetryAttempts: 1",
        &["a01", "a02", "poison", "a03"],
        fake.clone(),
    )
    .await?;
    let outcome = async {
        running
            .wait_for("the records around the poison", |s| {
                s.records_delivered >= 3 && s.records_skipped >= 1
            })
            .await?;
        let batch = |ids: &[&str]| ids.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            fake.batches(),
            vec![
                batch(&["a01", "a02", "poison", "a03"]),
                batch(&["a01", "a02"]),
                batch(&["poison", "a03"]),
                batch(&["poison"]),
                batch(&["poison"]),
                batch(&["a03"]),
            ]
        );
        let stats = running.stats();
        assert_eq!(
            (
                stats.retries,
                stats.records_skipped,
                stats.records_delivered
            ),
            (1, 1, 3)
        );
        running.check_events();
        anyhow::Ok(())
    }
    .await;
    running.stop().await;
    outcome
}

/// `LATEST` leaves what the stream held before the poller had its place in it, and delivers
/// what is written after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_delivers_only_what_comes_after_the_poller_is_reading() -> Result<()> {
    let fake = FakeFunction::new(|_, _| Ok(Json::Null));
    let server = ministack().await?;
    let sdk = sdk_config(&server).await;
    let template = template("StartingPosition: LATEST")?;
    let resources = devstack::provision::provision(&template, &sdk).await?;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    for id in ["old1", "old2"] {
        dynamodb
            .put_item()
            .table_name("Readings")
            .item("id", AttributeValue::S(id.to_owned()))
            .send()
            .await?;
    }
    let pollers = StreamPollers::start(
        aws_sdk_dynamodbstreams::Client::new(&sdk),
        &template.functions(&resources)?,
        &resources,
        Arc::new(Shared(fake.clone())),
        &options(),
    )?;
    let running = Running {
        server,
        dynamodb,
        resources,
        pollers,
        fake: fake.clone(),
    };
    let outcome = async {
        assert!(running.pollers.wait_until_reading(PATIENCE).await);
        running.put("new1").await?;
        running
            .wait_for("the new record", |s| s.records_delivered >= 1)
            .await?;
        // Had the old records been read, they would have come first.
        assert_eq!(fake.batches(), vec![vec!["new1".to_owned()]]);
        assert_eq!(
            running.pollers.summary(),
            ["Readings stream -> recorder (batch 100)"]
        );
        assert_eq!(
            running
                .resources
                .stream_arn("Readings")
                .map(|a| a.contains("/stream/")),
            Some(true)
        );
        running.check_events();
        anyhow::Ok(())
    }
    .await;
    running.stop().await;
    outcome
}

/// Provisioning an emulator that already has the table (an earlier run, before the template gave
/// it a stream) turns its stream on; provisioning again keeps that stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_turns_on_a_missing_stream_and_keeps_an_existing_one() -> Result<()> {
    let server = ministack().await?;
    let outcome = async {
        let sdk = sdk_config(&server).await;
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        dynamodb
            .create_table()
            .table_name("Readings")
            .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
            .attribute_definitions(
                aws_sdk_dynamodb::types::AttributeDefinition::builder()
                    .attribute_name("id")
                    .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                    .build()?,
            )
            .key_schema(
                aws_sdk_dynamodb::types::KeySchemaElement::builder()
                    .attribute_name("id")
                    .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                    .build()?,
            )
            .send()
            .await?;
        let template = template("StartingPosition: LATEST")?;
        let first = devstack::provision::provision(&template, &sdk).await?;
        let stream_arn = first
            .stream_arn("Readings")
            .context("a stream ARN")?
            .to_owned();
        let table = dynamodb
            .describe_table()
            .table_name("Readings")
            .send()
            .await?;
        let table = table.table().context("a table")?;
        assert_eq!(table.latest_stream_arn(), Some(stream_arn.as_str()));
        assert_eq!(
            table
                .stream_specification()
                .and_then(|s| s.stream_view_type())
                .map(|v| v.as_str()),
            Some("NEW_AND_OLD_IMAGES")
        );
        let again = devstack::provision::provision(&template, &sdk).await?;
        assert_eq!(again.stream_arn("Readings"), Some(stream_arn.as_str()));
        anyhow::Ok(())
    }
    .await;
    server.stop().await;
    outcome
}
