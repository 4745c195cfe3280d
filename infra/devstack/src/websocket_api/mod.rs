//! API Gateway WebSocket API, locally: the template's `AWS::ApiGatewayV2::Api` with
//! `ProtocolType: WEBSOCKET` ([`spec`]), served on 127.0.0.1 with API Gateway's semantics.
//!
//! - Clients connect to `ws://127.0.0.1:<port>/<stage>`. The `$connect` route's function decides
//!   before the handshake is answered: a 2xx `statusCode` (or no `statusCode`) accepts, anything
//!   else refuses with that status; a `Sec-WebSocket-Protocol` header in its answer is the
//!   subprotocol the handshake selects.
//! - Messages are routed by the `RouteSelectionExpression` (`$request.body.action`) to their
//!   route, else `$default`, else answered with API Gateway's `Forbidden` frame; one
//!   connection's messages are handled one after the other, in order. Route responses are not
//!   sent back: functions answer through the management API.
//! - Whichever side closes (client, idle timeout, maximum duration, the management API,
//!   [`WebSocketApi::disconnect`]), `$disconnect` runs once, best effort, after the connection
//!   has closed and after the messages it received.
//! - The management API (`@connections`, what aws-sdk-apigatewaymanagement calls with
//!   [`WebSocketApi::management_endpoint`] as its endpoint) shares the port: `POST` sends the
//!   body as one frame, `GET` describes the connection, `DELETE` closes it; a connection that is
//!   closed or never was answers 410, which the SDK reports as `GoneException`.
//!
//! API Gateway's limits apply: 32 KiB frames and 128 KiB messages (larger close the connection
//! with 1009), 128 KiB posts (413), 10 minutes without a message from the client, 2 hours in
//! all. A client that does not read what is posted to it is cut once its send queue is full,
//! rather than holding the functions that post to it.

mod events;
mod management;
mod session;
pub mod spec;

pub use events::{ConnectionContext, Payload, LOCAL_WEBSOCKET_API_ID};
pub use spec::{websocket_api_of, RouteSelection, RouteTarget, WebSocketApiSpec};

use crate::lambda_watch::{InvokeError, Invoker};
use crate::server_task::ServerTask;
use crate::template::{FunctionSpec, Template};
use anyhow::{Context, Result};
use axum::routing::any;
use axum::Router;
use futures::future::BoxFuture;
use futures::FutureExt as _;
use serde::Serialize;
use serde_json::Value as Json;
use session::{CloseReason, Connection};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;

/// API Gateway's limit on one frame a client sends.
pub const FRAME_LIMIT: usize = 32 * 1024;
/// API Gateway's limit on one message (of one or more frames) a client sends, and on one post.
pub const MESSAGE_LIMIT: usize = 128 * 1024;

/// How long [`WebSocketApi::shutdown`] waits for open connections to close and their
/// `$disconnect` to run.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs the function behind a route: the devstack's [`Invoker`] in the stack, a fake in tests.
pub trait RouteInvoker: Send + Sync + 'static {
    /// Invokes `binary` with `event`; resolves to the function's answer.
    fn invoke(
        &self,
        binary: &str,
        event: Json,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Json, InvokeError>>;
}

