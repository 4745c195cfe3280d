//! A carrier account as the worker uses it: the adapter plus the pacing and retry budget that
//! keep this instance's calls under the carrier's documented limits.

use crate::error::CarrierError;
use crate::pacing::RateLimiter;
use crate::port::{AccountGate, CarrierPort};
use crate::retry::RetryBudget;
use cellbridge_bulk_changes::change::Carrier;
use cellbridge_core::tenant::TenantId;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
// Tokio's clock, so the pacing follows virtual time in tests (`tokio::time::pause`); in a
// running function it is the monotonic clock.
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// How hard one instance may call one carrier account.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AccountLimits {
    pub calls_per_second: u32,
    pub burst: u32,
    /// Calls in flight at once (Jasper asks for one).
    pub max_in_flight: u32,
}

impl AccountLimits {
    /// The documented limits of each carrier: Jasper 5 calls a second, one in flight;
    /// ThingSpace 100 action requests a minute; Telegence publishes none, so a cautious 10.
    pub fn documented(carrier: Carrier) -> Self {
        match carrier {
            Carrier::Jasper => Self {
                calls_per_second: 5,
                burst: 1,
                max_in_flight: 1,
            },
            Carrier::ThingSpace => Self {
                calls_per_second: 1,
                burst: 5,
                max_in_flight: 4,
            },
            Carrier::Telegence => Self {
                calls_per_second: 10,
                burst: 2,
                max_in_flight: 4,
            },
        }
    }
}

pub struct CarrierAccount {
    pub port: Arc<dyn CarrierPort>,
    /// Credential values to scrub from anything written about this account's calls.
    secrets: Vec<String>,
    limiter: Mutex<RateLimiter>,
    in_flight: Semaphore,
    budget: Mutex<RetryBudget>,
    origin: Instant,
    /// The wall-clock time at `origin`: slots at the account gate are wall-clock times every
    /// instance shares, read off the same clock as the pacing (virtual in tests).
    wall_origin: time::OffsetDateTime,
    gate: Option<SharedGate>,
}

/// The gate every instance passes before calling an account, with the account's spacing.
struct SharedGate {
    gate: Arc<dyn AccountGate>,
    account: String,
    spacing: Duration,
    /// One call in flight over all instances (Jasper), rather than only a shared rate.
    one_at_a_time: bool,
}

/// Least time between the starts of two gated calls to an account allowed `calls_per_second`
/// (the gate also keeps a second between a call's end and the start of the call a second's
/// worth of calls later: see [`crate::pacing::after_gated_call`]).
pub fn gate_spacing(calls_per_second: u32) -> Duration {
    Duration::from_nanos(1_000_000_000u64.div_ceil(u64::from(calls_per_second.max(1))))
}

/// Longest a gate is held: a whole carrier call and then some, so a holder that dies mid-call
/// blocks the account for no longer.
const GATE_HOLD: Duration = Duration::from_secs(20);

impl CarrierAccount {
    pub fn new(port: Arc<dyn CarrierPort>, limits: AccountLimits, secrets: Vec<String>) -> Self {
        Self {
            port,
            secrets,
            limiter: Mutex::new(RateLimiter::new(limits.calls_per_second, limits.burst)),
            in_flight: Semaphore::new(limits.max_in_flight.max(1) as usize),
            budget: Mutex::new(RetryBudget::for_carrier_account()),
            origin: Instant::now(),
            wall_origin: time::OffsetDateTime::now_utc(),
            gate: None,
        }
    }

    /// Paces this account across instances too: every call first passes `gate` under the name
    /// `account`, one at a time, at `calls_per_second` as the carrier counts them.
    pub fn with_gate(
        self,
        gate: Arc<dyn AccountGate>,
        account: impl Into<String>,
        calls_per_second: u32,
    ) -> Self {
        let spacing = gate_spacing(calls_per_second);
        Self {
            gate: Some(SharedGate {
                gate,
                account: account.into(),
                spacing,
                one_at_a_time: true,
            }),
            ..self
        }
    }

