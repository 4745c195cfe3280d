//! In-memory ports for unit tests of handlers: same contracts as the AWS adapters, no network.

use crate::bulk_change::{
    AuditEntry, AuditRecord, BulkChange, BulkChangeStatus, DeviceChange, DeviceChangeStatus,
};
use crate::change::Carrier;
use crate::messages::{PlanMessage, WorkMessage};
use crate::ports::*;
use async_trait::async_trait;
use cellbridge_core::cursor;
use cellbridge_core::cursor::{AfterId, AfterSeq};
use cellbridge_core::memory::{locked, page_of};
use cellbridge_core::store::*;
use cellbridge_core::tenant::TenantId;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use time::OffsetDateTime;

/// (tenant, bulk change, unit of work).
type WorkUnit = (TenantId, String, String);

#[derive(Default)]
pub struct MemoryStore {
    bulk_changes: Mutex<BTreeMap<(TenantId, String), BulkChange>>,
    claims: Mutex<HashMap<(TenantId, String), (String, String)>>,
    device_changes: Mutex<BTreeMap<(TenantId, String, u32), DeviceChange>>,
    /// In the order written, which is also the order of their ids (UUIDv7).
    audit: Mutex<Vec<(TenantId, AuditRecord)>>,
    /// (tenant, bulk change, unit) to (retry claimed, lease end).
    work_claims: Mutex<HashMap<WorkUnit, (u32, OffsetDateTime)>>,
    submitted: Mutex<HashMap<(String, String), SubmittedRef>>,
    releases: Mutex<HashMap<(TenantId, String), OffsetDateTime>>,
    /// Intake deadlines of new bulk changes.
    intake_deadlines: Mutex<HashMap<(TenantId, String), OffsetDateTime>>,
    /// The inventory the outcomes' SIM changes go to.
    pub sims: std::sync::Arc<cellbridge_sims::memory::MemorySims>,
}

impl MemoryStore {
    /// Bulk changes still in `status` whose time in `deadlines` is at or before `now`, oldest
    /// first: what the DynamoDB store reads from one bucket of its release index.
    fn due(
        &self,
        deadlines: &Mutex<HashMap<(TenantId, String), OffsetDateTime>>,
        status: BulkChangeStatus,
        now: OffsetDateTime,
        limit: u32,
    ) -> Vec<(TenantId, String)> {
        let changes = locked(&self.bulk_changes);
        let mut due: Vec<((TenantId, String), OffsetDateTime)> = locked(deadlines)
            .iter()
            .filter(|(key, at)| **at <= now && changes.get(key).is_some_and(|c| c.status == status))
            .map(|(key, at)| (key.clone(), *at))
            .collect();
        due.sort_by_key(|(_, at)| *at);
        due.into_iter()
            .take(limit as usize)
            .map(|(key, _)| key)
            .collect()
    }

    pub fn bulk_change_count(&self) -> usize {
        locked(&self.bulk_changes).len()
    }

    pub fn device_change_count(&self) -> usize {
        locked(&self.device_changes).len()
    }
}

