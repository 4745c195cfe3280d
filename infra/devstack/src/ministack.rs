//! MiniStack: the local DynamoDB (with its streams) and SQS, in two processes. Each handles its
//! requests one at a time on one Python event loop, so each operation is atomic, as on AWS (two
//! conditional writes to one item can never both pass), and one process can use one core at
//! most: DynamoDB and SQS in processes of their own use two.
//!
//! Each process also meters what AWS would bill for the requests it served, per caller (the app
//! name an SDK client was given): [`read_meter`] reads it, [`EmulatorMeter::since`] takes the
//! difference of two readings, so a benchmark can tell what a run would cost on AWS. Moto serves
//! a meter of the same shape at the same path for S3 and Secrets Manager requests.

use crate::local_aws::{ACCOUNT_ID, REGION};
use crate::python_server::{Launcher, PythonServer};
use crate::tools::Tools;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

const LAUNCHER: &str = include_str!("ministack_server.py");

/// What one MiniStack process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MiniStackServices {
    /// DynamoDB and DynamoDB Streams (the streams read the tables, so they share a process).
    DynamoDb,
    Sqs,
}

impl MiniStackServices {
    /// For messages and the stack's summary.
    pub fn name(self) -> &'static str {
        match self {
            MiniStackServices::DynamoDb => "MiniStack (DynamoDB)",
            MiniStackServices::Sqs => "MiniStack (SQS)",
        }
    }

    /// MiniStack's names for them: nothing else starts.
    fn services(self) -> &'static str {
        match self {
            MiniStackServices::DynamoDb => "dynamodb,dynamodbstreams",
            MiniStackServices::Sqs => "sqs",
        }
    }

    /// One launcher, saved under a name per process, so `ps` and the benchmarks' CPU profile
    /// tell the two apart.
    pub fn script_name(self) -> &'static str {
        match self {
            MiniStackServices::DynamoDb => "cellbridge_ministack_dynamodb.py",
            MiniStackServices::Sqs => "cellbridge_ministack_sqs.py",
        }
    }
}

/// Starts a MiniStack for `services` on `port` (0 picks a free one) and waits until it answers.
pub async fn start(tools: &Tools, services: MiniStackServices, port: u16) -> Result<PythonServer> {
    let launcher = Launcher {
        name: services.name(),
        script_name: services.script_name(),
        script: LAUNCHER,
        env: vec![
            ("SERVICES", services.services().to_owned()),
            ("MINISTACK_ACCOUNT_ID", ACCOUNT_ID.to_owned()),
            ("MINISTACK_REGION", REGION.to_owned()),
            ("LOG_LEVEL", "WARNING".to_owned()),
        ],
        // Queue URLs carry the host and port each request was sent to, so MiniStack need not
        // know its port.
        ready_path: "/_ministack/health",
    };
    PythonServer::start(tools, launcher, port).await
}

/// Where each MiniStack serves its meter, on its own port.
pub const METER_PATH: &str = "/_cellbridge/meter";

/// What AWS would bill a MiniStack's callers, counted since the process started: DynamoDB rows
/// in the DynamoDB process, SQS rows in the SQS one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmulatorMeter {
    #[serde(default)]
    pub dynamodb: Vec<DynamoDbUsage>,
    #[serde(default)]
    pub sqs: Vec<SqsUsage>,
    /// Moto's meter: services billed per request.
    #[serde(default)]
    pub requests: Vec<RequestUsage>,
}

/// One caller's use of one table by one operation, in on-demand capacity units. Index reads and
/// writes count under the base table; Streams and control-plane operations count requests only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DynamoDbUsage {
    /// The `app/<name>` in the caller's user agent (an SDK client's app name), or `unnamed`.
    pub caller: String,
    pub table: String,
    pub operation: String,
    /// A batch or transaction over several tables counts as a request on each.
    pub requests: u64,
    pub write_units: f64,
    pub read_units: f64,
    /// Writes refused by their condition (billed in `write_units` all the same).
    pub conditional_check_failures: u64,
}

/// One caller's use of one queue by one action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SqsUsage {
    /// As in [`DynamoDbUsage::caller`].
    pub caller: String,
    /// `""` for actions naming no queue (ListQueues).
    pub queue: String,
    pub action: String,
    /// API calls.
    pub requests: u64,
    /// What AWS bills: each 64 KB of a call's payload (messages sent or received) is a request.
    pub billed_requests: u64,
    /// Sent, received, or deleted, by the action.
    pub messages: u64,
}

