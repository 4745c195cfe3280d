//! The device registry and telemetry store with the real SDK against the local DynamoDB, tables from
//! template.yaml: idempotent registration, presence events out of order, batched telemetry.

use anyhow::Result;
use cellbridge::common::store::PageRequest;
use cellbridge::common::tenant::TenantId;
use cellbridge::devices::dynamodb::DynamoDevices;
use cellbridge::devices::ports::{DeviceStore, Registration};
use cellbridge::devices::presence::{LifecycleEvent, LifecycleKind};
use cellbridge::devices::registration::{parse_announcement, ThingName};
use cellbridge::devices::telemetry::parse_telemetry;
use cellbridge_tests::LocalAwsStack;
use serde_json::json;
use time::{Duration, OffsetDateTime};

fn store(stack: &LocalAwsStack) -> Result<DynamoDevices> {
    Ok(DynamoDevices::new(
        stack.dynamodb(),
        stack.name("DevicesTable")?,
        stack.name("TelemetryTable")?,
    ))
}

fn announce(
    thing: &str,
    tenant: &str,
    firmware: &str,
) -> cellbridge::devices::registration::Announcement {
    let body = json!({"tenant": tenant, "iccid": cellbridge::testing::iccid(7), "imei": "490154203237518",
                      "model": "TRK-200", "firmware": firmware});
    parse_announcement(thing, body.to_string().as_bytes()).expect("valid announcement")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_is_idempotent_and_a_thing_keeps_its_tenant() -> Result<()> {
    let stack = LocalAwsStack::start().await?;
    let devices = store(&stack)?;
    let now = OffsetDateTime::now_utc();
    assert_eq!(
        devices
            .register(&announce("trk-1", "demo", "1.0"), now)
            .await?,
        Registration::Created
    );
    let later = now + Duration::hours(1);
    assert_eq!(
        devices
            .register(&announce("trk-1", "demo", "1.1"), later)
            .await?,
        Registration::Updated
    );
    assert_eq!(
        devices
            .register(&announce("trk-1", "globex", "1.1"), later)
            .await?,
        Registration::OtherTenant
    );
    let thing = ThingName::parse("trk-1").expect("name");
    let stored = devices.get_device(&thing).await?.expect("registered");
    assert_eq!(stored.tenant.as_str(), "demo");
    assert_eq!(stored.firmware, "1.1", "the repeat announcement updated it");
    assert!(
        stored.presence.connected && stored.presence.last_seen.is_some(),
        "announced over a live connection: {:?}",
        stored.presence
    );
    assert_eq!(
        (stored.registered_at.unix_timestamp()),
        now.unix_timestamp(),
        "first registration time kept"
    );
    for i in 0..5 {
        devices
            .register(&announce(&format!("trk-{}", i + 10), "demo", "1.0"), now)
            .await?;
    }
    devices
        .register(&announce("other-1", "globex", "1.0"), now)
        .await?;
    let demo = TenantId::parse("demo").expect("tenant");
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = devices
            .list_devices(
                &demo,
                &PageRequest {
                    limit: 2,
                    cursor: cursor.clone(),
                },
            )
            .await?;
        seen.extend(page.items.iter().map(|d| d.thing_name.to_string()));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["trk-1", "trk-10", "trk-11", "trk-12", "trk-13", "trk-14"]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_events_apply_once_and_in_version_order() -> Result<()> {
    let stack = LocalAwsStack::start().await?;
    let devices = store(&stack)?;
    let t0 = OffsetDateTime::now_utc();
    devices
        .register(&announce("trk-1", "demo", "1.0"), t0)
        .await?;
    let thing = ThingName::parse("trk-1").expect("name");
    let event = |kind, version, s| LifecycleEvent {
        kind,
        version,
        at: t0 + Duration::seconds(s),
    };
    use LifecycleKind::{Connected, Disconnected};
    assert!(
        devices
            .apply_presence(&thing, &event(Connected, 3, 1))
            .await?
    );
    assert!(
        !devices
            .apply_presence(&thing, &event(Connected, 3, 1))
            .await?,
        "duplicate"
    );
    assert!(
        !devices
            .apply_presence(&thing, &event(Disconnected, 2, 0))
            .await?,
        "an older session"
    );
    assert!(
        devices
            .get_device(&thing)
            .await?
            .expect("device")
            .presence
            .connected
    );
    assert!(
        devices
            .apply_presence(&thing, &event(Disconnected, 3, 9))
            .await?
    );
    assert!(
        !devices
            .apply_presence(&thing, &event(Connected, 3, 1))
            .await?,
        "its connect, re-delivered late"
    );
    let device = devices.get_device(&thing).await?.expect("device");
    assert!(!device.presence.connected);
    assert_eq!(device.presence.version, Some((3, Disconnected)));
    // Heartbeats move lastSeen forward only.
    assert!(
        devices
            .record_activity(&thing, t0 + Duration::seconds(30))
            .await?
    );
    assert!(
        !devices
            .record_activity(&thing, t0 + Duration::seconds(20))
            .await?
    );
    let seen = devices
        .get_device(&thing)
        .await?
        .expect("device")
        .presence
        .last_seen;
    assert_eq!(
        seen.map(|s| s.unix_timestamp()),
        Some((t0 + Duration::seconds(30)).unix_timestamp())
    );
    let unknown = ThingName::parse("never-registered").expect("name");
    assert!(
        !devices
            .apply_presence(&unknown, &event(Connected, 1, 0))
            .await?
    );
    assert!(
        devices.get_device(&unknown).await?.is_none(),
        "no item made for an unknown thing"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_is_written_in_batches_and_duplicates_are_one_point() -> Result<()> {
    let stack = LocalAwsStack::start().await?;
    let devices = store(&stack)?;
    let received = 1_795_338_000_000_i64;
    devices
        .register(&announce("trk-1", "demo", "1.0"), OffsetDateTime::now_utc())
        .await?;
    let point = |i: i64| {
        let body = json!({"deviceId": "trk-1", "receivedAt": received + i * 1000, "ts": received + i * 1000, "temp": 20 + i});
        parse_telemetry(body.to_string().as_bytes()).expect("valid")
    };
    let mut points: Vec<_> = (0..60).map(point).collect();
    // QoS 1 redelivered ten of them, some in the same call.
    points.extend((0..10).map(point));
    assert_eq!(
        devices.write_telemetry(&points, Duration::days(30)).await?,
        60
    );
    assert_eq!(stack.item_count("TelemetryTable").await?, 60);
    assert_eq!(
        devices
            .write_telemetry(&points[..5], Duration::days(30))
            .await?,
        5
    );
    assert_eq!(
        stack.item_count("TelemetryTable").await?,
        60,
        "rewriting a point adds nothing"
    );

    // A range, page by page, oldest first.
    let thing = ThingName::parse("trk-1").expect("name");
    let from = point(10).at;
    let to = point(24).at;
    let mut temps = Vec::new();
    let mut cursor = None;
    loop {
        let page = devices
            .query_telemetry(
                &thing,
                from,
                to,
                &PageRequest {
                    limit: 4,
                    cursor: cursor.clone(),
                },
            )
            .await?;
        temps.extend(page.items.iter().filter_map(|p| p.metrics["temp"].as_i64()));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(temps, (30..=44).collect::<Vec<i64>>());

    // The latest state is the newest point, whatever arrives late or twice.
    devices
        .write_telemetry(&[point(5), point(59)], Duration::days(30))
        .await?;
    let latest = devices.latest_telemetry(&thing).await?.expect("latest");
    assert_eq!(latest.metrics["temp"], json!(79));
    assert_eq!(latest.at, point(59).at);
    let unknown = ThingName::parse("trk-none").expect("name");
    assert_eq!(devices.latest_telemetry(&unknown).await?, None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_sweep_times_out_silent_connected_devices_only() -> Result<()> {
    let stack = LocalAwsStack::start().await?;
    let devices = store(&stack)?;
    let t0 = OffsetDateTime::now_utc();
    let timeout = Duration::seconds(10);
    for thing in ["silent", "beating", "gone"] {
        devices
            .register(&announce(thing, "demo", "1.0"), t0)
            .await?;
        let name = ThingName::parse(thing).expect("name");
        devices
            .apply_presence(
                &name,
                &LifecycleEvent {
                    kind: LifecycleKind::Connected,
                    version: 1,
                    at: t0,
                },
            )
            .await?;
    }
    let name = |t: &str| ThingName::parse(t).expect("name");
    devices
        .apply_presence(
            &name("gone"),
            &LifecycleEvent {
                kind: LifecycleKind::Disconnected,
                version: 1,
                at: t0 + Duration::seconds(1),
            },
        )
        .await?;
    devices
        .record_activity(&name("beating"), t0 + Duration::seconds(25))
        .await?;
    let now = t0 + Duration::seconds(30);
    assert_eq!(devices.sweep_silent(now, timeout).await?, [name("silent")]);
    assert!(
        devices.sweep_silent(now, timeout).await?.is_empty(),
        "a timed-out device is swept once"
    );
    let silent = devices.get_device(&name("silent")).await?.expect("device");
    assert!(silent.presence.timed_out);
    assert!(silent.presence.connected, "the session may still be open");
    assert!(!silent.presence.is_online(now, timeout));
    // A heartbeat from a device the sweep gave up on brings it back.
    devices
        .record_activity(&name("silent"), now + Duration::seconds(1))
        .await?;
    let back = devices.get_device(&name("silent")).await?.expect("device");
    assert!(!back.presence.timed_out);
    assert!(back.presence.is_online(now + Duration::seconds(2), timeout));
    Ok(())
}
