//! The project-local virtualenv holding the AWS emulators (moto, MiniStack), cargo-lambda and
//! cfn-lint, pinned in `infra/requirements.txt`. A crate of its own, with no heavy dependency, so
//! the xtask can install the tools without compiling the devstack, and the devstack finds them at
//! the same paths.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Tools {
    pub venv: PathBuf,
}

/// The checkout being built, run or tested. Found at run time first, from the package cargo
/// runs (`CARGO_MANIFEST_DIR` is set by `cargo run` and `cargo test`) or the current directory:
/// checkouts that share one target directory can reuse this crate's build, and with it another
/// checkout's compile-time path, which is only the last resort.
pub fn workspace_root() -> PathBuf {
    let starts = [
        std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from),
        std::env::current_dir().ok(),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
    ];
    starts
        .into_iter()
        .flatten()
        .find_map(|start| {
            start
                .ancestors()
                .find(|dir| is_workspace_root(dir))
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(|| PathBuf::from("."))
}

fn is_workspace_root(dir: &Path) -> bool {
    dir.join("template.yaml").is_file()
        && std::fs::read_to_string(dir.join("Cargo.toml"))
            .is_ok_and(|manifest| manifest.contains("[workspace]"))
}

impl Tools {
    pub fn at(root: &Path) -> Self {
        Self {
            venv: root.join(".venv"),
        }
    }

    pub fn bin(&self, name: &str) -> PathBuf {
        self.venv.join("bin").join(name)
    }

    pub fn python(&self) -> PathBuf {
        self.bin("python")
    }

    pub fn venv(&self) -> &Path {
        &self.venv
    }

    pub fn moto_server(&self) -> PathBuf {
        self.bin("moto_server")
    }

    pub fn ministack(&self) -> PathBuf {
        self.bin("ministack")
    }

    pub fn cargo_lambda(&self) -> PathBuf {
        self.bin("cargo-lambda")
    }

    pub fn cfn_lint(&self) -> PathBuf {
        self.bin("cfn-lint")
    }

    fn stamp(&self) -> PathBuf {
        self.venv.join("requirements.installed")
    }

    /// True when the venv holds exactly what `requirements` pins.
    pub fn is_current(&self, requirements: &Path) -> bool {
        let wanted = std::fs::read_to_string(requirements).ok();
        let installed = std::fs::read_to_string(self.stamp()).ok();
        wanted.is_some() && wanted == installed && self.is_complete()
    }

    fn is_complete(&self) -> bool {
        self.moto_server().exists() && self.ministack().exists() && self.cargo_lambda().exists()
    }

    /// Fails with the command to run when the tools are missing.
    pub fn require(&self) -> Result<()> {
        if !self.is_complete() {
            bail!(
                "the local tools are not installed in {}: run `cargo xtask setup` (or `cargo xtask test`, which runs it)",
                self.venv.display()
            );
        }
        Ok(())
    }

    /// Creates or refreshes the venv from `requirements`; a no-op when it is current.
    pub fn install(&self, requirements: &Path) -> Result<bool> {
        if self.is_current(requirements) {
            return Ok(false);
        }
        if !self.bin("pip").exists() {
            let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
            run(Command::new(&python).args(["-m", "venv"]).arg(&self.venv)).with_context(|| {
                format!("creating a virtualenv needs Python 3 with venv (`{python} -m venv`)")
            })?;
        }
        run(Command::new(self.bin("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(requirements))
        .context("installing the pinned Python tools failed; check the network access to PyPI")?;
        std::fs::copy(requirements, self.stamp())?;
        Ok(true)
    }
}

/// The tools of the workspace at `root`, installed first (with a spinner) unless they are current.
pub fn ensure_installed(root: &Path) -> Result<Tools> {
    let tools = Tools::at(root);
    let requirements = root.join("infra/requirements.txt");
    if tools.is_current(&requirements) {
        return Ok(tools);
    }
    // A line of its own as well as the spinner: without a terminal (CI) the spinner is hidden.
    eprintln!(
        "==> installing moto, MiniStack, cargo-lambda and cfn-lint into {} (pinned in infra/requirements.txt)",
        tools.venv.display()
    );
    let spinner = ProgressBar::new_spinner()
        .with_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}")?);
    spinner.set_message("pip install -r infra/requirements.txt");
    spinner.enable_steady_tick(Duration::from_millis(120));
    let result = tools.install(&requirements);
    spinner.finish_and_clear();
    result?;
    eprintln!("local tools installed in {}", tools.venv.display());
    Ok(tools)
}

fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("could not start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

/// Cargo profile (Cargo.toml) of the benchmarks and of the functions they run: optimised, so
/// what they measure is the product rather than unoptimised code.
pub const BENCH_PROFILE: &str = "bench-optimized";

/// `cargo` (the one running this process when there is one) with the variables cargo set for
/// this crate removed (see [`crate_build_variables`]), so the builds it runs share what a
/// shell's builds compiled.
pub fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for key in crate_build_variables() {
        command.env_remove(key);
    }
    command
}

/// The variables of this process's environment that cargo set for the crate it builds or runs
/// (see [`is_crate_build_variable`]). A `cargo` started from a process that `cargo run` or
/// `cargo test` started removes them: build scripts (ring's, for one) rerun when they change,
/// so inherited they would make that build recompile what a shell build just compiled.
pub fn crate_build_variables() -> impl Iterator<Item = std::ffi::OsString> {
    std::env::vars_os()
        .map(|(key, _)| key)
        .filter(|key| key.to_str().is_some_and(is_crate_build_variable))
}

/// Variables cargo sets for the crate it builds or runs, as opposed to the user's own settings.
pub fn is_crate_build_variable(key: &str) -> bool {
    const PREFIXES: [&str; 5] = [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_CRATE_",
        "CARGO_BIN_",
        "CARGO_CFG_",
    ];
    PREFIXES.iter().any(|p| key.starts_with(p))
        || matches!(
            key,
            "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR" | "OUT_DIR" | "CARGO_RUSTC_CURRENT_DIR"
        )
}
