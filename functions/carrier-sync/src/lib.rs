//! The carrier sync: on its schedule it queues, for every service provider of every tenant, a
//! sync of its inventory and one of its usage; each runs until it finishes or the function's
//! time runs short, and then queues itself to go on from its last page. The inventory sync lists
//! the carrier's SIMs against the inventory; the usage collection reads yesterday's usage of
//! every SIM once a day (and answers "collected already" the rest of the day).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use cellbridge_bulk_changes::ports::QueueError;
use cellbridge_carriers::account::{AccountLookupError, CarrierAccounts};
use cellbridge_carriers::details::{details_step, DetailsPorts, DetailsStep};
use cellbridge_carriers::provider_ports::ProviderStore;
use cellbridge_carriers::sync::{sync_step, SyncError, SyncPorts, SyncStep};
use cellbridge_carriers::sync_queue::{SyncQueue, SyncRequest, SyncWork};
use cellbridge_carriers::usage::{usage_step, UsagePorts, UsageRetention, UsageStep};
use cellbridge_core::store::StoreError;
use cellbridge_core::tenant::TenantId;
use cellbridge_sims::ports::{DeviceDirectory, SimStore, SyncStateStore, UsageStore};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::time::Instant;
use tracing::Instrument;

cellbridge_core::composite_config! {
    /// This function's configuration, read once at cold start: the inventory and sync states,
    /// the service providers and their credentials, the account gate (in the idempotency
    /// table), the sync queue and how long usage is kept.
    pub struct Config {
        pub sims: cellbridge_sims::wiring::SimTables,
        pub devices: cellbridge_devices::wiring::DeviceTables,
        pub providers: cellbridge_carriers::wiring::ProvidersConfig,
        pub gate: GateTable,
        pub queue: SyncQueueUrl,
        pub retention: cellbridge_carriers::usage::UsageRetention,
    }
}

/// `IDEMPOTENCY_TABLE`, where the account gate that paces calls across instances lives.
#[derive(Debug, Clone)]
pub struct GateTable(pub String);

impl cellbridge_core::config::FromEnvironment for GateTable {
    fn from_env(
        env: &dyn cellbridge_core::config::Environment,
    ) -> Result<Self, cellbridge_core::config::ConfigError> {
        cellbridge_core::config::required(env, "IDEMPOTENCY_TABLE").map(Self)
    }
}

/// `SYNC_QUEUE_URL`.
#[derive(Debug, Clone)]
pub struct SyncQueueUrl(pub String);

impl cellbridge_core::config::FromEnvironment for SyncQueueUrl {
    fn from_env(
        env: &dyn cellbridge_core::config::Environment,
    ) -> Result<Self, cellbridge_core::config::ConfigError> {
        cellbridge_core::config::required(env, cellbridge_carriers::wiring::SYNC_QUEUE_ENV)
            .map(Self)
    }
}

/// The device registry answering the inventory's question of which device holds a SIM.
pub struct RegisteredDevices(pub Arc<dyn cellbridge_devices::ports::DeviceStore>);

#[async_trait::async_trait]
impl DeviceDirectory for RegisteredDevices {
    async fn devices_with_iccids(
        &self,
        tenant: &TenantId,
        iccids: &[String],
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        self.0.devices_with_iccids(tenant, iccids).await
    }
}

/// Time kept back from the function's deadline to save the run's position and queue the rest.
pub const WRAP_UP: Duration = Duration::from_secs(60);

/// The longest step of a usage collection or a reading of details: runs that take hours at
/// Jasper queue their next step behind the work already waiting, so the few invocations the
/// queue's concurrency allows are shared among every provider rather than held for the whole
/// function timeout. An inventory listing keeps the whole invocation: it takes minutes, and only
/// a listing done in one step can tell which SIMs vanished.
pub const STEP_SLICE: Duration = Duration::from_secs(120);

