//! Parsing and validating a bulk-change request, reporting every bad field at once.
//!
//! The request is walked as a JSON tree rather than deserialized into structs, so that a wrong
//! type in one field does not hide the errors in the others.

use crate::capabilities::capabilities;
use crate::change::{Carrier, ChangeSpec, DeviceEdit, DeviceRef, DeviceRequest, StatusAction};
use cellbridge_core::ids::{Iccid, Imei, Msisdn};
use cellbridge_core::validation::{
    json_object, path, reject_unknown, required, text, BodyLimits, ValidationErrors,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Most devices one bulk change may carry inline.
pub const MAX_DEVICES: usize = 10_000;

/// A bulk change body: `devices[i].field` is three levels; `change` a few more.
pub const BODY_LIMITS: BodyLimits = BodyLimits {
    max_depth: 6,
    max_array_len: MAX_DEVICES,
};
const MAX_DATA_ALLOCATION_MB: u64 = 10_000_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkChangeRequest {
    pub carrier: Carrier,
    /// The tenant's carrier account to use (its carrier is `carrier`); `None` for the
    /// deployment's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_provider_id: Option<String>,
    pub change: ChangeSpec,
    pub process_changes: bool,
    pub devices: Vec<DeviceRequest>,
}

/// A service provider a request names, as the caller's tenant has it.
#[derive(Debug, Clone, Copy)]
pub struct ProviderRef<'a> {
    pub id: &'a str,
    pub carrier: Carrier,
}

/// A request body read as JSON (within the body limits), before its fields are checked: read
/// once, looked into for the service provider it names, then parsed.
pub struct RequestDocument(Map<String, Value>);

impl RequestDocument {
    /// Malformed JSON is reported on the document (field `""`).
    pub fn read(body: &[u8]) -> Result<Self, ValidationErrors> {
        json_object(body, &BODY_LIMITS).map(Self)
    }

    /// The `serviceProviderId` it names, so the provider can be looked up before the rest is
    /// checked (one that is not a string is reported by [`RequestDocument::parse`]).
    pub fn service_provider_id(&self) -> Option<&str> {
        self.0.get("serviceProviderId").and_then(Value::as_str)
    }

    /// The `filter` of a request that selects its devices from the inventory, if it does.
    pub fn filter(&self) -> Option<&Value> {
        self.0.get("filter")
    }

    /// The `change` alone (a selection is reviewed against it before the devices are known).
    pub fn change(&self) -> Result<ChangeSpec, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let change =
            required(&self.0, "", "change", &mut errors).and_then(|v| parse_change(v, &mut errors));
        match change {
            Some(change) if errors.is_empty() => Ok(change),
            _ => Err(errors),
        }
    }

    /// The same request with the selection's devices in place of its `filter`, on the account
    /// the selection is on (a request that names neither provider nor carrier gets them here).
    pub fn with_selection(
        &self,
        devices: Vec<Value>,
        service_provider_id: Option<&str>,
        carrier: Carrier,
    ) -> Result<Self, ValidationErrors> {
        if self.0.contains_key("devices") {
            return Err(ValidationErrors::single(
                "devices",
                "give either devices or a filter, not both",
            ));
        }
        let mut object = self.0.clone();
        object.remove("filter");
        object.insert("devices".into(), Value::Array(devices));
        match service_provider_id {
            Some(id) => {
                object.insert("serviceProviderId".into(), Value::String(id.to_owned()));
            }
            None => {
                object
                    .entry("carrier")
                    .or_insert_with(|| Value::String(carrier.as_str().to_owned()));
            }
        }
        Ok(Self(object))
    }

    /// The request, its `serviceProviderId` (if any) being `provider`, looked up already: the
    /// carrier is the provider's, and a `carrier` that names another is an error.
    pub fn parse(
        &self,
        provider: Option<ProviderRef<'_>>,
    ) -> Result<BulkChangeRequest, ValidationErrors> {
        parse_document(&self.0, provider)
    }
}

/// Parses a request body that names no service provider (or is refused for naming one that was
/// not looked up).
pub fn parse_bulk_change_request(body: &[u8]) -> Result<BulkChangeRequest, ValidationErrors> {
    RequestDocument::read(body)?.parse(None)
}

