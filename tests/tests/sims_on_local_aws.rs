//! The SIM inventory store with the real SDK against the local DynamoDB (tables from
//! template.yaml), and the in-memory store held to the same answers: listings by every order and
//! index, filters, prefix searches, cursors, short pages when a filter matches little, writes
//! conditional on the version, blind changes and history; daily usage with the cycle total, and
//! the usage collection's state.

use anyhow::Result;
use cellbridge::common::store::{PageRequest, StoreError};
use cellbridge::common::tenant::TenantId;
use cellbridge::sims::dynamodb::DynamoSims;
use cellbridge::sims::memory::MemorySims;
use cellbridge::sims::ports::{SimStore, SyncStateStore, UsageStore, Written};
use cellbridge::sims::query::{parse_filter, parse_order, SimQuery};
use cellbridge::sims::sim::{
    CycleUsage, Sim, SimChange, SimEventKind, SimField, SimSource, SimStatus,
};
use cellbridge::sims::sync::{DetailsState, UsageState};
use cellbridge::sims::usage::{DailyUsage, UsageRecord, UsageRequest, UsageSpan};
use cellbridge::testing::{imported, sample_sim};
use cellbridge_tests::LocalAwsStack;
use time::OffsetDateTime;

const SIMS: u32 = 240;

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).expect("tenant")
}

async fn seed(store: &dyn SimStore) -> Result<Vec<Sim>> {
    let mut sims = Vec::new();
    for n in 0..SIMS {
        let sim = sample_sim(n);
        assert_eq!(
            store
                .put_sim(&tenant("demo"), &sim, None, Some(&imported(&sim)))
                .await?,
            Written::Written
        );
        sims.push(sim);
    }
    // Another tenant's SIMs share ICCIDs with demo's: they must never show up in demo's answers.
    for n in 0..10 {
        let mut theirs = sample_sim(n);
        theirs.rate_plan = Some("GLOBEX".into());
        store
            .put_sim(&tenant("globex"), &theirs, None, Some(&imported(&theirs)))
            .await?;
    }
    Ok(sims)
}

fn query(pairs: &[(&str, &str)], sort: Option<&str>) -> SimQuery {
    let filter = parse_filter(pairs.iter().copied()).expect("valid filter");
    let order = parse_order(sort, &filter).expect("valid order");
    SimQuery { filter, order }
}

/// Every SIM of the listing, page by page; also the sizes of the pages.
async fn walk(
    store: &dyn SimStore,
    query: &SimQuery,
    limit: u32,
) -> Result<(Vec<String>, Vec<usize>)> {
    let mut iccids = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_sims(&tenant("demo"), query, &PageRequest { limit, cursor })
            .await?;
        sizes.push(page.items.len());
        iccids.extend(page.items.into_iter().map(|sim| sim.iccid));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok((iccids, sizes)),
        }
        assert!(sizes.len() < 1000, "the cursor does not advance");
    }
}

/// The expected listing, worked out here from the sample data.
fn expected(
    sims: &[Sim],
    keep: impl Fn(&Sim) -> bool,
    key: impl Fn(&Sim) -> String,
    descending: bool,
) -> Vec<String> {
    let mut chosen: Vec<(String, String)> = sims
        .iter()
        .filter(|sim| keep(sim))
        .map(|sim| (key(sim), sim.iccid.clone()))
        .collect();
    chosen.sort();
    if descending {
        chosen.reverse();
    }
    chosen.into_iter().map(|(_, iccid)| iccid).collect()
}

