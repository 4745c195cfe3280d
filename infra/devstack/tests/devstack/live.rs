//! The live event stream end to end with real WebSocket clients: the template's WebSocket API
//! served by the devstack, `$connect` and the routes through cargo lambda watch, the recorder and
//! the fan-out fed by the tables' streams, frames posted through the `@connections` endpoint.

use super::{seed_devices, signed_in, until, valid_request, OPERATOR};
use anyhow::{bail, ensure, Context, Result};
use cellbridge::common::tenant::TenantId;
use cellbridge::events::event::{Event, EventType};
use cellbridge::events::subscription::Subscription;
use cellbridge::sims::ports::SimStore;
use cellbridge::sims::sim::SimStatus;
use device_sim::{Fleet, FleetOptions};
use devstack::Devstack;
use live_client::{LiveClient, LiveError, LiveOptions};
use serde_json::json;
use std::time::Duration;

const OTHER_TENANT_OPERATOR: &str = "ops@globex.example";

async fn token(stack: &Devstack, username: &str) -> Result<String> {
    let client = signed_in(stack, username).await?;
    client
        .token()
        .map(str::to_owned)
        .context("a signed-in client has a token")
}

async fn client(stack: &Devstack, username: &str, filter: Subscription) -> Result<LiveClient> {
    let token = token(stack, username).await?;
    Ok(LiveClient::connect(&stack.live_url(), &token, filter, LiveOptions::default()).await?)
}

/// Events until `done` holds for one, which is the last returned.
async fn events_until(
    live: &mut LiveClient,
    within: Duration,
    mut done: impl FnMut(&Event) -> bool,
    mut each: impl FnMut(&Event, &mut LiveClient),
) -> Result<Vec<Event>> {
    let mut events = Vec::new();
    loop {
        let event = live.next(within).await.context("waiting for live events")?;
        each(&event, live);
        let finished = done(&event);
        events.push(event);
        if finished {
            return Ok(events);
        }
    }
}

/// One simulated device of the demo tenant, named from `prefix`, and its thing name.
fn one_device(stack: &Devstack, prefix: &str) -> Result<(Fleet, String)> {
    let mut options = FleetOptions::new(stack.mqtt_address());
    options.devices = 1;
    options.prefix = prefix.to_owned();
    options.tenant = "demo".to_owned();
    let fleet = Fleet::start(options)?;
    let thing = fleet.things().next().context("one device")?.to_owned();
    Ok((fleet, thing))
}

/// Whether an event tells that `thing` went online (or offline).
fn presence_is(thing: &str, online: bool) -> impl Fn(&Event) -> bool + '_ {
    move |e: &Event| {
        e.kind == EventType::DevicePresence && e.subject == thing && e.data["online"] == online
    }
}

fn consecutive(events: &[Event]) -> bool {
    events.windows(2).all(|w| w[1].seq == w[0].seq + 1)
}