/// Until when a step of `work` that starts at `now` runs, given the invocation's `deadline`.
pub fn step_deadline(work: SyncWork, now: Instant, deadline: Instant) -> Instant {
    match work {
        SyncWork::Inventory => deadline,
        SyncWork::Usage | SyncWork::Details => deadline.min(now + STEP_SLICE),
    }
}

pub struct SyncFunctionPorts {
    pub sims: Arc<dyn SimStore>,
    pub states: Arc<dyn SyncStateStore>,
    /// The registered devices imported SIMs are linked to.
    pub devices: Arc<dyn DeviceDirectory>,
    pub usage: Arc<dyn UsageStore>,
    pub retention: UsageRetention,
    pub providers: Arc<dyn ProviderStore>,
    pub accounts: Arc<dyn CarrierAccounts>,
    pub queue: Arc<dyn SyncQueue>,
    /// Who this instance is, as the holder of the runs it makes.
    pub holder: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncFunctionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("the service provider could not be read: {0}")]
    Account(String),
    #[error("not a sync request: {0}")]
    Malformed(String),
}

/// What the schedule does: an inventory sync and a usage collection queued per provider of
/// every tenant (one already running answers its message with "busy", so an overlap costs a
/// message, not a second run). Returns the providers.
pub async fn schedule(ports: &SyncFunctionPorts) -> Result<usize, SyncFunctionError> {
    let providers = ports.providers.every_provider().await?;
    let requests: Vec<SyncRequest> = providers
        .iter()
        .flat_map(|(tenant, service_provider_id)| {
            [SyncWork::Inventory, SyncWork::Usage].map(|work| SyncRequest {
                tenant: tenant.clone(),
                service_provider_id: service_provider_id.clone(),
                work,
            })
        })
        .collect();
    ports.queue.enqueue(&requests).await?;
    tracing::info!(providers = providers.len(), "carrier syncs queued");
    Ok(providers.len())
}

/// How one queued sync step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Inventory(SyncStep),
    Usage(UsageStep),
    Details(DetailsStep),
    /// The provider is gone, or makes no usable account: nothing to do.
    Skipped,
}

impl Step {
    /// Whether the step stopped with work left and must be queued again.
    fn goes_on(&self) -> bool {
        matches!(
            self,
            Step::Inventory(SyncStep::Continue)
                | Step::Usage(UsageStep::Continue)
                | Step::Details(DetailsStep::Continue)
        )
    }
}

/// Runs the queued syncs of `event` until `deadline`.
pub async fn handle(
    ports: &SyncFunctionPorts,
    event: SqsEvent,
    deadline: Instant,
) -> SqsBatchResponse {
    cellbridge_edge::lambda::sqs_batch::process_batch(event, |record: SqsMessage| async move {
        let request = serde_json::from_str::<SyncRequest>(record.body.as_deref().unwrap_or(""))
            .map_err(|e| SyncFunctionError::Malformed(e.to_string()));
        match request {
            // A message that is not a sync request never becomes one: drop it, loudly.
            Err(error) => {
                tracing::error!(%error, "dropping a malformed sync message");
                Ok(())
            }
            Ok(request) => sync(ports, &request, deadline).await.map(|_| ()),
        }
    })
    .await
}

