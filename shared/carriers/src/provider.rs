//! Service providers: a tenant's own accounts at its carriers. The record keeps what may be shown
//! (carrier, name, endpoint, limits, portal type, non-secret settings); the credentials live in a
//! vault (one secret per provider) and are never returned, logged or audited.

use crate::config::{CarrierAccountsConfig, CarrierConfigError, LimitsOverride};
use cellbridge_bulk_changes::change::Carrier;
use cellbridge_core::tenant::TenantId;
use cellbridge_core::validation::{json_object, reject_unknown, BodyLimits, ValidationErrors};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// The legacy system's two portals: M2M accounts (IoT SIMs) and Mobility accounts (phones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PortalType {
    M2m,
    Mobility,
}

impl PortalType {
    pub const ALL: [PortalType; 2] = [PortalType::M2m, PortalType::Mobility];

    pub fn as_str(self) -> &'static str {
        match self {
            PortalType::M2m => "m2m",
            PortalType::Mobility => "mobility",
        }
    }
}

/// How the last `test` of a provider went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestResult {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub ok: bool,
    pub detail: String,
}

/// One carrier account of a tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceProvider {
    pub tenant: TenantId,
    pub id: String,
    pub name: String,
    pub carrier: Carrier,
    pub portal_type: PortalType,
    /// The carrier API's base URL.
    pub endpoint: String,
    /// Limits of this account's contract, where they differ from the carrier's documented ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsOverride>,
    /// Carrier-specific values that are not secret (ThingSpace's account name, ...).
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// Where the credentials are kept.
    pub secret_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub credentials_updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Bumped by every change; updates are conditional on it.
    pub version: u64,
    /// Tests in a row whose credentials the carrier refused (reset by new credentials).
    #[serde(default)]
    pub refused_tests: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_test: Option<TestResult>,
}

/// Tests refused in a row after which `test` asks for new credentials first: ThingSpace locks
/// a login after 5 failures, and the worker's own calls need some of the margin.
pub const MAX_REFUSED_TESTS: u32 = 2;

/// What each carrier's credentials and settings are made of, by their API names.
struct Shape {
    credentials: &'static [&'static str],
    required_settings: &'static [&'static str],
    optional_settings: &'static [&'static str],
}

fn shape(carrier: Carrier) -> Shape {
    match carrier {
        Carrier::Jasper => Shape {
            credentials: &["username", "apiKey"],
            required_settings: &[],
            optional_settings: &[],
        },
        Carrier::ThingSpace => Shape {
            credentials: &["appKey", "appSecret", "username", "password"],
            required_settings: &["accountName"],
            optional_settings: &["defaultServicePlan", "defaultZipCode"],
        },
        Carrier::Telegence => Shape {
            credentials: &["appId", "appSecret"],
            required_settings: &[],
            optional_settings: &[],
        },
    }
}

/// A provider's credentials: the carrier's named values, all secret, as one JSON object.
#[derive(Clone)]
pub struct Credentials(SecretString);

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(REDACTED)")
    }
}

impl Credentials {
    /// The JSON object a vault keeps.
    pub fn from_secret(secret: SecretString) -> Self {
        Self(secret)
    }

    pub fn secret(&self) -> &SecretString {
        &self.0
    }

    fn values(&self) -> Map<String, Value> {
        serde_json::from_str(self.0.expose_secret()).unwrap_or_default()
    }
}

/// The carrier account a provider logs in to: where (its carrier and endpoint) and as whom (the
/// value the carrier tells accounts apart by: Jasper's username, ThingSpace's account name,
/// Telegence's app id). Two providers of one tenant on the same account would list the same SIMs
/// and take them from each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountIdentity {
    pub place: String,
    pub login: String,
}

impl AccountIdentity {
    /// Where `carrier`'s account at `endpoint` is, before its credentials are read.
    pub fn place(carrier: Carrier, endpoint: &str) -> String {
        format!(
            "{}|{}",
            carrier.as_str(),
            endpoint.trim_end_matches('/').to_ascii_lowercase()
        )
    }

