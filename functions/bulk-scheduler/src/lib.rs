//! Scheduled function: releases bulk changes whose effective date has come to the carriers.
//!
//! The planner holds a change whose effective date is further away than SQS can delay a message
//! (15 minutes); this function runs every few minutes and queues the work of every held change
//! that is due. Safe to run twice: a change is queued before it leaves `scheduled`, and the
//! worker's claims absorb work queued twice.

use cellbridge::bulk_changes::bulk_change::{AuditEntry, BulkChange, BulkChangeStatus};
use cellbridge::bulk_changes::completion;
use cellbridge::bulk_changes::messages::{until_effective, work_for};
use cellbridge::bulk_changes::ports::{BulkChangePorts, QueueError};
use cellbridge::common::store::StoreError;
use cellbridge::edge::lambda::metrics;
use cellbridge::edge::lambda::metrics::Unit;
use serde::Serialize;
use time::OffsetDateTime;

/// Bulk changes released per run; the next run takes the rest.
pub const RELEASES_PER_RUN: u32 = 100;
/// Released slightly early, so the work is on the queue (with its remaining delay) when due.
pub const LOOKAHEAD: time::Duration = time::Duration::minutes(10);
const PROCESSED_BY: &str = "bulk-scheduler";
const QUEUE_CHUNK: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Released {
    pub bulk_changes: u32,
    pub device_changes: u32,
}

pub async fn release_due(
    ports: &BulkChangePorts,
    now: OffsetDateTime,
) -> Result<Released, ReleaseError> {
    let due = ports
        .store
        .due_for_release(now + LOOKAHEAD, RELEASES_PER_RUN)
        .await?;
    let mut released = Released::default();
    for (tenant, id) in due {
        let Some(change) = ports.store.get_bulk_change(&tenant, &id).await? else {
            continue;
        };
        if change.status != BulkChangeStatus::Scheduled {
            continue;
        }
        release(ports, &change, now).await?;
        released.bulk_changes += 1;
        released.device_changes += change.counts.total;
    }
    if released.bulk_changes > 0 {
        tracing::info!(
            bulk_changes = released.bulk_changes,
            device_changes = released.device_changes,
            "released scheduled bulk changes"
        );
        metrics::emit(
            &[],
            &[(
                "BulkChangesReleased",
                f64::from(released.bulk_changes),
                Unit::Count,
            )],
        );
    }
    Ok(released)
}

async fn release(
    ports: &BulkChangePorts,
    change: &BulkChange,
    now: OffsetDateTime,
) -> Result<(), ReleaseError> {
    let tenant = &change.tenant_id;
    let wait = until_effective(change, now);
    for slice in work_for(change).chunks(QUEUE_CHUNK) {
        ports
            .queues
            .enqueue_work(change.carrier, slice, wait)
            .await?;
    }
    let moved = ports
        .store
        .transition(
            tenant,
            &change.bulk_change_id,
            BulkChangeStatus::Scheduled,
            BulkChangeStatus::Processing,
        )
        .await?;
    if moved {
        ports
            .store
            .append_audit(
                tenant,
                &AuditEntry {
                    bulk_change_id: change.bulk_change_id.clone(),
                    device_seq: None,
                    description: format!(
                        "released {} device change(s) to {} at their effective date",
                        change.counts.total,
                        change.carrier.as_str()
                    ),
                    processed_by: PROCESSED_BY.to_owned(),
                    request_text: None,
                    response_text: None,
                    has_errors: false,
                    http_status: None,
                    duration_ms: None,
                    created_at: now,
                },
            )
            .await?;
        completion::complete_if_done(
            ports.store.as_ref(),
            tenant,
            &change.bulk_change_id,
            PROCESSED_BY,
            now,
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::eventbridge::EventBridgeEvent;
    use cellbridge::bulk_changes::change::ChangeSpec;
    use cellbridge::bulk_changes::memory::MemoryPorts;
    use cellbridge::bulk_changes::messages::PlanMessage;
    use cellbridge::bulk_changes::ports::{BulkChangeStore, CreateOutcome};
    use cellbridge::common::tenant::TenantId;
    use cellbridge::testing::sample_bulk_change;

    const SCHEDULED_EVENT: &str = include_str!("../../../events/bulk-scheduler/scheduled.json");

    /// A bulk change effective `after` from now, stored and planned.
    async fn planned(memory: &MemoryPorts, id: &str, after: time::Duration) -> BulkChange {
        let (mut change, requests) = sample_bulk_change("demo", id, 3, true);
        change.change = ChangeSpec::CustomerRatePlanChange {
            customer_rate_plan_id: "CRP-20".into(),
            data_allocation_mb: Some(1024),
            pool_id: None,
            effective_date: Some(OffsetDateTime::now_utc() + after),
        };
        let ports = memory.ports();
        assert_eq!(
            ports.store.create_bulk_change(&change, None).await.unwrap(),
            CreateOutcome::Created
        );
        ports
            .payloads
            .put(&change.payload_key, serde_json::to_vec(&requests).unwrap())
            .await
            .unwrap();
        let message = PlanMessage {
            tenant_id: change.tenant_id.clone(),
            bulk_change_id: id.to_owned(),
        };
        bulk_planner::plan(&ports, &message, OffsetDateTime::now_utc())
            .await
            .unwrap();
        change
    }

    async fn status(memory: &MemoryPorts, id: &str) -> BulkChangeStatus {
        let tenant = TenantId::parse("demo").unwrap();
        memory
            .store
            .get_bulk_change(&tenant, id)
            .await
            .unwrap()
            .map(|c| c.status)
            .unwrap()
    }

    #[tokio::test]
    async fn a_change_effective_later_is_held_then_released_once_when_due() {
        let _: EventBridgeEvent = serde_json::from_str(SCHEDULED_EVENT).expect("sample event");
        let memory = MemoryPorts::default();
        planned(&memory, "later-1", time::Duration::days(2)).await;
        planned(&memory, "soon-1", time::Duration::minutes(5)).await;
        // Within SQS's delay: queued at once, delayed until due.
        assert_eq!(
            status(&memory, "soon-1").await,
            BulkChangeStatus::Processing
        );
        let queued = memory.queues.drain_work();
        assert_eq!(queued.len(), 3);
        assert!(queued
            .iter()
            .all(|w| w.delay > std::time::Duration::from_secs(240)));
        // Beyond it: held, nothing queued.
        assert_eq!(
            status(&memory, "later-1").await,
            BulkChangeStatus::Scheduled
        );

        let ports = memory.ports();
        let now = OffsetDateTime::now_utc();
        assert_eq!(release_due(&ports, now).await.unwrap(), Released::default());
        assert!(memory.queues.work().is_empty());

        let due = now + time::Duration::days(2);
        let released = release_due(&ports, due).await.unwrap();
        assert_eq!(
            released,
            Released {
                bulk_changes: 1,
                device_changes: 3
            }
        );
        assert_eq!(memory.queues.work().len(), 3);
        assert_eq!(
            status(&memory, "later-1").await,
            BulkChangeStatus::Processing
        );
        // A second run finds nothing left to release.
        assert_eq!(release_due(&ports, due).await.unwrap(), Released::default());
        assert_eq!(memory.queues.work().len(), 3);
    }
}
