//! The live-event tables in DynamoDB.
//!
//! `EventsTable`: each tenant's events under `tenantId`, by `seq`, with their TTL (`expiresAt`,
//! seconds). The item `seq = 0` is the tenant's counter (`newest`): events are put in the same
//! transaction that moves it, so every place up to `newest` holds an event, and the table's
//! stream carries them in the order they were given out. A subscriber waiting for its replay
//! names itself on the counter (`woke`). Beside each event, in the same transaction, a marker
//! item (`tenantId` = `recorded#<stream record>`) remembers which change-stream record it came
//! from for a day, so a batch the recorder is handed again does not tell a change twice.
//!
//! `LiveConnectionsTable`: one item per connection (`connectionId`), its tenant (`ByTenant`), its
//! subscription as JSON text, its place (`after`) and whether it is catching up.

use crate::counts::{CountDeltas, Counted, FleetCounts, FleetSummary, Tally};
use crate::event::{Change, Event, EventType};
use crate::ports::{Connection, Connections, EventLog, Standing};
use crate::subscription::Subscription;
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use cellbridge_core::dynamodb::{
    backend, n, s, unbuildable, updated_unless_condition_failed, Item,
};
use cellbridge_core::store::StoreError;
use cellbridge_core::tenant::TenantId;
use std::collections::HashMap;
use std::time::Duration;
use time::OffsetDateTime;

/// The counter's place: events start at 1.
const COUNTER_SEQ: u64 = 0;
/// A transaction holds at most 100 items: the counter and this many events with their markers.
const EVENTS_PER_TRANSACTION: usize = 49;
/// Marker items' key prefix: no tenant id contains `#`.
const MARKER_PREFIX: &str = "recorded#";
/// The key prefix of each tenant's fleet numbers (`counts#<tenant>`, at the counter's place).
const COUNTS_PREFIX: &str = "counts#";
/// A transaction holds at most 100 items: the numbers and this many records' markers.
const COUNTED_PER_TRANSACTION: usize = 99;
/// Lambda hands a failed stream batch again for up to a day (the stream's retention).
const MARKER_LIFETIME: time::Duration = time::Duration::hours(25);
/// Writers of one tenant racing for its counter: each lost race reads it again.
const APPEND_ATTEMPTS: u32 = 30;

#[derive(Debug, Clone)]
pub struct DynamoEventLog {
    client: Client,
    table: String,
}

impl DynamoEventLog {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn key(tenant: &TenantId, seq: u64) -> [(String, AttributeValue); 2] {
        [
            ("tenantId".to_owned(), s(tenant.as_str())),
            ("seq".to_owned(), n(seq)),
        ]
    }

