//! Telemetry ingest: the telemetry topic rule (`devices/+/telemetry`) sends each message, with
//! the device id and receive time it adds, to an SQS queue; this function takes them in batches
//! and writes each message's samples as a time series in chunks (a minute of one device's
//! samples is one item; `BatchWriteItem`, 25 items a request). A device's latest state is its
//! newest sample, read from the series (`latest_telemetry`), so no device item is updated per
//! message. The chunks are then folded into each device's hourly summary (one read and one
//! conditional write per device and hour in the batch), which long-range charts read instead of
//! every sample.
//!
//! A message is also the device's sign of life: it moves the device's `lastSeen` (what the
//! presence sweep judges silence by) through the instance's write gate, at most once per
//! `PRESENCE_WRITE_INTERVAL_SECONDS`, so batches cost no presence write in between.
//!
//! A batch is many devices' messages, so one device must not be able to spoil it: a malformed or
//! oversize message is counted and dropped with a log line (redelivering it cannot fix it), and a
//! device sending more than its share in one batch (a flood) has the excess dropped and counted.
//! Only a store failure fails messages, and then just the ones not yet written, so SQS redelivers
//! those alone.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use cellbridge_core::config::{number_in, ConfigError, Environment, FromEnvironment};
use cellbridge_devices::activity::{ActivityRecorder, ActivityReport};
use cellbridge_devices::ports::DeviceStore;
use cellbridge_devices::registration::ThingName;
use cellbridge_devices::telemetry::{parse_telemetry, TelemetryBatch};
use cellbridge_edge::lambda::metrics;
use cellbridge_edge::lambda::metrics::Unit;
use std::collections::BTreeMap;
use time::{Duration, OffsetDateTime};

/// AWS IoT Core's per-connection publish limit is 100 a second, and a batch gathers about a
/// second of messages; beyond this many messages in one batch a device is flooding.
pub const MAX_MESSAGES_PER_DEVICE_PER_BATCH: usize = 100;
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
        pub presence: cellbridge_devices::wiring::PresenceSettings,
    }
}

/// What one batch did, for the log line and the metrics.
#[derive(Debug, Default)]
pub struct IngestReport {
    pub messages: usize,
    /// Samples written.
    pub written: usize,
    /// Items (chunks of samples) written.
    pub items: usize,
    pub malformed: usize,
    pub flood_dropped: usize,
    pub failed: usize,
    pub devices: usize,
    /// `BatchWriteItem` requests the points needed (first attempts).
    pub write_requests: usize,
    /// Milliseconds from the rule's receive time to the write, a sample of the batch.
    pub lag_ms: Vec<i64>,
    /// The messages as signs of life: what the write gate read and wrote.
    pub activity: ActivityReport,
    /// Milliseconds from when a sample was taken to its write (what a reader waits for it, a
    /// batch's wait on the device included), a sample of the batch's samples.
    pub sample_age_ms: Vec<i64>,
}

impl IngestReport {
    pub fn emit_metrics(&self) {
        let mut document = metrics::document(
            &[("Function", "telemetry-ingest")],
            &[
                ("TelemetryWritten", self.written as f64, Unit::Count),
                ("TelemetryItems", self.items as f64, Unit::Count),
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
                ("SampleAgeMs", 0.0, Unit::Milliseconds),
            ],
        );
        // EMF takes up to 100 values per metric as an array.
        document["IngestLagMs"] = serde_json::json!(self.lag_ms);
        document["SampleAgeMs"] = serde_json::json!(self.sample_age_ms);
        println!("{document}");
    }
}

