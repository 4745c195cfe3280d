//! DynamoDB stream event source mappings, locally: for each `DynamoDB` event of a function, a
//! poller that follows the table's stream, reads each shard in order, invokes the function with
//! the event Lambda sends and moves past the records once the function has processed them, as
//! Lambda's own stream pollers do.
//!
//! What Lambda does and this does too:
//! - Each shard is read by one task, one batch at a time: its records reach the function in
//!   order, never two batches of a shard at once. A shard's children start once it is finished
//!   (read to its end); the stream is described again every few seconds to find new shards.
//! - `StartingPosition` applies to the shards there when the poller starts (`LATEST` skips the
//!   closed ones); shards that appear later are read from their first record.
//! - A batch holds up to `BatchSize` records; with `MaximumBatchingWindowInSeconds` the poller
//!   waits that long for a batch to fill, without it the function is invoked as soon as records
//!   are there. An idle shard is polled four times a second (Lambda's rate).
//! - A function error retries the batch; with `ReportBatchItemFailures` the function's
//!   `batchItemFailures` name the records to retry, and the poller retries from the lowest of
//!   them (Lambda's checkpoint). A batch is retried `MaximumRetryAttempts` times, then its
//!   records are skipped with a warning; `-1` retries until the records leave the stream.
//!   `BisectBatchOnFunctionError` halves a batch whose invocation failed (a split is no retry).
//!
//! A retried batch holds exactly the records still to process of the batch that failed, so the
//! retry count belongs to something fixed; Lambda may add newer records when it reads again from
//! its checkpoint. A `FilterCriteria` on `eventName` leaves the other records out, as Lambda's
//! filter does (they are passed, not handed over); other filters, `ParallelizationFactor`,
//! `MaximumRecordAgeInSeconds`, tumbling windows and on-failure destinations are not emulated
//! (the template parser warns).
//!
//! MiniStack's DynamoDB Streams (1.5.33) serve DescribeStream, GetShardIterator (all four
//! iterator types) and GetRecords with AWS's shapes and errors, but each stream has exactly one
//! shard, which never splits: there is no `ParentShardId` and no child shard, and the shard only
//! ends (an `EndingSequenceNumber`, then no `NextShardIterator`) when the stream is turned off or
//! its table deleted. The lineage handling below follows AWS; locally it only ever sees that one
//! shard. `SizeBytes` is always 0 and `ApproximateCreationDateTime` in whole seconds; both are
//! passed on as the stream gives them. Its iterators expire after 15 minutes, as AWS's do.

use crate::lambda_watch::Invoker;
use crate::local_aws::REGION;
use crate::template::{FunctionSpec, Resources, StartingPosition, StreamSource};
use anyhow::{Context, Result};
use aws_sdk_dynamodbstreams::primitives::{Blob, DateTime};
use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use base64::Engine as _;
use futures::future::BoxFuture;
use futures::FutureExt as _;
use serde::Serialize;
use serde_json::{json, Value as Json};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// GetRecords returns at most 1,000 records.
const MAX_GET_RECORDS: usize = 1_000;
/// Pause after a failed call to the stream, so an emulator that went away is not hammered.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Runs a function with a stream event; the devstack's [`Invoker`] in the stack, a fake in tests.
pub trait StreamFunction: Send + Sync + 'static {
    /// Invokes `binary` with `event` and resolves to its answer; `Err` says why it failed.
    fn invoke(
        &self,
        binary: &str,
        event: Json,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Json, String>>;
}

impl StreamFunction for Invoker {
    fn invoke(
        &self,
        binary: &str,
        event: Json,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Json, String>> {
        let invoker = self.clone();
        let binary = binary.to_owned();
        async move {
            invoker
                .invoke(&binary, &event, timeout)
                .await
                .map_err(|e| e.to_string())
        }
        .boxed()
    }
}

#[derive(Debug, Clone)]
pub struct StreamSourceOptions {
    /// Wait before reading again a shard that had nothing new (Lambda polls four times a second).
    pub idle_poll: Duration,
    /// How often each stream is described to find new shards.
    pub describe_interval: Duration,
    /// Wait before the first retry of a failed batch, doubled on each further failure...
    pub first_retry_backoff: Duration,
    /// ...up to this, so a function that keeps failing does not keep a core busy.
    pub max_retry_backoff: Duration,
}

impl Default for StreamSourceOptions {
    fn default() -> Self {
        Self {
            idle_poll: Duration::from_millis(250),
            describe_interval: Duration::from_secs(5),
            first_retry_backoff: Duration::from_millis(100),
            max_retry_backoff: Duration::from_secs(4),
        }
    }
}

/// One mapping's counters since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StreamSourceStats {
    pub table_logical_id: String,
    /// The function's binary.
    pub function: String,
    pub event_id: String,
    /// Shards being read or read to their end.
    pub shards_read: u64,
    pub invocations: u64,
    /// Records the function processed (a failed record counts once it succeeds).
    pub records_delivered: u64,
    /// Batches invoked again after a failure (a bisection is no retry).
    pub retries: u64,
    /// Records given up after `MaximumRetryAttempts` retries.
    pub records_skipped: u64,
}

