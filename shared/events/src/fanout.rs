//! Sending a tenant's events to its connections, in order.
//!
//! The events table's stream hands the fan-out each tenant's events in the order they were given
//! out, one batch after the other. A live connection is sent the events after its place that its
//! subscription matches. A connection catching up (it just subscribed, perhaps with `lastSeq`) is
//! sent, from the log, everything after its place through the stream's current place, and is
//! live from there: no event reaches it twice or out of order, and none is skipped, because the
//! replay and the live events are sent by the same sequence of batches. A post that fails for
//! now leaves the connection owed the events from there (catching up again); a subscribe that
//! comes while a replay is under way makes the replay's record of it void (each subscribe has
//! its generation), so the new subscription gets its own.

use crate::event::Event;
use crate::ports::{Connection, ConnectionPoster, Connections, EventLog, PostError, Standing};
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
    /// Connections that subscribed and wait for their replay (named by the counter's wakes).
    pub woken: Vec<String>,
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
    /// Posts that failed for now (throttled, unreachable): the connection is owed the events from
    /// there, replayed with the next batch.
    pub deferred: usize,
    /// Frames refused for good (too large): skipped.
    pub refused: usize,
}

impl Delivery {
    pub fn add(&mut self, other: Delivery) {
        self.posted += other.posted;
        self.replayed += other.replayed;
        self.reset += other.reset;
        self.pruned += other.pruned;
        self.deferred += other.deferred;
        self.refused += other.refused;
    }
}

/// The ports the fan-out uses.
pub struct FanoutPorts<'a> {
    pub log: &'a dyn EventLog,
    pub connections: &'a dyn Connections,
    pub poster: &'a dyn ConnectionPoster,
}

