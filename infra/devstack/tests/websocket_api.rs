//! The local WebSocket API with real clients: tokio-tungstenite WebSockets (and a raw TCP one
//! for malformed frames), aws-sdk-apigatewaymanagement for the management API, and an
//! in-process fake in place of the routes' function, recording every event it gets.
//!
//! Timeouts here only keep a broken test from hanging; nothing asserts how long anything took.
//! The idle and duration limits are tested with short limits, checking only that and how the
//! connection ends.

use anyhow::{bail, Context, Result};
use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use aws_sdk_apigatewaymanagement::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_apigatewaymanagement::operation::delete_connection::DeleteConnectionError;
use aws_sdk_apigatewaymanagement::operation::get_connection::GetConnectionError;
use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use devstack::lambda_watch::InvokeError;
use devstack::template::{Resources, Template};
use devstack::websocket_api::{RouteInvoker, WebSocketApi, WebSocketApiOptions};
use futures::future::BoxFuture;
use futures::{FutureExt as _, SinkExt as _, StreamExt as _};
use serde_json::{json, Value as Json};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Mutex};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const WAIT: Duration = Duration::from_secs(10);

/// The template's WebSocket API in the shape template.yaml declares it, with `$default` or not.
fn template(with_default: bool) -> Template {
    let default_route = if with_default {
        r#"
  DefaultRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Live
      RouteKey: $default
      Target: !Sub "integrations/${Integration}"
"#
    } else {
        ""
    };
    let text = format!(
        r#"
Resources:
  SocketFunction:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties: {{ Binary: socket }}
    Properties:
      CodeUri: functions/socket
      Timeout: 10
  Live:
    Type: AWS::ApiGatewayV2::Api
    Properties:
      Name: !Sub "${{AWS::StackName}}-live"
      ProtocolType: WEBSOCKET
      RouteSelectionExpression: "$request.body.action"
  Integration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Live
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub "arn:${{AWS::Partition}}:apigateway:${{AWS::Region}}:lambda:path/2015-03-31/functions/${{SocketFunction.Arn}}/invocations"
  ConnectRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Live
      RouteKey: $connect
      AuthorizationType: NONE
      Target: !Sub "integrations/${{Integration}}"
  DisconnectRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Live
      RouteKey: $disconnect
      Target: !Sub "integrations/${{Integration}}"
  SubscribeRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Live
      RouteKey: subscribe
      Target: !Sub "integrations/${{Integration}}"
  PingRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Live
      RouteKey: ping
      Target: !Sub "integrations/${{Integration}}"
{default_route}
  Stage:
    Type: AWS::ApiGatewayV2::Stage
    Properties:
      ApiId: !Ref Live
      StageName: live
"#
    );
    Template::parse(&text, Path::new(".")).expect("the test template parses")
}

type Answer = Arc<dyn Fn(&Json) -> BoxFuture<'static, Result<Json, InvokeError>> + Send + Sync>;

/// The routes' function: records each event, then answers as the test says.
#[derive(Clone)]
struct FakeFunction {
    events: mpsc::UnboundedSender<Json>,
    answer: Answer,
}

impl RouteInvoker for FakeFunction {
    fn invoke(
        &self,
        _binary: &str,
        event: Json,
        _timeout: Duration,
    ) -> BoxFuture<'static, Result<Json, InvokeError>> {
        let answer = (self.answer)(&event);
        let _ = self.events.send(event);
        answer
    }
}

/// A function accepting every connection and answering `{"statusCode": 200}`.
fn accept_all() -> Answer {
    Arc::new(|_| async { Ok(json!({ "statusCode": 200 })) }.boxed())
}

struct Events(mpsc::UnboundedReceiver<Json>);

impl Events {
    async fn next(&mut self) -> Result<Json> {
        tokio::time::timeout(WAIT, self.0.recv())
            .await
            .context("no event")?
            .context("the function is gone")
    }

    /// The next event of `event_type` (`CONNECT`, `MESSAGE`, `DISCONNECT`), skipping others.
    async fn next_of(&mut self, event_type: &str) -> Result<Json> {
        loop {
            let event = self.next().await?;
            if event["requestContext"]["eventType"] == event_type {
                return Ok(event);
            }
        }
    }

    fn pending(&mut self) -> Vec<Json> {
        let mut out = Vec::new();
        while let Ok(event) = self.0.try_recv() {
            out.push(event);
        }
        out
    }
}