fn parse_document(
    object: &Map<String, Value>,
    provider: Option<ProviderRef<'_>>,
) -> Result<BulkChangeRequest, ValidationErrors> {
    let mut errors = ValidationErrors::default();
    reject_unknown(
        object,
        "",
        &[
            "carrier",
            "serviceProviderId",
            "change",
            "processChanges",
            "devices",
        ],
        &mut errors,
    );

    let named_provider = match object.get("serviceProviderId") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.as_str()),
        Some(_) => {
            errors.push(
                "serviceProviderId",
                "must be the id of one of the tenant's service providers",
            );
            return Err(errors);
        }
    };
    let carrier = match (provider, named_provider) {
        (Some(provider), Some(named)) if provider.id == named => match object.get("carrier") {
            None | Some(Value::Null) => Some(provider.carrier),
            Some(v) if v.as_str() == Some(provider.carrier.as_str()) => Some(provider.carrier),
            Some(_) => {
                errors.push(
                    "carrier",
                    format!(
                        "the service provider is at {}; leave carrier out or name it",
                        provider.carrier.as_str()
                    ),
                );
                None
            }
        },
        (_, Some(_)) => {
            errors.push(
                "serviceProviderId",
                "must be the id of one of the tenant's service providers",
            );
            None
        }
        (_, None) => required(object, "", "carrier", &mut errors).and_then(|v| {
            one_of(
                v,
                "carrier",
                &Carrier::ALL.map(Carrier::as_str),
                &mut errors,
            )
            .map(|i| Carrier::ALL[i])
        }),
    };
    let change =
        required(object, "", "change", &mut errors).and_then(|v| parse_change(v, &mut errors));
    let process_changes = match object.get("processChanges") {
        None | Some(Value::Null) => Some(true),
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            errors.push("processChanges", "must be true or false");
            None
        }
    };
    let devices = required(object, "", "devices", &mut errors)
        .and_then(|v| parse_devices(v, change.as_ref(), &mut errors));

    // A change the carrier cannot make would fail on every device; recording one is harmless.
    if let (Some(carrier), Some(change), Some(true)) = (carrier, &change, process_changes) {
        if let Err(refusal) = capabilities(carrier).support(change) {
            errors.push(refusal.field, refusal.reason);
        }
    }
    match (carrier, change, process_changes, devices) {
        (Some(carrier), Some(change), Some(process_changes), Some(devices))
            if errors.is_empty() =>
        {
            Ok(BulkChangeRequest {
                carrier,
                service_provider_id: named_provider.map(str::to_owned),
                change,
                process_changes,
                devices,
            })
        }
        _ => Err(errors),
    }
}

fn one_of(
    value: &Value,
    field: &str,
    names: &[&str],
    errors: &mut ValidationErrors,
) -> Option<usize> {
    let found = value
        .as_str()
        .and_then(|s| names.iter().position(|n| *n == s));
    if found.is_none() {
        errors.push(field, format!("must be one of: {}", names.join(", ")));
    }
    found
}

