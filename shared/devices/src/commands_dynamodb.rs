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

use crate::command::{Command, CommandId, CommandStatus, Deadlines, HistoryEntry, MAX_EXPIRES_IN};
use crate::ports::{CommandCreated, CommandStore, Transition};
use crate::registration::ThingName;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use cellbridge_core::cursor;
use cellbridge_core::cursor::AfterId;
use cellbridge_core::dynamodb::{backend, unbuildable, updated_unless_condition_failed};
use cellbridge_core::dynamodb::{epoch_ms, from_item_named, n, s, to_item, Item};
use cellbridge_core::store::IdempotencyClaim;
use cellbridge_core::store::IDEMPOTENCY_WINDOW;
use cellbridge_core::store::{Page, PageRequest, StoreError};
use cellbridge_core::tenant::TenantId;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use time::serde::timestamp::milliseconds_i64;
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

/// One history entry as stored: a map of `status`, `at` (ms) and, when given, `detail`.
#[derive(Serialize, Deserialize)]
struct HistoryItem {
    status: String,
    #[serde(with = "milliseconds_i64")]
    at: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

impl HistoryItem {
    fn new(entry: &HistoryEntry) -> Self {
        Self {
            status: entry.status.as_str().to_owned(),
            at: entry.at,
            detail: entry.detail.clone(),
        }
    }

    fn entry(self) -> Result<HistoryEntry, StoreError> {
        Ok(HistoryEntry {
            status: CommandStatus::parse(&self.status)
                .ok_or_else(|| corrupt(&format!("history status {:?}", self.status)))?,
            at: self.at,
            detail: self.detail,
        })
    }
}

/// A history entry as `list_append` adds it to the stored list.
fn history_entry(entry: &HistoryEntry) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(HistoryItem::new(entry))
        .map_err(|e| corrupt(&format!("history entry: {e}")))
}

/// A command as the commands table holds it. `change` updates `status`, `updatedAt`,
/// `history`, `sentAt`, `openShard` and `dueAt` in place, by those names.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommandItem {
    thing_name: String,
    command_id: String,
    tenant_id: String,
    name: String,
    /// JSON text, kept exactly as sent.
    params: String,
    status: String,
    #[serde(with = "milliseconds_i64")]
    created_at: OffsetDateTime,
    #[serde(
        default,
        with = "milliseconds_i64::option",
        skip_serializing_if = "Option::is_none"
    )]
    sent_at: Option<OffsetDateTime>,
    #[serde(with = "milliseconds_i64")]
    expires_at: OffsetDateTime,
    ack_timeout_seconds: i64,
    /// The last history entry's time (ms), for readers of the table; not read back.
    #[serde(skip_deserializing)]
    updated_at: i64,
    #[serde(default)]
    history: Vec<HistoryItem>,
    /// The TTL, in seconds; not read back.
    #[serde(skip_deserializing)]
    purge_at: i64,
    /// The deadline index's keys, on open commands only; not read back.
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    open_shard: Option<String>,
    /// Milliseconds.
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    due_at: Option<i64>,
}

impl CommandItem {
    fn new(command: &Command) -> Result<Self, StoreError> {
        let due = command.due_at();
        Ok(Self {
            thing_name: command.thing.to_string(),
            command_id: command.id.to_string(),
            tenant_id: command.tenant.to_string(),
            name: command.name.clone(),
            params: serde_json::to_string(&command.params)
                .map_err(|e| corrupt(&format!("params: {e}")))?,
            status: command.status.as_str().to_owned(),
            created_at: command.created_at,
            sent_at: command.sent_at,
            expires_at: command.deadlines.expires_at,
            ack_timeout_seconds: command.deadlines.ack_timeout.whole_seconds(),
            updated_at: epoch_ms(command.updated_at()),
            history: command.history.iter().map(HistoryItem::new).collect(),
            purge_at: (command.created_at + RETENTION).unix_timestamp(),
            open_shard: due.map(|_| open_shard(&command.id)),
            due_at: due.map(epoch_ms),
        })
    }

    fn command(self) -> Result<Command, StoreError> {
        Ok(Command {
            thing: ThingName::parse(&self.thing_name)
                .ok_or_else(|| corrupt(&format!("thing name {:?}", self.thing_name)))?,
            id: CommandId::parse(&self.command_id)
                .ok_or_else(|| corrupt(&format!("command id {:?}", self.command_id)))?,
            tenant: TenantId::parse(&self.tenant_id)
                .ok_or_else(|| corrupt(&format!("tenant {:?}", self.tenant_id)))?,
            name: self.name,
            params: serde_json::from_str(&self.params)
                .map_err(|e| corrupt(&format!("params: {e}")))?,
            status: CommandStatus::parse(&self.status)
                .ok_or_else(|| corrupt(&format!("status {:?}", self.status)))?,
            created_at: self.created_at,
            sent_at: self.sent_at,
            deadlines: Deadlines {
                expires_at: self.expires_at,
                ack_timeout: Duration::seconds(self.ack_timeout_seconds),
            },
            history: self
                .history
                .into_iter()
                .map(HistoryItem::entry)
                .collect::<Result<_, _>>()?,
        })
    }
}

const COMMAND_ITEM: &str = "command item";

pub(crate) fn command_item(command: &Command) -> Result<Item, StoreError> {
    to_item(&CommandItem::new(command)?)
}

/// A command as an item of the commands table (a stream record's image) holds it.
pub fn command_from_image(item: Item) -> Result<Command, StoreError> {
    command_from(item)
}

pub(crate) fn command_from(item: Item) -> Result<Command, StoreError> {
    from_item_named::<CommandItem>(COMMAND_ITEM, item)?.command()
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("{COMMAND_ITEM}: {what}"))
}