impl RouteInvoker for Invoker {
    fn invoke(
        &self,
        binary: &str,
        event: Json,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Json, InvokeError>> {
        let invoker = self.clone();
        let binary = binary.to_owned();
        async move { invoker.invoke(&binary, &event, timeout).await }.boxed()
    }
}

#[derive(Debug, Clone)]
pub struct WebSocketApiOptions {
    /// 0 picks a free port.
    pub port: u16,
    /// A connection the client sends no message on for this long is closed (API Gateway: 10
    /// minutes).
    pub idle_timeout: Duration,
    /// A connection is closed this long after it opened (API Gateway: 2 hours).
    pub max_connection_duration: Duration,
    /// Frames waiting to be written to one client; a post that finds the queue full cuts the
    /// connection and answers 410.
    pub send_queue: usize,
}

impl Default for WebSocketApiOptions {
    fn default() -> Self {
        Self {
            port: 0,
            idle_timeout: Duration::from_secs(10 * 60),
            max_connection_duration: Duration::from_secs(2 * 60 * 60),
            send_queue: 256,
        }
    }
}

/// What the WebSocket API has done since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WebSocketStats {
    /// Connections accepted and not yet closed.
    pub open: u64,
    /// Handshakes `$connect` accepted.
    pub accepted: u64,
    /// Handshakes `$connect` refused (or failed on).
    pub refused: u64,
    /// Text and binary messages received from clients.
    pub messages_in: u64,
    /// Frames the management API queued for clients.
    pub frames_posted: u64,
    /// Management API calls answered 410 Gone.
    pub gone: u64,
    /// Connections cut because their send queue was full.
    pub slow_clients_cut: u64,
    /// Route invocations that failed or timed out.
    pub function_errors: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    refused: AtomicU64,
    messages_in: AtomicU64,
    frames_posted: AtomicU64,
    gone: AtomicU64,
    slow_clients_cut: AtomicU64,
    function_errors: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the server's handlers and the connections' tasks share.
struct Shared {
    spec: WebSocketApiSpec,
    invoker: Arc<dyn RouteInvoker>,
    opts: WebSocketApiOptions,
    port: u16,
    connections: Mutex<HashMap<String, Arc<Connection>>>,
    counters: Counters,
    /// Connections accepted whose `$disconnect` has not run yet.
    sessions: watch::Sender<usize>,
}

impl Shared {
    fn registry(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Connection>>> {
        // The map stays consistent whatever panicked while holding it.
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn connection(&self, connection_id: &str) -> Option<Arc<Connection>> {
        self.registry().get(connection_id).cloned()
    }

    /// Closes a connection from the server's side; `false` if it was not open.
    fn cut(&self, connection_id: &str, reason: CloseReason) -> bool {
        let removed = self.registry().remove(connection_id);
        match removed {
            Some(connection) => {
                connection.close(reason);
                true
            }
            None => false,
        }
    }

    fn unregister(&self, connection_id: &str) {
        self.registry().remove(connection_id);
    }
}

/// The WebSocket API's port, taken; [`BoundWebSocketApi::serve`] starts answering on it.
pub struct BoundWebSocketApi {
    spec: WebSocketApiSpec,
    opts: WebSocketApiOptions,
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
}

impl BoundWebSocketApi {
    /// Listens for `spec` (what [`websocket_api_of`] read from a template).
    pub async fn bind(spec: WebSocketApiSpec, opts: WebSocketApiOptions) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", opts.port)).await.with_context(|| {
            format!("the WebSocket API cannot listen on 127.0.0.1:{}; is it in use? Choose another port (0 = any free one)", opts.port)
        })?;
        let addr = listener.local_addr()?;
        Ok(Self {
            spec,
            opts,
            listener,
            addr,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// See [`WebSocketApi::url`].
    pub fn url(&self) -> String {
        format!("ws://{}/{}", self.addr, self.spec.stage)
    }

    /// See [`WebSocketApi::management_endpoint`].
    pub fn management_endpoint(&self) -> String {
        format!("http://{}/{}", self.addr, self.spec.stage)
    }

    pub fn api_logical_id(&self) -> &str {
        &self.spec.api_logical_id
    }

    /// Starts serving, the routes running on `invoker`. Clients that connected meanwhile waited
    /// in the listen queue.
    pub fn serve(self, invoker: impl RouteInvoker) -> WebSocketApi {
        let Self {
            spec,
            opts,
            listener,
            addr,
        } = self;
        let stage = format!("/{}", spec.stage);
        let shared = Arc::new(Shared {
            spec,
            invoker: Arc::new(invoker),
            opts,
            port: addr.port(),
            connections: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            sessions: watch::Sender::new(0),
        });
        let router = Router::new()
            .route(&stage, any(session::connect))
            .route(&format!("{stage}/"), any(session::connect))
            .fallback(management::handle)
            .with_state(shared.clone());
        let server = ServerTask::spawn("the local WebSocket API", |stopped| async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(stopped)
            .await
        });
        WebSocketApi {
            addr,
            shared,
            server: Some(server),
        }
    }
}

/// The template's WebSocket API, served until [`WebSocketApi::shutdown`].
pub struct WebSocketApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Option<ServerTask>,
}

impl WebSocketApi {
    /// Serves the template's WebSocket API; `None` when it declares none.
    pub async fn start(
        template: &Template,
        functions: &[FunctionSpec],
        invoker: impl RouteInvoker,
        opts: WebSocketApiOptions,
    ) -> Result<Option<Self>> {
        match Self::bind(template, functions, opts).await? {
            Some(bound) => Ok(Some(bound.serve(invoker))),
            None => Ok(None),
        }
    }

