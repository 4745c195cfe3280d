//! A command's life: stored (QUEUED), published to the device (SENT), acknowledged
//! (DELIVERED, then SUCCESSFUL or FAILED), or given up (TIMEOUT: sent but not answered in time;
//! EXPIRED: never sent before its deadline, e.g. the device stayed offline).
//!
//! A status only moves forward, so a re-delivered acknowledgement (MQTT QoS 1) or one that
//! overtakes the SENT write changes nothing it should not.
//!
//! Also here: the API's request (`parse_command_request`), the stored command and its history
//! (`Command`, whose `after` is the one rule both command stores apply), the message a device
//! gets and the acknowledgement it sends back (`parse_ack`).

use crate::registration::ThingName;
use cellbridge_core::tenant::TenantId;
use cellbridge_core::validation::ValidationErrors;
use cellbridge_core::validation::{json_object, reject_unknown, BodyLimits};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CommandStatus {
    Queued,
    Sent,
    Delivered,
    Successful,
    Failed,
    Timeout,
    Expired,
}

impl CommandStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Sent => "SENT",
            Self::Delivered => "DELIVERED",
            Self::Successful => "SUCCESSFUL",
            Self::Failed => "FAILED",
            Self::Timeout => "TIMEOUT",
            Self::Expired => "EXPIRED",
        }
    }

    pub fn is_final(self) -> bool {
        self.rank() == 3
    }

    fn rank(self) -> u8 {
        match self {
            Self::Queued => 0,
            Self::Sent => 1,
            Self::Delivered => 2,
            Self::Successful | Self::Failed | Self::Timeout | Self::Expired => 3,
        }
    }

    /// Whether `self` may become `next`: forward only, nothing after a final status.
    pub fn may_become(self, next: CommandStatus) -> bool {
        next.rank() > self.rank()
    }
}

/// What a device answers on its acknowledgement topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckStatus {
    Delivered,
    Successful,
    Failed,
}

impl AckStatus {
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "delivered" | "received" => Some(Self::Delivered),
            "successful" | "success" | "succeeded" => Some(Self::Successful),
            "failed" | "failure" | "rejected" => Some(Self::Failed),
            _ => None,
        }
    }

    pub fn status(self) -> CommandStatus {
        match self {
            Self::Delivered => CommandStatus::Delivered,
            Self::Successful => CommandStatus::Successful,
            Self::Failed => CommandStatus::Failed,
        }
    }
}

/// Deadlines of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// Not sent by then (device offline): EXPIRED.
    pub expires_at: OffsetDateTime,
    /// Sent but not acknowledged within this: TIMEOUT.
    pub ack_timeout: Duration,
}

/// What the sweep makes of a command still open at `now`, if anything.
pub fn swept(
    status: CommandStatus,
    sent_at: Option<OffsetDateTime>,
    deadlines: &Deadlines,
    now: OffsetDateTime,
) -> Option<CommandStatus> {
    match status {
        CommandStatus::Queued if now >= deadlines.expires_at => Some(CommandStatus::Expired),
        CommandStatus::Sent | CommandStatus::Delivered
            if sent_at.is_some_and(|sent| now >= sent + deadlines.ack_timeout) =>
        {
            Some(CommandStatus::Timeout)
        }
        _ => None,
    }
}

