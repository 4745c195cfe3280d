//! Online or offline, from IoT Core's lifecycle events and MQTT keep-alive.
//!
//! IoT Core publishes `$aws/events/presence/connected/<clientId>` when a device connects and
//! `$aws/events/presence/disconnected/<clientId>` when the connection ends: the device said
//! goodbye, or IoT Core dropped it after 1.5 × its keep-alive without a packet
//! (`MQTT_KEEP_ALIVE_TIMEOUT`). Keep-alive pings are not billed, so a device is online while it
//! is connected, and staying so costs nothing.
//!
//! Lifecycle events can arrive twice or out of order; their `versionNumber` grows with each
//! connection of a client id, so an event older than the one already applied changes nothing.
//! At the same version the disconnect wins: it ends the session that connect began.
//!
//! A disconnect event can still be lost, or a device hang with its connection open. So every
//! sign of life (a lifecycle event, a heartbeat, telemetry) moves `lastSeen`, and a connected
//! device not heard from for longer than the presence timeout is timed out: offline, whatever the
//! last event said. Signs of life are frequent and every write is billed, so `lastSeen` moves at
//! most once per write interval per device ([`PresenceWriteGate`]); the timeout leaves room for
//! that.

use crate::registration::ThingName;
use std::collections::HashMap;
use time::{Duration, OffsetDateTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleKind {
    Connected,
    Disconnected,
}

impl LifecycleKind {
    pub fn parse(event_type: &str) -> Option<Self> {
        match event_type {
            "connected" => Some(Self::Connected),
            "disconnected" => Some(Self::Disconnected),
            _ => None,
        }
    }

    /// Ends before begins, at one version.
    fn rank(self) -> u8 {
        match self {
            Self::Connected => 0,
            Self::Disconnected => 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifecycleEvent {
    pub kind: LifecycleKind,
    pub version: i64,
    pub at: OffsetDateTime,
}

/// What is stored per device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presence {
    pub connected: bool,
    /// The last lifecycle event applied, to order the next ones.
    pub version: Option<(i64, LifecycleKind)>,
    /// Last sign of life: an event, a heartbeat or telemetry.
    pub last_seen: Option<OffsetDateTime>,
    /// The sweep found it connected but silent past the presence timeout (a lost disconnect,
    /// or a hung device); any later sign of life or new event clears it.
    pub timed_out: bool,
}

impl Presence {
    pub const NEVER_SEEN: Self = Self {
        connected: false,
        version: None,
        last_seen: None,
        timed_out: false,
    };

    /// A device registering: its announcement came over a live connection, whose connect event
    /// arrived before the device was known and so was not applied.
    pub fn announced(at: OffsetDateTime) -> Self {
        Self {
            connected: true,
            last_seen: Some(at),
            ..Self::NEVER_SEEN
        }
    }

    /// The presence after `event`, or `None` when the event is a duplicate or older than what
    /// is already applied.
    pub fn after_event(&self, event: &LifecycleEvent) -> Option<Self> {
        let incoming = (event.version, event.kind.rank());
        if let Some((version, kind)) = self.version {
            if incoming <= (version, kind.rank()) {
                return None;
            }
        }
        Some(Self {
            connected: event.kind == LifecycleKind::Connected,
            version: Some((event.version, event.kind)),
            last_seen: Some(self.last_seen.map_or(event.at, |seen| seen.max(event.at))),
            timed_out: false,
        })
    }

    /// A heartbeat or telemetry at `at` is a sign of life; it never goes back in time.
    pub fn after_activity(&self, at: OffsetDateTime) -> Self {
        Self {
            last_seen: Some(self.last_seen.map_or(at, |seen| seen.max(at))),
            timed_out: false,
            ..*self
        }
    }

    /// Whether the sweep at `now` marks it timed out: connected, not marked yet, and not heard
    /// from for longer than `timeout` (its disconnect event was lost, or it hung).
    pub fn is_silent(&self, now: OffsetDateTime, timeout: Duration) -> bool {
        self.connected && !self.timed_out && self.last_seen.is_none_or(|seen| now - seen > timeout)
    }

    /// Online as stored: connected and not marked timed out (what the fleet's numbers count).
    pub fn is_marked_online(&self) -> bool {
        self.connected && !self.timed_out
    }

    /// Online: connected, and not timed out, whether the sweep has marked it yet or not (so a
    /// reader does not wait for the sweep's next run). `timeout` is the presence timeout, minutes
    /// long: keep-alive decides online and offline, and this only catches what it cannot.
    pub fn is_online(&self, now: OffsetDateTime, timeout: Duration) -> bool {
        self.is_marked_online() && !self.is_silent(now, timeout)
    }

    /// What the write gate decides on.
    pub fn last_seen_state(&self) -> LastSeen {
        LastSeen {
            at: self.last_seen,
            timed_out: self.timed_out,
        }
    }
}

/// A connected device not heard from for longer than this is timed out. Devices publish at least
/// every 5 minutes and `lastSeen` is written at most every [`DEFAULT_WRITE_INTERVAL`], so a live
/// device's stored `lastSeen` is at most about 10 minutes old; the rest is margin for queues and
/// the sweep's period.
pub const DEFAULT_PRESENCE_TIMEOUT: Duration = Duration::minutes(15);

/// `lastSeen` moves at most once per this, per device.
pub const DEFAULT_WRITE_INTERVAL: Duration = Duration::minutes(5);

/// Devices a [`PresenceWriteGate`] remembers by default: about 10 MB for a fleet this size.
pub const DEFAULT_GATE_CAPACITY: usize = 100_000;

/// A device's last sign of life as stored: what the write gate decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastSeen {
    pub at: Option<OffsetDateTime>,
    /// The sweep marked the device timed out.
    pub timed_out: bool,
}

impl LastSeen {
    /// Whether a sign of life at `at` is written: when nothing is stored, when what is stored is
    /// more than `interval` older than `at`, or when the device is marked timed out and `at` is
    /// later (the mark goes at once). Never back in time. Stores apply this rule in one
    /// conditional write, so of two instances racing, only one moves it.
    pub fn is_moved_by(&self, at: OffsetDateTime, interval: Duration) -> bool {
        match self.at {
            None => true,
            Some(seen) => at - seen > interval || (self.timed_out && at > seen),
        }
    }
}

/// What to do with a device's sign of life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateDecision {
    /// Nothing: what is stored is recent enough, or the device is not registered.
    Skip,
    /// This instance does not know what is stored: read it, then ask
    /// [`PresenceWriteGate::after_read`].
    Read,
    /// Write it, conditionally ([`LastSeen::is_moved_by`]), then tell
    /// [`PresenceWriteGate::after_write`].
    Write,
}

/// What a warm instance knows of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    /// Its stored `lastSeen`, as this instance last read or wrote it. The store only moves it
    /// forward, so it is at least this.
    Stored(OffsetDateTime),
    /// Not registered when read at this time.
    Unregistered(OffsetDateTime),
}

