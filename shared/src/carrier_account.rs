//! A carrier account as the worker uses it: the adapter plus the pacing and retry budget that
//! keep this instance's calls under the carrier's documented limits.

use crate::domain::rate_limit::RateLimiter;
use crate::domain::retry::RetryBudget;
use crate::domain::{Carrier, TenantId};
use crate::ports::CarrierPort;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

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
}

impl CarrierAccount {
    pub fn new(port: Arc<dyn CarrierPort>, limits: AccountLimits, secrets: Vec<String>) -> Self {
        Self {
            port,
            secrets,
            limiter: Mutex::new(RateLimiter::new(limits.calls_per_second, limits.burst)),
            in_flight: Semaphore::new(limits.max_in_flight.max(1) as usize),
            budget: Mutex::new(RetryBudget::for_carrier_account()),
            origin: Instant::now(),
        }
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

    /// Runs `call` once a rate slot and an in-flight permit are free.
    pub async fn paced<T>(&self, call: impl Future<Output = T>) -> T {
        // A closed semaphore cannot happen (it is never closed); run unpaced rather than fail.
        let _permit = self.in_flight.acquire().await.ok();
        let wait = self
            .limiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reserve(self.now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        call.await
    }

    pub fn with_budget<T>(&self, use_budget: impl FnOnce(&mut RetryBudget, Duration) -> T) -> T {
        let now = self.now();
        use_budget(
            &mut self.budget.lock().unwrap_or_else(PoisonError::into_inner),
            now,
        )
    }
}

/// The carrier accounts a tenant's bulk changes use.
pub trait CarrierAccounts: Send + Sync {
    fn account(&self, tenant: &TenantId, carrier: Carrier) -> Option<Arc<CarrierAccount>>;
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

impl CarrierAccounts for SharedAccounts {
    fn account(&self, _tenant: &TenantId, carrier: Carrier) -> Option<Arc<CarrierAccount>> {
        self.accounts.get(&carrier).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::carrier_error::CarrierError;
    use crate::domain::{ChangeSpec, DeviceRef, DeviceRequest};
    use crate::ports::{CallJournal, CarrierDevice, CarrierOutcome};

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
        // Six calls at 50 a second: the last starts 100 ms after the first.
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "{:?}",
            started.elapsed()
        );
    }
}
