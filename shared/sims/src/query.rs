//! Which SIMs a listing or a selection asks for: filters, one prefix search and an order. The
//! same names serve `GET /sims` query parameters and a bulk change's `filter` object.

use crate::sim::{Sim, SimStatus};
use cellbridge_core::carrier::Carrier;
use cellbridge_core::validation::ValidationErrors;

/// The identifiers a listing can be searched and ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimKey {
    Iccid,
    Msisdn,
    Imei,
}

impl SimKey {
    pub const ALL: [SimKey; 3] = [SimKey::Iccid, SimKey::Msisdn, SimKey::Imei];

    pub fn as_str(self) -> &'static str {
        match self {
            SimKey::Iccid => "iccid",
            SimKey::Msisdn => "msisdn",
            SimKey::Imei => "imei",
        }
    }

    /// The SIM's value for this key; SIMs without one order after every SIM with one.
    pub fn value_of(self, sim: &Sim) -> &str {
        match self {
            SimKey::Iccid => &sim.iccid,
            // Searched and ordered by its digits: `+1404…` is found by `1404`.
            SimKey::Msisdn => sim
                .msisdn
                .as_deref()
                .map_or(NONE, |msisdn| msisdn.trim_start_matches('+')),
            SimKey::Imei => sim.imei.as_deref().unwrap_or(NONE),
        }
    }

    fn prefix_parameter(self) -> &'static str {
        match self {
            SimKey::Iccid => "iccidPrefix",
            SimKey::Msisdn => "msisdnPrefix",
            SimKey::Imei => "imeiPrefix",
        }
    }
}

/// Where a SIM without the key's value orders: after every digit string.
pub const NONE: &str = "~";

/// The SIMs that match every given filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimFilter {
    pub status: Option<SimStatus>,
    pub service_provider_id: Option<String>,
    pub carrier: Option<Carrier>,
    pub rate_plan: Option<String>,
    pub customer: Option<String>,
    pub cost_center: Option<String>,
    /// Whether a registered device has the SIM.
    pub linked: Option<bool>,
    /// Digits the chosen identifier starts with.
    pub prefix: Option<(SimKey, String)>,
}

impl SimFilter {
    pub fn matches(&self, sim: &Sim) -> bool {
        fn same(wanted: &Option<String>, actual: &Option<String>) -> bool {
            wanted.is_none() || wanted == actual
        }
        self.status.is_none_or(|status| sim.status == status)
            && same(&self.service_provider_id, &sim.service_provider_id)
            && self.carrier.is_none_or(|carrier| sim.carrier == carrier)
            && same(&self.rate_plan, &sim.rate_plan)
            && same(&self.customer, &sim.customer)
            && same(&self.cost_center, &sim.cost_center)
            && self
                .linked
                .is_none_or(|linked| sim.device_id.is_some() == linked)
            && self
                .prefix
                .as_ref()
                .is_none_or(|(key, digits)| key.value_of(sim).starts_with(digits.as_str()))
    }

    /// Whether anything beyond a status and a prefix narrows it (those two are answered by an
    /// index; the rest are read and dropped).
    pub fn has_attribute_filters(&self) -> bool {
        self.service_provider_id.is_some()
            || self.carrier.is_some()
            || self.rate_plan.is_some()
            || self.customer.is_some()
            || self.cost_center.is_some()
            || self.linked.is_some()
    }
}

/// The order of a listing: by one identifier, then by ICCID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimOrder {
    pub key: SimKey,
    pub descending: bool,
}

