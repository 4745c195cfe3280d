//! The carrier worker against the local emulators (real SDK) and the Jasper simulator: duplicate delivery, a
//! worker dying between the carrier call and the status write, faults and rate limits, poison
//! messages, and secrets kept out of logs and audit entries.

use anyhow::{Context, Result};
use async_trait::async_trait;
use carrier_sim::jasper::JasperConfig;
use carrier_sim::SimServer;
use carrier_worker::{WorkOutcome, WorkerPorts, WorkerSettings};
use cellbridge::bulk_changes::bulk_change::{BulkChange, BulkChangeStatus, DeviceChangeStatus};
use cellbridge::bulk_changes::change::{Carrier, ChangeSpec, DeviceRef, DeviceRequest};
use cellbridge::bulk_changes::messages::{PlanMessage, WorkMessage};
use cellbridge::bulk_changes::ports::{BulkChangePorts, CreateOutcome};
use cellbridge::carriers::account::{AccountLimits, CarrierAccount, SharedAccounts};
use cellbridge::carriers::error::CarrierError;
use cellbridge::carriers::http::http_client;
use cellbridge::carriers::jasper::{JasperClient, JasperCredentials};
use cellbridge::carriers::port::{CallJournal, CarrierDevice, CarrierOutcome, CarrierPort};
use cellbridge::carriers::retry::RetryBudget;
use cellbridge::common::tenant::TenantId;
use cellbridge::testing::{iccid, sample_bulk_change};
use cellbridge_tests::LocalAwsStack;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

const API_KEY: &str = "jasper-key-4f9c2e7a1b";
const QUEUE: &str = "JasperWorkQueue";

fn tenant() -> TenantId {
    TenantId::parse("acme").expect("tenant id")
}

struct Rig {
    stack: LocalAwsStack,
    sim: SimServer,
    ports: BulkChangePorts,
}

async fn rig(jasper: JasperConfig, devices: u32) -> Result<Rig> {
    let stack = LocalAwsStack::start().await?;
    let sim = SimServer::start("127.0.0.1:0".parse()?, jasper).await?;
    let iccids: Vec<String> = (0..devices).map(iccid).collect();
    sim.sims
        .jasper
        .seed_devices(iccids.iter().map(String::as_str), "ACTIVATED");
    let ports = stack.ports()?;
    Ok(Rig { stack, sim, ports })
}

fn jasper_config() -> JasperConfig {
    JasperConfig {
        accounts: BTreeMap::from([("cellbridge".to_owned(), API_KEY.to_owned())]),
        // Fast enough for a test; the documented 5 a second is the benchmark's business.
        calls_per_second: 200,
        ..JasperConfig::default()
    }
}

fn jasper(sim: &SimServer, api_key: &str) -> Result<JasperClient> {
    Ok(JasperClient::new(
        http_client()?,
        sim.jasper_url(),
        JasperCredentials {
            username: "cellbridge".into(),
            api_key: api_key.into(),
        },
    ))
}

fn worker(rig: &Rig, port: Arc<dyn CarrierPort>, limits: AccountLimits) -> WorkerPorts {
    worker_with_budget(rig, port, limits, RetryBudget::for_carrier_account())
}

fn worker_with_budget(
    rig: &Rig,
    port: Arc<dyn CarrierPort>,
    limits: AccountLimits,
    budget: RetryBudget,
) -> WorkerPorts {
    let accounts = SharedAccounts::default().with(
        Carrier::Jasper,
        CarrierAccount::new(port, limits, vec![API_KEY.to_owned()]).with_retry_budget(budget),
    );
    WorkerPorts {
        store: rig.ports.store.clone(),
        queues: rig.ports.queues.clone(),
        accounts: Arc::new(accounts),
        settings: WorkerSettings::default(),
    }
}

fn generous() -> AccountLimits {
    AccountLimits {
        calls_per_second: 150,
        burst: 1,
        max_in_flight: 1,
    }
}