#[derive(Default)]
struct Counters {
    /// Set once the stream was first described and `initial_shards` known.
    described: AtomicBool,
    /// Shards of that first description read from the start (not waiting for a parent).
    initial_shards: AtomicU64,
    shards_read: AtomicU64,
    invocations: AtomicU64,
    delivered: AtomicU64,
    retries: AtomicU64,
    skipped: AtomicU64,
}

struct Mapping {
    function: String,
    timeout: Duration,
    source: StreamSource,
    stream_arn: String,
    counters: Arc<Counters>,
}

pub struct StreamPollers {
    tasks: Vec<JoinHandle<()>>,
    summary: Vec<String>,
    mappings: Vec<Arc<Mapping>>,
}

impl StreamPollers {
    /// Starts a poller for every enabled `DynamoDB` event of `functions`; the tables' stream ARNs
    /// come from `resources`, so provision first.
    pub fn start(
        streams: aws_sdk_dynamodbstreams::Client,
        functions: &[FunctionSpec],
        resources: &Resources,
        invoker: Arc<dyn StreamFunction>,
        opts: &StreamSourceOptions,
    ) -> Result<Self> {
        let mut tasks = Vec::new();
        let mut summary = Vec::new();
        let mut mappings = Vec::new();
        for f in functions {
            for source in f.stream_sources.iter().filter(|s| s.enabled) {
                let stream_arn = resources
                    .stream_arn(&source.table_logical_id)
                    .with_context(|| {
                        format!(
                            "table {} has no stream: provision it first",
                            source.table_logical_id
                        )
                    })?
                    .to_owned();
                summary.push(summary_line(source, &f.binary));
                let mapping = Arc::new(Mapping {
                    function: f.binary.clone(),
                    timeout: f.timeout,
                    source: source.clone(),
                    stream_arn,
                    counters: Arc::default(),
                });
                mappings.push(mapping.clone());
                let (streams, invoker, opts) = (streams.clone(), invoker.clone(), opts.clone());
                tasks.push(tokio::spawn(async move {
                    follow_stream(streams, invoker, mapping, opts).await
                }));
            }
        }
        Ok(Self {
            tasks,
            summary,
            mappings,
        })
    }

    /// One line per mapping: table, function, batch size and error handling.
    pub fn summary(&self) -> &[String] {
        &self.summary
    }

    pub fn stats(&self) -> Vec<StreamSourceStats> {
        self.mappings
            .iter()
            .map(|m| {
                let c = &m.counters;
                StreamSourceStats {
                    table_logical_id: m.source.table_logical_id.clone(),
                    function: m.function.clone(),
                    event_id: m.source.event_id.clone(),
                    shards_read: c.shards_read.load(Ordering::SeqCst),
                    invocations: c.invocations.load(Ordering::SeqCst),
                    records_delivered: c.delivered.load(Ordering::SeqCst),
                    retries: c.retries.load(Ordering::SeqCst),
                    records_skipped: c.skipped.load(Ordering::SeqCst),
                }
            })
            .collect()
    }

