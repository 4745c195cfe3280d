//! The management API (`@connections`) as aws-sdk-apigatewaymanagement calls it, with the
//! stage's URL as its endpoint:
//!
//! - `PostToConnection`: `POST /<stage>/@connections/{connectionId}`, the raw body one frame
//!   (text when it is UTF-8, else binary); 200;
//! - `GetConnection`: `GET`, 200 with `connectedAt`, `identity`, `lastActiveAt`;
//! - `DeleteConnection`: `DELETE`, closes the connection; 204.
//!
//! The connection id is one percent-encoded path segment (its `=`, `+`, `/` are encoded by the
//! SDK). Errors carry `x-amzn-ErrorType`, which the SDK turns into its error kinds: 410
//! `GoneException` for a connection that is closed or never was, 413
//! `PayloadTooLargeException`. Requests are not authenticated.

use super::events::{percent_decode, Payload};
use super::session::{CloseReason, QueueError};
use super::{Counters, Shared, MESSAGE_LIMIT};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::sync::Arc;
use time::OffsetDateTime;

/// Everything on the port that is not the handshake.
pub(super) async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    body: Body,
) -> Response {
    let Some(connection_id) = connection_path(&shared.spec.stage, uri.path()) else {
        let stage = &shared.spec.stage;
        return error(
            StatusCode::NOT_FOUND,
            "NotFoundException",
            format!(
                "no route for {method} {}: this port serves the WebSocket API's handshake on \
                 /{stage} and its management API on /{stage}/@connections/{{connectionId}}",
                uri.path()
            ),
        );
    };
    let mut response = match method {
        Method::POST => post(&shared, &connection_id, body).await,
        Method::GET => get(&shared, &connection_id),
        Method::DELETE => delete(&shared, &connection_id),
        other => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowedException",
            format!("@connections takes POST, GET or DELETE, not {other}"),
        ),
    };
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        response.headers_mut().insert("x-amzn-RequestId", id);
    }
    response
}

/// The connection id of `/<stage>/@connections/<id>` (the `@` literal or encoded), decoded.
fn connection_path(stage: &str, path: &str) -> Option<String> {
    let rest = path
        .strip_prefix('/')?
        .strip_prefix(stage)?
        .strip_prefix('/')?;
    let encoded = rest
        .strip_prefix("@connections/")
        .or_else(|| rest.strip_prefix("%40connections/"))?;
    if encoded.is_empty() || encoded.contains('/') {
        return None;
    }
    Some(percent_decode(encoded, false))
}

async fn post(shared: &Shared, connection_id: &str, body: Body) -> Response {
    let Ok(data) = axum::body::to_bytes(body, MESSAGE_LIMIT).await else {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLargeException",
            format!("the data is over the limit of {MESSAGE_LIMIT} bytes"),
        );
    };
    let Some(connection) = shared.connection(connection_id) else {
        return gone(shared, connection_id);
    };
    let payload = match String::from_utf8(data.to_vec()) {
        Ok(text) => Payload::Text(text),
        Err(e) => Payload::Binary(e.into_bytes()),
    };
    match connection.enqueue(payload) {
        Ok(()) => {
            Counters::add(&shared.counters.frames_posted);
            StatusCode::OK.into_response()
        }
        Err(QueueError::Full) => {
            // The client does not read what it is sent: cut it rather than let posts pile up.
            tracing::warn!(connection = %connection_id, "cut a client whose send queue is full");
            shared.cut(connection_id, CloseReason::SlowClient);
            Counters::add(&shared.counters.slow_clients_cut);
            gone(shared, connection_id)
        }
        Err(QueueError::Closed) => gone(shared, connection_id),
    }
}

fn get(shared: &Shared, connection_id: &str) -> Response {
    let Some(connection) = shared.connection(connection_id) else {
        return gone(shared, connection_id);
    };
    let ctx = &connection.ctx;
    Json(json!({
        "connectedAt": iso(ctx.connected_at),
        "identity": { "sourceIp": ctx.source_ip, "userAgent": ctx.user_agent },
        "lastActiveAt": iso(connection.last_active()),
    }))
    .into_response()
}

fn delete(shared: &Shared, connection_id: &str) -> Response {
    if shared.cut(connection_id, CloseReason::Deleted) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        gone(shared, connection_id)
    }
}

/// `2026-03-12T19:03:58.123Z`, as the SDK reads timestamps.
fn iso(t: OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(format)
        .unwrap_or_default()
}

fn gone(shared: &Shared, connection_id: &str) -> Response {
    Counters::add(&shared.counters.gone);
    error(
        StatusCode::GONE,
        "GoneException",
        format!("connection {connection_id} is not open"),
    )
}

fn error(status: StatusCode, error_type: &str, message: String) -> Response {
    let mut response = (status, Json(json!({ "message": message }))).into_response();
    if let Ok(value) = HeaderValue::from_str(error_type) {
        response.headers_mut().insert("x-amzn-ErrorType", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            connection_path("live", "/live/@connections/L0SM9cOFvHcCIhw%3D").as_deref(),
            Some("L0SM9cOFvHcCIhw=")
        );
        assert_eq!(
            connection_path("live", "/live/%40connections/a%2Fb%2B").as_deref(),
            Some("a/b+")
        );
        assert_eq!(connection_path("live", "/live/@connections/a/b"), None);
        assert_eq!(connection_path("live", "/other/@connections/a"), None);
        assert_eq!(connection_path("live", "/live/@connections/"), None);
        assert_eq!(connection_path("live", "/lively/@connections/a"), None);
    }

    #[test]
    fn timestamps() {
        let t = time::macros::datetime!(2026-03-12 19:03:58.123456 UTC);
        assert_eq!(iso(t), "2026-03-12T19:03:58.123Z");
    }
}
