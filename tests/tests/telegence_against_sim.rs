//! The Telegence adapter against the Telegence simulator. Both follow the same inferred wire format
//! (Telegence has no public reference), so these tests pin the two together: every carrier answer
//! becomes the right `CarrierError`, activations are batched and polled, and the app-secret reaches
//! neither the simulator's log nor any journaled exchange.

use carrier_sim::telegence::{Subscriber, SubscriberStatus, TelegenceConfig};
use carrier_sim::{SimConfig, SimServer};
use cellbridge::bulk_changes::change::{
    ChangeSpec, DeviceEdit, DeviceRef, DeviceRequest, StatusAction,
};
use cellbridge::carriers::error::CarrierError;
use cellbridge::carriers::http::http_client;
use cellbridge::carriers::port::{
    CallJournal, CarrierExchange, CarrierOutcome, CarrierPort, RequestProgress,
};
use cellbridge::carriers::telegence::{TelegenceClient, TelegenceCredentials};
use cellbridge::common::ids::{Iccid, Msisdn};
use cellbridge::testing::iccid;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

const APP_SECRET: &str = "local-telegence-app-secret";

/// The subscriber number (CTN) of the `n`th seeded line.
fn number(n: u32) -> String {
    format!("469555{n:04}")
}

fn device(n: u32, with_msisdn: bool) -> anyhow::Result<DeviceRequest> {
    Ok(DeviceRequest {
        device: DeviceRef {
            iccid: Iccid::parse(&iccid(n))?,
            msisdn: if with_msisdn {
                Some(Msisdn::parse(&format!("+1{}", number(n)))?)
            } else {
                None
            },
            imei: None,
        },
        edit: DeviceEdit::None,
    })
}

/// A simulator with five active lines, numbers `number(0..5)` on SIMs `iccid(0..5)`.
async fn simulator(config: TelegenceConfig) -> anyhow::Result<SimServer> {
    let server = SimServer::start(
        "127.0.0.1:0".parse()?,
        SimConfig {
            telegence: config,
            ..Default::default()
        },
    )
    .await?;
    server.sims.telegence.seed_subscribers(
        (0..5).map(|n| Subscriber::new(&number(n), &iccid(n), SubscriberStatus::Active)),
    );
    Ok(server)
}

fn base_url(server: &SimServer) -> String {
    format!("{}/telegence/api/v1", server.url())
}

fn client_with(server: &SimServer, http: reqwest::Client, app_secret: &str) -> TelegenceClient {
    let credentials = TelegenceCredentials {
        app_id: "cellbridge".into(),
        app_secret: app_secret.into(),
    };
    TelegenceClient::new(http, base_url(server), credentials)
}

fn client(server: &SimServer, app_secret: &str) -> anyhow::Result<TelegenceClient> {
    Ok(client_with(server, http_client()?, app_secret))
}

/// The journal's exchanges, after checking that none holds the app-secret.
fn without_secrets(journal: &CallJournal) -> Vec<CarrierExchange> {
    let exchanges = journal.take();
    let printed = format!("{exchanges:?}");
    assert!(!printed.contains(APP_SECRET), "{printed}");
    exchanges
}

fn suspend() -> ChangeSpec {
    ChangeSpec::StatusUpdate {
        action: StatusAction::Suspend,
    }
}