/// Stores a suspend of `devices` devices and plans it, which queues its work in the local SQS.
async fn planned(rig: &Rig, id: &str, devices: u32) -> Result<BulkChange> {
    let (mut change, requests) = sample_bulk_change("acme", id, devices, true);
    change.tenant_id = tenant();
    let created = rig.ports.store.create_bulk_change(&change, None).await?;
    anyhow::ensure!(created == CreateOutcome::Created);
    rig.ports
        .payloads
        .put(&change.payload_key, serde_json::to_vec(&requests)?)
        .await?;
    let message = PlanMessage {
        tenant_id: tenant(),
        bulk_change_id: id.to_owned(),
    };
    bulk_planner::plan(&rig.ports, &message, OffsetDateTime::now_utc()).await?;
    Ok(change)
}

async fn bulk(rig: &Rig, id: &str) -> Result<BulkChange> {
    rig.ports
        .store
        .get_bulk_change(&tenant(), id)
        .await?
        .context("bulk change stored")
}

/// Feeds the work queue to the worker the way Lambda's SQS poller does (deleting what the
/// worker did not report as failed) until the bulk change is final. `deliveries` > 1 hands
/// every batch to the worker that many times: duplicate delivery.
async fn run_queue(
    rig: &Rig,
    ports: &WorkerPorts,
    id: &str,
    deliveries: usize,
    concurrent_batches: usize,
) -> Result<BulkChange> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let current = bulk(rig, id).await?;
        if matches!(
            current.status,
            BulkChangeStatus::Completed | BulkChangeStatus::CompletedWithErrors
        ) {
            return Ok(current);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "bulk change still {:?} with {} pending",
            current.status,
            current.counts.pending()
        );
        let mut batches = Vec::new();
        for _ in 0..concurrent_batches {
            let (event, receipts) = rig.stack.receive_event(QUEUE, 3).await?;
            if !event.records.is_empty() {
                batches.push((event, receipts));
            }
        }
        let handled =
            futures::future::join_all(batches.into_iter().map(|(event, receipts)| async move {
                let mut failed = Vec::new();
                for _ in 0..deliveries {
                    let response = carrier_worker::handle(ports, event.clone()).await;
                    failed.extend(
                        response
                            .batch_item_failures
                            .into_iter()
                            .map(|f| f.item_identifier),
                    );
                }
                (event, receipts, failed)
            }))
            .await;
        for (event, receipts, failed) in handled {
            for (record, receipt) in event.records.iter().zip(receipts) {
                if !failed.contains(record.message_id.as_ref().unwrap_or(&String::new())) {
                    match rig.stack.delete(QUEUE, &receipt).await {
                        Ok(()) => {}
                        // Its visibility timeout ran out while it was handled (a busy machine):
                        // SQS hands it out again, as it would to Lambda, and the worker's
                        // idempotence is what the test checks.
                        Err(error) if format!("{error:#}").contains("ReceiptHandleIsInvalid") => {}
                        Err(error) => return Err(error),
                    }
                }
            }
        }
    }
}

fn puts_per_device(sim: &SimServer) -> BTreeMap<String, usize> {
    let mut puts = BTreeMap::new();
    for entry in sim.sims.log.entries() {
        if entry.method == "PUT" {
            *puts.entry(entry.path.clone()).or_insert(0) += 1;
        }
    }
    puts
}

#[tokio::test]
async fn every_message_delivered_twice_reaches_the_carrier_once() -> Result<()> {
    let rig = rig(jasper_config(), 30).await?;
    planned(&rig, "dup-0001", 30).await?;
    let ports = worker(&rig, Arc::new(jasper(&rig.sim, API_KEY)?), generous());
    let done = run_queue(&rig, &ports, "dup-0001", 2, 2).await?;
    assert_eq!(done.status, BulkChangeStatus::Completed);
    assert_eq!((done.counts.succeeded, done.counts.failed), (30, 0));
    let puts = puts_per_device(&rig.sim);
    assert_eq!(puts.len(), 30);
    assert!(puts.values().all(|&n| n == 1), "{puts:?}");
    for n in 0..30 {
        let device = rig.sim.sims.jasper.device(&iccid(n)).context("device")?;
        assert_eq!(device.status, "DEACTIVATED");
    }
    Ok(())
}

/// Makes the change at the carrier, then dies before the worker can record it.
struct DiesAfterCall {
    inner: JasperClient,
    deaths_left: AtomicU32,
}