    pub fn of(
        carrier: Carrier,
        endpoint: &str,
        settings: &BTreeMap<String, String>,
        credentials: &Credentials,
    ) -> Self {
        let field = match carrier {
            Carrier::Jasper => "username",
            Carrier::ThingSpace => "accountName",
            Carrier::Telegence => "appId",
        };
        let login = settings.get(field).cloned().unwrap_or_else(|| {
            credentials
                .values()
                .get(field)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        });
        Self {
            place: Self::place(carrier, endpoint),
            login: login.trim().to_owned(),
        }
    }
}

/// `POST /service-providers`, validated.
#[derive(Debug)]
pub struct NewProvider {
    pub name: String,
    pub carrier: Carrier,
    pub portal_type: PortalType,
    pub endpoint: String,
    pub limits: Option<LimitsOverride>,
    pub settings: BTreeMap<String, String>,
    pub credentials: Credentials,
}

impl NewProvider {
    /// The provider as first stored: version 1, its credentials kept as `secret_id`.
    pub fn into_provider(
        self,
        tenant: TenantId,
        id: String,
        secret_id: String,
        now: OffsetDateTime,
    ) -> ServiceProvider {
        ServiceProvider {
            tenant,
            id,
            name: self.name,
            carrier: self.carrier,
            portal_type: self.portal_type,
            endpoint: self.endpoint,
            limits: self.limits,
            settings: self.settings,
            secret_id,
            credentials_updated_at: now,
            created_at: now,
            updated_at: now,
            version: 1,
            refused_tests: 0,
            last_test: None,
        }
    }
}

/// A change to a provider (`PATCH /service-providers/{id}`): what is given replaces what was.
#[derive(Debug, Default)]
pub struct ProviderChange {
    pub name: Option<String>,
    pub portal_type: Option<PortalType>,
    pub endpoint: Option<String>,
    /// `Some(None)` removes the override.
    pub limits: Option<Option<LimitsOverride>>,
    pub settings: Option<BTreeMap<String, String>>,
    pub credentials: Option<Credentials>,
}

const BODY_LIMITS: BodyLimits = BodyLimits {
    max_depth: 4,
    max_array_len: 16,
};
const MAX_NAME_CHARS: usize = 100;
const MAX_VALUE_CHARS: usize = 2048;

/// Parses `POST /service-providers`. Errors name fields, never quote a credential.
pub fn parse_new_provider(body: &[u8]) -> Result<NewProvider, ValidationErrors> {
    let object = json_object(body, &BODY_LIMITS)?;
    let mut errors = ValidationErrors::default();
    reject_unknown(
        &object,
        "",
        &[
            "name",
            "carrier",
            "portalType",
            "endpoint",
            "limits",
            "settings",
            "credentials",
        ],
        &mut errors,
    );
    let carrier = match object.get("carrier") {
        None | Some(Value::Null) => {
            errors.push("carrier", "is required");
            None
        }
        Some(value) => carrier_of(value, &mut errors),
    };
    let name = name_of(object.get("name"), true, &mut errors);
    let portal_type = match object.get("portalType") {
        None | Some(Value::Null) => Some(PortalType::M2m),
        Some(value) => portal_type_of(value, &mut errors),
    };
    let endpoint = endpoint_of(object.get("endpoint"), true, &mut errors);
    let limits = limits_of(object.get("limits"), &mut errors);
    let (settings, credentials) = match carrier {
        Some(carrier) => (
            settings_of(
                carrier,
                object.get("settings").unwrap_or(&Value::Null),
                &mut errors,
            ),
            credentials_of(carrier, object.get("credentials"), true, &mut errors),
        ),
        None => (None, None),
    };
    match (
        carrier,
        name,
        portal_type,
        endpoint,
        limits,
        settings,
        credentials,
    ) {
        (
            Some(carrier),
            Some(Some(name)),
            Some(portal_type),
            Some(Some(endpoint)),
            Some(limits),
            Some(settings),
            Some(Some(credentials)),
        ) if errors.is_empty() => Ok(NewProvider {
            name,
            carrier,
            portal_type,
            endpoint,
            limits,
            settings,
            credentials,
        }),
        _ => Err(errors),
    }
}

