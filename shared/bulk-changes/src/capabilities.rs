//! What each carrier can do, as data: the change types its API takes, how many devices one call
//! carries, how the outcome arrives, and the limits the carrier documents. Intake refuses a change
//! the chosen carrier cannot make (naming the field), `GET /carriers` serves the table, and the
//! carrier adapters are tested against it, so the table and the code cannot drift apart.

use crate::change::{Carrier, ChangeSpec, StatusAction};
use cellbridge_sims::sim::SimStatus;
use serde::Serialize;

/// How a carrier reports the outcome of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Completion {
    /// The call's answer is the outcome.
    Synchronous,
    /// The call is accepted with a request id; the outcome arrives by callback, and the worker
    /// asks for it when no callback came.
    Callback,
    /// The call is accepted with a request id; the worker asks for the outcome until it is final.
    Polling,
    /// Kept by cellbridge itself; no carrier call.
    NoCarrierCall,
}

/// One change type a carrier takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeSupport {
    /// As in `change.type` of `POST /bulk-changes`.
    #[serde(rename = "type")]
    pub change_type: &'static str,
    /// Devices one carrier call carries.
    pub devices_per_call: u32,
    pub completion: Completion,
    /// Optional fields of the change (`commPlan`) the carrier has no place for.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub unsupported_fields: &'static [&'static str],
}

/// The limits a carrier documents for one account.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentedLimits {
    /// Calls a second over the whole account, when documented.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls_per_second: Option<f64>,
    /// Calls in flight at once, when documented.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls_in_flight: Option<u32>,
    /// Devices a listing returns per page, when documented.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u32>,
    /// What else the carrier says, in a sentence.
    pub note: &'static str,
}

/// One of the carrier's SIM status names and the status it normalizes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusName {
    pub carrier_status: &'static str,
    pub status: SimStatus,
}

const fn status(carrier_status: &'static str, status: SimStatus) -> StatusName {
    StatusName {
        carrier_status,
        status,
    }
}

/// The status each status action leaves a SIM in, as the carrier names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusActions {
    pub activate: &'static str,
    pub suspend: &'static str,
    pub restore: &'static str,
    pub deactivate: &'static str,
}

/// Everything cellbridge knows a carrier can do.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CarrierCapabilities {
    pub carrier: Carrier,
    /// The platform's name as its users know it.
    pub name: &'static str,
    pub changes: &'static [ChangeSupport],
    pub limits: DocumentedLimits,
    /// The carrier's SIM statuses, normalized (what the inventory's `status` filter matches).
    pub statuses: &'static [StatusName],
    pub status_actions: StatusActions,
}

impl CarrierCapabilities {
    /// The normalized status of the carrier's `carrier_status` (case aside); unknown when the
    /// table does not have it.
    pub fn normalize(&self, carrier_status: &str) -> SimStatus {
        self.statuses
            .iter()
            .find(|name| name.carrier_status.eq_ignore_ascii_case(carrier_status))
            .map_or(SimStatus::Unknown, |name| name.status)
    }

    /// The status `action` leaves a SIM in, as the carrier names it.
    pub fn status_after(&self, action: StatusAction) -> &'static str {
        match action {
            StatusAction::Activate => self.status_actions.activate,
            StatusAction::Suspend => self.status_actions.suspend,
            StatusAction::Restore => self.status_actions.restore,
            StatusAction::Deactivate => self.status_actions.deactivate,
        }
    }
}

/// Why a carrier cannot make a change: the request's field to blame and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub field: String,
    pub reason: String,
}

const fn change(
    change_type: &'static str,
    devices_per_call: u32,
    completion: Completion,
) -> ChangeSupport {
    ChangeSupport {
        change_type,
        devices_per_call,
        completion,
        unsupported_fields: &[],
    }
}

/// The customer's own rate plan is cellbridge's record, whatever the carrier.
const CUSTOMER_RATE_PLAN: ChangeSupport =
    change("customerRatePlanChange", 1, Completion::NoCarrierCall);

