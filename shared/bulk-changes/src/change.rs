//! What a bulk change asks of each device: the change types the legacy M2M and Mobility portals
//! offered (status updates, activations, rate and customer plans, customer assignment, ICCID/IMEI
//! swaps, username and cost-center edits).

pub use cellbridge_core::carrier::Carrier;
use cellbridge_core::ids::{Iccid, Imei, Msisdn};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StatusAction {
    Activate,
    Suspend,
    Restore,
    Deactivate,
}

impl StatusAction {
    pub const ALL: [StatusAction; 4] = [
        StatusAction::Activate,
        StatusAction::Suspend,
        StatusAction::Restore,
        StatusAction::Deactivate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StatusAction::Activate => "activate",
            StatusAction::Suspend => "suspend",
            StatusAction::Restore => "restore",
            StatusAction::Deactivate => "deactivate",
        }
    }
}

/// The change applied to every device of a bulk change, with its change-wide parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ChangeSpec {
    StatusUpdate {
        action: StatusAction,
    },
    ActivateNewService {
        rate_plan: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        zip_code: Option<String>,
    },
    CarrierRatePlanChange {
        rate_plan: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comm_plan: Option<String>,
    },
    CustomerRatePlanChange {
        customer_rate_plan_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data_allocation_mb: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pool_id: Option<String>,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "time::serde::rfc3339::option"
        )]
        effective_date: Option<OffsetDateTime>,
    },
    CustomerAssignment {
        customer_id: String,
    },
    /// Per-device: the new ICCID and/or IMEI are given on each device entry.
    IccidImeiChange,
    /// Per-device: the new username and/or cost center are given on each device entry.
    UsernameCostCenterEdit,
}

impl ChangeSpec {
    pub fn type_name(&self) -> &'static str {
        match self {
            ChangeSpec::StatusUpdate { .. } => "statusUpdate",
            ChangeSpec::ActivateNewService { .. } => "activateNewService",
            ChangeSpec::CarrierRatePlanChange { .. } => "carrierRatePlanChange",
            ChangeSpec::CustomerRatePlanChange { .. } => "customerRatePlanChange",
            ChangeSpec::CustomerAssignment { .. } => "customerAssignment",
            ChangeSpec::IccidImeiChange => "iccidImeiChange",
            ChangeSpec::UsernameCostCenterEdit => "usernameCostCenterEdit",
        }
    }

    /// Changes kept by cellbridge itself (the customer's own plan), with no carrier call.
    pub fn is_platform_only(&self) -> bool {
        matches!(self, ChangeSpec::CustomerRatePlanChange { .. })
    }

    /// When the change takes effect, if it was asked for later.
    pub fn effective_date(&self) -> Option<OffsetDateTime> {
        match self {
            ChangeSpec::CustomerRatePlanChange { effective_date, .. } => *effective_date,
            _ => None,
        }
    }

    pub const TYPE_NAMES: [&'static str; 7] = [
        "statusUpdate",
        "activateNewService",
        "carrierRatePlanChange",
        "customerRatePlanChange",
        "customerAssignment",
        "iccidImeiChange",
        "usernameCostCenterEdit",
    ];
}

/// The device a change targets. The ICCID is the key every carrier accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRef {
    pub iccid: Iccid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msisdn: Option<Msisdn>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imei: Option<Imei>,
}

/// The per-device part of a change, for the change types that carry one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum DeviceEdit {
    None,
    IdentifierSwap {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        new_iccid: Option<Iccid>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        new_imei: Option<Imei>,
    },
    Labels {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost_center: Option<String>,
    },
}

/// One of the labels a `usernameCostCenterEdit` sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    Username,
    CostCenter,
}

impl DeviceEdit {
    /// The labels a labels edit gives, in order; none for any other edit. Each carrier names
    /// them its own way.
    pub fn labels(&self) -> Vec<(Label, &str)> {
        let DeviceEdit::Labels {
            username,
            cost_center,
        } = self
        else {
            return Vec::new();
        };
        [
            (Label::Username, username.as_deref()),
            (Label::CostCenter, cost_center.as_deref()),
        ]
        .into_iter()
        .filter_map(|(label, value)| Some((label, value?)))
        .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRequest {
    pub device: DeviceRef,
    pub edit: DeviceEdit,
}