    /// Paces this account across instances at `calls_per_second` over all of them, calls in
    /// flight limited per instance only: every call takes its start slot at `gate` under the
    /// name `account`. The slots are spaced at the rate exactly, so a call that leaves late
    /// and lands close to the next is absorbed by the carrier's burst, not by a slower pace.
    pub fn with_shared_pace(
        self,
        gate: Arc<dyn AccountGate>,
        account: impl Into<String>,
        calls_per_second: u32,
    ) -> Self {
        let spacing = gate_spacing(calls_per_second);
        Self {
            gate: Some(SharedGate {
                gate,
                account: account.into(),
                spacing,
                one_at_a_time: false,
            }),
            ..self
        }
    }

    pub fn is_gated(&self) -> bool {
        self.gate.is_some()
    }

    /// Replaces the default budget (20 % of first attempts, 10 a minute at least).
    pub fn with_retry_budget(self, budget: RetryBudget) -> Self {
        Self {
            budget: Mutex::new(budget),
            ..self
        }
    }

    pub fn secrets(&self) -> Vec<&str> {
        self.secrets.iter().map(String::as_str).collect()
    }

    /// Time since this account was set up: the clock of its limiter and budget.
    pub fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Runs `call` (one carrier call) once a rate slot and an in-flight permit are free.
    pub async fn paced<T>(&self, call: impl Future<Output = T>) -> T {
        self.paced_calls(1, call).await
    }

    /// Runs `call`, which makes `calls` carrier calls in a row (a lookup and then the change),
    /// once that many rate slots and an in-flight permit are free.
    pub async fn paced_calls<T>(&self, calls: u32, call: impl Future<Output = T>) -> T {
        // A closed semaphore cannot happen (it is never closed); run unpaced rather than fail.
        let _permit = self.in_flight.acquire().await.ok();
        if let Some(shared) = self.gate.as_ref().filter(|g| !g.one_at_a_time) {
            let now = self.wall_origin + self.now();
            match shared
                .gate
                .reserve(&shared.account, calls, shared.spacing, now)
                .await
            {
                Ok(start) => {
                    let wait = start - (self.wall_origin + self.now());
                    if wait.is_positive() {
                        tokio::time::sleep(wait.unsigned_abs()).await;
                    }
                    return call.await;
                }
                Err(error) => {
                    // As with the one-at-a-time gate: pacing this instance alone risks a
                    // rate-limit answer (retried), stopping would stall the account.
                    tracing::warn!(%error, account = %shared.account, "shared pace unavailable; pacing this instance alone");
                }
            }
        }
        let wait = {
            let mut limiter = self.limiter.lock().unwrap_or_else(PoisonError::into_inner);
            let now = self.now();
            let first = limiter.reserve(now);
            for _ in 1..calls {
                limiter.reserve(now);
            }
            first
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let Some(shared) = self.gate.as_ref().filter(|g| g.one_at_a_time) else {
            return call.await;
        };
        // If the gate's store fails, calling anyway risks a rate-limit answer (which is retried);
        // stopping would risk nothing but would stall every bulk change on this account.
        let ticket = match shared
            .gate
            .enter(&shared.account, shared.spacing, GATE_HOLD)
            .await
        {
            Ok(ticket) => Some(ticket),
            Err(error) => {
                tracing::warn!(%error, account = %shared.account, "account gate unavailable; calling ungated");
                None
            }
        };
        let started = time::OffsetDateTime::now_utc();
        let outcome = call.await;
        if let Some(ticket) = ticket {
            if let Err(error) = shared.gate.leave(&ticket, started, shared.spacing).await {
                tracing::warn!(%error, account = %shared.account, "could not leave the account gate; it frees itself");
            }
        }
        outcome
    }

    /// `call` (which makes `calls` carrier calls) at the account's pace, tried again on passing
    /// failures until `attempts` in all, waiting longer each time (a second, then twice as long)
    /// and at least what the carrier asked; `made` counts the carrier calls. For the runs that
    /// read a whole inventory page by page, where a failure that lasts pauses the run.
    pub async fn paced_with_retries<T, F>(
        &self,
        calls: u32,
        attempts: u32,
        made: &mut u64,
        call: impl Fn() -> F,
    ) -> Result<T, CarrierError>
    where
        F: Future<Output = Result<T, CarrierError>>,
    {
        let mut wait = Duration::from_secs(1);
        let mut tried = 0;
        loop {
            tried += 1;
            *made += u64::from(calls);
            match self.paced_calls(calls, call()).await {
                Err(error) if error.is_retryable() && tried < attempts => {
                    let pause = error.carrier_wait().unwrap_or(wait).max(wait);
                    tracing::info!(%error, ?pause, "carrier call failed; trying again");
                    tokio::time::sleep(pause).await;
                    wait *= 2;
                }
                answer => return answer,
            }
        }
    }

    pub fn with_budget<T>(&self, use_budget: impl FnOnce(&mut RetryBudget, Duration) -> T) -> T {
        let now = self.now();
        use_budget(
            &mut self.budget.lock().unwrap_or_else(PoisonError::into_inner),
            now,
        )
    }
}

/// Why the account of a service provider could not be had.
#[derive(Debug, thiserror::Error)]
pub enum AccountLookupError {
    /// The store or the vault did not answer: the same lookup may work later.
    #[error("the service provider could not be read: {0}")]
    Unavailable(String),
    /// The provider is gone, or its settings make no account: its changes cannot be made.
    #[error("{0}")]
    Unusable(String),
}

/// The carrier accounts a tenant's bulk changes use.
#[async_trait::async_trait]
pub trait CarrierAccounts: Send + Sync {
    /// The deployment's own account at `carrier`.
    fn account(&self, tenant: &TenantId, carrier: Carrier) -> Option<Arc<CarrierAccount>>;

