//! `cargo xtask test`: installs what the suite needs, checks formatting, lints and the template,
//! builds the function binaries the end-to-end test runs through `cargo lambda watch`, then runs
//! every test of the workspace.

use anyhow::{bail, Context, Result};
use std::process::Command;
use std::time::Instant;

#[derive(clap::Args)]
pub struct TestArgs {
    /// Skip `cargo fmt --check`, clippy and cfn-lint.
    #[arg(long)]
    no_lint: bool,
    /// Extra arguments passed to `cargo test` (e.g. a test name filter after `--`).
    #[arg(last = true)]
    cargo_test_args: Vec<String>,
}

struct Step<'a> {
    name: &'a str,
    command: Command,
}

fn cargo(args: &[&str]) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.args(args);
    command
}

pub fn run(args: TestArgs) -> Result<()> {
    let started = Instant::now();
    let root = local_tools::workspace_root();
    let tools = local_tools::ensure_installed(&root)?;

    let mut steps = Vec::new();
    if !args.no_lint {
        steps.push(Step {
            name: "cargo fmt --check",
            command: cargo(&["fmt", "--all", "--", "--check"]),
        });
        let mut lint = Command::new(tools.cfn_lint());
        lint.arg("template.yaml");
        steps.push(Step {
            name: "cfn-lint template.yaml",
            command: lint,
        });
        steps.push(Step {
            name: "cargo clippy",
            command: cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--quiet",
                "--",
                "-D",
                "warnings",
            ]),
        });
    }
    steps.push(Step {
        name: "build function binaries (run by cargo lambda watch in the end-to-end tests)",
        command: cargo(&["build", "--quiet", "--bins", "--workspace"]),
    });
    let mut test = cargo(&["test", "--workspace"]);
    test.args(&args.cargo_test_args);
    steps.push(Step {
        name: "cargo test --workspace",
        command: test,
    });

    let total = steps.len();
    for (index, mut step) in steps.into_iter().enumerate() {
        eprintln!(
            "==> [{}/{total}] {} ({:.0?} so far)",
            index + 1,
            step.name,
            started.elapsed()
        );
        let status = step
            .command
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
    eprintln!(
        "==> all checks and tests passed in {:.0?}",
        started.elapsed()
    );
    Ok(())
}
