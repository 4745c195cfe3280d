//! The account gate on the local DynamoDB provisioned from template.yaml: one holder at a time,
//! and the ends of the last calls kept with the gate, so the call a second's worth of calls later
//! waits for a second after an earlier one ended, whichever instance makes it.

use anyhow::{Context, Result};
use cellbridge::carriers::account::gate_spacing;
use cellbridge::carriers::pacing::after_gated_call;
use cellbridge::carriers::pacing::dynamodb::DynamoGate;
use cellbridge::carriers::port::AccountGate;
use cellbridge::common::clock::{epoch_ms, from_epoch_ms};
use cellbridge_tests::LocalAwsStack;
use std::time::Duration;
use time::OffsetDateTime;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_keeps_the_last_calls_ends_for_every_instance() -> Result<()> {
    let stack = LocalAwsStack::start().await?;
    let table = stack.name("IdempotencyTable")?;
    // Two instances' gates on the same table: they share one item per account.
    let gates = [
        DynamoGate::on_table(stack.dynamodb(), &table),
        DynamoGate::on_table(stack.dynamodb(), &table),
    ];
    let spacing = gate_spacing(5);
    let hold = Duration::from_secs(20);
    let mut expected_ends: Vec<OffsetDateTime> = Vec::new();
    for call in 0..7 {
        let gate = &gates[call % 2];
        let ticket = gate.enter("jasper:bench", spacing, hold).await?;
        // What the previous holder left (milliseconds, as the item keeps them).
        assert_eq!(ticket.recent_ends, expected_ends, "call {call}");
        let second = gates[(call + 1) % 2].enter("jasper:bench", spacing, Duration::from_millis(1));
        let refused = tokio::time::timeout(Duration::from_millis(300), second).await;
        assert!(refused.is_err(), "call {call}: a second holder got in");
        let started = OffsetDateTime::now_utc();
        gate.leave(&ticket, started, spacing).await?;

        let item = stack
            .dynamodb()
            .get_item()
            .table_name(&table)
            .key(
                "idempotencyKey",
                aws_sdk_dynamodb::types::AttributeValue::S("gate#jasper:bench".into()),
            )
            .consistent_read(true)
            .send()
            .await?
            .item
            .context("the gate item")?;
        let number = |value: &aws_sdk_dynamodb::types::AttributeValue| -> Result<i64> {
            Ok(value
                .as_n()
                .map_err(|_| anyhow::anyhow!("not a number"))?
                .parse()?)
        };
        let ends: Vec<OffsetDateTime> = item
            .get("recentEnds")
            .and_then(|v| v.as_l().ok())
            .context("recentEnds")?
            .iter()
            .map(|v| number(v).map(from_epoch_ms))
            .collect::<Result<_>>()?;
        assert_eq!(
            ends.len(),
            (call + 1).min(5),
            "a second's worth of ends at most"
        );
        assert_eq!(
            ends[..ends.len() - 1],
            expected_ends[expected_ends.len().saturating_sub(4)..]
        );
        let last_end = *ends.last().context("this call's end")?;
        let started_ms = from_epoch_ms(epoch_ms(started));
        assert!(
            last_end >= started_ms,
            "the end is taken after the call began"
        );
        let (next_free, kept) = after_gated_call(&expected_ends, started, last_end, spacing);
        assert_eq!(kept, ends);
        let stored_next = from_epoch_ms(number(item.get("nextFree").context("nextFree")?)?);
        // Stored to the millisecond.
        assert!(
            (stored_next - next_free).abs() < time::Duration::milliseconds(1),
            "call {call}: {stored_next} against {next_free}"
        );
        expected_ends = ends;
    }
    stack.stop().await;
    Ok(())
}
