//! The frames of the WebSocket stream. A client sends `subscribe` (a filter, and `lastSeq` when
//! it resumes), `unsubscribe` or `ping`; the server sends `event`s, `subscribed`, `unsubscribed`, `reset` (the
//! client asked to resume from before the replay window: reload, then subscribe afresh),
//! `error` (a frame it could not take, naming the field; the connection stays open) and `pong`.

use crate::event::Event;
use crate::subscription::{Subscription, MAX_SUBJECTS, MAX_SUBJECT_LENGTH};
use serde::{Deserialize, Serialize};

/// How often a connection whose subscription follows devices' telemetry by name pings: each
/// ping keeps those devices streaming every sample (their live window is renewed once it runs
/// low), and without pings they go back to batches within minutes.
pub const FOLLOWER_PING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase", deny_unknown_fields)]
pub enum ClientFrame {
    #[serde(rename_all = "camelCase")]
    Subscribe {
        #[serde(default)]
        filter: Subscription,
        /// The last event the client has: the stream goes on after it.
        #[serde(default)]
        last_seq: Option<u64>,
    },
    Unsubscribe,
    Ping,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum ServerFrame {
    Event(Event),
    #[serde(rename_all = "camelCase")]
    Subscribed {
        /// The newest event of the tenant's stream when the subscription began.
        last_seq: u64,
    },
    /// No more events until the next `subscribe`.
    Unsubscribed,
    Reset {
        reason: String,
    },
    Error {
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        field: Option<String>,
    },
    Pong,
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub message: String,
    pub field: Option<String>,
}

impl FrameError {
    pub fn frame(self) -> ServerFrame {
        ServerFrame::Error {
            message: self.message,
            field: self.field,
        }
    }
}

/// The client's frame, or what is wrong with it (an unknown action or field named).
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, FrameError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| FrameError {
        message: format!("not JSON: {e}"),
        field: None,
    })?;
    let action = value.get("action").and_then(serde_json::Value::as_str);
    let frame: ClientFrame = serde_json::from_value(value.clone()).map_err(|e| {
        let message = e.to_string();
        let field = field_at_fault(&value, action, &message);
        FrameError { message, field }
    })?;
    if let ClientFrame::Subscribe { filter, .. } = &frame {
        for (field, names) in [
            ("filter.devices", &filter.devices),
            ("filter.bulkChanges", &filter.bulk_changes),
        ] {
            let count = names.len();
            if count > MAX_SUBJECTS {
                return Err(FrameError {
                    message: format!("at most {MAX_SUBJECTS} a filter, not {count}"),
                    field: Some(field.to_owned()),
                });
            }
            // Every batch of the fan-out reads every subscription: names stay short.
            if let Some(long) = names.iter().find(|n| n.len() > MAX_SUBJECT_LENGTH) {
                return Err(FrameError {
                    message: format!(
                        "names are at most {MAX_SUBJECT_LENGTH} characters; one has {}",
                        long.len()
                    ),
                    field: Some(field.to_owned()),
                });
            }
        }
    }
    Ok(frame)
}

/// The field serde's `message` is about, as the frame names it (`filter.types`, `lastSeq`).
fn field_at_fault(
    value: &serde_json::Value,
    action: Option<&str>,
    message: &str,
) -> Option<String> {
    let Some(action) = action else {
        return Some("action".to_owned());
    };
    // serde quotes the unknown name in backticks.
    let named = message.split('`').nth(1).unwrap_or_default();
    let in_filter = |name: &str| value["filter"].get(name).is_some();
    Some(if message.starts_with("unknown variant") {
        if named == action {
            "action".to_owned()
        } else {
            "filter.types".to_owned()
        }
    } else if message.starts_with("unknown field") && in_filter(named) {
        format!("filter.{named}")
    } else if !named.is_empty() {
        named.to_owned()
    } else if value.get("lastSeq").is_some_and(|v| !v.is_u64()) {
        "lastSeq".to_owned()
    } else {
        "filter".to_owned()
    })
}

