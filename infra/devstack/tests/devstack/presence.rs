//! Presence through the devstack, for devices that still send heartbeats: `HeartbeatRule` queues
//! them on `PresenceQueue`, `device-presence` takes them in batches, and its write gate reads each
//! device once and writes nothing while the stored `lastSeen` is within the write interval. What
//! the function spent is read from MiniStack's meter, by its caller name.

use anyhow::{bail, ensure, Context, Result};
use device_sim::{Fleet, FleetOptions};
use devstack::billing::EVENT_SOURCE_CALLER;
use devstack::ministack::{read_meter, EmulatorMeter};
use devstack::Devstack;
use std::cell::RefCell;
use std::time::Duration;

const DEVICES: u64 = 2;
/// Windows of heartbeats within which every instance of the function has read each device:
/// cargo-lambda starts a handful, and each reads a device once.
const MAX_WINDOWS: u32 = 12;
/// The caller name `device-presence`'s requests carry (its function name).
const PRESENCE_FUNCTION: &str = "device-presence";

struct Meters {
    http: reqwest::Client,
    dynamodb: String,
    sqs: String,
}

impl Meters {
    async fn read(&self) -> Result<EmulatorMeter> {
        let dynamodb = read_meter(&self.http, &self.dynamodb).await?;
        let sqs = read_meter(&self.http, &self.sqs).await?;
        Ok(EmulatorMeter::merged([dynamodb, sqs]))
    }
}

/// Heartbeats the event source deleted from `queue` after `device-presence` took them.
fn heartbeats_done(meter: &EmulatorMeter, queue: &str) -> u64 {
    meter
        .sqs
        .iter()
        .filter(|u| {
            u.caller == EVENT_SOURCE_CALLER && u.queue == queue && u.action == "DeleteMessageBatch"
        })
        .map(|u| u.messages)
        .sum()
}

/// What the meters counted since `since`, once at least `at_least` heartbeats were handled.
async fn until_done(
    meters: &Meters,
    since: &EmulatorMeter,
    queue: &str,
    at_least: u64,
) -> Result<EmulatorMeter> {
    let last = RefCell::new(EmulatorMeter::default());
    super::until(
        &format!("{at_least} heartbeats handled"),
        Duration::from_secs(60),
        || async {
            let now = meters.read().await?.since(since);
            let done = heartbeats_done(&now, queue) >= at_least;
            *last.borrow_mut() = now;
            Ok(done)
        },
    )
    .await?;
    Ok(last.into_inner())
}

pub async fn heartbeats_reach_presence_in_batches_and_cost_no_write(
    stack: &Devstack,
) -> Result<()> {
    let meters = Meters {
        http: reqwest::Client::new(),
        dynamodb: stack.aws().dynamodb().endpoint(),
        sqs: stack.aws().sqs().endpoint(),
    };
    let mut options = FleetOptions::new(stack.mqtt_address());
    options.devices = DEVICES as usize;
    options.prefix = "beating".to_owned();
    options.tenant = "demo".to_owned();
    // An older device: a heartbeat every second on top of keep-alive.
    options.heartbeat_every = Some(Duration::from_secs(1));
    let start = meters.read().await?;
    let fleet = Fleet::start(options)?;
    let outcome = exercise(stack, &meters, &start, &fleet).await;
    let _ = fleet.shutdown().await;
    outcome
}

async fn exercise(
    stack: &Devstack,
    meters: &Meters,
    start: &EmulatorMeter,
    fleet: &Fleet,
) -> Result<()> {
    let queue = stack
        .resources()
        .queue_name("PresenceQueue")
        .context("the template's PresenceQueue")?
        .to_owned();
    let devices_table = stack
        .resources()
        .table_name("DevicesTable")
        .context("DevicesTable")?
        .to_owned();
    let (stats, registered) = fleet
        .wait_for(Duration::from_secs(300), |s| {
            s.registered_accepted == DEVICES
        })
        .await;
    ensure!(registered, "devices not all registered: {stats:?}");
    let spent = |meter: &EmulatorMeter, operation: &str| -> (u64, f64) {
        meter
            .dynamodb
            .iter()
            .filter(|u| {
                u.caller == PRESENCE_FUNCTION
                    && u.table == devices_table
                    && u.operation == operation
            })
            .fold((0, 0.0), |(requests, units), u| {
                (requests + u.requests, units + u.read_units + u.write_units)
            })
    };
    // Each instance of the function (locally, cargo-lambda starts one whenever all are busy)
    // reads each device once; then it answers from memory. Until one window of two batches or
    // more passes without a read. The stack's write interval (an hour) outlasts the run, so
    // nothing may be written.
    let mut windows = 0;
    loop {
        let before = meters.read().await?;
        let window = until_done(meters, &before, &queue, 10 * DEVICES).await?;
        let (writes, _) = spent(&window, "UpdateItem");
        ensure!(
            writes == 0,
            "heartbeats within the write interval wrote: {window:?}"
        );
        let (window_reads, units) = spent(&window, "BatchGetItem");
        ensure!(
            units <= 0.5 * window_reads as f64 * DEVICES as f64,
            "more than half a read unit a device: {window:?}"
        );
        if window_reads == 0 {
            break;
        }
        windows += 1;
        if windows == MAX_WINDOWS {
            bail!("still reading after {MAX_WINDOWS} windows of heartbeats: {window:?}");
        }
    }
    let all = meters.read().await?.since(start);
    ensure!(
        spent(&all, "BatchGetItem").0 >= 1 && heartbeats_done(&all, &queue) >= 10 * DEVICES,
        "the heartbeats went through the write gate: {all:?}"
    );
    for queue in ["PresenceDeadLetterQueue", "IotRuleErrorQueue"] {
        let waiting = super::queue_messages(stack, queue).await?;
        ensure!(waiting == 0, "{waiting} messages in {queue}");
    }
    Ok(())
}
