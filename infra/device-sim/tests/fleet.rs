//! The fleet against devstack's MQTT broker, with this test playing the cloud: it answers
//! announcements, sends commands and watches every message the broker accepts.

use bytes::Bytes;
use cellbridge::devices::registration::parse_announcement;
use cellbridge::devices::telemetry::parse_telemetry;
use cellbridge::devices::topics;
use device_sim::{Fleet, FleetOptions, Misbehaviour, Registration};
use devstack::iot::broker::{Broker, BrokerMessage, BrokerOptions};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::task::JoinHandle;

/// Generous: other builds share the machine.
const WAIT: Duration = Duration::from_secs(15);

/// The thing whose `register` topic this is, if it is one.
fn registering_thing(topic: &str) -> Option<&str> {
    let thing = topic.split('/').nth(1)?;
    (topic == topics::register(thing)).then_some(thing)
}

/// The cloud side of registration: announcements that parse are accepted, except those of
/// `refused` things; the others are rejected with the parser's reasons.
fn answer_registrations(broker: Arc<Broker>, refused: HashSet<String>) -> JoinHandle<()> {
    let mut messages = broker.messages();
    tokio::spawn(async move {
        loop {
            let message = match messages.recv().await {
                Ok(message) => message,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => break,
            };
            let Some(thing) = registering_thing(&message.topic) else {
                continue;
            };
            let reasons: Vec<String> = match parse_announcement(thing, &message.payload) {
                Err(errors) => errors
                    .errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect(),
                Ok(_) if refused.contains(thing) => {
                    vec!["tenant: not allowed to register devices".to_owned()]
                }
                Ok(_) => Vec::new(),
            };
            let (topic, reply) = if reasons.is_empty() {
                (
                    topics::register_accepted(thing),
                    json!({"thingName": thing, "outcome": "created"}),
                )
            } else {
                (
                    topics::register_rejected(thing),
                    json!({"thingName": thing, "reasons": reasons}),
                )
            };
            broker.publish(&topic, Bytes::from(reply.to_string())).await;
        }
    })
}

/// A lifecycle event: (`connected`/`disconnected`, client id, disconnect reason).
fn presence(message: &BrokerMessage) -> Option<(String, String, Option<String>)> {
    if !message.topic.starts_with("$aws/events/presence/") {
        return None;
    }
    let event: Value = serde_json::from_slice(&message.payload).ok()?;
    Some((
        event["eventType"].as_str()?.to_owned(),
        event["clientId"].as_str()?.to_owned(),
        event["disconnectReason"].as_str().map(str::to_owned),
    ))
}

fn is_presence(message: &BrokerMessage, kind: &str, thing: &str) -> bool {
    presence(message).is_some_and(|(k, client, _)| k == kind && client == thing)
}

/// Every message the broker accepts, read in order by the test.
struct Watch {
    messages: broadcast::Receiver<BrokerMessage>,
    seen: Vec<BrokerMessage>,
}

impl Watch {
    fn new(broker: &Broker) -> Self {
        Self {
            messages: broker.messages(),
            seen: Vec::new(),
        }
    }

    /// The next message matching `wanted`; panics naming `what` after [`WAIT`].
    async fn next(&mut self, what: &str, wanted: impl Fn(&BrokerMessage) -> bool) -> BrokerMessage {
        self.next_by(tokio::time::Instant::now() + WAIT, what, wanted)
            .await
    }

    /// The next message matching `wanted`; panics naming `what` at `deadline`.
    async fn next_by(
        &mut self,
        deadline: tokio::time::Instant,
        what: &str,
        wanted: impl Fn(&BrokerMessage) -> bool,
    ) -> BrokerMessage {
        loop {
            let message = match tokio::time::timeout_at(deadline, self.messages.recv()).await {
                Err(_) => panic!("timed out waiting for {what}"),
                Ok(Err(RecvError::Lagged(lost))) => panic!("the test fell {lost} messages behind"),
                Ok(Err(RecvError::Closed)) => panic!("the broker stopped"),
                Ok(Ok(message)) => message,
            };
            self.seen.push(message.clone());
            if wanted(&message) {
                return message;
            }
        }
    }

