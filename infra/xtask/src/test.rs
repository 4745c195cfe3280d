//! `cargo xtask test`: installs what the suite needs, checks formatting, the dependency graph
//! (cargo-deny, cargo-machete), lints and the template, builds the function binaries the
//! end-to-end test runs through `cargo lambda watch`, then runs every test of the workspace.

use crate::cargo_tools;
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct TestArgs {
    /// Skip the checks (`cargo fmt --check`, cargo-deny, cargo-machete, cfn-lint, clippy).
    #[arg(long)]
    no_lint: bool,
    /// Extra arguments passed to `cargo test` (e.g. a test name filter after `--`).
    #[arg(last = true)]
    cargo_test_args: Vec<String>,
}

/// Set to 1 where the advisory database must be reachable: a failed fetch is then an error
/// instead of a loudly skipped check.
const REQUIRE_ADVISORIES: &str = "CELLBRIDGE_REQUIRE_ADVISORIES";
/// A fetch that reaches the network takes seconds; one that cannot must not stall the run.
const ADVISORY_FETCH_TIMEOUT: Duration = Duration::from_secs(120);

enum Action {
    Run(Command),
    Advisories,
}

struct Step {
    name: &'static str,
    action: Action,
}

/// `cargo <args>` as a user's shell would run it: `cargo xtask` runs under `cargo run`, and the
/// xtask crate's variables would rebuild ring and all that depends on it (rustls, the AWS SDK)
/// in every clone at a new path, and again when the devstack builds the functions without
/// them. cargo-machete would take them for paths to analyse.
fn cargo_command(args: &[&str]) -> Command {
    let mut command = local_tools::cargo();
    command.args(args);
    command
}

/// `cargo <args>` with the pinned cargo subcommands (deny, machete) first on PATH.
fn cargo_tool(args: &[&str]) -> Result<Command> {
    let mut command = cargo_command(args);
    command.env("PATH", cargo_tools::path_with_tools()?);
    Ok(command)
}

pub fn run(args: TestArgs) -> Result<()> {
    let started = Instant::now();
    let root = local_tools::workspace_root();
    let tools = local_tools::ensure_installed(&root)?;
    // Before anything compiles: the console function embeds the bundle's file names.
    crate::web::build(&root)?;
    crate::web::prepare_browser_tests(&root)?;

    let mut steps = Vec::new();
    if !args.no_lint {
        cargo_tools::install_all()?;
        steps.push(Step {
            name: "cargo fmt --check",
            action: Action::Run(cargo_command(&["fmt", "--all", "--", "--check"])),
        });
        steps.push(Step {
            name: "cargo deny check licenses bans sources (deny.toml)",
            // The graphs of every duplicate would run to thousands of lines each time;
            // `cargo deny check bans` shows them when wanted.
            action: Action::Run(cargo_tool(&[
                "deny",
                "check",
                "--hide-inclusion-graph",
                "licenses",
                "bans",
                "sources",
            ])?),
        });
        steps.push(Step {
            name: "cargo deny check advisories (when the advisory database can be fetched)",
            action: Action::Advisories,
        });
        steps.push(Step {
            name: "cargo machete (unused dependencies)",
            action: Action::Run(cargo_tool(&["machete", "--skip-target-dir"])?),
        });
        let mut lint = Command::new(tools.cfn_lint());
        lint.arg("template.yaml");
        steps.push(Step {
            name: "cfn-lint template.yaml",
            action: Action::Run(lint),
        });
        steps.push(Step {
            name: "tsc --noEmit (the console's TypeScript)",
            action: Action::Run(crate::web::type_check_command(&root)),
        });
        steps.push(Step {
            name: "cargo clippy",
            action: Action::Run(cargo_command(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--quiet",
                "--",
                "-D",
                "warnings",
            ])),
        });
    }
    steps.push(Step {
        name: "build function binaries (run by cargo lambda watch in the end-to-end tests)",
        action: Action::Run(cargo_command(&[
            "build",
            "--quiet",
            "--bins",
            "--workspace",
        ])),
    });
    let mut test = cargo_command(&["test", "--workspace"]);
    test.args(&args.cargo_test_args);
    steps.push(Step {
        name: "cargo test --workspace",
        action: Action::Run(test),
    });

    let total = steps.len();
    let mut advisories_skipped = false;
    for (index, step) in steps.into_iter().enumerate() {
        eprintln!(
            "==> [{}/{total}] {} ({:.0?} so far)",
            index + 1,
            step.name,
            started.elapsed()
        );
        match step.action {
            Action::Run(mut command) => {
                let status = command
                    .current_dir(&root)
                    .status()
                    .with_context(|| format!("could not run {}", step.name))?;
                if !status.success() {
                    bail!(
                        "{} failed ({status}); fix it and run `cargo xtask test` again",
                        step.name
                    );
                }
            }
            Action::Advisories => advisories_skipped = !advisories(&root)?,
        }
    }
    eprintln!(
        "==> all checks and tests passed in {:.0?}",
        started.elapsed()
    );
    if advisories_skipped {
        eprintln!(
            "!! but advisories were NOT checked: the advisory database was out of reach (above)"
        );
    }
    Ok(())
}

