//! The live-event tables with the real SDK against the local DynamoDB: writers racing for one
//! tenant's counter get every place once and in order, reads leave out what the window let go,
//! and a connection's catching up is recorded only for the subscription it was made for.

use anyhow::Result;
use cellbridge::common::tenant::TenantId;
use cellbridge::events::counts::{CountDeltas, Counted, FleetCounts, Tally};
use cellbridge::events::dynamodb::{DynamoConnections, DynamoEventLog, DynamoFleetCounts};
use cellbridge::events::event::{Change, EventType};
use cellbridge::events::ports::{Connection, Connections, EventLog, Standing};
use cellbridge::events::subscription::Subscription;
use cellbridge_tests::LocalAwsStack;
use serde_json::json;
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).expect("tenant")
}

fn changes(of: &str, writer: usize, count: usize, at: OffsetDateTime) -> Vec<Change> {
    (0..count)
        .map(|i| Change {
            tenant: tenant(of),
            kind: EventType::CommandStatus,
            subject: format!("w{writer}"),
            at,
            data: json!({"writer": writer, "n": i}),
            source: Some(format!("{of}-w{writer}-{i}")),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_get_every_place_once_in_order() -> Result<()> {
    let stack = LocalAwsStack::start().await?;
    let log = Arc::new(DynamoEventLog::new(
        stack.dynamodb(),
        stack.name("EventsTable")?,
    ));
    let now = OffsetDateTime::now_utc();
    let keep = now + Duration::minutes(15);
    // Six writers of one tenant, one of them with more than a transaction's worth at once.
    let mut writers = Vec::new();
    for writer in 0..6 {
        let log = log.clone();
        let count = if writer == 0 { 150 } else { 20 };
        writers.push(tokio::spawn(async move {
            log.append(&tenant("acme"), changes("acme", writer, count, now), keep)
                .await
        }));
    }
    log.append(&tenant("bolt"), changes("bolt", 9, 3, now), keep)
        .await?;
    let mut given: Vec<u64> = Vec::new();
    for writer in writers {
        let events = writer.await??;
        // One writer's events are contiguous only within a transaction, but always increasing.
        assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
        given.extend(events.iter().map(|e| e.seq));
    }
    given.sort_unstable();
    assert_eq!(given, (1..=250).collect::<Vec<u64>>(), "every place once");
    assert_eq!(log.newest(&tenant("acme")).await?, 250);
    assert_eq!(
        log.newest(&tenant("bolt")).await?,
        3,
        "each tenant its own stream"
    );

    let read = log.read(&tenant("acme"), 1, 250, now).await?;
    assert_eq!(
        read.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=250).collect::<Vec<u64>>()
    );
    let writer_zero: Vec<i64> = read
        .iter()
        .filter(|e| e.subject == "w0")
        .filter_map(|e| e.data["n"].as_i64())
        .collect();
    assert_eq!(
        writer_zero,
        (0..150).collect::<Vec<i64>>(),
        "a writer's changes keep their order"
    );
    assert!(
        log.read(&tenant("acme"), 240, 250, keep).await?.is_empty(),
        "past the window"
    );
    assert!(log.is_kept(&tenant("acme"), 250, now).await?);
    assert!(!log.is_kept(&tenant("acme"), 250, keep).await?);
    assert!(!log.is_kept(&tenant("acme"), 251, now).await?);
    log.wake(&tenant("acme"), "c-1").await?;
    assert_eq!(
        log.newest(&tenant("acme")).await?,
        250,
        "a wake adds no event"
    );

    // A batch handed again: what was recorded is not told twice, what was not is.
    let mut again = changes("acme", 0, 60, now);
    again.extend(changes("acme", 7, 3, now));
    let told = log.append(&tenant("acme"), again, keep).await?;
    assert_eq!(
        told.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [251, 252, 253]
    );
    assert!(told.iter().all(|e| e.subject == "w7"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catching_up_is_recorded_for_the_subscription_it_was_made_for() -> Result<()> {
    let stack = LocalAwsStack::start().await?;
    let connections = DynamoConnections::new(stack.dynamodb(), stack.name("LiveConnectionsTable")?);
    let now = OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp())?;
    for (id, of) in [("c-1", "acme"), ("c-2", "acme"), ("c-3", "bolt")] {
        connections
            .put(&Connection {
                id: id.into(),
                tenant: tenant(of),
                subject: "ops@example".into(),
                connected_at: now,
                expires_at: now + Duration::hours(2),
                subscription: None,
                after: 0,
                catching_up: false,
                generation: 0,
            })
            .await?;
    }
    let presence = Subscription {
        types: [EventType::DevicePresence].into(),
        devices: ["trk-1".to_owned()].into(),
        ..Subscription::default()
    };
    let first = connections
        .subscribe("c-1", Some(presence.clone()), 7)
        .await?
        .expect("open");
    assert_eq!(
        connections
            .subscribe("gone", Some(presence.clone()), 7)
            .await?,
        None
    );
    // The client subscribed again (from 9) before the fan-out replayed from 7.
    let second = connections
        .subscribe("c-1", Some(presence.clone()), 9)
        .await?
        .expect("open");
    assert!(second > first);
    assert!(
        !connections.settle("c-1", first, 12, Standing::Live).await?,
        "made for the earlier subscription"
    );
    assert!(
        connections
            .settle("c-1", second, 12, Standing::Live)
            .await?
    );
    let c1 = connections.get("c-1").await?.expect("kept");
    assert_eq!((c1.after, c1.catching_up), (12, false));
    assert_eq!(c1.subscription, Some(presence));
    assert_eq!(c1.generation, second);
    assert!(
        connections
            .settle("c-1", second, 14, Standing::Unsubscribed)
            .await?
    );
    let c1 = connections.get("c-1").await?.expect("kept");
    assert_eq!(
        (c1.after, c1.catching_up, c1.subscription),
        (14, false, None)
    );
    assert_eq!(c1.connected_at, now);

    let mut acme: Vec<String> = connections
        .of_tenant(&tenant("acme"))
        .await?
        .into_iter()
        .map(|c| c.id)
        .collect();
    acme.sort();
    assert_eq!(acme, ["c-1", "c-2"]);
    connections.remove("c-1").await?;
    assert_eq!(connections.get("c-1").await?, None);
    assert_eq!(connections.of_tenant(&tenant("bolt")).await?.len(), 1);
    Ok(())
}

fn sims_counted(source: &str, carrier: &str, status: &str, by: i64) -> Counted {
    let mut deltas = CountDeltas::default();
    deltas.add(
        Tally::Sims {
            carrier: carrier.into(),
            status: status.into(),
        },
        by,
    );
    Counted {
        source: source.into(),
        deltas,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_numbers_count_each_record_once_across_transactions_and_writers() -> Result<()> {
    let stack = LocalAwsStack::start().await?;
    let counts = Arc::new(DynamoFleetCounts::new(
        stack.dynamodb(),
        stack.name("EventsTable")?,
    ));
    let fresh = tenant("numbers");
    // More records than one transaction holds, from two writers at once (two shards).
    let first: Vec<Counted> = (0..150)
        .map(|i| sims_counted(&format!("a{i}"), "jasper", "active", 1))
        .collect();
    let second: Vec<Counted> = (0..40)
        .map(|i| sims_counted(&format!("b{i}"), "telegence", "inventory", 1))
        .collect();
    let (one, two) = {
        let (a, b) = (counts.clone(), counts.clone());
        let (t1, t2) = (fresh.clone(), fresh.clone());
        let (f, s) = (first.clone(), second.clone());
        tokio::join!(
            tokio::spawn(async move { a.add(&t1, f).await }),
            tokio::spawn(async move { b.add(&t2, s).await })
        )
    };
    one??;
    two??;
    // A batch handed again, partly counted before, with a new record: only that one adds.
    let mut again = first[..120].to_vec();
    again.push(sims_counted("a-moved", "jasper", "active", -1));
    let mut moved = again.pop().expect("moved");
    moved.deltas.add(
        Tally::Sims {
            carrier: "jasper".into(),
            status: "suspended".into(),
        },
        1,
    );
    again.push(moved);
    counts.add(&fresh, again).await?;

    let summary = counts.summary(&fresh).await?;
    assert_eq!(summary.sims.total, 190);
    assert_eq!(summary.sims.by_carrier["jasper"]["active"], 149);
    assert_eq!(summary.sims.by_carrier["jasper"]["suspended"], 1);
    assert_eq!(summary.sims.by_status["inventory"], 40);
    assert_eq!(
        counts.summary(&tenant("nobody")).await?,
        Default::default(),
        "a tenant with nothing counted has nothing"
    );

    // A recount replaces every tally (those it did not find go), and counting goes on from it.
    let mut recounted = CountDeltas::default();
    recounted.add(Tally::sims("thingspace", "active"), 7);
    recounted.add(Tally::DevicesRegistered, 3);
    recounted.add(Tally::DevicesOnline, 2);
    counts.replace(&fresh, &recounted).await?;
    counts
        .add(
            &fresh,
            vec![sims_counted("after", "thingspace", "active", 1)],
        )
        .await?;
    let summary = counts.summary(&fresh).await?;
    assert_eq!(summary.sims.total, 8);
    assert_eq!(
        summary.sims.by_carrier.keys().collect::<Vec<_>>(),
        ["thingspace"]
    );
    assert_eq!((summary.devices.online, summary.devices.offline), (2, 1));
    Ok(())
}
