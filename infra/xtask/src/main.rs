//! `cargo xtask <command>`: the project's own commands (see README).

mod admin;
mod bench;
mod dev;
mod setup;
mod test;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "cellbridge project commands", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install the pinned local tools (moto, cargo-lambda, cfn-lint) into ./.venv.
    Setup,
    /// Run the whole platform locally, show a bulk change going through, keep serving.
    Dev(dev::DevArgs),
    /// Set up what the tests need, then run lint checks and the whole test suite.
    Test(test::TestArgs),
    /// Tenants and users of a stack's accounts table.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Benchmarks; numbers go to docs/benchmarks.md.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Setup => setup::run().map(|_| ()),
        Command::Dev(args) => dev::run(args).await,
        Command::Test(args) => test::run(args),
        Command::Admin(command) => admin::run(command).await,
        Command::Bench(command) => bench::run(command).await,
    }
}