/// Parses `PATCH /service-providers/{id}` for a provider of `carrier` (which cannot change: an
/// account at another carrier is another provider).
pub fn parse_provider_change(
    carrier: Carrier,
    body: &[u8],
) -> Result<ProviderChange, ValidationErrors> {
    let object = json_object(body, &BODY_LIMITS)?;
    let mut errors = ValidationErrors::default();
    reject_unknown(
        &object,
        "",
        &[
            "name",
            "portalType",
            "endpoint",
            "limits",
            "settings",
            "credentials",
        ],
        &mut errors,
    );
    let change = ProviderChange {
        name: name_of(object.get("name"), false, &mut errors).flatten(),
        portal_type: object
            .get("portalType")
            .and_then(|v| portal_type_of(v, &mut errors)),
        endpoint: endpoint_of(object.get("endpoint"), false, &mut errors).flatten(),
        limits: match object.get("limits") {
            None => None,
            Some(value) => limits_of(Some(value), &mut errors),
        },
        settings: object
            .get("settings")
            .and_then(|v| settings_of(carrier, v, &mut errors)),
        credentials: credentials_of(carrier, object.get("credentials"), false, &mut errors)
            .flatten(),
    };
    if errors.is_empty() {
        Ok(change)
    } else {
        Err(errors)
    }
}

/// The one of `all` whose name `value` is, or an error on `field` listing the names.
fn one_of<T: Copy>(
    value: &Value,
    field: &str,
    all: &[T],
    name: fn(T) -> &'static str,
    errors: &mut ValidationErrors,
) -> Option<T> {
    let found = all
        .iter()
        .copied()
        .find(|t| value.as_str() == Some(name(*t)));
    if found.is_none() {
        let names: Vec<&str> = all.iter().map(|t| name(*t)).collect();
        errors.push(field, format!("must be one of: {}", names.join(", ")));
    }
    found
}

fn carrier_of(value: &Value, errors: &mut ValidationErrors) -> Option<Carrier> {
    one_of(value, "carrier", &Carrier::ALL, Carrier::as_str, errors)
}

fn portal_type_of(value: &Value, errors: &mut ValidationErrors) -> Option<PortalType> {
    one_of(
        value,
        "portalType",
        &PortalType::ALL,
        PortalType::as_str,
        errors,
    )
}

/// `Some(None)` when absent and optional; `None` when invalid.
fn name_of(
    value: Option<&Value>,
    required: bool,
    errors: &mut ValidationErrors,
) -> Option<Option<String>> {
    match value {
        None | Some(Value::Null) if !required => Some(None),
        Some(Value::String(name))
            if !name.trim().is_empty() && name.trim().chars().count() <= MAX_NAME_CHARS =>
        {
            Some(Some(name.trim().to_owned()))
        }
        _ => {
            errors.push(
                "name",
                format!("must be a non-empty string of at most {MAX_NAME_CHARS} characters"),
            );
            None
        }
    }
}

fn endpoint_of(
    value: Option<&Value>,
    required: bool,
    errors: &mut ValidationErrors,
) -> Option<Option<String>> {
    match value {
        None | Some(Value::Null) if !required => Some(None),
        Some(Value::String(url))
            if (url.starts_with("https://") || url.starts_with("http://"))
                && url.len() <= MAX_VALUE_CHARS
                && reqwest::Url::parse(url).is_ok() =>
        {
            Some(Some(url.trim_end_matches('/').to_owned()))
        }
        _ => {
            errors.push(
                "endpoint",
                "must be the carrier API's base URL (https://...)",
            );
            None
        }
    }
}

/// `Some(None)` for no override (absent or null).
fn limits_of(
    value: Option<&Value>,
    errors: &mut ValidationErrors,
) -> Option<Option<LimitsOverride>> {
    match value {
        None | Some(Value::Null) => Some(None),
        Some(value) => match serde_json::from_value::<LimitsOverride>(value.clone()) {
            Ok(limits)
                if [limits.calls_per_second, limits.burst, limits.max_in_flight]
                    .iter()
                    .all(|v| v.is_none_or(|n| (1..=1000).contains(&n))) =>
            {
                Some(Some(limits))
            }
            _ => {
                errors.push(
                    "limits",
                    "must be an object of callsPerSecond, burst and maxInFlight, each 1 to 1000",
                );
                None
            }
        },
    }
}

