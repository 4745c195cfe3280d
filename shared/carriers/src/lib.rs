//! Carriers: the port the worker calls, carrier errors, retry policies and budgets, pacing per
//! account, the accounts a deployment configures, and one adapter per carrier over reqwest.

pub mod account;
pub mod config;
pub mod details;
pub mod error;
pub mod http;
pub mod jasper;
mod leased;
pub mod pacing;
pub mod port;
pub mod provider;
pub mod provider_accounts;
pub mod provider_dynamodb;
#[cfg(any(test, feature = "test-util"))]
pub mod provider_memory;
pub mod provider_ports;
pub mod provider_probe;
pub mod provider_secrets;
pub mod retry;
pub mod sync;
pub mod sync_queue;
pub mod telegence;
pub mod thingspace;
pub mod usage;
pub mod wiring;

/// The capability table (`cellbridge_bulk_changes::capabilities`) says what intake accepts and
/// `GET /carriers` shows: each adapter must make exactly what its row lists.
#[cfg(test)]
mod capability_table {
    use cellbridge_bulk_changes::capabilities::{capabilities, Completion};
    use cellbridge_bulk_changes::change::{
        Carrier, ChangeSpec, DeviceEdit, DeviceRef, StatusAction,
    };
    use cellbridge_core::ids::{Iccid, Imei};

    fn samples() -> Vec<ChangeSpec> {
        let mut changes: Vec<ChangeSpec> = StatusAction::ALL
            .map(|action| ChangeSpec::StatusUpdate { action })
            .into();
        for zip_code in [None, Some("30301".to_owned())] {
            changes.push(ChangeSpec::ActivateNewService {
                rate_plan: "IOT-1GB".into(),
                zip_code,
            });
        }
        for comm_plan in [None, Some("CP-1".to_owned())] {
            changes.push(ChangeSpec::CarrierRatePlanChange {
                rate_plan: "IOT-5GB".into(),
                comm_plan,
            });
        }
        changes.extend([
            ChangeSpec::CustomerRatePlanChange {
                customer_rate_plan_id: "456".into(),
                data_allocation_mb: Some(1024),
                pool_id: None,
                effective_date: None,
            },
            ChangeSpec::CustomerAssignment {
                customer_id: "CUST-9".into(),
            },
            ChangeSpec::IccidImeiChange,
            ChangeSpec::UsernameCostCenterEdit,
        ]);
        changes
    }

    /// A device's own values for `change`, as intake would require them.
    fn device_edit(change: &ChangeSpec) -> DeviceEdit {
        match change {
            ChangeSpec::IccidImeiChange => DeviceEdit::IdentifierSwap {
                new_iccid: Iccid::parse(&cellbridge_core::testing::iccid(9)).ok(),
                new_imei: Imei::parse("490154203237518").ok(),
            },
            ChangeSpec::UsernameCostCenterEdit => DeviceEdit::Labels {
                username: Some("pump-7".into()),
                cost_center: Some("CC-12".into()),
            },
            _ => DeviceEdit::None,
        }
    }

    /// Whether the adapter builds a carrier request for `change`, as its `apply` does.
    fn adapter_makes(carrier: Carrier, change: &ChangeSpec) -> bool {
        match carrier {
            Carrier::Jasper => crate::jasper::edit_for(change, &device_edit(change)).is_ok(),
            Carrier::ThingSpace => {
                let device = DeviceRef {
                    iccid: Iccid::parse(&cellbridge_core::testing::iccid(1)).expect("ICCID"),
                    msisdn: None,
                    imei: None,
                };
                crate::thingspace::Move::of(change).is_ok()
                    || (*change == ChangeSpec::IccidImeiChange
                        && crate::thingspace::identifier_body(
                            "0000123456-00001",
                            &device,
                            &device_edit(change),
                        )
                        .is_ok())
            }
            Carrier::Telegence => {
                matches!(change, ChangeSpec::ActivateNewService { .. })
                    || crate::telegence::update_for(change, &device_edit(change)).is_ok()
            }
        }
    }

    #[test]
    fn each_adapter_makes_exactly_the_changes_its_row_lists() {
        for carrier in Carrier::ALL {
            for change in samples() {
                let listed = capabilities(carrier).support(&change);
                if listed
                    .as_ref()
                    .is_ok_and(|s| s.completion == Completion::NoCarrierCall)
                {
                    continue;
                }
                assert_eq!(
                    listed.is_ok(),
                    adapter_makes(carrier, &change),
                    "{carrier:?} and {change:?}: the table says {listed:?}"
                );
            }
        }
    }

    #[test]
    fn the_rows_batch_sizes_are_the_adapters() {
        let activate = ChangeSpec::ActivateNewService {
            rate_plan: "IOT-1GB".into(),
            zip_code: None,
        };
        let suspend = ChangeSpec::StatusUpdate {
            action: StatusAction::Suspend,
        };
        assert_eq!(
            cellbridge_bulk_changes::capabilities::batch_limit(Carrier::ThingSpace, &suspend)
                as usize,
            crate::thingspace::MAX_BATCH
        );
        assert_eq!(
            cellbridge_bulk_changes::capabilities::batch_limit(Carrier::Telegence, &activate)
                as usize,
            crate::telegence::MAX_SERVICES_PER_REQUEST
        );
    }
}
