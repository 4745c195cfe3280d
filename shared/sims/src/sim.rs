//! One SIM of a tenant's inventory: who it is (ICCID, MSISDN, IMSI, IMEI), whose carrier account
//! it is on, its lifecycle status (normalized, and as the carrier names it), its plans and labels,
//! the device it sits in, its cycle-to-date usage, and where its last change came from.

use cellbridge_core::carrier::Carrier;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The lifecycle statuses every carrier's own are normalized to, so one filter works across
/// carriers; the carrier's value is kept next to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SimStatus {
    /// Not yet in service: test-ready, activation-ready or in stock.
    Inventory,
    Active,
    Suspended,
    Deactivated,
    /// Out of the carrier's books for good (retired, purged, cancelled).
    Retired,
    /// A status this platform does not know yet (the carrier's own value says which).
    Unknown,
}

impl SimStatus {
    pub const ALL: [SimStatus; 6] = [
        SimStatus::Inventory,
        SimStatus::Active,
        SimStatus::Suspended,
        SimStatus::Deactivated,
        SimStatus::Retired,
        SimStatus::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SimStatus::Inventory => "inventory",
            SimStatus::Active => "active",
            SimStatus::Suspended => "suspended",
            SimStatus::Deactivated => "deactivated",
            SimStatus::Retired => "retired",
            SimStatus::Unknown => "unknown",
        }
    }

    pub fn parse(name: &str) -> Option<SimStatus> {
        SimStatus::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// Where a change to a SIM came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum SimSource {
    /// A device change of a bulk change, recorded with its outcome.
    BulkChange { bulk_change_id: String },
    /// The carrier sync of a service provider: the first import, or a change made outside
    /// cellbridge (in the carrier's portal, by the carrier itself).
    CarrierSync { service_provider_id: String },
    /// A carrier's callback about a request it had accepted.
    CarrierCallback { request_id: String },
}

/// The SIM attributes a change can set, each held as text (the status by its normalized name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SimField {
    Msisdn,
    Imsi,
    Imei,
    Status,
    CarrierStatus,
    RatePlan,
    CommPlan,
    Customer,
    CostCenter,
    Username,
}

impl SimField {
    pub const ALL: [SimField; 10] = [
        SimField::Msisdn,
        SimField::Imsi,
        SimField::Imei,
        SimField::Status,
        SimField::CarrierStatus,
        SimField::RatePlan,
        SimField::CommPlan,
        SimField::Customer,
        SimField::CostCenter,
        SimField::Username,
    ];

    /// The field's name in the API and in the stored item.
    pub fn as_str(self) -> &'static str {
        match self {
            SimField::Msisdn => "msisdn",
            SimField::Imsi => "imsi",
            SimField::Imei => "imei",
            SimField::Status => "status",
            SimField::CarrierStatus => "carrierStatus",
            SimField::RatePlan => "ratePlan",
            SimField::CommPlan => "commPlan",
            SimField::Customer => "customer",
            SimField::CostCenter => "costCenter",
            SimField::Username => "username",
        }
    }
}

/// Data and SMS used since the carrier's billing cycle began, through the end of a day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CycleUsage {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "cellbridge_core::clock::iso_date::option"
    )]
    pub cycle_start: Option<time::Date>,
    /// The last day the totals cover; `None` until the usage is first read.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "cellbridge_core::clock::iso_date::option"
    )]
    pub through: Option<time::Date>,
    pub data_bytes: u64,
    pub sms: u64,
}

/// The latest change to a SIM and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastChange {
    pub source: SimSource,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sim {
    pub iccid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msisdn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imsi: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imei: Option<String>,
    pub carrier: Carrier,
    /// The tenant's carrier account the SIM is on; `None` for the deployment's own accounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_provider_id: Option<String>,
    pub status: SimStatus,
    /// The status as the carrier names it (e.g. Jasper's `ACTIVATION_READY`); `None` until the
    /// carrier was asked (a change made here sets the normalized status only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_plan: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm_plan: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_center: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The registered device whose ICCID this is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(default)]
    pub usage: CycleUsage,
    pub last_change: LastChange,
    /// When the carrier's listing stopped showing it; `None` while it does.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub vanished_at: Option<OffsetDateTime>,
    /// Counts the writes to this record; every write is conditional on it.
    pub version: u64,
    /// When the carrier last changed anything about it, as its listing last said (Jasper's
    /// `dateUpdated`): a later one means its details may have changed too.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub carrier_updated_at: Option<OffsetDateTime>,
    /// The carrier's listing showed the SIM new or changed but tells less than its details do
    /// (Jasper's search gives no numbers): they are read SIM by SIM, apart from the listing.
    /// Bookkeeping, kept by each store in its own way.
    #[serde(skip)]
    pub details_due: bool,
}

