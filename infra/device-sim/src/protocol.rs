//! The payloads a simulated device sends and reads: announcement, telemetry, heartbeat, commands
//! and their acknowledgements. Pure functions, so the shapes are tested against the platform's
//! own parsers without a broker.

use crate::identity::SimRng;
use cellbridge::devices::command::CommandStatus;
use serde_json::{json, Value};
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Telemetry intervals a `set-interval` command may ask for.
pub const INTERVAL_SECONDS: std::ops::RangeInclusive<u64> = 1..=86_400;
/// How long a `live` command may ask a device to stream each sample as it is taken.
pub const LIVE_SECONDS: std::ops::RangeInclusive<u64> = 10..=3_600;
/// A `live` command without `seconds` streams this long.
pub const DEFAULT_LIVE_SECONDS: u64 = 300;

pub fn unix_ms_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}

/// What a device says about itself on `register`.
pub fn announcement(tenant: &str, iccid: &str, imei: &str, model: &str, firmware: &str) -> Vec<u8> {
    json!({"tenant": tenant, "iccid": iccid, "imei": imei, "model": model, "firmware": firmware})
        .to_string()
        .into_bytes()
}

pub fn heartbeat(ts_ms: i64) -> Vec<u8> {
    let mut payload = Vec::with_capacity(24);
    // Writing into a Vec cannot fail.
    let _ = write!(payload, r#"{{"ts":{ts_ms}}}"#);
    payload
}

/// Readings of one device, drifting a little with every step like a slowly moving tracker.
#[derive(Debug, Clone, PartialEq)]
pub struct Sensors {
    /// Percent.
    pub battery: f64,
    /// dBm, cellular range.
    pub rssi: f64,
    /// Celsius.
    pub temp: f64,
    pub lat: f64,
    pub lon: f64,
}

impl Sensors {
    pub fn new(rng: &mut SimRng) -> Self {
        Self {
            battery: rng.range(60.0, 100.0),
            rssi: rng.range(-100.0, -60.0),
            temp: rng.range(15.0, 30.0),
            // Spread over roughly 100 km around Seattle.
            lat: 47.6 + rng.range(-0.5, 0.5),
            lon: -122.3 + rng.range(-0.5, 0.5),
        }
    }

    pub fn step(&mut self, rng: &mut SimRng) {
        self.battery -= rng.range(0.0, 0.02);
        if self.battery < 5.0 {
            // Back on the charger.
            self.battery = 100.0;
        }
        self.rssi = (self.rssi + rng.range(-2.0, 2.0)).clamp(-113.0, -51.0);
        // Random walk pulled gently back towards room temperature, so it never runs away.
        self.temp =
            (self.temp + rng.range(-0.2, 0.2) + (22.0 - self.temp) * 0.01).clamp(-20.0, 60.0);
        self.lat = (self.lat + rng.range(-0.0002, 0.0002)).clamp(-89.0, 89.0);
        self.lon = (self.lon + rng.range(-0.0002, 0.0002)).clamp(-179.0, 179.0);
    }
}

/// `{"ts", "seq", "battery", "rssi", "temp", "gps": {"lat", "lon"}}`, written straight into one
/// buffer: at a thousand devices this runs thousands of times a second.
pub fn telemetry(ts_ms: i64, seq: u64, sensors: &Sensors) -> Vec<u8> {
    let mut payload = Vec::with_capacity(128);
    // Writing into a Vec cannot fail; the values are finite (clamped above), so valid JSON.
    let _ = write!(
        payload,
        r#"{{"ts":{ts_ms},"seq":{seq},"battery":{:.1},"rssi":{},"temp":{:.1},"gps":{{"lat":{:.6},"lon":{:.6}}}}}"#,
        sensors.battery,
        sensors.rssi.round() as i64,
        sensors.temp,
        sensors.lat,
        sensors.lon,
    );
    payload
}

/// One sample of a batch: `{"ts", "battery", "rssi", "temp", "gps": {"lat", "lon"}}`.
pub fn sample(ts_ms: i64, sensors: &Sensors) -> String {
    format!(
        r#"{{"ts":{ts_ms},"battery":{:.1},"rssi":{},"temp":{:.1},"gps":{{"lat":{:.6},"lon":{:.6}}}}}"#,
        sensors.battery,
        sensors.rssi.round() as i64,
        sensors.temp,
        sensors.lat,
        sensors.lon,
    )
}

/// IoT Core meters a message (its topic and payload) in 5 KB units: a batch fills one.
pub const METERED_UNIT_BYTES: usize = 5 * 1024;

/// Samples waiting to go out together as `{"batch": n, "samples": [...]}`.
#[derive(Debug, Default)]
pub struct SampleBatch {
    samples: Vec<String>,
    bytes: usize,
}

/// `{"batch":<seq>,"samples":[` and `]}`, with room for the sequence number's digits.
const BATCH_OVERHEAD: usize = 40;

impl SampleBatch {
    /// Whether `sample` (and its separating comma) still fits a message of `limit` bytes on
    /// `topic` with the ones waiting.
    pub fn fits(&self, topic: &str, sample: &str, limit: usize) -> bool {
        let comma = 1;
        topic.len() + BATCH_OVERHEAD + self.bytes + sample.len() + comma <= limit
    }

    pub fn push(&mut self, sample: String) {
        self.bytes += sample.len() + 1;
        self.samples.push(sample);
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The message, emptying the batch.
    pub fn take(&mut self, seq: u64) -> Vec<u8> {
        let payload = format!(
            r#"{{"batch":{seq},"samples":[{}]}}"#,
            self.samples.join(",")
        );
        self.samples.clear();
        self.bytes = 0;
        payload.into_bytes()
    }
}

/// A command as the cloud sends it on `commands`.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub id: String,
    pub name: String,
    pub params: Value,
    pub expires_at: Option<OffsetDateTime>,
}

/// A command the device cannot act on. With an id it is answered FAILED; without one there is
/// nothing to answer to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedCommand {
    pub command_id: Option<String>,
    pub reason: String,
}