#[tokio::test]
async fn status_changes_reach_the_subscriber_by_msisdn_and_by_iccid() -> anyhow::Result<()> {
    let server = simulator(TelegenceConfig::default()).await?;
    let telegence = client(&server, APP_SECRET)?;
    let journal = CallJournal::default();

    let by_number = device(0, true)?;
    assert_eq!(
        telegence
            .read_device(&by_number.device, &journal)
            .await?
            .status,
        "Active"
    );
    assert_eq!(
        telegence
            .apply(&suspend(), std::slice::from_ref(&by_number), &journal)
            .await?,
        CarrierOutcome::Completed
    );
    assert_eq!(
        server
            .sims
            .telegence
            .subscriber(&number(0))
            .map(|s| s.status),
        Some(SubscriberStatus::Suspended)
    );
    let calls = without_secrets(&journal);
    assert_eq!(
        calls.iter().map(|c| c.method.as_str()).collect::<Vec<_>>(),
        ["GET", "PATCH"]
    );
    let patch = calls[1].request_body.as_deref().unwrap_or_default();
    assert!(
        patch.contains("serviceCharacteristic") && patch.contains("Suspend"),
        "{patch}"
    );

    // Without an MSISDN the subscriber is found by ICCID first, and that call is journaled too.
    let by_iccid = device(1, false)?;
    assert_eq!(
        telegence
            .apply(&suspend(), std::slice::from_ref(&by_iccid), &journal)
            .await?,
        CarrierOutcome::Completed
    );
    let calls = without_secrets(&journal);
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls[0].method == "GET" && calls[0].url.contains(&format!("iccid={}", iccid(1))));
    assert!(calls[1].method == "PATCH" && calls[1].url.ends_with(&number(1)));
    assert_eq!(
        server
            .sims
            .telegence
            .subscriber_by_iccid(&iccid(1))
            .map(|s| s.status),
        Some(SubscriberStatus::Suspended)
    );

    let restore = ChangeSpec::StatusUpdate {
        action: StatusAction::Restore,
    };
    telegence
        .apply(&restore, std::slice::from_ref(&by_iccid), &journal)
        .await?;
    let plan = ChangeSpec::CarrierRatePlanChange {
        rate_plan: "IOT5GB".into(),
        comm_plan: None,
    };
    telegence
        .apply(&plan, std::slice::from_ref(&by_iccid), &journal)
        .await?;
    let read = telegence.read_device(&by_iccid.device, &journal).await?;
    assert_eq!(
        (
            read.iccid.as_str(),
            read.status.as_str(),
            read.rate_plan.as_deref()
        ),
        (iccid(1).as_str(), "Active", Some("IOT5GB"))
    );
    without_secrets(&journal);
    Ok(())
}

#[tokio::test]
async fn invalid_transitions_unknown_subscribers_and_unsupported_changes_map_right(
) -> anyhow::Result<()> {
    let config = TelegenceConfig {
        burst: 100,
        ..TelegenceConfig::default()
    };
    let server = simulator(config).await?;
    let telegence = client(&server, APP_SECRET)?;
    let journal = CallJournal::default();
    server.sims.telegence.seed_subscribers([Subscriber::new(
        &number(2),
        &iccid(2),
        SubscriberStatus::Cancelled,
    )]);
    let restore = ChangeSpec::StatusUpdate {
        action: StatusAction::Restore,
    };
    // The HTTP status of the refusal is not public; the mapping goes by the error code.
    for status in [400, 409] {
        server
            .sims
            .telegence
            .configure(|c| c.invalid_transition_status = status);
        for with_msisdn in [true, false] {
            assert_eq!(
                telegence
                    .apply(&restore, &[device(2, with_msisdn)?], &journal)
                    .await,
                Err(CarrierError::InvalidTransition {
                    from: "Cancelled".into(),
                    to: "Active".into()
                })
            );
        }
    }
    let plan = ChangeSpec::CarrierRatePlanChange {
        rate_plan: "IOT5GB".into(),
        comm_plan: None,
    };
    assert!(matches!(
        telegence.apply(&plan, &[device(2, true)?], &journal).await,
        Err(CarrierError::InvalidTransition { from, .. }) if from == "Cancelled"
    ));

    for with_msisdn in [true, false] {
        let unknown = device(99, with_msisdn)?;
        assert_eq!(
            telegence
                .apply(&suspend(), std::slice::from_ref(&unknown), &journal)
                .await,
            Err(CarrierError::NotFound)
        );
        assert_eq!(
            telegence.read_device(&unknown.device, &journal).await,
            Err(CarrierError::NotFound)
        );
    }
    without_secrets(&journal);

    // Refused by name, before any call is made.
    let assign = ChangeSpec::CustomerAssignment {
        customer_id: "c-1".into(),
    };
    match telegence
        .apply(&assign, &[device(0, true)?], &journal)
        .await
    {
        Err(CarrierError::Permanent { code, message }) => {
            assert_eq!(code, "unsupported");
            assert!(message.contains("customerAssignment"), "{message}");
        }
        other => panic!("expected an unsupported change, got {other:?}"),
    }
    assert!(journal.take().is_empty());
    Ok(())
}