impl std::fmt::Display for CommandStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl CommandStatus {
    pub const ALL: [CommandStatus; 7] = [
        Self::Queued,
        Self::Sent,
        Self::Delivered,
        Self::Successful,
        Self::Failed,
        Self::Timeout,
        Self::Expired,
    ];

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

// ------------------------------------------------------------------------------------------------
// Identifiers and bounds.

/// A command's id: a UUID v7, so ids sort by creation time (newest-first lists, and the queued
/// commands of a thing are found among its recent ids only). Always in canonical lowercase form,
/// since it is part of a storage key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandId(String);

impl CommandId {
    pub fn new_v7() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// Any UUID, normalised; `None` for anything else (an id that cannot exist).
    pub fn parse(text: &str) -> Option<Self> {
        uuid::Uuid::parse_str(text)
            .ok()
            .map(|id| Self(id.hyphenated().to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The smallest id a UUID v7 made at `at` or later can have: the hex of its millisecond
    /// timestamp as the id's first 12 digits.
    pub fn lower_bound_at(at: OffsetDateTime) -> String {
        let ms =
            u64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0) & 0xffff_ffff_ffff;
        format!("{:08x}-{:04x}", ms >> 16, ms & 0xffff)
    }
}

impl std::fmt::Display for CommandId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Command names: what the device firmware dispatches on.
pub const MAX_NAME_LEN: usize = 64;
/// `params` as compact JSON; MQTT messages to a device should stay small (cellular data costs).
pub const MAX_PARAMS_BYTES: usize = 8 * 1024;
/// The whole request body: the params and a little more.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
pub const DEFAULT_EXPIRES_IN: Duration = Duration::hours(1);
pub const MIN_EXPIRES_IN: Duration = Duration::seconds(10);
/// A week: no queued command lives longer, which bounds where its thing's queue is looked for.
pub const MAX_EXPIRES_IN: Duration = Duration::weeks(1);
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::seconds(30);
pub const MIN_ACK_TIMEOUT: Duration = Duration::seconds(1);
pub const MAX_ACK_TIMEOUT: Duration = Duration::hours(1);
/// What a device says about an outcome is kept to this many characters.
pub const MAX_DETAIL_CHARS: usize = 512;

/// Params can be structured, so they may nest deeper than the other small bodies.
const REQUEST_LIMITS: BodyLimits = BodyLimits {
    max_depth: 8,
    max_array_len: 256,
};

// ------------------------------------------------------------------------------------------------
// The request of `POST /devices/{id}/commands`.

#[derive(Debug, Clone, PartialEq)]
pub struct CommandRequest {
    pub name: String,
    pub params: Map<String, Value>,
    pub expires_in: Duration,
    pub ack_timeout: Duration,
}

/// Parses a command request; every field at fault is reported, unknown ones included.
pub fn parse_command_request(body: &[u8]) -> Result<CommandRequest, ValidationErrors> {
    let object = json_object(body, &REQUEST_LIMITS)?;
    let mut errors = ValidationErrors::default();
    reject_unknown(
        &object,
        "",
        &["name", "params", "expiresInSeconds", "ackTimeoutSeconds"],
        &mut errors,
    );
    let name = match object.get("name") {
        None | Some(Value::Null) => {
            errors.push("name", "is required");
            None
        }
        Some(Value::String(name)) if valid_name(name) => Some(name.clone()),
        Some(Value::String(_)) => {
            errors.push(
                "name",
                format!("must be 1 to {MAX_NAME_LEN} of a-z, 0-9, '.', '_', '-'"),
            );
            None
        }
        Some(_) => {
            errors.push("name", "must be a string");
            None
        }
    };
    let params = match object.get("params") {
        None | Some(Value::Null) => Some(Map::new()),
        Some(Value::Object(params)) => {
            let size = serde_json::to_vec(params).map_or(usize::MAX, |b| b.len());
            if size > MAX_PARAMS_BYTES {
                errors.push(
                    "params",
                    format!("must be at most {MAX_PARAMS_BYTES} bytes as JSON (is {size})"),
                );
                None
            } else {
                Some(params.clone())
            }
        }
        Some(_) => {
            errors.push("params", "must be a JSON object");
            None
        }
    };
    let expires_in = seconds(
        &object,
        "expiresInSeconds",
        DEFAULT_EXPIRES_IN,
        MIN_EXPIRES_IN..=MAX_EXPIRES_IN,
        &mut errors,
    );
    let ack_timeout = seconds(
        &object,
        "ackTimeoutSeconds",
        DEFAULT_ACK_TIMEOUT,
        MIN_ACK_TIMEOUT..=MAX_ACK_TIMEOUT,
        &mut errors,
    );
    match (name, params, expires_in, ack_timeout) {
        (Some(name), Some(params), Some(expires_in), Some(ack_timeout)) if errors.is_empty() => {
            Ok(CommandRequest {
                name,
                params,
                expires_in,
                ack_timeout,
            })
        }
        _ => Err(errors),
    }
}

fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

fn seconds(
    object: &Map<String, Value>,
    field: &str,
    default: Duration,
    range: std::ops::RangeInclusive<Duration>,
    errors: &mut ValidationErrors,
) -> Option<Duration> {
    let value = match object.get(field) {
        None | Some(Value::Null) => return Some(default),
        Some(value) => value,
    };
    let duration = value.as_i64().map(Duration::seconds);
    match duration {
        Some(duration) if range.contains(&duration) => Some(duration),
        _ => {
            errors.push(
                field,
                format!(
                    "must be a whole number of seconds from {} to {}",
                    range.start().whole_seconds(),
                    range.end().whole_seconds()
                ),
            );
            None
        }
    }
}

// ------------------------------------------------------------------------------------------------
// A stored command.

/// One status a command reached, when, and what the device said about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub status: CommandStatus,
    pub at: OffsetDateTime,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub thing: ThingName,
    pub id: CommandId,
    /// The tenant of the device when the command was made; the API shows it to no other.
    pub tenant: TenantId,
    pub name: String,
    pub params: Map<String, Value>,
    pub status: CommandStatus,
    pub created_at: OffsetDateTime,
    /// When it was published to the device (or, when an ack overtook that write, acknowledged).
    pub sent_at: Option<OffsetDateTime>,
    pub deadlines: Deadlines,
    /// Every status it reached, oldest first; the last one is the current status.
    pub history: Vec<HistoryEntry>,
}

impl Command {
    /// A new command, QUEUED at `now`.
    pub fn queued(
        thing: ThingName,
        tenant: TenantId,
        id: CommandId,
        request: &CommandRequest,
        now: OffsetDateTime,
    ) -> Self {
        let now = whole_ms(now);
        Self {
            thing,
            id,
            tenant,
            name: request.name.clone(),
            params: request.params.clone(),
            status: CommandStatus::Queued,
            created_at: now,
            sent_at: None,
            deadlines: Deadlines {
                expires_at: now + request.expires_in,
                ack_timeout: request.ack_timeout,
            },
            history: vec![HistoryEntry {
                status: CommandStatus::Queued,
                at: now,
                detail: None,
            }],
        }
    }