pub fn parse_command(payload: &[u8]) -> Result<Command, MalformedCommand> {
    let malformed = |command_id: Option<&str>, reason: &str| MalformedCommand {
        command_id: command_id.map(str::to_owned),
        reason: reason.to_owned(),
    };
    let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(payload) else {
        return Err(malformed(None, "not a JSON object"));
    };
    let id = match object.get("commandId").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => return Err(malformed(None, "no commandId")),
    };
    let Some(name) = object
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return Err(malformed(Some(&id), "name is missing or not a string"));
    };
    let expires_at = match object.get("expiresAt") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => match OffsetDateTime::parse(text, &Rfc3339) {
            Ok(at) => Some(at),
            Err(_) => return Err(malformed(Some(&id), "expiresAt is not an RFC 3339 time")),
        },
        Some(Value::Number(ms)) => {
            match ms.as_i64().and_then(|ms| {
                OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
            }) {
                Some(at) => Some(at),
                None => return Err(malformed(Some(&id), "expiresAt is not a time in unix ms")),
            }
        }
        Some(_) => {
            return Err(malformed(
                Some(&id),
                "expiresAt must be an RFC 3339 string or unix ms",
            ))
        }
    };
    Ok(Command {
        id,
        name,
        params: object.remove("params").unwrap_or(Value::Null),
        expires_at,
    })
}

/// What the device does after acknowledging a command as delivered.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    None,
    SetTelemetryInterval(Duration),
    /// Publish each sample as it is taken for this long (someone is watching), then batches again.
    Live(Duration),
    Reboot,
}

/// The final answer to a command and what it changes on the device.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: CommandStatus,
    pub detail: String,
    /// Only `locate` reports coordinates, next to the human-readable detail.
    pub location: Option<(f64, f64)>,
    pub effect: Effect,
}

impl Outcome {
    fn failed(detail: impl Into<String>) -> Self {
        Self {
            status: CommandStatus::Failed,
            detail: detail.into(),
            location: None,
            effect: Effect::None,
        }
    }

    fn successful(detail: impl Into<String>, effect: Effect) -> Self {
        Self {
            status: CommandStatus::Successful,
            detail: detail.into(),
            location: None,
            effect,
        }
    }
}

