//! Presence from IoT Core, in two shapes:
//!
//! - lifecycle events (`$aws/events/presence/{connected,disconnected}/+`), which
//!   `PresenceLifecycleRule` invokes this function with, one at a time: applied in version order;
//!   duplicates, late events and unknown devices change nothing. When a device connects, its
//!   queued commands that have not expired are published and marked SENT (commands to an offline
//!   device wait for this);
//! - heartbeats (`devices/+/heartbeat`), which `HeartbeatRule` sends to `PresenceQueue`, and
//!   which arrive here in batches: a sign of life each, written through the instance's write gate
//!   (`cellbridge_devices::activity`), so a device's `lastSeen` moves at most once per write
//!   interval, and a warm instance neither reads nor writes for the heartbeats in between.
//!
//! A rule invoking the function directly makes Lambda retry a failed invocation; a batch reports
//! the messages to redeliver. So a message that can never be applied (malformed, unknown device)
//! is logged and acknowledged, and only a store or publish failure is an error, which is worth the
//! retry. A retried connect event is a duplicate, but it still delivers what is queued while the
//! device is connected, so the retry finishes what failed.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use cellbridge_core::store::StoreError;
use cellbridge_devices::activity::{ActivityRecorder, ActivityReport};
use cellbridge_devices::delivery::{publish_command, Delivery};
use cellbridge_devices::ports::{CommandStore, DevicePublisher, DeviceStore, PublishError};
use cellbridge_devices::presence::{LifecycleEvent, LifecycleKind};
use cellbridge_devices::registration::ThingName;
use cellbridge_edge::lambda::metrics;
use cellbridge_edge::lambda::metrics::Unit;
use serde::Deserialize;
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// This function's configuration, read once at cold start: presence is written to the devices
/// table (`presence.write_interval` apart at most), and commands waiting for a device that
/// connects are delivered.
pub type Config = cellbridge_devices::wiring::CommandDelivery;

/// Queued commands published per connection; a device with more gets the rest on its next one
/// (or they expire). Bounds the work of one invocation.
pub const MAX_DELIVERED_PER_CONNECT: u32 = 100;

/// What the rules select: the lifecycle event's own fields, or for a heartbeat `topic(2)` as
/// `clientId`, `'heartbeat'` as `eventType` and `timestamp()`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceMessage {
    pub client_id: Option<String>,
    pub event_type: Option<String>,
    pub version_number: Option<i64>,
    /// Milliseconds since the epoch.
    pub timestamp: Option<i64>,
}

/// What the function is invoked with: a batch of heartbeats from `PresenceQueue`, or one message
/// from a rule that invokes it directly (a lifecycle event; or a heartbeat, as `HeartbeatRule`
/// sent them before the queue). A batch is told apart by its `Records`, which no message has.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PresenceEvent {
    Heartbeats(SqsEvent),
    Message(PresenceMessage),
}

/// The ports a message needs.
#[derive(Clone, Copy)]
pub struct Ports<'a> {
    pub devices: &'a dyn DeviceStore,
    pub commands: &'a dyn CommandStore,
    pub publisher: &'a dyn DevicePublisher,
    /// The instance's write gate for signs of life, kept from one invocation to the next.
    pub activity: &'a ActivityRecorder,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// A duplicate, an event older than the one applied, or a heartbeat not due for a write.
    Ignored,
    UnknownDevice,
    Malformed,
}

#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The others were published; these stay queued for the retry.
    #[error("{failed} queued command(s) could not be published; first: {first}")]
    Publish { failed: usize, first: PublishError },
}

impl PresenceError {
    /// Whether Lambda's retry of the invocation may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store(error) => error.is_retryable(),
            Self::Publish { .. } => true,
        }
    }
}

/// The thing and time of a message, or `None` when it has no usable ones.
fn thing_and_time(message: &PresenceMessage) -> Option<(ThingName, OffsetDateTime)> {
    let thing = message.client_id.as_deref().and_then(ThingName::parse)?;
    let at = message.timestamp.and_then(|ms| {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
    })?;
    Some((thing, at))
}