    fn event_put(
        &self,
        event: &Event,
        keep_until: OffsetDateTime,
    ) -> Result<TransactWriteItem, StoreError> {
        let data = serde_json::to_string(&event.data)
            .map_err(|e| StoreError::Corrupt(format!("event data: {e}")))?;
        let at = event
            .at
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| StoreError::Corrupt(format!("event time: {e}")))?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(
                [
                    ("tenantId", s(event.tenant.as_str())),
                    ("seq", n(event.seq)),
                    ("type", s(event.kind.as_str())),
                    ("subject", s(&event.subject)),
                    ("at", s(at)),
                    ("data", s(data)),
                    ("expiresAt", n(keep_until.unix_timestamp())),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            ))
            .build()
            .map_err(unbuildable)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn counter_update(
        &self,
        tenant: &TenantId,
        stored: u64,
        newest: u64,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(tenant, COUNTER_SEQ).into_iter().collect()))
            // A wake's name is for the wake's own stream record only.
            .update_expression("SET newest = :newest REMOVE woke")
            .expression_attribute_values(":newest", n(newest));
        update = if stored == 0 {
            update.condition_expression("attribute_not_exists(newest)")
        } else {
            update
                .condition_expression("newest = :stored")
                .expression_attribute_values(":stored", n(stored))
        };
        Ok(TransactWriteItem::builder()
            .update(update.build().map_err(unbuildable)?)
            .build())
    }

    fn marker_put(
        &self,
        source: &str,
        now: OffsetDateTime,
    ) -> Result<TransactWriteItem, StoreError> {
        marker_put(&self.table, source, now)
    }

    /// One transaction: the counter from `stored` on, and `changes` after it, each with its
    /// marker.
    async fn append_chunk(
        &self,
        tenant: &TenantId,
        stored: u64,
        changes: &[Change],
        keep_until: OffsetDateTime,
    ) -> Result<Appended, StoreError> {
        let events: Vec<Event> = changes
            .iter()
            .zip(stored + 1..)
            .map(|(change, seq)| change.clone().at_seq(seq))
            .collect();
        let newest = stored + events.len() as u64;
        let mut write = self
            .client
            .transact_write_items()
            .transact_items(self.counter_update(tenant, stored, newest)?);
        // Which change each marker item (by its place in the transaction) stands for.
        let mut markers: Vec<(usize, usize)> = Vec::new();
        let mut items = 1;
        for (index, (event, change)) in events.iter().zip(changes).enumerate() {
            write = write.transact_items(self.event_put(event, keep_until)?);
            items += 1;
            if let Some(source) = &change.source {
                write = write.transact_items(self.marker_put(source, change.at.max(keep_until))?);
                markers.push((items, index));
                items += 1;
            }
        }
        let error = match write.send().await {
            Ok(_) => return Ok(Appended::Written(events)),
            Err(error) => error,
        };
        let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
            error.as_service_error()
        else {
            return Err(backend(error));
        };
        let reasons: Vec<Option<&str>> = cancelled
            .cancellation_reasons()
            .iter()
            .map(|r| r.code())
            .collect();
        let recorded: Vec<usize> = markers
            .iter()
            .filter(|(item, _)| {
                reasons.get(*item).copied().flatten() == Some("ConditionalCheckFailed")
            })
            .map(|(_, change)| *change)
            .collect();
        if !recorded.is_empty() {
            return Ok(Appended::AlreadyRecorded(recorded));
        }
        // The counter moved, or DynamoDB cancelled for a write racing on the same items: both a
        // lost race to run again.
        let raced = reasons
            .iter()
            .any(|code| matches!(code, Some("ConditionalCheckFailed" | "TransactionConflict")));
        if raced {
            Ok(Appended::Raced)
        } else {
            Err(backend(error))
        }
    }
}

/// How one transaction of an append ended.
enum Appended {
    Written(Vec<Event>),
    /// Another writer moved the counter first.
    Raced,
    /// These changes (by index) were recorded before, by an earlier hand of the same batch.
    AlreadyRecorded(Vec<usize>),
}

/// The item remembering that the change-stream record `source` was taken in, put only if it
/// was not before.
fn marker_put(
    table: &str,
    source: &str,
    now: OffsetDateTime,
) -> Result<TransactWriteItem, StoreError> {
    let put = Put::builder()
        .table_name(table)
        .item("tenantId", s(format!("{MARKER_PREFIX}{source}")))
        .item("seq", n(COUNTER_SEQ))
        .item("expiresAt", n((now + MARKER_LIFETIME).unix_timestamp()))
        .condition_expression("attribute_not_exists(tenantId)")
        .build()
        .map_err(unbuildable)?;
    Ok(TransactWriteItem::builder().put(put).build())
}

fn number(item: &Item, name: &str) -> Result<u64, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(text)) => text
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("event item: {name} {text:?}"))),
        _ => Err(StoreError::Corrupt(format!("event item: no number {name}"))),
    }
}

fn text<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(text)) => Ok(text),
        _ => Err(StoreError::Corrupt(format!("event item: no text {name}"))),
    }
}

/// What an item of the events table is, as its stream shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum EventsTableItem {
    Event(Event),
    /// The tenant's counter: the last place given out, and the connection that last woke it.
    Counter {
        tenant: TenantId,
        newest: u64,
        woke: Option<String>,
    },
    /// Which change-stream record was recorded, or a tenant's fleet numbers: nothing to send.
    Marker,
}

