//! The account gate in memory, for tests and benchmarks of one process.

use crate::port::*;
use async_trait::async_trait;
use cellbridge_core::memory::locked;
use cellbridge_core::store::*;
use std::collections::HashMap;
use std::sync::Mutex;
use time::OffsetDateTime;

/// One process's account gate, for tests: the same contract as the DynamoDB one.
#[derive(Default)]
pub struct MemoryGate {
    accounts: Mutex<HashMap<String, Held>>,
    /// Paced account to its next free start slot.
    next_slots: Mutex<HashMap<String, OffsetDateTime>>,
}

/// One account's gate: who holds it until when, when the next call may begin, and when the
/// last calls ended.
struct Held {
    holder: String,
    held_until: OffsetDateTime,
    next_free: OffsetDateTime,
    recent_ends: Vec<OffsetDateTime>,
}

#[async_trait]
impl AccountGate for MemoryGate {
    async fn enter(
        &self,
        account: &str,
        spacing: std::time::Duration,
        hold: std::time::Duration,
    ) -> Result<GateTicket, StoreError> {
        let holder = uuid::Uuid::new_v4().to_string();
        loop {
            let now = OffsetDateTime::now_utc();
            let wait = {
                let mut accounts = locked(&self.accounts);
                match accounts.get_mut(account) {
                    Some(held) if held.held_until > now || held.next_free > now => {
                        held.next_free
                            .max(held.held_until.min(now + crate::pacing::GATE_POLL))
                            - now
                    }
                    held => {
                        let recent_ends = held.map(|h| h.recent_ends.clone()).unwrap_or_default();
                        accounts.insert(
                            account.to_owned(),
                            Held {
                                holder: holder.clone(),
                                held_until: now + hold,
                                next_free: now + spacing,
                                recent_ends: recent_ends.clone(),
                            },
                        );
                        return Ok(GateTicket {
                            account: account.to_owned(),
                            holder,
                            recent_ends,
                        });
                    }
                }
            };
            let wait = std::time::Duration::try_from(wait).unwrap_or_default();
            tokio::time::sleep(wait.max(std::time::Duration::from_millis(1))).await;
        }
    }

    async fn leave(
        &self,
        ticket: &GateTicket,
        started: OffsetDateTime,
        spacing: std::time::Duration,
    ) -> Result<(), StoreError> {
        let now = OffsetDateTime::now_utc();
        if let Some(held) = locked(&self.accounts).get_mut(&ticket.account) {
            if held.holder == ticket.holder {
                let (next_free, recent_ends) =
                    crate::pacing::after_gated_call(&ticket.recent_ends, started, now, spacing);
                held.held_until = now;
                held.next_free = next_free;
                held.recent_ends = recent_ends;
            }
        }
        Ok(())
    }

    async fn reserve(
        &self,
        account: &str,
        calls: u32,
        spacing: std::time::Duration,
        now: OffsetDateTime,
    ) -> Result<OffsetDateTime, StoreError> {
        let mut slots = locked(&self.next_slots);
        let next = slots.entry(account.to_owned()).or_insert(now);
        let start = (*next).max(now);
        *next = start + spacing * calls.max(1);
        Ok(start)
    }
}
