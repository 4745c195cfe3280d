//! `cargo xtask bench local-aws`: the local DynamoDB and SQS of moto and of MiniStack side by side,
//! through the AWS SDK for Rust, with the calls cellbridge makes: `BatchWriteItem` of 25 into a
//! large table, a newest-first `Query` of one partition (the telemetry API's read), a conditional
//! `UpdateItem` (presence, outcome counters), and SQS send / receive / delete with a backlog.
//! Reports latency through the SDK and, the steadier figure on a busy machine, the emulator
//! process's own CPU per request.

use super::cpu_profile::{process_ticks, tick_rate};
use super::devices::percentile;
use super::{publish, DocSection, Machine};
use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, PutRequest,
    ScalarAttributeType, WriteRequest,
};
use devstack::local_aws::{LocalAws, LocalAwsPorts};
use devstack::python_server::PythonServer;
use indicatif::{ProgressBar, ProgressStyle};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

const SECTION: DocSection = DocSection {
    name: "local-aws",
    heading: "Local emulators",
    begin: "<!-- local-aws:begin (written by `cargo xtask bench local-aws`) -->",
    end: "<!-- local-aws:end -->",
};

/// Items per partition: one device's points, as the telemetry table holds them.
const ITEMS_PER_PARTITION: usize = 100;
/// Writers loading the table at once.
const LOADERS: usize = 4;

#[derive(clap::Args)]
pub struct LocalAwsArgs {
    /// Items in the table the queries read.
    #[arg(long, default_value_t = 100_000)]
    pub items: usize,
    /// Queries timed per emulator (fewer when `--seconds` runs out first).
    #[arg(long, default_value_t = 300)]
    pub queries: usize,
    /// Longest time spent on each measure per emulator.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Messages waiting in the queue while sends, receives and deletes are timed.
    #[arg(long, default_value_t = 2_000)]
    pub backlog: usize,
    /// Print the results only; leave docs/benchmarks.md untouched.
    #[arg(long)]
    pub no_write: bool,
}

/// One measure on one emulator.
struct Measure {
    requests: usize,
    latencies_ms: Vec<f64>,
    cpu_ms_per_request: f64,
    elapsed: Duration,
}

struct EmulatorResults {
    name: &'static str,
    load: Measure,
    query: Measure,
    update: Measure,
    sqs: Measure,
}

pub async fn run(args: LocalAwsArgs) -> Result<()> {
    let root = devstack::tools::workspace_root();
    let tools = local_tools::ensure_installed(&root)?;
    let aws = LocalAws::start(&tools, LocalAwsPorts::default()).await?;
    let sdk = aws.sdk_config().await;
    let measured = async {
        let mut results = Vec::new();
        for (name, servers) in [
            (
                "moto 5.2.5",
                Servers {
                    dynamodb: aws.moto(),
                    sqs: aws.moto(),
                },
            ),
            (
                "MiniStack 1.5.33",
                Servers {
                    dynamodb: aws.dynamodb(),
                    sqs: aws.sqs(),
                },
            ),
        ] {
            let result = measure(name, servers, &sdk, &args)
                .await
                .with_context(|| format!("measuring {name}"))?;
            results.push(result);
        }
        anyhow::Ok(results)
    }
    .await;
    aws.stop().await;
    let results = measured?;
    let machine = Machine::detect(&root).await;
    let markdown = markdown(&results, &args, &machine);
    publish(&root, &SECTION, &markdown, args.no_write)
}

/// The processes of one emulator that serve DynamoDB and SQS (one process may serve both).
#[derive(Clone, Copy)]
struct Servers<'a> {
    dynamodb: &'a PythonServer,
    sqs: &'a PythonServer,
}

