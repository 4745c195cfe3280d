//! Bulk changes from a selection of the inventory: a request's `filter` (the inventory's filter
//! names) instead of a device list. The selection is read at acceptance, SIMs the carrier would
//! refuse are set aside with the reason, and what is left becomes the bulk change's device list,
//! exactly as `POST /bulk-changes/preview` shows it.

use crate::capabilities::capabilities;
use crate::change::{Carrier, ChangeSpec};
use crate::request::MAX_DEVICES;
use cellbridge_core::ids::Msisdn;
use cellbridge_core::validation::ValidationErrors;
use cellbridge_sims::query::{parse_filter, SimFilter, FILTER_NAMES};
use cellbridge_sims::sim::Sim;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Most SIMs one selection may hold (one bulk change's devices).
pub const MAX_SELECTION: usize = MAX_DEVICES;

/// Refused SIMs a preview names one by one; the rest are counted by reason.
pub const REFUSED_SAMPLE: usize = 20;

/// The filter that names the SIMs one by one instead of describing them: a selection made by
/// hand (ticked in the console's SIM table).
pub const LISTED: &str = "iccids";
/// SIMs a listed selection may name; each is read from the inventory.
pub const MAX_LISTED: usize = 1000;

/// What a request's `filter` selects from the inventory.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// Every SIM the inventory filters match.
    Matching(SimFilter),
    /// The SIMs named, in the order given, once each.
    Listed(Vec<String>),
}

/// `{"iccids": [...]}`, alone.
fn parse_listed(
    object: &serde_json::Map<String, Value>,
    listed: &Value,
) -> Result<Vec<String>, ValidationErrors> {
    let mut errors = ValidationErrors::default();
    if object.len() > 1 {
        errors.push(
            format!("filter.{LISTED}"),
            "names the SIMs itself: it takes no other filter",
        );
    }
    let Some(items) = listed.as_array() else {
        errors.push(format!("filter.{LISTED}"), "must be an array of ICCIDs");
        return Err(errors);
    };
    if items.is_empty() || items.len() > MAX_LISTED {
        errors.push(
            format!("filter.{LISTED}"),
            format!("must name 1 to {MAX_LISTED} SIMs"),
        );
    }
    let mut iccids: Vec<String> = Vec::with_capacity(items.len());
    for (n, item) in items.iter().enumerate() {
        match item.as_str().map(cellbridge_core::ids::Iccid::parse) {
            Some(Ok(iccid)) => {
                let iccid = iccid.as_str().to_owned();
                if !iccids.contains(&iccid) {
                    iccids.push(iccid);
                }
            }
            Some(Err(e)) => errors.push(format!("filter.{LISTED}[{n}]"), e.to_string()),
            None => errors.push(format!("filter.{LISTED}[{n}]"), "must be a string"),
        }
    }
    errors.into_result(iccids)
}

/// A request's `filter`: the inventory's filters by their API names, each a string (`linked` a
/// boolean), or the SIMs listed one by one (`iccids`). Problems are named `filter.<name>`.
pub fn parse_selection(value: &Value) -> Result<Selection, ValidationErrors> {
    if let Some(object) = value.as_object() {
        if let Some(listed) = object.get(LISTED) {
            return parse_listed(object, listed).map(Selection::Listed);
        }
    }
    parse_filter_selection(value).map(Selection::Matching)
}