#[async_trait]
impl CarrierPort for DiesAfterCall {
    fn carrier(&self) -> Carrier {
        Carrier::Jasper
    }

    async fn read_device(
        &self,
        device: &DeviceRef,
        journal: &CallJournal,
    ) -> Result<CarrierDevice, CarrierError> {
        self.inner.read_device(device, journal).await
    }

    fn already_applied(&self, change: &ChangeSpec, device: &CarrierDevice) -> bool {
        self.inner.already_applied(change, device)
    }

    async fn apply(
        &self,
        change: &ChangeSpec,
        requests: &[DeviceRequest],
        journal: &CallJournal,
    ) -> Result<CarrierOutcome, CarrierError> {
        let outcome = self.inner.apply(change, requests, journal).await;
        let die = self
            .deaths_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        assert!(!die, "worker killed between the carrier call and the write");
        outcome
    }
}

#[tokio::test]
async fn a_worker_that_dies_after_the_call_is_resumed_to_the_right_state() -> Result<()> {
    let rig = rig(jasper_config(), 3).await?;
    planned(&rig, "crash-0001", 3).await?;
    let port = Arc::new(DiesAfterCall {
        inner: jasper(&rig.sim, API_KEY)?,
        deaths_left: AtomicU32::new(3),
    });
    let ports = worker(&rig, port, generous());

    let (event, _) = rig.stack.receive_event(QUEUE, 1).await?;
    assert_eq!(event.records.len(), 3);
    let response = carrier_worker::handle(&ports, event.clone()).await;
    assert_eq!(response.batch_item_failures.len(), 3, "every record died");
    assert_eq!(puts_per_device(&rig.sim).len(), 3, "the calls had gone out");
    let after_crash = bulk(&rig, "crash-0001").await?;
    assert_eq!(after_crash.counts.pending(), 3);

    // Redelivered once the dead holder's lease is over: the worker asks the carrier first.
    let later = OffsetDateTime::now_utc() + carrier_worker::LEASE + Duration::from_secs(1);
    for record in &event.records {
        let message: WorkMessage = serde_json::from_str(record.body.as_deref().unwrap_or(""))?;
        let outcome = carrier_worker::work(&ports, &message, later).await?;
        assert_eq!(
            outcome,
            WorkOutcome::Skipped("already applied"),
            "finished by asking the carrier, not by a new call"
        );
    }
    let done = bulk(&rig, "crash-0001").await?;
    assert_eq!(done.status, BulkChangeStatus::Completed);
    assert_eq!((done.counts.succeeded, done.counts.failed), (3, 0));
    assert!(puts_per_device(&rig.sim).values().all(|&n| n == 1));
    let devices = rig
        .ports
        .store
        .get_device_changes(&tenant(), "crash-0001", 0..3)
        .await?;
    assert!(devices.iter().all(|d| d.status_reason.as_deref()
        == Some("already applied at the carrier by an earlier attempt")));
    Ok(())
}

