//! In-memory adapters, for tests and local tools.

use crate::counts::{CountDeltas, Counted, FleetCounts, FleetSummary, Tally};
use crate::event::{Change, Event};
use crate::ports::{Connection, ConnectionPoster, Connections, EventLog, PostError, Standing};
use crate::subscription::Subscription;
use async_trait::async_trait;
use cellbridge_core::store::StoreError;
use cellbridge_core::tenant::TenantId;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use time::OffsetDateTime;

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the events table's stream would carry, in order: events, and the tenant's counter
/// touched by a subscriber waiting for its replay.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamRecord {
    Appended(Event),
    Woken {
        tenant: TenantId,
        newest: u64,
        connection: String,
    },
}

#[derive(Default)]
struct Log {
    events: BTreeMap<(String, u64), (Event, OffsetDateTime)>,
    newest: HashMap<String, u64>,
    recorded_sources: BTreeSet<String>,
    stream: Vec<StreamRecord>,
}

#[derive(Default)]
pub struct MemoryEventLog {
    log: Mutex<Log>,
}

impl MemoryEventLog {
    /// The stream records written since `from` (an index into all of them) and the next index.
    pub fn stream_since(&self, from: usize) -> (Vec<StreamRecord>, usize) {
        let log = locked(&self.log);
        let records = log.stream.get(from..).unwrap_or_default().to_vec();
        (records, log.stream.len())
    }

    /// Forgets the events of `tenant` up to `through`, as the TTL does after the window.
    pub fn expire(&self, tenant: &TenantId, through: u64) {
        let mut log = locked(&self.log);
        log.events
            .retain(|(t, seq), _| t != tenant.as_str() || *seq > through);
    }
}

#[async_trait]
impl EventLog for MemoryEventLog {
    async fn append(
        &self,
        tenant: &TenantId,
        changes: Vec<Change>,
        keep_until: OffsetDateTime,
    ) -> Result<Vec<Event>, StoreError> {
        let mut log = locked(&self.log);
        let mut newest = log.newest.get(tenant.as_str()).copied().unwrap_or(0);
        let mut events = Vec::with_capacity(changes.len());
        for change in changes {
            if let Some(source) = &change.source {
                if !log.recorded_sources.insert(source.clone()) {
                    continue;
                }
            }
            newest += 1;
            let event = change.at_seq(newest);
            log.events.insert(
                (tenant.as_str().to_owned(), newest),
                (event.clone(), keep_until),
            );
            log.stream.push(StreamRecord::Appended(event.clone()));
            events.push(event);
        }
        log.newest.insert(tenant.as_str().to_owned(), newest);
        Ok(events)
    }

    async fn read(
        &self,
        tenant: &TenantId,
        from: u64,
        through: u64,
        now: OffsetDateTime,
    ) -> Result<Vec<Event>, StoreError> {
        if from > through {
            return Ok(Vec::new());
        }
        let log = locked(&self.log);
        let range = (tenant.as_str().to_owned(), from)..=(tenant.as_str().to_owned(), through);
        Ok(log
            .events
            .range(range)
            .filter(|(_, (_, keep_until))| *keep_until > now)
            .map(|(_, (event, _))| event.clone())
            .collect())
    }

    async fn newest(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        Ok(locked(&self.log)
            .newest
            .get(tenant.as_str())
            .copied()
            .unwrap_or(0))
    }

    async fn is_kept(
        &self,
        tenant: &TenantId,
        seq: u64,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        Ok(locked(&self.log)
            .events
            .get(&(tenant.as_str().to_owned(), seq))
            .is_some_and(|(_, keep_until)| *keep_until > now))
    }

    async fn wake(&self, tenant: &TenantId, connection: &str) -> Result<(), StoreError> {
        let mut log = locked(&self.log);
        let newest = log.newest.get(tenant.as_str()).copied().unwrap_or(0);
        log.stream.push(StreamRecord::Woken {
            tenant: tenant.clone(),
            newest,
            connection: connection.to_owned(),
        });
        Ok(())
    }
}

#[derive(Default)]
pub struct MemoryConnections {
    connections: Mutex<BTreeMap<String, Connection>>,
}

#[async_trait]
impl Connections for MemoryConnections {
    async fn put(&self, connection: &Connection) -> Result<(), StoreError> {
        locked(&self.connections).insert(connection.id.clone(), connection.clone());
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        Ok(locked(&self.connections).get(id).cloned())
    }

    async fn subscribe(
        &self,
        id: &str,
        subscription: Option<Subscription>,
        after: u64,
    ) -> Result<Option<u64>, StoreError> {
        let mut connections = locked(&self.connections);
        let Some(connection) = connections.get_mut(id) else {
            return Ok(None);
        };
        connection.catching_up = subscription.is_some();
        connection.subscription = subscription;
        connection.after = after;
        connection.generation += 1;
        Ok(Some(connection.generation))
    }