fn parse_filter_selection(value: &Value) -> Result<SimFilter, ValidationErrors> {
    let Some(object) = value.as_object() else {
        return Err(ValidationErrors::single(
            "filter",
            "must be an object of inventory filters, e.g. {\"status\": \"active\"}",
        ));
    };
    let mut errors = ValidationErrors::default();
    let mut pairs: Vec<(&str, String)> = Vec::new();
    for (name, value) in object {
        if !FILTER_NAMES.contains(&name.as_str()) {
            errors.push(
                format!("filter.{name}"),
                format!(
                    "unknown filter; expected one of: {}",
                    FILTER_NAMES.join(", ")
                ),
            );
            continue;
        }
        match (name.as_str(), value) {
            (_, Value::String(text)) => pairs.push((name, text.clone())),
            ("linked", Value::Bool(linked)) => pairs.push((name, linked.to_string())),
            _ => errors.push(format!("filter.{name}"), "must be a string"),
        }
    }
    if object.is_empty() {
        errors.push(
            "filter",
            "names no filter: a selection of the whole inventory is too easy to send by mistake",
        );
    }
    let parsed = parse_filter(pairs.iter().map(|(name, value)| (*name, value.as_str())));
    match parsed {
        Ok(filter) => errors.into_result(filter),
        Err(invalid) => {
            for error in invalid.errors {
                errors.push(format!("filter.{}", error.field), error.message);
            }
            Err(errors)
        }
    }
}

