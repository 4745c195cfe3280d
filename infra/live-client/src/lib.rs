//! A client of the live event stream, for tests and tools.
//!
//! [`LiveClient::next`] hands out the tenant's events in order, each once: when the connection
//! drops (API Gateway's 10-minute idle or 2-hour cut, a network blip) it connects again and
//! subscribes with the last `seq` it handed out, so the server replays what was missed; an event
//! it already handed out is dropped. With an unfiltered subscription every `seq` follows the one
//! before: a gap means a frame was lost, and the client resubscribes from its last event to have
//! it replayed. A `reset` (what was missed is no longer kept) is returned as
//! [`LiveError::Reset`]: reload whatever the events were keeping current, then call `next`
//! again, which subscribes afresh. An idle connection is pinged so it is not cut; one that
//! follows devices' telemetry by name pings every minute, which keeps them streaming.

use cellbridge_events::event::Event;
use cellbridge_events::protocol::FOLLOWER_PING_INTERVAL;
use cellbridge_events::subscription::Subscription;
use futures::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Events dropped while waiting for a replay before asking for it again.
pub const HEALING_PATIENCE: u32 = 200;

/// The subprotocol the stream speaks; the token is offered beside it.
pub const SUBPROTOCOL: &str = "cellbridge.events.v1";

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// `$connect` refused the token (401), or the server answered the handshake otherwise.
    #[error("the live stream refused the connection: HTTP {0}")]
    Refused(u16),
    #[error("the live stream could not be reached: {0}")]
    Unreachable(String),
    /// What was missed is no longer kept: reload, then call `next` again.
    #[error("the stream was reset: {0}")]
    Reset(String),
    /// The server refused a frame of ours (it names the field).
    #[error("the stream refused a frame: {message} ({field:?})")]
    Refusal {
        message: String,
        field: Option<String>,
    },
    #[error("no frame came within {0:?}")]
    Timeout(Duration),
}

#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// Pinged after this long without a frame either way (API Gateway cuts at 10 minutes).
    pub ping_after: Duration,
    /// Connection attempts after a cut before `next` gives up.
    pub reconnect_attempts: u32,
    /// The first wait between attempts, doubled each time up to 5 s.
    pub reconnect_backoff: Duration,
    /// How long a subscribe waits for `subscribed`.
    pub subscribe_timeout: Duration,
}

impl Default for LiveOptions {
    fn default() -> Self {
        Self {
            ping_after: Duration::from_secs(5 * 60),
            reconnect_attempts: 20,
            reconnect_backoff: Duration::from_millis(100),
            subscribe_timeout: Duration::from_secs(30),
        }
    }
}

/// What the client met on its way, for tests and soak runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveStats {
    pub connections: u32,
    /// Events handed out.
    pub events: u64,
    /// Events dropped because one with their `seq` was handed out already.
    pub duplicates: u64,
    /// Gaps in `seq` (unfiltered only), each healed by resubscribing.
    pub gaps: u64,
    /// Events dropped while a replay was awaited (they come again with it).
    pub dropped_while_healing: u64,
    pub resets: u64,
}

pub struct LiveClient {
    url: String,
    token: String,
    filter: Subscription,
    opts: LiveOptions,
    socket: Option<Socket>,
    /// The last event handed out; `None` before the first (or after a reset).
    last_seq: Option<u64>,
    /// When this client last sent a frame: a ping goes after `ping_after` without one.
    last_sent: tokio::time::Instant,
    /// Resubscribed after a gap: what arrives before the replay starts is dropped (and counted
    /// here), not taken for another gap; after [`HEALING_PATIENCE`] of them it resubscribes again.
    healing: Option<u32>,
    stats: LiveStats,
}

impl LiveClient {
    /// Connects and subscribes; returns once the server confirmed the subscription.
    pub async fn connect(
        url: &str,
        token: &str,
        filter: Subscription,
        opts: LiveOptions,
    ) -> Result<Self, LiveError> {
        Self::open_after(url, token, filter, None, opts).await
    }

    /// Resumes after `last_seq` rather than from now.
    pub async fn resume(
        url: &str,
        token: &str,
        filter: Subscription,
        last_seq: u64,
        opts: LiveOptions,
    ) -> Result<Self, LiveError> {
        Self::open_after(url, token, filter, Some(last_seq), opts).await
    }