async fn start(
    with_default: bool,
    answer: Answer,
    opts: WebSocketApiOptions,
) -> Result<(WebSocketApi, Events)> {
    let template = template(with_default);
    let functions = template.functions(&Resources::planned(&template))?;
    let (events, received) = mpsc::unbounded_channel();
    let api = WebSocketApi::start(&template, &functions, FakeFunction { events, answer }, opts)
        .await?
        .context("the template declares a WebSocket API")?;
    Ok((api, Events(received)))
}

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn connect(url: &str) -> Result<Client> {
    let (client, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .context("connecting timed out")??;
    Ok(client)
}

/// The next text or close message (control frames skipped).
async fn receive(client: &mut Client) -> Result<Message> {
    loop {
        let message = tokio::time::timeout(WAIT, client.next())
            .await
            .context("nothing received")?
            .context("the connection ended without a close frame")??;
        if !matches!(message, Message::Ping(_) | Message::Pong(_)) {
            return Ok(message);
        }
    }
}

fn management(api: &WebSocketApi) -> aws_sdk_apigatewaymanagement::Client {
    let config = aws_sdk_apigatewaymanagement::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "test"))
        .endpoint_url(api.management_endpoint())
        .build();
    aws_sdk_apigatewaymanagement::Client::from_conf(config)
}

fn connection_id(event: &Json) -> Result<String> {
    event["requestContext"]["connectionId"]
        .as_str()
        .map(str::to_owned)
        .context("the event has no connectionId")
}

fn close_code(message: &Message) -> Option<u16> {
    match message {
        Message::Close(Some(frame)) => Some(u16::from(frame.code)),
        _ => None,
    }
}

