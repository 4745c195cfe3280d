//! The live-event ports: the tenant's event log (with its counter), the open connections and
//! posting a frame to one of them.

use crate::event::{Change, Event};
use crate::subscription::Subscription;
use async_trait::async_trait;
use cellbridge_core::store::StoreError;
use cellbridge_core::tenant::TenantId;
use time::OffsetDateTime;

/// Each tenant's events, kept for the replay window, each at its place in the tenant's stream.
/// Every place up to [`EventLog::newest`] holds an event: the counter and the events it gives
/// out are written together.
#[async_trait]
pub trait EventLog: Send + Sync {
    /// Gives `changes` (all of `tenant`, in order) the next places of its stream, keeps them
    /// until `keep_until`, and returns them as events. A change whose `source` was recorded
    /// before (a batch handed again) is left out.
    async fn append(
        &self,
        tenant: &TenantId,
        changes: Vec<Change>,
        keep_until: OffsetDateTime,
    ) -> Result<Vec<Event>, StoreError>;

    /// The events from `from` through `through`, in order, left out those no longer kept at `now`.
    async fn read(
        &self,
        tenant: &TenantId,
        from: u64,
        through: u64,
        now: OffsetDateTime,
    ) -> Result<Vec<Event>, StoreError>;

    /// The last place given out (0 before the first event).
    async fn newest(&self, tenant: &TenantId) -> Result<u64, StoreError>;

    /// Whether the event at `seq` is still kept at `now`.
    async fn is_kept(
        &self,
        tenant: &TenantId,
        seq: u64,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Touches the tenant's stream without adding an event, naming `connection`, so the fan-out
    /// replays to it in order with the tenant's events.
    async fn wake(&self, tenant: &TenantId, connection: &str) -> Result<(), StoreError>;
}

/// An open WebSocket connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    pub id: String,
    pub tenant: TenantId,
    /// Who connected (the token's subject), for the logs.
    pub subject: String,
    pub connected_at: OffsetDateTime,
    /// When the table's TTL removes a connection that never said goodbye.
    pub expires_at: OffsetDateTime,
    /// What it receives; `None` until it subscribes.
    pub subscription: Option<Subscription>,
    /// Its place in the tenant's stream: it is sent the events after this one.
    pub after: u64,
    /// The events from `after + 1` up to the stream's place are to be replayed to it before
    /// anything live (set by a subscribe, cleared by the fan-out once it replayed them).
    pub catching_up: bool,
    /// Counts its subscribes: the fan-out's updates apply only to the subscription they were
    /// made for.
    pub generation: u64,
}

/// Where the fan-out leaves a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Sent everything through its place; events after it go out as they come.
    Live,
    /// Still owed the events after its place (a post failed): the next batch replays them.
    CatchingUp,
    /// Told to reload (`reset`): it receives nothing until it subscribes again.
    Unsubscribed,
}

/// The open connections of every tenant.
#[async_trait]
pub trait Connections: Send + Sync {
    async fn put(&self, connection: &Connection) -> Result<(), StoreError>;

    async fn get(&self, id: &str) -> Result<Option<Connection>, StoreError>;

    /// Sets what `id` receives from after `after` on, to be replayed first (`None`: nothing,
    /// nothing owed). Returns the subscription's generation; `None` when the connection is gone.
    async fn subscribe(
        &self,
        id: &str,
        subscription: Option<Subscription>,
        after: u64,
    ) -> Result<Option<u64>, StoreError>;

    /// Moves `id` to `after`, standing as `standing`, unless it subscribed again since
    /// `generation` (its new subscription's replay is still to come). False when nothing was
    /// recorded.
    async fn settle(
        &self,
        id: &str,
        generation: u64,
        after: u64,
        standing: Standing,
    ) -> Result<bool, StoreError>;

    async fn remove(&self, id: &str) -> Result<(), StoreError>;

    /// Every connection of `tenant`.
    async fn of_tenant(&self, tenant: &TenantId) -> Result<Vec<Connection>, StoreError>;
}

/// Why a frame did not reach a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    /// The connection is closed (API Gateway's `410 Gone`): forget it.
    #[error("the connection is gone")]
    Gone,
    /// Throttled, timed out or a 5xx: a later frame may get through.
    #[error("posting failed for now: {0}")]
    Unavailable(String),
    /// Refused for good (a frame too large, access denied).
    #[error("posting was refused: {0}")]
    Rejected(String),
}

/// Sends frames to connections (API Gateway's management API in AWS and locally).
#[async_trait]
pub trait ConnectionPoster: Send + Sync {
    async fn post(&self, connection_id: &str, frame: &[u8]) -> Result<(), PostError>;
}