/// Reads an item of the events table (a stream record's new image).
pub fn events_table_item(item: &Item) -> Result<EventsTableItem, StoreError> {
    let tenant_text = text(item, "tenantId")?;
    if tenant_text.starts_with(MARKER_PREFIX) || tenant_text.starts_with(COUNTS_PREFIX) {
        return Ok(EventsTableItem::Marker);
    }
    let tenant = TenantId::parse(tenant_text)
        .ok_or_else(|| StoreError::Corrupt(format!("event item: tenant {tenant_text:?}")))?;
    let seq = number(item, "seq")?;
    if seq == COUNTER_SEQ {
        let newest = if item.contains_key("newest") {
            number(item, "newest")?
        } else {
            0
        };
        let woke = match item.get("woke") {
            Some(AttributeValue::S(id)) => Some(id.clone()),
            _ => None,
        };
        return Ok(EventsTableItem::Counter {
            tenant,
            newest,
            woke,
        });
    }
    let kind_text = text(item, "type")?;
    let kind = EventType::parse(kind_text)
        .ok_or_else(|| StoreError::Corrupt(format!("event item: type {kind_text:?}")))?;
    let at = OffsetDateTime::parse(
        text(item, "at")?,
        &time::format_description::well_known::Rfc3339,
    )
    .map_err(|e| StoreError::Corrupt(format!("event item: at: {e}")))?;
    let data = serde_json::from_str(text(item, "data")?)
        .map_err(|e| StoreError::Corrupt(format!("event item: data: {e}")))?;
    Ok(EventsTableItem::Event(Event {
        seq,
        tenant,
        kind,
        subject: text(item, "subject")?.to_owned(),
        at,
        data,
    }))
}

#[async_trait]
impl EventLog for DynamoEventLog {
    async fn append(
        &self,
        tenant: &TenantId,
        changes: Vec<Change>,
        keep_until: OffsetDateTime,
    ) -> Result<Vec<Event>, StoreError> {
        let mut appended = Vec::with_capacity(changes.len());
        let mut pending: Vec<Change> = changes;
        let mut attempt = 0;
        while !pending.is_empty() {
            let take = pending.len().min(EVENTS_PER_TRANSACTION);
            let stored = self.newest(tenant).await?;
            match self
                .append_chunk(tenant, stored, &pending[..take], keep_until)
                .await?
            {
                Appended::Written(events) => {
                    appended.extend(events);
                    pending.drain(..take);
                    attempt = 0;
                    continue;
                }
                Appended::AlreadyRecorded(indexes) => {
                    let mut index = 0;
                    pending.retain(|_| {
                        let keep = index >= take || !indexes.contains(&index);
                        index += 1;
                        keep
                    });
                    continue;
                }
                Appended::Raced => {}
            }
            attempt += 1;
            if attempt >= APPEND_ATTEMPTS {
                return Err(StoreError::Unavailable(format!(
                    "the event counter of {tenant} kept moving under {APPEND_ATTEMPTS} attempts"
                )));
            }
            // Another writer of the tenant won: step aside a little, longer each time.
            tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
        }
        Ok(appended)
    }