    pub fn updated_at(&self) -> OffsetDateTime {
        self.history.last().map_or(self.created_at, |h| h.at)
    }

    /// The command after moving to `to` at `at`, or `None` when that would not be forward (a
    /// duplicate or late acknowledgement, a SENT write an acknowledgement overtook).
    pub fn after(
        &self,
        to: CommandStatus,
        at: OffsetDateTime,
        detail: Option<&str>,
    ) -> Option<Self> {
        if !self.status.may_become(to) {
            return None;
        }
        let at = whole_ms(at);
        let acknowledged = matches!(
            to,
            CommandStatus::Sent
                | CommandStatus::Delivered
                | CommandStatus::Successful
                | CommandStatus::Failed
        );
        let mut next = self.clone();
        next.status = to;
        if acknowledged && next.sent_at.is_none() {
            // An ack that overtook the SENT write proves the command reached the device; its
            // time starts the ack timeout so the sweep can still find it.
            next.sent_at = Some(at);
        }
        next.history.push(HistoryEntry {
            status: to,
            at,
            detail: detail.map(bounded_detail),
        });
        Some(next)
    }

    /// When the sweep should look at it next: the expiry while queued, the ack deadline once
    /// sent; `None` once final.
    pub fn due_at(&self) -> Option<OffsetDateTime> {
        match self.status {
            CommandStatus::Queued => Some(self.deadlines.expires_at),
            CommandStatus::Sent | CommandStatus::Delivered => {
                Some(self.sent_at.map_or(self.deadlines.expires_at, |sent| {
                    sent + self.deadlines.ack_timeout
                }))
            }
            _ => None,
        }
    }

    /// What the sweep makes of it at `now`, if anything.
    pub fn swept(&self, now: OffsetDateTime) -> Option<CommandStatus> {
        swept(self.status, self.sent_at, &self.deadlines, now)
    }

    /// Queued and not expired at `now`: still to be published when its device is online.
    pub fn deliverable(&self, now: OffsetDateTime) -> bool {
        self.status == CommandStatus::Queued && now < self.deadlines.expires_at
    }

