//! Telemetry ingest: the telemetry topic rule (`devices/+/telemetry`) sends each message, with
//! the device id and receive time it adds, to an SQS queue; this function takes them in batches,
//! writes the points as a time series (`BatchWriteItem`, 25 a request). That is its only write:
//! a device's latest state is its newest point, read from the series (`latest_telemetry`), so a
//! second of telemetry from a thousand devices is 40 requests, not 40 plus a thousand updates.
//!
//! A batch is many devices' messages, so one device must not be able to spoil it: a malformed or
//! oversize message is counted and dropped with a log line (redelivering it cannot fix it), and a
//! device sending more than its share in one batch (a flood) has the excess dropped and counted.
//! Only a store failure fails messages, and then just the ones not yet written, so SQS redelivers
//! those alone.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use cellbridge_core::config::{number_in, ConfigError, Environment, FromEnvironment};
use cellbridge_devices::ports::DeviceStore;
use cellbridge_devices::registration::ThingName;
use cellbridge_devices::telemetry::{parse_telemetry, TelemetryPoint};
use cellbridge_edge::lambda::metrics;
use cellbridge_edge::lambda::metrics::Unit;
use std::collections::BTreeMap;
use time::{Duration, OffsetDateTime};

/// AWS IoT Core's per-connection publish limit is 100 a second, and a batch gathers about a
/// second of messages; beyond this many in one batch a device is flooding.
pub const MAX_POINTS_PER_DEVICE_PER_BATCH: usize = 100;
/// Lag samples per batch in the metrics line (the embedded metric format's value array limit).
const LAG_SAMPLES: usize = 100;

pub const RETENTION_ENV: &str = "TELEMETRY_RETENTION_DAYS";

#[derive(Debug, Clone)]
pub struct Settings {
    pub retention: Duration,
}

impl FromEnvironment for Settings {
    fn from_env(env: &dyn Environment) -> Result<Self, ConfigError> {
        let days = number_in(env, RETENTION_ENV, 1..=3650, 30, "days")?;
        Ok(Self {
            retention: Duration::days(days),
        })
    }
}

cellbridge_core::composite_config! {
    /// This function's configuration, read once at cold start.
    #[derive(Debug, Clone)]
    pub struct Config {
        pub devices: cellbridge_devices::wiring::DeviceTables,
        pub settings: Settings,
    }
}

/// What one batch did, for the log line and the metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestReport {
    pub messages: usize,
    pub written: usize,
    pub malformed: usize,
    pub flood_dropped: usize,
    pub failed: usize,
    pub devices: usize,
    /// `BatchWriteItem` requests the points needed (first attempts).
    pub write_requests: usize,
    /// Milliseconds from the rule's receive time to the write, a sample of the batch.
    pub lag_ms: Vec<i64>,
}

impl IngestReport {
    pub fn emit_metrics(&self) {
        let mut document = metrics::document(
            &[("Function", "telemetry-ingest")],
            &[
                ("TelemetryWritten", self.written as f64, Unit::Count),
                ("TelemetryMalformed", self.malformed as f64, Unit::Count),
                (
                    "TelemetryFloodDropped",
                    self.flood_dropped as f64,
                    Unit::Count,
                ),
                ("TelemetryFailed", self.failed as f64, Unit::Count),
                (
                    "TelemetryWriteRequests",
                    self.write_requests as f64,
                    Unit::Count,
                ),
                ("IngestLagMs", 0.0, Unit::Milliseconds),
            ],
        );
        // EMF takes up to 100 values per metric as an array.
        document["IngestLagMs"] = serde_json::json!(self.lag_ms);
        println!("{document}");
    }
}

