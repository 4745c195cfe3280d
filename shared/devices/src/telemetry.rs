//! A telemetry message as the IoT rule hands it on: the device's own fields plus `deviceId`
//! (`topic(2)`) and `receivedAt` (`timestamp()`). Values are numbers, strings or booleans, one
//! level of nesting flattened (`gps.lat`). The device's `ts` keys the point, so a message
//! delivered twice (MQTT QoS 1) writes the same item twice instead of two points.

use crate::registration::ThingName;
use cellbridge_core::validation::ValidationErrors;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use time::{Duration, OffsetDateTime};

/// AWS IoT Core refuses larger MQTT payloads.
pub const MAX_PAYLOAD_BYTES: usize = 128 * 1024;
pub const MAX_METRICS: usize = 100;
const MAX_NAME_LEN: usize = 64;
const MAX_TEXT_LEN: usize = 256;
/// A device clock further off than this is not believed; the point takes the receive time.
pub const MAX_CLOCK_SKEW: Duration = Duration::hours(24);

#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    Number(f64),
    Text(String),
    Flag(bool),
}

#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryPoint {
    pub device: ThingName,
    /// When the device measured it (its `ts`, in ms), or when IoT Core received it.
    pub at: OffsetDateTime,
    pub received_at: OffsetDateTime,
    pub metrics: BTreeMap<String, Metric>,
}

impl TelemetryPoint {
    /// The metrics as a JSON object, for storage and views.
    pub fn metrics_json(&self) -> Map<String, Value> {
        self.metrics
            .iter()
            .map(|(name, metric)| {
                let value = match metric {
                    // Whole numbers stay whole (`30`, not `30.0`).
                    Metric::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => {
                        Value::from(*n as i64)
                    }
                    Metric::Number(n) => {
                        serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number)
                    }
                    Metric::Text(t) => Value::String(t.clone()),
                    Metric::Flag(b) => Value::Bool(*b),
                };
                (name.clone(), value)
            })
            .collect()
    }
}

/// Fields the rule adds or that carry the time; everything else is a metric.
const RESERVED: [&str; 4] = ["deviceId", "receivedAt", "ts", "seq"];

fn millis(value: Option<&Value>) -> Option<OffsetDateTime> {
    let ms = value?.as_i64()?;
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

pub fn parse_telemetry(payload: &[u8]) -> Result<TelemetryPoint, ValidationErrors> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(ValidationErrors::single(
            "",
            format!("telemetry is at most {MAX_PAYLOAD_BYTES} bytes"),
        ));
    }
    let object: Map<String, Value> = serde_json::from_slice::<Value>(payload)
        .ok()
        .and_then(|v| match v {
            Value::Object(o) => Some(o),
            _ => None,
        })
        .ok_or_else(|| ValidationErrors::single("", "telemetry must be a JSON object"))?;
    let mut errors = ValidationErrors::default();
    let device = object
        .get("deviceId")
        .and_then(Value::as_str)
        .and_then(ThingName::parse);
    if device.is_none() {
        errors.push(
            "deviceId",
            "missing or not a thing name (the rule adds it from the topic)",
        );
    }
    let received_at = millis(object.get("receivedAt"));
    if received_at.is_none() {
        errors.push("receivedAt", "missing (the rule adds it with timestamp())");
    }
    let mut metrics = BTreeMap::new();
    for (name, value) in object
        .iter()
        .filter(|(k, _)| !RESERVED.contains(&k.as_str()))
    {
        match value {
            Value::Object(inner) => {
                for (sub, v) in inner {
                    add_metric(&mut metrics, format!("{name}.{sub}"), v, &mut errors);
                }
            }
            v => add_metric(&mut metrics, name.clone(), v, &mut errors),
        }
    }
    if metrics.len() > MAX_METRICS {
        errors.push("", format!("at most {MAX_METRICS} metrics per message"));
    }
    match (device, received_at) {
        (Some(device), Some(received_at)) if errors.is_empty() => {
            let at = millis(object.get("ts"))
                .filter(|at| (*at - received_at).abs() <= MAX_CLOCK_SKEW)
                .unwrap_or(received_at);
            Ok(TelemetryPoint {
                device,
                at,
                received_at,
                metrics,
            })
        }
        _ => Err(errors),
    }
}

fn add_metric(
    metrics: &mut BTreeMap<String, Metric>,
    name: String,
    value: &Value,
    errors: &mut ValidationErrors,
) {
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        errors.push(
            name,
            format!("metric names are 1 to {MAX_NAME_LEN} printable characters"),
        );
        return;
    }
    let metric = match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.is_finite() => Metric::Number(f),
            _ => {
                errors.push(name, "is not a finite number");
                return;
            }
        },
        Value::String(s) if s.chars().count() <= MAX_TEXT_LEN => Metric::Text(s.clone()),
        Value::String(_) => {
            errors.push(
                name,
                format!("text values are at most {MAX_TEXT_LEN} characters"),
            );
            return;
        }
        Value::Bool(b) => Metric::Flag(*b),
        Value::Null => return,
        Value::Array(_) | Value::Object(_) => {
            errors.push(name, "must be a number, a string or a boolean");
            return;
        }
    };
    metrics.insert(name, metric);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    const RECEIVED: i64 = 1_795_338_000_000;

    fn parse(v: Value) -> Result<TelemetryPoint, ValidationErrors> {
        parse_telemetry(v.to_string().as_bytes())
    }

    #[test]
    fn a_message_becomes_a_point_at_the_device_time() {
        let point = parse(json!({
            "deviceId": "tracker-1", "receivedAt": RECEIVED, "ts": RECEIVED - 1500, "seq": 7,
            "temp": 21.5, "fw": "2.4.1", "moving": true, "gps": {"lat": 47.6, "lon": -122.3}, "note": null
        }))
        .expect("valid");
        assert_eq!(point.device.as_str(), "tracker-1");
        assert_eq!(point.received_at, datetime!(2026-11-22 09:00 UTC));
        assert_eq!(point.at, datetime!(2026-11-22 08:59:58.5 UTC));
        let names: Vec<&str> = point.metrics.keys().map(String::as_str).collect();
        assert_eq!(names, ["fw", "gps.lat", "gps.lon", "moving", "temp"]);
        assert_eq!(point.metrics["temp"], Metric::Number(21.5));
    }

    #[test]
    fn a_device_clock_far_off_is_not_believed() {
        let point = parse(json!({"deviceId": "d", "receivedAt": RECEIVED, "ts": 0, "temp": 1}))
            .expect("valid");
        assert_eq!(point.at, point.received_at);
    }

    #[test]
    fn garbage_is_refused_with_the_reason() {
        assert!(parse_telemetry(b"\x00\x01").is_err());
        assert!(parse(json!([1, 2])).is_err());
        let err = parse(
            json!({"deviceId": "d", "receivedAt": RECEIVED, "deep": {"x": {"y": 1}}, "list": [1]}),
        )
        .expect_err("nested too deep");
        let fields: Vec<&str> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["deep.x", "list"]);
        let many: Map<String, Value> = (0..=MAX_METRICS)
            .map(|i| (format!("m{i}"), json!(i)))
            .collect();
        let mut doc = Value::Object(many);
        doc["deviceId"] = json!("d");
        doc["receivedAt"] = json!(RECEIVED);
        assert!(parse(doc).is_err());
        assert!(parse_telemetry(&vec![b' '; MAX_PAYLOAD_BYTES + 1]).is_err());
        assert!(
            parse(json!({"temp": 1})).is_err(),
            "no deviceId or receivedAt"
        );
    }
}