async fn measure(
    name: &'static str,
    servers: Servers<'_>,
    sdk: &aws_config::SdkConfig,
    args: &LocalAwsArgs,
) -> Result<EmulatorResults> {
    let pid = servers.dynamodb.pid().context("the emulator has exited")?;
    let sqs_pid = servers.sqs.pid().context("the emulator has exited")?;
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(sdk)
            .endpoint_url(servers.dynamodb.endpoint())
            .build(),
    );
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(sdk)
            .endpoint_url(servers.sqs.endpoint())
            .build(),
    );
    let limit = Duration::from_secs(args.seconds);
    let table = "BenchPoints";
    create_table(&dynamodb, table).await?;

    let bar = progress(name, "loading", args.items as u64)?;
    let cpu = CpuClock::new(pid);
    let started = Instant::now();
    let batches = args.items.div_ceil(25);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let loaders = (0..LOADERS).map(|_| async {
        let mut latencies = Vec::new();
        loop {
            let batch = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if batch >= batches {
                return anyhow::Ok(latencies);
            }
            let items = (batch * 25..((batch + 1) * 25).min(args.items)).map(point);
            let began = Instant::now();
            write_batch(&dynamodb, table, items.collect()).await?;
            latencies.push(began.elapsed().as_secs_f64() * 1000.0);
            bar.inc(25);
        }
    });
    let load_latencies: Vec<f64> = futures::future::try_join_all(loaders)
        .await?
        .into_iter()
        .flatten()
        .collect();
    let load = cpu.finish(load_latencies, started.elapsed());
    bar.finish_and_clear();

    let partitions = args.items.div_ceil(ITEMS_PER_PARTITION);
    let dynamodb = &dynamodb;
    let query = one_at_a_time(name, "querying", pid, args.queries, limit, |n| async move {
        let device = (n * 7919) % partitions;
        let page = dynamodb
            .query()
            .table_name(table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(format!("device#{device}")))
            .scan_index_forward(false)
            .limit(20)
            .send()
            .await?;
        anyhow::ensure!(page.count == 20, "query returned {} items", page.count);
        Ok(())
    })
    .await?;

    let update = one_at_a_time(
        name,
        "conditional updates",
        pid,
        args.queries,
        limit,
        |n| async move {
            dynamodb
                .update_item()
                .table_name(table)
                .key(
                    "pk",
                    AttributeValue::S(format!("device#{}", n % partitions)),
                )
                .key("sk", AttributeValue::S(sort_key(0)))
                .update_expression("SET lastSeen = :now")
                .condition_expression(
                    "attribute_exists(pk) AND (attribute_not_exists(lastSeen) OR lastSeen < :now)",
                )
                .expression_attribute_values(":now", AttributeValue::N((n + 1).to_string()))
                .send()
                .await?;
            Ok(())
        },
    )
    .await?;

    let sqs_measure = measure_sqs(name, &sqs, sqs_pid, args, limit).await?;
    Ok(EmulatorResults {
        name,
        load,
        query,
        update,
        sqs: sqs_measure,
    })
}

/// Sends, receives (10 at a time) and deletes (in batches) with `backlog` messages waiting, as the
/// ingest's event source does.
async fn measure_sqs(
    name: &str,
    sqs: &aws_sdk_sqs::Client,
    pid: u32,
    args: &LocalAwsArgs,
    limit: Duration,
) -> Result<Measure> {
    use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry};
    let url = sqs
        .create_queue()
        .queue_name("BenchQueue")
        .send()
        .await?
        .queue_url
        .context("no queue URL")?;
    let body = "x".repeat(300);
    for start in (0..args.backlog).step_by(10) {
        let entries = (start..(start + 10).min(args.backlog))
            .map(|i| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(&body)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        sqs.send_message_batch()
            .queue_url(&url)
            .set_entries(Some(entries))
            .send()
            .await?;
    }
    let bar = progress(name, "SQS send / receive / delete", args.queries as u64)?;
    let cpu = CpuClock::new(pid);
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut requests = 0;
    for _ in 0..args.queries {
        if started.elapsed() > limit {
            break;
        }
        let began = Instant::now();
        sqs.send_message()
            .queue_url(&url)
            .message_body(&body)
            .send()
            .await?;
        let received = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .visibility_timeout(300)
            .send()
            .await?;
        requests += 2;
        let entries = received
            .messages()
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .set_receipt_handle(m.receipt_handle.clone())
                    .build()
                    .ok()
            })
            .collect::<Vec<_>>();
        if !entries.is_empty() {
            sqs.delete_message_batch()
                .queue_url(&url)
                .set_entries(Some(entries))
                .send()
                .await?;
            requests += 1;
        }
        latencies.push(began.elapsed().as_secs_f64() * 1000.0);
        bar.inc(1);
    }
    let mut measure = cpu.finish(latencies, started.elapsed());
    // CPU per request, not per round of up to three.
    measure.cpu_ms_per_request *= measure.requests as f64 / requests.max(1) as f64;
    measure.requests = requests;
    bar.finish_and_clear();
    Ok(measure)
}

/// Up to `count` requests one after another (`request(n)` makes the n-th), stopping early when
/// `limit` has passed: latency of each and the emulator's CPU over all of them.
async fn one_at_a_time<F, Fut>(
    emulator: &str,
    what: &str,
    pid: u32,
    count: usize,
    limit: Duration,
    mut request: F,
) -> Result<Measure>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let bar = progress(emulator, what, count as u64)?;
    let cpu = CpuClock::new(pid);
    let started = Instant::now();
    let mut latencies = Vec::new();
    for n in 0..count {
        if started.elapsed() > limit {
            break;
        }
        let began = Instant::now();
        request(n).await?;
        latencies.push(began.elapsed().as_secs_f64() * 1000.0);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(cpu.finish(latencies, started.elapsed()))
}

