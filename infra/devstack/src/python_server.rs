//! An emulator written in Python (moto, MiniStack), run from the project's virtualenv on a
//! loopback port, owned by this process and stopped when dropped.
//!
//! The port is bound here and the listening socket handed to the server, so nothing else can take
//! the port between its choice and the server's start (and a readiness check cannot reach another
//! server).

use crate::tools::Tools;
use anyhow::{bail, Context, Result};
use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// A port that was free a moment ago: another process may take it before the caller binds it,
/// so the caller must cope with finding it in use.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// How to run one emulator.
pub(crate) struct Launcher<'a> {
    /// What the user knows it as, in messages.
    pub name: &'static str,
    /// File name of the launcher script, written into the virtualenv.
    pub script_name: &'static str,
    /// The launcher script itself: it serves on the socket named by [`LISTEN_FD_ENV`].
    pub script: &'static str,
    /// Environment of the server process.
    pub env: Vec<(&'static str, String)>,
    /// A path that answers once the server is ready.
    pub ready_path: &'a str,
}

/// The variable telling a launcher script the descriptor of its listening socket.
pub(crate) const LISTEN_FD_ENV: &str = "CELLBRIDGE_LISTEN_FD";

/// The descriptor the server finds its listening socket on.
#[cfg(unix)]
const LISTEN_FD: std::os::fd::RawFd = 3;

pub struct PythonServer {
    name: &'static str,
    child: Child,
    port: u16,
}

/// Has the child inherit `listener` as [`LISTEN_FD`] and tells the launcher so.
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
    command.env(LISTEN_FD_ENV, LISTEN_FD.to_string());
}

impl PythonServer {
    /// Starts the server on `port` (0 picks a free one) and waits until it answers.
    pub(crate) async fn start(tools: &Tools, launcher: Launcher<'_>, port: u16) -> Result<Self> {
        let name = launcher.name;
        tools.require()?;
        let listener = TcpListener::bind(("127.0.0.1", port)).with_context(|| {
            format!("{name} cannot listen on 127.0.0.1:{port}; is it in use? (0 = any free port)")
        })?;
        let port = listener.local_addr()?.port();
        // Written aside and renamed: servers starting side by side never read a partial file.
        let script = tools.venv().join(launcher.script_name);
        let partial = tools.venv().join(format!(
            "{}.{}.tmp",
            launcher.script_name,
            uuid::Uuid::new_v4()
        ));
        std::fs::write(&partial, launcher.script)
            .and_then(|()| std::fs::rename(&partial, &script))
            .with_context(|| format!("writing {}", script.display()))?;
        let mut command = Command::new(tools.python());
        command
            .arg(&script)
            .envs(launcher.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        crate::children::die_with_parent(&mut command);
        #[cfg(unix)]
        hand_over(&mut command, &listener);
        #[cfg(not(unix))]
        compile_error!(
            "the local stack hands listening sockets to its emulators, which needs Unix"
        );
        let child = command
            .spawn()
            .with_context(|| format!("could not start {name} ({})", script.display()))?;
        // The server has its own copy; ours would keep a dead server's port open and a check
        // waiting.
        drop(listener);
        let mut server = Self { name, child, port };
        server.wait_ready(launcher.ready_path).await?;
        Ok(server)
    }

    async fn wait_ready(&mut self, path: &str) -> Result<()> {
        // Connections wait in the socket's backlog until the server serves them: bound each try.
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let url = format!("{}{path}", self.endpoint());
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited during start-up ({status}); run `cargo xtask setup` to reinstall the local tools",
                    self.name
                );
            }
            if client.get(&url).send().await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "{} did not answer on port {} within 30 s",
            self.name,
            self.port
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn endpoint(&self) -> String {
        format!("http://localhost:{}", self.port)
    }

    /// The server's process id, for measuring what it costs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