/// Decides the outcome of `command` received at `now` by a device at `location`.
pub fn execute(command: &Command, now: OffsetDateTime, location: (f64, f64)) -> Outcome {
    if let Some(expires_at) = command.expires_at.filter(|at| *at <= now) {
        let when = expires_at
            .format(&Rfc3339)
            .unwrap_or_else(|_| expires_at.to_string());
        return Outcome::failed(format!("expired at {when}"));
    }
    match command.name.as_str() {
        "reboot" => Outcome::successful("rebooting", Effect::Reboot),
        "ping" => Outcome::successful("pong", Effect::None),
        "locate" => Outcome {
            location: Some(location),
            ..Outcome::successful(
                format!("at {:.6},{:.6}", location.0, location.1),
                Effect::None,
            )
        },
        "set-interval" => match command.params.get("seconds").and_then(Value::as_u64) {
            Some(seconds) if INTERVAL_SECONDS.contains(&seconds) => Outcome::successful(
                format!("telemetry every {seconds} s"),
                Effect::SetTelemetryInterval(Duration::from_secs(seconds)),
            ),
            _ => Outcome::failed(format!(
                "params.seconds must be a whole number from {} to {}",
                INTERVAL_SECONDS.start(),
                INTERVAL_SECONDS.end()
            )),
        },
        "live" => match command.params.get("seconds").map(Value::as_u64) {
            None => live(DEFAULT_LIVE_SECONDS),
            Some(Some(seconds)) if LIVE_SECONDS.contains(&seconds) => live(seconds),
            Some(_) => Outcome::failed(format!(
                "params.seconds must be a whole number from {} to {}",
                LIVE_SECONDS.start(),
                LIVE_SECONDS.end()
            )),
        },
        unknown => Outcome::failed(format!("unknown command '{unknown}'")),
    }
}

fn live(seconds: u64) -> Outcome {
    Outcome::successful(
        format!("streaming every sample for {seconds} s"),
        Effect::Live(Duration::from_secs(seconds)),
    )
}

/// `{"commandId", "status", "detail"?, "location"?}` for `commands/ack`.
pub fn ack(
    command_id: &str,
    status: CommandStatus,
    detail: Option<&str>,
    location: Option<(f64, f64)>,
) -> Vec<u8> {
    let mut body = json!({"commandId": command_id, "status": status.as_str()});
    if let Some(detail) = detail {
        body["detail"] = json!(detail);
    }
    if let Some((lat, lon)) = location {
        body["location"] = json!({"lat": lat, "lon": lon});
    }
    body.to_string().into_bytes()
}

/// The reasons of a `register/rejected` reply, as text: strings kept, anything else (e.g.
/// `{field, message}` objects) rendered as its JSON.
pub fn rejection_reasons(payload: &[u8]) -> Vec<String> {
    let Ok(body) = serde_json::from_slice::<Value>(payload) else {
        return vec![format!(
            "unreadable rejection: {}",
            String::from_utf8_lossy(payload)
        )];
    };
    match body.get("reasons") {
        Some(Value::Array(reasons)) => reasons
            .iter()
            .map(|reason| match reason {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            })
            .collect(),
        Some(other) => vec![other.to_string()],
        None => vec![format!("rejected without reasons: {body}")],
    }
}

/// Bytes that are not JSON (nor UTF-8), for the misbehaving-device tests.
pub fn garbage(rng: &mut SimRng) -> Vec<u8> {
    let length = 16 + rng.below(240) as usize;
    let mut payload = Vec::with_capacity(length);
    // A leading 0xFF keeps the payload invalid UTF-8 whatever follows.
    payload.push(0xFF);
    payload.extend((1..length).map(|_| rng.next_u64() as u8));
    payload
}

/// Larger than AWS IoT Core's 128 KiB payload limit, yet otherwise well-formed telemetry.
pub const OVERSIZE_BYTES: usize = 128 * 1024 + 1024;

