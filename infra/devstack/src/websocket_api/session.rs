//! One client connection, from the handshake `$connect` decides on to its `$disconnect`.
//!
//! An accepted connection runs three tasks: the reader (frames from the client, the idle and
//! duration limits), the dispatcher (invokes the routes, one message after the other) and the
//! writer (frames for the client, from a bounded queue). Whoever ends the connection first
//! records why in its close reason, which stops the others.

use super::events::{
    connect_event, disconnect_event, message_event, new_id, ConnectionContext, Payload,
};
use super::spec::{CONNECT, DISCONNECT};
use super::{Counters, Shared, FRAME_LIMIT, MESSAGE_LIMIT};
use crate::lambda_watch::InvokeError;
use axum::body::Body;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value as Json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::Error as WsError;

/// Messages received and waiting for the dispatcher; past that the reader stops reading, and
/// the client's writes wait in TCP.
const RECEIVED_QUEUE: usize = 64;
/// How long the writer tries to hand a closing client its close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Why a connection ended; the first reason recorded wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CloseReason {
    /// The client sent a close frame.
    Client {
        code: u16,
        reason: String,
    },
    /// The connection broke, or the client broke the protocol (bad frame, message too large).
    Failed {
        code: u16,
        reason: String,
    },
    Idle,
    MaxDuration,
    /// `DeleteConnection` of the management API.
    Deleted,
    /// `WebSocketApi::disconnect`, or the server shutting down.
    Disconnected,
    /// Its send queue was full.
    SlowClient,
}

impl CloseReason {
    /// The close frame the server sends, if it closes.
    fn server_frame(&self) -> Option<(u16, &str)> {
        match self {
            Self::Client { .. } => None,
            // 1006 means no close frame was exchanged; it is never sent.
            Self::Failed { code: 1006, .. } => None,
            Self::Failed { code, reason } => Some((*code, reason)),
            Self::Idle | Self::MaxDuration | Self::Disconnected => Some((1001, "Going away")),
            Self::Deleted => Some((1000, "Connection deleted")),
            Self::SlowClient => Some((1008, "Slow client: send queue full")),
        }
    }

    /// `disconnectStatusCode` and `disconnectReason` of the `$disconnect` event.
    fn status(&self) -> (u16, String) {
        match self {
            Self::Client { code, reason } | Self::Failed { code, reason } => {
                (*code, reason.clone())
            }
            other => match other.server_frame() {
                Some((code, reason)) => (code, reason.to_owned()),
                None => (1006, String::new()),
            },
        }
    }
}

/// An accepted connection, as the management API and the server see it.
pub(super) struct Connection {
    pub ctx: ConnectionContext,
    outbound: mpsc::Sender<Payload>,
    closed: watch::Sender<Option<CloseReason>>,
    last_active: Mutex<OffsetDateTime>,
}

/// Why a frame could not be queued for the client.
pub(super) enum QueueError {
    Full,
    Closed,
}

impl Connection {
    /// Records why the connection ends (unless it already has a reason), which ends its tasks.
    pub fn close(&self, reason: CloseReason) {
        self.closed.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(reason);
                true
            } else {
                false
            }
        });
    }

    fn reason(&self) -> Option<CloseReason> {
        self.closed.borrow().clone()
    }

    pub fn is_closed(&self) -> bool {
        self.closed.borrow().is_some()
    }

    pub fn last_active(&self) -> OffsetDateTime {
        *self
            .last_active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn touch(&self) {
        *self
            .last_active
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = OffsetDateTime::now_utc();
    }

    /// Queues a frame for the client without waiting.
    pub fn enqueue(&self, payload: Payload) -> Result<(), QueueError> {
        if self.is_closed() {
            return Err(QueueError::Closed);
        }
        self.outbound.try_send(payload).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => QueueError::Full,
            mpsc::error::TrySendError::Closed(_) => QueueError::Closed,
        })
    }
}

/// Resolves once the connection has a close reason.
async fn closing(closed: &mut watch::Receiver<Option<CloseReason>>) {
    if closed.wait_for(Option::is_some).await.is_err() {
        // The sender lives in the connection, which its tasks hold: this does not happen, and
        // if it did, nothing would ever close the connection this way.
        std::future::pending::<()>().await;
    }
}

