//! The events API Gateway sends a WebSocket API's Lambda proxy integration: `CONNECT` with the
//! upgrade request's headers and query string, `MESSAGE` with the frame, `DISCONNECT` with the
//! close status. `aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest` reads all three.

use crate::local_aws::ACCOUNT_ID;
use axum::http::HeaderMap;
use base64::Engine as _;
use serde_json::{json, Map, Value as Json};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// `requestContext.apiId` of the local WebSocket API (an API id is ten lower-case characters).
pub const LOCAL_WEBSOCKET_API_ID: &str = "localwsapi";

/// What every event of one connection says about it.
#[derive(Debug, Clone)]
pub struct ConnectionContext {
    pub connection_id: String,
    pub connected_at: OffsetDateTime,
    pub source_ip: String,
    pub user_agent: String,
    /// The `Host` the client connected to, with its port: functions that build their callback
    /// URL as `{domainName}/{stage}` then reach the local management API.
    pub domain_name: String,
    pub stage: String,
}

/// What the client sent in one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Text(String),
    Binary(Vec<u8>),
}

/// An id shaped as API Gateway's connection and request ids: 11 random bytes, base64
/// (`L0SM9cOFvHcCIhw=`); its `/`, `+` and `=` must be percent-encoded in the management API's
/// paths, as the SDKs do.
pub fn new_id() -> String {
    let random = uuid::Uuid::new_v4();
    base64::engine::general_purpose::STANDARD.encode(&random.as_bytes()[..11])
}

fn epoch_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// `09/Feb/2019:01:45:37 +0000`, as in `requestContext.requestTime`.
pub fn request_time(t: OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
    );
    t.format(format).unwrap_or_default()
}

fn request_context(
    ctx: &ConnectionContext,
    route_key: &str,
    event_type: &str,
    request_id: &str,
    now: OffsetDateTime,
) -> Map<String, Json> {
    let mut fields = Map::new();
    let mut put = |k: &str, v: Json| {
        fields.insert(k.to_owned(), v);
    };
    put("routeKey", json!(route_key));
    put("eventType", json!(event_type));
    put("extendedRequestId", json!(new_id()));
    put("requestTime", json!(request_time(now)));
    put("messageDirection", json!("IN"));
    put("stage", json!(ctx.stage));
    put("connectedAt", json!(epoch_ms(ctx.connected_at)));
    put("requestTimeEpoch", json!(epoch_ms(now)));
    put(
        "identity",
        json!({ "sourceIp": ctx.source_ip, "userAgent": ctx.user_agent }),
    );
    put("requestId", json!(request_id));
    put("domainName", json!(ctx.domain_name));
    put("connectionId", json!(ctx.connection_id));
    put("apiId", json!(LOCAL_WEBSOCKET_API_ID));
    put("accountId", json!(ACCOUNT_ID));
    fields
}

/// The `$connect` event: the upgrade request's headers (names as browsers write them) and
/// query string, plus the `X-Forwarded-*` headers API Gateway adds.
pub fn connect_event(
    ctx: &ConnectionContext,
    headers: &HeaderMap,
    query: Option<&str>,
    local_port: u16,
    request_id: &str,
    now: OffsetDateTime,
) -> Json {
    let mut single: BTreeMap<String, String> = BTreeMap::new();
    let mut multi: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        let name = header_case(name.as_str());
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        // Like REST API events: `headers` keeps the last value, `multiValueHeaders` all of them.
        single.insert(name.clone(), value.clone());
        multi.entry(name).or_default().push(value);
    }
    let forwarded = [
        ("X-Forwarded-For", ctx.source_ip.clone()),
        ("X-Forwarded-Port", local_port.to_string()),
        ("X-Forwarded-Proto", "http".to_owned()),
    ];
    for (name, value) in forwarded {
        if !single.contains_key(name) {
            single.insert(name.to_owned(), value.clone());
            multi.insert(name.to_owned(), vec![value]);
        }
    }

    let mut query_single: BTreeMap<String, String> = BTreeMap::new();
    let mut query_multi: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode(k, true), percent_decode(v, true));
        query_single.insert(k.clone(), v.clone());
        query_multi.entry(k).or_default().push(v);
    }

    let context = request_context(ctx, super::spec::CONNECT, "CONNECT", request_id, now);
    let mut event = json!({
        "headers": single,
        "multiValueHeaders": multi,
        "requestContext": context,
        "isBase64Encoded": false,
    });
    if !query_single.is_empty() {
        event["queryStringParameters"] = json!(query_single);
        event["multiValueQueryStringParameters"] = json!(query_multi);
    }
    event
}

/// A message's event: text as it came, binary base64-encoded.
pub fn message_event(
    ctx: &ConnectionContext,
    route_key: &str,
    payload: &Payload,
    request_id: &str,
    now: OffsetDateTime,
) -> Json {
    let mut context = request_context(ctx, route_key, "MESSAGE", request_id, now);
    context.insert("messageId".into(), json!(new_id()));
    let (body, base64) = match payload {
        Payload::Text(text) => (text.clone(), false),
        Payload::Binary(bytes) => (
            base64::engine::general_purpose::STANDARD.encode(bytes),
            true,
        ),
    };
    json!({
        "requestContext": context,
        "body": body,
        "isBase64Encoded": base64,
    })
}

