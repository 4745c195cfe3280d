//! The live event stream's WebSocket routes (API Gateway WebSocket API, proxy integration).
//!
//! - `$connect`: the token is checked before the connection opens. A browser cannot set headers
//!   on a WebSocket, so it offers two subprotocols: [`SUBPROTOCOL`] and the token itself
//!   (`new WebSocket(url, ["cellbridge.events.v1", token])`); the answer selects the first.
//!   Other clients may send `Authorization: Bearer <token>` instead. No token, a bad one, or an
//!   expired one: `401`, and the connection never opens. The token is never logged.
//! - `subscribe` (`filter`, `lastSeq`): `subscribed` with the stream's place, then (sent by the
//!   fan-out) every event after `lastSeq` that is still kept, then live ones; a `lastSeq` older
//!   than the replay window gets `reset` instead. `unsubscribe` stops the events; `ping` gets
//!   `pong` (API Gateway cuts a connection idle for 10 minutes; a ping resets that).
//! - Following devices: a subscription that names devices and wants their telemetry (its
//!   types empty or holding `telemetry.latest`) makes the first [`MAX_FOLLOWED`] of them
//!   stream every sample while it lasts (`cellbridge_devices::live`): subscribing sends each
//!   one a `live` command unless it streams already, and a `ping` every minute
//!   (`FOLLOWER_PING_INTERVAL`) renews them; once no one renews, they go back to batches within three minutes.
//! - A connection stays open after its token expires (API Gateway keeps it up to two hours): the
//!   token is checked once, when it connects.
//! - Anything else (`$default`): an `error` frame naming what is wrong; the connection stays.
//! - `$disconnect`: the connection is forgotten.

use aws_lambda_events::event::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::http::{HeaderMap, HeaderValue};
use cellbridge_core::store::StoreError;
use cellbridge_core::tenant::TenantId;
use cellbridge_devices::live::{follow, FollowPorts, Following, MAX_FOLLOWED};
use cellbridge_devices::registration::ThingName;
use cellbridge_events::ports::{Connection, ConnectionPoster, Connections, EventLog};
use cellbridge_events::protocol::{parse_client_frame, resume, ClientFrame, Resume, ServerFrame};
use cellbridge_events::subscription::Subscription;
use cellbridge_identity::authenticator::Authenticator;
use cellbridge_identity::live_ticket::LiveTickets;
use cellbridge_identity::token::TokenError;
use futures::StreamExt as _;
use time::OffsetDateTime;

cellbridge_core::composite_config! {
    /// This function's configuration, read once at cold start.
    pub struct Config {
        pub tables: cellbridge_events::wiring::LiveTables,
        pub endpoint: cellbridge_events::wiring::LiveEndpoint,
        pub auth: cellbridge_identity::keys::AuthMode,
        /// Live tickets (the console's pages offer one in place of the token).
        pub tickets: cellbridge_identity::wiring::LiveTicketsConfig,
        /// The devices a subscription follows, and the path of their `live` commands.
        pub commands: cellbridge_devices::wiring::CommandDelivery,
    }
}

/// The subprotocol a client offers beside its token, and that the answer selects.
pub const SUBPROTOCOL: &str = "cellbridge.events.v1";
// A follower's pings renew its devices' live windows before they run out.
const _: () = assert!(
    cellbridge_events::protocol::FOLLOWER_PING_INTERVAL.as_secs()
        < cellbridge_devices::live::RENEW_WITHIN.whole_seconds() as u64
);

/// Longer offers are no token of ours; refusing them early bounds the work per connection.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// API Gateway closes every connection after two hours; the table's TTL removes what a lost
/// `$disconnect` left a little after that.
pub const CONNECTION_LIFETIME: time::Duration = time::Duration::minutes(125);

pub struct SocketPorts<'a> {
    pub log: &'a dyn EventLog,
    pub connections: &'a dyn Connections,
    pub poster: &'a dyn ConnectionPoster,
    pub authenticator: &'a Authenticator,
    /// A page of the console offers a live ticket: its script cannot read the user's token.
    pub tickets: &'a LiveTickets,
    pub follow: FollowPorts<'a>,
}

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("the request has no connection id: not an API Gateway WebSocket event")]
    NoConnection,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn respond(status: i64) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = status;
    response
}

