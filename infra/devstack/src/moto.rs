//! A moto server on a free loopback port, owned by this process and stopped when dropped.
//!
//! The port is bound here and the listening socket handed to moto, so nothing else can take the
//! port between its choice and moto's start (and a readiness check cannot reach another server).

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

/// A port that was free a moment ago: another process may take it before the caller binds it,
/// so the caller must cope with finding it in use.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The descriptor moto finds its listening socket on.
#[cfg(unix)]
const LISTEN_FD: std::os::fd::RawFd = 3;

/// Has the child inherit `listener` as [`LISTEN_FD`] and tells moto_server.py so.
#[cfg(unix)]
fn hand_over(command: &mut Command, listener: &TcpListener) {
    use std::os::fd::AsRawFd;
    let fd = listener.as_raw_fd();
    // SAFETY: dup2 and fcntl are async-signal-safe and touch no memory of the parent.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(move || {
            // dup2 leaves the copy open across exec; a socket already there needs its
            // close-on-exec flag cleared instead.
            let done = if fd == LISTEN_FD {
                libc::fcntl(fd, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, LISTEN_FD)
            };
            if done == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.env("CELLBRIDGE_MOTO_LISTEN_FD", LISTEN_FD.to_string());
}

impl MotoServer {
    /// Starts moto on `port` (0 picks a free one) and waits until it answers.
    pub async fn start(tools: &Tools, port: u16) -> Result<Self> {
        tools.require()?;
        let listener = TcpListener::bind(("127.0.0.1", port)).with_context(|| {
            format!("moto cannot listen on 127.0.0.1:{port}; is it in use? (0 = any free port)")
        })?;
        let port = listener.local_addr()?.port();
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
        #[cfg(unix)]
        hand_over(&mut command, &listener);
        // Elsewhere moto binds the port itself, so it must be free.
        #[cfg(not(unix))]
        drop(listener);
        let child = command
            .spawn()
            .with_context(|| format!("could not start {}", tools.moto_server().display()))?;
        // moto has its own copy; ours would keep a dead moto's port open and a check waiting.
        #[cfg(unix)]
        drop(listener);
        let mut server = Self { child, port };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        // Connections wait in the socket's backlog until moto serves them: bound each try.
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let url = format!("{}/moto-api/", self.endpoint());
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait()? {
                bail!("moto_server exited during start-up ({status})");
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
