//! Work-queue consumer: carries device changes to their carrier and records the outcome.
//!
//! Safe under duplicate and late delivery: a work unit is claimed per retry number before any
//! carrier call, finished device changes are never sent again, and a worker that resumes a unit
//! whose holder died first asks the carrier whether the change already happened. Every carrier
//! call becomes an audit entry with credentials removed.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use backon::Retryable;
use cellbridge_bulk_changes::bulk_change::{
    AuditEntry, BulkChange, DeviceChange, DeviceChangeStatus,
};
use cellbridge_bulk_changes::change::DeviceRequest;
use cellbridge_bulk_changes::completion;
use cellbridge_bulk_changes::completion::Finished;
use cellbridge_bulk_changes::messages::{until_effective, WorkMessage};
use cellbridge_bulk_changes::ports::{
    BulkChangeStore, Claim, DeviceOutcome, QueueError, WorkQueues,
};
use cellbridge_carriers::account::{AccountLookupError, CarrierAccount, CarrierAccounts};
use cellbridge_carriers::error::CarrierError;
use cellbridge_carriers::port::{CallJournal, CarrierExchange, CarrierOutcome, RequestProgress};
use cellbridge_carriers::retry::{decide, RetryDecision, RetryPolicy, MAX_QUEUE_DELAY};
use cellbridge_core::config::{number_in, or_default, ConfigError, Environment, FromEnvironment};
use cellbridge_core::redact::redact;
use cellbridge_core::store::StoreError;
use cellbridge_core::tenant::TenantId;
use cellbridge_edge::lambda::metrics;
use cellbridge_edge::lambda::metrics::Unit;
use cellbridge_edge::lambda::sqs_batch::process_batch;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tracing::Instrument;

/// How long a claim holds off other deliveries: past the function timeout (120 s), so a claim
/// outlives its holder only when the holder is dead.
pub const LEASE: Duration = Duration::from_secs(150);

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Who the audit trail says processed the work.
    pub processed_by: String,
    /// How a request the carrier accepted for later is followed up.
    pub check_policy: RetryPolicy,
    /// How failed carrier calls are retried.
    pub call_policy: RetryPolicy,
    /// How a failed write of an outcome is retried.
    pub store_policy: RetryPolicy,
}

impl FromEnvironment for WorkerSettings {
    fn from_env(env: &dyn Environment) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        // Unset: the documented interval. Operators and local runs shorten it.
        let check_policy = match env.var(ACCEPTED_CHECK_INTERVAL_ENV) {
            None => defaults.check_policy,
            Some(_) => defaults.check_policy.every(Duration::from_secs(number_in(
                env,
                ACCEPTED_CHECK_INTERVAL_ENV,
                1..=3600,
                300,
                "seconds",
            )?)),
        };
        Ok(Self {
            processed_by: or_default(env, "AWS_LAMBDA_FUNCTION_NAME", &defaults.processed_by),
            check_policy,
            ..defaults
        })
    }
}

/// How often a request the carrier accepted for later is checked, in seconds.
pub const ACCEPTED_CHECK_INTERVAL_ENV: &str = "ACCEPTED_CHECK_INTERVAL_SECONDS";

cellbridge_core::composite_config! {
    /// This function's configuration, read once at cold start.
    pub struct Config {
        pub tables: cellbridge_bulk_changes::dynamodb::TableNames,
        pub queues: cellbridge_bulk_changes::sqs::QueueUrls,
        pub carriers: cellbridge_carriers::config::CarrierAccountsConfig,
        pub providers: cellbridge_carriers::wiring::ProvidersConfig,
        pub settings: WorkerSettings,
    }
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            processed_by: "carrier-worker".to_owned(),
            check_policy: RetryPolicy::ACCEPTED_CHECK,
            call_policy: RetryPolicy::HTTP,
            store_policy: RetryPolicy::STORE_TRANSIENT,
        }
    }
}

