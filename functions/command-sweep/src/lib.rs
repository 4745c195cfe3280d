//! Scheduled function (every minute): gives up on commands whose deadline passed. A SENT or
//! DELIVERED command with no final acknowledgement within its ack timeout becomes TIMEOUT; a
//! QUEUED one whose device did not come back before it expired becomes EXPIRED.
//!
//! It reads only open commands that are due, from the commands table's sparse deadline index,
//! and decides each on the command as stored now (the index lags), so an acknowledgement that
//! arrives meanwhile wins. Safe to run twice: statuses only move forward.

use cellbridge_core::store::StoreError;
use cellbridge_devices::command::CommandStatus;
use cellbridge_devices::ports::{CommandStore, Transition};
use cellbridge_edge::lambda::metrics;
use cellbridge_edge::lambda::metrics::Unit;
use futures::{stream, StreamExt, TryStreamExt};
use serde::Serialize;
use time::OffsetDateTime;

/// This function's configuration, read once at cold start: the commands table it sweeps.
pub type Config = cellbridge_devices::wiring::CommandTables;

/// Commands looked at per run; the next run (a minute later) takes the rest.
pub const SWEEP_LIMIT: u32 = 2000;
/// Conditional writes in flight at once.
const CONCURRENCY: usize = 16;

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Swept {
    pub timed_out: u32,
    pub expired: u32,
    /// Due by the index, but finished or moved on meanwhile.
    pub unchanged: u32,
}

pub async fn sweep(commands: &dyn CommandStore, now: OffsetDateTime) -> Result<Swept, StoreError> {
    let due = commands.due_for_sweep(now, SWEEP_LIMIT).await?;
    let outcomes: Vec<Transition> = stream::iter(due)
        .map(|(thing, id)| async move { commands.sweep_command(&thing, &id, now).await })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    let mut swept = Swept::default();
    for outcome in outcomes {
        match outcome {
            Transition::Applied(CommandStatus::Timeout) => swept.timed_out += 1,
            Transition::Applied(CommandStatus::Expired) => swept.expired += 1,
            _ => swept.unchanged += 1,
        }
    }
    tracing::info!(
        timed_out = swept.timed_out,
        expired = swept.expired,
        unchanged = swept.unchanged,
        "command sweep"
    );
    if swept.timed_out + swept.expired > 0 {
        metrics::emit(
            &[],
            &[
                ("CommandsTimedOut", f64::from(swept.timed_out), Unit::Count),
                ("CommandsExpired", f64::from(swept.expired), Unit::Count),
            ],
        );
    }
    Ok(swept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::eventbridge::EventBridgeEvent;
    use cellbridge_core::tenant::TenantId;
    use cellbridge_devices::command::{parse_command_request, Command, CommandId};
    use cellbridge_devices::commands_memory::MemoryCommands;
    use cellbridge_devices::registration::ThingName;
    use time::Duration;
    use CommandStatus::*;

    const SCHEDULED: &str = include_str!("../../../events/command-sweep/scheduled.json");

    /// The sample's time.
    fn now() -> OffsetDateTime {
        let _: EventBridgeEvent = serde_json::from_str(SCHEDULED).expect("the event main.rs takes");
        let event: serde_json::Value = serde_json::from_str(SCHEDULED).expect("sample");
        let at = event["time"].as_str().expect("time");
        OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).expect("time")
    }

    fn command(thing: &str, created: OffsetDateTime, body: &str) -> Command {
        Command::queued(
            ThingName::parse(thing).expect("name"),
            TenantId::parse("demo").expect("tenant"),
            CommandId::new_v7(),
            &parse_command_request(body.as_bytes()).expect("valid"),
            created,
        )
    }

    #[tokio::test]
    async fn due_commands_time_out_or_expire_and_others_are_left_alone() {
        let store = MemoryCommands::default();
        let t = now();
        let body = r#"{"name": "reboot", "expiresInSeconds": 600, "ackTimeoutSeconds": 30}"#;
        let expired = command("trk-1", t - Duration::minutes(11), body);
        let waiting = command("trk-1", t - Duration::minutes(9), body);
        let sent = |ago: i64| {
            let created = t - Duration::seconds(ago);
            command("trk-2", created, body)
                .after(Sent, created, None)
                .expect("forward")
        };
        let unanswered = sent(31);
        let in_time = sent(29);
        let delivered = sent(60)
            .after(Delivered, t - Duration::seconds(55), None)
            .expect("forward");
        let done = sent(60)
            .after(Successful, t - Duration::seconds(55), None)
            .expect("forward");
        for c in [&expired, &waiting, &unanswered, &in_time, &delivered, &done] {
            store.put(c.clone());
        }
        let swept = sweep(&store, t).await.expect("ok");
        assert_eq!(
            swept,
            Swept {
                timed_out: 2,
                expired: 1,
                unchanged: 0
            }
        );
        let status = |c: &Command| {
            store
                .all()
                .into_iter()
                .find(|s| s.id == c.id)
                .map(|s| s.status)
        };
        assert_eq!(status(&expired), Some(Expired));
        assert_eq!(status(&waiting), Some(Queued));
        assert_eq!(status(&unanswered), Some(Timeout));
        assert_eq!(status(&in_time), Some(Sent));
        assert_eq!(status(&delivered), Some(Timeout));
        assert_eq!(status(&done), Some(Successful));
        assert_eq!(
            sweep(&store, t).await.expect("ok"),
            Swept::default(),
            "a second run finds nothing"
        );
        store.set_unavailable(true);
        assert!(
            sweep(&store, t).await.is_err(),
            "a store failure fails the run"
        );
    }
}
