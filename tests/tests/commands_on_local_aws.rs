//! The device command store with the real SDK against the local DynamoDB: statuses that only move forward
//! (duplicate, late and racing acknowledgements), the sweep's sparse deadline index, commands
//! kept apart by thing, and idempotency keys per tenant.

use anyhow::{Context, Result};
use cellbridge::common::store::IdempotencyClaim;
use cellbridge::common::store::PageRequest;
use cellbridge::common::tenant::TenantId;
use cellbridge::devices::command::{parse_command_request, Command, CommandId, CommandStatus};
use cellbridge::devices::commands_dynamodb::DynamoCommands;
use cellbridge::devices::ports::{CommandCreated, CommandStore, Transition};
use cellbridge::devices::registration::ThingName;
use cellbridge_tests::LocalAwsStack;
use serde_json::json;
use time::{Duration, OffsetDateTime};
use CommandStatus::*;

async fn store(stack: &LocalAwsStack) -> Result<DynamoCommands> {
    Ok(DynamoCommands::new(
        stack.dynamodb(),
        stack.name("CommandsTable")?,
        stack.name("IdempotencyTable")?,
    ))
}

fn thing(name: &str) -> ThingName {
    ThingName::parse(name).expect("thing name")
}

fn command(on: &str, tenant: &str, created: OffsetDateTime, body: serde_json::Value) -> Command {
    let request = parse_command_request(body.to_string().as_bytes()).expect("valid request");
    Command::queued(
        thing(on),
        TenantId::parse(tenant).expect("tenant"),
        CommandId::new_v7(),
        &request,
        created,
    )
}

