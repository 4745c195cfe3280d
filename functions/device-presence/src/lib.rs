//! Presence from IoT Core: lifecycle events (`$aws/events/presence/{connected,disconnected}/+`)
//! and device heartbeats (`devices/+/heartbeat`), each routed here by a topic rule. Events are
//! applied in version order; duplicates, late events and unknown devices change nothing.
//!
//! When a device connects, its queued commands that have not expired are published and marked
//! SENT (commands to an offline device wait for this).
//!
//! The rules invoke this function asynchronously, and Lambda retries a failed invocation. So a
//! message that can never be applied (malformed, unknown device) is logged and acknowledged, and
//! only a store or publish failure is an error, which is worth the retry. A retried connect
//! event is a duplicate, but it still delivers what is queued while the device is connected, so
//! the retry finishes what failed.

use cellbridge_core::store::StoreError;
use cellbridge_devices::delivery::{publish_command, Delivery};
use cellbridge_devices::ports::{CommandStore, DevicePublisher, DeviceStore, PublishError};
use cellbridge_devices::presence::{LifecycleEvent, LifecycleKind};
use cellbridge_devices::registration::ThingName;
use serde::Deserialize;
use time::OffsetDateTime;

/// This function's configuration, read once at cold start: presence is written to the devices
/// table, and commands waiting for a device that connects are delivered.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// A duplicate, an event older than the one applied, or an old heartbeat.
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

/// `now` decides which queued commands have expired.
pub async fn handle(
    store: &dyn DeviceStore,
    commands: &dyn CommandStore,
    publisher: &dyn DevicePublisher,
    message: &PresenceMessage,
    now: OffsetDateTime,
) -> Result<Outcome, PresenceError> {
    let thing = message.client_id.as_deref().and_then(ThingName::parse);
    let at = message
        .timestamp
        .and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok());
    let (Some(thing), Some(at)) = (thing, at) else {
        tracing::warn!(
            ?message,
            "presence message without a thing name or a time; dropped"
        );
        return Ok(Outcome::Malformed);
    };
    // The conditional write refuses an unknown device too, so the device is read only to tell
    // why a write was refused: a heartbeat, the bulk of this function's work, is one request.
    let event_type = message.event_type.as_deref().unwrap_or("");
    if event_type == "heartbeat" {
        let applied = store.record_activity(&thing, at).await?;
        tracing::info!(%thing, event_type, applied, "presence");
        return refused_or(store, &thing, applied).await;
    }
    let (Some(kind), Some(version)) = (LifecycleKind::parse(event_type), message.version_number)
    else {
        tracing::warn!(?message, "not a lifecycle event; dropped");
        return Ok(Outcome::Malformed);
    };
    let applied = store
        .apply_presence(&thing, &LifecycleEvent { kind, version, at })
        .await?;
    tracing::info!(%thing, event_type, applied, "presence");
    if kind == LifecycleKind::Connected {
        // Read after the write: a command stored before this point is found by the query
        // below, and one stored after it sees the device online and is published by the API.
        match store.get_device(&thing).await? {
            None => return Ok(unknown(&thing)),
            Some(device) if device.presence.connected => {
                deliver_queued(commands, publisher, &thing, now).await?
            }
            Some(_) => {}
        }
    }
    refused_or(store, &thing, applied).await
}

/// `Applied`, or why the write was refused: an unknown device, or an event already overtaken.
async fn refused_or(
    store: &dyn DeviceStore,
    thing: &ThingName,
    applied: bool,
) -> Result<Outcome, PresenceError> {
    if applied {
        return Ok(Outcome::Applied);
    }
    Ok(match store.get_device(thing).await? {
        None => unknown(thing),
        Some(_) => Outcome::Ignored,
    })
}