async fn listings_answer_the_same(store: &dyn SimStore, sims: &[Sim]) -> Result<()> {
    let by_iccid = |sim: &Sim| sim.iccid.clone();
    let by_msisdn = |sim: &Sim| sim.msisdn.clone().unwrap_or_else(|| "~".into());
    let by_imei = |sim: &Sim| sim.imei.clone().unwrap_or_else(|| "~".into());

    let (all, sizes) = walk(store, &query(&[], None), 50).await?;
    assert_eq!(all, expected(sims, |_| true, by_iccid, false));
    assert_eq!(
        sizes,
        [50, 50, 50, 50, 40],
        "full pages, the last one short"
    );

    let (active, _) = walk(store, &query(&[("status", "active")], None), 30).await?;
    assert_eq!(
        active,
        expected(sims, |s| s.status == SimStatus::Active, by_iccid, false)
    );

    let pairs = [
        ("ratePlan", "IOT-5GB"),
        ("costCenter", "CC-2"),
        ("linked", "false"),
    ];
    let (labelled, _) = walk(store, &query(&pairs, Some("-iccid")), 7).await?;
    let wanted = expected(
        sims,
        |s| {
            s.rate_plan.as_deref() == Some("IOT-5GB")
                && s.cost_center.as_deref() == Some("CC-2")
                && s.device_id.is_none()
        },
        by_iccid,
        true,
    );
    assert!(!wanted.is_empty());
    assert_eq!(labelled, wanted);

    let (by_number, _) = walk(store, &query(&[("msisdnPrefix", "1404000001")], None), 4).await?;
    let wanted = expected(
        sims,
        |s| {
            s.msisdn
                .as_deref()
                .is_some_and(|m| m.starts_with("1404000001"))
        },
        by_msisdn,
        false,
    );
    assert_eq!(wanted.len(), 9, "1404000010..19 without 11's multiple");
    assert_eq!(by_number, wanted);

    let (imei_down, _) = walk(store, &query(&[("status", "suspended")], Some("-imei")), 5).await?;
    assert_eq!(
        imei_down,
        expected(sims, |s| s.status == SimStatus::Suspended, by_imei, true),
        "SIMs without an IMEI order after every IMEI, so first when descending"
    );

    let (iccid_search, _) = walk(
        store,
        &query(
            &[
                ("iccidPrefix", "89012600000000001"),
                ("carrier", "telegence"),
            ],
            None,
        ),
        100,
    )
    .await?;
    assert_eq!(
        iccid_search,
        expected(
            sims,
            |s| s.iccid.starts_with("89012600000000001") && s.carrier.as_str() == "telegence",
            by_iccid,
            false
        )
    );

    // A cursor belongs to its order.
    let first = store
        .list_sims(
            &tenant("demo"),
            &query(&[], None),
            &PageRequest {
                limit: 5,
                cursor: None,
            },
        )
        .await?;
    let misused = store
        .list_sims(
            &tenant("demo"),
            &query(&[], Some("msisdn")),
            &PageRequest {
                limit: 5,
                cursor: first.next_cursor,
            },
        )
        .await;
    assert!(
        matches!(misused, Err(StoreError::InvalidCursor)),
        "{misused:?}"
    );
    Ok(())
}