    async fn read(
        &self,
        tenant: &TenantId,
        from: u64,
        through: u64,
        now: OffsetDateTime,
    ) -> Result<Vec<Event>, StoreError> {
        let from = from.max(1);
        if from > through {
            return Ok(Vec::new());
        }
        let mut events = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression("tenantId = :tenant AND seq BETWEEN :from AND :through")
                .expression_attribute_values(":tenant", s(tenant.as_str()))
                .expression_attribute_values(":from", n(from))
                .expression_attribute_values(":through", n(through))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(backend)?;
            for item in output.items() {
                // The TTL removes expired items late; past the window they count as gone.
                if number(item, "expiresAt")? as i64 <= now.unix_timestamp() {
                    continue;
                }
                if let EventsTableItem::Event(event) = events_table_item(item)? {
                    events.push(event);
                }
            }
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(events),
            }
        }
    }

    async fn newest(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(tenant, COUNTER_SEQ).into_iter().collect()))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend)?;
        match output.item {
            Some(item) if item.contains_key("newest") => number(&item, "newest"),
            _ => Ok(0),
        }
    }

    async fn is_kept(
        &self,
        tenant: &TenantId,
        seq: u64,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(tenant, seq).into_iter().collect()))
            .consistent_read(true)
            .projection_expression("expiresAt")
            .send()
            .await
            .map_err(backend)?;
        Ok(match output.item {
            Some(item) => number(&item, "expiresAt")? as i64 > now.unix_timestamp(),
            None => false,
        })
    }

    async fn wake(&self, tenant: &TenantId, connection: &str) -> Result<(), StoreError> {
        let mut attempt: u64 = 0;
        loop {
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(Self::key(tenant, COUNTER_SEQ).into_iter().collect()))
                .update_expression("SET woke = :connection ADD wakes :one")
                .expression_attribute_values(":connection", s(connection))
                .expression_attribute_values(":one", n(1))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(()),
                // An append's transaction on the counter at this moment: try again.
                Err(error)
                    if attempt < 5
                        && matches!(
                            error.as_service_error(),
                            Some(UpdateItemError::TransactionConflictException(_))
                        ) =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(10 * attempt)).await;
                }
                Err(error) => return Err(backend(error)),
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct DynamoConnections {
    client: Client,
    table: String,
}

impl DynamoConnections {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn item(connection: &Connection) -> Result<Item, StoreError> {
        let mut item: Item = [
            ("connectionId", s(&connection.id)),
            ("tenantId", s(connection.tenant.as_str())),
            ("subject", s(&connection.subject)),
            ("connectedAt", n(connection.connected_at.unix_timestamp())),
            ("expiresAt", n(connection.expires_at.unix_timestamp())),
            ("after", n(connection.after)),
            ("catchingUp", AttributeValue::Bool(connection.catching_up)),
            ("generation", n(connection.generation)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        if let Some(subscription) = &connection.subscription {
            item.insert("subscription".into(), s(subscription_text(subscription)?));
        }
        Ok(item)
    }

    fn connection_of(item: &Item) -> Result<Connection, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("connection item: {what}"));
        let text = |name: &str| match item.get(name) {
            Some(AttributeValue::S(text)) => Ok(text.as_str()),
            _ => Err(corrupt(name)),
        };
        let number = |name: &str| match item.get(name) {
            Some(AttributeValue::N(text)) => text.parse::<i64>().map_err(|_| corrupt(name)),
            _ => Err(corrupt(name)),
        };
        let time = |name: &str| {
            OffsetDateTime::from_unix_timestamp(number(name)?).map_err(|_| corrupt(name))
        };
        let subscription = match item.get("subscription") {
            Some(AttributeValue::S(text)) => {
                Some(serde_json::from_str(text).map_err(|_| corrupt("subscription"))?)
            }
            _ => None,
        };
        Ok(Connection {
            id: text("connectionId")?.to_owned(),
            tenant: TenantId::parse(text("tenantId")?).ok_or_else(|| corrupt("tenantId"))?,
            subject: text("subject")?.to_owned(),
            connected_at: time("connectedAt")?,
            expires_at: time("expiresAt")?,
            subscription,
            after: u64::try_from(number("after")?).map_err(|_| corrupt("after"))?,
            catching_up: matches!(item.get("catchingUp"), Some(AttributeValue::Bool(true))),
            generation: match item.get("generation") {
                Some(AttributeValue::N(_)) => {
                    u64::try_from(number("generation")?).map_err(|_| corrupt("generation"))?
                }
                _ => 0,
            },
        })
    }
}

fn subscription_text(subscription: &Subscription) -> Result<String, StoreError> {
    serde_json::to_string(subscription)
        .map_err(|e| StoreError::Corrupt(format!("subscription: {e}")))
}

