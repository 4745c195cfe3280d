//! The whole local stack from template.yaml: the AWS emulators provisioned, the API routes, and bulk changes
//! going from `POST /bulk-changes` through the planner and the carrier worker to the carrier
//! simulators, ThingSpace's answers coming back through the callback route; and simulated devices
//! registering, reporting and answering commands over the local MQTT broker.
//!
//! The first run builds the function binaries (minutes on a small machine); later runs reuse them.

use anyhow::{bail, Context, Result};
use aws_sdk_sqs::types::QueueAttributeName;
use cellbridge::bulk_changes::bulk_change::{BulkChangeStatus, DeviceChangeStatus};
use devstack::api_client::{ApiClient, ApiError};
use devstack::demo_accounts::DEMO_PASSWORD;
use devstack::template::ResourceKind;
use devstack::{Devstack, DevstackOptions};
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Every request of the bulk-change scenarios is made as this operator of the demo tenant.
const OPERATOR: &str = "ops@demo.example";

/// Devices in the end-to-end bulk change.
const DEVICES: u32 = 25;

#[path = "devstack/auth.rs"]
mod auth;
#[path = "devstack/console.rs"]
mod console;
#[path = "devstack/devices.rs"]
mod devices;
#[path = "devstack/inventory.rs"]
mod inventory;
#[path = "devstack/live.rs"]
mod live;
#[path = "devstack/presence.rs"]
mod presence;
#[path = "devstack/providers.rs"]
mod providers;

/// Checks `check` every 200 ms until it holds; fails naming `what` after `timeout`, a limit on
/// waiting, never an assertion on how long something took.
pub(crate) async fn until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let started = Instant::now();
    loop {
        if check().await? {
            return Ok(());
        }
        if started.elapsed() > timeout {
            bail!("{what}: not within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn valid_request() -> Value {
    cellbridge::testing::suspend_request(DEVICES, true)
}

async fn start(log_dir: &std::path::Path) -> Result<Devstack> {
    let mut opts = DevstackOptions::new(devstack::tools::workspace_root());
    opts.api_port = 0;
    opts.live_port = 0;
    opts.mqtt_port = 0;
    opts.log_dir = log_dir.to_path_buf();
    // A presence write interval longer than the whole run: the presence scenario's "no write
    // within the interval" then holds however slow the machine is.
    opts.function_env = BTreeMap::from([
        (
            "PRESENCE_WRITE_INTERVAL_SECONDS".to_owned(),
            "3600".to_owned(),
        ),
        ("PRESENCE_TIMEOUT_SECONDS".to_owned(), "7200".to_owned()),
    ]);
    Devstack::start(opts).await
}

/// One end-to-end check against the shared stack.
type Scenario = for<'a> fn(&'a Devstack) -> Pin<Box<dyn Future<Output = Result<()>> + 'a>>;

macro_rules! scenario {
    ($check:path) => {{
        fn run(stack: &Devstack) -> Pin<Box<dyn Future<Output = Result<()>> + '_>> {
            Box::pin($check(stack))
        }
        (stringify!($check), run as Scenario)
    }};
}

/// In the order a full run takes them: the malformed-request check counts the tables, so it runs
/// before anything creates bulk changes, and the secrets check reads every log line of the run.
/// Each also runs alone (`cargo xtask test -- <name>`) on a stack of its own.
fn scenarios() -> Vec<(&'static str, Scenario)> {
    vec![
        scenario!(resources_come_from_the_template),
        scenario!(unknown_routes_are_problems),
        scenario!(auth::every_route_needs_a_valid_token),
        scenario!(auth::malformed_requests_get_their_4xx_and_change_nothing),
        scenario!(auth::roles_limit_what_a_user_may_do),
        scenario!(auth::tenants_never_see_each_other),
        scenario!(auth::repeated_wrong_passwords_lock_the_account),
        scenario!(a_bulk_change_is_accepted_and_planned),
        scenario!(a_thingspace_bulk_change_completes_through_callbacks),
        scenario!(a_telegence_bulk_change_completes),
        scenario!(a_poison_message_ends_in_the_dead_letter_queue),
        scenario!(devices::devices_register_report_and_answer_commands),
        scenario!(presence::heartbeats_reach_presence_in_batches_and_cost_no_write),
        scenario!(providers::service_providers_keep_their_credentials_to_themselves),
        scenario!(inventory::the_carrier_sync_keeps_the_inventory_true),
        scenario!(console::the_console_works_in_a_real_browser),
        scenario!(live::bulk_changes_and_devices_show_up_live_in_order),
        scenario!(live::tenants_never_see_each_others_events),
        scenario!(live::the_stream_refuses_resets_and_prunes),
        scenario!(live::a_followed_device_streams_its_telemetry_live),
        scenario!(secrets_stay_out_of_logs_and_audit),
    ]
}