static JASPER: CarrierCapabilities = CarrierCapabilities {
    carrier: Carrier::Jasper,
    name: "Cisco IoT Control Center (Jasper)",
    changes: &[
        change("statusUpdate", 1, Completion::Synchronous),
        change("carrierRatePlanChange", 1, Completion::Synchronous),
        change("customerAssignment", 1, Completion::Synchronous),
        change("usernameCostCenterEdit", 1, Completion::Synchronous),
        CUSTOMER_RATE_PLAN,
    ],
    limits: DocumentedLimits {
        calls_per_second: Some(5.0),
        calls_in_flight: Some(1),
        page_size: Some(50),
        note: "One call at a time per account, its customers' calls included; standard accounts are often held to 1 call a second.",
    },
    statuses: &[
        status("TEST_READY", SimStatus::Inventory),
        status("ACTIVATION_READY", SimStatus::Inventory),
        status("INVENTORY", SimStatus::Inventory),
        status("ACTIVATED", SimStatus::Active),
        status("DEACTIVATED", SimStatus::Deactivated),
        status("RETIRED", SimStatus::Retired),
        status("PURGED", SimStatus::Retired),
        status("REPLACED", SimStatus::Retired),
    ],
    // Control Center has no suspended state: a suspended SIM is deactivated until restored.
    status_actions: StatusActions {
        activate: "ACTIVATED",
        suspend: "DEACTIVATED",
        restore: "ACTIVATED",
        deactivate: "DEACTIVATED",
    },
};

static THINGSPACE: CarrierCapabilities = CarrierCapabilities {
    carrier: Carrier::ThingSpace,
    name: "Verizon ThingSpace",
    changes: &[
        change("statusUpdate", 10_000, Completion::Callback),
        change("activateNewService", 10_000, Completion::Callback),
        ChangeSupport {
            unsupported_fields: &["commPlan"],
            ..change("carrierRatePlanChange", 10_000, Completion::Callback)
        },
        change("iccidImeiChange", 1, Completion::Callback),
        CUSTOMER_RATE_PLAN,
    ],
    limits: DocumentedLimits {
        calls_per_second: None,
        calls_in_flight: None,
        page_size: None,
        note: "Activations at most 100 requests a minute, up to 10,000 devices a request; a line takes 5 provisioning actions a day and 4 plan changes a month; 5 failed logins lock the account.",
    },
    statuses: &[
        status("pending activation", SimStatus::Inventory),
        status("pre-active", SimStatus::Inventory),
        status("active", SimStatus::Active),
        status("suspend", SimStatus::Suspended),
        status("deactive", SimStatus::Deactivated),
    ],
    status_actions: StatusActions {
        activate: "active",
        suspend: "suspend",
        restore: "active",
        deactivate: "deactive",
    },
};

static TELEGENCE: CarrierCapabilities = CarrierCapabilities {
    carrier: Carrier::Telegence,
    name: "AT&T Telegence",
    changes: &[
        change("statusUpdate", 1, Completion::Synchronous),
        change("activateNewService", 200, Completion::Polling),
        ChangeSupport {
            unsupported_fields: &["commPlan"],
            ..change("carrierRatePlanChange", 1, Completion::Synchronous)
        },
        change("iccidImeiChange", 1, Completion::Synchronous),
        change("usernameCostCenterEdit", 1, Completion::Synchronous),
        CUSTOMER_RATE_PLAN,
    ],
    limits: DocumentedLimits {
        calls_per_second: Some(10.0),
        calls_in_flight: None,
        page_size: None,
        note: "Subscribers are addressed by number: a device known only by ICCID costs a lookup first.",
    },
    statuses: &[
        status("Reserved", SimStatus::Inventory),
        status("Active", SimStatus::Active),
        status("Suspended", SimStatus::Suspended),
        status("Cancelled", SimStatus::Deactivated),
    ],
    status_actions: StatusActions {
        activate: "Active",
        suspend: "Suspended",
        restore: "Active",
        deactivate: "Cancelled",
    },
};

/// What `carrier` can do.
pub fn capabilities(carrier: Carrier) -> &'static CarrierCapabilities {
    match carrier {
        Carrier::Jasper => &JASPER,
        Carrier::ThingSpace => &THINGSPACE,
        Carrier::Telegence => &TELEGENCE,
    }
}

/// Device changes one carrier request may carry for `change` (ThingSpace's actions take up to
/// 10,000 devices, Telegence activates up to 200 services a request); a change the carrier cannot
/// make goes one by one.
pub fn batch_limit(carrier: Carrier, change: &ChangeSpec) -> u32 {
    capabilities(carrier)
        .support(change)
        .map_or(1, |support| support.devices_per_call)
}

/// Every carrier's capabilities, in [`Carrier::ALL`] order.
pub fn all() -> [&'static CarrierCapabilities; 3] {
    Carrier::ALL.map(capabilities)
}

