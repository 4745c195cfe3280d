//! `cargo xtask setup`: every pinned tool, so later commands start without installing.

use crate::cargo_tools;
use anyhow::Result;

pub fn run() -> Result<()> {
    local_tools::ensure_installed(&local_tools::workspace_root())?;
    let dir = cargo_tools::install_all()?;
    eprintln!(
        "cargo-deny and cargo-machete installed in {}",
        dir.display()
    );
    Ok(())
}
