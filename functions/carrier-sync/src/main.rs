use lambda_runtime::{service_fn, Error, LambdaEvent};
use std::sync::Arc;
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, sdk) = cellbridge_edge::lambda::cold_start::<carrier_sync::Config>().await?;
    let sims = Arc::new(cellbridge_sims::wiring::sim_store(&sdk, &config.sims));
    let ports = carrier_sync::SyncFunctionPorts {
        sims: sims.clone(),
        states: sims.clone(),
        usage: sims,
        devices: Arc::new(carrier_sync::RegisteredDevices(Arc::new(
            cellbridge_devices::wiring::device_store(&sdk, &config.devices),
        ))),
        retention: config.retention,
        providers: Arc::new(cellbridge_carriers::wiring::provider_store(
            &sdk,
            &config.providers,
        )),
        accounts: Arc::new(cellbridge_carriers::wiring::provider_accounts_only(
            &sdk,
            &config.providers,
            &config.gate.0,
        )),
        queue: Arc::new(cellbridge_carriers::sync_queue::SqsSyncQueue::new(
            cellbridge_core::aws::sqs(&sdk),
            config.queue.0,
        )),
        holder: format!("carrier-sync:{}", uuid_like()),
    };
    // One function, two triggers: the schedule's event, and the sync queue's batches.
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let ports = &ports;
        async move {
            if event.payload.get("Records").is_none() {
                let queued = carrier_sync::schedule(ports).await?;
                return Ok::<_, Error>(serde_json::json!({ "queued": queued }));
            }
            // A deadline already past is a runtime that sets none (local emulators send 1970):
            // then the function's own timeout in the template, 15 minutes, is the budget.
            let remaining = match event.context.deadline.checked_sub(time_ms()) {
                Some(ms) if ms > 0 => Duration::from_millis(ms),
                _ => NO_DEADLINE_BUDGET,
            };
            let deadline =
                tokio::time::Instant::now() + remaining.saturating_sub(carrier_sync::WRAP_UP);
            let batch = serde_json::from_value(event.payload)?;
            let response = carrier_sync::handle(ports, batch, deadline).await;
            Ok(serde_json::to_value(response)?)
        }
    }))
    .await
}

const NO_DEADLINE_BUDGET: Duration = Duration::from_secs(900);

fn time_ms() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// Tells this instance's runs from another's (the process id and start time suffice).
fn uuid_like() -> String {
    format!("{}-{}", std::process::id(), time_ms())
}
