//! A moto server on a free loopback port, owned by this process and stopped when dropped.

use crate::tools::Tools;
use anyhow::{bail, Context, Result};
use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// Fake credentials and region: moto accepts any, the SDK insists on some.
pub const REGION: &str = "us-east-1";
pub const ACCOUNT_ID: &str = "123456789012";

const SERIALIZED_MOTO: &str = include_str!("moto_server.py");

pub struct MotoServer {
    child: Child,
    port: u16,
}

pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl MotoServer {
    /// Starts moto on `port` (0 picks a free one) and waits until it answers.
    pub async fn start(tools: &Tools, port: u16) -> Result<Self> {
        tools.require()?;
        let port = if port == 0 { free_port()? } else { port };
        // moto_server with DynamoDB made atomic per operation (see the script).
        // Written aside and renamed: servers starting side by side never read a partial file.
        let script = tools.venv().join("cellbridge_moto_server.py");
        let partial = tools.venv().join(format!(
            "cellbridge_moto_server.{}.tmp",
            uuid::Uuid::new_v4()
        ));
        std::fs::write(&partial, SERIALIZED_MOTO)
            .and_then(|()| std::fs::rename(&partial, &script))
            .with_context(|| format!("writing {}", script.display()))?;
        let mut command = Command::new(tools.python());
        command
            .arg(&script)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        crate::children::die_with_parent(&mut command);
        let child = command
            .spawn()
            .with_context(|| format!("could not start {}", tools.moto_server().display()))?;
        let mut server = Self { child, port };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let client = reqwest::Client::new();
        let url = format!("{}/moto-api/", self.endpoint());
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "moto_server exited during start-up ({status}); is port {} free?",
                    self.port
                );
            }
            if client.get(&url).send().await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "moto_server did not answer on port {} within 30 s",
            self.port
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn endpoint(&self) -> String {
        format!("http://localhost:{}", self.port)
    }

    /// What a process needs in its environment to talk to this server through the AWS SDK.
    pub fn client_env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_DEFAULT_REGION", REGION.to_owned()),
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// An SDK configuration for this server, without touching the process environment.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        use aws_config::{BehaviorVersion, Region};
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(self.endpoint())
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "testing", "testing", None, None, "moto",
            ))
            .load()
            .await
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