/// Sends `batch` to every connection of its tenant. A store failure is returned (the batch is
/// retried); a frame that did not get through is owed to its connection or, refused for good,
/// skipped.
pub async fn fan_out(
    batch: &TenantBatch,
    ports: &FanoutPorts<'_>,
    now: OffsetDateTime,
) -> Result<Delivery, StoreError> {
    let connections = current_connections(batch, ports).await?;
    // Each event serialized once, whatever the number of connections.
    let frames: Vec<(&Event, Vec<u8>)> = batch
        .events
        .iter()
        .filter_map(|event| Some((event, frame_bytes(&ServerFrame::Event(event.clone()))?)))
        .collect();
    let frames = &frames;
    let results: Vec<Result<Delivery, StoreError>> = stream::iter(connections)
        .map(|connection| async move {
            if connection.catching_up {
                catch_up(&connection, batch, ports, now).await
            } else {
                send_live(&connection, frames, ports).await
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

/// The tenant's connections. The tenant index is read eventually consistently: a connection it
/// shows catching up, and one the batch's wakes name, is read again from the table itself, so a
/// replay is neither missed (a subscribe the index does not show yet) nor sent twice (one it
/// still shows after the replay).
async fn current_connections(
    batch: &TenantBatch,
    ports: &FanoutPorts<'_>,
) -> Result<Vec<Connection>, StoreError> {
    let mut connections = ports.connections.of_tenant(&batch.tenant).await?;
    for id in &batch.woken {
        if !connections.iter().any(|c| &c.id == id) {
            connections.push(Connection {
                catching_up: true,
                ..placeholder(id, &batch.tenant)
            });
        }
    }
    let mut current = Vec::with_capacity(connections.len());
    for connection in connections {
        if !connection.catching_up {
            current.push(connection);
            continue;
        }
        match ports.connections.get(&connection.id).await? {
            Some(read) if read.tenant == batch.tenant => current.push(read),
            _ => {}
        }
    }
    Ok(current)
}

fn placeholder(id: &str, tenant: &TenantId) -> Connection {
    Connection {
        id: id.to_owned(),
        tenant: tenant.clone(),
        subject: String::new(),
        connected_at: OffsetDateTime::UNIX_EPOCH,
        expires_at: OffsetDateTime::UNIX_EPOCH,
        subscription: None,
        after: 0,
        catching_up: false,
        generation: 0,
    }
}

fn frame_bytes(frame: &ServerFrame) -> Option<Vec<u8>> {
    match serde_json::to_vec(frame) {
        Ok(bytes) => Some(bytes),
        Err(error) => {
            // Plain data always serializes; were it ever not to, nothing is sent rather than
            // an empty frame.
            tracing::error!(%error, "a frame could not be serialized");
            None
        }
    }
}

/// What posting one frame means for the rest of the connection's frames.
enum Posted {
    Sent,
    /// Refused for good: skip it, go on.
    Skipped,
    /// Owed from this event on: stop, the next batch replays.
    Owed,
    /// Closed: stop, and forget the connection.
    Gone,
}

fn post_outcome(result: Result<(), PostError>, delivery: &mut Delivery) -> Posted {
    match result {
        Ok(()) => Posted::Sent,
        Err(PostError::Gone) => {
            delivery.pruned += 1;
            Posted::Gone
        }
        Err(PostError::Unavailable(error)) => {
            tracing::warn!(%error, "a live event did not reach its connection; it is replayed with the next batch");
            delivery.deferred += 1;
            Posted::Owed
        }
        Err(PostError::Rejected(error)) => {
            tracing::error!(%error, "a live event was refused for its connection; skipped");
            delivery.refused += 1;
            Posted::Skipped
        }
    }
}

async fn send_live(
    connection: &Connection,
    frames: &[(&Event, Vec<u8>)],
    ports: &FanoutPorts<'_>,
) -> Result<Delivery, StoreError> {
    let mut delivery = Delivery::default();
    let Some(subscription) = &connection.subscription else {
        return Ok(delivery);
    };
    for (event, bytes) in frames {
        if event.seq <= connection.after || !subscription.matches(event) {
            continue;
        }
        match post_outcome(
            ports.poster.post(&connection.id, bytes).await,
            &mut delivery,
        ) {
            Posted::Sent => delivery.posted += 1,
            Posted::Skipped => {}
            Posted::Owed => {
                owe(connection, event.seq - 1, ports).await?;
                break;
            }
            Posted::Gone => {
                forget(connection, ports).await;
                break;
            }
        }
    }
    Ok(delivery)
}

/// The connection is owed the events after `after`: it catches up with the next batch.
async fn owe(
    connection: &Connection,
    after: u64,
    ports: &FanoutPorts<'_>,
) -> Result<(), StoreError> {
    ports
        .connections
        .settle(
            &connection.id,
            connection.generation,
            after,
            Standing::CatchingUp,
        )
        .await
        .map(|_| ())
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
        let reset = ServerFrame::Reset {
            reason:
                "events after lastSeq are no longer kept: reload, then subscribe without lastSeq"
                    .into(),
        };
        if let Some(bytes) = frame_bytes(&reset) {
            match post_outcome(
                ports.poster.post(&connection.id, &bytes).await,
                &mut delivery,
            ) {
                Posted::Gone => {
                    forget(connection, ports).await;
                    return Ok(delivery);
                }
                Posted::Owed => return Ok(delivery),
                Posted::Sent | Posted::Skipped => delivery.reset += 1,
            }
        }
        ports
            .connections
            .settle(
                &connection.id,
                connection.generation,
                through,
                Standing::Unsubscribed,
            )
            .await?;
        return Ok(delivery);
    }
    if let Some(subscription) = &connection.subscription {
        for event in missed.iter().filter(|e| subscription.matches(e)) {
            let Some(bytes) = frame_bytes(&ServerFrame::Event(event.clone())) else {
                continue;
            };
            match post_outcome(
                ports.poster.post(&connection.id, &bytes).await,
                &mut delivery,
            ) {
                Posted::Sent => delivery.replayed += 1,
                Posted::Skipped => {}
                Posted::Owed => {
                    owe(connection, event.seq - 1, ports).await?;
                    return Ok(delivery);
                }
                Posted::Gone => {
                    forget(connection, ports).await;
                    return Ok(delivery);
                }
            }
        }
    }
    // A subscribe that came meanwhile leaves this unrecorded: its own replay follows its wake.
    ports
        .connections
        .settle(
            &connection.id,
            connection.generation,
            through,
            Standing::Live,
        )
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
            source: None,
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
                    generation: 0,
                })
                .await
                .expect("put");
        }

        async fn subscribe(&self, id: &str, tenant_name: &str, after: u64) {
            self.subscribe_to(id, tenant_name, Subscription::default(), after)
                .await;
        }

        async fn subscribe_to(
            &self,
            id: &str,
            tenant_name: &str,
            filter: Subscription,
            after: u64,
        ) {
            assert!(self
                .connections
                .subscribe(id, Some(filter), after)
                .await
                .expect("subscribe")
                .is_some());
            self.log.wake(&tenant(tenant_name), id).await.expect("wake");
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
                    let (tenant, event, place, woken) = match record {
                        StreamRecord::Appended(e) => {
                            (e.tenant.clone(), Some(e.clone()), e.seq, None)
                        }
                        StreamRecord::Woken {
                            tenant,
                            newest,
                            connection,
                        } => (tenant.clone(), None, *newest, Some(connection.clone())),
                    };
                    let index = match batches.iter().position(|b| b.tenant == tenant) {
                        Some(index) => index,
                        None => {
                            batches.push(TenantBatch {
                                tenant,
                                events: vec![],
                                through: 0,
                                woken: vec![],
                            });
                            batches.len() - 1
                        }
                    };
                    batches[index].events.extend(event);
                    batches[index].woken.extend(woken);
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
        assert_eq!(
            delivery.replayed, 4,
            "6 to 9 replayed, 10 live: {delivery:?}"
        );
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
            .subscribe_to("a-presence", "acme", only_presence, 0)
            .await;
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

    #[tokio::test]
    async fn a_post_that_fails_for_now_is_replayed_with_the_next_batch() {
        use EventType::*;
        let mut world = World::new();
        world.connect("c", "acme").await;
        world.subscribe("c", "acme", 0).await;
        world
            .append(
                (0..2)
                    .map(|_| change("acme", DevicePresence, "d1"))
                    .collect(),
            )
            .await;
        world.drain(10).await;
        world.poster.fail_next("c", 1);
        world
            .append(
                (0..2)
                    .map(|_| change("acme", DevicePresence, "d1"))
                    .collect(),
            )
            .await;
        let failed = world.drain(10).await;
        assert_eq!(failed.deferred, 1);
        assert_eq!(world.poster.seqs("c"), [1, 2]);
        world
            .append(vec![change("acme", DevicePresence, "d1")])
            .await;
        world.drain(10).await;
        assert_eq!(
            world.poster.seqs("c"),
            [1, 2, 3, 4, 5],
            "3 and 4 replayed before 5"
        );
    }

    /// Subscribes the connection again (to `filter`) the first time the fan-out records its
    /// place: a subscribe racing a replay under way.
    struct Racing<'a> {
        inner: &'a MemoryConnections,
        log: &'a MemoryEventLog,
        filter: std::sync::Mutex<Option<Subscription>>,
    }

    #[async_trait::async_trait]
    impl Connections for Racing<'_> {
        async fn put(&self, connection: &Connection) -> Result<(), StoreError> {
            self.inner.put(connection).await
        }
        async fn get(&self, id: &str) -> Result<Option<Connection>, StoreError> {
            self.inner.get(id).await
        }
        async fn subscribe(
            &self,
            id: &str,
            subscription: Option<Subscription>,
            after: u64,
        ) -> Result<Option<u64>, StoreError> {
            self.inner.subscribe(id, subscription, after).await
        }
        async fn settle(
            &self,
            id: &str,
            generation: u64,
            after: u64,
            standing: Standing,
        ) -> Result<bool, StoreError> {
            let racing = self.filter.lock().ok().and_then(|mut f| f.take());
            if let Some(filter) = racing {
                self.inner.subscribe(id, Some(filter), 0).await?;
                self.log.wake(&tenant("acme"), id).await?;
            }
            self.inner.settle(id, generation, after, standing).await
        }
        async fn remove(&self, id: &str) -> Result<(), StoreError> {
            self.inner.remove(id).await
        }
        async fn of_tenant(&self, tenant: &TenantId) -> Result<Vec<Connection>, StoreError> {
            self.inner.of_tenant(tenant).await
        }
    }

    #[tokio::test]
    async fn a_subscribe_during_a_replay_gets_a_replay_of_its_own() {
        use EventType::*;
        let world = World::new();
        world.connect("c", "acme").await;
        world
            .append(vec![
                change("acme", DevicePresence, "d1"),
                change("acme", CommandStatus, "d1"),
                change("acme", DevicePresence, "d2"),
            ])
            .await;
        let presence = Subscription {
            types: [DevicePresence].into(),
            ..Subscription::default()
        };
        world.subscribe_to("c", "acme", presence, 0).await;
        let commands = Subscription {
            types: [CommandStatus].into(),
            ..Subscription::default()
        };
        let racing = Racing {
            inner: &world.connections,
            log: &world.log,
            filter: std::sync::Mutex::new(Some(commands)),
        };
        let ports = FanoutPorts {
            log: &world.log,
            connections: &racing,
            poster: &world.poster,
        };
        let batch = TenantBatch {
            tenant: tenant("acme"),
            events: vec![],
            through: 3,
            woken: vec!["c".into()],
        };
        fan_out(&batch, &ports, NOW).await.expect("fan out");
        let c = world
            .connections
            .get("c")
            .await
            .expect("get")
            .expect("kept");
        assert!(
            c.catching_up && c.after == 0,
            "the presence replay's record is void: {c:?}"
        );
        fan_out(&batch, &ports, NOW).await.expect("fan out");
        let kinds: Vec<String> = world
            .poster
            .frames("c")
            .iter()
            .map(|f| f["type"].as_str().unwrap_or("?").to_owned())
            .collect();
        assert_eq!(
            kinds,
            ["device.presence", "device.presence", "command.status"]
        );
        let c = world
            .connections
            .get("c")
            .await
            .expect("get")
            .expect("kept");
        assert!(!c.catching_up && c.after == 3, "{c:?}");
    }
}