/// A connection `$connect` accepted whose handshake has not completed. Dropped without
/// [`run`] taking it over (the client left, the upgrade failed), it unregisters the connection
/// and runs `$disconnect`, since the function saw it connect.
pub(super) struct Pending {
    shared: Arc<Shared>,
    connection: Arc<Connection>,
    outbound: Option<mpsc::Receiver<Payload>>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.outbound.is_none() {
            return;
        }
        let id = &self.connection.ctx.connection_id;
        self.shared.unregister(id);
        self.connection.close(CloseReason::Failed {
            code: 1006,
            reason: "The WebSocket handshake did not complete".into(),
        });
        let (shared, connection) = (self.shared.clone(), self.connection.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { finish(&shared, &connection).await });
            }
            Err(_) => shared.sessions.send_modify(|n| *n = n.saturating_sub(1)),
        }
    }
}

enum Admission {
    Refused(Response),
    Accepted {
        pending: Pending,
        protocol: Option<HeaderValue>,
    },
}

/// `GET /<stage>`: the handshake, answered once `$connect` has decided.
pub(super) async fn connect(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    // On its own task so that, if the client leaves meanwhile, the function still completes and
    // a connection it accepted still gets its $disconnect (see `Pending`).
    let query = uri.query().map(str::to_owned);
    let admission = tokio::spawn(admit(shared.clone(), peer, headers, query)).await;
    match admission {
        Ok(Admission::Refused(response)) => response,
        Ok(Admission::Accepted { pending, protocol }) => {
            let mut upgrade = upgrade
                .max_frame_size(FRAME_LIMIT)
                .max_message_size(MESSAGE_LIMIT);
            if let Some(protocol) = protocol {
                // As API Gateway does: what the function answered, offered by the client or not.
                upgrade.set_selected_protocol(protocol);
            }
            upgrade.on_upgrade(move |socket| run(pending, socket))
        }
        Err(e) => {
            tracing::error!("the WebSocket handshake failed: {e}");
            refusal(StatusCode::INTERNAL_SERVER_ERROR, None).into_response()
        }
    }
}

/// Runs `$connect` and registers the connection it accepts.
async fn admit(
    shared: Arc<Shared>,
    peer: SocketAddr,
    headers: HeaderMap,
    query: Option<String>,
) -> Admission {
    let now = OffsetDateTime::now_utc();
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let ctx = ConnectionContext {
        connection_id: new_id(),
        connected_at: now,
        source_ip: peer.ip().to_string(),
        user_agent: text(header::USER_AGENT).unwrap_or_default(),
        domain_name: text(header::HOST).unwrap_or_else(|| format!("127.0.0.1:{}", shared.port)),
        stage: shared.spec.stage.clone(),
    };
    let mut protocol = None;
    if let Some(route) = shared.spec.routes.get(CONNECT) {
        let event = connect_event(
            &ctx,
            &headers,
            query.as_deref(),
            shared.port,
            &new_id(),
            now,
        );
        let answer = shared
            .invoker
            .invoke(&route.binary, event, route.timeout)
            .await;
        match connect_answer(answer) {
            Ok(selected) => protocol = selected,
            Err(refused) => {
                if refused.status.is_server_error() {
                    Counters::add(&shared.counters.function_errors);
                }
                Counters::add(&shared.counters.refused);
                return Admission::Refused(refused.into_response());
            }
        }
    }
    let (outbound, outbound_rx) = mpsc::channel(shared.opts.send_queue.max(1));
    let connection = Arc::new(Connection {
        ctx,
        outbound,
        closed: watch::Sender::new(None),
        last_active: Mutex::new(now),
    });
    shared.sessions.send_modify(|n| *n += 1);
    shared
        .registry()
        .insert(connection.ctx.connection_id.clone(), connection.clone());
    Counters::add(&shared.counters.accepted);
    Admission::Accepted {
        pending: Pending {
            shared,
            connection,
            outbound: Some(outbound_rx),
        },
        protocol,
    }
}

