//! A telemetry message as the IoT rule hands it on: the device's own fields plus `deviceId`
//! (`topic(2)`) and `receivedAt` (`timestamp()`). A message is one sample (its metrics at the top
//! level, `ts` its time) or a batch of samples (`samples`, each with its own `ts`): devices sample
//! every second and publish a minute's samples at once, as many as fit one 5 KB metered message.
//! Values are numbers, strings or booleans, one level of nesting flattened (`gps.lat`). A sample
//! is keyed by its device and time, so a message delivered twice (MQTT QoS 1) stores nothing
//! twice.

use crate::registration::ThingName;
use cellbridge_core::validation::ValidationErrors;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use time::{Duration, OffsetDateTime};

/// AWS IoT Core refuses larger MQTT payloads.
pub const MAX_PAYLOAD_BYTES: usize = 128 * 1024;
pub const MAX_METRICS: usize = 100;
/// Samples in one batch: an hour at one a second.
pub const MAX_SAMPLES: usize = 3_600;
const MAX_NAME_LEN: usize = 64;
const MAX_TEXT_LEN: usize = 256;
/// A device clock further off than this is not believed: a single sample takes the receive
/// time instead, a batch is refused.
pub const MAX_CLOCK_SKEW: Duration = Duration::hours(24);
/// How old a batched sample may be when it arrives: a device offline for a while sends what it
/// kept, up to this far back.
pub const MAX_BACKLOG: Duration = Duration::days(7);

#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    Number(f64),
    Text(String),
    Flag(bool),
}

/// One measurement of a device's metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// When the device measured it (its `ts`, in ms), or for a single sample without a believable
    /// `ts`, when IoT Core received it.
    pub at: OffsetDateTime,
    pub metrics: BTreeMap<String, Metric>,
}

impl Sample {
    /// The metrics as a JSON object, for storage and views.
    pub fn metrics_json(&self) -> Map<String, Value> {
        self.metrics
            .iter()
            .map(|(name, metric)| (name.clone(), metric.to_json()))
            .collect()
    }
}

impl Metric {
    pub fn to_json(&self) -> Value {
        match self {
            // Whole numbers stay whole (`30`, not `30.0`).
            Metric::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => Value::from(*n as i64),
            Metric::Number(n) => {
                serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number)
            }
            Metric::Text(t) => Value::String(t.clone()),
            Metric::Flag(b) => Value::Bool(*b),
        }
    }
}

/// One telemetry message of one device.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryBatch {
    pub device: ThingName,
    pub received_at: OffsetDateTime,
    /// Oldest first, one per millisecond (of two samples at one time, the later in the message
    /// is kept).
    pub samples: Vec<Sample>,
}

/// Fields the rule adds or that carry the time or the batch; everything else is a metric.
const RESERVED: [&str; 6] = ["deviceId", "receivedAt", "ts", "seq", "samples", "batch"];

