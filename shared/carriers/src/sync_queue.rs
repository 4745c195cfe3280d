//! The queue of carrier sync work: one message per provider to sync (from the schedule), and one
//! to go on with a run that ran out of time.

use async_trait::async_trait;
use cellbridge_bulk_changes::ports::QueueError;
use cellbridge_core::tenant::TenantId;
use serde::{Deserialize, Serialize};

/// Sync this provider (go on with its run, if one is under way).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncRequest {
    pub tenant: TenantId,
    pub service_provider_id: String,
    /// What to bring up to date; the inventory when left out.
    #[serde(default)]
    pub work: SyncWork,
}

/// The kinds of work a provider's sync does, each with its own run and lease, so the daily usage
/// collection and a first import's details (hours at Jasper) never hold the inventory listing up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SyncWork {
    /// The SIMs themselves: the carrier's listing against the inventory.
    #[default]
    Inventory,
    /// Yesterday's usage of every SIM.
    Usage,
    /// The details of the SIMs the listing showed new or changed, where it leaves some out.
    Details,
}

#[async_trait]
pub trait SyncQueue: Send + Sync {
    async fn enqueue(&self, requests: &[SyncRequest]) -> Result<(), QueueError>;
}

/// The sync queue in SQS.
pub struct SqsSyncQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsSyncQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }
}

#[async_trait]
impl SyncQueue for SqsSyncQueue {
    async fn enqueue(&self, requests: &[SyncRequest]) -> Result<(), QueueError> {
        cellbridge_bulk_changes::sqs::send_json_batches(
            &self.client,
            &self.url,
            requests,
            std::time::Duration::ZERO,
        )
        .await
    }
}

/// The sync queue in memory, for tests.
#[cfg(any(test, feature = "test-util"))]
#[derive(Default)]
pub struct MemorySyncQueue {
    sent: std::sync::Mutex<Vec<SyncRequest>>,
}

#[cfg(any(test, feature = "test-util"))]
impl MemorySyncQueue {
    /// Everything sent so far, taken out of the queue.
    pub fn drain(&self) -> Vec<SyncRequest> {
        std::mem::take(&mut *cellbridge_core::memory::locked(&self.sent))
    }
}

#[cfg(any(test, feature = "test-util"))]
#[async_trait]
impl SyncQueue for MemorySyncQueue {
    async fn enqueue(&self, requests: &[SyncRequest]) -> Result<(), QueueError> {
        cellbridge_core::memory::locked(&self.sent).extend_from_slice(requests);
        Ok(())
    }
}