/// A handshake `$connect` refused: the status and body the client gets.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    body: Option<String>,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = self.body.unwrap_or_else(|| {
            json!({ "message": self.status.canonical_reason().unwrap_or("Error") }).to_string()
        });
        let mut response = (self.status, Body::from(body)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

fn refusal(status: StatusCode, body: Option<&str>) -> Refusal {
    Refusal {
        status,
        body: body.map(str::to_owned),
    }
}

/// What `$connect`'s answer means for the handshake: the subprotocol to select, or the
/// refusal. Like API Gateway, an answer without `statusCode` accepts.
fn connect_answer(answer: Result<Json, InvokeError>) -> Result<Option<HeaderValue>, Refusal> {
    let output = match answer {
        Ok(output) => output,
        Err(InvokeError::Timeout { function, .. }) => {
            tracing::warn!(%function, "$connect timed out");
            return Err(refusal(StatusCode::GATEWAY_TIMEOUT, None));
        }
        Err(e) => {
            tracing::warn!("$connect: {e}");
            return Err(refusal(StatusCode::INTERNAL_SERVER_ERROR, None));
        }
    };
    let status = match output.get("statusCode") {
        None | Some(Json::Null) => StatusCode::OK,
        Some(code) => {
            let parsed = code
                .as_u64()
                .or_else(|| code.as_str().and_then(|s| s.parse().ok()))
                .and_then(|c| u16::try_from(c).ok())
                .and_then(|c| StatusCode::from_u16(c).ok());
            match parsed {
                Some(status) => status,
                None => {
                    tracing::warn!("$connect answered statusCode {code}, not an HTTP status");
                    return Err(refusal(StatusCode::INTERNAL_SERVER_ERROR, None));
                }
            }
        }
    };
    if !status.is_success() {
        let body = output.get("body").and_then(Json::as_str);
        return Err(refusal(status, body));
    }
    let protocol = header_of(&output, "sec-websocket-protocol");
    match protocol.map(|p| HeaderValue::from_str(&p)) {
        None => Ok(None),
        Some(Ok(value)) => Ok(Some(value)),
        Some(Err(_)) => {
            tracing::warn!("$connect answered a Sec-WebSocket-Protocol that is no header value");
            Ok(None)
        }
    }
}

/// A header of a proxy integration's answer, its name in any case, from `headers` or else the
/// first of `multiValueHeaders`.
fn header_of(output: &Json, lower_name: &str) -> Option<String> {
    let find = |key: &str| {
        output
            .get(key)?
            .as_object()?
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(lower_name))
            .map(|(_, value)| value.clone())
    };
    match find("headers") {
        Some(Json::String(value)) => Some(value),
        _ => match find("multiValueHeaders") {
            Some(Json::Array(values)) => values.first()?.as_str().map(str::to_owned),
            _ => None,
        },
    }
}

/// The accepted connection, from the completed handshake to `$disconnect`.
async fn run(mut pending: Pending, socket: WebSocket) {
    let (shared, connection) = (pending.shared.clone(), pending.connection.clone());
    // Taking the queue disarms `Pending`: from here on this function runs $disconnect.
    let Some(outbound) = pending.outbound.take() else {
        return;
    };
    drop(pending);
    let (sink, stream) = socket.split();
    let writer = tokio::spawn(write_frames(connection.clone(), sink, outbound));
    let (received, to_dispatch) = mpsc::channel(RECEIVED_QUEUE);
    let dispatcher = tokio::spawn(dispatch(shared.clone(), connection.clone(), to_dispatch));
    read_frames(&shared, &connection, stream, received).await;
    // Gone for the management API from now on, even while the last messages are handled.
    shared.unregister(&connection.ctx.connection_id);
    if let Err(e) = dispatcher.await {
        tracing::error!(connection = %connection.ctx.connection_id, "the message dispatcher failed: {e}");
    }
    if let Err(e) = writer.await {
        tracing::error!(connection = %connection.ctx.connection_id, "the frame writer failed: {e}");
    }
    finish(&shared, &connection).await;
}

