//! The rules' SQS action, sent in batches. AWS IoT sends one `SendMessage` per matched message;
//! locally, with a fleet of devices each sending telemetry every second, those calls alone would
//! occupy the local SQS. Grouping the messages bound for one queue into `SendMessageBatch` calls changes nothing a
//! consumer can see (every message still arrives on its own, with its own body), and each action
//! still learns its own outcome, so the error action fires exactly as before.

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use aws_sdk_sqs::Client;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;

/// SQS's limits for one `SendMessageBatch`: entries, and the sum of their bodies.
const MAX_ENTRIES: usize = 10;
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// How long the first message of a batch waits for company; short next to the ingest's own
/// one-second batching window.
const LINGER: Duration = Duration::from_millis(5);
/// Batch calls in flight per queue: the emulator's latency under load, not the batch size, bounds the
/// rate of a single sender.
const BATCHES_IN_FLIGHT: usize = 8;
/// Messages waiting for a batch, per queue, before senders wait.
const QUEUE_DEPTH: usize = 10_000;

struct Pending {
    body: String,
    done: oneshot::Sender<Result<(), String>>,
}

pub(crate) struct SqsBatches {
    sqs: Client,
    queues: Mutex<HashMap<String, mpsc::Sender<Pending>>>,
}

impl SqsBatches {
    pub fn new(sqs: Client) -> Self {
        Self {
            sqs,
            queues: Mutex::new(HashMap::new()),
        }
    }

    /// Sends `body` to `queue_url` in the next batch; `Err` is the service's reason
    /// (`Code: message`), for the rule's error action.
    pub async fn send(&self, queue_url: &str, body: String) -> Result<(), String> {
        let sender = {
            let mut queues = self
                .queues
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            queues
                .entry(queue_url.to_owned())
                .or_insert_with(|| {
                    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
                    tokio::spawn(send_batches(self.sqs.clone(), queue_url.to_owned(), rx));
                    tx
                })
                .clone()
        };
        let (done, outcome) = oneshot::channel();
        sender
            .send(Pending { body, done })
            .await
            .map_err(|_| "the local SQS batch sender stopped".to_owned())?;
        outcome
            .await
            .unwrap_or_else(|_| Err("the local SQS batch sender stopped".to_owned()))
    }
}

/// Collects what arrives for one queue into batches and sends each on its own task.
async fn send_batches(sqs: Client, queue_url: String, mut rx: mpsc::Receiver<Pending>) {
    let in_flight = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(pending) => pending,
            None => match rx.recv().await {
                Some(pending) => pending,
                None => return,
            },
        };
        let mut bytes = first.body.len();
        let mut batch = vec![first];
        let until = Instant::now() + LINGER;
        while batch.len() < MAX_ENTRIES {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(next)) if bytes + next.body.len() > MAX_BATCH_BYTES => {
                    carried = Some(next);
                    break;
                }
                Ok(Some(next)) => {
                    bytes += next.body.len();
                    batch.push(next);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let sqs = sqs.clone();
        let queue_url = queue_url.clone();
        tokio::spawn(async move {
            send_batch(&sqs, &queue_url, batch).await;
            drop(permit);
        });
    }
}

async fn send_batch(sqs: &Client, queue_url: &str, batch: Vec<Pending>) {
    let mut entries = Vec::with_capacity(batch.len());
    for (index, pending) in batch.iter().enumerate() {
        match SendMessageBatchRequestEntry::builder()
            .id(index.to_string())
            .message_body(pending.body.clone())
            .build()
        {
            Ok(entry) => entries.push(entry),
            Err(e) => {
                finish(batch, |_| Err(e.to_string()));
                return;
            }
        }
    }
    let sent = sqs
        .send_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await;
    match sent {
        Ok(out) => {
            let failed: HashMap<&str, String> = out
                .failed()
                .iter()
                .map(|f| {
                    let reason = match f.message() {
                        Some(message) => format!("{}: {message}", f.code()),
                        None => f.code().to_owned(),
                    };
                    (f.id(), reason)
                })
                .collect();
            finish(batch, |index| {
                match failed.get(index.to_string().as_str()) {
                    Some(reason) => Err(reason.clone()),
                    None => Ok(()),
                }
            });
        }
        Err(e) => {
            let reason = super::rules::sdk_error(e);
            finish(batch, |_| Err(reason.clone()));
        }
    }
}

fn finish(batch: Vec<Pending>, outcome: impl Fn(usize) -> Result<(), String>) {
    for (index, pending) in batch.into_iter().enumerate() {
        // The action may have given up waiting; nobody is left to tell.
        let _ = pending.done.send(outcome(index));
    }
}