#[derive(Clone)]
pub struct WorkerPorts {
    pub store: Arc<dyn BulkChangeStore>,
    pub queues: Arc<dyn WorkQueues>,
    pub accounts: Arc<dyn CarrierAccounts>,
    pub settings: WorkerSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    #[error("message body is not a work message: {0}")]
    Malformed(String),
    #[error("bulk change {0} does not exist")]
    UnknownBulkChange(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// What one message came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkOutcome {
    /// Device changes finished by this delivery (succeeded, failed).
    Finished { succeeded: u32, failed: u32 },
    /// The carrier accepted the request for later; a check follows.
    Submitted { request_id: String, devices: u32 },
    /// Sent back to the queue, delayed (a long wait, a spent retry budget, an early arrival).
    Requeued { delay: Duration, retry_number: u32 },
    /// Nothing left to do: finished before, or another delivery holds the work.
    Skipped(&'static str),
}

pub async fn handle(ports: &WorkerPorts, event: SqsEvent) -> SqsBatchResponse {
    process_batch(event, |record: SqsMessage| async move {
        let message: WorkMessage = serde_json::from_str(record.body.as_deref().unwrap_or(""))
            .map_err(|e| WorkError::Malformed(e.to_string()))?;
        work(ports, &message, OffsetDateTime::now_utc())
            .await
            .map(|_| ())
    })
    .await
}

pub async fn work(
    ports: &WorkerPorts,
    message: &WorkMessage,
    now: OffsetDateTime,
) -> Result<WorkOutcome, WorkError> {
    let span = tracing::info_span!(
        "work",
        tenant = %message.tenant_id,
        bulk_change_id = %message.bulk_change_id,
        device_seq = message.device_seq,
        device_count = message.device_count,
        retry = message.retry_number,
    );
    async {
        let tenant = &message.tenant_id;
        let change = ports
            .store
            .get_bulk_change(tenant, &message.bulk_change_id)
            .await?
            .ok_or_else(|| WorkError::UnknownBulkChange(message.bulk_change_id.clone()))?;

        let wait = until_effective(&change, now);
        if !wait.is_zero() {
            let delay = wait.min(MAX_QUEUE_DELAY);
            ports
                .queues
                .enqueue_work(change.carrier, std::slice::from_ref(message), delay)
                .await?;
            return Ok(WorkOutcome::Requeued {
                delay,
                retry_number: message.retry_number,
            });
        }

        let devices = ports
            .store
            .get_device_changes(tenant, &change.bulk_change_id, message.seqs())
            .await?;
        let open: Vec<DeviceChange> = devices
            .into_iter()
            .filter(|d| d.status == DeviceChangeStatus::Pending)
            .filter(|d| d.carrier_request_id == message.check_request)
            .collect();
        if open.is_empty() {
            return Ok(WorkOutcome::Skipped("already finished or submitted"));
        }

        // A retry that comes back from the queue still needs the account's retry budget; without
        // it the retry waits again, off the carrier, before anything is claimed.
        if message.retry_number > 0 && message.check_request.is_none() {
            if let Ok(Some(account)) = account_of(ports, &change).await {
                if !account.with_budget(|budget, now| budget.try_retry(now)) {
                    let delay = ports
                        .settings
                        .call_policy
                        .delay(1)
                        .unwrap_or(Duration::from_secs(2));
                    ports
                        .queues
                        .enqueue_work(change.carrier, std::slice::from_ref(message), delay)
                        .await?;
                    return Ok(WorkOutcome::Requeued {
                        delay,
                        retry_number: message.retry_number,
                    });
                }
            }
        }

        let unit = match &message.check_request {
            Some(_) => format!("check-{}", message.device_seq),
            None => format!("apply-{}", message.device_seq),
        };
        let claim = ports
            .store
            .claim_work(
                tenant,
                &change.bulk_change_id,
                &unit,
                message.retry_number,
                now,
                LEASE,
            )
            .await?;
        let resumed = match claim {
            Claim::Granted { resumed } => resumed,
            Claim::Superseded => return Ok(WorkOutcome::Skipped("a later retry replaced it")),
            // Back on the queue for when the holder's lease ends: done by then, or taken over if the
            // holder died. Requeued rather than failed, so it neither waits out the visibility
            // timeout nor counts towards the dead-letter queue.
            Claim::Held { until } => {
                let wait = until - now;
                let delay =
                    Duration::from_secs(wait.whole_seconds().clamp(1, 900).unsigned_abs() + 1);
                ports
                    .queues
                    .enqueue_work(change.carrier, std::slice::from_ref(message), delay)
                    .await?;
                return Ok(WorkOutcome::Requeued {
                    delay,
                    retry_number: message.retry_number,
                });
            }
        };

        let job = Job {
            ports,
            change: &change,
            message,
        };
        if change.change.is_platform_only() {
            return job.record_platform_change(&open).await;
        }
        let account = match account_of(ports, &change).await {
            Ok(Some(account)) => account,
            Ok(None) => {
                let reason = format!(
                    "no {} account is configured for this tenant",
                    change.carrier.as_str()
                );
                return job.fail_all(&open, &reason).await;
            }
            Err(AccountLookupError::Unusable(reason)) => return job.fail_all(&open, &reason).await,
            // The claim is released when its lease ends; the message comes back and tries again.
            Err(e @ AccountLookupError::Unavailable(_)) => {
                return Err(WorkError::Store(StoreError::Unavailable(e.to_string())))
            }
        };
        match &message.check_request {
            Some(request_id) => job.check(&account, request_id, open).await,
            None => job.apply(&account, open, resumed).await,
        }
    }
    .instrument(span)
    .await
}

/// The account `change`'s calls go to: its service provider's, or the deployment's.
async fn account_of(
    ports: &WorkerPorts,
    change: &BulkChange,
) -> Result<Option<Arc<CarrierAccount>>, AccountLookupError> {
    ports
        .accounts
        .account_for(
            &change.tenant_id,
            change.carrier,
            change.service_provider_id.as_deref(),
        )
        .await
}

struct Job<'a> {
    ports: &'a WorkerPorts,
    change: &'a BulkChange,
    message: &'a WorkMessage,
}

impl Job<'_> {
    fn tenant(&self) -> &TenantId {
        &self.change.tenant_id
    }