impl Sim {
    /// A SIM known only by its ICCID and account (version 0, not yet stored): what a first
    /// change or listing fills in.
    pub fn unknown(
        iccid: &str,
        carrier: Carrier,
        service_provider_id: Option<String>,
        source: SimSource,
        at: OffsetDateTime,
    ) -> Sim {
        Sim {
            iccid: iccid.to_owned(),
            msisdn: None,
            imsi: None,
            imei: None,
            carrier,
            service_provider_id,
            status: SimStatus::Unknown,
            carrier_status: None,
            rate_plan: None,
            comm_plan: None,
            customer: None,
            cost_center: None,
            username: None,
            device_id: None,
            usage: CycleUsage::default(),
            last_change: LastChange { source, at },
            vanished_at: None,
            version: 0,
            carrier_updated_at: None,
            details_due: false,
        }
    }

    pub fn get(&self, field: SimField) -> Option<&str> {
        match field {
            SimField::Msisdn => self.msisdn.as_deref(),
            SimField::Imsi => self.imsi.as_deref(),
            SimField::Imei => self.imei.as_deref(),
            SimField::Status => Some(self.status.as_str()),
            SimField::CarrierStatus => self.carrier_status.as_deref(),
            SimField::RatePlan => self.rate_plan.as_deref(),
            SimField::CommPlan => self.comm_plan.as_deref(),
            SimField::Customer => self.customer.as_deref(),
            SimField::CostCenter => self.cost_center.as_deref(),
            SimField::Username => self.username.as_deref(),
        }
    }

    /// Sets `field`; a status that is not a [`SimStatus`] name reads as unknown.
    pub fn set(&mut self, field: SimField, value: Option<&str>) {
        let value_owned = value.map(str::to_owned);
        match field {
            SimField::Msisdn => self.msisdn = value_owned,
            SimField::Imsi => self.imsi = value_owned,
            SimField::Imei => self.imei = value_owned,
            SimField::Status => {
                self.status = value
                    .and_then(SimStatus::parse)
                    .unwrap_or(SimStatus::Unknown)
            }
            SimField::CarrierStatus => self.carrier_status = value_owned,
            SimField::RatePlan => self.rate_plan = value_owned,
            SimField::CommPlan => self.comm_plan = value_owned,
            SimField::Customer => self.customer = value_owned,
            SimField::CostCenter => self.cost_center = value_owned,
            SimField::Username => self.username = value_owned,
        }
    }

    /// What differs from `before` in the fields a change can set, as history records it.
    pub fn changes_since(&self, before: &Sim) -> Vec<FieldChange> {
        SimField::ALL
            .into_iter()
            .filter(|field| self.get(*field) != before.get(*field))
            .map(|field| FieldChange {
                field,
                from: before.get(field).map(str::to_owned),
                to: self.get(field).map(str::to_owned),
            })
            .collect()
    }

    /// Whether the carrier's view of this SIM says the same as `other`'s: identity, status,
    /// plans, labels and presence in the listing (usage, the device link and bookkeeping aside).
    pub fn same_carrier_view(&self, other: &Sim) -> bool {
        self.changes_since(other).is_empty()
            && self.vanished_at.is_some() == other.vanished_at.is_some()
            && self.carrier == other.carrier
            && self.service_provider_id == other.service_provider_id
    }
}