pub async fn handle(
    store: &dyn DeviceStore,
    settings: &Settings,
    event: &SqsEvent,
    now: OffsetDateTime,
) -> (SqsBatchResponse, IngestReport) {
    let mut report = IngestReport {
        messages: event.records.len(),
        ..IngestReport::default()
    };
    // Points by device, in arrival order, with the message each came from.
    let mut by_device: BTreeMap<ThingName, Vec<(String, TelemetryPoint)>> = BTreeMap::new();
    for record in &event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let body = record.body.as_deref().unwrap_or("");
        match parse_telemetry(body.as_bytes()) {
            Ok(point) => {
                let points = by_device.entry(point.device.clone()).or_default();
                if points.len() < MAX_POINTS_PER_DEVICE_PER_BATCH {
                    points.push((id, point));
                } else {
                    report.flood_dropped += 1;
                }
            }
            Err(errors) => {
                report.malformed += 1;
                let first = errors.errors.first();
                tracing::warn!(
                    message_id = id,
                    bytes = body.len(),
                    field = first.map(|e| e.field.as_str()),
                    reason = first.map(|e| e.message.as_str()),
                    "malformed telemetry dropped"
                );
            }
        }
    }
    for (device, points) in &by_device {
        if points.len() >= MAX_POINTS_PER_DEVICE_PER_BATCH {
            tracing::warn!(%device, kept = points.len(), "device flooding; excess telemetry dropped");
        }
    }
    report.devices = by_device.len();

    let points: Vec<TelemetryPoint> = by_device
        .values()
        .flatten()
        .map(|(_, p)| p.clone())
        .collect();
    let mut failed_ids: Vec<String> = Vec::new();
    match store.write_telemetry(&points, settings.retention).await {
        Ok(written) => {
            report.written = written;
            report.write_requests = written.div_ceil(cellbridge_devices::dynamodb::BATCH);
            let step = (points.len() / LAG_SAMPLES).max(1);
            report.lag_ms = points
                .iter()
                .step_by(step)
                .take(LAG_SAMPLES)
                .map(|p| (now - p.received_at).whole_milliseconds() as i64)
                .collect();
        }
        Err(e) => {
            tracing::error!(error = %e, points = points.len(), "telemetry write failed; redelivering");
            failed_ids.extend(by_device.values().flatten().map(|(id, _)| id.clone()));
        }
    }
    report.failed = failed_ids.len();
    tracing::info!(
        messages = report.messages,
        written = report.written,
        malformed = report.malformed,
        flood_dropped = report.flood_dropped,
        failed = report.failed,
        devices = report.devices,
        write_requests = report.write_requests,
        "telemetry batch"
    );
    let response = cellbridge_edge::lambda::sqs_batch::failures(failed_ids);
    (response, report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use aws_lambda_events::event::sqs::SqsMessage;
    use cellbridge_core::store::{Page, PageRequest, StoreError};
    use cellbridge_devices::memory::MemoryDevices;
    use cellbridge_devices::ports::{DeviceRecord, Registration, StoredPoint};
    use cellbridge_devices::presence::LifecycleEvent;
    use cellbridge_devices::registration::{parse_announcement, Announcement};
    use serde_json::json;
    use std::sync::atomic::{AtomicBool, Ordering};

    const BATCH_SAMPLE: &str = include_str!("../../../events/telemetry-ingest/batch.json");
    const RECEIVED: i64 = 1_795_338_000_000;

    fn settings() -> Settings {
        Settings {
            retention: Duration::days(30),
        }
    }

    fn at(ms: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).expect("time")
    }

    async fn registered(things: &[&str]) -> MemoryDevices {
        let store = MemoryDevices::default();
        for (n, thing) in things.iter().enumerate() {
            let body = json!({"tenant": "demo", "iccid": cellbridge_core::testing::iccid(n as u32 + 1), "model": "TRK-200", "firmware": "2.4.1"});
            let announcement =
                parse_announcement(thing, body.to_string().as_bytes()).expect("valid");
            store
                .register(&announcement, at(RECEIVED))
                .await
                .expect("registered");
        }
        store
    }

    fn event(bodies: impl IntoIterator<Item = String>) -> SqsEvent {
        let mut event = SqsEvent::default();
        event.records = bodies
            .into_iter()
            .enumerate()
            .map(|(n, body)| {
                let mut message = SqsMessage::default();
                message.message_id = Some(format!("m-{n}"));
                message.body = Some(body);
                message
            })
            .collect();
        event
    }

    fn point(device: &str, seq: i64) -> String {
        json!({"deviceId": device, "receivedAt": RECEIVED + seq, "ts": RECEIVED + seq, "seq": seq, "temp": 20.0})
            .to_string()
    }

    async fn latest(store: &MemoryDevices, thing: &str) -> Option<OffsetDateTime> {
        store
            .latest_telemetry(&ThingName::parse(thing).expect("name"))
            .await
            .expect("store")
            .map(|point| point.at)
    }

    #[tokio::test]
    async fn the_sample_batch_is_written_once_and_the_garbage_dropped() {
        let store = registered(&["trk-1", "trk-2"]).await;
        let sample: SqsEvent = serde_json::from_str(BATCH_SAMPLE).expect("sample");
        let (response, report) = handle(&store, &settings(), &sample, at(RECEIVED + 1_500)).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(report.messages, 5);
        assert_eq!(report.malformed, 1);
        assert_eq!(report.written, 3, "the redelivered point is one item");
        assert_eq!(store.telemetry_count(), 3);
        assert_eq!(report.devices, 2);
        assert_eq!(report.write_requests, 1);
        assert_eq!(latest(&store, "trk-1").await, Some(at(RECEIVED)));
        assert!(report.lag_ms.iter().all(|lag| (0..=1_500).contains(lag)));
    }

    #[tokio::test]
    async fn redelivering_the_batch_adds_nothing_and_keeps_the_latest_state() {
        let store = registered(&["trk-1", "trk-2"]).await;
        let sample: SqsEvent = serde_json::from_str(BATCH_SAMPLE).expect("sample");
        handle(&store, &settings(), &sample, at(RECEIVED + 1_500)).await;
        let newer = event([point("trk-1", 5_000)]);
        handle(&store, &settings(), &newer, at(RECEIVED + 6_000)).await;
        let (_, report) = handle(&store, &settings(), &sample, at(RECEIVED + 9_000)).await;
        assert_eq!(report.written, 3);
        assert_eq!(store.telemetry_count(), 4);
        assert_eq!(
            latest(&store, "trk-1").await,
            Some(at(RECEIVED + 5_000)),
            "an old batch again does not move the latest state back"
        );
    }

    #[tokio::test]
    async fn a_flooding_device_keeps_its_share_and_the_others_all_land() {
        let store = registered(&["flood", "calm"]).await;
        let mut bodies: Vec<String> = (0..150).map(|n| point("flood", n)).collect();
        bodies.push(point("calm", 1));
        let (response, report) =
            handle(&store, &settings(), &event(bodies), at(RECEIVED + 200)).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(report.flood_dropped, 50);
        assert_eq!(report.written, MAX_POINTS_PER_DEVICE_PER_BATCH + 1);
        assert!(latest(&store, "calm").await.is_some());
    }

    #[tokio::test]
    async fn oversize_and_garbage_payloads_do_not_stop_the_batch() {
        let store = registered(&["trk-1"]).await;
        let oversize =
            json!({"deviceId": "trk-1", "receivedAt": RECEIVED, "blob": "x".repeat(130 * 1024)})
                .to_string();
        let bodies = vec![
            oversize,
            "not json".to_owned(),
            String::new(),
            json!({"receivedAt": RECEIVED, "temp": 1}).to_string(),
            json!([1, 2, 3]).to_string(),
            point("trk-1", 1),
        ];
        let (response, report) =
            handle(&store, &settings(), &event(bodies), at(RECEIVED + 10)).await;
        assert!(
            response.batch_item_failures.is_empty(),
            "redelivery cannot fix them"
        );
        assert_eq!(report.malformed, 5);
        assert_eq!(report.written, 1);
    }

    /// A store whose telemetry writes fail while `failing` is set.
    struct FlakyStore {
        inner: MemoryDevices,
        failing: AtomicBool,
    }

    #[async_trait]
    impl DeviceStore for FlakyStore {
        async fn register(
            &self,
            a: &Announcement,
            now: OffsetDateTime,
        ) -> Result<Registration, StoreError> {
            self.inner.register(a, now).await
        }
        async fn get_device(&self, thing: &ThingName) -> Result<Option<DeviceRecord>, StoreError> {
            self.inner.get_device(thing).await
        }
        async fn list_devices(
            &self,
            tenant: &cellbridge_core::tenant::TenantId,
            page: &PageRequest,
        ) -> Result<Page<DeviceRecord>, StoreError> {
            self.inner.list_devices(tenant, page).await
        }
        async fn apply_presence(
            &self,
            thing: &ThingName,
            event: &LifecycleEvent,
        ) -> Result<bool, StoreError> {
            self.inner.apply_presence(thing, event).await
        }
        async fn record_activity(
            &self,
            thing: &ThingName,
            at: OffsetDateTime,
        ) -> Result<bool, StoreError> {
            self.inner.record_activity(thing, at).await
        }
        async fn write_telemetry(
            &self,
            points: &[TelemetryPoint],
            retention: Duration,
        ) -> Result<usize, StoreError> {
            if self.failing.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("throttled".into()));
            }
            self.inner.write_telemetry(points, retention).await
        }
        async fn query_telemetry(
            &self,
            thing: &ThingName,
            from: OffsetDateTime,
            to: OffsetDateTime,
            page: &PageRequest,
        ) -> Result<Page<StoredPoint>, StoreError> {
            self.inner.query_telemetry(thing, from, to, page).await
        }
        async fn latest_telemetry(
            &self,
            thing: &ThingName,
        ) -> Result<Option<StoredPoint>, StoreError> {
            self.inner.latest_telemetry(thing).await
        }
        async fn sweep_silent(
            &self,
            now: OffsetDateTime,
            timeout: Duration,
        ) -> Result<Vec<ThingName>, StoreError> {
            self.inner.sweep_silent(now, timeout).await
        }
    }

    #[tokio::test]
    async fn a_store_failure_redelivers_the_valid_messages_only() {
        let store = FlakyStore {
            inner: registered(&["trk-1"]).await,
            failing: AtomicBool::new(true),
        };
        let bodies = vec![point("trk-1", 1), "garbage".to_owned(), point("trk-1", 2)];
        let (response, report) = handle(
            &store,
            &settings(),
            &event(bodies.clone()),
            at(RECEIVED + 10),
        )
        .await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, ["m-0", "m-2"]);
        assert_eq!(report.failed, 2);
        store.failing.store(false, Ordering::SeqCst);
        let (response, report) =
            handle(&store, &settings(), &event(bodies), at(RECEIVED + 20)).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(report.written, 2);
    }

    #[test]
    fn retention_comes_from_the_environment_within_bounds() {
        let retention = |value: Option<&str>| {
            let env: std::collections::BTreeMap<String, String> = value
                .map(|v| (RETENTION_ENV.to_owned(), v.to_owned()))
                .into_iter()
                .collect();
            Settings::from_env(&env).map(|s| s.retention)
        };
        assert_eq!(retention(None), Ok(Duration::days(30)));
        assert_eq!(retention(Some("90")), Ok(Duration::days(90)));
        for bad in ["0", "3651", "a month"] {
            let error = retention(Some(bad)).expect_err(bad);
            assert_eq!(error.variable(), RETENTION_ENV);
        }
    }
}
