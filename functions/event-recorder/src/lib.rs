//! The event recorder: the change streams of the devices, commands, bulk changes, SIMs and
//! telemetry tables, read as each tenant's live events and written to its stream (`EventsTable`), from
//! where the fan-out sends them. No handler publishes events itself: whatever writes these
//! tables is seen here.
//!
//! What each change means:
//! - a device item created: `device.registered`; its online state (connected and not timed
//!   out) changed: `device.presence`;
//! - a command created or its status changed: `command.status`;
//! - a bulk change's counts or status changed: `bulkChange.progress`, and on reaching a final
//!   status `bulkChange.completed`;
//! - a SIM's status changed: `sim.status` (a SIM's first import is no status change);
//! - a chunk of telemetry written for a device someone follows (its live window is open,
//!   `cellbridge_devices::live`): `telemetry.latest`, the chunk's newest sample, unless the
//!   batch told a newer one of the device already (chunks are written out of sample order). The telemetry
//!   of devices no one follows is read and left: telling every sample of every device would
//!   put a whole fleet's telemetry on its tenant's one stream.
//!
//! Telemetry and progress are coalesced within a batch (the last of each subject in each
//! second). A tenant whose events could not be written fails from its first record on; the
//! stream hands the batch again from there.

use aws_lambda_events::event::dynamodb::{Event as StreamEvent, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use cellbridge_bulk_changes::bulk_change::BulkChange;
use cellbridge_core::config::{required, ConfigError, Environment, FromEnvironment};
use cellbridge_core::dynamodb::Item;
use cellbridge_core::store::StoreError;
use cellbridge_core::tenant::TenantId;
use cellbridge_devices::ports::{DeviceRecord, Followed, LiveFollowing, StoredPoint};
use cellbridge_devices::registration::ThingName;
use cellbridge_events::counts::{CountDeltas, Counted, FleetCounts, Tally};
use cellbridge_events::event::{coalesce, Change, EventType};
use cellbridge_events::ports::EventLog;
use serde_json::json;
use std::collections::HashMap;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

cellbridge_core::composite_config! {
    /// This function's configuration, read once at cold start.
    pub struct Config {
        pub tables: cellbridge_events::wiring::LiveTables,
        pub sources: SourceTables,
        /// The devices table: who a telemetry chunk's device is, and whether someone follows it.
        pub devices: cellbridge_devices::wiring::DeviceTables,
        pub window: cellbridge_events::wiring::ReplayWindow,
    }
}

/// The tables whose streams this function reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceTables {
    pub devices: String,
    pub commands: String,
    pub bulk_changes: String,
    pub sims: String,
    pub telemetry: String,
}