    /// The account a bulk change's calls go to: its service provider's when it names one, else
    /// the deployment's.
    async fn account_for(
        &self,
        tenant: &TenantId,
        carrier: Carrier,
        provider: Option<&str>,
    ) -> Result<Option<Arc<CarrierAccount>>, AccountLookupError> {
        match provider {
            None => Ok(self.account(tenant, carrier)),
            Some(id) => Err(AccountLookupError::Unusable(format!(
                "service provider {id}: this deployment reads no service providers"
            ))),
        }
    }
}

/// One account per carrier, shared by every tenant (the platform's own carrier contracts).
#[derive(Default, Clone)]
pub struct SharedAccounts {
    accounts: HashMap<Carrier, Arc<CarrierAccount>>,
}

impl SharedAccounts {
    pub fn with(mut self, carrier: Carrier, account: CarrierAccount) -> Self {
        self.accounts.insert(carrier, Arc::new(account));
        self
    }
}

#[async_trait::async_trait]
impl CarrierAccounts for SharedAccounts {
    fn account(&self, _tenant: &TenantId, carrier: Carrier) -> Option<Arc<CarrierAccount>> {
        self.accounts.get(&carrier).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::CarrierError;
    use crate::port::{CallJournal, CarrierDevice, CarrierOutcome};
    use cellbridge_bulk_changes::change::{ChangeSpec, DeviceRef, DeviceRequest};

    struct Idle;

    #[async_trait::async_trait]
    impl CarrierPort for Idle {
        fn carrier(&self) -> Carrier {
            Carrier::Jasper
        }
        async fn read_device(
            &self,
            _: &DeviceRef,
            _: &CallJournal,
        ) -> Result<CarrierDevice, CarrierError> {
            Err(CarrierError::NotFound)
        }
        async fn apply(
            &self,
            _: &ChangeSpec,
            _: &[DeviceRequest],
            _: &CallJournal,
        ) -> Result<CarrierOutcome, CarrierError> {
            Ok(CarrierOutcome::Completed)
        }
    }

    #[tokio::test]
    async fn a_shared_gate_keeps_two_instances_to_one_call_at_a_time() {
        let gate: Arc<dyn AccountGate> = Arc::new(crate::pacing::memory::MemoryGate::default());
        let limits = AccountLimits {
            calls_per_second: 100,
            burst: 1,
            max_in_flight: 1,
        };
        // Two Lambda instances: each its own account object, one gate between them.
        let instances: Vec<Arc<CarrierAccount>> = (0..2)
            .map(|_| {
                Arc::new(
                    CarrierAccount::new(Arc::new(Idle), limits, Vec::new()).with_gate(
                        gate.clone(),
                        "jasper:test",
                        100,
                    ),
                )
            })
            .collect();
        let in_flight = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let most = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let calls: Vec<_> = (0..10)
            .map(|i| {
                let account = instances[i % 2].clone();
                let (in_flight, most) = (in_flight.clone(), most.clone());
                tokio::spawn(async move {
                    account
                        .paced(async {
                            let now =
                                in_flight.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                            most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(3)).await;
                            in_flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        })
                        .await
                })
            })
            .collect();
        for call in calls {
            call.await.expect("call task");
        }
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(instances[0].is_gated());
    }