#[tokio::test]
async fn faults_and_rate_limits_end_every_device_change_within_the_retry_budget() -> Result<()> {
    let devices = 40;
    let config = JasperConfig {
        transient_fault_rate: 0.3,
        // The documented limit, while the worker below pushes harder: 429 bursts.
        calls_per_second: 5,
        one_call_in_flight: true,
        ..jasper_config()
    };
    let rig = rig(config, devices).await?;
    // One device the carrier cannot move (terminal state): a permanent failure with a reason.
    rig.sim
        .sims
        .jasper
        .seed_devices([iccid(7).as_str()], "PURGED");
    planned(&rig, "faults-0001", devices).await?;
    let pushy = AccountLimits {
        calls_per_second: 8,
        burst: 2,
        max_in_flight: 1,
    };
    // 30 % faults need more retries than the default 20 % budget gives a minute; a wider budget
    // keeps the test short, and the bound below is checked against it.
    let (ratio, floor) = (0.6, 10usize);
    let budget = RetryBudget::new(ratio, floor as u32, Duration::from_secs(60));
    let started = Instant::now();
    let ports = worker_with_budget(&rig, Arc::new(jasper(&rig.sim, API_KEY)?), pushy, budget);
    let done = run_queue(&rig, &ports, "faults-0001", 1, 2).await?;

    assert_eq!(done.counts.pending(), 0, "nothing lost");
    assert_eq!(done.counts.succeeded + done.counts.failed, devices);
    assert_eq!(done.status, BulkChangeStatus::CompletedWithErrors);
    let changes = rig
        .ports
        .store
        .get_device_changes(&tenant(), "faults-0001", 0..devices)
        .await?;
    for change in &changes {
        match change.status {
            DeviceChangeStatus::Succeeded => {}
            DeviceChangeStatus::Failed => assert!(
                change
                    .status_reason
                    .as_deref()
                    .is_some_and(|r| !r.is_empty()),
                "a failure without a reason: {change:?}"
            ),
            DeviceChangeStatus::Pending => panic!("still pending: {change:?}"),
        }
    }
    assert_eq!(changes[7].status, DeviceChangeStatus::Failed);

    let log = rig.sim.sims.log.entries();
    let puts = log.iter().filter(|e| e.method == "PUT").count();
    let refused = log
        .iter()
        .filter(|e| e.status == 429 || e.status == 503)
        .count();
    assert!(refused > 0, "the simulator never pushed back");
    // Retries are at most `ratio` of first attempts plus `floor` a minute.
    let retries = puts - devices as usize;
    let minutes = started.elapsed().as_secs() as usize / 60 + 1;
    assert!(
        retries as f64 <= f64::from(devices) * ratio + (floor * minutes) as f64,
        "{retries} retries for {devices} devices in {minutes} minute(s)"
    );
    Ok(())
}

#[tokio::test]
async fn a_poison_message_reaches_the_dead_letter_queue_and_its_batch_is_processed() -> Result<()> {
    let rig = rig(jasper_config(), 3).await?;
    planned(&rig, "poison-0001", 3).await?;
    rig.stack
        .sqs()
        .send_message()
        .queue_url(rig.stack.queue_url(QUEUE)?)
        .message_body("{\"tenantId\": \"acme\", \"deviceSeq\": \"not a number\"}")
        .send()
        .await?;
    let ports = worker(&rig, Arc::new(jasper(&rig.sim, API_KEY)?), generous());
    // Visibility 0: a failed record is back at once, so the receives add up quickly.
    for _ in 0..30 {
        let (event, receipts) = rig.stack.receive_event(QUEUE, 0).await?;
        if event.records.is_empty() {
            break;
        }
        let response = carrier_worker::handle(&ports, event.clone()).await;
        for (record, receipt) in event.records.iter().zip(receipts) {
            let failed = response
                .batch_item_failures
                .iter()
                .any(|f| Some(&f.item_identifier) == record.message_id.as_ref());
            if !failed {
                rig.stack.delete(QUEUE, &receipt).await?;
            }
        }
    }
    assert_eq!(rig.stack.queue_depth("JasperWorkDeadLetterQueue").await?, 1);
    assert_eq!(rig.stack.queue_depth(QUEUE).await?, 0);
    let done = bulk(&rig, "poison-0001").await?;
    assert_eq!(done.status, BulkChangeStatus::Completed);
    Ok(())
}

/// Everything the worker logs, captured.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn secrets_never_reach_logs_or_audit_entries() -> Result<()> {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let config = JasperConfig {
        transient_fault_rate: 0.2,
        ..jasper_config()
    };
    let rig = rig(config, 6).await?;
    planned(&rig, "secrets-0001", 6).await?;
    let ports = worker(&rig, Arc::new(jasper(&rig.sim, API_KEY)?), generous());
    run_queue(&rig, &ports, "secrets-0001", 1, 1).await?;

    // A second account with a wrong key: the failure path must not echo it either.
    let wrong_key = "wrong-key-9d8c7b6a5f";
    planned(&rig, "secrets-0002", 2).await?;
    let accounts = SharedAccounts::default().with(
        Carrier::Jasper,
        CarrierAccount::new(
            Arc::new(jasper(&rig.sim, wrong_key)?),
            generous(),
            vec![wrong_key.to_owned()],
        ),
    );
    let wrong = WorkerPorts {
        accounts: Arc::new(accounts),
        ..ports.clone()
    };
    let refused = run_queue(&rig, &wrong, "secrets-0002", 1, 1).await?;
    assert_eq!(refused.counts.failed, 2);

    let mut written = String::from_utf8_lossy(
        &captured
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
    .into_owned();
    for id in ["secrets-0001", "secrets-0002"] {
        let audit = rig.ports.store.list_audit(&tenant(), id).await?;
        assert!(audit.iter().any(|e| e.http_status.is_some()));
        written.push_str(&serde_json::to_string(&audit)?);
    }
    written.push_str(&serde_json::to_string(&rig.sim.sims.log.entries())?);
    assert!(written.contains("secrets-0001"), "the capture saw the run");
    assert!(written.contains("Basic") || written.contains("PUT"));
    for secret in [API_KEY, wrong_key] {
        assert!(!written.contains(secret), "{secret} leaked");
    }
    Ok(())
}

