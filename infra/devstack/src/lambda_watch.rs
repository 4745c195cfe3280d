//! `cargo lambda watch`, supervised: it runs every function of the workspace through the Lambda
//! Runtime API and takes invocations on `/2015-03-31/functions/<binary>/invocations`.
//!
//! Behaviours of cargo-lambda 1.9 this module works around:
//! - a handler `Err` and a panic both come back as HTTP 500 with `{"errorType","errorMessage"}`;
//! - a function process that exits (init error, abort, compile error) is never restarted and
//!   later invocations of it hang; the supervisor sees the "command exited" line, fails the
//!   invocations in flight and restarts cargo-lambda on the same port;
//! - it takes a port number, not a socket, and quits quietly (status 0) when the port is taken;
//!   so that a port picked free but taken before cargo-lambda binds it is no failure, the
//!   supervisor checks that the socket listening there is cargo-lambda's and, on a port it
//!   picked, moves to another;
//! - the first invocation of a binary runs `cargo run`, compiling it: cold invocations get a
//!   compile allowance on top of the function timeout ([`prebuild`] makes them fast);
//! - `--env-file` is a dotenv parser where only single quotes are literal;
//! - `Lambda-Runtime-Deadline-Ms` is always 600000 (1970), so `Context::deadline` is in the past.

use crate::billing::{LambdaMeter, LambdaSnapshot};
use crate::children;
use crate::python_server::free_port;
use anyhow::{bail, Context, Result};
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicI32, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// Lines of child output kept to explain a failure.
const TAIL_LINES: usize = 40;
/// Ports tried, each found free a moment before, before giving up on starting.
const PORT_ATTEMPTS: usize = 5;
/// What cargo-lambda logs when a function process ends.
const EXIT_MARKERS: [&str; 4] = [
    "command exited",
    "command killed",
    "command stopped",
    "command ended by exception",
];

/// Where the output of child processes (cargo-lambda, cargo, the functions) goes.
#[derive(Debug, Clone)]
pub enum ChildOutput {
    /// Appended to this file.
    LogFile(PathBuf),
    /// Forwarded to our stderr, each line prefixed with `[<prefix>] `.
    Prefixed(String),
    Discard,
}

#[derive(Debug, Clone)]
pub struct LambdaWatchOptions {
    /// Workspace root: where `cargo lambda watch` runs and finds the function binaries.
    pub root: PathBuf,
    /// Invoke port; 0 picks a free one.
    pub port: u16,
    /// Environment of every function (written to the `--env-file`).
    pub env: BTreeMap<String, String>,
    pub env_file: PathBuf,
    pub output: ChildOutput,
    /// Rebuild and restart functions when sources change (off: `--ignore-changes`).
    pub reload: bool,
    /// Instances per function (`--concurrency`).
    pub concurrency: usize,
    /// Extra time a binary's first invocation may take, for `cargo run` to compile it.
    pub compile_allowance: Duration,
    /// `CARGO_TARGET_DIR` for the builds; `None` keeps ours.
    pub target_dir: Option<PathBuf>,
    /// Cargo profile of the builds; `None` is cargo-lambda's default (dev).
    pub profile: Option<String>,
}

/// Where and how the function binaries are built.
#[derive(Debug, Clone, Copy, Default)]
pub struct Build<'a> {
    /// `CARGO_TARGET_DIR`; `None` keeps ours.
    pub target_dir: Option<&'a Path>,
    /// Cargo profile; `None` is dev.
    pub profile: Option<&'a str>,
}

impl LambdaWatchOptions {
    pub fn new(root: &Path, env_file: PathBuf) -> Self {
        Self {
            root: root.to_path_buf(),
            port: 0,
            env: BTreeMap::new(),
            env_file,
            output: ChildOutput::Discard,
            reload: false,
            concurrency: 1,
            compile_allowance: Duration::from_secs(20 * 60),
            target_dir: None,
            profile: None,
        }
    }
}

