//! The bulk-change handlers with the real AWS SDK against the local emulators provisioned from
//! template.yaml: intake → planner → status, idempotency, tenant isolation, dead letters.

use anyhow::Result;
use cellbridge::bulk_changes::ports::BulkChangePorts;
use cellbridge::testing::suspend_request;
use cellbridge_tests::LocalAwsStack;
use lambda_http::http::StatusCode;
use lambda_http::request::from_str;
use lambda_http::{Body, Request, Response};
use serde_json::Value;
use time::OffsetDateTime;

/// Bulk changes here name no service provider: the tenants have none.
static NO_PROVIDERS: std::sync::LazyLock<cellbridge::carriers::provider_memory::MemoryProviders> =
    std::sync::LazyLock::new(Default::default);
static NO_SIMS: std::sync::LazyLock<cellbridge::sims::memory::MemorySims> =
    std::sync::LazyLock::new(Default::default);

/// Intake's lookups with no service providers and an empty inventory.
fn nothing_to_look_up() -> bulk_intake::Lookups<'static> {
    bulk_intake::Lookups {
        providers: &*NO_PROVIDERS,
        sims: &*NO_SIMS,
    }
}

const CREATE: &str = include_str!("../../events/bulk-intake/create-status-update.json");
const GET: &str = include_str!("../../events/bulk-status/get-bulk-change.json");
const DEVICES: &str = include_str!("../../events/bulk-status/list-device-changes.json");

/// A sample event with its tenant, body, id and query replaced.
fn event(
    sample: &str,
    tenant: &str,
    body: Option<&Value>,
    id: Option<&str>,
    query: &[(&str, &str)],
) -> Request {
    let mut value: Value = serde_json::from_str(sample).expect("sample event");
    let roles = if sample == CREATE {
        "operator"
    } else {
        "viewer"
    };
    cellbridge::testing::authorize_event(&mut value, tenant, roles);
    if let Some(body) = body {
        value["body"] = body.to_string().into();
        value["headers"]["idempotency-key"] = uuid::Uuid::new_v4().to_string().into();
    }
    if let Some(id) = id {
        value["pathParameters"]["id"] = id.into();
        let path = value["rawPath"]
            .as_str()
            .unwrap_or_default()
            .replace("019aa8e4-6f2a-7c3d-9b1e-2f4a5c6d7e80", id);
        value["rawPath"] = path.into();
    }
    value["rawQueryString"] = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
        .into();
    value["queryStringParameters"] = query
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(*v)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    from_str(&value.to_string()).expect("event parses")
}

fn json(response: Response<Body>) -> (StatusCode, Value) {
    let status = response.status();
    (
        status,
        serde_json::from_slice(response.body().as_ref()).expect("JSON body"),
    )
}

async fn create(ports: &BulkChangePorts, tenant: &str, body: &Value) -> (StatusCode, Value) {
    json(
        bulk_intake::handle(
            ports,
            &nothing_to_look_up(),
            event(CREATE, tenant, Some(body), None, &[]),
            OffsetDateTime::now_utc(),
        )
        .await,
    )
}

/// Delivers the plan queue to the planner the way the event source mapping would.
async fn run_planner(stack: &LocalAwsStack, ports: &BulkChangePorts) -> Result<()> {
    loop {
        let (event, receipts) = stack.receive_event("PlanQueue", 60).await?;
        if event.records.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = event
            .records
            .iter()
            .filter_map(|r| r.message_id.clone())
            .collect();
        let response = bulk_planner::handle(ports, event).await;
        for (id, receipt) in ids.iter().zip(&receipts) {
            if !response
                .batch_item_failures
                .iter()
                .any(|f| &f.item_identifier == id)
            {
                stack.delete("PlanQueue", receipt).await?;
            }
        }
        assert!(
            response.batch_item_failures.is_empty(),
            "planner failed: {:?}",
            response.batch_item_failures
        );
    }
}

