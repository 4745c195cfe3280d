//! The SIM inventory through the local API: the carrier sync imports what the simulators hold
//! through each tenant's service providers, finds what changed in a carrier's portal, reads each
//! SIM's usage, and a bulk change's outcome updates its SIMs.

use super::{signed_in, until, OPERATOR};
use anyhow::{Context, Result};
use devstack::Devstack;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The scenario's SIMs: ICCIDs `iccid(500_000..500_300)`, found by this prefix and no others.
const FIRST: u32 = 500_000;
const COUNT: u32 = 300;
const PREFIX: &str = "890126000000500";

pub async fn the_carrier_sync_keeps_the_inventory_true(stack: &Devstack) -> Result<()> {
    let iccids: Vec<String> = (FIRST..FIRST + COUNT)
        .map(cellbridge::testing::iccid)
        .collect();
    let carriers = stack.carriers().context("carriers")?;
    let by_carrier = carriers.seed_inventory(&iccids);
    stack.sync_inventory_now().await?;

    let client = signed_in(stack, OPERATOR).await?;
    let listed = |query: String| {
        let client = &client;
        async move { client.all_pages::<Value>(&format!("/sims?{query}")).await }
    };
    until(
        "the sync imports the seeded SIMs",
        Duration::from_secs(240),
        || async { Ok(listed(format!("iccidPrefix={PREFIX}")).await?.len() == COUNT as usize) },
    )
    .await?;
    let all = listed(format!("iccidPrefix={PREFIX}")).await?;
    let seeded: BTreeSet<&str> = iccids.iter().map(String::as_str).collect();
    let found: BTreeSet<&str> = all.iter().filter_map(|s| s["iccid"].as_str()).collect();
    assert_eq!(found, seeded);

    // The fleet's numbers, kept from the SIMs table's stream, are those of the whole inventory,
    // and an admin's recount of the tables finds the same.
    let inventory = || async {
        let mut counts: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for sim in client.all_pages::<Value>("/sims").await? {
            let name = |field: &str| sim[field].as_str().unwrap_or_default().to_owned();
            *counts
                .entry(name("carrier"))
                .or_default()
                .entry(name("status"))
                .or_default() += 1;
        }
        Ok::<_, anyhow::Error>(json!(counts))
    };
    until(
        "the fleet's numbers count every SIM of the inventory",
        Duration::from_secs(120),
        || async {
            let summary: Value = client.get("/fleet/summary").await?;
            Ok(summary["sims"]["byCarrier"] == inventory().await?)
        },
    )
    .await?;
    let admin = signed_in(stack, "admin@demo.example").await?;
    until(
        "a recount finds the inventory's numbers",
        Duration::from_secs(60),
        || async {
            let recounted = admin.recount_fleet_summary().await?;
            Ok(recounted["sims"]["byCarrier"] == inventory().await?)
        },
    )
    .await?;
    for (carrier, sims) in &by_carrier {
        let of_carrier = listed(format!("iccidPrefix={PREFIX}&carrier={carrier}")).await?;
        assert_eq!(of_carrier.len(), sims.len(), "{carrier}");
        // One in 20 of each carrier's SIMs was seeded suspended (Jasper calls it deactivated).
        let held = if *carrier == "jasper" {
            "deactivated"
        } else {
            "suspended"
        };
        let suspended = listed(format!(
            "iccidPrefix={PREFIX}&carrier={carrier}&status={held}"
        ))
        .await?;
        assert_eq!(suspended.len(), sims.len().div_ceil(20), "{carrier} {held}");
    }
    let telegence = &by_carrier[2].1[0];
    let line: Value = client.get(&format!("/sims/{telegence}")).await?;
    assert!(
        line["msisdn"]
            .as_str()
            .is_some_and(|m| m.starts_with("+1469")),
        "{line}"
    );
    assert_eq!(line["lastChange"]["source"]["kind"], "carrierSync");

    // Jasper's search gives no numbers: the reading of details that follows the sync does.
    for sim in &by_carrier[0].1[..3] {
        until(
            "the details run gives a Jasper SIM its MSISDN and IMSI",
            Duration::from_secs(240),
            || async {
                let sim: Value = client.get(&format!("/sims/{sim}")).await?;
                let number = |field: &str, prefix: &str| {
                    sim[field].as_str().is_some_and(|v| v.starts_with(prefix))
                };
                Ok(number("msisdn", "+88235") && number("imsi", "90116"))
            },
        )
        .await?;
    }

    // The usage collection reads each SIM's cycle-to-date usage, as the simulator rates it
    // through the day the collection is for.
    stack.collect_usage_now().await?;
    // Jasper and Telegence tell the cycle's total; ThingSpace's first reading sums the month's days.
    for sim in [&by_carrier[0].1[1], &by_carrier[1].1[1], telegence] {
        until(
            "the usage collection reads the SIM's cycle total",
            Duration::from_secs(240),
            || async {
                let usage: Value = client.get(&format!("/sims/{sim}/usage")).await?;
                let cycle = &usage["cycle"];
                let Some(through) = cycle["through"]
                    .as_str()
                    .and_then(cellbridge::common::clock::parse_day)
                else {
                    return Ok(false);
                };
                // Compared again on the next poll if the day turned between the two reads.
                let (_, bytes, sms) = carrier_sim::usage::cycle_to_date(sim, through);
                Ok(cycle["dataBytes"] == json!(bytes) && cycle["sms"] == json!(sms))
            },
        )
        .await?;
    }

    // With the stack's DeviceUsage listener registered, ThingSpace's usage was asked in
    // aggregate requests and came back by callback, not one SIM a call.
    let thingspace_usage_calls = |path: &str| {
        carriers
            .server
            .sims
            .log
            .entries()
            .iter()
            .filter(|e| e.carrier == "thingspace" && e.path.ends_with(path))
            .count()
    };
    assert!(thingspace_usage_calls("/devices/usage/actions/list/aggregate") >= 1);
    assert_eq!(thingspace_usage_calls("/devices/usage/actions/list"), 0);

    // Changed in Control Center, outside cellbridge: the next sync finds exactly those.
    let jasper: Vec<String> = by_carrier[0].1[..3].to_vec();
    carriers
        .server
        .sims
        .jasper
        .change_plan_outside(&jasper, "RP-10GB");
    stack.sync_inventory_now().await?;
    let moved = || async {
        let sims = listed(format!("iccidPrefix={PREFIX}&ratePlan=RP-10GB")).await?;
        Ok::<Vec<String>, anyhow::Error>(
            sims.iter()
                .filter_map(|s| s["iccid"].as_str().map(str::to_owned))
                .collect(),
        )
    };
    let found = until(
        "the sync finds the plans changed in Control Center",
        Duration::from_secs(240),
        || async { Ok(moved().await? == jasper) },
    )
    .await;
    if let Err(error) = found {
        let seen = moved().await?;
        return Err(error.context(format!("changed {jasper:?}; on RP-10GB now: {seen:?}")));
    }
    let changed: Value = client.get(&format!("/sims/{}", jasper[0])).await?;
    assert_eq!(
        changed["history"]["items"][0]["kind"], "changed",
        "{changed}"
    );
    assert_eq!(
        changed["history"]["items"][0]["changes"][0]["field"],
        "ratePlan"
    );
    assert_eq!(
        changed["history"]["items"][0]["changes"][0]["to"],
        "RP-10GB"
    );

    // A bulk change through the tenant's Telegence provider: its outcomes reach the inventory.
    let provider = client
        .service_providers()
        .await?
        .into_iter()
        .find(|p| p.carrier.as_str() == "telegence")
        .context("the demo tenant's Telegence provider")?;
    let active: Vec<Value> = listed(format!(
        "iccidPrefix={PREFIX}&carrier=telegence&status=active"
    ))
    .await?
    .into_iter()
    .take(3)
    .collect();
    let devices: Vec<Value> = active
        .iter()
        .map(|sim| json!({"iccid": sim["iccid"], "msisdn": sim["msisdn"]}))
        .collect();
    let created = client
        .create_bulk_change(
            &json!({"serviceProviderId": provider.id, "processChanges": true,
                    "change": {"type": "statusUpdate", "action": "suspend"}, "devices": devices}),
            None,
        )
        .await?;
    let view = client
        .wait_bulk_change_final(&created.id, Duration::from_secs(240))
        .await?;
    assert_eq!(view.counts.succeeded, 3, "{view:?}");
    for sim in &active {
        let now: Value = client
            .get(&format!(
                "/sims/{}",
                sim["iccid"].as_str().unwrap_or_default()
            ))
            .await?;
        assert_eq!(now["status"], "suspended", "{now}");
        assert_eq!(now["carrierStatus"], "Suspended");
        assert_eq!(now["lastChange"]["source"]["kind"], "bulkChange");
        assert_eq!(
            now["lastChange"]["source"]["bulkChangeId"],
            created.id.as_ref()
        );
    }
    Ok(())
}