#[tokio::test]
async fn equipment_swaps_and_labels_reach_the_subscriber() -> anyhow::Result<()> {
    let server = simulator(TelegenceConfig::default()).await?;
    let telegence = client(&server, APP_SECRET)?;
    let journal = CallJournal::default();
    let mut swap = device(1, false)?;
    swap.edit = DeviceEdit::IdentifierSwap {
        new_iccid: Some(Iccid::parse(&iccid(201))?),
        new_imei: Some(cellbridge::common::ids::Imei::parse("490154203237518")?),
    };
    assert_eq!(
        telegence
            .apply(&ChangeSpec::IccidImeiChange, &[swap], &journal)
            .await?,
        CarrierOutcome::Completed
    );
    let line = server
        .sims
        .telegence
        .subscriber(&number(1))
        .ok_or_else(|| anyhow::anyhow!("line 1"))?;
    assert_eq!(
        (line.iccid.as_str(), line.imei.as_deref()),
        (iccid(201).as_str(), Some("490154203237518"))
    );

    // Another line's SIM cannot be taken: the carrier's refusal is permanent.
    let mut taken = device(2, true)?;
    taken.edit = DeviceEdit::IdentifierSwap {
        new_iccid: Some(Iccid::parse(&iccid(3))?),
        new_imei: None,
    };
    match telegence
        .apply(&ChangeSpec::IccidImeiChange, &[taken], &journal)
        .await
    {
        Err(CarrierError::Permanent { code, .. }) => assert_eq!(code, "ICCID_IN_USE"),
        other => panic!("expected a refusal, got {other:?}"),
    }

    let mut labels = device(4, true)?;
    labels.edit = DeviceEdit::Labels {
        username: Some("pump-7".into()),
        cost_center: Some("CC-12".into()),
    };
    assert_eq!(
        telegence
            .apply(&ChangeSpec::UsernameCostCenterEdit, &[labels], &journal)
            .await?,
        CarrierOutcome::Completed
    );
    let line = server
        .sims
        .telegence
        .subscriber(&number(4))
        .ok_or_else(|| anyhow::anyhow!("line 4"))?;
    assert_eq!(
        (line.user_name.as_deref(), line.cost_center.as_deref()),
        (Some("pump-7"), Some("CC-12"))
    );
    without_secrets(&journal);
    Ok(())
}

#[tokio::test]
async fn a_sync_lists_every_subscriber_with_its_number() -> anyhow::Result<()> {
    let server = simulator(TelegenceConfig::default()).await?;
    server.sims.telegence.seed_subscribers(
        (5..1200).map(|n| Subscriber::new(&number(n), &iccid(n), SubscriberStatus::Active)),
    );
    let telegence = client(&server, APP_SECRET)?;
    let journal = CallJournal::default();
    let mut listed = Vec::new();
    let mut pages = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = telegence
            .list_subscribers(token.as_deref(), &journal)
            .await?;
        pages.push(page.subscribers.len());
        listed.extend(page.subscribers);
        token = page.next_page_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, [500, 500, 200]);
    let numbers: BTreeSet<&str> = listed
        .iter()
        .map(|s| s.subscriber_number.as_str())
        .collect();
    assert_eq!(numbers.len(), 1200, "every line once");
    let line = listed
        .iter()
        .find(|s| s.iccid == iccid(700))
        .ok_or_else(|| anyhow::anyhow!("line 700"))?;
    assert_eq!(line.subscriber_number, number(700));
    without_secrets(&journal);
    Ok(())
}