    async fn finish(
        &self,
        device: &DeviceChange,
        succeeded: bool,
        reason: Option<String>,
        attempts: u32,
    ) -> Result<bool, WorkError> {
        let outcome = DeviceOutcome {
            succeeded,
            reason,
            attempts: device.attempts.max(attempts),
            sim: succeeded
                .then(|| {
                    cellbridge_bulk_changes::inventory::sim_change(self.change, &device.request)
                })
                .flatten(),
        };
        // After a carrier call the outcome must not be lost to a passing store failure: the
        // store policy (3 retries, 2, 4, 8 s) before the message fails and comes back.
        let record = || {
            completion::finish_device_change(
                self.ports.store.as_ref(),
                self.tenant(),
                &self.change.bulk_change_id,
                device.seq,
                &outcome,
                &self.ports.settings.processed_by,
                OffsetDateTime::now_utc(),
            )
        };
        let finished = record
            .retry(self.ports.settings.store_policy.schedule())
            .when(StoreError::is_retryable)
            .notify(|error, wait| tracing::warn!(%error, ?wait, "store failed; retrying"))
            .await?;
        Ok(finished == Finished::Recorded)
    }

    async fn finish_all(
        &self,
        devices: &[DeviceChange],
        succeeded: bool,
        reason: Option<String>,
        calls: u32,
    ) -> Result<WorkOutcome, WorkError> {
        let mut finished = 0;
        for device in devices {
            finished += u32::from(
                self.finish(device, succeeded, reason.clone(), calls)
                    .await?,
            );
        }
        emit_outcomes(
            self.change,
            if succeeded { finished } else { 0 },
            if succeeded { 0 } else { finished },
        );
        Ok(if succeeded {
            WorkOutcome::Finished {
                succeeded: finished,
                failed: 0,
            }
        } else {
            WorkOutcome::Finished {
                succeeded: 0,
                failed: finished,
            }
        })
    }

    async fn fail_all(
        &self,
        devices: &[DeviceChange],
        reason: &str,
    ) -> Result<WorkOutcome, WorkError> {
        tracing::warn!(reason, "device changes failed");
        self.finish_all(devices, false, Some(reason.to_owned()), 0)
            .await
    }

    async fn record_platform_change(
        &self,
        devices: &[DeviceChange],
    ) -> Result<WorkOutcome, WorkError> {
        let reason = format!(
            "{} recorded by cellbridge; no carrier call needed",
            self.change.change.type_name()
        );
        self.finish_all(devices, true, Some(reason), 0).await
    }

    /// Writes one audit entry per carrier exchange.
    async fn audit(
        &self,
        account: &CarrierAccount,
        exchanges: Vec<CarrierExchange>,
        devices: &[DeviceChange],
    ) -> Result<(), WorkError> {
        let secrets = account.secrets();
        let device_seq = match devices {
            [single] => Some(single.seq),
            _ => None,
        };
        for exchange in exchanges {
            let status = exchange
                .status
                .map_or_else(|| "no answer".to_owned(), |s| s.to_string());
            let scope = match devices.len() {
                1 => String::new(),
                n => format!(" for {n} devices"),
            };
            let entry = AuditEntry {
                bulk_change_id: self.change.bulk_change_id.clone(),
                device_seq,
                description: redact(
                    &format!(
                        "{} {} {}{scope}: {status}",
                        self.change.carrier.as_str(),
                        exchange.method,
                        exchange.url
                    ),
                    &secrets,
                ),
                processed_by: self.ports.settings.processed_by.clone(),
                request_text: exchange.request_body.map(|t| redact(&t, &secrets)),
                response_text: exchange.response_body.map(|t| redact(&t, &secrets)),
                has_errors: !exchange.status.is_some_and(|s| (200..300).contains(&s)),
                http_status: exchange.status,
                duration_ms: Some(exchange.duration.as_millis() as u64),
                created_at: OffsetDateTime::now_utc(),
            };
            self.ports.store.append_audit(self.tenant(), &entry).await?;
        }
        Ok(())
    }

    /// Drops the device changes an earlier, interrupted delivery already got done at the carrier.
    async fn skip_already_applied(
        &self,
        account: &CarrierAccount,
        devices: Vec<DeviceChange>,
    ) -> Result<Vec<DeviceChange>, WorkError> {
        // Batches are resent whole: asking about thousands of devices would cost more than the
        // carrier's own duplicate handling (an already active device is a no-op).
        let [device] = devices.as_slice() else {
            return Ok(devices);
        };
        let journal = CallJournal::default();
        let seen = account
            .paced(account.port.read_device(&device.request.device, &journal))
            .await;
        self.audit(account, journal.take(), std::slice::from_ref(device))
            .await?;
        match seen {
            Ok(state) if account.port.already_applied(&self.change.change, &state) => {
                tracing::info!(
                    seq = device.seq,
                    "an interrupted attempt had reached the carrier"
                );
                self.finish(
                    device,
                    true,
                    Some("already applied at the carrier by an earlier attempt".into()),
                    self.message.retry_number + 1,
                )
                .await?;
                Ok(Vec::new())
            }
            _ => Ok(devices),
        }
    }