/// One provider's sync until `deadline`; a run left unfinished is queued to go on.
pub async fn sync(
    ports: &SyncFunctionPorts,
    request: &SyncRequest,
    deadline: Instant,
) -> Result<Step, SyncFunctionError> {
    let span = tracing::info_span!("carrier_sync", tenant = %request.tenant, provider = %request.service_provider_id, work = ?request.work);
    async {
        let Some(provider) = ports
            .providers
            .get_provider(&request.tenant, &request.service_provider_id)
            .await?
        else {
            tracing::info!("the provider was deleted; nothing to sync");
            return Ok(Step::Skipped);
        };
        let account = match ports
            .accounts
            .account_for(&request.tenant, provider.carrier, Some(&provider.id))
            .await
        {
            Ok(Some(account)) => account,
            Ok(None) => return Err(SyncFunctionError::Account("no account".into())),
            Err(AccountLookupError::Unavailable(why)) => {
                return Err(SyncFunctionError::Account(why))
            }
            Err(AccountLookupError::Unusable(why)) => {
                tracing::warn!(%why, "the provider makes no usable account; not synced");
                return Ok(Step::Skipped);
            }
        };
        let deadline = step_deadline(request.work, Instant::now(), deadline);
        let step = match request.work {
            SyncWork::Inventory => {
                let step_ports = SyncPorts {
                    sims: ports.sims.as_ref(),
                    states: ports.states.as_ref(),
                    devices: ports.devices.as_ref(),
                };
                Step::Inventory(
                    sync_step(
                        &step_ports,
                        &account,
                        &request.tenant,
                        &provider,
                        &ports.holder,
                        &OffsetDateTime::now_utc,
                        deadline,
                    )
                    .await?,
                )
            }
            SyncWork::Details => {
                let step_ports = DetailsPorts {
                    sims: ports.sims.as_ref(),
                    states: ports.states.as_ref(),
                };
                Step::Details(
                    details_step(
                        &step_ports,
                        &account,
                        &request.tenant,
                        &provider,
                        &ports.holder,
                        &OffsetDateTime::now_utc,
                        deadline,
                    )
                    .await?,
                )
            }
            SyncWork::Usage => {
                let step_ports = UsagePorts {
                    sims: ports.sims.as_ref(),
                    usage: ports.usage.as_ref(),
                    states: ports.states.as_ref(),
                };
                Step::Usage(
                    usage_step(
                        &step_ports,
                        &account,
                        &request.tenant,
                        &provider,
                        &ports.holder,
                        &OffsetDateTime::now_utc,
                        deadline,
                        ports.retention,
                    )
                    .await?,
                )
            }
        };
        if step.goes_on() {
            ports.queue.enqueue(std::slice::from_ref(request)).await?;
        }
        // A listing that leaves details out is followed by reading them (a run already under
        // way answers "busy"; one paused goes on from its place).
        let listed = matches!(step, Step::Inventory(SyncStep::Finished(_)));
        if listed && !account.port.listing_is_complete() {
            let details = SyncRequest {
                work: SyncWork::Details,
                ..request.clone()
            };
            ports.queue.enqueue(&[details]).await?;
        }
        tracing::info!(?step, "sync step done");
        Ok(step)
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::sqs::SqsEvent;
    use cellbridge_bulk_changes::change::{Carrier, ChangeSpec, DeviceRef, DeviceRequest};
    use cellbridge_carriers::account::{AccountLimits, CarrierAccount};
    use cellbridge_carriers::error::CarrierError;
    use cellbridge_carriers::port::{
        CallJournal, CarrierDevice, CarrierOutcome, CarrierPort, CarrierSim, ListedSims,
    };
    use cellbridge_carriers::provider::parse_new_provider;
    use cellbridge_carriers::provider_memory::MemoryProviders;
    use cellbridge_carriers::sync_queue::MemorySyncQueue;
    use cellbridge_sims::memory::MemorySims;

    const SCHEDULED: &str = include_str!("../../../events/carrier-sync/scheduled.json");
    const QUEUED: &str = include_str!("../../../events/carrier-sync/sync.json");
    const USAGE: &str = include_str!("../../../events/carrier-sync/usage.json");
    const DETAILS: &str = include_str!("../../../events/carrier-sync/details.json");

    /// Telegence with 1,200 subscribers, 500 a page; a listing call takes 10 seconds.
    struct Listing;

    #[async_trait::async_trait]
    impl CarrierPort for Listing {
        fn carrier(&self) -> Carrier {
            Carrier::Telegence
        }

        async fn list_sims(
            &self,
            position: Option<&str>,
            _since: Option<OffsetDateTime>,
            _journal: &CallJournal,
        ) -> Result<ListedSims, CarrierError> {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let from: u32 = position.and_then(|p| p.parse().ok()).unwrap_or(0);
            let to = (from + 500).min(1_200);
            Ok(ListedSims {
                sims: (from..to)
                    .map(|n| CarrierSim {
                        iccid: cellbridge_core::testing::iccid(n),
                        status: "Active".into(),
                        ..CarrierSim::default()
                    })
                    .collect(),
                next: (to < 1_200).then(|| to.to_string()),
            })
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

    struct OneAccount(Arc<CarrierAccount>);

    #[async_trait::async_trait]
    impl CarrierAccounts for OneAccount {
        fn account(&self, _: &TenantId, _: Carrier) -> Option<Arc<CarrierAccount>> {
            None
        }

        async fn account_for(
            &self,
            _: &TenantId,
            _: Carrier,
            _: Option<&str>,
        ) -> Result<Option<Arc<CarrierAccount>>, AccountLookupError> {
            Ok(Some(self.0.clone()))
        }
    }

    async fn ports() -> (SyncFunctionPorts, Arc<MemorySims>, Arc<MemorySyncQueue>) {
        let providers = Arc::new(MemoryProviders::default());
        let body = serde_json::json!({"name": "Telegence", "carrier": "telegence",
            "endpoint": "http://127.0.0.1:1/", "credentials": {"appId": "c", "appSecret": "s"}});
        let provider = parse_new_provider(body.to_string().as_bytes())
            .expect("valid")
            .into_provider(
                TenantId::parse("demo").expect("tenant"),
                "sp-telegence".into(),
                "secret".into(),
                OffsetDateTime::UNIX_EPOCH,
            );
        providers.create_provider(&provider).await.expect("created");
        let account = CarrierAccount::new(
            Arc::new(Listing),
            AccountLimits::documented(Carrier::Telegence),
            Vec::new(),
        );
        let sims = Arc::new(MemorySims::default());
        let queue = Arc::new(MemorySyncQueue::default());
        let ports = SyncFunctionPorts {
            sims: sims.clone(),
            states: sims.clone(),
            usage: sims.clone(),
            devices: Arc::new(cellbridge_sims::memory::MemoryDeviceDirectory::default()),
            retention: UsageRetention::default(),
            providers,
            accounts: Arc::new(OneAccount(Arc::new(account))),
            queue: queue.clone(),
            holder: "test".into(),
        };
        (ports, sims, queue)
    }

    #[tokio::test(start_paused = true)]
    async fn the_schedule_queues_every_provider_and_a_sync_goes_on_until_done() {
        let (ports, sims, queue) = ports().await;
        let _: serde_json::Value = serde_json::from_str(SCHEDULED).expect("sample");
        assert_eq!(schedule(&ports).await.expect("queued"), 1);
        let queued = queue.drain();
        assert_eq!(
            queued
                .iter()
                .map(|r| (r.service_provider_id.as_str(), r.work))
                .collect::<Vec<_>>(),
            [
                ("sp-telegence", SyncWork::Inventory),
                ("sp-telegence", SyncWork::Usage)
            ]
        );
        let queued = vec![queued[0].clone()];

        // The sample event names the same provider. A page starts only before the deadline: with
        // 15 s, pages start at 0 s and 10 s.
        let event: SqsEvent = serde_json::from_str(QUEUED).expect("sample");
        let response = handle(&ports, event, Instant::now() + Duration::from_secs(15)).await;
        assert!(response.batch_item_failures.is_empty());
        let tenant = TenantId::parse("demo").expect("tenant");
        assert_eq!(sims.all(&tenant).len(), 1_000);
        let again = queue.drain();
        assert_eq!(again, queued, "the rest is queued to go on");

        let step = sync(&ports, &again[0], Instant::now() + Duration::from_secs(600))
            .await
            .expect("sync");
        assert!(
            matches!(step, Step::Inventory(SyncStep::Finished(ref s)) if s.counts.listed == 1_200),
            "{step:?}"
        );
        assert_eq!(sims.all(&tenant).len(), 1_200);
        assert!(queue.drain().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_usage_request_runs_the_usage_collection_and_not_the_listing() {
        let (ports, sims, queue) = ports().await;
        let event: SqsEvent = serde_json::from_str(USAGE).expect("sample");
        let body = event.records[0].body.as_deref().expect("a body");
        let request: SyncRequest = serde_json::from_str(body).expect("a sync request");
        assert_eq!(request.work, SyncWork::Usage);
        // The test carrier lists SIMs but tells no usage per SIM.
        let step = sync(&ports, &request, Instant::now() + Duration::from_secs(60))
            .await
            .expect("a step");
        assert_eq!(step, Step::Usage(UsageStep::Unsupported));
        let tenant = TenantId::parse("demo").expect("tenant");
        assert!(sims.all(&tenant).is_empty(), "no listing ran");
        assert!(queue.drain().is_empty());
    }

    #[test]
    fn long_runs_take_a_slice_of_the_invocation_and_listings_all_of_it() {
        let now = Instant::now();
        let late = now + Duration::from_secs(840);
        assert_eq!(step_deadline(SyncWork::Usage, now, late), now + STEP_SLICE);
        assert_eq!(
            step_deadline(SyncWork::Details, now, late),
            now + STEP_SLICE
        );
        assert_eq!(step_deadline(SyncWork::Inventory, now, late), late);
        let soon = now + Duration::from_secs(30);
        assert_eq!(step_deadline(SyncWork::Usage, now, soon), soon);
    }

    #[tokio::test(start_paused = true)]
    async fn a_details_request_reads_nothing_where_the_listing_tells_everything() {
        let (ports, sims, queue) = ports().await;
        let event: SqsEvent = serde_json::from_str(DETAILS).expect("sample");
        let body = event.records[0].body.as_deref().expect("a body");
        let request: SyncRequest = serde_json::from_str(body).expect("a sync request");
        assert_eq!(request.work, SyncWork::Details);
        let step = sync(&ports, &request, Instant::now() + Duration::from_secs(60))
            .await
            .expect("a step");
        assert_eq!(step, Step::Details(DetailsStep::Unneeded));
        let tenant = TenantId::parse("demo").expect("tenant");
        assert!(sims.all(&tenant).is_empty(), "no listing ran");
        // Telegence's listing tells everything: a finished sync queues no details either.
        let inventory = SyncRequest {
            work: SyncWork::Inventory,
            ..request
        };
        let step = sync(
            &ports,
            &inventory,
            Instant::now() + Duration::from_secs(600),
        )
        .await
        .expect("a step");
        assert!(matches!(step, Step::Inventory(SyncStep::Finished(_))));
        assert!(queue.drain().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_malformed_message_is_dropped_and_a_deleted_provider_is_not_synced() {
        let (ports, sims, queue) = ports().await;
        let mut event: serde_json::Value = serde_json::from_str(QUEUED).expect("sample");
        event["Records"][0]["body"] = serde_json::json!("not json");
        let event: SqsEvent = serde_json::from_value(event).expect("event");
        let response = handle(&ports, event, Instant::now() + Duration::from_secs(60)).await;
        assert!(response.batch_item_failures.is_empty());
        let gone = SyncRequest {
            tenant: TenantId::parse("demo").expect("tenant"),
            service_provider_id: "sp-gone".into(),
            work: SyncWork::Inventory,
        };
        sync(&ports, &gone, Instant::now() + Duration::from_secs(60))
            .await
            .expect("nothing to do");
        assert!(sims.all(&gone.tenant).is_empty());
        assert!(queue.drain().is_empty());
    }
}