fn unknown(thing: &ThingName) -> Outcome {
    tracing::info!(%thing, "presence of a device that never registered; dropped");
    Outcome::UnknownDevice
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
    use cellbridge_devices::registration::parse_announcement;
    use cellbridge_devices::topics;
    use serde_json::json;
    use time::Duration;

    const CONNECTED: &str = include_str!("../../../events/device-presence/connected.json");
    const DISCONNECTED: &str = include_str!("../../../events/device-presence/disconnected.json");
    const HEARTBEAT: &str = include_str!("../../../events/device-presence/heartbeat.json");

    /// The connected sample's time, 2026-11-22T09:00:00Z, and a second later.
    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_795_338_001).expect("time")
    }

    #[derive(Default)]
    struct Ports {
        devices: MemoryDevices,
        commands: MemoryCommands,
        publisher: RecordingPublisher,
    }

    impl Ports {
        async fn new() -> Self {
            let ports = Self::default();
            let body = json!({"tenant": "demo", "iccid": cellbridge_core::testing::iccid(1), "model": "TRK-200", "firmware": "2.4.1"});
            let announcement =
                parse_announcement("trk-1", body.to_string().as_bytes()).expect("valid");
            ports
                .devices
                .register(&announcement, now() - Duration::days(1))
                .await
                .expect("registered");
            ports
        }

        async fn call(&self, message: &PresenceMessage) -> Result<Outcome, PresenceError> {
            handle(
                &self.devices,
                &self.commands,
                &self.publisher,
                message,
                now(),
            )
            .await
        }

        async fn connected(&self) -> bool {
            let thing = ThingName::parse("trk-1").expect("name");
            self.devices
                .get_device(&thing)
                .await
                .expect("store")
                .expect("device")
                .presence
                .connected
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

    #[tokio::test]
    async fn the_samples_connect_beat_and_disconnect() {
        let ports = Ports::new().await;
        assert_eq!(
            ports.call(&message(CONNECTED)).await.expect("ok"),
            Outcome::Applied
        );
        assert!(ports.connected().await);
        assert_eq!(
            ports.call(&message(HEARTBEAT)).await.expect("ok"),
            Outcome::Applied
        );
        assert_eq!(
            ports.call(&message(HEARTBEAT)).await.expect("ok"),
            Outcome::Ignored,
            "the same beat again"
        );
        assert_eq!(
            ports.call(&message(DISCONNECTED)).await.expect("ok"),
            Outcome::Applied
        );
        assert!(!ports.connected().await);
        assert_eq!(
            ports.call(&message(CONNECTED)).await.expect("ok"),
            Outcome::Ignored,
            "its connect, late"
        );
        assert!(!ports.connected().await);
    }

    #[tokio::test]
    async fn unknown_devices_and_garbage_are_dropped_not_retried() {
        let ports = Ports::new().await;
        let thing = ThingName::parse("trk-1").expect("name");
        let presence = |device: Option<cellbridge_devices::ports::DeviceRecord>| {
            device.expect("registered").presence
        };
        let before = presence(ports.devices.get_device(&thing).await.expect("store"));
        let mut unknown = message(CONNECTED);
        unknown.client_id = Some("never-registered".into());
        assert_eq!(
            ports.call(&unknown).await.expect("ok"),
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
                ports.call(&parsed).await.expect("ok"),
                Outcome::Malformed,
                "{broken}"
            );
        }
        assert_eq!(
            presence(ports.devices.get_device(&thing).await.expect("store")),
            before,
            "nothing applied"
        );
    }

    #[tokio::test]
    async fn a_connect_delivers_the_queued_commands_that_have_not_expired() {
        let ports = Ports::new().await;
        let first = ports.queue(Duration::minutes(30), 3600);
        let second = ports.queue(Duration::minutes(20), 3600);
        let expired = ports.queue(Duration::minutes(30), 600);
        let answered = ports.queue(Duration::minutes(10), 3600);
        ports
            .commands
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
            ports.call(&message(DISCONNECTED)).await.expect("ok"),
            Outcome::Applied
        );
        assert!(ports.publisher.published().is_empty());
        let mut reconnect = message(CONNECTED);
        reconnect.version_number = Some(4);
        assert_eq!(ports.call(&reconnect).await.expect("ok"), Outcome::Applied);
        assert_eq!(
            ports.published_ids(),
            [first.id.to_string(), second.id.to_string()],
            "oldest first"
        );
        assert_eq!(ports.status(&first), Some(CommandStatus::Sent));
        assert_eq!(ports.status(&second), Some(CommandStatus::Sent));
        assert_eq!(
            ports.status(&expired),
            Some(CommandStatus::Queued),
            "the sweep expires it"
        );
        assert_eq!(ports.status(&answered), Some(CommandStatus::Successful));
        let message = &ports.publisher.published_to(&topics::commands("trk-1"))[0];
        assert_eq!(message["name"], "reboot");
        assert_eq!(message["expiresAt"], "2026-11-22T09:30:01Z");

        // A duplicate of the connect sends nothing again: nothing is queued any more.
        assert_eq!(ports.call(&reconnect).await.expect("ok"), Outcome::Ignored);
        assert_eq!(ports.published_ids().len(), 2);
    }

    #[tokio::test]
    async fn a_failed_publish_keeps_the_command_queued_and_the_retry_sends_it() {
        let ports = Ports::new().await;
        let command = ports.queue(Duration::minutes(1), 3600);
        ports.publisher.fail_topic(&topics::commands("trk-1"));
        assert!(matches!(
            ports.call(&message(CONNECTED)).await,
            Err(PresenceError::Publish { failed: 1, .. })
        ));
        assert!(ports.connected().await, "the connection itself is recorded");
        assert_eq!(ports.status(&command), Some(CommandStatus::Queued));

        let ports = Ports {
            publisher: RecordingPublisher::default(),
            ..ports
        };
        assert_eq!(
            ports.call(&message(CONNECTED)).await.expect("ok"),
            Outcome::Ignored,
            "Lambda's retry of the same event"
        );
        assert_eq!(ports.published_ids(), [command.id.to_string()]);
        assert_eq!(ports.status(&command), Some(CommandStatus::Sent));
    }

    #[tokio::test]
    async fn a_store_failure_is_an_error_to_retry() {
        let ports = Ports::new().await;
        ports.queue(Duration::minutes(1), 3600);
        ports.commands.set_unavailable(true);
        assert!(matches!(
            ports.call(&message(CONNECTED)).await,
            Err(PresenceError::Store(_))
        ));
        assert!(ports.publisher.published().is_empty());
    }
}
