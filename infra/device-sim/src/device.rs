//! One simulated device: a tokio task owning its MQTT client and event loop.
//!
//! The task alternates between two phases. Online, it polls the event loop while its timers
//! (telemetry, heartbeat, misbehaviour) publish through the client's queue; offline (start
//! spread, after a drop, a disconnect or a failed connection) it only waits for its deadline or a
//! control message. Publishing uses `try_publish`: the task that queues a message is also the one
//! polling the event loop, so an awaiting publish on a full queue would never be drained.

use crate::identity::SimRng;
use crate::protocol::{self, Effect, Sensors};
use crate::stats::{bump, shift, Counters};
use cellbridge::devices::command::CommandStatus;
use cellbridge::devices::topics;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, Incoming, MqttOptions, Outgoing, QoS,
    SubscribeFilter, SubscribeReasonCode,
};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{self, Instant, Interval, MissedTickBehavior};

/// Requests queued between two polls of the event loop. A device sends a handful of messages
/// per tick; a flooding one up to a few per millisecond, so this absorbs short stalls without
/// holding much memory per device.
const REQUEST_QUEUE: usize = 64;
/// QoS 1 messages awaiting PUBACK before the client stops sending.
const MAX_INFLIGHT: u16 = 32;
/// AWS IoT Core's limit; the cloud never sends more to a device.
const MAX_INCOMING_BYTES: usize = 128 * 1024;
/// Above the cloud's limit on purpose, so the oversize misbehaviour reaches the broker.
const MAX_OUTGOING_BYTES: usize = 256 * 1024;
/// How long a clean DISCONNECT may take before the socket is closed anyway.
const DISCONNECT_GRACE: Duration = Duration::from_secs(2);
/// Between the SUCCESSFUL ack of `reboot` and the device going down, so the ack is on its way.
const REBOOT_AFTER_ACK: Duration = Duration::from_millis(500);
const REBOOT_OFFLINE: Duration = Duration::from_secs(2);
/// Reconnect backoff after failures: 1 s doubling up to 16 s, plus up to 1 s of jitter so a
/// fleet that lost its broker does not come back in one burst.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_MAX_DOUBLINGS: u32 = 4;
/// How often an unanswered announcement is checked for (against `register_retry`).
const WATCHDOG_EVERY: Duration = Duration::from_secs(1);

/// A device that breaks the rules, for reliability tests. It keeps its normal traffic and adds
/// the bad messages on its telemetry topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Misbehaviour {
    #[default]
    None,
    /// Bytes that are not JSON, once per telemetry interval.
    Garbage,
    /// Payloads over 128 KiB, once per telemetry interval.
    Oversize,
    /// Valid telemetry at this many messages a second (above 100 breaks AWS IoT's per-client
    /// publish limit).
    Flood { per_second: u32 },
}

impl FromStr for Misbehaviour {
    type Err = String;

    /// `none`, `garbage`, `oversize`, `flood` (200 msg/s) or `flood:<per second>`.
    fn from_str(text: &str) -> Result<Self, String> {
        match text.split_once(':') {
            None => match text {
                "none" => Ok(Self::None),
                "garbage" => Ok(Self::Garbage),
                "oversize" => Ok(Self::Oversize),
                "flood" => Ok(Self::Flood { per_second: 200 }),
                other => Err(format!(
                    "'{other}' is not none, garbage, oversize, flood or flood:<per second>"
                )),
            },
            Some(("flood", rate)) => match rate.parse::<u32>() {
                Ok(per_second @ 1..=10_000) => Ok(Self::Flood { per_second }),
                _ => Err(format!("flood rate '{rate}' is not 1 to 10000 per second")),
            },
            Some(_) => Err(format!("'{text}' is not flood:<per second>")),
        }
    }
}

/// Where a device stands with the cloud's registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// Not announced yet (or asked to announce again).
    Unannounced,
    /// Announced, no reply yet.
    Announced,
    Accepted,
    Rejected {
        reasons: Vec<String>,
    },
}

/// A device as the fleet sees it from outside its task.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceStatus {
    pub thing: String,
    pub iccid: String,
    pub imei: String,
    pub connected: bool,
    /// The broker acknowledged the device's subscriptions on its current session, so commands
    /// reach it. A reconnected device replays its unacknowledged messages before subscribing
    /// again, so this comes a little after `connected`.
    pub subscribed: bool,
    pub registration: Registration,
    pub telemetry_every: Duration,
    pub telemetry_sent: u64,
    pub misbehaviour: Misbehaviour,
}