#[tokio::test]
async fn a_bulk_change_is_accepted_planned_and_reported() -> Result<()> {
    let stack = LocalAwsStack::start().await?;
    let ports = stack.ports()?;
    let (status, created) = create(&ports, "tenant-a", &suspend_request(250, true)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();

    assert_eq!(stack.item_count("BulkChangesTable").await?, 1);
    assert_eq!(
        stack.item_count("DeviceChangesTable").await?,
        0,
        "device changes are never written inline"
    );
    assert_eq!(stack.object_count("PayloadBucket").await?, 1);
    assert_eq!(stack.queue_depth("PlanQueue").await?, 1);

    run_planner(&stack, &ports).await?;
    assert_eq!(stack.item_count("DeviceChangesTable").await?, 250);
    assert_eq!(stack.queue_depth("JasperWorkQueue").await?, 250);
    assert_eq!(
        stack.item_count("AuditLogTable").await?,
        2,
        "accepted + planned"
    );

    let store = ports.store.as_ref();
    let (status, view) =
        json(bulk_status::handle(store, event(GET, "tenant-a", None, Some(&id), &[])).await);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["status"], "processing");
    assert_eq!(
        view["counts"],
        serde_json::json!({"total": 250, "pending": 250, "succeeded": 0, "failed": 0})
    );

    let mut seqs = Vec::new();
    let mut cursor = None::<String>;
    loop {
        let mut query = vec![("limit", "100")];
        if let Some(c) = cursor.as_deref() {
            query.push(("cursor", c));
        }
        let (status, page) = json(
            bulk_status::handle(store, event(DEVICES, "tenant-a", None, Some(&id), &query)).await,
        );
        assert_eq!(status, StatusCode::OK, "{page}");
        seqs.extend(
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|d| d["seq"].as_u64().unwrap_or(u64::MAX)),
        );
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seqs, (0..250).collect::<Vec<u64>>());
    stack.stop().await;
    Ok(())
}

