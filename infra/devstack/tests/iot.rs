//! The local AWS IoT Core: the MQTT broker with real rumqttc clients (QoS, AWS's filters,
//! lifecycle events, duplicate client ids, the payload and rate limits, keep alive, slow
//! subscribers), the data plane through aws-sdk-iotdataplane, and the rules engine's actions
//! against the local AWS emulators.
//!
//! Tests of timed behaviours (keep alive, the rate limit, the slow-subscriber grace) give the
//! broker a clock they move by hand and connect through memory, on a single-threaded runtime:
//! time passes only where the test says, so they check exact durations and do not depend on how
//! busy the machine is.

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use devstack::iot::rules::FunctionInvoker;
use devstack::iot::{
    Broker, BrokerClock, BrokerMessage, BrokerOptions, DataPlane, RulesEngine, RulesOptions,
};
use devstack::local_aws::{LocalAws, LocalAwsPorts};
use devstack::template::Template;
use devstack::tools::{workspace_root, Tools};
use futures::future::BoxFuture;
use futures::FutureExt as _;
use rumqttc::mqttbytes::v4::{self as mqtt, Connect, Packet, Publish, Subscribe};
use rumqttc::{AsyncClient, Event, MqttOptions, QoS};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, DuplexStream, WriteHalf};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(10);

/// A rumqttc client whose event loop runs in its own task (as rumqttc wants), stopping at the
/// first connection error instead of reconnecting.
struct Client {
    mqtt: AsyncClient,
    publishes: mpsc::UnboundedReceiver<Publish>,
    acks: mpsc::UnboundedReceiver<Packet>,
    /// `Some(error)` once the connection ended.
    ended: watch::Receiver<Option<String>>,
    task: JoinHandle<()>,
}

async fn connect(addr: SocketAddr, id: &str) -> Result<Client> {
    connect_with(addr, id, |_| {}).await
}

async fn connect_with(
    addr: SocketAddr,
    id: &str,
    tweak: impl FnOnce(&mut MqttOptions),
) -> Result<Client> {
    let mut opts = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(1 << 20, 1 << 20);
    tweak(&mut opts);
    let (mqtt, mut eventloop) = AsyncClient::new(opts, 1000);
    let (publish_tx, publishes) = mpsc::unbounded_channel();
    let (ack_tx, acks) = mpsc::unbounded_channel();
    let (ended_tx, ended) = watch::channel(None);
    let task = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = publish_tx.send(p);
                }
                Ok(Event::Incoming(
                    packet @ (Packet::ConnAck(_) | Packet::SubAck(_) | Packet::PubAck(_)),
                )) => {
                    let _ = ack_tx.send(packet);
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = ended_tx.send(Some(e.to_string()));
                    break;
                }
            }
        }
    });
    let mut client = Client {
        mqtt,
        publishes,
        acks,
        ended,
        task,
    };
    match client.next_ack().await? {
        Packet::ConnAck(ack) if ack.code == rumqttc::ConnectReturnCode::Success => {}
        other => bail!("{id}: expected a successful CONNACK, got {other:?}"),
    }
    Ok(client)
}

impl Client {
    async fn next_ack(&mut self) -> Result<Packet> {
        tokio::time::timeout(WAIT, self.acks.recv())
            .await
            .context("no acknowledgement in time")?
            .context("the client's event loop ended")
    }

    async fn subscribe(
        &mut self,
        filter: &str,
        qos: QoS,
    ) -> Result<Vec<rumqttc::SubscribeReasonCode>> {
        self.mqtt.subscribe(filter, qos).await?;
        loop {
            if let Packet::SubAck(ack) = self.next_ack().await? {
                return Ok(ack.return_codes);
            }
        }
    }

    async fn next_publish(&mut self) -> Result<Publish> {
        tokio::time::timeout(WAIT, self.publishes.recv())
            .await
            .context("no message in time")?
            .context("the client's event loop ended")
    }

    /// Waits until the broker closed the connection; the client's error.
    async fn wait_ended(&mut self) -> Result<String> {
        let ended = tokio::time::timeout(WAIT, self.ended.wait_for(Option::is_some))
            .await
            .context("the connection did not end in time")?
            .map_err(|_| anyhow::anyhow!("the event loop is gone"))?;
        Ok(ended.clone().unwrap_or_default())
    }

    fn is_connected(&self) -> bool {
        self.ended.borrow().is_none()
    }
}

/// The next accepted message on a topic starting with `prefix`.
async fn next_message(
    rx: &mut broadcast::Receiver<BrokerMessage>,
    prefix: &str,
) -> Result<BrokerMessage> {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = tokio::time::timeout(left, rx.recv())
            .await
            .with_context(|| format!("no message on {prefix}* in time"))??;
        if m.topic.starts_with(prefix) {
            return Ok(m);
        }
    }
}

/// The next lifecycle event of `client_id`, as JSON.
async fn next_presence(
    rx: &mut broadcast::Receiver<BrokerMessage>,
    client_id: &str,
) -> Result<Value> {
    loop {
        let m = next_message(rx, "$aws/events/presence/").await?;
        if m.topic.ends_with(&format!("/{client_id}")) {
            assert_eq!(m.client_id, None, "lifecycle events come from the broker");
            let event: Value = serde_json::from_slice(&m.payload)?;
            let kind = event["eventType"].as_str().unwrap_or_default();
            assert_eq!(m.topic, format!("$aws/events/presence/{kind}/{client_id}"));
            return Ok(event);
        }
    }
}

async fn broker() -> Result<Broker> {
    Broker::start(BrokerOptions::default()).await
}

/// A broker whose time is `clock`'s.
async fn broker_on(clock: &BrokerClock) -> Result<Broker> {
    Broker::start(BrokerOptions {
        clock: clock.clone(),
        ..BrokerOptions::default()
    })
    .await
}