pub fn oversize(ts_ms: i64) -> Vec<u8> {
    let mut payload = Vec::with_capacity(OVERSIZE_BYTES + 32);
    let _ = write!(payload, r#"{{"ts":{ts_ms},"padding":""#);
    payload.resize(OVERSIZE_BYTES, b'x');
    payload.extend_from_slice(br#""}"#);
    payload
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellbridge::devices::registration::parse_announcement;
    use cellbridge::devices::telemetry::{parse_telemetry, Metric, MAX_PAYLOAD_BYTES};
    use time::macros::datetime;

    #[test]
    fn the_announcement_passes_the_platform_parser() {
        let payload = announcement(
            "demo",
            &crate::identity::iccid(1, 0),
            &crate::identity::imei(1, 0),
            "SIM-TRK",
            "1.2.3",
        );
        let parsed = parse_announcement("sim-0001", &payload).expect("valid announcement");
        assert_eq!(parsed.tenant.as_str(), "demo");
        assert_eq!(parsed.iccid.as_str(), crate::identity::iccid(1, 0));
        assert_eq!(parsed.model, "SIM-TRK");
        assert_eq!(parsed.firmware, "1.2.3");
        assert!(parsed.imei.is_some());
    }

    /// What the IoT rule hands on: the device's payload plus `deviceId` and `receivedAt`.
    fn as_rule_forwards(payload: &[u8], thing: &str, received_at: i64) -> Vec<u8> {
        let mut body: Value = serde_json::from_slice(payload).expect("telemetry is JSON");
        body["deviceId"] = json!(thing);
        body["receivedAt"] = json!(received_at);
        body.to_string().into_bytes()
    }

    #[test]
    fn telemetry_passes_the_platform_parser_with_every_metric() {
        let mut rng = SimRng::for_device(1, 0);
        let mut sensors = Sensors::new(&mut rng);
        let now = unix_ms_now();
        for seq in 1..=1_000 {
            sensors.step(&mut rng);
            let payload = telemetry(now, seq, &sensors);
            let batch = parse_telemetry(&as_rule_forwards(&payload, "sim-0001", now + 40))
                .expect("valid telemetry");
            assert_eq!(batch.device.as_str(), "sim-0001");
            let point = &batch.samples[0];
            assert_eq!(point.at.unix_timestamp_nanos() / 1_000_000, i128::from(now));
            let names: Vec<&str> = point.metrics.keys().map(String::as_str).collect();
            assert_eq!(names, ["battery", "gps.lat", "gps.lon", "rssi", "temp"]);
            let Metric::Number(battery) = point.metrics["battery"] else {
                panic!("battery is a number")
            };
            assert!((5.0..=100.0).contains(&battery));
        }
    }

    #[test]
    fn a_batch_stops_short_of_one_metered_unit_and_parses_sample_by_sample() {
        let mut rng = SimRng::for_device(1, 0);
        let mut sensors = Sensors::new(&mut rng);
        let now = unix_ms_now();
        let topic = "devices/sim-0001/telemetry";
        let mut batch = SampleBatch::default();
        let mut at = now - 200_000;
        loop {
            sensors.step(&mut rng);
            let sample = sample(at, &sensors);
            if !batch.fits(topic, &sample, METERED_UNIT_BYTES) {
                break;
            }
            batch.push(sample);
            at += 1_000;
        }
        let samples = batch.len();
        let payload = batch.take(7);
        assert!(batch.is_empty());
        assert!(topic.len() + payload.len() <= METERED_UNIT_BYTES);
        assert!(
            topic.len() + payload.len() > METERED_UNIT_BYTES - 200,
            "nearly full"
        );
        let parsed =
            parse_telemetry(&as_rule_forwards(&payload, "sim-0001", now)).expect("a valid batch");
        assert_eq!(parsed.samples.len(), samples);
        assert!(samples >= 45, "{samples} samples in 5 KB");
    }

    #[test]
    fn readings_drift_slowly() {
        let mut rng = SimRng::for_device(3, 9);
        let mut sensors = Sensors::new(&mut rng);
        for _ in 0..10_000 {
            let before = sensors.clone();
            sensors.step(&mut rng);
            assert!((sensors.temp - before.temp).abs() < 0.5);
            assert!((sensors.lat - before.lat).abs() < 0.001);
            assert!((-113.0..=-51.0).contains(&sensors.rssi));
            assert!((-20.0..=60.0).contains(&sensors.temp));
        }
    }

    #[test]
    fn heartbeat_is_a_timestamp() {
        let body: Value = serde_json::from_slice(&heartbeat(1_700_000_000_123)).expect("JSON");
        assert_eq!(body, json!({"ts": 1_700_000_000_123_i64}));
    }

    fn command(body: Value) -> Result<Command, MalformedCommand> {
        parse_command(body.to_string().as_bytes())
    }

    const NOW: OffsetDateTime = datetime!(2026-11-22 09:00 UTC);

    fn outcome(body: Value) -> Outcome {
        execute(&command(body).expect("well-formed"), NOW, (47.5, -122.25))
    }

    #[test]
    fn known_commands_succeed_with_their_effect() {
        let ping = outcome(json!({"commandId": "c1", "name": "ping", "params": {}}));
        assert_eq!(ping.status, CommandStatus::Successful);
        assert_eq!(ping.effect, Effect::None);
        let reboot = outcome(json!({"commandId": "c2", "name": "reboot"}));
        assert_eq!(reboot.effect, Effect::Reboot);
        let interval = outcome(json!({
            "commandId": "c3", "name": "set-interval", "params": {"seconds": 30},
            "expiresAt": "2026-11-22T10:00:00Z"
        }));
        assert_eq!(
            interval.effect,
            Effect::SetTelemetryInterval(Duration::from_secs(30))
        );
        let locate = outcome(json!({"commandId": "c4", "name": "locate"}));
        assert_eq!(locate.location, Some((47.5, -122.25)));
        let live = outcome(json!({"commandId": "c5", "name": "live", "params": {"seconds": 600}}));
        assert_eq!(live.effect, Effect::Live(Duration::from_secs(600)));
        let default = outcome(json!({"commandId": "c6", "name": "live"}));
        assert_eq!(
            default.effect,
            Effect::Live(Duration::from_secs(DEFAULT_LIVE_SECONDS))
        );
        for seconds in [json!(5), json!(7_200), json!("60")] {
            let bad =
                outcome(json!({"commandId": "c7", "name": "live", "params": {"seconds": seconds}}));
            assert_eq!(bad.status, CommandStatus::Failed, "{seconds}");
        }
    }

    #[test]
    fn unknown_bad_or_expired_commands_fail_with_a_reason() {
        let unknown = outcome(json!({"commandId": "c1", "name": "self-destruct"}));
        assert_eq!(unknown.status, CommandStatus::Failed);
        assert!(unknown.detail.contains("self-destruct"));
        for seconds in [json!(0), json!(-5), json!("10"), json!(100_000), json!(1.5)] {
            let bad = outcome(json!({
                "commandId": "c2", "name": "set-interval", "params": {"seconds": seconds}
            }));
            assert_eq!(bad.status, CommandStatus::Failed, "{seconds}");
            assert_eq!(bad.effect, Effect::None);
        }
        let expired_ms = NOW.unix_timestamp() * 1000 - 1;
        for expires_at in [json!("2026-11-22T08:59:59Z"), json!(expired_ms)] {
            let expired = outcome(json!({
                "commandId": "c3", "name": "ping", "expiresAt": expires_at
            }));
            assert_eq!(expired.status, CommandStatus::Failed);
            assert!(expired.detail.starts_with("expired"), "{}", expired.detail);
        }
    }

    #[test]
    fn malformed_commands_are_answered_only_when_they_have_an_id() {
        assert_eq!(parse_command(b"\xff").map_err(|e| e.command_id), Err(None));
        assert_eq!(
            command(json!({"name": "ping"})).map_err(|e| e.command_id),
            Err(None)
        );
        for body in [
            json!({"commandId": "c9"}),
            json!({"commandId": "c9", "name": "ping", "expiresAt": "tomorrow"}),
            json!({"commandId": "c9", "name": "ping", "expiresAt": [1]}),
        ] {
            assert_eq!(
                command(body).map_err(|e| e.command_id),
                Err(Some("c9".to_owned()))
            );
        }
    }

    #[test]
    fn acks_carry_the_status_the_platform_reads() {
        let body: Value =
            serde_json::from_slice(&ack("c1", CommandStatus::Delivered, None, None)).expect("JSON");
        assert_eq!(body, json!({"commandId": "c1", "status": "DELIVERED"}));
        let body: Value = serde_json::from_slice(&ack(
            "c2",
            CommandStatus::Successful,
            Some("at 1,2"),
            Some((1.0, 2.0)),
        ))
        .expect("JSON");
        assert_eq!(body["location"], json!({"lat": 1.0, "lon": 2.0}));
        assert!(cellbridge::devices::command::AckStatus::parse(
            body["status"].as_str().unwrap_or("")
        )
        .is_some());
    }

    #[test]
    fn rejection_reasons_are_kept_as_text() {
        assert_eq!(
            rejection_reasons(br#"{"thingName":"t","reasons":["iccid: bad",{"field":"imei"}]}"#),
            ["iccid: bad", r#"{"field":"imei"}"#]
        );
        assert_eq!(rejection_reasons(b"nope").len(), 1);
    }

    #[test]
    fn misbehaving_payloads_are_what_they_claim() {
        let mut rng = SimRng::new(5);
        let junk = garbage(&mut rng);
        assert!(serde_json::from_slice::<Value>(&junk).is_err());
        let big = oversize(1);
        assert!(big.len() > MAX_PAYLOAD_BYTES);
        assert!(serde_json::from_slice::<Value>(&big).is_ok());
    }
}
