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
    /// Account to (holder, held until, next call allowed at).
    accounts: Mutex<HashMap<String, (String, std::time::Instant, std::time::Instant)>>,
    /// Paced account to its next free start slot.
    next_slots: Mutex<HashMap<String, OffsetDateTime>>,
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
            let now = std::time::Instant::now();
            let wait = {
                let mut accounts = locked(&self.accounts);
                match accounts.get(account) {
                    Some((_, held_until, next_free)) if *held_until > now || *next_free > now => {
                        (*next_free).max((*held_until).min(now + crate::pacing::GATE_POLL)) - now
                    }
                    _ => {
                        accounts.insert(
                            account.to_owned(),
                            (holder.clone(), now + hold, now + spacing),
                        );
                        return Ok(GateTicket {
                            account: account.to_owned(),
                            holder,
                        });
                    }
                }
            };
            tokio::time::sleep(wait.max(std::time::Duration::from_millis(1))).await;
        }
    }

    async fn leave(
        &self,
        ticket: &GateTicket,
        started: OffsetDateTime,
        spacing: std::time::Duration,
    ) -> Result<(), StoreError> {
        let now = std::time::Instant::now();
        let since_start = (OffsetDateTime::now_utc() - started)
            .try_into()
            .unwrap_or(std::time::Duration::ZERO);
        if let Some(entry) = locked(&self.accounts).get_mut(&ticket.account) {
            if entry.0 == ticket.holder {
                entry.1 = now;
                entry.2 = (now + spacing).checked_sub(since_start).unwrap_or(now);
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
