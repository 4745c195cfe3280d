//! Online or offline, from IoT Core's lifecycle events and the device's own heartbeats.
//!
//! Lifecycle events (`$aws/events/presence/{connected,disconnected}/<clientId>`) can arrive
//! twice or out of order; their `versionNumber` grows with each connection of a client id, so
//! an event older than the one already applied changes nothing. At the same version the
//! disconnect wins: it ends the session that connect began. Heartbeats keep a device online
//! between events; a device silent for longer than its timeout is offline whatever the last
//! event said (a lost disconnect).

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
    /// The sweep found it connected but silent past the heartbeat timeout (a lost disconnect,
    /// or a hung device); any sign of life or new event clears it.
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

    /// Whether the heartbeat sweep at `now` marks it timed out: connected, not marked yet, and
    /// silent for longer than `timeout`.
    pub fn is_silent(&self, now: OffsetDateTime, timeout: Duration) -> bool {
        self.connected && !self.timed_out && self.last_seen.is_none_or(|seen| now - seen > timeout)
    }

    /// Online: connected and heard from within `timeout` of `now`.
    pub fn is_online(&self, now: OffsetDateTime, timeout: Duration) -> bool {
        self.connected
            && !self.timed_out
            && self.last_seen.is_some_and(|seen| now - seen <= timeout)
    }
}

/// Devices send a heartbeat every second; three missed beats and a margin for the sweep.
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::seconds(10);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-22 09:00 UTC);

    fn event(kind: LifecycleKind, version: i64, second: i64) -> LifecycleEvent {
        LifecycleEvent {
            kind,
            version,
            at: T0 + Duration::seconds(second),
        }
    }

    use LifecycleKind::{Connected, Disconnected};

    #[test]
    fn in_order_events_move_the_device_online_and_offline() {
        let online = Presence::NEVER_SEEN
            .after_event(&event(Connected, 1, 0))
            .expect("applied");
        assert!(online.is_online(T0, DEFAULT_HEARTBEAT_TIMEOUT));
        let offline = online
            .after_event(&event(Disconnected, 1, 5))
            .expect("applied");
        assert!(!offline.is_online(T0 + Duration::seconds(5), DEFAULT_HEARTBEAT_TIMEOUT));
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
    fn silence_longer_than_the_timeout_is_offline() {
        let state = Presence::NEVER_SEEN
            .after_event(&event(Connected, 1, 0))
            .expect("applied")
            .after_activity(T0 + Duration::seconds(30));
        assert!(state.is_online(T0 + Duration::seconds(40), DEFAULT_HEARTBEAT_TIMEOUT));
        assert!(!state.is_online(T0 + Duration::seconds(41), DEFAULT_HEARTBEAT_TIMEOUT));
        let stale = state.after_activity(T0);
        assert_eq!(
            stale.last_seen, state.last_seen,
            "an old heartbeat does not rewind"
        );
    }

    #[test]
    fn the_sweep_marks_silent_sessions_and_life_clears_the_mark() {
        let timeout = Duration::seconds(10);
        let online = Presence::NEVER_SEEN
            .after_event(&event(LifecycleKind::Connected, 1, 0))
            .expect("applies");
        assert!(!online.is_silent(T0 + Duration::seconds(10), timeout));
        assert!(online.is_silent(T0 + Duration::seconds(11), timeout));
        let swept = Presence {
            timed_out: true,
            ..online
        };
        assert!(
            !swept.is_silent(T0 + Duration::seconds(60), timeout),
            "once"
        );
        let beat = swept.after_activity(T0 + Duration::seconds(61));
        assert!(beat.is_online(T0 + Duration::seconds(62), timeout));
        let offline = online
            .after_event(&event(LifecycleKind::Disconnected, 1, 5))
            .expect("applies");
        assert!(
            !offline.is_silent(T0 + Duration::seconds(60), timeout),
            "not connected"
        );
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
}
