//! Signs of life (a heartbeat, or any other message a device sends) into the device registry's
//! `lastSeen`, at most one write per device per write interval: the [`PresenceWriteGate`] of a warm instance decides
//! from memory, a device it does not know is read (many per request), and the write is
//! conditional. A function keeps one [`ActivityRecorder`] for its lifetime and hands it each
//! batch:
//!
//! ```no_run
//! # use cellbridge_devices::{activity::ActivityRecorder, ports::DeviceStore, registration::ThingName};
//! # async fn handle(store: &dyn DeviceStore, batch: &[(ThingName, time::OffsetDateTime)]) {
//! // At cold start, with the configured `PresenceSettings::write_interval`:
//! let activity = ActivityRecorder::new(time::Duration::minutes(5));
//! // Per batch: each message's device and the time IoT Core received it.
//! let now = time::OffsetDateTime::now_utc();
//! let report = activity.record(store, batch.iter().cloned(), now).await;
//! // `report.failed`: devices whose messages are worth another delivery.
//! # }
//! ```

use crate::ports::DeviceStore;
use crate::presence::{GateDecision, PresenceWriteGate};
use crate::registration::ThingName;
use cellbridge_core::store::StoreError;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use time::{Duration, OffsetDateTime};

/// Conditional writes of one call in flight at once.
const WRITES_IN_FLIGHT: usize = 16;

/// What one call did, for the log line, the metrics and partial batch failures.
#[derive(Debug, Default)]
pub struct ActivityReport {
    /// Distinct devices among the signs of life.
    pub devices: usize,
    /// Decided from memory: nothing read, nothing written.
    pub skipped: usize,
    /// Devices whose stored `lastSeen` was read.
    pub read: usize,
    /// Writes that moved `lastSeen`.
    pub written: usize,
    /// Writes the store's condition refused: another instance moved `lastSeen` first.
    pub refused: usize,
    /// Devices that are not registered (their signs of life change nothing).
    pub unknown: Vec<ThingName>,
    /// Devices whose read or write failed; their signs of life are worth another try.
    pub failed: Vec<ThingName>,
    /// The first failure.
    pub error: Option<StoreError>,
}

impl ActivityReport {
    fn fail(&mut self, things: impl IntoIterator<Item = ThingName>, error: StoreError) {
        self.failed.extend(things);
        self.error.get_or_insert(error);
    }
}

/// Records signs of life through one instance's write gate; shared by the batches an instance
/// handles, so what it learns of a device saves the next batch a read.
#[derive(Debug)]
pub struct ActivityRecorder {
    gate: Mutex<PresenceWriteGate>,
}

impl ActivityRecorder {
    pub fn new(write_interval: Duration) -> Self {
        Self::with_gate(PresenceWriteGate::new(write_interval))
    }

    pub fn with_gate(gate: PresenceWriteGate) -> Self {
        Self {
            gate: Mutex::new(gate),
        }
    }

