//! Plan-queue consumer: expands a bulk change into its device changes and queues them for the
//! carrier worker. Safe under redelivery: existing device changes are never overwritten, a
//! planned bulk change is not planned again, and duplicate work messages are the worker's to
//! ignore.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use cellbridge_bulk_changes::bulk_change::{
    AuditEntry, BulkChange, BulkChangeStatus, DeviceChange,
};
use cellbridge_bulk_changes::change::DeviceRequest;
use cellbridge_bulk_changes::messages::{until_effective, work_for, PlanMessage};
use cellbridge_bulk_changes::ports::{BulkChangePorts, PayloadError, QueueError};
use cellbridge_carriers::retry::MAX_QUEUE_DELAY;
use cellbridge_core::store::StoreError;
use cellbridge_edge::lambda::metrics;
use cellbridge_edge::lambda::metrics::Unit;
use cellbridge_edge::lambda::sqs_batch::process_batch;
use time::OffsetDateTime;
use tracing::Instrument;

/// This function's configuration, read once at cold start: where bulk changes are stored, queued and kept.
pub type Config = cellbridge_bulk_changes::wiring::BulkChangeConfig;

/// Device changes written and queued per step; bounds memory and keeps progress visible.
const CHUNK: usize = 500;
const PROCESSED_BY: &str = "bulk-planner";

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("message body is not a plan message: {0}")]
    Malformed(String),
    #[error("bulk change {0} does not exist")]
    UnknownBulkChange(String),
    #[error("stored device list has {found} devices, the bulk change {expected}")]
    PayloadMismatch { expected: u32, found: usize },
    #[error("stored device list is unreadable: {0}")]
    PayloadUnreadable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Payload(#[from] PayloadError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanOutcome {
    Planned {
        devices: usize,
        newly_written: usize,
    },
    AlreadyPlanned,
}

pub async fn handle(ports: &BulkChangePorts, event: SqsEvent) -> SqsBatchResponse {
    process_batch(event, |record: SqsMessage| async move {
        let message: PlanMessage = serde_json::from_str(record.body.as_deref().unwrap_or(""))
            .map_err(|e| PlanError::Malformed(e.to_string()))?;
        plan(ports, &message, OffsetDateTime::now_utc())
            .await
            .map(|_| ())
    })
    .await
}

pub async fn plan(
    ports: &BulkChangePorts,
    message: &PlanMessage,
    now: OffsetDateTime,
) -> Result<PlanOutcome, PlanError> {
    let span = tracing::info_span!("plan", tenant = %message.tenant_id, bulk_change_id = %message.bulk_change_id);
    async {
    let started = std::time::Instant::now();
    let tenant = &message.tenant_id;
    let change = ports
        .store
        .get_bulk_change(tenant, &message.bulk_change_id)
        .await?
        .ok_or_else(|| PlanError::UnknownBulkChange(message.bulk_change_id.clone()))?;
    if change.status != BulkChangeStatus::New {
        tracing::info!(
            status = change.status.as_str(),
            "already planned; redelivery ignored"
        );
        return Ok(PlanOutcome::AlreadyPlanned);
    }
    let devices = read_devices(ports, &change).await?;

    let mut newly_written = 0;
    for (chunk_index, chunk) in devices.chunks(CHUNK).enumerate() {
        let first_seq = chunk_index * CHUNK;
        let changes: Vec<DeviceChange> = chunk
            .iter()
            .enumerate()
            .map(|(i, request)| {
                DeviceChange::pending(
                    &change.bulk_change_id,
                    (first_seq + i) as u32,
                    request.clone(),
                    now,
                )
            })
            .collect();
        newly_written += ports.store.insert_device_changes(tenant, &changes).await?;
    }
    let wait = until_effective(&change, now);
    // Beyond SQS's longest delay the scheduler releases the work when it is due.
    if change.process_changes && wait > MAX_QUEUE_DELAY {
        let release_at = now + wait;
        if ports
            .store
            .schedule(tenant, &change.bulk_change_id, release_at)
            .await?
        {
            ports
                .store
                .append_audit(tenant, &scheduled_entry(&change, release_at, now))
                .await?;
        }
        tracing::info!(devices = devices.len(), newly_written, %release_at, "planned and scheduled");
        return Ok(PlanOutcome::Planned {
            devices: devices.len(),
            newly_written,
        });
    }
    if change.process_changes {
        for slice in work_for(&change).chunks(CHUNK) {
            ports
                .queues
                .enqueue_work(change.carrier, slice, wait)
                .await?;
        }
    }

    let next = BulkChangeStatus::after_planning(change.process_changes);
    let moved = ports
        .store
        .transition(tenant, &change.bulk_change_id, BulkChangeStatus::New, next)
        .await?;
    if moved {
        ports
            .store
            .append_audit(tenant, &planned_entry(&change, devices.len(), now))
            .await?;
        // Workers may have finished every device change before the move to processing, when no
        // finisher could complete the bulk change yet.
        cellbridge_bulk_changes::completion::complete_if_done(
            ports.store.as_ref(),
            tenant,
            &change.bulk_change_id,
            PROCESSED_BY,
            now,
        )
        .await?;
    }
    tracing::info!(
        devices = devices.len(),
        newly_written,
        status = next.as_str(),
        "planned"
    );
    metrics::emit(
        &[("Carrier", change.carrier.as_str())],
        &[
            ("DeviceChangesPlanned", newly_written as f64, Unit::Count),
            (
                "PlanMilliseconds",
                started.elapsed().as_secs_f64() * 1000.0,
                Unit::Milliseconds,
            ),
        ],
    );
    Ok(PlanOutcome::Planned {
        devices: devices.len(),
        newly_written,
    })
    }
    .instrument(span)
    .await
}

