//! Sending a tenant's events to its connections, in order.
//!
//! The events table's stream hands the fan-out each tenant's events in the order they were given
//! out, one batch after the other. A live connection is sent the events after its place that its
//! subscription matches. A connection catching up (it just subscribed, perhaps with `lastSeq`) is
//! sent, from the log, everything after its place through the stream's current place, and is
//! live from there: no event reaches it twice or out of order, and none is skipped, because the
//! replay and the live events are sent by the same sequence of batches.

use crate::event::Event;
use crate::ports::{Connection, ConnectionPoster, Connections, EventLog, PostError};
use crate::protocol::ServerFrame;
use cellbridge_core::store::StoreError;
use cellbridge_core::tenant::TenantId;
use futures::stream::{self, StreamExt};
use time::OffsetDateTime;

/// Connections posted to at once.
pub const POSTS_IN_FLIGHT: usize = 64;

/// One batch of the events stream, for one tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantBatch {
    pub tenant: TenantId,
    /// Its events in the batch, in order.
    pub events: Vec<Event>,
    /// The stream's place after the batch: the last event, or the counter as the batch shows it.
    pub through: u64,
}

/// What a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Event frames posted live.
    pub posted: usize,
    /// Event frames replayed to connections catching up.
    pub replayed: usize,
    /// Connections told to reload: what they missed is no longer kept.
    pub reset: usize,
    /// Connections found gone (410) and removed.
    pub pruned: usize,
    /// Frames that did not get through for another reason: the client sees a gap in `seq` and
    /// resumes from its last one.
    pub failed: usize,
}

impl Delivery {
    fn add(&mut self, other: Delivery) {
        self.posted += other.posted;
        self.replayed += other.replayed;
        self.reset += other.reset;
        self.pruned += other.pruned;
        self.failed += other.failed;
    }
}

/// The ports the fan-out uses.
pub struct FanoutPorts<'a> {
    pub log: &'a dyn EventLog,
    pub connections: &'a dyn Connections,
    pub poster: &'a dyn ConnectionPoster,
}

/// Sends `batch` to every connection of its tenant. A store failure is returned (the batch is
/// retried); a frame that did not get through is counted, not retried.
pub async fn fan_out(
    batch: &TenantBatch,
    ports: &FanoutPorts<'_>,
    now: OffsetDateTime,
) -> Result<Delivery, StoreError> {
    let connections = ports.connections.of_tenant(&batch.tenant).await?;
    // Each event serialized once, whatever the number of connections.
    let frames: Vec<(&Event, Vec<u8>)> = batch
        .events
        .iter()
        .map(|event| (event, frame_bytes(&ServerFrame::Event(event.clone()))))
        .collect();
    let frames = &frames;
    let results: Vec<Result<Delivery, StoreError>> = stream::iter(connections)
        .map(|connection| async move {
            if connection.catching_up {
                catch_up(&connection, batch, ports, now).await
            } else {
                Ok(send_live(&connection, frames, ports).await)
            }
        })
        .buffer_unordered(POSTS_IN_FLIGHT)
        .collect()
        .await;
    let mut delivery = Delivery::default();
    for result in results {
        delivery.add(result?);
    }
    Ok(delivery)
}

fn frame_bytes(frame: &ServerFrame) -> Vec<u8> {
    // A frame is plain data: serializing it cannot fail.
    serde_json::to_vec(frame).unwrap_or_default()
}

/// Whether to go on posting to the connection after `result`.
fn tally(
    result: Result<(), PostError>,
    delivery: &mut Delivery,
    posted: fn(&mut Delivery),
) -> bool {
    match result {
        Ok(()) => {
            posted(delivery);
            true
        }
        Err(PostError::Gone) => {
            delivery.pruned += 1;
            false
        }
        Err(error) => {
            tracing::warn!(%error, "a live event did not reach its connection");
            delivery.failed += 1;
            true
        }
    }
}

async fn send_live(
    connection: &Connection,
    frames: &[(&Event, Vec<u8>)],
    ports: &FanoutPorts<'_>,
) -> Delivery {
    let mut delivery = Delivery::default();
    let Some(subscription) = &connection.subscription else {
        return delivery;
    };
    for (event, bytes) in frames {
        if event.seq <= connection.after || !subscription.matches(event) {
            continue;
        }
        let result = ports.poster.post(&connection.id, bytes).await;
        if !tally(result, &mut delivery, |d| d.posted += 1) {
            forget(connection, ports).await;
            break;
        }
    }
    delivery
}