    fn gate(&self) -> MutexGuard<'_, PresenceWriteGate> {
        // The gate is plain data, consistent after every call: a panic elsewhere cannot leave
        // it half-updated.
        self.gate.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Each device's latest sign of life among `signs` (a time after `now` counts as `now`), at
    /// most one read and one write per device. Never fails as a whole: a device whose read or
    /// write failed is in `failed`.
    pub async fn record(
        &self,
        store: &dyn DeviceStore,
        signs: impl IntoIterator<Item = (ThingName, OffsetDateTime)>,
        now: OffsetDateTime,
    ) -> ActivityReport {
        let mut latest: BTreeMap<ThingName, OffsetDateTime> = BTreeMap::new();
        for (thing, at) in signs {
            let at = at.min(now);
            latest
                .entry(thing)
                .and_modify(|seen| *seen = (*seen).max(at))
                .or_insert(at);
        }
        let mut report = ActivityReport {
            devices: latest.len(),
            ..ActivityReport::default()
        };

        let (mut writes, mut reads) = (Vec::new(), Vec::new());
        {
            let gate = self.gate();
            for (thing, at) in latest {
                match gate.check(&thing, at, now) {
                    GateDecision::Skip => report.skipped += 1,
                    GateDecision::Read => reads.push((thing, at)),
                    GateDecision::Write => writes.push((thing, at)),
                }
            }
        }

        if !reads.is_empty() {
            let things: Vec<ThingName> = reads.iter().map(|(thing, _)| thing.clone()).collect();
            match store.last_seen_of(&things).await {
                Ok(stored) => {
                    report.read = things.len();
                    let mut gate = self.gate();
                    for (thing, at) in reads {
                        let found = stored.get(&thing).copied();
                        match gate.after_read(&thing, found, at, now) {
                            GateDecision::Write => writes.push((thing, at)),
                            _ if found.is_none() => report.unknown.push(thing),
                            _ => {}
                        }
                    }
                }
                Err(error) => report.fail(things, error),
            }
        }

        let interval = self.gate().interval();
        let mut outcomes =
            futures::stream::iter(writes.into_iter().map(|(thing, at)| async move {
                let outcome = store.record_activity_if_due(&thing, at, interval).await;
                (thing, at, outcome)
            }))
            .buffer_unordered(WRITES_IN_FLIGHT);
        while let Some((thing, at, outcome)) = outcomes.next().await {
            match outcome {
                Ok(applied) => {
                    self.gate().after_write(&thing, at, applied, now);
                    if applied {
                        report.written += 1;
                    } else {
                        report.refused += 1;
                    }
                }
                Err(error) => report.fail([thing], error),
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryDevices;
    use crate::registration::parse_announcement;
    use crate::testing::thing;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-22 09:00 UTC);
    const INTERVAL: Duration = Duration::minutes(5);

    fn at(seconds: i64) -> OffsetDateTime {
        T0 + Duration::seconds(seconds)
    }

    async fn registered(things: &[&str]) -> MemoryDevices {
        let store = MemoryDevices::default();
        for (n, name) in things.iter().enumerate() {
            let body = serde_json::json!({"tenant": "demo", "iccid": cellbridge_core::testing::iccid(n as u32),
                                          "model": "M", "firmware": "1"});
            let announcement =
                parse_announcement(name, body.to_string().as_bytes()).expect("valid");
            store.register(&announcement, T0).await.expect("registered");
        }
        store
    }

    fn beats(
        name: &str,
        seconds: impl IntoIterator<Item = i64>,
    ) -> Vec<(ThingName, OffsetDateTime)> {
        seconds.into_iter().map(|s| (thing(name), at(s))).collect()
    }

    #[tokio::test]
    async fn a_device_beating_every_second_costs_one_read_then_a_write_per_interval() {
        let store = registered(&["trk-1"]).await;
        let activity = ActivityRecorder::new(INTERVAL);
        // Registered at T0: the first beats are within the interval, so nothing is written.
        let report = activity.record(&store, beats("trk-1", 1..=5), at(6)).await;
        assert_eq!((report.read, report.written, report.skipped), (1, 0, 0));
        // An hour of batches of five seconds: no read again, one write each five minutes.
        for batch in 1..720 {
            let first = batch * 5 + 1;
            let report = activity
                .record(&store, beats("trk-1", first..first + 5), at(first + 5))
                .await;
            assert!(report.failed.is_empty() && report.read == 0, "{report:?}");
        }
        assert_eq!(store.activity_reads(), 1);
        assert_eq!(
            store.activity_writes(),
            11,
            "3600 s / 300 s, the first interval after T0 included"
        );
        assert_eq!(store.activity_refused(), 0);
        let seen = store
            .get_device(&thing("trk-1"))
            .await
            .expect("store")
            .expect("device")
            .presence
            .last_seen
            .expect("seen");
        assert!(
            at(3600) - seen <= INTERVAL,
            "at most an interval behind: {seen}"
        );
    }

    #[tokio::test]
    async fn unknown_devices_are_read_once_an_interval_and_never_written() {
        let store = registered(&["trk-1"]).await;
        let activity = ActivityRecorder::new(INTERVAL);
        let report = activity
            .record(&store, beats("stranger", [1, 2]), at(3))
            .await;
        assert_eq!(report.unknown, [thing("stranger")]);
        let report = activity.record(&store, beats("stranger", [4]), at(5)).await;
        assert_eq!((report.read, report.skipped), (0, 1));
        let report = activity
            .record(&store, beats("stranger", [400]), at(401))
            .await;
        assert_eq!(report.read, 1, "read again an interval later");
        assert_eq!(store.activity_writes() + store.activity_refused(), 0);
    }

    #[tokio::test]
    async fn two_instances_move_last_seen_once_and_the_loser_reads_afresh() {
        let store = registered(&["trk-1"]).await;
        let (a, b) = (
            ActivityRecorder::new(INTERVAL),
            ActivityRecorder::new(INTERVAL),
        );
        a.record(&store, beats("trk-1", [10]), at(10)).await;
        b.record(&store, beats("trk-1", [11]), at(11)).await;
        // Both know T0-ish; both think the beat at 310 s is due.
        let first = a.record(&store, beats("trk-1", [310]), at(310)).await;
        let second = b.record(&store, beats("trk-1", [311]), at(311)).await;
        assert_eq!((first.written, second.refused), (1, 1));
        assert_eq!(store.activity_writes(), 1);
        let again = b.record(&store, beats("trk-1", [312]), at(312)).await;
        assert_eq!((again.read, again.written), (1, 0), "it reads what a wrote");
    }

    #[tokio::test]
    async fn a_timed_out_device_is_brought_back_and_a_time_from_the_future_counts_as_now() {
        let store = registered(&["trk-1"]).await;
        store
            .sweep_silent(at(1000), Duration::minutes(15))
            .await
            .expect("swept");
        let activity = ActivityRecorder::new(INTERVAL);
        let report = activity
            .record(&store, beats("trk-1", [5000]), at(1001))
            .await;
        assert_eq!(report.written, 1);
        let presence = store
            .get_device(&thing("trk-1"))
            .await
            .expect("store")
            .expect("device")
            .presence;
        assert!(!presence.timed_out);
        assert_eq!(presence.last_seen, Some(at(1001)), "clamped to now");
    }

    #[tokio::test]
    async fn failed_reads_and_writes_name_their_devices_and_are_tried_again() {
        let store = registered(&["trk-1", "trk-2"]).await;
        let activity = ActivityRecorder::new(INTERVAL);
        let signs = |s: i64| {
            let mut signs = beats("trk-1", [s]);
            signs.extend(beats("trk-2", [s]));
            signs
        };
        store.set_presence_unavailable(true);
        let report = activity.record(&store, signs(10), at(10)).await;
        assert_eq!(report.failed, [thing("trk-1"), thing("trk-2")], "the read");
        assert!(report.error.as_ref().is_some_and(StoreError::is_retryable));
        store.set_presence_unavailable(false);
        let report = activity.record(&store, signs(11), at(11)).await;
        assert_eq!(
            (report.read, report.skipped),
            (2, 0),
            "nothing remembered of the failure"
        );

        store.set_presence_unavailable(true);
        let report = activity.record(&store, signs(400), at(400)).await;
        assert_eq!((report.read, report.failed.len()), (0, 2), "the writes");
        store.set_presence_unavailable(false);
        let report = activity.record(&store, signs(401), at(401)).await;
        assert_eq!((report.read, report.written), (0, 2), "still due");
    }
}
