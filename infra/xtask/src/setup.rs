//! `cargo xtask setup`: the pinned Python tools in ./.venv.

use anyhow::Result;

pub fn run() -> Result<()> {
    local_tools::ensure_installed(&local_tools::workspace_root()).map(|_| ())
}