#[async_trait]
impl Connections for DynamoConnections {
    async fn put(&self, connection: &Connection) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::item(connection)?))
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("connectionId", s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend)?;
        output.item.as_ref().map(Self::connection_of).transpose()
    }

    async fn subscribe(
        &self,
        id: &str,
        subscription: Option<Subscription>,
        after: u64,
    ) -> Result<Option<u64>, StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("connectionId", s(id))
            .condition_expression("attribute_exists(connectionId)")
            .expression_attribute_names("#after", "after")
            .expression_attribute_values(":after", n(after))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew);
        update = match &subscription {
            Some(subscription) => update
                .update_expression(
                    "SET subscription = :subscription, #after = :after, catchingUp = :yes ADD generation :one",
                )
                .expression_attribute_values(":subscription", s(subscription_text(subscription)?))
                .expression_attribute_values(":yes", AttributeValue::Bool(true)),
            None => update
                .update_expression("SET #after = :after, catchingUp = :no REMOVE subscription ADD generation :one")
                .expression_attribute_values(":no", AttributeValue::Bool(false)),
        };
        match update.send().await {
            Ok(output) => {
                let generation = output
                    .attributes()
                    .and_then(|a| a.get("generation"))
                    .map(|g| {
                        number(
                            &HashMap::from([("generation".to_owned(), g.clone())]),
                            "generation",
                        )
                    })
                    .transpose()?
                    .unwrap_or(0);
                Ok(Some(generation))
            }
            Err(error)
                if matches!(
                    error.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(None)
            }
            Err(error) => Err(backend(error)),
        }
    }

    async fn settle(
        &self,
        id: &str,
        generation: u64,
        after: u64,
        standing: Standing,
    ) -> Result<bool, StoreError> {
        let expression = match standing {
            Standing::Live => "SET #after = :after, catchingUp = :no",
            Standing::CatchingUp => "SET #after = :after, catchingUp = :yes",
            Standing::Unsubscribed => "SET #after = :after, catchingUp = :no REMOVE subscription",
        };
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("connectionId", s(id))
            .condition_expression("generation = :generation")
            .update_expression(expression)
            .expression_attribute_names("#after", "after")
            .expression_attribute_values(":generation", n(generation))
            .expression_attribute_values(":after", n(after));
        update = match standing {
            Standing::CatchingUp => {
                update.expression_attribute_values(":yes", AttributeValue::Bool(true))
            }
            Standing::Live | Standing::Unsubscribed => {
                update.expression_attribute_values(":no", AttributeValue::Bool(false))
            }
        };
        updated_unless_condition_failed(update.send().await)
    }

    async fn remove(&self, id: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("connectionId", s(id))
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn of_tenant(&self, tenant: &TenantId) -> Result<Vec<Connection>, StoreError> {
        let mut connections = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .index_name("ByTenant")
                .key_condition_expression("tenantId = :tenant")
                .expression_attribute_values(":tenant", s(tenant.as_str()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(backend)?;
            for item in output.items() {
                match Self::connection_of(item) {
                    Ok(connection) => connections.push(connection),
                    // One unreadable record must not stop the tenant's other connections.
                    Err(error) => {
                        tracing::error!(%error, "a connection record could not be read; skipped")
                    }
                }
            }
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(connections),
            }
        }
    }
}

/// Each tenant's fleet numbers in the events table: one item per tenant, `counts#<tenant>`,
/// whose attributes are the tallies' names. A batch's records are added in transactions that
/// also put each record's marker, so a record handed again adds nothing.
#[derive(Debug, Clone)]
pub struct DynamoFleetCounts {
    client: Client,
    table: String,
}