async fn read_devices(
    ports: &BulkChangePorts,
    change: &BulkChange,
) -> Result<Vec<DeviceRequest>, PlanError> {
    let body = ports.payloads.get(&change.payload_key).await?;
    let devices: Vec<DeviceRequest> =
        serde_json::from_slice(&body).map_err(|e| PlanError::PayloadUnreadable(e.to_string()))?;
    if devices.len() != change.counts.total as usize {
        return Err(PlanError::PayloadMismatch {
            expected: change.counts.total,
            found: devices.len(),
        });
    }
    Ok(devices)
}

fn scheduled_entry(
    change: &BulkChange,
    release_at: OffsetDateTime,
    now: OffsetDateTime,
) -> AuditEntry {
    AuditEntry {
        bulk_change_id: change.bulk_change_id.clone(),
        device_seq: None,
        description: format!(
            "planned {} device change(s), held until {}",
            change.counts.total,
            cellbridge_core::clock::rfc3339(release_at)
        ),
        processed_by: PROCESSED_BY.to_owned(),
        request_text: None,
        response_text: None,
        has_errors: false,
        http_status: None,
        duration_ms: None,
        created_at: now,
    }
}

fn planned_entry(change: &BulkChange, devices: usize, now: OffsetDateTime) -> AuditEntry {
    let what = if change.process_changes {
        "queued for the carrier"
    } else {
        "recorded without carrier calls"
    };
    AuditEntry {
        bulk_change_id: change.bulk_change_id.clone(),
        device_seq: None,
        description: format!("planned {devices} device change(s), {what}"),
        processed_by: PROCESSED_BY.to_owned(),
        request_text: None,
        response_text: None,
        has_errors: false,
        http_status: None,
        duration_ms: None,
        created_at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellbridge_bulk_changes::memory::MemoryPorts;
    use cellbridge_bulk_changes::ports::{BulkChangeStore, CreateOutcome, PayloadStore};
    use cellbridge_bulk_changes::testing::sample_bulk_change;
    use cellbridge_core::store::PageRequest;
    use cellbridge_core::tenant::TenantId;

    const PLAN_EVENT: &str = include_str!("../../../events/bulk-planner/plan.json");
    const POISON_EVENT: &str = include_str!("../../../events/bulk-planner/plan-with-poison.json");
    /// The bulk change the sample events name.
    const SAMPLE_ID: &str = "019aa8e4-6f2a-7c3d-9b1e-2f4a5c6d7e80";

    fn tenant() -> TenantId {
        TenantId::parse("demo").unwrap()
    }

    /// Stores a bulk change of `devices` devices the way the intake function leaves it.
    async fn seed(
        memory: &MemoryPorts,
        id: &str,
        devices: u32,
        process_changes: bool,
    ) -> BulkChange {
        let (change, requests) = sample_bulk_change("demo", id, devices, process_changes);
        assert_eq!(
            memory
                .store
                .create_bulk_change(&change, None)
                .await
                .unwrap(),
            CreateOutcome::Created
        );
        memory
            .payloads
            .put(&change.payload_key, serde_json::to_vec(&requests).unwrap())
            .await
            .unwrap();
        change
    }

    async fn stored_status(memory: &MemoryPorts) -> BulkChangeStatus {
        let stored = memory.store.get_bulk_change(&tenant(), SAMPLE_ID).await;
        stored
            .ok()
            .flatten()
            .map(|c| c.status)
            .expect("the sample bulk change is stored")
    }

    async fn plan_sample(memory: &MemoryPorts) -> Result<PlanOutcome, PlanError> {
        plan(
            &memory.ports(),
            &message(SAMPLE_ID),
            OffsetDateTime::now_utc(),
        )
        .await
    }

    fn message(id: &str) -> PlanMessage {
        PlanMessage {
            tenant_id: tenant(),
            bulk_change_id: id.to_owned(),
        }
    }

    #[tokio::test]
    async fn planning_writes_every_device_change_and_queues_it_once() {
        let memory = MemoryPorts::default();
        seed(&memory, SAMPLE_ID, 1_234, true).await;
        let outcome = plan_sample(&memory).await.unwrap();
        assert_eq!(
            outcome,
            PlanOutcome::Planned {
                devices: 1_234,
                newly_written: 1_234
            }
        );
        assert_eq!(memory.store.device_change_count(), 1_234);
        let work = memory.queues.work();
        assert_eq!(work.len(), 1_234);
        let mut seqs: Vec<u32> = work.iter().map(|w| w.device_seq).collect();
        seqs.dedup();
        assert_eq!(seqs, (0..1_234).collect::<Vec<_>>());
        assert_eq!(stored_status(&memory).await, BulkChangeStatus::Processing);
        let audit = memory.store.list_audit(&tenant(), SAMPLE_ID).await.unwrap();
        assert_eq!(audit.len(), 1);
        assert_eq!(audit[0].processed_by, "bulk-planner");
    }

    #[tokio::test]
    async fn a_redelivered_plan_changes_nothing() {
        let memory = MemoryPorts::default();
        seed(&memory, SAMPLE_ID, 20, true).await;
        plan_sample(&memory).await.unwrap();
        let again = plan_sample(&memory).await.unwrap();
        assert_eq!(again, PlanOutcome::AlreadyPlanned);
        assert_eq!(memory.queues.work().len(), 20);
        assert_eq!(memory.store.device_change_count(), 20);
    }

    #[tokio::test]
    async fn a_plan_interrupted_midway_completes_without_overwriting() {
        let memory = MemoryPorts::default();
        let change = seed(&memory, SAMPLE_ID, 30, true).await;
        // A first delivery that died after writing ten device changes, one of them already done.
        let devices: Vec<DeviceRequest> =
            serde_json::from_slice(&memory.payloads.get(&change.payload_key).await.unwrap())
                .unwrap();
        let mut early: Vec<DeviceChange> = devices[..10]
            .iter()
            .enumerate()
            .map(|(i, d)| {
                DeviceChange::pending(SAMPLE_ID, i as u32, d.clone(), OffsetDateTime::now_utc())
            })
            .collect();
        early[3].status = cellbridge_bulk_changes::bulk_change::DeviceChangeStatus::Succeeded;
        memory
            .store
            .insert_device_changes(&tenant(), &early)
            .await
            .unwrap();

        let outcome = plan_sample(&memory).await.unwrap();
        assert_eq!(
            outcome,
            PlanOutcome::Planned {
                devices: 30,
                newly_written: 20
            }
        );
        let page = memory
            .store
            .list_device_changes(
                &tenant(),
                SAMPLE_ID,
                &PageRequest {
                    limit: 100,
                    cursor: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(page.items.len(), 30);
        assert_eq!(
            page.items[3].status,
            cellbridge_bulk_changes::bulk_change::DeviceChangeStatus::Succeeded
        );
    }

    #[tokio::test]
    async fn record_only_bulk_changes_are_planned_without_work() {
        let memory = MemoryPorts::default();
        seed(&memory, SAMPLE_ID, 5, false).await;
        plan_sample(&memory).await.unwrap();
        assert!(memory.queues.work().is_empty());
        assert_eq!(memory.store.device_change_count(), 5);
        assert_eq!(stored_status(&memory).await, BulkChangeStatus::Recorded);
    }

    #[tokio::test]
    async fn the_sample_event_plans_its_bulk_change() {
        let memory = MemoryPorts::default();
        seed(&memory, SAMPLE_ID, 3, true).await;
        let event: SqsEvent = serde_json::from_str(PLAN_EVENT).unwrap();
        let response = handle(&memory.ports(), event).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(memory.queues.work().len(), 3);
    }

    #[tokio::test]
    async fn a_poison_message_fails_alone() {
        let memory = MemoryPorts::default();
        seed(&memory, SAMPLE_ID, 3, true).await;
        let event: SqsEvent = serde_json::from_str(POISON_EVENT).unwrap();
        let response = handle(&memory.ports(), event).await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, vec!["9d2b7c1e-0000-4000-8000-000000000001"]);
        assert_eq!(memory.queues.work().len(), 3);
    }

    #[tokio::test]
    async fn a_plan_for_an_unknown_bulk_change_fails_for_the_dead_letter_queue() {
        let memory = MemoryPorts::default();
        let error = plan_sample(&memory).await.unwrap_err();
        assert!(matches!(error, PlanError::UnknownBulkChange(_)));
    }
}
