//! Scheduled function: releases bulk changes whose effective date has come to the carriers, and
//! recovers bulk changes whose intake stopped after they were stored.
//!
//! The planner holds a change whose effective date is further away than SQS can delay a message
//! (15 minutes); this function runs every few minutes and queues the work of every held change
//! that is due. Safe to run twice: a change is queued before it leaves `scheduled`, and the
//! worker's claims absorb work queued twice.

use cellbridge_bulk_changes::bulk_change::{AuditEntry, BulkChange, BulkChangeStatus};
use cellbridge_bulk_changes::completion;
use cellbridge_bulk_changes::messages::PlanMessage;
use cellbridge_bulk_changes::messages::{until_effective, work_for};
use cellbridge_bulk_changes::ports::{BulkChangePorts, PayloadError, QueueError};
use cellbridge_bulk_changes::stalled_intake::{self, Recovery};
use cellbridge_core::store::StoreError;
use cellbridge_edge::lambda::metrics;
use cellbridge_edge::lambda::metrics::Unit;
use serde::Serialize;
use time::OffsetDateTime;

/// This function's configuration, read once at cold start: where bulk changes are stored, queued and kept.
pub type Config = cellbridge_bulk_changes::wiring::BulkChangeConfig;

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
    #[error(transparent)]
    Payload(#[from] PayloadError),
}

/// What one run did.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SchedulerRun {
    pub released: Released,
    pub stalled_intake: StalledIntake,
}

/// Bulk changes found still `new` past their intake deadline.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StalledIntake {
    /// Planning message queued again.
    pub replanned: u32,
    /// Given up on: now `failed`, with the reason.
    pub failed: u32,
}

/// One scheduled run: releases what is due, then recovers stalled intakes.
pub async fn run(
    ports: &BulkChangePorts,
    now: OffsetDateTime,
) -> Result<SchedulerRun, ReleaseError> {
    Ok(SchedulerRun {
        released: release_due(ports, now).await?,
        stalled_intake: recover_stalled_intake(ports, now).await?,
    })
}

