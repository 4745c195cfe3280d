//! MiniStack: the local DynamoDB (with its streams) and SQS, in two processes. Each handles its
//! requests one at a time on one Python event loop, so each operation is atomic, as on AWS (two
//! conditional writes to one item can never both pass), and one process can use one core at
//! most: DynamoDB and SQS in processes of their own use two.

use crate::local_aws::{ACCOUNT_ID, REGION};
use crate::python_server::{Launcher, PythonServer};
use crate::tools::Tools;
use anyhow::Result;

const LAUNCHER: &str = include_str!("ministack_server.py");

/// What one MiniStack process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MiniStackServices {
    /// DynamoDB and DynamoDB Streams (the streams read the tables, so they share a process).
    DynamoDb,
    Sqs,
}

impl MiniStackServices {
    /// For messages and the stack's summary.
    pub fn name(self) -> &'static str {
        match self {
            MiniStackServices::DynamoDb => "MiniStack (DynamoDB)",
            MiniStackServices::Sqs => "MiniStack (SQS)",
        }
    }

    /// MiniStack's names for them: nothing else starts.
    fn services(self) -> &'static str {
        match self {
            MiniStackServices::DynamoDb => "dynamodb,dynamodbstreams",
            MiniStackServices::Sqs => "sqs",
        }
    }

    /// One launcher, saved under a name per process, so `ps` and the benchmarks' CPU profile
    /// tell the two apart.
    pub fn script_name(self) -> &'static str {
        match self {
            MiniStackServices::DynamoDb => "cellbridge_ministack_dynamodb.py",
            MiniStackServices::Sqs => "cellbridge_ministack_sqs.py",
        }
    }
}

/// Starts a MiniStack for `services` on `port` (0 picks a free one) and waits until it answers.
pub async fn start(tools: &Tools, services: MiniStackServices, port: u16) -> Result<PythonServer> {
    let launcher = Launcher {
        name: services.name(),
        script_name: services.script_name(),
        script: LAUNCHER,
        env: vec![
            ("SERVICES", services.services().to_owned()),
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
