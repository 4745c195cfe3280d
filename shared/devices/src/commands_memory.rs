//! Device commands in memory, for unit tests: the same rules as the DynamoDB store.

use crate::command::{Command, CommandId, CommandStatus};
use crate::commands_dynamodb::{decode_after, encode_after, Decision};
use crate::ports::{CommandCreated, CommandStore, Transition};
use crate::registration::ThingName;
use async_trait::async_trait;
use cellbridge_core::memory::{locked, page_of};
use cellbridge_core::store::IdempotencyClaim;
use cellbridge_core::store::{Page, PageRequest, StoreError};
use cellbridge_core::tenant::TenantId;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use time::OffsetDateTime;

/// What an idempotency key (per tenant) made: thing, command and request digest.
type Claimed = (ThingName, CommandId, String);

/// Commands in memory, with the same rules.
#[derive(Debug, Default)]
pub struct MemoryCommands {
    commands: Mutex<BTreeMap<(ThingName, CommandId), Command>>,
    claims: Mutex<HashMap<(TenantId, String), Claimed>>,
    unavailable: Mutex<bool>,
}

impl MemoryCommands {
    /// Every call fails from now on (or works again), as a store outage would.
    pub fn set_unavailable(&self, unavailable: bool) {
        *locked(&self.unavailable) = unavailable;
    }

    /// Every stored command, by thing and id.
    pub fn all(&self) -> Vec<Command> {
        locked(&self.commands).values().cloned().collect()
    }

    /// Stores `command` as it is, whatever its status (to set up tests).
    pub fn put(&self, command: Command) {
        locked(&self.commands).insert((command.thing.clone(), command.id.clone()), command);
    }

    fn available(&self) -> Result<(), StoreError> {
        if *locked(&self.unavailable) {
            Err(StoreError::Unavailable("unavailable on purpose".to_owned()))
        } else {
            Ok(())
        }
    }

    fn change(
        &self,
        thing: &ThingName,
        id: &CommandId,
        decision: Decision<'_>,
    ) -> Result<Transition, StoreError> {
        self.available()?;
        let mut commands = locked(&self.commands);
        let Some(current) = commands.get_mut(&(thing.clone(), id.clone())) else {
            return Ok(Transition::Missing);
        };
        match decision.apply(current) {
            Some(next) => {
                *current = next;
                Ok(Transition::Applied(current.status))
            }
            None => Ok(Transition::Stale {
                current: current.status,
            }),
        }
    }
}