thread_local! {
    static RUNTIME: std::cell::OnceCell<tokio::runtime::Runtime> = const { std::cell::OnceCell::new() };
    /// The stack the scenarios share, started by the first one that runs. Scenarios run one at a
    /// time on the main thread (the harness's single-thread mode), which also keeps the stack's
    /// child processes tied to a thread that lives as long as the run.
    static STACK: RefCell<Option<Rc<Devstack>>> = const { RefCell::new(None) };
}

/// Where the stack writes its logs; the secrets check reads the functions' log there.
static LOG_DIR: OnceLock<tempfile::TempDir> = OnceLock::new();

fn function_log() -> Result<std::path::PathBuf> {
    Ok(LOG_DIR
        .get()
        .context("the stack has not started")?
        .path()
        .join("cargo-lambda.log"))
}

async fn shared_stack() -> Result<Rc<Devstack>> {
    if let Some(stack) = STACK.with(|s| s.borrow().clone()) {
        return Ok(stack);
    }
    let dir = match LOG_DIR.get() {
        Some(dir) => dir,
        None => {
            let created = tempfile::tempdir()?;
            LOG_DIR.get_or_init(|| created)
        }
    };
    let stack = Rc::new(start(dir.path()).await?);
    STACK.with(|s| *s.borrow_mut() = Some(stack.clone()));
    Ok(stack)
}

