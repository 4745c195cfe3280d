//! `cargo xtask bench sims`: `GET /sims` against a tenant with 100,000 SIMs, through the
//! `sim-api` handler and the DynamoDB adapter on the local DynamoDB (MiniStack). Each query is
//! asked many times; its time, the DynamoDB requests it makes and the items it returns are
//! reported. The times are the emulator's on this machine, not DynamoDB's: the requests per page
//! are what carries over to AWS (each a single-digit-millisecond Query there).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use aws_sdk_dynamodb::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use cellbridge::common::tenant::TenantId;
use cellbridge::sims::dynamodb::DynamoSims;
use cellbridge::sims::sim::Sim;
use cellbridge::testing::sample_sim;
use clap::Args;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use super::{publish, DocSection, Machine};

const SECTION: DocSection = DocSection {
    name: "sims",
    heading: "SIM inventory listing",
    begin: "<!-- sims:begin (written by `cargo xtask bench sims`) -->",
    end: "<!-- sims:end -->",
};
const TENANT: &str = "bench";
const LIST_EVENT: &str = include_str!("../../../events/sim-api/list-sims.json");

#[derive(Args, Clone, Debug)]
pub struct SimsArgs {
    /// SIMs in the tenant's inventory.
    #[arg(long, default_value_t = 100_000)]
    pub sims: u32,
    /// Times each query is asked.
    #[arg(long, default_value_t = 100)]
    pub requests: u32,
    /// Print the table only; leave docs/benchmarks.md untouched.
    #[arg(long)]
    pub no_write: bool,
}

