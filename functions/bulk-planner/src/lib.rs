//! Plan-queue consumer: expands a bulk change into its device changes and queues them for the
//! carrier worker. Safe under redelivery: existing device changes are never overwritten, a
//! planned bulk change is not planned again, and duplicate work messages are the worker's to
//! ignore.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use cellbridge::domain::{AuditEntry, BulkChange, BulkChangeStatus, DeviceChange, DeviceRequest, TenantId};
use cellbridge::lambda::sqs_batch::process_batch;
use cellbridge::messages::{PlanMessage, WorkMessage};
use cellbridge::ports::{BulkChangePorts, PayloadError, QueueError, StoreError};
use time::OffsetDateTime;

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
    Planned { devices: usize, newly_written: usize },
    AlreadyPlanned,
}

pub async fn handle(ports: &BulkChangePorts, event: SqsEvent) -> SqsBatchResponse {
    process_batch(event, |record: SqsMessage| async move {
        let message: PlanMessage = serde_json::from_str(record.body.as_deref().unwrap_or(""))
            .map_err(|e| PlanError::Malformed(e.to_string()))?;
        plan(ports, &message, OffsetDateTime::now_utc()).await.map(|_| ())
    })
    .await
}

pub async fn plan(ports: &BulkChangePorts, message: &PlanMessage, now: OffsetDateTime) -> Result<PlanOutcome, PlanError> {
    let span = tracing::info_span!("plan", tenant = %message.tenant_id, bulk_change_id = %message.bulk_change_id);
    let _entered = span.enter();
    let tenant = &message.tenant_id;
    let change = ports
        .store
        .get_bulk_change(tenant, &message.bulk_change_id)
        .await?
        .ok_or_else(|| PlanError::UnknownBulkChange(message.bulk_change_id.clone()))?;
    if change.status != BulkChangeStatus::New {
        tracing::info!(status = change.status.as_str(), "already planned; redelivery ignored");
        return Ok(PlanOutcome::AlreadyPlanned);
    }
    let devices = read_devices(ports, &change).await?;

    let mut newly_written = 0;
    for (chunk_index, chunk) in devices.chunks(CHUNK).enumerate() {
        let first_seq = chunk_index * CHUNK;
        let changes: Vec<DeviceChange> = chunk
            .iter()
            .enumerate()
            .map(|(i, request)| DeviceChange::pending(&change.bulk_change_id, (first_seq + i) as u32, request.clone(), now))
            .collect();
        newly_written += ports.store.insert_device_changes(tenant, &changes).await?;
        if change.process_changes {
            let work: Vec<WorkMessage> = changes.iter().map(|c| work_message(tenant, c)).collect();
            ports.queues.enqueue_work(&work).await?;
        }
    }

    let next = BulkChangeStatus::after_planning(change.process_changes);
    let moved = ports.store.transition(tenant, &change.bulk_change_id, BulkChangeStatus::New, next).await?;
    if moved {
        ports.store.append_audit(tenant, &planned_entry(&change, devices.len(), now)).await?;
    }
    tracing::info!(devices = devices.len(), newly_written, status = next.as_str(), "planned");
    Ok(PlanOutcome::Planned {
        devices: devices.len(),
        newly_written,
    })
}

async fn read_devices(ports: &BulkChangePorts, change: &BulkChange) -> Result<Vec<DeviceRequest>, PlanError> {
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

fn work_message(tenant: &TenantId, change: &DeviceChange) -> WorkMessage {
    WorkMessage {
        tenant_id: tenant.clone(),
        bulk_change_id: change.bulk_change_id.clone(),
        device_seq: change.seq,
        retry_number: 0,
        request_id: format!("{}:{}", change.bulk_change_id, change.seq),
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
        created_at: now,
    }
}
