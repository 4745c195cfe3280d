//! `cargo xtask web`: installs the console's npm packages (pinned by the committed lockfile) and
//! bundles its script and styles into content-hashed files under `functions/console/web/dist`,
//! whose names the console function embeds when it compiles. `dev`, `test` and `bench` run it
//! first, so the function always links a bundle that exists.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The console's front-end sources, relative to the workspace root.
pub const WEB_DIR: &str = "functions/console/web";

pub fn web_dir(root: &Path) -> PathBuf {
    root.join(WEB_DIR)
}

/// True when `node_modules` is missing or older than the lockfile.
fn needs_install(web: &Path) -> bool {
    let modified = |path: PathBuf| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    match (
        modified(web.join("package-lock.json")),
        modified(web.join("node_modules/.package-lock.json")),
    ) {
        (Some(lock), Some(installed)) => installed < lock,
        _ => true,
    }
}

fn run(command: &mut Command, what: &str) -> Result<()> {
    let status = command.status().with_context(|| {
        format!("could not start {what}; install Node.js 20 or newer (with npm) and try again")
    })?;
    if !status.success() {
        bail!("{what} failed ({status}); see its output above");
    }
    Ok(())
}

/// `npm ci` in `dir` (relative to the root) unless its packages are already installed.
fn install_packages(root: &Path, dir: &str, what: &str) -> Result<()> {
    let path = root.join(dir);
    if needs_install(&path) {
        eprintln!("==> installing {what} (npm ci in {dir}, pinned by its package-lock.json)");
        run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&path),
            &format!("npm ci in {dir}"),
        )?;
    }
    Ok(())
}

/// Installs the packages when needed and builds the bundle.
pub fn build(root: &Path) -> Result<()> {
    let web = web_dir(root);
    install_packages(root, WEB_DIR, "the console's npm packages")?;
    eprintln!("==> bundling the console's script and styles (esbuild)");
    run(
        Command::new("node").arg("build.mjs").current_dir(&web),
        "node build.mjs in functions/console/web",
    )
}

/// Type-checks the console's TypeScript (`tsc --noEmit`), a step of `cargo xtask test`.
pub fn type_check_command(root: &Path) -> Command {
    let web = web_dir(root);
    let mut command = Command::new("node");
    command
        .arg(web.join("node_modules/typescript/bin/tsc"))
        .arg("--project")
        .arg(web.join("tsconfig.json"))
        .args(["--noEmit", "--pretty", "false"]);
    command
}

/// The browser tests (`tests/browser`): Playwright and axe-core from npm, and the browser
/// itself.
pub const BROWSER_TESTS_DIR: &str = "tests/browser";
/// Debian's `chromium` package puts the browser here; the browser tests use it.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Installs what the browser tests need: their npm packages, and Debian's Chromium when this
/// runs as root. Without root and without Chromium it says what to install; the browser tests
/// then report themselves skipped.
pub fn prepare_browser_tests(root: &Path) -> Result<()> {
    install_packages(root, BROWSER_TESTS_DIR, "the browser tests' npm packages")?;
    if std::env::var_os("CHROMIUM").is_some() || Path::new(CHROMIUM).exists() {
        return Ok(());
    }
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
    if !is_root {
        eprintln!(
            "!! the console's browser tests need Chromium: run `sudo apt-get install chromium` \
             (Debian/Ubuntu) or set CHROMIUM to a Chromium binary; they are skipped until then"
        );
        return Ok(());
    }
    eprintln!("==> installing Debian's chromium for the browser tests (apt-get)");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "-q", "chromium"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
    };
    if install().is_ok_and(|s| s.success()) {
        return Ok(());
    }
    // A fresh machine's package lists may be empty or stale.
    run(
        Command::new("apt-get").args(["update", "-q"]),
        "apt-get update",
    )?;
    run(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "-q", "chromium"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get install chromium",
    )
}