    async fn apply(
        &self,
        account: &CarrierAccount,
        devices: Vec<DeviceChange>,
        resumed: bool,
    ) -> Result<WorkOutcome, WorkError> {
        let devices = if resumed {
            self.skip_already_applied(account, devices).await?
        } else {
            devices
        };
        if devices.is_empty() {
            return Ok(WorkOutcome::Skipped("already applied"));
        }
        let requests: Vec<DeviceRequest> = devices.iter().map(|d| d.request.clone()).collect();
        // Retry number n means n attempts before this one, inline or from earlier deliveries.
        let mut retry = self.message.retry_number;
        if retry == 0 {
            account.with_budget(|budget, now| budget.record_attempt(now));
        }
        // A hand loop rather than backon: each failure has three outcomes (wait and call again
        // here, go back to the queue with a delay, or give up), decided by the account's shared
        // retry budget and the carrier's own wait, and every attempt is audited before the next.
        loop {
            let journal = CallJournal::default();
            let slots = account.port.calls_to_apply(&self.change.change, &requests);
            let result = account
                .paced_calls(
                    slots,
                    account.port.apply(&self.change.change, &requests, &journal),
                )
                .await;
            let calls = retry + 1;
            self.audit(account, journal.take(), &devices).await?;
            emit_call(self.change, &result);
            let error = match result {
                Ok(CarrierOutcome::Completed) => {
                    return self.finish_all(&devices, true, None, calls).await
                }
                Ok(CarrierOutcome::Accepted { request_id: None }) => {
                    let reason = "accepted by the carrier for its effective date".to_owned();
                    return self.finish_all(&devices, true, Some(reason), calls).await;
                }
                Ok(CarrierOutcome::Accepted {
                    request_id: Some(request_id),
                }) => return self.submitted(&devices, request_id).await,
                Err(error) => error,
            };
            if !error.is_retryable() {
                return self
                    .finish_all(&devices, false, Some(error.to_string()), calls)
                    .await;
            }
            let decision = account.with_budget(|budget, now| {
                decide(
                    &self.ports.settings.call_policy,
                    retry,
                    error.carrier_wait(),
                    budget,
                    now,
                )
            });
            match decision {
                RetryDecision::RetryAfter(wait) => {
                    tracing::info!(?wait, %error, "retrying in the function");
                    tokio::time::sleep(wait).await;
                    retry += 1;
                }
                RetryDecision::Requeue {
                    delay,
                    retry_number,
                } => {
                    tracing::info!(?delay, retry_number, %error, "back to the queue");
                    return self.requeue(None, delay, retry_number).await;
                }
                RetryDecision::GiveUp { reason } => {
                    let reason = format!("{error} ({reason})");
                    return self.finish_all(&devices, false, Some(reason), calls).await;
                }
            }
        }
    }

    async fn requeue(
        &self,
        check_request: Option<String>,
        delay: Duration,
        retry_number: u32,
    ) -> Result<WorkOutcome, WorkError> {
        let next = WorkMessage {
            retry_number,
            check_request,
            ..self.message.clone()
        };
        self.ports
            .queues
            .enqueue_work(self.change.carrier, &[next], delay)
            .await?;
        metrics::emit(
            &[("Carrier", self.change.carrier.as_str())],
            &[("WorkRequeued", 1.0, Unit::Count)],
        );
        Ok(WorkOutcome::Requeued {
            delay,
            retry_number,
        })
    }

    /// The carrier took the request and answers later: remember its id on every device change
    /// (callbacks find them by it) and queue the first check for answers that never come.
    async fn submitted(
        &self,
        devices: &[DeviceChange],
        request_id: String,
    ) -> Result<WorkOutcome, WorkError> {
        let recorded = {
            let writes: Vec<_> = devices
                .iter()
                .map(|device| {
                    self.ports.store.record_submitted(
                        self.tenant(),
                        &self.change.bulk_change_id,
                        device.seq,
                        device.request.device.iccid.as_str(),
                        &request_id,
                    )
                })
                .collect();
            let mut results = futures::stream::iter(writes).buffer_unordered(SUBMIT_CONCURRENCY);
            let mut recorded = 0;
            while let Some(written) = results.next().await {
                recorded += u32::from(written?);
            }
            recorded
        };
        let delay = self
            .ports
            .settings
            .check_policy
            .delay(1)
            .unwrap_or(MAX_QUEUE_DELAY);
        let check = WorkMessage {
            retry_number: 0,
            check_request: Some(request_id.clone()),
            ..self.message.clone()
        };
        self.ports
            .queues
            .enqueue_work(self.change.carrier, &[check], delay)
            .await?;
        tracing::info!(request_id, devices = recorded, "accepted by the carrier");
        Ok(WorkOutcome::Submitted {
            request_id,
            devices: recorded,
        })
    }

