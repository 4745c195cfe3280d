//! The work queues on SQS.

use super::sdk_message;
use crate::messages::{PlanMessage, WorkMessage};
use crate::ports::{QueueError, WorkQueues};
use async_trait::async_trait;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use aws_sdk_sqs::Client;
use backon::{ExponentialBuilder, Retryable};
use futures::{stream, StreamExt, TryStreamExt};
use std::time::Duration;

/// SendMessageBatch takes at most 10 entries.
const BATCH_SIZE: usize = 10;
const BATCHES_IN_FLIGHT: usize = 8;

#[derive(Debug, Clone)]
pub struct QueueUrls {
    pub plan: String,
    pub work: String,
}

impl QueueUrls {
    pub fn from_env() -> Result<Self, crate::config::ConfigError> {
        use crate::config::required_env;
        Ok(Self {
            plan: required_env("PLAN_QUEUE_URL")?,
            work: required_env("WORK_QUEUE_URL")?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct SqsQueues {
    client: Client,
    urls: QueueUrls,
}

fn to_json<T: serde::Serialize>(message: &T) -> Result<String, QueueError> {
    serde_json::to_string(message).map_err(|e| QueueError(e.to_string()))
}

impl SqsQueues {
    pub fn new(client: Client, urls: QueueUrls) -> Self {
        Self { client, urls }
    }

    /// Sends one batch; returns the entries SQS refused.
    async fn send_once(
        &self,
        batch: Vec<SendMessageBatchRequestEntry>,
    ) -> Result<Vec<SendMessageBatchRequestEntry>, QueueError> {
        let output = self
            .client
            .send_message_batch()
            .queue_url(&self.urls.work)
            .set_entries(Some(batch.clone()))
            .send()
            .await
            .map_err(|e| QueueError(sdk_message(e)))?;
        Ok(batch
            .into_iter()
            .filter(|entry| output.failed().iter().any(|f| f.id() == entry.id()))
            .collect())
    }

    /// Sends one batch, resending only what SQS refused, with backoff on transport errors.
    async fn send_batch(
        &self,
        entries: Vec<SendMessageBatchRequestEntry>,
    ) -> Result<(), QueueError> {
        let mut pending = entries;
        for _ in 0..4 {
            let batch = pending;
            pending = (|| self.send_once(batch.clone()))
                .retry(
                    ExponentialBuilder::default()
                        .with_min_delay(Duration::from_millis(50))
                        .with_max_times(3),
                )
                .await?;
            if pending.is_empty() {
                return Ok(());
            }
        }
        Err(QueueError(format!(
            "{} messages were refused by SQS after retries",
            pending.len()
        )))
    }
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
            .map_err(|e| QueueError(sdk_message(e)))?;
        Ok(())
    }

    async fn enqueue_work(&self, messages: &[WorkMessage]) -> Result<(), QueueError> {
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
                            .build()
                            .map_err(|e| QueueError(e.to_string()))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        stream::iter(batches)
            .map(|batch| self.send_batch(batch))
            .buffer_unordered(BATCHES_IN_FLIGHT)
            .try_collect::<()>()
            .await
    }
}
