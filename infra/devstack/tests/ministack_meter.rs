//! The emulators' billing meters, read through the real SDK clients: what AWS would bill each
//! caller for its DynamoDB and SQS requests (on-demand capacity units, SQS requests per 64 KB) in
//! the MiniStacks, and its S3 and Secrets Manager requests (by price class) in moto, checked to
//! the unit, one operation at a time, by the difference of two readings.
//!
//! Item sizes below are DynamoDB's: each attribute's name plus its value's bytes.

use anyhow::{Context, Result};
use aws_config::{AppName, BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Get, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, KeysAndAttributes, Projection, ProjectionType, Put, PutRequest,
    ScalarAttributeType, TransactGetItem, TransactWriteItem, WriteRequest,
};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageAttributeValue, SendMessageBatchRequestEntry,
};
use devstack::local_aws::REGION;
use devstack::ministack::{
    self, DynamoDbUsage, EmulatorMeter, MiniStackServices, RequestUsage, SqsUsage,
};
use devstack::python_server::PythonServer;
use devstack::tools::{workspace_root, Tools};
use std::collections::HashMap;

/// The app name of the named clients; the others have none.
const APP: &str = "meter-test";
const UNNAMED: &str = "unnamed";

/// One MiniStack and its meter, read as the change since the previous reading.
struct Metered {
    server: PythonServer,
    http: reqwest::Client,
    last: EmulatorMeter,
}

impl Metered {
    async fn start(services: MiniStackServices) -> Result<Self> {
        Self::metering(ministack::start(&Tools::at(&workspace_root()), services, 0).await?).await
    }

    async fn start_moto() -> Result<Self> {
        Self::metering(devstack::moto::start(&Tools::at(&workspace_root()), 0).await?).await
    }

    async fn metering(server: PythonServer) -> Result<Self> {
        let http = reqwest::Client::new();
        let last = ministack::read_meter(&http, &server.endpoint()).await?;
        Ok(Self { server, http, last })
    }

    /// What the meter counted since the last call (or the start).
    async fn change(&mut self) -> Result<EmulatorMeter> {
        let now = ministack::read_meter(&self.http, &self.server.endpoint()).await?;
        let change = now.since(&self.last);
        self.last = now;
        Ok(change)
    }

    /// An SDK configuration reaching this MiniStack, under `app` when given.
    async fn sdk_config(&self, app: Option<&str>) -> Result<SdkConfig> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .endpoint_url(self.server.endpoint());
        if let Some(app) = app {
            loader = loader.app_name(AppName::new(app.to_owned())?);
        }
        Ok(loader.load().await)
    }
}

fn dynamodb_only(rows: Vec<DynamoDbUsage>) -> EmulatorMeter {
    EmulatorMeter {
        dynamodb: rows,
        ..EmulatorMeter::default()
    }
}

fn sqs_only(rows: Vec<SqsUsage>) -> EmulatorMeter {
    EmulatorMeter {
        sqs: rows,
        ..EmulatorMeter::default()
    }
}

/// A DynamoDB row: requests, write units, read units, conditional check failures.
fn usage(
    caller: &str,
    table: &str,
    operation: &str,
    (requests, write_units, read_units, conditional_check_failures): (u64, f64, f64, u64),
) -> DynamoDbUsage {
    DynamoDbUsage {
        caller: caller.to_owned(),
        table: table.to_owned(),
        operation: operation.to_owned(),
        requests,
        write_units,
        read_units,
        conditional_check_failures,
    }
}

/// An SQS row: requests, billed requests, messages.
fn sqs_usage(
    caller: &str,
    queue: &str,
    action: &str,
    (requests, billed_requests, messages): (u64, u64, u64),
) -> SqsUsage {
    SqsUsage {
        caller: caller.to_owned(),
        queue: queue.to_owned(),
        action: action.to_owned(),
        requests,
        billed_requests,
        messages,
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// An item of `pk` and a `data` attribute of `data_bytes` bytes: 2 + |pk| + 4 + data_bytes bytes.
fn item(pk: &str, data_bytes: usize) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), s(pk)),
        ("data".to_owned(), s("x".repeat(data_bytes))),
    ])
}

