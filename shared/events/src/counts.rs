//! Each tenant's fleet in numbers: its SIMs by carrier and status, its devices registered and
//! online. Counting 100,000 SIMs on every look is no way to show them, so the event recorder,
//! which already reads every change of the SIMs and devices tables, keeps the numbers as it
//! goes: each changed item adds its deltas once (a stream batch handed again is not counted
//! twice), and reading them is one item.

use async_trait::async_trait;
use cellbridge_core::store::StoreError;
use cellbridge_core::tenant::TenantId;
use serde::Serialize;
use std::collections::BTreeMap;

/// One number of a tenant's fleet.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tally {
    /// SIMs on `carrier` whose status is `status` (both as the API names them).
    Sims {
        carrier: String,
        status: String,
    },
    DevicesRegistered,
    DevicesOnline,
}

/// Separates a tally's parts in its stored name; carriers and statuses are plain words.
const SEPARATOR: char = '#';

impl Tally {
    /// SIMs on `carrier` whose status is `status` (both as the API names them).
    pub fn sims(carrier: &str, status: &str) -> Self {
        Self::Sims {
            carrier: carrier.to_owned(),
            status: status.to_owned(),
        }
    }

    /// The tally's name where it is stored, and back with [`Tally::from_name`].
    pub fn name(&self) -> String {
        match self {
            Self::Sims { carrier, status } => {
                format!("sims{SEPARATOR}{carrier}{SEPARATOR}{status}")
            }
            Self::DevicesRegistered => "devices#registered".to_owned(),
            Self::DevicesOnline => "devices#online".to_owned(),
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        let mut parts = name.split(SEPARATOR);
        match (parts.next()?, parts.next()?, parts.next()) {
            ("devices", "registered", None) => Some(Self::DevicesRegistered),
            ("devices", "online", None) => Some(Self::DevicesOnline),
            ("sims", carrier, Some(status)) if parts.next().is_none() => Some(Self::Sims {
                carrier: carrier.to_owned(),
                status: status.to_owned(),
            }),
            _ => None,
        }
    }
}

/// How one changed item moves its tenant's numbers (only the tallies that moved).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CountDeltas(BTreeMap<Tally, i64>);

impl CountDeltas {
    /// One more (`by` = 1) or one fewer (-1) in `tally`.
    pub fn add(&mut self, tally: Tally, by: i64) {
        let value = self.0.entry(tally.clone()).or_insert(0);
        *value += by;
        if *value == 0 {
            self.0.remove(&tally);
        }
    }

    /// `other`'s deltas added to these.
    pub fn merge(&mut self, other: &CountDeltas) {
        for (tally, by) in &other.0 {
            self.add(tally.clone(), *by);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Tally, i64)> {
        self.0.iter().map(|(tally, by)| (tally, *by))
    }
}

/// One change-stream record's deltas, named by the record (unique in its stream), so that a
/// record handed again is counted once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    pub source: String,
    pub deltas: CountDeltas,
}

/// A tenant's fleet in numbers, as the API shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetSummary {
    pub sims: SimCounts,
    pub devices: DeviceCounts,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SimCounts {
    pub total: u64,
    pub by_status: BTreeMap<String, u64>,
    /// Each carrier's SIMs by status.
    pub by_carrier: BTreeMap<String, BTreeMap<String, u64>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCounts {
    pub registered: u64,
    pub online: u64,
    pub offline: u64,
}

impl FleetSummary {
    /// The summary of stored tallies. A tally below zero (counting began after some items
    /// already existed, and one of those went) shows as none rather than as a negative count.
    pub fn of(tallies: impl IntoIterator<Item = (Tally, i64)>) -> Self {
        let mut summary = Self::default();
        for (tally, value) in tallies {
            let value = u64::try_from(value).unwrap_or(0);
            if value == 0 {
                continue;
            }
            match tally {
                Tally::Sims { carrier, status } => {
                    summary.sims.total += value;
                    *summary.sims.by_status.entry(status.clone()).or_insert(0) += value;
                    *summary
                        .sims
                        .by_carrier
                        .entry(carrier)
                        .or_default()
                        .entry(status)
                        .or_insert(0) += value;
                }
                Tally::DevicesRegistered => summary.devices.registered = value,
                Tally::DevicesOnline => summary.devices.online = value,
            }
        }
        summary.devices.online = summary.devices.online.min(summary.devices.registered);
        summary.devices.offline = summary.devices.registered - summary.devices.online;
        summary
    }
}

/// Each tenant's fleet numbers.
#[async_trait]
pub trait FleetCounts: Send + Sync {
    /// Adds each record's deltas to `tenant`'s numbers, leaving out a record added before.
    async fn add(&self, tenant: &TenantId, records: Vec<Counted>) -> Result<(), StoreError>;

    async fn summary(&self, tenant: &TenantId) -> Result<FleetSummary, StoreError>;

    /// Sets `tenant`'s numbers to `counted`: every SIM and device counted from nothing (a
    /// recount, for a fleet that existed before its numbers were kept, or numbers that drifted).
    /// A change the recorder adds while the tables are being read may end up counted twice or
    /// not at all, so a recount is exact on a fleet at rest.
    async fn replace(&self, tenant: &TenantId, counted: &CountDeltas) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sims(carrier: &str, status: &str) -> Tally {
        Tally::Sims {
            carrier: carrier.into(),
            status: status.into(),
        }
    }

    #[test]
    fn tally_names_read_back() {
        for tally in [
            sims("jasper", "active"),
            Tally::DevicesRegistered,
            Tally::DevicesOnline,
        ] {
            assert_eq!(Tally::from_name(&tally.name()), Some(tally));
        }
        assert_eq!(Tally::from_name("sims#jasper"), None);
        assert_eq!(Tally::from_name("sims#a#b#c"), None);
        assert_eq!(Tally::from_name("newest"), None);
    }

    #[test]
    fn deltas_that_cancel_out_leave_nothing() {
        let mut deltas = CountDeltas::default();
        deltas.add(sims("jasper", "active"), -1);
        deltas.add(sims("jasper", "suspended"), 1);
        let mut back = CountDeltas::default();
        back.add(sims("jasper", "suspended"), -1);
        back.add(sims("jasper", "active"), 1);
        deltas.merge(&back);
        assert!(deltas.is_empty());
    }

    #[test]
    fn the_summary_adds_up_by_status_and_by_carrier() {
        let summary = FleetSummary::of([
            (sims("jasper", "active"), 7),
            (sims("jasper", "suspended"), 2),
            (sims("thingspace", "active"), 3),
            (sims("telegence", "inventory"), -1),
            (Tally::DevicesRegistered, 5),
            (Tally::DevicesOnline, 4),
        ]);
        assert_eq!(summary.sims.total, 12);
        assert_eq!(summary.sims.by_status["active"], 10);
        assert_eq!(summary.sims.by_carrier["jasper"]["suspended"], 2);
        assert!(!summary.sims.by_carrier.contains_key("telegence"));
        assert_eq!(
            summary.devices,
            DeviceCounts {
                registered: 5,
                online: 4,
                offline: 1
            }
        );
    }
}
