//! A deterministic sample inventory, for tests and local tools.

use crate::sim::{CycleUsage, LastChange, Sim, SimEvent, SimEventKind, SimSource, SimStatus};
use cellbridge_core::carrier::Carrier;
use time::OffsetDateTime;

/// Sample SIM number `n`: carriers in turn; 7 of 10 active, then suspended, in inventory and
/// deactivated; every 11th without an MSISDN and every 4th without an IMEI; rate plans, cost
/// centers and customers in cycles of their own; every 6th in a registered device.
pub fn sample_sim(n: u32) -> Sim {
    let carrier = Carrier::ALL[n as usize % 3];
    let status = match n % 10 {
        0..=6 => SimStatus::Active,
        7 => SimStatus::Suspended,
        8 => SimStatus::Inventory,
        _ => SimStatus::Deactivated,
    };
    let provider = format!("sp-{}", carrier.as_str().to_ascii_lowercase());
    Sim {
        iccid: cellbridge_core::testing::iccid(n),
        msisdn: (!n.is_multiple_of(11)).then(|| format!("1404{:07}", n)),
        imsi: Some(format!("310410{:09}", n)),
        imei: (!n.is_multiple_of(4)).then(|| format!("35{:013}", n * 7)),
        carrier,
        service_provider_id: Some(provider.clone()),
        status,
        carrier_status: Some(status.as_str().to_ascii_uppercase()),
        rate_plan: Some(["IOT-1GB", "IOT-5GB", "IOT-100MB"][(n as usize / 3) % 3].to_owned()),
        comm_plan: None,
        customer: n.is_multiple_of(2).then(|| "CUST-1".to_owned()),
        cost_center: Some(format!("CC-{}", n % 5)),
        username: None,
        device_id: n.is_multiple_of(6).then(|| format!("trk-{n}")),
        usage: CycleUsage::default(),
        last_change: LastChange {
            source: SimSource::CarrierSync {
                service_provider_id: provider,
            },
            at: OffsetDateTime::UNIX_EPOCH,
        },
        vanished_at: None,
        version: 1,
        carrier_updated_at: None,
        details_due: false,
    }
}

/// The history entry of a sample SIM's import.
pub fn imported(sim: &Sim) -> SimEvent {
    SimEvent {
        at: sim.last_change.at,
        source: sim.last_change.source.clone(),
        kind: SimEventKind::Imported,
        changes: Vec::new(),
    }
}

/// Stores `sim` in `tenant`'s inventory as a sync imports it; panics when the store refuses
/// (a test's setup, not what it checks).
pub async fn put_imported(store: &dyn crate::ports::SimStore, tenant: &str, sim: &Sim) {
    let tenant = cellbridge_core::tenant::TenantId::parse(tenant).expect("a valid tenant");
    store
        .put_sim(&tenant, sim, None, Some(&imported(sim)))
        .await
        .expect("the test store takes the SIM");
}