fn text<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| corrupt(&format!("no {name}")))
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
            let last = next
                .history
                .last()
                .ok_or_else(|| corrupt("empty history"))?;
            let entry = history_entry(last)?;
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
        out.item.map(command_from).transpose()
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
            .items
            .unwrap_or_default()
            .into_iter()
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
            for item in out.items.unwrap_or_default() {
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
    use crate::command::CommandStatus::*;
    use crate::testing::queued_command as command;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-22 09:00 UTC);

    /// A command delivered after one SENT write, as deployed tables hold it; `change` appends
    /// history entries and sets `status`, `updatedAt`, `sentAt`, `openShard`, `dueAt` by name.
    fn delivered() -> (Command, Item) {
        let mut queued = command("trk-1", T0, 60);
        queued.id = CommandId::parse("019aab3c-5e00-7def-8abc-0123456789ab").expect("id");
        let command = queued
            .after(Sent, T0 + Duration::milliseconds(1_500), None)
            .and_then(|c| c.after(Delivered, T0 + Duration::seconds(3), Some("rebooting")))
            .expect("forward");
        let history = |status: &str, at: i64, detail: Option<&str>| {
            let mut entry =
                HashMap::from([("status".to_owned(), s(status)), ("at".to_owned(), n(at))]);
            if let Some(detail) = detail {
                entry.insert("detail".to_owned(), s(detail));
            }
            AttributeValue::M(entry)
        };
        let item = HashMap::from([
            ("thingName".to_owned(), s("trk-1")),
            (
                "commandId".to_owned(),
                s("019aab3c-5e00-7def-8abc-0123456789ab"),
            ),
            ("tenantId".to_owned(), s("demo")),
            ("name".to_owned(), s("reboot")),
            ("params".to_owned(), s(r#"{"delay":5}"#)),
            ("status".to_owned(), s("DELIVERED")),
            ("createdAt".to_owned(), n(1_795_338_000_000_i64)),
            ("sentAt".to_owned(), n(1_795_338_001_500_i64)),
            ("expiresAt".to_owned(), n(1_795_338_060_000_i64)),
            ("ackTimeoutSeconds".to_owned(), n(30)),
            ("updatedAt".to_owned(), n(1_795_338_003_000_i64)),
            (
                "history".to_owned(),
                AttributeValue::L(vec![
                    history("QUEUED", 1_795_338_000_000, None),
                    history("SENT", 1_795_338_001_500, None),
                    history("DELIVERED", 1_795_338_003_000, Some("rebooting")),
                ]),
            ),
            ("purgeAt".to_owned(), n(1_803_114_000_i64)),
            ("openShard".to_owned(), s("open#3")),
            ("dueAt".to_owned(), n(1_795_338_031_500_i64)),
        ]);
        (command, item)
    }

    #[test]
    fn command_items_keep_their_stored_attributes_and_read_back() {
        let (delivered, stored) = delivered();
        assert_eq!(command_item(&delivered).expect("item"), stored);
        assert_eq!(command_from(stored.clone()).expect("read"), delivered);
        let entry = delivered
            .history
            .last()
            .map(|e| history_entry(e).expect("entry"));
        assert_eq!(
            entry.as_ref(),
            stored
                .get("history")
                .and_then(|h| h.as_l().ok())
                .and_then(|h| h.last())
        );
    }

    #[test]
    fn corrupt_command_items_are_errors_that_name_the_fault() {
        let corrupt = |change: &dyn Fn(&mut Item)| {
            let (_, mut item) = delivered();
            change(&mut item);
            match command_from(item) {
                Err(StoreError::Corrupt(why)) => why,
                other => panic!("expected a corrupt item, got {other:?}"),
            }
        };
        let why = corrupt(&|i| {
            i.remove("ackTimeoutSeconds");
        });
        assert!(why.contains("ackTimeoutSeconds"), "{why}");
        let why = corrupt(&|i| {
            i.insert("status".to_owned(), s("LOST"));
        });
        assert!(why.contains("status"), "{why}");
        let why = corrupt(&|i| {
            i.insert("params".to_owned(), s("{not json"));
        });
        assert!(why.contains("params"), "{why}");
        let why = corrupt(&|i| {
            i.insert("history".to_owned(), AttributeValue::L(vec![s("QUEUED")]));
        });
        assert!(why.contains("history"), "{why}");
        let why = corrupt(&|i| {
            i.insert("commandId".to_owned(), s("not-a-uuid"));
        });
        assert!(
            why.contains("command id") || why.contains("commandId"),
            "{why}"
        );
    }

    #[test]
    fn items_round_trip_and_only_open_commands_carry_the_index_keys() {
        let now = command("trk-1", OffsetDateTime::now_utc(), 60);
        let sent = now
            .after(Sent, OffsetDateTime::now_utc(), None)
            .expect("forward");
        let read = command_from(command_item(&sent).expect("item")).expect("read back");
        assert_eq!(read, sent, "times are whole milliseconds");
        let queued = command("trk-1", T0, 60);
        let item = command_item(&queued).expect("item");
        assert_eq!(command_from(item.clone()).expect("read back"), queued);
        assert!(item.contains_key("openShard"));
        assert_eq!(
            item.get("dueAt"),
            Some(&n(epoch_ms(T0 + Duration::seconds(60))))
        );
        let done = queued.after(Successful, T0, Some("done")).expect("forward");
        let item = command_item(&done).expect("item");
        assert_eq!(command_from(item.clone()).expect("read back"), done);
        assert!(!item.contains_key("openShard") && !item.contains_key("dueAt"));
        let shards: std::collections::BTreeSet<String> =
            (0..200).map(|_| open_shard(&CommandId::new_v7())).collect();
        assert_eq!(shards.len(), usize::from(OPEN_SHARDS), "{shards:?}");
    }
}