#[tokio::test]
async fn a_batch_activation_is_one_request_polled_to_success_or_failure() -> anyhow::Result<()> {
    let esim_only = iccid(107);
    let config = TelegenceConfig {
        activation_delay: Duration::from_millis(400),
        esim_only_iccids: BTreeSet::from([esim_only.clone()]),
        // 150 devices polled back to back: the bucket must not be what this test measures.
        burst: 1_000,
        ..TelegenceConfig::default()
    };
    let server = simulator(config).await?;
    let telegence = client(&server, APP_SECRET)?;
    let journal = CallJournal::default();
    // Pending until released, however long the checks of the pending state take.
    server.sims.telegence.hold_activations();
    let activate = ChangeSpec::ActivateNewService {
        rate_plan: "IOT2GB".into(),
        zip_code: Some("75001".into()),
    };
    assert_eq!(telegence.batch_limit(&activate), 200);
    assert_eq!(telegence.batch_limit(&suspend()), 1);

    // Half the devices come with their number, half without (the carrier assigns one).
    let devices = (100..250)
        .map(|n| device(n, n % 2 == 0))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let outcome = telegence.apply(&activate, &devices, &journal).await?;
    let CarrierOutcome::Accepted {
        request_id: Some(batch_id),
    } = outcome
    else {
        panic!("expected a batch id, got {outcome:?}");
    };
    let calls = without_secrets(&journal);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].method, "POST");
    let activations = server
        .sims
        .log
        .entries()
        .into_iter()
        .filter(|e| e.method == "POST" && e.path == "/api/v1/activations")
        .count();
    assert_eq!(activations, 1);

    let (with_number, without_number, failing) = (&devices[0], &devices[1], &devices[7]);
    assert_eq!(failing.device.iccid.as_str(), esim_only);
    for request in [with_number, without_number, failing] {
        assert_eq!(
            telegence
                .check(&activate, &batch_id, request, &journal)
                .await?,
            RequestProgress::Pending
        );
    }
    server.sims.telegence.release_activations();
    // Longer than the activation delay, counted from after the batch was made.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for request in &devices {
        let progress = telegence
            .check(&activate, &batch_id, request, &journal)
            .await?;
        if request.device.iccid.as_str() == esim_only {
            match progress {
                RequestProgress::Failed(CarrierError::Permanent { code, message }) => {
                    assert_eq!(code, "ESIM_REQUIRED");
                    assert!(message.contains("eSIM"), "{message}");
                }
                other => panic!("expected the eSIM failure, got {other:?}"),
            }
        } else {
            assert_eq!(progress, RequestProgress::Succeeded, "{request:?}");
        }
    }
    without_secrets(&journal);
    let activated = server.sims.telegence.subscriber_by_iccid(&iccid(101));
    assert_eq!(
        activated.map(|s| (s.status, s.rate_plan_code)),
        Some((SubscriberStatus::Active, "IOT2GB".to_owned()))
    );
    assert_eq!(
        server
            .sims
            .telegence
            .subscriber(&number(100))
            .map(|s| s.status),
        Some(SubscriberStatus::Active),
        "a device's own number is kept"
    );

    // A status change completes when applied: there is nothing to poll.
    assert!(matches!(
        telegence.check(&suspend(), &batch_id, with_number, &journal).await,
        Err(CarrierError::Permanent { code, .. }) if code == "unsupported"
    ));
    assert_eq!(
        telegence
            .check(&activate, "TLG-NOPE", with_number, &journal)
            .await,
        Err(CarrierError::NotFound)
    );

    without_secrets(&journal);

    // Over 200 services: the adapter refuses before calling, and the carrier would too.
    let too_many = (300..501)
        .map(|n| device(n, false))
        .collect::<anyhow::Result<Vec<_>>>()?;
    assert!(matches!(
        telegence.apply(&activate, &too_many, &journal).await,
        Err(CarrierError::Permanent { code, .. }) if code == "batch"
    ));
    assert!(journal.take().is_empty());
    let services: Vec<_> = (300..501)
        .map(|n| json!({"iccid": iccid(n), "ratePlanCode": "IOT2GB"}))
        .collect();
    let refused = reqwest::Client::new()
        .post(format!("{}/activations", base_url(&server)))
        .header("app-id", "cellbridge")
        .header("app-secret", APP_SECRET)
        .json(&json!({ "services": services }))
        .send()
        .await?;
    assert_eq!(refused.status().as_u16(), 400);
    let body: serde_json::Value = refused.json().await?;
    assert_eq!(body["code"], "TOO_MANY_SERVICES");
    Ok(())
}

#[tokio::test]
async fn rate_limits_carry_the_wait_when_the_carrier_gives_one() -> anyhow::Result<()> {
    let config = TelegenceConfig {
        burst: 1,
        requests_per_second: 0.2,
        ..TelegenceConfig::default()
    };
    let server = simulator(config).await?;
    let telegence = client(&server, APP_SECRET)?;
    let read = device(0, true)?;
    let journal = CallJournal::default();
    telegence.read_device(&read.device, &journal).await?;
    let limited = telegence.read_device(&read.device, &journal).await;
    assert_eq!(
        limited,
        Err(CarrierError::RateLimited {
            retry_after: Some(Duration::from_secs(5))
        })
    );
    assert_eq!(
        limited.err().and_then(|e| e.carrier_wait()),
        Some(Duration::from_secs(5))
    );

    server
        .sims
        .telegence
        .configure(|c| c.send_retry_after = false);
    assert_eq!(
        telegence.read_device(&read.device, &journal).await,
        Err(CarrierError::RateLimited { retry_after: None })
    );
    let calls = without_secrets(&journal);
    assert_eq!(
        calls.iter().map(|c| c.status).collect::<Vec<_>>(),
        [Some(200), Some(429), Some(429)]
    );
    Ok(())
}

