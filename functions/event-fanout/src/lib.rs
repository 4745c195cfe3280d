//! The fan-out: the events table's stream, each tenant's events in the order they were given
//! out, to the tenant's WebSocket connections (see `cellbridge_events::fanout`).
//!
//! A batch is split by tenant, keeping each tenant's order. A tenant whose connections could
//! not be read (or written) fails from its first record on: the stream hands the batch again
//! from there, and a client that meets an event twice drops the second by its `seq`.

use aws_lambda_events::event::dynamodb::{Event as StreamEvent, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use cellbridge_core::dynamodb::Item;
use cellbridge_events::dynamodb::{events_table_item, EventsTableItem};
use cellbridge_events::fanout::{fan_out, Delivery, FanoutPorts, TenantBatch};
use time::OffsetDateTime;
use tracing::Instrument;

cellbridge_core::composite_config! {
    /// This function's configuration, read once at cold start.
    pub struct Config {
        pub tables: cellbridge_events::wiring::LiveTables,
        pub endpoint: cellbridge_events::wiring::LiveEndpoint,
    }
}

/// A tenant's part of the batch, and the sequence number of its first record.
struct Part {
    batch: TenantBatch,
    first_record: String,
}

fn parts(event: &StreamEvent) -> Vec<Part> {
    let mut parts: Vec<Part> = Vec::new();
    for record in &event.records {
        let Some(item) = new_item(record) else {
            continue;
        };
        let (tenant, event, place, woke) = match events_table_item(&item) {
            Ok(EventsTableItem::Event(event)) => {
                (event.tenant.clone(), Some(event.clone()), event.seq, None)
            }
            Ok(EventsTableItem::Counter {
                tenant,
                newest,
                woke,
            }) => (tenant, None, newest, woke),
            Ok(EventsTableItem::Marker) => continue,
            Err(error) => {
                // Only the recorder and the socket function write there: nothing to send.
                tracing::error!(%error, "an events table item could not be read; skipped");
                continue;
            }
        };
        let part = match parts.iter_mut().position(|p| p.batch.tenant == tenant) {
            Some(index) => &mut parts[index],
            None => {
                parts.push(Part {
                    batch: TenantBatch {
                        tenant,
                        events: Vec::new(),
                        through: 0,
                        woken: Vec::new(),
                    },
                    first_record: record.change.sequence_number.clone().unwrap_or_default(),
                });
                let last = parts.len() - 1;
                &mut parts[last]
            }
        };
        part.batch.events.extend(event);
        // A record that only bumped the wakes names the connection again: replay it once.
        if let Some(id) = woke.filter(|id| !part.batch.woken.contains(id)) {
            part.batch.woken.push(id);
        }
        part.batch.through = part.batch.through.max(place);
    }
    parts
}

/// What an insert or update left in the table; removals (the TTL's) carry nothing to send.
fn new_item(record: &EventRecord) -> Option<Item> {
    if record.event_name == "REMOVE" || record.change.new_image.is_empty() {
        return None;
    }
    Some(record.change.new_image.clone().into())
}

pub async fn handle(
    event: &StreamEvent,
    ports: &FanoutPorts<'_>,
    now: OffsetDateTime,
) -> DynamoDbEventResponse {
    let mut response = DynamoDbEventResponse::default();
    let mut total = Delivery::default();
    for part in parts(event) {
        let span = tracing::info_span!("tenant", tenant = %part.batch.tenant, events = part.batch.events.len());
        match fan_out(&part.batch, ports, now).instrument(span).await {
            Ok(delivery) => total.add(delivery),
            Err(error) => {
                tracing::error!(tenant = %part.batch.tenant, %error, "fan-out failed; the stream hands the tenant's events again");
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = Some(part.first_record);
                response.batch_item_failures.push(failure);
            }
        }
    }
    tracing::info!(
        records = event.records.len(),
        posted = total.posted,
        replayed = total.replayed,
        reset = total.reset,
        pruned = total.pruned,
        deferred = total.deferred,
        refused = total.refused,
        "fanned out"
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellbridge_core::tenant::TenantId;
    use cellbridge_events::memory::{MemoryConnections, MemoryEventLog, RecordingPoster};
    use cellbridge_events::ports::{Connection, Connections};
    use cellbridge_events::subscription::Subscription;
    use time::macros::datetime;

    const SAMPLE: &str = include_str!("../../../events/event-fanout/events.json");
    const NOW: OffsetDateTime = datetime!(2026-12-06 09:00 UTC);

    #[tokio::test]
    async fn the_sample_batch_reaches_the_tenants_connection_only() {
        let event: StreamEvent = serde_json::from_str(SAMPLE).expect("sample");
        let (log, connections, poster) = (
            MemoryEventLog::default(),
            MemoryConnections::default(),
            RecordingPoster::default(),
        );
        for (id, tenant) in [("acme-1", "acme"), ("bolt-1", "bolt")] {
            connections
                .put(&Connection {
                    id: id.into(),
                    tenant: TenantId::parse(tenant).expect("tenant"),
                    subject: "ops".into(),
                    connected_at: NOW,
                    expires_at: NOW + time::Duration::hours(2),
                    subscription: Some(Subscription::default()),
                    after: 0,
                    catching_up: false,
                    generation: 0,
                })
                .await
                .expect("put");
        }
        let ports = FanoutPorts {
            log: &log,
            connections: &connections,
            poster: &poster,
        };
        let response = handle(&event, &ports, NOW).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(poster.seqs("acme-1"), [41, 42]);
        assert!(poster.frames("bolt-1").is_empty());
        let first = &poster.frames("acme-1")[0];
        assert_eq!(first["type"], "device.presence");
        assert_eq!(first["data"]["online"], false);
    }
}