fn text(p: &Publish) -> String {
    String::from_utf8_lossy(&p.payload).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_sub_at_qos_0_and_1_with_aws_wildcards() -> Result<()> {
    let broker = broker().await?;
    let addr = broker.address();
    let mut sub = connect(addr, "sub").await?;
    assert_eq!(
        sub.subscribe("sensors/+/temp", QoS::AtLeastOnce).await?,
        [rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    sub.subscribe("sensor/#", QoS::AtMostOnce).await?;
    // QoS 2 is granted as 1, as AWS IoT does; a broken filter is refused.
    assert_eq!(
        sub.subscribe("done", QoS::ExactlyOnce).await?,
        [rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    assert_eq!(
        sub.subscribe("bad/#/filter", QoS::AtMostOnce).await?,
        [rumqttc::SubscribeReasonCode::Failure]
    );
    let mut all = connect(addr, "all").await?;
    all.subscribe("#", QoS::AtLeastOnce).await?;
    let mut publisher = connect(addr, "pub").await?;

    publisher
        .mqtt
        .publish("sensors/s1/temp", QoS::AtLeastOnce, false, "q1")
        .await?;
    // The broker acknowledges QoS 1.
    assert!(matches!(publisher.next_ack().await?, Packet::PubAck(_)));
    for (topic, qos, payload) in [
        ("sensors/s1/temp", QoS::AtMostOnce, "q0"),
        ("sensor", QoS::AtLeastOnce, "bare"),
        ("sensor/x/y", QoS::AtLeastOnce, "deep"),
        ("sensors/s1/temp/extra", QoS::AtLeastOnce, "too deep"),
        ("done", QoS::AtLeastOnce, "done"),
    ] {
        publisher.mqtt.publish(topic, qos, false, payload).await?;
    }

    // One connection's messages arrive in order, so "done" comes last.
    let mut got = Vec::new();
    loop {
        let p = sub.next_publish().await?;
        let last = p.topic == "done";
        got.push(p);
        if last {
            break;
        }
    }
    let summary: Vec<(String, String, QoS)> = got
        .iter()
        .map(|p| (p.topic.clone(), text(p), p.qos))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("sensors/s1/temp".into(), "q1".into(), QoS::AtLeastOnce),
            ("sensors/s1/temp".into(), "q0".into(), QoS::AtMostOnce),
            // `sensor` is not under `sensor/#` (AWS); a QoS 0 subscription gets QoS 0.
            ("sensor/x/y".into(), "deep".into(), QoS::AtMostOnce),
            ("done".into(), "done".into(), QoS::AtLeastOnce),
        ]
    );
    assert!(got[0].pkid != 0, "QoS 1 deliveries carry a packet id");

    let mut everything = Vec::new();
    loop {
        let p = all.next_publish().await?;
        let last = p.topic == "done";
        everything.push(p.topic.clone());
        if last {
            break;
        }
    }
    assert_eq!(
        everything,
        [
            "sensors/s1/temp",
            "sensors/s1/temp",
            "sensor",
            "sensor/x/y",
            "sensors/s1/temp/extra",
            "done"
        ],
        "`#` gets every topic but the `$aws` lifecycle events"
    );
    let stats = broker.stats();
    assert_eq!(stats.connected_clients, 3);
    assert_eq!(stats.connections_total, 3);
    broker.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_events_pair_versions_and_tell_why() -> Result<()> {
    let broker = broker().await?;
    let addr = broker.address();
    let mut events = broker.messages();
    let mut watcher = connect(addr, "watcher").await?;
    watcher
        .subscribe("$aws/events/presence/+/dev-1", QoS::AtLeastOnce)
        .await?;

    let before = chrono_ms();
    let first = connect(addr, "dev-1").await?;
    let connected = next_presence(&mut events, "dev-1").await?;
    assert_eq!(connected["eventType"], "connected");
    assert_eq!(connected["clientId"], "dev-1");
    assert_eq!(connected["ipAddress"], "127.0.0.1");
    assert!(connected["principalIdentifier"].is_string());
    let at = connected["timestamp"].as_i64().context("timestamp")?;
    assert!(at >= before && at <= chrono_ms(), "{at}");
    assert!(connected.get("disconnectReason").is_none());
    // Subscribers to the reserved presence topics get the events too.
    let seen = watcher.next_publish().await?;
    assert_eq!(seen.topic, "$aws/events/presence/connected/dev-1");
    assert_eq!(serde_json::from_slice::<Value>(&seen.payload)?, connected);

    first.mqtt.disconnect().await?;
    let gone = next_presence(&mut events, "dev-1").await?;
    assert_eq!(gone["eventType"], "disconnected");
    assert_eq!(gone["disconnectReason"], "CLIENT_INITIATED_DISCONNECT");
    assert_eq!(gone["clientInitiatedDisconnect"], true);
    assert_eq!(gone["versionNumber"], connected["versionNumber"]);
    assert_eq!(gone["sessionIdentifier"], connected["sessionIdentifier"]);

    // Reconnecting: a new session with a higher version; a socket that just closes is lost.
    let second = connect(addr, "dev-1").await?;
    let again = next_presence(&mut events, "dev-1").await?;
    assert_eq!(again["eventType"], "connected");
    let v0 = connected["versionNumber"].as_i64().context("version")?;
    let v1 = again["versionNumber"].as_i64().context("version")?;
    assert!(v1 > v0, "{v1} > {v0}");
    assert_ne!(again["sessionIdentifier"], connected["sessionIdentifier"]);
    second.task.abort();
    let lost = next_presence(&mut events, "dev-1").await?;
    assert_eq!(lost["eventType"], "disconnected");
    assert_eq!(lost["disconnectReason"], "CONNECTION_LOST");
    assert_eq!(lost["clientInitiatedDisconnect"], false);
    assert_eq!(lost["versionNumber"], v1);

    // A server-initiated disconnect, and one of a client that is not there.
    let third = connect(addr, "dev-1").await?;
    assert_eq!(
        next_presence(&mut events, "dev-1").await?["versionNumber"],
        v1 + 1
    );
    assert!(broker.disconnect("dev-1").await);
    let kicked = next_presence(&mut events, "dev-1").await?;
    assert_eq!(kicked["disconnectReason"], "SERVER_INITIATED_DISCONNECT");
    assert_eq!(kicked["versionNumber"], v1 + 1);
    drop(third);
    assert!(!broker.disconnect("nobody").await);
    broker.shutdown().await;
    Ok(())
}

fn chrono_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_with_the_client_id_kicks_the_first() -> Result<()> {
    let broker = broker().await?;
    let addr = broker.address();
    let mut events = broker.messages();
    let mut old = connect(addr, "twin").await?;
    old.subscribe("twin/inbox", QoS::AtLeastOnce).await?;
    let first = next_presence(&mut events, "twin").await?;

    let mut new = connect(addr, "twin").await?;
    old.wait_ended().await?;
    // The old session's end comes first, with its own version; then the new one begins.
    let kicked = next_presence(&mut events, "twin").await?;
    assert_eq!(kicked["eventType"], "disconnected");
    assert_eq!(kicked["disconnectReason"], "DUPLICATE_CLIENTID");
    assert_eq!(kicked["versionNumber"], first["versionNumber"]);
    let second = next_presence(&mut events, "twin").await?;
    assert_eq!(second["eventType"], "connected");
    assert!(second["versionNumber"].as_i64() > first["versionNumber"].as_i64());

    // The old subscriptions went with the old connection; the new one works.
    new.subscribe("twin/inbox", QoS::AtLeastOnce).await?;
    broker
        .publish("twin/inbox", Bytes::from_static(b"hello"))
        .await;
    let p = new.next_publish().await?;
    assert_eq!(text(&p), "hello");
    assert!(new.is_connected());
    assert_eq!(broker.stats().connected_clients, 1);
    broker.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_payloads_are_refused_without_touching_other_clients() -> Result<()> {
    let broker = broker().await?;
    let addr = broker.address();
    let mut events = broker.messages();
    let mut sub = connect(addr, "reader").await?;
    sub.subscribe("big/#", QoS::AtLeastOnce).await?;
    let mut big = connect(addr, "big-sender").await?;
    let _ = next_presence(&mut events, "big-sender").await?;

    let limit = 128 * 1024;
    big.mqtt
        .publish("big/x", QoS::AtLeastOnce, false, vec![b'x'; limit + 1])
        .await?;
    big.wait_ended().await?;
    let gone = next_presence(&mut events, "big-sender").await?;
    assert_eq!(gone["disconnectReason"], "CLIENT_ERROR");
    assert_eq!(broker.stats().oversize_refused, 1);

    // Exactly the limit is fine, and the reader never saw the oversize one.
    let fine = connect(addr, "fine-sender").await?;
    fine.mqtt
        .publish("big/y", QoS::AtLeastOnce, false, vec![b'y'; limit])
        .await?;
    let p = sub.next_publish().await?;
    assert_eq!((p.topic.as_str(), p.payload.len()), ("big/y", limit));
    assert!(sub.is_connected());
    broker.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_cannot_publish_to_reserved_topics() -> Result<()> {
    let broker = broker().await?;
    let addr = broker.address();
    let mut events = broker.messages();
    // Read only at the end: `next_presence` passes over what it is not looking for.
    let mut everything = broker.messages();
    let mut forger = connect(addr, "forger").await?;
    let _ = next_presence(&mut events, "forger").await?;
    forger
        .mqtt
        .publish(
            "$aws/events/presence/connected/someone",
            QoS::AtLeastOnce,
            false,
            "{}",
        )
        .await?;
    forger.wait_ended().await?;
    let gone = next_presence(&mut events, "forger").await?;
    assert_eq!(gone["disconnectReason"], "AUTH_ERROR");
    assert_eq!(broker.stats().rejected, 1);
    // Nothing of the forger's reached the rules engine.
    while let Ok(m) = everything.try_recv() {
        assert_ne!(m.client_id.as_deref(), Some("forger"), "{m:?}");
    }
    broker.shutdown().await;
    Ok(())
}

/// A raw MQTT connection through memory, for clients rumqttc will not imitate (silent, or not
/// reading) and for tests on the paused clock.
async fn memory_connect(broker: &Broker, id: &str, keep_alive: u16) -> Result<DuplexStream> {
    let mut stream = broker.connect_in_memory();
    let mut connect = Connect::new(id);
    connect.keep_alive = keep_alive;
    let mut out = BytesMut::new();
    connect.write(&mut out)?;
    stream.write_all(&out).await?;
    match raw_read(&mut stream).await? {
        Packet::ConnAck(ack) if ack.code == rumqttc::ConnectReturnCode::Success => Ok(stream),
        other => bail!("expected CONNACK, got {other:?}"),
    }
}

async fn raw_read(stream: &mut (impl AsyncRead + Unpin)) -> Result<Packet> {
    let mut buf = BytesMut::new();
    loop {
        match mqtt::read(&mut buf, 1 << 20) {
            Ok(p) => return Ok(p),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(e) => bail!("unreadable packet: {e}"),
        }
        let n = tokio::time::timeout(WAIT, stream.read_buf(&mut buf)).await??;
        if n == 0 {
            bail!("the broker closed the connection");
        }
    }
}

/// Encodes one packet (`write` is each rumqttc packet's encoder).
fn encoded(
    write: impl FnOnce(&mut BytesMut) -> Result<usize, rumqttc::mqttbytes::Error>,
) -> Result<BytesMut> {
    let mut out = BytesMut::new();
    write(&mut out)?;
    Ok(out)
}

/// A raw client on an in-memory connection that reads whatever the broker sends as it comes, so
/// it never looks like a slow subscriber.
struct MemoryClient {
    out: WriteHalf<DuplexStream>,
    packets: mpsc::UnboundedReceiver<Packet>,
    /// Ends when the broker closes the connection.
    reader: JoinHandle<()>,
}

impl MemoryClient {
    async fn connect(broker: &Broker, id: &str, keep_alive: u16) -> Result<Self> {
        let (mut input, out) = tokio::io::split(memory_connect(broker, id, keep_alive).await?);
        let (tx, packets) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let mut buf = BytesMut::new();
            loop {
                match mqtt::read(&mut buf, 1 << 20) {
                    Ok(packet) => {
                        if tx.send(packet).is_err() {
                            return;
                        }
                        continue;
                    }
                    Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                    Err(_) => return,
                }
                match input.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        });
        Ok(Self {
            out,
            packets,
            reader,
        })
    }

    async fn send(&mut self, packet: BytesMut) -> Result<()> {
        self.out.write_all(&packet).await?;
        Ok(())
    }

    async fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<()> {
        let mut subscribe = Subscribe::new(filter, qos);
        subscribe.pkid = 1;
        self.send(encoded(|out| subscribe.write(out))?).await?;
        loop {
            if let Packet::SubAck(_) = self.next_packet().await? {
                return Ok(());
            }
        }
    }

    async fn next_packet(&mut self) -> Result<Packet> {
        tokio::time::timeout(WAIT, self.packets.recv())
            .await
            .context("no packet in time")?
            .context("the broker closed the connection")
    }

    async fn next_publish(&mut self) -> Result<Publish> {
        loop {
            if let Packet::Publish(p) = self.next_packet().await? {
                return Ok(p);
            }
        }
    }

    /// PINGREQ, then waits for the PINGRESP: the broker has read everything sent before.
    async fn ping(&mut self) -> Result<()> {
        self.send(encoded(|out| mqtt::PingReq.write(out))?).await?;
        loop {
            if let Packet::PingResp = self.next_packet().await? {
                return Ok(());
            }
        }
    }

    fn is_connected(&self) -> bool {
        !self.reader.is_finished()
    }
}

#[tokio::test]
async fn a_flooding_client_is_throttled_and_others_are_not() -> Result<()> {
    const FLOOD: u64 = 600;
    const CALM: usize = 40;
    let clock = BrokerClock::manual();
    let broker = broker_on(&clock).await?;
    let mut sub = MemoryClient::connect(&broker, "counter", 0).await?;
    sub.subscribe("load/#", QoS::AtLeastOnce).await?;
    let mut flooder = MemoryClient::connect(&broker, "flooder", 0).await?;
    let mut calm = MemoryClient::connect(&broker, "calm", 0).await?;

    let flooding = async {
        for i in 0..FLOOD {
            let publish = Publish::new("load/flood", QoS::AtMostOnce, i.to_string());
            flooder.send(encoded(|out| publish.write(out))?).await?;
        }
        anyhow::Ok(())
    };
    // 50 a second, by the broker's clock.
    let calming = async {
        for i in 0..CALM {
            let mut publish = Publish::new("load/calm", QoS::AtLeastOnce, i.to_string());
            publish.pkid = u16::try_from(i + 1)?;
            calm.send(encoded(|out| publish.write(out))?).await?;
            loop {
                if let Packet::PubAck(_) = calm.next_packet().await? {
                    break;
                }
            }
            clock.advance(Duration::from_millis(20));
        }
        anyhow::Ok(())
    };
    tokio::try_join!(flooding, calming)?;

    // Every flood message is either delivered or counted as throttled: nothing lost silently.
    let mut calm_seen = Vec::new();
    let mut flood_seen = 0u64;
    let deadline = Instant::now() + WAIT;
    while calm_seen.len() < CALM || flood_seen + broker.stats().throttled < FLOOD {
        if Instant::now() > deadline {
            bail!(
                "calm {} of {CALM}, flood {flood_seen} delivered + {} throttled of {FLOOD}",
                calm_seen.len(),
                broker.stats().throttled
            );
        }
        let Ok(Some(packet)) =
            tokio::time::timeout(Duration::from_millis(200), sub.packets.recv()).await
        else {
            continue;
        };
        let Packet::Publish(p) = packet else {
            continue;
        };
        match p.topic.as_str() {
            "load/calm" => calm_seen.push(text(&p)),
            _ => flood_seen += 1,
        }
    }
    let elapsed = clock.now().as_secs() + 1;
    let throttled = broker.stats().throttled;
    assert_eq!(flood_seen + throttled, FLOOD);
    assert!(throttled > 0, "the flood was throttled");
    assert!(
        flood_seen <= 100 * (elapsed + 1),
        "{flood_seen} flood messages got through in about {elapsed} s"
    );
    // The whole flood came within the broker's first second: exactly the limit got through.
    assert_eq!(flood_seen, 100);
    let expected: Vec<String> = (0..CALM).map(|i| i.to_string()).collect();
    assert_eq!(calm_seen, expected, "every calm message, in order");
    assert!(
        flooder.is_connected(),
        "throttling drops messages, not the connection"
    );
    broker.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn the_broker_meters_messages_in_5_kb_units_and_connected_time_as_aws_bills_them(
) -> Result<()> {
    let clock = BrokerClock::manual();
    let broker = broker_on(&clock).await?;
    let mut app = MemoryClient::connect(&broker, "app", 0).await?;
    app.subscribe("devices/+/commands", QoS::AtLeastOnce)
        .await?;
    let mut device = MemoryClient::connect(&broker, "d1", 60).await?;
    let start = broker.usage();

    // 6 KB of payload and its topic: two 5 KB units.
    let mut publish = Publish::new("devices/d1/telemetry", QoS::AtLeastOnce, vec![b'x'; 6_000]);
    publish.pkid = 1;
    device.send(encoded(|out| publish.write(out))?).await?;
    loop {
        if let Packet::PubAck(_) = device.next_packet().await? {
            break;
        }
    }
    // Keep-alive pings are free.
    device.ping().await?;
    // A cloud publish bills its publish and each delivery.
    broker
        .publish("devices/d1/commands", Bytes::from_static(b"{}"))
        .await;
    app.next_publish().await?;
    clock.advance(Duration::from_secs(90));

    let usage = broker.usage().since(&start);
    let topic = |pattern: &str| {
        usage
            .topics
            .iter()
            .find(|t| t.pattern == pattern)
            .cloned()
            .with_context(|| format!("no {pattern} in {usage:?}"))
    };
    let telemetry = topic("devices/+/telemetry")?;
    assert_eq!(
        (
            telemetry.published,
            telemetry.published_units,
            telemetry.delivered
        ),
        (1, 2, 0)
    );
    let commands = topic("devices/+/commands")?;
    assert_eq!(
        (
            commands.published_units,
            commands.delivered,
            commands.delivered_units
        ),
        (1, 1, 1)
    );
    assert_eq!(usage.topics.len(), 2, "the ping is no message: {usage:?}");
    // Two connections open for the 90 s the clock moved.
    assert_eq!(usage.connected_ms, 2 * 90_000);

    // A closed connection keeps its time, and AWS's own lifecycle events bill no publish.
    broker.disconnect("d1").await;
    let after = broker.usage().since(&start);
    let disconnected = after
        .topics
        .iter()
        .find(|t| t.pattern == "$aws/events/presence/disconnected/+")
        .context("the disconnected event is metered")?;
    assert_eq!(
        (disconnected.published, disconnected.published_units),
        (1, 0)
    );
    assert_eq!(after.connected_ms, 2 * 90_000);
    broker.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn silence_past_one_and_a_half_keep_alives_disconnects() -> Result<()> {
    let clock = BrokerClock::manual();
    let broker = broker_on(&clock).await?;
    let mut events = broker.messages();
    // One client pings every keep alive and stays; the other says nothing after CONNECT.
    let mut pinger = MemoryClient::connect(&broker, "pinger", 1).await?;
    let mut silent = memory_connect(&broker, "silent", 1).await?;
    let mut rest = [0u8; 16];
    clock.advance(Duration::from_millis(1000));
    pinger.ping().await?;
    clock.advance(Duration::from_millis(400));
    // The round trip has the broker run what the clock woke, the silent session included.
    pinger.ping().await?;
    assert_eq!(
        broker.stats().keep_alive_timeouts,
        0,
        "still within 1.5 × the keep alive"
    );
    clock.advance(Duration::from_millis(100));
    let n = tokio::time::timeout(WAIT, silent.read(&mut rest)).await??;
    assert_eq!(n, 0, "the broker closed the connection");
    let connected = next_presence(&mut events, "silent").await?;
    assert_eq!(connected["eventType"], "connected");
    let gone = next_presence(&mut events, "silent").await?;
    assert_eq!(gone["disconnectReason"], "MQTT_KEEP_ALIVE_TIMEOUT");
    assert_eq!(gone["clientInitiatedDisconnect"], false);
    assert_eq!(broker.stats().keep_alive_timeouts, 1);
    // Two more seconds, a ping a second.
    for _ in 0..2 {
        clock.advance(Duration::from_secs(1));
        pinger.ping().await?;
    }
    assert!(pinger.is_connected(), "a client that pings stays");
    assert_eq!(broker.stats().keep_alive_timeouts, 1);
    broker.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_does_not_hold_up_the_broker() -> Result<()> {
    let clock = BrokerClock::manual();
    let broker = broker_on(&clock).await?;
    let grace = broker.options().slow_subscriber_grace;
    let mut events = broker.messages();
    let mut stuck = memory_connect(&broker, "stuck", 0).await?;
    let mut subscribe = Subscribe::new("slow/#", QoS::AtMostOnce);
    subscribe.pkid = 1;
    stuck
        .write_all(&encoded(|out| subscribe.write(out))?)
        .await?;
    assert!(matches!(raw_read(&mut stuck).await?, Packet::SubAck(_)));
    let mut fast = MemoryClient::connect(&broker, "fast", 0).await?;
    fast.subscribe("fast/#", QoS::AtLeastOnce).await?;

    // Far more than the connection's buffer and queue hold; `stuck` reads none. On this
    // single-threaded runtime its connection runs only at the yield, so it fills the buffer and
    // waits on it before its queue can fill: the queue stays full from the first drop.
    let payload = Bytes::from(vec![b's'; 16 * 1024]);
    let mut published = 0;
    while broker.stats().dropped_slow_subscriber == 0 {
        for _ in 0..100 {
            broker.publish("slow/data", payload.clone()).await;
        }
        published += 100;
        assert!(
            published < 200_000,
            "deliveries to a full queue are dropped"
        );
        tokio::task::yield_now().await;
    }
    broker
        .publish("fast/ping", Bytes::from_static(b"still here"))
        .await;
    assert_eq!(text(&fast.next_publish().await?), "still here");

    // The queue has been full for exactly as long as the clock was moved.
    clock.advance(grace - Duration::from_millis(100));
    broker.publish("slow/data", payload.clone()).await;
    assert_eq!(
        broker.stats().slow_subscribers_disconnected,
        0,
        "not disconnected within the grace"
    );
    clock.advance(Duration::from_millis(200));
    broker.publish("slow/data", payload.clone()).await;
    assert_eq!(
        broker.stats().slow_subscribers_disconnected,
        1,
        "still full after the grace period: disconnected"
    );
    let _ = next_presence(&mut events, "stuck").await?;
    let gone = next_presence(&mut events, "stuck").await?;
    assert_eq!(gone["disconnectReason"], "SERVER_INITIATED_DISCONNECT");
    assert!(fast.is_connected());
    broker.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_plane_publishes_to_mqtt_devices() -> Result<()> {
    use aws_sdk_iotdataplane::config::{BehaviorVersion, Credentials, Region};
    let broker = broker().await?;
    let plane = DataPlane::start(&broker, 0).await?;
    let mut device = connect(broker.address(), "trk-1").await?;
    device
        .subscribe("devices/trk-1/commands", QoS::AtLeastOnce)
        .await?;

    let config = aws_sdk_iotdataplane::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .endpoint_url(plane.url())
        .build();
    let client = aws_sdk_iotdataplane::Client::from_conf(config);
    let command = json!({"commandId": "c-1", "name": "reboot"});
    client
        .publish()
        .topic("devices/trk-1/commands")
        .qos(1)
        .payload(aws_sdk_iotdataplane::primitives::Blob::new(
            command.to_string(),
        ))
        .send()
        .await?;
    let p = device.next_publish().await?;
    assert_eq!(p.topic, "devices/trk-1/commands");
    assert_eq!(p.qos, QoS::AtLeastOnce);
    assert_eq!(serde_json::from_slice::<Value>(&p.payload)?, command);

    // A wildcard is no topic name; the SDK reports the service's error.
    let refused = client
        .publish()
        .topic("devices/+/commands")
        .send()
        .await
        .expect_err("wildcards are refused");
    assert!(
        refused
            .as_service_error()
            .is_some_and(|e| e.is_invalid_request_exception()),
        "{refused:?}"
    );
    // Unknown operations: a 404 saying what is served.
    let unknown = reqwest::get(format!("{}/things/trk-1/shadow", plane.url())).await?;
    assert_eq!(unknown.status(), 404);
    let body: Value = unknown.json().await?;
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("GET /things/trk-1/shadow") && m.contains("Publish")),
        "{body}"
    );
    // DeleteConnection disconnects the device.
    client.delete_connection().client_id("trk-1").send().await?;
    device.wait_ended().await?;
    plane.shutdown().await;
    broker.shutdown().await;
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Rules engine against the local emulators.

/// Records invocations; an event with `"fail": true` fails, as a failing function would.
#[derive(Default)]
struct FakeInvoker {
    calls: Mutex<Vec<(String, Value)>>,
}

impl FunctionInvoker for FakeInvoker {
    fn invoke(
        &self,
        binary: &str,
        event: Value,
        _timeout: Duration,
    ) -> BoxFuture<'static, Result<(), String>> {
        let fail = event["fail"] == true;
        if let Ok(mut calls) = self.calls.lock() {
            calls.push((binary.to_owned(), event));
        }
        async move {
            if fail {
                Err("the handler said no".to_owned())
            } else {
                Ok(())
            }
        }
        .boxed()
    }
}

const RULES_TEMPLATE: &str = r#"
Resources:
  TelemetryQueue: { Type: AWS::SQS::Queue }
  Base64Queue: { Type: AWS::SQS::Queue }
  RuleErrors: { Type: AWS::SQS::Queue }
  Points:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{ AttributeName: deviceId, AttributeType: S }, { AttributeName: ts, AttributeType: N }]
      KeySchema: [{ AttributeName: deviceId, KeyType: HASH }, { AttributeName: ts, KeyType: RANGE }]
  Tracker:
    Type: AWS::IoT::ThingType
    Properties: { ThingTypeName: tracker, ThingTypeProperties: { SearchableAttributes: [tenant] } }
  RuleRole: { Type: AWS::IAM::Role }
  AckFunction:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: command-acks } }
    Properties:
      CodeUri: nowhere
      Timeout: 7
      Environment: { Variables: { THING_TYPE_NAME: !Ref Tracker } }
  TelemetryRule:
    Type: AWS::IoT::TopicRule
    Properties:
      TopicRulePayload:
        Sql: "SELECT temp, ts, topic(2) AS deviceId FROM 'devices/+/telemetry' WHERE temp > -100"
        AwsIotSqlVersion: "2016-03-23"
        Actions:
          - Sqs: { QueueUrl: !Ref TelemetryQueue, RoleArn: !GetAtt RuleRole.Arn }
          - Sqs: { QueueUrl: !Ref Base64Queue, RoleArn: !GetAtt RuleRole.Arn, UseBase64: true }
          - DynamoDBv2: { PutItem: { TableName: !Ref Points }, RoleArn: !GetAtt RuleRole.Arn }
        ErrorAction:
          Sqs: { QueueUrl: !Ref RuleErrors, RoleArn: !GetAtt RuleRole.Arn }
  BrokenRule:
    Type: AWS::IoT::TopicRule
    Properties:
      TopicRulePayload:
        Sql: "SELECT * FROM 'devices/+/broken'"
        Actions:
          - Sqs: { QueueUrl: !Sub "${TelemetryQueue}-missing", RoleArn: !GetAtt RuleRole.Arn }
          - Sqs: { QueueUrl: !Ref TelemetryQueue, RoleArn: !GetAtt RuleRole.Arn }
        ErrorAction:
          Sqs: { QueueUrl: !Ref RuleErrors, RoleArn: !GetAtt RuleRole.Arn }
  AckRule:
    Type: AWS::IoT::TopicRule
    Properties:
      TopicRulePayload:
        Sql: "SELECT *, topic(2) AS thingName FROM 'devices/+/commands/ack'"
        Actions:
          - Lambda: { FunctionArn: !GetAtt AckFunction.Arn }
        ErrorAction:
          Sqs: { QueueUrl: !Ref RuleErrors, RoleArn: !GetAtt RuleRole.Arn }
  AlarmRule:
    Type: AWS::IoT::TopicRule
    Properties:
      TopicRulePayload:
        Sql: "SELECT level FROM 'devices/+/alarm'"
        Actions:
          - Republish: { Topic: "alerts/${topic(2)}", Qos: 1, RoleArn: !GetAtt RuleRole.Arn }
  OffRule:
    Type: AWS::IoT::TopicRule
    Properties:
      TopicRulePayload:
        Sql: "SELECT * FROM 'devices/+/telemetry'"
        RuleDisabled: true
        Actions:
          - Sqs: { QueueUrl: !Ref RuleErrors, RoleArn: !GetAtt RuleRole.Arn }
"#;

async fn receive_all(sqs: &aws_sdk_sqs::Client, url: &str, wanted: usize) -> Result<Vec<String>> {
    let mut bodies = Vec::new();
    let deadline = Instant::now() + WAIT;
    while bodies.len() < wanted && Instant::now() < deadline {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await?;
        for m in out.messages() {
            bodies.push(m.body().unwrap_or_default().to_owned());
            if let Some(handle) = m.receipt_handle() {
                sqs.delete_message()
                    .queue_url(url)
                    .receipt_handle(handle)
                    .send()
                    .await?;
            }
        }
    }
    Ok(bodies)
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    while !done() {
        if Instant::now() > deadline {
            bail!("timed out waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_rules_run_their_actions_against_the_local_emulators() -> Result<()> {
    let aws = LocalAws::start(&Tools::at(&workspace_root()), LocalAwsPorts::default()).await?;
    let outcome = rules_against(&aws).await;
    aws.stop().await;
    outcome
}

async fn rules_against(aws: &LocalAws) -> Result<()> {
    let sdk = aws.sdk_config().await;
    let template = Template::parse(RULES_TEMPLATE, Path::new("/nowhere"))?;
    let resources = devstack::provision::provision(&template, &sdk).await?;
    let functions = template.functions(&resources)?;
    assert_eq!(functions[0].environment["THING_TYPE_NAME"], "tracker");
    // The thing type exists, so things of that type can be created.
    let iot = aws_sdk_iot::Client::new(&sdk);
    iot.create_thing()
        .thing_name("trk-1")
        .thing_type_name("tracker")
        .send()
        .await?;
    assert!(iot
        .create_thing()
        .thing_name("trk-2")
        .thing_type_name("no-such-type")
        .send()
        .await
        .is_err());

    let broker = broker().await?;
    let invoker = Arc::new(FakeInvoker::default());
    let rules = RulesEngine::start(
        &template.topic_rules(&resources)?,
        &functions,
        &resources,
        &broker,
        &sdk,
        invoker.clone(),
        RulesOptions::default(),
    )?;
    let summary = rules.summary().join("\n");
    for expected in [
        "TelemetryRule",
        "'devices/+/telemetry' -> Sqs TelemetryQueue, Sqs Base64Queue, DynamoDBv2 Points; errors -> Sqs RuleErrors",
        "Lambda command-acks",
        "(disabled)",
    ] {
        assert!(summary.contains(expected), "{expected:?} in\n{summary}");
    }
    let outcome = exercise_rules(&broker, &rules, &invoker, &sdk, &resources).await;
    rules.shutdown().await;
    broker.shutdown().await;
    outcome
}

async fn exercise_rules(
    broker: &Broker,
    rules: &RulesEngine,
    invoker: &FakeInvoker,
    sdk: &aws_config::SdkConfig,
    resources: &devstack::template::Resources,
) -> Result<()> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let url = |id: &str| resources.queue_url(id).map(str::to_owned).context("queue");
    let stat = |name: &str| {
        rules
            .stats()
            .rules
            .into_iter()
            .find(|r| r.name == name)
            .unwrap_or_default()
    };
    let mut watcher = connect(broker.address(), "watcher").await?;
    watcher.subscribe("alerts/#", QoS::AtLeastOnce).await?;
    let device = connect(broker.address(), "d1").await?;

    // WHERE false first: no action runs.
    device
        .mqtt
        .publish(
            "devices/d1/telemetry",
            QoS::AtLeastOnce,
            false,
            json!({"temp": -200, "ts": 1}).to_string(),
        )
        .await?;
    device
        .mqtt
        .publish(
            "devices/d1/telemetry",
            QoS::AtLeastOnce,
            false,
            json!({"temp": 21.5, "ts": 1_700_000_000_000_i64, "extra": "dropped"}).to_string(),
        )
        .await?;
    let expected = json!({"temp": 21.5, "ts": 1_700_000_000_000_i64, "deviceId": "d1"});
    let bodies = receive_all(&sqs, &url("TelemetryQueue")?, 1).await?;
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(serde_json::from_str::<Value>(&bodies[0])?, expected);
    let encoded = receive_all(&sqs, &url("Base64Queue")?, 1).await?;
    let [encoded] = encoded.as_slice() else {
        bail!("one base64 message: {encoded:?}")
    };
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded)?;
    assert_eq!(serde_json::from_slice::<Value>(&decoded)?, expected);
    let item = aws_sdk_dynamodb::Client::new(sdk)
        .get_item()
        .table_name("Points")
        .key(
            "deviceId",
            aws_sdk_dynamodb::types::AttributeValue::S("d1".into()),
        )
        .key(
            "ts",
            aws_sdk_dynamodb::types::AttributeValue::N("1700000000000".into()),
        )
        .send()
        .await?;
    let item = item
        .item()
        .context("the DynamoDBv2 action wrote the item")?;
    assert_eq!(
        item.get("temp"),
        Some(&aws_sdk_dynamodb::types::AttributeValue::N("21.5".into()))
    );
    assert!(item.get("extra").is_none(), "only what SELECT chose");
    // The rule counts its actions once all three have had their answers, which can be after
    // their effects are visible here.
    wait_until("the telemetry rule's actions were counted", || {
        let s = stat("TelemetryRule");
        s.actions_succeeded + s.actions_failed == 3
    })
    .await?;
    let telemetry = stat("TelemetryRule");
    assert_eq!(telemetry.matched, 1, "the WHERE was false for the first");
    assert_eq!(
        (telemetry.actions_succeeded, telemetry.actions_failed),
        (3, 0)
    );
    assert_eq!(stat("OffRule").matched, 0, "a disabled rule never fires");

    // A failing action: one error message with the failure; the other action still ran.
    let original = json!({"reading": 7}).to_string();
    device
        .mqtt
        .publish(
            "devices/d1/broken",
            QoS::AtLeastOnce,
            false,
            original.clone(),
        )
        .await?;
    let errors = receive_all(&sqs, &url("RuleErrors")?, 1).await?;
    let [error] = errors.as_slice() else {
        bail!("one error message: {errors:?}")
    };
    let error: Value = serde_json::from_str(error)?;
    assert_eq!(error["ruleName"], "BrokenRule");
    assert_eq!(error["topic"], "devices/d1/broken");
    assert_eq!(error["clientId"], "d1");
    assert!(error["cloudwatchTraceId"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));
    let payload = base64::engine::general_purpose::STANDARD.decode(
        error["base64OriginalPayload"]
            .as_str()
            .context("base64OriginalPayload")?,
    )?;
    assert_eq!(payload, original.as_bytes());
    let failures = error["failures"].as_array().context("failures")?;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["failedAction"], "SqsAction");
    assert_eq!(
        failures[0]["failedResource"],
        format!("{}-missing", url("TelemetryQueue")?)
    );
    assert!(
        failures[0]["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("NonExistentQueue") || m.contains("does not exist")),
        "{}",
        failures[0]["errorMessage"]
    );
    let survivor = receive_all(&sqs, &url("TelemetryQueue")?, 1).await?;
    assert_eq!(survivor.len(), 1);
    assert_eq!(
        serde_json::from_str::<Value>(&survivor[0])?,
        json!({"reading": 7})
    );
    // Counted once SQS answered the error action, which can be after its message is received.
    wait_until("the broken rule's error action was counted", || {
        let s = stat("BrokenRule");
        s.error_actions_sent + s.error_actions_failed == 1
    })
    .await?;
    let broken = stat("BrokenRule");
    assert_eq!(
        (
            broken.actions_succeeded,
            broken.actions_failed,
            broken.error_actions_sent
        ),
        (1, 1, 1)
    );

    // Lambda: invoked asynchronously with the rule's output; a failing function is counted,
    // not reported to the error action (the invocation itself was accepted).
    device
        .mqtt
        .publish(
            "devices/d1/commands/ack",
            QoS::AtLeastOnce,
            false,
            json!({"commandId": "c-1", "status": "SUCCEEDED"}).to_string(),
        )
        .await?;
    device
        .mqtt
        .publish(
            "devices/d1/commands/ack",
            QoS::AtLeastOnce,
            false,
            json!({"commandId": "c-2", "fail": true}).to_string(),
        )
        .await?;
    wait_until("both acks were handled", || {
        let s = stat("AckRule");
        // Two tasks count these: the rule's once the invocation is queued, the invocation's
        // once it ran; either may be last.
        s.lambda_completed + s.lambda_errors == 2 && s.actions_succeeded + s.actions_failed == 2
    })
    .await?;
    // Each asynchronous invocation runs on its own task, so the two may reach the invoker in
    // either order.
    let mut calls = invoker.calls.lock().map(|c| c.clone()).unwrap_or_default();
    calls.sort_by_key(|(_, event)| event["commandId"].as_str().map(str::to_owned));
    assert_eq!(
        calls,
        [
            (
                "command-acks".to_owned(),
                json!({"commandId": "c-1", "status": "SUCCEEDED", "thingName": "d1"})
            ),
            (
                "command-acks".to_owned(),
                json!({"commandId": "c-2", "fail": true, "thingName": "d1"})
            )
        ]
    );
    let acks = stat("AckRule");
    assert_eq!((acks.lambda_completed, acks.lambda_errors), (1, 1));
    assert_eq!((acks.actions_succeeded, acks.actions_failed), (2, 0));
    assert_eq!((acks.error_actions_sent, acks.error_actions_failed), (0, 0));
    // Nor did anything else report the failed function: the next error message is that of a
    // broken message published now (an order, not a wait for nothing to arrive).
    let marker = json!({"reading": "after the acks"}).to_string();
    device
        .mqtt
        .publish("devices/d1/broken", QoS::AtLeastOnce, false, marker.clone())
        .await?;
    let errors = receive_all(&sqs, &url("RuleErrors")?, 1).await?;
    let [error] = errors.as_slice() else {
        bail!("one error message: {errors:?}")
    };
    let error: Value = serde_json::from_str(error)?;
    assert_eq!(error["ruleName"], "BrokenRule", "{error}");
    let payload = base64::engine::general_purpose::STANDARD.decode(
        error["base64OriginalPayload"]
            .as_str()
            .context("base64OriginalPayload")?,
    )?;
    assert_eq!(payload, marker.as_bytes());

    // Republish with a substitution template in the topic.
    broker
        .publish(
            "devices/d9/alarm",
            Bytes::from(json!({"level": 3}).to_string()),
        )
        .await;
    let alert = watcher.next_publish().await?;
    assert_eq!(alert.topic, "alerts/d9");
    assert_eq!(
        serde_json::from_slice::<Value>(&alert.payload)?,
        json!({"level": 3})
    );

    let stats = rules.stats();
    assert_eq!(stats.lagged, 0);
    assert!(stats.messages >= 6, "{stats:?}");
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// The devstack's wiring, without building or invoking any function.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_devstack_runs_the_iot_side_of_the_template() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut opts = devstack::DevstackOptions::new(workspace_root());
    opts.api_port = 0;
    opts.mqtt_port = 0;
    opts.log_dir = dir.path().to_path_buf();
    opts.prebuild = false;
    opts.demo_accounts = false;
    opts.carriers = None;
    let stack = devstack::Devstack::start(opts).await?;
    let outcome = iot_wiring(&stack, dir.path()).await;
    stack.shutdown().await;
    outcome
}

async fn iot_wiring(stack: &devstack::Devstack, log_dir: &Path) -> Result<()> {
    let summary = stack.summary();
    eprintln!("{summary}");
    let mqtt = format!("mqtt://{}", stack.mqtt_address());
    for expected in [
        mqtt.as_str(),
        "IoT data     http://127.0.0.1:",
        "Topic rule   PresenceLifecycleRule",
        "'$aws/events/presence/+/+' -> Lambda device-presence; errors -> Sqs IotRuleErrorQueue",
    ] {
        assert!(summary.contains(expected), "{expected:?} in\n{summary}");
    }
    // The functions reach the data plane through IOT_DATA_ENDPOINT.
    let env = std::fs::read_to_string(log_dir.join("lambda.env"))?;
    assert!(
        env.lines()
            .any(|l| l.trim_matches('\'') == format!("IOT_DATA_ENDPOINT='{}", stack.iot_data_url())),
        "{env}"
    );
    let _device = connect(stack.mqtt_address(), "wiring-1").await?;
    wait_until("the lifecycle rule fired", || {
        stack
            .iot_stats()
            .rules
            .rules
            .iter()
            .any(|r| r.name == "PresenceLifecycleRule" && r.matched >= 1)
    })
    .await?;
    assert_eq!(stack.iot_stats().broker.connected_clients, 1);
    Ok(())
}