/// How a subscription that resumes after `last_seq` starts, given the tenant's stream: the
/// oldest event still kept (`None`: none kept) and the newest given out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// Send the kept events from `from` through `through` first, in order, then live ones.
    Replay { from: u64, through: u64 },
    /// Nothing was missed.
    UpToDate,
    /// Events after `last_seq` are no longer kept (or it is ahead of the stream): reload.
    Reset,
}

pub fn resume(last_seq: u64, oldest_kept: Option<u64>, newest: u64) -> Resume {
    if last_seq > newest {
        return Resume::Reset;
    }
    if last_seq == newest {
        return Resume::UpToDate;
    }
    match oldest_kept {
        Some(oldest) if oldest <= last_seq + 1 => Resume::Replay {
            from: last_seq + 1,
            through: newest,
        },
        _ => Resume::Reset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventType;
    use serde_json::json;

    #[test]
    fn subscribe_frames_parse_and_bad_ones_name_what_is_wrong() {
        let frame = parse_client_frame(
            r#"{"action": "subscribe", "filter": {"types": ["device.presence"], "devices": ["trk-1"]}, "lastSeq": 7}"#,
        );
        let Ok(ClientFrame::Subscribe { filter, last_seq }) = frame else {
            panic!("{frame:?}");
        };
        assert_eq!(last_seq, Some(7));
        assert!(filter.types.contains(&EventType::DevicePresence));
        assert_eq!(filter.followed_devices().count(), 0, "presence only");
        assert_eq!(
            parse_client_frame(r#"{"action": "ping"}"#),
            Ok(ClientFrame::Ping)
        );

        let field = |text: &str| parse_client_frame(text).err().and_then(|e| e.field);
        assert_eq!(field(r#"{"action": "dance"}"#).as_deref(), Some("action"));
        assert_eq!(field(r#"{"filter": {}}"#).as_deref(), Some("action"));
        assert_eq!(
            field(r#"{"action": "subscribe", "filter": {"colours": []}}"#).as_deref(),
            Some("filter.colours")
        );
        assert_eq!(
            field(r#"{"action": "subscribe", "filter": {"types": ["device.moods"]}}"#).as_deref(),
            Some("filter.types")
        );
        assert_eq!(
            field(r#"{"action": "subscribe", "since": 3}"#).as_deref(),
            Some("since")
        );
        assert_eq!(
            field(r#"{"action": "subscribe", "lastSeq": "seven"}"#).as_deref(),
            Some("lastSeq")
        );
        assert!(parse_client_frame("{not json").is_err());
        let many: Vec<String> = (0..=MAX_SUBJECTS).map(|n| format!("trk-{n}")).collect();
        let text = json!({"action": "subscribe", "filter": {"devices": many}}).to_string();
        assert_eq!(field(&text).as_deref(), Some("filter.devices"));
        let long = json!({"action": "subscribe", "filter": {"bulkChanges": ["b".repeat(129)]}});
        assert_eq!(
            field(&long.to_string()).as_deref(),
            Some("filter.bulkChanges")
        );
    }

    #[test]
    fn server_frames_are_tagged_by_kind() {
        let reset = ServerFrame::Reset {
            reason: "stale".into(),
        };
        assert_eq!(
            serde_json::to_value(reset).expect("json"),
            json!({"kind": "reset", "reason": "stale"})
        );
        assert_eq!(
            serde_json::to_value(ServerFrame::Subscribed { last_seq: 3 }).expect("json"),
            json!({"kind": "subscribed", "lastSeq": 3})
        );
    }

    #[test]
    fn a_resume_replays_what_is_kept_and_resets_what_is_not() {
        assert_eq!(
            resume(10, Some(5), 12),
            Resume::Replay {
                from: 11,
                through: 12
            }
        );
        assert_eq!(
            resume(4, Some(5), 12),
            Resume::Replay {
                from: 5,
                through: 12
            }
        );
        assert_eq!(resume(3, Some(5), 12), Resume::Reset, "event 4 is gone");
        assert_eq!(resume(12, Some(5), 12), Resume::UpToDate);
        assert_eq!(
            resume(13, Some(5), 12),
            Resume::Reset,
            "ahead of the stream"
        );
        assert_eq!(resume(0, None, 0), Resume::UpToDate);
        assert_eq!(resume(2, None, 9), Resume::Reset, "nothing kept");
    }
}