async fn writes_are_conditional_and_kept_in_history(store: &dyn SimStore) -> Result<()> {
    let demo = tenant("demo");
    let stored = store
        .get_sim(&demo, &sample_sim(3).iccid)
        .await?
        .expect("seeded");
    let mut changed = stored.clone();
    changed.rate_plan = Some("IOT-10GB".into());
    changed.version += 1;
    let event = cellbridge::sims::sim::SimEvent {
        at: OffsetDateTime::UNIX_EPOCH + time::Duration::days(1),
        source: SimSource::CarrierSync {
            service_provider_id: "sp-1".into(),
        },
        kind: SimEventKind::Changed,
        changes: changed.changes_since(&stored),
    };
    assert_eq!(
        store
            .put_sim(&demo, &changed, Some(stored.version + 5), Some(&event))
            .await?,
        Written::Conflict,
        "not the stored version"
    );
    assert_eq!(
        store.put_sim(&demo, &changed, None, Some(&event)).await?,
        Written::Conflict,
        "it exists"
    );
    assert_eq!(
        store
            .put_sim(&demo, &changed, Some(stored.version), Some(&event))
            .await?,
        Written::Written
    );

    // A bulk change's outcome: written blind, the carrier's status name dropped until the sync.
    let suspend = SimChange {
        iccid: stored.iccid.clone(),
        carrier: stored.carrier,
        service_provider_id: stored.service_provider_id.clone(),
        set: vec![
            (SimField::Status, Some("suspended".into())),
            (SimField::CarrierStatus, None),
        ],
        source: SimSource::BulkChange {
            bulk_change_id: "bc-1".into(),
        },
    };
    store
        .apply_change(
            &demo,
            &suspend,
            OffsetDateTime::UNIX_EPOCH + time::Duration::days(2),
        )
        .await?;
    let now = store.get_sim(&demo, &stored.iccid).await?.expect("kept");
    assert_eq!(now.status, SimStatus::Suspended);
    assert_eq!(now.carrier_status, None);
    assert_eq!(now.rate_plan.as_deref(), Some("IOT-10GB"));
    assert_eq!(now.version, stored.version + 2);
    assert_eq!(now.last_change.source, suspend.source);
    let (suspended, _) = walk(store, &query(&[("status", "suspended")], None), 100).await?;
    assert!(
        suspended.contains(&stored.iccid),
        "the status index follows"
    );

    let history = store
        .sim_history(
            &demo,
            &stored.iccid,
            &PageRequest {
                limit: 2,
                cursor: None,
            },
        )
        .await?;
    let kinds: Vec<SimEventKind> = history.items.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [SimEventKind::Changed, SimEventKind::Changed],
        "newest first"
    );
    assert_eq!(history.items[0].source, suspend.source);
    assert_eq!(history.items[1].changes[0].field, SimField::RatePlan);
    let rest = store
        .sim_history(
            &demo,
            &stored.iccid,
            &PageRequest {
                limit: 2,
                cursor: history.next_cursor,
            },
        )
        .await?;
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.items[0].kind, SimEventKind::Imported);

    // A change to a SIM the inventory does not have yet creates it.
    let unknown = cellbridge::testing::iccid(9_000);
    let activate = SimChange {
        iccid: unknown.clone(),
        set: vec![(SimField::Status, Some("active".into()))],
        ..suspend.clone()
    };
    store
        .apply_change(&demo, &activate, OffsetDateTime::UNIX_EPOCH)
        .await?;
    let created = store.get_sim(&demo, &unknown).await?.expect("created");
    assert_eq!((created.status, created.version), (SimStatus::Active, 1));
    assert_eq!(created.carrier, stored.carrier);
    let (by_imei, _) = walk(store, &query(&[], Some("imei")), 1000).await?;
    assert_eq!(by_imei.last(), Some(&unknown), "no IMEI: last");
    assert!(
        store.get_sim(&tenant("globex"), &unknown).await?.is_none(),
        "created for its tenant only"
    );

    // A registered device links its SIM once; the link is a new version, and `linked` finds it.
    let sim = sample_sim(5);
    assert!(store.link_device(&demo, &sim.iccid, "trk-5").await?);
    let once = store.get_sim(&demo, &sim.iccid).await?.expect("kept");
    assert_eq!(
        (once.device_id.as_deref(), once.version),
        (Some("trk-5"), sim.version + 1)
    );
    assert!(store.link_device(&demo, &sim.iccid, "trk-5").await?);
    assert_eq!(
        store
            .get_sim(&demo, &sim.iccid)
            .await?
            .expect("kept")
            .version,
        once.version,
        "linked already: nothing written"
    );
    assert!(
        !store
            .link_device(&demo, &cellbridge::testing::iccid(9_999), "trk-x")
            .await?
    );
    let (linked, _) = walk(
        store,
        &query(&[("linked", "true"), ("carrier", "telegence")], None),
        50,
    )
    .await?;
    assert!(linked.contains(&sim.iccid), "{linked:?}");

    // The device moved to another SIM: only its own link is undone.
    store.unlink_device(&demo, &sim.iccid, "trk-other").await?;
    assert_eq!(
        store.get_sim(&demo, &sim.iccid).await?.expect("kept"),
        once,
        "another device's unlink changes nothing"
    );
    store.unlink_device(&demo, &sim.iccid, "trk-5").await?;
    let unlinked = store.get_sim(&demo, &sim.iccid).await?.expect("kept");
    assert_eq!(
        (unlinked.device_id, unlinked.version),
        (None, once.version + 1)
    );
    store
        .unlink_device(&demo, &cellbridge::testing::iccid(9_999), "trk-5")
        .await?;
    Ok(())
}