    /// Reads messages until `done` says the ones seen so far are enough; panics naming `what`
    /// after four times [`WAIT`] (messages keep coming, so only an overall limit ends a wait
    /// for a condition that never holds).
    async fn until(&mut self, what: &str, done: impl Fn(&[BrokerMessage]) -> bool) {
        let deadline = tokio::time::Instant::now() + 4 * WAIT;
        while !done(&self.seen) {
            self.next_by(deadline, what, |_| true).await;
        }
    }

    /// Reads whatever arrives for `period`.
    async fn drain_for(&mut self, period: Duration) {
        let deadline = tokio::time::Instant::now() + period;
        while let Ok(Ok(message)) = tokio::time::timeout_at(deadline, self.messages.recv()).await {
            self.seen.push(message);
        }
    }

    fn count(&self, wanted: impl Fn(&BrokerMessage) -> bool) -> usize {
        self.seen.iter().filter(|m| wanted(m)).count()
    }

    /// The statuses of `command_id`'s acks from `thing`, waiting until a final one.
    async fn acks(&mut self, thing: &str, command_id: &str) -> Vec<Value> {
        let mut acks = Vec::new();
        loop {
            let ack_topic = topics::command_ack(thing);
            let message = self
                .next(&format!("the acks of {command_id}"), |m| {
                    m.topic == ack_topic
                        && serde_json::from_slice::<Value>(&m.payload)
                            .is_ok_and(|ack| ack["commandId"] == command_id)
                })
                .await;
            let ack: Value = serde_json::from_slice(&message.payload).expect("ack is JSON");
            let last = ack["status"] != "DELIVERED";
            acks.push(ack);
            if last {
                return acks;
            }
        }
    }
}

fn senders(seen: &[BrokerMessage], topic_of: fn(&str) -> String) -> BTreeSet<String> {
    seen.iter()
        .filter_map(|m| {
            let client = m.client_id.as_deref()?;
            (m.topic == topic_of(client)).then(|| client.to_owned())
        })
        .collect()
}

async fn send_command(broker: &Broker, thing: &str, command: Value) {
    broker
        .publish(&topics::commands(thing), Bytes::from(command.to_string()))
        .await;
}

fn options(broker: &Broker, prefix: &str, devices: usize) -> FleetOptions {
    FleetOptions {
        devices,
        prefix: prefix.to_owned(),
        telemetry_every: Duration::from_millis(200),
        // One message per sample, and heartbeats: what these tests watch for comes at once.
        batch_every: None,
        heartbeat_every: Some(Duration::from_millis(200)),
        start_spread: Duration::from_millis(200),
        ..FleetOptions::new(broker.address())
    }
}

