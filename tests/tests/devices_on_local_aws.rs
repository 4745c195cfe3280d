//! The device registry and telemetry store with the real SDK against the local DynamoDB, tables from
//! template.yaml: idempotent registration, presence events out of order, the presence write gate's
//! reads and conditional writes (and what they cost, from MiniStack's meter), batched telemetry.

use anyhow::{Context, Result};
use cellbridge::common::store::PageRequest;
use cellbridge::common::tenant::TenantId;
use cellbridge::devices::activity::ActivityRecorder;
use cellbridge::devices::dynamodb::DynamoDevices;
use cellbridge::devices::ports::{DeviceStore, LiveFollowing, Registration};
use cellbridge::devices::presence::{
    LifecycleEvent, LifecycleKind, DEFAULT_PRESENCE_TIMEOUT, DEFAULT_WRITE_INTERVAL,
};
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
        Registration::Updated {
            previous_iccid: cellbridge::testing::iccid(7)
        }
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
async fn a_tenants_devices_are_found_by_their_sims() -> Result<()> {
    let stack = LocalAwsStack::start().await?;
    let devices = store(&stack)?;
    let holding = |thing: &str, tenant: &str, n: u32| {
        let body = json!({"tenant": tenant, "iccid": cellbridge::testing::iccid(n),
                          "model": "TRK-200", "firmware": "1.0"});
        parse_announcement(thing, body.to_string().as_bytes()).expect("valid announcement")
    };
    let now = OffsetDateTime::now_utc();
    devices
        .register(&holding("holder-21", "demo", 21), now)
        .await?;
    devices
        .register(&holding("holder-22", "globex", 22), now)
        .await?;
    let demo = TenantId::parse("demo").expect("tenant");
    let asked: Vec<String> = [21, 22, 23].map(cellbridge::testing::iccid).into();
    let found = devices.devices_with_iccids(&demo, &asked).await?;
    assert_eq!(
        found,
        [(cellbridge::testing::iccid(21), "holder-21".to_owned())].into(),
        "another tenant's device and a SIM no device holds are not found"
    );
    // A device that moves to another SIM is found by the new one only.
    devices
        .register(&holding("holder-21", "demo", 23), now)
        .await?;
    let moved = devices.devices_with_iccids(&demo, &asked).await?;
    assert_eq!(
        moved,
        [(cellbridge::testing::iccid(23), "holder-21".to_owned())].into()
    );
    stack.stop().await;
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
        devices
            .write_telemetry(&points, Duration::days(30))
            .await?
            .samples,
        60
    );
    // Sixty points and the summary of the hour they fall in.
    assert_eq!(stack.item_count("TelemetryTable").await?, 61);
    assert_eq!(
        devices
            .write_telemetry(&points[..5], Duration::days(30))
            .await?
            .samples,
        5
    );
    assert_eq!(
        stack.item_count("TelemetryTable").await?,
        61,
        "rewriting a point adds nothing"
    );

    // A range, page by page, oldest first.
    let thing = ThingName::parse("trk-1").expect("name");
    let from = point(10).samples[0].at;
    let to = point(24).samples[0].at;
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
    assert_eq!(latest.at, point(59).samples[0].at);
    let unknown = ThingName::parse("trk-none").expect("name");
    assert_eq!(devices.latest_telemetry(&unknown).await?, None);

    // A minute of samples in one message is one item; read back page by page, each sample once.
    devices
        .register(&announce("trk-2", "demo", "1.0"), OffsetDateTime::now_utc())
        .await?;
    let samples: Vec<_> = (0..60)
        .map(|i| json!({"ts": received + i * 1000, "temp": i}))
        .collect();
    let minute = json!({"deviceId": "trk-2", "receivedAt": received + 60_000, "samples": samples});
    let batch = parse_telemetry(minute.to_string().as_bytes()).expect("valid");
    let written = devices
        .write_telemetry(&[batch.clone(), batch], Duration::days(30))
        .await?;
    assert_eq!((written.samples, written.items), (60, 1));
    assert_eq!(stack.item_count("TelemetryTable").await?, 63);
    let trk2 = ThingName::parse("trk-2").expect("name");
    let mut temps = Vec::new();
    let mut cursor = None;
    loop {
        let page = devices
            .query_telemetry(
                &trk2,
                OffsetDateTime::from_unix_timestamp(received / 1000 + 5)?,
                OffsetDateTime::from_unix_timestamp(received / 1000 + 59)?,
                &PageRequest {
                    limit: 7,
                    cursor: cursor.clone(),
                },
            )
            .await?;
        assert!(page.items.len() <= 7);
        temps.extend(page.items.iter().filter_map(|p| p.metrics["temp"].as_i64()));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(temps, (5..=59).collect::<Vec<i64>>());
    let latest = devices.latest_telemetry(&trk2).await?.expect("latest");
    assert_eq!(latest.metrics["temp"], json!(59));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_presence_sweep_times_out_silent_connected_devices_only() -> Result<()> {
    let stack = LocalAwsStack::start().await?;
    let devices = store(&stack)?;
    let t0 = OffsetDateTime::now_utc();
    let timeout = DEFAULT_PRESENCE_TIMEOUT;
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
    // Connected, so online with nothing but keep-alive, until the timeout.
    let quiet = t0 + Duration::minutes(14);
    assert!(devices.sweep_silent(quiet, timeout).await?.is_empty());
    assert!(devices
        .get_device(&name("silent"))
        .await?
        .expect("device")
        .presence
        .is_online(quiet, timeout));
    assert!(
        devices
            .record_activity_if_due(
                &name("beating"),
                t0 + Duration::minutes(10),
                DEFAULT_WRITE_INTERVAL
            )
            .await?
    );
    let now = t0 + Duration::minutes(16);
    assert_eq!(devices.sweep_silent(now, timeout).await?, [name("silent")]);
    assert!(
        devices.sweep_silent(now, timeout).await?.is_empty(),
        "a timed-out device is swept once"
    );
    let silent = devices.get_device(&name("silent")).await?.expect("device");
    assert!(silent.presence.timed_out);
    assert!(silent.presence.connected, "the session may still be open");
    assert!(!silent.presence.is_online(now, timeout));
    // A sign of life from a device the sweep gave up on brings it back.
    assert!(
        devices
            .record_activity_if_due(
                &name("silent"),
                now + Duration::seconds(1),
                DEFAULT_WRITE_INTERVAL
            )
            .await?
    );
    let back = devices.get_device(&name("silent")).await?.expect("device");
    assert!(!back.presence.timed_out);
    assert!(back.presence.is_online(now + Duration::seconds(2), timeout));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_gate_reads_many_devices_at_once_and_writes_only_when_due() -> Result<()> {
    let stack = LocalAwsStack::start().await?;
    let devices = store(&stack)?;
    let t0 = OffsetDateTime::now_utc();
    // More than one BatchGetItem's worth (100 keys).
    let things: Vec<ThingName> = (0..120)
        .map(|i| ThingName::parse(&format!("trk-{i:03}")).expect("name"))
        .collect();
    for thing in &things {
        devices
            .register(&announce(thing.as_str(), "demo", "1.0"), t0)
            .await?;
    }
    let mut asked = things.clone();
    asked.push(ThingName::parse("never-registered").expect("name"));
    asked.push(things[0].clone());
    let read = devices.last_seen_of(&asked).await?;
    assert_eq!(read.len(), things.len(), "every registered device, once");
    let first = read.get(&things[0]).copied().expect("read");
    assert_eq!(
        first.at.map(|at| at.unix_timestamp()),
        Some(t0.unix_timestamp())
    );
    assert!(!first.timed_out);

    let thing = &things[0];
    let interval = DEFAULT_WRITE_INTERVAL;
    let due = |s: i64| devices.record_activity_if_due(thing, t0 + Duration::seconds(s), interval);
    assert!(!due(300).await?, "within the interval of its registration");
    assert!(due(301).await?);
    assert!(!due(302).await?, "an interval from the write just made");
    assert!(!due(0).await?, "never back in time");
    devices
        .sweep_silent(t0 + Duration::minutes(30), DEFAULT_PRESENCE_TIMEOUT)
        .await?;
    let marked = devices.last_seen_of(std::slice::from_ref(thing)).await?;
    assert!(marked.get(thing).is_some_and(|l| l.timed_out));
    assert!(due(400).await?, "a timed-out device is written at once");
    let unknown = ThingName::parse("never-registered").expect("name");
    assert!(
        !devices
            .record_activity_if_due(&unknown, t0, interval)
            .await?
    );
    assert!(
        devices.get_device(&unknown).await?.is_none(),
        "no item made"
    );
    Ok(())
}

/// Followers of a device share one live window: of followers racing, one renews it (so one
/// `live` command goes out); it outlives a re-announcement; the recorder reads it with the
/// device's tenant, many devices at once; a window whose command failed is taken back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_of_a_device_share_one_live_window() -> Result<()> {
    let stack = LocalAwsStack::start().await?;
    let devices = store(&stack)?;
    let t0 = OffsetDateTime::from_unix_timestamp(1_796_547_600)?;
    let thing = ThingName::parse("trk-live").expect("name");
    devices
        .register(&announce("trk-live", "acme", "1.0"), t0)
        .await?;
    devices
        .register(&announce("trk-other", "globex", "1.0"), t0)
        .await?;

    let until = t0 + Duration::minutes(3);
    let renew_from = t0 + Duration::seconds(90);
    let racing =
        futures::future::join_all((0..4).map(|_| devices.extend_live(&thing, until, renew_from)))
            .await;
    let renewed = racing
        .into_iter()
        .collect::<Result<Vec<bool>, _>>()?
        .into_iter()
        .filter(|won| *won)
        .count();
    assert_eq!(renewed, 1, "one of four racing followers renews");
    // Re-announcing (new firmware) keeps the window.
    devices
        .register(&announce("trk-live", "acme", "1.1"), t0)
        .await?;
    let later = t0 + Duration::minutes(2);
    assert!(
        devices
            .extend_live(
                &thing,
                later + Duration::minutes(3),
                later + Duration::seconds(90)
            )
            .await?,
        "a minute left: renewed"
    );

    let unknown = ThingName::parse("never-registered").expect("name");
    assert!(!devices.extend_live(&unknown, until, renew_from).await?);
    assert!(
        devices.get_device(&unknown).await?.is_none(),
        "no item made"
    );
    let other = ThingName::parse("trk-other").expect("name");
    let followed = devices
        .followed(&[thing.clone(), other.clone(), unknown.clone(), thing.clone()])
        .await?;
    assert_eq!(followed.len(), 2, "the registered ones, once each");
    assert_eq!(followed[&thing].tenant.as_str(), "acme");
    assert_eq!(
        followed[&thing].live_until,
        Some(later + Duration::minutes(3))
    );
    assert_eq!(followed[&other].tenant.as_str(), "globex");
    assert_eq!(followed[&other].live_until, None, "no one follows it");

    // A window whose command did not go out is taken back, unless it moved on meanwhile.
    devices.retract_live(&thing, until).await?;
    let kept = devices.followed(std::slice::from_ref(&thing)).await?;
    assert_eq!(
        kept[&thing].live_until,
        Some(later + Duration::minutes(3)),
        "moved on"
    );
    devices
        .retract_live(&thing, later + Duration::minutes(3))
        .await?;
    let taken = devices.followed(std::slice::from_ref(&thing)).await?;
    assert_eq!(taken[&thing].live_until, None);
    assert!(
        devices.extend_live(&thing, until, renew_from).await?,
        "the next follower renews at once"
    );
    Ok(())
}

/// The cost of presence, from MiniStack's meter: heartbeats queued by the rule, taken from the
/// template's `PresenceQueue` in batches as Lambda would, cost one read and one write for the
/// whole interval on a warm instance, and one read and no write on a second, cold one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_of_a_device_within_the_interval_are_one_stored_write() -> Result<()> {
    const CALLER: &str = "presence-cost-test";
    let stack = LocalAwsStack::start().await?;
    store(&stack)?
        .register(
            &announce("trk-1", "demo", "1.0"),
            OffsetDateTime::now_utc() - Duration::days(1),
        )
        .await?;
    // The function's requests, told from the test's own by the caller name.
    let metered = devstack::local_aws::for_caller(&stack.config, CALLER);
    let devices = DynamoDevices::new(
        cellbridge::common::aws::dynamodb(&metered),
        stack.name("DevicesTable")?,
        stack.name("TelemetryTable")?,
    );
    let http = reqwest::Client::new();
    let endpoint = stack.aws.dynamodb().endpoint();
    let before = devstack::ministack::read_meter(&http, &endpoint).await?;

    // Four minutes of heartbeats, one every two seconds, as HeartbeatRule sends them.
    let t0 = OffsetDateTime::now_utc();
    let queue = stack.queue_url("PresenceQueue")?;
    let beats: Vec<i64> = (0..120).map(|i| i * 2).collect();
    for chunk in beats.chunks(10) {
        let mut send = stack.sqs().send_message_batch().queue_url(&queue);
        for s in chunk {
            let body = json!({"clientId": "trk-1", "eventType": "heartbeat",
                              "timestamp": (t0 + Duration::seconds(*s)).unix_timestamp() * 1000});
            send = send.entries(
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(format!("b{s}"))
                    .message_body(body.to_string())
                    .build()?,
            );
        }
        send.send().await?;
    }
    let warm = ActivityRecorder::new(DEFAULT_WRITE_INTERVAL);
    let mut handled = 0;
    while handled < beats.len() {
        let (event, receipts) = stack.receive_event("PresenceQueue", 30).await?;
        if event.records.is_empty() {
            anyhow::bail!("{handled} of {} heartbeats came back", beats.len());
        }
        let (response, report) = device_presence::handle_heartbeats(
            &devices,
            &warm,
            &event,
            t0 + Duration::seconds(240),
        )
        .await;
        assert!(response.batch_item_failures.is_empty(), "{report:?}");
        handled += event.records.len();
        for receipt in receipts {
            stack.delete("PresenceQueue", &receipt).await?;
        }
    }
    // A second instance, cold, gets a heartbeat of the same interval.
    let cold = ActivityRecorder::new(DEFAULT_WRITE_INTERVAL);
    let mut event = aws_lambda_events::event::sqs::SqsEvent::default();
    let mut record = aws_lambda_events::event::sqs::SqsMessage::default();
    record.message_id = Some("late".into());
    record.body = Some(
        json!({"clientId": "trk-1", "eventType": "heartbeat",
               "timestamp": (t0 + Duration::seconds(250)).unix_timestamp() * 1000})
        .to_string(),
    );
    event.records.push(record);
    let (response, _) =
        device_presence::handle_heartbeats(&devices, &cold, &event, t0 + Duration::seconds(251))
            .await;
    assert!(response.batch_item_failures.is_empty());

    let spent = devstack::ministack::read_meter(&http, &endpoint)
        .await?
        .since(&before);
    let row = |operation: &str| {
        spent
            .dynamodb
            .iter()
            .find(|u| u.caller == CALLER && u.operation == operation)
    };
    let writes = row("UpdateItem").context("no write at all")?;
    assert_eq!(writes.requests, 1, "{spent:?}");
    assert_eq!(writes.conditional_check_failures, 0, "{spent:?}");
    assert!(writes.write_units > 0.0, "{spent:?}");
    let reads = row("BatchGetItem").context("no read at all")?;
    assert_eq!(reads.requests, 2, "one per instance: {spent:?}");
    assert_eq!(reads.read_units, 1.0, "half a unit each: {spent:?}");
    let other: Vec<_> = spent
        .dynamodb
        .iter()
        .filter(|u| {
            u.caller == CALLER && !["UpdateItem", "BatchGetItem"].contains(&u.operation.as_str())
        })
        .collect();
    assert!(other.is_empty(), "{other:?}");
    let seen = devices
        .get_device(&ThingName::parse("trk-1").expect("name"))
        .await?
        .expect("device")
        .presence
        .last_seen
        .expect("seen");
    // The first batch's latest heartbeat, whichever the queue handed out first.
    assert!(
        seen.unix_timestamp() >= t0.unix_timestamp() && seen <= t0 + Duration::seconds(238),
        "{seen}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hour_summaries_count_every_chunk_once_across_writers() -> Result<()> {
    let stack = LocalAwsStack::start().await?;
    let devices = std::sync::Arc::new(store(&stack)?);
    let hour = 1_795_338_000_000_i64; // on the hour
    let message = |first: i64, count: i64| {
        let samples: Vec<_> = (first..first + count)
            .map(|i| json!({"ts": hour + i * 1000, "rssi": -(i % 50), "state": "ok"}))
            .collect();
        let body = json!({"deviceId": "trk-h", "receivedAt": hour + (first + count) * 1000, "samples": samples});
        parse_telemetry(body.to_string().as_bytes()).expect("valid")
    };
    // Ten one-minute messages written at once by five writers (instances racing for the hour),
    // the last two minutes crossing into the next hour, and two messages delivered twice.
    let messages: Vec<_> = (0..10).map(|m| message(3_480 + m * 60, 60)).collect();
    let mut writers = Vec::new();
    for pair in messages.chunks(2) {
        let (devices, pair) = (devices.clone(), pair.to_vec());
        writers.push(tokio::spawn(async move {
            devices.write_telemetry(&pair, Duration::days(30)).await
        }));
    }
    for writer in writers {
        writer.await??;
    }
    devices
        .write_telemetry(&messages[3..5], Duration::days(30))
        .await?;

    let thing = ThingName::parse("trk-h").expect("name");
    let from = OffsetDateTime::from_unix_timestamp(hour / 1000 + 1_800)?;
    let to = OffsetDateTime::from_unix_timestamp(hour / 1000 + 7_199)?;
    let hours = devices.telemetry_hours(&thing, from, to).await?;
    let counts: Vec<(i64, u64)> = hours
        .iter()
        .map(|h| (h.hour_ms, h.metrics["rssi"].count))
        .collect();
    // 3,480 s to 3,599 s in the first hour, 3,600 s to 4,079 s in the second.
    assert_eq!(counts, [(hour, 120), (hour + 3_600_000, 480)]);
    let first = hours[0].metrics["rssi"];
    assert_eq!((first.min, first.max), (-49.0, 0.0));
    assert!(
        !hours[0].metrics.contains_key("state"),
        "text has no summary"
    );
    assert!(
        hours.iter().all(|h| h.chunks.is_empty()),
        "a chart's read leaves the folded chunks out"
    );
    Ok(())
}