impl Default for SimOrder {
    fn default() -> Self {
        Self {
            key: SimKey::Iccid,
            descending: false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimQuery {
    pub filter: SimFilter,
    pub order: SimOrder,
}

/// The filter names, as `GET /sims` and a bulk change's `filter` take them.
pub const FILTER_NAMES: [&str; 10] = [
    "status",
    "serviceProviderId",
    "carrier",
    "ratePlan",
    "customer",
    "costCenter",
    "linked",
    "iccidPrefix",
    "msisdnPrefix",
    "imeiPrefix",
];

/// Longest label a filter compares (rate plans, customers, cost centers are carrier labels).
const MAX_LABEL: usize = 128;

/// Parses filters from `(name, value)` pairs; every problem is named. Names other than
/// [`FILTER_NAMES`] are the caller's to allow or refuse.
pub fn parse_filter<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<SimFilter, ValidationErrors> {
    let mut filter = SimFilter::default();
    let mut errors = ValidationErrors::default();
    let mut searched = Vec::new();
    for (name, value) in pairs {
        let label = |errors: &mut ValidationErrors| {
            if value.is_empty() || value.len() > MAX_LABEL || value.chars().any(char::is_control) {
                errors.push(
                    name,
                    format!("must be 1 to {MAX_LABEL} characters without control characters"),
                );
                None
            } else {
                Some(value.to_owned())
            }
        };
        match name {
            "status" => match SimStatus::parse(value) {
                Some(status) => filter.status = Some(status),
                None => errors.push(name, one_of(SimStatus::ALL.map(SimStatus::as_str))),
            },
            "carrier" => match Carrier::parse(value) {
                Some(carrier) => filter.carrier = Some(carrier),
                None => errors.push(name, one_of(Carrier::ALL.map(Carrier::as_str))),
            },
            "serviceProviderId" => filter.service_provider_id = label(&mut errors),
            "ratePlan" => filter.rate_plan = label(&mut errors),
            "customer" => filter.customer = label(&mut errors),
            "costCenter" => filter.cost_center = label(&mut errors),
            "linked" => match value {
                "true" => filter.linked = Some(true),
                "false" => filter.linked = Some(false),
                _ => errors.push(name, "must be true or false"),
            },
            _ => {
                let Some(key) = SimKey::ALL
                    .into_iter()
                    .find(|key| key.prefix_parameter() == name)
                else {
                    continue;
                };
                searched.push(name);
                if value.is_empty()
                    || value.len() > 22
                    || !value.bytes().all(|b| b.is_ascii_digit())
                {
                    errors.push(name, "must be 1 to 22 digits");
                } else {
                    filter.prefix = Some((key, value.to_owned()));
                }
            }
        }
    }
    if searched.len() > 1 {
        // Each is named: which came first is not something a query string keeps.
        for name in searched {
            errors.push(name, "search one identifier at a time");
        }
        filter.prefix = None;
    }
    errors.into_result(filter)
}

/// Parses a `sort` value: an identifier, `-` in front for descending. A prefix search orders by
/// the identifier it searches.
pub fn parse_order(sort: Option<&str>, filter: &SimFilter) -> Result<SimOrder, ValidationErrors> {
    let searched = filter.prefix.as_ref().map(|(key, _)| *key);
    let Some(sort) = sort else {
        return Ok(SimOrder {
            key: searched.unwrap_or(SimKey::Iccid),
            descending: false,
        });
    };
    let (descending, name) = match sort.strip_prefix('-') {
        Some(name) => (true, name),
        None => (false, sort),
    };
    let Some(key) = SimKey::ALL.into_iter().find(|key| key.as_str() == name) else {
        return Err(ValidationErrors::single(
            "sort",
            format!(
                "{}, with - in front for descending",
                one_of(SimKey::ALL.map(SimKey::as_str))
            ),
        ));
    };
    if searched.is_some_and(|searched| searched != key) {
        return Err(ValidationErrors::single(
            "sort",
            "a prefix search is ordered by the identifier it searches",
        ));
    }
    Ok(SimOrder { key, descending })
}

/// A position in a listing: the last SIM of a page, by the listing's order. The order is part of
/// it, so a cursor is never read under another order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SimPosition {
    /// The order, as a `sort` value (`-imei`).
    pub order: String,
    /// The SIM's value of the order's key ([`NONE`] when it has none).
    pub value: String,
    pub iccid: String,
}

impl SimOrder {
    pub fn as_sort(&self) -> String {
        format!(
            "{}{}",
            if self.descending { "-" } else { "" },
            self.key.as_str()
        )
    }

    pub fn position_of(&self, sim: &Sim) -> SimPosition {
        SimPosition {
            order: self.as_sort(),
            value: self.key.value_of(sim).to_owned(),
            iccid: sim.iccid.clone(),
        }
    }

    /// The cursor after `sim`.
    pub fn cursor_after(&self, sim: &Sim) -> String {
        cellbridge_core::cursor::encode(&self.position_of(sim))
    }

    /// The position a cursor of this order names.
    pub fn decode_cursor(
        &self,
        cursor: &str,
    ) -> Result<SimPosition, cellbridge_core::store::StoreError> {
        let position: SimPosition = cellbridge_core::cursor::decode(cursor)?;
        let digits = |text: &str| {
            !text.is_empty() && text.len() <= 22 && text.bytes().all(|b| b.is_ascii_digit())
        };
        if position.order != self.as_sort()
            || !digits(&position.iccid)
            || !(position.value == NONE || digits(&position.value))
        {
            return Err(cellbridge_core::store::StoreError::InvalidCursor);
        }
        Ok(position)
    }

    /// Whether `sim` comes after `position` in this order.
    pub fn is_after(&self, sim: &Sim, position: &SimPosition) -> bool {
        let here = (self.key.value_of(sim), sim.iccid.as_str());
        let there = (position.value.as_str(), position.iccid.as_str());
        if self.descending {
            here < there
        } else {
            here > there
        }
    }

    /// Sorts `sims` into this order.
    pub fn sort(&self, sims: &mut [Sim]) {
        sims.sort_by(|a, b| self.compare(a, b));
    }

    /// Which of `a` and `b` comes first in this order.
    pub fn compare(&self, a: &Sim, b: &Sim) -> std::cmp::Ordering {
        let ordering =
            (self.key.value_of(a), a.iccid.as_str()).cmp(&(self.key.value_of(b), b.iccid.as_str()));
        if self.descending {
            ordering.reverse()
        } else {
            ordering
        }
    }
}

fn one_of<const N: usize>(names: [&str; N]) -> String {
    format!("must be one of {}", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_every_bad_one_is_named() {
        let filter = parse_filter([
            ("status", "active"),
            ("carrier", "thingSpace"),
            ("ratePlan", "IOT-1GB"),
            ("linked", "false"),
            ("msisdnPrefix", "1404"),
        ])
        .expect("valid");
        assert_eq!(filter.status, Some(SimStatus::Active));
        assert_eq!(filter.carrier, Some(Carrier::ThingSpace));
        assert_eq!(filter.prefix, Some((SimKey::Msisdn, "1404".into())));
        assert!(filter.has_attribute_filters());

        let errors = parse_filter([
            ("status", "on"),
            ("carrier", "sprint"),
            ("linked", "yes"),
            ("iccidPrefix", "89x"),
            ("costCenter", ""),
        ])
        .expect_err("invalid");
        let fields: Vec<&str> = errors.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["status", "carrier", "linked", "iccidPrefix", "costCenter"]
        );
        let two = parse_filter([("iccidPrefix", "89"), ("imeiPrefix", "35")]).expect_err("two");
        let named: Vec<&str> = two.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(named, ["iccidPrefix", "imeiPrefix"]);
    }

    #[test]
    fn a_prefix_search_orders_by_its_identifier() {
        let filter = parse_filter([("imeiPrefix", "35")]).expect("valid");
        assert_eq!(
            parse_order(None, &filter).expect("order"),
            SimOrder {
                key: SimKey::Imei,
                descending: false
            }
        );
        assert_eq!(
            parse_order(Some("-imei"), &filter).expect("order"),
            SimOrder {
                key: SimKey::Imei,
                descending: true
            }
        );
        assert_eq!(
            parse_order(Some("iccid"), &filter)
                .expect_err("conflict")
                .errors[0]
                .field,
            "sort"
        );
        assert!(parse_order(Some("status"), &SimFilter::default()).is_err());
    }
}
