//! Simulated cellular devices speaking MQTT to cellbridge, for local stacks and load tests.
//!
//! Each device is a tokio task with its own MQTT connection (clean session, QoS 1, client id =
//! thing name). It announces itself on `register` with a deterministic ICCID and IMEI, waits for
//! `register/accepted`, then samples its sensors every second and publishes the samples in
//! batches (once a minute by default; or one message per sample, and heartbeats, as older devices
//! do) and answers commands. Topics come from
//! [`cellbridge::devices::topics`]; nothing here spells one out.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use device_sim::{Fleet, FleetOptions};
//! let fleet = Fleet::start(FleetOptions {
//!     devices: 100,
//!     ..FleetOptions::new("127.0.0.1:1883".parse()?)
//! })?;
//! tokio::time::sleep(std::time::Duration::from_secs(10)).await;
//! println!("{}", fleet.stats());
//! fleet.shutdown().await?;
//! # Ok(())
//! # }
//! ```

mod device;
pub mod identity;
pub mod protocol;
mod stats;

pub use device::{DeviceStatus, Misbehaviour, Registration};
pub use stats::FleetStats;

use anyhow::{bail, Context};
use cellbridge::devices::registration::ThingName;
use device::{Control, Device, DeviceShared, DeviceSpec, Identity};
use identity::SimRng;
use stats::Counters;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How a fleet is made up and behaves.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// The MQTT broker (plain TCP).
    pub mqtt: SocketAddr,
    pub devices: usize,
    /// Thing names are `<prefix>-0001`, `<prefix>-0002`, ...
    pub prefix: String,
    /// Announced as the devices' tenant; the cloud decides whether it exists.
    pub tenant: String,
    /// How often a device samples its sensors.
    pub telemetry_every: Duration,
    /// Samples go out together this long after the previous batch, or sooner when the next one
    /// would not fit one 5 KB metered message; `None` publishes each sample as it is taken (the
    /// original format).
    pub batch_every: Option<Duration>,
    /// `None`: no heartbeats (presence comes from MQTT keep-alive and the lifecycle events).
    pub heartbeat_every: Option<Duration>,
    /// MQTT keep-alive: zero or at least one second.
    pub keep_alive: Duration,
    /// First connections are spread evenly over this, so a large fleet does not stampede.
    pub start_spread: Duration,
    /// Announce again when neither `register/accepted` nor `register/rejected` came this long
    /// after announcing.
    pub register_retry: Duration,
    pub model: String,
    pub firmware: String,
    /// Derives ICCIDs, IMEIs, readings and random choices: same seed, same fleet.
    pub seed: u64,
}

impl FleetOptions {
    /// Ten devices `sim-0001`.. of tenant `demo` as the device contract has them: a sample a
    /// second, published in batches once a minute, no heartbeats, keep-alive 30 s.
    pub fn new(mqtt: SocketAddr) -> Self {
        Self {
            mqtt,
            devices: 10,
            prefix: "sim".to_owned(),
            tenant: "demo".to_owned(),
            telemetry_every: Duration::from_secs(1),
            batch_every: Some(Duration::from_secs(60)),
            heartbeat_every: None,
            keep_alive: Duration::from_secs(30),
            start_spread: Duration::ZERO,
            register_retry: Duration::from_secs(30),
            model: "SIM-TRK-100".to_owned(),
            firmware: "1.0.0".to_owned(),
            seed: 1,
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.devices == 0 {
            bail!("a fleet needs at least one device");
        }
        // The last name is the longest; the first catches a bad prefix just as well.
        for index in [0, self.devices - 1] {
            let thing = identity::thing_name(&self.prefix, index);
            if ThingName::parse(&thing).is_none() {
                bail!("'{thing}' is not a thing name: the prefix may use letters, digits, ':', '_' and '-', and the name at most 128 characters");
            }
        }
        for (name, period) in [
            ("telemetry_every", self.telemetry_every),
            (
                "batch_every",
                self.batch_every.unwrap_or(self.telemetry_every),
            ),
            (
                "heartbeat_every",
                self.heartbeat_every.unwrap_or(self.telemetry_every),
            ),
            ("register_retry", self.register_retry),
        ] {
            if period.is_zero() {
                bail!("{name} must be longer than zero");
            }
        }
        if !self.keep_alive.is_zero() && self.keep_alive < Duration::from_secs(1) {
            bail!("keep_alive must be zero (off) or at least one second");
        }
        Ok(())
    }
}

struct DeviceHandle {
    identity: Identity,
    control: mpsc::UnboundedSender<Control>,
    shared: Arc<DeviceShared>,
    task: JoinHandle<()>,
}

/// A running fleet. Dropping it stops every device abruptly; [`Fleet::shutdown`] disconnects
/// them cleanly.
pub struct Fleet {
    devices: Vec<DeviceHandle>,
    by_thing: HashMap<String, usize>,
    counters: Arc<Counters>,
    /// Picks the victims of [`Fleet::drop_random`], reproducibly from the seed.
    picker: Mutex<SimRng>,
}

impl Fleet {
    /// Starts one task per device; must be called inside a tokio runtime. Returns at once: the
    /// devices connect in the background over `start_spread`.
    pub fn start(options: FleetOptions) -> anyhow::Result<Fleet> {
        options.check()?;
        tokio::runtime::Handle::try_current()
            .context("Fleet::start needs to run inside a tokio runtime")?;
        let counters = Arc::new(Counters::default());
        let mut devices = Vec::with_capacity(options.devices);
        let mut by_thing = HashMap::with_capacity(options.devices);
        for index in 0..options.devices {
            let identity = Identity {
                thing: identity::thing_name(&options.prefix, index),
                iccid: identity::iccid(options.seed, index),
                imei: identity::imei(options.seed, index),
            };
            // Even spacing: device i connects at i/n of the spread.
            let start_after = options
                .start_spread
                .mul_f64(index as f64 / options.devices as f64);
            let spec = DeviceSpec {
                index,
                identity: identity.clone(),
                mqtt: options.mqtt,
                tenant: options.tenant.clone(),
                model: options.model.clone(),
                firmware: options.firmware.clone(),
                seed: options.seed,
                telemetry_every: options.telemetry_every,
                batch_every: options.batch_every,
                heartbeat_every: options.heartbeat_every,
                keep_alive: options.keep_alive,
                start_after,
                register_retry: options.register_retry,
            };
            let shared = Arc::new(DeviceShared::new(options.telemetry_every));
            let (control, control_rx) = mpsc::unbounded_channel();
            let task = Device::spawn(spec, counters.clone(), shared.clone(), control_rx);
            by_thing.insert(identity.thing.clone(), index);
            devices.push(DeviceHandle {
                identity,
                control,
                shared,
                task,
            });
        }
        Ok(Fleet {
            devices,
            by_thing,
            counters,
            picker: Mutex::new(SimRng::new(options.seed ^ 0xD80F)),
        })
    }