    /// Asks the carrier about device changes of an accepted request that no callback finished.
    async fn check(
        &self,
        account: &CarrierAccount,
        request_id: &str,
        devices: Vec<DeviceChange>,
    ) -> Result<WorkOutcome, WorkError> {
        let mut succeeded = 0;
        let mut failed = 0;
        let mut still_pending = 0;
        for device in &devices {
            let journal = CallJournal::default();
            let slots = account
                .port
                .calls_to_check(&self.change.change, &device.request);
            let progress = account
                .paced_calls(
                    slots,
                    account
                        .port
                        .check(&self.change.change, request_id, &device.request, &journal),
                )
                .await;
            self.audit(account, journal.take(), std::slice::from_ref(device))
                .await?;
            match progress {
                Ok(RequestProgress::Succeeded) => {
                    succeeded += u32::from(self.finish(device, true, None, 1).await?);
                }
                Ok(RequestProgress::Failed(error)) => {
                    failed += u32::from(
                        self.finish(device, false, Some(error.to_string()), 1)
                            .await?,
                    );
                }
                // The request as a whole is still open: ask again later, not device by device.
                Ok(RequestProgress::Pending) => {
                    still_pending += 1;
                    break;
                }
                Err(error) if error.is_retryable() => {
                    still_pending += 1;
                    break;
                }
                Err(error) => {
                    failed += u32::from(
                        self.finish(device, false, Some(error.to_string()), 1)
                            .await?,
                    );
                }
            }
        }
        emit_outcomes(self.change, succeeded, failed);
        if still_pending == 0 {
            return Ok(WorkOutcome::Finished { succeeded, failed });
        }
        let next = self.message.retry_number + 1;
        match self.ports.settings.check_policy.delay(next) {
            Some(delay) => self.requeue(Some(request_id.to_owned()), delay, next).await,
            None => {
                let reason = format!(
                    "the carrier never confirmed request {request_id} after {} checks",
                    self.ports.settings.check_policy.max_retries
                );
                let open: Vec<DeviceChange> = self
                    .ports
                    .store
                    .get_device_changes(
                        self.tenant(),
                        &self.change.bulk_change_id,
                        self.message.seqs(),
                    )
                    .await?
                    .into_iter()
                    .filter(|d| {
                        d.status == DeviceChangeStatus::Pending
                            && d.carrier_request_id.as_deref() == Some(request_id)
                    })
                    .collect();
                self.fail_all(&open, &reason).await
            }
        }
    }
}

use futures::StreamExt;

/// Store writes in flight at once while recording a batch the carrier accepted.
const SUBMIT_CONCURRENCY: usize = 32;

fn emit_call(change: &BulkChange, result: &Result<CarrierOutcome, CarrierError>) {
    let kind = match result {
        Ok(_) => "ok",
        Err(CarrierError::Transient(_)) => "transient",
        Err(CarrierError::RateLimited { .. }) => "rateLimited",
        Err(CarrierError::Permanent { .. }) => "permanent",
        Err(CarrierError::InvalidTransition { .. }) => "invalidTransition",
        Err(CarrierError::NotFound) => "notFound",
        Err(CarrierError::AuthFailed) => "authFailed",
    };
    metrics::emit(
        &[("Carrier", change.carrier.as_str()), ("Result", kind)],
        &[("CarrierCalls", 1.0, Unit::Count)],
    );
}

