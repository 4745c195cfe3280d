//! MiniStack: the local DynamoDB (with its streams) and SQS. Its requests are handled one at a
//! time on an event loop, so each operation is atomic, as on AWS: two conditional writes to one
//! item can never both pass.

use crate::local_aws::{ACCOUNT_ID, REGION};
use crate::python_server::{Launcher, PythonServer};
use crate::tools::Tools;
use anyhow::Result;

const LAUNCHER: &str = include_str!("ministack_server.py");

/// The services MiniStack serves here, by its names for them: nothing else starts.
const SERVICES: &str = "dynamodb,dynamodbstreams,sqs";

/// Starts MiniStack on `port` (0 picks a free one) and waits until it answers.
pub async fn start(tools: &Tools, port: u16) -> Result<PythonServer> {
    let launcher = Launcher {
        name: "MiniStack",
        script_name: "cellbridge_ministack_server.py",
        script: LAUNCHER,
        env: vec![
            ("SERVICES", SERVICES.to_owned()),
            ("MINISTACK_ACCOUNT_ID", ACCOUNT_ID.to_owned()),
            ("MINISTACK_REGION", REGION.to_owned()),
            ("LOG_LEVEL", "WARNING".to_owned()),
        ],
        // Queue URLs carry the host and port each request was sent to, so MiniStack need not
        // know its port.
        ready_path: "/_ministack/health",
    };
    PythonServer::start(tools, launcher, port).await
}