impl DynamoFleetCounts {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn key(tenant: &TenantId) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("tenantId".to_owned(), s(format!("{COUNTS_PREFIX}{tenant}"))),
            ("seq".to_owned(), n(COUNTER_SEQ)),
        ])
    }

    /// One transaction: the records' markers and their deltas added up. `Err` holds the
    /// records (by index) counted before, when that is why it was cancelled; none when it
    /// collided with another writer of the numbers (another shard's batch).
    async fn add_chunk(
        &self,
        tenant: &TenantId,
        records: &[Counted],
    ) -> Result<Result<(), Vec<usize>>, StoreError> {
        let mut total = CountDeltas::default();
        for record in records {
            total.merge(&record.deltas);
        }
        let now = OffsetDateTime::now_utc();
        let mut write = self.client.transact_write_items();
        for record in records {
            write = write.transact_items(marker_put(
                &self.table,
                &format!("{COUNTS_PREFIX}{}", record.source),
                now,
            )?);
        }
        if !total.is_empty() {
            let mut update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(Self::key(tenant)));
            let mut adds = Vec::new();
            for (index, (tally, by)) in total.iter().enumerate() {
                adds.push(format!("#t{index} :t{index}"));
                update = update
                    .expression_attribute_names(format!("#t{index}"), tally.name())
                    .expression_attribute_values(format!(":t{index}"), n(by));
            }
            update = update.update_expression(format!("ADD {}", adds.join(", ")));
            write = write.transact_items(
                TransactWriteItem::builder()
                    .update(update.build().map_err(unbuildable)?)
                    .build(),
            );
        }
        let error = match write.send().await {
            Ok(_) => return Ok(Ok(())),
            Err(error) => error,
        };
        let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
            error.as_service_error()
        else {
            return Err(backend(error));
        };
        let counted_before: Vec<usize> = cancelled
            .cancellation_reasons()
            .iter()
            .take(records.len())
            .enumerate()
            .filter(|(_, reason)| reason.code() == Some("ConditionalCheckFailed"))
            .map(|(index, _)| index)
            .collect();
        if !counted_before.is_empty() {
            return Ok(Err(counted_before));
        }
        let conflicted = cancelled
            .cancellation_reasons()
            .iter()
            .any(|reason| reason.code() == Some("TransactionConflict"));
        if conflicted {
            Ok(Err(Vec::new()))
        } else {
            Err(backend(error))
        }
    }
}

#[async_trait]
impl FleetCounts for DynamoFleetCounts {
    async fn add(&self, tenant: &TenantId, records: Vec<Counted>) -> Result<(), StoreError> {
        let mut pending: Vec<Counted> = records
            .into_iter()
            .filter(|r| !r.deltas.is_empty())
            .collect();
        let mut collisions = 0;
        while !pending.is_empty() {
            let take = pending.len().min(COUNTED_PER_TRANSACTION);
            match self.add_chunk(tenant, &pending[..take]).await? {
                Ok(()) => {
                    pending.drain(..take);
                }
                Err(counted_before) if counted_before.is_empty() => {
                    collisions += 1;
                    if collisions >= APPEND_ATTEMPTS {
                        return Err(StoreError::Unavailable(format!(
                            "the numbers of {tenant} kept colliding under {APPEND_ATTEMPTS} attempts"
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(collisions))).await;
                }
                Err(counted_before) => {
                    let mut index = 0;
                    pending.retain(|_| {
                        let keep = index >= take || !counted_before.contains(&index);
                        index += 1;
                        keep
                    });
                }
            }
        }
        Ok(())
    }

    async fn summary(&self, tenant: &TenantId) -> Result<FleetSummary, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(tenant)))
            // A page reads the numbers again on an event: they must include it.
            .consistent_read(true)
            .send()
            .await
            .map_err(backend)?;
        let tallies = output
            .item
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, value)| {
                let tally = Tally::from_name(&name)?;
                match value {
                    AttributeValue::N(text) => text.parse::<i64>().ok().map(|value| (tally, value)),
                    _ => None,
                }
            });
        Ok(FleetSummary::of(tallies))
    }

    async fn replace(&self, tenant: &TenantId, counted: &CountDeltas) -> Result<(), StoreError> {
        // One put: the item is the tallies and nothing else, so tallies the recount did not
        // find go with it.
        let mut item = Self::key(tenant);
        for (tally, value) in counted.iter() {
            item.insert(tally.name(), n(value));
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }
}