/// Days recorded with their SIM's cycle total, read back by range; a SIM not in the inventory
/// gets nothing; a day recorded again replaces the first; usage states are versioned.
async fn usage_is_kept_by_day<S>(store: &S) -> Result<()>
where
    S: SimStore + UsageStore + SyncStateStore,
{
    let demo = tenant("usage-demo");
    let sim = sample_sim(7);
    store
        .put_sim(&demo, &sim, None, Some(&imported(&sim)))
        .await?;
    let day = |d: time::Date, data_bytes: u64| DailyUsage {
        day: d,
        data_bytes,
        sms: 2,
    };
    let cycle = |through: time::Date, data_bytes: u64| CycleUsage {
        cycle_start: Some(time::macros::date!(2026 - 12 - 01)),
        through: Some(through),
        data_bytes,
        sms: 4,
    };
    let keep = OffsetDateTime::now_utc() + time::Duration::days(30);
    let (d1, d2, d3) = (
        time::macros::date!(2026 - 12 - 01),
        time::macros::date!(2026 - 12 - 02),
        time::macros::date!(2026 - 12 - 03),
    );
    let records = [
        UsageRecord {
            iccid: sim.iccid.clone(),
            day: Some(day(d1, 100)),
            cycle: cycle(d1, 100),
        },
        UsageRecord {
            iccid: sample_sim(8).iccid,
            day: Some(day(d1, 999)),
            cycle: cycle(d1, 999),
        },
    ];
    store.record_usage(&demo, &records, keep).await?;
    let again = [
        UsageRecord {
            iccid: sim.iccid.clone(),
            day: Some(day(d2, 250)),
            cycle: cycle(d2, 350),
        },
        UsageRecord {
            iccid: sim.iccid.clone(),
            day: Some(day(d3, 50)),
            cycle: cycle(d3, 400),
        },
    ];
    store.record_usage(&demo, &again, keep).await?;
    // A repeated run replaces the day rather than adding a second.
    store.record_usage(&demo, &again[1..], keep).await?;

    let days = store.daily_usage(&demo, &sim.iccid, d1, d3).await?;
    assert_eq!(days, [day(d1, 100), day(d2, 250), day(d3, 50)]);
    assert_eq!(
        store.daily_usage(&demo, &sim.iccid, d2, d2).await?,
        [day(d2, 250)]
    );
    assert!(store
        .daily_usage(&demo, &sim.iccid, d3, d1)
        .await?
        .is_empty());
    assert!(
        store
            .daily_usage(&demo, &sample_sim(8).iccid, d1, d3)
            .await?
            .is_empty(),
        "a SIM the inventory does not have gets no usage"
    );
    assert!(store.get_sim(&demo, &sample_sim(8).iccid).await?.is_none());
    assert!(
        store
            .daily_usage(&tenant("usage-other"), &sim.iccid, d1, d3)
            .await?
            .is_empty(),
        "another tenant's"
    );
    let stored = store.get_sim(&demo, &sim.iccid).await?.expect("the SIM");
    assert_eq!(stored.usage, cycle(d3, 400));
    assert!(
        stored.version > sim.version,
        "usage writes count as versions"
    );

    // Kept no longer than asked: a day past its time is not answered.
    let expired = [UsageRecord {
        iccid: sim.iccid.clone(),
        day: Some(day(time::macros::date!(2026 - 11 - 30), 5)),
        cycle: cycle(d3, 400),
    }];
    store
        .record_usage(
            &demo,
            &expired,
            OffsetDateTime::now_utc() - time::Duration::minutes(1),
        )
        .await?;
    assert_eq!(
        store
            .daily_usage(&demo, &sim.iccid, time::macros::date!(2026 - 11 - 01), d1)
            .await?,
        [day(d1, 100)]
    );

    let mut state = UsageState::new("sp-usage");
    state.collected_through = Some(d3);
    state.version = 1;
    assert_eq!(
        store.put_usage_state(&demo, &state).await?,
        Written::Written
    );
    assert_eq!(
        store.put_usage_state(&demo, &state).await?,
        Written::Conflict,
        "a second writer at the same version"
    );
    let read = store
        .get_usage_state(&demo, "sp-usage")
        .await?
        .expect("stored");
    assert_eq!(read, state);
    assert!(
        store.get_sync(&demo, "sp-usage").await?.is_none(),
        "the usage state is not the provider's sync state"
    );

    // A usage request awaiting its callbacks, found by the carrier's id alone.
    let request = UsageRequest {
        request_id: "9d0c7f6e-request".into(),
        tenant_id: demo.as_str().to_owned(),
        service_provider_id: "sp-usage".into(),
        span: UsageSpan {
            from: d1,
            through: d3,
        },
        requested_at: time::macros::datetime!(2026-12-04 01:00 UTC),
        keep_days_until: keep,
    };
    store.put_usage_request(&request, keep).await?;
    assert_eq!(
        store.get_usage_request(&request.request_id).await?,
        Some(request.clone())
    );
    assert_eq!(store.get_usage_request("another-request").await?, None);
    assert_eq!(
        store.daily_usage(&demo, &sim.iccid, d1, d3).await?.len(),
        3,
        "a kept request is no SIM's day"
    );
    Ok(())
}