fn millis(value: Option<&Value>) -> Option<OffsetDateTime> {
    let ms = value?.as_i64()?;
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

pub fn parse_telemetry(payload: &[u8]) -> Result<TelemetryBatch, ValidationErrors> {
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
    let Some(received_at) = received_at else {
        return Err(errors);
    };
    let samples = match object.get("samples") {
        None => {
            let metrics = metrics_of(&object, "", &mut errors);
            let at = millis(object.get("ts"))
                .filter(|at| (*at - received_at).abs() <= MAX_CLOCK_SKEW)
                .unwrap_or(received_at);
            vec![Sample { at, metrics }]
        }
        Some(Value::Array(items)) => batch_samples(&object, items, received_at, &mut errors),
        Some(_) => {
            errors.push("samples", "must be an array of samples");
            Vec::new()
        }
    };
    match device {
        Some(device) if errors.is_empty() => Ok(TelemetryBatch {
            device,
            received_at,
            samples: in_time_order(samples),
        }),
        _ => Err(errors),
    }
}

fn batch_samples(
    object: &Map<String, Value>,
    items: &[Value],
    received_at: OffsetDateTime,
    errors: &mut ValidationErrors,
) -> Vec<Sample> {
    if let Some(name) = object.keys().find(|k| !RESERVED.contains(&k.as_str())) {
        errors.push(
            name.clone(),
            "a batch carries its metrics inside `samples`, not beside them",
        );
    }
    if items.is_empty() || items.len() > MAX_SAMPLES {
        errors.push("samples", format!("holds 1 to {MAX_SAMPLES} samples"));
        return Vec::new();
    }
    let mut samples = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let field = format!("samples[{index}]");
        let Value::Object(sample) = item else {
            errors.push(field, "must be an object with `ts` and the metrics");
            continue;
        };
        let Some(at) = millis(sample.get("ts")) else {
            errors.push(
                format!("{field}.ts"),
                "required in a batch: the sample's time in ms since the epoch",
            );
            continue;
        };
        if at - received_at > MAX_CLOCK_SKEW || received_at - at > MAX_BACKLOG {
            errors.push(
                format!("{field}.ts"),
                format!("is not believable: at most {} h ahead of or {} days behind the time IoT Core received the batch", MAX_CLOCK_SKEW.whole_hours(), MAX_BACKLOG.whole_days()),
            );
            continue;
        }
        let metrics = metrics_of(sample, &format!("{field}."), errors);
        samples.push(Sample { at, metrics });
    }
    samples
}

/// Oldest first, one per millisecond: the last of two at one time wins.
fn in_time_order(samples: Vec<Sample>) -> Vec<Sample> {
    let mut by_time: BTreeMap<i128, Sample> = BTreeMap::new();
    for sample in samples {
        by_time.insert(sample.at.unix_timestamp_nanos() / 1_000_000, sample);
    }
    by_time.into_values().collect()
}

/// The metrics of one sample: every field but the reserved ones; `prefix` names the sample in
/// error fields (`samples[3].`).
fn metrics_of(
    object: &Map<String, Value>,
    prefix: &str,
    errors: &mut ValidationErrors,
) -> BTreeMap<String, Metric> {
    let mut metrics = BTreeMap::new();
    for (name, value) in object
        .iter()
        .filter(|(k, _)| !RESERVED.contains(&k.as_str()))
    {
        match value {
            Value::Object(inner) => {
                for (sub, v) in inner {
                    add_metric(&mut metrics, prefix, format!("{name}.{sub}"), v, errors);
                }
            }
            v => add_metric(&mut metrics, prefix, name.clone(), v, errors),
        }
    }
    if metrics.len() > MAX_METRICS {
        errors.push(
            prefix.trim_end_matches('.'),
            format!("at most {MAX_METRICS} metrics per sample"),
        );
    }
    metrics
}

