//! Presence from IoT Core: lifecycle events (`$aws/events/presence/{connected,disconnected}/+`)
//! and device heartbeats (`devices/+/heartbeat`), each routed here by a topic rule. Events are
//! applied in version order; duplicates, late events and unknown devices change nothing.
//!
//! The rules invoke this function asynchronously, and Lambda retries a failed invocation. So a
//! message that can never be applied (malformed, unknown device) is logged and acknowledged, and
//! only a store failure is an error, which is worth the retry.

use cellbridge::devices::presence::{LifecycleEvent, LifecycleKind};
use cellbridge::devices::registration::ThingName;
use cellbridge::ports::{DeviceStore, StoreError};
use serde::Deserialize;
use time::OffsetDateTime;

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

pub async fn handle(
    store: &dyn DeviceStore,
    message: &PresenceMessage,
) -> Result<Outcome, StoreError> {
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
    if store.get_device(&thing).await?.is_none() {
        tracing::info!(%thing, "presence of a device that never registered; dropped");
        return Ok(Outcome::UnknownDevice);
    }
    let event_type = message.event_type.as_deref().unwrap_or("");
    let applied = if event_type == "heartbeat" {
        store.record_activity(&thing, at).await?
    } else {
        let (Some(kind), Some(version)) =
            (LifecycleKind::parse(event_type), message.version_number)
        else {
            tracing::warn!(?message, "not a lifecycle event; dropped");
            return Ok(Outcome::Malformed);
        };
        store
            .apply_presence(&thing, &LifecycleEvent { kind, version, at })
            .await?
    };
    tracing::info!(%thing, event_type, applied, "presence");
    Ok(if applied {
        Outcome::Applied
    } else {
        Outcome::Ignored
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellbridge::adapters::devices::MemoryDevices;
    use cellbridge::devices::registration::parse_announcement;
    use serde_json::json;

    const CONNECTED: &str = include_str!("../../../events/device-presence/connected.json");
    const DISCONNECTED: &str = include_str!("../../../events/device-presence/disconnected.json");
    const HEARTBEAT: &str = include_str!("../../../events/device-presence/heartbeat.json");

    async fn store() -> MemoryDevices {
        let store = MemoryDevices::default();
        let body = json!({"tenant": "demo", "iccid": cellbridge::testing::iccid(1), "model": "TRK-200", "firmware": "2.4.1"});
        let announcement = parse_announcement("trk-1", body.to_string().as_bytes()).expect("valid");
        store
            .register(&announcement, OffsetDateTime::now_utc())
            .await
            .expect("registered");
        store
    }

    fn message(sample: &str) -> PresenceMessage {
        serde_json::from_str(sample).expect("sample")
    }

    async fn connected(store: &MemoryDevices) -> bool {
        let thing = ThingName::parse("trk-1").expect("name");
        store
            .get_device(&thing)
            .await
            .expect("store")
            .expect("device")
            .presence
            .connected
    }

    #[tokio::test]
    async fn the_samples_connect_beat_and_disconnect() {
        let store = store().await;
        assert_eq!(
            handle(&store, &message(CONNECTED)).await.expect("ok"),
            Outcome::Applied
        );
        assert!(connected(&store).await);
        assert_eq!(
            handle(&store, &message(HEARTBEAT)).await.expect("ok"),
            Outcome::Applied
        );
        assert_eq!(
            handle(&store, &message(HEARTBEAT)).await.expect("ok"),
            Outcome::Ignored,
            "the same beat again"
        );
        assert_eq!(
            handle(&store, &message(DISCONNECTED)).await.expect("ok"),
            Outcome::Applied
        );
        assert!(!connected(&store).await);
        assert_eq!(
            handle(&store, &message(CONNECTED)).await.expect("ok"),
            Outcome::Ignored,
            "its connect, late"
        );
        assert!(!connected(&store).await);
    }

    #[tokio::test]
    async fn unknown_devices_and_garbage_are_dropped_not_retried() {
        let store = store().await;
        let mut unknown = message(CONNECTED);
        unknown.client_id = Some("never-registered".into());
        assert_eq!(
            handle(&store, &unknown).await.expect("ok"),
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
                handle(&store, &parsed).await.expect("ok"),
                Outcome::Malformed,
                "{broken}"
            );
        }
        assert!(!connected(&store).await);
    }
}