/// The optional fields `change` gives, by their request names.
fn given_fields(change: &ChangeSpec) -> Vec<&'static str> {
    let mut given = Vec::new();
    match change {
        ChangeSpec::ActivateNewService { zip_code, .. } => {
            if zip_code.is_some() {
                given.push("zipCode");
            }
        }
        ChangeSpec::CarrierRatePlanChange { comm_plan, .. } => {
            if comm_plan.is_some() {
                given.push("commPlan");
            }
        }
        ChangeSpec::CustomerRatePlanChange {
            data_allocation_mb,
            pool_id,
            effective_date,
            ..
        } => {
            if data_allocation_mb.is_some() {
                given.push("dataAllocationMb");
            }
            if pool_id.is_some() {
                given.push("poolId");
            }
            if effective_date.is_some() {
                given.push("effectiveDate");
            }
        }
        ChangeSpec::StatusUpdate { .. }
        | ChangeSpec::CustomerAssignment { .. }
        | ChangeSpec::IccidImeiChange
        | ChangeSpec::UsernameCostCenterEdit => {}
    }
    given
}

impl CarrierCapabilities {
    /// How the carrier takes `change`, or which field of the request it cannot take.
    pub fn support(&self, change: &ChangeSpec) -> Result<&ChangeSupport, Refusal> {
        let type_name = change.type_name();
        let Some(support) = self.changes.iter().find(|s| s.change_type == type_name) else {
            let able: Vec<&str> = all()
                .iter()
                .filter(|c| c.changes.iter().any(|s| s.change_type == type_name))
                .map(|c| c.name)
                .collect();
            let elsewhere = if able.is_empty() {
                "; no carrier cellbridge supports does it yet".to_owned()
            } else {
                format!("; {} does", able.join(" and "))
            };
            return Err(Refusal {
                field: "change.type".to_owned(),
                reason: format!("{} cannot make a {type_name}{elsewhere}", self.name),
            });
        };
        if let Some(field) = given_fields(change)
            .into_iter()
            .find(|f| support.unsupported_fields.contains(f))
        {
            return Err(Refusal {
                field: format!("change.{field}"),
                reason: format!(
                    "{} has no {field} for a {type_name}; leave it out",
                    self.name
                ),
            });
        }
        Ok(support)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::StatusAction;

    fn rate_plan(comm_plan: Option<&str>) -> ChangeSpec {
        ChangeSpec::CarrierRatePlanChange {
            rate_plan: "IOT-1GB".into(),
            comm_plan: comm_plan.map(str::to_owned),
        }
    }

    #[test]
    fn a_change_type_the_carrier_lacks_is_refused_on_the_type_naming_who_can() {
        let refusal = capabilities(Carrier::ThingSpace)
            .support(&ChangeSpec::CustomerAssignment {
                customer_id: "c-1".into(),
            })
            .expect_err("ThingSpace has no customer assignment");
        assert_eq!(refusal.field, "change.type");
        assert!(
            refusal
                .reason
                .contains("Cisco IoT Control Center (Jasper) does"),
            "{}",
            refusal.reason
        );
    }

    #[test]
    fn an_optional_field_the_carrier_has_no_place_for_is_refused_on_that_field() {
        let telegence = capabilities(Carrier::Telegence);
        assert!(telegence.support(&rate_plan(None)).is_ok());
        let refusal = telegence
            .support(&rate_plan(Some("CP-1")))
            .expect_err("Telegence has no communication plan");
        assert_eq!(refusal.field, "change.commPlan");
        assert!(capabilities(Carrier::Jasper)
            .support(&rate_plan(Some("CP-1")))
            .is_ok());
    }

    #[test]
    fn every_carrier_keeps_the_customer_rate_plan_without_a_call_and_lists_each_type_once() {
        for carrier in all() {
            let support = carrier
                .support(&ChangeSpec::CustomerRatePlanChange {
                    customer_rate_plan_id: "plan".into(),
                    data_allocation_mb: Some(100),
                    pool_id: None,
                    effective_date: None,
                })
                .expect("kept by cellbridge");
            assert_eq!(support.completion, Completion::NoCarrierCall);
            let mut types: Vec<&str> = carrier.changes.iter().map(|s| s.change_type).collect();
            types.sort_unstable();
            types.dedup();
            assert_eq!(types.len(), carrier.changes.len(), "{}", carrier.name);
            for t in types {
                assert!(ChangeSpec::TYPE_NAMES.contains(&t), "{t}");
            }
        }
    }

    #[test]
    fn devices_per_call_follow_the_table() {
        let suspend = ChangeSpec::StatusUpdate {
            action: StatusAction::Suspend,
        };
        assert_eq!(batch_limit(Carrier::ThingSpace, &suspend), 10_000);
        assert_eq!(batch_limit(Carrier::Jasper, &suspend), 1);
        let activate = ChangeSpec::ActivateNewService {
            rate_plan: "p".into(),
            zip_code: None,
        };
        assert_eq!(batch_limit(Carrier::Telegence, &activate), 200);
        // A change the carrier cannot make goes one device at a time (and fails on the first).
        assert_eq!(batch_limit(Carrier::Jasper, &activate), 1);
    }
}