    /// Waits until every poller has its place in the shards that were there when it started; false
    /// if that takes longer than `timeout`. With `LATEST`, what is written from then on reaches
    /// the function; what was written before may not.
    pub async fn wait_until_reading(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let ready = self.mappings.iter().all(|m| {
                let c = &m.counters;
                c.described.load(Ordering::SeqCst)
                    && c.shards_read.load(Ordering::SeqCst)
                        >= c.initial_shards.load(Ordering::SeqCst)
            });
            if ready {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn shutdown(mut self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for StreamPollers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn summary_line(source: &StreamSource, binary: &str) -> String {
    let mut details = vec![format!("batch {}", source.batch_size)];
    if !source.maximum_batching_window.is_zero() {
        details.push(format!("window {:?}", source.maximum_batching_window));
    }
    if source.starting_position == StartingPosition::TrimHorizon {
        details.push("from TRIM_HORIZON".to_owned());
    }
    if source.report_batch_item_failures {
        details.push("partial batch failures".to_owned());
    }
    if source.bisect_batch_on_function_error {
        details.push("bisect on error".to_owned());
    }
    if let Some(n) = source.maximum_retry_attempts {
        details.push(format!("{n} retries"));
    }
    if let Some(names) = &source.event_names {
        details.push(format!("only {}", names.join("/")));
    }
    format!(
        "{} stream -> {binary} ({})",
        source.table_logical_id,
        details.join(", ")
    )
}

// ------------------------------------------------------------------------------------------------
// Shards.

/// What DescribeStream says of a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub shard_id: String,
    pub parent_shard_id: Option<String>,
    /// It has an `EndingSequenceNumber`: no record will be added to it.
    pub closed: bool,
}

/// What to do with a shard newly seen in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPlan {
    pub shard_id: String,
    /// Where to start reading it; `None`: not at all (a closed shard when starting at `LATEST`).
    pub start: Option<StartingPosition>,
    /// The parent to wait for: its records come first.
    pub after: Option<String>,
}

/// The shards of `described` not in `known`. `initial` is the poller's first look at the stream,
/// where the mapping's starting position applies; shards found later are new, so read whole. A
/// parent that is no longer in the stream (its records expired) is not waited for.
pub fn plan_shards(
    described: &[ShardInfo],
    known: &BTreeSet<String>,
    initial: bool,
    starting_position: StartingPosition,
) -> Vec<ShardPlan> {
    let present: BTreeSet<&str> = described
        .iter()
        .map(|s| s.shard_id.as_str())
        .chain(known.iter().map(String::as_str))
        .collect();
    described
        .iter()
        .filter(|s| !known.contains(&s.shard_id))
        .map(|s| {
            let shard_id = s.shard_id.clone();
            if initial && starting_position == StartingPosition::Latest {
                // Only what is written from now on: closed shards get nothing new, and an open
                // shard's parents are closed.
                return ShardPlan {
                    shard_id,
                    start: (!s.closed).then_some(StartingPosition::Latest),
                    after: None,
                };
            }
            ShardPlan {
                shard_id,
                start: Some(StartingPosition::TrimHorizon),
                after: s
                    .parent_shard_id
                    .clone()
                    .filter(|p| present.contains(p.as_str())),
            }
        })
        .collect()
}

/// Every shard of the stream, through DescribeStream's pages.
async fn describe_shards(
    client: &aws_sdk_dynamodbstreams::Client,
    stream_arn: &str,
) -> Result<Vec<ShardInfo>> {
    let mut shards = Vec::new();
    let mut start: Option<String> = None;
    loop {
        let out = client
            .describe_stream()
            .stream_arn(stream_arn)
            .set_exclusive_start_shard_id(start.clone())
            .send()
            .await
            .map_err(aws_sdk_dynamodbstreams::Error::from)?;
        let Some(description) = out.stream_description else {
            break;
        };
        for shard in description.shards() {
            let Some(shard_id) = shard.shard_id() else {
                continue;
            };
            shards.push(ShardInfo {
                shard_id: shard_id.to_owned(),
                parent_shard_id: shard.parent_shard_id().map(str::to_owned),
                closed: shard
                    .sequence_number_range()
                    .and_then(|r| r.ending_sequence_number())
                    .is_some(),
            });
        }
        match description.last_evaluated_shard_id {
            // An answer naming the page it started after again would never end.
            Some(last) if start.as_ref() != Some(&last) => start = Some(last),
            _ => break,
        }
    }
    Ok(shards)
}

/// A mapping's task: describes the stream now and then and starts a reader per new shard.
async fn follow_stream(
    client: aws_sdk_dynamodbstreams::Client,
    function: Arc<dyn StreamFunction>,
    m: Arc<Mapping>,
    opts: StreamSourceOptions,
) {
    // Shards read to their end (or skipped): their children may start.
    let finished = Arc::new(watch::Sender::new(BTreeSet::<String>::new()));
    // Dropped with this task, which aborts the readers.
    let mut readers = JoinSet::new();
    let mut known = BTreeSet::new();
    let mut initial = true;
    let mut failing = false;
    loop {
        match describe_shards(&client, &m.stream_arn).await {
            Ok(shards) => {
                if failing {
                    tracing::info!(table = %m.source.table_logical_id, "the stream answers again");
                }
                failing = false;
                let plans = plan_shards(&shards, &known, initial, m.source.starting_position);
                let mut immediate = 0;
                for plan in plans {
                    known.insert(plan.shard_id.clone());
                    let Some(start) = plan.start else {
                        finished.send_modify(|f| {
                            f.insert(plan.shard_id.clone());
                        });
                        continue;
                    };
                    if plan.after.is_none() {
                        immediate += 1;
                    }
                    let reader = ShardReader::new(
                        client.clone(),
                        m.stream_arn.clone(),
                        plan.shard_id,
                        start,
                    );
                    readers.spawn(read_shard(
                        reader,
                        function.clone(),
                        m.clone(),
                        opts.clone(),
                        plan.after,
                        finished.clone(),
                    ));
                }
                if initial {
                    m.counters.initial_shards.store(immediate, Ordering::SeqCst);
                    m.counters.described.store(true, Ordering::SeqCst);
                    initial = false;
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(table = %m.source.table_logical_id, function = %m.function, "describing the stream failed: {e:#}");
                }
                failing = true;
            }
        }
        while readers.try_join_next().is_some() {}
        tokio::time::sleep(opts.describe_interval).await;
    }
}

/// Reads one shard to its end, batch after batch, once its parent is finished.
async fn read_shard(
    mut reader: ShardReader,
    function: Arc<dyn StreamFunction>,
    m: Arc<Mapping>,
    opts: StreamSourceOptions,
    after: Option<String>,
    finished: Arc<watch::Sender<BTreeSet<String>>>,
) {
    if let Some(parent) = after {
        let mut done = finished.subscribe();
        // The sender lives as long as the mapping's task, which outlives this one.
        let _ = done.wait_for(|f| f.contains(&parent)).await;
    }
    while let Err(e) = reader.open().await {
        reader.failed(&m, &e);
        tokio::time::sleep(ERROR_PAUSE).await;
    }
    m.counters.shards_read.fetch_add(1, Ordering::SeqCst);
    loop {
        let batch = reader.next_batch(&m, &opts).await;
        if !batch.is_empty() {
            deliver(function.as_ref(), &m, &opts, batch).await;
        }
        if reader.ended {
            break;
        }
    }
    tracing::debug!(table = %m.source.table_logical_id, shard = %reader.shard_id, "shard read to its end");
    finished.send_modify(|f| {
        f.insert(reader.shard_id.clone());
    });
}

/// A position in one shard.
struct ShardReader {
    client: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    shard_id: String,
    start: StartingPosition,
    /// The next GetRecords' iterator; `None` until opened, or after it expired.
    iterator: Option<String>,
    /// The last record read: where to pick up with a fresh iterator.
    last_sequence_number: Option<String>,
    /// GetRecords gave no next iterator: the shard is closed and read to its end.
    ended: bool,
    /// In a run of failed calls (warned about once).
    failing: bool,
}

impl ShardReader {
    fn new(
        client: aws_sdk_dynamodbstreams::Client,
        stream_arn: String,
        shard_id: String,
        start: StartingPosition,
    ) -> Self {
        Self {
            client,
            stream_arn,
            shard_id,
            start,
            iterator: None,
            last_sequence_number: None,
            ended: false,
            failing: false,
        }
    }

    /// A fresh iterator: just after the last record read, or at the starting position.
    async fn open(&mut self) -> Result<()> {
        let request = self
            .client
            .get_shard_iterator()
            .stream_arn(&self.stream_arn)
            .shard_id(&self.shard_id);
        let request = match (&self.last_sequence_number, self.start) {
            (Some(last), _) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(last),
            (None, StartingPosition::Latest) => {
                request.shard_iterator_type(ShardIteratorType::Latest)
            }
            (None, StartingPosition::TrimHorizon) => {
                request.shard_iterator_type(ShardIteratorType::TrimHorizon)
            }
        };
        let out = request
            .send()
            .await
            .map_err(aws_sdk_dynamodbstreams::Error::from)?;
        self.iterator = Some(
            out.shard_iterator
                .context("GetShardIterator answered without an iterator")?,
        );
        Ok(())
    }

    /// One GetRecords of at most `limit` records.
    async fn read(&mut self, limit: usize) -> Result<Vec<Record>> {
        if self.iterator.is_none() {
            self.open().await?;
        }
        let Some(iterator) = self.iterator.clone() else {
            return Ok(Vec::new());
        };
        let out = self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(i32::try_from(limit.clamp(1, MAX_GET_RECORDS)).unwrap_or(1))
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                let service = e.as_service_error();
                // Iterators live 15 minutes: one held through a long run of retries has expired.
                if service.is_some_and(|s| s.is_expired_iterator_exception()) {
                    self.iterator = None;
                    return Ok(Vec::new());
                }
                // Records older than 24 hours are gone: carry on from the oldest left.
                if service.is_some_and(|s| s.is_trimmed_data_access_exception()) {
                    tracing::warn!(shard = %self.shard_id, stream = %self.stream_arn, "records after {:?} expired from the stream before they were read; reading on from the oldest left", self.last_sequence_number);
                    self.iterator = None;
                    self.last_sequence_number = None;
                    self.start = StartingPosition::TrimHorizon;
                    return Ok(Vec::new());
                }
                return Err(aws_sdk_dynamodbstreams::Error::from(e).into());
            }
        };
        let records = out.records.unwrap_or_default();
        if let Some(last) = records
            .iter()
            .rev()
            .find_map(|r| r.dynamodb().and_then(|d| d.sequence_number()))
        {
            self.last_sequence_number = Some(last.to_owned());
        }
        self.iterator = out.next_shard_iterator;
        self.ended = self.iterator.is_none();
        Ok(records)
    }

