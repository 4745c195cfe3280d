//! `devstack`: the commands that need the local stack or the AWS SDK, kept out of the xtask so
//! that the xtask builds in seconds. `cargo xtask dev` and `cargo xtask admin` run this binary.

mod admin;
mod dev;
mod live;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "devstack",
    about = "cellbridge's local stack and account administration",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole platform locally, show a bulk change going through, keep serving.
    Dev(dev::DevArgs),
    /// Tenants and users of a stack's accounts table.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Dev(args) => dev::run(args).await,
        Command::Admin(command) => admin::run(command).await,
    }
}
