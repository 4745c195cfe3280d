//! moto: the local IoT registry, Secrets Manager and S3 (every service but the ones
//! [`crate::local_aws`] sends to MiniStack).

use crate::local_aws::ACCOUNT_ID;
use crate::python_server::{Launcher, PythonServer};
use crate::tools::Tools;
use anyhow::Result;

const LAUNCHER: &str = include_str!("moto_server.py");

/// Starts moto on `port` (0 picks a free one) and waits until it answers.
pub async fn start(tools: &Tools, port: u16) -> Result<PythonServer> {
    let launcher = Launcher {
        name: "moto",
        script_name: "cellbridge_moto_server.py",
        script: LAUNCHER,
        env: vec![("MOTO_ACCOUNT_ID", ACCOUNT_ID.to_owned())],
        ready_path: "/moto-api/",
    };
    PythonServer::start(tools, launcher, port).await
}