/// Waits until `thing`'s subscriptions are back after a reconnect: the broker keeps none for a
/// clean session, so a command sent before then is lost.
async fn resubscribed(fleet: &Fleet, thing: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !fleet.device_status(thing).is_some_and(|s| s.subscribed) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{thing} did not subscribe again within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start_broker() -> Arc<Broker> {
    Arc::new(
        Broker::start(BrokerOptions {
            port: 0,
            ..Default::default()
        })
        .await
        .expect("broker starts"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_register_report_and_answer_commands() {
    let broker = start_broker().await;
    let mut watch = Watch::new(&broker);
    let responder = answer_registrations(broker.clone(), HashSet::from(["reg-0003".to_owned()]));
    let fleet = Fleet::start(options(&broker, "reg", 5)).expect("fleet starts");
    let things: Vec<String> = fleet.things().map(str::to_owned).collect();
    let accepted: BTreeSet<String> = things
        .iter()
        .filter(|t| *t != "reg-0003")
        .cloned()
        .collect();

    let (stats, registered) = fleet
        .wait_for(WAIT, |s| {
            s.registered_accepted == 4 && s.registered_rejected == 1
        })
        .await;
    assert!(registered, "registration outcomes: {stats}");
    let Some(Registration::Rejected { reasons }) = fleet
        .device_status("reg-0003")
        .map(|status| status.registration)
    else {
        panic!("reg-0003 records its rejection")
    };
    assert_eq!(reasons, ["tenant: not allowed to register devices"]);

    watch
        .until("telemetry from every accepted device", |seen| {
            senders(seen, topics::telemetry) == accepted
        })
        .await;
    watch
        .until("heartbeats from every device", |seen| {
            senders(seen, topics::heartbeat).len() == things.len()
        })
        .await;
    // A rejected device keeps its heartbeat, on the period its telemetry would have: by its
    // third heartbeat after the rejection it would have sent telemetry too, had it gone on
    // reporting. Counted in its own beats, not in wall-clock time, so a busy machine cannot cut
    // the check short.
    let rejection = topics::register_rejected("reg-0003");
    let heartbeat = topics::heartbeat("reg-0003");
    watch
        .until("three heartbeats of reg-0003 after its rejection", |seen| {
            seen.iter()
                .skip_while(|m| m.topic != rejection)
                .filter(|m| m.topic == heartbeat)
                .count()
                >= 3
        })
        .await;
    assert_eq!(
        watch.count(|m| m.topic == topics::telemetry("reg-0003")),
        0,
        "a rejected device sends no telemetry"
    );
    assert_eq!(
        fleet.device_status("reg-0003").map(|s| s.telemetry_sent),
        Some(0)
    );
    for message in watch
        .seen
        .iter()
        .filter(|m| m.topic.ends_with("/telemetry"))
    {
        let thing = message.client_id.as_deref().expect("from a device");
        let mut body: Value = serde_json::from_slice(&message.payload).expect("JSON");
        body["deviceId"] = json!(thing);
        body["receivedAt"] = json!(message.timestamp_ms);
        parse_telemetry(body.to_string().as_bytes()).expect("telemetry the platform reads");
    }

    send_command(
        &broker,
        "reg-0001",
        json!({"commandId": "c-ping", "name": "ping", "params": {}, "expiresAt": "2099-01-01T00:00:00Z"}),
    )
    .await;
    let acks = watch.acks("reg-0001", "c-ping").await;
    let statuses: Vec<&str> = acks.iter().filter_map(|a| a["status"].as_str()).collect();
    assert_eq!(statuses, ["DELIVERED", "SUCCESSFUL"]);

    send_command(
        &broker,
        "reg-0002",
        json!({"commandId": "c-odd", "name": "self-destruct", "params": {}}),
    )
    .await;
    let acks = watch.acks("reg-0002", "c-odd").await;
    let statuses: Vec<&str> = acks.iter().filter_map(|a| a["status"].as_str()).collect();
    assert_eq!(statuses, ["DELIVERED", "FAILED"]);
    assert!(acks[1]["detail"]
        .as_str()
        .is_some_and(|d| d.contains("self-destruct")));

    send_command(
        &broker,
        "reg-0004",
        json!({"commandId": "c-slow", "name": "set-interval", "params": {"seconds": 5}}),
    )
    .await;
    let acks = watch.acks("reg-0004", "c-slow").await;
    assert_eq!(acks[1]["status"], "SUCCESSFUL");
    let status = fleet.device_status("reg-0004").expect("known device");
    assert_eq!(status.telemetry_every, Duration::from_secs(5));

    let stats = fleet.shutdown().await.expect("clean shutdown");
    assert_eq!(stats.connected, 0);
    assert_eq!(stats.commands_received, 3);
    assert_eq!(stats.acks_sent, 6);
    assert_eq!(stats.publish_errors, 0);
    let disconnect_reasons = |seen: &[BrokerMessage]| -> Vec<(String, Option<String>)> {
        seen.iter()
            .filter_map(presence)
            .filter(|(kind, _, _)| kind == "disconnected")
            .map(|(_, client, reason)| (client, reason))
            .collect()
    };
    watch
        .until("every device disconnecting", |seen| {
            disconnect_reasons(seen).len() == things.len()
        })
        .await;
    for (thing, reason) in disconnect_reasons(&watch.seen) {
        assert_eq!(
            reason.as_deref(),
            Some("CLIENT_INITIATED_DISCONNECT"),
            "{thing}"
        );
    }
    responder.abort();
}

/// Devices as the contract has them: their samples go out in batches that fill one 5 KB metered
/// message, each sample with its own time, and no heartbeats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_fill_one_metered_message_and_every_sample_parses() {
    let broker = start_broker().await;
    let mut watch = Watch::new(&broker);
    let responder = answer_registrations(broker.clone(), HashSet::new());
    let fleet = Fleet::start(FleetOptions {
        devices: 2,
        prefix: "bat".to_owned(),
        // A sample a millisecond, and a batch timer that does not fire during the test: only
        // full messages go out.
        telemetry_every: Duration::from_millis(1),
        batch_every: Some(Duration::from_secs(3_600)),
        ..FleetOptions::new(broker.address())
    })
    .expect("fleet starts");
    let is_telemetry = |m: &BrokerMessage| m.topic.ends_with("/telemetry");
    watch
        .until("four full batches", |seen| {
            seen.iter().filter(|m| is_telemetry(m)).count() >= 4
        })
        .await;
    for message in watch.seen.iter().filter(|m| is_telemetry(m)) {
        let metered = message.topic.len() + message.payload.len();
        assert!(
            (4 * 1024..=5 * 1024).contains(&metered),
            "a full batch fills one 5 KB unit: {metered} bytes"
        );
        let thing = message.client_id.as_deref().expect("from a device");
        let mut body: Value = serde_json::from_slice(&message.payload).expect("JSON");
        body["deviceId"] = json!(thing);
        body["receivedAt"] = json!(message.timestamp_ms);
        let batch =
            parse_telemetry(body.to_string().as_bytes()).expect("a batch the platform reads");
        assert!(batch.samples.len() > 20, "{} samples", batch.samples.len());
        assert!(batch.samples.iter().all(|s| s.metrics.len() == 5));
    }
    assert_eq!(
        watch.count(|m| m.topic.ends_with("/heartbeat")),
        0,
        "presence comes from keep-alive"
    );

    // Someone watches bat-0001: it streams each sample as it is taken.
    send_command(
        &broker,
        "bat-0001",
        json!({"commandId": "c-live", "name": "live", "params": {"seconds": 600}}),
    )
    .await;
    let acks = watch.acks("bat-0001", "c-live").await;
    assert_eq!(
        acks.last().map(|a| a["status"].clone()),
        Some(json!("SUCCESSFUL"))
    );
    let telemetry = topics::telemetry("bat-0001");
    let single = watch
        .next("a sample streamed on its own", |m| {
            m.topic == telemetry
                && serde_json::from_slice::<Value>(&m.payload)
                    .is_ok_and(|b| b.get("samples").is_none())
        })
        .await;
    let body: Value = serde_json::from_slice(&single.payload).expect("JSON");
    assert!(body["ts"].is_i64() && body["battery"].is_number(), "{body}");
    fleet.shutdown().await.expect("shuts down");
    responder.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_devices_reconnect_and_disconnected_ones_stay_away() {
    let broker = start_broker().await;
    let mut watch = Watch::new(&broker);
    let responder = answer_registrations(broker.clone(), HashSet::new());
    let fleet = Fleet::start(options(&broker, "net", 3)).expect("fleet starts");
    let (stats, registered) = fleet.wait_for(WAIT, |s| s.registered_accepted == 3).await;
    assert!(registered, "{stats}");

    fleet
        .drop("net-0001", Duration::from_millis(300))
        .expect("known device");
    let lost = watch
        .next("net-0001 lost", |m| {
            is_presence(m, "disconnected", "net-0001")
        })
        .await;
    assert_eq!(
        presence(&lost).and_then(|(_, _, reason)| reason).as_deref(),
        Some("CONNECTION_LOST")
    );
    watch
        .next("net-0001 back", |m| is_presence(m, "connected", "net-0001"))
        .await;
    assert_eq!(
        watch.count(|m| is_presence(m, "connected", "net-0001")),
        2,
        "connected once at start and once after the drop"
    );
    watch
        .next("net-0001 telemetry after reconnecting", |m| {
            m.topic == topics::telemetry("net-0001")
        })
        .await;
    resubscribed(&fleet, "net-0001").await;
    // Subscriptions are back: commands reach it again.
    send_command(
        &broker,
        "net-0001",
        json!({"commandId": "c-after", "name": "locate", "params": {}}),
    )
    .await;
    let acks = watch.acks("net-0001", "c-after").await;
    assert_eq!(acks[1]["status"], "SUCCESSFUL");
    assert!(acks[1]["location"]["lat"].is_f64());
    let stats = fleet.stats();
    assert_eq!(stats.reconnects, 1);
    assert_eq!(
        stats.announcements_sent, 3,
        "no new announcement after a drop"
    );

    fleet.disconnect("net-0002").expect("known device");
    let left = watch
        .next("net-0002 disconnecting", |m| {
            is_presence(m, "disconnected", "net-0002")
        })
        .await;
    assert_eq!(
        presence(&left).and_then(|(_, _, reason)| reason).as_deref(),
        Some("CLIENT_INITIATED_DISCONNECT")
    );
    // Watched for as long as the two others take to send six heartbeats each (a second of their
    // schedule at least), counted in their beats rather than in wall-clock time.
    let mark = watch.seen.len();
    watch
        .until("six heartbeats each of net-0001 and net-0003", |seen| {
            ["net-0001", "net-0003"].iter().all(|thing| {
                let heartbeat = topics::heartbeat(thing);
                seen[mark..].iter().filter(|m| m.topic == heartbeat).count() >= 6
            })
        })
        .await;
    assert!(
        !watch.seen[mark..]
            .iter()
            .any(|m| is_presence(m, "connected", "net-0002")),
        "a disconnected device stays away"
    );
    assert_eq!(fleet.stats().connected, 2);
    assert!(fleet
        .device_status("net-0002")
        .is_some_and(|s| !s.connected));
    fleet.reconnect("net-0002").expect("known device");
    watch
        .next("net-0002 back", |m| is_presence(m, "connected", "net-0002"))
        .await;

    // The broker ending a session is a lost connection to the device: it comes back.
    assert!(broker.disconnect("net-0003").await);
    watch
        .next("net-0003 back after the broker kicked it", |m| {
            is_presence(m, "connected", "net-0003")
        })
        .await;

    let (stats, all_back) = fleet.wait_for(WAIT, |s| s.connected == 3).await;
    assert!(all_back, "{stats}");
    let mark = watch.seen.len();
    let dropped = fleet.drop_random(2, Duration::from_millis(200));
    assert_eq!(dropped.len(), 2);
    watch
        .until("both randomly dropped devices back", |seen| {
            dropped.iter().all(|thing| {
                seen[mark..]
                    .iter()
                    .any(|m| is_presence(m, "connected", thing))
            })
        })
        .await;
    assert!(fleet.drop("nobody", Duration::ZERO).is_err());
    resubscribed(&fleet, "net-0003").await;

    // A reboot acknowledges first, then the device goes away briefly and comes back.
    let mark = watch.seen.len();
    send_command(
        &broker,
        "net-0003",
        json!({"commandId": "c-reboot", "name": "reboot", "params": {}}),
    )
    .await;
    let acks = watch.acks("net-0003", "c-reboot").await;
    assert_eq!(acks[1]["status"], "SUCCESSFUL");
    watch
        .until("net-0003 rebooting", |seen| {
            let events: Vec<_> = seen[mark..]
                .iter()
                .filter_map(presence)
                .filter(|(_, client, _)| client == "net-0003")
                .map(|(kind, _, _)| kind)
                .collect();
            events == ["disconnected", "connected"]
        })
        .await;

    fleet.shutdown().await.expect("clean shutdown");
    responder.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_devices_break_the_limits_they_are_meant_to() {
    let broker = start_broker().await;
    let mut watch = Watch::new(&broker);
    let responder = answer_registrations(broker.clone(), HashSet::new());
    let fleet = Fleet::start(options(&broker, "bad", 3)).expect("fleet starts");
    let (stats, registered) = fleet.wait_for(WAIT, |s| s.registered_accepted == 3).await;
    assert!(registered, "{stats}");

    fleet
        .set_misbehaviour("bad-0001", Misbehaviour::Garbage)
        .expect("known device");
    fleet
        .set_misbehaviour("bad-0002", Misbehaviour::Flood { per_second: 300 })
        .expect("known device");
    fleet
        .set_misbehaviour("bad-0003", Misbehaviour::Oversize)
        .expect("known device");

    watch
        .next("garbage from bad-0001", |m| {
            m.topic == topics::telemetry("bad-0001")
                && serde_json::from_slice::<Value>(&m.payload).is_err()
        })
        .await;
    watch
        .next("bad-0003 cut off for its oversize payload", |m| {
            is_presence(m, "disconnected", "bad-0003")
        })
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while broker.stats().throttled == 0 || broker.stats().oversize_refused == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "broker stats: {:?}",
            broker.stats()
        );
        watch.drain_for(Duration::from_millis(100)).await;
    }
    assert!(fleet.stats().misbehaviour_sent > 0);

    fleet
        .set_misbehaviour("bad-0003", Misbehaviour::None)
        .expect("known device");
    fleet.shutdown().await.expect("clean shutdown");
    responder.abort();
}

/// 1,000 devices at one telemetry message and one heartbeat a second: run with
/// `cargo test --release -p device-sim --test fleet -- --ignored thousand`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load test, about 20 s"]
async fn a_thousand_devices_keep_one_message_a_second() {
    let broker = start_broker().await;
    let responder = answer_registrations(broker.clone(), HashSet::new());
    let fleet = Fleet::start(FleetOptions {
        devices: 1_000,
        prefix: "load".to_owned(),
        start_spread: Duration::from_secs(5),
        batch_every: None,
        heartbeat_every: Some(Duration::from_secs(1)),
        ..FleetOptions::new(broker.address())
    })
    .expect("fleet starts");
    let (stats, registered) = fleet
        .wait_for(Duration::from_secs(30), |s| s.registered_accepted == 1_000)
        .await;
    assert!(registered, "{stats}");
    let before = fleet.stats();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = fleet.stats();
    let telemetry_rate = (after.telemetry_sent - before.telemetry_sent) as f64 / 10.0;
    let heartbeat_rate = (after.heartbeats_sent - before.heartbeats_sent) as f64 / 10.0;
    println!("telemetry {telemetry_rate:.0}/s, heartbeats {heartbeat_rate:.0}/s, {after}");
    assert!(telemetry_rate >= 950.0, "telemetry {telemetry_rate}/s");
    assert!(heartbeat_rate >= 950.0, "heartbeats {heartbeat_rate}/s");
    assert_eq!(after.publish_errors, 0);
    fleet.shutdown().await.expect("clean shutdown");
    responder.abort();
}
