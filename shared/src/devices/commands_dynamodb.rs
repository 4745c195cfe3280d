//! Device commands on DynamoDB, and in memory for unit tests.
//!
//! Table (`COMMANDS_TABLE`): `thingName` / `commandId` (UUID v7, so a thing's commands sort by
//! creation time). Attributes: `tenantId`, `name`, `params` (JSON text, kept exactly as sent),
//! `status`, `createdAt`, `sentAt`, `expiresAt`, `updatedAt` (ms), `ackTimeoutSeconds`,
//! `history` (a list of `{status, at, detail?}`), `purgeAt` (TTL, seconds).
//!
//! Sparse GSI `ByDeadline` on `openShard` / `dueAt` (ms): only open commands carry them, and the
//! final write removes them, so the sweep reads what is due and never scans the table.
//! `openShard` spreads open commands over a few partitions by a random digit of the id.
//!
//! Idempotency keys live in the idempotency table (`IDEMPOTENCY_TABLE`) like the bulk changes',
//! as `tenant#command#key`, written in one transaction with the command.
//!
//! Every status change reads the command, decides with the domain rules
//! ([`Command::after`], [`Command::swept`]) and writes on condition that the status is still
//! the one read. Statuses only move forward, so an unchanged status means an unchanged command,
//! and of two racing writers only one applies.

use crate::bulk_changes::dynamodb::IDEMPOTENCY_WINDOW;
use crate::common::cursor;
use crate::common::cursor::AfterId;
use crate::common::dynamodb::{backend, unbuildable, updated_unless_condition_failed};
use crate::common::dynamodb::{epoch_ms, n, s, time_from_epoch_ms, Item};
use crate::common::store::IdempotencyClaim;
use crate::common::store::{Page, PageRequest, StoreError};
use crate::common::tenant::TenantId;
use crate::devices::command::{
    Command, CommandId, CommandStatus, Deadlines, HistoryEntry, MAX_EXPIRES_IN,
};
use crate::devices::ports::{CommandCreated, CommandStore, Transition};
use crate::devices::registration::ThingName;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;
use time::{Duration, OffsetDateTime};

const DEADLINE_INDEX: &str = "ByDeadline";
/// Partitions of the deadline index; the sweep queries each.
pub const OPEN_SHARDS: u8 = 8;
/// Commands and their history are kept this long, then DynamoDB's TTL removes them.
pub const RETENTION: Duration = Duration::days(90);
/// Each lost race means the command moved forward, which it can do at most three times.
const WRITE_ATTEMPTS: usize = 5;

/// The index partition of an open command: the id's last hex digit is random (UUID v7).
pub(crate) fn open_shard(id: &CommandId) -> String {
    let digit = id
        .as_str()
        .chars()
        .last()
        .and_then(|c| c.to_digit(16))
        .unwrap_or(0);
    shard_name(digit as u8 % OPEN_SHARDS)
}

fn shard_name(shard: u8) -> String {
    format!("open#{shard}")
}

/// Per tenant, like the bulk changes' keys; those never contain `#`, so the two never meet.
fn claim_key(tenant: &TenantId, claim: &IdempotencyClaim) -> String {
    format!("{tenant}#command#{}", claim.key)
}

fn history_entry(entry: &HistoryEntry) -> AttributeValue {
    let mut fields = HashMap::from([
        ("status".to_owned(), s(entry.status.as_str())),
        ("at".to_owned(), n(epoch_ms(entry.at))),
    ]);
    if let Some(detail) = &entry.detail {
        fields.insert("detail".to_owned(), s(detail.as_str()));
    }
    AttributeValue::M(fields)
}