/// What the client offered: whether it speaks [`SUBPROTOCOL`], and its token.
fn offered_token(headers: &HeaderMap) -> (bool, Result<String, TokenError>) {
    let offered: Vec<String> = headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    let speaks = offered.iter().any(|p| p == SUBPROTOCOL);
    let from_protocols = offered.into_iter().find(|p| p != SUBPROTOCOL);
    let from_header = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned());
    let token = match from_protocols.or(from_header) {
        Some(token) if token.len() > MAX_TOKEN_BYTES => Err(TokenError::Malformed),
        Some(token) => Ok(token),
        None => Err(TokenError::Missing),
    };
    (speaks, token)
}

async fn connect(
    request: &ApiGatewayWebsocketProxyRequest,
    id: &str,
    ports: &SocketPorts<'_>,
    now: OffsetDateTime,
) -> Result<ApiGatewayProxyResponse, SocketError> {
    let (speaks, token) = offered_token(&request.headers);
    let identity = match token {
        Ok(token) => match ports.tickets.verify(&token, now) {
            Ok(identity) => Ok(identity),
            // Not a ticket (another audience): an API token, as before.
            Err(TokenError::Audience | TokenError::Malformed | TokenError::Algorithm(_)) => {
                ports.authenticator.identify(&token, now).await
            }
            Err(ticket_refused) => Err(ticket_refused),
        },
        Err(missing) => Err(missing),
    };
    let identity = match identity {
        Ok(identity) => identity,
        Err(reason) => {
            // The reason, never the token: it is a credential.
            tracing::warn!(%reason, "live connection refused");
            return Ok(respond(401));
        }
    };
    ports
        .connections
        .put(&Connection {
            id: id.to_owned(),
            tenant: identity.tenant.clone(),
            subject: identity.subject.clone(),
            connected_at: now,
            expires_at: now + CONNECTION_LIFETIME,
            subscription: None,
            after: 0,
            catching_up: false,
            generation: 0,
        })
        .await?;
    tracing::info!(tenant = %identity.tenant, subject = %identity.subject, "live connection opened");
    let mut response = respond(200);
    if speaks {
        response.headers.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(SUBPROTOCOL),
        );
    }
    Ok(response)
}

async fn post(ports: &SocketPorts<'_>, id: &str, frame: &ServerFrame) {
    let bytes = match serde_json::to_vec(frame) {
        Ok(bytes) => bytes,
        Err(error) => {
            // Plain data always serializes; were it ever not to, nothing is sent.
            tracing::error!(%error, "a reply could not be serialized");
            return;
        }
    };
    if let Err(error) = ports.poster.post(id, &bytes).await {
        // The client is gone or unreachable: its `$disconnect` (or the TTL) tidies up.
        tracing::warn!(%error, "a reply did not reach its connection");
    }
}

async fn message(
    body: &str,
    id: &str,
    ports: &SocketPorts<'_>,
    now: OffsetDateTime,
) -> Result<(), SocketError> {
    let frame = match parse_client_frame(body) {
        Ok(frame) => frame,
        Err(error) => {
            post(ports, id, &error.frame()).await;
            return Ok(());
        }
    };
    let Some(connection) = ports.connections.get(id).await? else {
        tracing::warn!("a frame from a connection that is not recorded; ignored");
        return Ok(());
    };
    let tenant = &connection.tenant;
    match frame {
        ClientFrame::Ping => {
            post(ports, id, &ServerFrame::Pong).await;
            if let Some(subscription) = &connection.subscription {
                follow_devices(ports, tenant, subscription, now).await;
            }
        }
        ClientFrame::Unsubscribe => {
            let newest = ports.log.newest(tenant).await?;
            ports.connections.subscribe(id, None, newest).await?;
            post(ports, id, &ServerFrame::Unsubscribed).await;
        }
        ClientFrame::Subscribe { filter, last_seq } => {
            let newest = ports.log.newest(tenant).await?;
            let after = match last_seq {
                None => newest,
                Some(last_seq) => {
                    let next_kept =
                        last_seq < newest && ports.log.is_kept(tenant, last_seq + 1, now).await?;
                    match resume(last_seq, next_kept.then_some(last_seq + 1), newest) {
                        Resume::Reset => {
                            let reason = if last_seq > newest {
                                format!("lastSeq {last_seq} is ahead of the stream ({newest}): reload, then subscribe without lastSeq")
                            } else {
                                format!("events after lastSeq {last_seq} are no longer kept: reload, then subscribe without lastSeq")
                            };
                            post(ports, id, &ServerFrame::Reset { reason }).await;
                            return Ok(());
                        }
                        Resume::UpToDate | Resume::Replay { .. } => last_seq,
                    }
                }
            };
            // `subscribed` goes first: what the fan-out replays and sends follows it.
            post(ports, id, &ServerFrame::Subscribed { last_seq: newest }).await;
            if ports
                .connections
                .subscribe(id, Some(filter.clone()), after)
                .await?
                .is_some()
            {
                ports.log.wake(tenant, id).await?;
            }
            // After the subscription is in place: following is a nicety the events do not wait on.
            follow_devices(ports, tenant, &filter, now).await;
        }
    }
    Ok(())
}

