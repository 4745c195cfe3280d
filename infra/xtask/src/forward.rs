//! Commands that run in a binary of another crate, started with `cargo run`.

use anyhow::{Context, Result};
use local_tools::workspace_root;
use std::path::PathBuf;
use std::process::Command;

/// Which cargo profile a forwarded command is built with.
#[derive(Clone, Copy)]
pub enum Profile {
    Dev,
    /// [`local_tools::BENCH_PROFILE`]: optimised, no link-time optimisation.
    BenchOptimized,
}

impl Profile {
    fn name(self) -> &'static str {
        match self {
            Profile::Dev => "dev",
            Profile::BenchOptimized => local_tools::BENCH_PROFILE,
        }
    }

    /// The folder of the target directory its binaries go to.
    fn dir(self) -> &'static str {
        match self {
            Profile::Dev => "debug",
            // A custom profile's binaries go to a folder of its name.
            Profile::BenchOptimized => local_tools::BENCH_PROFILE,
        }
    }
}

/// `cargo run --profile <profile> -p <package> --bin <bin> -- [<subcommand>] <args>` from the
/// workspace root, in place of this process.
pub fn run(
    package: &str,
    bin: &str,
    profile: Profile,
    subcommand: &str,
    args: &[String],
) -> Result<()> {
    let root = workspace_root();
    if !built(bin, profile) {
        eprintln!(
            "==> first run of `{bin}`: cargo builds it (with the AWS SDK) before it starts; this \
             takes several minutes once, then seconds"
        );
    }
    // Without the xtask crate's variables (`local_tools::cargo`): inherited, the build below
    // would recompile dependencies a plain `cargo build` had just compiled.
    let mut command = local_tools::cargo();
    // Not `--quiet`: it would hide cargo's progress bar too, and the first build is long.
    command
        .current_dir(&root)
        .args(["run", "--profile", profile.name()])
        .args(["--package", package, "--bin", bin, "--"]);
    if !subcommand.is_empty() {
        command.arg(subcommand);
    }
    command.args(args);
    exec(command)
}

/// Whether a build of `bin` is already there (only to say why the start may be slow).
fn built(bin: &str, profile: Profile) -> bool {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target
        .join(profile.dir())
        .join(format!("{bin}{}", std::env::consts::EXE_SUFFIX))
        .exists()
}

/// Replaces this process with `command`, so the terminal's Ctrl-C reaches the command alone
/// (`devstack dev` then stops what it started) and its exit status is the shell's. `cargo run`
/// does the same with the binary, so no process is left in between.
#[cfg(unix)]
fn exec(mut command: Command) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let error = command.exec();
    Err(error).context("could not start cargo; is it on PATH?")
}

/// Without exec: waits for the command and exits with its status.
#[cfg(not(unix))]
fn exec(mut command: Command) -> Result<()> {
    let status = command
        .status()
        .context("could not start cargo; is it on PATH?")?;
    std::process::exit(status.code().unwrap_or(1));
}
