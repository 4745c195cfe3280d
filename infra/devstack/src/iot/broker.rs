//! An MQTT 3.1.1 broker on 127.0.0.1 standing in for AWS IoT Core's message broker, with the
//! behaviours devices meet there:
//!
//! - QoS 0 and 1 (QoS 2 is refused as AWS does: SUBSCRIBE is granted QoS 1, a QoS 2 PUBLISH
//!   closes the connection); PUBACK for QoS 1; delivery at the lower of the publish's and the
//!   subscription's QoS, QoS 1 deliveries with packet ids; one copy per connection at the highest
//!   QoS of its matching subscriptions.
//! - Clean sessions only: a client asking for a persistent session gets a clean one
//!   (`session_present` false). No retained messages; the retain flag is ignored.
//! - AWS's filter semantics (`sensor/#` does not match `sensor`); wildcards at the first level
//!   skip `$` topics.
//! - Keep alive: silence for 1.5 × the keep alive closes the connection (MQTT_KEEP_ALIVE_TIMEOUT);
//!   a keep alive of 0 is AWS's 1200 s.
//! - A second connection with a client id disconnects the first (DUPLICATE_CLIENTID).
//! - Payloads over `max_payload_bytes` (128 KiB) close the connection (CLIENT_ERROR), counted.
//! - More than `max_publishes_per_second` publishes in a second on one connection: the excess is
//!   dropped and counted (AWS's per-connection limit). QoS 1 excess is still acknowledged so a
//!   client does not stall on unacknowledged packets.
//! - Clients cannot publish to `$` topics (`$aws/...`): the connection is closed (AUTH_ERROR).
//! - Lifecycle events on `$aws/events/presence/{connected,disconnected}/<clientId>`, each with
//!   the connection's `versionNumber` (one per connection of a client id, growing).
//! - Last wills are published when a connection ends other than by DISCONNECT.
//!
//! Slow subscribers never block the broker: each connection has a bounded queue; a delivery to
//! a full queue is dropped and counted, and a connection whose queue stays full for
//! `slow_subscriber_grace` ([`SLOW_SUBSCRIBER_GRACE`] by default) is disconnected.
//!
//! Every timed behaviour (keep alive, the rate limit's window, the slow-subscriber grace) reads
//! the broker's [`BrokerClock`]: tokio's clock, or one a test moves by hand so that what it checks
//! does not depend on how busy the machine is.

use super::subscriptions::{ConnId, SubscriptionTree};
use crate::billing::{BrokerMeter, BrokerUsage, Publisher};
use anyhow::{Context, Result};
use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{
    self as mqtt, ConnAck, ConnectReturnCode, LastWill, Packet, PingResp, PubAck, Publish, SubAck,
    SubscribeReasonCode, UnsubAck,
};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

/// Deliveries waiting per connection; at 100 messages/s that is ten seconds of backlog.
const QUEUE_CAPACITY: usize = 1024;
/// The default `slow_subscriber_grace`.
pub const SLOW_SUBSCRIBER_GRACE: Duration = Duration::from_secs(10);
/// Messages the rules engine may fall behind by before it lags (and counts what it lost).
const BROADCAST_CAPACITY: usize = 65_536;
/// Time a new connection has to send CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// AWS IoT's keep alive when a client asks for 0.
const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(1200);
/// A socket write that takes longer means the client stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// AWS IoT's longest client id.
const MAX_CLIENT_ID_BYTES: usize = 128;
/// Room for a PUBLISH's topic and packet id besides its payload, so the codec only refuses
/// packets that cannot fit a legal payload and the payload check does the rest.
const PACKET_OVERHEAD: usize = 2 + 65_535 + 2;
/// Old connection's wait when a client id reconnects, so its disconnected event comes first.
const TAKEOVER_WAIT: Duration = Duration::from_secs(2);
/// Bytes an in-memory connection holds each way before its writer waits, as a socket's
/// buffers do.
const IN_MEMORY_BUFFER: usize = 64 * 1024;

/// The time the broker's timed behaviours go by, as time since the clock was made.
#[derive(Clone)]
pub struct BrokerClock(Arc<ClockKind>);

enum ClockKind {
    /// tokio's clock, from this instant.
    Real(tokio::time::Instant),
    /// Stands still until advanced.
    Manual(watch::Sender<Duration>),
}

impl BrokerClock {
    pub fn real() -> Self {
        Self(Arc::new(ClockKind::Real(tokio::time::Instant::now())))
    }

    /// A clock that moves only by [`BrokerClock::advance`]: keep alive, the rate limit's window
    /// and the slow-subscriber grace then run on the test's schedule, not the machine's.
    pub fn manual() -> Self {
        Self(Arc::new(ClockKind::Manual(watch::Sender::new(
            Duration::ZERO,
        ))))
    }