fn parse_change(value: &Value, errors: &mut ValidationErrors) -> Option<ChangeSpec> {
    let Some(object) = value.as_object() else {
        errors.push("change", "must be an object with a \"type\"");
        return None;
    };
    let kind = required(object, "change", "type", errors)
        .and_then(|v| one_of(v, "change.type", &ChangeSpec::TYPE_NAMES, errors))
        .map(|i| ChangeSpec::TYPE_NAMES[i])?;
    let field = |name: &str| object.get(name);
    let spec = match kind {
        "statusUpdate" => {
            reject_unknown(object, "change", &["type", "action"], errors);
            let action = required(object, "change", "action", errors).and_then(|v| {
                one_of(
                    v,
                    "change.action",
                    &StatusAction::ALL.map(StatusAction::as_str),
                    errors,
                )
                .map(|i| StatusAction::ALL[i])
            })?;
            ChangeSpec::StatusUpdate { action }
        }
        "activateNewService" => {
            reject_unknown(object, "change", &["type", "ratePlan", "zipCode"], errors);
            let rate_plan = text(field("ratePlan"), "change.ratePlan", true, errors);
            let zip_code = text(field("zipCode"), "change.zipCode", false, errors);
            if let Some(Some(zip)) = &zip_code {
                if zip.len() != 5 || !zip.bytes().all(|b| b.is_ascii_digit()) {
                    errors.push("change.zipCode", "must be a 5-digit ZIP code");
                }
            }
            ChangeSpec::ActivateNewService {
                rate_plan: rate_plan??,
                zip_code: zip_code?,
            }
        }
        "carrierRatePlanChange" => {
            reject_unknown(object, "change", &["type", "ratePlan", "commPlan"], errors);
            let rate_plan = text(field("ratePlan"), "change.ratePlan", true, errors);
            let comm_plan = text(field("commPlan"), "change.commPlan", false, errors);
            ChangeSpec::CarrierRatePlanChange {
                rate_plan: rate_plan??,
                comm_plan: comm_plan?,
            }
        }
        "customerRatePlanChange" => {
            reject_unknown(
                object,
                "change",
                &[
                    "type",
                    "customerRatePlanId",
                    "dataAllocationMb",
                    "poolId",
                    "effectiveDate",
                ],
                errors,
            );
            let plan = text(
                field("customerRatePlanId"),
                "change.customerRatePlanId",
                true,
                errors,
            );
            let pool = text(field("poolId"), "change.poolId", false, errors);
            let allocation = match field("dataAllocationMb") {
                None | Some(Value::Null) => Some(None),
                Some(v) => match v.as_u64() {
                    Some(mb) if (1..=MAX_DATA_ALLOCATION_MB).contains(&mb) => Some(Some(mb)),
                    _ => {
                        errors.push(
                            "change.dataAllocationMb",
                            format!("must be a whole number of megabytes from 1 to {MAX_DATA_ALLOCATION_MB}"),
                        );
                        None
                    }
                },
            };
            let effective = match field("effectiveDate") {
                None | Some(Value::Null) => Some(None),
                Some(v) => match v.as_str().map(|s| OffsetDateTime::parse(s, &Rfc3339)) {
                    Some(Ok(date)) => Some(Some(date)),
                    _ => {
                        errors.push(
                            "change.effectiveDate",
                            "must be an RFC 3339 date-time, e.g. 2026-12-01T00:00:00Z",
                        );
                        None
                    }
                },
            };
            ChangeSpec::CustomerRatePlanChange {
                customer_rate_plan_id: plan??,
                data_allocation_mb: allocation?,
                pool_id: pool?,
                effective_date: effective?,
            }
        }
        "customerAssignment" => {
            reject_unknown(object, "change", &["type", "customerId"], errors);
            let customer = text(field("customerId"), "change.customerId", true, errors);
            ChangeSpec::CustomerAssignment {
                customer_id: customer??,
            }
        }
        "iccidImeiChange" => {
            reject_unknown(object, "change", &["type"], errors);
            ChangeSpec::IccidImeiChange
        }
        _ => {
            reject_unknown(object, "change", &["type"], errors);
            ChangeSpec::UsernameCostCenterEdit
        }
    };
    Some(spec)
}

const DEVICE_FIELDS: [&str; 3] = ["iccid", "msisdn", "imei"];
const SWAP_FIELDS: [&str; 2] = ["newIccid", "newImei"];
const LABEL_FIELDS: [&str; 2] = ["username", "costCenter"];

