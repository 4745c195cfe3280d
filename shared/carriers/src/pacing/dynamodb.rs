//! The account gate on DynamoDB, shared by every worker instance.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use aws_sdk_dynamodb::Client;
use cellbridge_bulk_changes::dynamodb::WORK_CLAIM_RETENTION;
use cellbridge_core::dynamodb::{backend, updated_unless_condition_failed};
use cellbridge_core::dynamodb::{epoch_ms, n, s};
use cellbridge_core::store::StoreError;
use time::OffsetDateTime;

/// The account gate on DynamoDB: one item per account in the idempotency table, taken with a
/// conditional write, so every worker instance of every function sees the same gate.
#[derive(Debug, Clone)]
pub struct DynamoGate {
    client: Client,
    table: String,
}

impl DynamoGate {
    pub fn on_table(client: Client, idempotency_table: &str) -> Self {
        Self {
            client,
            table: idempotency_table.to_owned(),
        }
    }
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
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            let current = match result {
                Ok(_) => {
                    return Ok(crate::port::GateTicket {
                        account: account.to_owned(),
                        holder,
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
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("idempotencyKey", s(format!("gate#{}", ticket.account)))
            .update_expression("SET heldUntil = :zero, nextFree = :next")
            .condition_expression("holder = :me")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":next", n(epoch_ms(started) + spacing.as_millis() as i64))
            .expression_attribute_values(":me", s(&ticket.holder))
            .send()
            .await;
        // Someone else holding it means this holder's time ran out already: nothing to free.
        updated_unless_condition_failed(result).map(|_| ())
    }
}