fn settings_of(
    carrier: Carrier,
    value: &Value,
    errors: &mut ValidationErrors,
) -> Option<BTreeMap<String, String>> {
    let shape = shape(carrier);
    let empty = Map::new();
    let object = match value {
        Value::Null => &empty,
        Value::Object(object) => object,
        _ => {
            errors.push("settings", "must be an object");
            return None;
        }
    };
    let before = errors.errors.len();
    let known: Vec<&str> = shape
        .required_settings
        .iter()
        .chain(shape.optional_settings)
        .copied()
        .collect();
    reject_unknown(object, "settings", &known, errors);
    let mut settings = BTreeMap::new();
    for name in known {
        match object.get(name) {
            None | Some(Value::Null) => {
                if shape.required_settings.contains(&name) {
                    errors.push(
                        format!("settings.{name}"),
                        format!("is required for {}", carrier.as_str()),
                    );
                }
            }
            Some(Value::String(text))
                if !text.trim().is_empty() && text.len() <= MAX_VALUE_CHARS =>
            {
                settings.insert(name.to_owned(), text.trim().to_owned());
            }
            Some(_) => errors.push(format!("settings.{name}"), "must be a non-empty string"),
        }
    }
    (errors.errors.len() == before).then_some(settings)
}

/// Every named value, non-empty; the values never reach an error message.
fn credentials_of(
    carrier: Carrier,
    value: Option<&Value>,
    required: bool,
    errors: &mut ValidationErrors,
) -> Option<Option<Credentials>> {
    let names = shape(carrier).credentials;
    let object = match value {
        None | Some(Value::Null) if !required => return Some(None),
        Some(Value::Object(object)) => object,
        _ => {
            errors.push(
                "credentials",
                format!(
                    "must be an object of {} for {}",
                    names.join(", "),
                    carrier.as_str()
                ),
            );
            return None;
        }
    };
    let before = errors.errors.len();
    reject_unknown(object, "credentials", names, errors);
    let mut values = Map::new();
    for name in names {
        match object.get(*name) {
            Some(Value::String(text)) if !text.is_empty() && text.len() <= MAX_VALUE_CHARS => {
                values.insert((*name).to_owned(), Value::String(text.clone()));
            }
            _ => errors.push(
                format!("credentials.{name}"),
                "is required: a non-empty string",
            ),
        }
    }
    (errors.errors.len() == before).then(|| {
        Some(Credentials(SecretString::from(
            Value::Object(values).to_string(),
        )))
    })
}

/// The carrier accounts document (`docs/carriers.md`) of one provider: the account the worker
/// and the `test` action build their carrier client from.
pub fn account_config(
    provider: &ServiceProvider,
    credentials: &Credentials,
) -> Result<CarrierAccountsConfig, CarrierConfigError> {
    let mut account = credentials.values();
    account.insert("baseUrl".into(), Value::String(provider.endpoint.clone()));
    for (name, value) in &provider.settings {
        account.insert(name.clone(), Value::String(value.clone()));
    }
    if let Some(limits) = &provider.limits {
        account.insert(
            "limits".into(),
            serde_json::to_value(limits).unwrap_or_default(),
        );
    }
    let mut document = Map::new();
    document.insert(provider.carrier.as_str().to_owned(), Value::Object(account));
    CarrierAccountsConfig::parse(&Value::Object(document).to_string())
}

/// How a provider looks through the API: everything but its credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderView {
    pub id: String,
    pub name: String,
    pub carrier: Carrier,
    pub portal_type: PortalType,
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsOverride>,
    pub settings: BTreeMap<String, String>,
    /// The names of the credentials on file, never their values.
    pub credentials: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub credentials_updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_test: Option<TestResult>,
}

