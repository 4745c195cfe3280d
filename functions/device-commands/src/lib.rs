//! Commands to devices over HTTP: `POST /devices/{id}/commands` (operators) stores a command
//! QUEUED and, when the device is online, publishes it on `devices/<id>/commands` and marks it
//! SENT; `GET /devices/{id}/commands` and `GET /devices/{id}/commands/{commandId}` (viewers)
//! show commands newest first, each with its history. The device's acknowledgements
//! (`functions/command-ack`) and the sweep (`functions/command-sweep`) move them on; a command
//! to an offline device is published when it reconnects (`functions/device-presence`).
//!
//! Another tenant's device, and so its commands, does not exist here (404).

use cellbridge_core::store::IdempotencyClaim;
use cellbridge_core::store::{Page, PageRequest, StoreError};
use cellbridge_core::tenant::TenantId;
use cellbridge_devices::command::{
    parse_command_request, Command, CommandId, CommandStatus, MAX_REQUEST_BYTES,
};
use cellbridge_devices::delivery::{publish_command, Delivery};
use cellbridge_devices::ports::{CommandCreated, CommandStore, DevicePublisher, DeviceStore};
use cellbridge_devices::registration::ThingName;
use cellbridge_devices::tenant::TenantDevices;
pub use cellbridge_devices::views::{command_location, CommandView};
use cellbridge_edge::http::body::json_body;
use cellbridge_edge::http::caller::Caller;
use cellbridge_edge::http::idempotency;
use cellbridge_edge::http::idempotency::idempotency_key;
use cellbridge_edge::http::page_view::PageView;
use cellbridge_edge::http::paging::{allow_query, page_request};
use cellbridge_edge::http::problem::Problem;
use cellbridge_edge::http::{caller, json_response, route_key};
use cellbridge_edge::lambda::metrics;
use cellbridge_edge::lambda::metrics::Unit;
use cellbridge_identity::role::Role;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use tracing::Instrument;

/// This function's configuration, read once at cold start.
pub type Config = cellbridge_devices::wiring::CommandDelivery;

/// `presence_timeout` judges who is online (`PresenceSettings::timeout`).
pub async fn handle(
    devices: &dyn DeviceStore,
    commands: &dyn CommandStore,
    publisher: &dyn DevicePublisher,
    presence_timeout: Duration,
    request: Request,
    now: OffsetDateTime,
) -> Response<Body> {
    let ports = Ports {
        devices,
        commands,
        presence_timeout,
    };
    match respond(ports, publisher, &request, now).await {
        Ok(response) => response,
        Err(problem) => problem.into_response(),
    }
}

/// The stores, and how presence is judged.
#[derive(Clone, Copy)]
struct Ports<'a> {
    devices: &'a dyn DeviceStore,
    commands: &'a dyn CommandStore,
    presence_timeout: Duration,
}

async fn respond(
    ports: Ports<'_>,
    publisher: &dyn DevicePublisher,
    request: &Request,
    now: OffsetDateTime,
) -> Result<Response<Body>, Problem> {
    let caller = caller(request)?;
    let tenant = TenantCommands::of(ports, &caller);
    match route_key(request).as_str() {
        "POST /devices/{id}/commands" => {
            caller.require(Role::Operator)?;
            allow_query(request, &[])?;
            send(&tenant, publisher, request, now).await
        }
        "GET /devices/{id}/commands" => {
            caller.require(Role::Viewer)?;
            allow_query(request, &["limit", "cursor"])?;
            let thing = thing_name(request)?;
            let page = tenant
                .list(&thing, &page_request(request)?)
                .await?
                .ok_or_else(device_not_found)?;
            Ok(json_response(
                StatusCode::OK,
                &PageView::from_page(&page, CommandView::from),
            ))
        }
        "GET /devices/{id}/commands/{commandId}" => {
            caller.require(Role::Viewer)?;
            allow_query(request, &[])?;
            let thing = thing_name(request)?;
            let id = command_id(request)?;
            if tenant.device_online(&thing, now).await?.is_none() {
                return Err(device_not_found());
            }
            let command = tenant
                .get(&thing, &id)
                .await?
                .ok_or_else(|| Problem::not_found("this command"))?;
            Ok(json_response(StatusCode::OK, &CommandView::from(&command)))
        }
        _ => Err(Problem::not_found("this route")),
    }
}

