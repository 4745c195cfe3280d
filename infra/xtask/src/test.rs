use anyhow::Result;

#[derive(clap::Args)]
pub struct TestArgs {}

pub fn run(_: TestArgs) -> Result<()> {
    anyhow::bail!("not written yet")
}