/// Reads the client's frames until the connection ends, and records why it ended.
async fn read_frames(
    shared: &Shared,
    connection: &Connection,
    mut stream: SplitStream<WebSocket>,
    received: mpsc::Sender<Payload>,
) {
    let mut closed = connection.closed.subscribe();
    let limits = &shared.opts;
    let max_duration = tokio::time::sleep(limits.max_connection_duration);
    let idle = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(max_duration, idle);
    let reason = loop {
        let frame = tokio::select! {
            biased;
            () = closing(&mut closed) => return,
            () = &mut max_duration => break CloseReason::MaxDuration,
            () = &mut idle => break CloseReason::Idle,
            frame = stream.next() => frame,
        };
        let payload = match frame {
            Some(Ok(Message::Text(text))) => Payload::Text(text.as_str().to_owned()),
            Some(Ok(Message::Binary(bytes))) => Payload::Binary(bytes.to_vec()),
            // Control frames do not count as activity (tungstenite answers pings itself).
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(frame))) => {
                break match frame {
                    Some(CloseFrame { code, reason }) => CloseReason::Client {
                        code,
                        reason: reason.as_str().to_owned(),
                    },
                    None => CloseReason::Client {
                        code: 1005,
                        reason: "Client-side close frame status not set".into(),
                    },
                }
            }
            Some(Err(e)) => break failure(e),
            None => {
                break CloseReason::Failed {
                    code: 1006,
                    reason: "Connection closed without a close frame".into(),
                }
            }
        };
        idle.as_mut()
            .reset(tokio::time::Instant::now() + limits.idle_timeout);
        connection.touch();
        Counters::add(&shared.counters.messages_in);
        tokio::select! {
            biased;
            () = closing(&mut closed) => return,
            sent = received.send(payload) => {
                if sent.is_err() {
                    break CloseReason::Failed { code: 1011, reason: "Internal server error".into() };
                }
            }
        }
    };
    connection.close(reason);
}