async fn send(
    tenant: &TenantCommands<'_>,
    publisher: &dyn DevicePublisher,
    request: &Request,
    now: OffsetDateTime,
) -> Result<Response<Body>, Problem> {
    let thing = thing_name(request)?;
    let body = json_body(
        request,
        MAX_REQUEST_BYTES,
        "keep params within 8 KiB; send large data by reference (a URL the device fetches)",
    )?;
    let key = idempotency_key(request)?;
    let parsed = parse_command_request(body).map_err(|errors| {
        tracing::info!(tenant = %tenant.tenant, %thing, invalid_fields = errors.errors.len(), "command rejected");
        Problem::invalid(errors)
    })?;
    let online = tenant
        .device_online(&thing, now)
        .await?
        .ok_or_else(device_not_found)?;
    let command = Command::queued(
        thing.clone(),
        tenant.tenant.clone(),
        CommandId::new_v7(),
        &parsed,
        now,
    );
    let claim = key.map(|key| IdempotencyClaim {
        key,
        request_digest: digest(&thing, body),
    });
    let span =
        tracing::info_span!("command", tenant = %tenant.tenant, %thing, command_id = %command.id);
    store_and_deliver(tenant, publisher, command, claim, online, now)
        .instrument(span)
        .await
}

async fn store_and_deliver(
    tenant: &TenantCommands<'_>,
    publisher: &dyn DevicePublisher,
    command: Command,
    claim: Option<IdempotencyClaim>,
    online_before: bool,
    now: OffsetDateTime,
) -> Result<Response<Body>, Problem> {
    let (command, replayed) = match tenant
        .commands
        .create_command(&command, claim.as_ref())
        .await?
    {
        CommandCreated::Created => {
            tracing::info!(name = %command.name, "command queued");
            metrics::emit(&[], &[("CommandsQueued", 1.0, Unit::Count)]);
            (command, false)
        }
        CommandCreated::Replayed {
            same_request: false,
            ..
        } => {
            return Err(Problem::idempotency_key_reused(
                "a command from a different request",
            ))
        }
        CommandCreated::Replayed { existing, .. } => {
            tracing::info!(existing = %existing.id, "idempotent replay");
            (*existing, true)
        }
    };
    // A device that was offline is read again once the command is stored: the presence
    // function stores a connection before it looks for queued commands, so at least one of the
    // two sees the other, and a command is never left queued for a device that just connected.
    // One that was online gets it at once (the read would only add to the round trip).
    let online = online_before || tenant.device_online(&command.thing, now).await? == Some(true);
    // A replay finishes a hand-over an earlier attempt did not.
    let command = if online && command.status == CommandStatus::Queued {
        deliver(tenant.commands, publisher, command, now).await?
    } else {
        command
    };
    Ok(accepted(&command, replayed))
}

/// Publishes and marks SENT; a failed publish leaves the command queued for the next connection.
async fn deliver(
    commands: &dyn CommandStore,
    publisher: &dyn DevicePublisher,
    command: Command,
    now: OffsetDateTime,
) -> Result<Command, Problem> {
    match publish_command(commands, publisher, &command, now).await? {
        Delivery::Sent => Ok(command
            .after(CommandStatus::Sent, now, None)
            .unwrap_or(command)),
        Delivery::AlreadyMoved(status) => {
            tracing::info!(%status, "published; an acknowledgement was already recorded");
            Ok(commands
                .get_command(&command.thing, &command.id)
                .await?
                .unwrap_or(command))
        }
        Delivery::NotPublished(error) => {
            tracing::warn!(%error, "publishing failed; the command stays queued until the device reconnects");
            Ok(command)
        }
    }
}

fn accepted(command: &Command, replayed: bool) -> Response<Body> {
    idempotency::accepted(
        &CommandView::from(command),
        &command_location(&command.thing, &command.id),
        replayed,
    )
}