pub(crate) fn command_item(command: &Command) -> Result<Item, StoreError> {
    let params = serde_json::to_string(&command.params)
        .map_err(|e| StoreError::Corrupt(format!("params: {e}")))?;
    let mut item = HashMap::from([
        ("thingName".to_owned(), s(command.thing.as_str())),
        ("commandId".to_owned(), s(command.id.as_str())),
        ("tenantId".to_owned(), s(command.tenant.as_str())),
        ("name".to_owned(), s(command.name.as_str())),
        ("params".to_owned(), s(params)),
        ("status".to_owned(), s(command.status.as_str())),
        ("createdAt".to_owned(), n(epoch_ms(command.created_at))),
        (
            "expiresAt".to_owned(),
            n(epoch_ms(command.deadlines.expires_at)),
        ),
        (
            "ackTimeoutSeconds".to_owned(),
            n(command.deadlines.ack_timeout.whole_seconds()),
        ),
        ("updatedAt".to_owned(), n(epoch_ms(command.updated_at()))),
        (
            "history".to_owned(),
            AttributeValue::L(command.history.iter().map(history_entry).collect()),
        ),
        (
            "purgeAt".to_owned(),
            n((command.created_at + RETENTION).unix_timestamp()),
        ),
    ]);
    if let Some(sent) = command.sent_at {
        item.insert("sentAt".to_owned(), n(epoch_ms(sent)));
    }
    if let Some(due) = command.due_at() {
        item.insert("openShard".to_owned(), s(open_shard(&command.id)));
        item.insert("dueAt".to_owned(), n(epoch_ms(due)));
    }
    Ok(item)
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("command item: {what}"))
}

fn text<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| corrupt(&format!("no {name}")))
}