fn parse_devices(
    value: &Value,
    change: Option<&ChangeSpec>,
    errors: &mut ValidationErrors,
) -> Option<Vec<DeviceRequest>> {
    let Some(entries) = value.as_array() else {
        errors.push("devices", "must be an array of device objects");
        return None;
    };
    if entries.is_empty() {
        errors.push("devices", "must list at least one device");
        return None;
    }
    if entries.len() > MAX_DEVICES {
        errors.push(
            "devices",
            format!(
                "at most {MAX_DEVICES} devices per bulk change, got {}",
                entries.len()
            ),
        );
        return None;
    }
    let extra: &[&str] = match change {
        Some(ChangeSpec::IccidImeiChange) => &SWAP_FIELDS,
        Some(ChangeSpec::UsernameCostCenterEdit) => &LABEL_FIELDS,
        _ => &[],
    };
    let allowed: Vec<&str> = DEVICE_FIELDS.iter().chain(extra).copied().collect();
    let mut first_seen: HashMap<String, usize> = HashMap::with_capacity(entries.len());
    let mut devices = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let at = format!("devices[{index}]");
        let Some(object) = entry.as_object() else {
            errors.push(at, "must be an object with an \"iccid\"");
            continue;
        };
        reject_unknown(object, &at, &allowed, errors);
        let iccid = identifier(object, &at, "iccid", true, Iccid::parse, errors);
        let msisdn = identifier(object, &at, "msisdn", false, Msisdn::parse, errors);
        let imei = identifier(object, &at, "imei", false, Imei::parse, errors);
        if let Some(Some(iccid)) = &iccid {
            if let Some(first) = first_seen.insert(iccid.as_str().to_owned(), index) {
                errors.push(path(&at, "iccid"), format!("duplicate of devices[{first}]"));
                first_seen.insert(iccid.as_str().to_owned(), first);
            }
        }
        let edit = match change {
            Some(ChangeSpec::IccidImeiChange) => {
                let new_iccid = identifier(object, &at, "newIccid", false, Iccid::parse, errors);
                let new_imei = identifier(object, &at, "newImei", false, Imei::parse, errors);
                if matches!((&new_iccid, &new_imei), (Some(None), Some(None))) {
                    errors.push(
                        at.clone(),
                        "an iccidImeiChange needs newIccid, newImei or both",
                    );
                }
                new_iccid
                    .zip(new_imei)
                    .map(|(new_iccid, new_imei)| DeviceEdit::IdentifierSwap {
                        new_iccid,
                        new_imei,
                    })
            }
            Some(ChangeSpec::UsernameCostCenterEdit) => {
                let username = text(
                    object.get("username"),
                    &path(&at, "username"),
                    false,
                    errors,
                );
                let cost_center = text(
                    object.get("costCenter"),
                    &path(&at, "costCenter"),
                    false,
                    errors,
                );
                if matches!((&username, &cost_center), (Some(None), Some(None))) {
                    errors.push(
                        at.clone(),
                        "a usernameCostCenterEdit needs username, costCenter or both",
                    );
                }
                username
                    .zip(cost_center)
                    .map(|(username, cost_center)| DeviceEdit::Labels {
                        username,
                        cost_center,
                    })
            }
            _ => Some(DeviceEdit::None),
        };
        if let (Some(Some(iccid)), Some(msisdn), Some(imei), Some(edit)) =
            (iccid, msisdn, imei, edit)
        {
            devices.push(DeviceRequest {
                device: DeviceRef {
                    iccid,
                    msisdn,
                    imei,
                },
                edit,
            });
        }
    }
    Some(devices)
}