/// Keeps the devices `subscription` follows streaming (see the module's notes). A device that
/// cannot be asked now is logged and left: the follower's next ping tries again.
async fn follow_devices(
    ports: &SocketPorts<'_>,
    tenant: &TenantId,
    subscription: &Subscription,
    now: OffsetDateTime,
) {
    // A name that cannot be a thing's is no device of anyone's.
    let things = subscription
        .followed_devices()
        .take(MAX_FOLLOWED)
        .filter_map(ThingName::parse);
    futures::stream::iter(things)
        .for_each_concurrent(FOLLOWS_IN_FLIGHT, |thing| async move {
            follow_device(ports, tenant, thing, now).await;
        })
        .await;
}

/// A few devices asked at once: a subscription to twenty is answered within the route's timeout.
const FOLLOWS_IN_FLIGHT: usize = 5;

async fn follow_device(
    ports: &SocketPorts<'_>,
    tenant: &TenantId,
    thing: ThingName,
    now: OffsetDateTime,
) {
    match follow(ports.follow, tenant, &thing, now).await {
        Ok(Following::Started(command)) => {
            tracing::info!(%thing, %command, "a followed device was asked to stream");
        }
        Ok(Following::AlreadyLive | Following::Offline | Following::Unknown) => {}
        Ok(Following::NotPublished(reason)) => {
            tracing::warn!(%thing, %reason, "the live command could not be published; the next ping tries again");
        }
        Err(error) => {
            tracing::warn!(%thing, %error, "a followed device could not be asked to stream");
        }
    }
}

