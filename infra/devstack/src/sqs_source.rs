//! SQS event source mappings, locally: pollers that receive from a queue, invoke the function with
//! an SQS event and delete what it processed, as Lambda's own pollers do.

use crate::lambda_watch::Invoker;
use crate::local_aws::REGION;
use crate::template::{FunctionSpec, Resources, SqsSource};
use anyhow::{Context, Result};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use base64::Engine as _;
use serde_json::{json, Value as Json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// SQS returns at most ten messages per ReceiveMessage.
const MAX_RECEIVE: usize = 10;

#[derive(Debug, Clone)]
pub struct SqsSourceOptions {
    /// Concurrent invocations per source when the template sets no `MaximumConcurrency`.
    pub default_max_concurrency: u32,
    /// Long-poll wait of each ReceiveMessage (1 or 2 s keeps shutdown and tests snappy).
    pub wait_time: Duration,
    /// Upper bound on any source's concurrency: set to the function instances cargo-lambda may
    /// run, so invocations do not wait in its queue while their timeout runs.
    pub concurrency_cap: Option<u32>,
}

impl Default for SqsSourceOptions {
    fn default() -> Self {
        Self {
            default_max_concurrency: 2,
            wait_time: Duration::from_secs(1),
            concurrency_cap: None,
        }
    }
}

/// One poller per source and concurrency slot.
struct Mapping {
    function: String,
    timeout: Duration,
    source: SqsSource,
    queue_url: String,
}

pub struct SqsPollers {
    tasks: Vec<JoinHandle<()>>,
    summary: Vec<String>,
    /// Each poller's receives, with the logical id of its queue.
    receives: Vec<(String, Arc<Receives>)>,
}

/// ReceiveMessage calls one poller began and those that returned (successful or not).
#[derive(Default)]
struct Receives {
    begun: AtomicU64,
    returned: AtomicU64,
}

impl SqsPollers {
    pub fn start(
        sqs: aws_sdk_sqs::Client,
        functions: &[FunctionSpec],
        resources: &Resources,
        invoker: Invoker,
        opts: &SqsSourceOptions,
    ) -> Result<Self> {
        let mut tasks = Vec::new();
        let mut summary = Vec::new();
        let mut receives = Vec::new();
        for f in functions {
            for source in f.sqs_sources.iter().filter(|s| s.enabled) {
                let queue_url = resources
                    .queue_url(&source.queue_logical_id)
                    .with_context(|| {
                        format!(
                            "queue {} has no URL: provision it first",
                            source.queue_logical_id
                        )
                    })?
                    .to_owned();
                let concurrency = source
                    .maximum_concurrency
                    .unwrap_or(opts.default_max_concurrency)
                    .min(opts.concurrency_cap.unwrap_or(u32::MAX))
                    .max(1);
                summary.push(format!(
                    "{} -> {} (batch {}, concurrency {}{})",
                    source.queue_logical_id,
                    f.binary,
                    source.batch_size,
                    concurrency,
                    if source.report_batch_item_failures {
                        ", partial batch failures"
                    } else {
                        ""
                    }
                ));
                let mapping = std::sync::Arc::new(Mapping {
                    function: f.binary.clone(),
                    timeout: f.timeout,
                    source: source.clone(),
                    queue_url,
                });
                for _ in 0..concurrency {
                    let counted = Arc::new(Receives::default());
                    receives.push((source.queue_logical_id.clone(), counted.clone()));
                    let (sqs, invoker, mapping, wait) = (
                        sqs.clone(),
                        invoker.clone(),
                        mapping.clone(),
                        opts.wait_time,
                    );
                    tasks.push(tokio::spawn(async move {
                        poll(sqs, invoker, &mapping, wait, &counted).await
                    }));
                }
            }
        }
        Ok(Self {
            tasks,
            summary,
            receives,
        })
    }

    /// Waits until every receive the pollers of `queue_logical_id` had begun has returned; false
    /// if that takes longer than `timeout`. SQS fixes a received message's visibility timeout
    /// when the receive begins, so from then on the pollers' receives apply the queue's
    /// attributes as they are now (a test that shortens the visibility timeout waits for this).
    pub async fn receives_under_way_returned(
        &self,
        queue_logical_id: &str,
        timeout: Duration,
    ) -> bool {
        let begun: Vec<(&Receives, u64)> = self
            .receives
            .iter()
            .filter(|(queue, _)| queue == queue_logical_id)
            .map(|(_, counted)| (counted.as_ref(), counted.begun.load(Ordering::SeqCst)))
            .collect();
        let deadline = Instant::now() + timeout;
        loop {
            if begun
                .iter()
                .all(|(counted, begun)| counted.returned.load(Ordering::SeqCst) >= *begun)
            {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One line per mapping: queue, function, batch size, concurrency.
    pub fn summary(&self) -> &[String] {
        &self.summary
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

impl Drop for SqsPollers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn poll(
    sqs: aws_sdk_sqs::Client,
    invoker: Invoker,
    m: &Mapping,
    wait: Duration,
    receives: &Receives,
) {
    loop {
        let batch = match receive_batch(&sqs, m, wait, receives).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(queue = %m.source.queue_logical_id, "receiving failed: {e:#}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if batch.is_empty() {
            continue;
        }
        tracing::debug!(queue = %m.source.queue_logical_id, messages = batch.len(), "received");
        let event = sqs_event(&batch, &m.source.queue_arn);
        let ids: Vec<String> = batch
            .iter()
            .filter_map(|msg| msg.message_id().map(str::to_owned))
            .collect();
        let keep = match invoker.invoke(&m.function, &event, m.timeout).await {
            Ok(output) => match kept_messages(&output, &ids, m.source.report_batch_item_failures) {
                Ok(keep) => keep,
                Err(why) => {
                    tracing::warn!(function = %m.function, "{why}; the whole batch is retried");
                    ids.iter().cloned().collect()
                }
            },
            // Nothing deleted: the messages come back after the visibility timeout and go to
            // the dead-letter queue after maxReceiveCount receives, as with Lambda.
            Err(e) => {
                tracing::warn!(queue = %m.source.queue_logical_id, messages = ?ids, "{e}");
                continue;
            }
        };
        if !keep.is_empty() {
            tracing::info!(function = %m.function, failed = ?keep, "batch item failures are retried");
        }
        let done: Vec<&Message> = batch
            .iter()
            .filter(|msg| msg.message_id().is_some_and(|id| !keep.contains(id)))
            .collect();
        if let Err(e) = delete(&sqs, &m.queue_url, &done).await {
            tracing::warn!(queue = %m.source.queue_logical_id, "deleting processed messages failed: {e:#}");
        }
    }
}

/// Up to `BatchSize` messages: receives continue until the batch is full or the batching window,
/// which opens with the first message, has passed.
async fn receive_batch(
    sqs: &aws_sdk_sqs::Client,
    m: &Mapping,
    wait: Duration,
    receives: &Receives,
) -> Result<Vec<Message>> {
    let wanted = usize::try_from(m.source.batch_size).unwrap_or(MAX_RECEIVE);
    let mut deadline: Option<Instant> = None;
    let mut batch = Vec::new();
    loop {
        let max = (wanted - batch.len()).min(MAX_RECEIVE);
        let wait = match deadline {
            None => wait,
            // Whole seconds (SQS's unit), rounded up so the last part of the window does not spin.
            Some(d) => Duration::from_secs(
                d.saturating_duration_since(Instant::now())
                    .as_secs_f64()
                    .ceil() as u64,
            )
            .min(wait),
        };
        receives.begun.fetch_add(1, Ordering::SeqCst);
        let out = sqs
            .receive_message()
            .queue_url(&m.queue_url)
            .max_number_of_messages(i32::try_from(max).unwrap_or(10))
            .wait_time_seconds(i32::try_from(wait.as_secs()).unwrap_or(1))
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await;
        receives.returned.fetch_add(1, Ordering::SeqCst);
        let out = out.map_err(aws_sdk_sqs::Error::from)?;
        batch.extend(out.messages.unwrap_or_default());
        if batch.is_empty() {
            return Ok(batch);
        }
        let deadline =
            *deadline.get_or_insert_with(|| Instant::now() + m.source.maximum_batching_window);
        if batch.len() >= wanted || Instant::now() >= deadline {
            return Ok(batch);
        }
    }
}

async fn delete(sqs: &aws_sdk_sqs::Client, queue_url: &str, messages: &[&Message]) -> Result<()> {
    for chunk in messages.chunks(MAX_RECEIVE) {
        let entries = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, msg)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(msg.receipt_handle()?)
                    .build()
                    .ok()
            })
            .collect::<Vec<_>>();
        if entries.is_empty() {
            continue;
        }
        let out = sqs
            .delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(aws_sdk_sqs::Error::from)?;
        for failed in out.failed() {
            tracing::warn!(
                "could not delete message {}: {:?}",
                failed.id(),
                failed.message()
            );
        }
    }
    Ok(())
}

/// The event Lambda's SQS poller sends.
pub fn sqs_event(messages: &[Message], queue_arn: &str) -> Json {
    let b64 = |b: &aws_sdk_sqs::primitives::Blob| {
        base64::engine::general_purpose::STANDARD.encode(b.as_ref())
    };
    let records: Vec<Json> = messages
        .iter()
        .map(|msg| {
            let attributes: BTreeMap<&str, &str> = msg
                .attributes()
                .map(|a| a.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect())
                .unwrap_or_default();
            let message_attributes: BTreeMap<&str, Json> = msg
                .message_attributes()
                .map(|a| {
                    a.iter()
                        .map(|(name, v)| {
                            let mut value = json!({
                                "stringListValues": v.string_list_values(),
                                "binaryListValues": v.binary_list_values().iter().map(b64).collect::<Vec<_>>(),
                                "dataType": v.data_type(),
                            });
                            if let Some(s) = v.string_value() {
                                value["stringValue"] = json!(s);
                            }
                            if let Some(b) = v.binary_value() {
                                value["binaryValue"] = json!(b64(b));
                            }
                            (name.as_str(), value)
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut record = json!({
                "messageId": msg.message_id(),
                "receiptHandle": msg.receipt_handle(),
                "body": msg.body().unwrap_or_default(),
                "attributes": attributes,
                "messageAttributes": message_attributes,
                "md5OfBody": msg.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            });
            if let Some(md5) = msg.md5_of_message_attributes() {
                record["md5OfMessageAttributes"] = json!(md5);
            }
            record
        })
        .collect();
    json!({ "Records": records })
}

/// Message ids to leave on the queue after a successful invocation. With
/// `ReportBatchItemFailures`, those the function names; an answer naming an unknown, empty or
/// missing id fails the whole batch (Lambda's rule); without it, none.
pub fn kept_messages(
    output: &Json,
    batch_ids: &[String],
    report_batch_item_failures: bool,
) -> Result<BTreeSet<String>, String> {
    if !report_batch_item_failures {
        return Ok(BTreeSet::new());
    }
    let failures = match output {
        Json::Null => return Ok(BTreeSet::new()),
        Json::Object(map) => match map.get("batchItemFailures") {
            None | Some(Json::Null) => return Ok(BTreeSet::new()),
            Some(Json::Array(items)) => items,
            Some(other) => return Err(format!("batchItemFailures is not a list: {other}")),
        },
        other => {
            return Err(format!(
                "the function answered {other}, not a batch response"
            ))
        }
    };
    let mut keep = BTreeSet::new();
    for item in failures {
        match item.get("itemIdentifier").and_then(Json::as_str) {
            Some(id) if batch_ids.iter().any(|b| b == id) => {
                keep.insert(id.to_owned());
            }
            _ => {
                return Err(format!(
                    "batch item failure {item} names no message of the batch"
                ))
            }
        }
    }
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::types::MessageAttributeValue;

    #[test]
    fn event_is_what_lambda_sends() {
        let msg = Message::builder()
            .message_id("m1")
            .receipt_handle("rh")
            .body("{\"a\":1}")
            .md5_of_body("md5")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "1")
            .message_attributes(
                "kind",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("plan")
                    .build()
                    .expect("attr"),
            )
            .build();
        let e = sqs_event(&[msg], "arn:aws:sqs:us-east-1:123456789012:PlanQueue");
        let r = &e["Records"][0];
        assert_eq!(r["messageId"], "m1");
        assert_eq!(r["eventSource"], "aws:sqs");
        assert_eq!(r["attributes"]["ApproximateReceiveCount"], "1");
        assert_eq!(r["messageAttributes"]["kind"]["stringValue"], "plan");
        let typed: aws_lambda_events::sqs::SqsEvent =
            serde_json::from_value(e).expect("aws_lambda_events reads it");
        assert_eq!(typed.records[0].body.as_deref(), Some("{\"a\":1}"));
    }

    #[test]
    fn batch_item_failures_follow_lambda_rules() {
        let ids = vec!["a".to_owned(), "b".to_owned()];
        let set = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
        assert_eq!(
            kept_messages(
                &json!({"batchItemFailures": [{"itemIdentifier": "b"}]}),
                &ids,
                true
            ),
            Ok(set(&["b"]))
        );
        assert_eq!(
            kept_messages(&json!({"batchItemFailures": []}), &ids, true),
            Ok(set(&[]))
        );
        assert_eq!(kept_messages(&Json::Null, &ids, true), Ok(set(&[])));
        assert_eq!(kept_messages(&json!({}), &ids, true), Ok(set(&[])));
        assert!(kept_messages(
            &json!({"batchItemFailures": [{"itemIdentifier": "zz"}]}),
            &ids,
            true
        )
        .is_err());
        assert!(kept_messages(
            &json!({"batchItemFailures": [{"itemIdentifier": ""}]}),
            &ids,
            true
        )
        .is_err());
        assert!(kept_messages(&json!("nope"), &ids, true).is_err());
        // Without ReportBatchItemFailures the answer is ignored: a success deletes everything.
        assert_eq!(
            kept_messages(
                &json!({"batchItemFailures": [{"itemIdentifier": "b"}]}),
                &ids,
                false
            ),
            Ok(set(&[]))
        );
    }
}
