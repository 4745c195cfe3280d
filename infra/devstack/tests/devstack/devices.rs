//! Devices end to end through the devstack: simulated devices speak MQTT to the local broker,
//! the template's topic rules run the registration, telemetry and presence flows, and commands
//! go from the API to the device and back.

use super::{signed_in, until, OPERATOR};
use anyhow::{bail, ensure, Context, Result};
use cellbridge::devices::command::CommandStatus;
use cellbridge::devices::views::DeviceStatus;
use device_sim::{Fleet, FleetOptions, Misbehaviour};
use devstack::api_client::{ApiClient, ApiError};
use devstack::Devstack;
use std::collections::HashSet;
use std::time::Duration;

const DEVICES: usize = 4;

/// Telemetry points of `thing` stored in the last hour.
async fn points_last_hour(api: &ApiClient, thing: &str) -> Result<usize> {
    let from = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    Ok(api.telemetry_since(thing, from).await?.len())
}

pub async fn devices_register_report_and_answer_commands(stack: &Devstack) -> Result<()> {
    let mut options = FleetOptions::new(stack.mqtt_address());
    options.devices = DEVICES;
    options.prefix = "e2e".to_owned();
    options.tenant = "demo".to_owned();
    // Batches as the contract has them, every two seconds rather than every minute, so the
    // stored telemetry this test waits for comes soon.
    options.batch_every = Some(Duration::from_secs(2));
    let fleet = Fleet::start(options)?;
    let mut stranger = FleetOptions::new(stack.mqtt_address());
    stranger.devices = 1;
    stranger.prefix = "stranger".to_owned();
    stranger.tenant = "initech".to_owned();
    let strangers = Fleet::start(stranger)?;
    let outcome = exercise(stack, &fleet, &strangers).await;
    let _ = strangers.shutdown().await;
    let _ = fleet.shutdown().await;
    outcome
}

