//! Partial batch responses for SQS-triggered functions: each record succeeds or fails alone.
//!
//! A record whose handler errors or panics is reported in `batchItemFailures`, so SQS redelivers
//! only it (and eventually moves it to the DLQ); the rest of the batch is deleted.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::FutureExt;
use std::future::Future;
use std::panic::AssertUnwindSafe;

/// Runs `handle` for every record concurrently and reports the failures.
pub async fn process_batch<F, Fut, E>(event: SqsEvent, handle: F) -> SqsBatchResponse
where
    F: Fn(SqsMessage) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let outcomes = event.records.into_iter().map(|record| {
        let message_id = record.message_id.clone();
        let work = AssertUnwindSafe(handle(record)).catch_unwind();
        async move {
            let failure = match work.await {
                Ok(Ok(())) => None,
                Ok(Err(error)) => Some(error.to_string()),
                Err(panic) => Some(panic_message(&panic)),
            };
            (message_id, failure)
        }
    });
    let mut failed = Vec::new();
    for (message_id, failure) in futures::future::join_all(outcomes).await {
        let Some(reason) = failure else { continue };
        tracing::error!(message_id = message_id.as_deref().unwrap_or(""), %reason, "record failed");
        // SQS always sets a message id; without one Lambda would fail the whole batch, which is
        // the safe outcome for a record we cannot name anyway.
        failed.push(message_id.unwrap_or_default());
    }
    failures(failed)
}

/// The response that has SQS redeliver exactly these messages.
pub fn failures(message_ids: impl IntoIterator<Item = String>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for id in message_ids {
        let mut item = BatchItemFailure::default();
        item.item_identifier = id;
        response.batch_item_failures.push(item);
    }
    response
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into());
    format!("handler panicked: {detail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(bodies: &[&str]) -> SqsEvent {
        let mut event = SqsEvent::default();
        event.records = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| {
                let mut message = SqsMessage::default();
                message.message_id = Some(format!("m{i}"));
                message.body = Some(body.to_string());
                message
            })
            .collect();
        event
    }

    #[tokio::test]
    async fn only_failed_and_panicking_records_are_reported() {
        let response = process_batch(event(&["ok", "fail", "panic", "ok"]), |m| async move {
            match m.body.as_deref() {
                Some("fail") => Err("bad record"),
                Some("panic") => panic!("boom"),
                _ => Ok(()),
            }
        })
        .await;
        let ids: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(ids, vec!["m1", "m2"]);
    }
}