/// Why an invocation did not give a result.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The handler returned `Err` or panicked.
    #[error("function {function} failed: {error_type}: {message}")]
    Function {
        function: String,
        error_type: String,
        message: String,
    },
    #[error("function {function} did not answer within {timeout:?}; see the function log")]
    Timeout { function: String, timeout: Duration },
    #[error("cargo lambda watch knows no function {function}: {detail}")]
    Missing { function: String, detail: String },
    #[error(
        "a function process exited while {function} was invoked (init error, crash or compile error); \
         cargo lambda watch was restarted, the next invocation starts afresh. Last output:\n{tail}"
    )]
    Exited { function: String, tail: String },
    #[error("could not reach cargo lambda watch to invoke {function}: {source}")]
    Transport {
        function: String,
        source: reqwest::Error,
    },
    #[error("invoking {function}: cargo lambda watch answered {status}: {body}")]
    Unexpected {
        function: String,
        status: u16,
        body: String,
    },
}

#[derive(Debug, Clone, Copy)]
struct WatchState {
    generation: u64,
    ready: bool,
}

/// cargo-lambda 1.9.2 queues up to 100 invocations per function, and with 100 queued it stops
/// altogether (it waits for room in the full queue while holding the lock that taking from the
/// queue needs): more wait here instead.
const QUEUED_PER_FUNCTION: usize = 64;

struct Shared {
    /// Changes only when the port picked was taken before cargo-lambda could listen on it.
    port: AtomicU16,
    client: reqwest::Client,
    compile_allowance: Duration,
    /// Which cargo-lambda process is current and whether it takes invocations; invocations in
    /// flight watch it to fail as soon as their process is gone.
    state: watch::Sender<WatchState>,
    /// Binaries that answered since the last restart, so are compiled and running.
    warm: Mutex<HashSet<String>>,
    tail: Mutex<VecDeque<String>>,
    /// The current cargo-lambda pid, for synchronous cleanup on drop.
    pid: AtomicI32,
    /// Invocations and their durations, for the cost benchmark.
    meter: LambdaMeter,
    /// Invocations of each binary handed to cargo-lambda at once (see [`QUEUED_PER_FUNCTION`]).
    queued: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
}

impl Shared {
    fn tail(&self) -> String {
        self.tail
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }
}

/// A cheap handle to invoke functions, for the API and the SQS pollers.
#[derive(Clone)]
pub struct Invoker {
    shared: Arc<Shared>,
}

impl Invoker {
    pub fn invoke_url(&self, binary: &str) -> String {
        format!(
            "http://127.0.0.1:{}/2015-03-31/functions/{binary}/invocations",
            self.shared.port.load(Ordering::SeqCst)
        )
    }

