//! Queue message bodies. Versioned by shape: fields are only ever added, with defaults.

use serde::{Deserialize, Serialize};

use cellbridge_core::tenant::TenantId;

/// Asks the planner to expand a bulk change into its device changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanMessage {
    pub tenant_id: TenantId,
    pub bulk_change_id: String,
}

/// One device change for the worker to carry out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkMessage {
    pub tenant_id: TenantId,
    pub bulk_change_id: String,
    pub device_seq: u32,
    #[serde(default)]
    pub retry_number: u32,
    /// Stable per device change, so a carrier sees retries of one request as one request.
    pub request_id: String,
    /// Device changes covered, from `device_seq` on: more than one for carriers that take a
    /// batch in one request (ThingSpace, Telegence activations).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub device_count: u32,
    /// Set when this message follows up a request the carrier accepted for later, instead of
    /// sending the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_request: Option<String>,
}

fn one() -> u32 {
    1
}

fn is_one(count: &u32) -> bool {
    *count == 1
}

impl WorkMessage {
    /// The first message for `device_count` device changes from `device_seq`.
    pub fn first(
        tenant_id: TenantId,
        bulk_change_id: &str,
        device_seq: u32,
        device_count: u32,
    ) -> Self {
        Self {
            tenant_id,
            bulk_change_id: bulk_change_id.to_owned(),
            device_seq,
            retry_number: 0,
            request_id: format!("{bulk_change_id}:{device_seq}"),
            device_count,
            check_request: None,
        }
    }

    /// The sequence numbers this message covers.
    pub fn seqs(&self) -> std::ops::Range<u32> {
        self.device_seq..self.device_seq.saturating_add(self.device_count.max(1))
    }
}

/// One work message per carrier request: a device each, or a batch where the carrier takes one.
pub fn work_for(change: &crate::bulk_change::BulkChange) -> Vec<WorkMessage> {
    let limit = crate::capabilities::batch_limit(change.carrier, &change.change).max(1);
    (0..change.counts.total)
        .step_by(limit as usize)
        .map(|first| {
            WorkMessage::first(
                change.tenant_id.clone(),
                &change.bulk_change_id,
                first,
                limit.min(change.counts.total - first),
            )
        })
        .collect()
}

/// How long until `change` takes effect (zero when it already has or has no effective date).
pub fn until_effective(
    change: &crate::bulk_change::BulkChange,
    now: time::OffsetDateTime,
) -> std::time::Duration {
    change
        .change
        .effective_date()
        .map(|at| at - now)
        .filter(|wait| wait.is_positive())
        .map_or(std::time::Duration::ZERO, |wait| {
            std::time::Duration::from_secs(wait.whole_seconds().unsigned_abs())
        })
}
