//! Finishing device changes, and the bulk change once its last device change is done. Used by
//! the worker and by the carrier callback function, so both count the same way.

use crate::bulk_change::{AuditEntry, BulkChangeStatus};
use crate::ports::{BulkChangeStore, DeviceOutcome};
use cellbridge_core::store::StoreError;
use cellbridge_core::tenant::TenantId;
use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// This call finished the device change.
    Recorded,
    /// It was finished before (a duplicate delivery or callback); nothing counted twice.
    AlreadyFinished,
}

/// Records `outcome` for one device change and, when it was the last one pending, moves the
/// bulk change to `completed` or `completedWithErrors`.
pub async fn finish_device_change(
    store: &dyn BulkChangeStore,
    tenant: &TenantId,
    bulk_change_id: &str,
    seq: u32,
    outcome: &DeviceOutcome,
    processed_by: &str,
    now: OffsetDateTime,
) -> Result<Finished, StoreError> {
    if !store
        .finish_device_change(tenant, bulk_change_id, seq, outcome, now)
        .await?
    {
        return Ok(Finished::AlreadyFinished);
    }
    complete_if_done(store, tenant, bulk_change_id, processed_by, now).await?;
    Ok(Finished::Recorded)
}

/// The inventory change of device change `seq` once it succeeded, read from the store (for a
/// finisher that knows only where the device change is, as a carrier callback does).
pub async fn sim_change_of(
    store: &dyn BulkChangeStore,
    tenant: &TenantId,
    bulk_change_id: &str,
    seq: u32,
) -> Result<Option<cellbridge_sims::sim::SimChange>, StoreError> {
    let Some(change) = store.get_bulk_change(tenant, bulk_change_id).await? else {
        return Ok(None);
    };
    let devices = store
        .get_device_changes(tenant, bulk_change_id, seq..seq.saturating_add(1))
        .await?;
    Ok(devices
        .first()
        .and_then(|device| crate::inventory::sim_change(&change, &device.request)))
}

/// Moves a processing bulk change with nothing pending to its final status. Safe to call from
/// several finishers at once: the conditional transition lets exactly one through.
pub async fn complete_if_done(
    store: &dyn BulkChangeStore,
    tenant: &TenantId,
    bulk_change_id: &str,
    processed_by: &str,
    now: OffsetDateTime,
) -> Result<Option<BulkChangeStatus>, StoreError> {
    let Some(change) = store.get_bulk_change(tenant, bulk_change_id).await? else {
        return Ok(None);
    };
    if change.status != BulkChangeStatus::Processing || change.counts.pending() > 0 {
        return Ok(None);
    }
    let done = if change.counts.failed > 0 {
        BulkChangeStatus::CompletedWithErrors
    } else {
        BulkChangeStatus::Completed
    };
    if !store
        .transition(tenant, bulk_change_id, BulkChangeStatus::Processing, done)
        .await?
    {
        return Ok(None);
    }
    store
        .append_audit(
            tenant,
            &AuditEntry {
                bulk_change_id: bulk_change_id.to_owned(),
                device_seq: None,
                description: format!(
                    "{}: {} succeeded, {} failed",
                    done.as_str(),
                    change.counts.succeeded,
                    change.counts.failed
                ),
                processed_by: processed_by.to_owned(),
                request_text: None,
                response_text: None,
                has_errors: change.counts.failed > 0,
                http_status: None,
                duration_ms: None,
                created_at: now,
            },
        )
        .await?;
    tracing::info!(
        bulk_change_id,
        status = done.as_str(),
        succeeded = change.counts.succeeded,
        failed = change.counts.failed,
        "bulk change completed"
    );
    Ok(Some(done))
}