/// One caller's requests of one price class to a service metered by request (moto's S3 and
/// Secrets Manager).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestUsage {
    /// As in [`DynamoDbUsage::caller`].
    pub caller: String,
    /// The service of the request's signature: `s3`, `secretsmanager`, ...
    pub service: String,
    /// S3: `put` (PUT, COPY, POST), `list`, `get` (GET, HEAD) or `delete` (free); otherwise `call`.
    pub kind: String,
    pub requests: u64,
    /// Request bodies, in bytes (what S3 stores, for a PUT).
    pub bytes: u64,
}

impl EmulatorMeter {
    /// What was counted between `earlier` and this reading: rows that did not change are left out.
    pub fn since(&self, earlier: &EmulatorMeter) -> EmulatorMeter {
        let dynamodb = rows_since(
            &self.dynamodb,
            &earlier.dynamodb,
            |row| (row.caller.clone(), row.table.clone(), row.operation.clone()),
            |row, before| {
                let change = DynamoDbUsage {
                    requests: row.requests.saturating_sub(before.requests),
                    write_units: row.write_units - before.write_units,
                    read_units: row.read_units - before.read_units,
                    conditional_check_failures: row
                        .conditional_check_failures
                        .saturating_sub(before.conditional_check_failures),
                    ..row.clone()
                };
                (change.requests != 0
                    || change.write_units != 0.0
                    || change.read_units != 0.0
                    || change.conditional_check_failures != 0)
                    .then_some(change)
            },
        );
        let sqs = rows_since(
            &self.sqs,
            &earlier.sqs,
            |row| (row.caller.clone(), row.queue.clone(), row.action.clone()),
            |row, before| {
                let change = SqsUsage {
                    requests: row.requests.saturating_sub(before.requests),
                    billed_requests: row.billed_requests.saturating_sub(before.billed_requests),
                    messages: row.messages.saturating_sub(before.messages),
                    ..row.clone()
                };
                (change.requests != 0 || change.billed_requests != 0 || change.messages != 0)
                    .then_some(change)
            },
        );
        let requests = rows_since(
            &self.requests,
            &earlier.requests,
            |row| (row.caller.clone(), row.service.clone(), row.kind.clone()),
            |row, before| {
                let change = RequestUsage {
                    requests: row.requests.saturating_sub(before.requests),
                    bytes: row.bytes.saturating_sub(before.bytes),
                    ..row.clone()
                };
                (change.requests != 0).then_some(change)
            },
        );
        EmulatorMeter {
            dynamodb,
            sqs,
            requests,
        }
    }

    /// Both readings' rows in one meter: each emulator process meters its own services.
    pub fn merged(readings: impl IntoIterator<Item = EmulatorMeter>) -> EmulatorMeter {
        let mut merged = EmulatorMeter::default();
        for reading in readings {
            merged.dynamodb.extend(reading.dynamodb);
            merged.sqs.extend(reading.sqs);
            merged.requests.extend(reading.requests);
        }
        merged
    }
}

/// The rows of `now` that changed since `earlier` (matched by `key`), as `change` computes them;
/// a row new since then counts whole.
fn rows_since<R: Clone, K: std::hash::Hash + Eq>(
    now: &[R],
    earlier: &[R],
    key: impl Fn(&R) -> K,
    change: impl Fn(&R, &R) -> Option<R>,
) -> Vec<R> {
    let before: HashMap<K, &R> = earlier.iter().map(|row| (key(row), row)).collect();
    now.iter()
        .filter_map(|row| match before.get(&key(row)) {
            Some(before) => change(row, before),
            None => Some(row.clone()),
        })
        .collect()
}

/// Reads the meter of the MiniStack at `endpoint` (its base URL, `http://127.0.0.1:PORT`).
pub async fn read_meter(client: &reqwest::Client, endpoint: &str) -> Result<EmulatorMeter> {
    let url = format!("{}{METER_PATH}", endpoint.trim_end_matches('/'));
    client
        .get(&url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("reading the meter at {url}"))?
        .json()
        .await
        .with_context(|| format!("decoding the meter at {url}"))
}