fn key(pk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".to_owned(), s(pk))])
}

fn string_attribute(name: &str) -> Result<AttributeDefinition> {
    Ok(AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()?)
}

fn key_element(name: &str, key_type: KeyType) -> Result<KeySchemaElement> {
    Ok(KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()?)
}

/// An on-demand table keyed by `pk` (and `sk` when `sorted`), with a GSI `by-g` on `g` when
/// `index` says what it projects.
async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
    sorted: bool,
    index: Option<ProjectionType>,
) -> Result<()> {
    let mut request = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(string_attribute("pk")?)
        .key_schema(key_element("pk", KeyType::Hash)?);
    if sorted {
        request = request
            .attribute_definitions(string_attribute("sk")?)
            .key_schema(key_element("sk", KeyType::Range)?);
    }
    if let Some(projection) = index {
        request = request
            .attribute_definitions(string_attribute("g")?)
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name("by-g")
                    .key_schema(key_element("g", KeyType::Hash)?)
                    .projection(Projection::builder().projection_type(projection).build())
                    .build()?,
            );
    }
    request
        .send()
        .await
        .with_context(|| format!("creating {name}"))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_writes_are_billed_by_item_size_per_caller() -> Result<()> {
    let mut meter = Metered::start(MiniStackServices::DynamoDb).await?;
    let named = aws_sdk_dynamodb::Client::new(&meter.sdk_config(Some(APP)).await?);
    let unnamed = aws_sdk_dynamodb::Client::new(&meter.sdk_config(None).await?);
    let table = "meter-writes";
    let indexed = "meter-writes-indexed";

    // Control-plane operations: requests, no units.
    create_table(&unnamed, table, false, None).await?;
    create_table(&unnamed, indexed, false, Some(ProjectionType::All)).await?;
    assert_eq!(
        meter.change().await?,
        dynamodb_only(vec![
            usage(UNNAMED, table, "CreateTable", (1, 0.0, 0.0, 0)),
            usage(UNNAMED, indexed, "CreateTable", (1, 0.0, 0.0, 0)),
        ])
    );

    // 2 + 5 + 4 + 1,500 = 1,511 bytes: two 1 KB units; the other caller's small item, one.
    named
        .put_item()
        .table_name(table)
        .set_item(Some(item("put-1", 1_500)))
        .send()
        .await?;
    unnamed
        .put_item()
        .table_name(table)
        .set_item(Some(item("put-2", 10)))
        .send()
        .await?;
    assert_eq!(
        meter.change().await?,
        dynamodb_only(vec![
            usage(APP, table, "PutItem", (1, 2.0, 0.0, 0)),
            usage(UNNAMED, table, "PutItem", (1, 1.0, 0.0, 0)),
        ])
    );

    // Grown to 2,511 bytes: the larger version is billed, three units.
    named
        .update_item()
        .table_name(table)
        .set_key(Some(key("put-1")))
        .update_expression("SET #data = :data")
        .expression_attribute_names("#data", "data")
        .expression_attribute_values(":data", s("x".repeat(2_500)))
        .send()
        .await?;
    assert_eq!(
        meter.change().await?,
        dynamodb_only(vec![usage(APP, table, "UpdateItem", (1, 3.0, 0.0, 0))])
    );

    // Refused by its condition: billed on the existing item's 2,511 bytes, and counted.
    let refused = named
        .put_item()
        .table_name(table)
        .set_item(Some(item("put-1", 10)))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await;
    assert!(
        refused
            .as_ref()
            .err()
            .and_then(|e| e.as_service_error())
            .is_some_and(|e| e.is_conditional_check_failed_exception()),
        "{refused:?}"
    );
    assert_eq!(
        meter.change().await?,
        dynamodb_only(vec![usage(APP, table, "PutItem", (1, 3.0, 0.0, 1))])
    );

    // Deleting an item that is not there still costs a unit.
    named
        .delete_item()
        .table_name(table)
        .set_key(Some(key("never-written")))
        .send()
        .await?;
    assert_eq!(
        meter.change().await?,
        dynamodb_only(vec![usage(APP, table, "DeleteItem", (1, 1.0, 0.0, 0))])
    );

    // A request refused as invalid (no key) is counted, with no units.
    let invalid = named
        .put_item()
        .table_name(table)
        .item("data", s("no key"))
        .send()
        .await;
    assert!(invalid.is_err(), "{invalid:?}");
    assert_eq!(
        meter.change().await?,
        dynamodb_only(vec![usage(APP, table, "PutItem", (1, 0.0, 0.0, 0))])
    );

    // An item outside the index (no `g`): 1,507 bytes, two units. One projected into it (ALL):
    // 1,513 bytes, two units on the table and two on the index, under the table.
    named
        .put_item()
        .table_name(indexed)
        .set_item(Some(item("a", 1_500)))
        .send()
        .await?;
    assert_eq!(
        meter.change().await?,
        dynamodb_only(vec![usage(APP, indexed, "PutItem", (1, 2.0, 0.0, 0))])
    );
    let mut grouped = item("b", 1_500);
    grouped.insert("g".to_owned(), s("group"));
    named
        .put_item()
        .table_name(indexed)
        .set_item(Some(grouped))
        .send()
        .await?;
    assert_eq!(
        meter.change().await?,
        dynamodb_only(vec![usage(APP, indexed, "PutItem", (1, 4.0, 0.0, 0))])
    );

    // 25 small items in one BatchWriteItem: a unit each.
    let puts = (0..25)
        .map(|i| {
            Ok(WriteRequest::builder()
                .put_request(
                    PutRequest::builder()
                        .set_item(Some(item(&format!("batch-{i:02}"), 10)))
                        .build()?,
                )
                .build())
        })
        .collect::<Result<Vec<_>>>()?;
    named
        .batch_write_item()
        .request_items(table, puts)
        .send()
        .await?;
    assert_eq!(
        meter.change().await?,
        dynamodb_only(vec![usage(APP, table, "BatchWriteItem", (1, 25.0, 0.0, 0))])
    );

    // A transaction of two small items: two units each.
    let transaction_put = |pk: &str, condition: Option<&str>| -> Result<TransactWriteItem> {
        Ok(TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(table)
                    .set_item(Some(item(pk, 10)))
                    .set_condition_expression(condition.map(str::to_owned))
                    .build()?,
            )
            .build())
    };
    named
        .transact_write_items()
        .transact_items(transaction_put("txn-1", None)?)
        .transact_items(transaction_put("txn-2", None)?)
        .send()
        .await?;
    assert_eq!(
        meter.change().await?,
        dynamodb_only(vec![usage(
            APP,
            table,
            "TransactWriteItems",
            (1, 4.0, 0.0, 0)
        )])
    );

    // Cancelled by a condition: billed as if both were written, and counted.
    let cancelled = named
        .transact_write_items()
        .transact_items(transaction_put("txn-1", Some("attribute_not_exists(pk)"))?)
        .transact_items(transaction_put("txn-3", None)?)
        .send()
        .await;
    assert!(
        cancelled
            .as_ref()
            .err()
            .and_then(|e| e.as_service_error())
            .is_some_and(|e| e.is_transaction_canceled_exception()),
        "{cancelled:?}"
    );
    assert_eq!(
        meter.change().await?,
        dynamodb_only(vec![usage(
            APP,
            table,
            "TransactWriteItems",
            (1, 4.0, 0.0, 1)
        )])
    );

    // A ConditionCheck on a 1,513 byte item, in a transaction that goes through: twice its two
    // units; the put beside it, twice one.
    named
        .put_item()
        .table_name(table)
        .set_item(Some(item("checked", 1_500)))
        .send()
        .await?;
    meter.change().await?;
    named
        .transact_write_items()
        .transact_items(
            TransactWriteItem::builder()
                .condition_check(
                    ConditionCheck::builder()
                        .table_name(table)
                        .set_key(Some(key("checked")))
                        .condition_expression("attribute_exists(pk)")
                        .build()?,
                )
                .build(),
        )
        .transact_items(transaction_put("txn-4", None)?)
        .send()
        .await?;
    assert_eq!(
        meter.change().await?,
        dynamodb_only(vec![usage(
            APP,
            table,
            "TransactWriteItems",
            (1, 6.0, 0.0, 0)
        )])
    );

    meter.server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_reads_are_billed_by_the_size_read() -> Result<()> {
    let mut meter = Metered::start(MiniStackServices::DynamoDb).await?;
    let client = aws_sdk_dynamodb::Client::new(&meter.sdk_config(Some(APP)).await?);
    let table = "meter-reads";
    create_table(&client, table, true, Some(ProjectionType::KeysOnly)).await?;

    // "big": 2 + 3 + 2 + 1 + 1 + 3 + 4 + 5,000 = 5,016 bytes, in the index by its keys alone.
    // "page" 00 to 09: 2 + 4 + 2 + 2 + 4 + 1,000 = 1,014 bytes each, 10,140 together.
    let sorted_item = |pk: &str, sk: &str, data_bytes: usize| {
        let mut item = item(pk, data_bytes);
        item.insert("sk".to_owned(), s(sk));
        item
    };
    let mut big = sorted_item("big", "0", 5_000);
    big.insert("g".to_owned(), s("big"));
    let mut writes = vec![WriteRequest::builder()
        .put_request(PutRequest::builder().set_item(Some(big)).build()?)
        .build()];
    for i in 0..10 {
        writes.push(
            WriteRequest::builder()
                .put_request(
                    PutRequest::builder()
                        .set_item(Some(sorted_item("page", &format!("{i:02}"), 1_000)))
                        .build()?,
                )
                .build(),
        );
    }
    client
        .batch_write_item()
        .request_items(table, writes)
        .send()
        .await?;
    meter.change().await?;
    let sorted_key =
        |pk: &str, sk: &str| HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))]);
    let reads = |operation: &str, read_units: f64| {
        dynamodb_only(vec![usage(APP, table, operation, (1, 0.0, read_units, 0))])
    };

    // 5,016 bytes are two 4 KB units: one eventually consistent, two strongly.
    for (consistent, read_units) in [(false, 1.0), (true, 2.0)] {
        let got = client
            .get_item()
            .table_name(table)
            .set_key(Some(sorted_key("big", "0")))
            .consistent_read(consistent)
            .projection_expression("pk")
            .send()
            .await?;
        assert!(got.item.is_some());
        assert_eq!(meter.change().await?, reads("GetItem", read_units));
    }
    // A missing item still costs a read.
    client
        .get_item()
        .table_name(table)
        .set_key(Some(sorted_key("big", "missing")))
        .send()
        .await?;
    assert_eq!(meter.change().await?, reads("GetItem", 0.5));

    // A Query is billed once on all it read, 10,140 bytes: three units, halved when eventually
    // consistent; whatever its filter kept or its projection returned.
    let query = || {
        client
            .query()
            .table_name(table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s("page"))
    };
    let all = query().send().await?;
    assert_eq!(all.count, 10);
    assert_eq!(meter.change().await?, reads("Query", 1.5));
    query().consistent_read(true).send().await?;
    assert_eq!(meter.change().await?, reads("Query", 3.0));
    let filtered = query()
        .filter_expression("#data = :nothing")
        .expression_attribute_names("#data", "data")
        .expression_attribute_values(":nothing", s("nothing"))
        .send()
        .await?;
    assert_eq!((filtered.count, filtered.scanned_count), (0, 10));
    assert_eq!(meter.change().await?, reads("Query", 1.5));
    query().projection_expression("sk").send().await?;
    assert_eq!(meter.change().await?, reads("Query", 1.5));
    // A page of three: 3,042 bytes, one unit.
    query().limit(3).send().await?;
    assert_eq!(meter.change().await?, reads("Query", 0.5));
    // Through a keys-only index, the index entry is what is read: a few bytes of the 5 KB item.
    client
        .query()
        .table_name(table)
        .index_name("by-g")
        .key_condition_expression("g = :g")
        .expression_attribute_values(":g", s("big"))
        .send()
        .await?;
    assert_eq!(meter.change().await?, reads("Query", 0.5));

    // The whole table, 15,156 bytes: four units.
    let scanned = client.scan().table_name(table).send().await?;
    assert_eq!(scanned.count, 11);
    assert_eq!(meter.change().await?, reads("Scan", 2.0));

    // BatchGetItem bills item by item: 1 + 0.5; TransactGetItems twice a strong read: 4 + 2.
    client
        .batch_get_item()
        .request_items(
            table,
            KeysAndAttributes::builder()
                .keys(sorted_key("big", "0"))
                .keys(sorted_key("page", "00"))
                .build()?,
        )
        .send()
        .await?;
    assert_eq!(meter.change().await?, reads("BatchGetItem", 1.5));
    let transact_get = |pk: &str, sk: &str| -> Result<TransactGetItem> {
        Ok(TransactGetItem::builder()
            .get(
                Get::builder()
                    .table_name(table)
                    .set_key(Some(sorted_key(pk, sk)))
                    .build()?,
            )
            .build())
    };
    client
        .transact_get_items()
        .transact_items(transact_get("big", "0")?)
        .transact_items(transact_get("page", "00")?)
        .send()
        .await?;
    assert_eq!(meter.change().await?, reads("TransactGetItems", 6.0));

    meter.server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_requests_are_billed_per_64_kb_of_payload() -> Result<()> {
    let mut meter = Metered::start(MiniStackServices::Sqs).await?;
    let named = aws_sdk_sqs::Client::new(&meter.sdk_config(Some(APP)).await?);
    let unnamed = aws_sdk_sqs::Client::new(&meter.sdk_config(None).await?);
    let queue = "meter-queue";

    let url = unnamed
        .create_queue()
        .queue_name(queue)
        .send()
        .await?
        .queue_url
        .context("no queue URL")?;
    unnamed.list_queues().send().await?;
    assert_eq!(
        meter.change().await?,
        sqs_only(vec![
            sqs_usage(UNNAMED, "", "ListQueues", (1, 1, 0)),
            sqs_usage(UNNAMED, queue, "CreateQueue", (1, 1, 0)),
        ])
    );

    // Ten 10 KB messages in one call: 100 KB, two 64 KB requests.
    let mut batch = named.send_message_batch().queue_url(&url);
    for i in 0..10 {
        batch = batch.entries(
            SendMessageBatchRequestEntry::builder()
                .id(format!("m{i}"))
                .message_body("y".repeat(10_240))
                .build()?,
        );
    }
    let sent = batch.send().await?;
    assert_eq!(sent.successful.len(), 10);
    assert_eq!(
        meter.change().await?,
        sqs_only(vec![sqs_usage(APP, queue, "SendMessageBatch", (1, 2, 10))])
    );

    // Receiving them is as large; deleting them, one request.
    let received = named
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .send()
        .await?
        .messages
        .unwrap_or_default();
    assert_eq!(received.len(), 10);
    assert_eq!(
        meter.change().await?,
        sqs_only(vec![sqs_usage(APP, queue, "ReceiveMessage", (1, 2, 10))])
    );
    let mut delete = named.delete_message_batch().queue_url(&url);
    for (i, message) in received.iter().enumerate() {
        delete = delete.entries(
            DeleteMessageBatchRequestEntry::builder()
                .id(format!("d{i}"))
                .set_receipt_handle(message.receipt_handle.clone())
                .build()?,
        );
    }
    assert_eq!(delete.send().await?.successful.len(), 10);
    assert_eq!(
        meter.change().await?,
        sqs_only(vec![sqs_usage(
            APP,
            queue,
            "DeleteMessageBatch",
            (1, 1, 10)
        )])
    );

    // An empty receive is still a request.
    let empty = unnamed
        .receive_message()
        .queue_url(&url)
        .wait_time_seconds(0)
        .send()
        .await?;
    assert!(empty.messages.unwrap_or_default().is_empty());
    assert_eq!(
        meter.change().await?,
        sqs_only(vec![sqs_usage(UNNAMED, queue, "ReceiveMessage", (1, 1, 0))])
    );

    // Attributes count towards the payload: 65,000 bytes of body and 5 + 6 + 1,000 of an
    // attribute pass 64 KB.
    named
        .send_message()
        .queue_url(&url)
        .message_body("z".repeat(65_000))
        .message_attributes(
            "trace",
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value("t".repeat(1_000))
                .build()?,
        )
        .send()
        .await?;
    named
        .send_message()
        .queue_url(&url)
        .message_body("z".repeat(65_000))
        .send()
        .await?;
    assert_eq!(
        meter.change().await?,
        sqs_only(vec![sqs_usage(APP, queue, "SendMessage", (2, 3, 2))])
    );

    meter.server.stop().await;
    Ok(())
}

