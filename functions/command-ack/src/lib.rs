//! Acknowledgements of device commands. The topic rule
//! `SELECT *, topic(2) AS thingName, timestamp() AS receivedAt FROM 'devices/+/commands/ack'`
//! hands over the device's `{commandId, status, detail?}` with the thing and the receive time.
//!
//! An acknowledgement moves its command forward only: a redelivered one (MQTT QoS 1), or one
//! older than what is stored, changes nothing. The rule invokes this function asynchronously and
//! Lambda retries a failed invocation, so a message that can never apply (malformed, unknown
//! command, stale) is logged and acknowledged; only a store failure is an error, which a retry
//! may overcome.

use cellbridge_core::store::StoreError;
use cellbridge_devices::command::parse_ack;
use cellbridge_devices::command::CommandStatus;
use cellbridge_devices::ports::{CommandStore, Transition};
use serde_json::Value;
use time::OffsetDateTime;

/// This function's configuration, read once at cold start: the commands table acks are recorded in.
pub type Config = cellbridge_devices::wiring::CommandTables;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied(CommandStatus),
    /// A duplicate, or an acknowledgement the command is already past.
    Stale(CommandStatus),
    /// No such command of that thing (or of any thing: a device inventing ids).
    UnknownCommand,
    Malformed,
}

/// `now` stands in for the receive time when the rule did not add one.
pub async fn handle(
    commands: &dyn CommandStore,
    message: &Value,
    now: OffsetDateTime,
) -> Result<Outcome, StoreError> {
    let ack = match parse_ack(message) {
        Ok(ack) => ack,
        Err(error) => {
            // The message is device input of unknown content: its size is bounded by MQTT,
            // but only the thing name (checked) would be safe to log as a field.
            let thing = message
                .get("thingName")
                .and_then(Value::as_str)
                .and_then(cellbridge_devices::registration::ThingName::parse);
            tracing::warn!(thing = ?thing.as_ref().map(|t| t.as_str()), %error, "command acknowledgement dropped");
            return Ok(Outcome::Malformed);
        }
    };
    let to = ack.status.status();
    let at = ack.received_at.unwrap_or(now);
    let outcome = match commands
        .transition(&ack.thing, &ack.command_id, to, at, ack.detail.as_deref())
        .await?
    {
        Transition::Applied(status) => Outcome::Applied(status),
        Transition::Stale { current } => Outcome::Stale(current),
        Transition::Missing => Outcome::UnknownCommand,
    };
    match outcome {
        Outcome::Applied(status) => {
            tracing::info!(thing = %ack.thing, command_id = %ack.command_id, %status, "command acknowledged")
        }
        Outcome::Stale(current) => {
            tracing::info!(thing = %ack.thing, command_id = %ack.command_id, acknowledged = %to, %current, "duplicate or late acknowledgement; nothing changed")
        }
        _ => {
            tracing::warn!(thing = %ack.thing, command_id = %ack.command_id, "acknowledgement of an unknown command; dropped")
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellbridge_core::tenant::TenantId;
    use cellbridge_devices::command::{parse_command_request, Command, CommandId};
    use cellbridge_devices::commands_memory::MemoryCommands;
    use cellbridge_devices::registration::ThingName;
    use serde_json::json;
    use CommandStatus::*;

    const DELIVERED: &str = include_str!("../../../events/command-ack/ack-delivered.json");
    const SUCCESSFUL: &str = include_str!("../../../events/command-ack/ack-successful.json");
    const MALFORMED: &str = include_str!("../../../events/command-ack/ack-malformed.json");

    fn sample(text: &str) -> Value {
        serde_json::from_str(text).expect("sample")
    }

    /// The samples' command, SENT to trk-1 at 2026-11-22T09:00:00Z.
    fn store() -> (MemoryCommands, Command) {
        let id = sample(DELIVERED)["commandId"]
            .as_str()
            .and_then(CommandId::parse)
            .expect("id");
        let request = parse_command_request(br#"{"name": "set-interval"}"#).expect("valid");
        let created = OffsetDateTime::from_unix_timestamp(1_795_338_000).expect("time");
        let command = Command::queued(
            ThingName::parse("trk-1").expect("name"),
            TenantId::parse("demo").expect("tenant"),
            id,
            &request,
            created,
        )
        .after(Sent, created, None)
        .expect("forward");
        let store = MemoryCommands::default();
        store.put(command.clone());
        (store, command)
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_795_338_010).expect("time")
    }

    async fn ack(store: &MemoryCommands, sample_text: &str) -> Outcome {
        handle(store, &sample(sample_text), now())
            .await
            .expect("the store is up")
    }

    #[tokio::test]
    async fn the_samples_deliver_then_succeed_and_repeats_change_nothing() {
        let (store, command) = store();
        assert_eq!(ack(&store, DELIVERED).await, Outcome::Applied(Delivered));
        assert_eq!(ack(&store, SUCCESSFUL).await, Outcome::Applied(Successful));
        assert_eq!(
            ack(&store, SUCCESSFUL).await,
            Outcome::Stale(Successful),
            "a redelivery"
        );
        assert_eq!(
            ack(&store, DELIVERED).await,
            Outcome::Stale(Successful),
            "overtaken by the final ack"
        );
        let stored = store.all().pop().expect("stored");
        assert_eq!(stored.id, command.id);
        let history: Vec<_> = stored
            .history
            .iter()
            .map(|h| (h.status, h.at.unix_timestamp(), h.detail.clone()))
            .collect();
        assert_eq!(
            history,
            [
                (Queued, 1_795_338_000, None),
                (Sent, 1_795_338_000, None),
                (Delivered, 1_795_338_001, None),
                (
                    Successful,
                    1_795_338_002,
                    Some("interval set to 5 s".to_owned())
                ),
            ],
            "times from the rule's receivedAt"
        );
    }

    #[tokio::test]
    async fn a_final_ack_before_the_delivered_one_wins() {
        let (store, _) = store();
        assert_eq!(ack(&store, SUCCESSFUL).await, Outcome::Applied(Successful));
        assert_eq!(ack(&store, DELIVERED).await, Outcome::Stale(Successful));
        assert_eq!(store.all()[0].status, Successful);
    }

    #[tokio::test]
    async fn garbage_and_unknown_commands_are_dropped_and_store_failures_retried() {
        let (store, command) = store();
        assert_eq!(ack(&store, MALFORMED).await, Outcome::Malformed);
        for garbage in [json!("text"), json!({}), json!({"thingName": "bad/name"})] {
            assert_eq!(
                handle(&store, &garbage, now()).await.expect("ok"),
                Outcome::Malformed,
                "{garbage}"
            );
        }
        let unknown = json!({"commandId": CommandId::new_v7().as_str(), "status": "failed", "thingName": "trk-1"});
        assert_eq!(
            handle(&store, &unknown, now()).await.expect("ok"),
            Outcome::UnknownCommand
        );
        let other_thing =
            json!({"commandId": command.id.as_str(), "status": "failed", "thingName": "trk-2"});
        assert_eq!(
            handle(&store, &other_thing, now()).await.expect("ok"),
            Outcome::UnknownCommand,
            "a device cannot acknowledge another's command"
        );
        assert_eq!(store.all()[0].status, Sent, "nothing changed");
        store.set_unavailable(true);
        assert!(handle(&store, &sample(DELIVERED), now()).await.is_err());
    }
}
