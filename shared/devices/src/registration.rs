//! A device announcing itself on `devices/<thingName>/register`: who it is (ICCID, IMEI), whose
//! it is (tenant) and what it runs (model, firmware). Every problem is reported at once, so the
//! device's reply can say all of what to fix.
//!
//! Fields a device adds beyond these are ignored rather than refused: fleets update firmware
//! gradually, and a newer device must still be able to register with an older platform.

use cellbridge_core::ids::{Iccid, Imei};
use cellbridge_core::tenant::TenantId;
use cellbridge_core::validation::ValidationErrors;
use cellbridge_core::validation::{json_object, path, text, BodyLimits};
use serde_json::Value;

/// An announcement is a few hundred bytes; anything far larger is not one.
pub const MAX_ANNOUNCEMENT_BYTES: usize = 8 * 1024;

/// AWS IoT thing names: 1 to 128 of letters, digits, `:`, `_` and `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ThingName(String);

impl ThingName {
    pub fn parse(value: &str) -> Option<Self> {
        let valid = (1..=128).contains(&value.len())
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b":_-".contains(&b));
        valid.then(|| Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ThingName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub thing_name: ThingName,
    pub tenant: TenantId,
    pub iccid: Iccid,
    pub imei: Option<Imei>,
    pub model: String,
    pub firmware: String,
}

/// Reads the announcement of `thing_name` (the topic's second level).
pub fn parse_announcement(
    thing_name: &str,
    payload: &[u8],
) -> Result<Announcement, ValidationErrors> {
    if payload.len() > MAX_ANNOUNCEMENT_BYTES {
        return Err(ValidationErrors::single(
            "",
            format!("an announcement is at most {MAX_ANNOUNCEMENT_BYTES} bytes"),
        ));
    }
    let object = json_object(payload, &BodyLimits::small())?;
    let mut errors = ValidationErrors::default();
    let name = ThingName::parse(thing_name);
    if name.is_none() {
        errors.push(
            "thingName",
            "must be 1 to 128 letters, digits, ':', '_' or '-' (the topic's second level)",
        );
    }
    let text = |field: &str, errors: &mut ValidationErrors| {
        text(object.get(field), field, true, errors).flatten()
    };
    let tenant = text("tenant", &mut errors).and_then(|t| {
        let parsed = TenantId::parse(&t);
        if parsed.is_none() {
            errors.push("tenant", "is not a tenant id (letters, digits, '-', '_')");
        }
        parsed
    });
    let iccid = text("iccid", &mut errors).and_then(|raw| match Iccid::parse(&raw) {
        Ok(id) => Some(id),
        Err(e) => {
            errors.push("iccid", e.to_string());
            None
        }
    });
    let imei = match object.get("imei") {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(raw)) => match Imei::parse(raw) {
            Ok(id) => Some(Some(id)),
            Err(e) => {
                errors.push(path("", "imei"), e.to_string());
                None
            }
        },
        Some(_) => {
            errors.push("imei", "must be a string");
            None
        }
    };
    let model = text("model", &mut errors);
    let firmware = text("firmware", &mut errors);
    match (name, tenant, iccid, imei, model, firmware) {
        (Some(thing_name), Some(tenant), Some(iccid), Some(imei), Some(model), Some(firmware))
            if errors.is_empty() =>
        {
            Ok(Announcement {
                thing_name,
                tenant,
                iccid,
                imei,
                model,
                firmware,
            })
        }
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellbridge_core::testing::iccid;
    use serde_json::json;

    fn parse(thing: &str, body: Value) -> Result<Announcement, ValidationErrors> {
        parse_announcement(thing, body.to_string().as_bytes())
    }

    fn fields(result: Result<Announcement, ValidationErrors>) -> Vec<String> {
        result
            .expect_err("invalid")
            .errors
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn a_complete_announcement_parses_and_extra_fields_are_ignored() {
        let a = parse(
            "tracker-0001",
            json!({"tenant": "demo", "iccid": iccid(1), "imei": "490154203237518",
                   "model": "TRK-200", "firmware": "2.4.1", "batteryMv": 3700}),
        )
        .expect("valid");
        assert_eq!(a.thing_name.as_str(), "tracker-0001");
        assert_eq!(a.tenant.as_str(), "demo");
        assert_eq!(a.iccid.as_str(), iccid(1));
        assert_eq!(
            a.imei.map(|i| i.as_str().to_owned()).as_deref(),
            Some("490154203237518")
        );
        let no_imei = parse(
            "t",
            json!({"tenant": "demo", "iccid": iccid(2), "model": "m", "firmware": "1"}),
        );
        assert_eq!(no_imei.expect("valid").imei, None);
    }

    #[test]
    fn every_problem_is_named_at_once() {
        assert_eq!(
            fields(parse(
                "bad/name",
                json!({"tenant": "a b", "iccid": "123", "imei": "1", "model": "", "firmware": 2})
            )),
            ["thingName", "tenant", "iccid", "imei", "model", "firmware"]
        );
        assert_eq!(
            fields(parse("t", json!({}))),
            ["tenant", "iccid", "model", "firmware"]
        );
        assert_eq!(fields(parse_announcement("t", b"not json")), [""]);
        let huge = vec![b' '; MAX_ANNOUNCEMENT_BYTES + 1];
        assert_eq!(fields(parse_announcement("t", &huge)), [""]);
    }
}