    pub fn now(&self) -> Duration {
        match &*self.0 {
            ClockKind::Real(origin) => origin.elapsed(),
            ClockKind::Manual(now) => *now.borrow(),
        }
    }

    /// Moves a manual clock forward, waking what waits for that time; a real clock ignores it.
    pub fn advance(&self, by: Duration) {
        if let ClockKind::Manual(now) = &*self.0 {
            now.send_modify(|now| *now += by);
        }
    }

    async fn sleep_until(&self, at: Duration) {
        match &*self.0 {
            ClockKind::Real(origin) => tokio::time::sleep_until(*origin + at).await,
            ClockKind::Manual(now) => {
                // The sender lives as long as the clock, so this only ends at `at`.
                let _ = now.subscribe().wait_for(|now| *now >= at).await;
            }
        }
    }
}

impl Default for BrokerClock {
    fn default() -> Self {
        Self::real()
    }
}

impl std::fmt::Debug for BrokerClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &*self.0 {
            ClockKind::Real(_) => "real",
            ClockKind::Manual(_) => "manual",
        };
        write!(f, "BrokerClock({kind}, at {:?})", self.now())
    }
}

#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// 0 picks a free port.
    pub port: u16,
    /// AWS IoT's limit is 128 KiB.
    pub max_payload_bytes: usize,
    /// AWS IoT's per-connection limit is 100.
    pub max_publishes_per_second: u32,
    /// A connection whose queue stays full this long is disconnected.
    pub slow_subscriber_grace: Duration,
    /// What keep alive, the rate limit's window and the slow-subscriber grace go by.
    pub clock: BrokerClock,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        Self {
            port: 0,
            max_payload_bytes: 128 * 1024,
            max_publishes_per_second: 100,
            slow_subscriber_grace: SLOW_SUBSCRIBER_GRACE,
            clock: BrokerClock::real(),
        }
    }
}

/// A message the broker accepted, as the rules engine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerMessage {
    pub topic: String,
    pub payload: Bytes,
    /// The publishing client; `None` for cloud publishes and lifecycle events.
    pub client_id: Option<String>,
    /// When the broker accepted it, in ms since the Unix epoch.
    pub timestamp_ms: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BrokerStats {
    pub connected_clients: u64,
    pub connections_total: u64,
    /// Accepted messages: device and cloud publishes, lifecycle events and last wills.
    pub messages_in: u64,
    /// Deliveries handed to subscribers' connections.
    pub messages_out: u64,
    /// Device publishes dropped by the per-connection rate limit.
    pub throttled: u64,
    /// Connections closed for a payload over the limit.
    pub oversize_refused: u64,
    /// Refused protocol use: `$` topics, QoS 2, bad client ids, malformed packets.
    pub rejected: u64,
    /// Deliveries dropped because the subscriber's queue was full.
    pub dropped_slow_subscriber: u64,
    /// Connections closed because their queue stayed full.
    pub slow_subscribers_disconnected: u64,
    pub keep_alive_timeouts: u64,
}

/// Why a connection ended, as AWS IoT names it in the disconnected event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    ClientInitiated,
    ConnectionLost,
    KeepAliveTimeout,
    DuplicateClientId,
    ServerInitiated,
    /// A protocol error or an oversize payload.
    ClientError,
    /// A publish the client may not make (`$` topics).
    AuthError,
}

impl DisconnectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientInitiated => "CLIENT_INITIATED_DISCONNECT",
            Self::ConnectionLost => "CONNECTION_LOST",
            Self::KeepAliveTimeout => "MQTT_KEEP_ALIVE_TIMEOUT",
            Self::DuplicateClientId => "DUPLICATE_CLIENTID",
            Self::ServerInitiated => "SERVER_INITIATED_DISCONNECT",
            Self::ClientError => "CLIENT_ERROR",
            Self::AuthError => "AUTH_ERROR",
        }
    }
}