/// A bulk change's progress and completion, and a device coming and going, arrive in order on
/// an unfiltered stream, across a cut in the middle; the other tenant's stream stays silent
/// about them.
pub async fn bulk_changes_and_devices_show_up_live_in_order(stack: &Devstack) -> Result<()> {
    let mut demo = client(stack, OPERATOR, Subscription::default()).await?;
    let mut other = client(stack, OTHER_TENANT_OPERATOR, Subscription::default()).await?;

    seed_devices(stack)?;
    let api = signed_in(stack, OPERATOR).await?;
    let mut request = valid_request();
    request["carrier"] = json!("telegence");
    let created = api.create_bulk_change(&request, None).await?;
    let id = created.id.to_string();
    let mut cut = false;
    let events = events_until(
        &mut demo,
        Duration::from_secs(240),
        |e| e.kind == EventType::BulkChangeCompleted && e.subject == id,
        |e, live| {
            // Cut once, right after the first progress: what follows comes through a resume.
            if !cut && e.kind == EventType::BulkChangeProgress && e.subject == id {
                live.cut();
                cut = true;
            }
        },
    )
    .await?;
    ensure!(
        consecutive(&events),
        "seq with gaps or repeats: {:?}",
        events.iter().map(|e| e.seq).collect::<Vec<_>>()
    );
    let ours: Vec<&Event> = events.iter().filter(|e| e.subject == id).collect();
    let done: Vec<u64> = ours
        .iter()
        .map(|e| e.data["succeeded"].as_u64().unwrap_or(0) + e.data["failed"].as_u64().unwrap_or(0))
        .collect();
    ensure!(
        done.windows(2).all(|w| w[0] <= w[1]),
        "progress went back: {done:?}"
    );
    let last = ours.last().context("the bulk change's events")?;
    ensure!(
        last.data["status"] == "completed" && last.data["succeeded"] == super::DEVICES,
        "completion {last:?}"
    );
    ensure!(cut, "the stream was cut once");
    let stats = demo.stats();
    // The resume replayed exactly what the cut lost: no gap to heal, nothing twice.
    ensure!(
        stats.connections == 2 && stats.gaps == 0 && stats.duplicates == 0,
        "{stats:?}"
    );

    // A device registering, online, then offline.
    let (fleet, thing) = one_device(stack, "live")?;
    let outcome = async {
        let online = presence_is(&thing, true);
        events_until(&mut demo, Duration::from_secs(120), online, |_, _| {}).await?;
        fleet.disconnect(&thing)?;
        let offline = presence_is(&thing, false);
        events_until(&mut demo, Duration::from_secs(120), offline, |_, _| {}).await
    }
    .await;
    let _ = fleet.shutdown().await;
    outcome?;

    // Whatever the other tenant's stream carried, none of it was the demo tenant's.
    loop {
        match other.next(Duration::from_secs(2)).await {
            Ok(event) => ensure!(event.tenant.as_str() == "globex", "globex saw {event:?}"),
            Err(LiveError::Timeout(_)) => break,
            Err(error) => bail!("the other tenant's stream: {error}"),
        }
    }
    Ok(())
}

/// Flips the status of `count` SIMs of `tenant` (written first, a first write tells nothing):
/// one `sim.status` event each.
async fn flip_sims(stack: &Devstack, tenant: &str, first: u32, count: u32) -> Result<()> {
    let store = devstack::ports::sim_store(stack)?;
    let tenant = TenantId::parse(tenant).context("tenant")?;
    for n in first..first + count {
        let mut sim = cellbridge::testing::sample_sim(n);
        sim.status = SimStatus::Active;
        sim.version = 1;
        store.put_sim(&tenant, &sim, None, None).await?;
        let stored = sim.version;
        sim.status = SimStatus::Suspended;
        sim.version += 1;
        store.put_sim(&tenant, &sim, Some(stored), None).await?;
    }
    Ok(())
}