#[tokio::test]
async fn server_faults_and_timeouts_are_transient() -> anyhow::Result<()> {
    let config = TelegenceConfig {
        transient_fault_rate: 1.0,
        ..TelegenceConfig::default()
    };
    let server = simulator(config).await?;
    let journal = CallJournal::default();
    let request = device(0, true)?;
    for _ in 0..4 {
        let result = client(&server, APP_SECRET)?
            .apply(&suspend(), std::slice::from_ref(&request), &journal)
            .await;
        assert!(
            matches!(result, Err(CarrierError::Transient(ref m)) if m.starts_with("HTTP 5")),
            "{result:?}"
        );
        assert!(result.err().is_some_and(|e| e.is_retryable()));
    }

    server.sims.telegence.configure(|c| {
        c.transient_fault_rate = 0.0;
        c.slow_rate = 1.0;
        c.slow_answer = Duration::from_secs(2);
    });
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()?;
    let result = client_with(&server, impatient, APP_SECRET)
        .read_device(&request.device, &journal)
        .await;
    assert!(
        matches!(result, Err(CarrierError::Transient(_))),
        "{result:?}"
    );
    let calls = without_secrets(&journal);
    assert_eq!(calls.last().map(|c| c.status), Some(None), "no answer came");
    Ok(())
}

#[tokio::test]
async fn bad_credentials_fail_auth_and_the_secret_is_never_logged() -> anyhow::Result<()> {
    let server = simulator(TelegenceConfig::default()).await?;
    let journal = CallJournal::default();
    let request = device(0, false)?;
    assert_eq!(
        client(&server, "wrong-secret")?
            .apply(&suspend(), std::slice::from_ref(&request), &journal)
            .await,
        Err(CarrierError::AuthFailed)
    );
    let missing = reqwest::Client::new()
        .get(format!("{}/subscribers/{}", base_url(&server), number(0)))
        .send()
        .await?;
    assert_eq!(missing.status().as_u16(), 401);

    let telegence = client(&server, APP_SECRET)?;
    telegence
        .apply(&suspend(), std::slice::from_ref(&request), &journal)
        .await?;
    telegence.read_device(&request.device, &journal).await?;
    let calls = without_secrets(&journal);
    assert!(!format!("{calls:?}").contains("wrong-secret"));
    assert_eq!(calls.len(), 4, "{calls:?}");

    // The log names the account of valid calls only, and never holds a credential.
    let entries = server.sims.log.entries();
    let log = serde_json::to_string(&entries)?;
    assert!(
        !log.contains(APP_SECRET) && !log.contains("wrong-secret"),
        "{log}"
    );
    assert!(entries.iter().all(|e| e.carrier == "telegence"));
    assert_eq!(
        entries.iter().filter(|e| e.status == 401).count(),
        2,
        "{entries:?}"
    );
    assert!(entries
        .iter()
        .all(|e| (e.status == 401) == e.account.is_none()));
    Ok(())
}

#[tokio::test]
async fn subscribers_can_be_added_over_http() -> anyhow::Result<()> {
    let server = simulator(TelegenceConfig::default()).await?;
    let seeded = reqwest::Client::new()
        .post(format!("{}/telegence/_sim/subscribers", server.url()))
        .json(&json!({"subscribers": [
            {"subscriberNumber": number(42), "iccid": iccid(42), "status": "Suspended"}
        ]}))
        .send()
        .await?;
    assert_eq!(seeded.status().as_u16(), 200);
    let read = client(&server, APP_SECRET)?
        .read_device(&device(42, false)?.device, &CallJournal::default())
        .await?;
    assert_eq!(
        (read.status.as_str(), read.rate_plan.as_deref()),
        ("Suspended", Some("IOT1GB"))
    );
    Ok(())
}

#[tokio::test]
async fn usage_is_read_by_number_and_by_iccid_with_the_bill_cycle() -> anyhow::Result<()> {
    use time::macros::date;
    let server = simulator(TelegenceConfig::default()).await?;
    server.sims.fix_usage_day(Some(date!(2026 - 12 - 02)));
    let telegence = client(&server, APP_SECRET)?;
    let (start, bytes, sms) = carrier_sim::usage::cycle_to_date(&iccid(3), date!(2026 - 12 - 01));
    for with_msisdn in [true, false] {
        let journal = CallJournal::default();
        let device = device(3, with_msisdn)?.device;
        assert_eq!(
            telegence.calls_to_read_usage(&device),
            if with_msisdn { 1 } else { 2 }
        );
        let reading = telegence.cycle_usage(&device, &journal).await?;
        assert_eq!(reading.cycle_start, Some(start));
        assert_eq!((reading.data_bytes, reading.sms), (bytes, sms));
        assert_eq!(
            journal.take().len() as u32,
            telegence.calls_to_read_usage(&device),
            "the calls the pace reserves slots for"
        );
    }
    assert_eq!(start, date!(2026 - 12 - 01), "cycles begin on the first");
    let unknown = device(40, true)?.device;
    assert_eq!(
        telegence
            .cycle_usage(&unknown, &CallJournal::default())
            .await,
        Err(CarrierError::NotFound)
    );
    Ok(())
}