fn progress(emulator: &str, what: &str, len: u64) -> Result<ProgressBar> {
    Ok(
        ProgressBar::new(len).with_style(ProgressStyle::with_template(&format!(
            "  {emulator}: {what} {{bar:30}} {{pos}}/{{len}} {{elapsed}}"
        ))?),
    )
}

/// The emulator process's CPU time from one moment on.
struct CpuClock {
    pid: u32,
    start: u64,
}

impl CpuClock {
    fn new(pid: u32) -> Self {
        Self {
            pid,
            start: process_ticks(pid),
        }
    }

    fn finish(self, mut latencies_ms: Vec<f64>, elapsed: Duration) -> Measure {
        let spent_ms =
            (process_ticks(self.pid).saturating_sub(self.start)) as f64 / tick_rate() * 1000.0;
        latencies_ms.sort_by(f64::total_cmp);
        let requests = latencies_ms.len();
        Measure {
            requests,
            cpu_ms_per_request: spent_ms / requests.max(1) as f64,
            latencies_ms,
            elapsed,
        }
    }
}

async fn create_table(dynamodb: &aws_sdk_dynamodb::Client, table: &str) -> Result<()> {
    let key = |name: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
    };
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    dynamodb
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .attribute_definitions(attribute("pk")?)
        .attribute_definitions(attribute("sk")?)
        .send()
        .await?;
    Ok(())
}

fn sort_key(n: usize) -> String {
    format!("{n:012}")
}

/// Item `n`: a telemetry point of device `n / ITEMS_PER_PARTITION`, about 200 bytes.
fn point(n: usize) -> WriteRequest {
    let item = [
        (
            "pk",
            AttributeValue::S(format!("device#{}", n / ITEMS_PER_PARTITION)),
        ),
        ("sk", AttributeValue::S(sort_key(n % ITEMS_PER_PARTITION))),
        ("temperature", AttributeValue::N(format!("{}.5", n % 40))),
        ("battery", AttributeValue::N((n % 100).to_string())),
        ("payload", AttributeValue::S("p".repeat(120))),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    WriteRequest::builder()
        .put_request(
            PutRequest::builder()
                .set_item(Some(item))
                .build()
                .expect("a put request with an item"),
        )
        .build()
}

async fn write_batch(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    mut requests: Vec<WriteRequest>,
) -> Result<()> {
    // Emulators, like DynamoDB, may hand part of a batch back unprocessed.
    while !requests.is_empty() {
        let output = dynamodb
            .batch_write_item()
            .request_items(table, requests)
            .send()
            .await?;
        requests = output
            .unprocessed_items
            .and_then(|mut left| left.remove(table))
            .unwrap_or_default();
    }
    Ok(())
}

fn markdown(results: &[EmulatorResults], args: &LocalAwsArgs, machine: &Machine) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}. The AWS SDK for Rust against each emulator in turn, one process each, from `./.venv`. Latency is through the SDK on loopback (the benchmark's own CPU included); server CPU is the emulator process's user + system time over the measure, divided by its requests: the steadier figure when the machine is busy.\n",
        machine.measured_with("local-aws")
    );
    let _ = writeln!(
        out,
        "| emulator | `BatchWriteItem` of 25 ({} items, {LOADERS} writers) | `Query`, 20 newest of a {ITEMS_PER_PARTITION}-item partition ({} items in the table) | conditional `UpdateItem` | SQS send / receive 10 / delete batch ({} waiting) |",
        args.items, args.items, args.backlog
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for r in results {
        let cell = |m: &Measure, p: f64| {
            format!(
                "p50 {:.1} ms, p{:.0} {:.1} ms; {:.2} ms CPU; {:.0}/s ({} requests)",
                percentile(&m.latencies_ms, 0.5),
                p * 100.0,
                percentile(&m.latencies_ms, p),
                m.cpu_ms_per_request,
                m.requests as f64 / m.elapsed.as_secs_f64().max(f64::EPSILON),
                m.requests
            )
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            r.name,
            cell(&r.load, 0.95),
            cell(&r.query, 0.95),
            cell(&r.update, 0.95),
            cell(&r.sqs, 0.95),
        );
    }
    let _ = writeln!(
        out,
        "\nEach cell: latency p50 and p95, server CPU per request, requests a second, requests measured (fewer than asked when a measure hit its {} s limit). SQS latency is of one round (send, receive, delete); its CPU and rate are per request.",
        args.seconds
    );
    out
}
