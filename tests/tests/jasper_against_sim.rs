//! The Jasper adapter against the Jasper simulator: every carrier answer becomes the right
//! `CarrierError`, and nothing secret reaches the simulator's log.

use carrier_sim::jasper::{JasperConfig, RateLimitAnswer};
use carrier_sim::SimServer;
use cellbridge::bulk_changes::change::{ChangeSpec, StatusAction};
use cellbridge::bulk_changes::request::parse_bulk_change_request;
use cellbridge::carriers::error::CarrierError;
use cellbridge::carriers::http::http_client;
use cellbridge::carriers::jasper::{JasperClient, JasperCredentials};
use cellbridge::carriers::port::{CallJournal, CarrierOutcome, CarrierPort};
use cellbridge::testing::{iccid, suspend_request};
use serde_json::json;

const API_KEY: &str = "local-jasper-api-key";

async fn simulator(config: JasperConfig) -> anyhow::Result<SimServer> {
    let server = SimServer::start("127.0.0.1:0".parse()?, config).await?;
    let iccids: Vec<String> = (0..5).map(iccid).collect();
    server
        .sims
        .jasper
        .seed_devices(iccids.iter().map(String::as_str), "ACTIVATED");
    Ok(server)
}

fn client(server: &SimServer, api_key: &str) -> anyhow::Result<JasperClient> {
    let credentials = JasperCredentials {
        username: "cellbridge".into(),
        api_key: api_key.into(),
    };
    Ok(JasperClient::new(
        http_client()?,
        server.jasper_url(),
        credentials,
    ))
}

#[tokio::test]
async fn status_changes_reach_the_device_and_invalid_ones_are_refused() -> anyhow::Result<()> {
    let server = simulator(JasperConfig::default()).await?;
    let jasper = client(&server, API_KEY)?;
    let request = parse_bulk_change_request(suspend_request(1, true).to_string().as_bytes())
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let device = &request.devices[0];

    assert_eq!(
        jasper
            .read_device(&device.device, &CallJournal::default())
            .await?
            .status,
        "ACTIVATED"
    );
    let suspend = ChangeSpec::StatusUpdate {
        action: StatusAction::Suspend,
    };
    assert_eq!(
        jasper
            .apply(
                &suspend,
                std::slice::from_ref(device),
                &CallJournal::default()
            )
            .await?,
        CarrierOutcome::Completed
    );
    assert_eq!(
        server.sims.jasper.device(&iccid(0)).map(|d| d.status),
        Some("DEACTIVATED".into())
    );

    // A purged SIM cannot come back: the carrier's refusal is permanent, with its code.
    server
        .sims
        .jasper
        .seed_devices([iccid(0).as_str()], "PURGED");
    let restore = ChangeSpec::StatusUpdate {
        action: StatusAction::Restore,
    };
    match jasper
        .apply(
            &restore,
            std::slice::from_ref(device),
            &CallJournal::default(),
        )
        .await
    {
        Err(CarrierError::Permanent { code, message }) => {
            assert_eq!(code, "10000003");
            assert!(message.contains("PURGED"), "{message}");
        }
        other => panic!("expected a permanent refusal, got {other:?}"),
    }

    let future = json!({"ratePlan": "RP-5GB", "effectiveDate": "2027-01-01T00:00:00+00:00"});
    assert_eq!(
        jasper
            .edit_device(&iccid(1), &future, &CallJournal::default())
            .await?,
        CarrierOutcome::Accepted { request_id: None }
    );
    Ok(())
}

#[tokio::test]
async fn usernames_and_cost_centers_land_in_the_accounts_custom_fields() -> anyhow::Result<()> {
    let server = simulator(JasperConfig::default()).await?;
    let jasper = client(&server, API_KEY)?;
    let body = json!({"carrier": "jasper", "change": {"type": "usernameCostCenterEdit"},
        "devices": [{"iccid": iccid(2), "username": "pump-7", "costCenter": "CC-12"},
                    {"iccid": iccid(3), "costCenter": "CC-40"}]});
    let request = parse_bulk_change_request(body.to_string().as_bytes())
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    for device in &request.devices {
        assert_eq!(
            jasper
                .apply(
                    &request.change,
                    std::slice::from_ref(device),
                    &CallJournal::default()
                )
                .await?,
            CarrierOutcome::Completed
        );
    }
    let labels = |n: u32| {
        server
            .sims
            .jasper
            .device(&iccid(n))
            .map(|d| (d.account_custom1, d.account_custom2))
    };
    assert_eq!(
        labels(2),
        Some((Some("pump-7".to_owned()), Some("CC-12".to_owned())))
    );
    assert_eq!(
        labels(3),
        Some((None, Some("CC-40".to_owned()))),
        "a field left out is left alone"
    );
    Ok(())
}