/// Re-plans (or fails, with a reason) every bulk change still `new` past its intake deadline.
/// Safe to run twice: planning is idempotent, and both writes apply only while the change is new.
pub async fn recover_stalled_intake(
    ports: &BulkChangePorts,
    now: OffsetDateTime,
) -> Result<StalledIntake, ReleaseError> {
    let overdue = ports.store.intake_overdue(now, RELEASES_PER_RUN).await?;
    let mut swept = StalledIntake::default();
    for (tenant, id) in overdue {
        let Some(change) = ports.store.get_bulk_change(&tenant, &id).await? else {
            continue;
        };
        if change.status != BulkChangeStatus::New {
            continue;
        }
        let device_list_stored = match ports.payloads.get(&change.payload_key).await {
            Ok(_) => true,
            Err(PayloadError::Missing(_)) => false,
            Err(error) => return Err(error.into()),
        };
        match stalled_intake::recover(&change, device_list_stored, now) {
            Recovery::Replan { next_check } => {
                ports
                    .queues
                    .enqueue_plan(&PlanMessage {
                        tenant_id: tenant.clone(),
                        bulk_change_id: id.clone(),
                    })
                    .await?;
                if ports.store.extend_intake(&tenant, &id, next_check).await? {
                    tracing::warn!(tenant = %tenant, bulk_change_id = %id, "bulk change still new past its intake deadline; planning queued again");
                    swept.replanned += 1;
                }
            }
            Recovery::Fail { reason } => {
                if ports.store.fail_intake(&tenant, &id, &reason, now).await? {
                    tracing::warn!(tenant = %tenant, bulk_change_id = %id, reason = %reason, "bulk change failed: its intake never finished");
                    ports
                        .store
                        .append_audit(
                            &tenant,
                            &AuditEntry {
                                bulk_change_id: id.clone(),
                                device_seq: None,
                                description: format!("failed: {reason}"),
                                processed_by: PROCESSED_BY.to_owned(),
                                request_text: None,
                                response_text: None,
                                has_errors: true,
                                http_status: None,
                                duration_ms: None,
                                created_at: now,
                            },
                        )
                        .await?;
                    swept.failed += 1;
                }
            }
        }
    }
    if swept != StalledIntake::default() {
        metrics::emit(
            &[],
            &[
                (
                    "StalledIntakeReplanned",
                    f64::from(swept.replanned),
                    Unit::Count,
                ),
                ("StalledIntakeFailed", f64::from(swept.failed), Unit::Count),
            ],
        );
    }
    Ok(swept)
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
    use cellbridge_bulk_changes::change::ChangeSpec;
    use cellbridge_bulk_changes::memory::MemoryPorts;
    use cellbridge_bulk_changes::messages::PlanMessage;
    use cellbridge_bulk_changes::ports::{BulkChangeStore, CreateOutcome};
    use cellbridge_bulk_changes::testing::sample_bulk_change;
    use cellbridge_core::tenant::TenantId;

    const SCHEDULED_EVENT: &str = include_str!("../../../events/bulk-scheduler/scheduled.json");

    /// A bulk change effective `after` from `now`, stored and planned at `now`.
    async fn planned(
        memory: &MemoryPorts,
        id: &str,
        now: OffsetDateTime,
        after: time::Duration,
    ) -> BulkChange {
        let (mut change, requests) = sample_bulk_change("demo", id, 3, true);
        change.change = ChangeSpec::CustomerRatePlanChange {
            customer_rate_plan_id: "CRP-20".into(),
            data_allocation_mb: Some(1024),
            pool_id: None,
            effective_date: Some(now + after),
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
        bulk_planner::plan(&ports, &message, now).await.unwrap();
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
        // One instant throughout: the delays checked below do not depend on how fast this runs.
        let now = OffsetDateTime::now_utc();
        planned(&memory, "later-1", now, time::Duration::days(2)).await;
        planned(&memory, "soon-1", now, time::Duration::minutes(5)).await;
        // Within SQS's delay: queued at once, delayed until due.
        assert_eq!(
            status(&memory, "soon-1").await,
            BulkChangeStatus::Processing
        );
        let queued = memory.queues.drain_work();
        assert_eq!(queued.len(), 3);
        assert!(queued
            .iter()
            .all(|w| w.delay == std::time::Duration::from_secs(300)));
        // Beyond it: held, nothing queued.
        assert_eq!(
            status(&memory, "later-1").await,
            BulkChangeStatus::Scheduled
        );

        let ports = memory.ports();
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

    /// A bulk change stored as intake stores it; `with_device_list` says whether intake got as
    /// far as writing the device list.
    async fn stored_new(memory: &MemoryPorts, id: &str, with_device_list: bool) -> BulkChange {
        let (change, requests) = sample_bulk_change("demo", id, 3, true);
        let ports = memory.ports();
        ports.store.create_bulk_change(&change, None).await.unwrap();
        if with_device_list {
            ports
                .payloads
                .put(&change.payload_key, serde_json::to_vec(&requests).unwrap())
                .await
                .unwrap();
        }
        change
    }

    #[tokio::test]
    async fn a_stalled_intake_is_replanned_and_one_without_its_device_list_fails_with_a_reason() {
        let memory = MemoryPorts::default();
        let ports = memory.ports();
        let stalled = stored_new(&memory, "stalled-1", true).await;
        let lost = stored_new(&memory, "lost-1", false).await;
        // Both past their deadlines at `late`, neither before `early`.
        let created = stalled.created_at.max(lost.created_at);

        // Before the deadline nothing is touched.
        let early = run(
            &ports,
            stalled.created_at.min(lost.created_at) + stalled_intake::INTAKE_TIMEOUT
                - time::Duration::seconds(1),
        )
        .await
        .unwrap();
        assert_eq!(early.stalled_intake, StalledIntake::default());
        assert!(memory.queues.plans().is_empty());

        let late = created + stalled_intake::INTAKE_TIMEOUT;
        let swept = run(&ports, late).await.unwrap().stalled_intake;
        assert_eq!(
            swept,
            StalledIntake {
                replanned: 1,
                failed: 1
            }
        );
        let plans = memory.queues.plans();
        assert_eq!(plans.len(), 1);
        assert_eq!(plans[0].bulk_change_id, "stalled-1");
        assert_eq!(status(&memory, "stalled-1").await, BulkChangeStatus::New);

        let tenant = TenantId::parse("demo").unwrap();
        let lost = memory
            .store
            .get_bulk_change(&tenant, "lost-1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(lost.status, BulkChangeStatus::Failed);
        assert_eq!((lost.counts.failed, lost.counts.pending()), (3, 0));
        assert!(lost
            .failure_reason
            .as_deref()
            .is_some_and(|r| r.contains("device list was never stored")));
        let audit = memory.store.list_audit(&tenant, "lost-1").await.unwrap();
        assert!(audit
            .iter()
            .any(|e| e.has_errors && e.description.starts_with("failed:")));

        // The re-plan moved the deadline: the same run again does nothing.
        assert_eq!(
            run(&ports, late).await.unwrap().stalled_intake,
            StalledIntake::default()
        );
        assert_eq!(memory.queues.plans().len(), 1);

        // The planner takes the queued message: the change leaves `new` and the sweep forgets it.
        bulk_planner::plan(&ports, &plans[0], late).await.unwrap();
        assert_eq!(
            status(&memory, "stalled-1").await,
            BulkChangeStatus::Processing
        );
        let much_later = created + stalled_intake::INTAKE_GIVE_UP * 2;
        assert_eq!(
            run(&ports, much_later).await.unwrap().stalled_intake,
            StalledIntake::default()
        );
    }

    #[tokio::test]
    async fn planning_that_never_succeeds_fails_the_bulk_change_after_the_give_up_age() {
        let memory = MemoryPorts::default();
        let ports = memory.ports();
        let change = stored_new(&memory, "stuck-1", true).await;
        let mut now = change.created_at + stalled_intake::INTAKE_TIMEOUT;
        let mut replans = 0;
        loop {
            let swept = run(&ports, now).await.unwrap().stalled_intake;
            replans += swept.replanned;
            if swept.failed == 1 {
                break;
            }
            assert!(replans < 20, "the sweep gave up");
            now += stalled_intake::INTAKE_TIMEOUT;
        }
        assert_eq!(memory.queues.plans().len(), replans as usize);
        assert!(
            replans >= 7,
            "re-planned every deadline until the give-up age"
        );
        let tenant = TenantId::parse("demo").unwrap();
        let failed = memory
            .store
            .get_bulk_change(&tenant, "stuck-1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(failed.status, BulkChangeStatus::Failed);
        assert!(failed
            .failure_reason
            .as_deref()
            .is_some_and(|r| r.contains("planning did not finish")));
    }
}
