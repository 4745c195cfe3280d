//! The account gate on DynamoDB, shared by every worker instance.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use cellbridge_bulk_changes::dynamodb::WORK_CLAIM_RETENTION;
use cellbridge_core::dynamodb::{backend, updated_unless_condition_failed};
use cellbridge_core::dynamodb::{epoch_ms, n, s};
use cellbridge_core::store::StoreError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use time::OffsetDateTime;

/// The account gate on DynamoDB: one item per account in the idempotency table, taken with a
/// conditional write, so every worker instance of every function sees the same gate.
#[derive(Debug, Clone)]
pub struct DynamoGate {
    client: Client,
    table: String,
    /// The next free slot of each paced account as this instance last saw it, so a reservation
    /// usually succeeds on its first write instead of learning the slot from a refused one.
    next_slots: Arc<Mutex<HashMap<String, i64>>>,
}

impl DynamoGate {
    pub fn on_table(client: Client, idempotency_table: &str) -> Self {
        Self {
            client,
            table: idempotency_table.to_owned(),
            next_slots: Arc::default(),
        }
    }

    fn last_seen_slot(&self, account: &str) -> i64 {
        self.next_slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(account)
            .copied()
            .unwrap_or(0)
    }

    fn saw_slot(&self, account: &str, next_slot: i64) {
        self.next_slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(account.to_owned(), next_slot);
    }
}

/// The call ends a gate item remembers (epoch milliseconds), oldest first.
fn recent_ends_of(item: Option<&HashMap<String, AttributeValue>>) -> Vec<OffsetDateTime> {
    let Some(Ok(ends)) = item
        .and_then(|item| item.get("recentEnds"))
        .map(AttributeValue::as_l)
    else {
        return Vec::new();
    };
    ends.iter()
        .filter_map(|end| end.as_n().ok()?.parse::<i64>().ok())
        .map(cellbridge_core::clock::from_epoch_ms)
        .collect()
}

#[async_trait]
impl crate::port::AccountGate for DynamoGate {
    async fn enter(
        &self,
        account: &str,
        spacing: std::time::Duration,
        hold: std::time::Duration,
    ) -> Result<crate::port::GateTicket, StoreError> {
        let holder = uuid::Uuid::new_v4().to_string();
        let key = format!("gate#{account}");
        loop {
            let now = OffsetDateTime::now_utc();
            let now_ms = epoch_ms(now);
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("idempotencyKey", s(&key))
                .update_expression(
                    "SET holder = :me, heldUntil = :held, nextFree = :next, expiresAt = :expires",
                )
                .condition_expression(
                    "attribute_not_exists(idempotencyKey) OR (heldUntil < :now AND nextFree <= :now)",
                )
                .expression_attribute_values(":me", s(&holder))
                .expression_attribute_values(":held", n(now_ms + hold.as_millis() as i64))
                .expression_attribute_values(":next", n(now_ms + spacing.as_millis() as i64))
                .expression_attribute_values(":now", n(now_ms))
                .expression_attribute_values(
                    ":expires",
                    n((now + WORK_CLAIM_RETENTION).unix_timestamp()),
                )
                // The ends of the last calls (`recentEnds`, set on leaving) come with the ticket.
                .return_values(ReturnValue::AllOld)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            let current = match result {
                Ok(entered) => {
                    return Ok(crate::port::GateTicket {
                        account: account.to_owned(),
                        holder,
                        recent_ends: recent_ends_of(entered.attributes()),
                    })
                }
                Err(error) => match error.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(refused)) => {
                        refused.item().cloned().unwrap_or_default()
                    }
                    _ => return Err(backend(error)),
                },
            };
            let number = |name: &str| {
                current
                    .get(name)
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(0)
            };
            let poll = crate::pacing::GATE_POLL.as_millis() as i64;
            let until = number("nextFree").max(number("heldUntil").min(now_ms + poll));
            let wait_ms = (until - now_ms).clamp(1, 1_000) as u64;
            tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
        }
    }

    async fn leave(
        &self,
        ticket: &crate::port::GateTicket,
        started: OffsetDateTime,
        spacing: std::time::Duration,
    ) -> Result<(), StoreError> {
        let (next_free, recent_ends) = crate::pacing::after_gated_call(
            &ticket.recent_ends,
            started,
            OffsetDateTime::now_utc(),
            spacing,
        );
        let ends = recent_ends.into_iter().map(|at| n(epoch_ms(at))).collect();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("idempotencyKey", s(format!("gate#{}", ticket.account)))
            .update_expression("SET heldUntil = :zero, nextFree = :next, recentEnds = :ends")
            .condition_expression("holder = :me")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":next", n(epoch_ms(next_free)))
            .expression_attribute_values(":ends", AttributeValue::L(ends))
            .expression_attribute_values(":me", s(&ticket.holder))
            .send()
            .await;
        // Someone else holding it means this holder's time ran out already: nothing to free.
        updated_unless_condition_failed(result).map(|_| ())
    }

    async fn reserve(
        &self,
        account: &str,
        calls: u32,
        spacing: std::time::Duration,
        now: OffsetDateTime,
    ) -> Result<OffsetDateTime, StoreError> {
        let key = format!("pace#{account}");
        let length = i64::from(calls.max(1)) * spacing.as_millis() as i64;
        let now_ms = epoch_ms(now);
        let mut next_slot = self.last_seen_slot(account);
        // Each refusal means another caller took the slot tried, so this ends after at most as
        // many tries as there are callers ahead.
        loop {
            let start = next_slot.max(now_ms);
            // The stored slot only moves forward: a start at or after it, then past this call's.
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("idempotencyKey", s(&key))
                .update_expression("SET nextSlot = :end, expiresAt = :expires")
                .condition_expression("attribute_not_exists(nextSlot) OR nextSlot <= :start")
                .expression_attribute_values(":start", n(start))
                .expression_attribute_values(":end", n(start + length))
                .expression_attribute_values(
                    ":expires",
                    n((now + WORK_CLAIM_RETENTION).unix_timestamp()),
                )
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            match result {
                Ok(_) => {
                    self.saw_slot(account, start + length);
                    return Ok(now + std::time::Duration::from_millis((start - now_ms) as u64));
                }
                Err(error) => match error.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(refused)) => {
                        next_slot = refused
                            .item()
                            .and_then(|item| item.get("nextSlot"))
                            .and_then(|v| v.as_n().ok())
                            .and_then(|v| v.parse::<i64>().ok())
                            .unwrap_or(now_ms);
                        self.saw_slot(account, next_slot);
                    }
                    _ => return Err(backend(error)),
                },
            }
        }
    }
}