impl From<&ServiceProvider> for ProviderView {
    fn from(provider: &ServiceProvider) -> Self {
        Self {
            id: provider.id.clone(),
            name: provider.name.clone(),
            carrier: provider.carrier,
            portal_type: provider.portal_type,
            endpoint: provider.endpoint.clone(),
            limits: provider.limits,
            settings: provider.settings.clone(),
            credentials: shape(provider.carrier)
                .credentials
                .iter()
                .map(|c| (*c).to_owned())
                .collect(),
            credentials_updated_at: provider.credentials_updated_at,
            created_at: provider.created_at,
            updated_at: provider.updated_at,
            last_test: provider.last_test.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(value: Value) -> Vec<u8> {
        value.to_string().into_bytes()
    }

    fn fields(errors: ValidationErrors) -> Vec<String> {
        errors.errors.into_iter().map(|e| e.field).collect()
    }

    fn thingspace() -> Value {
        json!({
            "name": "Verizon production",
            "carrier": "thingSpace",
            "endpoint": "https://thingspace.verizon.com/api/",
            "settings": {"accountName": "0342351234-00001"},
            "credentials": {"appKey": "k", "appSecret": "very-secret", "username": "u", "password": "pw-secret"}
        })
    }

    #[test]
    fn a_provider_is_read_with_its_carriers_credentials_and_settings() {
        let provider = parse_new_provider(&body(thingspace())).expect("valid");
        assert_eq!(provider.carrier, Carrier::ThingSpace);
        assert_eq!(provider.portal_type, PortalType::M2m, "M2M unless told");
        assert_eq!(provider.endpoint, "https://thingspace.verizon.com/api");
        assert_eq!(provider.settings["accountName"], "0342351234-00001");
        assert!(!format!("{provider:?}").contains("very-secret"));
    }

    #[test]
    fn missing_unknown_and_misplaced_values_are_named_without_quoting_secrets() {
        let mut request = thingspace();
        request["credentials"] = json!({"appKey": "k", "appSecret": "very-secret", "apiKey": "x"});
        request["settings"] = json!({});
        request["portalType"] = json!("iot");
        request["color"] = json!("red");
        let errors = parse_new_provider(&body(request)).expect_err("invalid");
        let printed = format!("{errors:?}");
        assert!(!printed.contains("very-secret"), "{printed}");
        assert_eq!(
            fields(errors),
            [
                "color",
                "portalType",
                "settings.accountName",
                "credentials.apiKey",
                "credentials.username",
                "credentials.password"
            ]
        );
    }

    #[test]
    fn a_change_keeps_what_it_leaves_out_and_cannot_change_the_carrier() {
        let change = parse_provider_change(
            Carrier::Jasper,
            &body(json!({"credentials": {"username": "ops", "apiKey": "new-key"}, "limits": null})),
        )
        .expect("valid");
        assert!(change.name.is_none() && change.endpoint.is_none());
        assert!(change.credentials.is_some());
        assert_eq!(change.limits, Some(None), "null removes the override");
        let errors = parse_provider_change(Carrier::Jasper, &body(json!({"carrier": "telegence"})))
            .expect_err("the carrier is fixed");
        assert_eq!(fields(errors), ["carrier"]);
    }

    #[test]
    fn the_account_document_builds_the_carriers_client() {
        let mut request = parse_new_provider(&body(thingspace())).expect("valid");
        request.limits = Some(LimitsOverride {
            calls_per_second: Some(2),
            burst: None,
            max_in_flight: None,
        });
        let credentials = request.credentials.clone();
        let provider = request.into_provider(
            TenantId::parse("demo").expect("tenant"),
            "p-1".into(),
            "s".into(),
            OffsetDateTime::UNIX_EPOCH,
        );
        let config = account_config(&provider, &credentials).expect("a valid document");
        assert_eq!(config.carriers(), [Carrier::ThingSpace]);
        let view = serde_json::to_value(ProviderView::from(&provider)).expect("view");
        assert_eq!(
            view["credentials"],
            json!(["appKey", "appSecret", "username", "password"])
        );
        assert!(!view.to_string().contains("very-secret"));
    }
}