    /// Invokes `binary` with `event`. `timeout` is the function's own; a binary not yet run since
    /// cargo-lambda started gets the compile allowance on top.
    pub async fn invoke(
        &self,
        binary: &str,
        event: &Json,
        timeout: Duration,
    ) -> Result<Json, InvokeError> {
        let function = binary.to_owned();
        let cold = !self
            .shared
            .warm
            .lock()
            .map(|w| w.contains(binary))
            .unwrap_or(false);
        // A little slack for the round trip through cargo-lambda.
        let limit = timeout
            + Duration::from_secs(5)
            + if cold {
                self.shared.compile_allowance
            } else {
                Duration::ZERO
            };
        let started = Instant::now();
        let mut state = self.shared.state.subscribe();
        // While cargo-lambda restarts, wait for it rather than fail on a refused connection.
        let ready = tokio::time::timeout(limit, state.wait_for(|s| s.ready)).await;
        let generation = match ready.map(|r| r.map(|s| s.generation)) {
            Ok(Ok(generation)) => generation,
            Ok(Err(_)) => {
                return Err(InvokeError::Exited {
                    function,
                    tail: self.shared.tail(),
                })
            }
            Err(_) => {
                return Err(InvokeError::Timeout {
                    function,
                    timeout: limit,
                })
            }
        };
        let queue = {
            let mut queued = self
                .shared
                .queued
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            queued
                .entry(function.clone())
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(QUEUED_PER_FUNCTION)))
                .clone()
        };
        // Held until the answer is read; never closed, so acquiring only waits.
        let _slot = queue.acquire_owned().await;
        let request = self
            .shared
            .client
            .post(self.invoke_url(binary))
            .json(event)
            .send();
        // From here on is what Lambda would bill: not the wait for cargo-lambda to be ready.
        let sent = Instant::now();
        let remaining = limit.saturating_sub(started.elapsed());
        let response = tokio::select! {
            r = tokio::time::timeout(remaining, request) => match r {
                Err(_) => return Err(InvokeError::Timeout { function, timeout: limit }),
                Ok(Err(source)) => return Err(InvokeError::Transport { function, source }),
                Ok(Ok(response)) => response,
            },
            _ = state.wait_for(|s| s.generation != generation) => {
                return Err(InvokeError::Exited { function, tail: self.shared.tail() });
            }
        };
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|source| InvokeError::Transport {
                function: function.clone(),
                source,
            })?;
        match status {
            200 | 500 => {
                if let Ok(mut warm) = self.shared.warm.lock() {
                    warm.insert(function.clone());
                }
            }
            _ => {}
        }
        let result = match status {
            200 if body.is_empty() => Ok(Json::Null),
            200 => serde_json::from_slice(&body).map_err(|e| InvokeError::Unexpected {
                function,
                status,
                body: format!("not JSON ({e}): {}", String::from_utf8_lossy(&body)),
            }),
            500 => {
                let error: Json = serde_json::from_slice(&body).unwrap_or(Json::Null);
                let text = |k: &str| error.get(k).and_then(Json::as_str).map(str::to_owned);
                Err(InvokeError::Function {
                    error_type: text("errorType").unwrap_or_else(|| "Unknown".into()),
                    message: text("errorMessage")
                        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned()),
                    function,
                })
            }
            404 => {
                let detail: Json = serde_json::from_slice(&body).unwrap_or(Json::Null);
                let detail = detail
                    .get("detail")
                    .and_then(Json::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
                Err(InvokeError::Missing { function, detail })
            }
            408 => Err(InvokeError::Timeout {
                function,
                timeout: limit,
            }),
            _ => Err(InvokeError::Unexpected {
                function,
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            }),
        };
        // A function that ran and failed is billed as one that succeeded.
        if matches!(result, Ok(_) | Err(InvokeError::Function { .. })) {
            self.shared
                .meter
                .count(binary, sent.elapsed(), result.is_err());
        }
        result
    }

    /// Invocations so far and what Lambda would bill for them; subtract an earlier snapshot
    /// with [`LambdaSnapshot::since`].
    pub fn usage(&self) -> LambdaSnapshot {
        self.shared.meter.snapshot()
    }
}

/// A running, supervised `cargo lambda watch`.
pub struct LambdaWatch {
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    supervisor: Option<JoinHandle<()>>,
}

impl LambdaWatch {
    /// Writes the env file, starts cargo-lambda and waits until it takes invocations.
    pub async fn start(tools: &crate::tools::Tools, opts: LambdaWatchOptions) -> Result<Self> {
        tools.require()?;
        write_env_file(&opts.env_file, &opts.env)?;
        let port = if opts.port == 0 {
            free_port()?
        } else {
            opts.port
        };
        let (state, _) = watch::channel(WatchState {
            generation: 0,
            ready: false,
        });
        let shared = Arc::new(Shared {
            port: AtomicU16::new(port),
            client: reqwest::Client::new(),
            compile_allowance: opts.compile_allowance,
            state,
            warm: Mutex::new(HashSet::new()),
            tail: Mutex::new(VecDeque::new()),
            pid: AtomicI32::new(0),
            queued: Mutex::new(HashMap::new()),
            meter: LambdaMeter::default(),
        });
        let sink = Sink::open(&opts.output).await?;
        let (lines_tx, lines_rx) = mpsc::channel(1024);
        let spawner = Spawner {
            program: tools.cargo_lambda(),
            port_chosen_here: opts.port == 0,
            opts,
        };
        let child = spawner.spawn(0, &lines_tx, &shared)?;
        let mut supervisor = Supervisor {
            spawner,
            shared: shared.clone(),
            sink,
            lines_tx,
            lines_rx,
            generation: 0,
            child,
        };
        supervisor.until_listening().await?;
        shared.state.send_modify(|s| s.ready = true);
        let (stop_tx, stop_rx) = oneshot::channel();
        let handle = tokio::spawn(supervisor.run(stop_rx));
        Ok(Self {
            shared,
            stop: Some(stop_tx),
            supervisor: Some(handle),
        })
    }

