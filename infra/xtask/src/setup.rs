//! `cargo xtask setup`: the pinned Python tools in ./.venv.

use anyhow::Result;
use devstack::tools::{workspace_root, Tools};
use indicatif::{ProgressBar, ProgressStyle};
use std::time::Duration;

pub fn run() -> Result<Tools> {
    let root = workspace_root();
    let tools = Tools::at(&root);
    let requirements = root.join("infra/requirements.txt");
    if tools.is_current(&requirements) {
        return Ok(tools);
    }
    let spinner = ProgressBar::new_spinner()
        .with_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}")?);
    spinner.set_message(
        "installing moto, cargo-lambda and cfn-lint into .venv (pinned in infra/requirements.txt)",
    );
    spinner.enable_steady_tick(Duration::from_millis(120));
    let result = tools.install(&requirements);
    spinner.finish_and_clear();
    result?;
    eprintln!("local tools installed in {}", tools.venv.display());
    Ok(tools)
}