pub async fn handle(
    store: &dyn DeviceStore,
    settings: &Settings,
    activity: &ActivityRecorder,
    event: &SqsEvent,
    now: OffsetDateTime,
) -> (SqsBatchResponse, IngestReport) {
    let mut report = IngestReport {
        messages: event.records.len(),
        ..IngestReport::default()
    };
    // Messages by device, in arrival order, with the SQS message each came from.
    let mut by_device: BTreeMap<ThingName, Vec<(String, TelemetryBatch)>> = BTreeMap::new();
    for record in &event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let body = record.body.as_deref().unwrap_or("");
        match parse_telemetry(body.as_bytes()) {
            Ok(batch) => {
                let messages = by_device.entry(batch.device.clone()).or_default();
                if messages.len() < MAX_MESSAGES_PER_DEVICE_PER_BATCH {
                    messages.push((id, batch));
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
    for (device, messages) in &by_device {
        if messages.len() >= MAX_MESSAGES_PER_DEVICE_PER_BATCH {
            tracing::warn!(%device, kept = messages.len(), "device flooding; excess telemetry dropped");
        }
    }
    report.devices = by_device.len();

    let batches: Vec<TelemetryBatch> = by_device
        .values()
        .flatten()
        .map(|(_, b)| b.clone())
        .collect();
    let mut failed_ids: Vec<String> = Vec::new();
    match store.write_telemetry(&batches, settings.retention).await {
        Ok(written) => {
            report.written = written.samples;
            report.items = written.items;
            report.write_requests = written.items.div_ceil(cellbridge_devices::dynamodb::BATCH);
            let step = (batches.len() / LAG_SAMPLES).max(1);
            report.lag_ms = batches
                .iter()
                .step_by(step)
                .take(LAG_SAMPLES)
                .map(|b| (now - b.received_at).whole_milliseconds() as i64)
                .collect();
            let samples: Vec<_> = batches.iter().flat_map(|b| &b.samples).collect();
            let step = (samples.len() / LAG_SAMPLES).max(1);
            report.sample_age_ms = samples
                .iter()
                .step_by(step)
                .take(LAG_SAMPLES)
                .map(|s| (now - s.at).whole_milliseconds() as i64)
                .collect();
        }
        Err(e) => {
            tracing::error!(error = %e, messages = batches.len(), "telemetry write failed; redelivering");
            failed_ids.extend(by_device.values().flatten().map(|(id, _)| id.clone()));
        }
    }
    // Each device's messages say it is alive; a failed presence read or write is worth another
    // delivery of its messages (rewriting their samples changes nothing).
    report.activity = activity
        .record(
            store,
            batches.iter().map(|b| (b.device.clone(), b.received_at)),
            now,
        )
        .await;
    if let Some(error) = &report.activity.error {
        tracing::error!(%error, devices = report.activity.failed.len(), "presence reads or writes failed; redelivering");
        for thing in &report.activity.failed {
            for (id, _) in by_device.get(thing).into_iter().flatten() {
                if !failed_ids.contains(id) {
                    failed_ids.push(id.clone());
                }
            }
        }
    }
    report.failed = failed_ids.len();
    tracing::info!(
        presence_read = report.activity.read,
        presence_written = report.activity.written,
        messages = report.messages,
        written = report.written,
        items = report.items,
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
    use cellbridge_devices::ports::{DeviceRecord, Registration, StoredPoint, TelemetryWritten};
    use cellbridge_devices::presence::LifecycleEvent;
    use cellbridge_devices::registration::{parse_announcement, Announcement};
    use serde_json::json;
    use std::sync::atomic::{AtomicBool, Ordering};

    const BATCH_SAMPLE: &str = include_str!("../../../events/telemetry-ingest/batch.json");
    const BATCHED_SAMPLE: &str =
        include_str!("../../../events/telemetry-ingest/batched-samples.json");
    const RECEIVED: i64 = 1_795_338_000_000;

    fn settings() -> Settings {
        Settings {
            retention: Duration::days(30),
        }
    }

    fn recorder() -> ActivityRecorder {
        ActivityRecorder::new(Duration::minutes(5))
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
        let (response, report) = handle(
            &store,
            &settings(),
            &recorder(),
            &sample,
            at(RECEIVED + 1_500),
        )
        .await;
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
        handle(
            &store,
            &settings(),
            &recorder(),
            &sample,
            at(RECEIVED + 1_500),
        )
        .await;
        let newer = event([point("trk-1", 5_000)]);
        handle(
            &store,
            &settings(),
            &recorder(),
            &newer,
            at(RECEIVED + 6_000),
        )
        .await;
        let (_, report) = handle(
            &store,
            &settings(),
            &recorder(),
            &sample,
            at(RECEIVED + 9_000),
        )
        .await;
        assert_eq!(report.written, 3);
        assert_eq!(store.telemetry_count(), 4);
        assert_eq!(
            latest(&store, "trk-1").await,
            Some(at(RECEIVED + 5_000)),
            "an old batch again does not move the latest state back"
        );
    }

    /// A minute of one-second samples in one message, as devices send them.
    fn minute(device: &str, first_ms: i64, received_ms: i64) -> String {
        let samples: Vec<serde_json::Value> = (0..60)
            .map(|s| json!({"ts": first_ms + s * 1_000, "temp": 20.0 + s as f64 / 10.0}))
            .collect();
        json!({"deviceId": device, "receivedAt": received_ms, "batch": 1, "samples": samples})
            .to_string()
    }

    #[tokio::test]
    async fn a_batch_is_one_item_written_once_and_a_late_one_keeps_the_latest_state() {
        let store = registered(&["trk-1"]).await;
        let sample: SqsEvent = serde_json::from_str(BATCHED_SAMPLE).expect("sample");
        let (response, report) = handle(
            &store,
            &settings(),
            &recorder(),
            &sample,
            at(RECEIVED + 1_000),
        )
        .await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!((report.messages, report.written, report.items), (2, 63, 2));
        assert_eq!(store.telemetry_items(), 2);

        // The same minute again (an MQTT redelivery) and an older minute arriving late.
        let bodies = vec![
            minute("trk-1", RECEIVED - 60_000, RECEIVED),
            minute("trk-1", RECEIVED - 600_000, RECEIVED + 5_000),
        ];
        let (_, report) = handle(
            &store,
            &settings(),
            &recorder(),
            &event(bodies),
            at(RECEIVED + 6_000),
        )
        .await;
        assert_eq!(report.written, 120);
        assert_eq!(
            store.telemetry_items(),
            3,
            "the redelivered minute is the same item"
        );
        assert_eq!(
            latest(&store, "trk-1").await,
            Some(at(RECEIVED + 2_000)),
            "the newest sample of the sample event's second message"
        );
        let page = store
            .query_telemetry(
                &ThingName::parse("trk-1").expect("name"),
                at(RECEIVED - 60_000),
                at(RECEIVED - 1),
                &PageRequest {
                    limit: 100,
                    cursor: None,
                },
            )
            .await
            .expect("read");
        assert_eq!(page.items.len(), 60, "each sample once");
    }

    #[tokio::test]
    async fn telemetry_is_a_sign_of_life_written_once_per_interval() {
        let store = registered(&["trk-1"]).await;
        let thing = ThingName::parse("trk-1").expect("name");
        let activity = recorder();
        let mut last_seen = Vec::new();
        // A minute's batch every minute for ten minutes, to one warm instance.
        for minute_index in 1..=10 {
            let received = RECEIVED + minute_index * 60_000;
            let body = minute("trk-1", received - 60_000, received);
            handle(
                &store,
                &settings(),
                &activity,
                &event([body]),
                at(received + 500),
            )
            .await;
            let device = store
                .get_device(&thing)
                .await
                .expect("read")
                .expect("device");
            last_seen.push(device.presence.last_seen);
        }
        // Registration saw it at RECEIVED; the first batch more than 5 minutes later (minute 6)
        // moves it, and nothing else within the ten minutes does.
        assert_eq!(store.activity_writes(), 1);
        assert_eq!(last_seen[4], Some(at(RECEIVED)));
        assert_eq!(last_seen[9], Some(at(RECEIVED + 6 * 60_000)));
        assert_eq!(
            store.activity_reads(),
            1,
            "one read, when the instance met the device"
        );
    }

    #[tokio::test]
    async fn a_flooding_device_keeps_its_share_and_the_others_all_land() {
        let store = registered(&["flood", "calm"]).await;
        let mut bodies: Vec<String> = (0..150).map(|n| point("flood", n)).collect();
        bodies.push(point("calm", 1));
        let (response, report) = handle(
            &store,
            &settings(),
            &recorder(),
            &event(bodies),
            at(RECEIVED + 200),
        )
        .await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(report.flood_dropped, 50);
        assert_eq!(report.written, MAX_MESSAGES_PER_DEVICE_PER_BATCH + 1);
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
        let (response, report) = handle(
            &store,
            &settings(),
            &recorder(),
            &event(bodies),
            at(RECEIVED + 10),
        )
        .await;
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
        async fn devices_with_iccids(
            &self,
            tenant: &cellbridge_core::tenant::TenantId,
            iccids: &[String],
        ) -> Result<std::collections::HashMap<String, String>, StoreError> {
            self.inner.devices_with_iccids(tenant, iccids).await
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
        async fn telemetry_hours(
            &self,
            thing: &ThingName,
            from: OffsetDateTime,
            to: OffsetDateTime,
        ) -> Result<Vec<cellbridge_devices::summary::HourSummary>, StoreError> {
            self.inner.telemetry_hours(thing, from, to).await
        }
        async fn write_telemetry(
            &self,
            batches: &[TelemetryBatch],
            retention: Duration,
        ) -> Result<TelemetryWritten, StoreError> {
            if self.failing.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("throttled".into()));
            }
            self.inner.write_telemetry(batches, retention).await
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
            &recorder(),
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
        let (response, report) = handle(
            &store,
            &settings(),
            &recorder(),
            &event(bodies),
            at(RECEIVED + 20),
        )
        .await;
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
