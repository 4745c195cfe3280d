//! Cargo subcommands the checks need (cargo-deny, cargo-machete), at pinned versions.
//!
//! They are installed with `cargo install --locked` into a cache outside the clone, one directory
//! per tool and version: every clone and worktree of the machine shares one install, a second run
//! finds it and starts nothing, and changing a version below installs the new one beside the old.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

pub struct CargoTool {
    /// The crate, which is also the name of its binary.
    pub name: &'static str,
    pub version: &'static str,
}

pub const CARGO_DENY: CargoTool = CargoTool {
    name: "cargo-deny",
    version: "0.20.2",
};

pub const CARGO_MACHETE: CargoTool = CargoTool {
    name: "cargo-machete",
    version: "0.9.2",
};

/// Where the tools go: `CELLBRIDGE_TOOLS_DIR`, else the user's cache directory.
pub fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CELLBRIDGE_TOOLS_DIR") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")));
    match cache {
        Some(cache) => cache.join("cellbridge/tools"),
        // No home to cache in: the clone's own target directory still spares reinstalls.
        None => local_tools::workspace_root().join("target/tools"),
    }
}

impl CargoTool {
    fn root(&self) -> PathBuf {
        tools_dir().join(format!("{}-{}", self.name, self.version))
    }

    pub fn bin_dir(&self) -> PathBuf {
        self.root().join("bin")
    }

    fn exe(&self) -> PathBuf {
        self.bin_dir()
            .join(format!("{}{}", self.name, std::env::consts::EXE_SUFFIX))
    }

    /// Installs the tool unless this version is already there.
    pub fn ensure(&self) -> Result<()> {
        if self.exe().is_file() {
            return Ok(());
        }
        let root = self.root();
        // A line of its own as well as the spinner: without a terminal (CI) the spinner is hidden.
        eprintln!(
            "==> installing {} {} (pinned) into {}: compiled from crates.io once per machine, a few minutes",
            self.name,
            self.version,
            root.display()
        );
        let spinner = ProgressBar::new_spinner().with_style(ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {prefix}: {wide_msg}",
        )?);
        spinner.set_prefix(format!("cargo install {}", self.name));
        spinner.enable_steady_tick(Duration::from_millis(120));
        let mut child = local_tools::cargo()
            .args(["install", "--locked", "--version", self.version, "--root"])
            .arg(&root)
            .arg(self.name)
            // The workspace's target directory is for the workspace: without one, cargo builds in
            // a temporary directory and removes it afterwards.
            .env_remove("CARGO_TARGET_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("could not start `cargo install`; is cargo on PATH?")?;
        // cargo's status lines ("Compiling x") as the spinner's message; the tail in case it fails.
        let mut tail = VecDeque::new();
        if let Some(stderr) = child.stderr.take() {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                spinner.set_message(line.trim().to_owned());
                if tail.len() == 30 {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        }
        let status = child.wait().context("waiting for `cargo install`")?;
        spinner.finish_and_clear();
        if !status.success() || !self.exe().is_file() {
            for line in &tail {
                eprintln!("{line}");
            }
            bail!(
                "installing {} {} into {} failed ({status}); the lines above say why (crates.io \
                 must be reachable). Run `cargo xtask setup` to try again.",
                self.name,
                self.version,
                root.display()
            );
        }
        eprintln!(
            "installed {} {} in {}",
            self.name,
            self.version,
            root.display()
        );
        Ok(())
    }
}

/// Installs both tools; returns the directory they are in.
pub fn install_all() -> Result<PathBuf> {
    CARGO_DENY.ensure()?;
    CARGO_MACHETE.ensure()?;
    Ok(tools_dir())
}

/// `PATH` with both tools' directories first, so `cargo deny` and `cargo machete` find them.
pub fn path_with_tools() -> Result<OsString> {
    let mut dirs = vec![CARGO_DENY.bin_dir(), CARGO_MACHETE.bin_dir()];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(dirs).context("a tool directory holds a character PATH cannot")
}