/// A device page's subscription (one device by name, its telemetry) makes the device stream:
/// the `live` command goes out and is answered, and the device's samples then arrive about one
/// a second rather than a minute's batch at a time.
pub async fn a_followed_device_streams_its_telemetry_live(stack: &Devstack) -> Result<()> {
    // Listening before the device starts: its coming online is not missed.
    let presence_only = Subscription {
        types: [EventType::DevicePresence].into(),
        ..Subscription::default()
    };
    let mut presence = client(stack, OPERATOR, presence_only).await?;
    let (fleet, thing) = one_device(stack, "follow")?;
    let outcome = async {
        let online = presence_is(&thing, true);
        events_until(&mut presence, Duration::from_secs(120), online, |_, _| {}).await?;

        // What a device page asks for. (Without types, SIM events would come too: a device
        // list narrows only the events about devices.)
        let page = Subscription {
            types: [EventType::TelemetryLatest, EventType::CommandStatus].into(),
            devices: [thing.clone()].into(),
            ..Subscription::default()
        };
        let mut follower = client(stack, OPERATOR, page).await?;
        let mut samples = Vec::new();
        let mut live_answered = false;
        // Batched, the device's samples would come a minute apart: eight within two minutes
        // can only be a device streaming.
        let events = events_until(
            &mut follower,
            Duration::from_secs(120),
            |e| {
                if e.kind == EventType::TelemetryLatest {
                    samples.push(e.at);
                }
                samples.len() >= 8
            },
            |_, _| {},
        )
        .await?;
        for event in &events {
            ensure!(event.subject == thing, "another device's event: {event:?}");
            if event.kind == EventType::CommandStatus
                && event.data["name"] == "live"
                && event.data["status"] == "SUCCESSFUL"
            {
                live_answered = true;
            }
        }
        ensure!(
            live_answered,
            "the device answered its live command: {events:?}"
        );
        // Telemetry may be written out of sample order (its queue is not ordered): the times
        // are compared sorted. Each sample is told once.
        samples.sort();
        ensure!(
            samples.windows(2).all(|w| w[0] < w[1]),
            "no sample twice: {samples:?}"
        );
        // The samples' own times (taken a second apart on the device), not when they arrived.
        let spacing: Vec<i64> = samples[samples.len() - 5..]
            .windows(2)
            .map(|w| (w[1] - w[0]).whole_milliseconds() as i64)
            .collect();
        ensure!(
            spacing.iter().all(|ms| *ms <= 2_000),
            "streamed a sample a second, not in batches: {spacing:?} ms apart"
        );
        anyhow::Ok(())
    };
    // Each wait above is for the next event; this bounds them all.
    let outcome = tokio::time::timeout(Duration::from_secs(300), outcome)
        .await
        .unwrap_or_else(|_| {
            Err(anyhow::anyhow!(
                "the device did not stream within 5 minutes"
            ))
        });
    let _ = fleet.shutdown().await;
    outcome
}

/// Thousands of events of two tenants, interleaved: each stream carries its own tenant's only,
/// every one of them, in order.
pub async fn tenants_never_see_each_others_events(stack: &Devstack) -> Result<()> {
    const PER_TENANT: u32 = 1_000;
    let sims_only = Subscription {
        types: [EventType::SimStatusChanged].into(),
        ..Subscription::default()
    };
    let mut demo = client(stack, OPERATOR, sims_only.clone()).await?;
    let mut globex = client(stack, OTHER_TENANT_OPERATOR, sims_only).await?;
    let (demo_written, globex_written) = tokio::join!(
        flip_sims(stack, "demo", 700_000, PER_TENANT),
        flip_sims(stack, "globex", 800_000, PER_TENANT)
    );
    demo_written?;
    globex_written?;
    for (live, tenant, first) in [
        (&mut demo, "demo", 700_000),
        (&mut globex, "globex", 800_000),
    ] {
        let mut waiting: std::collections::BTreeSet<String> = (first..first + PER_TENANT)
            .map(cellbridge::testing::iccid)
            .collect();
        // Earlier scenarios' SIM changes may still be on their way (a bulk change's completion
        // can be told before its last SIM's status): only this scenario's SIMs are counted.
        while !waiting.is_empty() {
            let event = live.next(Duration::from_secs(180)).await.with_context(|| {
                format!(
                    "{tenant}'s events: {} of {PER_TENANT} SIMs not told, first {:?}",
                    waiting.len(),
                    waiting.first()
                )
            })?;
            ensure!(
                event.tenant.as_str() == tenant,
                "{tenant} received {event:?}"
            );
            if event.data["to"] == "suspended" {
                waiting.remove(&event.subject);
            }
        }
        ensure!(live.stats().duplicates == 0, "{:?}", live.stats());
    }
    Ok(())
}