    /// Thing names, in device order.
    pub fn things(&self) -> impl Iterator<Item = &str> {
        self.devices.iter().map(|d| d.identity.thing.as_str())
    }

    pub fn stats(&self) -> FleetStats {
        self.counters.snapshot(self.devices.len())
    }

    pub fn device_status(&self, thing: &str) -> Option<DeviceStatus> {
        let device = &self.devices[*self.by_thing.get(thing)?];
        Some(device.shared.status(&device.identity))
    }

    /// Waits until `condition` holds for the stats (checked every 50 ms), or `timeout` passes.
    /// Returns the last stats and whether the condition held.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        condition: impl Fn(&FleetStats) -> bool,
    ) -> (FleetStats, bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let stats = self.stats();
            if condition(&stats) {
                return (stats, true);
            }
            if tokio::time::Instant::now() >= deadline {
                return (stats, false);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn send(&self, thing: &str, control: Control) -> anyhow::Result<()> {
        let index = *self
            .by_thing
            .get(thing)
            .with_context(|| format!("no device '{thing}' in this fleet"))?;
        self.devices[index]
            .control
            .send(control)
            .map_err(|_| anyhow::anyhow!("device '{thing}' has stopped"))
    }

    /// Closes the device's connection without DISCONNECT (the broker sees it lost), and has it
    /// connect again after `reconnect_after`. It does not announce again.
    pub fn drop(&self, thing: &str, reconnect_after: Duration) -> anyhow::Result<()> {
        self.send(thing, Control::Drop { reconnect_after })
    }

    /// [`Fleet::drop`]s up to `count` devices picked at random among those connected; returns
    /// their names.
    pub fn drop_random(&self, count: usize, reconnect_after: Duration) -> Vec<String> {
        let mut connected: Vec<usize> = (0..self.devices.len())
            .filter(|&i| {
                self.devices[i]
                    .shared
                    .online
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .collect();
        let count = count.min(connected.len());
        let mut picker = self
            .picker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Partial Fisher-Yates: the first `count` slots end up a uniform sample.
        for slot in 0..count {
            let pick = slot + picker.below((connected.len() - slot) as u64) as usize;
            connected.swap(slot, pick);
        }
        drop(picker);
        connected[..count]
            .iter()
            .filter(|&&i| {
                self.devices[i]
                    .control
                    .send(Control::Drop { reconnect_after })
                    .is_ok()
            })
            .map(|&i| self.devices[i].identity.thing.clone())
            .collect()
    }

    /// Sends DISCONNECT and closes; the device stays offline until [`Fleet::reconnect`].
    pub fn disconnect(&self, thing: &str) -> anyhow::Result<()> {
        self.send(thing, Control::Disconnect)
    }

    /// Connects a disconnected or dropped device now.
    pub fn reconnect(&self, thing: &str) -> anyhow::Result<()> {
        self.send(thing, Control::Reconnect)
    }

    /// Has the device announce itself again (and stop telemetry until the answer).
    pub fn reregister(&self, thing: &str) -> anyhow::Result<()> {
        self.send(thing, Control::Reregister)
    }

    /// Makes one device misbehave (or behave again, with [`Misbehaviour::None`]).
    pub fn set_misbehaviour(&self, thing: &str, misbehaviour: Misbehaviour) -> anyhow::Result<()> {
        self.send(thing, Control::Misbehave(misbehaviour))
    }

    /// Disconnects every device cleanly and waits for their tasks; returns the final stats.
    pub async fn shutdown(self) -> anyhow::Result<FleetStats> {
        for device in &self.devices {
            // A device whose task already ended has nothing to disconnect.
            let _ = device.control.send(Control::Shutdown);
        }
        let device_count = self.devices.len();
        let mut panicked = Vec::new();
        // Each device gives its DISCONNECT a bounded grace, so this ends.
        for device in self.devices {
            if let Err(error) = device.task.await {
                panicked.push(format!("{}: {error}", device.identity.thing));
            }
        }
        let stats = self.counters.snapshot(device_count);
        if !panicked.is_empty() {
            bail!("device tasks failed: {}", panicked.join("; "));
        }
        Ok(stats)
    }
}
