//! `cargo xtask bench selection`: a bulk change from a selection of 10,000 SIMs out of a tenant's
//! 128,571, through the `bulk-intake` handler (the preview, then the acceptance) and
//! `bulk_planner::plan`, on the in-memory stores: the time this code takes, and the inventory
//! pages it reads. DynamoDB's and S3's share on AWS is not in these numbers.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use cellbridge::bulk_changes::memory::MemoryPorts;
use cellbridge::bulk_changes::messages::PlanMessage;
use cellbridge::carriers::provider::parse_new_provider;
use cellbridge::carriers::provider_memory::MemoryProviders;
use cellbridge::carriers::provider_ports::ProviderStore;
use cellbridge::common::tenant::TenantId;
use cellbridge::sims::ports::SimStore;
use cellbridge::testing::{imported, sample_sim};
use clap::Args;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::sync::CountingSims;
use super::{publish, DocSection, Machine};

const SECTION: DocSection = DocSection {
    name: "selection",
    heading: "Bulk change from a selection",
    begin: "<!-- selection:begin (written by `cargo xtask bench selection`) -->",
    end: "<!-- selection:end -->",
};
const TENANT: &str = "bench";
const PREVIEW_EVENT: &str = include_str!("../../../events/bulk-intake/preview.json");
const CREATE_EVENT: &str = include_str!("../../../events/bulk-intake/create-from-selection.json");
/// Of the sample SIMs, the active Jasper ones on IOT-5GB: 10,000 among the first 128,571.
const INVENTORY: u32 = 128_571;
const FILTER: &str = r#"{"carrier": "jasper", "status": "active", "ratePlan": "IOT-5GB"}"#;

#[derive(Args, Clone, Debug)]
pub struct SelectionArgs {
    /// Times the preview and the bulk change are made.
    #[arg(long, default_value_t = 5)]
    pub runs: u32,
    /// Print the table only; leave docs/benchmarks.md untouched.
    #[arg(long)]
    pub no_write: bool,
}

fn event(sample: &str, body: Value) -> Result<lambda_http::Request> {
    let mut event: Value = serde_json::from_str(sample)?;
    cellbridge::common::testing::authorize_event(&mut event, TENANT, "operator");
    event["body"] = Value::String(body.to_string());
    Ok(lambda_http::request::from_str(&event.to_string())?)
}

fn body(response: &lambda_http::Response<lambda_http::Body>) -> Result<Value> {
    Ok(serde_json::from_slice(response.body().as_ref())?)
}

pub async fn run(args: SelectionArgs) -> Result<()> {
    let root = devstack::tools::workspace_root();
    let tenant = TenantId::parse(TENANT).context("tenant")?;
    println!("putting {INVENTORY} SIMs in the in-memory inventory");
    let sims = CountingSims::default();
    for n in 0..INVENTORY {
        let sim = sample_sim(n);
        sims.inner
            .put_sim(&tenant, &sim, None, Some(&imported(&sim)))
            .await?;
    }
    // The sample SIMs name their provider by carrier; Jasper's is the tenant's.
    let providers = MemoryProviders::default();
    let provider = parse_new_provider(
        json!({"name": "Jasper", "carrier": "jasper", "endpoint": "http://127.0.0.1:1/",
               "credentials": {"username": "u", "apiKey": "k"}})
        .to_string()
        .as_bytes(),
    )
    .map_err(|e| anyhow::anyhow!("{e:?}"))?
    .into_provider(
        tenant.clone(),
        "sp-jasper".into(),
        "secret".into(),
        OffsetDateTime::now_utc(),
    );
    providers.create_provider(&provider).await?;
    let lookups = bulk_intake::Lookups {
        providers: &providers,
        sims: &sims,
    };
    let filter: Value = serde_json::from_str(FILTER)?;
    let request = json!({"change": {"type": "statusUpdate", "action": "suspend"},
                         "filter": filter, "processChanges": true});

    let (mut previews, mut accepts, mut plans) = (Vec::new(), Vec::new(), Vec::new());
    let mut pages = 0;
    let mut selected = 0;
    for run in 0..args.runs {
        let memory = MemoryPorts::default();
        let before = sims.pages.load(Ordering::Relaxed);
        let started = Instant::now();
        let preview = bulk_intake::handle(
            &memory.ports(),
            &lookups,
            event(PREVIEW_EVENT, request.clone())?,
            OffsetDateTime::now_utc(),
        )
        .await;
        previews.push(started.elapsed().as_secs_f64() * 1000.0);
        let preview = body(&preview)?;
        selected = preview["accepted"].as_u64().unwrap_or(0);
        if selected == 0 {
            bail!("the preview selected nothing: {preview}");
        }
        pages = sims.pages.load(Ordering::Relaxed) - before;

        let started = Instant::now();
        let created = bulk_intake::handle(
            &memory.ports(),
            &lookups,
            event(CREATE_EVENT, request.clone())?,
            OffsetDateTime::now_utc(),
        )
        .await;
        let accepted_ms = started.elapsed().as_secs_f64() * 1000.0;
        if created.status() != 202 {
            bail!("the bulk change was not accepted: {}", body(&created)?);
        }
        let id = body(&created)?["id"]
            .as_str()
            .context("the answer names the bulk change")?
            .to_owned();
        let planning = Instant::now();
        bulk_planner::plan(
            &memory.ports(),
            &PlanMessage {
                tenant_id: tenant.clone(),
                bulk_change_id: id,
            },
            OffsetDateTime::now_utc(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("planning failed: {e}"))?;
        let planned_ms = planning.elapsed().as_secs_f64() * 1000.0;
        accepts.push(accepted_ms);
        plans.push(accepted_ms + planned_ms);
        println!(
            "run {}: preview {:.0} ms, accepted in {accepted_ms:.0} ms, planned {planned_ms:.0} ms later",
            run + 1,
            previews.last().copied().unwrap_or_default()
        );
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        super::devices::percentile(values, 0.5)
    };
    let machine = Machine::detect(&root).await;
    let mut markdown = String::new();
    writeln!(markdown, "{}.", machine.measured_with("selection"))?;
    writeln!(markdown)?;
    writeln!(
        markdown,
        "**Method:** {INVENTORY} sample SIMs in one tenant's in-memory inventory; the selection `{FILTER}` (the active Jasper SIMs on one plan) is previewed through the `bulk-intake` handler (`POST /bulk-changes/preview`), then made a bulk change (`POST /bulk-changes` with the same filter: the selection read again, the device list written, the planning message queued), then planned (`bulk_planner::plan`: a device change per SIM and the work messages), {} times, medians given. The stores and the queue are the in-memory adapters, so this is the code's own time; on AWS the selection's reads (a listing page of 1,000 SIMs is a Query or two of up to 1 MB), the S3 device list and the planner's DynamoDB writes add theirs.",
        args.runs
    )?;
    writeln!(markdown)?;
    writeln!(
        markdown,
        "| SIMs in the tenant | selected | inventory pages read by a preview | preview ms | accepted ms | accepted to planned ms |"
    )?;
    writeln!(markdown, "|---|---|---|---|---|---|")?;
    writeln!(
        markdown,
        "| {INVENTORY} | {selected} | {pages} | {:.0} | {:.0} | {:.0} |",
        median(&mut previews),
        median(&mut accepts),
        median(&mut plans)
    )?;
    publish(&root, &SECTION, &markdown, args.no_write)
}
