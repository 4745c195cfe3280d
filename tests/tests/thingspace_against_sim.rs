//! The ThingSpace adapter against the ThingSpace simulator: cached credentials, re-login on an
//! expired session, one request for 10,000 devices with a callback each, per-device failures,
//! rate limits, and no secret in the simulator's log or the call journal.

use carrier_sim::thingspace::{
    CallbackSink, DeviceState, RequestStatus, ThingSpaceConfig, DEFAULT_ACCOUNT, DEFAULT_APP_KEY,
    DEFAULT_APP_SECRET, DEFAULT_PASSWORD, DEFAULT_SERVICE_PLAN, DEFAULT_USERNAME,
};
use carrier_sim::{SimConfig, SimServer};
use cellbridge::bulk_changes::change::{
    ChangeSpec, DeviceEdit, DeviceRef, DeviceRequest, StatusAction,
};
use cellbridge::carriers::error::CarrierError;
use cellbridge::carriers::http::http_client;
use cellbridge::carriers::port::{CallJournal, CarrierOutcome, CarrierPort, RequestProgress};
use cellbridge::carriers::thingspace::{
    parse_callback, CallbackReport, ThingSpaceClient, ThingSpaceCredentials,
    ThingSpaceRequestStatus,
};
use cellbridge::common::ids::Iccid;
use cellbridge::testing::iccid;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

const TOKEN_PATH: &str = "/api/ts/v1/oauth2/token";
const LOGIN_PATH: &str = "/api/m2m/v1/session/login";
const HOOK_PASSWORD: &str = "hook-listener-secret";

/// Callbacks quickly, so tests do not wait on the defaults meant for demos.
fn quick() -> ThingSpaceConfig {
    ThingSpaceConfig {
        callback_delay: Duration::from_millis(300),
        callback_retry_delay: Duration::from_millis(20),
        ..ThingSpaceConfig::default()
    }
}

async fn simulator(config: ThingSpaceConfig) -> anyhow::Result<SimServer> {
    let config = SimConfig {
        thingspace: config,
        ..Default::default()
    };
    SimServer::start("127.0.0.1:0".parse()?, config).await
}

fn credentials() -> ThingSpaceCredentials {
    ThingSpaceCredentials {
        app_key: DEFAULT_APP_KEY.into(),
        app_secret: DEFAULT_APP_SECRET.into(),
        username: DEFAULT_USERNAME.into(),
        password: DEFAULT_PASSWORD.into(),
        account_name: DEFAULT_ACCOUNT.into(),
    }
}

fn client_with(
    server: &SimServer,
    credentials: ThingSpaceCredentials,
) -> anyhow::Result<ThingSpaceClient> {
    Ok(ThingSpaceClient::new(
        http_client()?,
        format!("{}/thingspace/api", server.url()),
        credentials,
    )
    .with_activation_defaults(DEFAULT_SERVICE_PLAN, "94105"))
}

fn client(server: &SimServer) -> anyhow::Result<ThingSpaceClient> {
    client_with(server, credentials())
}

fn device(n: u32) -> anyhow::Result<DeviceRequest> {
    Ok(DeviceRequest {
        device: DeviceRef {
            iccid: Iccid::parse(&iccid(n))?,
            msisdn: None,
            imei: None,
        },
        edit: DeviceEdit::None,
    })
}

fn devices(ns: impl IntoIterator<Item = u32>) -> anyhow::Result<Vec<DeviceRequest>> {
    ns.into_iter().map(device).collect()
}

fn seed(server: &SimServer, ns: impl IntoIterator<Item = u32>, state: DeviceState) {
    let iccids: Vec<String> = ns.into_iter().map(iccid).collect();
    server
        .sims
        .thingspace
        .seed_devices(iccids.iter().map(String::as_str), state);
}

fn status(action: StatusAction) -> ChangeSpec {
    ChangeSpec::StatusUpdate { action }
}

/// Calls the simulator logged for `method path`.
fn calls(server: &SimServer, method: &str, path: &str) -> usize {
    server
        .sims
        .log
        .entries()
        .iter()
        .filter(|e| e.carrier == "thingspace" && e.method == method && e.path == path)
        .count()
}