#[derive(Default)]
struct Counters {
    connected_clients: AtomicU64,
    connections_total: AtomicU64,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    throttled: AtomicU64,
    oversize_refused: AtomicU64,
    rejected: AtomicU64,
    dropped_slow_subscriber: AtomicU64,
    slow_subscribers_disconnected: AtomicU64,
    keep_alive_timeouts: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

struct Delivery {
    topic: Arc<str>,
    payload: Bytes,
    qos: QoS,
}

struct ConnEntry {
    client_id: String,
    tx: mpsc::Sender<Delivery>,
    /// Taken to end the connection; the connection task then reports the reason.
    kick: Option<oneshot::Sender<DisconnectReason>>,
    filters: HashMap<String, QoS>,
    /// When it connected, in ms of the broker's clock, for the connected time AWS bills.
    connected_at_ms: u64,
    /// Since when (ms since the broker started, plus one) the queue has been full; 0 when not.
    full_since: AtomicU64,
}

#[derive(Default)]
struct Registry {
    /// The current connection of each client id.
    clients: HashMap<String, ConnId>,
    conns: HashMap<ConnId, ConnEntry>,
    tree: SubscriptionTree,
    /// The last lifecycle version given to each client id.
    versions: HashMap<String, i64>,
}

struct Inner {
    opts: BrokerOptions,
    registry: RwLock<Registry>,
    messages: broadcast::Sender<BrokerMessage>,
    counters: Counters,
    meter: BrokerMeter,
    next_conn: AtomicU64,
}

pub struct Broker {
    inner: Arc<Inner>,
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    accept: Option<JoinHandle<()>>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Broker {
    pub async fn start(opts: BrokerOptions) -> Result<Broker> {
        let listener = TcpListener::bind(("127.0.0.1", opts.port))
            .await
            .with_context(|| {
                format!(
                    "the MQTT broker cannot listen on 127.0.0.1:{}; is it in use? Choose another port (0 = any free one)",
                    opts.port
                )
            })?;
        let addr = listener.local_addr()?;
        let (messages, _) = broadcast::channel(BROADCAST_CAPACITY);
        let inner = Arc::new(Inner {
            opts,
            registry: RwLock::new(Registry::default()),
            messages,
            counters: Counters::default(),
            meter: BrokerMeter::default(),
            next_conn: AtomicU64::new(1),
        });
        let (shutdown, stopped) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(inner.clone(), listener, stopped));
        tracing::info!("MQTT broker (AWS IoT Core stand-in) listening on {addr}");
        Ok(Broker {
            inner,
            addr,
            shutdown,
            accept: Some(accept),
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn address(&self) -> SocketAddr {
        self.addr
    }

    pub fn options(&self) -> &BrokerOptions {
        &self.inner.opts
    }

    /// A client connection through memory rather than a socket, served as any other (its peer
    /// address is 127.0.0.1:0): what it buffers is fixed, and nothing it carries is in flight
    /// outside this process, so a test knows when the broker has it.
    pub fn connect_in_memory(&self) -> DuplexStream {
        let (client, server) = tokio::io::duplex(IN_MEMORY_BUFFER);
        let peer = SocketAddr::from(([127, 0, 0, 1], 0));
        tokio::spawn(serve(
            self.inner.clone(),
            server,
            peer,
            self.shutdown.subscribe(),
        ));
        client
    }

    /// Publish from the cloud side (data plane), QoS 1 to subscribers.
    pub async fn publish(&self, topic: &str, payload: Bytes) {
        if let Err(e) = self.inner.cloud_publish(topic, payload, QoS::AtLeastOnce) {
            tracing::warn!("cloud publish refused: {e}");
        }
    }

    /// Every accepted message (device publishes, cloud publishes and lifecycle events), for the
    /// rules engine.
    pub fn messages(&self) -> broadcast::Receiver<BrokerMessage> {
        self.inner.messages.subscribe()
    }

    pub fn stats(&self) -> BrokerStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        BrokerStats {
            connected_clients: get(&c.connected_clients),
            connections_total: get(&c.connections_total),
            messages_in: get(&c.messages_in),
            messages_out: get(&c.messages_out),
            throttled: get(&c.throttled),
            oversize_refused: get(&c.oversize_refused),
            rejected: get(&c.rejected),
            dropped_slow_subscriber: get(&c.dropped_slow_subscriber),
            slow_subscribers_disconnected: get(&c.slow_subscribers_disconnected),
            keep_alive_timeouts: get(&c.keep_alive_timeouts),
        }
    }

    /// What AWS IoT Core would bill for the traffic so far: messages by topic and connected time.
    pub fn usage(&self) -> BrokerUsage {
        let now = self.inner.elapsed_ms();
        let open: u64 = self
            .inner
            .read()
            .conns
            .values()
            .map(|c| now.saturating_sub(c.connected_at_ms))
            .sum();
        self.inner.meter.usage(open)
    }

    /// Disconnects the client (SERVER_INITIATED_DISCONNECT) and waits until its disconnected
    /// event is out; false when it is not connected.
    pub async fn disconnect(&self, client_id: &str) -> bool {
        disconnect(&self.inner, client_id).await
    }

    /// Closes every connection (SERVER_INITIATED_DISCONNECT) and stops listening.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
        tracing::info!("MQTT broker on {} stopped", self.addr);
    }

    /// For the data plane and the rules engine: cloud publishes (checked) and disconnects.
    pub(crate) fn handle(&self) -> BrokerHandle {
        BrokerHandle {
            inner: self.inner.clone(),
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // Connections end on their own once told; a dropped broker must not leave them open.
        let _ = self.shutdown.send(true);
    }
}

/// What the data plane and the rules engine need of a broker, without owning it.
#[derive(Clone)]
pub(crate) struct BrokerHandle {
    inner: Arc<Inner>,
}

impl BrokerHandle {
    pub(crate) fn publish(&self, topic: &str, payload: Bytes, qos: QoS) -> Result<(), String> {
        self.inner.cloud_publish(topic, payload, qos)
    }

    pub(crate) fn max_payload_bytes(&self) -> usize {
        self.inner.opts.max_payload_bytes
    }

    pub(crate) async fn disconnect(&self, client_id: &str) -> bool {
        disconnect(&self.inner, client_id).await
    }
}

async fn disconnect(inner: &Inner, client_id: &str) -> bool {
    let closed = {
        let mut registry = inner.write();
        let Some(conn) = registry.clients.get(client_id).copied() else {
            return false;
        };
        let Some(entry) = registry.conns.get_mut(&conn) else {
            return false;
        };
        if let Some(kick) = entry.kick.take() {
            let _ = kick.send(DisconnectReason::ServerInitiated);
        }
        entry.tx.clone()
    };
    // The connection drops its queue's receiver once its disconnected event is out.
    let _ = tokio::time::timeout(TAKEOVER_WAIT, closed.closed()).await;
    true
}

/// A topic name a message may be published to: not empty, no wildcards.
pub(crate) fn valid_topic_name(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#', '\0'])
}

impl Inner {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        // A panic elsewhere must not take the broker down with it: the registry stays usable.
        self.registry.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Registry> {
        self.registry.write().unwrap_or_else(|e| e.into_inner())
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.opts.clock.now().as_millis()).unwrap_or(u64::MAX)
    }

    fn cloud_publish(&self, topic: &str, payload: Bytes, qos: QoS) -> Result<(), String> {
        if !valid_topic_name(topic) {
            return Err(format!(
                "{topic:?} is not a topic name (empty or with wildcards)"
            ));
        }
        if payload.len() > self.opts.max_payload_bytes {
            return Err(format!(
                "the payload of {} bytes is over the limit of {} bytes",
                payload.len(),
                self.opts.max_payload_bytes
            ));
        }
        let qos = if qos == QoS::ExactlyOnce {
            QoS::AtLeastOnce
        } else {
            qos
        };
        self.route(topic, payload, qos, Publisher::Cloud);
        Ok(())
    }

    /// Accepts a message: to the rules engine, then to every matching subscriber.
    fn route(&self, topic: &str, payload: Bytes, qos: QoS, publisher: Publisher<'_>) {
        bump(&self.counters.messages_in);
        let client_id = match publisher {
            Publisher::Device(id) => Some(id.to_owned()),
            Publisher::Cloud | Publisher::Lifecycle(_) => None,
        };
        // No receiver (no rules engine) is fine.
        let _ = self.messages.send(BrokerMessage {
            topic: topic.to_owned(),
            payload: payload.clone(),
            client_id,
            timestamp_ms: now_ms(),
        });
        let mut targets = HashMap::new();
        let mut stuck = Vec::new();
        {
            let registry = self.read();
            registry.tree.matches(topic, &mut targets);
            self.meter.count(
                topic,
                payload.len(),
                publisher,
                targets.len() as u64,
                |level| registry.clients.contains_key(level),
            );
            if targets.is_empty() {
                return;
            }
            let shared_topic: Arc<str> = Arc::from(topic);
            for (conn, granted) in targets {
                let Some(entry) = registry.conns.get(&conn) else {
                    continue;
                };
                let delivery = Delivery {
                    topic: shared_topic.clone(),
                    payload: payload.clone(),
                    qos: if granted == QoS::AtMostOnce {
                        QoS::AtMostOnce
                    } else {
                        qos
                    },
                };
                match entry.tx.try_send(delivery) {
                    Ok(()) => {
                        bump(&self.counters.messages_out);
                        if entry.full_since.load(Ordering::Relaxed) != 0 {
                            entry.full_since.store(0, Ordering::Relaxed);
                        }
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        bump(&self.counters.dropped_slow_subscriber);
                        let now = self.elapsed_ms() + 1;
                        if let Err(since) = entry.full_since.compare_exchange(
                            0,
                            now,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        ) {
                            let grace = u64::try_from(self.opts.slow_subscriber_grace.as_millis())
                                .unwrap_or(u64::MAX);
                            if now.saturating_sub(since) > grace {
                                stuck.push(conn);
                            }
                        }
                    }
                    // The connection is ending.
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
        }
        if !stuck.is_empty() {
            let mut registry = self.write();
            for conn in stuck {
                if let Some(entry) = registry.conns.get_mut(&conn) {
                    if let Some(kick) = entry.kick.take() {
                        bump(&self.counters.slow_subscribers_disconnected);
                        tracing::warn!(
                            "MQTT client {} has not read its messages for {:?}; disconnecting it",
                            entry.client_id,
                            self.opts.slow_subscriber_grace
                        );
                        let _ = kick.send(DisconnectReason::ServerInitiated);
                    }
                }
            }
        }
    }
}

async fn accept_loop(inner: Arc<Inner>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve(inner.clone(), stream, peer, stop.clone()));
                }
                Err(e) => {
                    // Out of file descriptors, usually: wait rather than spin.
                    tracing::warn!("the MQTT broker could not accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    // Every connection saw the stop and is saying goodbye; give them a moment.
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
}

/// Reads until one whole packet is buffered.
async fn read_packet(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
    max_packet: usize,
) -> Result<Packet, CodecError> {
    loop {
        match mqtt::read(buf, max_packet) {
            Err(CodecError::InsufficientBytes(_)) => {}
            other => return other,
        }
        buf.reserve(4096);
        match stream.read_buf(buf).await {
            Ok(0) | Err(_) => return Err(CodecError::InsufficientBytes(1)),
            Ok(_) => {}
        }
    }
}

/// Logs what the codec refused to encode (only a packet id of 0, which this broker never uses).
fn wrote(result: Result<usize, CodecError>) {
    if let Err(e) = result {
        tracing::error!("the MQTT broker could not encode a packet: {e}");
    }
}

async fn serve(
    inner: Arc<Inner>,
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let max_packet = inner.opts.max_payload_bytes + PACKET_OVERHEAD;
    let mut buf = BytesMut::with_capacity(4096);
    let first = tokio::time::timeout(
        CONNECT_TIMEOUT,
        read_packet(&mut stream, &mut buf, max_packet),
    )
    .await;
    let connect = match first {
        Ok(Ok(Packet::Connect(connect))) => connect,
        Ok(Ok(other)) => {
            bump(&inner.counters.rejected);
            tracing::debug!(
                "MQTT connection from {peer} began with {other:?}, not CONNECT; closed"
            );
            return;
        }
        Ok(Err(CodecError::PayloadSizeLimitExceeded(_))) => {
            bump(&inner.counters.oversize_refused);
            return;
        }
        // Closed or silent before CONNECT.
        Ok(Err(CodecError::InsufficientBytes(_))) | Err(_) => return,
        Ok(Err(e)) => {
            bump(&inner.counters.rejected);
            tracing::debug!("MQTT connection from {peer}: unreadable CONNECT ({e}); closed");
            return;
        }
    };
    if *stop.borrow() {
        return;
    }
    // MQTT 3.1.1 §3.1.3.1: an empty client id with a clean session gets one from the server.
    let client_id = if connect.client_id.is_empty() && connect.clean_session {
        format!("local-{}", uuid::Uuid::new_v4().simple())
    } else {
        connect.client_id.clone()
    };
    if client_id.is_empty() || client_id.len() > MAX_CLIENT_ID_BYTES {
        bump(&inner.counters.rejected);
        let mut out = BytesMut::new();
        wrote(ConnAck::new(ConnectReturnCode::BadClientId, false).write(&mut out));
        let _ = stream.write_all(&out).await;
        tracing::info!(
            "MQTT connection from {peer} refused: a client id must have 1 to {MAX_CLIENT_ID_BYTES} bytes, not {}",
            client_id.len()
        );
        return;
    }

    let conn = inner.next_conn.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel(QUEUE_CAPACITY);
    let (kick, kicked) = oneshot::channel();
    let (version, previous) = {
        let mut registry = inner.write();
        let previous = match registry.clients.insert(client_id.clone(), conn) {
            Some(old) => registry.conns.get_mut(&old).map(|entry| {
                if let Some(kick) = entry.kick.take() {
                    let _ = kick.send(DisconnectReason::DuplicateClientId);
                }
                entry.tx.clone()
            }),
            None => None,
        };
        registry.conns.insert(
            conn,
            ConnEntry {
                client_id: client_id.clone(),
                tx,
                kick: Some(kick),
                filters: HashMap::new(),
                connected_at_ms: inner.elapsed_ms(),
                full_since: AtomicU64::new(0),
            },
        );
        let version = registry
            .versions
            .entry(client_id.clone())
            .and_modify(|v| *v += 1)
            .or_insert(0);
        (*version, previous)
    };
    if let Some(previous) = previous {
        tracing::info!(
            "MQTT client {client_id} connected again from {peer}; its previous connection is closed (DUPLICATE_CLIENTID)"
        );
        // The old connection's disconnected event goes out before this one's connected event.
        let _ = tokio::time::timeout(TAKEOVER_WAIT, previous.closed()).await;
    }

    let keep_alive = if connect.keep_alive == 0 {
        DEFAULT_KEEP_ALIVE
    } else {
        Duration::from_secs(u64::from(connect.keep_alive))
    };
    let mut session = Session {
        inner: inner.clone(),
        conn,
        client_id,
        peer,
        version,
        session_id: uuid::Uuid::new_v4().to_string(),
        principal: connect
            .login
            .as_ref()
            .map(|l| l.username.clone())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "local".to_owned()),
        will: connect.last_will,
        max_packet,
        window_start: inner.opts.clock.now(),
        window_count: 0,
        next_pkid: 0,
    };
    let mut out = BytesMut::new();
    wrote(ConnAck::new(ConnectReturnCode::Success, false).write(&mut out));
    bump(&inner.counters.connections_total);
    inner
        .counters
        .connected_clients
        .fetch_add(1, Ordering::Relaxed);
    tracing::debug!(
        "MQTT client {} connected from {peer} (keep alive {keep_alive:?}, version {version})",
        session.client_id
    );
    session.lifecycle_event(None);

    let reason = session
        .run(
            &mut stream,
            buf,
            out,
            &mut rx,
            kicked,
            &mut stop,
            keep_alive,
        )
        .await;
    session.end(reason);
    // Only now may a successor with this client id announce itself (it waits for this).
    drop(rx);
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
}

struct Session {
    inner: Arc<Inner>,
    conn: ConnId,
    client_id: String,
    peer: SocketAddr,
    version: i64,
    session_id: String,
    principal: String,
    will: Option<LastWill>,
    max_packet: usize,
    /// The per-connection rate limit: publishes in the current one-second window, which began
    /// at this time of the broker's clock.
    window_start: Duration,
    window_count: u32,
    next_pkid: u16,
}

impl Session {
    #[allow(clippy::too_many_arguments)]
    async fn run(
        &mut self,
        stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
        mut buf: BytesMut,
        mut out: BytesMut,
        rx: &mut mpsc::Receiver<Delivery>,
        mut kicked: oneshot::Receiver<DisconnectReason>,
        stop: &mut watch::Receiver<bool>,
        keep_alive: Duration,
    ) -> DisconnectReason {
        // MQTT 3.1.1 §3.1.2.10: one and a half keep-alive periods of silence end the connection.
        let allowance = keep_alive + keep_alive / 2;
        let clock = self.inner.opts.clock.clone();
        let mut deadline = clock.now() + allowance;
        loop {
            if !out.is_empty() {
                let written = tokio::select! {
                    r = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&out)) => r,
                    r = &mut kicked => return r.unwrap_or(DisconnectReason::ServerInitiated),
                    _ = stop.changed() => return DisconnectReason::ServerInitiated,
                };
                match written {
                    Ok(Ok(())) => out.clear(),
                    _ => return DisconnectReason::ConnectionLost,
                }
            }
            tokio::select! {
                biased;
                r = &mut kicked => return r.unwrap_or(DisconnectReason::ServerInitiated),
                _ = stop.changed() => return DisconnectReason::ServerInitiated,
                read = stream.read_buf(&mut buf) => {
                    match read {
                        Ok(0) | Err(_) => return DisconnectReason::ConnectionLost,
                        Ok(_) => {}
                    }
                    deadline = clock.now() + allowance;
                    if let Some(reason) = self.handle_buffered(&mut buf, &mut out) {
                        // What was answered before (a PUBACK ahead of a DISCONNECT) still goes out.
                        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&out)).await;
                        return reason;
                    }
                    buf.reserve(4096);
                }
                delivery = rx.recv() => {
                    let Some(delivery) = delivery else {
                        return DisconnectReason::ServerInitiated;
                    };
                    self.write_delivery(delivery, &mut out);
                    // Batch what else is waiting into the same write.
                    for _ in 0..256 {
                        match rx.try_recv() {
                            Ok(d) => self.write_delivery(d, &mut out),
                            Err(_) => break,
                        }
                    }
                }
                () = clock.sleep_until(deadline) => {
                    bump(&self.inner.counters.keep_alive_timeouts);
                    tracing::info!(
                        "MQTT client {} sent nothing for {allowance:?} (1.5 × its keep alive); disconnected",
                        self.client_id
                    );
                    return DisconnectReason::KeepAliveTimeout;
                }
            }
        }
    }

    fn write_delivery(&mut self, delivery: Delivery, out: &mut BytesMut) {
        let mut publish =
            Publish::from_bytes(delivery.topic.as_ref(), delivery.qos, delivery.payload);
        if delivery.qos != QoS::AtMostOnce {
            // Ids 1..=65535 in turn; with clean sessions nothing is resent, so reuse is harmless.
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            publish.pkid = self.next_pkid;
        }
        wrote(publish.write(out));
    }

    /// Handles every whole packet in `buf`; `Some` when the connection must end.
    fn handle_buffered(
        &mut self,
        buf: &mut BytesMut,
        out: &mut BytesMut,
    ) -> Option<DisconnectReason> {
        loop {
            match mqtt::read(buf, self.max_packet) {
                Ok(packet) => {
                    if let Some(reason) = self.handle(packet, out) {
                        return Some(reason);
                    }
                }
                Err(CodecError::InsufficientBytes(_)) => return None,
                Err(CodecError::PayloadSizeLimitExceeded(size)) => {
                    return Some(self.oversize(size));
                }
                Err(e) => {
                    bump(&self.inner.counters.rejected);
                    tracing::info!(
                        "MQTT client {} sent a malformed packet ({e}); disconnected",
                        self.client_id
                    );
                    return Some(DisconnectReason::ClientError);
                }
            }
        }
    }

    fn oversize(&self, size: usize) -> DisconnectReason {
        bump(&self.inner.counters.oversize_refused);
        tracing::info!(
            "MQTT client {} published {size} bytes, over the limit of {} bytes; disconnected",
            self.client_id,
            self.inner.opts.max_payload_bytes
        );
        DisconnectReason::ClientError
    }

    fn handle(&mut self, packet: Packet, out: &mut BytesMut) -> Option<DisconnectReason> {
        match packet {
            Packet::Publish(publish) => return self.publish(publish, out),
            Packet::Subscribe(subscribe) => {
                let mut codes = Vec::with_capacity(subscribe.filters.len());
                let mut registry = self.inner.write();
                for filter in subscribe.filters {
                    if !iot_rules::topic::is_valid_filter(&filter.path) {
                        tracing::debug!(
                            "MQTT client {} subscribed to the invalid filter {:?}",
                            self.client_id,
                            filter.path
                        );
                        codes.push(SubscribeReasonCode::Failure);
                        continue;
                    }
                    // AWS IoT has no QoS 2 and grants QoS 1 instead.
                    let granted = if filter.qos == QoS::AtMostOnce {
                        QoS::AtMostOnce
                    } else {
                        QoS::AtLeastOnce
                    };
                    registry.tree.insert(&filter.path, self.conn, granted);
                    if let Some(entry) = registry.conns.get_mut(&self.conn) {
                        entry.filters.insert(filter.path, granted);
                    }
                    codes.push(SubscribeReasonCode::Success(granted));
                }
                drop(registry);
                wrote(SubAck::new(subscribe.pkid, codes).write(out));
            }
            Packet::Unsubscribe(unsubscribe) => {
                let mut registry = self.inner.write();
                for filter in &unsubscribe.topics {
                    registry.tree.remove(filter, self.conn);
                    if let Some(entry) = registry.conns.get_mut(&self.conn) {
                        entry.filters.remove(filter);
                    }
                }
                drop(registry);
                wrote(UnsubAck::new(unsubscribe.pkid).write(out));
            }
            Packet::PingReq => wrote(PingResp.write(out)),
            // Acknowledges a QoS 1 delivery; clean sessions keep nothing to resend.
            Packet::PubAck(_) => {}
            Packet::Disconnect => {
                // A clean DISCONNECT discards the will (MQTT 3.1.1 §3.14.4).
                self.will = None;
                return Some(DisconnectReason::ClientInitiated);
            }
            other => {
                bump(&self.inner.counters.rejected);
                tracing::info!(
                    "MQTT client {} sent {other:?}, which AWS IoT does not take from a connected client; disconnected",
                    self.client_id
                );
                return Some(DisconnectReason::ClientError);
            }
        }
        None
    }

    fn publish(&mut self, publish: Publish, out: &mut BytesMut) -> Option<DisconnectReason> {
        if publish.payload.len() > self.inner.opts.max_payload_bytes {
            return Some(self.oversize(publish.payload.len()));
        }
        if publish.qos == QoS::ExactlyOnce {
            bump(&self.inner.counters.rejected);
            tracing::info!(
                "MQTT client {} published with QoS 2, which AWS IoT does not support; disconnected",
                self.client_id
            );
            return Some(DisconnectReason::ClientError);
        }
        if !valid_topic_name(&publish.topic) {
            bump(&self.inner.counters.rejected);
            tracing::info!(
                "MQTT client {} published to {:?}, not a topic name; disconnected",
                self.client_id,
                publish.topic
            );
            return Some(DisconnectReason::ClientError);
        }
        if publish.topic.starts_with('$') {
            bump(&self.inner.counters.rejected);
            tracing::info!(
                "MQTT client {} published to the reserved topic {}; disconnected (AUTH_ERROR)",
                self.client_id,
                publish.topic
            );
            return Some(DisconnectReason::AuthError);
        }
        let ack = publish.qos == QoS::AtLeastOnce;
        let now = self.inner.opts.clock.now();
        if now.saturating_sub(self.window_start) >= Duration::from_secs(1) {
            if self.window_count > self.inner.opts.max_publishes_per_second {
                let dropped = self.window_count - self.inner.opts.max_publishes_per_second;
                tracing::warn!(
                    "MQTT client {} was throttled: {dropped} publishes over {} per second dropped",
                    self.client_id,
                    self.inner.opts.max_publishes_per_second
                );
            }
            self.window_start = now;
            self.window_count = 0;
        }
        self.window_count = self.window_count.saturating_add(1);
        if self.window_count > self.inner.opts.max_publishes_per_second {
            bump(&self.inner.counters.throttled);
        } else {
            self.inner.route(
                &publish.topic,
                publish.payload,
                publish.qos,
                Publisher::Device(&self.client_id),
            );
        }
        if ack {
            wrote(PubAck::new(publish.pkid).write(out));
        }
        None
    }

    /// Publishes the connected (`None`) or disconnected event of this connection.
    fn lifecycle_event(&self, disconnected: Option<DisconnectReason>) {
        let event_type = if disconnected.is_some() {
            "disconnected"
        } else {
            "connected"
        };
        let mut event = json!({
            "clientId": self.client_id,
            "timestamp": now_ms(),
            "eventType": event_type,
            "sessionIdentifier": self.session_id,
            "principalIdentifier": self.principal,
            "ipAddress": self.peer.ip().to_string(),
            "versionNumber": self.version,
        });
        if let Some(reason) = disconnected {
            event["clientInitiatedDisconnect"] = json!(reason == DisconnectReason::ClientInitiated);
            event["disconnectReason"] = json!(reason.as_str());
        }
        let topic = format!("$aws/events/presence/{event_type}/{}", self.client_id);
        self.inner.route(
            &topic,
            Bytes::from(event.to_string()),
            QoS::AtLeastOnce,
            Publisher::Lifecycle(&self.client_id),
        );
    }

    /// Forgets the connection's subscriptions, sends its will and its disconnected event.
    fn end(&mut self, reason: DisconnectReason) {
        {
            let mut registry = self.inner.write();
            if let Some(entry) = registry.conns.remove(&self.conn) {
                let connected = self
                    .inner
                    .elapsed_ms()
                    .saturating_sub(entry.connected_at_ms);
                self.inner.meter.connection_closed(connected);
                for filter in entry.filters.keys() {
                    registry.tree.remove(filter, self.conn);
                }
            }
            if registry.clients.get(&self.client_id) == Some(&self.conn) {
                registry.clients.remove(&self.client_id);
            }
        }
        self.inner
            .counters
            .connected_clients
            .fetch_sub(1, Ordering::Relaxed);
        if let Some(will) = self.will.take() {
            if valid_topic_name(&will.topic) && !will.topic.starts_with('$') {
                let qos = if will.qos == QoS::AtMostOnce {
                    QoS::AtMostOnce
                } else {
                    QoS::AtLeastOnce
                };
                self.inner.route(
                    &will.topic,
                    will.message,
                    qos,
                    Publisher::Device(&self.client_id),
                );
            }
        }
        self.lifecycle_event(Some(reason));
        match reason {
            DisconnectReason::ClientInitiated | DisconnectReason::ConnectionLost => {
                tracing::debug!(
                    "MQTT client {} disconnected ({})",
                    self.client_id,
                    reason.as_str()
                )
            }
            _ => tracing::info!(
                "MQTT client {} disconnected ({})",
                self.client_id,
                reason.as_str()
            ),
        }
    }
}