#[tokio::test]
async fn two_worker_instances_share_the_jasper_limits_through_the_gate() -> Result<()> {
    // The documented limits: 5 calls a second, one in flight, answered with 429 otherwise.
    let config = JasperConfig {
        calls_per_second: 5,
        one_call_in_flight: true,
        ..jasper_config()
    };
    let devices = 12;
    let rig = rig(config, devices).await?;
    planned(&rig, "gate-0001", devices).await?;
    let gate = cellbridge::carriers::wiring::account_gate(
        &rig.stack.config,
        &rig.stack.name("IdempotencyTable")?,
    );
    let document = serde_json::json!({
        "jasper": {"baseUrl": rig.sim.jasper_url(), "username": "cellbridge", "apiKey": API_KEY}
    })
    .to_string();
    // Two instances as Lambda runs them for the Jasper queue, each with its own pacer.
    let instance = || -> Result<WorkerPorts> {
        Ok(WorkerPorts {
            store: rig.ports.store.clone(),
            queues: rig.ports.queues.clone(),
            accounts: Arc::new(cellbridge::carriers::config::gated_accounts_from_json(
                &document,
                Some(gate.clone()),
            )?),
            settings: WorkerSettings::default(),
        })
    };
    let (first, second) = (instance()?, instance()?);
    let (a, b) = tokio::join!(
        run_queue(&rig, &first, "gate-0001", 1, 1),
        run_queue(&rig, &second, "gate-0001", 1, 1)
    );
    let done = a?;
    b?;
    assert_eq!(done.counts.succeeded, devices);
    let log = rig.sim.sims.log.entries();
    let limited = log.iter().filter(|e| e.status == 429).count();
    assert_eq!(limited, 0, "the gate kept both instances under the limit");
    assert_eq!(
        log.iter().filter(|e| e.method == "PUT").count(),
        devices as usize
    );
    Ok(())
}

#[tokio::test]
async fn instances_take_distinct_start_slots_from_the_shared_pace() -> Result<()> {
    let stack = LocalAwsStack::start().await?;
    let table = stack.name("IdempotencyTable")?;
    // Two instances: each its own gate object (and its own idea of the next free slot).
    let first = cellbridge::carriers::wiring::account_gate(&stack.config, &table);
    let second = cellbridge::carriers::wiring::account_gate(&stack.config, &table);
    let spacing = Duration::from_millis(100);
    let at = OffsetDateTime::from_unix_timestamp(1_800_000_000)?;
    let ms = |n: u64| at + Duration::from_millis(n);
    let account = "telegence:pace-test";

    assert_eq!(first.reserve(account, 1, spacing, at).await?, at);
    // The second has never seen the account: its first try is refused and tells it the slot.
    assert_eq!(second.reserve(account, 1, spacing, at).await?, ms(100));
    // A lookup and a change take two slots in a row.
    assert_eq!(first.reserve(account, 2, spacing, at).await?, ms(200));
    assert_eq!(second.reserve(account, 1, spacing, ms(50)).await?, ms(400));
    // Once the taken slots are past, the next begins when asked for.
    assert_eq!(first.reserve(account, 1, spacing, ms(900)).await?, ms(900));
    // Another account has its own slots.
    assert_eq!(
        second
            .reserve("telegence:other", 1, spacing, ms(50))
            .await?,
        ms(50)
    );
    Ok(())
}