/// Decides, per device, whether a sign of life is written: at most once per `interval`. It
/// remembers what this instance last read or wrote of each device's `lastSeen`, so in steady
/// state a sign of life costs neither a read nor a write; a device it does not know is read once
/// (then remembered), and an unregistered one is read again only after an interval.
///
/// Another instance may move `lastSeen` meanwhile: then this one's write is refused by the
/// store's condition, and it forgets the device to read it afresh. After any sign of life at
/// `at` the stored `lastSeen` is at least `at - interval`. Keep `interval` below the presence
/// timeout, or a device heard from regularly could be timed out between writes.
#[derive(Debug, Clone)]
pub struct PresenceWriteGate {
    interval: Duration,
    capacity: usize,
    known: HashMap<ThingName, Known>,
}

impl PresenceWriteGate {
    pub fn new(interval: Duration) -> Self {
        Self::with_capacity(interval, DEFAULT_GATE_CAPACITY)
    }

    /// Remembering at most `capacity` devices.
    pub fn with_capacity(interval: Duration, capacity: usize) -> Self {
        Self {
            interval,
            capacity: capacity.max(1),
            known: HashMap::new(),
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Devices remembered.
    pub fn known_devices(&self) -> usize {
        self.known.len()
    }

    /// A sign of life of `thing` at `at`, decided from memory where it can be.
    pub fn check(
        &self,
        thing: &ThingName,
        at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> GateDecision {
        match self.known.get(thing) {
            Some(Known::Stored(seen)) if at - *seen > self.interval => GateDecision::Write,
            Some(Known::Stored(_)) => GateDecision::Skip,
            Some(Known::Unregistered(checked)) if now - *checked <= self.interval => {
                GateDecision::Skip
            }
            Some(Known::Unregistered(_)) | None => GateDecision::Read,
        }
    }

    /// After [`GateDecision::Read`]: `stored` is what the store holds, `None` for a device not
    /// registered. `Write` or `Skip`.
    pub fn after_read(
        &mut self,
        thing: &ThingName,
        stored: Option<LastSeen>,
        at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> GateDecision {
        match stored {
            None => {
                self.remember(thing, Known::Unregistered(now), now);
                GateDecision::Skip
            }
            Some(stored) if stored.is_moved_by(at, self.interval) => GateDecision::Write,
            Some(stored) => {
                if let Some(seen) = stored.at {
                    self.remember(thing, Known::Stored(seen), now);
                }
                GateDecision::Skip
            }
        }
    }

    /// After [`GateDecision::Write`]: `applied` when the conditional write moved `lastSeen` to
    /// `at`. A refused one (another instance moved it first, or the device is gone) is
    /// forgotten, so the next sign of life reads what is stored.
    pub fn after_write(
        &mut self,
        thing: &ThingName,
        at: OffsetDateTime,
        applied: bool,
        now: OffsetDateTime,
    ) {
        if applied {
            self.remember(thing, Known::Stored(at), now);
        } else {
            self.known.remove(thing);
        }
    }

    fn remember(&mut self, thing: &ThingName, known: Known, now: OffsetDateTime) {
        if self.known.len() >= self.capacity && !self.known.contains_key(thing) {
            // What is older than an interval saves little (the next sign of life writes anyway);
            // if the fleet is larger than the capacity even so, start over rather than grow.
            let horizon = now - self.interval;
            self.known.retain(|_, known| match known {
                Known::Stored(at) | Known::Unregistered(at) => *at > horizon,
            });
            if self.known.len() >= self.capacity {
                self.known.clear();
            }
        }
        self.known.insert(thing.clone(), known);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::thing;
    use proptest::prelude::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-22 09:00 UTC);
    const TIMEOUT: Duration = DEFAULT_PRESENCE_TIMEOUT;
    const INTERVAL: Duration = DEFAULT_WRITE_INTERVAL;

    fn event(kind: LifecycleKind, version: i64, second: i64) -> LifecycleEvent {
        LifecycleEvent {
            kind,
            version,
            at: T0 + Duration::seconds(second),
        }
    }

    fn at(second: i64) -> OffsetDateTime {
        T0 + Duration::seconds(second)
    }

    use LifecycleKind::{Connected, Disconnected};

    #[test]
    fn in_order_events_move_the_device_online_and_offline() {
        let online = Presence::NEVER_SEEN
            .after_event(&event(Connected, 1, 0))
            .expect("applied");
        assert!(online.is_online(T0, TIMEOUT));
        let offline = online
            .after_event(&event(Disconnected, 1, 5))
            .expect("applied");
        assert!(!offline.is_online(at(5), TIMEOUT));
        let again = offline
            .after_event(&event(Connected, 2, 9))
            .expect("applied");
        assert!(again.connected);
    }

    #[test]
    fn duplicates_and_late_events_change_nothing() {
        let state = Presence::NEVER_SEEN
            .after_event(&event(Connected, 2, 10))
            .expect("applied");
        assert_eq!(
            state.after_event(&event(Connected, 2, 10)),
            None,
            "duplicate"
        );
        assert_eq!(
            state.after_event(&event(Disconnected, 1, 4)),
            None,
            "the previous session's disconnect, late"
        );
        let ended = state
            .after_event(&event(Disconnected, 2, 20))
            .expect("applied");
        assert_eq!(
            ended.after_event(&event(Connected, 2, 10)),
            None,
            "a connect re-delivered after its own disconnect"
        );
    }

    #[test]
    fn a_connected_device_stays_online_through_quiet_minutes_until_the_timeout() {
        let state = Presence::NEVER_SEEN
            .after_event(&event(Connected, 1, 0))
            .expect("applied");
        // Keep-alive keeps the connection open without a billed message: quiet is not offline.
        assert!(state.is_online(at(14 * 60), TIMEOUT));
        assert!(state.is_online(at(15 * 60), TIMEOUT));
        assert!(!state.is_online(at(15 * 60 + 1), TIMEOUT), "timed out");
        let beat = state.after_activity(at(10 * 60));
        assert!(beat.is_online(at(20 * 60), TIMEOUT));
        let stale = beat.after_activity(T0);
        assert_eq!(
            stale.last_seen, beat.last_seen,
            "an old sign of life does not rewind"
        );
    }

    #[test]
    fn the_sweep_marks_silent_sessions_and_life_clears_the_mark() {
        let online = Presence::NEVER_SEEN
            .after_event(&event(Connected, 1, 0))
            .expect("applies");
        assert!(!online.is_silent(at(900), TIMEOUT));
        assert!(online.is_silent(at(901), TIMEOUT));
        let swept = Presence {
            timed_out: true,
            ..online
        };
        assert!(!swept.is_silent(at(2000), TIMEOUT), "once");
        assert!(!swept.is_online(at(1), TIMEOUT), "marked: offline");
        let beat = swept.after_activity(at(2001));
        assert!(beat.is_online(at(2002), TIMEOUT));
        let offline = online
            .after_event(&event(Disconnected, 1, 5))
            .expect("applies");
        assert!(!offline.is_silent(at(2000), TIMEOUT), "not connected");
    }

    fn kind() -> impl Strategy<Value = LifecycleKind> {
        prop_oneof![Just(Connected), Just(Disconnected)]
    }

    proptest! {
        /// However events are duplicated and shuffled, the outcome is that of the newest one.
        #[test]
        fn order_of_delivery_does_not_matter(
            events in proptest::collection::vec((kind(), 0i64..5, 0i64..100), 1..20),
            shuffle in any::<u64>(),
        ) {
            let events: Vec<LifecycleEvent> = events.into_iter().map(|(k, v, s)| event(k, v, s)).collect();
            let mut delivered = events.clone();
            delivered.extend(events.iter().take(3).copied());
            let n = delivered.len();
            for i in 0..n {
                let j = ((shuffle.wrapping_mul(i as u64 + 7)) % n as u64) as usize;
                delivered.swap(i, j);
            }
            let final_state = delivered.iter().fold(Presence::NEVER_SEEN, |state, e| {
                state.after_event(e).unwrap_or(state)
            });
            let newest = events.iter().max_by_key(|e| (e.version, e.kind.rank())).copied();
            prop_assert_eq!(final_state.connected, newest.map(|e| e.kind) == Some(Connected));
        }
    }

    // -------------------------------------------------------------------------- the write gate

    #[test]
    fn last_seen_moves_once_an_interval_never_back_and_at_once_when_timed_out() {
        let stored = |seen: Option<i64>, timed_out| LastSeen {
            at: seen.map(at),
            timed_out,
        };
        assert!(stored(None, false).is_moved_by(at(0), INTERVAL));
        assert!(!stored(Some(0), false).is_moved_by(at(300), INTERVAL));
        assert!(stored(Some(0), false).is_moved_by(at(301), INTERVAL));
        assert!(!stored(Some(500), false).is_moved_by(at(0), INTERVAL));
        assert!(stored(Some(0), true).is_moved_by(at(1), INTERVAL));
        assert!(
            !stored(Some(5), true).is_moved_by(at(5), INTERVAL),
            "not back"
        );
        assert!(stored(Some(0), false).is_moved_by(at(1), Duration::ZERO));
        assert!(!stored(Some(1), false).is_moved_by(at(1), Duration::ZERO));
    }

    #[test]
    fn a_warm_gate_decides_from_memory_and_reads_what_it_does_not_know() {
        let mut gate = PresenceWriteGate::new(INTERVAL);
        let trk = thing("trk-1");
        assert_eq!(gate.check(&trk, at(10), at(10)), GateDecision::Read);
        let stored = LastSeen {
            at: Some(at(0)),
            timed_out: false,
        };
        assert_eq!(
            gate.after_read(&trk, Some(stored), at(10), at(10)),
            GateDecision::Skip
        );
        assert_eq!(gate.check(&trk, at(300), at(300)), GateDecision::Skip);
        assert_eq!(gate.check(&trk, at(301), at(301)), GateDecision::Write);
        gate.after_write(&trk, at(301), true, at(301));
        assert_eq!(gate.check(&trk, at(600), at(600)), GateDecision::Skip);
        assert_eq!(gate.check(&trk, at(602), at(602)), GateDecision::Write);
        gate.after_write(&trk, at(602), false, at(602));
        assert_eq!(
            gate.check(&trk, at(603), at(603)),
            GateDecision::Read,
            "refused: another instance wrote; read what it wrote"
        );

        let stranger = thing("stranger");
        assert_eq!(
            gate.after_read(&stranger, None, at(0), at(0)),
            GateDecision::Skip
        );
        assert_eq!(gate.check(&stranger, at(300), at(300)), GateDecision::Skip);
        assert_eq!(gate.check(&stranger, at(301), at(301)), GateDecision::Read);
        let timed_out = LastSeen {
            at: Some(at(0)),
            timed_out: true,
        };
        assert_eq!(
            gate.after_read(&thing("hung"), Some(timed_out), at(1), at(1)),
            GateDecision::Write
        );
    }

    #[test]
    fn a_full_gate_forgets_what_is_old_first_and_never_grows_past_its_capacity() {
        let mut gate = PresenceWriteGate::with_capacity(INTERVAL, 3);
        gate.after_write(&thing("old"), at(0), true, at(0));
        gate.after_write(&thing("a"), at(400), true, at(400));
        gate.after_write(&thing("b"), at(400), true, at(400));
        gate.after_write(&thing("c"), at(401), true, at(401));
        assert_eq!(gate.known_devices(), 3);
        assert_eq!(
            gate.check(&thing("old"), at(401), at(401)),
            GateDecision::Read
        );
        assert_eq!(
            gate.check(&thing("a"), at(401), at(401)),
            GateDecision::Skip
        );
        gate.after_write(&thing("d"), at(402), true, at(402));
        assert!(gate.known_devices() <= 3);
    }

    /// One device's signs of life through several instances' gates onto one stored value, which
    /// applies `LastSeen::is_moved_by` as the stores' conditional writes do.
    fn simulate(instances: usize, signs: &[(usize, i64)], stored: &mut LastSeen) -> usize {
        let mut gates: Vec<PresenceWriteGate> = (0..instances)
            .map(|_| PresenceWriteGate::new(INTERVAL))
            .collect();
        let trk = thing("trk-1");
        let mut writes = 0;
        for &(instance, second) in signs {
            let gate = &mut gates[instance % instances];
            let sign = at(second);
            let mut decision = gate.check(&trk, sign, sign);
            if decision == GateDecision::Read {
                decision = gate.after_read(&trk, Some(*stored), sign, sign);
            }
            if decision == GateDecision::Write {
                let applied = stored.is_moved_by(sign, INTERVAL);
                if applied {
                    *stored = LastSeen {
                        at: Some(sign),
                        timed_out: false,
                    };
                    writes += 1;
                }
                gate.after_write(&trk, sign, applied, sign);
            }
            let seen = stored.at.unwrap_or(T0);
            assert!(
                sign - seen <= INTERVAL,
                "after a sign at {second} s the stored one ({seen}) is at most an interval older"
            );
        }
        writes
    }

    proptest! {
        /// However many instances share a device's signs of life, in whatever order they come:
        /// every write moves `lastSeen` forward by more than an interval, so there are at most
        /// `1 + span / interval` of them, and after each sign of life the stored one is at most
        /// an interval older than it.
        #[test]
        fn writes_are_at_most_one_an_interval_and_last_seen_stays_fresh(
            instances in 1usize..4,
            signs in proptest::collection::vec((0usize..4, 0i64..3_600), 1..300),
        ) {
            let mut stored = LastSeen { at: Some(T0), timed_out: false };
            let writes = simulate(instances, &signs, &mut stored);
            let latest = signs.iter().map(|(_, s)| *s).max().unwrap_or(0);
            prop_assert!(writes as i64 <= 1 + latest / INTERVAL.whole_seconds(), "{} writes", writes);
        }
    }

    #[test]
    fn a_device_beating_every_second_for_an_hour_is_written_once_every_five_minutes() {
        let signs: Vec<(usize, i64)> = (1..=3_600).map(|s| (0, s)).collect();
        let mut stored = LastSeen {
            at: Some(T0),
            timed_out: false,
        };
        assert_eq!(simulate(1, &signs, &mut stored), 11);
        let two: Vec<(usize, i64)> = (1..=3_600).map(|s| (s as usize % 2, s)).collect();
        let mut stored = LastSeen {
            at: Some(T0),
            timed_out: false,
        };
        assert_eq!(
            simulate(2, &two, &mut stored),
            11,
            "two instances, no more writes"
        );
    }
}