/// The `$disconnect` event, with the close status and reason.
pub fn disconnect_event(
    ctx: &ConnectionContext,
    status_code: u16,
    reason: &str,
    request_id: &str,
    now: OffsetDateTime,
) -> Json {
    let mut context = request_context(ctx, super::spec::DISCONNECT, "DISCONNECT", request_id, now);
    context.insert("disconnectStatusCode".into(), json!(status_code));
    context.insert("disconnectReason".into(), json!(reason));
    let headers = json!({
        "Host": ctx.domain_name,
        "X-Forwarded-For": ctx.source_ip,
    });
    let multi = json!({
        "Host": [ctx.domain_name],
        "X-Forwarded-For": [ctx.source_ip],
    });
    json!({
        "headers": headers,
        "multiValueHeaders": multi,
        "requestContext": context,
        "isBase64Encoded": false,
    })
}

/// HTTP/1 servers see header names lower-cased; API Gateway passes them as the client wrote
/// them, which for browsers is `Sec-WebSocket-Protocol`, `User-Agent`...
pub fn header_case(lower: &str) -> String {
    lower
        .split('-')
        .map(|word| match word {
            "websocket" => "WebSocket".to_owned(),
            _ => {
                let mut chars = word.chars();
                match chars.next() {
                    Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                    None => String::new(),
                }
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Shared with the HTTP API: both decode what a client percent-encoded the same way.
pub(crate) use crate::api_gateway::percent_decode;

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;

    fn ctx() -> ConnectionContext {
        ConnectionContext {
            connection_id: "L0SM9cOFvHcCIhw=".into(),
            connected_at: time::macros::datetime!(2026-03-12 19:03:58 UTC),
            source_ip: "127.0.0.1".into(),
            user_agent: "test".into(),
            domain_name: "127.0.0.1:4510".into(),
            stage: "live".into(),
        }
    }

    #[test]
    fn connect_event_is_what_lambda_reads() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "127.0.0.1:4510".parse().expect("value"));
        headers.insert(
            "sec-websocket-protocol",
            "token, v1".parse().expect("value"),
        );
        headers.append("x-multi", "1".parse().expect("value"));
        headers.append("x-multi", "2".parse().expect("value"));
        let now = time::macros::datetime!(2026-03-12 19:03:59 UTC);
        let e = connect_event(&ctx(), &headers, Some("a=1&b=x+y&a=2"), 4510, "rid", now);
        assert_eq!(e["headers"]["Sec-WebSocket-Protocol"], "token, v1");
        assert_eq!(e["headers"]["X-Multi"], "2");
        assert_eq!(e["multiValueHeaders"]["X-Multi"], json!(["1", "2"]));
        assert_eq!(e["headers"]["X-Forwarded-Port"], "4510");
        assert_eq!(e["queryStringParameters"], json!({"a": "2", "b": "x y"}));
        assert_eq!(e["multiValueQueryStringParameters"]["a"], json!(["1", "2"]));
        let c = &e["requestContext"];
        assert_eq!(c["requestTime"], "12/Mar/2026:19:03:59 +0000");
        assert_eq!(c["connectedAt"], 1_773_342_238_000_i64);
        assert_eq!(c["requestTimeEpoch"], 1_773_342_239_000_i64);

        let typed: ApiGatewayWebsocketProxyRequest =
            serde_json::from_value(e).expect("aws_lambda_events reads it");
        let c = &typed.request_context;
        assert_eq!(c.route_key.as_deref(), Some("$connect"));
        assert_eq!(c.event_type.as_deref(), Some("CONNECT"));
        assert_eq!(c.connection_id.as_deref(), Some("L0SM9cOFvHcCIhw="));
        assert_eq!(c.message_direction.as_deref(), Some("IN"));
        assert_eq!(c.stage.as_deref(), Some("live"));
        assert_eq!(c.apiid.as_deref(), Some(LOCAL_WEBSOCKET_API_ID));
        assert_eq!(c.identity.source_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(
            typed
                .headers
                .get("sec-websocket-protocol")
                .map(|v| v.as_bytes()),
            Some(&b"token, v1"[..])
        );
        assert!(!typed.is_base64_encoded);
    }

    #[test]
    fn message_and_disconnect_events_are_what_lambda_reads() {
        let now = OffsetDateTime::now_utc();
        let e = message_event(&ctx(), "subscribe", &Payload::Text("{}".into()), "r", now);
        let typed: ApiGatewayWebsocketProxyRequest =
            serde_json::from_value(e).expect("message event");
        assert_eq!(typed.body.as_deref(), Some("{}"));
        assert_eq!(typed.request_context.event_type.as_deref(), Some("MESSAGE"));
        assert!(typed.request_context.message_id.is_some());

        let e = message_event(
            &ctx(),
            "$default",
            &Payload::Binary(vec![0xff, 0]),
            "r",
            now,
        );
        assert_eq!(e["body"], "/wA=");
        assert_eq!(e["isBase64Encoded"], true);

        let e = disconnect_event(&ctx(), 1001, "Going away", "r", now);
        let typed: ApiGatewayWebsocketProxyRequest =
            serde_json::from_value(e).expect("disconnect event");
        let c = &typed.request_context;
        assert_eq!(c.event_type.as_deref(), Some("DISCONNECT"));
        assert_eq!(c.disconnect_status_code, Some(1001));
        assert_eq!(c.disconnect_reason.as_deref(), Some("Going away"));
    }

    #[test]
    fn ids_and_names() {
        let id = new_id();
        assert_eq!(id.len(), 16);
        assert!(id.ends_with('='));
        assert_eq!(
            header_case("sec-websocket-protocol"),
            "Sec-WebSocket-Protocol"
        );
        assert_eq!(header_case("user-agent"), "User-Agent");
        assert_eq!(percent_decode("a%3D%2Fb+c%zz", false), "a=/b+c%zz");
    }
}
