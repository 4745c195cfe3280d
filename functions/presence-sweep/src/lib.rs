//! The heartbeat sweep, run on a schedule: a device whose session looks open but that has been
//! silent past the heartbeat timeout (its disconnect event was lost, or it hung) is marked timed
//! out, so it reads as offline with a reason and is counted. Its next heartbeat or lifecycle
//! event clears the mark. The device API already judges silence at read time; the sweep makes
//! the state durable for everything that reads the table.

use cellbridge_core::config::{number_in, ConfigError, Environment, FromEnvironment};
use cellbridge_core::store::StoreError;
use cellbridge_devices::ports::DeviceStore;
use cellbridge_devices::presence::DEFAULT_HEARTBEAT_TIMEOUT;
use cellbridge_devices::wiring::DeviceTables;
use cellbridge_edge::lambda::metrics;
use cellbridge_edge::lambda::metrics::Unit;
use time::{Duration, OffsetDateTime};

pub const TIMEOUT_ENV: &str = "HEARTBEAT_TIMEOUT_SECONDS";

/// This function's configuration, read once at cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub devices: DeviceTables,
    /// Silence after which an open session counts as lost.
    pub heartbeat_timeout: Duration,
}

impl FromEnvironment for Config {
    fn from_env(env: &dyn Environment) -> Result<Self, ConfigError> {
        let seconds = number_in(
            env,
            TIMEOUT_ENV,
            2..=86_400,
            DEFAULT_HEARTBEAT_TIMEOUT.whole_seconds(),
            "seconds",
        )?;
        Ok(Self {
            devices: DeviceTables::from_env(env)?,
            heartbeat_timeout: Duration::seconds(seconds),
        })
    }
}

/// Marks the silent devices and returns how many.
pub async fn sweep(
    store: &dyn DeviceStore,
    now: OffsetDateTime,
    timeout: Duration,
) -> Result<usize, StoreError> {
    let swept = store.sweep_silent(now, timeout).await?;
    for thing in &swept {
        tracing::info!(%thing, timeout_s = timeout.whole_seconds(), "device silent past its heartbeat timeout; marked offline");
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
    use cellbridge_devices::memory::MemoryDevices;
    use cellbridge_devices::presence::{LifecycleEvent, LifecycleKind};
    use cellbridge_devices::registration::{parse_announcement, ThingName};
    use serde_json::json;

    const SCHEDULED: &str = include_str!("../../../events/presence-sweep/scheduled.json");

    #[tokio::test]
    async fn silent_connected_devices_are_marked_once_and_a_beat_brings_them_back() {
        let _: EventBridgeEvent = serde_json::from_str(SCHEDULED).expect("the sample parses");
        let store = MemoryDevices::default();
        let t0 = OffsetDateTime::now_utc();
        for (n, thing) in ["quiet", "chatty"].into_iter().enumerate() {
            let body = json!({"tenant": "demo", "iccid": cellbridge_core::testing::iccid(n as u32), "model": "M", "firmware": "1"});
            let announcement =
                parse_announcement(thing, body.to_string().as_bytes()).expect("valid");
            store.register(&announcement, t0).await.expect("store");
            let name = ThingName::parse(thing).expect("name");
            let connected = LifecycleEvent {
                kind: LifecycleKind::Connected,
                version: 1,
                at: t0,
            };
            store
                .apply_presence(&name, &connected)
                .await
                .expect("store");
        }
        let chatty = ThingName::parse("chatty").expect("name");
        store
            .record_activity(&chatty, t0 + Duration::seconds(9))
            .await
            .expect("store");
        let now = t0 + Duration::seconds(15);
        assert_eq!(
            sweep(&store, now, DEFAULT_HEARTBEAT_TIMEOUT)
                .await
                .expect("ok"),
            1
        );
        assert_eq!(
            sweep(&store, now, DEFAULT_HEARTBEAT_TIMEOUT)
                .await
                .expect("ok"),
            0
        );
        let quiet = ThingName::parse("quiet").expect("name");
        store
            .record_activity(&quiet, now + Duration::seconds(1))
            .await
            .expect("store");
        let device = store
            .get_device(&quiet)
            .await
            .expect("store")
            .expect("device");
        assert!(device
            .presence
            .is_online(now + Duration::seconds(2), DEFAULT_HEARTBEAT_TIMEOUT));
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
    fn the_timeout_defaults_to_ten_seconds_and_a_bad_one_names_its_variable() {
        assert_eq!(
            config(&[]).map(|c| c.heartbeat_timeout),
            Ok(DEFAULT_HEARTBEAT_TIMEOUT)
        );
        assert_eq!(
            config(&[(TIMEOUT_ENV, "30")]).map(|c| c.heartbeat_timeout),
            Ok(Duration::seconds(30))
        );
        for bad in ["1", "ten", "86401"] {
            let error = config(&[(TIMEOUT_ENV, bad)]).expect_err(bad);
            assert_eq!(error.variable(), TIMEOUT_ENV);
        }
    }
}