#[tokio::test]
async fn idempotency_keys_hold_across_dynamodb_transactions() -> Result<()> {
    let stack = LocalAwsStack::start().await?;
    let ports = stack.ports()?;
    let request = event(CREATE, "tenant-a", None, None, &[]);
    let first = json(
        bulk_intake::handle(
            &ports,
            &nothing_to_look_up(),
            request,
            OffsetDateTime::now_utc(),
        )
        .await,
    );
    let retry = json(
        bulk_intake::handle(
            &ports,
            &nothing_to_look_up(),
            event(CREATE, "tenant-a", None, None, &[]),
            OffsetDateTime::now_utc(),
        )
        .await,
    );
    assert_eq!(first.0, StatusCode::ACCEPTED);
    assert_eq!(retry.0, StatusCode::ACCEPTED);
    assert_eq!(first.1["id"], retry.1["id"]);
    assert_eq!(stack.item_count("BulkChangesTable").await?, 1);

    // The same key from another tenant is another key.
    let other = json(
        bulk_intake::handle(
            &ports,
            &nothing_to_look_up(),
            event(CREATE, "tenant-b", None, None, &[]),
            OffsetDateTime::now_utc(),
        )
        .await,
    );
    assert_eq!(other.0, StatusCode::ACCEPTED);
    assert_ne!(other.1["id"], first.1["id"]);

    // The same key with another body is refused and writes nothing.
    let mut changed: Value = serde_json::from_str(CREATE)?;
    cellbridge::testing::authorize_event(&mut changed, "tenant-a", "operator");
    changed["body"] = changed["body"]
        .as_str()
        .unwrap_or_default()
        .replace("suspend", "deactivate")
        .into();
    let refused = json(
        bulk_intake::handle(
            &ports,
            &nothing_to_look_up(),
            from_str(&changed.to_string())?,
            OffsetDateTime::now_utc(),
        )
        .await,
    );
    assert_eq!(refused.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(stack.item_count("BulkChangesTable").await?, 2);
    stack.stop().await;
    Ok(())
}

#[tokio::test]
async fn tenants_see_only_their_own_bulk_changes() -> Result<()> {
    let stack = LocalAwsStack::start().await?;
    let ports = stack.ports()?;
    let (_, a) = create(&ports, "tenant-a", &suspend_request(3, true)).await;
    let a_id = a["id"].as_str().expect("id");
    for _ in 0..3 {
        create(&ports, "tenant-b", &suspend_request(1, false)).await;
    }
    run_planner(&stack, &ports).await?;
    let store = ports.store.as_ref();

    for sample in [GET, DEVICES] {
        let (status, _) = json(
            bulk_status::handle(store, event(sample, "tenant-b", None, Some(a_id), &[])).await,
        );
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let list = include_str!("../../events/bulk-status/list-bulk-changes.json");
    let (_, b_page) = json(
        bulk_status::handle(
            store,
            event(list, "tenant-b", None, None, &[("limit", "2")]),
        )
        .await,
    );
    assert_eq!(b_page["items"].as_array().map(Vec::len), Some(2));
    let b_cursor = b_page["nextCursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    // Tenant A replaying tenant B's cursor pages through tenant A's records only.
    let (status, a_page) = json(
        bulk_status::handle(
            store,
            event(list, "tenant-a", None, None, &[("cursor", &b_cursor)]),
        )
        .await,
    );
    assert_eq!(status, StatusCode::OK);
    assert!(a_page["items"]
        .as_array()
        .expect("items")
        .iter()
        .all(|c| c["id"] == a_id));
    let (_, filtered) = json(
        bulk_status::handle(
            store,
            event(list, "tenant-b", None, None, &[("status", "recorded")]),
        )
        .await,
    );
    assert_eq!(filtered["items"].as_array().map(Vec::len), Some(3));
    stack.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_invalid_request_leaves_no_trace() -> Result<()> {
    let stack = LocalAwsStack::start().await?;
    let ports = stack.ports()?;
    let mut body = suspend_request(5, true);
    body["devices"][2]["iccid"] = "8901260000000000010".into();
    body["change"]["action"] = "explode".into();
    let (status, problem) = create(&ports, "tenant-a", &body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"].as_array().map(Vec::len), Some(2));
    for table in [
        "BulkChangesTable",
        "DeviceChangesTable",
        "AuditLogTable",
        "IdempotencyTable",
    ] {
        assert_eq!(stack.item_count(table).await?, 0, "{table}");
    }
    assert_eq!(stack.object_count("PayloadBucket").await?, 0);
    assert_eq!(stack.queue_depth("PlanQueue").await?, 0);
    stack.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_poison_plan_message_reaches_the_dead_letter_queue() -> Result<()> {
    let stack = LocalAwsStack::start().await?;
    let ports = stack.ports()?;
    stack
        .sqs()
        .send_message()
        .queue_url(stack.queue_url("PlanQueue")?)
        .message_body("{not a plan")
        .send()
        .await?;
    // Each failed receive returns the message at once (visibility 0); the template's
    // maxReceiveCount (5) then moves it aside.
    for _ in 0..10 {
        let (event, _) = stack.receive_event("PlanQueue", 0).await?;
        if event.records.is_empty() {
            break;
        }
        let response = bulk_planner::handle(&ports, event).await;
        assert_eq!(response.batch_item_failures.len(), 1);
    }
    assert_eq!(stack.queue_depth("PlanQueue").await?, 0);
    assert_eq!(stack.queue_depth("PlanDeadLetterQueue").await?, 1);
    stack.stop().await;
    Ok(())
}

/// The largest request: intake returns after writing one record; the planner writes the 10,000
/// device changes and queues a work message for each.
#[tokio::test]
async fn ten_thousand_devices_are_planned_not_written_inline() -> Result<()> {
    let stack = LocalAwsStack::start().await?;
    let ports = stack.ports()?;
    let (status, created) = create(&ports, "tenant-a", &suspend_request(10_000, true)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    assert_eq!(created["counts"]["total"], 10_000);
    assert_eq!(stack.item_count("BulkChangesTable").await?, 1);
    assert_eq!(stack.item_count("DeviceChangesTable").await?, 0);
    run_planner(&stack, &ports).await?;
    assert_eq!(stack.item_count("DeviceChangesTable").await?, 10_000);
    assert_eq!(stack.queue_depth("JasperWorkQueue").await?, 10_000);
    stack.stop().await;
    Ok(())
}

/// Conditional writes racing from many connections at once: DynamoDB lets exactly one writer of
/// an item win, and the local emulator must too, or outcome counts drift and a work unit runs
/// twice. Every device change is finished by four racers and every work unit claimed by four.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_conditional_writes_let_exactly_one_writer_win() -> Result<()> {
    use cellbridge::bulk_changes::ports::{Claim, DeviceOutcome};
    use cellbridge::common::tenant::TenantId;
    use futures::future::join_all;

    const DEVICES: u32 = 100;
    const RACERS: usize = 4;
    let stack = LocalAwsStack::start().await?;
    let ports = stack.ports()?;
    let (status, created) = create(&ports, "tenant-a", &suspend_request(DEVICES, true)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    run_planner(&stack, &ports).await?;
    let tenant = TenantId::parse("tenant-a").expect("tenant id");
    let now = OffsetDateTime::now_utc();

    // Each success suspends its SIM in the inventory, in the transaction that records it.
    let bulk = ports
        .store
        .get_bulk_change(&tenant, &id)
        .await?
        .expect("bulk change");
    let devices = ports
        .store
        .get_device_changes(&tenant, &id, 0..DEVICES)
        .await?;
    let outcome_of = |seq: u32| DeviceOutcome {
        succeeded: true,
        reason: None,
        attempts: 1,
        sim: cellbridge::bulk_changes::inventory::sim_change(&bulk, &devices[seq as usize].request),
    };
    // Each racer runs on its own task, so the requests really overlap on the wire.
    let finishes = (0..DEVICES).flat_map(|seq| (0..RACERS).map(move |_| seq));
    let finished = join_all(finishes.map(|seq| {
        let store = ports.store.clone();
        let (tenant, id, outcome) = (tenant.clone(), id.clone(), outcome_of(seq));
        tokio::spawn(async move {
            store
                .finish_device_change(&tenant, &id, seq, &outcome, now)
                .await
        })
    }))
    .await;
    let mut winners = 0;
    for result in finished {
        winners += usize::from(result??);
    }
    assert_eq!(
        winners, DEVICES as usize,
        "one finish per device change wins"
    );
    let bulk = ports
        .store
        .get_bulk_change(&tenant, &id)
        .await?
        .expect("bulk change");
    assert_eq!(bulk.counts.succeeded, DEVICES);
    assert_eq!(bulk.counts.failed, 0);
    let sims = cellbridge::sims::dynamodb::DynamoSims::new(
        stack.dynamodb(),
        stack.name("SimsTable")?,
        stack.name("SimHistoryTable")?,
    );
    for device in &devices {
        use cellbridge::sims::ports::SimStore;
        let iccid = device.request.device.iccid.as_str();
        let sim = sims
            .get_sim(&tenant, iccid)
            .await?
            .expect("in the inventory");
        assert_eq!(
            (
                sim.status.as_str(),
                sim.carrier_status.as_deref(),
                sim.version
            ),
            ("deactivated", Some("DEACTIVATED"), 1),
            "written once, by the winning finish only"
        );
        let history = sims
            .sim_history(
                &tenant,
                iccid,
                &cellbridge::common::store::PageRequest {
                    limit: 10,
                    cursor: None,
                },
            )
            .await?;
        assert_eq!(history.items.len(), 1);
    }

    let claims = (0..DEVICES).flat_map(|unit| (0..RACERS).map(move |_| unit));
    let claimed = join_all(claims.map(|unit| {
        let (store, tenant, id) = (ports.store.clone(), tenant.clone(), id.clone());
        tokio::spawn(async move {
            store
                .claim_work(
                    &tenant,
                    &id,
                    &format!("unit-{unit}"),
                    0,
                    now,
                    std::time::Duration::from_secs(60),
                )
                .await
        })
    }))
    .await;
    let mut granted = 0;
    for result in claimed {
        granted += usize::from(matches!(result??, Claim::Granted { .. }));
    }
    assert_eq!(
        granted, DEVICES as usize,
        "one claim per work unit is granted"
    );
    stack.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_stalled_intake_is_found_through_the_release_index_then_replanned_or_failed() -> Result<()>
{
    use cellbridge::bulk_changes::bulk_change::BulkChangeStatus;
    use cellbridge::bulk_changes::stalled_intake::INTAKE_TIMEOUT;
    use cellbridge::common::tenant::TenantId;

    // Bulk change ids are UUIDs; the status API finds no other kind.
    const LOST: &str = "019aa8e4-0000-7000-8000-000000000001";
    let stack = LocalAwsStack::start().await?;
    let ports = stack.ports()?;
    let tenant = TenantId::parse("tenant-a").expect("tenant");
    // Stored as intake stores it, but the request stopped before the device list and the plan
    // message (as when S3 or SQS failed and the client sent no Idempotency-Key).
    let (lost, _) = cellbridge::testing::sample_bulk_change("tenant-a", LOST, 4, true);
    ports.store.create_bulk_change(&lost, None).await?;
    // Accepted normally, then planned: it leaves `new`, and with it the index.
    let (status, created) = create(&ports, "tenant-a", &suspend_request(3, true)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    run_planner(&stack, &ports).await?;

    let before = lost.created_at + INTAKE_TIMEOUT - time::Duration::seconds(1);
    assert!(ports.store.intake_overdue(before, 10).await?.is_empty());
    let late = lost.created_at + INTAKE_TIMEOUT;
    assert_eq!(
        ports.store.intake_overdue(late, 10).await?,
        vec![(tenant.clone(), LOST.to_owned())],
        "only the change still new, once its deadline passed"
    );

    let swept = bulk_scheduler::recover_stalled_intake(&ports, late).await?;
    assert_eq!(
        swept,
        bulk_scheduler::StalledIntake {
            replanned: 0,
            failed: 1
        }
    );
    let failed = ports
        .store
        .get_bulk_change(&tenant, LOST)
        .await?
        .expect("stored");
    assert_eq!(failed.status, BulkChangeStatus::Failed);
    assert_eq!(
        (
            failed.counts.total,
            failed.counts.failed,
            failed.counts.pending()
        ),
        (4, 4, 0)
    );
    assert!(failed
        .failure_reason
        .as_deref()
        .is_some_and(|r| r.contains("device list was never stored")));
    assert!(ports.store.intake_overdue(late, 10).await?.is_empty());
    // A second failure write finds it no longer new.
    assert!(
        !ports
            .store
            .fail_intake(&tenant, LOST, "again", late)
            .await?
    );

    // The status API shows the reason.
    let (status, body) = json(
        bulk_status::handle(
            ports.store.as_ref(),
            event(GET, "tenant-a", None, Some(LOST), &[]),
        )
        .await,
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "failed");
    assert!(body["failureReason"].as_str().is_some());

    // A stalled change whose device list was stored is re-planned, and its deadline moves.
    let (stalled, requests) =
        cellbridge::testing::sample_bulk_change("tenant-a", "stalled-1", 2, true);
    ports.store.create_bulk_change(&stalled, None).await?;
    ports
        .payloads
        .put(&stalled.payload_key, serde_json::to_vec(&requests)?)
        .await?;
    let late = stalled.created_at + INTAKE_TIMEOUT;
    let swept = bulk_scheduler::recover_stalled_intake(&ports, late).await?;
    assert_eq!(swept.replanned, 1);
    assert_eq!(stack.queue_depth("PlanQueue").await?, 1);
    assert!(
        ports.store.intake_overdue(late, 10).await?.is_empty(),
        "deadline moved"
    );
    run_planner(&stack, &ports).await?;
    let planned = ports
        .store
        .get_bulk_change(&tenant, "stalled-1")
        .await?
        .expect("stored");
    assert_eq!(planned.status, BulkChangeStatus::Processing);
    assert!(ports
        .store
        .intake_overdue(late + INTAKE_TIMEOUT * 10, 10)
        .await?
        .is_empty());
    Ok(())
}

#[tokio::test]
async fn a_missing_table_or_queue_is_a_refusal_no_retry_can_cure() -> Result<()> {
    use cellbridge::bulk_changes::dynamodb::{DynamoStore, TableNames};
    use cellbridge::bulk_changes::messages::PlanMessage;
    use cellbridge::bulk_changes::ports::{BulkChangeStore, QueueError, WorkQueues};
    use cellbridge::bulk_changes::sqs::{QueueUrls, SqsQueues};
    use cellbridge::common::store::StoreError;
    use cellbridge::common::tenant::TenantId;

    let stack = LocalAwsStack::start().await?;
    let missing = |what: &str| format!("cellbridge-missing-{what}");
    let store = DynamoStore::new(
        stack.dynamodb(),
        TableNames {
            bulk_changes: missing("bulk-changes"),
            device_changes: missing("device-changes"),
            audit_log: missing("audit"),
            idempotency: missing("idempotency"),
            sims: cellbridge::sims::wiring::SimTables {
                sims: missing("sims"),
                history: missing("sim-history"),
                sync: missing("carrier-sync"),
                usage: missing("sim-usage"),
            },
        },
    );
    let tenant = TenantId::parse("tenant-a").expect("tenant");
    let error = store
        .get_bulk_change(&tenant, "b-1")
        .await
        .expect_err("no such table");
    assert!(
        matches!(&error, StoreError::Rejected(message) if message.contains("ResourceNotFoundException")),
        "{error:?}"
    );
    assert!(!error.is_retryable());

    let plan_queue = stack.queue_url("PlanQueue")?;
    let (account_path, _) = plan_queue.rsplit_once('/').expect("a queue URL has a path");
    let queue_url = format!("{account_path}/cellbridge-no-such-queue");
    let queues = SqsQueues::new(
        stack.sqs(),
        QueueUrls {
            plan: queue_url.clone(),
            jasper_work: queue_url.clone(),
            thingspace_work: queue_url.clone(),
            telegence_work: queue_url,
        },
    );
    let error = queues
        .enqueue_plan(&PlanMessage {
            tenant_id: tenant,
            bulk_change_id: "b-1".into(),
        })
        .await
        .expect_err("no such queue");
    assert!(matches!(error, QueueError::Rejected(_)), "{error:?}");
    assert!(!error.is_retryable());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_pages_in_order_and_filters_by_device() -> Result<()> {
    use cellbridge::bulk_changes::bulk_change::AuditEntry;
    use cellbridge::common::store::PageRequest;
    use cellbridge::common::tenant::TenantId;
    let stack = LocalAwsStack::start().await?;
    let ports = stack.ports()?;
    let store = ports.store.as_ref();
    let tenant = TenantId::parse("tenant-a").expect("tenant");
    let entry = |n: u32, device: Option<u32>| AuditEntry {
        bulk_change_id: "b-1".into(),
        device_seq: device,
        description: format!("entry {n}"),
        processed_by: "carrier-worker".into(),
        request_text: None,
        response_text: None,
        has_errors: false,
        http_status: device.map(|_| 200),
        duration_ms: None,
        created_at: OffsetDateTime::now_utc(),
    };
    for n in 0..7 {
        let device = (n > 0).then_some(n % 2);
        store.append_audit(&tenant, &entry(n, device)).await?;
    }
    // Another tenant's entries under the same id are not this one's.
    let other = TenantId::parse("tenant-b").expect("tenant");
    store.append_audit(&other, &entry(99, Some(1))).await?;

    let read_all = |device: Option<u32>| {
        let tenant = tenant.clone();
        async move {
            let mut seen = Vec::new();
            let mut cursor = None;
            loop {
                let page = store
                    .audit_page(&tenant, "b-1", device, &PageRequest { limit: 3, cursor })
                    .await?;
                assert!(page.items.len() <= 3);
                seen.extend(page.items.into_iter().map(|r| r.entry.description));
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            anyhow::Ok(seen)
        }
    };
    let all = read_all(None).await?;
    assert_eq!(
        all,
        (0..7).map(|n| format!("entry {n}")).collect::<Vec<_>>(),
        "in the order written"
    );
    assert_eq!(read_all(Some(1)).await?, ["entry 1", "entry 3", "entry 5"]);
    Ok(())
}