    pub fn port(&self) -> u16 {
        self.shared.port.load(Ordering::SeqCst)
    }

    pub fn invoker(&self) -> Invoker {
        Invoker {
            shared: self.shared.clone(),
        }
    }

    /// See [`Invoker::invoke`].
    pub async fn invoke(
        &self,
        binary: &str,
        event: &Json,
        timeout: Duration,
    ) -> Result<Json, InvokeError> {
        self.invoker().invoke(binary, event, timeout).await
    }

    /// The last lines cargo-lambda and the functions printed.
    pub fn output_tail(&self) -> String {
        self.shared.tail()
    }

    /// Stops cargo-lambda and the function processes it started.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.supervisor.take() {
            let _ = handle.await;
        }
    }
}

impl Drop for LambdaWatch {
    fn drop(&mut self) {
        // Without shutdown() (a panic, an early return): kill now, synchronously, so nothing
        // outlives us even if the runtime never polls the supervisor again.
        if self.supervisor.is_some() {
            let pid = self.shared.pid.load(Ordering::SeqCst);
            if pid > 0 {
                children::kill_tree(pid);
            }
            if let Some(handle) = self.supervisor.take() {
                handle.abort();
            }
        }
    }
}

struct Spawner {
    program: PathBuf,
    opts: LambdaWatchOptions,
    /// The caller left the port to us (0), so a taken one may be swapped for another.
    port_chosen_here: bool,
}

impl Spawner {
    fn spawn(
        &self,
        generation: u64,
        lines: &mpsc::Sender<(u64, String)>,
        shared: &Shared,
    ) -> Result<Child> {
        let o = &self.opts;
        let mut cmd = Command::new(&self.program);
        cmd.args([
            "lambda",
            "watch",
            "--invoke-address",
            "127.0.0.1",
            "--invoke-port",
        ])
        .arg(shared.port.load(Ordering::SeqCst).to_string())
        .arg("--env-file")
        .arg(&o.env_file)
        .arg("--concurrency")
        .arg(o.concurrency.max(1).to_string())
        .args(["--color", "never"]);
        if !o.reload {
            cmd.arg("--ignore-changes");
        }
        if let Some(profile) = &o.profile {
            cmd.args(["--profile", profile]);
        }
        cmd.current_dir(&o.root);
        prepare_env(&mut cmd, o.target_dir.as_deref());
        // cargo-lambda's own log level: the functions' RUST_LOG comes from the env file.
        cmd.env_remove("RUST_LOG");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        children::die_with_parent(&mut cmd);
        let mut child = cmd.spawn().with_context(|| {
            format!(
                "could not start {}; run `cargo xtask setup`",
                self.program.display()
            )
        })?;
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            shared.pid.store(pid, Ordering::SeqCst);
        }
        if let Some(out) = child.stdout.take() {
            forward_lines(out, generation, lines.clone());
        }
        if let Some(err) = child.stderr.take() {
            forward_lines(err, generation, lines.clone());
        }
        Ok(child)
    }
}

fn forward_lines(
    stream: impl AsyncRead + Unpin + Send + 'static,
    generation: u64,
    tx: mpsc::Sender<(u64, String)>,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send((generation, line)).await.is_err() {
                break;
            }
        }
    });
}

struct Supervisor {
    spawner: Spawner,
    shared: Arc<Shared>,
    sink: Sink,
    lines_tx: mpsc::Sender<(u64, String)>,
    lines_rx: mpsc::Receiver<(u64, String)>,
    generation: u64,
    child: Child,
}