async fn catch_up(
    connection: &Connection,
    batch: &TenantBatch,
    ports: &FanoutPorts<'_>,
    now: OffsetDateTime,
) -> Result<Delivery, StoreError> {
    let mut delivery = Delivery::default();
    let through = batch.through.max(connection.after);
    let missed = ports
        .log
        .read(&batch.tenant, connection.after + 1, through, now)
        .await?;
    if missed.len() as u64 != through - connection.after {
        // Some of it left the replay window since the subscribe checked: reload.
        let reset = frame_bytes(&ServerFrame::Reset {
            reason:
                "events after lastSeq are no longer kept: reload, then subscribe without lastSeq"
                    .into(),
        });
        if !tally(
            ports.poster.post(&connection.id, &reset).await,
            &mut delivery,
            |d| d.reset += 1,
        ) {
            forget(connection, ports).await;
            return Ok(delivery);
        }
        if ports
            .connections
            .subscribe(&connection.id, None, through)
            .await?
        {
            ports
                .connections
                .caught_up(&connection.id, through, through)
                .await?;
        }
        return Ok(delivery);
    }
    if let Some(subscription) = &connection.subscription {
        for event in missed.iter().filter(|e| subscription.matches(e)) {
            let bytes = frame_bytes(&ServerFrame::Event(event.clone()));
            if !tally(
                ports.poster.post(&connection.id, &bytes).await,
                &mut delivery,
                |d| d.replayed += 1,
            ) {
                forget(connection, ports).await;
                return Ok(delivery);
            }
        }
    }
    // A subscribe that came meanwhile leaves this unrecorded: its own replay follows its wake.
    ports
        .connections
        .caught_up(&connection.id, connection.after, through)
        .await?;
    Ok(delivery)
}