/// A change whose values differ per device cannot be made from a selection.
pub fn selectable(change: &ChangeSpec) -> Result<(), ValidationErrors> {
    match change {
        ChangeSpec::IccidImeiChange | ChangeSpec::UsernameCostCenterEdit => {
            Err(ValidationErrors::single(
                "change.type",
                format!(
                    "{} takes each device's own values: list the devices instead of a filter",
                    change.type_name()
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// Why the carrier would refuse `change` for `sim` (or it would change nothing), if so.
pub fn refusal(change: &ChangeSpec, sim: &Sim) -> Option<String> {
    if sim.vanished_at.is_some() {
        return Some("the carrier no longer lists this SIM".into());
    }
    let table = capabilities(sim.carrier);
    if let Err(refused) = table.support(change) {
        return Some(refused.reason);
    }
    match change {
        ChangeSpec::StatusUpdate { action } => {
            let target = table.status_after(*action);
            let there = match &sim.carrier_status {
                Some(status) => status.eq_ignore_ascii_case(target),
                None => sim.status == table.normalize(target),
            };
            there.then(|| format!("already {target}"))
        }
        ChangeSpec::ActivateNewService { .. } => (sim.status
            == cellbridge_sims::sim::SimStatus::Active)
            .then(|| "already active".to_owned()),
        ChangeSpec::CarrierRatePlanChange { rate_plan, .. } => (sim.rate_plan.as_deref()
            == Some(rate_plan.as_str()))
        .then(|| format!("already on rate plan {rate_plan}")),
        ChangeSpec::CustomerAssignment { customer_id } => (sim.customer.as_deref()
            == Some(customer_id.as_str()))
        .then(|| format!("already assigned to {customer_id}")),
        _ => None,
    }
}

/// A selection's SIMs, split by whether the carrier would take the change.
#[derive(Debug, Clone, Default)]
pub struct Reviewed {
    /// SIMs the filter matched, all of them counted (only the first [`MAX_SELECTION`] + 1 kept).
    pub matched: usize,
    pub accepted: Vec<Sim>,
    pub refused: Vec<(Sim, String)>,
}

impl Reviewed {
    pub fn review(change: &ChangeSpec, matched: usize, sims: Vec<Sim>) -> Self {
        let mut reviewed = Self {
            matched,
            ..Self::default()
        };
        for sim in sims {
            match refusal(change, &sim) {
                Some(reason) => reviewed.refused.push((sim, reason)),
                None => reviewed.accepted.push(sim),
            }
        }
        reviewed
    }

    /// The accepted SIMs by the account they are on.
    pub fn accounts(&self) -> BTreeMap<(Option<String>, Carrier), usize> {
        let mut accounts = BTreeMap::new();
        for sim in &self.accepted {
            *accounts
                .entry((sim.service_provider_id.clone(), sim.carrier))
                .or_insert(0) += 1;
        }
        accounts
    }

    /// Whether the selection can become one bulk change: within the limit, not empty, on one
    /// account. The problem names `filter`.
    pub fn check(&self) -> Result<(Option<String>, Carrier), ValidationErrors> {
        let problem = |message: String| Err(ValidationErrors::single("filter", message));
        if self.matched == 0 {
            return problem("matches no SIM in the inventory (0 SIMs)".into());
        }
        if self.matched > MAX_SELECTION {
            return problem(format!(
                "matches {} SIMs; a bulk change takes at most {MAX_SELECTION}: narrow the filter",
                self.matched
            ));
        }
        let accounts = self.accounts();
        match accounts.len() {
            0 => problem(format!(
                "matches {} SIMs and the carrier would refuse every one (see the preview)",
                self.matched
            )),
            1 => Ok(accounts
                .into_keys()
                .next()
                .unwrap_or((None, Carrier::Jasper))),
            n => problem(format!(
                "the SIMs are on {n} carrier accounts ({}): add serviceProviderId (or carrier) to the filter",
                accounts
                    .iter()
                    .map(|((provider, carrier), count)| format!(
                        "{} {}: {count}",
                        carrier.as_str(),
                        provider.as_deref().unwrap_or("deployment account")
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// The device list of the bulk change, as a request lists devices (MSISDNs in E.164 save
    /// carriers that address lines by number a lookup).
    pub fn device_entries(&self) -> Vec<Value> {
        self.accepted
            .iter()
            .map(|sim| {
                let mut entry = json!({"iccid": sim.iccid});
                if let Some(msisdn) = sim.msisdn.as_deref().filter(|m| Msisdn::parse(m).is_ok()) {
                    entry["msisdn"] = json!(msisdn);
                }
                entry
            })
            .collect()
    }

    pub fn preview(&self) -> Preview {
        let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, reason) in &self.refused {
            *reasons.entry(reason).or_insert(0) += 1;
        }
        Preview {
            matched: self.matched,
            accepted: self.accepted.len(),
            accounts: self
                .accounts()
                .into_iter()
                .map(|((service_provider_id, carrier), sims)| AccountShare {
                    service_provider_id,
                    carrier,
                    sims,
                })
                .collect(),
            refused: RefusedView {
                count: self.refused.len(),
                reasons: reasons
                    .into_iter()
                    .map(|(reason, count)| ReasonCount {
                        reason: reason.to_owned(),
                        count,
                    })
                    .collect(),
                sample: self
                    .refused
                    .iter()
                    .take(REFUSED_SAMPLE)
                    .map(|(sim, reason)| RefusedSim {
                        iccid: sim.iccid.clone(),
                        reason: reason.clone(),
                    })
                    .collect(),
            },
            limit: MAX_SELECTION,
        }
    }
}

/// What `POST /bulk-changes/preview` answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Preview {
    /// SIMs the filter matches.
    pub matched: usize,
    /// SIMs the bulk change would carry.
    pub accepted: usize,
    /// The accepted SIMs by carrier account.
    pub accounts: Vec<AccountShare>,
    pub refused: RefusedView,
    /// Most SIMs one selection may match.
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountShare {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_provider_id: Option<String>,
    pub carrier: Carrier,
    pub sims: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefusedView {
    pub count: usize,
    pub reasons: Vec<ReasonCount>,
    /// The first few, by ICCID.
    pub sample: Vec<RefusedSim>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReasonCount {
    pub reason: String,
    pub count: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefusedSim {
    pub iccid: String,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::StatusAction;
    use cellbridge_sims::sim::SimStatus;
    use cellbridge_sims::testing::sample_sim;

    fn suspend() -> ChangeSpec {
        ChangeSpec::StatusUpdate {
            action: StatusAction::Suspend,
        }
    }

    #[test]
    fn a_listed_selection_names_each_sim_once_and_nothing_else() {
        let a = cellbridge_core::testing::iccid(1);
        let b = cellbridge_core::testing::iccid(2);
        assert_eq!(
            parse_selection(&json!({"iccids": [a, b, a]})),
            Ok(Selection::Listed(vec![a.clone(), b.clone()]))
        );
        let errors = parse_selection(&json!({"iccids": [a, "8901x", 7], "status": "active"}))
            .expect_err("invalid");
        let fields: Vec<&str> = errors.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["filter.iccids", "filter.iccids[1]", "filter.iccids[2]"]
        );
        assert!(parse_selection(&json!({"iccids": []})).is_err());
        assert!(matches!(
            parse_selection(&json!({"status": "active"})),
            Ok(Selection::Matching(_))
        ));
    }

    #[test]
    fn a_filter_reads_the_inventory_names_and_names_what_is_wrong() {
        let filter = parse_filter_selection(
            &json!({"status": "active", "ratePlan": "IOT-1GB", "linked": false}),
        )
        .expect("valid");
        assert_eq!(filter.status, Some(SimStatus::Active));
        assert_eq!(filter.linked, Some(false));
        let errors = parse_filter_selection(&json!({"plan": "x", "status": "on", "carrier": 3}))
            .expect_err("invalid");
        let mut fields: Vec<&str> = errors.errors.iter().map(|e| e.field.as_str()).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["filter.carrier", "filter.plan", "filter.status"]);
        assert!(
            parse_selection(&json!({})).is_err(),
            "an empty filter is not a selection"
        );
        assert!(parse_selection(&json!(["active"])).is_err());
    }

    #[test]
    fn sims_the_carrier_would_refuse_are_set_aside_with_the_reason() {
        // Sample SIM 7 is suspended on Telegence-like carriers' terms; 9 deactivated.
        let mut sims: Vec<Sim> = (0..12).map(sample_sim).collect();
        sims[1].vanished_at = Some(time::OffsetDateTime::UNIX_EPOCH);
        sims[4].carrier_status = Some("Suspended".into());
        sims[4].carrier = Carrier::Telegence;
        let reviewed = Reviewed::review(&suspend(), 12, sims);
        let reasons: Vec<&str> = reviewed.refused.iter().map(|(_, r)| r.as_str()).collect();
        assert!(
            reasons.contains(&"the carrier no longer lists this SIM"),
            "{reasons:?}"
        );
        assert!(reasons.contains(&"already Suspended"), "{reasons:?}");
        assert_eq!(reviewed.accepted.len() + reviewed.refused.len(), 12);
        let preview = reviewed.preview();
        assert_eq!(preview.refused.count, reviewed.refused.len());
        assert_eq!(
            preview.accounts.iter().map(|a| a.sims).sum::<usize>(),
            preview.accepted
        );
        // Sample SIMs are on three providers: one bulk change cannot take them all.
        let problem = reviewed.check().expect_err("three accounts");
        assert_eq!(problem.errors[0].field, "filter");
        assert!(
            problem.errors[0].message.contains("3 carrier accounts"),
            "{problem:?}"
        );
    }

    #[test]
    fn a_selection_is_one_account_within_the_limit() {
        let jasper: Vec<Sim> = (0..30).step_by(3).map(sample_sim).collect();
        let count = jasper.len();
        let reviewed = Reviewed::review(&suspend(), count, jasper);
        let (provider, carrier) = reviewed.check().expect("one account");
        assert_eq!(
            (provider.as_deref(), carrier),
            (Some("sp-jasper"), Carrier::Jasper)
        );
        let entries = reviewed.device_entries();
        assert_eq!(entries.len(), reviewed.accepted.len());
        assert!(
            entries.iter().all(|e| e.get("msisdn").is_none()),
            "sample MSISDNs are not E.164"
        );

        let none = Reviewed::review(&suspend(), 0, Vec::new());
        assert!(none.check().expect_err("empty").errors[0]
            .message
            .contains("0 SIMs"));
        let many = Reviewed::review(&suspend(), MAX_SELECTION + 1, Vec::new());
        let message = &many.check().expect_err("too many").errors[0].message;
        assert!(message.contains("10001"), "{message}");
        assert!(selectable(&ChangeSpec::IccidImeiChange).is_err());
        assert!(selectable(&suspend()).is_ok());
    }
}