fn request_id(outcome: CarrierOutcome) -> anyhow::Result<String> {
    match outcome {
        CarrierOutcome::Accepted {
            request_id: Some(id),
        } => Ok(id),
        other => anyhow::bail!("expected an accepted request, got {other:?}"),
    }
}

async fn settle(server: &SimServer) -> anyhow::Result<()> {
    anyhow::ensure!(
        server
            .sims
            .thingspace
            .wait_idle(Duration::from_secs(120))
            .await,
        "callbacks did not settle: {:?}",
        server.sims.thingspace.callback_stats()
    );
    Ok(())
}

fn reports(sink: &CallbackSink) -> anyhow::Result<Vec<CallbackReport>> {
    sink.received()
        .iter()
        .map(|body| parse_callback(body).map_err(anyhow::Error::from))
        .collect()
}

/// A token and a session obtained by hand, for calls the adapter would never make.
async fn raw_session(server: &SimServer) -> anyhow::Result<(reqwest::Client, String, String)> {
    let http = reqwest::Client::new();
    let base = format!("{}/thingspace/api", server.url());
    let token: Value = http
        .post(format!("{base}/ts/v1/oauth2/token"))
        .basic_auth(DEFAULT_APP_KEY, Some(DEFAULT_APP_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await?
        .json()
        .await?;
    let token = token["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let session: Value = http
        .post(format!("{base}/m2m/v1/session/login"))
        .bearer_auth(&token)
        .json(&json!({"username": DEFAULT_USERNAME, "password": DEFAULT_PASSWORD}))
        .send()
        .await?
        .json()
        .await?;
    let session = session["sessionToken"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Ok((http, token, session))
}

#[tokio::test]
async fn one_token_and_one_session_serve_many_calls() -> anyhow::Result<()> {
    let server = simulator(quick()).await?;
    seed(&server, 0..5, DeviceState::Active);
    let thingspace = client(&server)?;

    // Concurrent first calls wait for one login instead of each logging in.
    let reads = (0..8).map(|n| {
        let thingspace = thingspace.clone();
        async move {
            thingspace
                .get_device(&iccid(n % 5), &CallJournal::default())
                .await
        }
    });
    for read in futures::future::join_all(reads).await {
        let device = read?;
        assert_eq!(device.status, "active");
        assert_eq!(device.rate_plan.as_deref(), Some(DEFAULT_SERVICE_PLAN));
    }
    let suspend = status(StatusAction::Suspend);
    // Pending until released, however long the check takes against the callback delay.
    server.sims.thingspace.hold_requests();
    let id = request_id(
        thingspace
            .apply(&suspend, &devices(0..2)?, &CallJournal::default())
            .await?,
    )?;
    assert_eq!(
        thingspace
            .check(&suspend, &id, &device(0)?, &CallJournal::default())
            .await?,
        RequestProgress::Pending
    );
    server.sims.thingspace.release_requests();
    settle(&server).await?;
    assert_eq!(
        thingspace
            .check(&suspend, &id, &device(0)?, &CallJournal::default())
            .await?,
        RequestProgress::Succeeded
    );

    assert_eq!(calls(&server, "POST", TOKEN_PATH), 1);
    assert_eq!(calls(&server, "POST", LOGIN_PATH), 1);
    let log = server.sims.log.entries();
    assert_eq!(log.len(), 2 + 8 + 1 + 2, "{log:?}");
    assert!(log
        .iter()
        .filter(|e| e.path != TOKEN_PATH)
        .all(|e| e.account.as_deref() == Some(DEFAULT_ACCOUNT)));
    Ok(())
}

#[tokio::test]
async fn a_sync_lists_the_whole_account_page_by_page() -> anyhow::Result<()> {
    let server = simulator(ThingSpaceConfig {
        list_page_size: 40,
        ..quick()
    })
    .await?;
    seed(&server, 0..90, DeviceState::Active);
    seed(&server, 90..100, DeviceState::Suspend);
    let thingspace = client(&server)?;
    let journal = CallJournal::default();
    let mut listed = Vec::new();
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = thingspace.list_devices(after.as_deref(), &journal).await?;
        pages.push(page.sims.len());
        after = page.sims.last().map(|sim| sim.iccid.clone());
        listed.extend(page.sims);
        if !page.more {
            break;
        }
    }
    assert_eq!(pages, [40, 40, 20]);
    let iccids: BTreeSet<&str> = listed.iter().map(|sim| sim.iccid.as_str()).collect();
    assert_eq!(
        (iccids.len(), listed.len()),
        (100, 100),
        "every device once"
    );
    let suspended = listed
        .iter()
        .filter(|sim| sim.status.eq_ignore_ascii_case("suspend"))
        .count();
    assert_eq!(suspended, 10, "{:?}", listed.last());
    Ok(())
}

#[tokio::test]
async fn an_expired_session_or_token_is_renewed_once() -> anyhow::Result<()> {
    let server = simulator(quick()).await?;
    seed(&server, 0..1, DeviceState::Active);
    let thingspace = client(&server)?;
    thingspace
        .get_device(&iccid(0), &CallJournal::default())
        .await?;

    server.sims.thingspace.expire_sessions();
    let journal = CallJournal::default();
    assert_eq!(
        thingspace.get_device(&iccid(0), &journal).await?.status,
        "active"
    );
    let steps: Vec<(String, Option<u16>)> = journal
        .take()
        .into_iter()
        .map(|e| {
            (
                e.url.rsplit("/api/").next().unwrap_or("").to_owned(),
                e.status,
            )
        })
        .collect();
    assert_eq!(
        steps,
        vec![
            ("m2m/v1/devices/actions/list".to_owned(), Some(400)),
            ("m2m/v1/session/login".to_owned(), Some(200)),
            ("m2m/v1/devices/actions/list".to_owned(), Some(200)),
        ]
    );
    assert_eq!(calls(&server, "POST", LOGIN_PATH), 2);

    server.sims.thingspace.expire_tokens();
    let journal = CallJournal::default();
    thingspace.get_device(&iccid(0), &journal).await?;
    let statuses: Vec<Option<u16>> = journal.take().iter().map(|e| e.status).collect();
    assert_eq!(statuses, vec![Some(401), Some(200), Some(200)]);
    assert_eq!(calls(&server, "POST", TOKEN_PATH), 2);
    assert_eq!(
        calls(&server, "POST", LOGIN_PATH),
        2,
        "the session outlived the token"
    );
    Ok(())
}

#[tokio::test]
async fn refused_credentials_fail_fast_and_a_locked_user_stays_out() -> anyhow::Result<()> {
    let server = simulator(quick()).await?;
    seed(&server, 0..1, DeviceState::Active);

    let wrong_secret = ThingSpaceCredentials {
        app_secret: "not-the-secret".into(),
        ..credentials()
    };
    assert_eq!(
        client_with(&server, wrong_secret)?
            .get_device(&iccid(0), &CallJournal::default())
            .await,
        Err(CarrierError::AuthFailed)
    );

    // One client, three calls: one login attempt, so a worker never locks the user by itself.
    let wrong_password = || ThingSpaceCredentials {
        password: "not-the-password".into(),
        ..credentials()
    };
    let refused = client_with(&server, wrong_password())?;
    for _ in 0..3 {
        assert_eq!(
            refused.get_device(&iccid(0), &CallJournal::default()).await,
            Err(CarrierError::AuthFailed)
        );
    }
    assert_eq!(calls(&server, "POST", LOGIN_PATH), 1);

    // Four more clients make five failures in a row: the user is locked, right password or not.
    for _ in 0..4 {
        let _ = client_with(&server, wrong_password())?
            .get_device(&iccid(0), &CallJournal::default())
            .await;
    }
    assert_eq!(
        client(&server)?
            .get_device(&iccid(0), &CallJournal::default())
            .await,
        Err(CarrierError::AuthFailed)
    );
    assert_eq!(calls(&server, "POST", LOGIN_PATH), 6);
    Ok(())
}

#[tokio::test]
async fn ten_thousand_devices_are_one_request_and_ten_thousand_callbacks() -> anyhow::Result<()> {
    let config = ThingSpaceConfig {
        callback_delay: Duration::from_millis(500),
        duplicate_callback_rate: 0.02,
        lost_callback_rate: 0.02,
        callback_concurrency: 32,
        ..quick()
    };
    let server = simulator(config).await?;
    seed(&server, 0..10_000, DeviceState::Active);
    let sink = CallbackSink::start("127.0.0.1:0".parse()?).await?;
    let flaky: Vec<String> = (0..50).map(iccid).collect();
    sink.refuse_first_attempt(flaky.iter().map(String::as_str));
    let thingspace = client(&server)?;
    thingspace
        .register_callback(
            cellbridge::carriers::thingspace::CARRIER_SERVICE,
            &sink.url(),
            Some("hook"),
            Some(HOOK_PASSWORD),
            &CallJournal::default(),
        )
        .await?;

    let suspend = status(StatusAction::Suspend);
    assert_eq!(thingspace.batch_limit(&suspend), 10_000);
    // Pending until released, however long the checks below take against the callback delay.
    server.sims.thingspace.hold_requests();
    let id = request_id(
        thingspace
            .apply(&suspend, &devices(0..10_000)?, &CallJournal::default())
            .await?,
    )?;
    assert_eq!(
        calls(&server, "POST", "/api/m2m/v1/devices/actions/suspend"),
        1
    );
    assert_eq!(server.sims.thingspace.request_devices(&id), Some(10_000));
    assert_eq!(
        thingspace
            .request_status(&id, &CallJournal::default())
            .await?,
        ThingSpaceRequestStatus::Pending
    );
    server.sims.thingspace.release_requests();

    settle(&server).await?;
    let stats = server.sims.thingspace.callback_stats();
    let reports = reports(&sink)?;
    let unique: HashSet<&str> = reports.iter().map(|r| r.iccid.as_str()).collect();
    assert!(stats.lost > 0 && stats.duplicated > 0, "{stats:?}");
    assert_eq!(unique.len() as u64 + stats.lost, 10_000, "{stats:?}");
    assert_eq!(reports.len() as u64, unique.len() as u64 + stats.duplicated);
    assert_eq!(stats.delivered, reports.len() as u64);
    assert_eq!(stats.gave_up, 0);
    assert_eq!(stats.failed_attempts, sink.refused());
    assert!(
        sink.refused() >= 40,
        "most flaky callbacks were refused once"
    );
    assert!(reports.iter().all(|r| r.request_id == id
        && r.progress == RequestProgress::Succeeded
        && r.username.as_deref() == Some("hook")
        && r.password.as_ref().map(|p| p.expose_secret()) == Some(HOOK_PASSWORD)
        && r.msisdn.is_some()));
    // Re-sent callbacks count their attempts.
    for body in sink.received() {
        let value: Value = serde_json::from_slice(&body)?;
        let first_id = value["deviceIds"][0]["id"].as_str().unwrap_or_default();
        let expected = if flaky.iter().any(|f| f == first_id) {
            2
        } else {
            1
        };
        assert_eq!(value["callbackCount"], json!(expected), "{value}");
        assert_eq!(value["maxCallbackThreshold"], json!(4));
    }

    // Polling agrees with the callbacks, lost ones included.
    assert_eq!(
        server.sims.thingspace.request(&id).map(|r| r.status),
        Some(RequestStatus::Success)
    );
    let lost = (0..10_000u32)
        .find(|n| !unique.contains(iccid(*n).as_str()))
        .ok_or_else(|| anyhow::anyhow!("no lost callback"))?;
    assert_eq!(
        thingspace
            .check(&suspend, &id, &device(lost)?, &CallJournal::default())
            .await?,
        RequestProgress::Succeeded
    );
    assert!((0..10_000).all(|n| server
        .sims
        .thingspace
        .device(&iccid(n))
        .is_some_and(|d| d.state == DeviceState::Suspend)));
    Ok(())
}

#[tokio::test]
async fn invalid_transitions_and_unknown_devices_fail_in_their_callbacks() -> anyhow::Result<()> {
    let server = simulator(quick()).await?;
    seed(&server, [0], DeviceState::Active);
    seed(&server, [1], DeviceState::Suspend);
    seed(&server, [2], DeviceState::Deactive);
    let sink = CallbackSink::start("127.0.0.1:0".parse()?).await?;
    let thingspace = client(&server)?;
    thingspace
        .register_callback(
            cellbridge::carriers::thingspace::CARRIER_SERVICE,
            &sink.url(),
            None,
            None,
            &CallJournal::default(),
        )
        .await?;

    let activate = status(StatusAction::Activate);
    let activation = request_id(
        thingspace
            .apply(&activate, &devices([0, 2, 9])?, &CallJournal::default())
            .await?,
    )?;
    let plan = ChangeSpec::CarrierRatePlanChange {
        rate_plan: "M2M4G5GB".into(),
        comm_plan: None,
    };
    let plan_change = request_id(
        thingspace
            .apply(&plan, &devices([1, 0])?, &CallJournal::default())
            .await?,
    )?;
    settle(&server).await?;

    let by_device: HashMap<(String, String), CallbackReport> = reports(&sink)?
        .into_iter()
        .map(|r| ((r.request_id.clone(), r.iccid.clone()), r))
        .collect();
    let progress = |request: &str, n: u32| {
        by_device
            .get(&(request.to_owned(), iccid(n)))
            .map(|r| r.progress.clone())
    };
    assert_eq!(by_device.len(), 5);
    assert_eq!(
        progress(&activation, 0),
        Some(RequestProgress::Succeeded),
        "already active is done"
    );
    assert_eq!(progress(&activation, 2), Some(RequestProgress::Succeeded));
    assert!(by_device
        .get(&(activation.clone(), iccid(2)))
        .is_some_and(|r| r.msisdn.is_some()));
    assert_eq!(
        progress(&activation, 9),
        Some(RequestProgress::Failed(CarrierError::NotFound))
    );
    assert!(matches!(
        progress(&plan_change, 1),
        Some(RequestProgress::Failed(
            CarrierError::InvalidTransition { .. }
        ))
    ));
    assert_eq!(progress(&plan_change, 0), Some(RequestProgress::Succeeded));

    // Polling: both requests failed as a whole; each device is judged by where it is now.
    let journal = CallJournal::default();
    for (change, request, n, expected) in [
        (&activate, &activation, 0, RequestProgress::Succeeded),
        (&activate, &activation, 2, RequestProgress::Succeeded),
        (
            &activate,
            &activation,
            9,
            RequestProgress::Failed(CarrierError::NotFound),
        ),
        (&plan, &plan_change, 0, RequestProgress::Succeeded),
        (
            &plan,
            &plan_change,
            1,
            RequestProgress::Failed(CarrierError::InvalidTransition {
                from: "suspend".into(),
                to: "active".into(),
            }),
        ),
    ] {
        assert_eq!(
            thingspace
                .check(change, request, &device(n)?, &journal)
                .await?,
            expected,
            "device {n}"
        );
    }
    assert_eq!(
        thingspace.request_status(&activation, &journal).await?,
        ThingSpaceRequestStatus::Failure
    );
    assert_eq!(
        thingspace.read_device(&device(9)?.device, &journal).await,
        Err(CarrierError::NotFound)
    );
    Ok(())
}

#[tokio::test]
async fn a_sim_swap_moves_the_line_to_its_new_iccid_and_answers_by_callback() -> anyhow::Result<()>
{
    let server = simulator(quick()).await?;
    seed(&server, [0, 1, 2], DeviceState::Active);
    let sink = CallbackSink::start("127.0.0.1:0".parse()?).await?;
    let thingspace = client(&server)?;
    let journal = CallJournal::default();
    thingspace
        .register_callback(
            cellbridge::carriers::thingspace::CARRIER_SERVICE,
            &sink.url(),
            None,
            None,
            &journal,
        )
        .await?;
    let swap = ChangeSpec::IccidImeiChange;
    assert_eq!(thingspace.batch_limit(&swap), 1);
    let to = |n: u32| -> anyhow::Result<DeviceRequest> {
        Ok(DeviceRequest {
            edit: DeviceEdit::IdentifierSwap {
                new_iccid: Some(Iccid::parse(&iccid(n))?),
                new_imei: None,
            },
            ..device(0)?
        })
    };
    let swapped = request_id(thingspace.apply(&swap, &[to(50)?], &journal).await?)?;
    // A SIM that is a line already cannot take one over.
    let refused = request_id(
        thingspace
            .apply(
                &swap,
                &[DeviceRequest {
                    device: device(1)?.device,
                    ..to(2)?
                }],
                &journal,
            )
            .await?,
    )?;
    settle(&server).await?;

    let reports = reports(&sink)?;
    let report = |request: &str| reports.iter().find(|r| r.request_id == request).cloned();
    let done = report(&swapped).ok_or_else(|| anyhow::anyhow!("no callback"))?;
    assert_eq!(done.iccid, iccid(0), "named as the request named it");
    assert_eq!(done.progress, RequestProgress::Succeeded);
    assert!(matches!(
        report(&refused).map(|r| r.progress),
        Some(RequestProgress::Failed(CarrierError::Permanent { .. }))
    ));
    let moved = server.sims.thingspace.device(&iccid(50));
    assert_eq!(moved.map(|d| d.state), Some(DeviceState::Active));
    assert!(server.sims.thingspace.device(&iccid(0)).is_none());
    assert_eq!(
        calls(&server, "PUT", "/api/m2m/v1/devices/4G/actions/deviceId"),
        2
    );
    // Polled instead: the request's status says it.
    assert_eq!(
        thingspace
            .check(&swap, &swapped, &to(50)?, &journal)
            .await?,
        RequestProgress::Succeeded
    );
    assert!(matches!(
        thingspace.check(&swap, &refused, &to(2)?, &journal).await?,
        RequestProgress::Failed(_)
    ));
    // A swap that names no new identifier is refused before any call.
    assert!(matches!(
        thingspace.apply(&swap, &devices([1])?, &journal).await,
        Err(CarrierError::Permanent { code, .. }) if code == "request"
    ));
    Ok(())
}

#[tokio::test]
async fn malformed_requests_are_refused_at_once() -> anyhow::Result<()> {
    let server = simulator(quick()).await?;
    seed(&server, 0..5, DeviceState::Active);
    let thingspace = client(&server)?;

    let unknown_plan = ChangeSpec::ActivateNewService {
        rate_plan: "NO-SUCH-PLAN".into(),
        zip_code: None,
    };
    assert!(matches!(
        thingspace
            .apply(&unknown_plan, &devices([0])?, &CallJournal::default())
            .await,
        Err(CarrierError::Permanent { code, .. }) if code == "REQUEST_FAILED._servicePlan_.NotFound"
    ));
    server
        .sims
        .thingspace
        .configure(|c| c.max_devices_per_request = 3);
    assert!(matches!(
        thingspace
            .apply(&status(StatusAction::Suspend), &devices(0..4)?, &CallJournal::default())
            .await,
        Err(CarrierError::Permanent { code, .. }) if code == "INPUT_INVALID.MaxRequestsExceeded"
    ));
    assert!(matches!(
        thingspace
            .apply(&ChangeSpec::UsernameCostCenterEdit, &devices([0])?, &CallJournal::default())
            .await,
        Err(CarrierError::Permanent { code, .. }) if code == "unsupported"
    ));

    // What the adapter's types never let through, sent by hand.
    let (http, token, session) = raw_session(&server).await?;
    let url = format!(
        "{}/thingspace/api/m2m/v1/devices/actions/suspend",
        server.url()
    );
    let send = |body: Value, with_session: bool| {
        let mut request = http.post(&url).bearer_auth(&token).json(&body);
        if with_session {
            request = request.header("VZ-M2M-Token", &session);
        }
        async move {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let body: Value = response.json().await?;
            Ok::<_, anyhow::Error>((status, body["errorCode"].as_str().map(str::to_owned)))
        }
    };
    let one = |kind: &str, id: &str| {
        let device = json!({"deviceIds": [{"kind": kind, "id": id}]});
        json!({"accountName": DEFAULT_ACCOUNT, "devices": [device]})
    };
    assert_eq!(
        send(one("iccid", "8901"), true).await?,
        (400, Some("INPUT_INVALID.Device.Identifier.Invalid".into()))
    );
    assert_eq!(
        send(one("colour", "blue"), true).await?,
        (400, Some("INPUT_INVALID.Device.Kind.Invalid".into()))
    );
    assert_eq!(
        send(one("iccid", &iccid(0)), false).await?,
        (400, Some("REQUEST_FAILED.SessionToken.Format".into()))
    );
    assert_eq!(
        send(json!({"devices": []}), true).await?,
        (400, Some("INPUT_INVALID.Account.NotDefined".into()))
    );
    Ok(())
}

#[tokio::test]
async fn the_activation_rate_limit_is_a_rate_limit() -> anyhow::Result<()> {
    let mut config = quick();
    config.rate_limits.activate = Some(2);
    let server = simulator(config).await?;
    seed(&server, 0..4, DeviceState::PreActive);
    let thingspace = client(&server)?;
    let activate = status(StatusAction::Activate);
    for n in 0..2 {
        request_id(
            thingspace
                .apply(&activate, &devices([n])?, &CallJournal::default())
                .await?,
        )?;
    }
    match thingspace
        .apply(&activate, &devices([2])?, &CallJournal::default())
        .await
    {
        Err(CarrierError::RateLimited {
            retry_after: Some(wait),
        }) => assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(60),
            "{wait:?}"
        ),
        other => panic!("expected a rate limit with Retry-After, got {other:?}"),
    }
    server.sims.thingspace.configure(|c| c.retry_after = false);
    assert_eq!(
        thingspace
            .apply(&activate, &devices([3])?, &CallJournal::default())
            .await,
        Err(CarrierError::RateLimited { retry_after: None })
    );
    // Other actions have their own (here unlimited) budget.
    request_id(
        thingspace
            .apply(
                &status(StatusAction::Suspend),
                &devices([0])?,
                &CallJournal::default(),
            )
            .await?,
    )?;
    Ok(())
}

#[tokio::test]
async fn server_faults_are_transient() -> anyhow::Result<()> {
    let config = ThingSpaceConfig {
        transient_fault_rate: 1.0,
        ..quick()
    };
    let server = simulator(config).await?;
    seed(&server, 0..1, DeviceState::Active);
    let result = client(&server)?
        .get_device(&iccid(0), &CallJournal::default())
        .await;
    assert!(
        matches!(result, Err(CarrierError::Transient(_))),
        "{result:?}"
    );
    Ok(())
}

#[tokio::test]
async fn no_secret_reaches_the_log_or_the_journal() -> anyhow::Result<()> {
    let server = simulator(quick()).await?;
    seed(&server, 0..3, DeviceState::Active);
    let sink = CallbackSink::start("127.0.0.1:0".parse()?).await?;
    let thingspace = client(&server)?;
    let journal = CallJournal::default();

    thingspace
        .register_callback(
            cellbridge::carriers::thingspace::CARRIER_SERVICE,
            &sink.url(),
            Some("hook"),
            Some(HOOK_PASSWORD),
            &journal,
        )
        .await?;
    let suspend = status(StatusAction::Suspend);
    let id = request_id(
        thingspace
            .apply(&suspend, &devices(0..3)?, &journal)
            .await?,
    )?;
    settle(&server).await?;
    thingspace
        .check(&suspend, &id, &device(0)?, &journal)
        .await?;
    server.sims.thingspace.expire_sessions();
    thingspace.get_device(&iccid(1), &journal).await?;
    server.sims.thingspace.expire_tokens();
    thingspace.get_device(&iccid(2), &journal).await?;
    thingspace.logout(&journal).await?;
    let _ = client_with(
        &server,
        ThingSpaceCredentials {
            password: "wrong-password-value".into(),
            ..credentials()
        },
    )?
    .get_device(&iccid(0), &journal)
    .await;

    let exchanges = journal.take();
    let urls: Vec<&str> = exchanges.iter().map(|e| e.url.as_str()).collect();
    for path in [
        "/ts/v1/oauth2/token",
        "/session/login",
        "/session/logout",
        "/callbacks/",
    ] {
        assert!(
            urls.iter().any(|u| u.contains(path)),
            "no {path} in {urls:?}"
        );
    }
    let mut secrets = vec![
        DEFAULT_APP_SECRET.to_owned(),
        DEFAULT_PASSWORD.to_owned(),
        HOOK_PASSWORD.to_owned(),
        "wrong-password-value".to_owned(),
    ];
    let issued = server.sims.thingspace.issued_secrets();
    assert!(issued.len() >= 4, "two tokens and two sessions: {issued:?}");
    secrets.extend(issued);
    let journaled = format!("{exchanges:?}");
    let logged = serde_json::to_string(&server.sims.log.entries())?;
    for secret in &secrets {
        assert!(
            !journaled.contains(secret.as_str()),
            "{secret} in {journaled}"
        );
        assert!(!logged.contains(secret.as_str()), "{secret} in {logged}");
    }
    assert!(journaled.contains("<redacted>"));
    Ok(())
}

#[tokio::test]
async fn usage_is_read_day_by_day_from_the_device_usage_history() -> anyhow::Result<()> {
    use time::macros::date;
    let server = simulator(quick()).await?;
    seed(&server, [3], DeviceState::Active);
    server.sims.fix_usage_day(Some(date!(2026 - 12 - 05)));
    let thingspace = client(&server)?;
    let sim = device(3)?.device;
    assert!(thingspace.reads_daily_usage());

    // The month so far, through the last day rated (the 4th): one record a day.
    let journal = CallJournal::default();
    let days = thingspace
        .daily_usage(&sim, date!(2026 - 12 - 01), date!(2026 - 12 - 06), &journal)
        .await?;
    let expected: Vec<(time::Date, u64, u64)> = [
        date!(2026 - 12 - 01),
        date!(2026 - 12 - 02),
        date!(2026 - 12 - 03),
        date!(2026 - 12 - 04),
    ]
    .into_iter()
    .map(|day| {
        let (bytes, sms) = carrier_sim::usage::day_usage(&iccid(3), day);
        (day, bytes, sms)
    })
    .collect();
    assert_eq!(days, expected);
    let (_, bytes, sms) = carrier_sim::usage::cycle_to_date(&iccid(3), date!(2026 - 12 - 04));
    assert_eq!(
        days.iter()
            .fold((0, 0), |(b, s), (_, db, ds)| (b + db, s + ds)),
        (bytes, sms),
        "the days add up to the cycle so far"
    );
    let one = thingspace
        .daily_usage(&sim, date!(2026 - 12 - 03), date!(2026 - 12 - 03), &journal)
        .await?;
    assert_eq!(one, expected[2..3]);
    assert_eq!(
        thingspace
            .daily_usage(
                &device(40)?.device,
                date!(2026 - 12 - 01),
                date!(2026 - 12 - 04),
                &journal
            )
            .await,
        Err(CarrierError::NotFound)
    );
    Ok(())
}

#[tokio::test]
async fn aggregate_usage_comes_back_by_callback_one_device_at_a_time() -> anyhow::Result<()> {
    use cellbridge::carriers::thingspace::DEVICE_USAGE;
    use cellbridge::sims::usage::UsageSpan;
    use time::macros::date;
    let server = simulator(quick()).await?;
    seed(&server, [3, 4], DeviceState::Active);
    server.sims.fix_usage_day(Some(date!(2026 - 12 - 05)));
    let thingspace = client(&server)?;
    let journal = CallJournal::default();
    assert!(
        !thingspace.usage_listener_registered(&journal).await?,
        "no listener yet: the usage collection would read SIM by SIM"
    );
    let sink = CallbackSink::start("127.0.0.1:0".parse()?).await?;
    thingspace
        .register_callback(
            DEVICE_USAGE,
            &sink.url(),
            Some("hook"),
            Some("hook-pass"),
            &journal,
        )
        .await?;
    assert!(thingspace.usage_listener_registered(&journal).await?);

    // The month so far for two known SIMs and one the account lacks, asking past the last
    // day rated (the 4th).
    let devices = [device(3)?.device, device(4)?.device, device(40)?.device];
    let span = UsageSpan {
        from: date!(2026 - 12 - 01),
        through: date!(2026 - 12 - 06),
    };
    let request = thingspace.request_usage(&devices, span, &journal).await?;
    settle(&server).await?;
    let reports = reports(&sink)?;
    assert_eq!(reports.len(), 3, "one callback per device");
    for report in &reports {
        assert_eq!(report.request_id, request);
        assert_eq!(report.username.as_deref(), Some("hook"));
        if report.iccid == iccid(40) {
            assert_eq!(
                report.progress,
                RequestProgress::Failed(CarrierError::NotFound)
            );
            assert_eq!(report.usage, None);
            continue;
        }
        assert_eq!(report.progress, RequestProgress::Succeeded);
        let (_, bytes, sms) =
            carrier_sim::usage::cycle_to_date(&report.iccid, date!(2026 - 12 - 04));
        let usage = report.usage.expect("a success carries the usage");
        assert_eq!(
            (usage.data_bytes, usage.sms),
            (bytes, sms),
            "{}",
            report.iccid
        );
    }

    // More than a month is refused at once.
    let too_long = UsageSpan {
        from: date!(2026 - 10 - 01),
        through: date!(2026 - 12 - 04),
    };
    assert!(matches!(
        thingspace.request_usage(&devices, too_long, &journal).await,
        Err(CarrierError::Permanent { .. })
    ));
    Ok(())
}
