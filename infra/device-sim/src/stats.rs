//! Fleet-wide counters: relaxed atomics bumped by the device tasks, read as a snapshot.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Shared by every device task. Gauges (`connected`, `accepted`, `rejected`) go up and down;
/// the rest only count up.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub connected: AtomicI64,
    pub accepted: AtomicI64,
    pub rejected: AtomicI64,
    pub announcements_sent: AtomicU64,
    pub telemetry_sent: AtomicU64,
    pub samples_taken: AtomicU64,
    pub heartbeats_sent: AtomicU64,
    pub commands_received: AtomicU64,
    pub acks_sent: AtomicU64,
    pub connects: AtomicU64,
    pub reconnects: AtomicU64,
    pub connection_errors: AtomicU64,
    pub publish_errors: AtomicU64,
    pub misbehaviour_sent: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn shift(gauge: &AtomicI64, by: i64) {
    gauge.fetch_add(by, Ordering::Relaxed);
}

impl Counters {
    pub fn snapshot(&self, devices: usize) -> FleetStats {
        let gauge = |g: &AtomicI64| g.load(Ordering::Relaxed).max(0) as u64;
        let count = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FleetStats {
            devices,
            connected: gauge(&self.connected),
            registered_accepted: gauge(&self.accepted),
            registered_rejected: gauge(&self.rejected),
            announcements_sent: count(&self.announcements_sent),
            telemetry_sent: count(&self.telemetry_sent),
            samples_taken: count(&self.samples_taken),
            heartbeats_sent: count(&self.heartbeats_sent),
            commands_received: count(&self.commands_received),
            acks_sent: count(&self.acks_sent),
            connects: count(&self.connects),
            reconnects: count(&self.reconnects),
            connection_errors: count(&self.connection_errors),
            publish_errors: count(&self.publish_errors),
            misbehaviour_sent: count(&self.misbehaviour_sent),
        }
    }
}

/// A snapshot of the fleet. "Sent" means handed to the device's MQTT client; QoS 1 delivery
/// then retries on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FleetStats {
    pub devices: usize,
    /// Devices with an MQTT session right now.
    pub connected: u64,
    /// Devices whose last registration reply was `register/accepted`.
    pub registered_accepted: u64,
    /// Devices whose last registration reply was `register/rejected`.
    pub registered_rejected: u64,
    pub announcements_sent: u64,
    /// Telemetry messages published: one per sample, or one per batch.
    pub telemetry_sent: u64,
    /// Sensor readings taken (each goes out alone or in a batch).
    pub samples_taken: u64,
    pub heartbeats_sent: u64,
    pub commands_received: u64,
    pub acks_sent: u64,
    /// Sessions established, first ones included.
    pub connects: u64,
    /// Sessions established again after a drop, a disconnect or a lost connection.
    pub reconnects: u64,
    /// Failed connection attempts and sessions lost (other than through [`crate::Fleet::drop`]).
    pub connection_errors: u64,
    /// Messages the MQTT client would not take (its request queue full or closed).
    pub publish_errors: u64,
    /// Garbage, oversize and flood messages from misbehaving devices.
    pub misbehaviour_sent: u64,
}

impl fmt::Display for FleetStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connected {}/{} | accepted {} rejected {} | samples {} telemetry {} heartbeats {} | \
             commands {} acks {} | reconnects {} conn-errors {} publish-errors {}",
            self.connected,
            self.devices,
            self.registered_accepted,
            self.registered_rejected,
            self.samples_taken,
            self.telemetry_sent,
            self.heartbeats_sent,
            self.commands_received,
            self.acks_sent,
            self.reconnects,
            self.connection_errors,
            self.publish_errors,
        )?;
        if self.misbehaviour_sent > 0 {
            write!(f, " misbehaviour {}", self.misbehaviour_sent)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_reads_every_counter_and_never_shows_negative_gauges() {
        let counters = Counters::default();
        shift(&counters.connected, 2);
        shift(&counters.rejected, -1);
        bump(&counters.telemetry_sent);
        let stats = counters.snapshot(3);
        assert_eq!(stats.connected, 2);
        assert_eq!(stats.registered_rejected, 0);
        assert_eq!(stats.telemetry_sent, 1);
        assert!(stats.to_string().starts_with("connected 2/3 |"));
    }
}
