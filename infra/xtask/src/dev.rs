use anyhow::Result;

#[derive(clap::Args)]
pub struct DevArgs {}

pub async fn run(_: DevArgs) -> Result<()> {
    anyhow::bail!("not written yet")
}