    // Paused: `Instant` here is tokio's, so the starts below are virtual time, exact to the ms.
    #[tokio::test(start_paused = true)]
    async fn instances_sharing_a_pace_start_their_calls_one_slot_apart() {
        let gate: Arc<dyn AccountGate> = Arc::new(crate::pacing::memory::MemoryGate::default());
        let limits = AccountLimits {
            calls_per_second: 10,
            burst: 2,
            max_in_flight: 4,
        };
        // Four Lambda instances at Telegence's rate: one pace between them, not a quarter each.
        let instances: Vec<Arc<CarrierAccount>> = (0..4)
            .map(|_| {
                Arc::new(
                    CarrierAccount::new(Arc::new(Idle), limits, Vec::new()).with_shared_pace(
                        gate.clone(),
                        "telegence:test",
                        10,
                    ),
                )
            })
            .collect();
        let origin = Instant::now();
        let starts = Arc::new(Mutex::new(Vec::new()));
        let calls: Vec<_> = (0..12)
            .map(|i| {
                let account = instances[i % 4].clone();
                let starts = starts.clone();
                // Every third call needs a lookup first: two calls, two slots.
                let slots = if i % 3 == 0 { 2 } else { 1 };
                tokio::spawn(async move {
                    account
                        .paced_calls(slots, async {
                            starts
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push((origin.elapsed(), slots));
                            tokio::time::sleep(Duration::from_millis(30)).await;
                        })
                        .await
                })
            })
            .collect();
        for call in calls {
            call.await.expect("call task");
        }
        let mut starts =
            std::mem::take(&mut *starts.lock().unwrap_or_else(PoisonError::into_inner));
        starts.sort();
        // Each call starts when the slots before it (one per carrier call) have passed.
        let mut next = Duration::ZERO;
        for (start, slots) in starts {
            assert_eq!(start, next);
            next += Duration::from_millis(100) * slots;
        }
        assert_eq!(
            next,
            Duration::from_millis(1_600),
            "16 carrier calls at 10 a second"
        );
    }

    #[test]
    fn gated_calls_start_at_least_the_documented_spacing_apart() {
        assert_eq!(gate_spacing(5), Duration::from_millis(200));
        assert_eq!(gate_spacing(3), Duration::from_nanos(333_333_334));
        assert_eq!(gate_spacing(0), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn calls_are_paced_and_never_overlap() {
        let limits = AccountLimits {
            calls_per_second: 50,
            burst: 1,
            max_in_flight: 1,
        };
        let account = Arc::new(CarrierAccount::new(Arc::new(Idle), limits, Vec::new()));
        let overlapping = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let started = tokio::time::Instant::now();
        let calls: Vec<_> = (0..6)
            .map(|_| {
                let account = account.clone();
                let overlapping = overlapping.clone();
                tokio::spawn(async move {
                    account
                        .paced(async {
                            let now = overlapping.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            assert_eq!(now, 0, "two calls in flight");
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            overlapping.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        })
                        .await
                })
            })
            .collect();
        for call in calls {
            call.await.expect("call task");
        }
        // Six calls at 50 a second, in virtual time: the last starts 100 ms after the first
        // and takes 5 ms.
        assert_eq!(started.elapsed(), Duration::from_millis(105));
    }
}