impl FromEnvironment for SourceTables {
    fn from_env(env: &dyn Environment) -> Result<Self, ConfigError> {
        Ok(Self {
            devices: required(env, "DEVICES_TABLE")?,
            commands: required(env, "COMMANDS_TABLE")?,
            bulk_changes: required(env, "BULK_CHANGES_TABLE")?,
            sims: required(env, "SIMS_TABLE")?,
            telemetry: required(env, "TELEMETRY_TABLE")?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Devices,
    Commands,
    BulkChanges,
    Sims,
    Telemetry,
}

impl SourceTables {
    /// Which table a stream ARN (`arn:...:table/<name>/stream/<label>`) belongs to.
    pub fn source_of(&self, stream_arn: &str) -> Option<Source> {
        let name = stream_arn.split("table/").nth(1)?.split("/stream").next()?;
        [
            (&self.devices, Source::Devices),
            (&self.commands, Source::Commands),
            (&self.bulk_changes, Source::BulkChanges),
            (&self.sims, Source::Sims),
            (&self.telemetry, Source::Telemetry),
        ]
        .into_iter()
        .find(|(table, _)| table.as_str() == name)
        .map(|(_, source)| source)
    }
}

fn image(item: &serde_dynamo::Item) -> Option<Item> {
    (!item.is_empty()).then(|| item.clone().into())
}

/// Reads both images of a record with `read`; an absent image is `None`.
fn images<T>(
    record: &EventRecord,
    read: fn(Item) -> Result<T, StoreError>,
) -> Result<(Option<T>, Option<T>), StoreError> {
    let old = image(&record.change.old_image).map(read).transpose()?;
    let new = image(&record.change.new_image).map(read).transpose()?;
    Ok((old, new))
}

fn change(
    tenant: &TenantId,
    kind: EventType,
    subject: &str,
    at: OffsetDateTime,
    data: serde_json::Value,
) -> Change {
    Change {
        tenant: tenant.clone(),
        kind,
        subject: subject.to_owned(),
        at,
        data,
        source: None,
    }
}

fn online(device: &DeviceRecord) -> bool {
    device.presence.is_marked_online()
}

fn device_changes(
    old: Option<DeviceRecord>,
    new: Option<DeviceRecord>,
    at: OffsetDateTime,
) -> Vec<Change> {
    let Some(new) = new else { return Vec::new() };
    let thing = new.thing_name.as_str();
    let mut changes = Vec::new();
    if old.is_none() {
        changes.push(change(
            &new.tenant,
            EventType::DeviceRegistered,
            thing,
            at,
            json!({"iccid": new.iccid, "model": new.model, "firmware": new.firmware}),
        ));
    }
    if old.as_ref().map(online).unwrap_or(false) != online(&new) {
        let last_seen = new.presence.last_seen.and_then(|t| t.format(&Rfc3339).ok());
        changes.push(change(
            &new.tenant,
            EventType::DevicePresence,
            thing,
            at,
            json!({"online": online(&new), "lastSeen": last_seen, "timedOut": new.presence.timed_out}),
        ));
    }
    changes
}

fn command_changes(
    old: Option<cellbridge_devices::command::Command>,
    new: Option<cellbridge_devices::command::Command>,
    at: OffsetDateTime,
) -> Vec<Change> {
    let Some(new) = new else { return Vec::new() };
    if old.as_ref().is_some_and(|old| old.status == new.status) {
        return Vec::new();
    }
    vec![change(
        &new.tenant,
        EventType::CommandStatus,
        new.thing.as_str(),
        at,
        json!({"commandId": new.id.to_string(), "name": new.name, "status": new.status.as_str()}),
    )]
}

fn bulk_change_changes(
    old: Option<BulkChange>,
    new: Option<BulkChange>,
    at: OffsetDateTime,
) -> Vec<Change> {
    let Some(new) = new else { return Vec::new() };
    let moved = old
        .as_ref()
        .is_none_or(|old| old.status != new.status || old.counts != new.counts);
    if !moved {
        return Vec::new();
    }
    let data = json!({
        "status": new.status.as_str(),
        "carrier": new.carrier.as_str(),
        "total": new.counts.total,
        "succeeded": new.counts.succeeded,
        "failed": new.counts.failed,
        "pending": new.counts.pending(),
    });
    let finished_now =
        new.status.is_final() && !old.as_ref().is_some_and(|old| old.status.is_final());
    let kind = if finished_now {
        EventType::BulkChangeCompleted
    } else {
        EventType::BulkChangeProgress
    };
    vec![change(&new.tenant_id, kind, &new.bulk_change_id, at, data)]
}

fn sim_changes(
    old: Option<(TenantId, cellbridge_sims::sim::Sim)>,
    new: Option<(TenantId, cellbridge_sims::sim::Sim)>,
    at: OffsetDateTime,
) -> Vec<Change> {
    let (Some((_, old)), Some((tenant, new))) = (old, new) else {
        return Vec::new();
    };
    if old.status == new.status {
        return Vec::new();
    }
    vec![change(
        &tenant,
        EventType::SimStatusChanged,
        &new.iccid,
        at,
        json!({"from": old.status.as_str(), "to": new.status.as_str(), "carrier": new.carrier.as_str(), "carrierStatus": new.carrier_status}),
    )]
}

fn telemetry_changes(
    newest: Option<(ThingName, Option<StoredPoint>)>,
    followed: &HashMap<ThingName, Followed>,
    at: OffsetDateTime,
) -> Vec<Change> {
    let Some((thing, Some(point))) = newest else {
        return Vec::new();
    };
    let Some(device) = followed.get(&thing).filter(|f| f.is_followed(at)) else {
        return Vec::new();
    };
    let received_at = point.received_at.format(&Rfc3339).ok();
    // The sample's own time: telemetry is coalesced by it, one a second per device.
    vec![change(
        &device.tenant,
        EventType::TelemetryLatest,
        thing.as_str(),
        point.at,
        json!({"metrics": point.metrics, "receivedAt": received_at}),
    )]
}

/// The device and newest sample of a telemetry record; `None` for one without a new image (a
/// chunk expiring).
fn newest_sample(
    record: &EventRecord,
) -> Result<Option<(ThingName, Option<StoredPoint>)>, StoreError> {
    image(&record.change.new_image)
        // A device's hour summary beside its samples: no sample of its own.
        .filter(|item| !cellbridge_devices::dynamodb::is_hour_summary(item))
        .map(cellbridge_devices::dynamodb::newest_sample_from_image)
        .transpose()
}

/// What one stream record means: the changes it tells its tenant's stream, and how it moves
/// the tenant's fleet numbers (see [`RecordRead::counted`]).
pub struct RecordRead {
    pub changes: Vec<Change>,
    /// A SIM added, gone or moved between carriers and statuses; a device registered, gone, or
    /// going online or offline. `None` for a record that moves no number.
    pub counted: Option<(TenantId, Counted)>,
}

/// Reads one stream record, each image once; `now` stands in for a record time out of range.
/// `followed` holds the devices of the batch's telemetry records.
pub fn read_record(
    source: Source,
    record: &EventRecord,
    followed: &HashMap<ThingName, Followed>,
    now: OffsetDateTime,
) -> Result<RecordRead, StoreError> {
    let at = record
        .change
        .approximate_creation_date_time
        .timestamp_nanos_opt()
        .and_then(|nanos| OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)).ok())
        .unwrap_or(now);
    let mut deltas = CountDeltas::default();
    let (changes, counted_tenant) = match source {
        Source::Devices => {
            let (old, new) = images(record, cellbridge_devices::dynamodb::device_from_image)?;
            for (device, by) in [(&old, -1), (&new, 1)] {
                if let Some(device) = device {
                    deltas.add(Tally::DevicesRegistered, by);
                    if online(device) {
                        deltas.add(Tally::DevicesOnline, by);
                    }
                }
            }
            let tenant = new.as_ref().or(old.as_ref()).map(|d| d.tenant.clone());
            (device_changes(old, new, at), tenant)
        }
        Source::Commands => {
            let (old, new) = images(
                record,
                cellbridge_devices::commands_dynamodb::command_from_image,
            )?;
            (command_changes(old, new, at), None)
        }
        Source::BulkChanges => {
            let (old, new) = images(
                record,
                cellbridge_bulk_changes::dynamodb::bulk_change_from_image,
            )?;
            (bulk_change_changes(old, new, at), None)
        }
        Source::Sims => {
            let (old, new) = images(
                record,
                cellbridge_sims::dynamodb::DynamoSims::sim_from_image,
            )?;
            if let Some((_, old)) = &old {
                deltas.add(sim_tally(old), -1);
            }
            if let Some((_, new)) = &new {
                deltas.add(sim_tally(new), 1);
            }
            let tenant = new.as_ref().or(old.as_ref()).map(|(t, _)| t.clone());
            (sim_changes(old, new, at), tenant)
        }
        Source::Telemetry => (
            telemetry_changes(newest_sample(record)?, followed, at),
            None,
        ),
    };
    // The record's id (unique in its stream) and the change's place among the record's: a
    // batch handed again does not tell it twice.
    let changes = changes
        .into_iter()
        .enumerate()
        .map(|(index, change)| Change {
            source: Some(format!("{}#{index}", record.event_id)),
            ..change
        })
        .collect();
    let counted = counted_tenant.filter(|_| !deltas.is_empty()).map(|tenant| {
        let counted = Counted {
            source: record.event_id.clone(),
            deltas,
        };
        (tenant, counted)
    });
    Ok(RecordRead { changes, counted })
}

fn sim_tally(sim: &cellbridge_sims::sim::Sim) -> Tally {
    Tally::sims(sim.carrier.as_str(), sim.status.as_str())
}

/// Drops a device's `telemetry.latest` whose sample is not newer than one before it in the
/// batch: telemetry is written in whatever order its queue hands it over, not the samples'.
fn newest_telemetry_only(changes: Vec<Change>) -> Vec<Change> {
    let mut newest: HashMap<(TenantId, String), OffsetDateTime> = HashMap::new();
    changes
        .into_iter()
        .filter(|change| {
            if change.kind != EventType::TelemetryLatest {
                return true;
            }
            let key = (change.tenant.clone(), change.subject.clone());
            match newest.get(&key) {
                Some(seen) if *seen >= change.at => false,
                _ => {
                    newest.insert(key, change.at);
                    true
                }
            }
        })
        .collect()
}

/// A tenant's changes in the batch, how they move its numbers, and the sequence number of its
/// first record.
struct TenantChanges {
    tenant: TenantId,
    first_record: String,
    changes: Vec<Change>,
    counted: Vec<Counted>,
}

impl TenantChanges {
    /// The tenant's entry among `tenants`, made at `record` when it is the tenant's first.
    fn of<'t>(
        tenants: &'t mut Vec<TenantChanges>,
        tenant: &TenantId,
        record: &EventRecord,
    ) -> &'t mut TenantChanges {
        let index = match tenants.iter().position(|t| &t.tenant == tenant) {
            Some(index) => index,
            None => {
                tenants.push(TenantChanges {
                    tenant: tenant.clone(),
                    first_record: record.change.sequence_number.clone().unwrap_or_default(),
                    changes: Vec::new(),
                    counted: Vec::new(),
                });
                tenants.len() - 1
            }
        };
        &mut tenants[index]
    }
}