    /// Takes the port without serving yet: the functions' environment needs the
    /// [`BoundWebSocketApi::management_endpoint`] before the invoker that runs them exists.
    /// `None` when the template declares no WebSocket API.
    pub async fn bind(
        template: &Template,
        functions: &[FunctionSpec],
        opts: WebSocketApiOptions,
    ) -> Result<Option<BoundWebSocketApi>> {
        match websocket_api_of(template, functions)? {
            Some(spec) => Ok(Some(BoundWebSocketApi::bind(spec, opts).await?)),
            None => Ok(None),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:<port>/<stage>`: where clients connect.
    pub fn url(&self) -> String {
        format!("ws://{}/{}", self.addr, self.shared.spec.stage)
    }

    /// `http://127.0.0.1:<port>/<stage>`: the endpoint functions give
    /// aws-sdk-apigatewaymanagement (`endpoint_url`) to reach their clients.
    pub fn management_endpoint(&self) -> String {
        format!("http://{}/{}", self.addr, self.shared.spec.stage)
    }

    pub fn api_logical_id(&self) -> &str {
        &self.shared.spec.api_logical_id
    }

    pub fn spec(&self) -> &WebSocketApiSpec {
        &self.shared.spec
    }

    pub fn stats(&self) -> WebSocketStats {
        let c = &self.shared.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        WebSocketStats {
            open: self.shared.registry().len() as u64,
            accepted: get(&c.accepted),
            refused: get(&c.refused),
            messages_in: get(&c.messages_in),
            frames_posted: get(&c.frames_posted),
            gone: get(&c.gone),
            slow_clients_cut: get(&c.slow_clients_cut),
            function_errors: get(&c.function_errors),
        }
    }

    /// The ids of the open connections.
    pub fn connection_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.shared.registry().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Closes a connection from the server's side (1001 Going away), as API Gateway does when
    /// a connection reaches its maximum duration; `false` if it was not open.
    pub fn disconnect(&self, connection_id: &str) -> bool {
        self.shared.cut(connection_id, CloseReason::Disconnected)
    }

    /// Closes every open connection; how many there were.
    pub fn disconnect_all(&self) -> usize {
        let ids: Vec<String> = self.shared.registry().keys().cloned().collect();
        ids.iter().filter(|id| self.disconnect(id)).count()
    }

    /// Resolves once every connection accepted so far has closed and had its `$disconnect`.
    pub async fn settled(&self) {
        let mut sessions = self.shared.sessions.subscribe();
        // Fails only once the sender is dropped, which lives as long as `self`.
        let _ = sessions.wait_for(|n| *n == 0).await;
    }

    /// Where it listens and what each route runs, for people.
    pub fn summary_lines(&self) -> Vec<String> {
        let spec = &self.shared.spec;
        let opts = &self.shared.opts;
        let mut lines = vec![format!(
            "{}  {}  (@connections on {}; closes after {:?} idle, {:?} open)",
            spec.api_logical_id,
            self.url(),
            self.management_endpoint(),
            opts.idle_timeout,
            opts.max_connection_duration
        )];
        for (key, target) in &spec.routes {
            lines.push(format!(
                "  {key:<14} -> {} ({})",
                target.binary, target.function_logical_id
            ));
        }
        if !spec.routes.contains_key(spec::DEFAULT) {
            lines.push(format!(
                "  messages matching no route get Forbidden (selection {})",
                spec.route_selection.expression
            ));
        }
        lines
    }

    /// Closes every connection (their `$disconnect` get a moment to run), then stops serving.
    pub async fn shutdown(mut self) {
        self.disconnect_all();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.settled())
            .await
            .is_err()
        {
            tracing::warn!("the WebSocket API stopped before every $disconnect had run");
        }
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

impl Drop for WebSocketApi {
    fn drop(&mut self) {
        // Connections run on their own tasks: without this they would outlive the server.
        self.disconnect_all();
    }
}