/// Who answered on cargo-lambda's port during start-up.
enum Listener {
    CargoLambda,
    /// Another process: cargo-lambda cannot listen there and quits.
    Another,
}

impl Supervisor {
    /// Waits until the current cargo-lambda listens; on a port taken by another process, moves
    /// to a new one if the port was ours to choose.
    async fn until_listening(&mut self) -> Result<()> {
        let mut attempts = 1;
        loop {
            match self.wait_ready().await? {
                Listener::CargoLambda => return Ok(()),
                Listener::Another if attempts < PORT_ATTEMPTS => {
                    attempts += 1;
                    self.move_to_another_port().await?;
                }
                Listener::Another => bail!(
                    "the {PORT_ATTEMPTS} ports tried for cargo lambda watch were each taken by another process first"
                ),
            }
        }
    }

    async fn move_to_another_port(&mut self) -> Result<()> {
        let taken = self.shared.port.load(Ordering::SeqCst);
        if !self.spawner.port_chosen_here {
            bail!("port {taken} is taken by another process; choose another for cargo lambda watch (0 = any free one)");
        }
        self.kill_child().await;
        let port = free_port()?;
        tracing::info!(
            "port {taken} was taken before cargo lambda watch could listen on it; trying {port}"
        );
        self.shared.port.store(port, Ordering::SeqCst);
        self.child = self
            .spawner
            .spawn(self.generation, &self.lines_tx, &self.shared)?;
        Ok(())
    }