#[tokio::test]
async fn a_sync_pages_through_the_devices_changed_since_a_time() -> anyhow::Result<()> {
    let server = simulator(JasperConfig {
        calls_per_second: 100,
        ..JasperConfig::default()
    })
    .await?;
    let more: Vec<String> = (5..125).map(iccid).collect();
    server
        .sims
        .jasper
        .seed_devices(more.iter().map(String::as_str), "ACTIVATED");
    let jasper = client(&server, API_KEY)?;
    let journal = CallJournal::default();

    let mut listed = Vec::new();
    let mut pages = Vec::new();
    for page_number in 1.. {
        let page = jasper
            .search_devices(time::OffsetDateTime::UNIX_EPOCH, page_number, &journal)
            .await?;
        pages.push(page.sims.len());
        listed.extend(page.sims);
        if !page.more {
            break;
        }
    }
    assert_eq!(pages, [50, 50, 25], "50 a page, every device once");
    let watermark = listed
        .iter()
        .filter_map(|sim| sim.updated_at)
        .max()
        .ok_or_else(|| anyhow::anyhow!("the listing gives change times"))?;
    assert_eq!(
        listed.last().and_then(|sim| sim.updated_at),
        Some(watermark),
        "oldest change first"
    );

    // Changed in Control Center by someone else: the next listing from the watermark finds those.
    let changed = server.sims.jasper.change_outside(3, "RP-5GB");
    let since = watermark + time::Duration::milliseconds(1);
    let page = jasper.search_devices(since, 1, &journal).await?;
    let mut found: Vec<String> = page.sims.iter().map(|sim| sim.iccid.clone()).collect();
    found.sort();
    let mut expected = changed.clone();
    expected.sort();
    assert_eq!(found, expected);
    assert!(page
        .sims
        .iter()
        .all(|sim| sim.rate_plan.as_deref() == Some("RP-5GB")));
    assert!(!page.more);

    // A page past the end is Jasper's 400, a permanent refusal.
    match jasper.search_devices(since, 2, &journal).await {
        Err(CarrierError::Permanent { code, .. }) => assert_eq!(code, "10000003"),
        other => panic!("expected a refusal, got {other:?}"),
    }

    // The search gives no numbers; the device's details do (the MSISDN in E.164).
    assert!(listed.iter().all(|sim| sim.msisdn.is_none()));
    let described = jasper.describe_device(&iccid(7), &journal).await?;
    let tail = &iccid(7)[iccid(7).len() - 10..];
    assert_eq!(described.msisdn, Some(format!("+88235{tail}")));
    assert_eq!(described.imsi, Some(format!("90116{tail}")));
    assert_eq!(
        (described.status.as_str(), described.rate_plan.as_deref()),
        ("ACTIVATED", Some("RP-1GB"))
    );
    assert_eq!(described.customer, None, "an empty field is no value");
    assert!(described.updated_at.is_some());
    Ok(())
}

#[tokio::test]
async fn unknown_devices_and_bad_credentials_are_told_apart() -> anyhow::Result<()> {
    let server = simulator(JasperConfig::default()).await?;
    assert_eq!(
        client(&server, API_KEY)?
            .get_device(&iccid(99), &CallJournal::default())
            .await,
        Err(CarrierError::NotFound)
    );
    assert_eq!(
        client(&server, "wrong-key")?
            .get_device(&iccid(0), &CallJournal::default())
            .await,
        Err(CarrierError::AuthFailed)
    );
    // The log names the account of valid calls only, and never holds a credential.
    let log = serde_json::to_string(&server.sims.log.entries())?;
    assert!(
        !log.contains(API_KEY) && !log.contains("wrong-key"),
        "{log}"
    );
    assert_eq!(
        server
            .sims
            .log
            .entries()
            .iter()
            .filter(|e| e.account.is_some())
            .count(),
        1
    );
    Ok(())
}