fn add_metric(
    metrics: &mut BTreeMap<String, Metric>,
    prefix: &str,
    name: String,
    value: &Value,
    errors: &mut ValidationErrors,
) {
    let field = |name: &str| format!("{prefix}{name}");
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        errors.push(
            field(&name),
            format!("metric names are 1 to {MAX_NAME_LEN} printable characters"),
        );
        return;
    }
    let metric = match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.is_finite() => Metric::Number(f),
            _ => {
                errors.push(field(&name), "is not a finite number");
                return;
            }
        },
        Value::String(s) if s.chars().count() <= MAX_TEXT_LEN => Metric::Text(s.clone()),
        Value::String(_) => {
            errors.push(
                field(&name),
                format!("text values are at most {MAX_TEXT_LEN} characters"),
            );
            return;
        }
        Value::Bool(b) => Metric::Flag(*b),
        Value::Null => return,
        Value::Array(_) | Value::Object(_) => {
            errors.push(field(&name), "must be a number, a string or a boolean");
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

    fn parse(v: Value) -> Result<TelemetryBatch, ValidationErrors> {
        parse_telemetry(v.to_string().as_bytes())
    }

    fn fields(err: &ValidationErrors) -> Vec<&str> {
        err.errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn a_single_sample_message_is_a_batch_of_one_at_the_device_time() {
        let batch = parse(json!({
            "deviceId": "tracker-1", "receivedAt": RECEIVED, "ts": RECEIVED - 1500, "seq": 7,
            "temp": 21.5, "fw": "2.4.1", "moving": true, "gps": {"lat": 47.6, "lon": -122.3}, "note": null
        }))
        .expect("valid");
        assert_eq!(batch.device.as_str(), "tracker-1");
        assert_eq!(batch.received_at, datetime!(2026-11-22 09:00 UTC));
        let [sample] = batch.samples.as_slice() else {
            panic!("one sample: {batch:?}")
        };
        assert_eq!(sample.at, datetime!(2026-11-22 08:59:58.5 UTC));
        let names: Vec<&str> = sample.metrics.keys().map(String::as_str).collect();
        assert_eq!(names, ["fw", "gps.lat", "gps.lon", "moving", "temp"]);
        assert_eq!(sample.metrics["temp"], Metric::Number(21.5));
    }

    #[test]
    fn a_device_clock_far_off_is_not_believed() {
        let batch = parse(json!({"deviceId": "d", "receivedAt": RECEIVED, "ts": 0, "temp": 1}))
            .expect("valid");
        assert_eq!(batch.samples[0].at, batch.received_at);
    }

    #[test]
    fn a_batch_keeps_each_samples_time_in_order_and_one_per_millisecond() {
        let batch = parse(json!({
            "deviceId": "d", "receivedAt": RECEIVED, "batch": 3,
            "samples": [
                {"ts": RECEIVED - 2_000, "temp": 20.0},
                {"ts": RECEIVED - 3_000, "temp": 19.0, "gps": {"lat": 1.5}},
                {"ts": RECEIVED - 2_000, "temp": 20.5},
            ]
        }))
        .expect("valid");
        let times: Vec<i128> = batch
            .samples
            .iter()
            .map(|s| s.at.unix_timestamp_nanos() / 1_000_000)
            .collect();
        assert_eq!(
            times,
            [i128::from(RECEIVED - 3_000), i128::from(RECEIVED - 2_000)]
        );
        assert_eq!(batch.samples[0].metrics["gps.lat"], Metric::Number(1.5));
        assert_eq!(
            batch.samples[1].metrics["temp"],
            Metric::Number(20.5),
            "the later of two samples at one time"
        );
    }

    #[test]
    fn a_bad_batch_is_refused_naming_the_sample() {
        let err = parse(json!({
            "deviceId": "d", "receivedAt": RECEIVED, "temp": 1,
            "samples": [{"temp": 1}, {"ts": RECEIVED, "list": [1]}, {"ts": RECEIVED + 2 * 86_400_000}, 7]
        }))
        .expect_err("refused");
        assert_eq!(
            fields(&err),
            [
                "temp",
                "samples[0].ts",
                "samples[1].list",
                "samples[2].ts",
                "samples[3]"
            ]
        );
        assert!(parse(json!({"deviceId": "d", "receivedAt": RECEIVED, "samples": []})).is_err());
        assert!(parse(json!({"deviceId": "d", "receivedAt": RECEIVED, "samples": {}})).is_err());
        let backlog = RECEIVED - MAX_BACKLOG.whole_milliseconds() as i64;
        assert!(parse(
            json!({"deviceId": "d", "receivedAt": RECEIVED, "samples": [{"ts": backlog, "t": 1}]})
        )
        .is_ok());
        assert!(parse(json!({"deviceId": "d", "receivedAt": RECEIVED, "samples": [{"ts": backlog - 1, "t": 1}]})).is_err());
    }

    #[test]
    fn garbage_is_refused_with_the_reason() {
        assert!(parse_telemetry(b"\x00\x01").is_err());
        assert!(parse(json!([1, 2])).is_err());
        let err = parse(
            json!({"deviceId": "d", "receivedAt": RECEIVED, "deep": {"x": {"y": 1}}, "list": [1]}),
        )
        .expect_err("nested too deep");
        assert_eq!(fields(&err), ["deep.x", "list"]);
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