/// One message from a rule invoking the function directly. `now` decides which queued commands
/// have expired.
pub async fn handle(
    ports: &Ports<'_>,
    message: &PresenceMessage,
    now: OffsetDateTime,
) -> Result<Outcome, PresenceError> {
    let Some((thing, at)) = thing_and_time(message) else {
        tracing::warn!(
            ?message,
            "presence message without a thing name or a time; dropped"
        );
        return Ok(Outcome::Malformed);
    };
    let event_type = message.event_type.as_deref().unwrap_or("");
    if event_type == "heartbeat" {
        let report = ports
            .activity
            .record(ports.devices, [(thing.clone(), at)], now)
            .await;
        tracing::info!(%thing, event_type, written = report.written, "presence");
        if let Some(error) = report.error {
            return Err(error.into());
        }
        return Ok(if report.written > 0 {
            Outcome::Applied
        } else if !report.unknown.is_empty() {
            unknown(&thing)
        } else {
            Outcome::Ignored
        });
    }
    let (Some(kind), Some(version)) = (LifecycleKind::parse(event_type), message.version_number)
    else {
        tracing::warn!(?message, "not a lifecycle event; dropped");
        return Ok(Outcome::Malformed);
    };
    // The conditional write refuses an unknown device too, so the device is read only to tell
    // why a write was refused.
    let applied = ports
        .devices
        .apply_presence(&thing, &LifecycleEvent { kind, version, at })
        .await?;
    tracing::info!(%thing, event_type, applied, "presence");
    if kind == LifecycleKind::Connected {
        // Read after the write: a command stored before this point is found by the query
        // below, and one stored after it sees the device online and is published by the API.
        match ports.devices.get_device(&thing).await? {
            None => return Ok(unknown(&thing)),
            Some(device) if device.presence.connected => {
                deliver_queued(ports.commands, ports.publisher, &thing, now).await?
            }
            Some(_) => {}
        }
    }
    if applied {
        return Ok(Outcome::Applied);
    }
    Ok(match ports.devices.get_device(&thing).await? {
        None => unknown(&thing),
        Some(_) => Outcome::Ignored,
    })
}

fn unknown(thing: &ThingName) -> Outcome {
    tracing::info!(%thing, "presence of a device that never registered; dropped");
    Outcome::UnknownDevice
}

/// What one batch of heartbeats did, for the log line and the metrics.
#[derive(Debug, Default)]
pub struct HeartbeatReport {
    pub messages: usize,
    pub malformed: usize,
    /// What the write gate did with the batch's devices.
    pub activity: ActivityReport,
    /// Messages reported for redelivery (their device's read or write failed).
    pub failed: usize,
}

impl HeartbeatReport {
    pub fn emit_metrics(&self) {
        let activity = &self.activity;
        metrics::emit(
            &[("Function", "device-presence")],
            &[
                ("Heartbeats", self.messages as f64, Unit::Count),
                ("HeartbeatsMalformed", self.malformed as f64, Unit::Count),
                ("PresenceReads", activity.read as f64, Unit::Count),
                ("PresenceWrites", activity.written as f64, Unit::Count),
                (
                    "PresenceWritesRefused",
                    activity.refused as f64,
                    Unit::Count,
                ),
                ("HeartbeatsFailed", self.failed as f64, Unit::Count),
            ],
        );
    }
}

/// A batch of heartbeats from `PresenceQueue`: each device's latest one goes through the write
/// gate. A malformed message or an unknown device is dropped (redelivery cannot help); the
/// messages of a device whose read or write failed are reported for redelivery, and only those.
pub async fn handle_heartbeats(
    devices: &dyn DeviceStore,
    activity: &ActivityRecorder,
    event: &SqsEvent,
    now: OffsetDateTime,
) -> (SqsBatchResponse, HeartbeatReport) {
    let mut report = HeartbeatReport {
        messages: event.records.len(),
        ..HeartbeatReport::default()
    };
    let mut by_device: BTreeMap<ThingName, Vec<String>> = BTreeMap::new();
    let mut signs = Vec::new();
    for record in &event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let parsed = record
            .body
            .as_deref()
            .and_then(|body| serde_json::from_str::<PresenceMessage>(body).ok());
        let sign = parsed
            .as_ref()
            .filter(|m| m.event_type.as_deref() == Some("heartbeat"))
            .and_then(thing_and_time);
        let Some((thing, at)) = sign else {
            report.malformed += 1;
            tracing::warn!(
                message_id = id,
                body = record
                    .body
                    .as_deref()
                    .map(|b| b.chars().take(200).collect::<String>()),
                "not a heartbeat with a thing name and a time; dropped"
            );
            continue;
        };
        by_device.entry(thing.clone()).or_default().push(id);
        signs.push((thing, at));
    }
    report.activity = activity.record(devices, signs, now).await;
    for thing in &report.activity.unknown {
        tracing::info!(%thing, "heartbeat of a device that never registered; dropped");
    }
    let failed_ids: Vec<String> = report
        .activity
        .failed
        .iter()
        .filter_map(|thing| by_device.get(thing))
        .flatten()
        .cloned()
        .collect();
    report.failed = failed_ids.len();
    if let Some(error) = &report.activity.error {
        tracing::error!(%error, devices = report.activity.failed.len(), messages = report.failed, "presence reads or writes failed; redelivering");
    }
    tracing::info!(
        messages = report.messages,
        malformed = report.malformed,
        devices = report.activity.devices,
        skipped = report.activity.skipped,
        read = report.activity.read,
        written = report.activity.written,
        refused = report.activity.refused,
        unknown = report.activity.unknown.len(),
        failed = report.failed,
        "heartbeat batch"
    );
    (
        cellbridge_edge::lambda::sqs_batch::failures(failed_ids),
        report,
    )
}

