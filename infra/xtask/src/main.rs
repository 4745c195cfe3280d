//! `cargo xtask <command>`: the project's own commands (see README).
//!
//! Small on purpose: `setup` and `test` run here, while the commands that need the AWS SDK, the
//! devstack or the functions are binaries of their own (`devstack` in infra/devstack-cli, `bench`
//! in infra/bench) that this starts with `cargo run`. So `cargo xtask setup` or a lint run does
//! not first wait for the whole SDK graph to compile.

mod cargo_tools;
mod forward;
mod setup;
mod test;
mod web;

use anyhow::Result;
use clap::{Parser, Subcommand};
use forward::Profile;

#[derive(Parser)]
#[command(bin_name = "cargo xtask", about = "cellbridge project commands", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install the pinned tools: moto, MiniStack, cargo-lambda and cfn-lint into ./.venv,
    /// cargo-deny and cargo-machete into the shared tool cache.
    Setup,
    /// Run the whole platform locally, show a bulk change going through, keep serving
    /// (`cargo xtask dev --help` for the options).
    #[command(disable_help_flag = true)]
    Dev(Forwarded),
    /// Set up what the tests need, then run the checks and the whole test suite.
    Test(test::TestArgs),
    /// Tenants and users of a stack's accounts table (`cargo xtask admin --help`).
    #[command(disable_help_flag = true)]
    Admin(Forwarded),
    /// Bundle the console's script and styles (npm packages pinned by the lockfile, esbuild).
    Web,
    /// Benchmarks; numbers go to docs/benchmarks.md (`cargo xtask bench --help`).
    #[command(disable_help_flag = true)]
    Bench(Forwarded),
}

/// Everything after the command, passed on untouched: the binary that runs it owns its options
/// and its `--help`, so they are defined once.
#[derive(clap::Args)]
struct Forwarded {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Setup => setup::run(),
        Command::Test(args) => test::run(args),
        Command::Web => web::build(&local_tools::workspace_root()),
        Command::Dev(Forwarded { args }) => {
            web::build(&local_tools::workspace_root())?;
            forward::run("devstack-cli", "devstack", Profile::Dev, "dev", &args)
        }
        Command::Admin(Forwarded { args }) => {
            forward::run("devstack-cli", "devstack", Profile::Dev, "admin", &args)
        }
        Command::Bench(Forwarded { args }) => {
            web::build(&local_tools::workspace_root())?;
            forward::run("bench", "bench", Profile::BenchOptimized, "", &args)
        }
    }
}