    /// Up to `BatchSize` records: reads go on until the batch is full, the shard ended, or the
    /// batching window, which opens with the first record, has passed. Empty only at the end of
    /// the shard.
    async fn next_batch(&mut self, m: &Mapping, opts: &StreamSourceOptions) -> Vec<Record> {
        let wanted = usize::try_from(m.source.batch_size).unwrap_or(MAX_GET_RECORDS);
        let mut batch = Vec::new();
        let mut deadline: Option<Instant> = None;
        loop {
            let got = match self.read(wanted - batch.len()).await {
                Ok(records) => {
                    if self.failing {
                        tracing::info!(table = %m.source.table_logical_id, shard = %self.shard_id, "reading the shard works again");
                    }
                    self.failing = false;
                    records
                }
                Err(e) => {
                    self.failed(m, &e);
                    // What was read is not held back by a failing read.
                    if !batch.is_empty() {
                        return batch;
                    }
                    tokio::time::sleep(ERROR_PAUSE).await;
                    continue;
                }
            };
            let nothing_new = got.is_empty();
            batch.extend(got.into_iter().filter(|r| passes_filter(&m.source, r)));
            if batch.len() >= wanted || self.ended {
                return batch;
            }
            let pause = if batch.is_empty() {
                opts.idle_poll
            } else {
                let deadline = *deadline
                    .get_or_insert_with(|| Instant::now() + m.source.maximum_batching_window);
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return batch;
                }
                // Records came: there may be more right away.
                if !nothing_new {
                    continue;
                }
                left.min(opts.idle_poll)
            };
            tokio::time::sleep(pause).await;
        }
    }

    fn failed(&mut self, m: &Mapping, e: &anyhow::Error) {
        if !self.failing {
            tracing::warn!(table = %m.source.table_logical_id, shard = %self.shard_id, "reading the stream failed: {e:#}");
        }
        self.failing = true;
    }
}