/// `Some(None)` when absent and optional, `Some(Some(id))` when valid, `None` after recording an error.
fn identifier<T>(
    object: &Map<String, Value>,
    parent: &str,
    field: &str,
    required: bool,
    parse: fn(&str) -> Result<T, cellbridge_core::ids::IdError>,
    errors: &mut ValidationErrors,
) -> Option<Option<T>> {
    let at = path(parent, field);
    match object.get(field) {
        None | Some(Value::Null) if required => {
            errors.push(at, "is required");
            None
        }
        None | Some(Value::Null) => Some(None),
        Some(Value::String(raw)) => match parse(raw.trim()) {
            Ok(id) => Some(Some(id)),
            Err(e) => {
                errors.push(at, e.to_string());
                None
            }
        },
        Some(_) => {
            errors.push(at, "must be a string");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellbridge_core::testing::iccid;
    use proptest::prelude::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<BulkChangeRequest, ValidationErrors> {
        parse_bulk_change_request(value.to_string().as_bytes())
    }

    fn fields(result: Result<BulkChangeRequest, ValidationErrors>) -> Vec<String> {
        result
            .expect_err("expected validation errors")
            .errors
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn a_status_update_parses_with_defaults() {
        let request = parse(json!({
            "carrier": "jasper",
            "change": {"type": "statusUpdate", "action": "suspend"},
            "devices": [{"iccid": iccid(1), "msisdn": "+14155550123"}]
        }))
        .unwrap();
        assert_eq!(request.carrier, Carrier::Jasper);
        assert_eq!(
            request.change,
            ChangeSpec::StatusUpdate {
                action: StatusAction::Suspend
            }
        );
        assert!(request.process_changes);
        assert_eq!(request.devices.len(), 1);
        assert_eq!(request.devices[0].edit, DeviceEdit::None);
    }

    #[test]
    fn every_change_type_of_the_seed_parses() {
        let cases = [
            json!({"type": "activateNewService", "ratePlan": "IOT-1GB", "zipCode": "30301"}),
            json!({"type": "carrierRatePlanChange", "ratePlan": "IOT-5GB"}),
            json!({"type": "customerRatePlanChange", "customerRatePlanId": "456", "dataAllocationMb": 1024,
                   "poolId": "789", "effectiveDate": "2027-01-01T00:00:00Z"}),
            json!({"type": "customerAssignment", "customerId": "CUST-9"}),
        ];
        for change in cases {
            // Recorded only: what each carrier can make is checked apart.
            let request = parse(
                json!({"carrier": "thingSpace", "change": change, "processChanges": false,
                "devices": [{"iccid": iccid(2)}]}),
            );
            assert!(request.is_ok(), "{request:?}");
        }
        let swap = parse(
            json!({"carrier": "telegence", "change": {"type": "iccidImeiChange"}, "processChanges": false,
            "devices": [{"iccid": iccid(3), "newIccid": iccid(4), "newImei": "490154203237518"}]}),
        )
        .unwrap();
        assert!(matches!(
            swap.devices[0].edit,
            DeviceEdit::IdentifierSwap {
                new_iccid: Some(_),
                new_imei: Some(_)
            }
        ));
        let labels = parse(
            json!({"carrier": "jasper", "change": {"type": "usernameCostCenterEdit"}, "processChanges": false,
            "devices": [{"iccid": iccid(5), "costCenter": "CC-12"}]}),
        )
        .unwrap();
        assert_eq!(
            labels.devices[0].edit,
            DeviceEdit::Labels {
                username: None,
                cost_center: Some("CC-12".into())
            }
        );
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let result = parse(json!({
            "carrier": "sprint",
            "change": {"type": "statusUpdate", "action": "explode"},
            "processChanges": "yes",
            "devices": [
                {"iccid": iccid(1)},
                {"iccid": "8901260882296135419"},
                {"iccid": iccid(1), "imei": "123"},
                {"msisdn": "555"},
                "8901260882296135418"
            ],
            "tenantId": "other"
        }));
        assert_eq!(
            fields(result),
            vec![
                "tenantId",
                "carrier",
                "change.action",
                "processChanges",
                "devices[1].iccid",
                "devices[2].imei",
                "devices[2].iccid",
                "devices[3].iccid",
                "devices[3].msisdn",
                "devices[4]",
            ]
        );
    }

    #[test]
    fn malformed_and_wrong_shapes_are_reported_on_the_document() {
        assert_eq!(
            fields(parse_bulk_change_request(b"{\"carrier\": ")),
            vec![""]
        );
        assert_eq!(fields(parse(json!([1, 2]))), vec![""]);
        assert_eq!(
            fields(parse(json!({}))),
            vec!["carrier", "change", "devices"]
        );
    }

    #[test]
    fn unknown_change_types_and_misplaced_fields_are_named() {
        let result = parse(
            json!({"carrier": "jasper", "change": {"type": "teleport"}, "devices": [{"iccid": iccid(1)}]}),
        );
        assert_eq!(fields(result), vec!["change.type"]);
        let result = parse(
            json!({"carrier": "jasper", "change": {"type": "statusUpdate", "action": "suspend"},
            "devices": [{"iccid": iccid(1), "newIccid": iccid(2)}]}),
        );
        assert_eq!(fields(result), vec!["devices[0].newIccid"]);
        let result = parse(
            json!({"carrier": "jasper", "change": {"type": "iccidImeiChange"}, "processChanges": false,
            "devices": [{"iccid": iccid(1)}]}),
        );
        assert_eq!(fields(result), vec!["devices[0]"]);
    }

    #[test]
    fn a_named_service_provider_gives_the_carrier() {
        let id = "019aa8e4-0000-7000-8000-000000000001";
        let body = |carrier: Option<&str>| {
            let mut body = json!({"serviceProviderId": id,
                "change": {"type": "statusUpdate", "action": "suspend"},
                "devices": [{"iccid": iccid(1)}]});
            if let Some(carrier) = carrier {
                body["carrier"] = json!(carrier);
            }
            body.to_string().into_bytes()
        };
        assert_eq!(
            RequestDocument::read(&body(None))
                .unwrap()
                .service_provider_id(),
            Some(id)
        );
        let provider = ProviderRef {
            id,
            carrier: Carrier::Telegence,
        };
        let request = RequestDocument::read(&body(None))
            .unwrap()
            .parse(Some(provider))
            .unwrap();
        assert_eq!(request.carrier, Carrier::Telegence);
        assert_eq!(request.service_provider_id.as_deref(), Some(id));
        assert!(RequestDocument::read(&body(Some("telegence")))
            .unwrap()
            .parse(Some(provider))
            .is_ok());
        assert_eq!(
            fields(
                RequestDocument::read(&body(Some("jasper")))
                    .unwrap()
                    .parse(Some(provider))
            ),
            vec!["carrier"]
        );
        assert_eq!(
            fields(parse_bulk_change_request(&body(None))),
            vec!["serviceProviderId"],
            "a provider that was not looked up is not taken on trust"
        );
    }

    #[test]
    fn a_change_the_carrier_cannot_make_is_refused_unless_only_recorded() {
        let request = |carrier: &str, change: Value, process: bool| {
            parse(
                json!({"carrier": carrier, "change": change, "processChanges": process,
                "devices": [{"iccid": iccid(1)}]}),
            )
        };
        let assign = json!({"type": "customerAssignment", "customerId": "CUST-9"});
        let refused = request("thingSpace", assign.clone(), true).expect_err("ThingSpace cannot");
        assert_eq!(refused.errors[0].field, "change.type");
        assert!(
            refused.errors[0].message.contains("Jasper"),
            "names who can: {}",
            refused.errors[0].message
        );
        assert!(request("jasper", assign.clone(), true).is_ok());
        assert!(
            request("thingSpace", assign, false).is_ok(),
            "recording is harmless"
        );
        let with_comm_plan =
            json!({"type": "carrierRatePlanChange", "ratePlan": "IOT-5GB", "commPlan": "CP-1"});
        assert_eq!(
            fields(request("telegence", with_comm_plan.clone(), true)),
            vec!["change.commPlan"]
        );
        assert!(request("jasper", with_comm_plan, true).is_ok());
    }

    #[test]
    fn device_count_is_bounded() {
        let devices: Vec<Value> = (0..=MAX_DEVICES as u32)
            .map(|n| json!({"iccid": iccid(n)}))
            .collect();
        let result = parse(
            json!({"carrier": "jasper", "change": {"type": "statusUpdate", "action": "restore"},
            "devices": devices}),
        );
        assert_eq!(fields(result), vec!["devices"]);
        let result = parse(
            json!({"carrier": "jasper", "change": {"type": "statusUpdate", "action": "restore"},
            "devices": []}),
        );
        assert_eq!(fields(result), vec!["devices"]);
    }

    #[test]
    fn the_maximum_device_count_is_accepted() {
        let devices: Vec<Value> = (0..MAX_DEVICES as u32)
            .map(|n| json!({"iccid": iccid(n)}))
            .collect();
        let request = parse(
            json!({"carrier": "jasper", "change": {"type": "statusUpdate", "action": "restore"},
            "devices": devices}),
        )
        .unwrap();
        assert_eq!(request.devices.len(), MAX_DEVICES);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_bulk_change_request(&body);
        }

        #[test]
        fn arbitrary_json_values_in_every_field_never_panic(
            carrier in any::<Option<String>>(),
            action in any::<Option<String>>(),
            device in any::<String>(),
            flag in any::<Option<i64>>(),
        ) {
            let body = json!({"carrier": carrier, "change": {"type": "statusUpdate", "action": action},
                "processChanges": flag, "devices": [{"iccid": device}, device]});
            prop_assert!(parse(body).is_err());
        }
    }
}