#[tokio::test]
async fn both_rate_limit_answers_are_rate_limits() -> anyhow::Result<()> {
    for answer in [RateLimitAnswer::Http429, RateLimitAnswer::ErrorCode] {
        let config = JasperConfig {
            rate_limit_answer: answer,
            // An hour-long window: the ten calls share it however slowly they arrive.
            rate_limit_window: std::time::Duration::from_secs(3600),
            ..JasperConfig::default()
        };
        let server = simulator(config).await?;
        let jasper = client(&server, API_KEY)?;
        // Ten calls at once: one call in flight and 5 a second are Jasper's limits.
        let calls = (0..10).map(|n| {
            let jasper = jasper.clone();
            async move {
                jasper
                    .get_device(&iccid(n % 5), &CallJournal::default())
                    .await
            }
        });
        let results = futures::future::join_all(calls).await;
        let limited = results
            .iter()
            .filter(|r| matches!(r, Err(CarrierError::RateLimited { .. })))
            .count();
        let served = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(limited + served, 10, "{answer:?}: {results:?}");
        assert!(
            limited >= 5 && served >= 1,
            "{answer:?}: {limited} limited, {served} served"
        );
    }
    Ok(())
}

#[tokio::test]
async fn devices_can_be_added_over_http() -> anyhow::Result<()> {
    let server = simulator(JasperConfig::default()).await?;
    let seeded = reqwest::Client::new()
        .post(format!("{}/jasper/_sim/devices", server.url()))
        .json(&json!({"iccids": [iccid(42)], "status": "INVENTORY"}))
        .send()
        .await?;
    assert_eq!(seeded.status().as_u16(), 200);
    assert_eq!(
        client(&server, API_KEY)?
            .get_device(&iccid(42), &CallJournal::default())
            .await?
            .status,
        "INVENTORY"
    );
    Ok(())
}

#[tokio::test]
async fn server_faults_are_transient() -> anyhow::Result<()> {
    let config = JasperConfig {
        transient_fault_rate: 1.0,
        ..JasperConfig::default()
    };
    let server = simulator(config).await?;
    let result = client(&server, API_KEY)?
        .get_device(&iccid(0), &CallJournal::default())
        .await;
    assert!(
        matches!(result, Err(CarrierError::Transient(_))),
        "{result:?}"
    );
    assert!(result
        .as_ref()
        .err()
        .is_some_and(CarrierError::is_retryable));
    Ok(())
}

/// The sample SIM at the simulator, as the inventory keeps it after a sync by `provider`.
fn inventory_sim(n: u32, provider: &str) -> cellbridge::sims::sim::Sim {
    cellbridge::sims::sim::Sim::unknown(
        &iccid(n),
        cellbridge::common::carrier::Carrier::Jasper,
        Some(provider.to_owned()),
        cellbridge::sims::sim::SimSource::CarrierSync {
            service_provider_id: provider.to_owned(),
        },
        time::OffsetDateTime::UNIX_EPOCH,
    )
}