/// Whether the source's filter (on `eventName`) lets `record` through.
fn passes_filter(source: &StreamSource, record: &Record) -> bool {
    source.event_names.as_ref().is_none_or(|names| {
        record
            .event_name
            .as_ref()
            .is_some_and(|kind| names.iter().any(|name| name == kind.as_str()))
    })
}

// ------------------------------------------------------------------------------------------------
// Invocations.

/// Invokes the function with `records` until they are processed or given up, in order.
async fn deliver(
    function: &dyn StreamFunction,
    m: &Mapping,
    opts: &StreamSourceOptions,
    records: Vec<Record>,
) {
    let c = &m.counters;
    // What is left to invoke, in order, with the retries each part has had: the batch, what
    // remains of it after a failure, or the halves of a bisected part.
    let mut parts: VecDeque<(Vec<Record>, u32)> = VecDeque::from([(records, 0)]);
    let mut backoff = opts.first_retry_backoff;
    while let Some((mut part, retries)) = parts.pop_front() {
        let sequence_numbers: Vec<String> = part.iter().map(sequence_number).collect();
        let event = dynamodb_event(&part, &m.stream_arn);
        c.invocations.fetch_add(1, Ordering::SeqCst);
        let (failed_from, function_error) = match function
            .invoke(&m.function, event, m.timeout)
            .await
        {
            Ok(output) => {
                match retry_from(
                    &output,
                    &sequence_numbers,
                    m.source.report_batch_item_failures,
                ) {
                    Ok(None) => {
                        c.delivered.fetch_add(part.len() as u64, Ordering::SeqCst);
                        backoff = opts.first_retry_backoff;
                        continue;
                    }
                    Ok(Some(i)) => {
                        let from = sequence_numbers.get(i).map_or("", String::as_str);
                        tracing::info!(function = %m.function, table = %m.source.table_logical_id, from, "batch item failure: retrying from the record it names");
                        (i, false)
                    }
                    Err(why) => {
                        tracing::warn!(function = %m.function, "{why}; the whole batch is retried");
                        (0, false)
                    }
                }
            }
            Err(e) => {
                tracing::warn!(table = %m.source.table_logical_id, records = part.len(), first = %sequence_numbers.first().map_or("", String::as_str), "{e}");
                (0, true)
            }
        };
        c.delivered.fetch_add(failed_from as u64, Ordering::SeqCst);
        let rest = part.split_off(failed_from);
        if function_error && m.source.bisect_batch_on_function_error && rest.len() > 1 {
            // Lambda does not count a split against MaximumRetryAttempts; each half keeps the
            // retries the whole had.
            let mut first = rest;
            let second = first.split_off(first.len() / 2);
            parts.push_front((second, retries));
            parts.push_front((first, retries));
        } else if m
            .source
            .maximum_retry_attempts
            .is_some_and(|max| retries >= max)
        {
            let first = rest.first().map(sequence_number).unwrap_or_default();
            let last = rest.last().map(sequence_number).unwrap_or_default();
            tracing::warn!(
                function = %m.function,
                table = %m.source.table_logical_id,
                "skipping {} records ({first} to {last}) after {retries} retries (MaximumRetryAttempts)",
                rest.len()
            );
            c.skipped.fetch_add(rest.len() as u64, Ordering::SeqCst);
            continue;
        } else {
            c.retries.fetch_add(1, Ordering::SeqCst);
            parts.push_front((rest, retries + 1));
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(opts.max_retry_backoff);
    }
}

fn sequence_number(r: &Record) -> String {
    r.dynamodb()
        .and_then(|d| d.sequence_number())
        .unwrap_or_default()
        .to_owned()
}

/// After a successful invocation, the position in the batch to retry from: with
/// `ReportBatchItemFailures`, the earliest record the function names (the batch is in sequence
/// order, so that is the lowest sequence number, Lambda's checkpoint); `None` when everything is
/// done. An answer Lambda takes for a complete failure (an empty, missing or unknown
/// `itemIdentifier`, a list that is no list) is an `Err`, and the whole batch is retried.
/// Without `ReportBatchItemFailures` the answer is ignored.
pub fn retry_from(
    output: &Json,
    sequence_numbers: &[String],
    report_batch_item_failures: bool,
) -> Result<Option<usize>, String> {
    if !report_batch_item_failures {
        return Ok(None);
    }
    let failures = match output {
        Json::Null => return Ok(None),
        Json::Object(map) => match map.get("batchItemFailures") {
            None | Some(Json::Null) => return Ok(None),
            Some(Json::Array(items)) => items,
            Some(other) => return Err(format!("batchItemFailures is not a list: {other}")),
        },
        other => {
            return Err(format!(
                "the function answered {other}, not a batch response"
            ))
        }
    };
    let mut earliest: Option<usize> = None;
    for item in failures {
        let position = item
            .get("itemIdentifier")
            .and_then(Json::as_str)
            .filter(|id| !id.is_empty())
            .and_then(|id| sequence_numbers.iter().position(|s| s == id))
            .ok_or_else(|| format!("batch item failure {item} names no record of the batch"))?;
        earliest = Some(earliest.map_or(position, |e| e.min(position)));
    }
    Ok(earliest)
}

// ------------------------------------------------------------------------------------------------
// The event.

/// The event Lambda sends for `records` of the stream `stream_arn`.
pub fn dynamodb_event(records: &[Record], stream_arn: &str) -> Json {
    let records: Vec<Json> = records
        .iter()
        .map(|r| event_record(r, stream_arn))
        .collect();
    json!({ "Records": records })
}

/// One record of the event: the stream's record with the stream's ARN, attribute values in
/// DynamoDB JSON and the creation time in epoch seconds, as Lambda gives them.
pub fn event_record(record: &Record, stream_arn: &str) -> Json {
    let mut change = serde_json::Map::new();
    let change_record = record.dynamodb();
    if let Some(d) = change_record {
        if let Some(t) = d.approximate_creation_date_time() {
            change.insert("ApproximateCreationDateTime".into(), epoch_seconds(t));
        }
        for (name, item) in [
            ("Keys", d.keys()),
            ("NewImage", d.new_image()),
            ("OldImage", d.old_image()),
        ] {
            if let Some(item) = item {
                change.insert(name.into(), item_json(item));
            }
        }
        if let Some(s) = d.sequence_number() {
            change.insert("SequenceNumber".into(), json!(s));
        }
    }
    // Lambda always sends it (and aws_lambda_events requires it).
    change.insert(
        "SizeBytes".into(),
        json!(change_record.and_then(|d| d.size_bytes()).unwrap_or(0)),
    );
    if let Some(view) = change_record.and_then(|d| d.stream_view_type()) {
        change.insert("StreamViewType".into(), json!(view.as_str()));
    }
    let mut out = json!({
        "eventID": record.event_id().unwrap_or_default(),
        "eventName": record.event_name().map(|n| n.as_str()).unwrap_or_default(),
        "eventVersion": record.event_version().unwrap_or("1.1"),
        "eventSource": record.event_source().unwrap_or("aws:dynamodb"),
        "awsRegion": record.aws_region().unwrap_or(REGION),
        "dynamodb": change,
        "eventSourceARN": stream_arn,
    });
    // Deletions by TTL say so (`dynamodb.amazonaws.com`, type `Service`).
    if let Some(identity) = record.user_identity() {
        out["userIdentity"] = json!({
            "type": identity.r#type().unwrap_or_default(),
            "principalId": identity.principal_id().unwrap_or_default(),
        });
    }
    out
}

/// Whole seconds as an integer, as DynamoDB Streams gives them; a fraction when there is one.
fn epoch_seconds(t: &DateTime) -> Json {
    match t.subsec_nanos() {
        0 => json!(t.secs()),
        nanos => json!(t.secs() as f64 + f64::from(nanos) / 1e9),
    }
}

fn item_json(item: &HashMap<String, AttributeValue>) -> Json {
    Json::Object(
        item.iter()
            .map(|(name, value)| (name.clone(), attribute_json(value)))
            .collect(),
    )
}

/// An attribute value in DynamoDB JSON (binary as base64, numbers as text).
pub fn attribute_json(value: &AttributeValue) -> Json {
    let b64 = |b: &Blob| Json::String(base64::engine::general_purpose::STANDARD.encode(b.as_ref()));
    match value {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::B(b) => json!({ "B": b64(b) }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Null(b) => json!({ "NULL": b }),
        AttributeValue::Ss(v) => json!({ "SS": v }),
        AttributeValue::Ns(v) => json!({ "NS": v }),
        AttributeValue::Bs(v) => json!({ "BS": v.iter().map(b64).collect::<Vec<_>>() }),
        AttributeValue::L(v) => json!({ "L": v.iter().map(attribute_json).collect::<Vec<_>>() }),
        AttributeValue::M(m) => json!({ "M": item_json(m) }),
        // A kind newer than the SDK: nothing to pass on but that it was there.
        other => {
            tracing::warn!(
                "an attribute of a kind the SDK does not know ({other:?}) is passed on as NULL"
            );
            json!({ "NULL": true })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodbstreams::types::{Identity, OperationType, StreamRecord, StreamViewType};

    fn every_kind() -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("id".to_owned(), AttributeValue::S("dev-1".into())),
            ("n".to_owned(), AttributeValue::N("12.5".into())),
            (
                "b".to_owned(),
                AttributeValue::B(Blob::new(vec![0, 1, 254])),
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
                AttributeValue::Bs(vec![Blob::new(b"x".to_vec())]),
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
                AttributeValue::M(HashMap::from([(
                    "inner".to_owned(),
                    AttributeValue::M(HashMap::from([(
                        "deep".to_owned(),
                        AttributeValue::Bool(false),
                    )])),
                )])),
            ),
        ])
    }

    fn record(sequence_number: &str) -> Record {
        Record::builder()
            .event_id("e1")
            .event_name(OperationType::Modify)
            .event_version("1.1")
            .event_source("aws:dynamodb")
            .aws_region(REGION)
            .dynamodb(
                StreamRecord::builder()
                    .approximate_creation_date_time(DateTime::from_secs(1_700_000_000))
                    .keys("id", AttributeValue::S("dev-1".into()))
                    .set_new_image(Some(every_kind()))
                    .old_image("id", AttributeValue::S("dev-1".into()))
                    .sequence_number(sequence_number)
                    .size_bytes(42)
                    .stream_view_type(StreamViewType::NewAndOldImages)
                    .build(),
            )
            .user_identity(
                Identity::builder()
                    .r#type("Service")
                    .principal_id("dynamodb.amazonaws.com")
                    .build(),
            )
            .build()
    }

    #[test]
    fn every_attribute_kind_is_dynamodb_json() {
        let item = item_json(&every_kind());
        assert_eq!(
            item,
            json!({
                "id": {"S": "dev-1"},
                "n": {"N": "12.5"},
                "b": {"B": "AAH+"},
                "ok": {"BOOL": true},
                "none": {"NULL": true},
                "ss": {"SS": ["a", "b"]},
                "ns": {"NS": ["1", "-2.5"]},
                "bs": {"BS": ["eA=="]},
                "l": {"L": [{"S": "first"}, {"N": "2"}]},
                "m": {"M": {"inner": {"M": {"deep": {"BOOL": false}}}}},
            })
        );
    }

    #[test]
    fn event_is_what_lambda_sends() {
        let arn = "arn:aws:dynamodb:us-east-1:123456789012:table/T/stream/2024-01-01T00:00:00.000";
        let event = dynamodb_event(&[record("100")], arn);
        let r = &event["Records"][0];
        assert_eq!(r["eventName"], "MODIFY");
        assert_eq!(r["eventSource"], "aws:dynamodb");
        assert_eq!(r["eventSourceARN"], arn);
        assert_eq!(r["dynamodb"]["ApproximateCreationDateTime"], 1_700_000_000);
        assert_eq!(r["dynamodb"]["StreamViewType"], "NEW_AND_OLD_IMAGES");
        assert_eq!(r["userIdentity"]["principalId"], "dynamodb.amazonaws.com");

        let typed: aws_lambda_events::event::dynamodb::Event =
            serde_json::from_value(event.clone()).expect("aws_lambda_events reads it");
        let [typed] = typed.records.as_slice() else {
            panic!("one record")
        };
        assert_eq!(typed.event_id, "e1");
        assert_eq!(typed.event_name, "MODIFY");
        assert_eq!(typed.aws_region, REGION);
        assert_eq!(typed.event_source_arn.as_deref(), Some(arn));
        assert_eq!(typed.change.sequence_number.as_deref(), Some("100"));
        assert_eq!(typed.change.size_bytes, 42);
        assert_eq!(
            typed.change.approximate_creation_date_time.timestamp(),
            1_700_000_000
        );
        assert_eq!(
            typed.user_identity.as_ref().map(|u| u.type_.as_str()),
            Some("Service")
        );
        // Every kind of attribute reads back as the same value.
        assert_eq!(typed.change.new_image.len(), every_kind().len());
        assert_eq!(
            serde_json::to_value(&typed.change.new_image).expect("serializes"),
            r["dynamodb"]["NewImage"]
        );
        assert_eq!(
            serde_json::to_value(&typed.change.keys).expect("serializes"),
            json!({"id": {"S": "dev-1"}})
        );
    }

    #[test]
    fn a_fractional_creation_time_keeps_its_fraction() {
        let t = DateTime::from_secs_and_nanos(1_700_000_000, 500_000_000);
        assert_eq!(epoch_seconds(&t), json!(1_700_000_000.5));
    }

    #[test]
    fn batch_item_failures_follow_lambda_rules() {
        let seqs: Vec<String> = ["10", "20", "30"].iter().map(|s| (*s).to_owned()).collect();
        let failing = |ids: &[&str]| json!({"batchItemFailures": ids.iter().map(|id| json!({"itemIdentifier": id})).collect::<Vec<_>>()});
        assert_eq!(retry_from(&failing(&["20"]), &seqs, true), Ok(Some(1)));
        // The lowest sequence number is the checkpoint, whatever the order of the list.
        assert_eq!(
            retry_from(&failing(&["30", "20"]), &seqs, true),
            Ok(Some(1))
        );
        assert_eq!(retry_from(&failing(&["10"]), &seqs, true), Ok(Some(0)));
        assert_eq!(retry_from(&failing(&[]), &seqs, true), Ok(None));
        assert_eq!(retry_from(&Json::Null, &seqs, true), Ok(None));
        assert_eq!(retry_from(&json!({}), &seqs, true), Ok(None));
        assert_eq!(
            retry_from(&json!({"batchItemFailures": null}), &seqs, true),
            Ok(None)
        );
        for invalid in [
            failing(&[""]),
            failing(&["99"]),
            json!({"batchItemFailures": [{"itemIdentifier": null}]}),
            json!({"batchItemFailures": [{"identifier": "20"}]}),
            json!({"batchItemFailures": "20"}),
            json!("nope"),
        ] {
            assert!(retry_from(&invalid, &seqs, true).is_err(), "{invalid}");
        }
        // Without ReportBatchItemFailures a success is a success.
        assert_eq!(retry_from(&failing(&["20"]), &seqs, false), Ok(None));
    }

    fn shard(id: &str, parent: Option<&str>, closed: bool) -> ShardInfo {
        ShardInfo {
            shard_id: id.to_owned(),
            parent_shard_id: parent.map(str::to_owned),
            closed,
        }
    }

    #[test]
    fn shards_start_where_lambda_starts_them() {
        let described = [
            shard("old", None, true),
            shard("parent", Some("old"), true),
            shard("child", Some("parent"), false),
            shard("orphan", Some("expired"), false),
        ];
        let none = BTreeSet::new();
        let plan = |id: &str, start, after: Option<&str>| ShardPlan {
            shard_id: id.to_owned(),
            start,
            after: after.map(str::to_owned),
        };
        // LATEST: the open shards from now on, the closed ones not at all.
        assert_eq!(
            plan_shards(&described, &none, true, StartingPosition::Latest),
            vec![
                plan("old", None, None),
                plan("parent", None, None),
                plan("child", Some(StartingPosition::Latest), None),
                plan("orphan", Some(StartingPosition::Latest), None),
            ]
        );
        // TRIM_HORIZON: everything, each shard after its parent if that is still there.
        let th = Some(StartingPosition::TrimHorizon);
        assert_eq!(
            plan_shards(&described, &none, true, StartingPosition::TrimHorizon),
            vec![
                plan("old", th, None),
                plan("parent", th, Some("old")),
                plan("child", th, Some("parent")),
                plan("orphan", th, None),
            ]
        );
        // Later, only new shards, read whole after their parent, whatever the starting position.
        let known: BTreeSet<String> = ["old", "parent", "child", "orphan"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let mut later = described.to_vec();
        later.push(shard("grandchild", Some("child"), false));
        assert_eq!(
            plan_shards(&later, &known, false, StartingPosition::Latest),
            vec![plan("grandchild", th, Some("child"))]
        );
    }

    #[test]
    fn summary_names_table_function_and_error_handling() {
        let source = StreamSource {
            event_id: "Devices".into(),
            table_logical_id: "DevicesTable".into(),
            stream_arn: "arn".into(),
            batch_size: 100,
            maximum_batching_window: Duration::ZERO,
            starting_position: StartingPosition::Latest,
            report_batch_item_failures: true,
            maximum_retry_attempts: Some(20),
            bisect_batch_on_function_error: false,
            enabled: true,
            event_names: None,
        };
        assert_eq!(
            summary_line(&source, "event-recorder"),
            "DevicesTable stream -> event-recorder (batch 100, partial batch failures, 20 retries)"
        );
        let filtered = StreamSource {
            event_names: Some(vec!["INSERT".into(), "MODIFY".into()]),
            ..source.clone()
        };
        assert!(summary_line(&filtered, "event-recorder").ends_with(", only INSERT/MODIFY)"));
        let of_kind = |kind: OperationType| Record::builder().event_name(kind).build();
        assert!(passes_filter(&filtered, &of_kind(OperationType::Insert)));
        assert!(passes_filter(&filtered, &of_kind(OperationType::Modify)));
        assert!(
            !passes_filter(&filtered, &of_kind(OperationType::Remove)),
            "an expiring item is left out"
        );
        assert!(
            passes_filter(&source, &of_kind(OperationType::Remove)),
            "no filter"
        );
    }
}