fn emit_outcomes(change: &BulkChange, succeeded: u32, failed: u32) {
    if succeeded + failed == 0 {
        return;
    }
    metrics::emit(
        &[("Carrier", change.carrier.as_str())],
        &[
            ("DeviceChangesSucceeded", f64::from(succeeded), Unit::Count),
            ("DeviceChangesFailed", f64::from(failed), Unit::Count),
        ],
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use cellbridge_bulk_changes::bulk_change::BulkChangeStatus;
    use cellbridge_bulk_changes::change::{Carrier, ChangeSpec, DeviceRef};
    use cellbridge_bulk_changes::memory::MemoryPorts;
    use cellbridge_bulk_changes::ports::CreateOutcome;
    use cellbridge_bulk_changes::testing::sample_bulk_change;
    use cellbridge_carriers::account::{AccountLimits, SharedAccounts};
    use cellbridge_carriers::port::{CarrierDevice, CarrierPort};
    use std::collections::{HashMap, VecDeque};
    use std::sync::Mutex;

    const WORK_EVENT: &str = include_str!("../../../events/carrier-worker/work.json");
    const POISON_EVENT: &str = include_str!("../../../events/carrier-worker/work-with-poison.json");
    const CHECK_EVENT: &str = include_str!("../../../events/carrier-worker/check.json");
    const SAMPLE_ID: &str = "019aa8e4-6f2a-7c3d-9b1e-2f4a5c6d7e80";
    const SECRET: &str = "fake-carrier-secret";

    /// A carrier that records what reaches it, answers from a script (then `Completed`), and
    /// echoes its secret in every exchange so redaction is tested.
    #[derive(Default)]
    struct FakeCarrier {
        carrier: Option<Carrier>,
        applied: Mutex<Vec<Vec<String>>>,
        script: Mutex<VecDeque<Result<CarrierOutcome, CarrierError>>>,
        checks: Mutex<VecDeque<RequestProgress>>,
        states: Mutex<HashMap<String, String>>,
    }

    impl FakeCarrier {
        fn answering(answers: Vec<Result<CarrierOutcome, CarrierError>>) -> Self {
            Self {
                script: Mutex::new(answers.into()),
                ..Self::default()
            }
        }

        fn applied(&self) -> Vec<Vec<String>> {
            self.applied.lock().unwrap().clone()
        }

        fn journal(&self, journal: &CallJournal, what: &str) {
            journal.record(CarrierExchange {
                method: "PUT".into(),
                url: format!("https://carrier.example/{what}"),
                request_body: Some(format!(
                    "{{\"status\":\"DEACTIVATED\",\"key\":\"{SECRET}\"}}"
                )),
                status: Some(200),
                response_body: Some(format!("Authorization: Basic {SECRET}")),
                duration: Duration::from_millis(3),
            });
        }
    }

    #[async_trait]
    impl CarrierPort for FakeCarrier {
        fn carrier(&self) -> Carrier {
            self.carrier.unwrap_or(Carrier::Jasper)
        }

        async fn read_device(
            &self,
            device: &DeviceRef,
            journal: &CallJournal,
        ) -> Result<CarrierDevice, CarrierError> {
            self.journal(journal, "read");
            let status = self
                .states
                .lock()
                .unwrap()
                .get(device.iccid.as_str())
                .cloned();
            Ok(CarrierDevice {
                iccid: device.iccid.as_str().to_owned(),
                status: status.unwrap_or_else(|| "ACTIVATED".into()),
                rate_plan: None,
            })
        }

        fn already_applied(&self, _: &ChangeSpec, device: &CarrierDevice) -> bool {
            device.status == "DEACTIVATED"
        }

        async fn apply(
            &self,
            _: &ChangeSpec,
            requests: &[DeviceRequest],
            journal: &CallJournal,
        ) -> Result<CarrierOutcome, CarrierError> {
            self.journal(journal, "apply");
            self.applied.lock().unwrap().push(
                requests
                    .iter()
                    .map(|r| r.device.iccid.as_str().to_owned())
                    .collect(),
            );
            self.script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Ok(CarrierOutcome::Completed))
        }

        async fn check(
            &self,
            _: &ChangeSpec,
            _: &str,
            _: &DeviceRequest,
            journal: &CallJournal,
        ) -> Result<RequestProgress, CarrierError> {
            self.journal(journal, "status");
            Ok(self
                .checks
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(RequestProgress::Succeeded))
        }
    }

    struct Harness {
        memory: MemoryPorts,
        carrier: Arc<FakeCarrier>,
        ports: WorkerPorts,
    }

    fn tenant() -> TenantId {
        TenantId::parse("demo").unwrap()
    }

    /// A planned bulk change of `devices` devices and a worker with `carrier` behind it.
    async fn harness(devices: u32, carrier: FakeCarrier, change: Option<ChangeSpec>) -> Harness {
        let memory = MemoryPorts::default();
        let (mut bulk, requests) = sample_bulk_change("demo", SAMPLE_ID, devices, true);
        bulk.carrier = carrier.carrier();
        if let Some(change) = change {
            bulk.change = change;
        }
        bulk.status = BulkChangeStatus::Processing;
        assert_eq!(
            memory.store.create_bulk_change(&bulk, None).await.unwrap(),
            CreateOutcome::Created
        );
        let now = OffsetDateTime::now_utc();
        let changes: Vec<DeviceChange> = requests
            .into_iter()
            .enumerate()
            .map(|(i, r)| DeviceChange::pending(SAMPLE_ID, i as u32, r, now))
            .collect();
        memory
            .store
            .insert_device_changes(&tenant(), &changes)
            .await
            .unwrap();
        let carrier = Arc::new(carrier);
        let limits = AccountLimits {
            calls_per_second: 1_000,
            burst: 10,
            max_in_flight: 4,
        };
        let accounts = SharedAccounts::default().with(
            carrier.carrier(),
            CarrierAccount::new(carrier.clone(), limits, vec![SECRET.to_owned()]),
        );
        let ports = WorkerPorts {
            store: memory.store.clone(),
            queues: memory.queues.clone(),
            accounts: Arc::new(accounts),
            settings: WorkerSettings::default(),
        };
        Harness {
            memory,
            carrier,
            ports,
        }
    }

    impl Harness {
        async fn bulk(&self) -> BulkChange {
            self.memory
                .store
                .get_bulk_change(&tenant(), SAMPLE_ID)
                .await
                .unwrap()
                .expect("stored")
        }

        async fn devices(&self) -> Vec<DeviceChange> {
            self.memory
                .store
                .get_device_changes(&tenant(), SAMPLE_ID, 0..u32::MAX)
                .await
                .unwrap()
        }

        /// Runs every queued work message (ignoring delays) until the queue is empty.
        async fn drain(&self) -> Vec<WorkOutcome> {
            let mut outcomes = Vec::new();
            loop {
                let queued = self.memory.queues.drain_work();
                if queued.is_empty() {
                    return outcomes;
                }
                for item in queued {
                    outcomes.push(
                        work(&self.ports, &item.message, OffsetDateTime::now_utc())
                            .await
                            .unwrap(),
                    );
                }
            }
        }
    }

    fn event(text: &str) -> SqsEvent {
        serde_json::from_str(text).expect("sample event parses")
    }

    fn message(seq: u32) -> WorkMessage {
        WorkMessage::first(tenant(), SAMPLE_ID, seq, 1)
    }

    #[tokio::test]
    async fn the_sample_event_completes_its_device_changes_and_audits_without_secrets() {
        let h = harness(2, FakeCarrier::default(), None).await;
        let response = handle(&h.ports, event(WORK_EVENT)).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(h.carrier.applied().len(), 2);
        let bulk = h.bulk().await;
        assert_eq!(bulk.status, BulkChangeStatus::Completed);
        assert_eq!((bulk.counts.succeeded, bulk.counts.failed), (2, 0));
        let audit = h
            .memory
            .store
            .list_audit(&tenant(), SAMPLE_ID)
            .await
            .unwrap();
        let calls: Vec<&AuditEntry> = audit.iter().filter(|e| e.http_status.is_some()).collect();
        assert_eq!(calls.len(), 2, "one audit entry per carrier call");
        assert!(calls
            .iter()
            .all(|e| e.device_seq.is_some() && e.duration_ms.is_some()));
        let text = serde_json::to_string(&audit).unwrap();
        assert!(!text.contains(SECRET), "{text}");
        assert!(text.contains("completed: 2 succeeded, 0 failed"), "{text}");
        // Each success suspended its SIM in the inventory, with the bulk change as the source.
        let sims = h.memory.store.sims.all(&tenant());
        assert_eq!(sims.len(), 2);
        for sim in sims {
            assert_ne!(
                sim.status,
                cellbridge_sims::sim::SimStatus::Active,
                "{sim:?}"
            );
            assert_eq!(
                sim.last_change.source,
                cellbridge_sims::sim::SimSource::BulkChange {
                    bulk_change_id: SAMPLE_ID.into()
                }
            );
        }
    }

    #[tokio::test]
    async fn a_poison_record_fails_alone() {
        let h = harness(4, FakeCarrier::default(), None).await;
        let response = handle(&h.ports, event(POISON_EVENT)).await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, vec!["5e1c2a90-0000-4000-8000-000000000001"]);
        assert_eq!(h.carrier.applied().len(), 2);
    }

    #[tokio::test]
    async fn a_duplicate_delivery_never_reaches_the_carrier_twice() {
        let h = harness(3, FakeCarrier::default(), None).await;
        for seq in [0, 1, 2, 0, 1, 2] {
            work(&h.ports, &message(seq), OffsetDateTime::now_utc())
                .await
                .unwrap();
        }
        // Concurrent duplicates: the claim lets one through.
        let duplicate = message(0);
        let again = futures::future::join_all(
            (0..2).map(|_| work(&h.ports, &duplicate, OffsetDateTime::now_utc())),
        )
        .await;
        assert!(again
            .iter()
            .all(|o| matches!(o, Ok(WorkOutcome::Skipped(_)))));
        assert_eq!(h.carrier.applied().len(), 3);
        let bulk = h.bulk().await;
        assert_eq!((bulk.counts.succeeded, bulk.counts.failed), (3, 0));
        assert_eq!(bulk.status, BulkChangeStatus::Completed);
    }

    #[tokio::test]
    async fn a_holder_that_died_after_the_call_is_resumed_without_resending() {
        let h = harness(2, FakeCarrier::default(), None).await;
        let long_ago = OffsetDateTime::now_utc() - time::Duration::minutes(10);
        for seq in [0, 1] {
            // The first delivery claimed both and died; device 0's call had reached the carrier.
            let claim = h
                .memory
                .store
                .claim_work(
                    &tenant(),
                    SAMPLE_ID,
                    &format!("apply-{seq}"),
                    0,
                    long_ago,
                    LEASE,
                )
                .await
                .unwrap();
            assert_eq!(claim, Claim::Granted { resumed: false });
        }
        let iccid0 = h.devices().await[0]
            .request
            .device
            .iccid
            .as_str()
            .to_owned();
        h.carrier
            .states
            .lock()
            .unwrap()
            .insert(iccid0, "DEACTIVATED".into());
        for seq in [0, 1] {
            work(&h.ports, &message(seq), OffsetDateTime::now_utc())
                .await
                .unwrap();
        }
        assert_eq!(
            h.carrier.applied().len(),
            1,
            "only device 1 needed the call"
        );
        let devices = h.devices().await;
        assert!(devices
            .iter()
            .all(|d| d.status == DeviceChangeStatus::Succeeded));
        assert_eq!(h.bulk().await.status, BulkChangeStatus::Completed);
    }

    #[tokio::test]
    async fn transient_failures_retry_then_go_back_to_the_queue_and_permanent_ones_fail() {
        let rate_limited = || {
            Err(CarrierError::RateLimited {
                retry_after: Some(Duration::from_secs(30)),
            })
        };
        let carrier = FakeCarrier::answering(vec![
            // Device 0: a long Retry-After goes back to the queue, then succeeds.
            rate_limited(),
            Ok(CarrierOutcome::Completed),
            // Device 1: refused for good.
            Err(CarrierError::InvalidTransition {
                from: "PURGED".into(),
                to: "DEACTIVATED".into(),
            }),
        ]);
        let h = harness(2, carrier, None).await;
        let first = work(&h.ports, &message(0), OffsetDateTime::now_utc())
            .await
            .unwrap();
        assert_eq!(
            first,
            WorkOutcome::Requeued {
                delay: Duration::from_secs(30),
                retry_number: 1
            }
        );
        let queued = h.memory.queues.queued_work();
        assert_eq!(queued[0].delay, Duration::from_secs(30));
        h.drain().await;
        work(&h.ports, &message(1), OffsetDateTime::now_utc())
            .await
            .unwrap();
        let devices = h.devices().await;
        assert_eq!(devices[0].status, DeviceChangeStatus::Succeeded);
        assert_eq!(devices[0].attempts, 2);
        assert_eq!(devices[1].status, DeviceChangeStatus::Failed);
        assert!(devices[1]
            .status_reason
            .as_deref()
            .is_some_and(|r| r.contains("PURGED")));
        let bulk = h.bulk().await;
        assert_eq!(bulk.status, BulkChangeStatus::CompletedWithErrors);
        assert_eq!(bulk.counts.pending(), 0);
        // The stale retry-0 message arriving late changes nothing.
        assert_eq!(
            work(&h.ports, &message(0), OffsetDateTime::now_utc())
                .await
                .unwrap(),
            WorkOutcome::Skipped("already finished or submitted")
        );
    }

    #[tokio::test]
    async fn a_carrier_that_keeps_failing_ends_in_a_failure_with_the_reason() {
        let carrier = FakeCarrier::answering(
            (0..10)
                .map(|_| Err(CarrierError::Transient("HTTP 503".into())))
                .collect(),
        );
        let mut h = harness(1, carrier, None).await;
        h.ports.settings.call_policy = RetryPolicy::HTTP.every(Duration::from_millis(5));
        work(&h.ports, &message(0), OffsetDateTime::now_utc())
            .await
            .unwrap();
        h.drain().await;
        assert_eq!(h.carrier.applied().len(), 4, "first attempt and 3 retries");
        let device = &h.devices().await[0];
        assert_eq!(device.status, DeviceChangeStatus::Failed);
        assert!(device
            .status_reason
            .as_deref()
            .is_some_and(|r| r.contains("503") && r.contains("3 retries")));
        assert!(
            h.memory.store.sims.all(&tenant()).is_empty(),
            "a failure changes nothing in the inventory"
        );
    }

    #[tokio::test]
    async fn a_batch_accepted_for_later_is_checked_until_the_carrier_answers() {
        let carrier = FakeCarrier {
            carrier: Some(Carrier::ThingSpace),
            script: Mutex::new(
                vec![Ok(CarrierOutcome::Accepted {
                    request_id: Some("5f0c7a3e-8d2b-4c1a-9e6f-0a1b2c3d4e5f".into()),
                })]
                .into(),
            ),
            checks: Mutex::new(
                vec![
                    // First check: one device answered, one still pending, one failed.
                    RequestProgress::Succeeded,
                    RequestProgress::Pending,
                    RequestProgress::Failed(CarrierError::NotFound),
                    // Second check of the pending one.
                    RequestProgress::Succeeded,
                ]
                .into(),
            ),
            ..FakeCarrier::default()
        };
        let h = harness(3, carrier, None).await;
        let outcome = work(
            &h.ports,
            &WorkMessage::first(tenant(), SAMPLE_ID, 0, 3),
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
        assert!(matches!(outcome, WorkOutcome::Submitted { devices: 3, .. }));
        assert_eq!(
            h.carrier.applied(),
            vec![h
                .devices()
                .await
                .iter()
                .map(|d| d.request.device.iccid.as_str().to_owned())
                .collect::<Vec<_>>()]
        );
        let found = h
            .memory
            .store
            .find_submitted(
                "5f0c7a3e-8d2b-4c1a-9e6f-0a1b2c3d4e5f",
                h.devices().await[1].request.device.iccid.as_str(),
            )
            .await
            .unwrap();
        assert_eq!(found.map(|f| f.seq), Some(1));
        let queued = h.memory.queues.queued_work();
        assert_eq!(queued[0].delay, Duration::from_secs(300));

        // The sample check event names this request.
        let response = handle(&h.ports, event(CHECK_EVENT)).await;
        assert!(response.batch_item_failures.is_empty());
        h.drain().await;
        let bulk = h.bulk().await;
        assert_eq!((bulk.counts.succeeded, bulk.counts.failed), (2, 1));
        assert_eq!(bulk.status, BulkChangeStatus::CompletedWithErrors);
        assert_eq!(h.carrier.applied().len(), 1, "the batch went out once");
    }

    #[tokio::test]
    async fn a_change_effective_later_waits_and_customer_plans_need_no_carrier() {
        let effective = OffsetDateTime::now_utc() + time::Duration::hours(2);
        let change = ChangeSpec::CustomerRatePlanChange {
            customer_rate_plan_id: "CRP-10".into(),
            data_allocation_mb: None,
            pool_id: None,
            effective_date: Some(effective),
        };
        let h = harness(1, FakeCarrier::default(), Some(change)).await;
        let early = work(&h.ports, &message(0), OffsetDateTime::now_utc())
            .await
            .unwrap();
        assert!(matches!(early, WorkOutcome::Requeued { delay, .. } if delay == MAX_QUEUE_DELAY));
        assert_eq!(h.devices().await[0].status, DeviceChangeStatus::Pending);
        let due = work(
            &h.ports,
            &message(0),
            effective + time::Duration::seconds(1),
        )
        .await
        .unwrap();
        assert_eq!(
            due,
            WorkOutcome::Finished {
                succeeded: 1,
                failed: 0
            }
        );
        assert!(h.carrier.applied().is_empty());
    }

    #[tokio::test]
    async fn without_an_account_the_change_fails_with_that_reason() {
        let h = harness(1, FakeCarrier::default(), None).await;
        let ports = WorkerPorts {
            accounts: Arc::new(SharedAccounts::default()),
            ..h.ports.clone()
        };
        work(&ports, &message(0), OffsetDateTime::now_utc())
            .await
            .unwrap();
        let device = &h.devices().await[0];
        assert_eq!(device.status, DeviceChangeStatus::Failed);
        assert!(device
            .status_reason
            .as_deref()
            .is_some_and(|r| r.contains("no jasper account")));
    }
}