fn reboot(on: &str, created: OffsetDateTime) -> Command {
    command(
        on,
        "demo",
        created,
        json!({"name": "reboot", "params": {"delay": 5, "reason": "firmware 2.5", "flags": [true, 1.5]},
               "expiresInSeconds": 3600, "ackTimeoutSeconds": 30}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_only_move_forward_and_repeated_acks_change_nothing() -> Result<()> {
    let stack = LocalAwsStack::start().await?;
    let commands = store(&stack).await?;
    let now = OffsetDateTime::now_utc();
    let created = reboot("trk-1", now);
    assert_eq!(
        commands.create_command(&created, None).await?,
        CommandCreated::Created
    );
    let (trk1, id) = (thing("trk-1"), created.id.clone());
    assert_eq!(
        commands.get_command(&trk1, &id).await?.as_ref(),
        Some(&created),
        "read back exactly, params included"
    );
    let at = |s: i64| now + Duration::seconds(s);
    let steps = [
        (Sent, 1, Transition::Applied(Sent)),
        (Sent, 1, Transition::Stale { current: Sent }),
        (Delivered, 2, Transition::Applied(Delivered)),
        (Delivered, 2, Transition::Stale { current: Delivered }),
        (Successful, 3, Transition::Applied(Successful)),
        (
            Successful,
            3,
            Transition::Stale {
                current: Successful,
            },
        ),
        (
            Failed,
            4,
            Transition::Stale {
                current: Successful,
            },
        ),
        (
            Delivered,
            5,
            Transition::Stale {
                current: Successful,
            },
        ),
        (
            Timeout,
            6,
            Transition::Stale {
                current: Successful,
            },
        ),
    ];
    for (to, second, expected) in steps {
        let detail = (to == Successful).then_some("done");
        assert_eq!(
            commands
                .transition(&trk1, &id, to, at(second), detail)
                .await?,
            expected,
            "{to:?} at +{second}s"
        );
    }
    let stored = commands.get_command(&trk1, &id).await?.context("stored")?;
    assert_eq!(stored.status, Successful);
    assert_eq!(
        stored.sent_at.map(|s| s.unix_timestamp()),
        Some(at(1).unix_timestamp())
    );
    let history: Vec<_> = stored
        .history
        .iter()
        .map(|h| (h.status, h.detail.as_deref()))
        .collect();
    assert_eq!(
        history,
        [
            (Queued, None),
            (Sent, None),
            (Delivered, None),
            (Successful, Some("done"))
        ]
    );

    // An acknowledgement that overtakes the SENT write: applied, and the late SENT is stale.
    let overtaken = reboot("trk-1", now);
    commands.create_command(&overtaken, None).await?;
    assert_eq!(
        commands
            .transition(&trk1, &overtaken.id, Delivered, at(1), None)
            .await?,
        Transition::Applied(Delivered)
    );
    assert_eq!(
        commands
            .transition(&trk1, &overtaken.id, Sent, at(2), None)
            .await?,
        Transition::Stale { current: Delivered }
    );
    let stored = commands
        .get_command(&trk1, &overtaken.id)
        .await?
        .context("stored")?;
    assert_eq!(
        stored.sent_at.map(|s| s.unix_timestamp()),
        Some(at(1).unix_timestamp())
    );
    assert_eq!(
        commands
            .transition(&trk1, &CommandId::new_v7(), Delivered, at(1), None)
            .await?,
        Transition::Missing
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_acknowledgements_apply_one_final_status_once() -> Result<()> {
    let stack = LocalAwsStack::start().await?;
    let commands = std::sync::Arc::new(store(&stack).await?);
    let now = OffsetDateTime::now_utc();
    let created = reboot("trk-1", now);
    commands.create_command(&created, None).await?;
    commands
        .transition(&created.thing, &created.id, Sent, now, None)
        .await?;
    // QoS 1 redeliveries of a delivered and a final acknowledgement, all at once.
    let mut tasks = Vec::new();
    for i in 0..12 {
        let commands = commands.clone();
        let (thing, id) = (created.thing.clone(), created.id.clone());
        let to = match i % 3 {
            0 => Delivered,
            1 => Successful,
            _ => Failed,
        };
        tasks.push(tokio::spawn(async move {
            commands
                .transition(&thing, &id, to, now + Duration::seconds(1), None)
                .await
        }));
    }
    let mut finals_applied = 0;
    for task in tasks {
        if let Transition::Applied(status) = task.await?? {
            if status.is_final() {
                finals_applied += 1;
            }
        }
    }
    assert_eq!(finals_applied, 1, "exactly one final status was written");
    let stored = commands
        .get_command(&created.thing, &created.id)
        .await?
        .context("stored")?;
    assert!(stored.status.is_final());
    let statuses: Vec<_> = stored.history.iter().map(|h| h.status).collect();
    let mut unique = statuses.clone();
    unique.dedup();
    assert_eq!(statuses, unique, "no status twice: {statuses:?}");
    assert_eq!(statuses.last(), Some(&stored.status));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_index_holds_only_open_commands_and_yields_the_due_ones() -> Result<()> {
    let stack = LocalAwsStack::start().await?;
    let commands = store(&stack).await?;
    let now = OffsetDateTime::now_utc();
    let body = |expires: i64| json!({"name": "reboot", "expiresInSeconds": expires, "ackTimeoutSeconds": 30});
    let expired = command("trk-1", "demo", now - Duration::minutes(11), body(600));
    let waiting = command("trk-2", "demo", now - Duration::minutes(9), body(600));
    let unanswered = command("trk-3", "globex", now - Duration::minutes(5), body(3600));
    let in_time = command("trk-1", "demo", now - Duration::seconds(10), body(3600));
    let delivered = command("trk-2", "demo", now - Duration::minutes(5), body(3600));
    let done = command("trk-3", "globex", now - Duration::minutes(5), body(3600));
    for c in [&expired, &waiting, &unanswered, &in_time, &delivered, &done] {
        commands.create_command(c, None).await?;
    }
    let move_to = |c: &Command, to, at| {
        let (thing, id) = (c.thing.clone(), c.id.clone());
        let commands = &commands;
        async move { commands.transition(&thing, &id, to, at, None).await }
    };
    move_to(&unanswered, Sent, now - Duration::seconds(31)).await?;
    move_to(&in_time, Sent, now - Duration::seconds(5)).await?;
    move_to(&delivered, Sent, now - Duration::minutes(4)).await?;
    move_to(&delivered, Delivered, now - Duration::minutes(4)).await?;
    move_to(&done, Sent, now - Duration::minutes(4)).await?;
    move_to(&done, Failed, now - Duration::minutes(4)).await?;

    let mut due: Vec<CommandId> = commands
        .due_for_sweep(now, 100)
        .await?
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    due.sort();
    let mut expected = vec![
        expired.id.clone(),
        unanswered.id.clone(),
        delivered.id.clone(),
    ];
    expected.sort();
    assert_eq!(due, expected, "only open commands past their deadline");
    assert_eq!(commands.due_for_sweep(now, 2).await?.len(), 2, "limited");

    assert_eq!(
        commands
            .sweep_command(&waiting.thing, &waiting.id, now)
            .await?,
        Transition::Stale { current: Queued },
        "not due: nothing changes"
    );
    for (c, outcome) in [
        (&expired, Transition::Applied(Expired)),
        (&unanswered, Transition::Applied(Timeout)),
        (&delivered, Transition::Applied(Timeout)),
    ] {
        assert_eq!(commands.sweep_command(&c.thing, &c.id, now).await?, outcome);
        assert_eq!(
            commands.sweep_command(&c.thing, &c.id, now).await?,
            Transition::Stale {
                current: match outcome {
                    Transition::Applied(s) => s,
                    _ => Queued,
                }
            },
            "a second sweep changes nothing"
        );
    }
    assert!(
        commands.due_for_sweep(now, 100).await?.is_empty(),
        "final commands left the index"
    );
    let later: Vec<CommandId> = commands
        .due_for_sweep(now + Duration::hours(2), 100)
        .await?
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    assert_eq!(later.len(), 2, "the still open ones, once due: {later:?}");
    assert!(later.contains(&waiting.id) && later.contains(&in_time.id));
    let swept = commands
        .get_command(&expired.thing, &expired.id)
        .await?
        .context("stored")?;
    assert_eq!(
        swept.history.last().and_then(|h| h.detail.as_deref()),
        Some("not delivered before it expired")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_kept_apart_by_thing_listed_newest_first_and_queued_oldest_first() -> Result<()>
{
    let stack = LocalAwsStack::start().await?;
    let commands = store(&stack).await?;
    let now = OffsetDateTime::now_utc();
    let mut mine = Vec::new();
    for _ in 0..5 {
        let c = reboot("trk-1", now);
        commands.create_command(&c, None).await?;
        mine.push(c);
    }
    let other = reboot("trk-2", now);
    commands.create_command(&other, None).await?;
    let old = reboot("trk-1", now - Duration::hours(2));
    commands.create_command(&old, None).await?;
    commands
        .transition(&mine[1].thing, &mine[1].id, Sent, now, None)
        .await?;

    let trk1 = thing("trk-1");
    let mut listed = Vec::new();
    let mut cursor = None;
    loop {
        let page = commands
            .list_commands(&trk1, &PageRequest { limit: 2, cursor })
            .await?;
        listed.extend(page.items.iter().map(|c| c.id.clone()));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let mut expected: Vec<CommandId> = mine.iter().map(|c| c.id.clone()).collect();
    expected.push(old.id.clone());
    expected.sort();
    expected.reverse();
    assert_eq!(listed, expected, "newest id first, never trk-2's");

    let queued: Vec<CommandId> = commands
        .queued_commands(&trk1, now, 10)
        .await?
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(
        queued,
        [&mine[0], &mine[2], &mine[3], &mine[4]].map(|c| c.id.clone()),
        "oldest first; not the sent one, not the expired one"
    );
    assert_eq!(commands.queued_commands(&trk1, now, 2).await?.len(), 2);
    assert_eq!(
        commands.get_command(&thing("trk-2"), &mine[0].id).await?,
        None,
        "another thing's id is not found"
    );
    assert_eq!(
        commands
            .transition(&thing("trk-2"), &mine[0].id, Failed, now, None)
            .await?,
        Transition::Missing
    );
    let theirs = commands.queued_commands(&thing("trk-2"), now, 10).await?;
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].id, other.id);
    assert!(commands
        .list_commands(
            &trk1,
            &PageRequest {
                limit: 2,
                cursor: Some("garbage".into())
            }
        )
        .await
        .is_err());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_binds_one_command_per_tenant() -> Result<()> {
    let stack = LocalAwsStack::start().await?;
    let commands = store(&stack).await?;
    let now = OffsetDateTime::now_utc();
    let claim = |digest: &str| IdempotencyClaim {
        key: "key-1".to_owned(),
        request_digest: digest.to_owned(),
    };
    let first = reboot("trk-1", now);
    assert_eq!(
        commands.create_command(&first, Some(&claim("a"))).await?,
        CommandCreated::Created
    );
    match commands
        .create_command(&reboot("trk-1", now), Some(&claim("a")))
        .await?
    {
        CommandCreated::Replayed {
            existing,
            same_request: true,
        } => assert_eq!(existing.id, first.id),
        other => panic!("expected a replay, got {other:?}"),
    }
    assert!(matches!(
        commands
            .create_command(&reboot("trk-1", now), Some(&claim("b")))
            .await?,
        CommandCreated::Replayed {
            same_request: false,
            ..
        }
    ));
    let globex = command("gx-1", "globex", now, json!({"name": "reboot"}));
    assert_eq!(
        commands.create_command(&globex, Some(&claim("a"))).await?,
        CommandCreated::Created,
        "the same key of another tenant is another key"
    );
    let listed = commands
        .list_commands(
            &thing("trk-1"),
            &PageRequest {
                limit: 10,
                cursor: None,
            },
        )
        .await?;
    assert_eq!(listed.items.len(), 1, "replays stored nothing");
    Ok(())
}