    async fn wait_ready(&mut self) -> Result<Listener> {
        let port = self.shared.port.load(Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            while let Ok((_, line)) = self.lines_rx.try_recv() {
                self.record(&line).await;
            }
            let connected = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok();
            let ours = connected
                && self
                    .child
                    .id()
                    .and_then(|p| i32::try_from(p).ok())
                    .is_some_and(|pid| children::holds_listener(&children::tree(pid), port));
            if ours {
                return Ok(Listener::CargoLambda);
            }
            if let Some(status) = self.child.try_wait()? {
                if connected {
                    return Ok(Listener::Another);
                }
                // Give the readers a moment to deliver the reason.
                tokio::time::sleep(Duration::from_millis(200)).await;
                while let Ok((_, line)) = self.lines_rx.try_recv() {
                    self.record(&line).await;
                }
                bail!(
                    "cargo lambda watch exited during start-up ({status}):\n{}",
                    self.shared.tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "cargo lambda watch did not listen on port {port} within 60 s:\n{}",
                    self.shared.tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn record(&mut self, line: &str) {
        self.sink.write(line).await;
        if let Ok(mut tail) = self.shared.tail.lock() {
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line.to_owned());
        }
    }

    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        loop {
            tokio::select! {
                _ = &mut stop => break,
                Some((generation, line)) = self.lines_rx.recv() => {
                    self.record(&line).await;
                    let plain = strip_ansi(&line);
                    if generation == self.generation && EXIT_MARKERS.iter().any(|m| plain.contains(m)) {
                        self.restart("a function process exited").await;
                    }
                }
                status = self.child.wait() => {
                    let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                    self.record(&format!("[devstack] cargo lambda watch exited ({status})")).await;
                    // A Ctrl-C reaches cargo-lambda as well as us: give our own shutdown a moment
                    // before restarting (which also avoids a tight loop if it cannot start).
                    tokio::select! {
                        _ = &mut stop => break,
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                    self.restart("cargo lambda watch exited").await;
                }
            }
        }
        self.kill_child().await;
        self.sink.flush().await;
    }

    async fn restart(&mut self, why: &str) {
        tracing::warn!("{why}; restarting cargo lambda watch (see its log)");
        self.generation += 1;
        // Invocations in flight belonged to the old process: fail them now rather than at their
        // timeout; new ones wait until the new process listens.
        self.shared.state.send_replace(WatchState {
            generation: self.generation,
            ready: false,
        });
        if let Ok(mut warm) = self.shared.warm.lock() {
            warm.clear();
        }
        // No grace: the process is being replaced, and its functions die with its Runtime API.
        self.kill_child().await;
        match self
            .spawner
            .spawn(self.generation, &self.lines_tx, &self.shared)
        {
            Ok(child) => {
                self.child = child;
                match self.until_listening().await {
                    Ok(()) => self.shared.state.send_modify(|s| s.ready = true),
                    Err(e) => tracing::error!("cargo lambda watch did not come back: {e:#}"),
                }
            }
            Err(e) => tracing::error!("could not restart cargo lambda watch: {e:#}"),
        }
    }

    /// Kills cargo-lambda and everything it started (functions, cargo, rustc) at once: they
    /// hold no state worth a graceful stop, and a function dies with its Runtime API anyway.
    async fn kill_child(&mut self) {
        let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) else {
            return;
        };
        let procs = children::tree(pid);
        children::signal(&procs, libc::SIGKILL);
        let _ = self.child.wait().await;
        // Functions run in sessions of their own, reparented once cargo-lambda is gone.
        for _ in 0..20 {
            if !children::any_alive(&procs[1..]) {
                break;
            }
            children::signal(&procs[1..], libc::SIGKILL);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.shared.pid.store(0, Ordering::SeqCst);
    }
}

enum Sink {
    File(tokio::fs::File),
    Prefixed(String),
    Discard,
}

impl Sink {
    async fn open(output: &ChildOutput) -> Result<Self> {
        Ok(match output {
            ChildOutput::LogFile(path) => {
                if let Some(dir) = path.parent() {
                    tokio::fs::create_dir_all(dir)
                        .await
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                let file = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .await
                    .with_context(|| format!("opening the log file {}", path.display()))?;
                Self::File(file)
            }
            ChildOutput::Prefixed(prefix) => Self::Prefixed(prefix.clone()),
            ChildOutput::Discard => Self::Discard,
        })
    }

    async fn write(&mut self, line: &str) {
        match self {
            Self::File(f) => {
                let _ = f.write_all(format!("{line}\n").as_bytes()).await;
            }
            Self::Prefixed(prefix) => eprintln!("[{prefix}] {line}"),
            Self::Discard => {}
        }
    }

    async fn flush(&mut self) {
        if let Self::File(f) = self {
            let _ = f.flush().await;
        }
    }
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI sequences end with a letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// PATH with the cargo that runs us first (so cargo-lambda's `cargo run` uses the same
/// toolchain and shares its build artifacts) and `~/.cargo/bin` last.
fn child_path() -> OsString {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(cargo) = std::env::var_os("CARGO") {
        if let Some(dir) = Path::new(&cargo).parent() {
            dirs.push(dir.to_path_buf());
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    let mut seen = HashSet::new();
    dirs.retain(|d| seen.insert(d.clone()));
    std::env::join_paths(dirs).unwrap_or_default()
}

/// The environment of a child that builds or runs functions.
fn prepare_env(cmd: &mut Command, target_dir: Option<&Path>) {
    cmd.env("PATH", child_path());
    // Credentials, profiles or per-service endpoints of the developer's shell must not reach the
    // functions: they talk to the local emulators only, through the env file.
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(|k| k.starts_with("AWS_")) {
            cmd.env_remove(&key);
        }
    }
    // When the devstack runs inside `cargo test` or `cargo run`, cargo has set these for that
    // crate; inherited they would make every function build recompile dependencies.
    for key in local_tools::crate_build_variables() {
        cmd.env_remove(key);
    }
    if let Some(dir) = target_dir {
        cmd.env("CARGO_TARGET_DIR", dir);
    }
}

/// Writes `vars` in the dotenv dialect cargo-lambda reads: single quotes are literal; double
/// quotes only unescape `\"` (a backslash stays doubled), so they are used only when needed.
pub fn write_env_file(path: &Path, vars: &BTreeMap<String, String>) -> Result<()> {
    let mut text = String::from(
        "# Written by the devstack for `cargo lambda watch --env-file`; regenerated on start.\n",
    );
    for (key, value) in vars {
        let valid_key = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_key {
            bail!("environment variable name {key:?} cannot be passed to cargo lambda watch");
        }
        if value.contains(['\n', '\r']) {
            bail!("environment variable {key} holds a line break, which cargo lambda watch's env file cannot carry");
        }
        if !value.contains('\'') {
            text.push_str(&format!("{key}='{value}'\n"));
        } else if !value.contains('\\') {
            text.push_str(&format!("{key}=\"{}\"\n", value.replace('"', "\\\"")));
        } else {
            bail!("environment variable {key} holds both ' and \\, which cargo lambda watch's env file cannot carry");
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Builds the function binaries the way cargo-lambda's `cargo run --bin <name>` will (same
/// package selection, so the same features), so the first invocations need not compile.
pub async fn prebuild(
    root: &Path,
    binaries: &[String],
    output: &ChildOutput,
    build: Build<'_>,
) -> Result<()> {
    if binaries.is_empty() {
        return Ok(());
    }
    let mut cmd = Command::new("cargo");
    cmd.arg("build").args(["--color", "never"]);
    if let Some(profile) = build.profile {
        cmd.args(["--profile", profile]);
    }
    for b in binaries {
        cmd.args(["--bin", b]);
    }
    cmd.current_dir(root);
    prepare_env(&mut cmd, build.target_dir);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .context("could not run cargo to prebuild the functions; is cargo on PATH?")?;
    let mut sink = Sink::open(output).await?;
    let (tx, mut rx) = mpsc::channel(256);
    if let Some(out) = child.stdout.take() {
        forward_lines(out, 0, tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        forward_lines(err, 0, tx);
    }
    let mut tail = VecDeque::new();
    while let Some((_, line)) = rx.recv().await {
        sink.write(&line).await;
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    sink.flush().await;
    let status = child.wait().await?;
    if !status.success() {
        bail!(
            "`cargo build {}` failed ({status}); fix the build and start again:\n{}",
            binaries
                .iter()
                .map(|b| format!("--bin {b}"))
                .collect::<Vec<_>>()
                .join(" "),
            tail.into_iter().collect::<Vec<_>>().join("\n")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn only_the_variables_cargo_sets_for_a_crate_are_dropped() {
        for key in [
            "CARGO_PKG_NAME",
            "CARGO_MANIFEST_DIR",
            "OUT_DIR",
            "CARGO_BIN_EXE_xtask",
        ] {
            assert!(local_tools::is_crate_build_variable(key), "{key}");
        }
        for key in [
            "CARGO_TARGET_DIR",
            "CARGO_HOME",
            "CARGO",
            "RUSTFLAGS",
            "PATH",
        ] {
            assert!(!local_tools::is_crate_build_variable(key), "{key}");
        }
    }

    use super::*;

    #[test]
    fn env_file_quotes_as_cargo_lambda_parses() {
        let dir = std::env::temp_dir().join(format!("devstack-env-{}", uuid::Uuid::new_v4()));
        let path = dir.join("lambda.env");
        let vars: BTreeMap<String, String> = [
            ("URL", "http://localhost:5000/123456789012/PlanQueue"),
            ("EQ", "a=b $HOME \"quoted\""),
            ("APOS", "it's \"so\""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        write_env_file(&path, &vars).expect("writes");
        let text = std::fs::read_to_string(&path).expect("reads");
        assert!(
            text.contains("URL='http://localhost:5000/123456789012/PlanQueue'\n"),
            "{text}"
        );
        assert!(text.contains("EQ='a=b $HOME \"quoted\"'\n"), "{text}");
        assert!(text.contains("APOS=\"it's \\\"so\\\"\"\n"), "{text}");
        let bad: BTreeMap<String, String> =
            [("X".to_owned(), "a'\\b".to_owned())].into_iter().collect();
        assert!(write_env_file(&path, &bad).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn exit_markers_survive_colour() {
        let line = "\u{1b}[31mERROR\u{1b}[0m \u{1b}[2mcommand exited\u{1b}[0m code=3";
        assert!(EXIT_MARKERS.iter().any(|m| strip_ansi(line).contains(m)));
    }
}