pub async fn handle(
    request: &ApiGatewayWebsocketProxyRequest,
    ports: &SocketPorts<'_>,
    now: OffsetDateTime,
) -> Result<ApiGatewayProxyResponse, SocketError> {
    let context = &request.request_context;
    let id = context
        .connection_id
        .as_deref()
        .ok_or(SocketError::NoConnection)?;
    match context.event_type.as_deref() {
        Some("CONNECT") => connect(request, id, ports, now).await,
        Some("DISCONNECT") => {
            ports.connections.remove(id).await?;
            Ok(respond(200))
        }
        _ => {
            message(request.body.as_deref().unwrap_or_default(), id, ports, now).await?;
            Ok(respond(200))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellbridge_devices::commands_memory::MemoryCommands;
    use cellbridge_devices::iot_memory::RecordingPublisher;
    use cellbridge_devices::memory::MemoryDevices;
    use cellbridge_devices::testing::online_device;
    use cellbridge_events::event::{Change, EventType};
    use cellbridge_events::memory::{MemoryConnections, MemoryEventLog, RecordingPoster};
    use cellbridge_identity::principal::Identity;
    use cellbridge_identity::role::Roles;
    use cellbridge_identity::token::{
        SigningSecret, TokenAudience, TokenSigner, TokenVerifier, DEFAULT_LIFETIME,
    };
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-06 09:00 UTC);
    const CONNECT: &str = include_str!("../../../events/live-socket/connect.json");
    const SUBSCRIBE: &str = include_str!("../../../events/live-socket/subscribe.json");
    const DISCONNECT: &str = include_str!("../../../events/live-socket/disconnect.json");

    fn secret() -> SigningSecret {
        SigningSecret::new(vec![7; 32]).expect("secret")
    }

    fn token(tenant: &str) -> String {
        let identity = Identity {
            subject: "ops@acme.example".into(),
            tenant: TenantId::parse(tenant).expect("tenant"),
            roles: Roles::default(),
        };
        TokenSigner::new(&secret(), TokenAudience::default(), DEFAULT_LIFETIME)
            .issue(&identity, NOW)
            .expect("token")
            .token
    }

    struct World {
        log: MemoryEventLog,
        connections: MemoryConnections,
        poster: RecordingPoster,
        authenticator: Authenticator,
        tickets: LiveTickets,
        devices: MemoryDevices,
        commands: MemoryCommands,
        publisher: RecordingPublisher,
    }

    impl World {
        fn new() -> Self {
            Self {
                log: MemoryEventLog::default(),
                connections: MemoryConnections::default(),
                poster: RecordingPoster::default(),
                authenticator: Authenticator::new(
                    TokenVerifier::shared_secret(&secret(), TokenAudience::default()),
                    None,
                ),
                tickets: LiveTickets::new(&secret()),
                devices: MemoryDevices::default(),
                commands: MemoryCommands::default(),
                publisher: RecordingPublisher::default(),
            }
        }

        fn ports(&self) -> SocketPorts<'_> {
            SocketPorts {
                log: &self.log,
                connections: &self.connections,
                poster: &self.poster,
                authenticator: &self.authenticator,
                tickets: &self.tickets,
                follow: FollowPorts {
                    devices: &self.devices,
                    following: &self.devices,
                    commands: &self.commands,
                    publisher: &self.publisher,
                    presence_timeout: time::Duration::minutes(15),
                },
            }
        }

        async fn send(
            &self,
            sample: &str,
            edit: impl FnOnce(&mut serde_json::Value),
        ) -> ApiGatewayProxyResponse {
            self.send_at(sample, edit, NOW).await
        }

        async fn send_at(
            &self,
            sample: &str,
            edit: impl FnOnce(&mut serde_json::Value),
            now: OffsetDateTime,
        ) -> ApiGatewayProxyResponse {
            let mut event: serde_json::Value = serde_json::from_str(sample).expect("sample");
            edit(&mut event);
            let request: ApiGatewayWebsocketProxyRequest =
                serde_json::from_value(event).expect("request");
            handle(&request, &self.ports(), now).await.expect("handled")
        }

        /// The `live` commands published to `thing`.
        fn live_commands(&self, thing: &str) -> usize {
            self.publisher
                .published_to(&cellbridge_devices::topics::commands(thing))
                .iter()
                .filter(|command| command["name"] == "live")
                .count()
        }

        /// `$connect` offering `protocols` as the browser would.
        async fn connect(&self, protocols: String) -> ApiGatewayProxyResponse {
            self.send(CONNECT, |e| {
                e["headers"]["Sec-WebSocket-Protocol"] = protocols.into()
            })
            .await
        }

        async fn say(&self, body: &str) {
            self.say_at(body, NOW).await;
        }

        async fn say_at(&self, body: &str, now: OffsetDateTime) {
            self.send_at(SUBSCRIBE, |e| e["body"] = body.into(), now)
                .await;
        }
    }

    const ID: &str = "L0SM9cOFvHcCIhw=";

    #[tokio::test]
    async fn a_console_page_connects_with_a_live_ticket_while_it_is_fresh() {
        let world = World::new();
        let identity = Identity {
            subject: "ops@acme.example".into(),
            tenant: TenantId::parse("acme").expect("tenant"),
            roles: Roles::default(),
        };
        let ticket = world.tickets.issue(&identity, NOW).expect("ticket").token;
        let fresh = world.connect(format!("{SUBPROTOCOL}, {ticket}")).await;
        assert_eq!(fresh.status_code, 200);
        let connection = world.connections.get(ID).await.expect("get");
        assert_eq!(connection.map(|c| c.tenant), Some(identity.tenant));

        let stale = world
            .send_at(
                CONNECT,
                |e| {
                    e["headers"]["Sec-WebSocket-Protocol"] =
                        format!("{SUBPROTOCOL}, {ticket}").into()
                },
                NOW + cellbridge_identity::live_ticket::LIVE_TICKET_LIFETIME
                    + time::Duration::minutes(1),
            )
            .await;
        assert_eq!(stale.status_code, 401);
    }

    #[tokio::test]
    async fn a_connection_without_a_valid_token_is_refused_at_connect() {
        let world = World::new();
        let no_token = world.connect(SUBPROTOCOL.to_owned()).await;
        assert_eq!(no_token.status_code, 401);
        let forged = world
            .connect(format!("{SUBPROTOCOL}, {}x", token("acme")))
            .await;
        assert_eq!(forged.status_code, 401);
        assert_eq!(world.connections.get(ID).await.expect("get"), None);

        let good = world
            .connect(format!("{SUBPROTOCOL}, {}", token("acme")))
            .await;
        assert_eq!(good.status_code, 200);
        assert_eq!(good.headers["sec-websocket-protocol"], SUBPROTOCOL);
        let connection = world
            .connections
            .get(ID)
            .await
            .expect("get")
            .expect("recorded");
        assert_eq!(connection.tenant.as_str(), "acme");
        world.send(DISCONNECT, |_| {}).await;
        assert_eq!(world.connections.get(ID).await.expect("get"), None);
    }

    #[tokio::test]
    async fn subscribing_resumes_resets_or_names_what_is_wrong() {
        let world = World::new();
        world
            .connect(format!("{SUBPROTOCOL}, {}", token("acme")))
            .await;
        let acme = TenantId::parse("acme").expect("tenant");
        let changes = (0..4)
            .map(|i| Change {
                tenant: acme.clone(),
                kind: EventType::DevicePresence,
                subject: format!("d{i}"),
                at: NOW,
                data: serde_json::json!({}),
                source: None,
            })
            .collect();
        world
            .log
            .append(&acme, changes, NOW + time::Duration::minutes(15))
            .await
            .expect("append");

        world.say(r#"{"action": "subscribe", "lastSeq": 2}"#).await;
        let connection = world
            .connections
            .get(ID)
            .await
            .expect("get")
            .expect("recorded");
        assert!(
            connection.catching_up && connection.after == 2 && connection.subscription.is_some()
        );
        world.say(r#"{"action": "ping"}"#).await;
        world.say(r#"{"action": "dance"}"#).await;
        world.log.expire(&acme, 2);
        world.say(r#"{"action": "subscribe", "lastSeq": 1}"#).await;
        world.say(r#"{"action": "subscribe", "lastSeq": 9}"#).await;
        let kinds: Vec<String> = world
            .poster
            .frames(ID)
            .iter()
            .map(|f| {
                format!(
                    "{}:{}",
                    f["kind"].as_str().unwrap_or("?"),
                    f["field"].as_str().unwrap_or("")
                )
            })
            .collect();
        assert_eq!(
            kinds,
            ["subscribed:", "pong:", "error:action", "reset:", "reset:"]
        );
        assert_eq!(world.poster.frames(ID)[0]["lastSeq"], 4);
        let still = world
            .connections
            .get(ID)
            .await
            .expect("get")
            .expect("recorded");
        assert_eq!(
            still.after, 2,
            "a refused resume leaves the subscription as it was"
        );
    }

    #[tokio::test]
    async fn following_a_devices_telemetry_makes_it_stream_while_pings_renew_it() {
        let world = World::new();
        online_device(&world.devices, "trk-1", "acme", NOW).await;
        online_device(&world.devices, "trk-2", "acme", NOW).await;
        online_device(&world.devices, "gx-1", "globex", NOW).await;
        world
            .connect(format!("{SUBPROTOCOL}, {}", token("acme")))
            .await;

        // Presence only, or every device: nothing streams.
        world
            .say(r#"{"action": "subscribe", "filter": {"types": ["device.presence"], "devices": ["trk-1"]}}"#)
            .await;
        world.say(r#"{"action": "subscribe"}"#).await;
        assert_eq!(world.live_commands("trk-1"), 0);

        // trk-1's telemetry by name: it is asked to stream; another tenant's device is not.
        world
            .say(r#"{"action": "subscribe", "filter": {"types": ["telemetry.latest"], "devices": ["trk-1", "gx-1"]}}"#)
            .await;
        assert_eq!(world.live_commands("trk-1"), 1);
        assert_eq!(world.live_commands("gx-1"), 0, "not this tenant's");
        assert_eq!(world.live_commands("trk-2"), 0, "not named");

        // A ping a minute on renews it once less than 90 s of its window is left.
        let ping = r#"{"action": "ping"}"#;
        world.say_at(ping, NOW + time::Duration::minutes(1)).await;
        assert_eq!(world.live_commands("trk-1"), 1, "two minutes left");
        world.say_at(ping, NOW + time::Duration::minutes(2)).await;
        assert_eq!(world.live_commands("trk-1"), 2, "one minute left: renewed");

        // Unsubscribed, pings renew nothing: the window runs out by itself.
        world.say(r#"{"action": "unsubscribe"}"#).await;
        world.say_at(ping, NOW + time::Duration::minutes(4)).await;
        assert_eq!(world.live_commands("trk-1"), 2);
        let pongs = world
            .poster
            .frames(ID)
            .iter()
            .filter(|f| f["kind"] == "pong")
            .count();
        assert_eq!(pongs, 3, "every ping is answered");
    }
}