/// Checks the graph against the RustSec advisory database, which lives in a git repository on
/// GitHub. Where that cannot be fetched (machines that reach only the package registries), the
/// check is skipped, and says so loudly: a green run then vouches for licenses, bans and
/// sources, not for known vulnerabilities. Returns whether advisories were checked.
fn advisories(root: &Path) -> Result<bool> {
    let why = match fetch_advisory_db(root) {
        Ok(()) => return check_advisories(root).map(|()| true),
        Err(why) => why,
    };
    let required = std::env::var(REQUIRE_ADVISORIES).is_ok_and(|v| v == "1");
    if required {
        bail!(
            "the advisory database could not be fetched ({why:#}), and {REQUIRE_ADVISORIES}=1 \
             requires the advisories check; run where GitHub is reachable"
        );
    }
    let rule = "!".repeat(100);
    if let Some(copy) = local_advisory_db() {
        // An older copy still finds what was known when it was fetched.
        eprintln!("{rule}");
        eprintln!(
            "!! ADVISORIES CHECKED AGAINST AN OLD COPY: the RustSec advisory database could not be"
        );
        eprintln!("!! fetched ({why:#});");
        eprintln!(
            "!! using {}, which misses anything published since.",
            copy.display()
        );
        eprintln!("{rule}");
        return check_advisories(root).map(|()| true);
    }
    eprintln!("{rule}");
    eprintln!("!! ADVISORIES NOT CHECKED: the RustSec advisory database could not be fetched");
    eprintln!("!!   ({why:#}).");
    eprintln!("!! Licenses, bans and sources were checked; known vulnerabilities were NOT. Run");
    eprintln!("!! `cargo xtask test` where GitHub is reachable, or `cargo deny check advisories`");
    eprintln!("!! there; set {REQUIRE_ADVISORIES}=1 to make this skip an error.");
    eprintln!("{rule}");
    Ok(false)
}

/// `cargo deny check advisories` against the database already on disk.
fn check_advisories(root: &Path) -> Result<()> {
    let status = cargo_tool(&["deny", "check", "--disable-fetch", "advisories"])?
        .current_dir(root)
        .status()
        .context("could not run cargo deny")?;
    if !status.success() {
        bail!(
            "cargo deny check advisories failed ({status}): a dependency has a known advisory \
             (above). Update it (`cargo update -p <crate>`), or, if it cannot affect cellbridge, \
             add it to [advisories] ignore in deny.toml with the reason"
        );
    }
    Ok(())
}

/// A copy of the advisory database fetched earlier, where cargo-deny keeps it by default
/// (`$CARGO_HOME/advisory-dbs/advisory-db-<hash>/crates/...`).
fn local_advisory_db() -> Option<std::path::PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))?;
    std::fs::read_dir(cargo_home.join("advisory-dbs"))
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .find(|dir| dir.join("crates").is_dir())
}

/// `cargo deny fetch db`, bounded by [`ADVISORY_FETCH_TIMEOUT`]; the error is the reason.
fn fetch_advisory_db(root: &Path) -> Result<()> {
    let spinner = ProgressBar::new_spinner()
        .with_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}")?);
    spinner.set_message("fetching the RustSec advisory database");
    spinner.enable_steady_tick(Duration::from_millis(120));
    let mut child = cargo_tool(&["deny", "fetch", "db"])?
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("could not run cargo deny")?;
    // Read aside, so a chatty fetch never blocks on a full pipe while it is waited for.
    let reader = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
            text
        })
    });
    let deadline = Instant::now() + ADVISORY_FETCH_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    spinner.finish_and_clear();
    let stderr = reader
        .and_then(|reader| reader.join().ok())
        .unwrap_or_default();
    match status {
        Some(status) if status.success() => Ok(()),
        Some(status) => {
            let last = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no output");
            bail!("`cargo deny fetch db` failed ({status}): {}", last.trim())
        }
        None => bail!(
            "`cargo deny fetch db` did not finish within {} s",
            ADVISORY_FETCH_TIMEOUT.as_secs()
        ),
    }
}