/// Who the devices of the batch's telemetry records are (tenant, live window): one read for
/// the batch. An error fails the batch from its first telemetry record on.
async fn followed_in(
    event: &StreamEvent,
    sources: &SourceTables,
    following: &dyn LiveFollowing,
) -> Result<HashMap<ThingName, Followed>, DynamoDbBatchItemFailure> {
    let telemetry: Vec<&EventRecord> = event
        .records
        .iter()
        .filter(|r| {
            sources.source_of(r.event_source_arn.as_deref().unwrap_or_default())
                == Some(Source::Telemetry)
        })
        .collect();
    let things: Vec<ThingName> = telemetry
        .iter()
        .filter_map(|record| {
            let key = record.change.keys.get("thingName")?;
            let serde_dynamo::AttributeValue::S(name) = key else {
                return None;
            };
            ThingName::parse(name)
        })
        .collect();
    if things.is_empty() {
        return Ok(HashMap::new());
    }
    following.followed(&things).await.map_err(|error| {
        tracing::error!(%error, "the followed devices could not be read; the stream hands the batch again");
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = telemetry
            .first()
            .and_then(|r| r.change.sequence_number.clone());
        failure
    })
}

/// What the recorder reads and writes.
#[derive(Clone, Copy)]
pub struct RecorderPorts<'a> {
    pub log: &'a dyn EventLog,
    pub counts: &'a dyn FleetCounts,
    pub following: &'a dyn LiveFollowing,
}