    /// The MQTT message on [`crate::topics::commands`]:
    /// `{"commandId", "name", "params", "expiresAt"}` (RFC 3339).
    pub fn device_message(&self) -> Vec<u8> {
        let message = serde_json::json!({
            "commandId": self.id.as_str(),
            "name": self.name,
            "params": self.params,
            "expiresAt": self.deadlines.expires_at.format(&Rfc3339).unwrap_or_default(),
        });
        // A Value always serializes.
        serde_json::to_vec(&message).unwrap_or_default()
    }
}

/// Stores keep milliseconds; commands are made with no finer times, so what is read back equals
/// what was written.
fn whole_ms(at: OffsetDateTime) -> OffsetDateTime {
    at.replace_nanosecond(at.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap_or(at)
}

fn bounded_detail(detail: &str) -> String {
    detail
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_DETAIL_CHARS)
        .collect()
}

// ------------------------------------------------------------------------------------------------
// Acknowledgements, as the topic rule hands them over.

/// An acknowledgement from `devices/<thing>/commands/ack`, with the rule's `thingName`
/// (`topic(2)`) and `receivedAt` (`timestamp()`, ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub thing: ThingName,
    pub command_id: CommandId,
    pub status: AckStatus,
    pub detail: Option<String>,
    pub received_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("the message is not a JSON object")]
    NotAnObject,
    #[error("thingName is missing or not a thing name")]
    ThingName,
    #[error("commandId is missing or not a command id")]
    CommandId,
    #[error("status is missing or not one of delivered, successful, failed")]
    Status,
}