/// What a device task publishes about itself; written on state changes only, never per message
/// (except the one relaxed counter).
#[derive(Debug)]
pub(crate) struct DeviceShared {
    pub online: AtomicBool,
    pub subscribed: AtomicBool,
    pub telemetry_sent: AtomicU64,
    state: Mutex<SharedState>,
}

#[derive(Debug, Clone)]
struct SharedState {
    registration: Registration,
    telemetry_every: Duration,
    misbehaviour: Misbehaviour,
}

impl DeviceShared {
    pub fn new(telemetry_every: Duration) -> Self {
        Self {
            online: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            telemetry_sent: AtomicU64::new(0),
            state: Mutex::new(SharedState {
                registration: Registration::Unannounced,
                telemetry_every,
                misbehaviour: Misbehaviour::None,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, SharedState> {
        // The state is a plain snapshot; one left by a panicking writer is still readable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn status(&self, identity: &Identity) -> DeviceStatus {
        let state = self.state().clone();
        DeviceStatus {
            thing: identity.thing.clone(),
            iccid: identity.iccid.clone(),
            imei: identity.imei.clone(),
            connected: self.online.load(Ordering::Relaxed),
            subscribed: self.subscribed.load(Ordering::Relaxed),
            registration: state.registration,
            telemetry_every: state.telemetry_every,
            telemetry_sent: self.telemetry_sent.load(Ordering::Relaxed),
            misbehaviour: state.misbehaviour,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub thing: String,
    pub iccid: String,
    pub imei: String,
}

#[derive(Debug)]
pub(crate) enum Control {
    /// Close the socket without DISCONNECT; connect again after the delay.
    Drop {
        reconnect_after: Duration,
    },
    /// Send DISCONNECT, close, stay offline until `Reconnect`.
    Disconnect,
    Reconnect,
    /// Announce again (at once when online, else after the next connect).
    Reregister,
    Misbehave(Misbehaviour),
    /// DISCONNECT and end the task.
    Shutdown,
}

/// Everything a device task needs, fixed at start.
pub(crate) struct DeviceSpec {
    pub index: usize,
    pub identity: Identity,
    pub mqtt: SocketAddr,
    pub tenant: String,
    pub model: String,
    pub firmware: String,
    pub seed: u64,
    pub telemetry_every: Duration,
    pub batch_every: Option<Duration>,
    pub heartbeat_every: Option<Duration>,
    pub keep_alive: Duration,
    pub start_after: Duration,
    pub register_retry: Duration,
}

/// Every topic of the device, built once instead of per message.
struct Topics {
    register: String,
    accepted: String,
    rejected: String,
    telemetry: String,
    heartbeat: String,
    commands: String,
    ack: String,
    subscriptions: [String; 2],
}

impl Topics {
    fn of(thing: &str) -> Self {
        Self {
            register: topics::register(thing),
            accepted: topics::register_accepted(thing),
            rejected: topics::register_rejected(thing),
            telemetry: topics::telemetry(thing),
            heartbeat: topics::heartbeat(thing),
            commands: topics::commands(thing),
            ack: topics::command_ack(thing),
            subscriptions: topics::device_subscriptions(thing),
        }
    }
}

/// What the device does next.
enum Phase {
    Online,
    /// Offline until the instant, or until told to reconnect (`None`).
    Offline(Option<Instant>),
    Exit,
}

/// Why the online phase stopped polling.
enum Wake {
    Event(Result<Event, ConnectionError>),
    Control(Option<Control>),
}

pub(crate) struct Device {
    spec: DeviceSpec,
    topics: Topics,
    client: AsyncClient,
    control: mpsc::UnboundedReceiver<Control>,
    counters: Arc<Counters>,
    shared: Arc<DeviceShared>,
    rng: SimRng,
    sensors: Sensors,
    seq: u64,
    online: bool,
    ever_connected: bool,
    failures: u32,
    registration: Registration,
    announced_at: Option<Instant>,
    telemetry_every: Duration,
    telemetry_timer: Option<Interval>,
    /// Samples waiting for the batch timer (batch mode only).
    batch: protocol::SampleBatch,
    batch_timer: Option<Interval>,
    heartbeat_timer: Option<Interval>,
    /// Announces again when `register/accepted` does not come.
    watchdog_timer: Interval,
    /// Until then each sample goes out as it is taken (a `live` command: someone is watching).
    live_until: Option<Instant>,
    misbehaviour: Misbehaviour,
    misbehaviour_timer: Option<Interval>,
    reboot_at: Option<Instant>,
}

fn interval_every(period: Duration) -> Interval {
    // The first tick comes one period from now: nothing is due the moment a timer starts.
    let mut timer = time::interval_at(Instant::now() + period, period);
    // A late tick shifts the schedule instead of bursting to catch up: a busy host then sends
    // fewer messages rather than spikes.
    timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    timer
}

/// Ticks of an optional timer; never, when there is none.
async fn tick(timer: &mut Option<Interval>) {
    match timer {
        Some(timer) => {
            timer.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

impl Device {
    /// Spawns the device's task.
    pub fn spawn(
        spec: DeviceSpec,
        counters: Arc<Counters>,
        shared: Arc<DeviceShared>,
        control: mpsc::UnboundedReceiver<Control>,
    ) -> tokio::task::JoinHandle<()> {
        let mut options = MqttOptions::new(
            spec.identity.thing.clone(),
            spec.mqtt.ip().to_string(),
            spec.mqtt.port(),
        );
        options
            .set_clean_session(true)
            .set_keep_alive(spec.keep_alive)
            .set_inflight(MAX_INFLIGHT)
            .set_max_packet_size(MAX_INCOMING_BYTES, MAX_OUTGOING_BYTES);
        let (client, eventloop) = AsyncClient::new(options, REQUEST_QUEUE);
        let mut rng = SimRng::for_device(spec.seed, spec.index);
        let sensors = Sensors::new(&mut rng);
        let device = Device {
            topics: Topics::of(&spec.identity.thing),
            client,
            control,
            counters,
            shared,
            rng,
            sensors,
            seq: 0,
            online: false,
            ever_connected: false,
            failures: 0,
            registration: Registration::Unannounced,
            announced_at: None,
            telemetry_every: spec.telemetry_every,
            telemetry_timer: None,
            batch: protocol::SampleBatch::default(),
            batch_timer: spec.batch_every.map(interval_every),
            heartbeat_timer: spec.heartbeat_every.map(interval_every),
            watchdog_timer: interval_every(WATCHDOG_EVERY),
            live_until: None,
            misbehaviour: Misbehaviour::None,
            misbehaviour_timer: None,
            reboot_at: None,
            spec,
        };
        tokio::spawn(device.run(eventloop))
    }

    async fn run(mut self, mut eventloop: EventLoop) {
        let mut phase = Phase::Offline(Some(Instant::now() + self.spec.start_after));
        loop {
            phase = match phase {
                Phase::Online => self.online_phase(&mut eventloop).await,
                Phase::Offline(until) => self.offline_phase(until).await,
                Phase::Exit => break,
            };
        }
        self.went_offline();
        tracing::debug!(thing = %self.spec.identity.thing, "device stopped");
    }

    async fn online_phase(&mut self, eventloop: &mut EventLoop) -> Phase {
        loop {
            let wake = {
                // The poll future lives across timer ticks: dropping it mid-write could leave a
                // half-sent packet. It is dropped only to act on an event or a control message.
                let poll = eventloop.poll();
                tokio::pin!(poll);
                loop {
                    let sends_telemetry =
                        self.online && self.registration == Registration::Accepted;
                    tokio::select! {
                        event = &mut poll => break Wake::Event(event),
                        control = self.control.recv() => break Wake::Control(control),
                        _ = tick(&mut self.telemetry_timer), if sends_telemetry => {
                            self.send_telemetry();
                        }
                        _ = tick(&mut self.batch_timer), if sends_telemetry => self.send_batch(),
                        _ = tick(&mut self.heartbeat_timer), if self.online => self.send_heartbeat(),
                        _ = self.watchdog_timer.tick(), if self.online => self.check_registration(),
                        _ = tick(&mut self.misbehaviour_timer), if self.online => self.misbehave(),
                        _ = sleep_until(self.reboot_at) => {
                            self.reboot_at = None;
                            tracing::debug!(thing = %self.spec.identity.thing, "rebooting");
                            break Wake::Control(Some(Control::Drop {
                                reconnect_after: REBOOT_OFFLINE,
                            }));
                        }
                    }
                }
            };
            match wake {
                Wake::Event(Ok(event)) => self.on_event(event),
                Wake::Event(Err(error)) => {
                    bump(&self.counters.connection_errors);
                    tracing::debug!(thing = %self.spec.identity.thing, %error, "connection failed");
                    self.went_offline();
                    return Phase::Offline(Some(Instant::now() + self.backoff()));
                }
                Wake::Control(None) => return Phase::Exit,
                Wake::Control(Some(control)) => match control {
                    Control::Drop { reconnect_after } => {
                        // Closing the socket with no DISCONNECT: the broker sees the connection
                        // lost, as when a modem loses coverage.
                        eventloop.clean();
                        self.went_offline();
                        return Phase::Offline(Some(Instant::now() + reconnect_after));
                    }
                    Control::Disconnect => {
                        self.disconnect_cleanly(eventloop).await;
                        return Phase::Offline(None);
                    }
                    Control::Shutdown => {
                        self.disconnect_cleanly(eventloop).await;
                        return Phase::Exit;
                    }
                    Control::Reconnect => {}
                    Control::Reregister => self.reregister(),
                    Control::Misbehave(misbehaviour) => self.set_misbehaviour(misbehaviour),
                },
            }
        }
    }

    async fn offline_phase(&mut self, mut until: Option<Instant>) -> Phase {
        loop {
            tokio::select! {
                _ = sleep_until(until) => return Phase::Online,
                control = self.control.recv() => match control {
                    None | Some(Control::Shutdown) => return Phase::Exit,
                    Some(Control::Reconnect) => return Phase::Online,
                    Some(Control::Drop { reconnect_after }) => {
                        until = Some(Instant::now() + reconnect_after);
                    }
                    Some(Control::Disconnect) => until = None,
                    Some(Control::Reregister) => self.reregister(),
                    Some(Control::Misbehave(misbehaviour)) => self.set_misbehaviour(misbehaviour),
                },
            }
        }
    }

    fn backoff(&mut self) -> Duration {
        let doublings = self.failures.min(BACKOFF_MAX_DOUBLINGS);
        self.failures = self.failures.saturating_add(1);
        let jitter = Duration::from_millis(self.rng.below(1_000));
        BACKOFF_BASE * 2u32.pow(doublings) + jitter
    }

    /// DISCONNECT through the client's queue (so queued messages go first), then close.
    async fn disconnect_cleanly(&mut self, eventloop: &mut EventLoop) {
        if self.online && self.client.try_disconnect().is_ok() {
            let grace = time::sleep(DISCONNECT_GRACE);
            tokio::pin!(grace);
            loop {
                tokio::select! {
                    event = eventloop.poll() => match event {
                        Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                        Ok(_) => {}
                    },
                    _ = &mut grace => {
                        tracing::debug!(thing = %self.spec.identity.thing, "DISCONNECT not sent in time");
                        break;
                    }
                }
            }
        }
        eventloop.clean();
        self.went_offline();
    }

    fn went_online(&mut self) {
        if !self.online {
            self.online = true;
            self.shared.online.store(true, Ordering::Relaxed);
            shift(&self.counters.connected, 1);
        }
    }

    fn went_offline(&mut self) {
        if self.online {
            self.online = false;
            self.shared.online.store(false, Ordering::Relaxed);
            self.shared.subscribed.store(false, Ordering::Relaxed);
            shift(&self.counters.connected, -1);
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Incoming(Incoming::ConnAck(_)) => {
                self.went_online();
                self.failures = 0;
                bump(&self.counters.connects);
                if self.ever_connected {
                    bump(&self.counters.reconnects);
                }
                self.ever_connected = true;
                // Clean session: subscriptions died with the last connection.
                let filters = self
                    .topics
                    .subscriptions
                    .iter()
                    .map(|topic| SubscribeFilter::new(topic.clone(), QoS::AtLeastOnce));
                if self.client.try_subscribe_many(filters).is_err() {
                    bump(&self.counters.publish_errors);
                }
            }
            Event::Incoming(Incoming::SubAck(ack)) => {
                if ack.return_codes.contains(&SubscribeReasonCode::Failure) {
                    tracing::warn!(thing = %self.spec.identity.thing, "broker refused a subscription");
                } else {
                    self.shared.subscribed.store(true, Ordering::Relaxed);
                }
                // Announcing only once subscribed, so the reply cannot be missed.
                if self.registration == Registration::Unannounced {
                    self.announce();
                }
            }
            Event::Incoming(Incoming::Publish(message)) => {
                self.on_message(&message.topic, &message.payload)
            }
            _ => {}
        }
    }

    fn on_message(&mut self, topic: &str, payload: &[u8]) {
        if topic == self.topics.commands {
            self.on_command(payload);
        } else if topic == self.topics.accepted {
            if self.registration != Registration::Accepted {
                self.set_registration(Registration::Accepted);
                self.telemetry_timer = Some(interval_every(self.telemetry_every));
            }
        } else if topic == self.topics.rejected {
            let reasons = protocol::rejection_reasons(payload);
            tracing::warn!(thing = %self.spec.identity.thing, ?reasons, "registration rejected");
            self.set_registration(Registration::Rejected { reasons });
            self.telemetry_timer = None;
        } else {
            tracing::debug!(thing = %self.spec.identity.thing, topic, "message on an unexpected topic");
        }
    }

    fn on_command(&mut self, payload: &[u8]) {
        bump(&self.counters.commands_received);
        let command = match protocol::parse_command(payload) {
            Ok(command) => command,
            Err(malformed) => {
                tracing::warn!(thing = %self.spec.identity.thing, reason = %malformed.reason, "malformed command");
                if let Some(id) = malformed.command_id {
                    self.send_ack(&id, CommandStatus::Failed, Some(&malformed.reason), None);
                }
                return;
            }
        };
        self.send_ack(&command.id, CommandStatus::Delivered, None, None);
        let location = (self.sensors.lat, self.sensors.lon);
        let outcome = protocol::execute(&command, ::time::OffsetDateTime::now_utc(), location);
        self.send_ack(
            &command.id,
            outcome.status,
            Some(&outcome.detail),
            outcome.location,
        );
        match outcome.effect {
            Effect::None => {}
            Effect::SetTelemetryInterval(every) => {
                self.telemetry_every = every;
                if self.telemetry_timer.is_some() {
                    self.telemetry_timer = Some(interval_every(every));
                }
                self.shared.state().telemetry_every = every;
            }
            Effect::Live(period) => {
                // What waits goes first, so the samples arrive in order.
                self.send_batch();
                self.live_until = Some(Instant::now() + period);
            }
            Effect::Reboot => self.reboot_at = Some(Instant::now() + REBOOT_AFTER_ACK),
        }
    }

    fn set_registration(&mut self, registration: Registration) {
        let gauge = |registration: &Registration| match registration {
            Registration::Accepted => Some(&self.counters.accepted),
            Registration::Rejected { .. } => Some(&self.counters.rejected),
            Registration::Unannounced | Registration::Announced => None,
        };
        if let Some(previous) = gauge(&self.registration) {
            shift(previous, -1);
        }
        if let Some(next) = gauge(&registration) {
            shift(next, 1);
        }
        self.shared.state().registration = registration.clone();
        self.registration = registration;
    }

    fn reregister(&mut self) {
        self.set_registration(Registration::Unannounced);
        self.telemetry_timer = None;
        if self.online {
            self.announce();
        }
    }

    fn set_misbehaviour(&mut self, misbehaviour: Misbehaviour) {
        self.misbehaviour = misbehaviour;
        self.misbehaviour_timer = match misbehaviour {
            Misbehaviour::None => None,
            Misbehaviour::Garbage | Misbehaviour::Oversize => {
                Some(interval_every(self.telemetry_every))
            }
            Misbehaviour::Flood { per_second } => {
                Some(interval_every(Duration::from_secs(1) / per_second.max(1)))
            }
        };
        self.shared.state().misbehaviour = misbehaviour;
    }

    fn publish(&self, topic: &str, payload: Vec<u8>) -> bool {
        let queued = self
            .client
            .try_publish(topic, QoS::AtLeastOnce, false, payload)
            .is_ok();
        if !queued {
            bump(&self.counters.publish_errors);
        }
        queued
    }

    fn announce(&mut self) {
        let payload = protocol::announcement(
            &self.spec.tenant,
            &self.spec.identity.iccid,
            &self.spec.identity.imei,
            &self.spec.model,
            &self.spec.firmware,
        );
        if self.publish(&self.topics.register, payload) {
            bump(&self.counters.announcements_sent);
            self.announced_at = Some(Instant::now());
            self.set_registration(Registration::Announced);
        }
    }

    /// A sample: published at once, or added to the batch (which goes first when full).
    fn send_telemetry(&mut self) {
        self.sensors.step(&mut self.rng);
        let now = protocol::unix_ms_now();
        bump(&self.counters.samples_taken);
        let live = self.live_until.is_some_and(|until| Instant::now() < until);
        if !live {
            self.live_until = None;
        }
        if self.spec.batch_every.is_none() || live {
            self.seq += 1;
            let payload = protocol::telemetry(now, self.seq, &self.sensors);
            self.published_telemetry(payload);
            return;
        }
        let sample = protocol::sample(now, &self.sensors);
        if !self.batch.fits(
            &self.topics.telemetry,
            &sample,
            protocol::METERED_UNIT_BYTES,
        ) {
            self.send_batch();
        }
        self.batch.push(sample);
    }

    /// Publishes what waits; the next batch is due a full period later, so a batch that filled
    /// early is not followed by a small one at the old schedule.
    fn send_batch(&mut self) {
        if let Some(every) = self.spec.batch_every {
            self.batch_timer = Some(interval_every(every));
        }
        if self.batch.is_empty() {
            return;
        }
        self.seq += 1;
        let payload = self.batch.take(self.seq);
        self.published_telemetry(payload);
    }

    fn published_telemetry(&mut self, payload: Vec<u8>) {
        if self.publish(&self.topics.telemetry, payload) {
            bump(&self.counters.telemetry_sent);
            self.shared.telemetry_sent.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn send_heartbeat(&mut self) {
        if self.publish(
            &self.topics.heartbeat,
            protocol::heartbeat(protocol::unix_ms_now()),
        ) {
            bump(&self.counters.heartbeats_sent);
        }
    }

    /// An announcement or its reply may be lost (the cloud was down); a real device asks again.
    fn check_registration(&mut self) {
        let unanswered = self.registration == Registration::Announced
            && self
                .announced_at
                .is_some_and(|at| at.elapsed() >= self.spec.register_retry);
        if unanswered {
            self.announce();
        }
    }

    fn send_ack(
        &self,
        command_id: &str,
        status: CommandStatus,
        detail: Option<&str>,
        location: Option<(f64, f64)>,
    ) {
        let payload = protocol::ack(command_id, status, detail, location);
        if self.publish(&self.topics.ack, payload) {
            bump(&self.counters.acks_sent);
        }
    }

    fn misbehave(&mut self) {
        let payload = match self.misbehaviour {
            Misbehaviour::None => return,
            Misbehaviour::Garbage => protocol::garbage(&mut self.rng),
            Misbehaviour::Oversize => protocol::oversize(protocol::unix_ms_now()),
            Misbehaviour::Flood { .. } => {
                self.sensors.step(&mut self.rng);
                self.seq += 1;
                protocol::telemetry(protocol::unix_ms_now(), self.seq, &self.sensors)
            }
        };
        if self.publish(&self.topics.telemetry, payload) {
            bump(&self.counters.misbehaviour_sent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misbehaviours_parse_from_their_cli_names() {
        assert_eq!("garbage".parse(), Ok(Misbehaviour::Garbage));
        assert_eq!("oversize".parse(), Ok(Misbehaviour::Oversize));
        assert_eq!("flood".parse(), Ok(Misbehaviour::Flood { per_second: 200 }));
        assert_eq!(
            "flood:150".parse(),
            Ok(Misbehaviour::Flood { per_second: 150 })
        );
        assert!("flood:0".parse::<Misbehaviour>().is_err());
        assert!("loud".parse::<Misbehaviour>().is_err());
        assert!("slow:3".parse::<Misbehaviour>().is_err());
    }

    #[test]
    fn every_topic_comes_from_the_contract() {
        let topics = Topics::of("sim-0001");
        assert_eq!(topics.telemetry, topics::telemetry("sim-0001"));
        assert_eq!(
            topics.subscriptions,
            topics::device_subscriptions("sim-0001")
        );
    }
}
