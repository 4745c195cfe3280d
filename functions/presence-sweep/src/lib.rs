//! The presence sweep, run on a schedule. IoT Core's lifecycle events say when a device connects
//! and disconnects (MQTT keep-alive ends a dead connection), but a disconnect event can be lost,
//! or a device hang with its connection open. So a device whose session looks open but that has
//! not been heard from (a lifecycle event, a heartbeat, telemetry) for longer than the presence
//! timeout is marked timed out: offline with a reason, and counted. Its next sign of life or
//! lifecycle event clears the mark. Readers already judge the timeout when they read; the sweep
//! makes it durable for everything that reads the table.

use cellbridge_core::store::StoreError;
use cellbridge_devices::ports::DeviceStore;
use cellbridge_devices::wiring::{DeviceTables, PresenceSettings};
use cellbridge_edge::lambda::metrics;
use cellbridge_edge::lambda::metrics::Unit;
use time::{Duration, OffsetDateTime};

cellbridge_core::composite_config! {
    /// This function's configuration, read once at cold start: `presence.timeout`
    /// (`PRESENCE_TIMEOUT_SECONDS`) is how long a connected device may be silent.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Config {
        pub devices: DeviceTables,
        pub presence: PresenceSettings,
    }
}

/// Marks the devices silent past `timeout` and returns how many.
pub async fn sweep(
    store: &dyn DeviceStore,
    now: OffsetDateTime,
    timeout: Duration,
) -> Result<usize, StoreError> {
    let swept = store.sweep_silent(now, timeout).await?;
    for thing in &swept {
        tracing::info!(%thing, timeout_s = timeout.whole_seconds(), "connected device silent past the presence timeout; marked offline");
    }
    metrics::emit(
        &[("Function", "presence-sweep")],
        &[("DevicesTimedOut", swept.len() as f64, Unit::Count)],
    );
    Ok(swept.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::eventbridge::EventBridgeEvent;
    use cellbridge_core::config::{ConfigError, FromEnvironment};
    use cellbridge_devices::memory::MemoryDevices;
    use cellbridge_devices::presence::{LifecycleEvent, LifecycleKind, DEFAULT_PRESENCE_TIMEOUT};
    use cellbridge_devices::registration::{parse_announcement, ThingName};
    use cellbridge_devices::wiring::PRESENCE_TIMEOUT_ENV;
    use serde_json::json;
    use time::macros::datetime;

    const SCHEDULED: &str = include_str!("../../../events/presence-sweep/scheduled.json");
    const T0: OffsetDateTime = datetime!(2026-11-22 09:00 UTC);

    fn name(thing: &str) -> ThingName {
        ThingName::parse(thing).expect("name")
    }

    async fn online(store: &MemoryDevices, thing: &str, now: OffsetDateTime) -> bool {
        store
            .get_device(&name(thing))
            .await
            .expect("store")
            .expect("device")
            .presence
            .is_online(now, DEFAULT_PRESENCE_TIMEOUT)
    }

    #[tokio::test]
    async fn connected_devices_silent_past_the_timeout_are_marked_once_and_life_brings_them_back() {
        let _: EventBridgeEvent = serde_json::from_str(SCHEDULED).expect("the sample parses");
        let store = MemoryDevices::default();
        for (n, thing) in ["quiet", "chatty", "gone"].into_iter().enumerate() {
            let body = json!({"tenant": "demo", "iccid": cellbridge_core::testing::iccid(n as u32), "model": "M", "firmware": "1"});
            let announcement =
                parse_announcement(thing, body.to_string().as_bytes()).expect("valid");
            store.register(&announcement, T0).await.expect("store");
            let connected = LifecycleEvent {
                kind: LifecycleKind::Connected,
                version: 1,
                at: T0,
            };
            store
                .apply_presence(&name(thing), &connected)
                .await
                .expect("store");
        }
        let disconnected = LifecycleEvent {
            kind: LifecycleKind::Disconnected,
            version: 1,
            at: T0 + Duration::minutes(1),
        };
        store
            .apply_presence(&name("gone"), &disconnected)
            .await
            .expect("store");
        // A heartbeat (or telemetry) within the timeout; the quiet device keeps its connection
        // open with keep-alive only, which is enough for 15 minutes.
        store
            .record_activity(&name("chatty"), T0 + Duration::minutes(10))
            .await
            .expect("store");
        let early = T0 + Duration::minutes(14);
        assert_eq!(
            sweep(&store, early, DEFAULT_PRESENCE_TIMEOUT)
                .await
                .expect("ok"),
            0,
            "keep-alive alone is enough for fifteen minutes"
        );
        assert!(online(&store, "quiet", early).await);

        let now = T0 + Duration::minutes(16);
        assert_eq!(
            sweep(&store, now, DEFAULT_PRESENCE_TIMEOUT)
                .await
                .expect("ok"),
            1,
            "quiet"
        );
        assert_eq!(
            sweep(&store, now, DEFAULT_PRESENCE_TIMEOUT)
                .await
                .expect("ok"),
            0,
            "once"
        );
        assert!(online(&store, "chatty", now).await);
        assert!(!online(&store, "quiet", now).await);
        assert!(
            !online(&store, "gone", now).await,
            "disconnected, not swept"
        );
        store
            .record_activity(&name("quiet"), now + Duration::seconds(1))
            .await
            .expect("store");
        assert!(online(&store, "quiet", now + Duration::seconds(2)).await);
    }

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: std::collections::BTreeMap<String, String> = [
            ("DEVICES_TABLE", "devices"),
            ("TELEMETRY_TABLE", "telemetry"),
        ]
        .iter()
        .chain(pairs)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Config::from_env(&env)
    }

    #[test]
    fn the_timeout_defaults_to_fifteen_minutes_and_a_bad_one_names_its_variable() {
        assert_eq!(
            config(&[]).map(|c| c.presence.timeout),
            Ok(Duration::minutes(15))
        );
        assert_eq!(
            config(&[(PRESENCE_TIMEOUT_ENV, "1800")]).map(|c| c.presence.timeout),
            Ok(Duration::seconds(1800))
        );
        for bad in ["1", "ten", "86401"] {
            let error = config(&[(PRESENCE_TIMEOUT_ENV, bad)]).expect_err(bad);
            assert_eq!(error.variable(), PRESENCE_TIMEOUT_ENV);
        }
    }
}
