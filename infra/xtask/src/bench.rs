//! `cargo xtask bench ...` (being written).

use anyhow::Result;
use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Init time, resident memory and size of every function's release binary vs a hello-world.
    ColdStart(ColdStartArgs),
}

#[derive(Args)]
pub struct ColdStartArgs {
    /// Cold starts measured per binary.
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
}

pub async fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::ColdStart(_) => anyhow::bail!("not written yet"),
    }
}