fn run(scenario: Scenario) -> Result<(), Failed> {
    RUNTIME.with(|runtime| {
        let runtime = runtime.get().ok_or("no Tokio runtime on this thread")?;
        runtime.block_on(async {
            let stack = shared_stack().await.map_err(|e| format!("{e:#}"))?;
            let outcome = scenario(&stack).await;
            outcome.map_err(|e| {
                // The whole function log outlives the run's temporary directory for a look.
                let kept = std::env::temp_dir()
                    .join(format!("cellbridge-devstack-{}.log", std::process::id()));
                let kept = match function_log().and_then(|log| Ok(std::fs::copy(log, &kept)?)) {
                    Ok(_) => format!("the whole function log: {}", kept.display()),
                    Err(error) => format!("the function log could not be kept: {error:#}"),
                };
                Failed::from(format!(
                    "{e:#}\n--- the stack ---\n{}\n--- function output (tail; {kept}) ---\n{}",
                    stack.summary(),
                    stack.function_output_tail()
                ))
            })
        })
    })
}

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    // One stack, one scenario at a time, on this thread (see `STACK`).
    args.test_threads = Some(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    match runtime {
        Ok(runtime) => RUNTIME.with(|r| r.set(runtime).ok()),
        Err(e) => {
            eprintln!("cannot start a Tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let trials = scenarios()
        .into_iter()
        .map(|(path, scenario)| {
            let name = path.rsplit("::").next().unwrap_or(path).trim().to_owned();
            Trial::test(name, move || run(scenario))
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    if let Some(stack) = STACK.with(|s| s.borrow_mut().take()) {
        match Rc::try_unwrap(stack) {
            Ok(stack) => RUNTIME.with(|r| {
                if let Some(runtime) = r.get() {
                    runtime.block_on(stack.shutdown());
                }
            }),
            Err(_) => eprintln!("the stack is still in use; its processes end with this one"),
        }
    }
    conclusion.exit_code()
}

/// Makes the traffic it inspects (a login, a refused token, a bulk change through a carrier)
/// before it looks, so it holds alone as well as after every other scenario.
async fn secrets_stay_out_of_logs_and_audit(stack: &Devstack) -> Result<()> {
    let refused = reqwest::Client::new()
        .get(format!("{}/bulk-changes", stack.api_url()))
        .bearer_auth("not.a.token")
        .send()
        .await?;
    assert_eq!(refused.status().as_u16(), 401);
    a_telegence_bulk_change_completes(stack).await?;
    auth::secrets_stay_out_of_logs_and_audit(stack, &function_log()?).await
}

/// Every token a client of this run was made with, for the secrets check at the end.
static ISSUED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn issued_tokens() -> Vec<String> {
    ISSUED.lock().map(|t| t.clone()).unwrap_or_default()
}

/// A client that sends `token` as the bearer token of every request.
fn client_with(token: &str) -> Result<reqwest::Client> {
    if let Ok(mut issued) = ISSUED.lock() {
        issued.push(token.to_owned());
    }
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse()?,
    );
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .build()?)
}

/// A typed API client signed in as `username`, its token remembered for the secrets check.
async fn signed_in(stack: &Devstack, username: &str) -> Result<ApiClient> {
    let client = stack.sign_in(username, DEMO_PASSWORD).await?;
    if let (Ok(mut issued), Some(token)) = (ISSUED.lock(), client.token()) {
        issued.push(token.to_owned());
    }
    Ok(client)
}

/// Requests the carrier simulators have logged that `matches` picks. Scenarios compare counts
/// before and after their own bulk change, so earlier scenarios' requests do not count.
fn simulator_requests(
    stack: &Devstack,
    matches: impl Fn(&carrier_sim::LoggedRequest) -> bool,
) -> Result<usize> {
    let sims = &stack.carriers().context("carriers")?.server.sims;
    Ok(sims.log.entries().iter().filter(|e| matches(e)).count())
}

/// Every carrier simulator knows the bulk changes' devices, active.
fn seed_devices(stack: &Devstack) -> Result<()> {
    let carriers = stack
        .carriers()
        .context("the devstack runs the carrier simulators")?;
    let iccids: Vec<String> = (0..DEVICES).map(cellbridge::testing::iccid).collect();
    carriers.seed_active(iccids.iter().map(String::as_str));
    Ok(())
}

async fn resources_come_from_the_template(stack: &Devstack) -> Result<()> {
    let sdk = stack.sdk_config();
    let resources = stack.resources();

    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let listed = dynamodb
        .list_tables()
        .send()
        .await?
        .table_names
        .unwrap_or_default();
    let declared: Vec<_> = stack
        .template()
        .of_kind(ResourceKind::Table)
        .map(|r| r.logical_id.clone())
        .collect();
    for table in [
        "BulkChangesTable",
        "DeviceChangesTable",
        "AccountsTable",
        "DevicesTable",
        "TelemetryTable",
        "CommandsTable",
    ] {
        assert!(
            declared.iter().any(|d| d == table),
            "{table} in {declared:?}"
        );
    }
    for id in &declared {
        let name = resources.table_name(id).context("table name")?;
        assert!(
            listed.iter().any(|t| t == name),
            "table {name} missing from {listed:?}"
        );
    }
    let bulk = dynamodb
        .describe_table()
        .table_name("BulkChangesTable")
        .send()
        .await?;
    let gsis = bulk
        .table()
        .map(|t| t.global_secondary_indexes())
        .unwrap_or_default();
    assert!(
        gsis.iter().any(|g| g.index_name() == Some("ByStatus")),
        "{gsis:?}"
    );
    let ttl = dynamodb
        .describe_time_to_live()
        .table_name("IdempotencyTable")
        .send()
        .await?;
    assert_eq!(
        ttl.time_to_live_description()
            .and_then(|d| d.attribute_name()),
        Some("expiresAt")
    );

    let sqs = aws_sdk_sqs::Client::new(sdk);
    for (queue, dlq, max) in [
        ("PlanQueue", "PlanDeadLetterQueue", 5),
        ("JasperWorkQueue", "JasperWorkDeadLetterQueue", 8),
        ("ThingSpaceWorkQueue", "ThingSpaceWorkDeadLetterQueue", 8),
        ("TelegenceWorkQueue", "TelegenceWorkDeadLetterQueue", 8),
        ("PresenceQueue", "PresenceDeadLetterQueue", 5),
    ] {
        let url = resources.queue_url(queue).context("queue URL")?;
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await?
            .attributes
            .unwrap_or_default();
        let redrive: Value = serde_json::from_str(
            attrs
                .get(&QueueAttributeName::RedrivePolicy)
                .context("redrive policy")?,
        )?;
        assert_eq!(
            redrive["deadLetterTargetArn"],
            resources.arn(dlq).context("DLQ ARN")?,
            "{queue}"
        );
        assert_eq!(
            redrive["maxReceiveCount"].to_string().trim_matches('"'),
            max.to_string(),
            "{queue}"
        );
    }
    let plan_visibility = sqs
        .get_queue_attributes()
        .queue_url(resources.queue_url("PlanQueue").context("PlanQueue")?)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .send()
        .await?;
    assert_eq!(
        plan_visibility
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::VisibilityTimeout))
            .map(String::as_str),
        Some("1800")
    );

    let s3 = cellbridge::common::aws::s3(sdk);
    let bucket = resources.bucket_name("PayloadBucket").context("bucket")?;
    s3.head_bucket()
        .bucket(bucket)
        .send()
        .await
        .context("the payload bucket exists")?;
    Ok(())
}

async fn unknown_routes_are_problems(stack: &Devstack) -> Result<()> {
    let client = reqwest::Client::new();
    let api = stack.api_url();

    let response = client.get(format!("{api}/no-such-route")).send().await?;
    assert_eq!(response.status().as_u16(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await?;
    assert_eq!(problem["status"], 404);

    let response = client.delete(format!("{api}/bulk-changes")).send().await?;
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let allow = response
        .headers()
        .get("allow")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");

    // Lambda's 6 MB payload limit, enforced before any function runs.
    let response = client
        .post(format!("{api}/bulk-changes"))
        .body(vec![b' '; 7 * 1024 * 1024])
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 413);
    Ok(())
}

async fn a_bulk_change_is_accepted_and_planned(stack: &Devstack) -> Result<()> {
    seed_devices(stack)?;
    let jasper_put = |e: &carrier_sim::LoggedRequest| {
        e.carrier == "jasper" && e.method == "PUT" && e.status == 200
    };
    let puts_before = simulator_requests(stack, jasper_put)?;
    let client = signed_in(stack, OPERATOR).await?;
    let id = client
        .create_bulk_change(&valid_request(), None)
        .await?
        .id
        .into_owned();

    // The planner plans it, the worker's SQS source hands the device changes to the worker, and
    // the worker takes them to the Jasper simulator.
    let view = client
        .wait_bulk_change_final(&id, Duration::from_secs(240))
        .await?;
    assert_eq!(view.id, id.as_str(), "{view:?}");
    assert_eq!(view.status, BulkChangeStatus::Completed, "{view:?}");
    let counts = &view.counts;
    assert_eq!(
        (
            counts.total,
            counts.pending,
            counts.succeeded,
            counts.failed
        ),
        (DEVICES, 0, DEVICES, 0),
        "{view:?}"
    );
    for queue in ["PlanDeadLetterQueue", "JasperWorkDeadLetterQueue"] {
        assert_eq!(queue_messages(stack, queue).await?, 0, "{queue}");
    }
    let stored = cellbridge::common::aws::dynamodb(stack.sdk_config())
        .scan()
        .table_name(
            stack
                .resources()
                .table_name("DeviceChangesTable")
                .context("no table")?,
        )
        .select(aws_sdk_dynamodb::types::Select::Count)
        .filter_expression("bulkChangeKey = :key")
        .expression_attribute_values(
            ":key",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("demo#{id}")),
        )
        .send()
        .await?;
    assert_eq!(
        stored.count, DEVICES as i32,
        "device changes stored under the caller's tenant"
    );
    let sims = &stack.carriers().context("carriers")?.server.sims;
    let puts = simulator_requests(stack, jasper_put)? - puts_before;
    assert_eq!(puts, DEVICES as usize, "one carrier call per device");
    assert_eq!(
        sims.jasper
            .device(&cellbridge::testing::iccid(0))
            .map(|d| d.status),
        Some("DEACTIVATED".to_owned())
    );
    let devices = client.bulk_change_devices(&id).await?;
    assert_eq!(devices.len(), DEVICES as usize, "{devices:?}");
    assert!(
        devices
            .iter()
            .all(|d| d.status == DeviceChangeStatus::Succeeded),
        "{devices:?}"
    );

    // Another tenant's operator does not find it.
    let other = signed_in(stack, "ops@globex.example").await?;
    let refused = other.bulk_change(&id).await.err();
    assert_eq!(
        refused
            .as_ref()
            .and_then(ApiError::status)
            .map(|s| s.as_u16()),
        Some(404),
        "{refused:?}"
    );
    Ok(())
}

/// One ThingSpace request for the whole bulk change; the simulator calls the callback route back
/// once per device, and those callbacks finish the device changes.
async fn a_thingspace_bulk_change_completes_through_callbacks(stack: &Devstack) -> Result<()> {
    seed_devices(stack)?;
    let suspend = |e: &carrier_sim::LoggedRequest| {
        e.carrier == "thingspace" && e.path.contains("/devices/actions/suspend")
    };
    let actions_before = simulator_requests(stack, suspend)?;
    let client = signed_in(stack, OPERATOR).await?;
    let mut request = valid_request();
    request["carrier"] = json!("thingSpace");
    let created = client.create_bulk_change(&request, None).await?;
    let view = client
        .wait_bulk_change_final(&created.id, Duration::from_secs(240))
        .await?;
    assert_eq!(view.status, BulkChangeStatus::Completed, "{view:?}");
    let actions = simulator_requests(stack, suspend)? - actions_before;
    assert_eq!(actions, 1, "one carrier request for {DEVICES} devices");
    Ok(())
}

/// Telegence changes one subscriber a call, found by ICCID when the request names no MSISDN.
async fn a_telegence_bulk_change_completes(stack: &Devstack) -> Result<()> {
    seed_devices(stack)?;
    let patch = |e: &carrier_sim::LoggedRequest| {
        e.carrier == "telegence" && e.method == "PATCH" && e.status == 200
    };
    let patches_before = simulator_requests(stack, patch)?;
    let client = signed_in(stack, OPERATOR).await?;
    let mut request = valid_request();
    request["carrier"] = json!("telegence");
    let created = client.create_bulk_change(&request, None).await?;
    let view = client
        .wait_bulk_change_final(&created.id, Duration::from_secs(240))
        .await?;
    assert_eq!(view.status, BulkChangeStatus::Completed, "{view:?}");
    let sims = &stack.carriers().context("carriers")?.server.sims;
    let patches = simulator_requests(stack, patch)? - patches_before;
    assert_eq!(patches, DEVICES as usize);
    let suspended = sims
        .telegence
        .subscriber_by_iccid(&cellbridge::testing::iccid(3))
        .map(|s| format!("{:?}", s.status));
    assert_eq!(suspended.as_deref(), Some("Suspended"));
    Ok(())
}

/// The planner reports the unreadable message as a batch item failure; the poller leaves it on
/// the queue, and after maxReceiveCount receives the local SQS moves it to the dead-letter queue.
async fn a_poison_message_ends_in_the_dead_letter_queue(stack: &Devstack) -> Result<()> {
    let sqs = aws_sdk_sqs::Client::new(stack.sdk_config());
    let plan_queue = stack
        .resources()
        .queue_url("PlanQueue")
        .context("PlanQueue")?;
    // 1800 s in the template: shorten it so the retries happen within the test.
    sqs.set_queue_attributes()
        .queue_url(plan_queue)
        .attributes(QueueAttributeName::VisibilityTimeout, "1")
        .send()
        .await?;
    // A receive already waiting applies the visibility timeout it began with: let every receive
    // under way return first, so the message meets only receives begun after the change.
    stack.wait_for_receives_under_way("PlanQueue").await?;
    sqs.send_message()
        .queue_url(plan_queue)
        .message_body("this is not a plan message")
        .send()
        .await?;
    let started = Instant::now();
    while queue_messages(stack, "PlanDeadLetterQueue").await? == 0 {
        if started.elapsed() > Duration::from_secs(120) {
            bail!("the poison message is not in the dead-letter queue after 2 minutes");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let dlq = stack
        .resources()
        .queue_url("PlanDeadLetterQueue")
        .context("PlanDeadLetterQueue")?;
    let dead = sqs.receive_message().queue_url(dlq).send().await?;
    let bodies: Vec<_> = dead.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(bodies, ["this is not a plan message"]);
    assert_eq!(queue_messages(stack, "PlanQueue").await?, 0);
    Ok(())
}

/// Visible plus in-flight messages.
async fn queue_messages(stack: &Devstack, logical_id: &str) -> Result<u64> {
    let sqs = aws_sdk_sqs::Client::new(stack.sdk_config());
    let url = stack
        .resources()
        .queue_url(logical_id)
        .context("queue URL")?;
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await?
        .attributes
        .unwrap_or_default();
    Ok(attrs.values().filter_map(|v| v.parse::<u64>().ok()).sum())
}