/// A connection API Gateway no longer has: removed on its first 410.
async fn forget(connection: &Connection, ports: &FanoutPorts<'_>) {
    if let Err(error) = ports.connections.remove(&connection.id).await {
        // The TTL removes it later; the next batch tries again meanwhile.
        tracing::warn!(%error, "a closed connection could not be removed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Change, EventType};
    use crate::memory::{MemoryConnections, MemoryEventLog, RecordingPoster, StreamRecord};
    use crate::subscription::Subscription;
    use serde_json::json;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-06 09:00 UTC);

    fn tenant(name: &str) -> TenantId {
        TenantId::parse(name).expect("tenant")
    }

    fn change(tenant_name: &str, kind: EventType, subject: &str) -> Change {
        Change {
            tenant: tenant(tenant_name),
            kind,
            subject: subject.into(),
            at: NOW,
            data: json!({}),
        }
    }

    struct World {
        log: MemoryEventLog,
        connections: MemoryConnections,
        poster: RecordingPoster,
        /// How far the simulated stream was fanned out.
        read: usize,
    }

    impl World {
        fn new() -> Self {
            Self {
                log: MemoryEventLog::default(),
                connections: MemoryConnections::default(),
                poster: RecordingPoster::default(),
                read: 0,
            }
        }

        async fn connect(&self, id: &str, tenant_name: &str) {
            self.connections
                .put(&Connection {
                    id: id.into(),
                    tenant: tenant(tenant_name),
                    subject: "ops".into(),
                    connected_at: NOW,
                    expires_at: NOW + time::Duration::hours(2),
                    subscription: None,
                    after: 0,
                    catching_up: false,
                })
                .await
                .expect("put");
        }

        async fn subscribe(&self, id: &str, tenant_name: &str, after: u64) {
            assert!(self
                .connections
                .subscribe(id, Some(Subscription::default()), after)
                .await
                .expect("subscribe"));
            self.log.wake(&tenant(tenant_name)).await.expect("wake");
        }

        async fn append(&self, changes: Vec<Change>) {
            let tenant = changes[0].tenant.clone();
            self.log
                .append(&tenant, changes, NOW + time::Duration::minutes(15))
                .await
                .expect("append");
        }

        /// Fans out what the stream holds since the last call, `per_batch` records a batch.
        async fn drain(&mut self, per_batch: usize) -> Delivery {
            let (records, next) = self.log.stream_since(self.read);
            self.read = next;
            let mut total = Delivery::default();
            for chunk in records.chunks(per_batch) {
                let mut batches: Vec<TenantBatch> = Vec::new();
                for record in chunk {
                    let (tenant, event, place) = match record {
                        StreamRecord::Appended(e) => (e.tenant.clone(), Some(e.clone()), e.seq),
                        StreamRecord::Woken { tenant, newest } => (tenant.clone(), None, *newest),
                    };
                    let index = match batches.iter().position(|b| b.tenant == tenant) {
                        Some(index) => index,
                        None => {
                            batches.push(TenantBatch {
                                tenant,
                                events: vec![],
                                through: 0,
                            });
                            batches.len() - 1
                        }
                    };
                    batches[index].events.extend(event);
                    batches[index].through = batches[index].through.max(place);
                }
                for batch in &batches {
                    let ports = FanoutPorts {
                        log: &self.log,
                        connections: &self.connections,
                        poster: &self.poster,
                    };
                    total.add(fan_out(batch, &ports, NOW).await.expect("fan out"));
                }
            }
            total
        }
    }

    #[tokio::test]
    async fn a_resuming_client_gets_what_it_missed_then_live_events_each_once_in_order() {
        use EventType::*;
        let mut world = World::new();
        world.connect("c1", "acme").await;
        world.subscribe("c1", "acme", 0).await;
        world
            .append(
                (0..5)
                    .map(|i| change("acme", DevicePresence, &format!("d{i}")))
                    .collect(),
            )
            .await;
        world.drain(3).await;
        assert_eq!(world.poster.seqs("c1"), [1, 2, 3, 4, 5]);

        // c1 drops after 5; events 6..=8 happen; it comes back as c2 asking from 5, while event
        // 9 is being written and fanned out in the same batch as its wake.
        world.poster.close("c1");
        world
            .append(
                (0..3)
                    .map(|_| change("acme", CommandStatus, "d1"))
                    .collect(),
            )
            .await;
        world.drain(2).await;
        world.connect("c2", "acme").await;
        world.subscribe("c2", "acme", 5).await;
        world
            .append(vec![change("acme", BulkChangeProgress, "bc-1")])
            .await;
        world
            .append(vec![change("acme", BulkChangeCompleted, "bc-1")])
            .await;
        let delivery = world.drain(2).await;
        assert_eq!(world.poster.seqs("c2"), [6, 7, 8, 9, 10]);
        assert!(delivery.replayed >= 3, "{delivery:?}");
        assert_eq!(
            world.connections.get("c1").await.expect("get"),
            None,
            "pruned on its first 410"
        );
    }

    #[tokio::test]
    async fn tenants_never_see_each_others_events_and_filters_narrow() {
        use EventType::*;
        let mut world = World::new();
        world.connect("a", "acme").await;
        world.connect("b", "bolt").await;
        world.subscribe("a", "acme", 0).await;
        world.subscribe("b", "bolt", 0).await;
        world.connect("a-presence", "acme").await;
        let only_presence = Subscription {
            types: [DevicePresence].into(),
            devices: ["d1".to_owned()].into(),
            ..Subscription::default()
        };
        world
            .connections
            .subscribe("a-presence", Some(only_presence), 0)
            .await
            .expect("subscribe");
        for round in 0..50 {
            world
                .append(vec![change(
                    "acme",
                    DevicePresence,
                    &format!("d{}", round % 3),
                )])
                .await;
            world
                .append(vec![change("bolt", SimStatusChanged, "8901")])
                .await;
            world
                .append(vec![change("acme", TelemetryLatest, "d1")])
                .await;
        }
        world.drain(7).await;
        let tenants_of = |id: &str| -> Vec<String> {
            world
                .poster
                .frames(id)
                .iter()
                .map(|f| f["tenant"].as_str().unwrap_or("?").to_owned())
                .collect()
        };
        assert_eq!(world.poster.seqs("a").len(), 100);
        assert!(tenants_of("a").iter().all(|t| t == "acme"));
        assert_eq!(world.poster.seqs("b"), (1..=50).collect::<Vec<u64>>());
        assert!(tenants_of("b").iter().all(|t| t == "bolt"));
        let presence = world.poster.frames("a-presence");
        assert!(presence
            .iter()
            .all(|f| f["type"] == "device.presence" && f["subject"] == "d1"));
        assert_eq!(presence.len(), 17);
    }

    #[tokio::test]
    async fn a_resume_from_before_the_window_is_reset() {
        use EventType::*;
        let mut world = World::new();
        world
            .append(
                (0..4)
                    .map(|_| change("acme", DevicePresence, "d1"))
                    .collect(),
            )
            .await;
        world.log.expire(&tenant("acme"), 2);
        world.connect("c", "acme").await;
        world.subscribe("c", "acme", 1).await;
        let delivery = world.drain(10).await;
        assert_eq!(delivery.reset, 1);
        assert!(world.poster.seqs("c").is_empty());
        assert_eq!(world.poster.frames("c")[0]["kind"], "reset");
        let after = world
            .connections
            .get("c")
            .await
            .expect("get")
            .expect("kept");
        assert!(after.subscription.is_none() && !after.catching_up);
    }
}
