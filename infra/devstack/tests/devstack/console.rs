//! The console in a real browser: `tests/browser` (Playwright driving Debian's Chromium) against
//! this stack, after a carrier sync has given the demo tenant an inventory to page through.

use super::{signed_in, until, OPERATOR};
use anyhow::{bail, Context, Result};
use devstack::demo_accounts::DEMO_PASSWORD;
use devstack::Devstack;
use serde_json::Value;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

/// The scenario's SIMs, `iccid(600_000..600_120)`: more than two pages of the SIM table, in a range
/// no other scenario touches (the live scenarios flip 700,000 on).
const FIRST: u32 = 600_000;
const COUNT: u32 = 120;
const PREFIX: &str = "890126000000600";

/// The file the browser tests write in `CONSOLE_CONTROL_DIR` when the device should drop off.
const DISCONNECT_DEVICE: &str = "disconnect-device";

/// Where `cargo xtask test` installs Debian's `chromium`; `CHROMIUM` names another.
fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

pub async fn the_console_works_in_a_real_browser(stack: &Devstack) -> Result<()> {
    let browser = chromium();
    if !browser.exists() {
        let rule = "!".repeat(100);
        eprintln!("{rule}\n!! SKIPPED the console's browser tests: no Chromium at {}.\n!! Install Debian's package (`apt-get install chromium`, as root), or set CHROMIUM to\n!! a Chromium binary; `cargo xtask test` installs it when it runs as root.\n{rule}", browser.display());
        return Ok(());
    }
    let tests = devstack::tools::workspace_root().join("tests/browser");
    if !tests.join("node_modules/playwright-core").exists() {
        bail!(
            "the browser tests' packages are not installed: run `npm ci` in {} (cargo xtask test does)",
            tests.display()
        );
    }

    let iccids: Vec<String> = (FIRST..FIRST + COUNT)
        .map(cellbridge::testing::iccid)
        .collect();
    stack
        .carriers()
        .context("carriers")?
        .seed_inventory(&iccids);
    stack.sync_inventory_now().await?;
    let client = signed_in(stack, OPERATOR).await?;
    until(
        "the sync imports the scenario's SIMs",
        Duration::from_secs(240),
        || async {
            let sims = client
                .all_pages::<Value>(&format!("/sims?iccidPrefix={PREFIX}"))
                .await?;
            Ok(sims.len() == COUNT as usize)
        },
    )
    .await?;
    // Something of the demo tenant's that the other tenant must not see.
    client
        .create_bulk_change(&cellbridge::testing::suspend_request(3, false), None)
        .await?;
    // The stack starts each function on its first request: start those the pages use now,
    // so the browser's waits measure the console, not a cold start.
    reqwest::get(format!("{}/console/sign-in", stack.api_url()))
        .await?
        .error_for_status()?;
    for path in ["/bulk-changes", "/devices"] {
        client.get::<Value>(path).await?;
    }

    // A device for the device page: it registers, reports every 5 s, and answers commands;
    // the browser asks (through a file) for it to drop off while its page is open.
    let mut options = device_sim::FleetOptions::new(stack.mqtt_address());
    options.devices = 1;
    options.prefix = "console-tracker".to_owned();
    options.tenant = "demo".to_owned();
    options.batch_every = Some(Duration::from_secs(5));
    let fleet = device_sim::Fleet::start(options)?;
    let thing = fleet.things().next().context("one device")?.to_owned();
    let online = client
        .wait_online(
            &HashSet::from([thing.clone()]),
            Duration::from_secs(120),
            |_| {},
        )
        .await?;
    if online != 1 {
        bail!("the console's device {thing} did not come online");
    }
    let control = tempfile::tempdir()?;
    let disconnect_asked = control.path().join(DISCONNECT_DEVICE);

    let mut node = tokio::process::Command::new("node");
    node.args(["--test", "--test-reporter=spec", "--test-concurrency=1"])
        .arg(tests.join("console.test.mjs"))
        .env("CONSOLE_URL", stack.api_url())
        .env("CONSOLE_PASSWORD", DEMO_PASSWORD)
        .env("CHROMIUM", &browser)
        // A bulk change the live test makes through the API while a page watches.
        .env(
            "CONSOLE_BULK_CHANGE",
            cellbridge::testing::suspend_request(5, true).to_string(),
        )
        .env("CONSOLE_DEVICE", &thing)
        .env("CONSOLE_CONTROL_DIR", control.path())
        .kill_on_drop(true);
    let run = {
        let output = node.output();
        tokio::pin!(output);
        let watch_control = async {
            while !disconnect_asked.exists() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            fleet.disconnect(&thing)
        };
        tokio::pin!(watch_control);
        let mut disconnected = false;
        let deadline = tokio::time::sleep(Duration::from_secs(300));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                run = &mut output => break run.context("could not run node; install Node.js 20 or newer")?,
                asked = &mut watch_control, if !disconnected => {
                    asked?;
                    disconnected = true;
                }
                () = &mut deadline => bail!("the browser tests did not finish within 5 minutes"),
            }
        }
    };
    fleet.shutdown().await?;
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    if !run.status.success() {
        bail!("the browser tests failed ({}):\n{report}", run.status);
    }
    eprintln!("{report}");
    Ok(())
}