/// Bad tokens are refused at `$connect`; a stale `lastSeq` gets `reset`; malformed frames get
/// an error frame and the other connections go on; a connection API Gateway no longer has is
/// removed on the first 410.
pub async fn the_stream_refuses_resets_and_prunes(stack: &Devstack) -> Result<()> {
    let url = stack.live_url();
    for bad in ["not.a.token", "eyJhbGciOiJIUzI1NiJ9.e30.c2ln"] {
        match LiveClient::connect(&url, bad, Subscription::default(), LiveOptions::default()).await
        {
            Err(LiveError::Refused(401)) => {}
            other => bail!("a bad token got {:?}", other.map(|c| c.stats())),
        }
    }

    let token = token(stack, OPERATOR).await?;
    let mut watcher = LiveClient::connect(
        &url,
        &token,
        Subscription::default(),
        LiveOptions::default(),
    )
    .await?;
    let mut rude = LiveClient::connect(
        &url,
        &token,
        Subscription::default(),
        LiveOptions::default(),
    )
    .await?;
    rude.send_raw("{not json").await?;
    let error = rude.frame(Duration::from_secs(30)).await?;
    ensure!(error["kind"] == "error", "{error}");
    rude.send_raw(r#"{"action": "dance"}"#).await?;
    let error = rude.frame(Duration::from_secs(30)).await?;
    ensure!(
        error["kind"] == "error" && error["field"] == "action",
        "{error}"
    );

    // A connection record of a client API Gateway no longer has.
    let connections = devstack::ports::live_connections(stack)?;
    let ghost = "R2hvc3RDb25uZWN0aW9uPQ==";
    let now = time::OffsetDateTime::now_utc();
    use cellbridge::events::ports::Connections;
    connections
        .put(&cellbridge::events::ports::Connection {
            id: ghost.into(),
            tenant: TenantId::parse("demo").context("tenant")?,
            subject: "ghost@demo.example".into(),
            connected_at: now,
            expires_at: now + time::Duration::hours(2),
            subscription: Some(Subscription::default()),
            after: 0,
            catching_up: false,
            generation: 0,
        })
        .await?;
    flip_sims(stack, "demo", 900_000, 1).await?;
    // Earlier scenarios' events may come first.
    let flipped = cellbridge::testing::iccid(900_000);
    let told = events_until(
        &mut watcher,
        Duration::from_secs(60),
        |e| e.kind == EventType::SimStatusChanged && e.subject == flipped,
        |_, _| {},
    )
    .await?
    .pop()
    .context("the flipped SIM's event")?;
    until(
        "the dead connection removed",
        Duration::from_secs(30),
        || async { Ok(connections.get(ghost).await?.is_none()) },
    )
    .await?;
    // The rude client's connection still works.
    rude.send_raw(r#"{"action": "ping"}"#).await?;
    loop {
        let frame = rude.frame(Duration::from_secs(30)).await?;
        if frame["kind"] == "pong" {
            break;
        }
    }

    let newest = told.seq;
    match LiveClient::resume(
        &url,
        &token,
        Subscription::default(),
        newest + 1_000,
        LiveOptions::default(),
    )
    .await
    {
        Err(LiveError::Reset(_)) => {}
        other => bail!(
            "a lastSeq ahead of the stream got {:?}",
            other.map(|c| c.stats())
        ),
    }
    // The event after `newest - 1` gone, as the TTL removes it after the window.
    let events_table = stack
        .resources()
        .table_name("EventsTable")
        .context("EventsTable")?;
    aws_sdk_dynamodb::Client::new(stack.sdk_config())
        .delete_item()
        .table_name(events_table)
        .key(
            "tenantId",
            aws_sdk_dynamodb::types::AttributeValue::S("demo".into()),
        )
        .key(
            "seq",
            aws_sdk_dynamodb::types::AttributeValue::N(newest.to_string()),
        )
        .send()
        .await?;
    match LiveClient::resume(
        &url,
        &token,
        Subscription::default(),
        newest - 1,
        LiveOptions::default(),
    )
    .await
    {
        Err(LiveError::Reset(reason)) => ensure!(reason.contains("no longer kept"), "{reason}"),
        other => bail!(
            "a lastSeq before the window got {:?}",
            other.map(|c| c.stats())
        ),
    }
    Ok(())
}