pub async fn handle(
    event: &StreamEvent,
    sources: &SourceTables,
    ports: RecorderPorts<'_>,
    window: time::Duration,
    now: OffsetDateTime,
) -> DynamoDbEventResponse {
    let mut response = DynamoDbEventResponse::default();
    let followed = match followed_in(event, sources, ports.following).await {
        Ok(followed) => followed,
        Err(failure) => {
            response.batch_item_failures.push(failure);
            return response;
        }
    };
    let mut tenants: Vec<TenantChanges> = Vec::new();
    for record in &event.records {
        let arn = record.event_source_arn.as_deref().unwrap_or_default();
        let Some(source) = sources.source_of(arn) else {
            tracing::error!(
                arn,
                "a stream record of a table this function does not read; skipped"
            );
            continue;
        };
        let RecordRead { changes, counted } = match read_record(source, record, &followed, now) {
            Ok(read) => read,
            Err(error) => {
                // Each of these tables holds one kind of item: one that cannot be read is a
                // schema drift to fix, though retrying it cannot help.
                tracing::error!(?source, %error, "a changed item could not be read; skipped");
                continue;
            }
        };
        if let Some((tenant, counted)) = counted {
            TenantChanges::of(&mut tenants, &tenant, record)
                .counted
                .push(counted);
        }
        for change in changes {
            TenantChanges::of(&mut tenants, &change.tenant, record)
                .changes
                .push(change);
        }
    }
    let mut recorded = 0;
    for tenant in tenants {
        let changes = coalesce(newest_telemetry_only(tenant.changes));
        // The numbers first: a page that reads them again on an event then finds it counted.
        let written = match ports.counts.add(&tenant.tenant, tenant.counted).await {
            Ok(()) => {
                ports
                    .log
                    .append(&tenant.tenant, changes, now + window)
                    .await
            }
            Err(error) => Err(error),
        };
        match written {
            Ok(events) => recorded += events.len(),
            Err(error) => {
                tracing::error!(tenant = %tenant.tenant, %error, "events or numbers could not be recorded; the stream hands them again");
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = Some(tenant.first_record);
                response.batch_item_failures.push(failure);
            }
        }
    }
    tracing::info!(
        records = event.records.len(),
        recorded,
        failed = response.batch_item_failures.len(),
        "recorded"
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellbridge_devices::memory::MemoryDevices;
    use cellbridge_devices::testing::{online_device, thing};
    use cellbridge_events::memory::{MemoryEventLog, MemoryFleetCounts, StreamRecord};
    use std::collections::BTreeMap;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-06 09:00 UTC);

    fn sources() -> SourceTables {
        SourceTables {
            devices: "cellbridge-DevicesTable".into(),
            commands: "cellbridge-CommandsTable".into(),
            bulk_changes: "cellbridge-BulkChangesTable".into(),
            sims: "cellbridge-SimsTable".into(),
            telemetry: "cellbridge-TelemetryTable".into(),
        }
    }

    fn sample(name: &str) -> StreamEvent {
        let text = match name {
            "devices" => include_str!("../../../events/event-recorder/devices.json"),
            "telemetry" => include_str!("../../../events/event-recorder/telemetry.json"),
            "sims" => include_str!("../../../events/event-recorder/sims.json"),
            _ => include_str!("../../../events/event-recorder/bulk-changes.json"),
        };
        serde_json::from_str(text).expect("sample")
    }

    async fn record(
        event: &StreamEvent,
        log: &MemoryEventLog,
        devices: &MemoryDevices,
    ) -> DynamoDbEventResponse {
        record_counting(event, log, &MemoryFleetCounts::default(), devices).await
    }

    async fn record_counting(
        event: &StreamEvent,
        log: &MemoryEventLog,
        counts: &MemoryFleetCounts,
        devices: &MemoryDevices,
    ) -> DynamoDbEventResponse {
        let ports = RecorderPorts {
            log,
            counts,
            following: devices,
        };
        handle(event, &sources(), ports, time::Duration::minutes(15), NOW).await
    }

    fn acme() -> TenantId {
        TenantId::parse("acme").expect("tenant")
    }

    #[tokio::test]
    async fn sims_added_changed_and_gone_are_counted_once_each() {
        let (log, counts) = (MemoryEventLog::default(), MemoryFleetCounts::default());
        let devices = MemoryDevices::default();
        let batch = sample("sims");
        let response = record_counting(&batch, &log, &counts, &devices).await;
        assert!(response.batch_item_failures.is_empty());
        // Handed again (a later tenant of the batch failed): nothing counted twice.
        record_counting(&batch, &log, &counts, &devices).await;
        let summary = counts.summary(&acme()).await.expect("summary");
        assert_eq!(summary.sims.total, 2);
        assert_eq!(
            summary.sims.by_carrier["jasper"],
            BTreeMap::from([("active".to_owned(), 1), ("suspended".to_owned(), 1)])
        );
        assert!(
            !summary.sims.by_carrier.contains_key("telegence"),
            "the telegence SIM was added, then went"
        );
        let told: Vec<(String, serde_json::Value)> = recorded(&log)
            .into_iter()
            .map(|(_, kind, subject, data)| (format!("{kind} {subject}"), data["to"].clone()))
            .collect();
        assert_eq!(
            told,
            [(
                "sim.status 8901260000000000001".to_owned(),
                serde_json::json!("suspended")
            )]
        );
    }

    #[tokio::test]
    async fn devices_are_counted_registered_and_online() {
        let (log, counts) = (MemoryEventLog::default(), MemoryFleetCounts::default());
        let devices = MemoryDevices::default();
        record_counting(&sample("devices"), &log, &counts, &devices).await;
        let summary = counts.summary(&acme()).await.expect("summary");
        // Registered offline, came online, dropped off.
        assert_eq!(
            (
                summary.devices.registered,
                summary.devices.online,
                summary.devices.offline
            ),
            (1, 0, 1)
        );
    }

    fn recorded(log: &MemoryEventLog) -> Vec<(String, String, String, serde_json::Value)> {
        log.stream_since(0)
            .0
            .into_iter()
            .filter_map(|r| match r {
                StreamRecord::Appended(e) => Some((
                    e.tenant.to_string(),
                    e.kind.as_str().to_owned(),
                    e.subject,
                    e.data,
                )),
                StreamRecord::Woken { .. } => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_device_registering_then_dropping_off_is_told_as_such() {
        let log = MemoryEventLog::default();
        let response = record(&sample("devices"), &log, &MemoryDevices::default()).await;
        assert!(response.batch_item_failures.is_empty());
        let events = recorded(&log);
        let kinds: Vec<(&str, &str)> = events
            .iter()
            .map(|(_, k, s, _)| (k.as_str(), s.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("device.registered", "trk-0001"),
                ("device.presence", "trk-0001"),
                ("device.presence", "trk-0001"),
            ]
        );
        assert_eq!(events[1].3["online"], true);
        assert_eq!(events[2].3["online"], false);
        assert!(events.iter().all(|(t, ..)| t == "acme"));
    }

    #[tokio::test]
    async fn a_bulk_change_progresses_coalesced_then_completes() {
        let log = MemoryEventLog::default();
        record(&sample("bulk"), &log, &MemoryDevices::default()).await;
        let events = recorded(&log);
        let told: Vec<(&str, u64)> = events
            .iter()
            .map(|(_, k, _, d)| (k.as_str(), d["succeeded"].as_u64().unwrap_or(99)))
            .collect();
        // Two progress records in the same second: the later one is told.
        assert_eq!(
            told,
            [("bulkChange.progress", 2), ("bulkChange.completed", 3)]
        );
        assert_eq!(events[1].3["status"], "completed");
    }

    #[tokio::test]
    async fn the_telemetry_of_a_followed_device_is_told_a_sample_a_second() {
        let devices = MemoryDevices::default();
        // The sample's records were made at 08:59:03 and 08:59:04.
        let at = datetime!(2026-12-06 08:59 UTC);
        online_device(&devices, "trk-0001", "acme", at).await;
        online_device(&devices, "trk-0002", "acme", at).await;
        devices
            .extend_live(&thing("trk-0001"), at + time::Duration::minutes(3), at)
            .await
            .expect("followed");
        let log = MemoryEventLog::default();
        let response = record(&sample("telemetry"), &log, &devices).await;
        assert!(response.batch_item_failures.is_empty());
        let told: Vec<(String, String, serde_json::Value)> = recorded(&log)
            .into_iter()
            .map(|(tenant, kind, subject, data)| {
                assert_eq!(
                    (tenant.as_str(), kind.as_str()),
                    ("acme", "telemetry.latest")
                );
                (
                    subject,
                    data["receivedAt"].to_string(),
                    data["metrics"].clone(),
                )
            })
            .collect();
        // The newest of the first chunk; of two in the next second, the later; nothing of
        // trk-0002 (no one follows it), of a sample older than one told (written late), or of
        // the chunk expiring.
        assert_eq!(
            told,
            [
                (
                    "trk-0001".to_owned(),
                    "\"2026-12-06T08:59:03Z\"".to_owned(),
                    serde_json::json!({"temp": 21.7, "battery": 87})
                ),
                (
                    "trk-0001".to_owned(),
                    "\"2026-12-06T08:59:04Z\"".to_owned(),
                    serde_json::json!({"temp": 21.9, "battery": 87})
                ),
            ]
        );
        let seconds: Vec<i64> = log
            .stream_since(0)
            .0
            .into_iter()
            .filter_map(|r| match r {
                StreamRecord::Appended(e) => Some(e.at.unix_timestamp()),
                StreamRecord::Woken { .. } => None,
            })
            .collect();
        assert_eq!(
            seconds,
            [1_796_547_542, 1_796_547_543],
            "the samples' own times"
        );

        // Once the window has run out, the same telemetry is not told.
        let later = MemoryEventLog::default();
        let lapsed = MemoryDevices::default();
        online_device(&lapsed, "trk-0001", "acme", at).await;
        lapsed
            .extend_live(&thing("trk-0001"), at, at)
            .await
            .expect("followed");
        record(&sample("telemetry"), &later, &lapsed).await;
        assert!(recorded(&later).is_empty());
    }

    #[test]
    fn stream_arns_name_their_table() {
        let sources = sources();
        assert_eq!(
            sources.source_of("arn:aws:dynamodb:us-east-1:123456789012:table/cellbridge-SimsTable/stream/2026-12-06T00:00:00.000"),
            Some(Source::Sims)
        );
        assert_eq!(
            sources.source_of("arn:aws:dynamodb:us-east-1:1:table/Other/stream/x"),
            None
        );
    }
}
