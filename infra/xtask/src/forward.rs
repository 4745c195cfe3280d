//! Commands that run in a binary of another crate, started with `cargo run`.

use anyhow::{Context, Result};
use local_tools::workspace_root;
use std::path::PathBuf;
use std::process::Command;

/// `cargo run -p <package> --bin <bin> -- [<subcommand>] <args>` from the workspace root, in
/// place of this process.
pub fn run(package: &str, bin: &str, subcommand: &str, args: &[String]) -> Result<()> {
    let root = workspace_root();
    if !built(bin) {
        eprintln!(
            "==> first run of `{bin}`: cargo builds it (with the AWS SDK) before it starts; this \
             takes several minutes once, then seconds"
        );
    }
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    // Not `--quiet`: it would hide cargo's progress bar too, and the first build is long.
    command
        .current_dir(&root)
        .args(["run", "--package", package, "--bin", bin, "--"]);
    if !subcommand.is_empty() {
        command.arg(subcommand);
    }
    command.args(args);
    exec(command)
}

/// Whether a debug build of `bin` is already there (only to say why the start may be slow).
fn built(bin: &str) -> bool {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target
        .join("debug")
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