#[tokio::test]
async fn a_refused_connect_never_opens() -> Result<()> {
    // Refuses without a token, fails for `token=boom`, accepts the rest.
    let answer: Answer = Arc::new(|event| {
        let token = event["queryStringParameters"]["token"]
            .as_str()
            .map(str::to_owned);
        async move {
            match token.as_deref() {
                None => Ok(json!({ "statusCode": 401, "body": "no token" })),
                Some("boom") => Err(InvokeError::Function {
                    function: "socket".into(),
                    error_type: "Panic".into(),
                    message: "boom".into(),
                }),
                Some(_) => Ok(json!({ "statusCode": 200 })),
            }
        }
        .boxed()
    });
    let (api, mut events) = start(true, answer, WebSocketApiOptions::default()).await?;

    let refused = tokio_tungstenite::connect_async(api.url()).await;
    match refused {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => bail!("expected a 401 handshake, got {other:?}"),
    }
    let failed = tokio_tungstenite::connect_async(format!("{}?token=boom", api.url())).await;
    match failed {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 500),
        other => bail!("expected a 500 handshake, got {other:?}"),
    }
    let refused_id = connection_id(&events.next_of("CONNECT").await?)?;
    events.next_of("CONNECT").await?;

    // The management API never knew the refused connection.
    let sdk = management(&api);
    let err = sdk
        .get_connection()
        .connection_id(&refused_id)
        .send()
        .await
        .expect_err("gone");
    assert!(matches!(
        err.into_service_error(),
        GetConnectionError::GoneException(_)
    ));

    // An accepted connection still works, and its $disconnect is the only one.
    let mut client = connect(&format!("{}?token=good", api.url())).await?;
    events.next_of("CONNECT").await?;
    client.close(None).await?;
    let disconnect = events.next_of("DISCONNECT").await?;
    api.settled().await;
    assert!(events.pending().is_empty());
    assert_ne!(connection_id(&disconnect)?, refused_id);
    let stats = api.stats();
    assert_eq!((stats.refused, stats.accepted, stats.open), (2, 1, 0));
    api.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn connect_sees_the_handshake_and_selects_the_subprotocol() -> Result<()> {
    // Selects the protocol that is not the token, as the live-socket function does.
    let answer: Answer = Arc::new(|event| {
        let connect = event["requestContext"]["eventType"] == "CONNECT";
        async move {
            if connect {
                Ok(json!({
                    "statusCode": 200,
                    "headers": { "Sec-WebSocket-Protocol": "live.v1" }
                }))
            } else {
                Ok(json!({ "statusCode": 200 }))
            }
        }
        .boxed()
    });
    let (api, mut events) = start(true, answer, WebSocketApiOptions::default()).await?;
    let mut request = format!("{}?tenant=t1&tenant=t2&x=a+b", api.url()).into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "token.abc, live.v1".parse()?);
    request
        .headers_mut()
        .insert("User-Agent", "test-client".parse()?);
    let (mut client, response) = tokio_tungstenite::connect_async(request).await?;
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.as_bytes()),
        Some(&b"live.v1"[..])
    );

    let event = events.next_of("CONNECT").await?;
    assert_eq!(
        event["headers"]["Sec-WebSocket-Protocol"],
        "token.abc, live.v1"
    );
    assert_eq!(event["queryStringParameters"]["x"], "a b");
    assert_eq!(
        event["multiValueQueryStringParameters"]["tenant"],
        json!(["t1", "t2"])
    );
    assert_eq!(event["isBase64Encoded"], false);
    let typed: ApiGatewayWebsocketProxyRequest = serde_json::from_value(event.clone())?;
    let ctx = &typed.request_context;
    assert_eq!(ctx.route_key.as_deref(), Some("$connect"));
    assert_eq!(ctx.event_type.as_deref(), Some("CONNECT"));
    assert_eq!(ctx.stage.as_deref(), Some("live"));
    assert_eq!(ctx.message_direction.as_deref(), Some("IN"));
    assert_eq!(ctx.identity.source_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(ctx.identity.user_agent.as_deref(), Some("test-client"));
    assert_eq!(
        ctx.domain_name.as_deref(),
        Some(api.addr().to_string().as_str())
    );
    assert!(ctx.connected_at > 0 && ctx.request_time_epoch >= ctx.connected_at);
    for field in ["requestId", "extendedRequestId", "requestTime", "apiId"] {
        assert!(event["requestContext"][field].is_string(), "{field}");
    }
    let id = ctx.connection_id.clone().context("connectionId")?;
    assert_eq!(api.connection_ids(), [id]);

    client.close(None).await?;
    events.next_of("DISCONNECT").await?;
    api.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn messages_are_routed_in_order() -> Result<()> {
    // The first message's function is slow: the next ones still come after it.
    let answer: Answer = Arc::new(|event| {
        let slow = event["body"].as_str().is_some_and(|b| b.contains("slow"));
        async move {
            if slow {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(json!({ "statusCode": 200, "body": "not sent back" }))
        }
        .boxed()
    });
    let (api, mut events) = start(true, answer, WebSocketApiOptions::default()).await?;
    let mut client = connect(&api.url()).await?;
    let id = connection_id(&events.next_of("CONNECT").await?)?;

    let sent = [
        r#"{"action": "subscribe", "slow": true}"#,
        r#"{"action": "ping"}"#,
        r#"{"action": "unknown"}"#,
        "not json",
        r#"{"action": 7}"#,
        r#"{"action": "$connect"}"#,
    ];
    for text in sent {
        client.send(Message::text(text)).await?;
    }
    client.send(Message::binary(vec![0xff, 0x00])).await?;
    let mut routed = Vec::new();
    for _ in 0..sent.len() + 1 {
        let event = events.next_of("MESSAGE").await?;
        assert_eq!(connection_id(&event)?, id);
        let typed: ApiGatewayWebsocketProxyRequest = serde_json::from_value(event.clone())?;
        assert_eq!(typed.request_context.event_type.as_deref(), Some("MESSAGE"));
        routed.push((
            event["requestContext"]["routeKey"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            event["body"].as_str().unwrap_or("").to_owned(),
            event["isBase64Encoded"] == true,
        ));
    }
    let expected: Vec<(String, String, bool)> = [
        ("subscribe", sent[0], false),
        ("ping", sent[1], false),
        ("$default", sent[2], false),
        ("$default", sent[3], false),
        ("$default", sent[4], false),
        ("$default", sent[5], false),
        ("$default", "/wA=", true),
    ]
    .into_iter()
    .map(|(k, b, base64)| (k.to_owned(), b.to_owned(), base64))
    .collect();
    assert_eq!(routed, expected);
    assert_eq!(api.stats().messages_in, 7);

    // The function's answers were not sent back: the next frame is the close.
    api.disconnect(&id);
    let close = receive(&mut client).await?;
    assert_eq!(close_code(&close), Some(1001), "{close:?}");
    let disconnect = events.next_of("DISCONNECT").await?;
    assert_eq!(disconnect["requestContext"]["disconnectStatusCode"], 1001);
    api.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn without_default_unmatched_messages_are_forbidden() -> Result<()> {
    let (api, mut events) = start(false, accept_all(), WebSocketApiOptions::default()).await?;
    let mut client = connect(&api.url()).await?;
    let id = connection_id(&events.next_of("CONNECT").await?)?;
    client.send(Message::text(r#"{"action": "nope"}"#)).await?;
    let reply = receive(&mut client).await?;
    let reply: Json = serde_json::from_str(reply.to_text()?)?;
    assert_eq!(reply["message"], "Forbidden");
    assert_eq!(reply["connectionId"], id.as_str());
    assert!(reply["requestId"].is_string());
    // A matching route still runs.
    client.send(Message::text(r#"{"action": "ping"}"#)).await?;
    let event = events.next_of("MESSAGE").await?;
    assert_eq!(event["requestContext"]["routeKey"], "ping");
    api.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn functions_reach_clients_through_the_management_api() -> Result<()> {
    // `ping` answers `pong` through the SDK, from inside the route, as a function would.
    let endpoint: Arc<Mutex<Option<aws_sdk_apigatewaymanagement::Client>>> =
        Arc::new(Mutex::new(None));
    let sdk_for_function = endpoint.clone();
    let answer: Answer = Arc::new(move |event| {
        let ping = event["requestContext"]["routeKey"] == "ping";
        let id = event["requestContext"]["connectionId"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let sdk = sdk_for_function.clone();
        async move {
            if ping {
                let sdk = sdk.lock().await.clone().context("no client").map_err(|e| {
                    InvokeError::Function {
                        function: "socket".into(),
                        error_type: "Setup".into(),
                        message: e.to_string(),
                    }
                })?;
                let posted = sdk
                    .post_to_connection()
                    .connection_id(id)
                    .data(Blob::new(r#"{"type":"pong"}"#))
                    .send()
                    .await;
                if let Err(e) = posted {
                    return Err(InvokeError::Function {
                        function: "socket".into(),
                        error_type: "Post".into(),
                        message: format!("{e:?}"),
                    });
                }
            }
            Ok(json!({ "statusCode": 200 }))
        }
        .boxed()
    });
    let (api, mut events) = start(true, answer, WebSocketApiOptions::default()).await?;
    let sdk = management(&api);
    *endpoint.lock().await = Some(sdk.clone());

    let mut client = connect(&api.url()).await?;
    let id = connection_id(&events.next_of("CONNECT").await?)?;

    sdk.post_to_connection()
        .connection_id(&id)
        .data(Blob::new("hello"))
        .send()
        .await?;
    assert_eq!(receive(&mut client).await?, Message::text("hello"));
    sdk.post_to_connection()
        .connection_id(&id)
        .data(Blob::new(vec![0xff, 0x00]))
        .send()
        .await?;
    assert_eq!(
        receive(&mut client).await?,
        Message::binary(vec![0xff, 0x00])
    );

    client.send(Message::text(r#"{"action": "ping"}"#)).await?;
    assert_eq!(
        receive(&mut client).await?,
        Message::text(r#"{"type":"pong"}"#)
    );

    let info = sdk.get_connection().connection_id(&id).send().await?;
    assert!(info.connected_at().is_some() && info.last_active_at().is_some());
    let identity = info.identity().context("identity")?;
    assert_eq!(identity.source_ip(), Some("127.0.0.1"));

    let too_large = sdk
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new(vec![b'x'; 128 * 1024 + 1]))
        .send()
        .await
        .expect_err("too large");
    assert!(matches!(
        too_large.into_service_error(),
        PostToConnectionError::PayloadTooLargeException(_)
    ));

    // The client leaves: $disconnect runs, then the connection is gone for the SDK.
    client.close(None).await?;
    let disconnect = events.next_of("DISCONNECT").await?;
    assert_eq!(connection_id(&disconnect)?, id);
    assert_eq!(disconnect["requestContext"]["disconnectStatusCode"], 1005);
    let typed: ApiGatewayWebsocketProxyRequest = serde_json::from_value(disconnect)?;
    assert_eq!(
        typed.request_context.route_key.as_deref(),
        Some("$disconnect")
    );
    let gone = sdk
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new("late"))
        .send()
        .await
        .expect_err("gone");
    assert!(
        matches!(
            gone.into_service_error(),
            PostToConnectionError::GoneException(_)
        ),
        "posting to a closed connection is GoneException"
    );
    let gone = sdk
        .delete_connection()
        .connection_id(&id)
        .send()
        .await
        .expect_err("gone");
    assert!(matches!(
        gone.into_service_error(),
        DeleteConnectionError::GoneException(_)
    ));

    // DeleteConnection closes an open connection from the server's side.
    let mut second = connect(&api.url()).await?;
    let second_id = connection_id(&events.next_of("CONNECT").await?)?;
    sdk.delete_connection()
        .connection_id(&second_id)
        .send()
        .await?;
    let close = receive(&mut second).await?;
    assert_eq!(close_code(&close), Some(1000), "{close:?}");
    let disconnect = events.next_of("DISCONNECT").await?;
    assert_eq!(connection_id(&disconnect)?, second_id);

    let stats = api.stats();
    assert_eq!(stats.frames_posted, 3);
    assert_eq!(stats.gone, 2);
    assert_eq!(stats.open, 0);
    api.shutdown().await;
    Ok(())
}

/// A WebSocket handshake request, for clients written by hand.
fn handshake(api: &WebSocketApi) -> String {
    format!(
        "GET /live HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        api.addr()
    )
}

/// Opens a WebSocket by hand, to send what no client library would.
async fn raw_connect(api: &WebSocketApi) -> Result<TcpStream> {
    let mut tcp = TcpStream::connect(api.addr()).await?;
    tcp.write_all(handshake(api).as_bytes()).await?;
    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(WAIT, tcp.read(&mut byte)).await??;
        if n == 0 {
            bail!("the server closed during the handshake: {response:?}");
        }
        response.push(byte[0]);
    }
    let response = String::from_utf8_lossy(&response);
    if !response.starts_with("HTTP/1.1 101") {
        bail!("no upgrade: {response}");
    }
    Ok(tcp)
}

#[tokio::test]
async fn a_malformed_frame_only_ends_its_own_connection() -> Result<()> {
    let (api, mut events) = start(true, accept_all(), WebSocketApiOptions::default()).await?;
    let sdk = management(&api);
    let mut good = connect(&api.url()).await?;
    let good_id = connection_id(&events.next_of("CONNECT").await?)?;
    let mut bad = raw_connect(&api).await?;
    let bad_id = connection_id(&events.next_of("CONNECT").await?)?;

    // A masked frame with the reserved opcode 0x3.
    bad.write_all(&[0x83, 0x80, 1, 2, 3, 4]).await?;
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, bad.read_to_end(&mut rest))
        .await
        .context("the server kept the broken connection open")??;
    // A close frame with 1002 (protocol error), then the end of the connection.
    assert_eq!(rest.first(), Some(&0x88), "{rest:?}");
    assert_eq!(rest.get(2..4), Some(&1002u16.to_be_bytes()[..]), "{rest:?}");
    let disconnect = events.next_of("DISCONNECT").await?;
    assert_eq!(connection_id(&disconnect)?, bad_id);
    assert_eq!(disconnect["requestContext"]["disconnectStatusCode"], 1002);

    // The other connection goes on both ways.
    good.send(Message::text(r#"{"action": "subscribe"}"#))
        .await?;
    let event = events.next_of("MESSAGE").await?;
    assert_eq!(connection_id(&event)?, good_id);
    sdk.post_to_connection()
        .connection_id(&good_id)
        .data(Blob::new("still here"))
        .send()
        .await?;
    assert_eq!(receive(&mut good).await?, Message::text("still here"));

    // So does it after a message over API Gateway's 32 KiB frame limit ends a third one.
    let mut big = connect(&api.url()).await?;
    let big_id = connection_id(&events.next_of("CONNECT").await?)?;
    big.send(Message::text("x".repeat(40 * 1024))).await?;
    let disconnect = events.next_of("DISCONNECT").await?;
    assert_eq!(connection_id(&disconnect)?, big_id);
    assert_eq!(disconnect["requestContext"]["disconnectStatusCode"], 1009);
    good.send(Message::text(r#"{"action": "ping"}"#)).await?;
    let event = events.next_of("MESSAGE").await?;
    assert_eq!(event["requestContext"]["routeKey"], "ping");
    assert_eq!(api.connection_ids(), [good_id]);
    api.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_client_leaving_during_connect_still_gets_its_disconnect() -> Result<()> {
    // $connect waits until the test lets it accept.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let gate_for_function = gate.clone();
    let answer: Answer = Arc::new(move |event| {
        let connect = event["requestContext"]["eventType"] == "CONNECT";
        let gate = gate_for_function.clone();
        async move {
            if connect {
                if let Ok(permit) = gate.acquire().await {
                    permit.forget();
                }
            }
            Ok(json!({ "statusCode": 200 }))
        }
        .boxed()
    });
    let (api, mut events) = start(true, answer, WebSocketApiOptions::default()).await?;
    let mut tcp = TcpStream::connect(api.addr()).await?;
    tcp.write_all(handshake(&api).as_bytes()).await?;
    let id = connection_id(&events.next_of("CONNECT").await?)?;
    drop(tcp);
    gate.add_permits(1);
    // The function accepted a connection that never opened: it hears of its end all the same.
    let disconnect = events.next_of("DISCONNECT").await?;
    assert_eq!(connection_id(&disconnect)?, id);
    assert_eq!(disconnect["requestContext"]["disconnectStatusCode"], 1006);
    api.settled().await;
    assert_eq!(api.stats().open, 0);
    api.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn idle_and_long_connections_are_closed() -> Result<()> {
    let idle = WebSocketApiOptions {
        idle_timeout: Duration::from_millis(100),
        ..WebSocketApiOptions::default()
    };
    let (api, mut events) = start(true, accept_all(), idle).await?;
    let mut client = connect(&api.url()).await?;
    let close = receive(&mut client).await?;
    assert_eq!(close_code(&close), Some(1001), "{close:?}");
    let disconnect = events.next_of("DISCONNECT").await?;
    assert_eq!(
        disconnect["requestContext"]["disconnectReason"],
        "Going away"
    );
    api.shutdown().await;

    let long = WebSocketApiOptions {
        max_connection_duration: Duration::from_millis(100),
        ..WebSocketApiOptions::default()
    };
    let (api, mut events) = start(true, accept_all(), long).await?;
    let mut client = connect(&api.url()).await?;
    let close = receive(&mut client).await?;
    assert_eq!(close_code(&close), Some(1001), "{close:?}");
    events.next_of("DISCONNECT").await?;
    api.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_client_that_does_not_read_is_cut() -> Result<()> {
    let opts = WebSocketApiOptions {
        send_queue: 2,
        ..WebSocketApiOptions::default()
    };
    let (api, mut events) = start(true, accept_all(), opts).await?;
    let sdk = management(&api);
    // Connected, but never reads: the socket buffers fill, then the queue.
    let _client = connect(&api.url()).await?;
    let id = connection_id(&events.next_of("CONNECT").await?)?;
    let chunk = vec![b'x'; 64 * 1024];
    let mut outcome = None;
    for _ in 0..10_000 {
        let posted = sdk
            .post_to_connection()
            .connection_id(&id)
            .data(Blob::new(chunk.clone()))
            .send()
            .await;
        if let Err(e) = posted {
            outcome = Some(e.into_service_error());
            break;
        }
    }
    assert!(
        matches!(outcome, Some(PostToConnectionError::GoneException(_))),
        "{outcome:?}"
    );
    let disconnect = events.next_of("DISCONNECT").await?;
    assert_eq!(disconnect["requestContext"]["disconnectStatusCode"], 1008);
    assert_eq!(api.stats().slow_clients_cut, 1);
    api.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn shutdown_closes_connections_and_runs_their_disconnect() -> Result<()> {
    // Bound first, as the stack does to give the functions the endpoint, then served.
    let template = template(true);
    let functions = template.functions(&Resources::planned(&template))?;
    let bound = WebSocketApi::bind(&template, &functions, WebSocketApiOptions::default())
        .await?
        .context("the template declares a WebSocket API")?;
    let endpoint = bound.management_endpoint();
    let (sender, received) = mpsc::unbounded_channel();
    let function = FakeFunction {
        events: sender,
        answer: accept_all(),
    };
    let api = bound.serve(function);
    let mut events = Events(received);
    assert_eq!(api.management_endpoint(), endpoint);
    assert_eq!(api.api_logical_id(), "Live");
    let mut a = connect(&api.url()).await?;
    let mut b = connect(&api.url()).await?;
    events.next_of("CONNECT").await?;
    events.next_of("CONNECT").await?;
    assert_eq!(api.stats().open, 2);
    let lines = api.summary_lines();
    assert!(lines[0].contains(&api.url()), "{lines:?}");
    assert!(lines
        .iter()
        .any(|l| l.contains("$connect") && l.contains("socket")));
    api.shutdown().await;
    for client in [&mut a, &mut b] {
        assert_eq!(close_code(&receive(client).await?), Some(1001));
    }
    let disconnects = events
        .pending()
        .into_iter()
        .filter(|e| e["requestContext"]["eventType"] == "DISCONNECT")
        .count();
    assert_eq!(disconnects, 2);
    Ok(())
}