    async fn open_after(
        url: &str,
        token: &str,
        filter: Subscription,
        last_seq: Option<u64>,
        opts: LiveOptions,
    ) -> Result<Self, LiveError> {
        let mut client = Self {
            url: url.to_owned(),
            token: token.to_owned(),
            filter,
            opts,
            socket: None,
            last_seq,
            healing: None,
            last_sent: tokio::time::Instant::now(),
            stats: LiveStats::default(),
        };
        client.open().await?;
        Ok(client)
    }

    pub fn stats(&self) -> LiveStats {
        self.stats
    }

    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// Drops the connection without a goodbye, as a network cut would; the next `next` resumes.
    pub fn cut(&mut self) {
        self.socket = None;
    }

    /// Sends `text` as it is (tests of malformed frames); the answer comes through [`Self::frame`].
    pub async fn send_raw(&mut self, text: &str) -> Result<(), LiveError> {
        let socket = self
            .socket
            .as_mut()
            .ok_or_else(|| LiveError::Unreachable("not connected".into()))?;
        self.last_sent = tokio::time::Instant::now();
        socket
            .send(Message::text(text))
            .await
            .map_err(|e| LiveError::Unreachable(e.to_string()))
    }

    /// The next frame of any kind, as JSON (tests of the protocol itself).
    pub async fn frame(&mut self, within: Duration) -> Result<serde_json::Value, LiveError> {
        let socket = self
            .socket
            .as_mut()
            .ok_or_else(|| LiveError::Unreachable("not connected".into()))?;
        loop {
            let message = tokio::time::timeout(within, socket.next())
                .await
                .map_err(|_| LiveError::Timeout(within))?;
            match message {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(text.as_str()).map_err(|e| {
                        LiveError::Unreachable(format!("a frame that is not JSON: {e}"))
                    })
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(LiveError::Unreachable(e.to_string())),
                None => return Err(LiveError::Unreachable("the connection closed".into())),
            }
        }
    }