#[tokio::test]
async fn usage_is_read_per_sim_and_a_day_is_the_difference_of_two_readings() -> anyhow::Result<()> {
    use cellbridge::carriers::account::{AccountLimits, CarrierAccount};
    use cellbridge::carriers::usage::{usage_step, UsagePorts, UsageRetention, UsageStep};
    use cellbridge::sims::ports::{SimStore, UsageStore};
    use time::macros::{date, datetime};

    let server = simulator(JasperConfig {
        calls_per_second: 200,
        ..JasperConfig::default()
    })
    .await?;
    let more: Vec<String> = (5..60).map(iccid).collect();
    server
        .sims
        .jasper
        .seed_devices(more.iter().map(String::as_str), "ACTIVATED");
    let jasper = client(&server, API_KEY)?;

    // The adapter: Get Device Usage, rated through the simulator's yesterday.
    server.sims.fix_usage_day(Some(date!(2026 - 12 - 05)));
    let device = cellbridge::bulk_changes::change::DeviceRef {
        iccid: cellbridge::common::ids::Iccid::parse(&iccid(2))?,
        msisdn: None,
        imei: None,
    };
    let reading = jasper.cycle_usage(&device, &CallJournal::default()).await?;
    let (_, bytes, sms) = carrier_sim::usage::cycle_to_date(&iccid(2), date!(2026 - 12 - 04));
    assert_eq!((reading.data_bytes, reading.sms), (bytes, sms));
    assert_eq!(
        reading.cycle_start, None,
        "Control Center gives no cycle dates"
    );
    let unknown = cellbridge::bulk_changes::change::DeviceRef {
        iccid: cellbridge::common::ids::Iccid::parse(&iccid(900))?,
        ..device.clone()
    };
    assert_eq!(
        jasper.cycle_usage(&unknown, &CallJournal::default()).await,
        Err(CarrierError::NotFound)
    );

    // The collection over 60 SIMs (two pages) of a provider, and one SIM the carrier lost.
    let tenant = cellbridge::common::tenant::TenantId::parse("demo")
        .ok_or_else(|| anyhow::anyhow!("tenant"))?;
    let body = json!({"name": "Jasper", "carrier": "jasper", "endpoint": server.jasper_url(),
        "credentials": {"username": "cellbridge", "apiKey": API_KEY}});
    let provider = cellbridge::carriers::provider::parse_new_provider(body.to_string().as_bytes())
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
        .into_provider(
            tenant.clone(),
            "sp-jasper".into(),
            "secret".into(),
            time::OffsetDateTime::UNIX_EPOCH,
        );
    let store = cellbridge::sims::memory::MemorySims::default();
    for n in (0..60).chain([900]) {
        let sim = inventory_sim(n, "sp-jasper");
        store
            .put_sim(
                &tenant,
                &sim,
                None,
                Some(&cellbridge::testing::imported(&sim)),
            )
            .await?;
    }
    // The simulator's scaled-up limit, so the test takes a second, not Jasper's 25.
    let limits = AccountLimits {
        calls_per_second: 200,
        burst: 1,
        max_in_flight: 1,
    };
    let account = CarrierAccount::new(std::sync::Arc::new(jasper), limits, Vec::new());
    let ports = UsagePorts {
        sims: &store,
        usage: &store,
        states: &store,
    };
    let far = tokio::time::Instant::now() + std::time::Duration::from_secs(600);
    let step = |at: time::OffsetDateTime| {
        let clock = move || at;
        let (ports, account, tenant, provider) = (&ports, &account, &tenant, &provider);
        async move {
            usage_step(
                ports,
                account,
                tenant,
                provider,
                "test",
                &clock,
                far,
                UsageRetention::default(),
            )
            .await
        }
    };

    // The first reading sets each SIM's cycle total and tells no day.
    let first = step(datetime!(2026-12-05 01:00 UTC)).await?;
    let UsageStep::Finished(summary) = first else {
        anyhow::bail!("expected a finished collection, got {first:?}");
    };
    assert_eq!(summary.day, date!(2026 - 12 - 04));
    assert_eq!(
        (
            summary.counts.read,
            summary.counts.failed,
            summary.counts.days
        ),
        (60, 1, 0)
    );
    assert_eq!(
        step(datetime!(2026-12-05 13:00 UTC)).await?,
        UsageStep::Idle,
        "once a day"
    );

    // A day later, each SIM's day is the simulator's usage of that day.
    server.sims.fix_usage_day(Some(date!(2026 - 12 - 06)));
    let second = step(datetime!(2026-12-06 01:00 UTC)).await?;
    assert!(
        matches!(&second, UsageStep::Finished(s) if s.counts.days == 60),
        "{second:?}"
    );
    for n in [0, 37, 59] {
        let days = store
            .daily_usage(
                &tenant,
                &iccid(n),
                date!(2026 - 12 - 01),
                date!(2026 - 12 - 31),
            )
            .await?;
        let (bytes, sms) = carrier_sim::usage::day_usage(&iccid(n), date!(2026 - 12 - 05));
        assert_eq!(days.len(), 1, "{days:?}");
        assert_eq!(
            (days[0].day, days[0].data_bytes, days[0].sms),
            (date!(2026 - 12 - 05), bytes, sms)
        );
        let sim = store.get_sim(&tenant, &iccid(n)).await?.expect("stored");
        assert_eq!(sim.usage.through, Some(date!(2026 - 12 - 05)));
    }
    let calls = server
        .sims
        .log
        .entries()
        .iter()
        .filter(|e| e.path.ends_with("/ctdUsages"))
        .count();
    assert_eq!(calls, 2 + 2 * 61, "one call per SIM a day");
    Ok(())
}