pub fn parse_ack(message: &Value) -> Result<Ack, AckError> {
    let object = message.as_object().ok_or(AckError::NotAnObject)?;
    let text = |name: &str| object.get(name).and_then(Value::as_str);
    let thing = text("thingName")
        .and_then(ThingName::parse)
        .ok_or(AckError::ThingName)?;
    let command_id = text("commandId")
        .and_then(CommandId::parse)
        .ok_or(AckError::CommandId)?;
    let status = text("status")
        .and_then(AckStatus::parse)
        .ok_or(AckError::Status)?;
    let detail = match object.get("detail") {
        None | Some(Value::Null) => None,
        Some(Value::String(detail)) => Some(bounded_detail(detail)),
        // Structured details are kept as their JSON text.
        Some(other) => Some(bounded_detail(&other.to_string())),
    };
    let received_at = object
        .get("receivedAt")
        .and_then(Value::as_i64)
        .and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok());
    Ok(Ack {
        thing,
        command_id,
        status,
        detail,
        received_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use CommandStatus::*;

    #[test]
    fn statuses_only_move_forward() {
        assert!(Queued.may_become(Sent));
        assert!(Sent.may_become(Delivered));
        assert!(Delivered.may_become(Successful));
        assert!(
            Queued.may_become(Successful),
            "an ack that overtakes the SENT write"
        );
        assert!(!Delivered.may_become(Sent), "a late SENT write");
        assert!(!Delivered.may_become(Delivered), "a duplicate ack");
        for done in [Successful, Failed, Timeout, Expired] {
            assert!(done.is_final());
            for next in [
                Queued, Sent, Delivered, Successful, Failed, Timeout, Expired,
            ] {
                assert!(!done.may_become(next), "{done:?} -> {next:?}");
            }
        }
    }

    #[test]
    fn the_sweep_times_out_sent_commands_and_expires_queued_ones() {
        let sent = datetime!(2026-11-22 09:00 UTC);
        let deadlines = Deadlines {
            expires_at: sent + Duration::hours(1),
            ack_timeout: Duration::seconds(30),
        };
        assert_eq!(
            swept(Sent, Some(sent), &deadlines, sent + Duration::seconds(29)),
            None
        );
        assert_eq!(
            swept(Sent, Some(sent), &deadlines, sent + Duration::seconds(30)),
            Some(Timeout)
        );
        assert_eq!(
            swept(
                Delivered,
                Some(sent),
                &deadlines,
                sent + Duration::minutes(5)
            ),
            Some(Timeout)
        );
        assert_eq!(
            swept(Queued, None, &deadlines, sent + Duration::minutes(59)),
            None,
            "waits for the device"
        );
        assert_eq!(
            swept(Queued, None, &deadlines, sent + Duration::hours(1)),
            Some(Expired)
        );
        assert_eq!(
            swept(
                Successful,
                Some(sent),
                &deadlines,
                sent + Duration::hours(2)
            ),
            None
        );
    }

    #[test]
    fn acknowledgements_are_read_leniently() {
        assert_eq!(AckStatus::parse("SUCCESSFUL"), Some(AckStatus::Successful));
        assert_eq!(
            AckStatus::parse("received").map(AckStatus::status),
            Some(Delivered)
        );
        assert_eq!(
            AckStatus::parse("rejected").map(AckStatus::status),
            Some(Failed)
        );
        assert_eq!(AckStatus::parse("maybe"), None);
    }

    fn request(body: serde_json::Value) -> Result<CommandRequest, ValidationErrors> {
        parse_command_request(body.to_string().as_bytes())
    }

    fn fields(errors: &ValidationErrors) -> Vec<&str> {
        errors.errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn a_command_request_has_defaults_and_every_bad_field_is_named() {
        let minimal = request(serde_json::json!({"name": "reboot"})).expect("valid");
        assert_eq!(minimal.params, Map::new());
        assert_eq!(minimal.expires_in, DEFAULT_EXPIRES_IN);
        assert_eq!(minimal.ack_timeout, DEFAULT_ACK_TIMEOUT);
        let full = request(
            serde_json::json!({"name": "fw.update-2", "params": {"url": "https://x", "n": [1, 2]},
            "expiresInSeconds": 604800, "ackTimeoutSeconds": 1}),
        )
        .expect("valid");
        assert_eq!(full.expires_in, MAX_EXPIRES_IN);
        assert_eq!(full.ack_timeout, Duration::seconds(1));

        let bad = request(
            serde_json::json!({"name": "Reboot!", "params": [1], "expiresInSeconds": 9,
            "ackTimeoutSeconds": 3601, "tenant": "globex"}),
        )
        .unwrap_err();
        let mut named = fields(&bad);
        named.sort_unstable();
        assert_eq!(
            named,
            [
                "ackTimeoutSeconds",
                "expiresInSeconds",
                "name",
                "params",
                "tenant"
            ]
        );
        assert_eq!(
            fields(&request(serde_json::json!({})).unwrap_err()),
            ["name"]
        );
        assert_eq!(
            fields(&request(serde_json::json!({"name": "x".repeat(65)})).unwrap_err()),
            ["name"]
        );
        assert_eq!(
            fields(
                &request(serde_json::json!({"name": "x", "expiresInSeconds": 60.5})).unwrap_err()
            ),
            ["expiresInSeconds"]
        );
        let big =
            serde_json::json!({"name": "x", "params": {"blob": "a".repeat(MAX_PARAMS_BYTES)}});
        assert_eq!(fields(&request(big).unwrap_err()), ["params"]);
        assert_eq!(
            fields(&parse_command_request(b"[1]").unwrap_err()),
            [""],
            "not an object"
        );
    }

    fn command(now: OffsetDateTime) -> Command {
        Command::queued(
            ThingName::parse("trk-1").expect("name"),
            TenantId::parse("demo").expect("tenant"),
            CommandId::new_v7(),
            &request(serde_json::json!({"name": "reboot", "ackTimeoutSeconds": 30}))
                .expect("valid"),
            now,
        )
    }

    #[test]
    fn a_command_moves_forward_and_keeps_its_history() {
        let t0 = datetime!(2026-11-22 09:00 UTC);
        let queued = command(t0);
        assert_eq!(queued.due_at(), Some(t0 + DEFAULT_EXPIRES_IN));
        assert!(queued.deliverable(t0));
        assert!(!queued.deliverable(t0 + DEFAULT_EXPIRES_IN));
        let sent = queued
            .after(Sent, t0 + Duration::seconds(1), None)
            .expect("forward");
        assert_eq!(sent.sent_at, Some(t0 + Duration::seconds(1)));
        assert_eq!(sent.due_at(), Some(t0 + Duration::seconds(31)));
        let done = sent
            .after(Successful, t0 + Duration::seconds(2), Some("ok\u{7}"))
            .expect("forward");
        assert_eq!(done.due_at(), None);
        assert_eq!(
            done.history.iter().map(|h| h.status).collect::<Vec<_>>(),
            [Queued, Sent, Successful]
        );
        assert_eq!(
            done.history[2].detail.as_deref(),
            Some("ok"),
            "no control characters"
        );
        assert_eq!(done.updated_at(), t0 + Duration::seconds(2));
        assert_eq!(done.after(Successful, t0, None), None, "a duplicate ack");
        assert_eq!(done.after(Timeout, t0, None), None, "final");

        let overtaken = queued
            .after(Delivered, t0 + Duration::seconds(3), None)
            .expect("an ack before the SENT write");
        assert_eq!(overtaken.sent_at, Some(t0 + Duration::seconds(3)));
        assert_eq!(overtaken.due_at(), Some(t0 + Duration::seconds(33)));
        assert_eq!(overtaken.after(Sent, t0 + Duration::seconds(4), None), None);
        assert_eq!(overtaken.swept(t0 + Duration::seconds(33)), Some(Timeout));
        let long = "x".repeat(MAX_DETAIL_CHARS + 10);
        let failed = overtaken.after(Failed, t0, Some(&long)).expect("forward");
        assert_eq!(
            failed.history[2].detail.as_ref().map(|d| d.chars().count()),
            Some(MAX_DETAIL_CHARS)
        );
    }

    #[test]
    fn the_device_message_follows_the_topic_contract() {
        let t0 = datetime!(2026-11-22 09:00 UTC);
        let command = command(t0);
        let message: serde_json::Value =
            serde_json::from_slice(&command.device_message()).expect("JSON");
        assert_eq!(
            message,
            serde_json::json!({"commandId": command.id.as_str(), "name": "reboot", "params": {},
                "expiresAt": "2026-11-22T10:00:00Z"})
        );
    }

    #[test]
    fn ids_sort_by_time_and_the_lower_bound_is_exact() {
        let at = datetime!(2026-11-22 09:00:00.123 UTC);
        let secs = u64::try_from(at.unix_timestamp()).expect("after 1970");
        let id = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            secs,
            at.nanosecond(),
        ))
        .to_string();
        assert!(id.as_str() >= CommandId::lower_bound_at(at).as_str());
        assert!(id.as_str() < CommandId::lower_bound_at(at + Duration::milliseconds(1)).as_str());
        assert!(id.as_str() > CommandId::lower_bound_at(at - Duration::milliseconds(1)).as_str());
        let upper = CommandId::parse(&id.to_uppercase()).expect("a UUID");
        assert_eq!(upper.as_str(), id, "normalised");
        assert_eq!(CommandId::parse("42"), None);
        for status in CommandStatus::ALL {
            assert_eq!(CommandStatus::parse(status.as_str()), Some(status));
        }
    }

    #[test]
    fn acks_are_parsed_from_the_rule_output() {
        let id = CommandId::new_v7();
        let ack = parse_ack(
            &serde_json::json!({"commandId": id.as_str(), "status": "success",
            "detail": {"code": 0}, "thingName": "trk-1", "receivedAt": 1_795_338_000_000_i64}),
        )
        .expect("valid");
        assert_eq!(ack.command_id, id);
        assert_eq!(ack.status, AckStatus::Successful);
        assert_eq!(ack.detail.as_deref(), Some(r#"{"code":0}"#));
        assert_eq!(ack.received_at, Some(datetime!(2026-11-22 09:00 UTC)));
        let cases = [
            (serde_json::json!([1]), AckError::NotAnObject),
            (
                serde_json::json!({"commandId": id.as_str(), "status": "ok"}),
                AckError::ThingName,
            ),
            (
                serde_json::json!({"thingName": "trk-1", "commandId": "7", "status": "failed"}),
                AckError::CommandId,
            ),
            (
                serde_json::json!({"thingName": "trk-1", "commandId": id.as_str(), "status": "maybe"}),
                AckError::Status,
            ),
        ];
        for (message, error) in cases {
            assert_eq!(parse_ack(&message), Err(error), "{message}");
        }
    }
}