async fn deliver_queued(
    commands: &dyn CommandStore,
    publisher: &dyn DevicePublisher,
    thing: &ThingName,
    now: OffsetDateTime,
) -> Result<(), PresenceError> {
    let queued = commands
        .queued_commands(thing, now, MAX_DELIVERED_PER_CONNECT)
        .await?;
    let (mut sent, mut failures) = (0usize, Vec::new());
    for command in &queued {
        match publish_command(commands, publisher, command, now).await? {
            Delivery::Sent => sent += 1,
            Delivery::AlreadyMoved(status) => {
                tracing::info!(%thing, command_id = %command.id, %status, "published; already acknowledged")
            }
            Delivery::NotPublished(error) => {
                tracing::warn!(%thing, command_id = %command.id, %error, "publishing a queued command failed");
                failures.push(error);
            }
        }
    }
    if !queued.is_empty() {
        tracing::info!(%thing, queued = queued.len(), sent, failed = failures.len(), "queued commands delivered on connect");
    }
    let failed = failures.len();
    match failures.into_iter().next() {
        Some(first) => Err(PresenceError::Publish { failed, first }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellbridge_core::tenant::TenantId;
    use cellbridge_devices::command::{parse_command_request, Command, CommandId, CommandStatus};
    use cellbridge_devices::commands_memory::MemoryCommands;
    use cellbridge_devices::iot_memory::RecordingPublisher;
    use cellbridge_devices::memory::MemoryDevices;
    use cellbridge_devices::presence::DEFAULT_WRITE_INTERVAL;
    use cellbridge_devices::registration::parse_announcement;
    use cellbridge_devices::topics;
    use serde_json::json;
    use time::Duration;

    const CONNECTED: &str = include_str!("../../../events/device-presence/connected.json");
    const DISCONNECTED: &str = include_str!("../../../events/device-presence/disconnected.json");
    const HEARTBEAT: &str = include_str!("../../../events/device-presence/heartbeat.json");
    const HEARTBEATS: &str = include_str!("../../../events/device-presence/heartbeats.json");

    /// The connected sample's time, 2026-11-22T09:00:00Z, and a second later.
    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_795_338_001).expect("time")
    }

    struct Rig {
        devices: MemoryDevices,
        commands: MemoryCommands,
        publisher: RecordingPublisher,
        activity: ActivityRecorder,
    }

    impl Rig {
        /// trk-1 registered a day ago.
        async fn new() -> Self {
            let rig = Self {
                devices: MemoryDevices::default(),
                commands: MemoryCommands::default(),
                publisher: RecordingPublisher::default(),
                activity: ActivityRecorder::new(DEFAULT_WRITE_INTERVAL),
            };
            rig.register("trk-1").await;
            rig
        }

        async fn register(&self, thing: &str) {
            let body = json!({"tenant": "demo", "iccid": cellbridge_core::testing::iccid(1), "model": "TRK-200", "firmware": "2.4.1"});
            let announcement =
                parse_announcement(thing, body.to_string().as_bytes()).expect("valid");
            self.devices
                .register(&announcement, now() - Duration::days(1))
                .await
                .expect("registered");
        }

        fn ports(&self) -> Ports<'_> {
            Ports {
                devices: &self.devices,
                commands: &self.commands,
                publisher: &self.publisher,
                activity: &self.activity,
            }
        }

        async fn call(&self, message: &PresenceMessage) -> Result<Outcome, PresenceError> {
            handle(&self.ports(), message, now()).await
        }

        async fn beats(
            &self,
            event: &SqsEvent,
            now: OffsetDateTime,
        ) -> (Vec<String>, HeartbeatReport) {
            let (response, report) =
                handle_heartbeats(&self.devices, &self.activity, event, now).await;
            let failed = response
                .batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier)
                .collect();
            (failed, report)
        }

        async fn presence(&self, thing: &str) -> cellbridge_devices::presence::Presence {
            let thing = ThingName::parse(thing).expect("name");
            self.devices
                .get_device(&thing)
                .await
                .expect("store")
                .expect("device")
                .presence
        }

        async fn connected(&self) -> bool {
            self.presence("trk-1").await.connected
        }

        /// A command to trk-1 queued `ago` before now, expiring after `expires_in` seconds.
        fn queue(&self, ago: Duration, expires_in: i64) -> Command {
            let body = json!({"name": "reboot", "expiresInSeconds": expires_in});
            let command = Command::queued(
                ThingName::parse("trk-1").expect("name"),
                TenantId::parse("demo").expect("tenant"),
                CommandId::new_v7(),
                &parse_command_request(body.to_string().as_bytes()).expect("valid"),
                now() - ago,
            );
            self.commands.put(command.clone());
            command
        }

        fn status(&self, command: &Command) -> Option<CommandStatus> {
            self.commands
                .all()
                .into_iter()
                .find(|c| c.id == command.id)
                .map(|c| c.status)
        }

        fn published_ids(&self) -> Vec<String> {
            self.publisher
                .published_to(&topics::commands("trk-1"))
                .iter()
                .filter_map(|m| m["commandId"].as_str().map(str::to_owned))
                .collect()
        }
    }

    fn message(sample: &str) -> PresenceMessage {
        serde_json::from_str(sample).expect("sample")
    }

    fn batch(sample: &str) -> SqsEvent {
        match serde_json::from_str(sample).expect("sample") {
            PresenceEvent::Heartbeats(event) => event,
            other => panic!("not a batch: {other:?}"),
        }
    }

    /// Heartbeats of `thing` at these seconds after the samples' time, as the rule queues them.
    fn heartbeats(thing: &str, seconds: impl IntoIterator<Item = i64>) -> SqsEvent {
        let mut event = batch(HEARTBEATS);
        let template = event.records[0].clone();
        event.records = seconds
            .into_iter()
            .map(|s| {
                let mut record = template.clone();
                record.message_id = Some(format!("{thing}-{s}"));
                record.body = Some(
                    json!({"clientId": thing, "eventType": "heartbeat", "timestamp": 1_795_338_000_000_i64 + s * 1000})
                        .to_string(),
                );
                record
            })
            .collect();
        event
    }

    #[test]
    fn a_batch_and_a_rule_message_are_told_apart() {
        for sample in [CONNECTED, DISCONNECTED, HEARTBEAT, "{}"] {
            let event: PresenceEvent = serde_json::from_str(sample).expect("parses");
            assert!(matches!(event, PresenceEvent::Message(_)), "{sample}");
        }
        assert_eq!(batch(HEARTBEATS).records.len(), 5);
    }

    #[tokio::test]
    async fn the_samples_connect_and_disconnect() {
        let rig = Rig::new().await;
        assert_eq!(
            rig.call(&message(CONNECTED)).await.expect("ok"),
            Outcome::Applied
        );
        assert!(rig.connected().await);
        assert_eq!(
            rig.call(&message(DISCONNECTED)).await.expect("ok"),
            Outcome::Applied
        );
        assert!(!rig.connected().await);
        assert_eq!(
            rig.call(&message(CONNECTED)).await.expect("ok"),
            Outcome::Ignored,
            "its connect, late"
        );
        assert!(!rig.connected().await);
    }

    #[tokio::test]
    async fn a_heartbeat_invoked_directly_goes_through_the_write_gate_too() {
        let rig = Rig::new().await;
        assert_eq!(
            rig.call(&message(HEARTBEAT)).await.expect("ok"),
            Outcome::Applied,
            "last seen a day ago"
        );
        assert_eq!(
            rig.call(&message(HEARTBEAT)).await.expect("ok"),
            Outcome::Ignored,
            "the same beat again"
        );
        assert_eq!(rig.devices.activity_writes(), 1);
    }

    #[tokio::test]
    async fn the_heartbeats_sample_writes_each_device_once_and_drops_the_rest() {
        let rig = Rig::new().await;
        let (failed, report) = rig
            .beats(&batch(HEARTBEATS), now() + Duration::seconds(3))
            .await;
        assert!(failed.is_empty(), "{failed:?}");
        assert_eq!((report.messages, report.malformed), (5, 1));
        assert_eq!(report.activity.devices, 2);
        assert_eq!(report.activity.written, 1, "trk-1, at its latest beat");
        assert_eq!(report.activity.unknown.len(), 1, "trk-2 never registered");
        assert_eq!(
            rig.presence("trk-1").await.last_seen,
            OffsetDateTime::from_unix_timestamp(1_795_338_003).ok()
        );
        // Delivered again: decided from memory, nothing read or written.
        let (_, again) = rig
            .beats(&batch(HEARTBEATS), now() + Duration::seconds(4))
            .await;
        assert_eq!((again.activity.read, again.activity.written), (0, 0));
        assert_eq!(again.activity.skipped, 2);
        assert_eq!(
            (rig.devices.activity_reads(), rig.devices.activity_writes()),
            (2, 1)
        );
    }

    #[tokio::test]
    async fn a_device_beating_every_second_is_written_once_per_interval() {
        let rig = Rig::new().await;
        // An hour of five-second batches from a device last seen a day ago.
        for first in (0..3600).step_by(5) {
            let event = heartbeats("trk-1", first..first + 5);
            let (failed, _) = rig
                .beats(&event, now() + Duration::seconds(first + 5))
                .await;
            assert!(failed.is_empty());
        }
        assert_eq!(
            rig.devices.activity_reads(),
            1,
            "read once, when first seen"
        );
        assert_eq!(
            rig.devices.activity_writes(),
            12,
            "at 0 s, then every 300 s"
        );
        assert_eq!(rig.devices.activity_refused(), 0);
    }

    #[tokio::test]
    async fn a_failed_write_redelivers_that_devices_heartbeats_only() {
        let rig = Rig::new().await;
        rig.register("trk-2").await;
        let (_, report) = rig.beats(&heartbeats("trk-2", [1]), now()).await;
        assert_eq!(report.activity.written, 1, "trk-2 known and up to date");
        rig.devices.set_presence_unavailable(true);
        let mut event = heartbeats("trk-1", [2, 3]);
        event.records.extend(heartbeats("trk-2", [4]).records);
        let (failed, report) = rig.beats(&event, now() + Duration::seconds(5)).await;
        assert_eq!(failed, ["trk-1-2", "trk-1-3"], "trk-2 needed no write");
        assert_eq!(report.failed, 2);
        rig.devices.set_presence_unavailable(false);
        let (failed, report) = rig
            .beats(&heartbeats("trk-1", [2, 3]), now() + Duration::seconds(6))
            .await;
        assert!(failed.is_empty());
        assert_eq!(report.activity.written, 1, "the redelivery is written");
    }

    #[tokio::test]
    async fn unknown_devices_and_garbage_are_dropped_not_retried() {
        let rig = Rig::new().await;
        let before = rig.presence("trk-1").await;
        let mut unknown = message(CONNECTED);
        unknown.client_id = Some("never-registered".into());
        assert_eq!(
            rig.call(&unknown).await.expect("ok"),
            Outcome::UnknownDevice
        );
        let mut stranger = message(HEARTBEAT);
        stranger.client_id = Some("never-registered".into());
        assert_eq!(
            rig.call(&stranger).await.expect("ok"),
            Outcome::UnknownDevice
        );
        for broken in [
            json!({}),
            json!({"clientId": "bad/name", "eventType": "connected", "versionNumber": 1, "timestamp": 1}),
            json!({"clientId": "trk-1", "eventType": "subscribed", "versionNumber": 1, "timestamp": 1}),
            json!({"clientId": "trk-1", "eventType": "connected", "timestamp": 1}),
        ] {
            let parsed: PresenceMessage = serde_json::from_value(broken.clone()).expect("shape");
            assert_eq!(
                rig.call(&parsed).await.expect("ok"),
                Outcome::Malformed,
                "{broken}"
            );
        }
        let mut event = heartbeats("trk-1", [1]);
        for body in ["not json", "{}", &message_body(CONNECTED)] {
            let mut record = event.records[0].clone();
            record.body = Some(body.to_owned());
            event.records.push(record);
        }
        event.records.remove(0);
        let (failed, report) = rig.beats(&event, now()).await;
        assert!(failed.is_empty());
        assert_eq!(report.malformed, 3, "a lifecycle event is not a heartbeat");
        assert_eq!(rig.presence("trk-1").await, before, "nothing applied");
    }

    fn message_body(sample: &str) -> String {
        serde_json::from_str::<serde_json::Value>(sample)
            .expect("sample")
            .to_string()
    }

    #[tokio::test]
    async fn a_connect_delivers_the_queued_commands_that_have_not_expired() {
        let rig = Rig::new().await;
        let first = rig.queue(Duration::minutes(30), 3600);
        let second = rig.queue(Duration::minutes(20), 3600);
        let expired = rig.queue(Duration::minutes(30), 600);
        let answered = rig.queue(Duration::minutes(10), 3600);
        rig.commands
            .transition(
                &answered.thing,
                &answered.id,
                CommandStatus::Successful,
                now(),
                None,
            )
            .await
            .expect("acknowledged");
        // Not delivered while the device is away.
        assert_eq!(
            rig.call(&message(DISCONNECTED)).await.expect("ok"),
            Outcome::Applied
        );
        assert!(rig.publisher.published().is_empty());
        let mut reconnect = message(CONNECTED);
        reconnect.version_number = Some(4);
        assert_eq!(rig.call(&reconnect).await.expect("ok"), Outcome::Applied);
        assert_eq!(
            rig.published_ids(),
            [first.id.to_string(), second.id.to_string()],
            "oldest first"
        );
        assert_eq!(rig.status(&first), Some(CommandStatus::Sent));
        assert_eq!(rig.status(&second), Some(CommandStatus::Sent));
        assert_eq!(
            rig.status(&expired),
            Some(CommandStatus::Queued),
            "the sweep expires it"
        );
        assert_eq!(rig.status(&answered), Some(CommandStatus::Successful));
        let message = &rig.publisher.published_to(&topics::commands("trk-1"))[0];
        assert_eq!(message["name"], "reboot");
        assert_eq!(message["expiresAt"], "2026-11-22T09:30:01Z");

        // A duplicate of the connect sends nothing again: nothing is queued any more.
        assert_eq!(rig.call(&reconnect).await.expect("ok"), Outcome::Ignored);
        assert_eq!(rig.published_ids().len(), 2);
    }

    #[tokio::test]
    async fn a_failed_publish_keeps_the_command_queued_and_the_retry_sends_it() {
        let rig = Rig::new().await;
        let command = rig.queue(Duration::minutes(1), 3600);
        rig.publisher.fail_topic(&topics::commands("trk-1"));
        let failed = rig.call(&message(CONNECTED)).await;
        assert!(matches!(
            failed,
            Err(PresenceError::Publish { failed: 1, .. })
        ));
        assert!(failed.err().is_some_and(|e| e.is_retryable()));
        assert!(rig.connected().await, "the connection itself is recorded");
        assert_eq!(rig.status(&command), Some(CommandStatus::Queued));

        let rig = Rig {
            publisher: RecordingPublisher::default(),
            ..rig
        };
        assert_eq!(
            rig.call(&message(CONNECTED)).await.expect("ok"),
            Outcome::Ignored,
            "Lambda's retry of the same event"
        );
        assert_eq!(rig.published_ids(), [command.id.to_string()]);
        assert_eq!(rig.status(&command), Some(CommandStatus::Sent));
    }

    #[tokio::test]
    async fn a_store_failure_is_an_error_to_retry() {
        let rig = Rig::new().await;
        rig.queue(Duration::minutes(1), 3600);
        rig.commands.set_unavailable(true);
        assert!(matches!(
            rig.call(&message(CONNECTED)).await,
            Err(PresenceError::Store(_))
        ));
        assert!(rig.publisher.published().is_empty());
        rig.devices.set_presence_unavailable(true);
        assert!(matches!(
            rig.call(&message(HEARTBEAT)).await,
            Err(PresenceError::Store(_))
        ));
    }
}
