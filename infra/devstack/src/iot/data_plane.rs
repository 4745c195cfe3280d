//! The IoT data plane's HTTP API on 127.0.0.1, for functions built with
//! `cellbridge::common::aws::iot_data` (`IOT_DATA_ENDPOINT` points here). It answers what
//! aws-sdk-iotdataplane sends:
//!
//! - `Publish`: `POST /topics/{topic}?qos=0|1` (the topic one percent-encoded path segment, the
//!   payload the raw body), published into the broker;
//! - `DeleteConnection`: `DELETE /connections/{clientId}`, a server-initiated disconnect.
//!
//! Anything else (shadows, retained messages) answers 404 with a JSON error naming what is
//! served. Errors carry `x-amzn-ErrorType` so the SDK reports the right error kind.

use super::broker::{valid_topic_name, Broker, BrokerHandle};
use crate::server_task::ServerTask;
use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use rumqttc::mqttbytes::QoS;
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;

pub struct DataPlane {
    addr: SocketAddr,
    server: ServerTask,
}

fn error(status: StatusCode, error_type: &str, message: impl Into<String>) -> Response {
    let message = message.into();
    let mut response = (
        status,
        Json(json!({ "message": message, "__type": error_type })),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(error_type) {
        response.headers_mut().insert("x-amzn-ErrorType", value);
    }
    response
}

async fn publish(
    State(broker): State<BrokerHandle>,
    Path(topic): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let qos = match query.get("qos").map(String::as_str) {
        None | Some("0") => QoS::AtMostOnce,
        Some("1") => QoS::AtLeastOnce,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestException",
                format!("qos must be 0 or 1, not {other:?}"),
            )
        }
    };
    if !valid_topic_name(&topic) {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestException",
            format!("{topic:?} is not a topic name: it must not be empty or hold + or #"),
        );
    }
    if body.len() > broker.max_payload_bytes() {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLargeException",
            format!(
                "the payload of {} bytes is over the limit of {} bytes",
                body.len(),
                broker.max_payload_bytes()
            ),
        );
    }
    match broker.publish(&topic, body, qos) {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({"message": "OK", "traceId": uuid::Uuid::new_v4().to_string()})),
        )
            .into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, "InvalidRequestException", e),
    }
}

async fn delete_connection(
    State(broker): State<BrokerHandle>,
    Path(client_id): Path<String>,
) -> Response {
    if broker.disconnect(&client_id).await {
        StatusCode::OK.into_response()
    } else {
        error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            format!("no MQTT client {client_id:?} is connected"),
        )
    }
}

async fn unknown(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "ResourceNotFoundException",
        format!(
            "the local IoT data plane does not serve {method} {}; it serves Publish (POST /topics/{{topic}}) and DeleteConnection (DELETE /connections/{{clientId}})",
            uri.path()
        ),
    )
}

impl DataPlane {
    /// Serves the data plane on 127.0.0.1:`port` (0 picks a free one), publishing into `broker`.
    pub async fn start(broker: &Broker, port: u16) -> Result<Self> {
        let router = Router::new()
            .route("/topics/{*topic}", post(publish))
            .route("/connections/{client_id}", delete(delete_connection))
            .fallback(unknown)
            .with_state(broker.handle());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| {
                format!("the IoT data plane cannot listen on 127.0.0.1:{port}; is it in use? Choose another port (0 = any free one)")
            })?;
        let addr = listener.local_addr()?;
        let server = ServerTask::spawn("the local IoT data plane", |stopped| async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stopped)
                .await
        });
        tracing::info!("IoT data plane (Publish) listening on http://{addr}");
        Ok(Self { addr, server })
    }

    pub fn address(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:<port>`: the value of `IOT_DATA_ENDPOINT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}