/// The thing is part of the digest: a key reused for another device is a different request.
fn digest(thing: &ThingName, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(thing.as_str().as_bytes());
    hash.update(b"\n");
    hash.update(body);
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn device_not_found() -> Problem {
    Problem::not_found("this device")
}

fn thing_name(request: &Request) -> Result<ThingName, Problem> {
    // A name that cannot be a thing's cannot exist.
    request
        .path_parameters()
        .first("id")
        .and_then(ThingName::parse)
        .ok_or_else(device_not_found)
}

fn command_id(request: &Request) -> Result<CommandId, Problem> {
    request
        .path_parameters()
        .first("commandId")
        .and_then(CommandId::parse)
        .ok_or_else(|| Problem::not_found("this command"))
}

/// The command store as one tenant sees it: only the commands of the tenant's devices.
struct TenantCommands<'a> {
    devices: TenantDevices<'a>,
    commands: &'a dyn CommandStore,
    tenant: TenantId,
    presence_timeout: Duration,
}

impl<'a> TenantCommands<'a> {
    fn of(ports: Ports<'a>, caller: &Caller) -> Self {
        Self {
            devices: TenantDevices::of(ports.devices, caller),
            commands: ports.commands,
            tenant: caller.tenant().clone(),
            presence_timeout: ports.presence_timeout,
        }
    }

    /// `None` when the device is not this tenant's; otherwise whether it is online.
    async fn device_online(
        &self,
        thing: &ThingName,
        now: OffsetDateTime,
    ) -> Result<Option<bool>, StoreError> {
        Ok(self
            .devices
            .get_device(thing)
            .await?
            .map(|device| device.presence.is_online(now, self.presence_timeout)))
    }

    async fn get(&self, thing: &ThingName, id: &CommandId) -> Result<Option<Command>, StoreError> {
        Ok(self
            .commands
            .get_command(thing, id)
            .await?
            .filter(|command| command.tenant == self.tenant))
    }

