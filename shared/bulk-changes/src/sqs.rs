//! The work queues on SQS.

use crate::change::Carrier;
use crate::messages::{PlanMessage, WorkMessage};
use crate::ports::{QueueError, WorkQueues};
use async_trait::async_trait;
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use aws_sdk_sqs::Client;
use backon::{ExponentialBuilder, Retryable};
use cellbridge_core::aws::sdk_failure;
use futures::{stream, StreamExt, TryStreamExt};
use std::time::Duration;

/// SendMessageBatch takes at most 10 entries.
const BATCH_SIZE: usize = 10;
const BATCHES_IN_FLIGHT: usize = 8;
/// SQS's longest per-message delay.
const MAX_DELAY_SECONDS: u64 = 900;

/// One work queue per carrier, so each carrier's worker concurrency can match its limits.
#[derive(Debug, Clone)]
pub struct QueueUrls {
    pub plan: String,
    pub jasper_work: String,
    pub thingspace_work: String,
    pub telegence_work: String,
}

impl cellbridge_core::config::FromEnvironment for QueueUrls {
    fn from_env(
        env: &dyn cellbridge_core::config::Environment,
    ) -> Result<Self, cellbridge_core::config::ConfigError> {
        use cellbridge_core::config::required;
        Ok(Self {
            plan: required(env, "PLAN_QUEUE_URL")?,
            jasper_work: required(env, "JASPER_WORK_QUEUE_URL")?,
            thingspace_work: required(env, "THINGSPACE_WORK_QUEUE_URL")?,
            telegence_work: required(env, "TELEGENCE_WORK_QUEUE_URL")?,
        })
    }
}

impl QueueUrls {
    pub fn work(&self, carrier: Carrier) -> &str {
        match carrier {
            Carrier::Jasper => &self.jasper_work,
            Carrier::ThingSpace => &self.thingspace_work,
            Carrier::Telegence => &self.telegence_work,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SqsQueues {
    client: Client,
    urls: QueueUrls,
}

/// A failed SQS call as a [`QueueError`] that says whether trying again can help.
fn queue_failure<E>(error: SdkError<E, HttpResponse>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    sdk_failure(error, QueueError::Unavailable, QueueError::Rejected)
}

fn to_json<T: serde::Serialize>(message: &T) -> Result<String, QueueError> {
    serde_json::to_string(message).map_err(|e| QueueError::Rejected(e.to_string()))
}

impl SqsQueues {
    pub fn new(client: Client, urls: QueueUrls) -> Self {
        Self { client, urls }
    }
}

/// Sends one batch; returns the entries SQS refused.
async fn send_once(
    client: &Client,
    queue_url: &str,
    batch: Vec<SendMessageBatchRequestEntry>,
) -> Result<Vec<SendMessageBatchRequestEntry>, QueueError> {
    let output = client
        .send_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(batch.clone()))
        .send()
        .await
        .map_err(queue_failure)?;
    Ok(batch
        .into_iter()
        .filter(|entry| output.failed().iter().any(|f| f.id() == entry.id()))
        .collect())
}

/// Sends one batch, resending only what SQS refused, with backoff on transport errors.
async fn send_batch(
    client: &Client,
    queue_url: &str,
    entries: Vec<SendMessageBatchRequestEntry>,
) -> Result<(), QueueError> {
    let mut pending = entries;
    for _ in 0..4 {
        let batch = pending;
        pending = (|| send_once(client, queue_url, batch.clone()))
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(50))
                    .with_max_times(3),
            )
            .when(QueueError::is_retryable)
            .await?;
        if pending.is_empty() {
            return Ok(());
        }
    }
    Err(QueueError::Unavailable(format!(
        "{} messages were refused by SQS after retries",
        pending.len()
    )))
}

/// Sends `messages` as JSON to `queue_url` in batches of 10, each held back `delay` (at most 15
/// minutes); all are sent or the error says how many were not.
pub async fn send_json_batches<T: serde::Serialize>(
    client: &Client,
    queue_url: &str,
    messages: &[T],
    delay: Duration,
) -> Result<(), QueueError> {
    let delay_seconds = delay.as_secs().min(MAX_DELAY_SECONDS) as i32;
    let batches = messages
        .chunks(BATCH_SIZE)
        .map(|chunk| {
            chunk
                .iter()
                .enumerate()
                .map(|(i, message)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(to_json(message)?)
                        .delay_seconds(delay_seconds)
                        .build()
                        .map_err(|e| QueueError::Rejected(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()?;
    stream::iter(batches)
        .map(|batch| send_batch(client, queue_url, batch))
        .buffer_unordered(BATCHES_IN_FLIGHT)
        .try_collect::<()>()
        .await
}

#[async_trait]
impl WorkQueues for SqsQueues {
    async fn enqueue_plan(&self, message: &PlanMessage) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(&self.urls.plan)
            .message_body(to_json(message)?)
            .send()
            .await
            .map_err(queue_failure)?;
        Ok(())
    }

    async fn enqueue_work(
        &self,
        carrier: Carrier,
        messages: &[WorkMessage],
        delay: Duration,
    ) -> Result<(), QueueError> {
        send_json_batches(&self.client, self.urls.work(carrier), messages, delay).await
    }
}