/// SIMs whose details are due are found by provider, in ICCID order, page by page; a SIM
/// written with its details read leaves them; details states are versioned apart.
async fn due_details_are_found_by_provider<S>(store: &S) -> Result<()>
where
    S: SimStore + SyncStateStore,
{
    let demo = tenant("details-demo");
    let on = |n: u32, provider: &str, due: bool| Sim {
        service_provider_id: Some(provider.to_owned()),
        details_due: due,
        ..sample_sim(n)
    };
    let sims = [
        on(3, "sp-a", true),
        on(1, "sp-a", true),
        on(2, "sp-a", false),
        on(4, "sp-b", true),
        on(5, "sp-a", true),
    ];
    for sim in &sims {
        store
            .put_sim(&demo, sim, None, Some(&imported(sim)))
            .await?;
    }
    let other = on(1, "sp-a", true);
    store
        .put_sim(
            &tenant("details-other"),
            &other,
            None,
            Some(&imported(&other)),
        )
        .await?;
    let page = |cursor: Option<String>| PageRequest { limit: 2, cursor };
    let first = store.sims_due_details(&demo, "sp-a", &page(None)).await?;
    let iccids = |sims: &[Sim]| sims.iter().map(|s| s.iccid.clone()).collect::<Vec<_>>();
    assert_eq!(
        iccids(&first.items),
        [sample_sim(1).iccid, sample_sim(3).iccid]
    );
    assert!(first.items.iter().all(|sim| sim.details_due));
    let rest = store
        .sims_due_details(&demo, "sp-a", &page(first.next_cursor.clone()))
        .await?;
    assert_eq!(iccids(&rest.items), [sample_sim(5).iccid]);
    assert!(rest.next_cursor.is_none());

    // Read: written without the mark (and without a history entry), it is due no more.
    let read = Sim {
        details_due: false,
        version: sims[0].version + 1,
        ..sims[0].clone()
    };
    assert_eq!(
        store
            .put_sim(&demo, &read, Some(sims[0].version), None)
            .await?,
        Written::Written
    );
    let due = store.sims_due_details(&demo, "sp-a", &page(None)).await?;
    assert_eq!(
        iccids(&due.items),
        [sample_sim(1).iccid, sample_sim(5).iccid]
    );
    let stored = store.get_sim(&demo, &read.iccid).await?.expect("kept");
    assert!(!stored.details_due);
    let history = store
        .sim_history(
            &demo,
            &read.iccid,
            &PageRequest {
                limit: 10,
                cursor: None,
            },
        )
        .await?;
    assert_eq!(history.items.len(), 1, "no entry for bookkeeping");

    let mut state = DetailsState::new("sp-a");
    state.version = 1;
    assert_eq!(
        store.put_details_state(&demo, &state).await?,
        Written::Written
    );
    assert_eq!(
        store.put_details_state(&demo, &state).await?,
        Written::Conflict
    );
    assert_eq!(store.get_details_state(&demo, "sp-a").await?, Some(state));
    assert!(store.get_sync(&demo, "sp-a").await?.is_none());
    assert!(store.get_usage_state(&demo, "sp-a").await?.is_none());
    Ok(())
}

#[tokio::test]
async fn the_in_memory_inventory_answers_like_dynamodb() -> Result<()> {
    let store = MemorySims::default();
    let sims = seed(&store).await?;
    listings_answer_the_same(&store, &sims).await?;
    writes_are_conditional_and_kept_in_history(&store).await?;
    usage_is_kept_by_day(&store).await?;
    due_details_are_found_by_provider(&store).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inventory_in_dynamodb() -> Result<()> {
    let stack = LocalAwsStack::start().await?;
    let store = DynamoSims::new(
        stack.dynamodb(),
        stack.name("SimsTable")?,
        stack.name("SimHistoryTable")?,
    );
    let sims = seed(&store).await?;
    listings_answer_the_same(&store, &sims).await?;

    // A filter that matches little answers short pages with a cursor instead of reading the
    // whole inventory in one request, and walking them still finds every match.
    let sparse = store.clone().with_read_budget(60);
    let rare = query(&[("costCenter", "CC-4"), ("ratePlan", "IOT-1GB")], None);
    let (found, sizes) = walk(&sparse, &rare, 50).await?;
    let (all, _) = walk(&store, &rare, 50).await?;
    assert_eq!(found, all);
    assert!(sizes.len() >= 4, "240 SIMs read 60 at a time: {sizes:?}");
    assert!(sizes.iter().all(|size| *size < 50), "{sizes:?}");

    writes_are_conditional_and_kept_in_history(&store).await?;
    let with_usage = store
        .with_sync_table(stack.name("CarrierSyncTable")?)
        .with_usage_table(stack.name("SimUsageTable")?);
    usage_is_kept_by_day(&with_usage).await?;
    due_details_are_found_by_provider(&with_usage).await?;
    stack.stop().await;
    Ok(())
}