    async fn open(&mut self) -> Result<(), LiveError> {
        let mut request = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| LiveError::Unreachable(e.to_string()))?;
        let offer = HeaderValue::from_str(&format!("{SUBPROTOCOL}, {}", self.token))
            .map_err(|_| LiveError::Refused(401))?;
        request
            .headers_mut()
            .insert("sec-websocket-protocol", offer);
        let (socket, _) = match tokio_tungstenite::connect_async(request).await {
            Ok(connected) => connected,
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                return Err(LiveError::Refused(response.status().as_u16()))
            }
            Err(e) => return Err(LiveError::Unreachable(e.to_string())),
        };
        self.socket = Some(socket);
        self.healing = None;
        self.stats.connections += 1;
        self.subscribe().await
    }

    async fn subscribe(&mut self) -> Result<(), LiveError> {
        let mut frame = serde_json::json!({"action": "subscribe", "filter": self.filter});
        if let Some(last_seq) = self.last_seq {
            frame["lastSeq"] = last_seq.into();
        }
        self.send_raw(&frame.to_string()).await?;
        // Events of a subscription made before this one may still arrive first.
        loop {
            let frame = self.frame(self.opts.subscribe_timeout).await?;
            match frame["kind"].as_str() {
                Some("subscribed") => {
                    if self.last_seq.is_none() {
                        self.last_seq = frame["lastSeq"].as_u64();
                    }
                    return Ok(());
                }
                Some("reset") => {
                    self.stats.resets += 1;
                    self.last_seq = None;
                    // The server holds no subscription now: the next call connects and
                    // subscribes afresh.
                    self.socket = None;
                    return Err(LiveError::Reset(
                        frame["reason"].as_str().unwrap_or_default().to_owned(),
                    ));
                }
                Some("error") => return Err(refusal(&frame)),
                _ => continue,
            }
        }
    }

    /// Reconnects after a cut, resuming after the last event handed out.
    async fn reconnect(&mut self) -> Result<(), LiveError> {
        self.socket = None;
        let mut wait = self.opts.reconnect_backoff;
        let mut last_error = LiveError::Unreachable("no attempt made".into());
        for _ in 0..self.opts.reconnect_attempts.max(1) {
            match self.open().await {
                Ok(()) => return Ok(()),
                Err(error @ (LiveError::Reset(_) | LiveError::Refused(_))) => return Err(error),
                Err(error) => last_error = error,
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
        Err(last_error)
    }

    fn ping_period(&self) -> Duration {
        if self.filter.followed_devices().next().is_some() {
            self.opts.ping_after.min(FOLLOWER_PING_INTERVAL)
        } else {
            self.opts.ping_after
        }
    }

    /// The next event, in order and once, waiting at most `within` for it.
    pub async fn next(&mut self, within: Duration) -> Result<Event, LiveError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.socket.is_none() {
                self.reconnect().await?;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(LiveError::Timeout(within));
            }
            // API Gateway closes a connection whose client sent nothing for 10 minutes; a
            // follower of devices' telemetry pings more often, to keep them streaming.
            let ping_at = self.last_sent + self.ping_period();
            if now >= ping_at {
                self.last_sent = now;
                if let Some(socket) = self.socket.as_mut() {
                    if socket
                        .send(Message::text(r#"{"action":"ping"}"#))
                        .await
                        .is_err()
                    {
                        self.socket = None;
                    }
                }
                continue;
            }
            let wait = deadline.min(ping_at) - now;
            let Some(socket) = self.socket.as_mut() else {
                continue;
            };
            let Ok(message) = tokio::time::timeout(wait, socket.next()).await else {
                continue;
            };
            let text = match message {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    self.socket = None;
                    continue;
                }
                Some(Ok(_)) => continue,
            };
            let Ok(frame) = serde_json::from_str::<serde_json::Value>(text.as_str()) else {
                continue;
            };
            match frame["kind"].as_str() {
                Some("event") => {
                    let Ok(event) = serde_json::from_value::<Event>(frame) else {
                        continue;
                    };
                    if let Some(event) = self.accept(event).await? {
                        return Ok(event);
                    }
                }
                Some("reset") => {
                    self.stats.resets += 1;
                    self.last_seq = None;
                    // The server holds no subscription now: the next call connects and
                    // subscribes afresh.
                    self.socket = None;
                    return Err(LiveError::Reset(
                        frame["reason"].as_str().unwrap_or_default().to_owned(),
                    ));
                }
                Some("error") => return Err(refusal(&frame)),
                _ => {}
            }
        }
    }

    /// The event if it is the next one to hand out; `None` for a duplicate or after a gap
    /// (then the client resubscribes to have the missing ones replayed).
    async fn accept(&mut self, event: Event) -> Result<Option<Event>, LiveError> {
        let Some(last) = self.last_seq else {
            self.last_seq = Some(event.seq);
            self.stats.events += 1;
            return Ok(Some(event));
        };
        if event.seq <= last {
            self.stats.duplicates += 1;
            return Ok(None);
        }
        let unfiltered = self.filter == Subscription::default();
        if unfiltered && event.seq != last + 1 {
            match self.healing {
                Some(waited) if waited < HEALING_PATIENCE => {
                    self.healing = Some(waited + 1);
                    self.stats.dropped_while_healing += 1;
                    return Ok(None);
                }
                Some(_) => {}
                None => self.stats.gaps += 1,
            }
            self.healing = Some(0);
            tracing::warn!(
                expected = last + 1,
                got = event.seq,
                "a gap in the stream; resubscribing from the last event"
            );
            if let Err(error) = self.subscribe().await {
                match error {
                    // The connection went while asking: the next call reconnects and resumes.
                    LiveError::Unreachable(_) | LiveError::Timeout(_) => self.socket = None,
                    other => return Err(other),
                }
            }
            return Ok(None);
        }
        self.healing = None;
        self.last_seq = Some(event.seq);
        self.stats.events += 1;
        Ok(Some(event))
    }
}

fn refusal(frame: &serde_json::Value) -> LiveError {
    LiveError::Refusal {
        message: frame["message"].as_str().unwrap_or_default().to_owned(),
        field: frame["field"].as_str().map(str::to_owned),
    }
}