async fn exercise(stack: &Devstack, fleet: &Fleet, strangers: &Fleet) -> Result<()> {
    let (stats, registered) = fleet
        .wait_for(Duration::from_secs(300), |s| {
            s.registered_accepted as usize == DEVICES
        })
        .await;
    ensure!(registered, "devices not all registered: {stats:?}");
    let (stats, rejected) = strangers
        .wait_for(Duration::from_secs(60), |s| s.registered_rejected == 1)
        .await;
    ensure!(
        rejected,
        "a device of an unknown tenant was not rejected: {stats:?}"
    );

    let api = signed_in(stack, OPERATOR).await?;
    let things: Vec<String> = fleet.things().map(str::to_owned).collect();
    let all: HashSet<String> = things.iter().cloned().collect();
    let online = api
        .wait_online(&all, Duration::from_secs(60), |_| {})
        .await?;
    ensure!(online == DEVICES, "{online} of {DEVICES} online");
    let listed = api.devices().await?;
    ensure!(
        !listed.iter().any(|d| d.id == "stranger-0001"),
        "the rejected device is not in the registry"
    );

    // The registration created the IoT thing with the template's thing type.
    let iot = aws_sdk_iot::Client::new(stack.sdk_config());
    let thing = iot
        .describe_thing()
        .thing_name(&things[0])
        .send()
        .await
        .context("the registered device is an IoT thing")?;
    ensure!(
        thing
            .thing_type_name()
            .is_some_and(|t| t.ends_with("-device")),
        "thing type {:?}",
        thing.thing_type_name()
    );
    ensure!(
        thing
            .attributes()
            .and_then(|a| a.get("tenant"))
            .is_some_and(|t| t == "demo"),
        "thing attributes {:?}",
        thing.attributes()
    );

    // Telemetry lands through the rule, the queue and the batch writer.
    let first = things[0].clone();
    until("telemetry stored", Duration::from_secs(60), || async {
        Ok(points_last_hour(&api, &first).await? >= 2)
    })
    .await?;
    // Ingest folded the same points into the device's hourly summary, which long charts read.
    // The hours are read first: every sample they count is stored before they are, so never
    // more than the samples read after them, unless one was counted twice.
    let since = time::OffsetDateTime::now_utc() - time::Duration::hours(2);
    let hours = api.telemetry_hours_since(&first, since).await?;
    let points = api.telemetry_since(&first, since).await?;
    let summarised: u64 = hours
        .iter()
        .filter_map(|hour| hour.metrics.get("battery"))
        .map(|battery| battery.count)
        .sum();
    ensure!(
        // (A full page of 1,000 samples may not be all of them.)
        summarised >= 2 && (summarised as usize <= points.len() || points.len() >= 1_000),
        "hourly summaries {hours:?} for {} points",
        points.len()
    );
    // Its latest state is its newest point, read from the series for the device list.
    let listed = api.devices().await?;
    let shown = listed
        .iter()
        .find(|d| d.id == first.as_str())
        .context("the device is listed")?;
    ensure!(
        shown
            .latest
            .as_ref()
            .is_some_and(|latest| latest.metrics["battery"].is_number()),
        "latest state {shown:?}"
    );

    // A command to an online device, and one it does not know.
    let id = api.send_command(&first, "ping", None).await?.id;
    let view = api
        .wait_command_final(&first, &id, Duration::from_secs(30))
        .await?;
    ensure!(
        view.status == CommandStatus::Successful,
        "ping ended {view:?}"
    );
    let steps: Vec<&str> = view.history.iter().map(|h| h.status.as_str()).collect();
    // The two acknowledgements invoke the ack function asynchronously, as IoT Core does, so the
    // final one may overtake DELIVERED, which then changes nothing.
    ensure!(
        steps == ["QUEUED", "SENT", "DELIVERED", "SUCCESSFUL"]
            || steps == ["QUEUED", "SENT", "SUCCESSFUL"],
        "history {steps:?}"
    );
    let id = api.send_command(&first, "self-destruct", None).await?.id;
    let view = api
        .wait_command_final(&first, &id, Duration::from_secs(30))
        .await?;
    ensure!(
        view.status == CommandStatus::Failed,
        "unknown command ended {view:?}"
    );

    // A command to an offline device waits for it to come back.
    let second = things[1].clone();
    fleet.disconnect(&second)?;
    let just_second: HashSet<String> = [second.clone()].into();
    until(
        "the disconnected device offline",
        Duration::from_secs(30),
        || async { Ok(api.online_among(&just_second).await? == 0) },
    )
    .await?;
    let id = api.send_command(&second, "locate", None).await?.id;
    // Stored for later, not sent: only the device's return sends it.
    let queued = api.command(&second, &id).await?;
    ensure!(
        queued.status == CommandStatus::Queued,
        "the offline device's command {queued:?}"
    );
    let waiting = api
        .devices()
        .await?
        .into_iter()
        .find(|d| d.id == second.as_str())
        .context("the offline device is listed")?;
    ensure!(waiting.status == DeviceStatus::Offline, "{waiting:?}");
    fleet.reconnect(&second)?;
    let view = api
        .wait_command_final(&second, &id, Duration::from_secs(60))
        .await?;
    ensure!(
        view.status == CommandStatus::Successful,
        "the queued command ended {view:?}"
    );

    // A dropped connection (no DISCONNECT) comes back by itself.
    let third = things[2].clone();
    fleet.drop(&third, Duration::from_secs(1))?;
    let (stats, back) = fleet
        .wait_for(Duration::from_secs(30), |s| s.reconnects >= 1)
        .await;
    ensure!(back, "the dropped device did not reconnect: {stats:?}");
    let just_third: HashSet<String> = [third.clone()].into();
    until(
        "the dropped device online again",
        Duration::from_secs(30),
        || async { Ok(api.online_among(&just_third).await? == 1) },
    )
    .await?;

    // Misbehaving devices (garbage, oversize, a flood) do not stop the others' telemetry.
    let [_, _, flooding, garbling] = &things[..] else {
        bail!("expected {DEVICES} devices");
    };
    let before = points_last_hour(&api, &first).await?;
    let broker_before = stack.broker().stats();
    fleet.set_misbehaviour(garbling, Misbehaviour::Garbage)?;
    fleet.set_misbehaviour(flooding, Misbehaviour::Flood { per_second: 300 })?;
    fleet.set_misbehaviour(&second, Misbehaviour::Oversize)?;
    // Until the broker has refused both (a wait, not a fixed time a busy machine may not keep).
    until(
        "the broker throttling the flood and refusing the oversize payload",
        Duration::from_secs(60),
        || async {
            let now = stack.broker().stats();
            Ok(now.throttled > broker_before.throttled
                && now.oversize_refused > broker_before.oversize_refused)
        },
    )
    .await?;
    for thing in [garbling, flooding, &second] {
        fleet.set_misbehaviour(thing, Misbehaviour::None)?;
    }
    until(
        "telemetry of a well-behaved device still stored",
        Duration::from_secs(30),
        || async { Ok(points_last_hour(&api, &first).await? >= before + 3) },
    )
    .await?;
    let broker = stack.broker().stats();
    ensure!(
        broker.throttled > broker_before.throttled,
        "the flood was not throttled: {broker:?}"
    );
    ensure!(
        broker.oversize_refused > broker_before.oversize_refused,
        "the oversize payload was not refused: {broker:?}"
    );

    // Another tenant sees none of it.
    let globex = signed_in(stack, "ops@globex.example").await?;
    let refusals = [
        ("the device", globex.device(&first).await.err()),
        ("its command", globex.command(&first, &id).await.err()),
        (
            "a new command",
            globex.send_command(&first, "ping", None).await.err(),
        ),
    ];
    for (what, refused) in refusals {
        let status = refused.as_ref().and_then(ApiError::status);
        ensure!(
            status.map(|s| s.as_u16()) == Some(404),
            "{what} of {first} as globex: {refused:?}"
        );
    }

    // No rule action failed along the way.
    let errors = super::queue_messages(stack, "IotRuleErrorQueue").await?;
    ensure!(errors == 0, "{errors} messages in IotRuleErrorQueue");
    Ok(())
}