    /// `None` when the device is not this tenant's.
    async fn list(
        &self,
        thing: &ThingName,
        page: &PageRequest,
    ) -> Result<Option<Page<Command>>, StoreError> {
        if self.devices.get_device(thing).await?.is_none() {
            return Ok(None);
        }
        let mut page = self.commands.list_commands(thing, page).await?;
        page.items.retain(|command| command.tenant == self.tenant);
        Ok(Some(page))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellbridge_devices::commands_memory::MemoryCommands;
    use cellbridge_devices::iot_memory::RecordingPublisher;
    use cellbridge_devices::memory::MemoryDevices;
    use cellbridge_devices::presence::{LifecycleEvent, LifecycleKind};
    use cellbridge_devices::registration::parse_announcement;
    use cellbridge_devices::topics;
    use lambda_http::http::header;
    use lambda_http::request::from_str;
    use serde_json::{json, Value};
    use time::Duration;

    const SEND: &str = include_str!("../../../events/device-commands/send-command.json");
    const LIST: &str = include_str!("../../../events/device-commands/list-commands.json");
    const GET: &str = include_str!("../../../events/device-commands/get-command.json");

    /// A minute after the samples' time, 2026-11-22T09:00:00Z.
    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_795_338_060).expect("time")
    }

    #[derive(Default)]
    struct Ports {
        devices: MemoryDevices,
        commands: MemoryCommands,
        publisher: RecordingPublisher,
    }

    /// trk-1 (online) and trk-2 (offline) of demo, gx-1 of globex.
    async fn ports() -> Ports {
        let ports = Ports::default();
        for (thing, tenant) in [("trk-1", "demo"), ("trk-2", "demo"), ("gx-1", "globex")] {
            let body = json!({"tenant": tenant, "iccid": cellbridge_core::testing::iccid(1), "model": "TRK-200", "firmware": "2.4.1"});
            let announcement =
                parse_announcement(thing, body.to_string().as_bytes()).expect("valid");
            ports
                .devices
                .register(&announcement, now() - Duration::days(1))
                .await
                .expect("registered");
        }
        let connected = LifecycleEvent {
            kind: LifecycleKind::Connected,
            version: 1,
            at: now() - Duration::seconds(5),
        };
        for thing in ["trk-1", "gx-1"] {
            ports
                .devices
                .apply_presence(&ThingName::parse(thing).expect("name"), &connected)
                .await
                .expect("presence");
        }
        ports
    }

    struct Call<'a> {
        sample: &'a str,
        tenant: &'a str,
        roles: &'a str,
        id: &'a str,
        command: Option<&'a str>,
        body: Option<Value>,
        key: Option<&'a str>,
        query: &'a [(&'a str, &'a str)],
    }

    impl<'a> Call<'a> {
        fn new(sample: &'a str) -> Self {
            Self {
                sample,
                tenant: "demo",
                roles: "operator",
                id: "trk-1",
                command: None,
                body: None,
                key: None,
                query: &[],
            }
        }

        fn request(&self) -> Request {
            let mut value: Value = serde_json::from_str(self.sample).expect("sample");
            cellbridge_core::testing::authorize_event(&mut value, self.tenant, self.roles);
            value["pathParameters"]["id"] = json!(self.id);
            if let Some(command) = self.command {
                value["pathParameters"]["commandId"] = json!(command);
            }
            if let Some(body) = &self.body {
                value["body"] = json!(body.to_string());
            }
            match self.key {
                Some(key) => value["headers"]["idempotency-key"] = json!(key),
                None => {
                    if let Some(headers) = value["headers"].as_object_mut() {
                        headers.remove("idempotency-key");
                    }
                }
            }
            if !self.query.is_empty() {
                value["rawQueryString"] = json!(self
                    .query
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("&"));
                value["queryStringParameters"] = self
                    .query
                    .iter()
                    .map(|(k, v)| (k.to_string(), json!(v)))
                    .collect::<serde_json::Map<_, _>>()
                    .into();
            }
            from_str(&value.to_string()).expect("event")
        }
    }

    async fn call(
        ports: &Ports,
        request: Request,
    ) -> (StatusCode, Value, lambda_http::http::HeaderMap) {
        let response = handle(
            &ports.devices,
            &ports.commands,
            &ports.publisher,
            cellbridge_devices::presence::DEFAULT_PRESENCE_TIMEOUT,
            request,
            now(),
        )
        .await;
        let status = response.status();
        let headers = response.headers().clone();
        let body = serde_json::from_slice(response.body().as_ref()).unwrap_or(Value::Null);
        (status, body, headers)
    }

    fn statuses(view: &Value) -> Vec<&str> {
        view["history"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| h["status"].as_str())
            .collect()
    }

    #[tokio::test]
    async fn the_samples_send_to_an_online_device_and_show_the_history() {
        let ports = ports().await;
        let (status, sent, headers) = call(&ports, from_str(SEND).expect("sample")).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
        assert_eq!(sent["status"], "SENT");
        assert_eq!(sent["deviceId"], "trk-1");
        assert_eq!(sent["name"], "set-interval");
        assert_eq!(sent["params"], json!({"telemetrySeconds": 5}));
        assert_eq!(sent["ackTimeoutSeconds"], 30);
        assert_eq!(sent["createdAt"], "2026-11-22T09:01:00Z");
        assert_eq!(sent["expiresAt"], "2026-11-22T10:01:00Z");
        assert_eq!(statuses(&sent), ["QUEUED", "SENT"]);
        let id = sent["id"].as_str().expect("id").to_owned();
        let location = format!("/devices/trk-1/commands/{id}");
        assert_eq!(headers[header::LOCATION], location.as_str());
        assert_eq!(sent["links"]["self"], location.as_str());
        assert_eq!(
            ports.publisher.published_to(&topics::commands("trk-1")),
            [
                json!({"commandId": id, "name": "set-interval", "params": {"telemetrySeconds": 5},
                "expiresAt": "2026-11-22T10:01:00Z"})
            ]
        );

        let mut get = Call::new(GET);
        get.roles = "viewer";
        get.command = Some(&id);
        let (status, shown) = {
            let (status, shown, _) = call(&ports, get.request()).await;
            (status, shown)
        };
        assert_eq!(status, StatusCode::OK, "{shown}");
        assert_eq!(shown, sent, "the stored command is what the POST answered");

        let (status, page, _) = call(&ports, from_str(LIST).expect("sample")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["items"][0]["id"], id.as_str());
        // The sample names a command id that does not exist.
        let (status, problem, _) = call(&ports, from_str(GET).expect("sample")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
        assert_eq!(problem["detail"], "this command does not exist");
    }

    #[tokio::test]
    async fn a_command_to_an_offline_device_waits_queued() {
        let ports = ports().await;
        let mut send = Call::new(SEND);
        send.id = "trk-2";
        let (status, queued, _) = call(&ports, send.request()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
        assert_eq!(queued["status"], "QUEUED");
        assert!(queued.get("sentAt").is_none());
        assert!(ports.publisher.published().is_empty());
        assert_eq!(ports.commands.all().len(), 1);
    }

    #[tokio::test]
    async fn a_failed_publish_leaves_the_command_queued() {
        let ports = ports().await;
        ports.publisher.fail_topic(&topics::commands("trk-1"));
        let (status, queued, _) = call(&ports, Call::new(SEND).request()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
        assert_eq!(queued["status"], "QUEUED");
        assert_eq!(
            ports.commands.all()[0].status,
            CommandStatus::Queued,
            "delivered when the device reconnects"
        );
    }

    #[tokio::test]
    async fn an_idempotency_key_returns_the_same_command() {
        let ports = ports().await;
        let mut send = Call::new(SEND);
        send.id = "trk-2";
        send.key = Some("retry-1");
        let (status, first, _) = call(&ports, send.request()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{first}");
        let (status, again, headers) = call(&ports, send.request()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{again}");
        assert_eq!(again["id"], first["id"]);
        assert_eq!(headers["idempotent-replayed"], "true");
        assert_eq!(ports.commands.all().len(), 1);

        send.body = Some(json!({"name": "reboot"}));
        let (status, problem, _) = call(&ports, send.request()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        assert_eq!(problem["errors"][0]["field"], "Idempotency-Key");
        send.body = None;
        send.id = "trk-1";
        let (status, _, _) = call(&ports, send.request()).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "the same key for another device"
        );
        let mut globex = Call::new(SEND);
        globex.tenant = "globex";
        globex.id = "gx-1";
        globex.key = Some("retry-1");
        let (status, other, _) = call(&ports, globex.request()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "keys are per tenant: {other}");
        assert_ne!(other["id"], first["id"]);
        assert_eq!(ports.commands.all().len(), 2);

        send.key = Some("not a key!");
        let (status, problem, _) = call(&ports, send.request()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    }

    #[tokio::test]
    async fn a_retry_of_a_queued_command_publishes_it_once_the_device_is_online() {
        let ports = ports().await;
        ports.publisher.fail_topic(&topics::commands("trk-1"));
        let mut send = Call::new(SEND);
        send.key = Some("retry-2");
        let (_, first, _) = call(&ports, send.request()).await;
        assert_eq!(first["status"], "QUEUED");
        let ports = Ports {
            publisher: RecordingPublisher::default(),
            ..ports
        };
        let (status, again, _) = call(&ports, send.request()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{again}");
        assert_eq!(again["id"], first["id"]);
        assert_eq!(again["status"], "SENT");
        assert_eq!(ports.publisher.published().len(), 1);
    }

    #[tokio::test]
    async fn another_tenants_device_and_commands_do_not_exist() {
        let ports = ports().await;
        let (_, sent, _) = call(&ports, Call::new(SEND).request()).await;
        let id = sent["id"].as_str().expect("id").to_owned();
        let mut globex_send = Call::new(SEND);
        globex_send.tenant = "globex";
        let (status, problem, _) = call(&ports, globex_send.request()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
        assert_eq!(problem["detail"], "this device does not exist");
        for sample in [LIST, GET] {
            let mut read = Call::new(sample);
            read.tenant = "globex";
            read.roles = "admin";
            read.command = Some(&id);
            let (status, problem, _) = call(&ports, read.request()).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
        }
        let mut own_device_other_thing = Call::new(GET);
        own_device_other_thing.id = "trk-2";
        own_device_other_thing.command = Some(&id);
        let (status, _, _) = call(&ports, own_device_other_thing.request()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "a command is its device's");
        let mut bad = Call::new(GET);
        bad.command = Some("not-a-uuid");
        let (status, _, _) = call(&ports, bad.request()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(ports.commands.all().len(), 1);
        assert_eq!(ports.publisher.published().len(), 1);
    }

    #[tokio::test]
    async fn roles_and_identity_are_checked() {
        let ports = ports().await;
        let mut viewer = Call::new(SEND);
        viewer.roles = "viewer";
        let (status, problem, _) = call(&ports, viewer.request()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
        let mut value: Value = serde_json::from_str(SEND).expect("sample");
        cellbridge_core::testing::unauthorize_event(&mut value);
        let (status, _, _) = call(&ports, from_str(&value.to_string()).expect("event")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let mut list = Call::new(LIST);
        list.roles = "viewer";
        let (status, _, _) = call(&ports, list.request()).await;
        assert_eq!(status, StatusCode::OK);
        assert!(ports.commands.all().is_empty());
    }

    #[tokio::test]
    async fn bad_requests_are_refused_and_store_nothing() {
        let ports = ports().await;
        let mut send = Call::new(SEND);
        send.body = Some(
            json!({"name": "Reboot Now", "params": "x", "expiresInSeconds": 5,
            "ackTimeoutSeconds": 0, "tenant": "globex"}),
        );
        let (status, problem, _) = call(&ports, send.request()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        let mut fields: Vec<&str> = problem["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            [
                "ackTimeoutSeconds",
                "expiresInSeconds",
                "name",
                "params",
                "tenant"
            ]
        );

        let mut value: Value = serde_json::from_str(SEND).expect("sample");
        value["body"] = json!("{not json");
        let (status, _, _) = call(&ports, from_str(&value.to_string()).expect("event")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        value["body"] =
            json!(json!({"name": "x", "params": {"blob": "a".repeat(20_000)}}).to_string());
        let (status, _, _) = call(&ports, from_str(&value.to_string()).expect("event")).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        let mut value: Value = serde_json::from_str(SEND).expect("sample");
        value["headers"]["content-type"] = json!("text/plain");
        let (status, _, _) = call(&ports, from_str(&value.to_string()).expect("event")).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        send.body = None;
        send.query = &[("force", "1")];
        let (status, _, _) = call(&ports, send.request()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        send.query = &[];
        send.id = "bad/name";
        let (status, _, _) = call(&ports, send.request()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(ports.commands.all().is_empty());
        assert!(ports.publisher.published().is_empty());
    }

    #[tokio::test]
    async fn lists_are_newest_first_and_follow_the_cursor() {
        let ports = ports().await;
        let mut sent = Vec::new();
        for n in 0..5 {
            let mut send = Call::new(SEND);
            send.id = "trk-2";
            send.body = Some(json!({"name": format!("step-{n}")}));
            let (_, view, _) = call(&ports, send.request()).await;
            sent.push(view["id"].as_str().expect("id").to_owned());
        }
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("limit", "2")];
            if let Some(c) = cursor.as_deref() {
                query.push(("cursor", c));
            }
            let mut list = Call::new(LIST);
            list.id = "trk-2";
            list.query = &query;
            let (status, page, _) = call(&ports, list.request()).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            seen.extend(
                page["items"]
                    .as_array()
                    .expect("items")
                    .iter()
                    .filter_map(|c| c["id"].as_str().map(str::to_owned)),
            );
            match page["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        sent.reverse();
        assert_eq!(seen, sent);
        let mut list = Call::new(LIST);
        list.query = &[("cursor", "garbage")];
        let (status, _, _) = call(&ports, list.request()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
}
