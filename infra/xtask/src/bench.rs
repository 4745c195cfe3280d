//! `cargo xtask bench ...`: benchmarks whose numbers go to docs/benchmarks.md.
//!
//! `cold-start` builds every function's release binary next to a hello-world `lambda_runtime`
//! function, starts each one many times against a fake Lambda Runtime API on loopback and times
//! spawn -> first `GET /runtime/invocation/next`: the point where Lambda ends the Init phase.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Init time, resident memory and size of every function's release binary vs a hello-world.
    ColdStart(ColdStartArgs),
}

#[derive(Args)]
pub struct ColdStartArgs {
    /// Cold starts measured per binary.
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Measure the release binaries already in the target directory instead of building first.
    #[arg(long)]
    pub no_build: bool,
    /// Print the table only; leave docs/benchmarks.md untouched.
    #[arg(long)]
    pub no_write: bool,
}

pub async fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::ColdStart(args) => cold_start(args).await,
    }
}

/// The baseline every function is compared with (infra/hello-lambda).
const BASELINE: &str = "hello-lambda";
/// Goal: a function's median init stays within this multiple of the baseline's.
const GOAL_RATIO: f64 = 1.5;
/// A healthy init takes milliseconds; this only stops a hung binary from stalling the benchmark.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);
const NEXT_PATH: &str = "/2018-06-01/runtime/invocation/next";
const MARK_BEGIN: &str = "<!-- cold-start:begin (written by `cargo xtask bench cold-start`) -->";
const MARK_END: &str = "<!-- cold-start:end -->";
const DOCS_INTRO: &str = "# Benchmarks\n\n\
Measured with `cargo xtask bench <name>`. Each command rewrites only its own section, between its \
marker comments; everything outside the markers is kept, so notes can go around them.\n";

async fn cold_start(args: ColdStartArgs) -> Result<()> {
    if !cfg!(target_os = "linux") {
        bail!("the cold-start benchmark reads /proc/<pid>/status, so it runs on Linux only");
    }
    if args.runs == 0 {
        bail!("--runs must be at least 1 (default 20)");
    }
    let workspace = Workspace::load().await?;
    let targets = workspace.targets()?;

    let mut skipped: Vec<(String, String)> = Vec::new();
    let executables = if args.no_build {
        existing_executables(&workspace, &targets, &mut skipped)
    } else {
        build(&workspace, &targets, &mut skipped).await?
    };
    if !executables.contains_key(BASELINE) {
        bail!("the baseline {BASELINE} has no release binary; run without --no-build to build it");
    }

    let mut benches = Vec::new();
    for target in &targets {
        let Some(exe) = executables.get(&target.package) else { continue };
        let size = std::fs::metadata(exe)
            .with_context(|| format!("reading the size of {}", exe.display()))?
            .len();
        benches.push(Bench { name: target.package.clone(), exe: exe.clone(), size, samples: vec![] });
    }

    measure(&mut benches, args.runs, &mut skipped).await?;
    let report = Report::new(&benches, &skipped, args.runs)?;
    println!("\n{}", report.text_table());
    for (name, why) in &skipped {
        println!("skipped {name}: {why}");
    }

    if !args.no_write {
        let path = workspace.root.join("docs/benchmarks.md");
        let machine = Machine::detect().await;
        write_docs(&path, &report.markdown(&machine))?;
        println!("\nwrote {}", path.display());
    }
    Ok(())
}