#[async_trait]
impl BulkChangeStore for MemoryStore {
    async fn create_bulk_change(
        &self,
        change: &BulkChange,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<CreateOutcome, StoreError> {
        let mut claims = locked(&self.claims);
        if let Some(claim) = claim {
            let key = (change.tenant_id.clone(), claim.key.clone());
            if let Some((id, digest)) = claims.get(&key) {
                let existing = locked(&self.bulk_changes)
                    .get(&(change.tenant_id.clone(), id.clone()))
                    .cloned()
                    .ok_or_else(|| StoreError::Corrupt("claim without bulk change".into()))?;
                return Ok(CreateOutcome::Replayed {
                    existing: Box::new(existing),
                    same_request: *digest == claim.request_digest,
                });
            }
            claims.insert(
                key,
                (change.bulk_change_id.clone(), claim.request_digest.clone()),
            );
        }
        let key = (change.tenant_id.clone(), change.bulk_change_id.clone());
        if change.status == BulkChangeStatus::New {
            locked(&self.intake_deadlines).insert(
                key.clone(),
                change.created_at + crate::stalled_intake::INTAKE_TIMEOUT,
            );
        }
        locked(&self.bulk_changes).insert(key, change.clone());
        Ok(CreateOutcome::Created)
    }

    async fn get_bulk_change(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<BulkChange>, StoreError> {
        Ok(locked(&self.bulk_changes)
            .get(&(tenant.clone(), id.to_owned()))
            .cloned())
    }

    async fn list_bulk_changes(
        &self,
        tenant: &TenantId,
        status: Option<BulkChangeStatus>,
        page: &PageRequest,
    ) -> Result<Page<BulkChange>, StoreError> {
        let after = page
            .cursor
            .as_deref()
            .map(cursor::decode_after_id)
            .transpose()?;
        let all = locked(&self.bulk_changes);
        let mut matching = all
            .values()
            .rev()
            .filter(|c| &c.tenant_id == tenant && status.is_none_or(|s| c.status == s))
            .filter(|c| after.as_ref().is_none_or(|a| c.bulk_change_id < a.after));
        let items: Vec<BulkChange> = matching
            .by_ref()
            .take(page.limit as usize)
            .cloned()
            .collect();
        let next_cursor = (matching.next().is_some())
            .then(|| {
                items.last().map(|c| {
                    cursor::encode(&AfterId {
                        after: c.bulk_change_id.clone(),
                    })
                })
            })
            .flatten();
        Ok(Page { items, next_cursor })
    }

    async fn transition(
        &self,
        tenant: &TenantId,
        id: &str,
        from: BulkChangeStatus,
        to: BulkChangeStatus,
    ) -> Result<bool, StoreError> {
        let mut all = locked(&self.bulk_changes);
        match all.get_mut(&(tenant.clone(), id.to_owned())) {
            Some(change) if change.status == from => {
                change.status = to;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn insert_device_changes(
        &self,
        tenant: &TenantId,
        changes: &[DeviceChange],
    ) -> Result<usize, StoreError> {
        let mut all = locked(&self.device_changes);
        let mut new = 0;
        for change in changes {
            let key = (tenant.clone(), change.bulk_change_id.clone(), change.seq);
            if let std::collections::btree_map::Entry::Vacant(slot) = all.entry(key) {
                slot.insert(change.clone());
                new += 1;
            }
        }
        Ok(new)
    }

    async fn list_device_changes(
        &self,
        tenant: &TenantId,
        bulk_change_id: &str,
        page: &PageRequest,
    ) -> Result<Page<DeviceChange>, StoreError> {
        let after = page
            .cursor
            .as_deref()
            .map(cursor::decode::<AfterSeq>)
            .transpose()?;
        let start = after.map_or(0, |a| a.after + 1);
        let all = locked(&self.device_changes);
        let mut matching = all
            .range(
                (tenant.clone(), bulk_change_id.to_owned(), start)
                    ..=(tenant.clone(), bulk_change_id.to_owned(), u32::MAX),
            )
            .map(|(_, change)| change);
        let items: Vec<DeviceChange> = matching
            .by_ref()
            .take(page.limit as usize)
            .cloned()
            .collect();
        let next_cursor = (matching.next().is_some())
            .then(|| {
                items
                    .last()
                    .map(|c| cursor::encode(&AfterSeq { after: c.seq }))
            })
            .flatten();
        Ok(Page { items, next_cursor })
    }

    async fn schedule(
        &self,
        tenant: &TenantId,
        id: &str,
        release_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let moved = self
            .transition(
                tenant,
                id,
                BulkChangeStatus::New,
                BulkChangeStatus::Scheduled,
            )
            .await?;
        if moved {
            locked(&self.releases).insert((tenant.clone(), id.to_owned()), release_at);
        }
        Ok(moved)
    }

    async fn intake_overdue(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<(TenantId, String)>, StoreError> {
        Ok(self.due(&self.intake_deadlines, BulkChangeStatus::New, now, limit))
    }

    async fn extend_intake(
        &self,
        tenant: &TenantId,
        id: &str,
        next_check: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let key = (tenant.clone(), id.to_owned());
        let still_new = locked(&self.bulk_changes)
            .get(&key)
            .is_some_and(|c| c.status == BulkChangeStatus::New);
        if still_new {
            locked(&self.intake_deadlines).insert(key, next_check);
        }
        Ok(still_new)
    }

    async fn fail_intake(
        &self,
        tenant: &TenantId,
        id: &str,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let key = (tenant.clone(), id.to_owned());
        let mut all = locked(&self.bulk_changes);
        match all.get_mut(&key) {
            Some(change) if change.status == BulkChangeStatus::New => {
                change.status = BulkChangeStatus::Failed;
                change.counts.failed = change.counts.total - change.counts.succeeded;
                change.failure_reason = Some(reason.to_owned());
                change.updated_at = now;
                locked(&self.intake_deadlines).remove(&key);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn due_for_release(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<(TenantId, String)>, StoreError> {
        Ok(self.due(&self.releases, BulkChangeStatus::Scheduled, now, limit))
    }

    async fn get_device_changes(
        &self,
        tenant: &TenantId,
        bulk_change_id: &str,
        seqs: std::ops::Range<u32>,
    ) -> Result<Vec<DeviceChange>, StoreError> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        Ok(locked(&self.device_changes)
            .range(
                (tenant.clone(), bulk_change_id.to_owned(), seqs.start)
                    ..(tenant.clone(), bulk_change_id.to_owned(), seqs.end),
            )
            .map(|(_, change)| change.clone())
            .collect())
    }

    async fn claim_work(
        &self,
        tenant: &TenantId,
        bulk_change_id: &str,
        unit: &str,
        retry_number: u32,
        now: OffsetDateTime,
        lease: std::time::Duration,
    ) -> Result<Claim, StoreError> {
        let mut claims = locked(&self.work_claims);
        let key = (tenant.clone(), bulk_change_id.to_owned(), unit.to_owned());
        let until = now + lease;
        let claim = match claims.get(&key) {
            None => Claim::Granted { resumed: false },
            Some((claimed, _)) if *claimed < retry_number => Claim::Granted { resumed: false },
            Some((claimed, lease_end)) if *claimed == retry_number && *lease_end < now => {
                Claim::Granted { resumed: true }
            }
            Some((claimed, lease_end)) if *claimed == retry_number => {
                Claim::Held { until: *lease_end }
            }
            Some(_) => Claim::Superseded,
        };
        if matches!(claim, Claim::Granted { .. }) {
            claims.insert(key, (retry_number, until));
        }
        Ok(claim)
    }

    async fn record_submitted(
        &self,
        tenant: &TenantId,
        bulk_change_id: &str,
        seq: u32,
        iccid: &str,
        carrier_request_id: &str,
    ) -> Result<bool, StoreError> {
        let mut all = locked(&self.device_changes);
        let Some(change) = all.get_mut(&(tenant.clone(), bulk_change_id.to_owned(), seq)) else {
            return Ok(false);
        };
        if change.status != DeviceChangeStatus::Pending {
            return Ok(false);
        }
        change.carrier_request_id = Some(carrier_request_id.to_owned());
        locked(&self.submitted).insert(
            (carrier_request_id.to_owned(), iccid.to_owned()),
            SubmittedRef {
                tenant: tenant.clone(),
                bulk_change_id: bulk_change_id.to_owned(),
                seq,
            },
        );
        Ok(true)
    }

    async fn find_submitted(
        &self,
        carrier_request_id: &str,
        iccid: &str,
    ) -> Result<Option<SubmittedRef>, StoreError> {
        Ok(locked(&self.submitted)
            .get(&(carrier_request_id.to_owned(), iccid.to_owned()))
            .cloned())
    }

    async fn finish_device_change(
        &self,
        tenant: &TenantId,
        bulk_change_id: &str,
        seq: u32,
        outcome: &DeviceOutcome,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        // Both maps are locked for the whole write, as the DynamoDB adapter's transaction.
        let mut changes = locked(&self.bulk_changes);
        let mut devices = locked(&self.device_changes);
        let Some(device) = devices.get_mut(&(tenant.clone(), bulk_change_id.to_owned(), seq))
        else {
            return Ok(false);
        };
        if device.status != DeviceChangeStatus::Pending {
            return Ok(false);
        }
        let bulk = changes
            .get_mut(&(tenant.clone(), bulk_change_id.to_owned()))
            .ok_or_else(|| StoreError::Corrupt(format!("no bulk change {bulk_change_id}")))?;
        device.status = if outcome.succeeded {
            bulk.counts.succeeded += 1;
            DeviceChangeStatus::Succeeded
        } else {
            bulk.counts.failed += 1;
            DeviceChangeStatus::Failed
        };
        device.status_reason = outcome.reason.clone();
        device.attempts = outcome.attempts;
        device.updated_at = now;
        bulk.updated_at = now;
        if let Some(sim) = &outcome.sim {
            self.sims.apply_now(tenant, sim, now);
        }
        Ok(true)
    }

    async fn append_audit(&self, tenant: &TenantId, entry: &AuditEntry) -> Result<(), StoreError> {
        let record = AuditRecord {
            entry_id: uuid::Uuid::now_v7().to_string(),
            entry: entry.clone(),
        };
        locked(&self.audit).push((tenant.clone(), record));
        Ok(())
    }

    async fn list_audit(
        &self,
        tenant: &TenantId,
        bulk_change_id: &str,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(locked(&self.audit)
            .iter()
            .filter(|(t, r)| t == tenant && r.entry.bulk_change_id == bulk_change_id)
            .map(|(_, r)| r.entry.clone())
            .collect())
    }

    async fn audit_page(
        &self,
        tenant: &TenantId,
        bulk_change_id: &str,
        device: Option<u32>,
        page: &PageRequest,
    ) -> Result<Page<AuditRecord>, StoreError> {
        let after = page
            .cursor
            .as_deref()
            .map(cursor::decode_after_id)
            .transpose()?;
        let matching: Vec<AuditRecord> = locked(&self.audit)
            .iter()
            .filter(|(t, r)| t == tenant && r.entry.bulk_change_id == bulk_change_id)
            .filter(|(_, r)| after.as_ref().is_none_or(|a| r.entry_id > a.after))
            .filter(|(_, r)| device.is_none_or(|seq| r.entry.device_seq == Some(seq)))
            .map(|(_, r)| r.clone())
            .collect();
        Ok(page_of(matching, page.limit, |last| {
            cursor::encode(&AfterId {
                after: last.entry_id.clone(),
            })
        }))
    }
}

/// A work message as it was queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedWork {
    pub carrier: Carrier,
    pub delay: std::time::Duration,
    pub message: WorkMessage,
}

#[derive(Default)]
pub struct MemoryQueues {
    pub plans: Mutex<Vec<PlanMessage>>,
    pub work: Mutex<Vec<QueuedWork>>,
    /// When set, every enqueue fails: for testing what a handler leaves behind.
    pub fail: std::sync::atomic::AtomicBool,
}

impl MemoryQueues {
    fn check(&self) -> Result<(), QueueError> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            Err(QueueError::Unavailable("queue unavailable (test)".into()))
        } else {
            Ok(())
        }
    }

    pub fn plans(&self) -> Vec<PlanMessage> {
        locked(&self.plans).clone()
    }

    pub fn work(&self) -> Vec<WorkMessage> {
        locked(&self.work)
            .iter()
            .map(|w| w.message.clone())
            .collect()
    }

    pub fn queued_work(&self) -> Vec<QueuedWork> {
        locked(&self.work).clone()
    }

    /// Removes and returns everything queued for the worker so far.
    pub fn drain_work(&self) -> Vec<QueuedWork> {
        std::mem::take(&mut *locked(&self.work))
    }
}

#[async_trait]
impl WorkQueues for MemoryQueues {
    async fn enqueue_plan(&self, message: &PlanMessage) -> Result<(), QueueError> {
        self.check()?;
        locked(&self.plans).push(message.clone());
        Ok(())
    }

    async fn enqueue_work(
        &self,
        carrier: Carrier,
        messages: &[WorkMessage],
        delay: std::time::Duration,
    ) -> Result<(), QueueError> {
        self.check()?;
        locked(&self.work).extend(messages.iter().map(|message| QueuedWork {
            carrier,
            delay,
            message: message.clone(),
        }));
        Ok(())
    }
}

#[derive(Default)]
pub struct MemoryPayloads {
    objects: Mutex<HashMap<String, Vec<u8>>>,
}

impl MemoryPayloads {
    pub fn len(&self) -> usize {
        locked(&self.objects).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl PayloadStore for MemoryPayloads {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), PayloadError> {
        locked(&self.objects).insert(key.to_owned(), body);
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, PayloadError> {
        locked(&self.objects)
            .get(key)
            .cloned()
            .ok_or_else(|| PayloadError::Missing(key.to_owned()))
    }
}

/// Memory-backed bulk-change ports, with typed handles for assertions.
#[derive(Default, Clone)]
pub struct MemoryPorts {
    pub store: std::sync::Arc<MemoryStore>,
    pub queues: std::sync::Arc<MemoryQueues>,
    pub payloads: std::sync::Arc<MemoryPayloads>,
}

impl MemoryPorts {
    pub fn ports(&self) -> BulkChangePorts {
        BulkChangePorts {
            store: self.store.clone(),
            queues: self.queues.clone(),
            payloads: self.payloads.clone(),
        }
    }
}