fn requests(service: &str, kind: &str, requests: u64, bytes: u64) -> RequestUsage {
    RequestUsage {
        caller: APP.to_owned(),
        service: service.to_owned(),
        kind: kind.to_owned(),
        requests,
        bytes,
    }
}

fn requests_only(rows: Vec<RequestUsage>) -> EmulatorMeter {
    EmulatorMeter {
        requests: rows,
        ..EmulatorMeter::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_and_secrets_manager_requests_are_counted_by_price_class() -> Result<()> {
    let mut moto = Metered::start_moto().await?;
    let sdk = moto.sdk_config(Some(APP)).await?;
    let s3 = cellbridge::common::aws::s3(&sdk);
    let secrets = cellbridge::common::aws::secrets_manager(&sdk);
    moto.change().await?;

    s3.create_bucket().bucket("metered").send().await?;
    assert_eq!(
        moto.change().await?,
        requests_only(vec![requests("s3", "put", 1, 0)]),
        "creating a bucket is a PUT"
    );

    let body = vec![b'x'; 2048];
    s3.put_object()
        .bucket("metered")
        .key("payloads/one.json")
        .body(body.into())
        .send()
        .await?;
    assert_eq!(
        moto.change().await?,
        requests_only(vec![requests("s3", "put", 1, 2048)]),
        "a PUT with the bytes it stores"
    );

    s3.get_object()
        .bucket("metered")
        .key("payloads/one.json")
        .send()
        .await?
        .body
        .collect()
        .await?;
    s3.head_object()
        .bucket("metered")
        .key("payloads/one.json")
        .send()
        .await?;
    assert_eq!(
        moto.change().await?,
        requests_only(vec![requests("s3", "get", 2, 0)]),
        "GET and HEAD are billed at the GET rate"
    );

    s3.list_objects_v2().bucket("metered").send().await?;
    assert_eq!(
        moto.change().await?,
        requests_only(vec![requests("s3", "list", 1, 0)]),
        "a listing is billed at the PUT rate"
    );

    s3.delete_object()
        .bucket("metered")
        .key("payloads/one.json")
        .send()
        .await?;
    assert_eq!(
        moto.change().await?,
        requests_only(vec![requests("s3", "delete", 1, 0)]),
        "deletes are counted apart (AWS does not bill them)"
    );

    secrets
        .create_secret()
        .name("signing")
        .secret_string("0123456789abcdef0123456789abcdef")
        .send()
        .await?;
    let change = moto.change().await?;
    assert_eq!(change.requests.len(), 1, "{change:?}");
    assert_eq!(
        (
            change.requests[0].service.as_str(),
            change.requests[0].kind.as_str(),
            change.requests[0].requests,
        ),
        ("secretsmanager", "call", 1)
    );
    secrets
        .get_secret_value()
        .secret_id("signing")
        .send()
        .await?;
    let unnamed = cellbridge::common::aws::secrets_manager(&moto.sdk_config(None).await?);
    unnamed
        .get_secret_value()
        .secret_id("signing")
        .send()
        .await?;
    let change = moto.change().await?;
    let callers: Vec<(&str, u64)> = change
        .requests
        .iter()
        .map(|row| (row.caller.as_str(), row.requests))
        .collect();
    assert_eq!(
        callers,
        [(APP, 1), (UNNAMED, 1)],
        "each call under its caller"
    );
    Ok(())
}