/// Counts the requests the DynamoDB client sends, and the items its Queries read (what DynamoDB
/// bills read capacity for, before any filter).
#[derive(Debug, Default, Clone)]
struct RequestCounter {
    requests: Arc<AtomicU64>,
    scanned: Arc<AtomicU64>,
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _config: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _config: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Ok(output) = context.output_or_error() {
            if let Some(query) = output.downcast_ref::<QueryOutput>() {
                let scanned = u64::try_from(query.scanned_count).unwrap_or(0);
                self.scanned.fetch_add(scanned, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

/// The queries, as a portal user would ask them: the first page of 50.
const QUERIES: [(&str, &str); 5] = [
    ("first page, no filter", "limit=50"),
    (
        "filtered first page (status, carrier, rate plan)",
        "status=active&carrier=jasper&ratePlan=IOT-5GB&limit=50",
    ),
    (
        "filtered first page (cost center, customer: no index)",
        "costCenter=CC-3&customer=CUST-1&limit=50",
    ),
    (
        "ICCID prefix search",
        "iccidPrefix=8901260000000123&limit=50",
    ),
    ("MSISDN prefix search", "msisdnPrefix=1404000045&limit=50"),
];

struct Row {
    name: &'static str,
    query: &'static str,
    p50_ms: f64,
    p95_ms: f64,
    requests_per_page: f64,
    read_per_page: f64,
    items: usize,
    has_more: bool,
}

pub async fn run(args: SimsArgs) -> Result<()> {
    if args.sims == 0 || args.requests == 0 {
        bail!("--sims and --requests must be at least 1");
    }
    let root = devstack::tools::workspace_root();
    println!("starting the local DynamoDB and creating the template's tables");
    let aws = devstack::local_aws::LocalAws::start(
        &devstack::tools::Tools::at(&root),
        devstack::local_aws::LocalAwsPorts::default(),
    )
    .await?;
    let sdk = aws.sdk_config().await;
    let template = devstack::template::Template::load(&root.join("template.yaml"))?;
    let resources = devstack::provision::provision(&template, &sdk).await?;
    let table = |id: &str| {
        resources
            .table_name(id)
            .map(str::to_owned)
            .with_context(|| format!("template.yaml has no {id}"))
    };
    let counted = RequestCounter::default();
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(counted.clone())
            .build(),
    );
    let tenant = TenantId::parse(TENANT).context("tenant")?;
    let result = async {
        load(&client, &table("SimsTable")?, &tenant, args.sims).await?;
        let store = DynamoSims::new(
            client.clone(),
            table("SimsTable")?,
            table("SimHistoryTable")?,
        )
        .with_usage_table(table("SimUsageTable")?);
        let counts = cellbridge::events::dynamodb::DynamoFleetCounts::new(
            client.clone(),
            table("EventsTable")?,
        );
        let devices = cellbridge::devices::dynamodb::DynamoDevices::new(
            client.clone(),
            table("DevicesTable")?,
            table("TelemetryTable")?,
        );
        let stores = sim_api::Stores {
            sims: &store,
            usage: &store,
            counts: &counts,
            devices: &devices,
        };
        let mut rows = Vec::new();
        for (name, query) in QUERIES {
            rows.push(measure(&stores, &counted, name, query, args.requests).await?);
        }
        Ok::<_, anyhow::Error>(rows)
    }
    .await;
    aws.stop().await;
    let rows = result?;

    let machine = Machine::detect(&root).await;
    let mut markdown = String::new();
    writeln!(markdown, "{}.", machine.measured_with("sims"))?;
    writeln!(markdown)?;
    writeln!(
        markdown,
        "**Method:** {} SIMs in one tenant's inventory (the sample SIMs: a third at each carrier, 7 in 10 active, three rate plans, five cost centers), written straight into `SimsTable` on the local DynamoDB (MiniStack) with their index keys; then each query below asked {} times through `sim_api::handle` (the `GET /sims` handler, its parsing, the `DynamoSims` adapter and the JSON answer) with the real SDK. **Times are MiniStack's on this machine**, an emulator in Python: they rank the queries, they are not DynamoDB's. **DynamoDB requests and items read per page** are counted by an SDK interceptor (items read are the Queries' `ScannedCount`, what read capacity is billed on, before a filter drops any); on AWS each request is a Query of at most 1 MB answered in single-digit milliseconds, so a page's latency there is about that many round trips. MiniStack answers a Query on one large partition in time that grows with the partition (seconds with 100,000 items under one tenant; `cargo xtask bench local-aws` times other shapes), far from DynamoDB's, so its times here only rank the queries. A filter that no index answers is applied to what the index reads, at most 5,000 SIMs a page: a page can come back short with a cursor.",
        args.sims, args.requests
    )?;
    writeln!(markdown)?;
    writeln!(
        markdown,
        "| query | parameters | p50 ms (MiniStack) | p95 ms (MiniStack) | DynamoDB requests a page | items read a page | SIMs on the page | more pages |"
    )?;
    writeln!(markdown, "|---|---|---|---|---|---|---|---|")?;
    for row in &rows {
        writeln!(
            markdown,
            "| {} | `{}` | {:.1} | {:.1} | {:.1} | {:.0} | {} | {} |",
            row.name,
            row.query,
            row.p50_ms,
            row.p95_ms,
            row.requests_per_page,
            row.read_per_page,
            row.items,
            if row.has_more { "yes" } else { "no" }
        )?;
    }
    publish(&root, &SECTION, &markdown, args.no_write)
}

/// Writes `count` sample SIMs into `table` with BatchWriteItem, 25 a request, 8 at a time.
pub(crate) async fn load(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    tenant: &TenantId,
    count: u32,
) -> Result<()> {
    let bar = ProgressBar::new(u64::from(count)).with_style(ProgressStyle::with_template(
        "  {bar:40} {pos}/{len} SIMs written {elapsed}",
    )?);
    let chunks: Vec<Vec<u32>> = (0..count)
        .collect::<Vec<_>>()
        .chunks(25)
        .map(<[u32]>::to_vec)
        .collect();
    let mut writes = futures::stream::iter(chunks)
        .map(|chunk| {
            let bar = bar.clone();
            async move {
                let mut requests = Vec::new();
                for n in &chunk {
                    let sim: Sim = sample_sim(*n);
                    let item = DynamoSims::item_of(tenant, &sim)?;
                    requests.push(
                        WriteRequest::builder()
                            .put_request(PutRequest::builder().set_item(Some(item)).build()?)
                            .build(),
                    );
                }
                // Unprocessed items are written again until none is left.
                let mut pending = requests;
                while !pending.is_empty() {
                    let out = client
                        .batch_write_item()
                        .request_items(table, pending)
                        .send()
                        .await?;
                    pending = out
                        .unprocessed_items
                        .and_then(|mut left| left.remove(table))
                        .unwrap_or_default();
                }
                bar.inc(chunk.len() as u64);
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(8);
    while let Some(written) = writes.next().await {
        written?;
    }
    bar.finish();
    Ok(())
}

fn request(query: &str) -> Result<lambda_http::Request> {
    let mut event: Value = serde_json::from_str(LIST_EVENT)?;
    cellbridge::common::testing::authorize_event(&mut event, TENANT, "viewer");
    event["rawQueryString"] = json!(query);
    event["queryStringParameters"] = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    Ok(lambda_http::request::from_str(&event.to_string())?)
}

async fn measure(
    stores: &sim_api::Stores<'_>,
    counted: &RequestCounter,
    name: &'static str,
    query: &'static str,
    times: u32,
) -> Result<Row> {
    let mut elapsed_ms = Vec::new();
    let before = counted.requests.load(Ordering::Relaxed);
    let scanned_before = counted.scanned.load(Ordering::Relaxed);
    let mut last = Value::Null;
    for _ in 0..times {
        let request = request(query)?;
        let started = Instant::now();
        let response = sim_api::handle(stores, request, time::OffsetDateTime::now_utc()).await;
        elapsed_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        if response.status() != 200 {
            bail!(
                "{query}: {} {}",
                response.status(),
                String::from_utf8_lossy(response.body().as_ref())
            );
        }
        last = serde_json::from_slice(response.body().as_ref())?;
    }
    let requests = counted.requests.load(Ordering::Relaxed) - before;
    let scanned = counted.scanned.load(Ordering::Relaxed) - scanned_before;
    elapsed_ms.sort_by(f64::total_cmp);
    let row = Row {
        name,
        query,
        p50_ms: super::devices::percentile(&elapsed_ms, 0.50),
        p95_ms: super::devices::percentile(&elapsed_ms, 0.95),
        requests_per_page: requests as f64 / f64::from(times),
        read_per_page: scanned as f64 / f64::from(times),
        items: last["items"].as_array().map_or(0, Vec::len),
        has_more: last["nextCursor"].is_string(),
    };
    println!(
        "{name}: p50 {:.1} ms, p95 {:.1} ms, {:.1} DynamoDB requests reading {:.0} items, {} SIMs{}",
        row.p50_ms,
        row.p95_ms,
        row.requests_per_page,
        row.read_per_page,
        row.items,
        if row.has_more { ", more pages" } else { "" }
    );
    Ok(row)
}