#[async_trait]
impl CommandStore for MemoryCommands {
    async fn create_command(
        &self,
        command: &Command,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<CommandCreated, StoreError> {
        self.available()?;
        let mut claims = locked(&self.claims);
        let mut commands = locked(&self.commands);
        if let Some(claim) = claim {
            let key = (command.tenant.clone(), claim.key.clone());
            if let Some((thing, id, digest)) = claims.get(&key) {
                let existing = commands
                    .get(&(thing.clone(), id.clone()))
                    .cloned()
                    .ok_or_else(|| StoreError::Corrupt("claim without its command".into()))?;
                return Ok(CommandCreated::Replayed {
                    existing: Box::new(existing),
                    same_request: *digest == claim.request_digest,
                });
            }
            claims.insert(
                key,
                (
                    command.thing.clone(),
                    command.id.clone(),
                    claim.request_digest.clone(),
                ),
            );
        }
        let key = (command.thing.clone(), command.id.clone());
        if commands.contains_key(&key) {
            return Err(StoreError::Unavailable(format!(
                "command {} exists",
                command.id
            )));
        }
        commands.insert(key, command.clone());
        Ok(CommandCreated::Created)
    }

    async fn get_command(
        &self,
        thing: &ThingName,
        id: &CommandId,
    ) -> Result<Option<Command>, StoreError> {
        self.available()?;
        Ok(locked(&self.commands)
            .get(&(thing.clone(), id.clone()))
            .cloned())
    }

    async fn list_commands(
        &self,
        thing: &ThingName,
        page: &PageRequest,
    ) -> Result<Page<Command>, StoreError> {
        self.available()?;
        let after = decode_after(page)?;
        let items: Vec<Command> = locked(&self.commands)
            .values()
            .rev()
            .filter(|c| &c.thing == thing && after.as_ref().is_none_or(|a| &c.id < a))
            .cloned()
            .collect();
        Ok(page_of(items, page.limit, encode_after))
    }

    async fn queued_commands(
        &self,
        thing: &ThingName,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Command>, StoreError> {
        self.available()?;
        Ok(locked(&self.commands)
            .values()
            .filter(|c| &c.thing == thing && c.deliverable(now))
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn transition(
        &self,
        thing: &ThingName,
        id: &CommandId,
        to: CommandStatus,
        at: OffsetDateTime,
        detail: Option<&str>,
    ) -> Result<Transition, StoreError> {
        self.change(thing, id, Decision::To { to, at, detail })
    }

    async fn sweep_command(
        &self,
        thing: &ThingName,
        id: &CommandId,
        now: OffsetDateTime,
    ) -> Result<Transition, StoreError> {
        self.change(thing, id, Decision::Sweep { now })
    }

    async fn due_for_sweep(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<(ThingName, CommandId)>, StoreError> {
        self.available()?;
        Ok(locked(&self.commands)
            .values()
            .filter(|c| c.due_at().is_some_and(|due| due <= now))
            .take(limit as usize)
            .map(|c| (c.thing.clone(), c.id.clone()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::CommandStatus::*;
    use crate::testing::{queued_command as command, thing};
    use time::macros::datetime;
    use time::Duration;

    const T0: OffsetDateTime = datetime!(2026-11-22 09:00 UTC);

    fn claim(key: &str, digest: &str) -> IdempotencyClaim {
        IdempotencyClaim {
            key: key.to_owned(),
            request_digest: digest.to_owned(),
        }
    }

    /// The in-memory store keeps the rules the DynamoDB one has (tests/commands_on_local_aws.rs).
    #[tokio::test]
    async fn memory_commands_keep_the_same_rules() {
        let store = MemoryCommands::default();
        let first = command("trk-1", T0, 60);
        assert_eq!(
            store
                .create_command(&first, Some(&claim("k1", "a")))
                .await
                .expect("ok"),
            CommandCreated::Created
        );
        let again = command("trk-1", T0, 60);
        match store
            .create_command(&again, Some(&claim("k1", "a")))
            .await
            .expect("ok")
        {
            CommandCreated::Replayed {
                existing,
                same_request: true,
            } => assert_eq!(existing.id, first.id),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            store.create_command(&again, Some(&claim("k1", "b"))).await,
            Ok(CommandCreated::Replayed {
                same_request: false,
                ..
            })
        ));
        assert_eq!(store.all().len(), 1, "a replay stores nothing");

        let id = &first.id;
        let trk1 = thing("trk-1");
        let at = T0 + Duration::seconds(1);
        assert_eq!(
            store
                .transition(&trk1, id, Sent, at, None)
                .await
                .expect("ok"),
            Transition::Applied(Sent)
        );
        assert_eq!(
            store
                .transition(&trk1, id, Sent, at, None)
                .await
                .expect("ok"),
            Transition::Stale { current: Sent }
        );
        assert_eq!(
            store
                .transition(&thing("trk-2"), id, Delivered, at, None)
                .await
                .expect("ok"),
            Transition::Missing,
            "a command is its thing's"
        );
        assert_eq!(
            store.sweep_command(&trk1, id, at).await.expect("ok"),
            Transition::Stale { current: Sent },
            "not due"
        );
        let due: Vec<_> = store
            .due_for_sweep(T0 + Duration::seconds(31), 10)
            .await
            .expect("ok");
        assert_eq!(due, [(trk1.clone(), id.clone())]);
        assert_eq!(
            store
                .sweep_command(&trk1, id, T0 + Duration::seconds(31))
                .await
                .expect("ok"),
            Transition::Applied(Timeout)
        );
        assert!(store
            .due_for_sweep(T0 + Duration::days(1), 10)
            .await
            .expect("ok")
            .is_empty());

        let older = command("trk-1", T0 + Duration::seconds(2), 60);
        let newer = command("trk-1", T0 + Duration::seconds(3), 3600);
        for c in [&older, &newer] {
            store.create_command(c, None).await.expect("stored");
        }
        let queued = store
            .queued_commands(&trk1, T0 + Duration::seconds(120), 10)
            .await
            .expect("ok");
        assert_eq!(
            queued.iter().map(|c| &c.id).collect::<Vec<_>>(),
            [&newer.id],
            "the expired one is not delivered"
        );
        let page = store
            .list_commands(
                &trk1,
                &PageRequest {
                    limit: 2,
                    cursor: None,
                },
            )
            .await
            .expect("ok");
        assert_eq!(
            page.items.iter().map(|c| &c.id).collect::<Vec<_>>(),
            [&newer.id, &older.id],
            "newest first"
        );
        let rest = store
            .list_commands(
                &trk1,
                &PageRequest {
                    limit: 2,
                    cursor: page.next_cursor,
                },
            )
            .await
            .expect("ok");
        assert_eq!(
            rest.items.iter().map(|c| &c.id).collect::<Vec<_>>(),
            [&first.id]
        );
        assert_eq!(rest.next_cursor, None);
        store.set_unavailable(true);
        assert!(store.get_command(&trk1, id).await.is_err());
    }
}
