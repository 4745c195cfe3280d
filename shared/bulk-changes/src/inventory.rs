//! What a successful device change changes on its SIM in the inventory, written with the outcome.

use crate::bulk_change::BulkChange;
use crate::capabilities::capabilities;
use crate::change::{ChangeSpec, DeviceEdit, DeviceRequest, Label, StatusAction};
use cellbridge_sims::sim::{SimChange, SimField, SimSource};

/// The inventory change of `request` once the carrier made `change`'s change; `None` for changes
/// that touch nothing the inventory keeps (the customer's own rate plan). An ICCID swap moves the
/// line to another SIM: the new IMEI is recorded here and the SIMs themselves by the next sync.
pub fn sim_change(change: &BulkChange, request: &DeviceRequest) -> Option<SimChange> {
    let table = capabilities(change.carrier);
    let status_after = |action: StatusAction| {
        let carrier_status = table.status_after(action);
        [
            (
                SimField::Status,
                Some(table.normalize(carrier_status).as_str().to_owned()),
            ),
            (SimField::CarrierStatus, Some(carrier_status.to_owned())),
        ]
    };
    let mut set: Vec<(SimField, Option<String>)> = Vec::new();
    match &change.change {
        ChangeSpec::StatusUpdate { action } => set.extend(status_after(*action)),
        ChangeSpec::ActivateNewService { rate_plan, .. } => {
            set.extend(status_after(StatusAction::Activate));
            set.push((SimField::RatePlan, Some(rate_plan.clone())));
        }
        ChangeSpec::CarrierRatePlanChange {
            rate_plan,
            comm_plan,
        } => {
            set.push((SimField::RatePlan, Some(rate_plan.clone())));
            if let Some(comm_plan) = comm_plan {
                set.push((SimField::CommPlan, Some(comm_plan.clone())));
            }
        }
        ChangeSpec::CustomerAssignment { customer_id } => {
            set.push((SimField::Customer, Some(customer_id.clone())));
        }
        ChangeSpec::IccidImeiChange => {
            if let DeviceEdit::IdentifierSwap {
                new_imei: Some(imei),
                ..
            } = &request.edit
            {
                set.push((SimField::Imei, Some(imei.as_str().to_owned())));
            }
        }
        ChangeSpec::UsernameCostCenterEdit => {
            for (label, value) in request.edit.labels() {
                let field = match label {
                    Label::Username => SimField::Username,
                    Label::CostCenter => SimField::CostCenter,
                };
                set.push((field, Some(value.to_owned())));
            }
        }
        ChangeSpec::CustomerRatePlanChange { .. } => {}
    }
    if set.is_empty() {
        return None;
    }
    Some(SimChange {
        iccid: request.device.iccid.as_str().to_owned(),
        carrier: change.carrier,
        service_provider_id: change.service_provider_id.clone(),
        set,
        source: SimSource::BulkChange {
            bulk_change_id: change.bulk_change_id.clone(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{Carrier, DeviceRef};
    use cellbridge_core::ids::{Iccid, Imei};

    fn bulk(carrier: Carrier, change: ChangeSpec) -> BulkChange {
        let (mut bulk, _) = crate::testing::sample_bulk_change("demo", "bc-1", 1, true);
        bulk.carrier = carrier;
        bulk.change = change;
        bulk
    }

    fn request(edit: DeviceEdit) -> DeviceRequest {
        DeviceRequest {
            device: DeviceRef {
                iccid: Iccid::parse(&cellbridge_core::testing::iccid(1)).expect("iccid"),
                msisdn: None,
                imei: None,
            },
            edit,
        }
    }

    fn fields(change: Option<SimChange>) -> Vec<(SimField, Option<String>)> {
        change.map(|c| c.set).unwrap_or_default()
    }

    #[test]
    fn a_status_update_leaves_the_status_the_carrier_shows() {
        let suspend = ChangeSpec::StatusUpdate {
            action: StatusAction::Suspend,
        };
        let on = |carrier| {
            fields(sim_change(
                &bulk(carrier, suspend.clone()),
                &request(DeviceEdit::None),
            ))
        };
        assert_eq!(
            on(Carrier::Telegence),
            [
                (SimField::Status, Some("suspended".into())),
                (SimField::CarrierStatus, Some("Suspended".into()))
            ]
        );
        assert_eq!(
            on(Carrier::Jasper),
            [
                (SimField::Status, Some("deactivated".into())),
                (SimField::CarrierStatus, Some("DEACTIVATED".into()))
            ],
            "Control Center has no suspended state"
        );
    }

    #[test]
    fn per_device_edits_and_plans_reach_their_fields() {
        let labels = DeviceEdit::Labels {
            username: None,
            cost_center: Some("CC-9".into()),
        };
        let change = sim_change(
            &bulk(Carrier::Jasper, ChangeSpec::UsernameCostCenterEdit),
            &request(labels),
        )
        .expect("a change");
        assert_eq!(change.set, [(SimField::CostCenter, Some("CC-9".into()))]);
        assert!(matches!(change.source, SimSource::BulkChange { .. }));

        let swap = DeviceEdit::IdentifierSwap {
            new_iccid: None,
            new_imei: Imei::parse("490154203237518").ok(),
        };
        assert_eq!(
            fields(sim_change(
                &bulk(Carrier::Telegence, ChangeSpec::IccidImeiChange),
                &request(swap)
            )),
            [(SimField::Imei, Some("490154203237518".into()))]
        );
        let plan = ChangeSpec::CarrierRatePlanChange {
            rate_plan: "IOT-5GB".into(),
            comm_plan: Some("CP-2".into()),
        };
        assert_eq!(
            fields(sim_change(
                &bulk(Carrier::Jasper, plan),
                &request(DeviceEdit::None)
            )),
            [
                (SimField::RatePlan, Some("IOT-5GB".into())),
                (SimField::CommPlan, Some("CP-2".into()))
            ]
        );
        let own_plan = ChangeSpec::CustomerRatePlanChange {
            customer_rate_plan_id: "1".into(),
            data_allocation_mb: None,
            pool_id: None,
            effective_date: None,
        };
        assert_eq!(
            sim_change(&bulk(Carrier::Jasper, own_plan), &request(DeviceEdit::None)),
            None
        );
    }
}