/// One field of a change: `from` is absent when the writer did not read the record first (a
/// bulk change's outcome is written blind, in the transaction that records it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldChange {
    pub field: SimField,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// What happened to a SIM, kept as its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimEvent {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub source: SimSource,
    pub kind: SimEventKind,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<FieldChange>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SimEventKind {
    /// First seen (a sync's import, or a change made here to a SIM not yet synced).
    Imported,
    Changed,
    /// The carrier's listing no longer shows it.
    Vanished,
    /// Shown again after it had vanished.
    Reappeared,
}

/// A change made through cellbridge, written without reading the SIM first: the fields it sets,
/// on the SIM of `iccid` at `carrier` (created with them when the inventory does not have it yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimChange {
    pub iccid: String,
    pub carrier: Carrier,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_provider_id: Option<String>,
    pub set: Vec<(SimField, Option<String>)>,
    pub source: SimSource,
}

impl SimChange {
    /// The record (version 1) a SIM the inventory did not have starts as.
    pub fn new_sim(&self, at: OffsetDateTime) -> Sim {
        let mut sim = Sim::unknown(
            &self.iccid,
            self.carrier,
            self.service_provider_id.clone(),
            self.source.clone(),
            at,
        );
        self.apply(&mut sim, at);
        sim
    }

    /// `sim` after this change.
    pub fn apply(&self, sim: &mut Sim, at: OffsetDateTime) {
        for (field, value) in &self.set {
            sim.set(*field, value.as_deref());
        }
        sim.last_change = LastChange {
            source: self.source.clone(),
            at,
        };
        sim.version += 1;
    }

    /// Its history entry.
    pub fn event(&self, at: OffsetDateTime) -> SimEvent {
        SimEvent {
            at,
            source: self.source.clone(),
            kind: SimEventKind::Changed,
            changes: self
                .set
                .iter()
                .map(|(field, to)| FieldChange {
                    field: *field,
                    from: None,
                    to: to.clone(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn sim(iccid: &str) -> Sim {
        SimChange {
            iccid: iccid.into(),
            carrier: Carrier::Jasper,
            service_provider_id: Some("sp-1".into()),
            set: vec![(SimField::Status, Some("active".into()))],
            source: SimSource::CarrierSync {
                service_provider_id: "sp-1".into(),
            },
        }
        .new_sim(OffsetDateTime::UNIX_EPOCH)
    }

    #[test]
    fn statuses_and_fields_round_trip_their_names() {
        for status in SimStatus::ALL {
            assert_eq!(SimStatus::parse(status.as_str()), Some(status));
            assert_eq!(serde_json::to_value(status).expect("json"), status.as_str());
        }
        for field in SimField::ALL {
            assert_eq!(serde_json::to_value(field).expect("json"), field.as_str());
        }
    }

    #[test]
    fn a_change_names_what_differs_and_counts_the_version() {
        let before = sim("8901");
        let mut after = before.clone();
        let change = SimChange {
            iccid: "8901".into(),
            carrier: Carrier::Jasper,
            service_provider_id: Some("sp-1".into()),
            set: vec![
                (SimField::Status, Some("suspended".into())),
                (SimField::CostCenter, Some("CC-1".into())),
            ],
            source: SimSource::BulkChange {
                bulk_change_id: "b".into(),
            },
        };
        change.apply(&mut after, OffsetDateTime::UNIX_EPOCH);
        assert_eq!(after.version, before.version + 1);
        assert_eq!(
            after.changes_since(&before),
            vec![
                FieldChange {
                    field: SimField::Status,
                    from: Some("active".into()),
                    to: Some("suspended".into())
                },
                FieldChange {
                    field: SimField::CostCenter,
                    from: None,
                    to: Some("CC-1".into())
                },
            ]
        );
        assert!(!after.same_carrier_view(&before));
        let mut relabelled = before.clone();
        relabelled.usage.data_bytes = 10;
        relabelled.version = 9;
        assert!(
            relabelled.same_carrier_view(&before),
            "usage and bookkeeping are not the carrier's view"
        );
    }

    #[test]
    fn an_unknown_status_value_reads_as_unknown() {
        let mut sim = sim("8901");
        sim.set(SimField::Status, Some("limbo"));
        assert_eq!(sim.status, SimStatus::Unknown);
    }
}