    async fn settle(
        &self,
        id: &str,
        generation: u64,
        after: u64,
        standing: Standing,
    ) -> Result<bool, StoreError> {
        let mut connections = locked(&self.connections);
        match connections.get_mut(id) {
            Some(connection) if connection.generation == generation => {
                connection.after = after;
                connection.catching_up = standing == Standing::CatchingUp;
                if standing == Standing::Unsubscribed {
                    connection.subscription = None;
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn remove(&self, id: &str) -> Result<(), StoreError> {
        locked(&self.connections).remove(id);
        Ok(())
    }

    async fn of_tenant(&self, tenant: &TenantId) -> Result<Vec<Connection>, StoreError> {
        Ok(locked(&self.connections)
            .values()
            .filter(|c| &c.tenant == tenant)
            .cloned()
            .collect())
    }
}

/// Keeps what was posted to each connection; connections marked gone answer `410`, and the
/// next posts asked to fail answer `503`.
#[derive(Default)]
pub struct RecordingPoster {
    posted: Mutex<BTreeMap<String, Vec<String>>>,
    gone: Mutex<BTreeSet<String>>,
    failing: Mutex<BTreeMap<String, usize>>,
}

impl RecordingPoster {
    /// The next `posts` to `connection_id` fail as a throttled API would.
    pub fn fail_next(&self, connection_id: &str, posts: usize) {
        locked(&self.failing).insert(connection_id.to_owned(), posts);
    }

    pub fn close(&self, connection_id: &str) {
        locked(&self.gone).insert(connection_id.to_owned());
    }

    /// The frames `connection_id` received, as JSON.
    pub fn frames(&self, connection_id: &str) -> Vec<serde_json::Value> {
        locked(&self.posted)
            .get(connection_id)
            .map(|frames| {
                frames
                    .iter()
                    .filter_map(|f| serde_json::from_str(f).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The `seq` of every event frame `connection_id` received, in order.
    pub fn seqs(&self, connection_id: &str) -> Vec<u64> {
        self.frames(connection_id)
            .iter()
            .filter(|f| f["kind"] == "event")
            .filter_map(|f| f["seq"].as_u64())
            .collect()
    }
}

#[async_trait]
impl ConnectionPoster for RecordingPoster {
    async fn post(&self, connection_id: &str, frame: &[u8]) -> Result<(), PostError> {
        if locked(&self.gone).contains(connection_id) {
            return Err(PostError::Gone);
        }
        if let Some(left) = locked(&self.failing)
            .get_mut(connection_id)
            .filter(|n| **n > 0)
        {
            *left -= 1;
            return Err(PostError::Unavailable("throttled".into()));
        }
        locked(&self.posted)
            .entry(connection_id.to_owned())
            .or_default()
            .push(String::from_utf8_lossy(frame).into_owned());
        Ok(())
    }
}

/// Each tenant's fleet numbers, counting each record once.
#[derive(Default)]
pub struct MemoryFleetCounts {
    state: Mutex<Tallies>,
}

/// Each tenant's tallies, and the records counted.
#[derive(Default)]
struct Tallies {
    by_tenant: HashMap<String, BTreeMap<Tally, i64>>,
    counted: BTreeSet<String>,
}

#[async_trait]
impl FleetCounts for MemoryFleetCounts {
    async fn add(&self, tenant: &TenantId, records: Vec<Counted>) -> Result<(), StoreError> {
        let mut state = locked(&self.state);
        let Tallies { by_tenant, counted } = &mut *state;
        for record in records {
            if !counted.insert(record.source) {
                continue;
            }
            let of_tenant = by_tenant.entry(tenant.as_str().to_owned()).or_default();
            for (tally, by) in record.deltas.iter() {
                *of_tenant.entry(tally.clone()).or_insert(0) += by;
            }
        }
        Ok(())
    }

    async fn summary(&self, tenant: &TenantId) -> Result<FleetSummary, StoreError> {
        let state = locked(&self.state);
        let tallies = state
            .by_tenant
            .get(tenant.as_str())
            .cloned()
            .unwrap_or_default();
        Ok(FleetSummary::of(tallies))
    }

    async fn replace(&self, tenant: &TenantId, counted: &CountDeltas) -> Result<(), StoreError> {
        let tallies = counted
            .iter()
            .map(|(tally, value)| (tally.clone(), value))
            .collect();
        locked(&self.state)
            .by_tenant
            .insert(tenant.as_str().to_owned(), tallies);
        Ok(())
    }
}