pub(crate) fn command_from(item: &Item) -> Result<Command, StoreError> {
    let thing = text(item, "thingName")?;
    let id = text(item, "commandId")?;
    let tenant = text(item, "tenantId")?;
    let status = text(item, "status")?;
    let params: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text(item, "params")?)
            .map_err(|e| corrupt(&format!("params: {e}")))?;
    let ack_timeout: i64 = item
        .get("ackTimeoutSeconds")
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| corrupt("no ackTimeoutSeconds"))?;
    let history = match item.get("history") {
        Some(AttributeValue::L(entries)) => entries
            .iter()
            .map(|entry| {
                let fields = entry.as_m().map_err(|_| corrupt("history entry"))?;
                Ok(HistoryEntry {
                    status: fields
                        .get("status")
                        .and_then(|v| v.as_s().ok())
                        .and_then(|v| CommandStatus::parse(v))
                        .ok_or_else(|| corrupt("history status"))?,
                    at: time_from_epoch_ms(fields.get("at"))
                        .ok_or_else(|| corrupt("history time"))?,
                    detail: fields.get("detail").and_then(|v| v.as_s().ok()).cloned(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?,
        _ => Vec::new(),
    };
    Ok(Command {
        thing: ThingName::parse(thing).ok_or_else(|| corrupt("thing name"))?,
        id: CommandId::parse(id).ok_or_else(|| corrupt("command id"))?,
        tenant: TenantId::parse(tenant).ok_or_else(|| corrupt("tenant"))?,
        name: text(item, "name")?.to_owned(),
        params,
        status: CommandStatus::parse(status).ok_or_else(|| corrupt("status"))?,
        created_at: time_from_epoch_ms(item.get("createdAt"))
            .ok_or_else(|| corrupt("createdAt"))?,
        sent_at: time_from_epoch_ms(item.get("sentAt")),
        deadlines: Deadlines {
            expires_at: time_from_epoch_ms(item.get("expiresAt"))
                .ok_or_else(|| corrupt("expiresAt"))?,
            ack_timeout: Duration::seconds(ack_timeout),
        },
        history,
    })
}

pub(crate) fn decode_after(page: &PageRequest) -> Result<Option<CommandId>, StoreError> {
    page.cursor
        .as_deref()
        .map(|c| {
            cursor::decode_after_id(c)
                .and_then(|p| CommandId::parse(&p.after).ok_or(StoreError::InvalidCursor))
        })
        .transpose()
}

pub(crate) fn encode_after(command: &Command) -> String {
    cursor::encode(&AfterId {
        after: command.id.to_string(),
    })
}

/// How one status change is decided from the command as stored.
#[derive(Clone, Copy)]
pub(crate) enum Decision<'a> {
    /// Move to `to` if that is forward.
    To {
        to: CommandStatus,
        at: OffsetDateTime,
        detail: Option<&'a str>,
    },
    /// Whatever the sweep's rule says at `now`.
    Sweep { now: OffsetDateTime },
}

impl Decision<'_> {
    pub(crate) fn apply(self, current: &Command) -> Option<Command> {
        match self {
            Decision::To { to, at, detail } => current.after(to, at, detail),
            Decision::Sweep { now } => {
                let to = current.swept(now)?;
                let why = if to == CommandStatus::Expired {
                    "not delivered before it expired"
                } else {
                    "no final acknowledgement within the ack timeout"
                };
                current.after(to, now, Some(why))
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct DynamoCommands {
    client: Client,
    table: String,
    idempotency_table: String,
}

impl DynamoCommands {
    pub fn new(
        client: Client,
        table: impl Into<String>,
        idempotency_table: impl Into<String>,
    ) -> Self {
        Self {
            client,
            table: table.into(),
            idempotency_table: idempotency_table.into(),
        }
    }

    /// The command an earlier request made with this claim's key, if the key is still bound.
    async fn replay(
        &self,
        tenant: &TenantId,
        claim: &IdempotencyClaim,
        now: OffsetDateTime,
    ) -> Result<Option<CommandCreated>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.idempotency_table)
            .key("idempotencyKey", s(claim_key(tenant, claim)))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend)?;
        let Some(stored) = out.item else {
            return Ok(None);
        };
        let expires: i64 = stored
            .get("expiresAt")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(i64::MAX);
        if expires < now.unix_timestamp() {
            return Ok(None);
        }
        let thing = stored
            .get("thingName")
            .and_then(|v| v.as_s().ok())
            .and_then(|v| ThingName::parse(v));
        let id = stored
            .get("commandId")
            .and_then(|v| v.as_s().ok())
            .and_then(|v| CommandId::parse(v));
        let (Some(thing), Some(id)) = (thing, id) else {
            return Err(corrupt("idempotency claim without a command"));
        };
        let existing = self.get_command(&thing, &id).await?.ok_or_else(|| {
            StoreError::Corrupt(format!("idempotency key names missing command {id}"))
        })?;
        let same_request = stored
            .get("requestDigest")
            .and_then(|v| v.as_s().ok())
            .is_some_and(|d| *d == claim.request_digest);
        Ok(Some(CommandCreated::Replayed {
            existing: Box::new(existing),
            same_request,
        }))
    }

    async fn change(
        &self,
        thing: &ThingName,
        id: &CommandId,
        decision: Decision<'_>,
    ) -> Result<Transition, StoreError> {
        for _ in 0..WRITE_ATTEMPTS {
            let Some(current) = self.get_command(thing, id).await? else {
                return Ok(Transition::Missing);
            };
            let Some(next) = decision.apply(&current) else {
                return Ok(Transition::Stale {
                    current: current.status,
                });
            };
            let entry = next
                .history
                .last()
                .map(history_entry)
                .ok_or_else(|| corrupt("empty history"))?;
            let mut set = vec![
                "#status = :to",
                "updatedAt = :at",
                "#history = list_append(#history, :entry)",
            ];
            let mut update = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("thingName", s(thing.as_str()))
                .key("commandId", s(id.as_str()))
                .condition_expression("#status = :seen")
                .expression_attribute_names("#status", "status")
                .expression_attribute_names("#history", "history")
                .expression_attribute_values(":seen", s(current.status.as_str()))
                .expression_attribute_values(":to", s(next.status.as_str()))
                .expression_attribute_values(":at", n(epoch_ms(next.updated_at())))
                .expression_attribute_values(":entry", AttributeValue::L(vec![entry]));
            if let (Some(sent), None) = (next.sent_at, current.sent_at) {
                set.push("sentAt = :sent");
                update = update.expression_attribute_values(":sent", n(epoch_ms(sent)));
            }
            let expression = match next.due_at() {
                Some(due) => {
                    set.push("openShard = :shard");
                    set.push("dueAt = :due");
                    update = update
                        .expression_attribute_values(":shard", s(open_shard(id)))
                        .expression_attribute_values(":due", n(epoch_ms(due)));
                    format!("SET {}", set.join(", "))
                }
                // Final: out of the sweep's index.
                None => format!("SET {} REMOVE openShard, dueAt", set.join(", ")),
            };
            let written =
                updated_unless_condition_failed(update.update_expression(expression).send().await)?;
            if written {
                return Ok(Transition::Applied(next.status));
            }
        }
        Err(StoreError::Unavailable(format!(
            "command {id} of {thing} kept changing during {WRITE_ATTEMPTS} attempts"
        )))
    }
}

#[async_trait]
impl CommandStore for DynamoCommands {
    async fn create_command(
        &self,
        command: &Command,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<CommandCreated, StoreError> {
        let item = command_item(command)?;
        let Some(claim) = claim else {
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(commandId)")
                .send()
                .await
                .map_err(backend)?;
            return Ok(CommandCreated::Created);
        };
        let claim_item: Item = HashMap::from([
            (
                "idempotencyKey".to_owned(),
                s(claim_key(&command.tenant, claim)),
            ),
            ("thingName".to_owned(), s(command.thing.as_str())),
            ("commandId".to_owned(), s(command.id.as_str())),
            ("requestDigest".to_owned(), s(claim.request_digest.as_str())),
            (
                "expiresAt".to_owned(),
                n((command.created_at + IDEMPOTENCY_WINDOW).unix_timestamp()),
            ),
        ]);
        let put_command = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(commandId)")
            .build()
            .map_err(unbuildable)?;
        // TTL deletes lazily: an expired claim may still be there, and no longer binds the key.
        let put_claim = Put::builder()
            .table_name(&self.idempotency_table)
            .set_item(Some(claim_item))
            .condition_expression("attribute_not_exists(idempotencyKey) OR expiresAt < :now")
            .expression_attribute_values(":now", n(command.created_at.unix_timestamp()))
            .build()
            .map_err(unbuildable)?;
        let written = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put_command).build())
            .transact_items(TransactWriteItem::builder().put(put_claim).build())
            .send()
            .await;
        match written {
            Ok(_) => Ok(CommandCreated::Created),
            // A cancelled transaction is a used key when the claim exists; otherwise a failure.
            Err(error) => match self
                .replay(&command.tenant, claim, command.created_at)
                .await?
            {
                Some(outcome) => Ok(outcome),
                None => Err(backend(error)),
            },
        }
    }

    async fn get_command(
        &self,
        thing: &ThingName,
        id: &CommandId,
    ) -> Result<Option<Command>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("thingName", s(thing.as_str()))
            .key("commandId", s(id.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend)?;
        out.item.as_ref().map(command_from).transpose()
    }

    async fn list_commands(
        &self,
        thing: &ThingName,
        page: &PageRequest,
    ) -> Result<Page<Command>, StoreError> {
        let after = decode_after(page)?;
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("thingName = :thing")
            .expression_attribute_values(":thing", s(thing.as_str()))
            .scan_index_forward(false)
            .limit(i32::try_from(page.limit).unwrap_or(i32::MAX));
        if let Some(after) = &after {
            query = query
                .exclusive_start_key("thingName", s(thing.as_str()))
                .exclusive_start_key("commandId", s(after.as_str()));
        }
        let out = query.send().await.map_err(backend)?;
        let items: Vec<Command> = out
            .items()
            .iter()
            .map(command_from)
            .collect::<Result<_, _>>()?;
        let next_cursor = out.last_evaluated_key.and(items.last()).map(encode_after);
        Ok(Page { items, next_cursor })
    }

    async fn queued_commands(
        &self,
        thing: &ThingName,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Command>, StoreError> {
        // No queued command is older than the longest expiry, so only the thing's recent ids
        // are read, however long its history.
        let since = CommandId::lower_bound_at(now - MAX_EXPIRES_IN);
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("thingName = :thing AND commandId >= :since")
                .filter_expression("#status = :queued AND expiresAt > :now")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":thing", s(thing.as_str()))
                .expression_attribute_values(":since", s(since.as_str()))
                .expression_attribute_values(":queued", s(CommandStatus::Queued.as_str()))
                .expression_attribute_values(":now", n(epoch_ms(now)))
                // Consistent, so a command stored just before the device connected is seen.
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(backend)?;
            for item in out.items() {
                if found.len() < limit as usize {
                    found.push(command_from(item)?);
                }
            }
            match out.last_evaluated_key {
                Some(key) if found.len() < limit as usize => start = Some(key),
                _ => return Ok(found),
            }
        }
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
            .await
    }

    async fn sweep_command(
        &self,
        thing: &ThingName,
        id: &CommandId,
        now: OffsetDateTime,
    ) -> Result<Transition, StoreError> {
        self.change(thing, id, Decision::Sweep { now }).await
    }

    async fn due_for_sweep(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<(ThingName, CommandId)>, StoreError> {
        let mut due = Vec::new();
        for shard in 0..OPEN_SHARDS {
            let mut start: Option<Item> = None;
            loop {
                let left = (limit as usize).saturating_sub(due.len());
                if left == 0 {
                    return Ok(due);
                }
                let out = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(DEADLINE_INDEX)
                    .key_condition_expression("openShard = :shard AND dueAt <= :now")
                    .expression_attribute_values(":shard", s(shard_name(shard)))
                    .expression_attribute_values(":now", n(epoch_ms(now)))
                    .limit(i32::try_from(left).unwrap_or(i32::MAX))
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(backend)?;
                for item in out.items() {
                    let thing = ThingName::parse(text(item, "thingName")?)
                        .ok_or_else(|| corrupt("thing name"))?;
                    let id = CommandId::parse(text(item, "commandId")?)
                        .ok_or_else(|| corrupt("command id"))?;
                    due.push((thing, id));
                }
                match out.last_evaluated_key {
                    Some(key) => start = Some(key),
                    None => break,
                }
            }
        }
        Ok(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::command::CommandStatus::*;
    use crate::testing::queued_command as command;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-22 09:00 UTC);

    #[test]
    fn items_round_trip_and_only_open_commands_carry_the_index_keys() {
        let now = command("trk-1", OffsetDateTime::now_utc(), 60);
        let sent = now
            .after(Sent, OffsetDateTime::now_utc(), None)
            .expect("forward");
        let read = command_from(&command_item(&sent).expect("item")).expect("read back");
        assert_eq!(read, sent, "times are whole milliseconds");
        let queued = command("trk-1", T0, 60);
        let item = command_item(&queued).expect("item");
        assert_eq!(command_from(&item).expect("read back"), queued);
        assert!(item.contains_key("openShard"));
        assert_eq!(
            item.get("dueAt"),
            Some(&n(epoch_ms(T0 + Duration::seconds(60))))
        );
        let done = queued.after(Successful, T0, Some("done")).expect("forward");
        let item = command_item(&done).expect("item");
        assert_eq!(command_from(&item).expect("read back"), done);
        assert!(!item.contains_key("openShard") && !item.contains_key("dueAt"));
        let shards: std::collections::BTreeSet<String> =
            (0..200).map(|_| open_shard(&CommandId::new_v7())).collect();
        assert_eq!(shards.len(), usize::from(OPEN_SHARDS), "{shards:?}");
    }
}
