//! Where bulk changes and the inventory meet: what a successful device change changes on its SIM
//! (written with the outcome), and what the inventory already knows that saves carrier calls.

use crate::bulk_change::BulkChange;
use crate::capabilities::capabilities;
use crate::change::{Carrier, ChangeSpec, DeviceEdit, DeviceRequest, Label, StatusAction};
use crate::request::BulkChangeRequest;
use cellbridge_core::ids::Msisdn;
use cellbridge_sims::sim::{Sim, SimChange, SimField, SimSource};
use std::collections::HashMap;

/// Gives each device of `request` without an MSISDN the one its SIM has in `sims` (the tenant's
/// inventory records of those ICCIDs), when the SIM is on the request's carrier: Telegence
/// addresses lines by number, and a device without one costs a lookup call before its change.
/// Returns how many were filled.
pub fn fill_known_msisdns(request: &mut BulkChangeRequest, sims: &[Sim]) -> usize {
    let known: HashMap<&str, Msisdn> = sims
        .iter()
        .filter(|sim| sim.carrier == request.carrier)
        .filter_map(|sim| {
            let msisdn = Msisdn::parse(sim.msisdn.as_deref()?).ok()?;
            Some((sim.iccid.as_str(), msisdn))
        })
        .collect();
    let mut filled = 0;
    for device in request.devices.iter_mut().map(|d| &mut d.device) {
        if device.msisdn.is_none() {
            if let Some(msisdn) = known.get(device.iccid.as_str()) {
                device.msisdn = Some(msisdn.clone());
                filled += 1;
            }
        }
    }
    filled
}

/// Whether `carrier` finds a line by its number, so MSISDNs from the inventory save calls.
pub fn addresses_lines_by_number(carrier: Carrier) -> bool {
    carrier == Carrier::Telegence
}

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

    #[test]
    fn devices_without_a_number_get_the_one_their_sim_has_on_the_same_carrier() {
        let device = |n: u32, msisdn: Option<&str>| DeviceRequest {
            device: DeviceRef {
                iccid: Iccid::parse(&cellbridge_core::testing::iccid(n)).expect("iccid"),
                msisdn: msisdn.map(|m| Msisdn::parse(m).expect("msisdn")),
                imei: None,
            },
            edit: DeviceEdit::None,
        };
        let mut request = BulkChangeRequest {
            carrier: Carrier::Telegence,
            service_provider_id: None,
            change: ChangeSpec::StatusUpdate {
                action: StatusAction::Suspend,
            },
            process_changes: true,
            devices: vec![
                device(2, None),
                device(5, Some("+14045550005")),
                device(8, None),
                device(11, None),
            ],
        };
        let sim = |n: u32, carrier: Carrier, msisdn: &str| Sim {
            carrier,
            msisdn: Some(msisdn.to_owned()),
            ..cellbridge_sims::testing::sample_sim(n)
        };
        let sims = [
            sim(2, Carrier::Telegence, "+14045550002"),
            sim(5, Carrier::Telegence, "+14045559999"),
            // Another carrier's record of the ICCID says nothing about this line.
            sim(8, Carrier::Jasper, "+14045550008"),
            // Not a number a carrier can be asked about.
            sim(11, Carrier::Telegence, "n/a"),
        ];
        assert_eq!(fill_known_msisdns(&mut request, &sims), 1);
        let numbers: Vec<Option<&str>> = request
            .devices
            .iter()
            .map(|d| d.device.msisdn.as_ref().map(|m| m.as_str()))
            .collect();
        assert_eq!(
            numbers,
            [Some("+14045550002"), Some("+14045550005"), None, None],
            "a number the request gives is kept"
        );
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