/// The close a read error stands for: 1009 for a frame or message over the limits, 1007 for
/// text that is not UTF-8, 1002 for other protocol errors, 1006 for a broken connection.
fn failure(error: axum::Error) -> CloseReason {
    let inner = error.into_inner();
    let (code, reason) = match inner.downcast_ref::<WsError>() {
        Some(WsError::Capacity(e)) => (1009, format!("Message too big: {e}")),
        Some(WsError::Utf8(e)) => (1007, format!("Invalid frame payload data: {e}")),
        Some(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => {
            (1006, "Connection reset without a close frame".to_owned())
        }
        Some(WsError::Protocol(e)) => (1002, format!("Protocol error: {e}")),
        _ => (1006, format!("Connection failed: {inner}")),
    };
    CloseReason::Failed { code, reason }
}

/// Writes queued frames until the connection ends, then the close frame if the server closes.
async fn write_frames(
    connection: Arc<Connection>,
    mut sink: SplitSink<WebSocket, Message>,
    mut outbound: mpsc::Receiver<Payload>,
) {
    let mut closed = connection.closed.subscribe();
    loop {
        let payload = tokio::select! {
            biased;
            () = closing(&mut closed) => break,
            payload = outbound.recv() => match payload {
                Some(payload) => payload,
                None => break,
            },
        };
        let message = match payload {
            Payload::Text(text) => Message::text(text),
            Payload::Binary(bytes) => Message::binary(bytes),
        };
        // A client that stops reading blocks this send; closing the connection stops waiting.
        let sent = tokio::select! {
            biased;
            () = closing(&mut closed) => break,
            sent = sink.send(message) => sent,
        };
        if let Err(e) = sent {
            connection.close(CloseReason::Failed {
                code: 1006,
                reason: format!("Sending failed: {e}"),
            });
            break;
        }
    }
    let reason = connection.reason();
    if reason == Some(CloseReason::SlowClient) {
        // Its buffers are full: a close frame would only wait behind them.
        return;
    }
    let frame = reason
        .as_ref()
        .and_then(CloseReason::server_frame)
        .map(|(code, reason)| CloseFrame {
            code,
            reason: reason.into(),
        });
    let goodbye = async {
        if let Some(frame) = frame {
            sink.send(Message::Close(Some(frame))).await?;
        }
        // Completes the closing handshake when the client started it.
        sink.close().await
    };
    // The client may be gone or not reading: the connection is over either way.
    let _ = tokio::time::timeout(CLOSE_GRACE, goodbye).await;
}

/// Invokes the route of each received message, one after the other.
async fn dispatch(
    shared: Arc<Shared>,
    connection: Arc<Connection>,
    mut received: mpsc::Receiver<Payload>,
) {
    let id = &connection.ctx.connection_id;
    while let Some(payload) = received.recv().await {
        let selected = match &payload {
            Payload::Text(text) => shared.spec.route_selection.route_key(text),
            // A selection expression reads JSON: binary messages go to $default.
            Payload::Binary(_) => None,
        };
        let request_id = new_id();
        let Some((route_key, target)) = shared.spec.message_route(selected.as_deref()) else {
            reply(&connection, "Forbidden", &request_id);
            continue;
        };
        let event = message_event(
            &connection.ctx,
            route_key,
            &payload,
            &request_id,
            OffsetDateTime::now_utc(),
        );
        // The answer is not sent back: the template declares no route responses.
        if let Err(e) = shared
            .invoker
            .invoke(&target.binary, event, target.timeout)
            .await
        {
            tracing::warn!(connection = %id, route = %route_key, "{e}");
            Counters::add(&shared.counters.function_errors);
            reply(&connection, "Internal server error", &request_id);
        }
    }
}

/// API Gateway's own error frame to the client.
fn reply(connection: &Connection, message: &str, request_id: &str) {
    let frame = json!({
        "message": message,
        "connectionId": connection.ctx.connection_id,
        "requestId": request_id,
    });
    // A client too slow for this frame is cut by the next post anyway.
    let _ = connection.enqueue(Payload::Text(frame.to_string()));
}

/// Runs `$disconnect` for a connection that has closed.
async fn finish(shared: &Shared, connection: &Connection) {
    let (code, reason) = connection
        .reason()
        .map(|r| r.status())
        .unwrap_or((1006, String::new()));
    if let Some(route) = shared.spec.routes.get(DISCONNECT) {
        let event = disconnect_event(
            &connection.ctx,
            code,
            &reason,
            &new_id(),
            OffsetDateTime::now_utc(),
        );
        if let Err(e) = shared
            .invoker
            .invoke(&route.binary, event, route.timeout)
            .await
        {
            tracing::warn!(connection = %connection.ctx.connection_id, "$disconnect: {e}");
            Counters::add(&shared.counters.function_errors);
        }
    }
    shared.sessions.send_modify(|n| *n = n.saturating_sub(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_answers() {
        let accepted = connect_answer(Ok(json!({
            "statusCode": 200,
            "headers": {"sec-websocket-protocol": "v1"}
        })))
        .expect("accepted");
        assert_eq!(accepted, Some(HeaderValue::from_static("v1")));
        let accepted = connect_answer(Ok(json!({
            "statusCode": "204",
            "multiValueHeaders": {"Sec-WebSocket-Protocol": ["v2"]}
        })))
        .expect("accepted");
        assert_eq!(accepted, Some(HeaderValue::from_static("v2")));
        assert_eq!(connect_answer(Ok(Json::Null)).expect("no status"), None);

        let refused = connect_answer(Ok(json!({"statusCode": 401}))).expect_err("refused");
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        let failed = connect_answer(Err(InvokeError::Function {
            function: "f".into(),
            error_type: "E".into(),
            message: "boom".into(),
        }))
        .expect_err("failed");
        assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
        let bad = connect_answer(Ok(json!({"statusCode": 1000}))).expect_err("bad status");
        assert_eq!(bad.status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn close_statuses() {
        assert_eq!(CloseReason::Idle.status(), (1001, "Going away".into()));
        assert_eq!(CloseReason::Deleted.server_frame().map(|f| f.0), Some(1000));
        let broken = CloseReason::Failed {
            code: 1006,
            reason: "x".into(),
        };
        assert_eq!(broken.server_frame(), None);
        assert_eq!(broken.status(), (1006, "x".into()));
    }
}
